/*
 * wrap.c — C_WrapKey and C_UnwrapKey: AES key wrap (RFC 3394, RFC 5649) of
 * secret and private keys, RSA-OAEP of secret keys, with the wrap policy
 * below and the keys' CKA_WRAP_TEMPLATE / CKA_UNWRAP_TEMPLATE.
 *
 * Locking (mod_int.h) as in keygen.c: the keys are looked up and checked
 * under the lock, their values copied into locked memory; the wrap or
 * unwrap runs without it; an unwrapped key is stored through gen.c.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "gen_int.h"
#include "op_int.h"

/* ---- C_WrapKey / C_UnwrapKey: AES key wrap (RFC 3394, RFC 5649) ----------- */

/*
 * Wrap policy (docs/threat-model.md, "Key wrapping"):
 *  - a wrapping or unwrapping key must have CKA_ENCRYPT and CKA_DECRYPT
 *    FALSE, and on secret keys those two only ever change TRUE -> FALSE
 *    (obj_attr.c), so a key that wraps can never decrypt (or encrypt a
 *    chosen key value to unwrap);
 *  - only CKA_EXTRACTABLE keys are wrapped (CKR_KEY_UNEXTRACTABLE), and a
 *    key with CKA_WRAP_WITH_TRUSTED only under a CKA_TRUSTED key
 *    (CKR_KEY_NOT_WRAPPABLE); CKA_TRUSTED is set by the SO only;
 *  - an unwrapped key is never CKA_ALWAYS_SENSITIVE nor
 *    CKA_NEVER_EXTRACTABLE (its value has been outside the token) and its
 *    CKA_SENSITIVE / CKA_EXTRACTABLE latch as for any key.
 * Secret keys are wrapped as their value, private keys as PKCS#8
 * PrivateKeyInfo (DER), as SoftHSMv2 and NSS do; CKM_AES_KEY_WRAP takes
 * multiples of 8 bytes only, CKM_AES_KEY_WRAP_PAD any length.
 */

#define WRAP_MAX (64 * 1024) /* longest wrapped key taken (PKCS#8 of RSA-16384 fits) */

struct wrapkey {
    unsigned char *kek; /* sodium_malloc'd copy of the AES wrapping key */
    size_t kek_len;
    unsigned char *val; /* the key to wrap: secret value (sodium_malloc'd) */
    size_t val_len;
    EVP_PKEY *pkey; /* ... or the private key (a reference) */
    /* CKM_RSA_PKCS_OAEP */
    EVP_PKEY *rsa;        /* the wrapping public / unwrapping private key (a reference) */
    int md, mgf;          /* MD_* of hashAlg and of MGF1 */
    unsigned char *label; /* the OAEP label (OPENSSL_malloc'd) */
    size_t label_len;
    /* C_UnwrapKey: a copy of the unwrapping key's CKA_UNWRAP_TEMPLATE, and
     * the caller's template merged with it (pointing into both) */
    unsigned char *utmpl;
    size_t utmpl_len;
    CK_ATTRIBUTE *t;
    CK_ULONG n;
};

static void
wrapkey_clear(struct wrapkey *w)
{
    if (w->kek != NULL)
        sodium_free(w->kek);
    if (w->val != NULL)
        sodium_free(w->val);
    EVP_PKEY_free(w->pkey);
    EVP_PKEY_free(w->rsa);
    OPENSSL_free(w->label);
    free(w->utmpl);
    free(w->t);
    memset(w, 0, sizeof(*w));
}

static unsigned char *
secure_copy(const unsigned char *v, size_t len)
{
    unsigned char *p;

    if (sodium_init() < 0 || (p = sodium_malloc(len ? len : 1)) == NULL)
        return NULL;
    if (len > 0)
        memcpy(p, v, len);
    return p;
}

