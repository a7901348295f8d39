/*
 * keygen.c — creating keys from mechanisms: C_GenerateKeyPair (RSA, EC,
 * EdDSA), C_DeriveKey (ECDH), and C_GenerateKey, C_WrapKey, C_UnwrapKey
 * (no mechanism: CKR_MECHANISM_INVALID after their argument checks).
 *
 * Locking (mod_int.h): the global lock is held only to look up the session
 * and the base key, to check the write rules early, and to store the result.
 * Key generation, the ECDH computation, the KDF and the object layer's checks
 * (the RSA pairwise check is not cheap) run without it, with the session's
 * token marked busy (so C_Finalize waits and the token stays); the session is
 * looked up again by handle before storing (it may have been closed), and the
 * write rules are checked again there (store.h), since the login may have
 * changed meanwhile. That sequence is written once: gen_prepare, gen_store,
 * gen_abandon below.
 *
 * Secrets: private key values leave OpenSSL through EVP_PKEY_todata (whose
 * secure parameter block is cleansed on free) into secure BIGNUMs and then
 * into sodium_malloc'd buffers, which the object layer copies once into the
 * object's locked block; every buffer is wiped when freed (sodium_free,
 * BN_clear_free, EVP_PKEY_free). docs/objects.md describes the objects made.
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

#include "mod_int.h"
#include "store.h"

/* CKM_RSA_PKCS_KEY_PAIR_GEN sizes (the mechanism table says the same). */
#define RSA_GEN_MIN_BITS 2048
#define RSA_GEN_MAX_BITS 8192
/* Longest key a KDF may produce (CKA_VALUE_LEN). */
#define DERIVE_MAX_LEN 1024

static CK_RV
op_none(CK_SESSION_HANDLE hs, CK_RV result)
{
    struct mod_session *s = NULL;
    CK_RV rv;

    mod_lock();
    rv = session_lookup_inlock(hs, &s);
    mod_unlock();
    return rv != CKR_OK ? rv : result;
}

/* Session HS exists; *POL what its login allows the object layer. */
static CK_RV
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
static const CK_ATTRIBUTE *
tfind(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
    for (CK_ULONG i = 0; i < n; i++)
        if (t[i].type == type)
            return &t[i];
    return NULL;
}

static CK_BBOOL
tbool(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_BBOOL dflt)
{
    const CK_ATTRIBUTE *a = tfind(t, n, type);

    if (a == NULL || a->ulValueLen != sizeof(CK_BBOOL))
        return dflt;
    return *(const CK_BBOOL *)a->pValue ? CK_TRUE : CK_FALSE;
}

static CK_ULONG
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
struct gen {
    CK_SESSION_HANDLE hs;
    struct mod_token *busy; /* marked busy by the prepare step, until store/abandon */
};

static void
gen_mark_inlock(struct gen *g, struct mod_session *s)
{
    g->busy = s->tok;
    g->busy->busy++;
}

/* The session may store objects with these templates' CKA_TOKEN/CKA_PRIVATE
 * (defaults as the object layer's: keys private unless public keys). */
static CK_RV
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
static CK_RV
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
static void
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

#define MAT_MAX 16

struct mat {
    CK_ATTRIBUTE a[MAT_MAX];
    unsigned char *buf[MAT_MAX]; /* owned values */
    int secret[MAT_MAX];         /* sodium_malloc'd (else OPENSSL_malloc'd) */
    CK_ULONG n;
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE kt;
};

static void
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

static void
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
static unsigned char *
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

static CK_RV
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
static const CK_ATTRIBUTE *
mat_get(const struct mat *m, CK_ATTRIBUTE_TYPE type)
{
    return tfind(m->a, m->n, type);
}

/* Big integer NAME of PARAMS (EVP_PKEY_todata) as TYPE: minimal big-endian
 * bytes, or left-padded to PAD bytes when PAD > 0. */
static CK_RV
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
static CK_RV
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

/* ---- C_GenerateKeyPair ----------------------------------------------------- */

/* What the public template asks the mechanism for. */
struct kp_req {
    CK_MECHANISM_TYPE mech;
    CK_KEY_TYPE kt;
    CK_ULONG bits;              /* RSA */
    int nid;                    /* EC / EdDSA curve */
    const CK_ATTRIBUTE *params; /* CKA_EC_PARAMS as given */
};

