/*
 * test_mod_obj_util.h — fixtures and helpers shared by the object layer's
 * unit tests (test_mod_object.c, test_mod_objimport.c): keys and a
 * certificate made once per binary with OpenSSL, DER helpers, assertions on
 * attribute sets. Header only, so that each test stays one cmocka binary.
 */
#ifndef EVERTOKEN_TEST_MOD_OBJ_UTIL_H
#define EVERTOKEN_TEST_MOD_OBJ_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "object.h"

/* ---- Fixtures: keys and a certificate, made once ------------------------ */

typedef struct buf {
    unsigned char *p;
    size_t n;
} buf;

static struct {
    EVP_PKEY *rsa, *rsa2, *ec256, *ec384, *ed25519, *ed448;
    buf cert;      /* self-signed RSA certificate, DER */
    buf cert_spki; /* its SubjectPublicKeyInfo */
    X509 *x509;
} fx;

static CK_BBOOL T __attribute__((unused)) = CK_TRUE, F __attribute__((unused)) = CK_FALSE;
static const obj_policy user_pol __attribute__((unused)) = {CK_FALSE, CK_TRUE};
static const obj_policy so_pol __attribute__((unused)) = {CK_TRUE, CK_FALSE};

#define ATTR(type, ptr, len)                                                                       \
    {                                                                                              \
        (type), (void *)(ptr), (CK_ULONG)(len)                                                     \
    }
#define AVAR(type, var)                                                                            \
    {                                                                                              \
        (type), (void *)&(var), sizeof(var)                                                        \
    }
#define ABUF(type, b)                                                                              \
    {                                                                                              \
        (type), (void *)(b).p, (CK_ULONG)(b).n                                                     \
    }
#define NA(t) (sizeof(t) / sizeof((t)[0]))

static inline void
buf_free(buf *b)
{
    OPENSSL_clear_free(b->p, b->n);
    b->p = NULL;
    b->n = 0;
}

static inline buf
bn_param(EVP_PKEY *pk, const char *name, int pad)
{
    BIGNUM *bn = NULL;
    buf b = {NULL, 0};

    assert_int_equal(EVP_PKEY_get_bn_param(pk, name, &bn), 1);
    b.n = pad ? (size_t)pad : (size_t)BN_num_bytes(bn);
    b.p = OPENSSL_malloc(b.n);
    assert_non_null(b.p);
    assert_int_equal(BN_bn2binpad(bn, b.p, (int)b.n), (int)b.n);
    BN_clear_free(bn);
    return b;
}

static inline buf
der_oid(int nid)
{
    buf b = {NULL, 0};
    int n = i2d_ASN1_OBJECT(OBJ_nid2obj(nid), &b.p);

    assert_true(n > 0);
    b.n = (size_t)n;
    return b;
}

static inline buf
der_octets(const unsigned char *p, size_t n)
{
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    buf b = {NULL, 0};
    int len;

    assert_true(ASN1_OCTET_STRING_set(os, p, (int)n));
    len = i2d_ASN1_OCTET_STRING(os, &b.p);
    assert_true(len > 0);
    b.n = (size_t)len;
    ASN1_OCTET_STRING_free(os);
    return b;
}

static inline buf
spki_of(EVP_PKEY *pk)
{
    buf b = {NULL, 0};
    int n = i2d_PUBKEY(pk, &b.p);

    assert_true(n > 0);
    b.n = (size_t)n;
    return b;
}

static inline buf
ec_pub(EVP_PKEY *pk)
{
    buf b = {NULL, 0};

    assert_int_equal(EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, NULL, 0, &b.n),
                     1);
    b.p = OPENSSL_malloc(b.n);
    assert_int_equal(EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, b.p, b.n, &b.n),
                     1);
    assert_int_equal(b.p[0], 0x04); /* uncompressed */
    return b;
}

static inline buf
raw_key(EVP_PKEY *pk, int priv)
{
    buf b = {NULL, 0};

    if (priv)
        assert_int_equal(EVP_PKEY_get_raw_private_key(pk, NULL, &b.n), 1);
    else
        assert_int_equal(EVP_PKEY_get_raw_public_key(pk, NULL, &b.n), 1);
    b.p = OPENSSL_malloc(b.n);
    if (priv)
        assert_int_equal(EVP_PKEY_get_raw_private_key(pk, b.p, &b.n), 1);
    else
        assert_int_equal(EVP_PKEY_get_raw_public_key(pk, b.p, &b.n), 1);
    return b;
}