static CK_RV
wrap_mech_check(const CK_MECHANISM *mech, struct wrapkey *w)
{
    if (mech->mechanism == CKM_RSA_PKCS_OAEP) {
        const CK_RSA_PKCS_OAEP_PARAMS *op = mech->pParameter;
        if (op == NULL || mech->ulParameterLen != sizeof(*op))
            return CKR_MECHANISM_PARAM_INVALID;
        w->md = md_by_mech(op->hashAlg);
        w->mgf = md_by_mgf(op->mgf);
        if (w->md == MD_NONE || w->mgf == MD_NONE ||
            (op->source != CKZ_DATA_SPECIFIED && !(op->source == 0 && op->ulSourceDataLen == 0)) ||
            (op->ulSourceDataLen > 0 && (op->pSourceData == NULL || op->ulSourceDataLen > 0x10000)))
            return CKR_MECHANISM_PARAM_INVALID;
        if (op->ulSourceDataLen > 0) {
            w->label = OPENSSL_memdup(op->pSourceData, op->ulSourceDataLen);
            if (w->label == NULL)
                return CKR_HOST_MEMORY;
            w->label_len = op->ulSourceDataLen;
        }
        return CKR_OK;
    }
    if (mech->mechanism != CKM_AES_KEY_WRAP && mech->mechanism != CKM_AES_KEY_WRAP_PAD)
        return CKR_MECHANISM_INVALID;
    /* The default IV of each RFC only. */
    if (mech->ulParameterLen != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    return CKR_OK;
}

/* The RSA key of CKM_RSA_PKCS_OAEP: a public key that wraps, a private
 * key that unwraps and does not decrypt (the wrap policy) nor needs a
 * context-specific login. */
static CK_RV
wrap_rsa_inlock(struct mod_object *o, int unwrap, struct wrapkey *w)
{
    if (obj_ulong(o->attrs, CKA_CLASS, CK_UNAVAILABLE_INFORMATION) !=
            (unwrap ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY) ||
        obj_ulong(o->attrs, CKA_KEY_TYPE, CK_UNAVAILABLE_INFORMATION) != CKK_RSA)
        return unwrap ? CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT : CKR_WRAPPING_KEY_TYPE_INCONSISTENT;
    if (!obj_bool(o->attrs, unwrap ? CKA_UNWRAP : CKA_WRAP, CK_FALSE) ||
        (unwrap && (obj_bool(o->attrs, CKA_DECRYPT, CK_FALSE) ||
                    obj_bool(o->attrs, CKA_ALWAYS_AUTHENTICATE, CK_FALSE))))
        return CKR_KEY_FUNCTION_NOT_PERMITTED;
    if (!mech_allowed(o->attrs, CKM_RSA_PKCS_OAEP))
        return CKR_MECHANISM_INVALID;
    return cache_pkey_inlock(o, &w->rsa);
}

/* The wrapping (UNWRAP: unwrapping) key O, checked, its value copied. */
static CK_RV
wrap_kek_inlock(struct mod_object *o, CK_MECHANISM_TYPE mech, int unwrap, struct wrapkey *w)
{
    const ks_attr *v = obj_find(o->attrs, CKA_VALUE);

    if (mech == CKM_RSA_PKCS_OAEP)
        return wrap_rsa_inlock(o, unwrap, w);
    if (obj_ulong(o->attrs, CKA_CLASS, CK_UNAVAILABLE_INFORMATION) != CKO_SECRET_KEY ||
        obj_ulong(o->attrs, CKA_KEY_TYPE, CK_UNAVAILABLE_INFORMATION) != CKK_AES)
        return unwrap ? CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT : CKR_WRAPPING_KEY_TYPE_INCONSISTENT;
    if (!obj_bool(o->attrs, unwrap ? CKA_UNWRAP : CKA_WRAP, CK_FALSE) ||
        obj_bool(o->attrs, CKA_ENCRYPT, CK_FALSE) || obj_bool(o->attrs, CKA_DECRYPT, CK_FALSE))
        return CKR_KEY_FUNCTION_NOT_PERMITTED;
    if (!mech_allowed(o->attrs, mech))
        return CKR_MECHANISM_INVALID;
    if (v == NULL || (v->len != 16 && v->len != 24 && v->len != 32))
        return unwrap ? CKR_UNWRAPPING_KEY_SIZE_RANGE : CKR_WRAPPING_KEY_SIZE_RANGE;
    w->kek = secure_copy(v->value, v->len);
    if (w->kek == NULL)
        return CKR_HOST_MEMORY;
    w->kek_len = v->len;
    return CKR_OK;
}

/* Both keys of C_WrapKey, under the lock. */
static CK_RV
wrap_prepare(CK_SESSION_HANDLE hs, CK_MECHANISM_TYPE mech, CK_OBJECT_HANDLE hw, CK_OBJECT_HANDLE hk,
             struct wrapkey *w)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    struct mod_object *ow = NULL, *ok = NULL;
    CK_OBJECT_CLASS cls;
    CK_RV rv;

    mod_lock();
    rv = store_lookup_relock(hs, hw, &s, &ow, &locked);
    if (rv == CKR_OBJECT_HANDLE_INVALID)
        rv = CKR_WRAPPING_KEY_HANDLE_INVALID;
    if (rv == CKR_OK) {
        rv = cache_lookup_inlock(s->tok, hk, &ok);
        if (rv == CKR_OBJECT_HANDLE_INVALID)
            rv = CKR_KEY_HANDLE_INVALID;
    }
    if (rv == CKR_OK)
        rv = wrap_kek_inlock(ow, mech, 0, w);
    if (rv != CKR_OK)
        goto done;
    cls = obj_ulong(ok->attrs, CKA_CLASS, CK_UNAVAILABLE_INFORMATION);
    if (cls != CKO_SECRET_KEY && cls != CKO_PRIVATE_KEY) {
        rv = cls == CKO_PUBLIC_KEY ? CKR_KEY_NOT_WRAPPABLE : CKR_KEY_HANDLE_INVALID;
        goto done;
    }
    if (!obj_bool(ok->attrs, CKA_EXTRACTABLE, CK_FALSE)) {
        rv = CKR_KEY_UNEXTRACTABLE;
        goto done;
    }
    /* CKA_WRAP_WITH_TRUSTED only under a trusted key; the wrapping key's
     * CKA_WRAP_TEMPLATE names the keys it may wrap (3.0 section 4.8). */
    if ((obj_bool(ok->attrs, CKA_WRAP_WITH_TRUSTED, CK_FALSE) &&
         !obj_bool(ow->attrs, CKA_TRUSTED, CK_FALSE)) ||
        !obj_tmpl_match(ok->attrs, obj_find(ow->attrs, CKA_WRAP_TEMPLATE))) {
        rv = CKR_KEY_NOT_WRAPPABLE;
        goto done;
    }
    if (cls == CKO_SECRET_KEY) {
        const ks_attr *v = obj_find(ok->attrs, CKA_VALUE);
        if (v == NULL) {
            rv = CKR_KEY_NOT_WRAPPABLE;
            goto done;
        }
        w->val = secure_copy(v->value, v->len);
        if (w->val == NULL)
            rv = CKR_HOST_MEMORY;
        w->val_len = v->len;
    } else {
        rv = cache_pkey_inlock(ok, &w->pkey);
    }
done:
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

/* AES key wrap of IN under KEK (ENC) or unwrap into OUT (room for INLEN + 8
 * bytes); *OUTLEN the result's length. */
static CK_RV
aes_wrap(CK_MECHANISM_TYPE mech, const unsigned char *kek, size_t keklen, int enc,
         const unsigned char *in, size_t inlen, unsigned char *out, size_t *outlen)
{
    const EVP_CIPHER *c = sym_cipher(mech == CKM_AES_KEY_WRAP ? "WRAP" : "WRAP-PAD", keklen);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0;
    CK_RV rv = CKR_OK;

    if (c == NULL || ctx == NULL) {
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    if (EVP_CipherInit_ex2(ctx, c, kek, NULL, enc, NULL) != 1) {
        rv = CKR_FUNCTION_FAILED;
        goto done;
    }
    if (EVP_CipherUpdate(ctx, out, &l1, in, (int)inlen) != 1 ||
        EVP_CipherFinal_ex(ctx, out + l1, &l2) != 1) {
        rv = enc ? CKR_FUNCTION_FAILED : CKR_WRAPPED_KEY_INVALID;
        goto done;
    }
    *outlen = (size_t)l1 + (size_t)l2;
done:
    EVP_CIPHER_CTX_free(ctx);
    return rv;
}

/* RSA-OAEP encryption (ENC) or decryption of IN with W's key and
 * parameters into OUT (*OUTLEN: its room, then the result's length). */
static CK_RV
rsa_oaep(const struct wrapkey *w, int enc, const unsigned char *in, size_t inlen,
         unsigned char *out, size_t *outlen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, w->rsa, NULL);
    unsigned char *label = NULL;
    CK_RV rv = CKR_OK;
    int ok;

    if (ctx == NULL)
        return CKR_HOST_MEMORY;
    ok = (enc ? EVP_PKEY_encrypt_init(ctx) : EVP_PKEY_decrypt_init(ctx)) == 1 &&
         EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md_get(w->md)) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md_get(w->mgf)) == 1;
    if (ok && w->label_len > 0) {
        label = OPENSSL_memdup(w->label, w->label_len);
        ok = label != NULL && EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, label, (int)w->label_len) == 1;
        if (!ok)
            OPENSSL_free(label);
    }
    if (!ok)
        rv = CKR_FUNCTION_FAILED;
    else if ((enc ? EVP_PKEY_encrypt(ctx, out, outlen, in, inlen)
                  : EVP_PKEY_decrypt(ctx, out, outlen, in, inlen)) != 1)
        rv = enc ? CKR_FUNCTION_FAILED : CKR_WRAPPED_KEY_INVALID;
    EVP_PKEY_CTX_free(ctx);
    return rv;
}