static CK_RV
kp_request(const CK_ATTRIBUTE *pubt, CK_ULONG pubn, struct kp_req *r)
{
    const CK_ATTRIBUTE *a;

    if (r->mech == CKM_RSA_PKCS_KEY_PAIR_GEN) {
        if (tfind(pubt, pubn, CKA_MODULUS_BITS) == NULL)
            return CKR_TEMPLATE_INCOMPLETE;
        r->bits = tulong(pubt, pubn, CKA_MODULUS_BITS, 0);
        if (r->bits < RSA_GEN_MIN_BITS || r->bits > RSA_GEN_MAX_BITS)
            return CKR_KEY_SIZE_RANGE;
        /* Only F4: every client asks for it, smaller ones are weak and
         * larger ones slow for no benefit (docs/objects.md). */
        a = tfind(pubt, pubn, CKA_PUBLIC_EXPONENT);
        if (a != NULL) {
            const unsigned char *v = a->pValue;
            CK_ULONG len = a->ulValueLen;
            while (len > 0 && v[0] == 0) {
                v++;
                len--;
            }
            if (len != 3 || memcmp(v, "\x01\x00\x01", 3) != 0)
                return CKR_ATTRIBUTE_VALUE_INVALID;
        }
        return CKR_OK;
    }
    /* EC and EdDSA: the curve comes from the public template (2.40 section
     * 2.3.5: CKA_EC_PARAMS is in the public key template). */
    a = tfind(pubt, pubn, CKA_EC_PARAMS);
    if (a == NULL)
        return CKR_TEMPLATE_INCOMPLETE;
    r->params = a;
    return obj_ec_curve(a->pValue, a->ulValueLen, r->mech == CKM_EC_EDWARDS_KEY_PAIR_GEN, &r->nid);
}

static CK_RV
kp_generate(const struct kp_req *r, EVP_PKEY **out)
{
    const char *alg;
    EVP_PKEY_CTX *ctx;
    CK_RV rv = CKR_OK;

    *out = NULL;
    if (r->kt == CKK_RSA)
        alg = OBJ_KT_RSA;
    else if (r->kt == CKK_EC)
        alg = OBJ_KT_EC;
    else
        alg = r->nid == NID_ED25519 ? OBJ_KT_ED25519 : OBJ_KT_ED448;
    ctx = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL);
    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) != 1) {
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    /* RSA: OpenSSL's default public exponent is 65537. */
    if ((r->kt == CKK_RSA && EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)r->bits) != 1) ||
        (r->kt == CKK_EC && EVP_PKEY_CTX_set_group_name(ctx, OBJ_nid2sn(r->nid)) != 1)) {
        rv = CKR_GENERAL_ERROR;
        goto done;
    }
    if (EVP_PKEY_generate(ctx, out) != 1)
        rv = CKR_FUNCTION_FAILED;
done:
    EVP_PKEY_CTX_free(ctx);
    return rv;
}

/* The material of both objects; IDS: the SHA-1 default CKA_ID (the hash of
 * the public value clients use, see docs/objects.md). */
