/*
 * t_keygen.c — key creation by the token: C_GenerateKeyPair
 * (CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_EC_KEY_PAIR_GEN, CKM_EC_EDWARDS_KEY_PAIR_GEN)
 * and C_DeriveKey with CKM_ECDH1_DERIVE. PKCS#11 2.40 sections 4.8-4.9, 5.14
 * and current mechanisms 2.1.4, 2.3.5, 2.3.10 (3.0 2.3.6 for EdDSA).
 *
 * Every generated key is checked with OpenSSL: the public attributes
 * (CKA_MODULUS/CKA_EC_POINT) decode to the key in CKA_PUBLIC_KEY_INFO, and
 * keys generated extractable show private parts that belong to that public
 * key. Derived secrets are compared with OpenSSL's ECDH on the other side.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "conf.h"

#define NA(t) (sizeof(t) / sizeof((t)[0]))

static CK_BBOOL yes = CK_TRUE;

/* DER OIDs of the curves (CKA_EC_PARAMS). */
static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const unsigned char oid_p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
static const unsigned char oid_secp256k1[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a};
static const unsigned char oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
static const unsigned char oid_ed448[] = {0x06, 0x03, 0x2b, 0x65, 0x71};
/* PrintableString "edwards25519" (3.0 section 2.3.6). */
static const unsigned char name_ed25519[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
                                             'd',  's',  '2', '5', '5', '1', '9'};

/* ---- attribute helpers ---------------------------------------------------- */

struct val {
    unsigned char *p;
    CK_ULONG n;
};

/* Attribute TYPE of O (asserting CKR_OK); the caller frees .p. */
static struct val
get_val(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    struct val v;

    assert_ok(F->C_GetAttributeValue(h, o, &a, 1));
    assert_int_not_equal(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
    v.n = a.ulValueLen;
    v.p = malloc(v.n ? v.n : 1);
    assert_non_null(v.p);
    a.pValue = v.p;
    assert_ok(F->C_GetAttributeValue(h, o, &a, 1));
    assert_int_equal(a.ulValueLen, v.n);
    return v;
}

static CK_BBOOL
get_bool(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL b = 0xAA;
    CK_ATTRIBUTE a = {type, &b, sizeof(b)};

    assert_ok(F->C_GetAttributeValue(h, o, &a, 1));
    assert_int_equal(a.ulValueLen, sizeof(b));
    return b;
}

static CK_ULONG
get_ulong(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
    CK_ULONG u = 0xAAAAAAAAUL;
    CK_ATTRIBUTE a = {type, &u, sizeof(u)};

    assert_ok(F->C_GetAttributeValue(h, o, &a, 1));
    assert_int_equal(a.ulValueLen, sizeof(u));
    return u;
}

static void
assert_sensitive(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
    CK_ATTRIBUTE a = {type, NULL, 0};

    assert_rv(F->C_GetAttributeValue(h, o, &a, 1), CKR_ATTRIBUTE_SENSITIVE);
    assert_int_equal(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
}

/* Number of objects of class CLS the session sees. */
static CK_ULONG
count_class(CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls)
{
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}};

    return conf_find(h, t, NA(t), NULL, 0, 16);
}

/* The module offers MECH (for skipping what SoftHSMv2 was built without). */
static int
have_mech(CK_MECHANISM_TYPE mech)
{
    CK_MECHANISM_INFO info;

    return F->C_GetMechanismInfo(E.slot, mech, &info) == CKR_OK;
}

/* The key in CKA_PUBLIC_KEY_INFO, when the module has the (3.0) attribute;
 * evertoken must have it. NULL otherwise. */
static EVP_PKEY *
spki_key(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o)
{
    CK_ATTRIBUTE a = {CKA_PUBLIC_KEY_INFO, NULL, 0};
    struct val v;
    const unsigned char *p;
    EVP_PKEY *pk;

    if (F->C_GetAttributeValue(h, o, &a, 1) != CKR_OK || a.ulValueLen == 0 ||
        a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
        assert_false(is_evertoken());
        return NULL;
    }
    v = get_val(h, o, CKA_PUBLIC_KEY_INFO);
    p = v.p;
    pk = d2i_PUBKEY(NULL, &p, (long)v.n);
    assert_non_null(pk);
    assert_ptr_equal(p, v.p + v.n);
    free(v.p);
    return pk;
}

/* The raw public value inside a DER OCTET STRING CKA_EC_POINT. */
static struct val
ec_point_raw(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o)
{
    struct val v = get_val(h, o, CKA_EC_POINT), r;
    const unsigned char *p = v.p;
    ASN1_OCTET_STRING *os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)v.n);

    assert_non_null(os); /* DER, not the bare point (2.40 section 2.3.3) */
    assert_ptr_equal(p, v.p + v.n);
    r.n = (CK_ULONG)ASN1_STRING_length(os);
    r.p = malloc(r.n);
    assert_non_null(r.p);
    memcpy(r.p, ASN1_STRING_get0_data(os), r.n);
    ASN1_OCTET_STRING_free(os);
    free(v.p);
    return r;
}

/* CKA_ID of both objects: equal and, on evertoken, when no template gave
 * one, SHA-1 of the public value (NSS's and OpenSC's convention). */
static void
check_ids(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE pub, CK_OBJECT_HANDLE priv, const void *hashed,
          size_t hlen)
{
    struct val a = get_val(h, pub, CKA_ID), b = get_val(h, priv, CKA_ID);
    unsigned char md[SHA_DIGEST_LENGTH];

    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.p, b.p, a.n);
    if (is_evertoken()) {
        SHA1(hashed, hlen, md);
        assert_int_equal(a.n, sizeof(md));
        assert_memory_equal(a.p, md, sizeof(md));
    }
    free(a.p);
    free(b.p);
}

/* The attributes every generated pair has. SENSITIVE/EXTRACTABLE: what the
 * private template asked for. */
static void
check_generated(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE pub, CK_OBJECT_HANDLE priv,
                CK_MECHANISM_TYPE mech, CK_KEY_TYPE kt, CK_BBOOL sensitive, CK_BBOOL extractable)
{
    assert_int_equal(get_ulong(h, pub, CKA_CLASS), CKO_PUBLIC_KEY);
    assert_int_equal(get_ulong(h, priv, CKA_CLASS), CKO_PRIVATE_KEY);
    assert_int_equal(get_ulong(h, pub, CKA_KEY_TYPE), kt);
    assert_int_equal(get_ulong(h, priv, CKA_KEY_TYPE), kt);
    assert_int_equal(get_bool(h, pub, CKA_LOCAL), CK_TRUE);
    assert_int_equal(get_bool(h, priv, CKA_LOCAL), CK_TRUE);
    assert_int_equal(get_ulong(h, pub, CKA_KEY_GEN_MECHANISM), mech);
    assert_int_equal(get_ulong(h, priv, CKA_KEY_GEN_MECHANISM), mech);
    assert_int_equal(get_bool(h, priv, CKA_SENSITIVE), sensitive);
    assert_int_equal(get_bool(h, priv, CKA_EXTRACTABLE), extractable);
    assert_int_equal(get_bool(h, priv, CKA_ALWAYS_SENSITIVE), sensitive);
    assert_int_equal(get_bool(h, priv, CKA_NEVER_EXTRACTABLE), !extractable);
    assert_int_equal(get_bool(h, priv, CKA_PRIVATE), CK_TRUE);
}

/* ---- generating ----------------------------------------------------------- */