CK_RV
mod_C_WrapKey(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wkey,
              CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    struct wrapkey w;
    unsigned char *der = NULL, *res = NULL;
    const unsigned char *in;
    size_t inlen, need, got = 0;
    int dlen = 0;
    CK_RV rv;

    memset(&w, 0, sizeof(w));
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL || outlen == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = wrap_mech_check(mech, &w);
    if (rv != CKR_OK) {
        wrapkey_clear(&w);
        return gen_session_rv(hs, rv);
    }
    rv = wrap_prepare(hs, mech->mechanism, wkey, key, &w);
    if (rv != CKR_OK)
        goto done;
    /* Without the lock: the key's bytes, then the wrap. */
    if (w.pkey != NULL && mech->mechanism == CKM_RSA_PKCS_OAEP) {
        rv = CKR_KEY_NOT_WRAPPABLE; /* secret keys only under RSA */
        goto done;
    }
    if (w.pkey != NULL) {
        PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(w.pkey);
        dlen = p8 != NULL ? i2d_PKCS8_PRIV_KEY_INFO(p8, &der) : 0;
        PKCS8_PRIV_KEY_INFO_free(p8);
        if (dlen <= 0) {
            rv = CKR_KEY_NOT_WRAPPABLE;
            goto done;
        }
        in = der;
        inlen = (size_t)dlen;
    } else {
        in = w.val;
        inlen = w.val_len;
    }
    if (mech->mechanism == CKM_RSA_PKCS_OAEP) {
        /* RFC 8017 section 7.1.1: at most k - 2hLen - 2 bytes. */
        need = (size_t)EVP_PKEY_get_size(w.rsa);
        if (need < 2 * md_info(w.md)->len + 2 || inlen > need - 2 * md_info(w.md)->len - 2) {
            rv = CKR_KEY_SIZE_RANGE;
            goto done;
        }
    } else if (mech->mechanism == CKM_AES_KEY_WRAP) {
        if (inlen < 16 || inlen % 8 != 0) {
            rv = CKR_KEY_SIZE_RANGE;
            goto done;
        }
        need = inlen + 8;
    } else {
        need = (inlen + 7) / 8 * 8 + 8;
    }
    if (inlen > WRAP_MAX) {
        rv = CKR_KEY_SIZE_RANGE;
        goto done;
    }
    if (out == NULL) {
        *outlen = (CK_ULONG)need;
        goto done;
    }
    if (*outlen < need) {
        *outlen = (CK_ULONG)need;
        rv = CKR_BUFFER_TOO_SMALL;
        goto done;
    }
    res = OPENSSL_malloc(need + 16);
    if (res == NULL) {
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    got = need + 16;
    rv = mech->mechanism == CKM_RSA_PKCS_OAEP
             ? rsa_oaep(&w, 1, in, inlen, res, &got)
             : aes_wrap(mech->mechanism, w.kek, w.kek_len, 1, in, inlen, res, &got);
    if (rv == CKR_OK && got != need)
        rv = CKR_GENERAL_ERROR;
    if (rv == CKR_OK) {
        memcpy(out, res, got);
        *outlen = (CK_ULONG)got;
    }
done:
    OPENSSL_free(res); /* ciphertext only */
    if (der != NULL)
        OPENSSL_clear_free(der, (size_t)dlen);
    wrapkey_clear(&w);
    ERR_clear_error();
    return rv;
}

/* The unwrapping key (under the lock), its CKA_UNWRAP_TEMPLATE merged
 * into the caller's template T (W->t, W->n), and the write rules for the
 * new key; marks the token busy (gen_mark_inlock). */
static CK_RV
unwrap_prepare(struct gen *g, CK_MECHANISM_TYPE mech, CK_OBJECT_HANDLE hu, const CK_ATTRIBUTE *t,
               CK_ULONG n, struct wrapkey *w)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    struct mod_object *o = NULL;
    const ks_attr *ut;
    CK_RV rv;

    mod_lock();
    rv = store_lookup_relock(g->hs, hu, &s, &o, &locked);
    if (rv == CKR_OBJECT_HANDLE_INVALID)
        rv = CKR_UNWRAPPING_KEY_HANDLE_INVALID;
    if (rv == CKR_OK)
        rv = wrap_kek_inlock(o, mech, 1, w);
    if (rv != CKR_OK)
        goto done;
    ut = obj_find(o->attrs, CKA_UNWRAP_TEMPLATE);
    if (ut != NULL && ut->len > 0) {
        w->utmpl = malloc(ut->len); /* a template is public */
        if (w->utmpl == NULL) {
            rv = CKR_HOST_MEMORY;
            goto done;
        }
        memcpy(w->utmpl, ut->value, ut->len);
        w->utmpl_len = ut->len;
    }
    rv = obj_tmpl_merge(t, n, w->utmpl, w->utmpl_len, &w->t, &w->n);
    if (rv == CKR_OK)
        rv = store_write_check_inlock(s, tbool(w->t, w->n, CKA_TOKEN, CK_FALSE),
                                      tbool(w->t, w->n, CKA_PRIVATE, CK_TRUE));
    if (rv == CKR_OK)
        gen_mark_inlock(g, s);
done:
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

/* A private key's material from PKCS#8 DER (the public half is dropped). */
static CK_RV
unwrap_private(const unsigned char *der, size_t len, CK_KEY_TYPE want, struct mat *prv)
{
    const unsigned char *p = der;
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
    EVP_PKEY *pk = p8 != NULL && p == der + len ? EVP_PKCS82PKEY(p8) : NULL;
    struct kp_req r;
    struct mat pub;
    unsigned char id[SHA_DIGEST_LENGTH], *oid = NULL;
    ASN1_OBJECT *obj = NULL;
    int olen = 0;
    CK_ATTRIBUTE params;
    CK_RV rv = CKR_OK;

    memset(&r, 0, sizeof(r));
    mat_init(&pub, CKO_PUBLIC_KEY, CKK_RSA);
    if (pk == NULL) {
        rv = CKR_WRAPPED_KEY_INVALID;
        goto done;
    }
    if (EVP_PKEY_is_a(pk, "RSA")) {
        r.kt = CKK_RSA;
    } else if (EVP_PKEY_is_a(pk, "EC")) {
        char name[64];
        r.kt = CKK_EC;
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name),
                                           NULL) != 1) {
            rv = CKR_WRAPPED_KEY_INVALID;
            goto done;
        }
        r.nid = OBJ_sn2nid(name);
        if (r.nid == NID_undef)
            r.nid = EC_curve_nist2nid(name);
    } else if (EVP_PKEY_is_a(pk, "ED25519") || EVP_PKEY_is_a(pk, "ED448")) {
        r.kt = CKK_EC_EDWARDS;
        r.nid = EVP_PKEY_is_a(pk, "ED25519") ? NID_ED25519 : NID_ED448;
    } else {
        rv = CKR_WRAPPED_KEY_INVALID; /* a key type the token does not hold */
        goto done;
    }
    if (want != CK_UNAVAILABLE_INFORMATION && want != r.kt) {
        rv = CKR_TEMPLATE_INCONSISTENT;
        goto done;
    }
    if (r.kt != CKK_RSA) {
        obj = OBJ_nid2obj(r.nid);
        olen = obj != NULL ? i2d_ASN1_OBJECT(obj, &oid) : 0;
        if (olen <= 0) {
            rv = CKR_WRAPPED_KEY_INVALID;
            goto done;
        }
        params.type = CKA_EC_PARAMS;
        params.pValue = oid;
        params.ulValueLen = (CK_ULONG)olen;
        r.params = &params;
    }
    prv->kt = r.kt;
    rv = kp_material(&r, pk, &pub, prv, id);
    if (rv == CKR_OK)
        rv = mat_copy(prv, CKA_ID, id, sizeof(id), 0);