static CK_RV
kp_material(const struct kp_req *r, EVP_PKEY *pk, struct mat *pub, struct mat *prv,
            unsigned char id[SHA_DIGEST_LENGTH])
{
    static const struct {
        CK_ATTRIBUTE_TYPE type;
        const char *name;
    } rsa_priv[] = {
        {CKA_PRIVATE_EXPONENT, OSSL_PKEY_PARAM_RSA_D},
        {CKA_PRIME_1, OSSL_PKEY_PARAM_RSA_FACTOR1},
        {CKA_PRIME_2, OSSL_PKEY_PARAM_RSA_FACTOR2},
        {CKA_EXPONENT_1, OSSL_PKEY_PARAM_RSA_EXPONENT1},
        {CKA_EXPONENT_2, OSSL_PKEY_PARAM_RSA_EXPONENT2},
        {CKA_COEFFICIENT, OSSL_PKEY_PARAM_RSA_COEFFICIENT1},
    };
    OSSL_PARAM *params = NULL;
    unsigned char raw[160];
    size_t rawlen = 0, i;
    const CK_ATTRIBUTE *a;
    CK_RV rv = CKR_OK;

    if (r->kt != CKK_EC_EDWARDS && EVP_PKEY_todata(pk, EVP_PKEY_KEYPAIR, &params) != 1)
        return CKR_GENERAL_ERROR;
    if (r->kt == CKK_RSA) {
        rv = mat_bn(pub, CKA_MODULUS, params, OSSL_PKEY_PARAM_RSA_N, 0, 0);
        if (rv == CKR_OK)
            rv = mat_bn(pub, CKA_PUBLIC_EXPONENT, params, OSSL_PKEY_PARAM_RSA_E, 0, 0);
        if (rv == CKR_OK)
            rv = mat_bn(prv, CKA_MODULUS, params, OSSL_PKEY_PARAM_RSA_N, 0, 0);
        if (rv == CKR_OK)
            rv = mat_bn(prv, CKA_PUBLIC_EXPONENT, params, OSSL_PKEY_PARAM_RSA_E, 0, 0);
        for (i = 0; rv == CKR_OK && i < sizeof(rsa_priv) / sizeof(rsa_priv[0]); i++)
            rv = mat_bn(prv, rsa_priv[i].type, params, rsa_priv[i].name, 0, 1);
        if (rv != CKR_OK)
            goto done;
        /* NSS and OpenSC: SHA-1 of the modulus as CKA_MODULUS holds it. */
        a = mat_get(pub, CKA_MODULUS);
        SHA1(a->pValue, a->ulValueLen, id);
        goto done;
    }
    if (r->kt == CKK_EC) {
        if (EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, raw, sizeof(raw),
                                            &rawlen) != 1) {
            rv = CKR_GENERAL_ERROR;
            goto done;
        }
        rv = mat_bn(prv, CKA_VALUE, params, OSSL_PKEY_PARAM_PRIV_KEY,
                    (size_t)(EVP_PKEY_get_bits(pk) + 7) / 8, 1);
    } else {
        unsigned char *v;
        size_t vlen = r->nid == NID_ED25519 ? 32 : 57;

        rawlen = sizeof(raw);
        if (EVP_PKEY_get_raw_public_key(pk, raw, &rawlen) != 1 || rawlen != vlen) {
            rv = CKR_GENERAL_ERROR;
            goto done;
        }
        v = mat_add(prv, CKA_VALUE, vlen, 1);
        if (v == NULL) {
            rv = CKR_HOST_MEMORY;
            goto done;
        }
        if (EVP_PKEY_get_raw_private_key(pk, v, &vlen) != 1 || vlen != rawlen) {
            rv = CKR_GENERAL_ERROR;
            goto done;
        }
    }
    if (rv == CKR_OK)
        rv = mat_octet_string(pub, CKA_EC_POINT, raw, rawlen);
    if (rv == CKR_OK)
        rv = mat_copy(pub, CKA_EC_PARAMS, r->params->pValue, r->params->ulValueLen, 0);
    if (rv == CKR_OK)
        rv = mat_copy(prv, CKA_EC_PARAMS, r->params->pValue, r->params->ulValueLen, 0);
    /* NSS: SHA-1 of the raw public value (X9.62 point; RFC 8032 key), not of
     * the DER CKA_EC_POINT. */
    if (rv == CKR_OK)
        SHA1(raw, rawlen, id);
done:
    OSSL_PARAM_free(params); /* cleanses its secure part */
    return rv;
}