/* RSA pair of BITS with the given private flags; returns C_GenerateKeyPair's rv. */
static CK_RV
gen_rsa(CK_SESSION_HANDLE h, CK_ULONG bits, CK_BBOOL token, CK_BBOOL sensitive,
        CK_BBOOL extractable, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
    CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_BYTE e[] = {0x01, 0x00, 0x01};
    CK_ATTRIBUTE tpub[] = {
        {CKA_TOKEN, &token, sizeof(token)},  {CKA_MODULUS_BITS, &bits, sizeof(bits)},
        {CKA_PUBLIC_EXPONENT, e, sizeof(e)}, {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_LABEL, "gen-rsa", 7},
    };
    CK_ATTRIBUTE tpriv[] = {
        {CKA_TOKEN, &token, sizeof(token)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SIGN, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
        {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
        {CKA_LABEL, "gen-rsa", 7},
    };

    return F->C_GenerateKeyPair(h, &mech, tpub, NA(tpub), tpriv, NA(tpriv), pub, priv);
}

static CK_RV
gen_ec(CK_SESSION_HANDLE h, CK_MECHANISM_TYPE m, const void *params, CK_ULONG plen,
       CK_BBOOL sensitive, CK_BBOOL extractable, CK_BBOOL derive, CK_OBJECT_HANDLE *pub,
       CK_OBJECT_HANDLE *priv)
{
    CK_MECHANISM mech = {m, NULL, 0};
    CK_ATTRIBUTE tpub[] = {
        {CKA_EC_PARAMS, (void *)params, plen},
        {CKA_VERIFY, &yes, sizeof(yes)},
    };
    CK_ATTRIBUTE tpriv[] = {
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SIGN, &yes, sizeof(yes)},
        {CKA_DERIVE, &derive, sizeof(derive)},
        {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
        {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
    };

    return F->C_GenerateKeyPair(h, &mech, tpub, NA(tpub), tpriv, NA(tpriv), pub, priv);
}

static BIGNUM *
attr_bn(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
    struct val v = get_val(h, o, type);
    BIGNUM *bn = BN_bin2bn(v.p, (int)v.n, NULL);

    assert_non_null(bn);
    free(v.p);
    return bn;
}

static BIGNUM *
pkey_bn(EVP_PKEY *pk, const char *name)
{
    BIGNUM *bn = NULL;

    assert_int_equal(EVP_PKEY_get_bn_param(pk, name, &bn), 1);
    return bn;
}

static void
t_generate_rsa(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_OBJECT_HANDLE pub, priv, pub2, priv2;
    BIGNUM *n, *e, *n2, *d, *p, *q, *dp, *dq, *qi, *t1, *t2;
    BN_CTX *ctx = BN_CTX_new();
    struct val mod;
    EVP_PKEY *spki;

    (void)state;
    conf_login_user(h);
    assert_ok(gen_rsa(h, 2048, CK_FALSE, CK_TRUE, CK_FALSE, &pub, &priv));
    check_generated(h, pub, priv, CKM_RSA_PKCS_KEY_PAIR_GEN, CKK_RSA, CK_TRUE, CK_FALSE);
    assert_int_equal(get_ulong(h, pub, CKA_MODULUS_BITS), 2048);
    n = attr_bn(h, pub, CKA_MODULUS);
    e = attr_bn(h, pub, CKA_PUBLIC_EXPONENT);
    n2 = attr_bn(h, priv, CKA_MODULUS);
    assert_int_equal(BN_num_bits(n), 2048);
    assert_true(BN_is_word(e, 65537));
    assert_int_equal(BN_cmp(n, n2), 0);
    mod = get_val(h, pub, CKA_MODULUS);
    check_ids(h, pub, priv, mod.p, mod.n);
    free(mod.p);
    assert_sensitive(h, priv, CKA_PRIVATE_EXPONENT);
    assert_sensitive(h, priv, CKA_PRIME_1);
    assert_int_equal(get_bool(h, pub, CKA_VERIFY), CK_TRUE);
    assert_int_equal(get_bool(h, priv, CKA_SIGN), CK_TRUE);
    /* CKA_PUBLIC_KEY_INFO of both objects is the key of CKA_MODULUS. */
    spki = spki_key(h, pub);
    if (spki != NULL) {
        BIGNUM *sn = pkey_bn(spki, OSSL_PKEY_PARAM_RSA_N);
        assert_int_equal(BN_cmp(sn, n), 0);
        BN_free(sn);
        EVP_PKEY_free(spki);
    }
    spki = spki_key(h, priv);
    if (spki != NULL) {
        BIGNUM *sn = pkey_bn(spki, OSSL_PKEY_PARAM_RSA_N);
        assert_int_equal(BN_cmp(sn, n), 0);
        BN_free(sn);
        EVP_PKEY_free(spki);
    }

    /* An extractable, not sensitive key shows its private parts: they belong
     * to the public key (d e = 1 mod lcm-free check: (p-1)(q-1) divides
     * d e - 1 via dP, dQ; n = p q; qInv q = 1 mod p). */
    assert_ok(gen_rsa(h, 2048, CK_FALSE, CK_FALSE, CK_TRUE, &pub2, &priv2));
    check_generated(h, pub2, priv2, CKM_RSA_PKCS_KEY_PAIR_GEN, CKK_RSA, CK_FALSE, CK_TRUE);
    BN_free(n);
    BN_free(e);
    n = attr_bn(h, pub2, CKA_MODULUS);
    e = attr_bn(h, pub2, CKA_PUBLIC_EXPONENT);
    d = attr_bn(h, priv2, CKA_PRIVATE_EXPONENT);
    p = attr_bn(h, priv2, CKA_PRIME_1);
    q = attr_bn(h, priv2, CKA_PRIME_2);
    dp = attr_bn(h, priv2, CKA_EXPONENT_1);
    dq = attr_bn(h, priv2, CKA_EXPONENT_2);
    qi = attr_bn(h, priv2, CKA_COEFFICIENT);
    t1 = BN_new();
    t2 = BN_new();
    assert_non_null(ctx);
    assert_int_equal(BN_mul(t1, p, q, ctx), 1);
    assert_int_equal(BN_cmp(t1, n), 0);
    /* e d = 1 mod (p-1) and mod (q-1) */
    assert_int_equal(BN_sub(t2, p, BN_value_one()), 1);
    assert_int_equal(BN_mod_mul(t1, e, d, t2, ctx), 1);
    assert_true(BN_is_one(t1));
    assert_int_equal(BN_mod(t1, d, t2, ctx), 1);
    assert_int_equal(BN_cmp(t1, dp), 0);
    assert_int_equal(BN_sub(t2, q, BN_value_one()), 1);
    assert_int_equal(BN_mod_mul(t1, e, d, t2, ctx), 1);
    assert_true(BN_is_one(t1));
    assert_int_equal(BN_mod(t1, d, t2, ctx), 1);
    assert_int_equal(BN_cmp(t1, dq), 0);
    assert_int_equal(BN_mod_mul(t1, qi, q, p, ctx), 1);
    assert_true(BN_is_one(t1));
    BN_free(t1);
    BN_free(t2);
    BN_free(n);
    BN_free(n2);
    BN_free(e);
    BN_clear_free(d);
    BN_clear_free(p);
    BN_clear_free(q);
    BN_clear_free(dp);
    BN_clear_free(dq);
    BN_clear_free(qi);
    BN_CTX_free(ctx);
    assert_ok(F->C_CloseSession(h));
}

static void
t_generate_rsa_template(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG bits = 2048, small = 1024, huge = 16392;
    CK_OBJECT_CLASS priv_cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE ec = CKK_EC;
    CK_BYTE e3[] = {0x03}, e65537[] = {0x00, 0x01, 0x00, 0x01};
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
    CK_ATTRIBUTE nobits[] = {{CKA_VERIFY, &yes, sizeof(yes)}};
    CK_ATTRIBUTE ok[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)}};
    CK_ATTRIBUTE tsmall[] = {{CKA_MODULUS_BITS, &small, sizeof(small)}};
    CK_ATTRIBUTE thuge[] = {{CKA_MODULUS_BITS, &huge, sizeof(huge)}};
    CK_ATTRIBUTE te3[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                          {CKA_PUBLIC_EXPONENT, e3, sizeof(e3)}};
    CK_ATTRIBUTE te65537[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                              {CKA_PUBLIC_EXPONENT, e65537, sizeof(e65537)}};
    CK_ATTRIBUTE wrong_class[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                                  {CKA_CLASS, &priv_cls, sizeof(priv_cls)}};
    CK_ATTRIBUTE wrong_type[] = {{CKA_KEY_TYPE, &ec, sizeof(ec)}};
    CK_ATTRIBUTE local[] = {{CKA_LOCAL, &yes, sizeof(yes)}};
    CK_ATTRIBUTE always[] = {{CKA_ALWAYS_SENSITIVE, &yes, sizeof(yes)}};
    CK_BYTE fake_n[256];
    CK_ATTRIBUTE modulus[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                              {CKA_MODULUS, fake_n, sizeof(fake_n)}};
    CK_BYTE dummy = 1;
    CK_MECHANISM with_param = {CKM_RSA_PKCS_KEY_PAIR_GEN, &dummy, 1};
    CK_MECHANISM not_keygen = {CKM_SHA256, NULL, 0};

    (void)state;
    memset(fake_n, 0xff, sizeof(fake_n));
    conf_login_user(h);
    /* Argument and session checks. */
    assert_rv(F->C_GenerateKeyPair(h, NULL, ok, 1, NULL, 0, &pub, &priv), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_GenerateKeyPair(h, &mech, ok, 1, NULL, 0, NULL, &priv), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_GenerateKeyPair(h, &mech, ok, 1, NULL, 0, &pub, NULL), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_GenerateKeyPair(h, &mech, NULL, 1, NULL, 0, &pub, &priv), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_GenerateKeyPair(CK_INVALID_HANDLE, &mech, ok, 1, NULL, 0, &pub, &priv),
              CKR_SESSION_HANDLE_INVALID);
    assert_rv(F->C_GenerateKeyPair(h, &not_keygen, ok, 1, NULL, 0, &pub, &priv),
              CKR_MECHANISM_INVALID);
    /* Template errors (5.14; attribute footnotes 2-4). */
    assert_rv(F->C_GenerateKeyPair(h, &mech, nobits, 1, NULL, 0, &pub, &priv),
              CKR_TEMPLATE_INCOMPLETE);
    /* A class the mechanism does not make: the template contradicts the
     * mechanism (5.14). SoftHSMv2 2.6 calls the value invalid instead. */
    assert_rv(F->C_GenerateKeyPair(h, &mech, wrong_class, 2, NULL, 0, &pub, &priv),
              is_softhsm() ? CKR_ATTRIBUTE_VALUE_INVALID : CKR_TEMPLATE_INCONSISTENT);
    assert_rv(F->C_GenerateKeyPair(h, &mech, ok, 1, wrong_type, 1, &pub, &priv),
              CKR_TEMPLATE_INCONSISTENT);
    assert_rv(F->C_GenerateKeyPair(h, &mech, ok, 1, local, 1, &pub, &priv),
              CKR_ATTRIBUTE_READ_ONLY);
    assert_rv(F->C_GenerateKeyPair(h, &mech, ok, 1, always, 1, &pub, &priv),
              CKR_ATTRIBUTE_READ_ONLY);
    if (is_evertoken()) {
        /* The choices documented in docs/objects.md: 2048-8192 bits, only
         * e = 65537, no mechanism parameter, computed values never given.
         * (SoftHSMv2 generates down to 512 bits, any odd e, and ignores a
         * parameter.) */
        assert_rv(F->C_GenerateKeyPair(h, &mech, tsmall, 1, NULL, 0, &pub, &priv),
                  CKR_KEY_SIZE_RANGE);
        assert_rv(F->C_GenerateKeyPair(h, &mech, thuge, 1, NULL, 0, &pub, &priv),
                  CKR_KEY_SIZE_RANGE);
        assert_rv(F->C_GenerateKeyPair(h, &mech, te3, 2, NULL, 0, &pub, &priv),
                  CKR_ATTRIBUTE_VALUE_INVALID);
        assert_rv(F->C_GenerateKeyPair(h, &with_param, ok, 1, NULL, 0, &pub, &priv),
                  CKR_MECHANISM_PARAM_INVALID);
        assert_rv(F->C_GenerateKeyPair(h, &mech, modulus, 2, NULL, 0, &pub, &priv),
                  CKR_ATTRIBUTE_READ_ONLY);
    }
    /* Nothing was created by any of these. (SoftHSMv2 2.6 leaves the public
     * key behind when it refuses the private template after generating.) */
    if (is_evertoken()) {
        assert_int_equal(count_class(h, CKO_PUBLIC_KEY), 0);
        assert_int_equal(count_class(h, CKO_PRIVATE_KEY), 0);
    }
    /* 65537 with a leading zero byte is still 65537; empty private
     * template: defaults. */
    assert_ok(F->C_GenerateKeyPair(h, &mech, te65537, 2, NULL, 0, &pub, &priv));
    assert_int_equal(get_ulong(h, pub, CKA_MODULUS_BITS), 2048);
    assert_int_equal(get_bool(h, priv, CKA_PRIVATE), CK_TRUE);
    if (is_evertoken()) {
        /* This token's defaults (docs/objects.md): sensitive, not extractable. */
        assert_int_equal(get_bool(h, priv, CKA_SENSITIVE), CK_TRUE);
        assert_int_equal(get_bool(h, priv, CKA_ALWAYS_SENSITIVE), CK_TRUE);
        assert_int_equal(get_bool(h, priv, CKA_NEVER_EXTRACTABLE), CK_TRUE);
    }
    assert_ok(F->C_CloseSession(h));
}

static void
check_ec_pair(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE pub, CK_OBJECT_HANDLE priv,
              const unsigned char *params, size_t plen, size_t fieldlen)
{
    struct val pp = get_val(h, pub, CKA_EC_PARAMS), vp = get_val(h, priv, CKA_EC_PARAMS);
    struct val raw = ec_point_raw(h, pub);
    EVP_PKEY *spki;

    check_generated(h, pub, priv, CKM_EC_KEY_PAIR_GEN, CKK_EC, CK_TRUE, CK_FALSE);
    assert_int_equal(pp.n, plen);
    assert_memory_equal(pp.p, params, plen);
    assert_int_equal(vp.n, plen);
    assert_memory_equal(vp.p, params, plen);
    /* Uncompressed point: 04 || X || Y. */
    assert_int_equal(raw.n, 1 + 2 * fieldlen);
    assert_int_equal(raw.p[0], 0x04);
    check_ids(h, pub, priv, raw.p, raw.n);
    assert_sensitive(h, priv, CKA_VALUE);
    spki = spki_key(h, pub);
    if (spki != NULL) {
        unsigned char pt[200];
        size_t ptlen = 0;
        assert_int_equal(
            EVP_PKEY_get_octet_string_param(spki, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &ptlen),
            1);
        assert_int_equal(ptlen, raw.n);
        assert_memory_equal(pt, raw.p, raw.n);
        EVP_PKEY_free(spki);
        spki = spki_key(h, priv);
        assert_non_null(spki);
        assert_int_equal(
            EVP_PKEY_get_octet_string_param(spki, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &ptlen),
            1);
        assert_memory_equal(pt, raw.p, raw.n);
        EVP_PKEY_free(spki);
    }
    free(pp.p);
    free(vp.p);
    free(raw.p);
}

static void
t_generate_ec(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_OBJECT_HANDLE pub, priv;
    struct val raw, d;
    EC_GROUP *g;
    EC_POINT *pt;
    BIGNUM *bd;
    unsigned char *enc = NULL;
    size_t enclen;

    (void)state;
    conf_login_user(h);
    assert_ok(gen_ec(h, CKM_EC_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), CK_TRUE, CK_FALSE,
                     CK_FALSE, &pub, &priv));
    check_ec_pair(h, pub, priv, oid_p256, sizeof(oid_p256), 32);
    assert_ok(gen_ec(h, CKM_EC_KEY_PAIR_GEN, oid_p384, sizeof(oid_p384), CK_TRUE, CK_FALSE,
                     CK_FALSE, &pub, &priv));
    check_ec_pair(h, pub, priv, oid_p384, sizeof(oid_p384), 48);
    assert_ok(gen_ec(h, CKM_EC_KEY_PAIR_GEN, oid_p521, sizeof(oid_p521), CK_TRUE, CK_FALSE,
                     CK_FALSE, &pub, &priv));
    check_ec_pair(h, pub, priv, oid_p521, sizeof(oid_p521), 66);

    /* Extractable: d times the generator is the public point. */
    assert_ok(gen_ec(h, CKM_EC_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), CK_FALSE, CK_TRUE,
                     CK_FALSE, &pub, &priv));
    assert_int_equal(get_bool(h, priv, CKA_ALWAYS_SENSITIVE), CK_FALSE);
    assert_int_equal(get_bool(h, priv, CKA_NEVER_EXTRACTABLE), CK_FALSE);
    raw = ec_point_raw(h, pub);
    d = get_val(h, priv, CKA_VALUE);
    g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    pt = EC_POINT_new(g);
    bd = BN_bin2bn(d.p, (int)d.n, NULL);
    assert_int_equal(EC_POINT_mul(g, pt, bd, NULL, NULL, NULL), 1);
    enclen = EC_POINT_point2buf(g, pt, POINT_CONVERSION_UNCOMPRESSED, &enc, NULL);
    assert_int_equal(enclen, raw.n);
    assert_memory_equal(enc, raw.p, raw.n);
    OPENSSL_free(enc);
    BN_clear_free(bd);
    EC_POINT_free(pt);
    EC_GROUP_free(g);
    free(raw.p);
    free(d.p);
    assert_ok(F->C_CloseSession(h));
}

