/*
 * obj_key.c — key objects: RSA, EC (P-256/P-384/P-521), EdDSA (Ed25519,
 * Ed448) public and private keys, and generic / AES secret keys.
 *
 * Key material is checked with OpenSSL before a key object exists: public
 * keys are decoded into an EVP_PKEY (points on the curve, sane RSA numbers),
 * private keys must agree with themselves (RSA with CRT parts: OpenSSL's
 * pairwise check; without: an encrypt/decrypt round trip; EC/EdDSA: the public
 * key is derived from the private value). CKA_PUBLIC_KEY_INFO is derived for
 * every public and private key; a template value must agree with it.
 *
 * Secrets: template values are only borrowed (obj_int.h). Big numbers holding
 * private values come from BN_secure_new and are freed with BN_clear_free;
 * OpenSSL keeps its own copies in EVP_PKEYs, which EVP_PKEY_free cleanses.
 */
#include <limits.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "obj_int.h"

/* RSA moduli accepted for import: below 1024 bits is broken, above 16384
 * OpenSSL refuses to operate. */
#define RSA_MIN_BITS 1024
#define RSA_MAX_BITS 16384

/* A template value copied out of the build (whose array may move). */
struct kv {
    const unsigned char *v;
    size_t len;
    int present;
};

static struct kv
kv_get(const obj_build *b, CK_ATTRIBUTE_TYPE type)
{
    const obj_bval *s = ob_get(b, type);
    struct kv k = {NULL, 0, 0};

    if (s != NULL) {
        k.v = s->v;
        k.len = s->len;
        k.present = 1;
    }
    return k;
}

/* The code for an OpenSSL call that failed on caller-supplied key material:
 * CKR_HOST_MEMORY when OpenSSL ran out of memory (ERR_R_MALLOC_FAILURE on
 * its error queue, which this drains), else OTHERWISE (the material was
 * refused). */
static CK_RV
ossl_fail(CK_RV otherwise)
{
    unsigned long e;
    int oom = 0;

    while ((e = ERR_get_error()) != 0)
        if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE)
            oom = 1;
    return oom ? CKR_HOST_MEMORY : otherwise;
}

static BIGNUM *
bn_of(struct kv k, int secret)
{
    BIGNUM *bn = secret ? BN_secure_new() : BN_new();

    if (bn == NULL)
        return NULL;
    if (k.len > INT_MAX || BN_bin2bn(k.v, (int)k.len, bn) == NULL) {
        BN_clear_free(bn);
        return NULL;
    }
    return bn;
}

/* Store PK's DER SubjectPublicKeyInfo as CKA_PUBLIC_KEY_INFO. */
static CK_RV
put_spki(obj_build *b, EVP_PKEY *pk)
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(pk, &der);
    CK_RV rv;

    if (n <= 0 || der == NULL) {
        OPENSSL_free(der);
        return ossl_fail(CKR_GENERAL_ERROR);
    }
    rv = ob_put_derived(b, CKA_PUBLIC_KEY_INFO, der, (size_t)n, CKR_TEMPLATE_INCONSISTENT);
    OPENSSL_free(der);
    return rv;
}

/* Store RAW as a DER OCTET STRING (CKA_EC_POINT's encoding). */
static CK_RV
put_octet_string(obj_build *b, CK_ATTRIBUTE_TYPE type, const unsigned char *raw, size_t len)
{
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    unsigned char *der = NULL;
    int n = 0;
    CK_RV rv;

    if (os == NULL || len > INT_MAX || !ASN1_OCTET_STRING_set(os, raw, (int)len) ||
        (n = i2d_ASN1_OCTET_STRING(os, &der)) <= 0) {
        ASN1_OCTET_STRING_free(os);
        OPENSSL_free(der);
        return CKR_HOST_MEMORY;
    }
    rv = ob_put_copy(b, type, der, (size_t)n);
    ASN1_OCTET_STRING_free(os);
    OPENSSL_free(der);
    return rv;
}

/* An EVP_PKEY of algorithm ALG from the parameters in BLD (OpenSSL 3's
 * provider-neutral way to build keys); NULL if OpenSSL refuses them. */
