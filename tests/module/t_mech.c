/*
 * t_mech.c — mechanisms and cryptographic operations: the mechanism list and
 * information, sign/verify for every RSA, ECDSA and EdDSA mechanism with keys
 * imported by C_CreateObject and checked by OpenSSL from the public key,
 * multi-part = single-part, the buffer-size protocol, PSS/OAEP parameters,
 * RSA encryption, digests (known answers), key usage, CKA_ALWAYS_AUTHENTICATE,
 * operations ended by C_CloseSession/C_SessionCancel/C_Logout, and two
 * threads signing at once.
 *
 * Mechanisms a module does not list are skipped (SoftHSMv2 2.6 has no
 * CKM_ECDSA_SHAx); evertoken must list every one. Where the modules differ
 * the difference is named at the guard.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "conf.h"

/* PKCS#11 3.0 CK_EDDSA_PARAMS (p11-kit's header is 2.40). */
struct t_eddsa_params {
    CK_BBOOL phFlag;
    CK_ULONG ulContextDataLen;
    CK_BYTE_PTR pContextData;
};

#define N_(a) (sizeof(a) / sizeof((a)[0]))

static const CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

enum { K_RSA, K_EC, K_ED };

static int
mech_listed(CK_MECHANISM_TYPE type)
{
    CK_MECHANISM_INFO info;
    CK_RV rv = F->C_GetMechanismInfo(E.slot, type, &info);

    /* evertoken offers every mechanism this file tests. */
    if (is_evertoken())
        assert_rv(rv, CKR_OK);
    return rv == CKR_OK;
}

/* ---- keys ----------------------------------------------------------------- */

struct key_opts {
    CK_BBOOL sign, decrypt, always_auth;
};
static const struct key_opts K_DEFAULT = {CK_TRUE, CK_TRUE, CK_FALSE};

static CK_OBJECT_HANDLE
create(CK_SESSION_HANDLE h, CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;

    assert_ok(F->C_CreateObject(h, t, n, &o));
    return o;
}

static CK_OBJECT_HANDLE
rsa_priv(CK_SESSION_HANDLE h, const struct key_opts *ko)
{
    const struct conf_material *m = conf_material();
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, (void *)&no, 1},
        {CKA_PRIVATE, (void *)&yes, 1},
        {CKA_SIGN, (void *)&ko->sign, 1},
        {CKA_DECRYPT, (void *)&ko->decrypt, 1},
        {CKA_MODULUS, m->rsa_n.p, m->rsa_n.n},
        {CKA_PUBLIC_EXPONENT, m->rsa_e.p, m->rsa_e.n},
        {CKA_PRIVATE_EXPONENT, m->rsa_d.p, m->rsa_d.n},
        {CKA_PRIME_1, m->rsa_p.p, m->rsa_p.n},
        {CKA_PRIME_2, m->rsa_q.p, m->rsa_q.n},
        {CKA_EXPONENT_1, m->rsa_dp.p, m->rsa_dp.n},
        {CKA_EXPONENT_2, m->rsa_dq.p, m->rsa_dq.n},
        {CKA_COEFFICIENT, m->rsa_qinv.p, m->rsa_qinv.n},
        {CKA_ALWAYS_AUTHENTICATE, (void *)&ko->always_auth, 1},
    };
    return create(h, t, N_(t));
}

static CK_OBJECT_HANDLE
rsa_pub(CK_SESSION_HANDLE h)
{
    const struct conf_material *m = conf_material();
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, (void *)&no, 1},
        {CKA_VERIFY, (void *)&yes, 1},
        {CKA_ENCRYPT, (void *)&yes, 1},
        {CKA_MODULUS, m->rsa_n.p, m->rsa_n.n},
        {CKA_PUBLIC_EXPONENT, m->rsa_e.p, m->rsa_e.n},
    };
    return create(h, t, N_(t));
}

static CK_OBJECT_HANDLE
ec_priv(CK_SESSION_HANDLE h)
{
    const struct conf_material *m = conf_material();
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, (void *)&no, 1},
        {CKA_PRIVATE, (void *)&yes, 1},
        {CKA_SIGN, (void *)&yes, 1},
        {CKA_EC_PARAMS, m->ec_params.p, m->ec_params.n},
        {CKA_VALUE, m->ec_value.p, m->ec_value.n},
    };
    return create(h, t, N_(t));
}

static CK_OBJECT_HANDLE
ec_pub(CK_SESSION_HANDLE h)
{
    const struct conf_material *m = conf_material();
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, (void *)&no, 1},
        {CKA_VERIFY, (void *)&yes, 1},
        {CKA_EC_PARAMS, m->ec_params.p, m->ec_params.n},
        {CKA_EC_POINT, m->ec_point.p, m->ec_point.n},
    };
    return create(h, t, N_(t));
}

/* An Ed25519 key made once per run. */
static EVP_PKEY *ed_key;
static unsigned char ed_priv_raw[32], ed_pub_raw[32];
static const unsigned char ed25519_oid[] = {0x06, 0x03, 0x2b, 0x65, 0x70};

static void
ed_make(void)
{
    size_t n = sizeof(ed_priv_raw);

    if (ed_key != NULL)
        return;
    ed_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(ed_key);
    assert_int_equal(EVP_PKEY_get_raw_private_key(ed_key, ed_priv_raw, &n), 1);
    n = sizeof(ed_pub_raw);
    assert_int_equal(EVP_PKEY_get_raw_public_key(ed_key, ed_pub_raw, &n), 1);
}

static CK_OBJECT_HANDLE
ed_priv(CK_SESSION_HANDLE h)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_EC_EDWARDS;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, (void *)&no, 1},
        {CKA_PRIVATE, (void *)&yes, 1},
        {CKA_SIGN, (void *)&yes, 1},
        {CKA_EC_PARAMS, (void *)ed25519_oid, sizeof(ed25519_oid)},
        {CKA_VALUE, ed_priv_raw, sizeof(ed_priv_raw)},
    };
    ed_make();
    return create(h, t, N_(t));
}

static CK_OBJECT_HANDLE
ed_pub(CK_SESSION_HANDLE h)
{
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_EC_EDWARDS;
    unsigned char pt[34];
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, (void *)&no, 1},
        {CKA_VERIFY, (void *)&yes, 1},
        {CKA_EC_PARAMS, (void *)ed25519_oid, sizeof(ed25519_oid)},
        {CKA_EC_POINT, pt, sizeof(pt)},
    };
    ed_make();
    pt[0] = 0x04; /* DER OCTET STRING */
    pt[1] = 32;
    memcpy(pt + 2, ed_pub_raw, 32);
    return create(h, t, N_(t));
}

/* ---- OpenSSL's view of the public keys ------------------------------------ */

static EVP_PKEY *
ossl_fromdata(const char *alg, OSSL_PARAM_BLD *bld, int selection)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL);
    EVP_PKEY *pk = NULL;

    assert_non_null(params);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &pk, selection, params), 1);
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_BLD_free(bld);
    return pk;
}

