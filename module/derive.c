/*
 * derive.c — C_DeriveKey: CKM_ECDH1_DERIVE with CKD_NULL or an X9.63 KDF
 * (SHA-1/SHA-2), making a generic secret or AES key with the base key's
 * CKA_DERIVE_TEMPLATE merged into the caller's template. The ECDH and the KDF
 * run without the global lock between derive_prepare (locked: the base key)
 * and gen_store (gen.c). docs/objects.md describes the keys made; Z and
 * every derived value live in locked memory and are wiped when freed.
 */
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "gen_int.h"

/* Longest key a KDF may produce (CKA_VALUE_LEN). */
#define DERIVE_MAX_LEN 1024

/* ---- C_DeriveKey: CKM_ECDH1_DERIVE ---------------------------------------- */

/* The X9.63 KDF's digest for KDF (NULL for CKD_NULL); CKR_MECHANISM_PARAM_INVALID
 * for KDFs this token does not do. */
static CK_RV
kdf_digest(CK_ULONG kdf, const char **md)
{
    *md = NULL;
    switch (kdf) {
    case CKD_NULL:
        return CKR_OK;
    case CKD_SHA1_KDF:
        *md = "SHA1";
        return CKR_OK;
    case CKD_SHA224_KDF:
        *md = "SHA224";
        return CKR_OK;
    case CKD_SHA256_KDF:
        *md = "SHA256";
        return CKR_OK;
    case CKD_SHA384_KDF:
        *md = "SHA384";
        return CKR_OK;
    case CKD_SHA512_KDF:
        *md = "SHA512";
        return CKR_OK;
    default:
        return CKR_MECHANISM_PARAM_INVALID;
    }
}

/* The peer's public key on BASE's curve from pPublicData: the raw X9.62
 * point (which the standard requires tokens to take) or a DER OCTET STRING
 * holding it. */
static CK_RV
ecdh_peer(EVP_PKEY *base, const unsigned char *v, size_t len, EVP_PKEY **out)
{
    char group[64];
    size_t glen = 0;
    ASN1_OCTET_STRING *os = NULL;
    const unsigned char *p;
    CK_RV rv = CKR_MECHANISM_PARAM_INVALID;

    *out = NULL;
    if (EVP_PKEY_get_utf8_string_param(base, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       &glen) != 1)
        return CKR_GENERAL_ERROR;
    for (int pass = 0; pass < 2 && *out == NULL; pass++) {
        const unsigned char *pt = v;
        size_t ptlen = len;
        OSSL_PARAM_BLD *bld;
        OSSL_PARAM *params = NULL;
        EVP_PKEY_CTX *ctx = NULL;

        if (pass == 1) {
            p = v;
            os = len < LONG_MAX ? d2i_ASN1_OCTET_STRING(NULL, &p, (long)len) : NULL;
            if (os == NULL || p != v + len)
                break;
            pt = ASN1_STRING_get0_data(os);
            ptlen = (size_t)ASN1_STRING_length(os);
        }
        bld = OSSL_PARAM_BLD_new();
        if (bld == NULL ||
            !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, glen) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, ptlen) ||
            (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
            (ctx = EVP_PKEY_CTX_new_from_name(NULL, OBJ_KT_EC, NULL)) == NULL) {
            rv = CKR_HOST_MEMORY;
        } else if (EVP_PKEY_fromdata_init(ctx) != 1 ||
                   EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
            EVP_PKEY_free(*out);
            *out = NULL;
        } else {
            rv = CKR_OK;
        }
        EVP_PKEY_CTX_free(ctx);
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
        if (rv == CKR_HOST_MEMORY)
            break;
    }
    ASN1_OCTET_STRING_free(os);
    return rv;
}

/* Z = the ECDH shared secret (x coordinate, field size bytes) into a
 * secure buffer *Z of *ZLEN bytes. */