static void
t_generate_ec_template(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE pub, priv;
    CK_KEY_TYPE rsa = CKK_RSA;
    CK_BYTE point[] = {0x04, 0x01, 0x04};
    CK_ATTRIBUTE none[] = {{CKA_VERIFY, &yes, sizeof(yes)}};
    CK_ATTRIBUTE junk[] = {{CKA_EC_PARAMS, "\x06\x08\x2a", 3}};
    CK_ATTRIBUTE k1[] = {{CKA_EC_PARAMS, (void *)oid_secp256k1, sizeof(oid_secp256k1)}};
    CK_ATTRIBUTE ed[] = {{CKA_EC_PARAMS, (void *)oid_ed25519, sizeof(oid_ed25519)}};
    CK_ATTRIBUTE wrong_type[] = {{CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)},
                                 {CKA_KEY_TYPE, &rsa, sizeof(rsa)}};
    CK_ATTRIBUTE with_point[] = {{CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)},
                                 {CKA_EC_POINT, point, sizeof(point)}};

    (void)state;
    conf_login_user(h);
    assert_rv(F->C_GenerateKeyPair(h, &mech, none, 1, NULL, 0, &pub, &priv),
              CKR_TEMPLATE_INCOMPLETE);
    assert_rv(F->C_GenerateKeyPair(h, &mech, wrong_type, 2, NULL, 0, &pub, &priv),
              CKR_TEMPLATE_INCONSISTENT);
    if (is_evertoken()) {
        /* SoftHSMv2 generates on any curve OpenSSL knows and reports
         * malformed parameters as CKR_GENERAL_ERROR; the standard's codes: */
        assert_rv(F->C_GenerateKeyPair(h, &mech, junk, 1, NULL, 0, &pub, &priv),
                  CKR_ATTRIBUTE_VALUE_INVALID);
        assert_rv(F->C_GenerateKeyPair(h, &mech, k1, 1, NULL, 0, &pub, &priv),
                  CKR_CURVE_NOT_SUPPORTED);
        assert_rv(F->C_GenerateKeyPair(h, &mech, ed, 1, NULL, 0, &pub, &priv),
                  CKR_CURVE_NOT_SUPPORTED);
        assert_rv(F->C_GenerateKeyPair(h, &mech, with_point, 2, NULL, 0, &pub, &priv),
                  CKR_ATTRIBUTE_READ_ONLY);
    }
    assert_int_equal(count_class(h, CKO_PUBLIC_KEY), 0);
    assert_int_equal(count_class(h, CKO_PRIVATE_KEY), 0);
    assert_ok(F->C_CloseSession(h));
}

