/*
 * op_sign.c — C_SignInit/C_Sign/C_SignUpdate/C_SignFinal and the C_Verify*
 * functions: RSA PKCS #1 v1.5 and PSS (raw and hashing), ECDSA (raw and
 * hashing), EdDSA. docs/mechanisms.md describes each mechanism.
 *
 * How OpenSSL is used: the hashing mechanisms hash with an EVP_MD_CTX (a
 * digest fetched once per process, re-initialised per operation without an
 * allocation) and sign the hash with an EVP_PKEY_CTX that was initialised
 * once with padding, digest and salt and is reused for every operation of
 * the session with the same key and mechanism. The raw mechanisms use that
 * EVP_PKEY_CTX directly. EdDSA has no separate hash step: an EVP_MD_CTX
 * initialised once for DigestSign/DigestVerify is copied per operation.
 *
 * PKCS#11 ECDSA signatures are r || s, each half as long as the group order
 * (2.40 section 2.3.1); OpenSSL speaks DER. ecdsa_rs_to_der/der_to_rs
 * convert through ECDSA_SIG.
 */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "op_int.h"

/* ---- ECDSA signature encoding ------------------------------------------- */

CK_RV
ecdsa_rs_to_der(const unsigned char *rs, size_t rslen, unsigned char *der, size_t *derlen)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = NULL, *s = NULL;
    unsigned char *p = der;
    int n;
    CK_RV rv = CKR_SIGNATURE_INVALID;

    if (sig == NULL)
        return CKR_HOST_MEMORY;
    r = BN_bin2bn(rs, (int)(rslen / 2), NULL);
    s = BN_bin2bn(rs + rslen / 2, (int)(rslen / 2), NULL);
    if (r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    if (i2d_ECDSA_SIG(sig, NULL) > (int)*derlen)
        goto done;
    n = i2d_ECDSA_SIG(sig, &p);
    if (n <= 0)
        goto done;
    *derlen = (size_t)n;
    rv = CKR_OK;
done:
    ECDSA_SIG_free(sig);
    return rv;
}

CK_RV
ecdsa_der_to_rs(const unsigned char *der, size_t derlen, unsigned char *rs, size_t rslen)
{
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    const BIGNUM *r, *s;
    CK_RV rv = CKR_GENERAL_ERROR;

    if (sig == NULL)
        return CKR_GENERAL_ERROR;
    ECDSA_SIG_get0(sig, &r, &s);
    if (BN_bn2binpad(r, rs, (int)(rslen / 2)) == (int)(rslen / 2) &&
        BN_bn2binpad(s, rs + rslen / 2, (int)(rslen / 2)) == (int)(rslen / 2))
        rv = CKR_OK;
    ECDSA_SIG_free(sig);
    return rv;
}

/* DER of an ECDSA signature: SEQUENCE of two INTEGERs of at most n+1 bytes. */
static size_t
ecdsa_der_max(size_t n)
{
    return 2 * (n + 1 + 4) + 4;
}

/* ---- preparation --------------------------------------------------------- */