done:
    mat_free(&pub);
    OPENSSL_free(oid);
    EVP_PKEY_free(pk); /* cleanses */
    PKCS8_PRIV_KEY_INFO_free(p8);
    return rv;
}

/* Drop CKA_ID from M when the template gives one (it wins). */
static void
mat_drop_id(struct mat *m, const CK_ATTRIBUTE *t, CK_ULONG n)
{
    if (tfind(t, n, CKA_ID) == NULL || m->n == 0 || m->a[m->n - 1].type != CKA_ID)
        return;
    m->n--;
    OPENSSL_free(m->buf[m->n]);
    m->buf[m->n] = NULL;
}

/* The checks of C_UnwrapKey that need no lock: arguments, mechanism; *POL
 * what the session's login allows. */
static CK_RV
unwrap_args(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_BYTE_PTR in, CK_ULONG inlen,
            CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR key, obj_policy *pol,
            struct wrapkey *w)
{
    CK_RV rv;

    if (mech == NULL || key == NULL || (in == NULL && inlen > 0))
        return CKR_ARGUMENTS_BAD;
    rv = obj_template_check(t, n);
    if (rv != CKR_OK)
        return rv;
    rv = wrap_mech_check(mech, w);
    if (rv == CKR_OK)
        rv = session_policy(hs, pol);
    if (rv != CKR_OK)
        return rv == CKR_SESSION_HANDLE_INVALID ? rv : gen_session_rv(hs, rv);
    return CKR_OK;
}