static void
check_ed_pair(CK_SESSION_HANDLE h, const void *params, CK_ULONG plen, size_t keylen, int id)
{
    CK_OBJECT_HANDLE pub, priv, pub2, priv2;
    struct val raw, v;
    EVP_PKEY *spki, *sk;
    unsigned char pk[57];
    size_t pklen = sizeof(pk);

    assert_ok(gen_ec(h, CKM_EC_EDWARDS_KEY_PAIR_GEN, params, plen, CK_TRUE, CK_FALSE, CK_FALSE,
                     &pub, &priv));
    check_generated(h, pub, priv, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKK_EC_EDWARDS, CK_TRUE, CK_FALSE);
    raw = ec_point_raw(h, pub);
    assert_int_equal(raw.n, keylen);
    check_ids(h, pub, priv, raw.p, raw.n);
    assert_sensitive(h, priv, CKA_VALUE);
    spki = spki_key(h, pub);
    if (spki != NULL) {
        assert_int_equal(EVP_PKEY_get_base_id(spki), id);
        assert_int_equal(EVP_PKEY_get_raw_public_key(spki, pk, &pklen), 1);
        assert_int_equal(pklen, keylen);
        assert_memory_equal(pk, raw.p, keylen);
        EVP_PKEY_free(spki);
    }
    free(raw.p);

    /* Extractable: the private key's public key is CKA_EC_POINT. */
    assert_ok(gen_ec(h, CKM_EC_EDWARDS_KEY_PAIR_GEN, params, plen, CK_FALSE, CK_TRUE, CK_FALSE,
                     &pub2, &priv2));
    raw = ec_point_raw(h, pub2);
    v = get_val(h, priv2, CKA_VALUE);
    assert_int_equal(v.n, keylen);
    sk = EVP_PKEY_new_raw_private_key(id, NULL, v.p, v.n);
    assert_non_null(sk);
    pklen = sizeof(pk);
    assert_int_equal(EVP_PKEY_get_raw_public_key(sk, pk, &pklen), 1);
    assert_int_equal(pklen, keylen);
    assert_memory_equal(pk, raw.p, keylen);
    EVP_PKEY_free(sk);
    free(raw.p);
    free(v.p);
}

static void
t_generate_eddsa(void **state)
{
    CK_SESSION_HANDLE h;

    (void)state;
    if (is_softhsm() && !have_mech(CKM_EC_EDWARDS_KEY_PAIR_GEN))
        skip(); /* a SoftHSMv2 built without EdDSA */
    h = conf_open(CKF_RW_SESSION);
    conf_login_user(h);
    check_ed_pair(h, oid_ed25519, sizeof(oid_ed25519), 32, EVP_PKEY_ED25519);
    check_ed_pair(h, oid_ed448, sizeof(oid_ed448), 57, EVP_PKEY_ED448);
    if (is_evertoken()) {
        /* 3.0 section 2.3.6: the curve's PrintableString name (SoftHSMv2 2.6
         * takes OIDs only); a Weierstrass curve is not an Edwards curve. */
        CK_MECHANISM mech = {CKM_EC_EDWARDS_KEY_PAIR_GEN, NULL, 0};
        CK_ATTRIBUTE p256[] = {{CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)}};
        CK_OBJECT_HANDLE pub, priv;

        check_ed_pair(h, name_ed25519, sizeof(name_ed25519), 32, EVP_PKEY_ED25519);
        assert_rv(F->C_GenerateKeyPair(h, &mech, p256, 1, NULL, 0, &pub, &priv),
                  CKR_CURVE_NOT_SUPPORTED);
    }
    assert_ok(F->C_CloseSession(h));
}

/* Session, login and R/W rules; token and session objects; IDs. */
static void
t_generate_rules(void **state)
{
    CK_SESSION_HANDLE ro, rw;
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE, found[4];
    CK_ATTRIBUTE pubt[] = {{CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)},
                           {CKA_TOKEN, &yes, sizeof(yes)},
                           {CKA_LABEL, "tok", 3}};
    CK_ATTRIBUTE privt[] = {{CKA_TOKEN, &yes, sizeof(yes)}, {CKA_LABEL, "tok", 3}};
    CK_ATTRIBUTE sess_pub[] = {{CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)},
                               {CKA_LABEL, "sess", 4}};
    CK_ATTRIBUTE sess_priv[] = {{CKA_LABEL, "sess", 4}, {CKA_ID, "\x42\x43", 2}};
    CK_ATTRIBUTE byid[] = {{CKA_ID, "\x42\x43", 2}};
    CK_ATTRIBUTE bylabel[] = {{CKA_LABEL, "tok", 3}};
    struct val id1, id2;

    (void)state;
    ro = conf_open(0);
    rw = conf_open(CKF_RW_SESSION);
    /* No login: a private key cannot be made. */
    assert_rv(F->C_GenerateKeyPair(rw, &mech, sess_pub, NA(sess_pub), sess_priv, NA(sess_priv),
                                   &pub, &priv),
              CKR_USER_NOT_LOGGED_IN);
    conf_login_user(rw);
    /* Token objects need an R/W session — either of the two. */
    assert_rv(F->C_GenerateKeyPair(ro, &mech, pubt, NA(pubt), privt, NA(privt), &pub, &priv),
              CKR_SESSION_READ_ONLY);
    assert_rv(
        F->C_GenerateKeyPair(ro, &mech, sess_pub, NA(sess_pub), privt, NA(privt), &pub, &priv),
        CKR_SESSION_READ_ONLY);
    /* Neither half was left behind. */
    assert_int_equal(count_class(rw, CKO_PUBLIC_KEY), 0);
    assert_int_equal(count_class(rw, CKO_PRIVATE_KEY), 0);

    /* Session keys in an R/O session; the private template's CKA_ID is
     * used for both. */
    assert_ok(F->C_GenerateKeyPair(ro, &mech, sess_pub, NA(sess_pub), sess_priv, NA(sess_priv),
                                   &pub, &priv));
    assert_int_equal(get_bool(ro, pub, CKA_TOKEN), CK_FALSE);
    assert_int_equal(get_bool(ro, priv, CKA_TOKEN), CK_FALSE);
    /* evertoken's choice (docs/objects.md): one CKA_ID for the pair when
     * only one template gives it; SoftHSMv2 leaves the other one empty. */
    if (is_evertoken())
        assert_int_equal(conf_find(rw, byid, NA(byid), found, 4, 4), 2);

    /* Token keys survive C_Finalize; session keys do not. */
    assert_ok(F->C_GenerateKeyPair(rw, &mech, pubt, NA(pubt), privt, NA(privt), &pub, &priv));
    assert_int_equal(get_bool(rw, pub, CKA_TOKEN), CK_TRUE);
    assert_int_equal(get_bool(rw, priv, CKA_TOKEN), CK_TRUE);
    id1 = get_val(rw, pub, CKA_ID);
    conf_reinit();
    E.slot = conf_slot_by_label(CONF_LABEL); /* SoftHSMv2 renumbers slots */
    rw = conf_open(CKF_RW_SESSION);
    assert_int_equal(conf_find(rw, byid, NA(byid), found, 4, 4), 0);
    assert_int_equal(conf_find(rw, bylabel, NA(bylabel), found, 4, 4), 1); /* the public key */
    conf_login_user(rw);
    assert_int_equal(conf_find(rw, bylabel, NA(bylabel), found, 4, 4), 2);
    id2 = get_val(rw, found[0], CKA_ID);
    assert_int_equal(id1.n, id2.n);
    assert_memory_equal(id1.p, id2.p, id1.n);
    free(id1.p);
    free(id2.p);
    assert_int_equal(get_bool(rw, found[0], CKA_LOCAL), CK_TRUE);
    assert_int_equal(get_bool(rw, found[1], CKA_LOCAL), CK_TRUE);
    assert_ok(F->C_CloseSession(rw));
}

/* ---- using generated keys ------------------------------------------------- */