static CK_RV
pctx_build(struct mod_op *op)
{
    const struct mod_mech *m = op->m;
    int sign = op->kind == OP_SIGN;
    int ok;

    op->pctx = EVP_PKEY_CTX_new_from_pkey(NULL, op->pkey, NULL);
    if (op->pctx == NULL)
        return CKR_HOST_MEMORY;
    ok = sign ? EVP_PKEY_sign_init(op->pctx) : EVP_PKEY_verify_init(op->pctx);
    if (ok != 1)
        return CKR_FUNCTION_FAILED;
    switch (m->fam) {
    case MF_RSA_PKCS:
        ok = EVP_PKEY_CTX_set_rsa_padding(op->pctx, RSA_PKCS1_PADDING) == 1;
        /* With a digest set, OpenSSL expects the hash and adds the
         * DigestInfo; without, it pads the caller's bytes as they are. */
        if (ok && m->md != MD_NONE)
            ok = EVP_PKEY_CTX_set_signature_md(op->pctx, md_get(m->md)) == 1;
        break;
    case MF_RSA_PSS:
        ok = EVP_PKEY_CTX_set_rsa_padding(op->pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_signature_md(op->pctx, md_get(op->p.md)) == 1 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(op->pctx, md_get(op->p.mgf)) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(op->pctx, (int)op->p.salt) == 1;
        break;
    default: /* ECDSA: no digest in the context, any input length */
        break;
    }
    return ok ? CKR_OK : CKR_FUNCTION_FAILED;
}

CK_RV
sign_prepare(struct mod_op *op)
{
    const struct mod_mech *m = op->m;
    CK_RV rv;

    if (!op->ready) {
        switch (m->fam) {
        case MF_EDDSA:
            op->tmpl = EVP_MD_CTX_new();
            op->work = EVP_MD_CTX_new();
            if (op->tmpl == NULL || op->work == NULL)
                return CKR_HOST_MEMORY;
            if ((op->kind == OP_SIGN
                     ? EVP_DigestSignInit_ex(op->tmpl, NULL, NULL, NULL, NULL, op->pkey, NULL)
                     : EVP_DigestVerifyInit_ex(op->tmpl, NULL, NULL, NULL, NULL, op->pkey, NULL)) !=
                1)
                return CKR_FUNCTION_FAILED;
            op->outlen = (size_t)EVP_PKEY_get_size(op->pkey);
            op->max_in = OP_EDDSA_MAX;
            break;
        case MF_ECDSA:
            rv = pctx_build(op);
            if (rv != CKR_OK)
                return rv;
            op->keybytes = ((size_t)EVP_PKEY_get_bits(op->pkey) + 7) / 8;
            op->outlen = 2 * op->keybytes;
            op->max_in = OP_RAW_HASH_MAX;
            rv = op_scratch(op, ecdsa_der_max(op->keybytes));
            if (rv != CKR_OK)
                return rv;
            break;
        default: /* RSA */
            rv = pctx_build(op);
            if (rv != CKR_OK)
                return rv;
            op->keybytes = (size_t)EVP_PKEY_get_size(op->pkey);
            op->outlen = op->keybytes;
            /* Raw PKCS #1 v1.5: at most k - 11 bytes; raw PSS: one hash. */
            op->max_in = m->fam == MF_RSA_PKCS ? op->keybytes - 11 : md_info(op->p.md)->len;
            break;
        }
        if (m->md != MD_NONE) {
            op->hctx = EVP_MD_CTX_new();
            if (op->hctx == NULL)
                return CKR_HOST_MEMORY;
        }
        op->ready = 1;
    }
    if (m->md != MD_NONE && EVP_DigestInit_ex2(op->hctx, md_get(m->md), NULL) != 1)
        return CKR_FUNCTION_FAILED;
    return CKR_OK;
}

/* ---- computing ----------------------------------------------------------- */

/* The bytes to sign or verify: the hash (hashing mechanisms; H is its
 * buffer), the buffered input (after C_xUpdate), or the caller's data. */
static CK_RV
sign_input(struct mod_op *op, const unsigned char *in, size_t inlen, int single,
           unsigned char h[EVP_MAX_MD_SIZE], const unsigned char **tbs, size_t *tbslen)
{
    const struct mod_mech *m = op->m;
    unsigned int hl = 0;

    if (m->md != MD_NONE) {
        if (single && inlen > 0 && EVP_DigestUpdate(op->hctx, in, inlen) != 1)
            return CKR_FUNCTION_FAILED;
        if (EVP_DigestFinal_ex(op->hctx, h, &hl) != 1)
            return CKR_FUNCTION_FAILED;
        *tbs = h;
        *tbslen = hl;
        return CKR_OK;
    }
    if (single) {
        *tbs = in;
        *tbslen = inlen;
    } else {
        *tbs = op->buf;
        *tbslen = op->len;
    }
    /* Raw mechanisms: PKCS #1 v1.5 takes at most k - 11 bytes (2.40
     * section 2.1.6), PSS exactly one hash of hashAlg (section 2.1.10). */
    if (m->fam == MF_RSA_PKCS && *tbslen > op->max_in)
        return CKR_DATA_LEN_RANGE;
    if (m->fam == MF_RSA_PSS && *tbslen != op->max_in)
        return CKR_DATA_LEN_RANGE;
    return CKR_OK;
}

static CK_RV
do_sign(struct mod_op *op, const unsigned char *in, size_t inlen, int single, CK_BYTE_PTR out,
        CK_ULONG_PTR outlen)
{
    unsigned char h[EVP_MAX_MD_SIZE];
    const unsigned char *tbs = NULL;
    size_t tbslen = 0, siglen;
    CK_RV rv;

    if (MF_IS_SYM(op->m->fam))
        return mac_sign(op, in, inlen, single, out, outlen);

    /* PKCS#11 3.0 section 4.9 (CKA_ALWAYS_AUTHENTICATE) and 5.5: without
     * the context login the signature is refused. */
    if (op->need_auth && !op->authed)
        return CKR_USER_NOT_LOGGED_IN;
    /* Section 5.2: NULL asks for the length; a short buffer keeps the
     * operation active. */
    if (out == NULL) {
        *outlen = op->outlen;
        op->keep = 1;
        return CKR_OK;
    }
    if (*outlen < op->outlen) {
        *outlen = op->outlen;
        op->keep = 1;
        return CKR_BUFFER_TOO_SMALL;
    }
    rv = sign_input(op, in, inlen, single, h, &tbs, &tbslen);
    if (rv != CKR_OK)
        return rv;
    switch (op->m->fam) {
    case MF_EDDSA:
        siglen = op->outlen;
        if (EVP_MD_CTX_copy_ex(op->work, op->tmpl) != 1 ||
            EVP_DigestSign(op->work, out, &siglen, tbs, tbslen) != 1)
            return CKR_FUNCTION_FAILED;
        break;
    case MF_ECDSA:
        siglen = op->scap;
        if (EVP_PKEY_sign(op->pctx, op->scratch, &siglen, tbs, tbslen) != 1)
            return CKR_FUNCTION_FAILED;
        rv = ecdsa_der_to_rs(op->scratch, siglen, out, op->outlen);
        if (rv != CKR_OK)
            return rv;
        siglen = op->outlen;
        break;
    default:
        siglen = *outlen;
        if (EVP_PKEY_sign(op->pctx, out, &siglen, tbs, tbslen) != 1)
            return CKR_FUNCTION_FAILED;
        break;
    }
    *outlen = siglen;
    return CKR_OK;
}

static CK_RV
do_verify(struct mod_op *op, const unsigned char *in, size_t inlen, int single,
          const unsigned char *sig, size_t siglen)
{
    unsigned char h[EVP_MAX_MD_SIZE];
    const unsigned char *tbs = NULL;
    size_t tbslen = 0, derlen;
    int ok;
    CK_RV rv;

    if (MF_IS_SYM(op->m->fam))
        return mac_verify(op, in, inlen, single, sig, siglen);

    /* Section 5.13: a signature of the wrong length is
     * CKR_SIGNATURE_LEN_RANGE, a wrong one CKR_SIGNATURE_INVALID. */
    if (siglen != op->outlen)
        return CKR_SIGNATURE_LEN_RANGE;
    rv = sign_input(op, in, inlen, single, h, &tbs, &tbslen);
    if (rv != CKR_OK)
        return rv;
    switch (op->m->fam) {
    case MF_EDDSA:
        if (EVP_MD_CTX_copy_ex(op->work, op->tmpl) != 1)
            return CKR_FUNCTION_FAILED;
        ok = EVP_DigestVerify(op->work, sig, siglen, tbs, tbslen);
        break;
    case MF_ECDSA:
        derlen = op->scap;
        rv = ecdsa_rs_to_der(sig, siglen, op->scratch, &derlen);
        if (rv != CKR_OK)
            return rv;
        ok = EVP_PKEY_verify(op->pctx, op->scratch, derlen, tbs, tbslen);
        break;
    default:
        ok = EVP_PKEY_verify(op->pctx, sig, siglen, tbs, tbslen);
        break;
    }
    /* 0 is a bad signature; < 0 a signature OpenSSL could not even parse
     * (e.g. an RSA value not below the modulus): also not a valid one. */
    return ok == 1 ? CKR_OK : CKR_SIGNATURE_INVALID;
}

static CK_RV
do_update(struct mod_op *op, const unsigned char *in, size_t inlen)
{
    if (MF_IS_SYM(op->m->fam))
        return mac_update(op, in, inlen);
    op->multi = 1;
    if (op->m->md != MD_NONE)
        return inlen == 0 || EVP_DigestUpdate(op->hctx, in, inlen) == 1 ? CKR_OK
                                                                        : CKR_FUNCTION_FAILED;
    /* Single-part by nature: collect the input for the final call. */
    return op_buffer(op, in, inlen);
}

/* ---- entry points -------------------------------------------------------- */

CK_RV
mod_C_SignInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_start(hs, OP_SIGN, mech, key);
}