static EVP_PKEY *
pkey_fromdata(const char *alg, int selection, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL);
    EVP_PKEY *pk = NULL;

    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pk, selection, params) != 1) {
        EVP_PKEY_free(pk);
        pk = NULL;
    }
    /* Secret parameters were pushed as secure BIGNUMs, whose copies live in
     * the (cleared on free) secure part of PARAMS. */
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(ctx);
    return pk;
}

/* ---- RSA ---------------------------------------------------------------- */

/* Without CRT parts nothing but arithmetic can relate d to (n, e): check
 * that a random message survives m^e^d mod n. */
static int
rsa_roundtrip(const BIGNUM *n, const BIGNUM *e, BIGNUM *d)
{
    BN_CTX *ctx = BN_CTX_secure_new();
    BIGNUM *m = BN_new(), *c = BN_new(), *r = BN_secure_new();
    int ok = 0;

    if (ctx == NULL || m == NULL || c == NULL || r == NULL)
        goto done;
    BN_set_flags(d, BN_FLG_CONSTTIME);
    if (!BN_rand_range(m, n) || !BN_add_word(m, 2) || BN_cmp(m, n) >= 0)
        goto done; /* (m >= n only if n is tiny, and it is not) */
    if (!BN_mod_exp(c, m, e, n, ctx) || !BN_mod_exp_mont_consttime(r, c, d, n, ctx, NULL))
        goto done;
    ok = BN_cmp(r, m) == 0;
done:
    BN_clear_free(r);
    BN_free(c);
    BN_free(m);
    BN_CTX_free(ctx);
    return ok;
}

static CK_RV
rsa_build(obj_build *b, int priv)
{
    static const CK_ATTRIBUTE_TYPE crt_types[5] = {CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1,
                                                   CKA_EXPONENT_2, CKA_COEFFICIENT};
    static const char *const crt_names[5] = {
        OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2, OSSL_PKEY_PARAM_RSA_EXPONENT1,
        OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
    struct kv kn = kv_get(b, CKA_MODULUS), ke = kv_get(b, CKA_PUBLIC_EXPONENT);
    struct kv kd = kv_get(b, CKA_PRIVATE_EXPONENT), kc[5];
    BIGNUM *n = NULL, *e = NULL, *d = NULL, *crt[5] = {NULL, NULL, NULL, NULL, NULL};
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pub = NULL, *full = NULL;
    EVP_PKEY_CTX *cctx = NULL;
    int i, ncrt = 0, bits;
    CK_RV rv;

    /* 2.40 section 2.1.3 lets a token decide which private parts it needs;
     * this one needs n, e, d (e to derive CKA_PUBLIC_KEY_INFO and to check
     * d), and all five CRT parts or none. */
    if (!kn.present || !ke.present || (priv && !kd.present))
        return CKR_TEMPLATE_INCOMPLETE;
    for (i = 0; i < 5; i++) {
        kc[i] = kv_get(b, crt_types[i]);
        ncrt += kc[i].present;
    }
    if (priv && ncrt != 0 && ncrt != 5)
        return CKR_TEMPLATE_INCONSISTENT;
    n = bn_of(kn, 0);
    e = bn_of(ke, 0);
    if (n == NULL || e == NULL) {
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    bits = BN_num_bits(n);
    if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS || !BN_is_odd(n) || !BN_is_odd(e) ||
        BN_is_one(e) || BN_cmp(e, n) >= 0) {
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
        goto done;
    }
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e)) {
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    pub = pkey_fromdata(OBJ_KT_RSA, EVP_PKEY_PUBLIC_KEY, bld);
    if (pub == NULL) {
        rv = ossl_fail(CKR_ATTRIBUTE_VALUE_INVALID);
        goto done;
    }
    if (priv) {
        d = bn_of(kd, 1);
        if (d == NULL) {
            rv = CKR_HOST_MEMORY;
            goto done;
        }
        if (BN_is_zero(d) || BN_is_one(d) || BN_cmp(d, n) >= 0) {
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
            goto done;
        }
        if (ncrt == 5) {
            /* OpenSSL's RSA_check_key: p, q prime, n = pq, d, dP, dQ, qInv
             * consistent with e. (OSSL_PARAM_BLD_to_param emptied BLD.) */
            if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
                !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
                !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d)) {
                rv = CKR_HOST_MEMORY;
                goto done;
            }
            for (i = 0; i < 5; i++) {
                crt[i] = bn_of(kc[i], 1);
                if (crt[i] == NULL || !OSSL_PARAM_BLD_push_BN(bld, crt_names[i], crt[i])) {
                    rv = CKR_HOST_MEMORY;
                    goto done;
                }
            }
            full = pkey_fromdata(OBJ_KT_RSA, EVP_PKEY_KEYPAIR, bld);
            cctx = full ? EVP_PKEY_CTX_new_from_pkey(NULL, full, NULL) : NULL;
            if (cctx == NULL || EVP_PKEY_pairwise_check(cctx) != 1) {
                rv = ossl_fail(CKR_TEMPLATE_INCONSISTENT);
                goto done;
            }
        } else if (!rsa_roundtrip(n, e, d)) {
            rv = ossl_fail(CKR_TEMPLATE_INCONSISTENT);
            goto done;
        }
    }
    rv = put_spki(b, pub);
    if (rv != CKR_OK || priv)
        goto done;
    /* CKA_MODULUS_BITS is derived; a template may repeat it, correctly. */
    if (kv_get(b, CKA_MODULUS_BITS).present && ob_ulong(b, CKA_MODULUS_BITS, 0) != (CK_ULONG)bits) {
        rv = CKR_TEMPLATE_INCONSISTENT;
        goto done;
    }
    rv = ob_put_ulong(b, CKA_MODULUS_BITS, (CK_ULONG)bits);