/* The wrapped key's length for MECH. */
static CK_RV
unwrap_len(CK_MECHANISM_TYPE mech, CK_ULONG inlen)
{
    if (mech != CKM_RSA_PKCS_OAEP &&
        (inlen < 16 || inlen % 8 != 0 || (mech == CKM_AES_KEY_WRAP && inlen < 24)))
        return CKR_WRAPPED_KEY_LEN_RANGE;
    if (inlen == 0 || inlen > WRAP_MAX + 16)
        return CKR_WRAPPED_KEY_LEN_RANGE;
    return CKR_OK;
}

/* The new key's class and type, from the merged template T: a secret key
 * needs its key type, a private key's comes from the wrapped key. */
static CK_RV
unwrap_class(const CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_CLASS *cls, CK_KEY_TYPE *kt)
{
    *cls = tulong(t, n, CKA_CLASS, CK_UNAVAILABLE_INFORMATION);
    *kt = tulong(t, n, CKA_KEY_TYPE, CK_UNAVAILABLE_INFORMATION);
    if (tfind(t, n, CKA_CLASS) == NULL ||
        (*cls == CKO_SECRET_KEY && tfind(t, n, CKA_KEY_TYPE) == NULL))
        return CKR_TEMPLATE_INCOMPLETE;
    if (*cls != CKO_SECRET_KEY && *cls != CKO_PRIVATE_KEY)
        return CKR_TEMPLATE_INCONSISTENT;
    if (*cls == CKO_SECRET_KEY && *kt != CKK_AES && *kt != CKK_GENERIC_SECRET)
        return CKR_TEMPLATE_INCONSISTENT;
    return CKR_OK;
}