/* The RSA key; with PRIV the private half too (OpenSSL decrypts with it). */
static EVP_PKEY *
ossl_rsa(int priv)
{
    const struct conf_material *m = conf_material();
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *n = BN_bin2bn(m->rsa_n.p, (int)m->rsa_n.n, NULL);
    BIGNUM *e = BN_bin2bn(m->rsa_e.p, (int)m->rsa_e.n, NULL);
    BIGNUM *d = BN_bin2bn(m->rsa_d.p, (int)m->rsa_d.n, NULL);
    EVP_PKEY *pk;

    assert_non_null(bld);
    assert_true(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n));
    assert_true(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e));
    if (priv)
        assert_true(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d));
    pk = ossl_fromdata("RSA", bld, priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY);
    BN_free(n);
    BN_free(e);
    BN_clear_free(d);
    return pk;
}

static EVP_PKEY *
ossl_ec(void)
{
    const struct conf_material *m = conf_material();
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();

    assert_non_null(bld);
    assert_true(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0));
    assert_true(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, m->ec_point.p + 2,
                                                 m->ec_point.n - 2));
    return ossl_fromdata("EC", bld, EVP_PKEY_PUBLIC_KEY);
}

/* r || s (each half of SIGLEN) as DER, for OpenSSL. */
static int
rs_to_der(const unsigned char *sig, size_t siglen, unsigned char **der)
{
    ECDSA_SIG *s = ECDSA_SIG_new();
    int n;

    assert_non_null(s);
    assert_int_equal(ECDSA_SIG_set0(s, BN_bin2bn(sig, (int)siglen / 2, NULL),
                                    BN_bin2bn(sig + siglen / 2, (int)siglen / 2, NULL)),
                     1);
    *der = NULL;
    n = i2d_ECDSA_SIG(s, der);
    assert_true(n > 0);
    ECDSA_SIG_free(s);
    return n;
}

/* ---- the signature mechanisms ------------------------------------------- */

struct sigcase {
    CK_MECHANISM_TYPE mech;
    int key;
    const char *md; /* hashing mechanisms: the hash; raw ones: the hash the input is */
    int raw;        /* the caller hashes (and for RSA_PKCS adds the DigestInfo) */
    int pss;
    int deterministic;
    CK_MECHANISM_TYPE hash; /* PSS hashAlg */
    CK_ULONG mgf;
    CK_ULONG hlen;
};

static const struct sigcase cases[] = {
    {CKM_RSA_PKCS, K_RSA, "SHA256", 1, 0, 1, 0, 0, 0},
    {CKM_SHA1_RSA_PKCS, K_RSA, "SHA1", 0, 0, 1, 0, 0, 0},
    {CKM_SHA224_RSA_PKCS, K_RSA, "SHA224", 0, 0, 1, 0, 0, 0},
    {CKM_SHA256_RSA_PKCS, K_RSA, "SHA256", 0, 0, 1, 0, 0, 0},
    {CKM_SHA384_RSA_PKCS, K_RSA, "SHA384", 0, 0, 1, 0, 0, 0},
    {CKM_SHA512_RSA_PKCS, K_RSA, "SHA512", 0, 0, 1, 0, 0, 0},
    {CKM_RSA_PKCS_PSS, K_RSA, "SHA256", 1, 1, 0, CKM_SHA256, CKG_MGF1_SHA256, 32},
    {CKM_SHA1_RSA_PKCS_PSS, K_RSA, "SHA1", 0, 1, 0, CKM_SHA_1, CKG_MGF1_SHA1, 20},
    {CKM_SHA224_RSA_PKCS_PSS, K_RSA, "SHA224", 0, 1, 0, CKM_SHA224, CKG_MGF1_SHA224, 28},
    {CKM_SHA256_RSA_PKCS_PSS, K_RSA, "SHA256", 0, 1, 0, CKM_SHA256, CKG_MGF1_SHA256, 32},
    {CKM_SHA384_RSA_PKCS_PSS, K_RSA, "SHA384", 0, 1, 0, CKM_SHA384, CKG_MGF1_SHA1, 48},
    {CKM_SHA512_RSA_PKCS_PSS, K_RSA, "SHA512", 0, 1, 0, CKM_SHA512, CKG_MGF1_SHA512, 64},
    {CKM_ECDSA, K_EC, "SHA256", 1, 0, 0, 0, 0, 0},
    {CKM_ECDSA_SHA1, K_EC, "SHA1", 0, 0, 0, 0, 0, 0},
    {CKM_ECDSA_SHA224, K_EC, "SHA224", 0, 0, 0, 0, 0, 0},
    {CKM_ECDSA_SHA256, K_EC, "SHA256", 0, 0, 0, 0, 0, 0},
    {CKM_ECDSA_SHA384, K_EC, "SHA384", 0, 0, 0, 0, 0, 0},
    {CKM_ECDSA_SHA512, K_EC, "SHA512", 0, 0, 0, 0, 0, 0},
    {CKM_EDDSA, K_ED, NULL, 0, 0, 1, 0, 0, 0},
};

static const unsigned char msg[] = "evertoken signs this message, in three parts or in one";

/* DigestInfo prefix of SHA-256 (RFC 8017 section 9.2 note 1). */
static const unsigned char sha256_di[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                          0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                          0x01, 0x05, 0x00, 0x04, 0x20};

/* What the token is given: the message, or for raw mechanisms its hash
 * (RSA_PKCS: DigestInfo || hash). */
static size_t
sig_input(const struct sigcase *c, unsigned char *out)
{
    unsigned char h[64];
    unsigned int hl = 0;

    if (!c->raw) {
        memcpy(out, msg, sizeof(msg));
        return sizeof(msg);
    }
    assert_int_equal(EVP_Digest(msg, sizeof(msg), h, &hl, EVP_get_digestbyname(c->md), NULL), 1);
    if (c->mech == CKM_RSA_PKCS) {
        memcpy(out, sha256_di, sizeof(sha256_di));
        memcpy(out + sizeof(sha256_di), h, hl);
        return sizeof(sha256_di) + hl;
    }
    memcpy(out, h, hl);
    return hl;
}

/* OpenSSL verifies SIG over msg with the public key. */
static int
ossl_verify_mgf(const struct sigcase *c, CK_ULONG mgf, EVP_PKEY *pk, const unsigned char *sig,
                size_t siglen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char *der = NULL;
    int ok;

    assert_non_null(md);
    assert_int_equal(
        EVP_DigestVerifyInit(md, &pctx, c->md ? EVP_get_digestbyname(c->md) : NULL, NULL, pk), 1);
    if (c->pss) {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, (int)c->hlen), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(
                             pctx, EVP_get_digestbyname(mgf == CKG_MGF1_SHA1 ? "SHA1" : c->md)),
                         1);
    }
    if (c->key == K_EC) {
        siglen = (size_t)rs_to_der(sig, siglen, &der);
        sig = der;
    }
    ok = EVP_DigestVerify(md, sig, siglen, msg, sizeof(msg));
    OPENSSL_free(der);
    EVP_MD_CTX_free(md);
    return ok == 1;
}