done:
    EVP_PKEY_CTX_free(cctx);
    EVP_PKEY_free(full);
    EVP_PKEY_free(pub);
    OSSL_PARAM_BLD_free(bld);
    for (i = 0; i < 5; i++)
        BN_clear_free(crt[i]);
    BN_clear_free(d);
    BN_free(e);
    BN_free(n);
    return rv;
}

/* ---- EC and EdDSA parameters --------------------------------------------- */

/*
 * CKA_EC_PARAMS: DER ECParameters. CKK_EC takes the namedCurve OID of
 * P-256, P-384 or P-521; CKK_EC_EDWARDS the OID of Ed25519/Ed448 or (3.0
 * section 2.3.6) the PrintableString curve name. A well-formed value of any
 * other kind (another curve, explicit parameters, implicitlyCA) is
 * CKR_CURVE_NOT_SUPPORTED; bytes that are no DER value at all are
 * CKR_ATTRIBUTE_VALUE_INVALID.
 */
static CK_RV
ec_curve(const unsigned char *v, size_t len, int edwards, int *nid)
{
    struct kv k = {v, len, 1};
    const unsigned char *p;
    ASN1_OBJECT *obj;
    ASN1_PRINTABLESTRING *ps;
    long l = 0;
    int tag, xclass, r;

    if (nid == NULL || (v == NULL && len > 0))
        return CKR_ARGUMENTS_BAD;
    *nid = NID_undef;
    if (k.len == 0 || k.len > LONG_MAX)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    p = k.v;
    obj = d2i_ASN1_OBJECT(NULL, &p, (long)k.len);
    if (obj != NULL && p == k.v + k.len) {
        int id = OBJ_obj2nid(obj);
        ASN1_OBJECT_free(obj);
        if (!edwards &&
            (id == NID_X9_62_prime256v1 || id == NID_secp384r1 || id == NID_secp521r1)) {
            *nid = id;
            return CKR_OK;
        }
        if (edwards && (id == NID_ED25519 || id == NID_ED448)) {
            *nid = id;
            return CKR_OK;
        }
        return CKR_CURVE_NOT_SUPPORTED;
    }
    ASN1_OBJECT_free(obj);
    if (edwards) {
        p = k.v;
        ps = d2i_ASN1_PRINTABLESTRING(NULL, &p, (long)k.len);
        if (ps != NULL && p == k.v + k.len) {
            const unsigned char *s = ASN1_STRING_get0_data(ps);
            int sl = ASN1_STRING_length(ps);
            if (sl == 12 && memcmp(s, "edwards25519", 12) == 0)
                *nid = NID_ED25519;
            else if (sl == 10 && memcmp(s, "edwards448", 10) == 0)
                *nid = NID_ED448;
            ASN1_STRING_free(ps);
            return *nid != NID_undef ? CKR_OK : CKR_CURVE_NOT_SUPPORTED;
        }
        ASN1_STRING_free(ps);
    }
    p = k.v;
    r = ASN1_get_object(&p, &l, &tag, &xclass, (long)k.len);
    if (!(r & 0x80) && r != 0x21 && l >= 0 && (size_t)(p - k.v) + (size_t)l == k.len)
        return CKR_CURVE_NOT_SUPPORTED;
    return CKR_ATTRIBUTE_VALUE_INVALID;
}