/* The OpenSSL public key of a generated public key object, from its
 * standard attributes (CKA_MODULUS/CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS/
 * CKA_EC_POINT), so the check does not rest on CKA_PUBLIC_KEY_INFO. */
static EVP_PKEY *
public_from_attrs(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE pub, CK_KEY_TYPE kt, const char *alg)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params;
    EVP_PKEY_CTX *ctx;
    EVP_PKEY *pk = NULL;
    struct val raw;
    BIGNUM *n = NULL, *e = NULL;

    assert_non_null(bld);
    if (kt == CKK_EC_EDWARDS) {
        raw = ec_point_raw(h, pub);
        pk = EVP_PKEY_new_raw_public_key_ex(NULL, alg, NULL, raw.p, raw.n);
        assert_non_null(pk);
        free(raw.p);
        OSSL_PARAM_BLD_free(bld);
        return pk;
    }
    if (kt == CKK_RSA) {
        n = attr_bn(h, pub, CKA_MODULUS);
        e = attr_bn(h, pub, CKA_PUBLIC_EXPONENT);
        assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n), 1);
        assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e), 1);
        raw.p = NULL;
    } else {
        raw = ec_point_raw(h, pub);
        assert_int_equal(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, alg, 0),
                         1);
        assert_int_equal(
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, raw.p, raw.n), 1);
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, kt == CKK_RSA ? "RSA" : "EC", NULL);
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    free(raw.p);
    return pk;
}

/* C_Sign with the generated private key; OpenSSL verifies the signature
 * with the key read from the public object. ECDSA signatures are r || s
 * (2.40 current mechanisms 2.3.1), re-encoded as DER for OpenSSL. */
static void
sign_and_verify(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE pub, CK_OBJECT_HANDLE priv,
                CK_MECHANISM_TYPE m, CK_KEY_TYPE kt, const char *alg)
{
    static const unsigned char msg[] = "signed by a key the token generated";
    CK_MECHANISM mech = {m, NULL, 0};
    unsigned char sig[1024], der[256], *pder = der;
    CK_ULONG siglen = sizeof(sig);
    const unsigned char *vsig = sig;
    size_t vlen;
    EVP_PKEY *pk = public_from_attrs(h, pub, kt, alg);
    EVP_MD_CTX *c = EVP_MD_CTX_new();

    if (m == CKM_ECDSA_SHA256 && !have_mech(CKM_ECDSA_SHA256)) {
        /* SoftHSMv2 2.6 has no hashed ECDSA: sign the SHA-256 digest. */
        unsigned char md[32];
        mech.mechanism = CKM_ECDSA;
        SHA256(msg, sizeof(msg), md);
        assert_ok(F->C_SignInit(h, &mech, priv));
        assert_ok(F->C_Sign(h, md, sizeof(md), sig, &siglen));
    } else {
        assert_ok(F->C_SignInit(h, &mech, priv));
        assert_ok(F->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg), sig, &siglen));
    }
    vlen = siglen;
    if (kt == CKK_EC) {
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, (int)siglen / 2, NULL);
        BIGNUM *s = BN_bin2bn(sig + siglen / 2, (int)siglen / 2, NULL);
        assert_int_equal(ECDSA_SIG_set0(es, r, s), 1);
        vlen = (size_t)i2d_ECDSA_SIG(es, &pder);
        ECDSA_SIG_free(es);
        vsig = der;
    }
    assert_int_equal(
        EVP_DigestVerifyInit(c, NULL, kt == CKK_EC_EDWARDS ? NULL : EVP_sha256(), NULL, pk), 1);
    assert_int_equal(EVP_DigestVerify(c, vsig, vlen, msg, sizeof(msg)), 1);
    EVP_MD_CTX_free(c);
    EVP_PKEY_free(pk);
}

static void
t_generated_keys_sign(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_OBJECT_HANDLE pub, priv;

    (void)state;
    conf_login_user(h);
    assert_ok(gen_rsa(h, 2048, CK_FALSE, CK_TRUE, CK_FALSE, &pub, &priv));
    sign_and_verify(h, pub, priv, CKM_SHA256_RSA_PKCS, CKK_RSA, NULL);
    assert_ok(gen_ec(h, CKM_EC_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), CK_TRUE, CK_FALSE,
                     CK_FALSE, &pub, &priv));
    sign_and_verify(h, pub, priv, CKM_ECDSA_SHA256, CKK_EC, "P-256");
    assert_ok(gen_ec(h, CKM_EC_KEY_PAIR_GEN, oid_p384, sizeof(oid_p384), CK_TRUE, CK_FALSE,
                     CK_FALSE, &pub, &priv));
    sign_and_verify(h, pub, priv, CKM_ECDSA_SHA256, CKK_EC, "P-384");
    if (!is_softhsm() || have_mech(CKM_EDDSA)) {
        assert_ok(gen_ec(h, CKM_EC_EDWARDS_KEY_PAIR_GEN, oid_ed25519, sizeof(oid_ed25519), CK_TRUE,
                         CK_FALSE, CK_FALSE, &pub, &priv));
        sign_and_verify(h, pub, priv, CKM_EDDSA, CKK_EC_EDWARDS, "ED25519");
        assert_ok(gen_ec(h, CKM_EC_EDWARDS_KEY_PAIR_GEN, oid_ed448, sizeof(oid_ed448), CK_TRUE,
                         CK_FALSE, CK_FALSE, &pub, &priv));
        sign_and_verify(h, pub, priv, CKM_EDDSA, CKK_EC_EDWARDS, "ED448");
    }
    assert_ok(F->C_CloseSession(h));
}

/* ---- generation does not stop other sessions ------------------------------ */

struct slow_gen {
    CK_SESSION_HANDLE h;
    CK_RV rv;
    atomic_int started, done;
};

static void *
slow_gen_thread(void *arg)
{
    struct slow_gen *g = arg;
    CK_OBJECT_HANDLE pub, priv;

    atomic_store(&g->started, 1);
    g->rv = gen_rsa(g->h, 4096, CK_FALSE, CK_TRUE, CK_FALSE, &pub, &priv);
    atomic_store(&g->done, 1);
    return NULL;
}

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* While one session generates an RSA-4096 pair (typically a second), another
 * session of the same token keeps working: the module lock is not held
 * during the generation (mod_int.h). Had it been, the other session's first
 * call would wait for the rest of the generation. An attempt counts when all
 * of the other session's calls finished, each within 250 ms, while the
 * generation was still running; a quick generation is retried. */
static void
t_generate_unlocked(void **state)
{
    CK_SESSION_HANDLE h2;
    struct slow_gen g;
    int overlapped = 0;

    (void)state;
    if (!is_evertoken())
        skip(); /* a design property of evertoken, not a standard rule */
    memset(&g, 0, sizeof(g));
    g.h = conf_open(CKF_RW_SESSION);
    h2 = conf_open(0);
    conf_login_user(g.h);
    for (int attempt = 0; attempt < 5 && !overlapped; attempt++) {
        pthread_t th;
        unsigned char rnd[16];
        double worst = 0;

        atomic_store(&g.started, 0);
        atomic_store(&g.done, 0);
        assert_int_equal(pthread_create(&th, NULL, slow_gen_thread, &g), 0);
        while (!atomic_load(&g.started))
            ;
        /* Let it get past its checks into the generation. */
        usleep(50 * 1000);
        for (int i = 0; i < 10; i++) {
            double t0 = now_ms(), dt;
            assert_ok(F->C_GenerateRandom(h2, rnd, sizeof(rnd)));
            assert_int_equal(count_class(h2, CKO_DATA), 0);
            dt = now_ms() - t0;
            if (dt > worst)
                worst = dt;
        }
        overlapped = !atomic_load(&g.done) && worst < 250.0;
        assert_int_equal(pthread_join(th, NULL), 0);
        assert_ok(g.rv);
    }
    assert_true(overlapped);
    assert_ok(F->C_CloseSession(h2));
    assert_ok(F->C_CloseSession(g.h));
}

/* The mechanism table lists what C_GenerateKeyPair and C_DeriveKey do. */
static void
t_keygen_mechanism_info(void **state)
{
    static const struct {
        CK_MECHANISM_TYPE m;
        CK_FLAGS flag;
        CK_ULONG min, max;
    } want[] = {
        {CKM_RSA_PKCS_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR, 2048, 8192},
        {CKM_EC_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR, 256, 521},
        {CKM_EC_EDWARDS_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR, 255, 456},
        {CKM_ECDH1_DERIVE, CKF_DERIVE, 256, 521},
    };

    (void)state;
    for (size_t i = 0; i < NA(want); i++) {
        CK_MECHANISM_INFO info;
        CK_RV rv = F->C_GetMechanismInfo(E.slot, want[i].m, &info);

        if (is_softhsm() && rv == CKR_MECHANISM_INVALID)
            continue; /* EdDSA when SoftHSMv2 was built without it */
        assert_ok(rv);
        assert_true(info.flags & want[i].flag);
        /* The sizes are evertoken's (SoftHSMv2's RSA range starts lower). */
        if (is_evertoken()) {
            assert_int_equal(info.ulMinKeySize, want[i].min);
            assert_int_equal(info.ulMaxKeySize, want[i].max);
        }
    }
}