static int
ossl_verify(const struct sigcase *c, EVP_PKEY *pk, const unsigned char *sig, size_t siglen)
{
    return ossl_verify_mgf(c, c->mgf, pk, sig, siglen);
}

/* SoftHSMv2 2.6 insists on MGF1 with hashAlg (CKR_ARGUMENTS_BAD otherwise);
 * the standard lets them differ, and evertoken is tested with one that does. */
static CK_ULONG
case_mgf(const struct sigcase *c)
{
    static const struct {
        CK_MECHANISM_TYPE hash;
        CK_ULONG mgf;
    } same[] = {{CKM_SHA_1, CKG_MGF1_SHA1},
                {CKM_SHA224, CKG_MGF1_SHA224},
                {CKM_SHA256, CKG_MGF1_SHA256},
                {CKM_SHA384, CKG_MGF1_SHA384},
                {CKM_SHA512, CKG_MGF1_SHA512}};
    if (!is_softhsm())
        return c->mgf;
    for (size_t i = 0; i < N_(same); i++)
        if (same[i].hash == c->hash)
            return same[i].mgf;
    return c->mgf;
}

static void
sig_mech(const struct sigcase *c, CK_MECHANISM *m, CK_RSA_PKCS_PSS_PARAMS *pss)
{
    m->mechanism = c->mech;
    m->pParameter = NULL;
    m->ulParameterLen = 0;
    if (c->pss) {
        pss->hashAlg = c->hash;
        pss->mgf = case_mgf(c);
        pss->sLen = c->hlen;
        m->pParameter = pss;
        m->ulParameterLen = sizeof(*pss);
    }
}

struct keyset {
    CK_OBJECT_HANDLE priv[3], pub[3];
    EVP_PKEY *ossl[3];
};

static void
keyset_make(CK_SESSION_HANDLE h, struct keyset *ks)
{
    ks->priv[K_RSA] = rsa_priv(h, &K_DEFAULT);
    ks->pub[K_RSA] = rsa_pub(h);
    ks->priv[K_EC] = ec_priv(h);
    ks->pub[K_EC] = ec_pub(h);
    ks->priv[K_ED] = ed_priv(h);
    ks->pub[K_ED] = ed_pub(h);
    ks->ossl[K_RSA] = ossl_rsa(0);
    ks->ossl[K_EC] = ossl_ec();
    ks->ossl[K_ED] = ed_key;
    EVP_PKEY_up_ref(ed_key);
}

static void
keyset_free(struct keyset *ks)
{
    for (int i = 0; i < 3; i++)
        EVP_PKEY_free(ks->ossl[i]);
}

/* ---- tests ---------------------------------------------------------------- */