static CK_RV
ecdh_compute(EVP_PKEY *base, EVP_PKEY *peer, unsigned char **z, size_t *zlen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, base, NULL);
    size_t len = 0;
    CK_RV rv = CKR_OK;

    *z = NULL;
    *zlen = 0;
    if (ctx == NULL || EVP_PKEY_derive_init(ctx) != 1) {
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    /* validate_peer = 1: OpenSSL's public key check of the peer point. */
    if (EVP_PKEY_derive_set_peer_ex(ctx, peer, 1) != 1) {
        rv = CKR_MECHANISM_PARAM_INVALID;
        goto done;
    }
    if (EVP_PKEY_derive(ctx, NULL, &len) != 1 || len == 0) {
        rv = CKR_GENERAL_ERROR;
        goto done;
    }
    if (sodium_init() < 0 || (*z = sodium_malloc(len)) == NULL) {
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    if (EVP_PKEY_derive(ctx, *z, &len) != 1) {
        rv = CKR_FUNCTION_FAILED;
        goto done;
    }
    *zlen = len;
done:
    if (rv != CKR_OK && *z != NULL) {
        sodium_free(*z);
        *z = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    return rv;
}

/* ANSI X9.63 KDF (PKCS#11's CKD_SHA*_KDF) with digest MD over Z and the
 * shared info, OUTLEN bytes into OUT. */
static CK_RV
x963_kdf(const char *md, const unsigned char *z, size_t zlen, const unsigned char *info,
         size_t infolen, unsigned char *out, size_t outlen)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "X963KDF", NULL);
    EVP_KDF_CTX *kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[4];
    size_t np = 0;
    CK_RV rv = CKR_OK;

    if (kctx == NULL) {
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    params[np++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0);
    params[np++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)z, zlen);
    if (infolen > 0)
        params[np++] =
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, infolen);
    params[np] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(kctx, out, outlen, params) != 1)
        rv = CKR_FUNCTION_FAILED;
done:
    EVP_KDF_CTX_free(kctx); /* cleanses the key copy */
    EVP_KDF_free(kdf);
    return rv;
}

/* The mechanism's parameters (no lock): *MD the KDF's digest (NULL:
 * CKD_NULL). */
static CK_RV
derive_mech_check(CK_MECHANISM_PTR mech, const char **md)
{
    const CK_ECDH1_DERIVE_PARAMS *prm;
    CK_RV rv;

    if (mech->mechanism != CKM_ECDH1_DERIVE)
        return CKR_MECHANISM_INVALID;
    /* Parameters (2.40 current mechanisms section 2.3.10). */
    if (mech->pParameter == NULL || mech->ulParameterLen != sizeof(CK_ECDH1_DERIVE_PARAMS))
        return CKR_MECHANISM_PARAM_INVALID;
    prm = mech->pParameter;
    rv = kdf_digest(prm->kdf, md);
    if (rv != CKR_OK)
        return rv;
    if (prm->pPublicData == NULL || prm->ulPublicDataLen == 0 ||
        (prm->ulSharedDataLen > 0 && prm->pSharedData == NULL) ||
        (*md == NULL && prm->ulSharedDataLen > 0) /* shared data needs a KDF */)
        return CKR_MECHANISM_PARAM_INVALID;
    return CKR_OK;
}

/* The new key's template T (the caller's merged with the base key's
 * CKA_DERIVE_TEMPLATE; no lock): *KT the key type, *VLEN the CKA_VALUE_LEN
 * asked for (*HAVE_VLEN whether one was). */