CK_RV
obj_ec_curve(const unsigned char *v, size_t len, int edwards, int *nid)
{
    CK_RV rv;

    ERR_clear_error(); /* so that ossl_fail sees this call's errors only */
    rv = ec_curve(v, len, edwards, nid);
    if (rv != CKR_OK && rv != CKR_ARGUMENTS_BAD)
        rv = ossl_fail(rv); /* a decoder out of memory is no verdict on the value */
    ERR_clear_error();      /* failed decodings queue errors */
    return rv;
}

static CK_RV
ec_params_nid(const obj_build *b, int edwards, int *nid)
{
    struct kv k = kv_get(b, CKA_EC_PARAMS);

    *nid = NID_undef;
    if (!k.present)
        return CKR_TEMPLATE_INCOMPLETE;
    return obj_ec_curve(k.v, k.len, edwards, nid);
}

/* ---- EC ------------------------------------------------------------------ */

/* SPKI of the EC public key PT (encoded point) on curve NID. */
static CK_RV
ec_put_spki(obj_build *b, int nid, const unsigned char *pt, size_t ptlen)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pk = NULL;
    CK_RV rv;

    if (bld == NULL ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, OBJ_nid2sn(nid), 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, ptlen)) {
        OSSL_PARAM_BLD_free(bld);
        return CKR_HOST_MEMORY;
    }
    /* The caller checked PT is a point of the curve, so a refusal here is
     * OpenSSL failing, not the value: some of its allocation failures
     * (OSSL_PARAM_get_octet_string, EVP_PKEY_set_type_by_keymgmt) leave
     * nothing on the error queue. */
    pk = pkey_fromdata(OBJ_KT_EC, EVP_PKEY_PUBLIC_KEY, bld);
    rv = pk != NULL ? put_spki(b, pk) : ossl_fail(CKR_HOST_MEMORY);
    EVP_PKEY_free(pk);
    OSSL_PARAM_BLD_free(bld);
    return rv;
}

static CK_RV
ec_build(obj_build *b, int priv, int nid)
{
    EC_GROUP *group = EC_GROUP_new_by_curve_name(nid);
    EC_POINT *pt = NULL;
    BN_CTX *ctx = BN_CTX_secure_new();
    ASN1_OCTET_STRING *os = NULL;
    BIGNUM *d = NULL;
    unsigned char *enc = NULL;
    size_t enclen;
    CK_RV rv;

    if (group == NULL || ctx == NULL || (pt = EC_POINT_new(group)) == NULL) {
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    if (!priv) {
        /* CKA_EC_POINT is DER (an OCTET STRING holding the X9.62 point).
         * Some applications pass the bare point: accept both, store DER of
         * the uncompressed form. A DER reading is tried first; a bare point
         * can parse as an OCTET STRING only by accident, and then its
         * contents are no valid point of this curve. */
        struct kv k = kv_get(b, CKA_EC_POINT);
        const unsigned char *p;
        int ok = 0;

        if (!k.present) {
            rv = CKR_TEMPLATE_INCOMPLETE;
            goto done;
        }
        if (k.len == 0 || k.len > LONG_MAX) {
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
            goto done;
        }
        p = k.v;
        os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)k.len);
        if (os != NULL && p == k.v + k.len)
            ok = EC_POINT_oct2point(group, pt, ASN1_STRING_get0_data(os),
                                    (size_t)ASN1_STRING_length(os), ctx);
        if (!ok)
            ok = EC_POINT_oct2point(group, pt, k.v, k.len, ctx);
        /* oct2point checks the point is on the curve; the point at
         * infinity is a valid encoding but no public key. */
        if (!ok || EC_POINT_is_at_infinity(group, pt)) {
            rv = ossl_fail(CKR_ATTRIBUTE_VALUE_INVALID);
            goto done;
        }
    } else {
        struct kv k = kv_get(b, CKA_VALUE);
        const BIGNUM *order = EC_GROUP_get0_order(group);

        if (!k.present) {
            rv = CKR_TEMPLATE_INCOMPLETE;
            goto done;
        }
        if (k.len == 0 || k.len > INT_MAX) {
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
            goto done;
        }
        d = bn_of(k, 1);
        if (d == NULL) { /* BN_secure_new or BN_bin2bn: only memory fails them */
            rv = CKR_HOST_MEMORY;
            goto done;
        }
        if (BN_is_zero(d) || BN_cmp(d, order) >= 0) {
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
            goto done;
        }
        BN_set_flags(d, BN_FLG_CONSTTIME);
        if (!EC_POINT_mul(group, pt, d, NULL, NULL, ctx)) {
            rv = ossl_fail(CKR_GENERAL_ERROR);
            goto done;
        }
    }
    enclen = EC_POINT_point2buf(group, pt, POINT_CONVERSION_UNCOMPRESSED, &enc, ctx);
    if (enclen == 0) {
        rv = ossl_fail(CKR_GENERAL_ERROR);
        goto done;
    }
    if (!priv) {
        rv = put_octet_string(b, CKA_EC_POINT, enc, enclen);
        if (rv != CKR_OK)
            goto done;
    }
    rv = ec_put_spki(b, nid, enc, enclen);
