/*
 * test_mod_pkey.c — obj_pkey: the OpenSSL key rebuilt from a stored key
 * object equals the key the object was made from, signs with it, and is
 * refused for objects that are no asymmetric key.
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

typedef struct {
    unsigned char *p;
    size_t n;
} buf;

static void
buf_free(buf *b)
{
    OPENSSL_free(b->p);
    b->p = NULL;
    b->n = 0;
}

/* Big-endian bytes of a BIGNUM parameter. */
static buf
bn_param(EVP_PKEY *pk, const char *name)
{
    BIGNUM *bn = NULL;
    buf b = {NULL, 0};

    assert_int_equal(EVP_PKEY_get_bn_param(pk, name, &bn), 1);
    b.n = (size_t)BN_num_bytes(bn);
    b.p = OPENSSL_malloc(b.n ? b.n : 1);
    assert_non_null(b.p);
    BN_bn2bin(bn, b.p);
    BN_clear_free(bn);
    return b;
}

static buf
der_oid(int nid)
{
    ASN1_OBJECT *o = OBJ_nid2obj(nid);
    buf b = {NULL, 0};
    int n = i2d_ASN1_OBJECT(o, &b.p);

    assert_true(n > 0);
    b.n = (size_t)n;
    return b;
}

/* Sign with SIGNER, verify with VERIFIER (both ways the same algorithm). */
static void
sign_verify(EVP_PKEY *signer, EVP_PKEY *verifier)
{
    static const unsigned char msg[] = "evertoken obj_pkey";
    const EVP_MD *md = EVP_PKEY_get_base_id(signer) == EVP_PKEY_ED25519 ||
                               EVP_PKEY_get_base_id(signer) == EVP_PKEY_ED448
                           ? NULL
                           : EVP_sha256();
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *c = EVP_MD_CTX_new();

    assert_non_null(c);
    assert_int_equal(EVP_DigestSignInit(c, NULL, md, NULL, signer), 1);
    assert_int_equal(EVP_DigestSign(c, sig, &siglen, msg, sizeof(msg)), 1);
    EVP_MD_CTX_free(c);
    c = EVP_MD_CTX_new();
    assert_non_null(c);
    assert_int_equal(EVP_DigestVerifyInit(c, NULL, md, NULL, verifier), 1);
    assert_int_equal(EVP_DigestVerify(c, sig, siglen, msg, sizeof(msg)), 1);
    EVP_MD_CTX_free(c);
}

static mod_attrs *
make(CK_ATTRIBUTE *t, CK_ULONG n)
{
    mod_attrs *o = NULL;
    obj_policy pol = {CK_FALSE, CK_TRUE};

    assert_int_equal(obj_from_template(t, n, &pol, &o), CKR_OK);
    return o;
}

static void
check_pair(mod_attrs *priv, mod_attrs *pub, EVP_PKEY *orig)
{
    EVP_PKEY *k = NULL, *p = NULL;

    assert_int_equal(obj_pkey(priv, &k), CKR_OK);
    assert_non_null(k);
    assert_int_equal(EVP_PKEY_eq(k, orig), 1);
    sign_verify(k, orig);
    sign_verify(orig, k);
    if (pub != NULL) {
        assert_int_equal(obj_pkey(pub, &p), CKR_OK);
        assert_int_equal(EVP_PKEY_eq(p, orig), 1);
        sign_verify(k, p);
        EVP_PKEY_free(p);
    }
    EVP_PKEY_free(k);
}

static void
test_rsa(void **state)
{
    CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY, uc = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    buf n, e, d, p, q, dp, dq, qi;

    (void)state;
    assert_non_null(pk);
    n = bn_param(pk, OSSL_PKEY_PARAM_RSA_N);
    e = bn_param(pk, OSSL_PKEY_PARAM_RSA_E);
    d = bn_param(pk, OSSL_PKEY_PARAM_RSA_D);
    p = bn_param(pk, OSSL_PKEY_PARAM_RSA_FACTOR1);
    q = bn_param(pk, OSSL_PKEY_PARAM_RSA_FACTOR2);
    dp = bn_param(pk, OSSL_PKEY_PARAM_RSA_EXPONENT1);
    dq = bn_param(pk, OSSL_PKEY_PARAM_RSA_EXPONENT2);
    qi = bn_param(pk, OSSL_PKEY_PARAM_RSA_COEFFICIENT1);
    {
        CK_ATTRIBUTE crt[] = {{CKA_CLASS, &pc, sizeof(pc)},     {CKA_KEY_TYPE, &kt, sizeof(kt)},
                              {CKA_MODULUS, n.p, n.n},          {CKA_PUBLIC_EXPONENT, e.p, e.n},
                              {CKA_PRIVATE_EXPONENT, d.p, d.n}, {CKA_PRIME_1, p.p, p.n},
                              {CKA_PRIME_2, q.p, q.n},          {CKA_EXPONENT_1, dp.p, dp.n},
                              {CKA_EXPONENT_2, dq.p, dq.n},     {CKA_COEFFICIENT, qi.p, qi.n}};
        CK_ATTRIBUTE nocrt[] = {{CKA_CLASS, &pc, sizeof(pc)},
                                {CKA_KEY_TYPE, &kt, sizeof(kt)},
                                {CKA_MODULUS, n.p, n.n},
                                {CKA_PUBLIC_EXPONENT, e.p, e.n},
                                {CKA_PRIVATE_EXPONENT, d.p, d.n}};
        CK_ATTRIBUTE pub[] = {{CKA_CLASS, &uc, sizeof(uc)},
                              {CKA_KEY_TYPE, &kt, sizeof(kt)},
                              {CKA_MODULUS, n.p, n.n},
                              {CKA_PUBLIC_EXPONENT, e.p, e.n}};
        mod_attrs *a = make(crt, 10), *b = make(nocrt, 5), *u = make(pub, 4);

        check_pair(a, u, pk);
        check_pair(b, NULL, pk);
        obj_free(a);
        obj_free(b);
        obj_free(u);
    }
    buf_free(&n);
    buf_free(&e);
    buf_free(&d);
    buf_free(&p);
    buf_free(&q);
    buf_free(&dp);
    buf_free(&dq);
    buf_free(&qi);
    EVP_PKEY_free(pk);
}

