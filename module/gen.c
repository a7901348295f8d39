/*
 * gen.c — what key generation (keygen.c) and derivation (derive.c) share:
 * the prepare -> compute -> store sequence around a computation that runs
 * without the global lock, the caller's template helpers, and the material
 * (struct mat) a mechanism hands to obj_from_generated. gen_int.h declares
 * it.
 *
 * Secrets: private key values leave OpenSSL through EVP_PKEY_todata (whose
 * secure parameter block is cleansed on free) into secure BIGNUMs and then
 * into sodium_malloc'd buffers (mat_add, mat_bn), which the object layer
 * copies once into the object's locked block; every buffer is wiped when
 * freed (sodium_free, BN_clear_free).
 */
#include <limits.h>
#include <stddef.h>
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

CK_RV
session_policy(CK_SESSION_HANDLE hs, obj_policy *pol)
{
    struct mod_session *s = NULL;
    CK_RV rv;

    mod_lock();
    rv = session_lookup_inlock(hs, &s);
    if (rv == CKR_OK)
        *pol = store_policy_inlock(s);
    mod_unlock();
    return rv;
}

/* ---- templates ------------------------------------------------------------ */

/* First entry of TYPE in a caller's template (obj_gen_check has already
 * refused conflicting duplicates and malformed values). */
const CK_ATTRIBUTE *
tfind(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
    for (CK_ULONG i = 0; i < n; i++)
        if (t[i].type == type)
            return &t[i];
    return NULL;
}

CK_BBOOL
tbool(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_BBOOL dflt)
{
    const CK_ATTRIBUTE *a = tfind(t, n, type);

    if (a == NULL || a->ulValueLen != sizeof(CK_BBOOL))
        return dflt;
    return *(const CK_BBOOL *)a->pValue ? CK_TRUE : CK_FALSE;
}

CK_ULONG
tulong(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_ULONG dflt)
{
    const CK_ATTRIBUTE *a = tfind(t, n, type);
    CK_ULONG v;

    if (a == NULL || a->ulValueLen != sizeof(CK_ULONG))
        return dflt;
    memcpy(&v, a->pValue, sizeof(v));
    return v;
}

/* ---- prepare (locked) -> compute (unlocked) -> store (relocked) ---------- */

/*
 * Key generation and derivation compute without the global lock; the
 * sequence around the computation is written once, here:
 *   prepare (gen_prepare, derive_prepare): under the lock, the session
 *     exists and the write rules allow the new objects (an early check);
 *     then gen_mark_inlock marks the session's token busy (C_Finalize waits
 *     for it and the token stays).
 *   compute: the caller, without the lock.
 *   store (gen_store): takes the lock, ends the busy mark, looks the session
 *     up again by handle with its token lock (closed meanwhile:
 *     CKR_SESSION_CLOSED) and stores through store.c, which checks the write
 *     rules again (the login may have changed meanwhile) and writes with the
 *     global lock released. Or gen_abandon when the computation failed.
 */

void
gen_mark_inlock(struct gen *g, struct mod_session *s)
{
    g->busy = s->tok;
    g->busy->busy++;
}

/* The session may store objects with these templates' CKA_TOKEN/CKA_PRIVATE
 * (defaults as the object layer's: keys private unless public keys). */
CK_RV
gen_prepare(struct gen *g, const CK_ATTRIBUTE *t1, CK_ULONG n1, CK_BBOOL priv1,
            const CK_ATTRIBUTE *t2, CK_ULONG n2, CK_BBOOL priv2)
{
    struct mod_session *s = NULL;
    CK_RV rv;

    mod_lock();
    rv = session_lookup_inlock(g->hs, &s);
    if (rv == CKR_OK)
        rv = store_write_check_inlock(s, tbool(t1, n1, CKA_TOKEN, CK_FALSE),
                                      tbool(t1, n1, CKA_PRIVATE, priv1));
    if (rv == CKR_OK && t2 != NULL)
        rv = store_write_check_inlock(s, tbool(t2, n2, CKA_TOKEN, CK_FALSE),
                                      tbool(t2, n2, CKA_PRIVATE, priv2));
    if (rv == CKR_OK)
        gen_mark_inlock(g, s);
    mod_unlock();
    return rv;
}

/* Store A (and B, when not NULL: both or neither), both always taken;
 * pending for credential CRED when CRED is not NULL. */
CK_RV
gen_store(struct gen *g, mod_attrs *a, mod_attrs *b, const unsigned char *cred, size_t cred_len,
          CK_OBJECT_HANDLE *ha, CK_OBJECT_HANDLE *hb)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    CK_RV rv;

    mod_lock();
    g->busy->busy--;
    g->busy = NULL;
    /* Closed meanwhile (2.40 section 5.1: "the session was closed during
     * the execution of the function"). The store writes with the token
     * lock and without the global lock (store.h). */
    if (session_enter_relock(g->hs, &s, &locked) != CKR_OK) {
        obj_free(a);
        obj_free(b);
        rv = CKR_SESSION_CLOSED;
        goto done;
    }
    if (b == NULL)
        rv = store_object_relock(s, a, cred, cred_len, ha);
    else
        rv = store_pair_relock(s, a, b, cred, cred_len, ha, hb);