static void
t_mechanism_list(void **state)
{
    static const struct {
        CK_MECHANISM_TYPE type;
        CK_FLAGS flags;
    } want[] = {
        {CKM_RSA_PKCS, CKF_SIGN | CKF_VERIFY | CKF_ENCRYPT | CKF_DECRYPT},
        {CKM_RSA_PKCS_OAEP, CKF_ENCRYPT | CKF_DECRYPT},
        {CKM_RSA_PKCS_PSS, CKF_SIGN | CKF_VERIFY},
        {CKM_SHA256_RSA_PKCS, CKF_SIGN | CKF_VERIFY},
        {CKM_SHA256_RSA_PKCS_PSS, CKF_SIGN | CKF_VERIFY},
        {CKM_ECDSA, CKF_SIGN | CKF_VERIFY},
        {CKM_ECDSA_SHA256, CKF_SIGN | CKF_VERIFY},
        {CKM_EDDSA, CKF_SIGN | CKF_VERIFY},
        {CKM_SHA256, CKF_DIGEST},
        {CKM_SHA_1, CKF_DIGEST},
        {CKM_RSA_PKCS_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR},
        {CKM_EC_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR},
    };
    CK_MECHANISM_TYPE *list;
    CK_MECHANISM_INFO info;
    CK_ULONG n = 0, small;

    (void)state;
    assert_ok(F->C_GetMechanismList(E.slot, NULL, &n));
    assert_true(n > 10);
    list = calloc(n, sizeof(*list));
    assert_non_null(list);
    small = 1;
    assert_rv(F->C_GetMechanismList(E.slot, list, &small), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(small, n);
    assert_ok(F->C_GetMechanismList(E.slot, list, &n));
    /* Every listed mechanism has information; the ones this suite needs
     * have the right function flags. */
    for (CK_ULONG i = 0; i < n; i++)
        assert_ok(F->C_GetMechanismInfo(E.slot, list[i], &info));
    for (size_t i = 0; i < N_(want); i++) {
        if (!mech_listed(want[i].type))
            continue;
        assert_ok(F->C_GetMechanismInfo(E.slot, want[i].type, &info));
        assert_int_equal(info.flags & want[i].flags, want[i].flags);
    }
    assert_rv(F->C_GetMechanismInfo(E.slot, 0x7ffffff0UL, &info), CKR_MECHANISM_INVALID);
    assert_rv(F->C_GetMechanismInfo(E.slot, CKM_SHA256, NULL), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_GetMechanismInfo(conf_invalid_slot(), CKM_SHA256, &info), CKR_SLOT_ID_INVALID);
    if (is_evertoken()) {
        /* The exact table: sizes in bits, and no raw RSA (docs/mechanisms.md). */
        assert_int_equal(n, 50); /* 29 public-key and digest, 21 secret-key */
        assert_rv(F->C_GetMechanismInfo(E.slot, CKM_RSA_X_509, &info), CKR_MECHANISM_INVALID);
        assert_ok(F->C_GetMechanismInfo(E.slot, CKM_SHA256_RSA_PKCS, &info));
        assert_int_equal(info.ulMinKeySize, 1024);
        assert_int_equal(info.ulMaxKeySize, 16384);
        assert_ok(F->C_GetMechanismInfo(E.slot, CKM_ECDSA, &info));
        assert_int_equal(info.ulMinKeySize, 256);
        assert_int_equal(info.ulMaxKeySize, 521);
        assert_int_equal(info.flags, CKF_SIGN | CKF_VERIFY | CKF_EC_F_P | CKF_EC_NAMEDCURVE |
                                         CKF_EC_UNCOMPRESS);
        assert_ok(F->C_GetMechanismInfo(E.slot, CKM_RSA_PKCS_KEY_PAIR_GEN, &info));
        assert_int_equal(info.ulMinKeySize, 2048);
        assert_int_equal(info.ulMaxKeySize, 8192);
        assert_ok(F->C_GetMechanismInfo(E.slot, CKM_EDDSA, &info));
        assert_int_equal(info.ulMinKeySize, 255);
        assert_int_equal(info.ulMaxKeySize, 456);
    }
    free(list);
}

/* Every signature mechanism: sign, OpenSSL verifies, the token verifies, a
 * changed signature fails, multi-part gives the same result. */
static void
t_sign_verify_all(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    struct keyset ks;

    (void)state;
    conf_login_user(h);
    keyset_make(h, &ks);
    for (size_t i = 0; i < N_(cases); i++) {
        const struct sigcase *c = &cases[i];
        CK_RSA_PKCS_PSS_PARAMS pss;
        CK_MECHANISM m;
        unsigned char in[128], sig[512], sig2[512];
        CK_ULONG inlen, siglen = 0, siglen2 = sizeof(sig2);
        /* SoftHSMv2 refuses C_SignUpdate for the raw mechanisms
         * (single-part by definition); evertoken collects the input. */
        int multi = !c->raw && c->key != K_ED ? 1 : is_evertoken();

        if (!mech_listed(c->mech))
            continue;
        print_message("mechanism 0x%lx\n", (unsigned long)c->mech);
        sig_mech(c, &m, &pss);
        inlen = sig_input(c, in);
        assert_ok(F->C_SignInit(h, &m, ks.priv[c->key]));
        assert_ok(F->C_Sign(h, in, inlen, NULL, &siglen));
        assert_true(siglen <= sizeof(sig));
        assert_ok(F->C_Sign(h, in, inlen, sig, &siglen));
        if (c->key == K_RSA)
            assert_int_equal(siglen, conf_material()->rsa_n.n);
        else
            assert_int_equal(siglen, 64); /* P-256 r || s; Ed25519 */
        assert_true(ossl_verify_mgf(c, case_mgf(c), ks.ossl[c->key], sig, siglen));

        assert_ok(F->C_VerifyInit(h, &m, ks.pub[c->key]));
        assert_ok(F->C_Verify(h, in, inlen, sig, siglen));
        sig[siglen / 2] ^= 0x40;
        assert_ok(F->C_VerifyInit(h, &m, ks.pub[c->key]));
        assert_rv(F->C_Verify(h, in, inlen, sig, siglen), CKR_SIGNATURE_INVALID);
        sig[siglen / 2] ^= 0x40;
        assert_ok(F->C_VerifyInit(h, &m, ks.pub[c->key]));
        assert_rv(F->C_Verify(h, in, inlen, sig, siglen - 1), CKR_SIGNATURE_LEN_RANGE);
        /* The failures ended the operation. */
        assert_rv(F->C_Verify(h, in, inlen, sig, siglen), CKR_OPERATION_NOT_INITIALIZED);

        if (!multi)
            continue;
        assert_ok(F->C_SignInit(h, &m, ks.priv[c->key]));
        assert_ok(F->C_SignUpdate(h, in, 5));
        assert_ok(F->C_SignUpdate(h, in + 5, 0));
        assert_ok(F->C_SignUpdate(h, in + 5, inlen - 5));
        assert_ok(F->C_SignFinal(h, sig2, &siglen2));
        assert_int_equal(siglen2, siglen);
        if (c->deterministic)
            assert_memory_equal(sig2, sig, siglen);
        assert_true(ossl_verify_mgf(c, case_mgf(c), ks.ossl[c->key], sig2, siglen2));
        assert_ok(F->C_VerifyInit(h, &m, ks.pub[c->key]));
        assert_ok(F->C_VerifyUpdate(h, in, 7));
        assert_ok(F->C_VerifyUpdate(h, in + 7, inlen - 7));
        assert_ok(F->C_VerifyFinal(h, sig, siglen));
        sig2[0] ^= 1;
        assert_ok(F->C_VerifyInit(h, &m, ks.pub[c->key]));
        assert_ok(F->C_VerifyUpdate(h, in, inlen));
        assert_rv(F->C_VerifyFinal(h, sig2, siglen2), CKR_SIGNATURE_INVALID);
    }
    keyset_free(&ks);
}

/* PKCS#11 3.0 section 5.2: NULL asks for the length, a short buffer is
 * CKR_BUFFER_TOO_SMALL; both keep the operation, anything else ends it. */
static void
t_buffer_protocol(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
    CK_MECHANISM d = {CKM_SHA256, NULL, 0};
    CK_OBJECT_HANDLE priv;
    unsigned char sig[512], out[64];
    CK_ULONG len = 0, k = conf_material()->rsa_n.n;

    (void)state;
    conf_login_user(h);
    priv = rsa_priv(h, &K_DEFAULT);
    assert_rv(F->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len),
              CKR_OPERATION_NOT_INITIALIZED);
    assert_ok(F->C_SignInit(h, &m, priv));
    assert_rv(F->C_SignInit(h, &m, priv), CKR_OPERATION_ACTIVE);
    assert_rv(F->C_DigestInit(h, &d), CKR_OPERATION_ACTIVE);
    assert_ok(F->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg), NULL, &len));
    assert_int_equal(len, k);
    len = 10;
    assert_rv(F->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(len, k);
    len = sizeof(sig);
    assert_ok(F->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len));
    assert_int_equal(len, k);
    assert_rv(F->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len),
              CKR_OPERATION_NOT_INITIALIZED);
    assert_rv(F->C_SignUpdate(h, (CK_BYTE_PTR)msg, 1), CKR_OPERATION_NOT_INITIALIZED);
    assert_rv(F->C_SignFinal(h, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
    /* SignFinal: the same protocol. */
    assert_ok(F->C_SignInit(h, &m, priv));
    assert_ok(F->C_SignUpdate(h, (CK_BYTE_PTR)msg, sizeof(msg)));
    len = 0;
    assert_ok(F->C_SignFinal(h, NULL, &len));
    assert_int_equal(len, k);
    len = 1;
    assert_rv(F->C_SignFinal(h, sig, &len), CKR_BUFFER_TOO_SMALL);
    len = sizeof(sig);
    assert_ok(F->C_SignFinal(h, sig, &len));
    /* Digests too. */
    assert_ok(F->C_DigestInit(h, &d));
    len = 0;
    assert_ok(F->C_Digest(h, (CK_BYTE_PTR)msg, sizeof(msg), NULL, &len));
    assert_int_equal(len, 32);
    len = 31;
    assert_rv(F->C_Digest(h, (CK_BYTE_PTR)msg, sizeof(msg), out, &len), CKR_BUFFER_TOO_SMALL);
    len = sizeof(out);
    assert_ok(F->C_Digest(h, (CK_BYTE_PTR)msg, sizeof(msg), out, &len));
    assert_int_equal(len, 32);
    assert_rv(F->C_DigestFinal(h, out, &len), CKR_OPERATION_NOT_INITIALIZED);
    /* NULL arguments. */
    assert_rv(F->C_SignInit(h, NULL, priv), CKR_ARGUMENTS_BAD);
    assert_ok(F->C_SignInit(h, &m, priv));
    assert_rv(F->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg), sig, NULL), CKR_ARGUMENTS_BAD);
    len = sizeof(sig);
    assert_ok(F->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len));
}

