/*
 * keygen.c — creating keys from mechanisms: C_GenerateKeyPair (RSA, EC,
 * EdDSA), C_GenerateKey (AES, generic secrets), and C_WrapKey, C_UnwrapKey. C_DeriveKey (ECDH) is
 * in derive.c; the sequence both share in gen.c.
 *
 * Locking (mod_int.h): the global lock is held only to look up the session
 * and the base key, to check the write rules early, and to store the result.
 * Key generation, the ECDH computation, the KDF and the object layer's checks
 * (the RSA pairwise check is not cheap) run without it, with the session's
 * token marked busy (so C_Finalize waits and the token stays); the session is
 * looked up again by handle before storing (it may have been closed), and the
 * write rules are checked again there (store.h), since the login may have
 * changed meanwhile. That sequence is written once: gen_prepare, gen_store,
 * gen_abandon (gen.c).
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
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/ec.h>

#include "gen_int.h"
#include "op_int.h"

/* CKM_RSA_PKCS_KEY_PAIR_GEN sizes (the mechanism table says the same). */
#define RSA_GEN_MIN_BITS 2048
#define RSA_GEN_MAX_BITS 8192

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

/* ---- C_GenerateKey: AES and generic secret keys ------------------------- */

/* The template of a new secret key of type KT (no lock): *LEN its
 * CKA_VALUE_LEN, which the template must give. */
static CK_RV
secgen_check(const CK_ATTRIBUTE *t, CK_ULONG n, CK_KEY_TYPE kt, const obj_policy *pol,
             CK_ULONG *len)
{
    CK_RV rv;

    if (tfind(t, n, CKA_CLASS) != NULL &&
        tulong(t, n, CKA_CLASS, CK_UNAVAILABLE_INFORMATION) != CKO_SECRET_KEY)
        return CKR_TEMPLATE_INCONSISTENT;
    if (tfind(t, n, CKA_KEY_TYPE) != NULL &&
        tulong(t, n, CKA_KEY_TYPE, CK_UNAVAILABLE_INFORMATION) != kt)
        return CKR_TEMPLATE_INCONSISTENT;
    rv = obj_gen_check(t, n, CKO_SECRET_KEY, kt, pol);
    if (rv != CKR_OK)
        return rv;
    if (tfind(t, n, CKA_VALUE_LEN) == NULL)
        return CKR_TEMPLATE_INCOMPLETE;
    *len = tulong(t, n, CKA_VALUE_LEN, 0);
    if (kt == CKK_AES ? (*len != 16 && *len != 24 && *len != 32)
                      : (*len == 0 || *len > MOD_SECRET_MAX))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    return CKR_OK;
}