CK_RV
mod_C_Sign(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
           CK_ULONG_PTR outlen)
{
    struct mod_op *op = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (outlen == NULL || (in == NULL && inlen > 0))
        return CKR_ARGUMENTS_BAD;
    rv = op_acquire(hs, OP_SIGN, &op);
    if (rv != CKR_OK)
        return rv;
    /* C_Sign cannot finish a multi-part operation (section 5.12); doing so
     * ends it. */
    rv = op->multi ? CKR_OPERATION_ACTIVE : do_sign(op, in, inlen, 1, out, outlen);
    op_err_clear();
    return op_release(op, rv, 0);
}

CK_RV
mod_C_SignUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen)
{
    struct mod_op *op = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (in == NULL && inlen > 0)
        return CKR_ARGUMENTS_BAD;
    rv = op_acquire(hs, OP_SIGN, &op);
    if (rv != CKR_OK)
        return rv;
    /* The context login is checked at C_SignFinal, as for C_Sign. */
    rv = do_update(op, in, inlen);
    op_err_clear();
    return op_release(op, rv, 1);
}

CK_RV
mod_C_SignFinal(CK_SESSION_HANDLE hs, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    struct mod_op *op = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (outlen == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = op_acquire(hs, OP_SIGN, &op);
    if (rv != CKR_OK)
        return rv;
    rv = do_sign(op, NULL, 0, 0, out, outlen);
    op_err_clear();
    return op_release(op, rv, 0);
}

CK_RV
mod_C_VerifyInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_start(hs, OP_VERIFY, mech, key);
}