static void
ec_case(const char *curve, int nid)
{
    CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY, uc = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
    buf oid = der_oid(nid), d;
    unsigned char pt[160];
    size_t ptlen = 0;

    assert_non_null(pk);
    d = bn_param(pk, OSSL_PKEY_PARAM_PRIV_KEY);
    assert_int_equal(
        EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &ptlen), 1);
    {
        CK_ATTRIBUTE priv[] = {{CKA_CLASS, &pc, sizeof(pc)},
                               {CKA_KEY_TYPE, &kt, sizeof(kt)},
                               {CKA_EC_PARAMS, oid.p, oid.n},
                               {CKA_VALUE, d.p, d.n}};
        /* The raw point is accepted and stored as DER. */
        CK_ATTRIBUTE pub[] = {{CKA_CLASS, &uc, sizeof(uc)},
                              {CKA_KEY_TYPE, &kt, sizeof(kt)},
                              {CKA_EC_PARAMS, oid.p, oid.n},
                              {CKA_EC_POINT, pt, ptlen}};
        mod_attrs *a = make(priv, 4), *u = make(pub, 4);

        check_pair(a, u, pk);
        obj_free(a);
        obj_free(u);
    }
    buf_free(&oid);
    buf_free(&d);
    EVP_PKEY_free(pk);
}

static void
test_ec(void **state)
{
    (void)state;
    ec_case("P-256", NID_X9_62_prime256v1);
    ec_case("P-384", NID_secp384r1);
    ec_case("P-521", NID_secp521r1);
}

static void
ed_case(const char *alg, int nid)
{
    CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY, uc = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_EC_EDWARDS;
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, alg);
    buf oid = der_oid(nid);
    unsigned char sk[57], pub[57];
    size_t sklen = sizeof(sk), publen = sizeof(pub);

    assert_non_null(pk);
    assert_int_equal(EVP_PKEY_get_raw_private_key(pk, sk, &sklen), 1);
    assert_int_equal(EVP_PKEY_get_raw_public_key(pk, pub, &publen), 1);
    {
        CK_ATTRIBUTE priv[] = {{CKA_CLASS, &pc, sizeof(pc)},
                               {CKA_KEY_TYPE, &kt, sizeof(kt)},
                               {CKA_EC_PARAMS, oid.p, oid.n},
                               {CKA_VALUE, sk, sklen}};
        CK_ATTRIBUTE pubt[] = {{CKA_CLASS, &uc, sizeof(uc)},
                               {CKA_KEY_TYPE, &kt, sizeof(kt)},
                               {CKA_EC_PARAMS, oid.p, oid.n},
                               {CKA_EC_POINT, pub, publen}};
        mod_attrs *a = make(priv, 4), *u = make(pubt, 4);

        check_pair(a, u, pk);
        obj_free(a);
        obj_free(u);
    }
    buf_free(&oid);
    EVP_PKEY_free(pk);
}

static void
test_eddsa(void **state)
{
    (void)state;
    ed_case("ED25519", NID_ED25519);
    ed_case("ED448", NID_ED448);
}

static void
test_not_a_key(void **state)
{
    CK_OBJECT_CLASS dc = CKO_DATA, sc = CKO_SECRET_KEY;
    CK_KEY_TYPE gk = CKK_GENERIC_SECRET;
    unsigned char v[16] = {1, 2, 3};
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE data[] = {{CKA_CLASS, &dc, sizeof(dc)}, {CKA_VALUE, v, sizeof(v)}};
    CK_ATTRIBUTE sec[] = {{CKA_CLASS, &sc, sizeof(sc)},
                          {CKA_KEY_TYPE, &gk, sizeof(gk)},
                          {CKA_VALUE, v, sizeof(v)},
                          {CKA_PRIVATE, &t, sizeof(t)}};
    mod_attrs *a = make(data, 2), *s = make(sec, 4);
    EVP_PKEY *k = (EVP_PKEY *)1;

    (void)state;
    assert_int_equal(obj_pkey(a, &k), CKR_KEY_TYPE_INCONSISTENT);
    assert_null(k);
    assert_int_equal(obj_pkey(s, &k), CKR_KEY_TYPE_INCONSISTENT);
    assert_null(k);
    assert_int_equal(obj_pkey(a, NULL), CKR_ARGUMENTS_BAD);
    obj_free(a);
    obj_free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rsa),
        cmocka_unit_test(test_ec),
        cmocka_unit_test(test_eddsa),
        cmocka_unit_test(test_not_a_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