static void
t_pss_params(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_RSA_PKCS_PSS_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256, 32};
    CK_MECHANISM m = {CKM_SHA256_RSA_PKCS_PSS, &p, sizeof(p)};
    CK_MECHANISM raw = {CKM_RSA_PKCS_PSS, &p, sizeof(p)};
    CK_OBJECT_HANDLE priv;
    unsigned char h32[32] = {1}, sig[512];
    CK_ULONG len = sizeof(sig);
    /* emLen = 256 for RSA-2048: sLen <= 256 - 32 - 2. */
    const CK_ULONG max_salt = conf_material()->rsa_n.n - 32 - 2;

    (void)state;
    conf_login_user(h);
    priv = rsa_priv(h, &K_DEFAULT);
    /* Missing or short parameters. (SoftHSMv2 answers CKR_ARGUMENTS_BAD or
     * CKR_MECHANISM_INVALID for parameter errors; the standard's code is
     * CKR_MECHANISM_PARAM_INVALID. For it the call must just fail.) */
#define PARAM_BAD(call)                                                                            \
    do {                                                                                           \
        CK_RV rv_ = (call);                                                                        \
        if (is_softhsm())                                                                          \
            assert_true(rv_ != CKR_OK);                                                            \
        else                                                                                       \
            assert_rv(rv_, CKR_MECHANISM_PARAM_INVALID);                                           \
    } while (0)
    m.ulParameterLen = sizeof(p) - 1;
    PARAM_BAD(F->C_SignInit(h, &m, priv));
    m.ulParameterLen = sizeof(p);
    /* hashAlg must be the mechanism's hash. */
    p.hashAlg = CKM_SHA384;
    PARAM_BAD(F->C_SignInit(h, &m, priv));
    /* An MGF that does not exist. */
    p.hashAlg = CKM_SHA256;
    p.mgf = 0x77;
    PARAM_BAD(F->C_SignInit(h, &m, priv));
    p.mgf = CKG_MGF1_SHA256;
    /* Salt too long for the key (RFC 8017 section 9.1.1). */
    p.sLen = max_salt + 1;
    PARAM_BAD(F->C_SignInit(h, &m, priv));
    /* The longest salt works, and OpenSSL agrees. */
    p.sLen = max_salt;
    assert_ok(F->C_SignInit(h, &m, priv));
    assert_ok(F->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len));
    {
        EVP_PKEY *pk = ossl_rsa(0);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        assert_int_equal(EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, pk), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, (int)max_salt), 1);
        assert_int_equal(EVP_DigestVerify(md, sig, len, msg, sizeof(msg)), 1);
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(pk);
    }
    /* Raw PSS signs exactly one hash of hashAlg. */
    p.sLen = 32;
    if (is_evertoken()) {
        /* (SoftHSMv2 signs a 31-byte "hash" without complaint.) */
        assert_ok(F->C_SignInit(h, &raw, priv));
        len = sizeof(sig);
        assert_rv(F->C_Sign(h, h32, 31, sig, &len), CKR_DATA_LEN_RANGE);
    }
    assert_ok(F->C_SignInit(h, &raw, priv));
    len = sizeof(sig);
    assert_ok(F->C_Sign(h, h32, 32, sig, &len));
    /* No parameters at all. */
    raw.pParameter = NULL;
    raw.ulParameterLen = 0;
    PARAM_BAD(F->C_SignInit(h, &raw, priv));
}

/* RSA PKCS #1 v1.5 and OAEP encryption: round trips through the token and
 * through OpenSSL, labels, lengths. */