static CK_RV
derive_check(const CK_ATTRIBUTE *t, CK_ULONG n, const obj_policy *pol, CK_KEY_TYPE *kt,
             CK_ULONG *vlen, int *have_vlen)
{
    CK_RV rv;

    /* The new key: a generic secret (the default) or an AES key. */
    *kt = tulong(t, n, CKA_KEY_TYPE, CKK_GENERIC_SECRET);
    if (tfind(t, n, CKA_CLASS) != NULL &&
        tulong(t, n, CKA_CLASS, CK_UNAVAILABLE_INFORMATION) != CKO_SECRET_KEY)
        return CKR_TEMPLATE_INCONSISTENT;
    if (*kt != CKK_GENERIC_SECRET && *kt != CKK_AES)
        return CKR_TEMPLATE_INCONSISTENT; /* no other key from this mechanism */
    rv = obj_gen_check(t, n, CKO_SECRET_KEY, *kt, pol);
    if (rv != CKR_OK)
        return rv;
    *have_vlen = tfind(t, n, CKA_VALUE_LEN) != NULL;
    *vlen = tulong(t, n, CKA_VALUE_LEN, 0);
    if (*have_vlen && (*vlen == 0 || *vlen > DERIVE_MAX_LEN))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if (*kt == CKK_AES) {
        if (!*have_vlen)
            return CKR_TEMPLATE_INCOMPLETE;
        if (*vlen != 16 && *vlen != 24 && *vlen != 32)
            return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    return CKR_OK;
}

/* The caller's template merged with the base key's CKA_DERIVE_TEMPLATE. */
struct dtmpl {
    unsigned char *v; /* a copy of the stored template (public) */
    size_t len;
    CK_ATTRIBUTE *t; /* pointing into the caller's template and V */
    CK_ULONG n;
};

/* The prepare step of C_DeriveKey (locked): the base key, its derive
 * template merged into T (D), the write rules for the new key; *BK a
 * reference to the base key's OpenSSL key and *ORIGIN what the new key
 * inherits from it. */
static CK_RV
derive_prepare(struct gen *g, CK_OBJECT_HANDLE base, const CK_ATTRIBUTE *t, CK_ULONG n,
               struct dtmpl *d, obj_origin *origin, EVP_PKEY **bk)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    struct mod_object *o = NULL;
    const ks_attr *dt;
    CK_RV rv;

    mod_lock();
    rv = store_lookup_relock(g->hs, base, &s, &o, &locked);
    if (rv == CKR_OBJECT_HANDLE_INVALID)
        rv = CKR_KEY_HANDLE_INVALID;
    if (rv != CKR_OK)
        goto done;
    if (obj_ulong(o->attrs, CKA_CLASS, CK_UNAVAILABLE_INFORMATION) != CKO_PRIVATE_KEY ||
        obj_ulong(o->attrs, CKA_KEY_TYPE, CK_UNAVAILABLE_INFORMATION) != CKK_EC) {
        rv = CKR_KEY_TYPE_INCONSISTENT;
        goto done;
    }
    if (!obj_bool(o->attrs, CKA_DERIVE, CK_FALSE)) {
        rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
        goto done;
    }
    if (!mech_allowed(o->attrs, CKM_ECDH1_DERIVE)) {
        rv = CKR_MECHANISM_INVALID;
        goto done;
    }
    dt = obj_find(o->attrs, CKA_DERIVE_TEMPLATE);
    if (dt != NULL && dt->len > 0) {
        d->v = malloc(dt->len);
        if (d->v == NULL) {
            rv = CKR_HOST_MEMORY;
            goto done;
        }
        memcpy(d->v, dt->value, dt->len);
        d->len = dt->len;
    }
    rv = obj_tmpl_merge(t, n, d->v, d->len, &d->t, &d->n);
    if (rv == CKR_OK)
        rv = store_write_check_inlock(s, tbool(d->t, d->n, CKA_TOKEN, CK_FALSE),
                                      tbool(d->t, d->n, CKA_PRIVATE, CK_TRUE));
    if (rv != CKR_OK)
        goto done;
    memset(origin, 0, sizeof(*origin));
    origin->gen_mech = CK_UNAVAILABLE_INFORMATION;
    origin->base_always_sensitive = obj_bool(o->attrs, CKA_ALWAYS_SENSITIVE, CK_FALSE);
    origin->base_never_extractable = obj_bool(o->attrs, CKA_NEVER_EXTRACTABLE, CK_FALSE);
    rv = cache_pkey_inlock(o, bk); /* the object's cached key, a reference */
    if (rv == CKR_OK)
        gen_mark_inlock(g, s);
done:
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

/* The compute step of C_DeriveKey (no lock): ECDH with the peer's public
 * value, then the KDF (or Z itself), into M's CKA_VALUE and CKA_VALUE_LEN. */
static CK_RV
derive_compute(EVP_PKEY *bk, const CK_ECDH1_DERIVE_PARAMS *prm, const char *md, int have_vlen,
               CK_ULONG vlen, struct mat *m)
{
    EVP_PKEY *peer = NULL;
    unsigned char *z = NULL, *v;
    size_t zlen = 0;
    CK_RV rv;

    rv = ecdh_peer(bk, prm->pPublicData, prm->ulPublicDataLen, &peer);
    if (rv == CKR_OK)
        rv = ecdh_compute(bk, peer, &z, &zlen);
    if (rv != CKR_OK)
        goto done;
    if (md != NULL) {
        /* With a KDF the key is as long as asked, or one digest. */
        if (!have_vlen)
            vlen = (CK_ULONG)EVP_MD_get_size(EVP_get_digestbyname(md));
        v = mat_add(m, CKA_VALUE, vlen, 1);
        rv = v == NULL ? CKR_HOST_MEMORY
                       : x963_kdf(md, z, zlen, prm->pSharedData, prm->ulSharedDataLen, v, vlen);
    } else {
        /* CKD_NULL: Z itself; a shorter key keeps Z's last VALUE_LEN bytes
         * (as NSS and SoftHSMv2 do; docs/objects.md). */
        if (!have_vlen)
            vlen = (CK_ULONG)zlen;
        if (vlen > zlen)
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
        else
            rv = mat_copy(m, CKA_VALUE, z + (zlen - vlen), vlen, 1);
    }
    if (rv == CKR_OK)
        rv = mat_copy(m, CKA_VALUE_LEN, &vlen, sizeof(vlen), 0);
done:
    if (z != NULL)
        sodium_free(z);
    EVP_PKEY_free(peer);
    return rv;
}

CK_RV
mod_C_DeriveKey(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE base,
                CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR key)
{
    struct gen g = {hs, NULL};
    const char *md = NULL;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ULONG vlen = 0;
    int have_vlen = 0;
    obj_policy pol;
    obj_origin origin;
    EVP_PKEY *bk = NULL;
    struct dtmpl d = {NULL, 0, NULL, 0};
    struct mat m;
    mod_attrs *attrs = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL || key == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = obj_template_check(t, n);
    if (rv == CKR_OK)
        rv = session_policy(hs, &pol);
    if (rv == CKR_OK)
        rv = derive_mech_check(mech, &md);
    if (rv == CKR_OK)
        rv = derive_prepare(&g, base, t, n, &d, &origin, &bk);
    if (rv != CKR_OK) {
        free(d.v);
        free(d.t);
        return rv;
    }

    /* Without the lock from here to the store; D.t is the caller's
     * template with the derive template's attributes. */
    rv = derive_check(d.t, d.n, &pol, &kt, &vlen, &have_vlen);
    mat_init(&m, CKO_SECRET_KEY, kt);
    if (rv == CKR_OK)
        rv = derive_compute(bk, mech->pParameter, md, have_vlen, vlen, &m);
    if (rv == CKR_OK)
        rv = obj_from_generated(d.t, d.n, m.a, m.n, &origin, &pol, &attrs);
    if (rv == CKR_OK)
        rv = gen_store(&g, attrs, NULL, NULL, 0, key, NULL);
    else
        gen_abandon(&g);
    mat_free(&m);
    EVP_PKEY_free(bk);
    free(d.v);
    free(d.t);
    ERR_clear_error();
    return rv;
}