CK_RV
mod_C_Verify(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR sig, CK_ULONG siglen)
{
    struct mod_op *op = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if ((in == NULL && inlen > 0) || sig == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = op_acquire(hs, OP_VERIFY, &op);
    if (rv != CKR_OK)
        return rv;
    rv = op->multi ? CKR_OPERATION_ACTIVE : do_verify(op, in, inlen, 1, sig, siglen);
    op_err_clear();
    return op_release(op, rv, 0);
}

CK_RV
mod_C_VerifyUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen)
{
    struct mod_op *op = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (in == NULL && inlen > 0)
        return CKR_ARGUMENTS_BAD;
    rv = op_acquire(hs, OP_VERIFY, &op);
    if (rv != CKR_OK)
        return rv;
    rv = do_update(op, in, inlen);
    op_err_clear();
    return op_release(op, rv, 1);
}

CK_RV
mod_C_VerifyFinal(CK_SESSION_HANDLE hs, CK_BYTE_PTR sig, CK_ULONG siglen)
{
    struct mod_op *op = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (sig == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = op_acquire(hs, OP_VERIFY, &op);
    if (rv != CKR_OK)
        return rv;
    rv = do_verify(op, NULL, 0, 0, sig, siglen);
    op_err_clear();
    return op_release(op, rv, 0);
}