static void
t_rsa_encrypt(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, (void *)"label",
                                  5};
    CK_MECHANISM oaep = {CKM_RSA_PKCS_OAEP, &op, sizeof(op)};
    CK_MECHANISM v15 = {CKM_RSA_PKCS, NULL, 0};
    CK_OBJECT_HANDLE priv, pub;
    const CK_ULONG k = conf_material()->rsa_n.n;
    unsigned char pt[] = "attack at dawn", ct[512], out[512], big[512];
    CK_ULONG ctlen = sizeof(ct), outlen = sizeof(out);
    EVP_PKEY *pk = ossl_rsa(1);
    EVP_PKEY_CTX *ctx;
    size_t olen;

    (void)state;
    conf_login_user(h);
    priv = rsa_priv(h, &K_DEFAULT);
    pub = rsa_pub(h);
    memset(big, 0x5a, sizeof(big));

    /* PKCS #1 v1.5 round trip. */
    assert_ok(F->C_EncryptInit(h, &v15, pub));
    assert_ok(F->C_Encrypt(h, pt, sizeof(pt), ct, &ctlen));
    assert_int_equal(ctlen, k);
    assert_ok(F->C_DecryptInit(h, &v15, priv));
    assert_ok(F->C_Decrypt(h, ct, ctlen, out, &outlen));
    assert_int_equal(outlen, sizeof(pt));
    assert_memory_equal(out, pt, sizeof(pt));
    /* At most k - 11 bytes. */
    /* (SoftHSMv2 answers CKR_GENERAL_ERROR.) */
    assert_ok(F->C_EncryptInit(h, &v15, pub));
    ctlen = sizeof(ct);
    if (is_softhsm())
        assert_true(F->C_Encrypt(h, big, k - 10, ct, &ctlen) != CKR_OK);
    else
        assert_rv(F->C_Encrypt(h, big, k - 10, ct, &ctlen), CKR_DATA_LEN_RANGE);
    /* Ciphertext of the wrong length. */
    /* (SoftHSMv2 answers CKR_GENERAL_ERROR.) */
    assert_ok(F->C_DecryptInit(h, &v15, priv));
    outlen = sizeof(out);
    if (is_softhsm())
        assert_true(F->C_Decrypt(h, ct, k - 1, out, &outlen) != CKR_OK);
    else
        assert_rv(F->C_Decrypt(h, ct, k - 1, out, &outlen), CKR_ENCRYPTED_DATA_LEN_RANGE);

    /* OAEP-SHA-256 with a label, both directions, OpenSSL on the other
     * side. (SoftHSMv2 2.6 refuses labels with CKR_ARGUMENTS_BAD.) */
    if (!is_softhsm()) {
        ctlen = sizeof(ct);
        assert_ok(F->C_EncryptInit(h, &oaep, pub));
        assert_ok(F->C_Encrypt(h, pt, sizeof(pt), ct, &ctlen));
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
        assert_int_equal(EVP_PKEY_decrypt_init(ctx), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()), 1);
        assert_int_equal(EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, OPENSSL_memdup("label", 5), 5), 1);
        olen = sizeof(out);
        assert_int_equal(EVP_PKEY_decrypt(ctx, out, &olen, ct, ctlen), 1);
        assert_int_equal(olen, sizeof(pt));
        assert_memory_equal(out, pt, sizeof(pt));
        EVP_PKEY_CTX_free(ctx);

        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
        assert_int_equal(EVP_PKEY_encrypt_init(ctx), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()), 1);
        assert_int_equal(EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, OPENSSL_memdup("label", 5), 5), 1);
        olen = sizeof(ct);
        assert_int_equal(EVP_PKEY_encrypt(ctx, ct, &olen, pt, sizeof(pt)), 1);
        EVP_PKEY_CTX_free(ctx);
        assert_ok(F->C_DecryptInit(h, &oaep, priv));
        outlen = 0;
        assert_ok(F->C_Decrypt(h, ct, olen, NULL, &outlen));
        assert_true(outlen >= sizeof(pt));
        outlen = 3;
        assert_rv(F->C_Decrypt(h, ct, olen, out, &outlen), CKR_BUFFER_TOO_SMALL);
        assert_true(outlen >= sizeof(pt));
        outlen = sizeof(out);
        assert_ok(F->C_Decrypt(h, ct, olen, out, &outlen));
        assert_int_equal(outlen, sizeof(pt));
        assert_memory_equal(out, pt, sizeof(pt));
        /* Another label does not decrypt. */
        op.pSourceData = (void *)"LABEL";
        assert_ok(F->C_DecryptInit(h, &oaep, priv));
        outlen = sizeof(out);
        assert_rv(F->C_Decrypt(h, ct, olen, out, &outlen), CKR_ENCRYPTED_DATA_INVALID);
    }
    /* OAEP without label, SHA-1 (the defaults of many applications). */
    op.hashAlg = CKM_SHA_1;
    op.mgf = CKG_MGF1_SHA1;
    op.pSourceData = NULL;
    op.ulSourceDataLen = 0;
    ctlen = sizeof(ct);
    assert_ok(F->C_EncryptInit(h, &oaep, pub));
    assert_ok(F->C_Encrypt(h, pt, sizeof(pt), ct, &ctlen));
    assert_ok(F->C_DecryptInit(h, &oaep, priv));
    outlen = sizeof(out);
    assert_ok(F->C_Decrypt(h, ct, ctlen, out, &outlen));
    assert_memory_equal(out, pt, sizeof(pt));
    /* Too long for OAEP-SHA-1: k - 2 * 20 - 2 bytes at most. */
    assert_ok(F->C_EncryptInit(h, &oaep, pub));
    ctlen = sizeof(ct);
    if (is_softhsm()) /* (CKR_GENERAL_ERROR there) */
        assert_true(F->C_Encrypt(h, big, k - 41, ct, &ctlen) != CKR_OK);
    else
        assert_rv(F->C_Encrypt(h, big, k - 41, ct, &ctlen), CKR_DATA_LEN_RANGE);
    /* Parameters: unknown hash, unknown MGF, wrong size. */
    op.hashAlg = 0x77;
    PARAM_BAD(F->C_EncryptInit(h, &oaep, pub));
    op.hashAlg = CKM_SHA_1;
    op.mgf = 0x77;
    PARAM_BAD(F->C_EncryptInit(h, &oaep, pub));
    op.mgf = CKG_MGF1_SHA1;
    oaep.ulParameterLen = 3;
    PARAM_BAD(F->C_EncryptInit(h, &oaep, pub));
    /* evertoken: encrypt and decrypt take C_*Update too (buffered). */
    if (is_evertoken()) {
        oaep.ulParameterLen = sizeof(op);
        assert_ok(F->C_EncryptInit(h, &oaep, pub));
        outlen = sizeof(out);
        assert_ok(F->C_EncryptUpdate(h, pt, 4, out, &outlen));
        assert_int_equal(outlen, 0);
        assert_ok(F->C_EncryptUpdate(h, pt + 4, sizeof(pt) - 4, out, &outlen));
        ctlen = sizeof(ct);
        assert_ok(F->C_EncryptFinal(h, ct, &ctlen));
        assert_int_equal(ctlen, k);
        assert_ok(F->C_DecryptInit(h, &oaep, priv));
        assert_ok(F->C_DecryptUpdate(h, ct, 100, out, &outlen));
        assert_ok(F->C_DecryptUpdate(h, ct + 100, ctlen - 100, out, &outlen));
        outlen = sizeof(out);
        assert_ok(F->C_DecryptFinal(h, out, &outlen));
        assert_int_equal(outlen, sizeof(pt));
        assert_memory_equal(out, pt, sizeof(pt));
    }
    EVP_PKEY_free(pk);
}