done:
    OPENSSL_free(enc);
    ASN1_OCTET_STRING_free(os);
    BN_clear_free(d);
    EC_POINT_free(pt);
    BN_CTX_free(ctx);
    EC_GROUP_free(group);
    return rv;
}

/* ---- EdDSA --------------------------------------------------------------- */

static CK_RV
ed_build(obj_build *b, int priv, int nid)
{
    int id = nid == NID_ED25519 ? EVP_PKEY_ED25519 : EVP_PKEY_ED448;
    size_t klen = nid == NID_ED25519 ? 32 : 57, plen = 0;
    unsigned char raw[57];
    EVP_PKEY *pk = NULL, *sk = NULL;
    ASN1_OCTET_STRING *os = NULL;
    CK_RV rv;

    if (!priv) {
        /* CKA_EC_POINT: DER OCTET STRING of the RFC 8032 public key; the
         * bare key is accepted too (the lengths tell them apart). */
        struct kv k = kv_get(b, CKA_EC_POINT);
        const unsigned char *p;

        if (!k.present)
            return CKR_TEMPLATE_INCOMPLETE;
        if (k.len == klen) {
            memcpy(raw, k.v, klen);
        } else {
            p = k.v;
            os = k.len < LONG_MAX ? d2i_ASN1_OCTET_STRING(NULL, &p, (long)k.len) : NULL;
            if (os == NULL || p != k.v + k.len || (size_t)ASN1_STRING_length(os) != klen) {
                rv = ossl_fail(CKR_ATTRIBUTE_VALUE_INVALID);
                goto done;
            }
            memcpy(raw, ASN1_STRING_get0_data(os), klen);
        }
        pk = EVP_PKEY_new_raw_public_key(id, NULL, raw, klen);
        if (pk == NULL) {
            rv = ossl_fail(CKR_ATTRIBUTE_VALUE_INVALID);
            goto done;
        }
        rv = put_octet_string(b, CKA_EC_POINT, raw, klen);
        if (rv != CKR_OK)
            goto done;
    } else {
        /* CKA_VALUE: the RFC 8032 private key (seed) bytes. */
        struct kv k = kv_get(b, CKA_VALUE);

        if (!k.present)
            return CKR_TEMPLATE_INCOMPLETE;
        if (k.len != klen)
            return CKR_ATTRIBUTE_VALUE_INVALID;
        sk = EVP_PKEY_new_raw_private_key(id, NULL, k.v, klen);
        plen = sizeof(raw);
        if (sk == NULL || !EVP_PKEY_get_raw_public_key(sk, raw, &plen) || plen != klen) {
            rv = ossl_fail(CKR_ATTRIBUTE_VALUE_INVALID);
            goto done;
        }
        pk = EVP_PKEY_new_raw_public_key(id, NULL, raw, klen);
        if (pk == NULL) {
            rv = ossl_fail(CKR_GENERAL_ERROR);
            goto done;
        }
    }
    rv = put_spki(b, pk);
done:
    ASN1_OCTET_STRING_free(os);
    EVP_PKEY_free(sk);
    EVP_PKEY_free(pk);
    return rv;
}

