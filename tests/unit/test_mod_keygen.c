/*
 * test_mod_keygen.c — the object layer's constructor for keys made by
 * mechanisms (obj_from_generated, obj_gen_check) and obj_ec_curve.
 *
 * Material comes from keys OpenSSL generates here, in the form keygen.c hands
 * it over; the objects built from it must give back that key (obj_pkey), sign
 * and verify with it, and carry the token-assigned attributes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "object.h"

#define NA(t) (sizeof(t) / sizeof((t)[0]))

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static const obj_policy user = {CK_FALSE, CK_TRUE};

static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
static const unsigned char oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
static const unsigned char oid_ed448[] = {0x06, 0x03, 0x2b, 0x65, 0x71};
static const unsigned char oid_secp256k1[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a};
static const unsigned char name_ed448[] = {0x13, 0x0a, 'e', 'd', 'w', 'a',
                                           'r',  'd',  's', '4', '4', '8'};

/* ---- material ------------------------------------------------------------- */

struct blob {
    unsigned char p[1100];
    CK_ULONG n;
};

/* A material array under construction (values in fixed buffers). */
struct mat {
    CK_ATTRIBUTE a[16];
    struct blob b[16];
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
    m->a[0] = (CK_ATTRIBUTE){CKA_CLASS, &m->cls, sizeof(m->cls)};
    m->a[1] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &m->kt, sizeof(m->kt)};
    m->n = 2;
}

static void
mat_put(struct mat *m, CK_ATTRIBUTE_TYPE type, const void *v, size_t len)
{
    assert_true(m->n < 16 && len <= sizeof(m->b[0].p));
    memcpy(m->b[m->n].p, v, len);
    m->a[m->n] = (CK_ATTRIBUTE){type, m->b[m->n].p, (CK_ULONG)len};
    m->n++;
}

static void
mat_bn(struct mat *m, CK_ATTRIBUTE_TYPE type, EVP_PKEY *pk, const char *name)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1100];
    int n;

    assert_int_equal(EVP_PKEY_get_bn_param(pk, name, &bn), 1);
    n = BN_bn2bin(bn, buf);
    BN_clear_free(bn);
    mat_put(m, type, buf, (size_t)n);
}

static void
mat_octets(struct mat *m, CK_ATTRIBUTE_TYPE type, const unsigned char *raw, size_t len)
{
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    unsigned char *der = NULL;
    int n;

    assert_int_equal(ASN1_OCTET_STRING_set(os, raw, (int)len), 1);
    n = i2d_ASN1_OCTET_STRING(os, &der);
    assert_true(n > 0);
    mat_put(m, type, der, (size_t)n);
    OPENSSL_free(der);
    ASN1_OCTET_STRING_free(os);
}

/* Public and private material of an RSA key (all CRT parts). */
static void
rsa_material(EVP_PKEY *pk, struct mat *pub, struct mat *prv)
{
    mat_init(pub, CKO_PUBLIC_KEY, CKK_RSA);
    mat_init(prv, CKO_PRIVATE_KEY, CKK_RSA);
    mat_bn(pub, CKA_MODULUS, pk, OSSL_PKEY_PARAM_RSA_N);
    mat_bn(pub, CKA_PUBLIC_EXPONENT, pk, OSSL_PKEY_PARAM_RSA_E);
    mat_bn(prv, CKA_MODULUS, pk, OSSL_PKEY_PARAM_RSA_N);
    mat_bn(prv, CKA_PUBLIC_EXPONENT, pk, OSSL_PKEY_PARAM_RSA_E);
    mat_bn(prv, CKA_PRIVATE_EXPONENT, pk, OSSL_PKEY_PARAM_RSA_D);
    mat_bn(prv, CKA_PRIME_1, pk, OSSL_PKEY_PARAM_RSA_FACTOR1);
    mat_bn(prv, CKA_PRIME_2, pk, OSSL_PKEY_PARAM_RSA_FACTOR2);
    mat_bn(prv, CKA_EXPONENT_1, pk, OSSL_PKEY_PARAM_RSA_EXPONENT1);
    mat_bn(prv, CKA_EXPONENT_2, pk, OSSL_PKEY_PARAM_RSA_EXPONENT2);
    mat_bn(prv, CKA_COEFFICIENT, pk, OSSL_PKEY_PARAM_RSA_COEFFICIENT1);
}

