/*
 * test_enr_jws.c — JWK, JWS and the ACME certificate identifier
 * (enroll/jws.c, enroll/proto/acme_ari.c) against the RFCs' own examples and
 * OpenSSL's verification:
 *  - RFC 7638 section 3.1: the thumbprint of the example RSA key;
 *  - ES256 and RS256 JWS: the protected header (alg, nonce, url, kid or
 *    jwk), the raw r||s signature of 64 bytes, verified by OpenSSL;
 *  - EAB (HS256) recomputed;
 *  - RFC 9773 section 4.1: the certificate identifier of the example AKI
 *    and serial;
 *  - base64url: round trips, and what is not base64url refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "proto/acme.h"

static const char *rfc7638_n =
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_"
    "BJECPebW"
    "KRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQ"
    "MicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-"
    "bFTWhAI4vMQFh6WeZu0fM4lFd2Nc"
    "Rwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

static void
test_thumbprint_rfc7638(void **st)
{
    unsigned char *n = NULL, *e = NULL;
    size_t nl, el;
    BIGNUM *bn, *be;
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *prm;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *pk = NULL;
    char *t;

    (void)st;
    assert_int_equal(enr_b64url_decode(rfc7638_n, &n, &nl), 0);
    assert_int_equal(enr_b64url_decode("AQAB", &e, &el), 0);
    bn = BN_bin2bn(n, (int)nl, NULL);
    be = BN_bin2bn(e, (int)el, NULL);
    assert_true(OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, bn));
    assert_true(OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, be));
    prm = OSSL_PARAM_BLD_to_param(b);
    assert_int_equal(EVP_PKEY_fromdata_init(pc), 1);
    assert_int_equal(EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, prm), 1);
    t = enr_jwk_thumbprint(pk);
    assert_string_equal(t, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    free(t);
    EVP_PKEY_free(pk);
    OSSL_PARAM_free(prm);
    OSSL_PARAM_BLD_free(b);
    EVP_PKEY_CTX_free(pc);
    BN_free(bn);
    BN_free(be);
    free(n);
    free(e);
}

/* Decode member KEY (base64url) of J into a NUL-terminated buffer. */
static unsigned char *
member(json_t *j, const char *key, size_t *n)
{
    unsigned char *b = NULL, *z;

    assert_int_equal(enr_b64url_decode(json_string_value(json_object_get(j, key)), &b, n), 0);
    z = realloc(b, *n + 1);
    assert_non_null(z);
    z[*n] = '\0';
    return z;
}

/* Sign with KEY, check the header, verify the signature with OpenSSL. */
static void
sign_and_verify(EVP_PKEY *key, const char *kid, const char *alg)
{
    char *s = enr_jws_sign(key, kid, "bm9uY2U", "https://ca.example/new-order", "{\"a\":1}");
    json_t *j = json_loads(s, 0, NULL), *h;
    unsigned char *prot, *pl, *sig, *der = NULL;
    size_t pn, pln, sn;
    char *in;
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    int dl;

    assert_non_null(j);
    prot = member(j, "protected", &pn);
    pl = member(j, "payload", &pln);
    sig = member(j, "signature", &sn);
    assert_string_equal((char *)pl, "{\"a\":1}");
    h = json_loads((char *)prot, 0, NULL);
    assert_non_null(h);
    assert_string_equal(enr_acme_str(h, "alg"), alg);
    assert_string_equal(enr_acme_str(h, "nonce"), "bm9uY2U");
    assert_string_equal(enr_acme_str(h, "url"), "https://ca.example/new-order");
    if (kid != NULL) {
        assert_string_equal(enr_acme_str(h, "kid"), kid);
        assert_null(json_object_get(h, "jwk"));
    } else {
        assert_null(json_object_get(h, "kid"));
        assert_non_null(json_object_get(json_object_get(h, "jwk"), "kty"));
    }
    if (!strcmp(alg, "ES256")) {
        /* RFC 7518 section 3.4: raw r||s, 32 bytes each */
        ECDSA_SIG *es = ECDSA_SIG_new();
        assert_int_equal(sn, 64);
        ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
        dl = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
    } else {
        der = OPENSSL_memdup(sig, sn);
        dl = (int)sn;
    }
    in = enr_aprintf("%s.%s", json_string_value(json_object_get(j, "protected")),
                     json_string_value(json_object_get(j, "payload")));
    assert_int_equal(EVP_DigestVerifyInit(mc, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestVerify(mc, der, (size_t)dl, (const unsigned char *)in, strlen(in)),
                     1);
    EVP_MD_CTX_free(mc);
    OPENSSL_free(der);
    free(in);
    free(prot);
    free(pl);
    free(sig);
    json_decref(h);
    json_decref(j);
    free(s);
}

static void
test_jws_es256_rs256(void **st)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256"), *rsa = EVP_RSA_gen(2048);

    (void)st;
    assert_string_equal(enr_jws_alg(ec), "ES256");
    assert_string_equal(enr_jws_alg(rsa), "RS256");
    sign_and_verify(ec, "https://ca.example/acct/1", "ES256");
    sign_and_verify(ec, NULL, "ES256");
    sign_and_verify(rsa, "https://ca.example/acct/2", "RS256");
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
}