static inline X509 *
make_cert(EVP_PKEY *pk, const char *cn, long serial)
{
    X509 *x = X509_new();
    X509_NAME *nm = X509_NAME_new();

    assert_non_null(x);
    assert_true(X509_set_version(x, 2));
    assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), serial));
    assert_true(
        X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0));
    assert_true(X509_set_subject_name(x, nm));
    assert_true(X509_set_issuer_name(x, nm));
    assert_non_null(ASN1_TIME_set_string(X509_getm_notBefore(x), "20250102030405Z"));
    assert_non_null(ASN1_TIME_set_string(X509_getm_notAfter(x), "20300607080910Z"));
    assert_true(X509_set_pubkey(x, pk));
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    X509_NAME_free(nm);
    return x;
}

static inline buf
cert_der(X509 *x)
{
    buf b = {NULL, 0};
    int n = i2d_X509(x, &b.p);

    assert_true(n > 0);
    b.n = (size_t)n;
    return b;
}

static inline int
group_setup(void **state)
{
    (void)state;
    fx.rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    fx.rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    fx.ec256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    fx.ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    fx.ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    fx.ed448 = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
    if (!fx.rsa || !fx.rsa2 || !fx.ec256 || !fx.ec384 || !fx.ed25519 || !fx.ed448)
        return -1;
    fx.x509 = make_cert(fx.rsa, "evertoken object test", 0x1234567);
    fx.cert = cert_der(fx.x509);
    fx.cert_spki = spki_of(fx.rsa);
    return 0;
}

static inline int
group_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(fx.rsa);
    EVP_PKEY_free(fx.rsa2);
    EVP_PKEY_free(fx.ec256);
    EVP_PKEY_free(fx.ec384);
    EVP_PKEY_free(fx.ed25519);
    EVP_PKEY_free(fx.ed448);
    X509_free(fx.x509);
    buf_free(&fx.cert);
    buf_free(&fx.cert_spki);
    return 0;
}

/* ---- Assertion helpers ---------------------------------------------------- */

static inline void
assert_attr(const mod_attrs *o, CK_ATTRIBUTE_TYPE type, const void *v, size_t len)
{
    const ks_attr *a = obj_find(o, type);

    assert_non_null(a);
    assert_int_equal(a->len, len);
    if (len > 0)
        assert_memory_equal(a->value, v, len);
}

static inline void
assert_bool_attr(const mod_attrs *o, CK_ATTRIBUTE_TYPE type, CK_BBOOL v)
{
    const ks_attr *a = obj_find(o, type);

    assert_non_null(a);
    assert_int_equal(a->len, sizeof(CK_BBOOL));
    assert_int_equal(a->value[0], v);
}

static inline void
assert_ulong_attr(const mod_attrs *o, CK_ATTRIBUTE_TYPE type, CK_ULONG v)
{
    assert_non_null(obj_find(o, type));
    assert_int_equal(obj_ulong(o, type, v + 1), v);
}

static inline CK_RV
create(CK_ATTRIBUTE *t, CK_ULONG n, mod_attrs **out)
{
    return obj_from_template(t, n, &user_pol, out);
}

/* The attributes are sorted and unique. */
static inline void
assert_sorted(const mod_attrs *o)
{
    size_t i;

    for (i = 1; i < o->n; i++)
        assert_true(o->a[i - 1].type < o->a[i].type);
}

/* An RSA key's components as big-endian bytes. */
struct rsa_parts {
    buf n, e, d, p, q, dp, dq, qi;
};

static inline void
rsa_parts_get(EVP_PKEY *pk, struct rsa_parts *r)
{
    r->n = bn_param(pk, OSSL_PKEY_PARAM_RSA_N, 0);
    r->e = bn_param(pk, OSSL_PKEY_PARAM_RSA_E, 0);
    r->d = bn_param(pk, OSSL_PKEY_PARAM_RSA_D, 0);
    r->p = bn_param(pk, OSSL_PKEY_PARAM_RSA_FACTOR1, 0);
    r->q = bn_param(pk, OSSL_PKEY_PARAM_RSA_FACTOR2, 0);
    r->dp = bn_param(pk, OSSL_PKEY_PARAM_RSA_EXPONENT1, 0);
    r->dq = bn_param(pk, OSSL_PKEY_PARAM_RSA_EXPONENT2, 0);
    r->qi = bn_param(pk, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, 0);
}

static inline void
rsa_parts_free(struct rsa_parts *r)
{
    buf_free(&r->n);
    buf_free(&r->e);
    buf_free(&r->d);
    buf_free(&r->p);
    buf_free(&r->q);
    buf_free(&r->dp);
    buf_free(&r->dq);
    buf_free(&r->qi);
}

#endif /* EVERTOKEN_TEST_MOD_OBJ_UTIL_H */