done:
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

/* The computation failed: end the busy mark (if prepare set one). */
void
gen_abandon(struct gen *g)
{
    if (g->busy == NULL)
        return;
    mod_lock();
    g->busy->busy--;
    g->busy = NULL;
    mod_unlock();
}

/* ---- material: the values a mechanism hands to obj_from_generated -------- */

void
mat_init(struct mat *m, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt)
{
    memset(m, 0, sizeof(*m));
    m->cls = cls;
    m->kt = kt;
    m->a[0].type = CKA_CLASS;
    m->a[0].pValue = &m->cls;
    m->a[0].ulValueLen = sizeof(m->cls);
    m->a[1].type = CKA_KEY_TYPE;
    m->a[1].pValue = &m->kt;
    m->a[1].ulValueLen = sizeof(m->kt);
    m->n = 2;
}

void
mat_free(struct mat *m)
{
    for (CK_ULONG i = 0; i < m->n; i++) {
        if (m->buf[i] == NULL)
            continue;
        if (m->secret[i])
            sodium_free(m->buf[i]);
        else
            OPENSSL_free(m->buf[i]);
    }
    memset(m, 0, sizeof(*m));
}

/* A new value of LEN bytes for TYPE, to be filled by the caller. */
unsigned char *
mat_add(struct mat *m, CK_ATTRIBUTE_TYPE type, size_t len, int secret)
{
    unsigned char *p;

    if (m->n == MAT_MAX || len > ULONG_MAX)
        return NULL;
    if (secret) {
        if (sodium_init() < 0)
            return NULL;
        p = sodium_malloc(len ? len : 1);
    } else {
        p = OPENSSL_malloc(len ? len : 1);
    }
    if (p == NULL)
        return NULL;
    m->buf[m->n] = p;
    m->secret[m->n] = secret;
    m->a[m->n].type = type;
    m->a[m->n].pValue = p;
    m->a[m->n].ulValueLen = (CK_ULONG)len;
    m->n++;
    return p;
}

CK_RV
mat_copy(struct mat *m, CK_ATTRIBUTE_TYPE type, const void *v, size_t len, int secret)
{
    unsigned char *p = mat_add(m, type, len, secret);

    if (p == NULL)
        return CKR_HOST_MEMORY;
    if (len > 0)
        memcpy(p, v, len);
    return CKR_OK;
}

/* The value of TYPE in M (NULL when absent). */
const CK_ATTRIBUTE *
mat_get(const struct mat *m, CK_ATTRIBUTE_TYPE type)
{
    return tfind(m->a, m->n, type);
}

/* Big integer NAME of PARAMS (EVP_PKEY_todata) as TYPE: minimal big-endian
 * bytes, or left-padded to PAD bytes when PAD > 0. */
CK_RV
mat_bn(struct mat *m, CK_ATTRIBUTE_TYPE type, const OSSL_PARAM *params, const char *name,
       size_t pad, int secret)
{
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, name);
    BIGNUM *bn = secret ? BN_secure_new() : BN_new();
    unsigned char *v;
    size_t len;
    CK_RV rv = CKR_OK;

    if (bn == NULL) {
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    if (p == NULL || !OSSL_PARAM_get_BN(p, &bn) || BN_is_zero(bn)) {
        rv = CKR_GENERAL_ERROR;
        goto done;
    }
    len = (size_t)BN_num_bytes(bn);
    if (pad > 0) {
        if (len > pad) {
            rv = CKR_GENERAL_ERROR;
            goto done;
        }
        len = pad;
    }
    v = mat_add(m, type, len, secret);
    if (v == NULL || BN_bn2binpad(bn, v, (int)len) != (int)len)
        rv = CKR_HOST_MEMORY;
done:
    BN_clear_free(bn);
    return rv;
}

/* RAW as a DER OCTET STRING (CKA_EC_POINT's encoding). */
CK_RV
mat_octet_string(struct mat *m, CK_ATTRIBUTE_TYPE type, const unsigned char *raw, size_t len)
{
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    unsigned char *der = NULL;
    int n = 0;
    CK_RV rv;

    if (os == NULL || len > INT_MAX || !ASN1_OCTET_STRING_set(os, raw, (int)len) ||
        (n = i2d_ASN1_OCTET_STRING(os, &der)) <= 0)
        rv = CKR_HOST_MEMORY;
    else
        rv = mat_copy(m, type, der, (size_t)n, 0);
    ASN1_OCTET_STRING_free(os);
    OPENSSL_free(der);
    return rv;
}

/* Is MECH allowed by the key's CKA_ALLOWED_MECHANISMS (absent or empty: any)? */
int
mech_allowed(const mod_attrs *o, CK_MECHANISM_TYPE mech)
{
    const ks_attr *a = obj_find(o, CKA_ALLOWED_MECHANISMS);
    CK_MECHANISM_TYPE m;

    if (a == NULL || a->len == 0)
        return 1;
    for (size_t off = 0; off + sizeof(m) <= a->len; off += sizeof(m)) {
        memcpy(&m, a->value + off, sizeof(m));
        if (m == mech)
            return 1;
    }
    return 0;
}