static void
test_eab_hs256(void **st)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    static const unsigned char mac[] = "0123456789abcdef0123456789abcdef";
    json_t *j = enr_jws_eab(ec, "kid-1", mac, 32, "https://ca.example/new-account");
    json_t *h, *jwk = enr_jwk(ec);
    unsigned char *prot, *pl, *sig, md[32];
    size_t pn, pln, sn;
    unsigned int ml = 0;
    char *in, *want;

    (void)st;
    assert_non_null(j);
    prot = member(j, "protected", &pn);
    pl = member(j, "payload", &pln);
    sig = member(j, "signature", &sn);
    h = json_loads((char *)prot, 0, NULL);
    assert_string_equal(enr_acme_str(h, "alg"), "HS256");
    assert_string_equal(enr_acme_str(h, "kid"), "kid-1");
    assert_string_equal(enr_acme_str(h, "url"), "https://ca.example/new-account");
    assert_null(json_object_get(h, "nonce"));
    want = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal((char *)pl, want); /* the payload is the account key's JWK */
    in = enr_aprintf("%s.%s", json_string_value(json_object_get(j, "protected")),
                     json_string_value(json_object_get(j, "payload")));
    HMAC(EVP_sha256(), mac, 32, (const unsigned char *)in, strlen(in), md, &ml);
    assert_int_equal(sn, 32);
    assert_memory_equal(sig, md, 32);
    free(in);
    free(want);
    free(prot);
    free(pl);
    free(sig);
    json_decref(h);
    json_decref(jwk);
    json_decref(j);
    EVP_PKEY_free(ec);
}

static void
test_cert_id_rfc9773(void **st)
{
    static const unsigned char aki[] = {0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3,
                                        0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4};
    X509 *x = X509_new();
    AUTHORITY_KEYID *ak = AUTHORITY_KEYID_new();
    BIGNUM *bn = NULL;
    char *id;

    (void)st;
    ak->keyid = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(ak->keyid, aki, sizeof(aki));
    assert_int_equal(X509_add1_ext_i2d(x, NID_authority_key_identifier, ak, 0, 0), 1);
    BN_hex2bn(&bn, "87654321");
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    id = enr_acme_cert_id(x);
    /* the serial's DER content keeps its leading zero (0x87: top bit set) */
    assert_string_equal(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    free(id);
    BN_free(bn);
    AUTHORITY_KEYID_free(ak);
    X509_free(x);
}

static void
test_b64url(void **st)
{
    unsigned char *o = NULL;
    size_t n;
    char *s;
    enr_secret sec = {NULL, 0};

    (void)st;
    for (size_t l = 0; l < 40; l++) {
        unsigned char in[40];
        for (size_t i = 0; i < l; i++)
            in[i] = (unsigned char)(i * 37 + 250);
        s = enr_b64url(in, l);
        assert_null(strchr(s, '='));
        assert_int_equal(enr_b64url_decode(s, &o, &n), 0);
        assert_int_equal(n, l);
        assert_memory_equal(o, in, l);
        assert_int_equal(enr_b64url_decode_secret(s, &sec), 0);
        assert_int_equal(sec.len, l);
        enr_secret_free(&sec);
        free(o);
        free(s);
    }
    assert_int_equal(enr_b64url_decode("ab+c", &o, &n), -1);  /* standard alphabet */
    assert_int_equal(enr_b64url_decode("abc=", &o, &n), -1);  /* padding inside */
    assert_int_equal(enr_b64url_decode("abcde", &o, &n), -1); /* not whole bytes */
    assert_int_equal(enr_b64url_decode("ab$d", &o, &n), -1);  /* not base64 */
    assert_int_equal(enr_b64url_decode_secret("a/bc", &sec), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thumbprint_rfc7638),
        cmocka_unit_test(test_jws_es256_rs256),
        cmocka_unit_test(test_eab_hs256),
        cmocka_unit_test(test_cert_id_rfc9773),
        cmocka_unit_test(test_b64url),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