CK_RV
mod_C_GenerateKey(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                  CK_OBJECT_HANDLE_PTR key)
{
    struct gen g = {hs, NULL};
    const struct mod_mech *m;
    obj_policy pol;
    obj_origin origin;
    struct mat mt;
    mod_attrs *attrs = NULL;
    CK_ULONG len = 0;
    unsigned char *v;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL || key == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = obj_template_check(t, n);
    if (rv != CKR_OK)
        return rv;
    m = mech_find(mech->mechanism);
    if (m == NULL || m->fam != MF_SECGEN)
        return op_none(hs, CKR_MECHANISM_INVALID);
    rv = session_policy(hs, &pol);
    if (rv != CKR_OK)
        return rv;
    if (mech->ulParameterLen != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    rv = secgen_check(t, n, m->key_type, &pol, &len);
    if (rv == CKR_OK)
        rv = gen_prepare(&g, t, n, CK_TRUE, NULL, 0, CK_FALSE);
    if (rv != CKR_OK)
        return rv;

    /* Without the lock from here to the store. */
    mat_init(&mt, CKO_SECRET_KEY, m->key_type);
    v = mat_add(&mt, CKA_VALUE, len, 1);
    if (v == NULL)
        rv = CKR_HOST_MEMORY;
    else if (RAND_priv_bytes(v, (int)len) != 1)
        rv = CKR_FUNCTION_FAILED;
    if (rv == CKR_OK)
        rv = mat_copy(&mt, CKA_VALUE_LEN, &len, sizeof(len), 0);
    memset(&origin, 0, sizeof(origin));
    origin.gen_mech = m->type;
    if (rv == CKR_OK)
        rv = obj_from_generated(t, n, mt.a, mt.n, &origin, &pol, &attrs);
    if (rv == CKR_OK)
        rv = gen_store(&g, attrs, NULL, NULL, 0, key, NULL);
    else
        gen_abandon(&g);
    mat_free(&mt);
    ERR_clear_error();
    return rv;
}

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
    if (obj_bool(ok->attrs, CKA_WRAP_WITH_TRUSTED, CK_FALSE) &&
        !obj_bool(ow->attrs, CKA_TRUSTED, CK_FALSE)) {
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
        return op_none(hs, rv);
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

/* The unwrapping key (under the lock), and the write rules for the new
 * key; marks the token busy (gen_mark_inlock). */
static CK_RV
unwrap_prepare(struct gen *g, CK_MECHANISM_TYPE mech, CK_OBJECT_HANDLE hu, CK_ATTRIBUTE_PTR t,
               CK_ULONG n, struct wrapkey *w)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    struct mod_object *o = NULL;
    CK_RV rv;

    mod_lock();
    rv = store_lookup_relock(g->hs, hu, &s, &o, &locked);
    if (rv == CKR_OBJECT_HANDLE_INVALID)
        rv = CKR_UNWRAPPING_KEY_HANDLE_INVALID;
    if (rv == CKR_OK)
        rv = wrap_kek_inlock(o, mech, 1, w);
    if (rv == CKR_OK)
        rv = store_write_check_inlock(s, tbool(t, n, CKA_TOKEN, CK_FALSE),
                                      tbool(t, n, CKA_PRIVATE, CK_TRUE));
    if (rv == CKR_OK)
        gen_mark_inlock(g, s);
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
    unsigned char *plain = NULL;
    size_t plen = 0;
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE kt;
    CK_RV rv;

    memset(&w, 0, sizeof(w));
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL || key == NULL || (in == NULL && inlen > 0))
        return CKR_ARGUMENTS_BAD;
    rv = obj_template_check(t, n);
    if (rv != CKR_OK)
        return rv;
    rv = wrap_mech_check(mech, &w);
    if (rv == CKR_OK)
        rv = session_policy(hs, &pol);
    if (rv != CKR_OK) {
        wrapkey_clear(&w);
        return rv == CKR_SESSION_HANDLE_INVALID ? rv : op_none(hs, rv);
    }
    cls = tulong(t, n, CKA_CLASS, CK_UNAVAILABLE_INFORMATION);
    kt = tulong(t, n, CKA_KEY_TYPE, CK_UNAVAILABLE_INFORMATION);
    if (tfind(t, n, CKA_CLASS) == NULL ||
        (cls == CKO_SECRET_KEY && tfind(t, n, CKA_KEY_TYPE) == NULL))
        rv = CKR_TEMPLATE_INCOMPLETE;
    else if (cls != CKO_SECRET_KEY && cls != CKO_PRIVATE_KEY)
        rv = CKR_TEMPLATE_INCONSISTENT;
    else if (mech->mechanism != CKM_RSA_PKCS_OAEP &&
             (inlen < 16 || inlen % 8 != 0 || inlen > WRAP_MAX + 16 ||
              (mech->mechanism == CKM_AES_KEY_WRAP && inlen < 24)))
        rv = CKR_WRAPPED_KEY_LEN_RANGE;
    else if (inlen == 0 || inlen > WRAP_MAX + 16)
        rv = CKR_WRAPPED_KEY_LEN_RANGE;
    if (rv != CKR_OK) {
        wrapkey_clear(&w);
        return rv;
    }
    rv = unwrap_prepare(&g, mech->mechanism, ukey, t, n, &w);
    if (rv != CKR_OK) {
        wrapkey_clear(&w);
        return rv;
    }

    /* Without the lock from here to the store. */
    mat_init(&m, cls, kt);
    plain = secure_copy(in, inlen); /* room for the plaintext (shorter) */
    if (plain == NULL) {
        rv = CKR_HOST_MEMORY;
    } else if (mech->mechanism == CKM_RSA_PKCS_OAEP) {
        /* Exactly k bytes (RFC 8017 section 7.1.2). */
        plen = inlen;
        rv = inlen != (size_t)EVP_PKEY_get_size(w.rsa) ? CKR_WRAPPED_KEY_LEN_RANGE
                                                       : rsa_oaep(&w, 0, in, inlen, plain, &plen);
    } else {
        rv = aes_wrap(mech->mechanism, w.kek, w.kek_len, 0, in, inlen, plain, &plen);
    }
    if (rv == CKR_OK && cls == CKO_SECRET_KEY) {
        CK_ULONG vlen = (CK_ULONG)plen;
        if (kt == CKK_AES && plen != 16 && plen != 24 && plen != 32)
            rv = CKR_WRAPPED_KEY_INVALID;
        else if (kt != CKK_AES && kt != CKK_GENERIC_SECRET)
            rv = CKR_TEMPLATE_INCONSISTENT;
        if (rv == CKR_OK)
            rv = mat_copy(&m, CKA_VALUE, plain, plen, 1);
        if (rv == CKR_OK)
            rv = mat_copy(&m, CKA_VALUE_LEN, &vlen, sizeof(vlen), 0);
    } else if (rv == CKR_OK) {
        rv = unwrap_private(plain, plen, kt, &m);
        if (rv == CKR_OK)
            mat_drop_id(&m, t, n);
    }
    /* Its value has been outside the token: never "always sensitive" nor
     * "never extractable", and not local. */
    memset(&origin, 0, sizeof(origin));
    origin.gen_mech = CK_UNAVAILABLE_INFORMATION;
    if (rv == CKR_OK)
        rv = obj_from_generated(t, n, m.a, m.n, &origin, &pol, &attrs);
    if (rv == CKR_OK)
        rv = gen_store(&g, attrs, NULL, NULL, 0, key, NULL);
    else
        gen_abandon(&g);
    mat_free(&m);
    if (plain != NULL)
        sodium_free(plain);
    wrapkey_clear(&w);
    ERR_clear_error();
    return rv;
}
