/*
 * p11key.c — an OpenSSL EVP_PKEY whose private operations run in the token
 * through one private key object handle.
 *
 * libp11 finds keys with C_FindObjects, so it cannot reach the pending key
 * pair of evertoken's native rollover (docs/rollover.md): pending objects are
 * usable through the handles C_GenerateKeyPair returned (or a search with
 * CKA_EVERTOKEN_PENDING), never through an ordinary search. This file does
 * what libp11 does for those handles: an RSA_METHOD (PKCS#1 v1.5 signatures
 * and decryption with CKM_RSA_PKCS) or an EC_KEY_METHOD (CKM_ECDSA) whose
 * key carries the public part and a reference to the handle. OpenSSL 3 calls
 * such "foreign" legacy keys through their methods, exactly as it does for
 * libp11's keys, so CSR signatures (X509_REQ_sign), SCEP's self-signed
 * certificate and CMS signature, and the decryption of SCEP's answer work
 * unchanged. The deprecated RSA_METHOD/EC_KEY_METHOD interfaces are the
 * ones OpenSSL 3 still routes through for such keys (libp11 0.4.12 uses the
 * same), hence OPENSSL_SUPPRESS_DEPRECATED for this file only.
 *
 * The key refers to the token's session: it must be freed before the token
 * is closed (engine.c frees every key before enr_token_close).
 */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "enr_int.h"
#include "p11key.h"

typedef struct hkey {
    CK_FUNCTION_LIST_PTR f;
    CK_SESSION_HANDLE sh;
    CK_OBJECT_HANDLE h;
} hkey;

static RSA_METHOD *rsa_meth;
static EC_KEY_METHOD *ec_meth;
static int rsa_idx = -1, ec_idx = -1;

static void
hkey_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    free(ptr);
}

/* One C_SignInit/C_Sign or C_DecryptInit/C_Decrypt with MECH; *OUTLEN in:
 * room, out: length. */
static int
hkey_op(const hkey *k, CK_MECHANISM_TYPE mech, int decrypt, const unsigned char *in, size_t inlen,
        unsigned char *out, CK_ULONG *outlen)
{
    CK_MECHANISM m = {mech, NULL, 0};
    CK_RV rv;

    if (k == NULL)
        return -1;
    if (decrypt) {
        rv = k->f->C_DecryptInit(k->sh, &m, k->h);
        if (rv == CKR_OK)
            rv = k->f->C_Decrypt(k->sh, (CK_BYTE_PTR)in, (CK_ULONG)inlen, out, outlen);
    } else {
        rv = k->f->C_SignInit(k->sh, &m, k->h);
        if (rv == CKR_OK)
            rv = k->f->C_Sign(k->sh, (CK_BYTE_PTR)in, (CK_ULONG)inlen, out, outlen);
    }
    if (rv != CKR_OK) {
        enr_debug("pending key: %s failed: CKR 0x%08lx", decrypt ? "C_Decrypt" : "C_Sign",
                  (unsigned long)rv);
        return -1;
    }
    return 0;
}

/* RSA_private_encrypt with PKCS#1 v1.5 padding: RSA_sign hands us the
 * DigestInfo, which CKM_RSA_PKCS pads and signs. */
static int
rsa_priv_enc(int flen, const unsigned char *from, unsigned char *to, RSA *rsa, int padding)
{
    CK_ULONG n = (CK_ULONG)RSA_size(rsa);

    if (padding != RSA_PKCS1_PADDING || flen < 0)
        return -1;
    if (hkey_op(RSA_get_ex_data(rsa, rsa_idx), CKM_RSA_PKCS, 0, from, (size_t)flen, to, &n) != 0)
        return -1;
    return (int)n;
}

static int
rsa_priv_dec(int flen, const unsigned char *from, unsigned char *to, RSA *rsa, int padding)
{
    CK_ULONG n = (CK_ULONG)RSA_size(rsa);

    if (padding != RSA_PKCS1_PADDING || flen < 0)
        return -1;
    if (hkey_op(RSA_get_ex_data(rsa, rsa_idx), CKM_RSA_PKCS, 1, from, (size_t)flen, to, &n) != 0)
        return -1;
    return (int)n;
}

static ECDSA_SIG *
ec_sign_sig(const unsigned char *dgst, int dlen, const BIGNUM *kinv, const BIGNUM *r, EC_KEY *eckey)
{
    unsigned char buf[2 * 66 + 2];
    CK_ULONG n = sizeof(buf);
    BIGNUM *br = NULL, *bs = NULL;
    ECDSA_SIG *sig;

    (void)kinv;
    (void)r;
    if (dlen < 0 ||
        hkey_op(EC_KEY_get_ex_data(eckey, ec_idx), CKM_ECDSA, 0, dgst, (size_t)dlen, buf, &n) !=
            0 ||
        n == 0 || n % 2 != 0)
        return NULL;
    br = BN_bin2bn(buf, (int)(n / 2), NULL);
    bs = BN_bin2bn(buf + n / 2, (int)(n / 2), NULL);
    sig = ECDSA_SIG_new();
    if (br == NULL || bs == NULL || sig == NULL || ECDSA_SIG_set0(sig, br, bs) != 1) {
        BN_free(br);
        BN_free(bs);
        ECDSA_SIG_free(sig);
        return NULL;
    }
    return sig;
}