static void
t_digest_kat(void **state)
{
    /* FIPS 180-4 examples: "abc". */
    static const struct {
        CK_MECHANISM_TYPE mech;
        const char *hex;
    } kat[] = {
        {CKM_SHA_1, "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {CKM_SHA224, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"},
        {CKM_SHA256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {CKM_SHA384, "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1"
                     "e7cc2358baeca134c825a7"},
        {CKM_SHA512, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a27"
                     "4fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
    };
    CK_SESSION_HANDLE h = conf_open(0);
    unsigned char out[64], want[64];
    CK_ULONG len;

    (void)state;
    for (size_t i = 0; i < N_(kat); i++) {
        CK_MECHANISM m = {kat[i].mech, NULL, 0};
        size_t n = strlen(kat[i].hex) / 2;
        for (size_t j = 0; j < n; j++) {
            unsigned v;
            assert_int_equal(sscanf(kat[i].hex + 2 * j, "%2x", &v), 1);
            want[j] = (unsigned char)v;
        }
        assert_ok(F->C_DigestInit(h, &m));
        len = sizeof(out);
        assert_ok(F->C_Digest(h, (CK_BYTE_PTR) "abc", 3, out, &len));
        assert_int_equal(len, n);
        assert_memory_equal(out, want, n);
        /* Multi-part, one byte at a time. */
        assert_ok(F->C_DigestInit(h, &m));
        for (int j = 0; j < 3; j++)
            assert_ok(F->C_DigestUpdate(h, (CK_BYTE_PTR) "abc" + j, 1));
        len = sizeof(out);
        assert_ok(F->C_DigestFinal(h, out, &len));
        assert_int_equal(len, n);
        assert_memory_equal(out, want, n);
    }
    {
        /* C_DigestKey: the digest of a secret key's value. */
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
        CK_ATTRIBUTE t[] = {
            {CKA_CLASS, &cls, sizeof(cls)},
            {CKA_KEY_TYPE, &kt, sizeof(kt)},
            {CKA_TOKEN, (void *)&no, 1},
            {CKA_VALUE, (void *)"abc", 3},
        };
        CK_MECHANISM m = {CKM_SHA256, NULL, 0};
        CK_OBJECT_HANDLE key, data;
        conf_login_user(h);
        key = create(h, t, N_(t));
        assert_ok(F->C_DigestInit(h, &m));
        assert_ok(F->C_DigestKey(h, key));
        len = sizeof(out);
        assert_ok(F->C_DigestFinal(h, out, &len));
        assert_int_equal(len, 32);
        assert_memory_equal(out,
                            "\xba\x78\x16\xbf\x8f\x01\xcf\xea\x41\x41\x40\xde\x5d\xae\x22\x23\xb0"
                            "\x03\x61\xa3\x96\x17\x7a\x9c\xb4\x10\xff\x61\xf2\x00\x15\xad",
                            32);
        /* Not a secret key. (SoftHSMv2 digests a data object's value.) */
        if (is_evertoken()) {
            assert_ok(conf_create_data(h, CK_FALSE, CK_FALSE, "d", &data));
            assert_ok(F->C_DigestInit(h, &m));
            assert_rv(F->C_DigestKey(h, data), CKR_KEY_HANDLE_INVALID);
        }
    }
    {
        CK_MECHANISM bad = {CKM_MD5 + 0x7fff0000UL, NULL, 0};
        assert_rv(F->C_DigestInit(h, &bad), CKR_MECHANISM_INVALID);
    }
}

/* Key usage and key type rules at C_xInit. */
static void
t_key_rules(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    struct key_opts nosign = {CK_FALSE, CK_FALSE, CK_FALSE};
    CK_MECHANISM rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};
    CK_MECHANISM v15 = {CKM_RSA_PKCS, NULL, 0};
    CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0};
    CK_MECHANISM dig = {CKM_SHA256, NULL, 0};
    CK_OBJECT_HANDLE priv, pub, ec, data;

    (void)state;
    conf_login_user(h);
    priv = rsa_priv(h, &nosign);
    pub = rsa_pub(h);
    ec = ec_priv(h);
    assert_ok(conf_create_data(h, CK_FALSE, CK_FALSE, "d", &data));
    /* CKA_SIGN / CKA_DECRYPT FALSE. */
    assert_rv(F->C_SignInit(h, &rsa, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
    assert_rv(F->C_DecryptInit(h, &v15, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
    /* A public key signs nothing (it has no CKA_SIGN). */
    assert_rv(F->C_SignInit(h, &rsa, pub), CKR_KEY_FUNCTION_NOT_PERMITTED);
    /* An EC key with an RSA mechanism and the other way round. (SoftHSMv2
     * accepts both at C_xInit and only fails later.) */
    if (is_evertoken()) {
        assert_rv(F->C_SignInit(h, &rsa, ec), CKR_KEY_TYPE_INCONSISTENT);
        assert_rv(F->C_VerifyInit(h, &ecdsa, pub), CKR_KEY_TYPE_INCONSISTENT);
    }
    /* A mechanism that cannot sign, and one that does not exist. */
    assert_rv(F->C_SignInit(h, &dig, ec), CKR_MECHANISM_INVALID);
    dig.mechanism = 0x7ffffff0UL;
    assert_rv(F->C_SignInit(h, &dig, ec), CKR_MECHANISM_INVALID);
    /* Not a key; no object at all. (SoftHSMv2 answers
     * CKR_OBJECT_HANDLE_INVALID; the standard's code for C_SignInit is
     * CKR_KEY_HANDLE_INVALID.) */
    if (is_softhsm()) {
        assert_rv2(F->C_SignInit(h, &ecdsa, 0x7ff0ff0UL), CKR_KEY_HANDLE_INVALID,
                   CKR_OBJECT_HANDLE_INVALID);
    } else {
        assert_rv(F->C_SignInit(h, &ecdsa, data), CKR_KEY_HANDLE_INVALID);
        assert_rv(F->C_SignInit(h, &ecdsa, 0x7ff0ff0UL), CKR_KEY_HANDLE_INVALID);
    }
    /* None of this left an operation behind. */
    assert_ok(F->C_SignInit(h, &ecdsa, ec));
}

/* CKA_ALWAYS_AUTHENTICATE: each operation needs C_Login(CKU_CONTEXT_SPECIFIC). */
static void
t_always_authenticate(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    struct key_opts aa = {CK_TRUE, CK_TRUE, CK_TRUE};
    CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
    CK_MECHANISM v15 = {CKM_RSA_PKCS, NULL, 0};
    CK_OBJECT_HANDLE priv, pub;
    unsigned char sig[512], ct[512], out[512];
    CK_ULONG len = sizeof(sig), ctlen = sizeof(ct), outlen = sizeof(out);
    CK_TOKEN_INFO ti;

    (void)state;
    conf_login_user(h);
    priv = rsa_priv(h, &aa);
    pub = rsa_pub(h);
    /* No operation: nothing to log in to. */
    assert_rv(
        F->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)CONF_USER_PIN, strlen(CONF_USER_PIN)),
        CKR_OPERATION_NOT_INITIALIZED);
    /* Without the context login the signature is refused (and the
     * operation ends). */
    assert_ok(F->C_SignInit(h, &m, priv));
    assert_rv(F->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len), CKR_USER_NOT_LOGGED_IN);
    assert_rv(F->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len),
              CKR_OPERATION_NOT_INITIALIZED);
    /* A wrong PIN fails (and counts), the right one lets one signature
     * through. */
    assert_ok(F->C_SignInit(h, &m, priv));
    assert_rv(F->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR) "9999", 4), CKR_PIN_INCORRECT);
    if (is_evertoken()) {
        assert_ok(F->C_GetTokenInfo(E.slot, &ti));
        assert_true(ti.flags & CKF_USER_PIN_COUNT_LOW);
    }
    assert_ok(
        F->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)CONF_USER_PIN, strlen(CONF_USER_PIN)));
    len = sizeof(sig);
    assert_ok(F->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len));
    assert_ok(F->C_VerifyInit(h, &m, pub));
    assert_ok(F->C_Verify(h, (CK_BYTE_PTR)msg, sizeof(msg), sig, len));
    /* The next operation needs its own login. */
    assert_ok(F->C_SignInit(h, &m, priv));
    len = sizeof(sig);
    assert_rv(F->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len), CKR_USER_NOT_LOGGED_IN);
    /* Decryption likewise. */
    assert_ok(F->C_EncryptInit(h, &v15, pub));
    assert_ok(F->C_Encrypt(h, (CK_BYTE_PTR)msg, 16, ct, &ctlen));
    assert_ok(F->C_DecryptInit(h, &v15, priv));
    assert_rv(F->C_Decrypt(h, ct, ctlen, out, &outlen), CKR_USER_NOT_LOGGED_IN);
    assert_ok(F->C_DecryptInit(h, &v15, priv));
    assert_ok(
        F->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)CONF_USER_PIN, strlen(CONF_USER_PIN)));
    outlen = sizeof(out);
    assert_ok(F->C_Decrypt(h, ct, ctlen, out, &outlen));
    assert_int_equal(outlen, 16);
    assert_memory_equal(out, msg, 16);
}

/* Operations end with their session, with C_SessionCancel, and private-key
 * operations with C_Logout. */