static EVP_PKEY *
rsa_key(void)
{
    static EVP_PKEY *k;

    if (k == NULL)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(k);
    return k;
}

/* ---- checks --------------------------------------------------------------- */

static void
sign_verify(EVP_PKEY *signer, EVP_PKEY *verifier)
{
    static const unsigned char msg[] = "evertoken keygen";
    int id = EVP_PKEY_get_base_id(signer);
    const EVP_MD *md = id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? NULL : EVP_sha256();
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *c = EVP_MD_CTX_new();

    assert_int_equal(EVP_DigestSignInit(c, NULL, md, NULL, signer), 1);
    assert_int_equal(EVP_DigestSign(c, sig, &siglen, msg, sizeof(msg)), 1);
    EVP_MD_CTX_free(c);
    c = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(c, NULL, md, NULL, verifier), 1);
    assert_int_equal(EVP_DigestVerify(c, sig, siglen, msg, sizeof(msg)), 1);
    EVP_MD_CTX_free(c);
}

/* The objects hold ORIG: the private one signs what ORIG and the public one
 * verify, and their CKA_PUBLIC_KEY_INFO is ORIG's. */
static void
check_keys(const mod_attrs *pub, const mod_attrs *prv, EVP_PKEY *orig)
{
    EVP_PKEY *k = NULL, *p = NULL;
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(orig, &der);
    const ks_attr *a;

    assert_int_equal(obj_pkey(prv, &k), CKR_OK);
    assert_int_equal(obj_pkey(pub, &p), CKR_OK);
    assert_int_equal(EVP_PKEY_eq(k, orig), 1);
    assert_int_equal(EVP_PKEY_eq(p, orig), 1);
    sign_verify(k, p);
    sign_verify(k, orig);
    a = obj_find(pub, CKA_PUBLIC_KEY_INFO);
    assert_non_null(a);
    assert_int_equal(a->len, n);
    assert_memory_equal(a->value, der, a->len);
    a = obj_find(prv, CKA_PUBLIC_KEY_INFO);
    assert_non_null(a);
    assert_memory_equal(a->value, der, a->len);
    OPENSSL_free(der);
    EVP_PKEY_free(k);
    EVP_PKEY_free(p);
}

static void
check_generated(const mod_attrs *pub, const mod_attrs *prv, CK_MECHANISM_TYPE mech)
{
    assert_int_equal(obj_bool(pub, CKA_LOCAL, CK_FALSE), CK_TRUE);
    assert_int_equal(obj_bool(prv, CKA_LOCAL, CK_FALSE), CK_TRUE);
    assert_int_equal(obj_ulong(pub, CKA_KEY_GEN_MECHANISM, 0), mech);
    assert_int_equal(obj_ulong(prv, CKA_KEY_GEN_MECHANISM, 0), mech);
    assert_int_equal(obj_bool(prv, CKA_ALWAYS_SENSITIVE, CK_FALSE),
                     obj_bool(prv, CKA_SENSITIVE, CK_FALSE));
    assert_int_equal(obj_bool(prv, CKA_NEVER_EXTRACTABLE, CK_FALSE),
                     !obj_bool(prv, CKA_EXTRACTABLE, CK_TRUE));
    assert_null(obj_find(pub, CKA_ALWAYS_SENSITIVE));
    assert_true(prv->secure);
    assert_int_equal(obj_bool(prv, CKA_PRIVATE, CK_FALSE), CK_TRUE);
}

static const obj_origin gen_rsa = {CKM_RSA_PKCS_KEY_PAIR_GEN, CK_FALSE, CK_FALSE};