/* ---- C_DeriveKey: CKM_ECDH1_DERIVE ---------------------------------------- */

struct peer {
    EVP_PKEY *key;
    unsigned char raw[133];
    size_t rawlen;
    unsigned char der[140];
    size_t derlen;
};

static void
peer_new(struct peer *p, const char *curve)
{
    p->key = EVP_EC_gen(curve);
    assert_non_null(p->key);
    assert_int_equal(EVP_PKEY_get_octet_string_param(p->key, OSSL_PKEY_PARAM_PUB_KEY, p->raw,
                                                     sizeof(p->raw), &p->rawlen),
                     1);
    assert_true(p->rawlen < 256);
    p->der[0] = 0x04; /* OCTET STRING, short or one-byte long form length */
    p->derlen = 1;
    if (p->rawlen >= 128)
        p->der[p->derlen++] = 0x81;
    p->der[p->derlen++] = (unsigned char)p->rawlen;
    memcpy(p->der + p->derlen, p->raw, p->rawlen);
    p->derlen += p->rawlen;
}

/* Z computed by OpenSSL on the peer's side against the token key PUB. */
static struct val
peer_secret(struct peer *p, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE pub, const char *curve)
{
    struct val raw = ec_point_raw(h, pub), z;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *tk = NULL;
    size_t len = 0;

    assert_non_null(bld);
    assert_int_equal(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curve, 0), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, raw.p, raw.n),
                     1);
    params = OSSL_PARAM_BLD_to_param(bld);
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &tk, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(ctx);
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, p->key, NULL);
    assert_int_equal(EVP_PKEY_derive_init(ctx), 1);
    assert_int_equal(EVP_PKEY_derive_set_peer(ctx, tk), 1);
    assert_int_equal(EVP_PKEY_derive(ctx, NULL, &len), 1);
    z.p = malloc(len);
    assert_non_null(z.p);
    assert_int_equal(EVP_PKEY_derive(ctx, z.p, &len), 1);
    z.n = (CK_ULONG)len;
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(tk);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    free(raw.p);
    return z;
}

/* Derive from BASE with the peer's public DATA into an extractable key of
 * type KT (VLEN 0: none given); returns C_DeriveKey's rv. */
static CK_RV
derive(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE base, CK_ULONG kdf, const void *shared,
       CK_ULONG sharedlen, const void *data, size_t datalen, CK_KEY_TYPE kt, CK_ULONG vlen,
       CK_BBOOL sensitive, CK_BBOOL extractable, CK_OBJECT_HANDLE *out)
{
    CK_ECDH1_DERIVE_PARAMS prm;
    CK_MECHANISM mech = {CKM_ECDH1_DERIVE, &prm, sizeof(prm)};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
        {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
        {CKA_VALUE_LEN, &vlen, sizeof(vlen)},
    };

    memset(&prm, 0, sizeof(prm));
    prm.kdf = kdf;
    prm.pSharedData = (CK_BYTE_PTR)shared;
    prm.ulSharedDataLen = sharedlen;
    prm.pPublicData = (CK_BYTE_PTR)data;
    prm.ulPublicDataLen = (CK_ULONG)datalen;
    return F->C_DeriveKey(h, &mech, base, t, vlen ? NA(t) : NA(t) - 1, out);
}

static void
check_value(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k, const unsigned char *want, size_t n)
{
    struct val v = get_val(h, k, CKA_VALUE);

    assert_int_equal(v.n, n);
    assert_memory_equal(v.p, want, n);
    /* SoftHSMv2 2.6 leaves CKA_VALUE_LEN 0 when the template did not give
     * it; the standard says it is the value's length. */
    if (!is_softhsm() || get_ulong(h, k, CKA_VALUE_LEN) != 0)
        assert_int_equal(get_ulong(h, k, CKA_VALUE_LEN), n);
    free(v.p);
}

static void
t_derive_ecdh(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_OBJECT_HANDLE pub, priv, k;
    struct peer p;
    struct val z;

    (void)state;
    conf_login_user(h);
    peer_new(&p, "P-256");
    assert_ok(gen_ec(h, CKM_EC_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), CK_TRUE, CK_FALSE, CK_TRUE,
                     &pub, &priv));
    z = peer_secret(&p, h, pub, "P-256");
    assert_int_equal(z.n, 32);

    /* The whole secret, peer point raw (the form every token must take). */
    assert_ok(derive(h, priv, CKD_NULL, NULL, 0, p.raw, p.rawlen, CKK_GENERIC_SECRET, 0, CK_FALSE,
                     CK_TRUE, &k));
    check_value(h, k, z.p, z.n);
    assert_int_equal(get_ulong(h, k, CKA_CLASS), CKO_SECRET_KEY);
    assert_int_equal(get_ulong(h, k, CKA_KEY_TYPE), CKK_GENERIC_SECRET);
    assert_int_equal(get_bool(h, k, CKA_LOCAL), CK_FALSE);
    assert_int_equal(get_bool(h, k, CKA_ALWAYS_SENSITIVE), CK_FALSE);
    assert_int_equal(get_bool(h, k, CKA_NEVER_EXTRACTABLE), CK_FALSE);
    if (is_evertoken())
        assert_int_equal(get_ulong(h, k, CKA_KEY_GEN_MECHANISM), CK_UNAVAILABLE_INFORMATION);

    /* The peer point as a DER OCTET STRING; a shorter generic key keeps the
     * secret's last bytes (the convention of NSS and SoftHSMv2). */
    assert_ok(derive(h, priv, CKD_NULL, NULL, 0, p.der, p.derlen, CKK_GENERIC_SECRET, 20, CK_FALSE,
                     CK_TRUE, &k));
    check_value(h, k, z.p + 12, 20);

    /* AES keys of 16, 24 and 32 bytes. */
    for (CK_ULONG len = 16; len <= 32; len += 8) {
        assert_ok(derive(h, priv, CKD_NULL, NULL, 0, p.raw, p.rawlen, CKK_AES, len, CK_FALSE,
                         CK_TRUE, &k));
        assert_int_equal(get_ulong(h, k, CKA_KEY_TYPE), CKK_AES);
        check_value(h, k, z.p + (32 - len), len);
    }

    /* Sensitive, not extractable, from a generated (always sensitive, never
     * extractable) base key: so is the derived key (5.16, table 4.9). */
    assert_ok(
        derive(h, priv, CKD_NULL, NULL, 0, p.raw, p.rawlen, CKK_AES, 32, CK_TRUE, CK_FALSE, &k));
    assert_int_equal(get_bool(h, k, CKA_ALWAYS_SENSITIVE), CK_TRUE);
    assert_int_equal(get_bool(h, k, CKA_NEVER_EXTRACTABLE), CK_TRUE);
    assert_sensitive(h, k, CKA_VALUE);

    /* P-384 and P-521 secrets. */
    {
        static const struct {
            const unsigned char *oid;
            size_t len;
            const char *name;
            size_t zlen;
        } c[] = {{oid_p384, sizeof(oid_p384), "P-384", 48},
                 {oid_p521, sizeof(oid_p521), "P-521", 66}};
        for (size_t i = 0; i < NA(c); i++) {
            struct peer q;
            struct val zq;
            peer_new(&q, c[i].name);
            assert_ok(gen_ec(h, CKM_EC_KEY_PAIR_GEN, c[i].oid, c[i].len, CK_TRUE, CK_FALSE, CK_TRUE,
                             &pub, &priv));
            zq = peer_secret(&q, h, pub, c[i].name);
            assert_int_equal(zq.n, c[i].zlen);
            assert_ok(derive(h, priv, CKD_NULL, NULL, 0, q.raw, q.rawlen, CKK_GENERIC_SECRET, 0,
                             CK_FALSE, CK_TRUE, &k));
            check_value(h, k, zq.p, zq.n);
            free(zq.p);
            EVP_PKEY_free(q.key);
        }
    }
    free(z.p);
    EVP_PKEY_free(p.key);
    assert_ok(F->C_CloseSession(h));
}

/* An imported base key (never "always sensitive"), a token key as the
 * derived key, and CKA_ALLOWED_MECHANISMS on the base key. */