static CK_RV
generate_key_pair(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pubt, CK_ULONG pubn,
                  CK_ATTRIBUTE_PTR privt, CK_ULONG privn, CK_OBJECT_HANDLE_PTR pub,
                  CK_OBJECT_HANDLE_PTR priv, const unsigned char *cred, size_t cred_len)
{
    struct gen g = {hs, NULL};
    struct kp_req req;
    struct mat mpub, mprv;
    obj_policy pol;
    obj_origin origin;
    EVP_PKEY *pk = NULL;
    mod_attrs *apub = NULL, *aprv = NULL;
    unsigned char id[SHA_DIGEST_LENGTH];
    const CK_ATTRIBUTE *tid;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL || pub == NULL || priv == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = obj_template_check(pubt, pubn);
    if (rv == CKR_OK)
        rv = obj_template_check(privt, privn);
    if (rv == CKR_OK)
        rv = session_policy(hs, &pol);
    if (rv != CKR_OK)
        return rv;

    memset(&req, 0, sizeof(req));
    req.mech = mech->mechanism;
    switch (req.mech) {
    case CKM_RSA_PKCS_KEY_PAIR_GEN:
        req.kt = CKK_RSA;
        break;
    case CKM_EC_KEY_PAIR_GEN:
        req.kt = CKK_EC;
        break;
    case CKM_EC_EDWARDS_KEY_PAIR_GEN:
        req.kt = CKK_EC_EDWARDS;
        break;
    default:
        return CKR_MECHANISM_INVALID;
    }
    /* None of them takes a parameter (a pointer with length 0 is none). */
    if (mech->ulParameterLen != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    rv = obj_gen_check(pubt, pubn, CKO_PUBLIC_KEY, req.kt, &pol);
    if (rv == CKR_OK)
        rv = obj_gen_check(privt, privn, CKO_PRIVATE_KEY, req.kt, &pol);
    if (rv == CKR_OK)
        rv = kp_request(pubt, pubn, &req);
    if (rv == CKR_OK)
        rv = gen_prepare(&g, pubt, pubn, CK_FALSE, privt, privn, CK_TRUE);
    if (rv != CKR_OK)
        return rv;

    /* Without the lock from here to the store. */
    mat_init(&mpub, CKO_PUBLIC_KEY, req.kt);
    mat_init(&mprv, CKO_PRIVATE_KEY, req.kt);
    rv = kp_generate(&req, &pk);
    if (rv == CKR_OK)
        rv = kp_material(&req, pk, &mpub, &mprv, id);
    EVP_PKEY_free(pk);
    if (rv != CKR_OK)
        goto done;
    /* One CKA_ID for both: the template's when only one gives it, else the
     * hash of the public value. A template that gives one keeps its own. */
    tid = tfind(pubt, pubn, CKA_ID);
    if (tid == NULL)
        tid = tfind(privt, privn, CKA_ID);
    if (tfind(pubt, pubn, CKA_ID) == NULL)
        rv = tid != NULL ? mat_copy(&mpub, CKA_ID, tid->pValue, tid->ulValueLen, 0)
                         : mat_copy(&mpub, CKA_ID, id, sizeof(id), 0);
    if (rv == CKR_OK && tfind(privt, privn, CKA_ID) == NULL)
        rv = tid != NULL ? mat_copy(&mprv, CKA_ID, tid->pValue, tid->ulValueLen, 0)
                         : mat_copy(&mprv, CKA_ID, id, sizeof(id), 0);
    if (rv != CKR_OK)
        goto done;
    memset(&origin, 0, sizeof(origin));
    origin.gen_mech = req.mech;
    rv = obj_from_generated(pubt, pubn, mpub.a, mpub.n, &origin, &pol, &apub);
    if (rv == CKR_OK)
        rv = obj_from_generated(privt, privn, mprv.a, mprv.n, &origin, &pol, &aprv);
    if (rv != CKR_OK)
        goto done;

    rv = gen_store(&g, apub, aprv, cred, cred_len, pub, priv);
    apub = aprv = NULL;
done:
    gen_abandon(&g);
    obj_free(apub);
    obj_free(aprv);
    mat_free(&mpub);
    mat_free(&mprv);
    ERR_clear_error();
    return rv;
}

/*
 * C_GenerateKeyPair. CKA_EVERTOKEN_PENDING = TRUE in either template
 * (docs/rollover.md) makes both keys pending rollover keys of the
 * credential named by CKA_ID, which must then be given (the same value if in
 * both templates), with both keys token objects.
 */
CK_RV
mod_C_GenerateKeyPair(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pubt,
                      CK_ULONG pubn, CK_ATTRIBUTE_PTR privt, CK_ULONG privn,
                      CK_OBJECT_HANDLE_PTR pub, CK_OBJECT_HANDLE_PTR priv)
{
    CK_ATTRIBUTE *pt = NULL, *vt = NULL;
    CK_ULONG pn = 0, vn = 0;
    CK_BBOOL p1 = CK_FALSE, p2 = CK_FALSE;
    const CK_ATTRIBUTE *id1, *id2, *id;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    rv = obj_template_check(pubt, pubn);
    if (rv == CKR_OK)
        rv = obj_template_check(privt, privn);
    if (rv == CKR_OK)
        rv = rollover_strip(pubt, pubn, CKA_EVERTOKEN_PENDING, &pt, &pn, &p1);
    if (rv == CKR_OK)
        rv = rollover_strip(privt, privn, CKA_EVERTOKEN_PENDING, &vt, &vn, &p2);
    if (rv != CKR_OK)
        goto out;
    if (!p1 && !p2) {
        rv = generate_key_pair(hs, mech, pt, pn, vt, vn, pub, priv, NULL, 0);
        goto out;
    }
    id1 = tfind(pt, pn, CKA_ID);
    id2 = tfind(vt, vn, CKA_ID);
    id = id1 != NULL ? id1 : id2;
    if (id == NULL || id->ulValueLen == 0) {
        rv = CKR_TEMPLATE_INCOMPLETE;
        goto out;
    }
    if (id->ulValueLen > KS_CRED_MAX) {
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
        goto out;
    }
    if ((id1 != NULL && id2 != NULL &&
         (id1->ulValueLen != id2->ulValueLen ||
          memcmp(id1->pValue, id2->pValue, id1->ulValueLen) != 0)) ||
        !tbool(pt, pn, CKA_TOKEN, CK_FALSE) || !tbool(vt, vn, CKA_TOKEN, CK_FALSE)) {
        rv = CKR_TEMPLATE_INCONSISTENT;
        goto out;
    }
    rv = generate_key_pair(hs, mech, pt, pn, vt, vn, pub, priv, id->pValue, (size_t)id->ulValueLen);
out:
    free(pt);
    free(vt);
    return rv;
}

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

/* Is MECH allowed by the key's CKA_ALLOWED_MECHANISMS (absent or empty: any)? */
static int
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

/* The mechanism's parameters and the new key's template (no lock): *MD the
 * KDF's digest (NULL: CKD_NULL), *KT the key type, *VLEN the CKA_VALUE_LEN
 * asked for (*HAVE_VLEN whether one was). */
static CK_RV
derive_check(CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR t, CK_ULONG n, const obj_policy *pol,
             const char **md, CK_KEY_TYPE *kt, CK_ULONG *vlen, int *have_vlen)
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

/* The prepare step of C_DeriveKey (locked): the base key, the write rules
 * for the new one; *BK a reference to the base key's OpenSSL key and
 * *ORIGIN what the new key inherits from it. */
static CK_RV
derive_prepare(struct gen *g, CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR t, CK_ULONG n,
               obj_origin *origin, EVP_PKEY **bk)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    struct mod_object *o = NULL;
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
    rv = store_write_check_inlock(s, tbool(t, n, CKA_TOKEN, CK_FALSE),
                                  tbool(t, n, CKA_PRIVATE, CK_TRUE));
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
        rv = derive_check(mech, t, n, &pol, &md, &kt, &vlen, &have_vlen);
    if (rv == CKR_OK)
        rv = derive_prepare(&g, base, t, n, &origin, &bk);
    if (rv != CKR_OK)
        return rv;

    /* Without the lock from here to the store. */
    mat_init(&m, CKO_SECRET_KEY, kt);
    rv = derive_compute(bk, mech->pParameter, md, have_vlen, vlen, &m);
    if (rv == CKR_OK)
        rv = obj_from_generated(t, n, m.a, m.n, &origin, &pol, &attrs);
    if (rv == CKR_OK)
        rv = gen_store(&g, attrs, NULL, NULL, 0, key, NULL);
    else
        gen_abandon(&g);
    mat_free(&m);
    EVP_PKEY_free(bk);
    ERR_clear_error();
    return rv;
}

/* ---- no mechanism ---------------------------------------------------------- */

CK_RV
mod_C_GenerateKey(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                  CK_OBJECT_HANDLE_PTR key)
{
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL || key == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = obj_template_check(t, n);
    if (rv != CKR_OK)
        return rv;
    return op_none(hs, CKR_MECHANISM_INVALID);
}

CK_RV
mod_C_WrapKey(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wkey,
              CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    (void)wkey;
    (void)key;
    (void)out;
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL || outlen == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_none(hs, CKR_MECHANISM_INVALID);
}

CK_RV
mod_C_UnwrapKey(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE ukey, CK_BYTE_PTR in,
                CK_ULONG inlen, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR key)
{
    CK_RV rv;

    (void)ukey;
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL || key == NULL || (in == NULL && inlen > 0))
        return CKR_ARGUMENTS_BAD;
    rv = obj_template_check(t, n);
    if (rv != CKR_OK)
        return rv;
    return op_none(hs, CKR_MECHANISM_INVALID);
}