/* ---- tests ---------------------------------------------------------------- */

static void
test_rsa(void **state)
{
    EVP_PKEY *pk = rsa_key();
    struct mat pub, prv;
    CK_ULONG bits = 2048;
    CK_BYTE e[] = {0x00, 0x00, 0x01, 0x00, 0x01}; /* 65537 with leading zeros */
    CK_ATTRIBUTE tpub[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                           {CKA_PUBLIC_EXPONENT, e, sizeof(e)},
                           {CKA_LABEL, "k", 1},
                           {CKA_TOKEN, &yes, sizeof(yes)}};
    CK_ATTRIBUTE tprv[] = {{CKA_SENSITIVE, &yes, sizeof(yes)},
                           {CKA_ALWAYS_AUTHENTICATE, &yes, sizeof(yes)},
                           {CKA_START_DATE, "20260101", 8}};
    mod_attrs *a = NULL, *b = NULL;
    const ks_attr *v;

    (void)state;
    rsa_material(pk, &pub, &prv);
    assert_int_equal(obj_from_generated(tpub, NA(tpub), pub.a, pub.n, &gen_rsa, &user, &a), CKR_OK);
    assert_int_equal(obj_from_generated(tprv, NA(tprv), prv.a, prv.n, &gen_rsa, &user, &b), CKR_OK);
    check_generated(a, b, CKM_RSA_PKCS_KEY_PAIR_GEN);
    check_keys(a, b, pk);
    assert_int_equal(obj_ulong(a, CKA_MODULUS_BITS, 0), 2048);
    /* The material's exponent (minimal bytes) replaces the template's. */
    v = obj_find(a, CKA_PUBLIC_EXPONENT);
    assert_int_equal(v->len, 3);
    assert_int_equal(obj_bool(a, CKA_TOKEN, CK_FALSE), CK_TRUE);
    assert_int_equal(obj_bool(b, CKA_ALWAYS_AUTHENTICATE, CK_FALSE), CK_TRUE);
    assert_int_equal(obj_bool(b, CKA_ALWAYS_SENSITIVE, CK_FALSE), CK_TRUE);
    assert_int_equal(obj_bool(b, CKA_NEVER_EXTRACTABLE, CK_FALSE), CK_TRUE);
    v = obj_find(b, CKA_START_DATE);
    assert_int_equal(v->len, 8);
    /* CRT parts are stored (for speed) and sensitive. */
    assert_non_null(obj_find(b, CKA_PRIME_1));
    assert_non_null(obj_find(b, CKA_COEFFICIENT));
    {
        CK_BYTE buf[8];
        CK_ATTRIBUTE g = {CKA_PRIME_1, buf, sizeof(buf)};
        assert_int_equal(obj_get(b, &g, 1), CKR_ATTRIBUTE_SENSITIVE);
    }
    obj_free(a);
    obj_free(b);
}

static void
test_rsa_extractable(void **state)
{
    EVP_PKEY *pk = rsa_key();
    struct mat pub, prv;
    CK_ATTRIBUTE tprv[] = {{CKA_SENSITIVE, &no, sizeof(no)}, {CKA_EXTRACTABLE, &yes, sizeof(yes)}};
    mod_attrs *b = NULL;
    CK_BYTE buf[300];
    CK_ATTRIBUTE g = {CKA_PRIVATE_EXPONENT, buf, sizeof(buf)};

    (void)state;
    rsa_material(pk, &pub, &prv);
    assert_int_equal(obj_from_generated(tprv, NA(tprv), prv.a, prv.n, &gen_rsa, &user, &b), CKR_OK);
    assert_int_equal(obj_bool(b, CKA_ALWAYS_SENSITIVE, CK_TRUE), CK_FALSE);
    assert_int_equal(obj_bool(b, CKA_NEVER_EXTRACTABLE, CK_TRUE), CK_FALSE);
    assert_int_equal(obj_get(b, &g, 1), CKR_OK);
    assert_true(g.ulValueLen > 200);
    obj_free(b);
}

