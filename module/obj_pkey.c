/*
 * obj_pkey.c — the OpenSSL key behind a stored key object.
 *
 * Every public and private key object carries CKA_PUBLIC_KEY_INFO (derived
 * and checked when the object was built, obj_key.c), so the public half is
 * always decoded from it; a private key adds its secret parts. The result is
 * what the mechanism layer caches per object after login and uses for every
 * operation, so this runs once per object, not per signature.
 *
 * Secrets: private values are pushed as secure BIGNUMs (or, for EdDSA, handed
 * straight to OpenSSL), and the parameter arrays holding their copies are
 * freed with OSSL_PARAM_free (its secure part is cleansed).
 */
#include <limits.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "object.h"

/* The attribute's bytes as a secure (private) or plain BIGNUM; NULL when
 * absent or out of memory. */
static BIGNUM *
attr_bn(const mod_attrs *o, CK_ATTRIBUTE_TYPE type, int secret)
{
    const ks_attr *a = obj_find(o, type);
    BIGNUM *bn;

    if (a == NULL || a->len == 0 || a->len > INT_MAX)
        return NULL;
    bn = secret ? BN_secure_new() : BN_new();
    if (bn != NULL && BN_bin2bn(a->value, (int)a->len, bn) == NULL) {
        BN_clear_free(bn);
        bn = NULL;
    }
    return bn;
}

static CK_RV
fromdata(const char *alg, OSSL_PARAM_BLD *bld, EVP_PKEY **out)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL);
    CK_RV rv = CKR_OK;

    if (params == NULL || ctx == NULL)
        rv = CKR_HOST_MEMORY;
    else if (EVP_PKEY_fromdata_init(ctx) != 1 ||
             EVP_PKEY_fromdata(ctx, out, EVP_PKEY_KEYPAIR, params) != 1)
        rv = CKR_GENERAL_ERROR; /* it was checked when built: damage */
    else if (EVP_PKEY_get_bits(*out) <= 0) {
        /* OpenSSL 3.0 can report success for an import whose internal
         * BN_CTX allocation failed, leaving a key without a size (op.c
         * would call it CKR_KEY_SIZE_RANGE, and the object would keep it).
         * The material was validated when the object was built, so this is
         * OpenSSL running out of memory: not cached, tried again next time. */
        EVP_PKEY_free(*out);
        *out = NULL;
        rv = CKR_HOST_MEMORY;
    }
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(ctx);
    return rv;
}

static CK_RV
rsa_private(const mod_attrs *o, EVP_PKEY **out)
{
    static const CK_ATTRIBUTE_TYPE crt_types[5] = {CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1,
                                                   CKA_EXPONENT_2, CKA_COEFFICIENT};
    static const char *const crt_names[5] = {
        OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2, OSSL_PKEY_PARAM_RSA_EXPONENT1,
        OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
    BIGNUM *n = attr_bn(o, CKA_MODULUS, 0), *e = attr_bn(o, CKA_PUBLIC_EXPONENT, 0);
    BIGNUM *d = attr_bn(o, CKA_PRIVATE_EXPONENT, 1), *crt[5];
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    int ncrt = 0;
    CK_RV rv = CKR_OK;

    for (int i = 0; i < 5; i++) {
        crt[i] = attr_bn(o, crt_types[i], 1);
        ncrt += crt[i] != NULL;
    }
    if (bld == NULL) {
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    if (n == NULL || e == NULL || d == NULL) {
        rv = CKR_GENERAL_ERROR; /* the object layer requires all three */
        goto done;
    }
    if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d)) {
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    /* All five CRT parts or none (obj_key.c); without them OpenSSL works
     * from d alone, correctly but several times slower. */
    for (int i = 0; ncrt == 5 && i < 5; i++) {
        if (!OSSL_PARAM_BLD_push_BN(bld, crt_names[i], crt[i])) {
            rv = CKR_HOST_MEMORY;
            goto done;
        }
    }
    rv = fromdata(OBJ_KT_RSA, bld, out);
done:
    OSSL_PARAM_BLD_free(bld);
    for (int i = 0; i < 5; i++)
        BN_clear_free(crt[i]);
    BN_clear_free(d);
    BN_free(e);
    BN_free(n);
    return rv;
}

static CK_RV
ec_private(const mod_attrs *o, EVP_PKEY *pub, EVP_PKEY **out)
{
    char group[64];
    unsigned char point[160];
    size_t glen = 0, plen = 0;
    BIGNUM *d = attr_bn(o, CKA_VALUE, 1);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    CK_RV rv;

    if (d == NULL || bld == NULL) {
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    if (EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       &glen) != 1 ||
        EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point),
                                        &plen) != 1) {
        rv = CKR_GENERAL_ERROR;
        goto done;
    }
    if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, glen) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, plen) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d)) {
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    rv = fromdata(OBJ_KT_EC, bld, out);
done:
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(d);
    return rv;
}

CK_RV
obj_pkey(const mod_attrs *o, EVP_PKEY **out)
{
    CK_OBJECT_CLASS cls = obj_ulong(o, CKA_CLASS, CK_UNAVAILABLE_INFORMATION);
    const ks_attr *spki = obj_find(o, CKA_PUBLIC_KEY_INFO), *v;
    const unsigned char *p;
    EVP_PKEY *pub = NULL;
    CK_RV rv;

    if (out == NULL)
        return CKR_ARGUMENTS_BAD;
    *out = NULL;
    if (cls != CKO_PUBLIC_KEY && cls != CKO_PRIVATE_KEY)
        return CKR_KEY_TYPE_INCONSISTENT;
    if (spki == NULL || spki->len == 0 || spki->len > LONG_MAX)
        return CKR_GENERAL_ERROR;
    p = spki->value;
    pub = d2i_PUBKEY(NULL, &p, (long)spki->len);
    if (pub == NULL || p != (const unsigned char *)spki->value + spki->len) {
        rv = CKR_GENERAL_ERROR;
        goto done;
    }
    if (cls == CKO_PUBLIC_KEY) {
        *out = pub;
        pub = NULL;
        rv = CKR_OK;
        goto done;
    }
    switch (EVP_PKEY_get_base_id(pub)) {
    case EVP_PKEY_RSA:
        rv = rsa_private(o, out);
        break;
    case EVP_PKEY_EC:
        rv = ec_private(o, pub, out);
        break;
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448:
        v = obj_find(o, CKA_VALUE);
        if (v == NULL) {
            rv = CKR_GENERAL_ERROR;
            break;
        }
        *out = EVP_PKEY_new_raw_private_key(EVP_PKEY_get_base_id(pub), NULL, v->value, v->len);
        rv = *out != NULL ? CKR_OK : CKR_GENERAL_ERROR;
        break;
    default:
        rv = CKR_KEY_TYPE_INCONSISTENT;
        break;
    }
done:
    EVP_PKEY_free(pub);
    ERR_clear_error();
    return rv;
}