/* The compute step (no lock): decrypt IN with W's key, then the new key's
 * material of class CLS and type KT into M. */
static CK_RV
unwrap_compute(CK_MECHANISM_TYPE mech, const struct wrapkey *w, const unsigned char *in,
               size_t inlen, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, struct mat *m)
{
    unsigned char *plain = secure_copy(in, inlen); /* room for the plaintext (shorter) */
    size_t plen = 0;
    CK_RV rv;

    if (plain == NULL) {
        rv = CKR_HOST_MEMORY;
    } else if (mech == CKM_RSA_PKCS_OAEP) {
        /* Exactly k bytes (RFC 8017 section 7.1.2). */
        plen = inlen;
        rv = inlen != (size_t)EVP_PKEY_get_size(w->rsa) ? CKR_WRAPPED_KEY_LEN_RANGE
                                                        : rsa_oaep(w, 0, in, inlen, plain, &plen);
    } else {
        rv = aes_wrap(mech, w->kek, w->kek_len, 0, in, inlen, plain, &plen);
    }
    if (rv == CKR_OK && cls == CKO_SECRET_KEY) {
        CK_ULONG vlen = (CK_ULONG)plen;
        if (kt == CKK_AES && plen != 16 && plen != 24 && plen != 32)
            rv = CKR_WRAPPED_KEY_INVALID;
        if (rv == CKR_OK)
            rv = mat_copy(m, CKA_VALUE, plain, plen, 1);
        if (rv == CKR_OK)
            rv = mat_copy(m, CKA_VALUE_LEN, &vlen, sizeof(vlen), 0);
    } else if (rv == CKR_OK) {
        rv = unwrap_private(plain, plen, kt, m);
        if (rv == CKR_OK)
            mat_drop_id(m, w->t, w->n);
    }
    if (plain != NULL)
        sodium_free(plain);
    return rv;
}