/* Template errors: computed values, token-assigned attributes, parameters
 * that disagree, class or key type the mechanism does not make. */
static void
test_template_errors(void **state)
{
    EVP_PKEY *pk = rsa_key();
    struct mat pub, prv;
    CK_ULONG bits = 2048, bits_wrong = 3072;
    CK_OBJECT_CLASS cls_priv = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt_ec = CKK_EC;
    CK_BYTE e3[] = {0x03}, n[] = {0xc5, 0x01};
    CK_ULONG mech = CKM_RSA_PKCS_KEY_PAIR_GEN;
    CK_ATTRIBUTE local[] = {{CKA_LOCAL, &yes, sizeof(yes)}};
    CK_ATTRIBUTE genmech[] = {{CKA_KEY_GEN_MECHANISM, &mech, sizeof(mech)}};
    CK_ATTRIBUTE never[] = {{CKA_NEVER_EXTRACTABLE, &yes, sizeof(yes)}};
    CK_ATTRIBUTE modulus[] = {{CKA_MODULUS, n, sizeof(n)}};
    CK_ATTRIBUTE d[] = {{CKA_PRIVATE_EXPONENT, n, sizeof(n)}};
    CK_ATTRIBUTE wrong_e[] = {{CKA_PUBLIC_EXPONENT, e3, sizeof(e3)}};
    CK_ATTRIBUTE wrong_bits[] = {{CKA_MODULUS_BITS, &bits_wrong, sizeof(bits_wrong)}};
    CK_ATTRIBUTE ok_bits[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)}};
    CK_ATTRIBUTE wrong_class[] = {{CKA_CLASS, &cls_priv, sizeof(cls_priv)}};
    CK_ATTRIBUTE wrong_type[] = {{CKA_KEY_TYPE, &kt_ec, sizeof(kt_ec)}};
    CK_ATTRIBUTE not_private[] = {{CKA_PRIVATE, &no, sizeof(no)}, {CKA_TOKEN, &yes, sizeof(yes)}};
    CK_ATTRIBUTE sign_on_pub[] = {{CKA_SIGN, &yes, sizeof(yes)}};
    CK_ATTRIBUTE trusted[] = {{CKA_TRUSTED, &yes, sizeof(yes)}};
    CK_ATTRIBUTE bad_bool[] = {{CKA_SENSITIVE, "ab", 2}};
    CK_ATTRIBUTE unknown[] = {{CKA_VENDOR_DEFINED + 7, "x", 1}};
    mod_attrs *o = (mod_attrs *)1;

    (void)state;
    rsa_material(pk, &pub, &prv);
