/*
 * keygen.c — creating keys from mechanisms: C_GenerateKeyPair (RSA, EC,
 * EdDSA) and C_GenerateKey (AES, generic secrets). C_WrapKey and
 * C_UnwrapKey are in wrap.c, C_DeriveKey (ECDH) in derive.c; the sequence
 * they share in gen.c.
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

CK_RV
gen_session_rv(CK_SESSION_HANDLE hs, CK_RV result)
{
    struct mod_session *s = NULL;
    CK_RV rv;

    mod_lock();
    rv = session_lookup_inlock(hs, &s);
    mod_unlock();
    return rv != CKR_OK ? rv : result;
}

/* ---- C_GenerateKeyPair ----------------------------------------------------- */

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
CK_RV
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
        return gen_session_rv(hs, CKR_MECHANISM_INVALID);
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