static int
ec_sign(int type, const unsigned char *dgst, int dlen, unsigned char *sig, unsigned int *siglen,
        const BIGNUM *kinv, const BIGNUM *r, EC_KEY *eckey)
{
    ECDSA_SIG *s = ec_sign_sig(dgst, dlen, kinv, r, eckey);
    unsigned char *p = sig;
    int l;

    (void)type;
    if (s == NULL)
        return 0;
    l = i2d_ECDSA_SIG(s, &p);
    ECDSA_SIG_free(s);
    if (l <= 0)
        return 0;
    *siglen = (unsigned int)l;
    return 1;
}

static int
methods(void)
{
    if (rsa_meth == NULL) {
        rsa_idx = RSA_get_ex_new_index(0, NULL, NULL, NULL, hkey_free);
        rsa_meth = RSA_meth_dup(RSA_PKCS1_OpenSSL());
        if (rsa_meth == NULL || rsa_idx < 0 ||
            !RSA_meth_set1_name(rsa_meth, "evertoken-enroll PKCS#11 handle") ||
            !RSA_meth_set_priv_enc(rsa_meth, rsa_priv_enc) ||
            !RSA_meth_set_priv_dec(rsa_meth, rsa_priv_dec)) {
            RSA_meth_free(rsa_meth);
            rsa_meth = NULL;
            return -1;
        }
    }
    if (ec_meth == NULL) {
        int (*osign)(int, const unsigned char *, int, unsigned char *, unsigned int *,
                     const BIGNUM *, const BIGNUM *, EC_KEY *) = NULL;
        int (*osetup)(EC_KEY *, BN_CTX *, BIGNUM **, BIGNUM **) = NULL;
        ECDSA_SIG *(*osig)(const unsigned char *, int, const BIGNUM *, const BIGNUM *, EC_KEY *) =
            NULL;
        ec_idx = EC_KEY_get_ex_new_index(0, NULL, NULL, NULL, hkey_free);
        ec_meth = EC_KEY_METHOD_new(EC_KEY_OpenSSL());
        if (ec_meth == NULL || ec_idx < 0)
            return -1;
        EC_KEY_METHOD_get_sign(ec_meth, &osign, &osetup, &osig);
        EC_KEY_METHOD_set_sign(ec_meth, ec_sign, osetup, ec_sign_sig);
    }
    return 0;
}

EVP_PKEY *
enr_p11key_new(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE priv, EVP_PKEY *pub)
{
    EVP_PKEY *pk = NULL;
    hkey *k = NULL;

    if (pub == NULL || methods() != 0)
        return NULL;
    k = calloc(1, sizeof(*k));
    pk = EVP_PKEY_new();
    if (k == NULL || pk == NULL)
        goto fail;
    k->f = f;
    k->sh = sh;
    k->h = priv;
    if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA) {
        const RSA *src = EVP_PKEY_get0_RSA(pub);
        RSA *rsa = src ? RSAPublicKey_dup(src) : NULL;
        if (rsa == NULL)
            goto fail;
        RSA_set_method(rsa, rsa_meth);
        RSA_set_flags(rsa, RSA_FLAG_EXT_PKEY);
        if (RSA_set_ex_data(rsa, rsa_idx, k) != 1) {
            RSA_free(rsa);
            goto fail;
        }
        k = NULL; /* owned by RSA now */
        if (EVP_PKEY_assign_RSA(pk, rsa) != 1) {
            RSA_free(rsa);
            goto fail;
        }
    } else if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_EC) {
        const EC_KEY *src = EVP_PKEY_get0_EC_KEY(pub);
        EC_KEY *ec = src ? EC_KEY_dup(src) : NULL;
        if (ec == NULL)
            goto fail;
        if (EC_KEY_set_method(ec, ec_meth) != 1 || EC_KEY_set_ex_data(ec, ec_idx, k) != 1) {
            EC_KEY_free(ec);
            goto fail;
        }
        k = NULL;
        if (EVP_PKEY_assign_EC_KEY(pk, ec) != 1) {
            EC_KEY_free(ec);
            goto fail;
        }
    } else {
        goto fail;
    }
    return pk;
fail:
    free(k);
    EVP_PKEY_free(pk);
    return NULL;
}