static void
t_derive_imported_base(void **state)
{
    const struct conf_material *m = conf_material();
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    CK_BBOOL t = CK_TRUE;
    CK_MECHANISM_TYPE only_ecdsa = CKM_ECDSA;
    CK_ATTRIBUTE tpriv[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_SENSITIVE, &t, sizeof(t)},
        {CKA_DERIVE, &t, sizeof(t)},
        {CKA_EC_PARAMS, m->ec_params.p, m->ec_params.n},
        {CKA_VALUE, m->ec_value.p, m->ec_value.n},
        {CKA_ALLOWED_MECHANISMS, &only_ecdsa, sizeof(only_ecdsa)},
    };
    CK_OBJECT_HANDLE base, restricted, k, found[2];
    CK_OBJECT_CLASS sec = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES;
    CK_ULONG len = 32;
    CK_ECDH1_DERIVE_PARAMS prm;
    CK_MECHANISM mech = {CKM_ECDH1_DERIVE, &prm, sizeof(prm)};
    CK_ATTRIBUTE tk[] = {{CKA_CLASS, &sec, sizeof(sec)},     {CKA_KEY_TYPE, &aes, sizeof(aes)},
                         {CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_TOKEN, &t, sizeof(t)},
                         {CKA_SENSITIVE, &t, sizeof(t)},     {CKA_LABEL, "derived", 7}};
    CK_ATTRIBUTE bylabel[] = {{CKA_LABEL, "derived", 7}};
    struct peer p;

    (void)state;
    conf_login_user(h);
    peer_new(&p, "P-256");
    assert_ok(F->C_CreateObject(h, tpriv, NA(tpriv) - 1, &base));
    assert_ok(F->C_CreateObject(h, tpriv, NA(tpriv), &restricted));
    memset(&prm, 0, sizeof(prm));
    prm.kdf = CKD_NULL;
    prm.pPublicData = p.raw;
    prm.ulPublicDataLen = (CK_ULONG)p.rawlen;
    /* The base key's CKA_ALLOWED_MECHANISMS does not list ECDH. */
    assert_rv(F->C_DeriveKey(h, &mech, restricted, tk, NA(tk), &k), CKR_MECHANISM_INVALID);
    assert_ok(F->C_DeriveKey(h, &mech, base, tk, NA(tk), &k));
    assert_int_equal(get_bool(h, k, CKA_TOKEN), CK_TRUE);
    assert_int_equal(get_bool(h, k, CKA_SENSITIVE), CK_TRUE);
    /* Sensitive now, but its base key has been outside a token. */
    assert_int_equal(get_bool(h, k, CKA_ALWAYS_SENSITIVE), CK_FALSE);
    assert_int_equal(get_bool(h, k, CKA_NEVER_EXTRACTABLE), CK_FALSE);
    assert_int_equal(get_bool(h, k, CKA_LOCAL), CK_FALSE);
    /* A token object: still there after C_Finalize. */
    assert_ok(F->C_CloseSession(h));
    conf_reinit();
    E.slot = conf_slot_by_label(CONF_LABEL);
    h = conf_open(0);
    conf_login_user(h);
    assert_int_equal(conf_find(h, bylabel, NA(bylabel), found, 2, 2), 1);
    assert_int_equal(get_ulong(h, found[0], CKA_VALUE_LEN), 32);
    EVP_PKEY_free(p.key);
    assert_ok(F->C_CloseSession(h));
}

/* ANSI X9.63 KDF written out: SHA-256(Z || counter || info), counter from 1. */
static void
x963_sha256(const unsigned char *z, size_t zlen, const unsigned char *info, size_t infolen,
            unsigned char *out, size_t outlen)
{
    unsigned char block[SHA256_DIGEST_LENGTH];
    uint32_t counter = 1;

    while (outlen > 0) {
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        unsigned char cb[4] = {(unsigned char)(counter >> 24), (unsigned char)(counter >> 16),
                               (unsigned char)(counter >> 8), (unsigned char)counter};
        size_t n = outlen < sizeof(block) ? outlen : sizeof(block);
        assert_int_equal(EVP_DigestInit_ex(c, EVP_sha256(), NULL), 1);
        assert_int_equal(EVP_DigestUpdate(c, z, zlen), 1);
        assert_int_equal(EVP_DigestUpdate(c, cb, sizeof(cb)), 1);
        if (infolen > 0)
            assert_int_equal(EVP_DigestUpdate(c, info, infolen), 1);
        assert_int_equal(EVP_DigestFinal_ex(c, block, NULL), 1);
        EVP_MD_CTX_free(c);
        memcpy(out, block, n);
        out += n;
        outlen -= n;
        counter++;
    }
}

static void
t_derive_ecdh_kdf(void **state)
{
    CK_SESSION_HANDLE h;
    CK_OBJECT_HANDLE pub, priv, k;
    struct peer p;
    struct val z;
    unsigned char want[48], sha1[SHA_DIGEST_LENGTH];
    static const unsigned char info[] = "evertoken shared info";

    (void)state;
    /* SoftHSMv2 2.6 implements CKD_NULL only (its C_DeriveKey returns
     * CKR_MECHANISM_PARAM_INVALID for the X9.63 KDFs). */
    if (!is_evertoken())
        skip();
    h = conf_open(CKF_RW_SESSION);
    conf_login_user(h);
    peer_new(&p, "P-256");
    assert_ok(gen_ec(h, CKM_EC_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), CK_TRUE, CK_FALSE, CK_TRUE,
                     &pub, &priv));
    z = peer_secret(&p, h, pub, "P-256");
    /* Two hash blocks, with shared info. */
    x963_sha256(z.p, z.n, info, sizeof(info) - 1, want, sizeof(want));
    assert_ok(derive(h, priv, CKD_SHA256_KDF, info, sizeof(info) - 1, p.raw, p.rawlen,
                     CKK_GENERIC_SECRET, 48, CK_FALSE, CK_TRUE, &k));
    check_value(h, k, want, 48);
    /* An AES key, without shared info. */
    x963_sha256(z.p, z.n, NULL, 0, want, 16);
    assert_ok(derive(h, priv, CKD_SHA256_KDF, NULL, 0, p.raw, p.rawlen, CKK_AES, 16, CK_FALSE,
                     CK_TRUE, &k));
    check_value(h, k, want, 16);
    /* No CKA_VALUE_LEN: one digest's worth. SHA-1(Z || 00000001). */
    {
        unsigned char buf[80];
        memcpy(buf, z.p, z.n);
        memcpy(buf + z.n, "\x00\x00\x00\x01", 4);
        SHA1(buf, z.n + 4, sha1);
    }
    assert_ok(derive(h, priv, CKD_SHA1_KDF, NULL, 0, p.raw, p.rawlen, CKK_GENERIC_SECRET, 0,
                     CK_FALSE, CK_TRUE, &k));
    check_value(h, k, sha1, sizeof(sha1));
    free(z.p);
    EVP_PKEY_free(p.key);
    assert_ok(F->C_CloseSession(h));
}