static void
t_operation_end(void **state)
{
    CK_SESSION_HANDLE a = conf_open(CKF_RW_SESSION), b = conf_open(CKF_RW_SESSION);
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    CK_MECHANISM raw = {CKM_ECDSA, NULL, 0};
    CK_OBJECT_HANDLE priv;
    unsigned char sig[128], h32[32] = {7};
    CK_ULONG len = sizeof(sig);

    (void)state;
    if (!mech_listed(CKM_ECDSA_SHA256))
        m = raw;
    conf_login_user(a);
    priv = ec_priv(b); /* a session object of b: it outlives a */
    /* Closing a session with an active operation frees it; another session
     * goes on. */
    assert_ok(F->C_SignInit(a, &m, priv));
    assert_ok(F->C_SignInit(b, &m, priv));
    assert_ok(F->C_CloseSession(a));
    assert_rv(F->C_Sign(a, h32, 32, sig, &len), CKR_SESSION_HANDLE_INVALID);
    len = sizeof(sig);
    assert_ok(F->C_Sign(b, h32, 32, sig, &len));
    assert_int_equal(len, 64);
    /* 3.0 C_SessionCancel. */
    if (conf_get_interface != NULL) {
        CK_INTERFACE *iface = NULL;
        CK_VERSION v30 = {3, 0};
        assert_ok(conf_get_interface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &iface, 0));
        CK_FUNCTION_LIST_3_0 *f3 = iface->pFunctionList;
        assert_ok(F->C_SignInit(b, &m, priv));
        assert_ok(f3->C_SessionCancel(b, CKF_SIGN));
        len = sizeof(sig);
        assert_rv(F->C_Sign(b, h32, 32, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
    }
    /* C_Logout: the private key is gone; a new operation cannot start. */
    assert_ok(F->C_SignInit(b, &m, priv));
    assert_ok(F->C_Logout(b));
    if (is_evertoken()) {
        /* The operation ended with the login. (SoftHSMv2 keeps it.) */
        len = sizeof(sig);
        assert_rv(F->C_Sign(b, h32, 32, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
        assert_rv(F->C_SignInit(b, &m, priv), CKR_KEY_HANDLE_INVALID);
    } else {
        len = sizeof(sig);
        (void)F->C_Sign(b, h32, 32, sig, &len);
        assert_rv2(F->C_SignInit(b, &m, priv), CKR_KEY_HANDLE_INVALID, CKR_OBJECT_HANDLE_INVALID);
    }
}

/* Two threads, two sessions, one key each kind: signatures in parallel all
 * verify. */
struct signer {
    CK_SESSION_HANDLE h;
    CK_OBJECT_HANDLE key;
    CK_MECHANISM_TYPE mech;
    int n, ok;
    unsigned char sig[64][256];
    CK_ULONG len[64];
};

static void *
signer_run(void *arg)
{
    struct signer *s = arg;
    CK_MECHANISM m = {s->mech, NULL, 0};

    s->ok = 1;
    for (int i = 0; i < s->n; i++) {
        s->len[i] = sizeof(s->sig[i]);
        if (F->C_SignInit(s->h, &m, s->key) != CKR_OK ||
            F->C_Sign(s->h, (CK_BYTE_PTR)msg, sizeof(msg), s->sig[i], &s->len[i]) != CKR_OK)
            s->ok = 0;
    }
    return NULL;
}

static void
t_threads_sign(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    static struct signer s[4];
    pthread_t th[4];
    EVP_PKEY *rsa, *ec;
    CK_OBJECT_HANDLE rk, ek;
    CK_MECHANISM_TYPE ecm = mech_listed(CKM_ECDSA_SHA256) ? CKM_ECDSA_SHA256 : 0;

    (void)state;
    conf_login_user(h);
    rk = rsa_priv(h, &K_DEFAULT);
    ek = ec_priv(h);
    rsa = ossl_rsa(0);
    ec = ossl_ec();
    for (int i = 0; i < 4; i++) {
        memset(&s[i], 0, sizeof(s[i]));
        s[i].h = conf_open(0);
        s[i].n = 24;
        s[i].key = i % 2 == 0 || ecm == 0 ? rk : ek;
        s[i].mech = i % 2 == 0 || ecm == 0 ? CKM_SHA256_RSA_PKCS : ecm;
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, signer_run, &s[i]), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < 4; i++) {
        const struct sigcase *c = NULL;
        assert_true(s[i].ok);
        for (size_t j = 0; j < N_(cases); j++)
            if (cases[j].mech == s[i].mech)
                c = &cases[j];
        assert_non_null(c);
        for (int j = 0; j < s[i].n; j++)
            assert_true(ossl_verify(c, c->key == K_RSA ? rsa : ec, s[i].sig[j], s[i].len[j]));
    }
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

/* EdDSA parameters: pure EdDSA only. */
static void
t_eddsa_params(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    struct t_eddsa_params ep = {CK_FALSE, 0, NULL};
    CK_MECHANISM m = {CKM_EDDSA, &ep, sizeof(ep)};
    CK_OBJECT_HANDLE priv;
    unsigned char sig[64];
    CK_ULONG len = sizeof(sig);

    (void)state;
    if (!mech_listed(CKM_EDDSA))
        skip();
    conf_login_user(h);
    priv = ed_priv(h);
    if (is_evertoken()) {
        /* Explicit "no prehash, no context" is pure Ed25519. (SoftHSMv2
         * 2.6 ignores the parameters altogether.) */
        assert_ok(F->C_SignInit(h, &m, priv));
        assert_ok(F->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len));
        {
            EVP_MD_CTX *md = EVP_MD_CTX_new();
            assert_int_equal(EVP_DigestVerifyInit(md, NULL, NULL, NULL, ed_key), 1);
            assert_int_equal(EVP_DigestVerify(md, sig, len, msg, sizeof(msg)), 1);
            EVP_MD_CTX_free(md);
        }
        /* Ed25519ph and contexts are refused. */
        ep.phFlag = CK_TRUE;
        assert_rv(F->C_SignInit(h, &m, priv), CKR_MECHANISM_PARAM_INVALID);
        ep.phFlag = CK_FALSE;
        ep.ulContextDataLen = 3;
        ep.pContextData = (CK_BYTE_PTR) "ctx";
        assert_rv(F->C_SignInit(h, &m, priv), CKR_MECHANISM_PARAM_INVALID);
    }
    m.pParameter = NULL;
    m.ulParameterLen = 0;
    len = sizeof(sig);
    assert_ok(F->C_SignInit(h, &m, priv));
    assert_ok(F->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg), sig, &len));
    assert_int_equal(len, 64);
}

struct conf_group
conf_mech_tests(void)
{
    static const struct CMUnitTest tests[] = {
        CONF_TEST_TOKEN(t_mechanism_list),  CONF_TEST_TOKEN(t_sign_verify_all),
        CONF_TEST_TOKEN(t_buffer_protocol), CONF_TEST_TOKEN(t_pss_params),
        CONF_TEST_TOKEN(t_rsa_encrypt),     CONF_TEST_TOKEN(t_digest_kat),
        CONF_TEST_TOKEN(t_key_rules),       CONF_TEST_TOKEN(t_always_authenticate),
        CONF_TEST_TOKEN(t_operation_end),   CONF_TEST_TOKEN(t_threads_sign),
        CONF_TEST_TOKEN(t_eddsa_params),
    };
    struct conf_group g = {"mech", tests, sizeof(tests) / sizeof(tests[0])};
    return g;
}