/* ---- Secret keys ---------------------------------------------------------- */

static CK_RV
secret_build(obj_build *b, unsigned cb)
{
    struct kv k = kv_get(b, CKA_VALUE);
    unsigned char cv[SHA_DIGEST_LENGTH > 16 ? SHA_DIGEST_LENGTH : 16];
    static const unsigned char zero[16];
    EVP_CIPHER_CTX *cctx = NULL;
    const EVP_CIPHER *ciph = NULL;
    int outl = 0;
    CK_RV rv;

    if (!k.present)
        return CKR_TEMPLATE_INCOMPLETE;
    if (cb == OC_SEC_AES) {
        if (k.len == 16)
            ciph = EVP_aes_128_ecb();
        else if (k.len == 24)
            ciph = EVP_aes_192_ecb();
        else if (k.len == 32)
            ciph = EVP_aes_256_ecb();
        else
            return CKR_ATTRIBUTE_VALUE_INVALID;
    } else if (k.len == 0) {
        return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    /* CKA_VALUE_LEN is derived; a template may repeat it, correctly. */
    if (kv_get(b, CKA_VALUE_LEN).present && ob_ulong(b, CKA_VALUE_LEN, 0) != (CK_ULONG)k.len)
        return CKR_TEMPLATE_INCONSISTENT;
    rv = ob_put_ulong(b, CKA_VALUE_LEN, (CK_ULONG)k.len);
    if (rv != CKR_OK)
        return rv;
    /* CKA_CHECK_VALUE (3.0): AES, the first 3 bytes of the ECB encryption
     * of a zero block; generic secrets, the first 3 bytes of SHA-1(value). */
    if (ciph != NULL) {
        cctx = EVP_CIPHER_CTX_new();
        if (cctx == NULL || EVP_EncryptInit_ex(cctx, ciph, NULL, k.v, NULL) != 1 ||
            EVP_CIPHER_CTX_set_padding(cctx, 0) != 1 ||
            EVP_EncryptUpdate(cctx, cv, &outl, zero, (int)sizeof(zero)) != 1 || outl != 16) {
            rv = CKR_GENERAL_ERROR;
            goto done;
        }
    } else if (SHA1(k.v, k.len, cv) == NULL) {
        rv = CKR_GENERAL_ERROR;
        goto done;
    }
    rv = ob_put_derived(b, CKA_CHECK_VALUE, cv, 3, CKR_ATTRIBUTE_VALUE_INVALID);
done:
    OPENSSL_cleanse(cv, sizeof(cv));
    EVP_CIPHER_CTX_free(cctx); /* cleanses the key schedule */
    return rv;
}

CK_RV
obj_key_build(obj_build *b, unsigned cb)
{
    int nid = NID_undef;
    CK_RV rv;

    /* ossl_fail reads the queue: only this call's errors may be on it. */
    ERR_clear_error();
    switch (cb) {
    case OC_PUB_RSA:
    case OC_PRV_RSA:
        rv = rsa_build(b, cb == OC_PRV_RSA);
        break;
    case OC_PUB_EC:
    case OC_PRV_EC:
        rv = ec_params_nid(b, 0, &nid);
        if (rv == CKR_OK)
            rv = ec_build(b, cb == OC_PRV_EC, nid);
        break;
    case OC_PUB_ED:
    case OC_PRV_ED:
        rv = ec_params_nid(b, 1, &nid);
        if (rv == CKR_OK)
            rv = ed_build(b, cb == OC_PRV_ED, nid);
        break;
    case OC_SEC_GEN:
    case OC_SEC_AES:
        rv = secret_build(b, cb);
        break;
    default:
        rv = CKR_GENERAL_ERROR;
        break;
    }
    /* Rejected keys leave reasons on OpenSSL's per-thread error queue; the
     * host application's next OpenSSL call must not find them. */
    ERR_clear_error();
    return rv;
}