static void
t_derive_errors(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION), ro;
    CK_OBJECT_HANDLE pub, priv, noderive_pub, noderive, rsa_pub, rsa_priv, k;
    CK_ECDH1_DERIVE_PARAMS prm;
    CK_MECHANISM mech = {CKM_ECDH1_DERIVE, &prm, sizeof(prm)};
    CK_MECHANISM short_param = {CKM_ECDH1_DERIVE, &prm, sizeof(prm) - 1};
    CK_MECHANISM no_param = {CKM_ECDH1_DERIVE, NULL, 0};
    CK_MECHANISM wrong = {CKM_SHA256, NULL, 0};
    CK_KEY_TYPE rsa = CKK_RSA, gen = CKK_GENERIC_SECRET;
    CK_OBJECT_CLASS data = CKO_DATA, sec = CKO_SECRET_KEY;
    CK_ULONG vlen = 32;
    /* Complete templates: SoftHSMv2 2.6 refuses an empty one
     * (CKR_ARGUMENTS_BAD) and one without CKA_CLASS (CKR_TEMPLATE_INCOMPLETE). */
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &sec, sizeof(sec)},
                        {CKA_KEY_TYPE, &gen, sizeof(gen)},
                        {CKA_VALUE_LEN, &vlen, sizeof(vlen)}};
    CK_ATTRIBUTE t_rsa[] = {{CKA_CLASS, &sec, sizeof(sec)}, {CKA_KEY_TYPE, &rsa, sizeof(rsa)}};
    CK_ATTRIBUTE t_data[] = {{CKA_CLASS, &data, sizeof(data)},
                             {CKA_KEY_TYPE, &gen, sizeof(gen)},
                             {CKA_VALUE_LEN, &vlen, sizeof(vlen)}};
    CK_ATTRIBUTE t_local[] = {{CKA_CLASS, &sec, sizeof(sec)},
                              {CKA_KEY_TYPE, &gen, sizeof(gen)},
                              {CKA_VALUE_LEN, &vlen, sizeof(vlen)},
                              {CKA_LOCAL, &yes, sizeof(yes)}};
    CK_ATTRIBUTE t_token[] = {{CKA_CLASS, &sec, sizeof(sec)},
                              {CKA_KEY_TYPE, &gen, sizeof(gen)},
                              {CKA_VALUE_LEN, &vlen, sizeof(vlen)},
                              {CKA_TOKEN, &yes, sizeof(yes)}};
    CK_ATTRIBUTE t_derive[] = {{CKA_DERIVE, &yes, sizeof(yes)}};
    struct peer p, other;
    unsigned char bad[65];

    (void)state;
    conf_login_user(h);
    peer_new(&p, "P-256");
    peer_new(&other, "P-384");
    assert_ok(gen_ec(h, CKM_EC_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), CK_TRUE, CK_FALSE, CK_TRUE,
                     &pub, &priv));
    assert_ok(gen_ec(h, CKM_EC_KEY_PAIR_GEN, oid_p256, sizeof(oid_p256), CK_TRUE, CK_FALSE,
                     CK_FALSE, &noderive_pub, &noderive));
    assert_ok(gen_rsa(h, 2048, CK_FALSE, CK_TRUE, CK_FALSE, &rsa_pub, &rsa_priv));
    memset(&prm, 0, sizeof(prm));
    prm.kdf = CKD_NULL;
    prm.pPublicData = p.raw;
    prm.ulPublicDataLen = (CK_ULONG)p.rawlen;

    assert_rv(F->C_DeriveKey(h, NULL, priv, t, NA(t), &k), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_DeriveKey(h, &mech, priv, NULL, 0, NULL), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_DeriveKey(CK_INVALID_HANDLE, &mech, priv, t, NA(t), &k),
              CKR_SESSION_HANDLE_INVALID);
    assert_rv(F->C_DeriveKey(h, &wrong, priv, t, NA(t), &k), CKR_MECHANISM_INVALID);
    /* The base key: a private EC key that allows deriving. */
    assert_rv(F->C_DeriveKey(h, &mech, noderive, t, NA(t), &k), CKR_KEY_FUNCTION_NOT_PERMITTED);
    assert_ok(F->C_SetAttributeValue(h, rsa_priv, t_derive, 1));
    assert_rv(F->C_DeriveKey(h, &mech, rsa_priv, t, NA(t), &k), CKR_KEY_TYPE_INCONSISTENT);
    /* The new key: a secret key of a type the mechanism makes. */
    assert_rv(F->C_DeriveKey(h, &mech, priv, t_rsa, NA(t_rsa), &k), CKR_TEMPLATE_INCONSISTENT);
    assert_rv(F->C_DeriveKey(h, &mech, priv, t_data, NA(t_data), &k),
              /* as for C_GenerateKeyPair: SoftHSMv2 calls the class invalid */
              is_softhsm() ? CKR_ATTRIBUTE_VALUE_INVALID : CKR_TEMPLATE_INCONSISTENT);
    assert_rv(F->C_DeriveKey(h, &mech, priv, t_local, NA(t_local), &k), CKR_ATTRIBUTE_READ_ONLY);
    ro = conf_open(0);
    assert_rv(F->C_DeriveKey(ro, &mech, priv, t_token, NA(t_token), &k), CKR_SESSION_READ_ONLY);
    assert_ok(F->C_CloseSession(ro));
    if (is_evertoken()) {
        /* Codes SoftHSMv2 2.6 does not give (it answers CKR_OBJECT_HANDLE_INVALID,
         * CKR_GENERAL_ERROR or accepts these); the standard's: */
        assert_rv(F->C_DeriveKey(h, &mech, 0x7ffffff0UL, t, NA(t), &k), CKR_KEY_HANDLE_INVALID);
        assert_rv(F->C_DeriveKey(h, &mech, pub, t, NA(t), &k), CKR_KEY_TYPE_INCONSISTENT);
        assert_rv(F->C_DeriveKey(h, &no_param, priv, t, NA(t), &k), CKR_MECHANISM_PARAM_INVALID);
        assert_rv(F->C_DeriveKey(h, &short_param, priv, t, NA(t), &k), CKR_MECHANISM_PARAM_INVALID);
        prm.kdf = 0x1234;
        assert_rv(F->C_DeriveKey(h, &mech, priv, t, NA(t), &k), CKR_MECHANISM_PARAM_INVALID);
        prm.kdf = CKD_NULL;
        prm.pSharedData = bad;
        prm.ulSharedDataLen = 4; /* shared data without a KDF */
        assert_rv(F->C_DeriveKey(h, &mech, priv, t, NA(t), &k), CKR_MECHANISM_PARAM_INVALID);
        prm.pSharedData = NULL;
        prm.ulSharedDataLen = 0;
        /* Not a point of the curve; a point of another curve. */
        memcpy(bad, p.raw, sizeof(bad));
        bad[64] ^= 1;
        prm.pPublicData = bad;
        assert_rv(F->C_DeriveKey(h, &mech, priv, t, NA(t), &k), CKR_MECHANISM_PARAM_INVALID);
        prm.pPublicData = other.raw;
        prm.ulPublicDataLen = (CK_ULONG)other.rawlen;
        assert_rv(F->C_DeriveKey(h, &mech, priv, t, NA(t), &k), CKR_MECHANISM_PARAM_INVALID);
        prm.pPublicData = NULL;
        assert_rv(F->C_DeriveKey(h, &mech, priv, t, NA(t), &k), CKR_MECHANISM_PARAM_INVALID);
        prm.pPublicData = p.raw;
        prm.ulPublicDataLen = (CK_ULONG)p.rawlen;
        /* Lengths: AES needs 16/24/32 and a length; CKD_NULL gives at
         * most the secret's 32 bytes. */
        assert_rv(
            derive(h, priv, CKD_NULL, NULL, 0, p.raw, p.rawlen, CKK_AES, 20, CK_FALSE, CK_TRUE, &k),
            CKR_ATTRIBUTE_VALUE_INVALID);
        assert_rv(
            derive(h, priv, CKD_NULL, NULL, 0, p.raw, p.rawlen, CKK_AES, 0, CK_FALSE, CK_TRUE, &k),
            CKR_TEMPLATE_INCOMPLETE);
        assert_rv(derive(h, priv, CKD_NULL, NULL, 0, p.raw, p.rawlen, CKK_GENERIC_SECRET, 33,
                         CK_FALSE, CK_TRUE, &k),
                  CKR_ATTRIBUTE_VALUE_INVALID);
        /* No secret key was created by any of these. */
        assert_int_equal(count_class(h, CKO_SECRET_KEY), 0);
    }
    /* Still works after all that. */
    assert_ok(F->C_DeriveKey(h, &mech, priv, t, NA(t), &k));
    assert_int_equal(get_ulong(h, k, CKA_CLASS), CKO_SECRET_KEY);
    EVP_PKEY_free(p.key);
    EVP_PKEY_free(other.key);
    assert_ok(F->C_CloseSession(h));
}

/* Key-creating functions without a mechanism on evertoken. */
static void
t_no_mechanism(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_MECHANISM mech = {CKM_VENDOR_DEFINED + 0x4242, NULL, 0};
    CK_OBJECT_HANDLE k;
    CK_ULONG len = 0;

    (void)state;
    conf_login_user(h);
    assert_rv(F->C_GenerateKey(h, NULL, NULL, 0, &k), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_GenerateKey(h, &mech, NULL, 0, NULL), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_GenerateKey(CK_INVALID_HANDLE, &mech, NULL, 0, &k), CKR_SESSION_HANDLE_INVALID);
    assert_rv(F->C_GenerateKey(h, &mech, NULL, 0, &k), CKR_MECHANISM_INVALID);
    assert_rv(F->C_WrapKey(h, NULL, 1, 2, NULL, &len), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_WrapKey(h, &mech, 1, 2, NULL, NULL), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_UnwrapKey(h, &mech, 1, (CK_BYTE_PTR) "x", 1, NULL, 0, NULL), CKR_ARGUMENTS_BAD);
    if (is_evertoken()) {
        /* Unknown key handles come after the mechanism on SoftHSMv2. */
        assert_rv(F->C_WrapKey(h, &mech, 1, 2, NULL, &len), CKR_MECHANISM_INVALID);
        assert_rv(F->C_UnwrapKey(h, &mech, 1, (CK_BYTE_PTR) "x", 1, NULL, 0, &k),
                  CKR_MECHANISM_INVALID);
    }
    assert_ok(F->C_CloseSession(h));
}

struct conf_group
conf_keygen_tests(void)
{
    static const struct CMUnitTest tests[] = {
        CONF_TEST_TOKEN(t_generate_rsa),        CONF_TEST_TOKEN(t_generate_rsa_template),
        CONF_TEST_TOKEN(t_generate_ec),         CONF_TEST_TOKEN(t_generate_ec_template),
        CONF_TEST_TOKEN(t_generate_eddsa),      CONF_TEST_TOKEN(t_generate_rules),
        CONF_TEST_TOKEN(t_derive_ecdh),         CONF_TEST_TOKEN(t_derive_ecdh_kdf),
        CONF_TEST_TOKEN(t_derive_errors),       CONF_TEST_TOKEN(t_no_mechanism),
        CONF_TEST_TOKEN(t_generated_keys_sign), CONF_TEST_TOKEN(t_keygen_mechanism_info),
        CONF_TEST_TOKEN(t_generate_unlocked),   CONF_TEST_TOKEN(t_derive_imported_base),
    };
    struct conf_group g = {"keygen", tests, sizeof(tests) / sizeof(tests[0])};
    return g;
}