#define GEN(t, m) obj_from_generated(t, NA(t), (m).a, (m).n, &gen_rsa, &user, &o)
    assert_int_equal(GEN(local, prv), CKR_ATTRIBUTE_READ_ONLY);
    assert_null(o);
    assert_int_equal(GEN(genmech, pub), CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(GEN(never, prv), CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(GEN(modulus, pub), CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(GEN(d, prv), CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(GEN(wrong_e, pub), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(GEN(wrong_e, prv), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(GEN(wrong_bits, pub), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(GEN(ok_bits, prv), CKR_TEMPLATE_INCONSISTENT); /* not a private attribute */
    assert_int_equal(GEN(wrong_class, pub), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(GEN(wrong_type, prv), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(GEN(not_private, prv), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(GEN(sign_on_pub, pub), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(GEN(trusted, pub), CKR_ATTRIBUTE_READ_ONLY); /* not the SO */
    assert_int_equal(GEN(bad_bool, prv), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(GEN(unknown, prv), CKR_ATTRIBUTE_TYPE_INVALID);
    assert_null(o);
    /* obj_gen_check says the same without material. */
    assert_int_equal(obj_gen_check(local, 1, CKO_PRIVATE_KEY, CKK_RSA, &user),
                     CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(obj_gen_check(modulus, 1, CKO_PUBLIC_KEY, CKK_RSA, &user),
                     CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(obj_gen_check(wrong_type, 1, CKO_PRIVATE_KEY, CKK_RSA, &user),
                     CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(obj_gen_check(sign_on_pub, 1, CKO_PUBLIC_KEY, CKK_RSA, &user),
                     CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(obj_gen_check(ok_bits, 1, CKO_PUBLIC_KEY, CKK_RSA, &user), CKR_OK);
    assert_int_equal(obj_gen_check(NULL, 0, CKO_PRIVATE_KEY, CKK_EC_EDWARDS, &user), CKR_OK);
    assert_int_equal(obj_gen_check(NULL, 1, CKO_PRIVATE_KEY, CKK_RSA, &user), CKR_ARGUMENTS_BAD);
    /* An SO may make a trusted public key. */
    {
        obj_policy so = {CK_TRUE, CK_FALSE};
        assert_int_equal(obj_gen_check(trusted, 1, CKO_PUBLIC_KEY, CKK_RSA, &so), CKR_OK);
    }
#undef GEN
}

/* Material that is not a key: the same checks as an import. */
static void
test_bad_material(void **state)
{
    EVP_PKEY *pk = rsa_key();
    struct mat pub, prv, none;
    mod_attrs *o = NULL;
    CK_ULONG bits = 2048;
    CK_ATTRIBUTE ok_bits[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)}};

    (void)state;
    rsa_material(pk, &pub, &prv);
    /* Flip a bit of d: the pairwise check fails. */
    prv.b[4].p[prv.b[4].n / 2] ^= 0x10;
    assert_int_equal(prv.a[4].type, CKA_PRIVATE_EXPONENT);
    assert_int_equal(obj_from_generated(NULL, 0, prv.a, prv.n, &gen_rsa, &user, &o),
                     CKR_TEMPLATE_INCONSISTENT);
    /* A private attribute in public material: the mechanism's bug. */
    rsa_material(pk, &pub, &prv);
    mat_put(&pub, CKA_PRIME_1, "\x05", 1);
    assert_int_equal(obj_from_generated(ok_bits, 1, pub.a, pub.n, &gen_rsa, &user, &o),
                     CKR_GENERAL_ERROR);
    /* Material must say what it is. */
    memset(&none, 0, sizeof(none));
    assert_int_equal(obj_from_generated(NULL, 0, none.a, 0, &gen_rsa, &user, &o),
                     CKR_ARGUMENTS_BAD);
    assert_int_equal(obj_from_generated(NULL, 0, NULL, 0, &gen_rsa, &user, &o), CKR_ARGUMENTS_BAD);
    assert_int_equal(obj_from_generated(NULL, 0, prv.a, prv.n, NULL, &user, &o), CKR_ARGUMENTS_BAD);
    assert_int_equal(obj_from_generated(NULL, 0, prv.a, prv.n, &gen_rsa, &user, NULL),
                     CKR_ARGUMENTS_BAD);
    assert_null(o);
}

static void
ec_material(EVP_PKEY *pk, const unsigned char *params, size_t plen, size_t dlen, struct mat *pub,
            struct mat *prv)
{
    unsigned char pt[200], d[80];
    size_t ptlen = 0;
    BIGNUM *bn = NULL;

    mat_init(pub, CKO_PUBLIC_KEY, CKK_EC);
    mat_init(prv, CKO_PRIVATE_KEY, CKK_EC);
    assert_int_equal(
        EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &ptlen), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_PRIV_KEY, &bn), 1);
    assert_int_equal(BN_bn2binpad(bn, d, (int)dlen), (int)dlen);
    BN_clear_free(bn);
    mat_put(pub, CKA_EC_PARAMS, params, plen);
    mat_octets(pub, CKA_EC_POINT, pt, ptlen);
    mat_put(prv, CKA_EC_PARAMS, params, plen);
    mat_put(prv, CKA_VALUE, d, dlen);
}

static void
test_ec(void **state)
{
    static const obj_origin gen = {CKM_EC_KEY_PAIR_GEN, CK_FALSE, CK_FALSE};
    struct {
        const char *name;
        const unsigned char *oid;
        size_t oidlen, dlen;
    } c[] = {{"P-256", oid_p256, sizeof(oid_p256), 32}, {"P-521", oid_p521, sizeof(oid_p521), 66}};

    (void)state;
    for (size_t i = 0; i < NA(c); i++) {
        EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", c[i].name);
        struct mat pub, prv;
        CK_ATTRIBUTE tpub[] = {{CKA_EC_PARAMS, (void *)c[i].oid, c[i].oidlen}};
        CK_ATTRIBUTE tprv_same[] = {{CKA_EC_PARAMS, (void *)c[i].oid, c[i].oidlen},
                                    {CKA_DERIVE, &yes, sizeof(yes)}};
        CK_ATTRIBUTE tprv_other[] = {{CKA_EC_PARAMS, (void *)oid_secp256k1, sizeof(oid_secp256k1)}};
        mod_attrs *a = NULL, *b = NULL;

        assert_non_null(pk);
        ec_material(pk, c[i].oid, c[i].oidlen, c[i].dlen, &pub, &prv);
        assert_int_equal(obj_from_generated(tpub, 1, pub.a, pub.n, &gen, &user, &a), CKR_OK);
        /* The private template may repeat the curve, not name another. */
        assert_int_equal(obj_from_generated(tprv_other, 1, prv.a, prv.n, &gen, &user, &b),
                         CKR_TEMPLATE_INCONSISTENT);
        assert_int_equal(obj_from_generated(tprv_same, 2, prv.a, prv.n, &gen, &user, &b), CKR_OK);
        check_generated(a, b, CKM_EC_KEY_PAIR_GEN);
        check_keys(a, b, pk);
        assert_int_equal(obj_bool(b, CKA_DERIVE, CK_FALSE), CK_TRUE);
        assert_int_equal(obj_find(b, CKA_VALUE)->len, c[i].dlen);
        assert_null(obj_find(b, CKA_EC_POINT));
        obj_free(a);
        obj_free(b);
        EVP_PKEY_free(pk);
    }
}

static void
test_eddsa(void **state)
{
    static const obj_origin gen = {CKM_EC_EDWARDS_KEY_PAIR_GEN, CK_FALSE, CK_FALSE};
    struct {
        const char *alg;
        const unsigned char *params;
        size_t plen, klen;
    } c[] = {{"ED25519", oid_ed25519, sizeof(oid_ed25519), 32},
             {"ED448", oid_ed448, sizeof(oid_ed448), 57},
             {"ED448", name_ed448, sizeof(name_ed448), 57}};

    (void)state;
    for (size_t i = 0; i < NA(c); i++) {
        EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, c[i].alg);
        unsigned char raw[57], sk[57];
        size_t rawlen = sizeof(raw), sklen = sizeof(sk);
        struct mat pub, prv;
        mod_attrs *a = NULL, *b = NULL;
        CK_ATTRIBUTE tpub[] = {{CKA_EC_PARAMS, (void *)c[i].params, c[i].plen}};

        assert_non_null(pk);
        assert_int_equal(EVP_PKEY_get_raw_public_key(pk, raw, &rawlen), 1);
        assert_int_equal(EVP_PKEY_get_raw_private_key(pk, sk, &sklen), 1);
        mat_init(&pub, CKO_PUBLIC_KEY, CKK_EC_EDWARDS);
        mat_init(&prv, CKO_PRIVATE_KEY, CKK_EC_EDWARDS);
        mat_put(&pub, CKA_EC_PARAMS, c[i].params, c[i].plen);
        mat_octets(&pub, CKA_EC_POINT, raw, rawlen);
        mat_put(&prv, CKA_EC_PARAMS, c[i].params, c[i].plen);
        mat_put(&prv, CKA_VALUE, sk, sklen);
        assert_int_equal(obj_from_generated(tpub, 1, pub.a, pub.n, &gen, &user, &a), CKR_OK);
        assert_int_equal(obj_from_generated(NULL, 0, prv.a, prv.n, &gen, &user, &b), CKR_OK);
        check_generated(a, b, CKM_EC_EDWARDS_KEY_PAIR_GEN);
        check_keys(a, b, pk);
        assert_int_equal(obj_find(a, CKA_EC_POINT)->len, c[i].klen + 2);
        obj_free(a);
        obj_free(b);
        EVP_PKEY_free(pk);
    }
}

/* Derived secret keys: CKA_LOCAL FALSE, no generation mechanism, the
 * always-sensitive/never-extractable rules of the base key. */
static void
test_derived(void **state)
{
    static const unsigned char z[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                        12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                        23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
    struct mat m;
    CK_ULONG len = 32, len16 = 16;
    obj_origin base_good = {CK_UNAVAILABLE_INFORMATION, CK_TRUE, CK_TRUE};
    obj_origin base_imported = {CK_UNAVAILABLE_INFORMATION, CK_FALSE, CK_FALSE};
    CK_ATTRIBUTE open[] = {{CKA_SENSITIVE, &no, sizeof(no)}, {CKA_EXTRACTABLE, &yes, sizeof(yes)}};
    CK_ATTRIBUTE len_ok[] = {{CKA_VALUE_LEN, &len, sizeof(len)}};
    CK_ATTRIBUTE len_bad[] = {{CKA_VALUE_LEN, &len16, sizeof(len16)}};
    CK_ATTRIBUTE value[] = {{CKA_VALUE, (void *)z, sizeof(z)}};
    mod_attrs *o = NULL;
    CK_BYTE buf[32];
    CK_ATTRIBUTE g = {CKA_VALUE, buf, sizeof(buf)};

    (void)state;
    mat_init(&m, CKO_SECRET_KEY, CKK_AES);
    mat_put(&m, CKA_VALUE, z, sizeof(z));
    mat_put(&m, CKA_VALUE_LEN, &len, sizeof(len));
    assert_int_equal(obj_from_generated(len_ok, 1, m.a, m.n, &base_good, &user, &o), CKR_OK);
    assert_int_equal(obj_bool(o, CKA_LOCAL, CK_TRUE), CK_FALSE);
    assert_int_equal(obj_ulong(o, CKA_KEY_GEN_MECHANISM, 0), CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(obj_bool(o, CKA_ALWAYS_SENSITIVE, CK_FALSE), CK_TRUE);
    assert_int_equal(obj_bool(o, CKA_NEVER_EXTRACTABLE, CK_FALSE), CK_TRUE);
    assert_int_equal(obj_ulong(o, CKA_VALUE_LEN, 0), 32);
    assert_non_null(obj_find(o, CKA_CHECK_VALUE));
    assert_true(o->secure);
    assert_int_equal(obj_get(o, &g, 1), CKR_ATTRIBUTE_SENSITIVE);
    obj_free(o);
    /* From an imported base key: never "always sensitive". */
    assert_int_equal(obj_from_generated(NULL, 0, m.a, m.n, &base_imported, &user, &o), CKR_OK);
    assert_int_equal(obj_bool(o, CKA_ALWAYS_SENSITIVE, CK_TRUE), CK_FALSE);
    assert_int_equal(obj_bool(o, CKA_NEVER_EXTRACTABLE, CK_TRUE), CK_FALSE);
    obj_free(o);
    /* Extractable: readable, and not "never extractable". */
    assert_int_equal(obj_from_generated(open, 2, m.a, m.n, &base_good, &user, &o), CKR_OK);
    assert_int_equal(obj_bool(o, CKA_ALWAYS_SENSITIVE, CK_TRUE), CK_FALSE);
    assert_int_equal(obj_bool(o, CKA_NEVER_EXTRACTABLE, CK_TRUE), CK_FALSE);
    g.ulValueLen = sizeof(buf);
    assert_int_equal(obj_get(o, &g, 1), CKR_OK);
    assert_memory_equal(buf, z, sizeof(z));
    obj_free(o);
    /* A length other than the material's; the value itself in a template. */
    assert_int_equal(obj_from_generated(len_bad, 1, m.a, m.n, &base_good, &user, &o),
                     CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(obj_from_generated(value, 1, m.a, m.n, &base_good, &user, &o),
                     CKR_ATTRIBUTE_READ_ONLY);
    /* AES material of a length AES does not have. */
    mat_init(&m, CKO_SECRET_KEY, CKK_AES);
    mat_put(&m, CKA_VALUE, z, 20);
    assert_int_equal(obj_from_generated(NULL, 0, m.a, m.n, &base_good, &user, &o),
                     CKR_ATTRIBUTE_VALUE_INVALID);
    assert_null(o);
}

static void
test_ec_curve(void **state)
{
    int nid = 0;
    static const unsigned char junk[] = {0x06, 0x08, 0x2a};
    static const unsigned char seq[] = {0x30, 0x00}; /* well-formed, not a curve name */
    static const unsigned char other_name[] = {0x13, 0x03, 'a', 'b', 'c'};

    (void)state;
    assert_int_equal(obj_ec_curve(oid_p256, sizeof(oid_p256), 0, &nid), CKR_OK);
    assert_int_equal(nid, NID_X9_62_prime256v1);
    assert_int_equal(obj_ec_curve(oid_p521, sizeof(oid_p521), 0, &nid), CKR_OK);
    assert_int_equal(nid, NID_secp521r1);
    assert_int_equal(obj_ec_curve(oid_ed25519, sizeof(oid_ed25519), 1, &nid), CKR_OK);
    assert_int_equal(nid, NID_ED25519);
    assert_int_equal(obj_ec_curve(name_ed448, sizeof(name_ed448), 1, &nid), CKR_OK);
    assert_int_equal(nid, NID_ED448);
    assert_int_equal(obj_ec_curve(oid_ed25519, sizeof(oid_ed25519), 0, &nid),
                     CKR_CURVE_NOT_SUPPORTED);
    assert_int_equal(obj_ec_curve(oid_p256, sizeof(oid_p256), 1, &nid), CKR_CURVE_NOT_SUPPORTED);
    assert_int_equal(obj_ec_curve(name_ed448, sizeof(name_ed448), 0, &nid),
                     CKR_CURVE_NOT_SUPPORTED);
    assert_int_equal(obj_ec_curve(oid_secp256k1, sizeof(oid_secp256k1), 0, &nid),
                     CKR_CURVE_NOT_SUPPORTED);
    assert_int_equal(obj_ec_curve(other_name, sizeof(other_name), 1, &nid),
                     CKR_CURVE_NOT_SUPPORTED);
    assert_int_equal(obj_ec_curve(seq, sizeof(seq), 0, &nid), CKR_CURVE_NOT_SUPPORTED);
    assert_int_equal(obj_ec_curve(junk, sizeof(junk), 0, &nid), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(obj_ec_curve(junk, 0, 0, &nid), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(obj_ec_curve(NULL, 3, 0, &nid), CKR_ARGUMENTS_BAD);
    assert_int_equal(obj_ec_curve(oid_p256, sizeof(oid_p256), 0, NULL), CKR_ARGUMENTS_BAD);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rsa),
        cmocka_unit_test(test_rsa_extractable),
        cmocka_unit_test(test_template_errors),
        cmocka_unit_test(test_bad_material),
        cmocka_unit_test(test_ec),
        cmocka_unit_test(test_eddsa),
        cmocka_unit_test(test_derived),
        cmocka_unit_test(test_ec_curve),
    };
    int rv = cmocka_run_group_tests(tests, NULL, NULL);

    EVP_PKEY_free(rsa_key());
    return rv;
}