CK_RV
mod_C_UnwrapKey(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE ukey, CK_BYTE_PTR in,
                CK_ULONG inlen, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR key)
{
    struct gen g = {hs, NULL};
    struct wrapkey w;
    obj_policy pol;
    obj_origin origin;
    struct mat m;
    mod_attrs *attrs = NULL;
    CK_OBJECT_CLASS cls = CK_UNAVAILABLE_INFORMATION;
    CK_KEY_TYPE kt = CK_UNAVAILABLE_INFORMATION;
    CK_RV rv;

    memset(&w, 0, sizeof(w));
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    rv = unwrap_args(hs, mech, in, inlen, t, n, key, &pol, &w);
    if (rv == CKR_OK)
        rv = unwrap_prepare(&g, mech->mechanism, ukey, t, n, &w);
    if (rv != CKR_OK) {
        wrapkey_clear(&w);
        return rv;
    }

    /* Without the lock from here to the store; W.t is the caller's
     * template with the unwrap template's attributes. */
    rv = unwrap_class(w.t, w.n, &cls, &kt);
    if (rv == CKR_OK)
        rv = unwrap_len(mech->mechanism, inlen);
    mat_init(&m, cls, kt);
    if (rv == CKR_OK)
        rv = unwrap_compute(mech->mechanism, &w, in, inlen, cls, kt, &m);
    /* Its value has been outside the token: never "always sensitive" nor
     * "never extractable", and not local. */
    memset(&origin, 0, sizeof(origin));
    origin.gen_mech = CK_UNAVAILABLE_INFORMATION;
    if (rv == CKR_OK)
        rv = obj_from_generated(w.t, w.n, m.a, m.n, &origin, &pol, &attrs);
    if (rv == CKR_OK)
        rv = gen_store(&g, attrs, NULL, NULL, 0, key, NULL);
    else
        gen_abandon(&g);
    mat_free(&m);
    wrapkey_clear(&w);
    ERR_clear_error();
    return rv;
}
