/*
 * test_mod_objimport.c — the object layer's import of certificates and keys
 * (module/obj_cert.c, module/obj_key.c): X.509 certificates, RSA, EC,
 * EdDSA public and private keys (generated here with OpenSSL and fed in as
 * components), secret keys; the checks of their material.
 */
#include "test_mod_obj_util.h"

/* ---- Certificates ---------------------------------------------------------- */

static void
test_cert_minimal(void **state)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct),
                        ABUF(CKA_VALUE, fx.cert)};
    unsigned char *subj = NULL, *ser = NULL, md[SHA_DIGEST_LENGTH];
    int subjlen = i2d_X509_NAME(X509_get_subject_name(fx.x509), &subj);
    int serlen = i2d_ASN1_INTEGER(X509_get0_serialNumber(fx.x509), &ser);
    mod_attrs *o = NULL;

    (void)state;
    assert_int_equal(create(t, NA(t), &o), CKR_OK);
    assert_sorted(o);
    assert_attr(o, CKA_VALUE, fx.cert.p, fx.cert.n);
    assert_attr(o, CKA_SUBJECT, subj, (size_t)subjlen);
    assert_attr(o, CKA_ISSUER, subj, (size_t)subjlen); /* self-signed */
    assert_attr(o, CKA_SERIAL_NUMBER, ser, (size_t)serlen);
    assert_int_equal(ser[0], V_ASN1_INTEGER); /* DER INTEGER, tag included */
    assert_attr(o, CKA_PUBLIC_KEY_INFO, fx.cert_spki.p, fx.cert_spki.n);
    SHA1(fx.cert.p, fx.cert.n, md);
    assert_attr(o, CKA_CHECK_VALUE, md, 3);
    assert_attr(o, CKA_START_DATE, "20250102", 8);
    assert_attr(o, CKA_END_DATE, "20300607", 8);
    assert_ulong_attr(o, CKA_CERTIFICATE_CATEGORY, 0);
    assert_ulong_attr(o, CKA_JAVA_MIDP_SECURITY_DOMAIN, 0);
    assert_ulong_attr(o, CKA_NAME_HASH_ALGORITHM, CKM_SHA_1);
    assert_bool_attr(o, CKA_TRUSTED, CK_FALSE);
    assert_bool_attr(o, CKA_PRIVATE, CK_FALSE);
    assert_attr(o, CKA_ID, "", 0); /* never invented here */
    assert_attr(o, CKA_URL, "", 0);
    assert_attr(o, CKA_HASH_OF_SUBJECT_PUBLIC_KEY, "", 0);
    assert_int_equal(o->secure, 0);
    obj_free(o);
    OPENSSL_free(subj);
    OPENSSL_free(ser);
}

static void
test_cert_full(void **state)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_ULONG cat = 2, dom = 1;
    unsigned char *subj = NULL, *ser = NULL, md[SHA_DIGEST_LENGTH];
    int subjlen = i2d_X509_NAME(X509_get_subject_name(fx.x509), &subj);
    int serlen = i2d_ASN1_INTEGER(X509_get0_serialNumber(fx.x509), &ser);
    CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls),
                        AVAR(CKA_CERTIFICATE_TYPE, ct),
                        ABUF(CKA_VALUE, fx.cert),
                        ATTR(CKA_SUBJECT, subj, subjlen),
                        ATTR(CKA_ISSUER, subj, subjlen),
                        ATTR(CKA_SERIAL_NUMBER, ser, serlen),
                        ATTR(CKA_ID, "\x01\x02", 2),
                        ATTR(CKA_LABEL, "cert", 4),
                        AVAR(CKA_TOKEN, T),
                        AVAR(CKA_CERTIFICATE_CATEGORY, cat),
                        AVAR(CKA_JAVA_MIDP_SECURITY_DOMAIN, dom),
                        ATTR(CKA_URL, "http://x/", 9),
                        ATTR(CKA_START_DATE, "20260101", 8),
                        ABUF(CKA_PUBLIC_KEY_INFO, fx.cert_spki),
                        ATTR(CKA_CHECK_VALUE, md, 3),
                        AVAR(CKA_TRUSTED, F)};
    mod_attrs *o = NULL;

    (void)state;
    SHA1(fx.cert.p, fx.cert.n, md);
    assert_int_equal(create(t, NA(t), &o), CKR_OK);
    assert_attr(o, CKA_ID, "\x01\x02", 2);
    assert_attr(o, CKA_LABEL, "cert", 4);
    assert_ulong_attr(o, CKA_CERTIFICATE_CATEGORY, 2);
    assert_attr(o, CKA_URL, "http://x/", 9);
    assert_attr(o, CKA_START_DATE, "20260101", 8); /* given dates stand */
    assert_attr(o, CKA_END_DATE, "20300607", 8);
    assert_bool_attr(o, CKA_TOKEN, CK_TRUE);
    obj_free(o);
    OPENSSL_free(subj);
    OPENSSL_free(ser);
}

static void
test_cert_malformed(void **state)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509, attr = CKC_X_509_ATTR_CERT;
    unsigned char *longer = malloc(fx.cert.n + 1);
    CK_ATTRIBUTE garbage[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct),
                              ATTR(CKA_VALUE, "\x30\x03\x02\x01\x01", 5)};
    CK_ATTRIBUTE trunc[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct),
                            ATTR(CKA_VALUE, fx.cert.p, fx.cert.n - 1)};
    CK_ATTRIBUTE trailing[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct),
                               ATTR(CKA_VALUE, longer, fx.cert.n + 1)};
    CK_ATTRIBUTE empty[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct),
                            ATTR(CKA_VALUE, "", 0)};
    CK_ATTRIBUTE novalue[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct)};
    CK_ATTRIBUTE notype[] = {AVAR(CKA_CLASS, cls), ABUF(CKA_VALUE, fx.cert)};
    CK_ATTRIBUTE attrcert[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, attr),
                               ABUF(CKA_VALUE, fx.cert)};
    CK_ATTRIBUTE badsubj[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct),
                              ABUF(CKA_VALUE, fx.cert), ATTR(CKA_SUBJECT, "junk", 4)};
    mod_attrs *o = NULL;

    (void)state;
    assert_non_null(longer);
    memcpy(longer, fx.cert.p, fx.cert.n);
    longer[fx.cert.n] = 0;
    assert_int_equal(create(garbage, NA(garbage), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(create(trunc, NA(trunc), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(create(trailing, NA(trailing), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(create(empty, NA(empty), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(create(novalue, NA(novalue), &o), CKR_TEMPLATE_INCOMPLETE);
    assert_int_equal(create(notype, NA(notype), &o), CKR_TEMPLATE_INCOMPLETE);
    assert_int_equal(create(attrcert, NA(attrcert), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(create(badsubj, NA(badsubj), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_null(o);
    free(longer);
}

static void
test_cert_mismatch(void **state)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    X509 *other = make_cert(fx.rsa2, "someone else", 99);
    unsigned char *osubj = NULL, *oser = NULL;
    int osubjlen = i2d_X509_NAME(X509_get_subject_name(other), &osubj);
    int oserlen = i2d_ASN1_INTEGER(X509_get0_serialNumber(other), &oser);
    buf ospki = spki_of(fx.rsa2);
    CK_ATTRIBUTE subj[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct),
                           ABUF(CKA_VALUE, fx.cert), ATTR(CKA_SUBJECT, osubj, osubjlen)};
    CK_ATTRIBUTE iss[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct),
                          ABUF(CKA_VALUE, fx.cert), ATTR(CKA_ISSUER, osubj, osubjlen)};
    CK_ATTRIBUTE ser[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct),
                          ABUF(CKA_VALUE, fx.cert), ATTR(CKA_SERIAL_NUMBER, oser, oserlen)};
    CK_ATTRIBUTE spki[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct),
                           ABUF(CKA_VALUE, fx.cert), ABUF(CKA_PUBLIC_KEY_INFO, ospki)};
    CK_ATTRIBUTE cv[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct),
                         ABUF(CKA_VALUE, fx.cert), ATTR(CKA_CHECK_VALUE, "abc", 3)};
    mod_attrs *o = NULL;

    (void)state;
    assert_int_equal(create(subj, NA(subj), &o), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(create(iss, NA(iss), &o), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(create(ser, NA(ser), &o), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(create(spki, NA(spki), &o), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(create(cv, NA(cv), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_null(o);
    X509_free(other);
    OPENSSL_free(osubj);
    OPENSSL_free(oser);
    buf_free(&ospki);
}

static void
test_cert_trusted(void **state)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_ULONG bad = 4;
    CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct),
                        ABUF(CKA_VALUE, fx.cert), AVAR(CKA_TRUSTED, T)};
    CK_ATTRIBUTE badcat[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct),
                             ABUF(CKA_VALUE, fx.cert), AVAR(CKA_CERTIFICATE_CATEGORY, bad)};
    mod_attrs *o = NULL;

    (void)state;
    assert_int_equal(obj_from_template(t, NA(t), &user_pol, &o), CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(obj_from_template(t, NA(t), NULL, &o), CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(obj_from_template(badcat, NA(badcat), &so_pol, &o),
                     CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(obj_from_template(t, NA(t), &so_pol, &o), CKR_OK);
    assert_bool_attr(o, CKA_TRUSTED, CK_TRUE);
    obj_free(o);
}

/* ---- RSA ------------------------------------------------------------------- */

static void
test_rsa_public(void **state)
{
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    CK_ULONG bits = 2048, wrongbits = 1024;
    struct rsa_parts r;
    buf spki = spki_of(fx.rsa);
    mod_attrs *o = NULL;

    (void)state;
    rsa_parts_get(fx.rsa, &r);
    {
        CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_MODULUS, r.n),
                            ABUF(CKA_PUBLIC_EXPONENT, r.e)};
        assert_int_equal(create(t, NA(t), &o), CKR_OK);
        assert_sorted(o);
        assert_ulong_attr(o, CKA_MODULUS_BITS, 2048);
        assert_attr(o, CKA_PUBLIC_KEY_INFO, spki.p, spki.n);
        assert_bool_attr(o, CKA_PRIVATE, CK_FALSE);
        assert_bool_attr(o, CKA_ENCRYPT, CK_TRUE);
        assert_bool_attr(o, CKA_VERIFY, CK_TRUE);
        assert_bool_attr(o, CKA_VERIFY_RECOVER, CK_TRUE);
        assert_bool_attr(o, CKA_WRAP, CK_TRUE);
        assert_bool_attr(o, CKA_DERIVE, CK_FALSE);
        assert_bool_attr(o, CKA_LOCAL, CK_FALSE);
        assert_bool_attr(o, CKA_TRUSTED, CK_FALSE);
        assert_ulong_attr(o, CKA_KEY_GEN_MECHANISM, CK_UNAVAILABLE_INFORMATION);
        assert_attr(o, CKA_SUBJECT, "", 0);
        assert_attr(o, CKA_ID, "", 0);
        assert_attr(o, CKA_START_DATE, "", 0);
        assert_null(obj_find(o, CKA_SENSITIVE));
        assert_int_equal(o->secure, 0);
        obj_free(o);
        o = NULL;
    }
    {
        CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_MODULUS, r.n),
                            ABUF(CKA_PUBLIC_EXPONENT, r.e), AVAR(CKA_MODULUS_BITS, bits)};
        CK_ATTRIBUTE w[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_MODULUS, r.n),
                            ABUF(CKA_PUBLIC_EXPONENT, r.e), AVAR(CKA_MODULUS_BITS, wrongbits)};
        CK_ATTRIBUTE noe[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_MODULUS, r.n)};
        CK_ATTRIBUTE nokt[] = {AVAR(CKA_CLASS, cls), ABUF(CKA_MODULUS, r.n),
                               ABUF(CKA_PUBLIC_EXPONENT, r.e)};
        CK_ATTRIBUTE pe[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_MODULUS, r.n),
                             ABUF(CKA_PUBLIC_EXPONENT, r.e), ABUF(CKA_PRIVATE_EXPONENT, r.d)};
        CK_ATTRIBUTE small[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt),
                                ATTR(CKA_MODULUS, r.n.p, 64), ABUF(CKA_PUBLIC_EXPONENT, r.e)};
        CK_ATTRIBUTE emptye[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt),
                                 ABUF(CKA_MODULUS, r.n), ATTR(CKA_PUBLIC_EXPONENT, "", 0)};
        unsigned char even[256];
        CK_ATTRIBUTE evenn[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt),
                                AVAR(CKA_MODULUS, even), ABUF(CKA_PUBLIC_EXPONENT, r.e)};
        CK_KEY_TYPE dsa = CKK_DSA;
        CK_ATTRIBUTE dsat[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, dsa)};

        memcpy(even, r.n.p, sizeof(even));
        even[255] &= 0xfe;
        assert_int_equal(create(t, NA(t), &o), CKR_OK);
        obj_free(o);
        o = NULL;
        assert_int_equal(create(w, NA(w), &o), CKR_TEMPLATE_INCONSISTENT);
        assert_int_equal(create(noe, NA(noe), &o), CKR_TEMPLATE_INCOMPLETE);
        assert_int_equal(create(nokt, NA(nokt), &o), CKR_TEMPLATE_INCOMPLETE);
        assert_int_equal(create(pe, NA(pe), &o), CKR_TEMPLATE_INCONSISTENT);
        assert_int_equal(create(small, NA(small), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        assert_int_equal(create(emptye, NA(emptye), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        assert_int_equal(create(evenn, NA(evenn), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        assert_int_equal(create(dsat, NA(dsat), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        assert_null(o);
    }
    rsa_parts_free(&r);
    buf_free(&spki);
}

static void
test_rsa_private(void **state)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    struct rsa_parts r;
    buf spki = spki_of(fx.rsa);
    mod_attrs *o = NULL;

    (void)state;
    rsa_parts_get(fx.rsa, &r);
    {
        CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls),
                            AVAR(CKA_KEY_TYPE, kt),
                            AVAR(CKA_TOKEN, T),
                            ATTR(CKA_ID, "\xaa", 1),
                            ABUF(CKA_MODULUS, r.n),
                            ABUF(CKA_PUBLIC_EXPONENT, r.e),
                            ABUF(CKA_PRIVATE_EXPONENT, r.d),
                            ABUF(CKA_PRIME_1, r.p),
                            ABUF(CKA_PRIME_2, r.q),
                            ABUF(CKA_EXPONENT_1, r.dp),
                            ABUF(CKA_EXPONENT_2, r.dq),
                            ABUF(CKA_COEFFICIENT, r.qi)};
        assert_int_equal(create(t, NA(t), &o), CKR_OK);
        assert_sorted(o);
        assert_int_equal(o->secure, 1);
        assert_attr(o, CKA_PRIVATE_EXPONENT, r.d.p, r.d.n);
        assert_attr(o, CKA_PUBLIC_KEY_INFO, spki.p, spki.n);
        assert_bool_attr(o, CKA_PRIVATE, CK_TRUE);
        assert_bool_attr(o, CKA_SENSITIVE, CK_TRUE);
        assert_bool_attr(o, CKA_EXTRACTABLE, CK_FALSE);
        assert_bool_attr(o, CKA_ALWAYS_SENSITIVE, CK_FALSE);
        assert_bool_attr(o, CKA_NEVER_EXTRACTABLE, CK_FALSE);
        assert_bool_attr(o, CKA_SIGN, CK_TRUE);
        assert_bool_attr(o, CKA_DECRYPT, CK_TRUE);
        assert_bool_attr(o, CKA_UNWRAP, CK_TRUE);
        assert_bool_attr(o, CKA_SIGN_RECOVER, CK_TRUE);
        assert_bool_attr(o, CKA_ALWAYS_AUTHENTICATE, CK_FALSE);
        assert_bool_attr(o, CKA_WRAP_WITH_TRUSTED, CK_FALSE);
        assert_bool_attr(o, CKA_LOCAL, CK_FALSE);
        assert_null(obj_find(o, CKA_MODULUS_BITS)); /* a public key attribute */
        obj_free(o);
        o = NULL;
    }
    {
        /* No CRT parts: n, e, d checked by a round trip. */
        CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_MODULUS, r.n),
                            ABUF(CKA_PUBLIC_EXPONENT, r.e), ABUF(CKA_PRIVATE_EXPONENT, r.d)};
        CK_ATTRIBUTE nod[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_MODULUS, r.n),
                              ABUF(CKA_PUBLIC_EXPONENT, r.e)};
        CK_ATTRIBUTE pub[] = {AVAR(CKA_CLASS, cls),
                              AVAR(CKA_KEY_TYPE, kt),
                              ABUF(CKA_MODULUS, r.n),
                              ABUF(CKA_PUBLIC_EXPONENT, r.e),
                              ABUF(CKA_PRIVATE_EXPONENT, r.d),
                              AVAR(CKA_PRIVATE, F),
                              AVAR(CKA_TOKEN, T)};
        CK_ATTRIBUTE pub_session[] = {
            AVAR(CKA_CLASS, cls),           AVAR(CKA_KEY_TYPE, kt),          ABUF(CKA_MODULUS, r.n),
            ABUF(CKA_PUBLIC_EXPONENT, r.e), ABUF(CKA_PRIVATE_EXPONENT, r.d), AVAR(CKA_PRIVATE, F)};
        assert_int_equal(create(t, NA(t), &o), CKR_OK);
        assert_null(obj_find(o, CKA_PRIME_1));
        assert_attr(o, CKA_PUBLIC_KEY_INFO, spki.p, spki.n);
        obj_free(o);
        o = NULL;
        assert_int_equal(create(nod, NA(nod), &o), CKR_TEMPLATE_INCOMPLETE);
        /* Key material is never a public token object on this token. */
        assert_int_equal(create(pub, NA(pub), &o), CKR_TEMPLATE_INCONSISTENT);
        assert_null(o);
        /* A session key never touches the disk: it may be public. */
        assert_int_equal(create(pub_session, NA(pub_session), &o), CKR_OK);
        assert_bool_attr(o, CKA_PRIVATE, CK_FALSE);
        assert_int_equal(o->secure, 1); /* a private key's values stay in locked memory */
        obj_free(o);
        o = NULL;
    }
    rsa_parts_free(&r);
    buf_free(&spki);
}

static void
test_rsa_private_inconsistent(void **state)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    struct rsa_parts r, r2;
    buf spki2 = spki_of(fx.rsa2);
    mod_attrs *o = NULL;

    (void)state;
    rsa_parts_get(fx.rsa, &r);
    rsa_parts_get(fx.rsa2, &r2);
    {
        /* d of another key. */
        CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_MODULUS, r.n),
                            ABUF(CKA_PUBLIC_EXPONENT, r.e), ABUF(CKA_PRIVATE_EXPONENT, r2.d)};
        assert_int_equal(create(t, NA(t), &o), CKR_TEMPLATE_INCONSISTENT);
    }
    {
        /* A prime of another key. */
        CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls),
                            AVAR(CKA_KEY_TYPE, kt),
                            ABUF(CKA_MODULUS, r.n),
                            ABUF(CKA_PUBLIC_EXPONENT, r.e),
                            ABUF(CKA_PRIVATE_EXPONENT, r.d),
                            ABUF(CKA_PRIME_1, r2.p),
                            ABUF(CKA_PRIME_2, r.q),
                            ABUF(CKA_EXPONENT_1, r.dp),
                            ABUF(CKA_EXPONENT_2, r.dq),
                            ABUF(CKA_COEFFICIENT, r.qi)};
        assert_int_equal(create(t, NA(t), &o), CKR_TEMPLATE_INCONSISTENT);
    }
    {
        /* Some CRT parts only. */
        CK_ATTRIBUTE t[] = {
            AVAR(CKA_CLASS, cls),           AVAR(CKA_KEY_TYPE, kt),          ABUF(CKA_MODULUS, r.n),
            ABUF(CKA_PUBLIC_EXPONENT, r.e), ABUF(CKA_PRIVATE_EXPONENT, r.d), ABUF(CKA_PRIME_1, r.p),
            ABUF(CKA_PRIME_2, r.q)};
        assert_int_equal(create(t, NA(t), &o), CKR_TEMPLATE_INCONSISTENT);
    }
    {
        /* CKA_PUBLIC_KEY_INFO of another key. */
        CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls),
                            AVAR(CKA_KEY_TYPE, kt),
                            ABUF(CKA_MODULUS, r.n),
                            ABUF(CKA_PUBLIC_EXPONENT, r.e),
                            ABUF(CKA_PRIVATE_EXPONENT, r.d),
                            ABUF(CKA_PUBLIC_KEY_INFO, spki2)};
        assert_int_equal(create(t, NA(t), &o), CKR_TEMPLATE_INCONSISTENT);
    }
    assert_null(o);
    rsa_parts_free(&r);
    rsa_parts_free(&r2);
    buf_free(&spki2);
}

/* ---- EC -------------------------------------------------------------------- */

static void
test_ec_public(void **state)
{
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    buf params = der_oid(NID_X9_62_prime256v1), pt = ec_pub(fx.ec256);
    buf ptder = der_octets(pt.p, pt.n), spki = spki_of(fx.ec256);
    unsigned char comp[33];
    mod_attrs *o = NULL;
    CK_ATTRIBUTE der[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_EC_PARAMS, params),
                          ABUF(CKA_EC_POINT, ptder)};
    CK_ATTRIBUTE raw[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_EC_PARAMS, params),
                          ABUF(CKA_EC_POINT, pt)};
    CK_ATTRIBUTE cmp[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_EC_PARAMS, params),
                          AVAR(CKA_EC_POINT, comp)};

    (void)state;
    /* The compressed form of the same point. */
    comp[0] = (unsigned char)(0x02 | (pt.p[64] & 1));
    memcpy(comp + 1, pt.p + 1, 32);

    assert_int_equal(create(der, NA(der), &o), CKR_OK);
    assert_attr(o, CKA_EC_POINT, ptder.p, ptder.n);
    assert_attr(o, CKA_EC_PARAMS, params.p, params.n);
    assert_attr(o, CKA_PUBLIC_KEY_INFO, spki.p, spki.n);
    obj_free(o);
    o = NULL;
    /* A bare point is accepted and stored as DER. */
    assert_int_equal(create(raw, NA(raw), &o), CKR_OK);
    assert_attr(o, CKA_EC_POINT, ptder.p, ptder.n);
    obj_free(o);
    o = NULL;
    /* ... and so is a compressed one, stored uncompressed. */
    assert_int_equal(create(cmp, NA(cmp), &o), CKR_OK);
    assert_attr(o, CKA_EC_POINT, ptder.p, ptder.n);
    obj_free(o);
    o = NULL;
    {
        buf k1 = der_oid(NID_secp256k1), p384 = der_oid(NID_secp384r1);
        buf ed = der_oid(NID_ED25519);
        unsigned char off[65];
        CK_ATTRIBUTE t1[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_EC_PARAMS, k1),
                             ABUF(CKA_EC_POINT, ptder)};
        CK_ATTRIBUTE t2[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt),
                             ATTR(CKA_EC_PARAMS, "\x13\x05", 2), ABUF(CKA_EC_POINT, ptder)};
        CK_ATTRIBUTE t3[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt),
                             ATTR(CKA_EC_PARAMS, "\x05\x00", 2), ABUF(CKA_EC_POINT, ptder)};
        CK_ATTRIBUTE t4[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt),
                             ABUF(CKA_EC_PARAMS, params), AVAR(CKA_EC_POINT, off)};
        CK_ATTRIBUTE t5[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt),
                             ABUF(CKA_EC_PARAMS, p384), ABUF(CKA_EC_POINT, ptder)};
        CK_ATTRIBUTE t6[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt),
                             ABUF(CKA_EC_PARAMS, params)};
        CK_ATTRIBUTE t7[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_EC_PARAMS, ed),
                             ABUF(CKA_EC_POINT, ptder)};
        CK_ATTRIBUTE t8[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt),
                             ABUF(CKA_EC_PARAMS, params), ATTR(CKA_EC_POINT, "\x04\x01\x00", 3)};

        memcpy(off, pt.p, sizeof(off));
        off[64] ^= 1; /* no longer on the curve */
        assert_int_equal(create(t1, NA(t1), &o), CKR_CURVE_NOT_SUPPORTED);
        assert_int_equal(create(t2, NA(t2), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        assert_int_equal(create(t3, NA(t3), &o), CKR_CURVE_NOT_SUPPORTED); /* implicitlyCA */
        assert_int_equal(create(t4, NA(t4), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        assert_int_equal(create(t5, NA(t5), &o), CKR_ATTRIBUTE_VALUE_INVALID); /* wrong curve */
        assert_int_equal(create(t6, NA(t6), &o), CKR_TEMPLATE_INCOMPLETE);
        assert_int_equal(create(t7, NA(t7), &o), CKR_CURVE_NOT_SUPPORTED);
        assert_int_equal(create(t8, NA(t8), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        assert_null(o);
        buf_free(&k1);
        buf_free(&p384);
        buf_free(&ed);
    }
    buf_free(&params);
    buf_free(&pt);
    buf_free(&ptder);
    buf_free(&spki);
}

static void
test_ec_private(void **state)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    buf p256 = der_oid(NID_X9_62_prime256v1), p384 = der_oid(NID_secp384r1);
    buf d256 = bn_param(fx.ec256, OSSL_PKEY_PARAM_PRIV_KEY, 32);
    buf d384 = bn_param(fx.ec384, OSSL_PKEY_PARAM_PRIV_KEY, 48);
    buf spki256 = spki_of(fx.ec256), spki384 = spki_of(fx.ec384);
    buf pt = ec_pub(fx.ec256), ptder = der_octets(pt.p, pt.n);
    unsigned char zero[32] = {0}, big[32];
    mod_attrs *o = NULL;

    (void)state;
    memset(big, 0xff, sizeof(big)); /* above the group order */
    {
        CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_EC_PARAMS, p256),
                            ABUF(CKA_VALUE, d256), AVAR(CKA_DERIVE, T)};
        assert_int_equal(create(t, NA(t), &o), CKR_OK);
        assert_attr(o, CKA_PUBLIC_KEY_INFO, spki256.p, spki256.n);
        assert_attr(o, CKA_VALUE, d256.p, d256.n);
        assert_bool_attr(o, CKA_DERIVE, CK_TRUE);
        assert_null(obj_find(o, CKA_EC_POINT)); /* not a private key attribute */
        assert_int_equal(o->secure, 1);
        obj_free(o);
        o = NULL;
    }
    {
        CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_EC_PARAMS, p384),
                            ABUF(CKA_VALUE, d384)};
        assert_int_equal(create(t, NA(t), &o), CKR_OK);
        assert_attr(o, CKA_PUBLIC_KEY_INFO, spki384.p, spki384.n);
        obj_free(o);
        o = NULL;
    }
    {
        CK_ATTRIBUTE z[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_EC_PARAMS, p256),
                            AVAR(CKA_VALUE, zero)};
        CK_ATTRIBUTE b[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_EC_PARAMS, p256),
                            AVAR(CKA_VALUE, big)};
        CK_ATTRIBUTE nov[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt),
                              ABUF(CKA_EC_PARAMS, p256)};
        CK_ATTRIBUTE inc[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt),
                              ABUF(CKA_EC_PARAMS, p256), ABUF(CKA_VALUE, d256),
                              ABUF(CKA_PUBLIC_KEY_INFO, spki384)};
        CK_ATTRIBUTE pt_on_priv[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt),
                                     ABUF(CKA_EC_PARAMS, p256), ABUF(CKA_VALUE, d256),
                                     ABUF(CKA_EC_POINT, ptder)};
        assert_int_equal(create(z, NA(z), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        assert_int_equal(create(b, NA(b), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        assert_int_equal(create(nov, NA(nov), &o), CKR_TEMPLATE_INCOMPLETE);
        assert_int_equal(create(inc, NA(inc), &o), CKR_TEMPLATE_INCONSISTENT);
        assert_int_equal(create(pt_on_priv, NA(pt_on_priv), &o), CKR_TEMPLATE_INCONSISTENT);
        assert_null(o);
    }
    buf_free(&p256);
    buf_free(&p384);
    buf_free(&d256);
    buf_free(&d384);
    buf_free(&spki256);
    buf_free(&spki384);
    buf_free(&pt);
    buf_free(&ptder);
}

/* ---- EdDSA ----------------------------------------------------------------- */

static void
ed_roundtrip(EVP_PKEY *pk, int nid, const char *name)
{
    CK_OBJECT_CLASS pubc = CKO_PUBLIC_KEY, privc = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_EC_EDWARDS;
    buf oid = der_oid(nid), pub = raw_key(pk, 0), sk = raw_key(pk, 1);
    buf pubder = der_octets(pub.p, pub.n), spki = spki_of(pk);
    ASN1_PRINTABLESTRING *ps = ASN1_PRINTABLESTRING_new();
    buf pname = {NULL, 0};
    mod_attrs *o = NULL;
    int n;

    assert_true(ASN1_STRING_set(ps, name, -1));
    n = i2d_ASN1_PRINTABLESTRING(ps, &pname.p);
    assert_true(n > 0);
    pname.n = (size_t)n;
    {
        CK_ATTRIBUTE der[] = {AVAR(CKA_CLASS, pubc), AVAR(CKA_KEY_TYPE, kt),
                              ABUF(CKA_EC_PARAMS, oid), ABUF(CKA_EC_POINT, pubder)};
        CK_ATTRIBUTE raw[] = {AVAR(CKA_CLASS, pubc), AVAR(CKA_KEY_TYPE, kt),
                              ABUF(CKA_EC_PARAMS, pname), ABUF(CKA_EC_POINT, pub)};
        CK_ATTRIBUTE priv[] = {AVAR(CKA_CLASS, privc), AVAR(CKA_KEY_TYPE, kt),
                               ABUF(CKA_EC_PARAMS, oid), ABUF(CKA_VALUE, sk)};
        CK_ATTRIBUTE shortk[] = {AVAR(CKA_CLASS, privc), AVAR(CKA_KEY_TYPE, kt),
                                 ABUF(CKA_EC_PARAMS, oid), ATTR(CKA_VALUE, sk.p, sk.n - 1)};
        CK_ATTRIBUTE shortp[] = {AVAR(CKA_CLASS, pubc), AVAR(CKA_KEY_TYPE, kt),
                                 ABUF(CKA_EC_PARAMS, oid), ATTR(CKA_EC_POINT, pub.p, pub.n - 1)};

        assert_int_equal(create(der, NA(der), &o), CKR_OK);
        assert_attr(o, CKA_EC_POINT, pubder.p, pubder.n);
        assert_attr(o, CKA_PUBLIC_KEY_INFO, spki.p, spki.n);
        obj_free(o);
        o = NULL;
        assert_int_equal(create(raw, NA(raw), &o), CKR_OK);
        assert_attr(o, CKA_EC_POINT, pubder.p, pubder.n);
        assert_attr(o, CKA_EC_PARAMS, pname.p, pname.n); /* kept as given */
        obj_free(o);
        o = NULL;
        assert_int_equal(create(priv, NA(priv), &o), CKR_OK);
        assert_attr(o, CKA_PUBLIC_KEY_INFO, spki.p, spki.n);
        assert_int_equal(o->secure, 1);
        obj_free(o);
        o = NULL;
        assert_int_equal(create(shortk, NA(shortk), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        assert_int_equal(create(shortp, NA(shortp), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        assert_null(o);
    }
    ASN1_PRINTABLESTRING_free(ps);
    OPENSSL_free(pname.p);
    buf_free(&oid);
    buf_free(&pub);
    buf_free(&sk);
    buf_free(&pubder);
    buf_free(&spki);
}

static void
test_ed25519(void **state)
{
    (void)state;
    ed_roundtrip(fx.ed25519, NID_ED25519, "edwards25519");
}

static void
test_ed448(void **state)
{
    (void)state;
    ed_roundtrip(fx.ed448, NID_ED448, "edwards448");
}

static void
test_ed_bad_params(void **state)
{
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_EC_EDWARDS;
    buf pub = raw_key(fx.ed25519, 0), p256 = der_oid(NID_X9_62_prime256v1);
    buf x25519 = der_oid(NID_X25519);
    CK_ATTRIBUTE t1[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_EC_PARAMS, p256),
                         ABUF(CKA_EC_POINT, pub)};
    CK_ATTRIBUTE t2[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_EC_PARAMS, x25519),
                         ABUF(CKA_EC_POINT, pub)};
    CK_ATTRIBUTE t3[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt),
                         ATTR(CKA_EC_PARAMS,
                              "\x13\x04"
                              "abcd",
                              6),
                         ABUF(CKA_EC_POINT, pub)};
    mod_attrs *o = NULL;

    (void)state;
    assert_int_equal(create(t1, NA(t1), &o), CKR_CURVE_NOT_SUPPORTED);
    assert_int_equal(create(t2, NA(t2), &o), CKR_CURVE_NOT_SUPPORTED);
    assert_int_equal(create(t3, NA(t3), &o), CKR_CURVE_NOT_SUPPORTED);
    assert_null(o);
    buf_free(&pub);
    buf_free(&p256);
    buf_free(&x25519);
}

/* ---- Secret keys ----------------------------------------------------------- */

static void
test_secret_keys(void **state)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES, gen = CKK_GENERIC_SECRET, des = CKK_DES3;
    unsigned char k16[16] = {0}, k24[24], k32[32], k15[15] = {0}, md[SHA_DIGEST_LENGTH];
    CK_ULONG len16 = 16, len17 = 17;
    mod_attrs *o = NULL;

    (void)state;
    memset(k24, 0x24, sizeof(k24));
    memset(k32, 0x32, sizeof(k32));
    {
        CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, aes), AVAR(CKA_VALUE, k16),
                            AVAR(CKA_VALUE_LEN, len16)};
        assert_int_equal(create(t, NA(t), &o), CKR_OK);
        assert_ulong_attr(o, CKA_VALUE_LEN, 16);
        /* FIPS-197 style known answer: AES-128(0^128, 0^128) = 66e94bd4... */
        assert_attr(o, CKA_CHECK_VALUE, "\x66\xe9\x4b", 3);
        assert_bool_attr(o, CKA_PRIVATE, CK_TRUE);
        assert_bool_attr(o, CKA_SENSITIVE, CK_TRUE);
        assert_bool_attr(o, CKA_EXTRACTABLE, CK_FALSE);
        assert_bool_attr(o, CKA_ENCRYPT, CK_TRUE);
        assert_bool_attr(o, CKA_DECRYPT, CK_TRUE);
        assert_bool_attr(o, CKA_WRAP, CK_TRUE);
        assert_bool_attr(o, CKA_UNWRAP, CK_TRUE);
        assert_bool_attr(o, CKA_TRUSTED, CK_FALSE);
        assert_null(obj_find(o, CKA_SUBJECT));
        assert_int_equal(o->secure, 1);
        obj_free(o);
        o = NULL;
    }
    {
        CK_ATTRIBUTE t24[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, aes), AVAR(CKA_VALUE, k24)};
        CK_ATTRIBUTE t32[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, aes), AVAR(CKA_VALUE, k32)};
        assert_int_equal(create(t24, NA(t24), &o), CKR_OK);
        assert_ulong_attr(o, CKA_VALUE_LEN, 24);
        obj_free(o);
        o = NULL;
        assert_int_equal(create(t32, NA(t32), &o), CKR_OK);
        assert_ulong_attr(o, CKA_VALUE_LEN, 32);
        obj_free(o);
        o = NULL;
    }
    {
        CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, gen), AVAR(CKA_VALUE, k24)};
        SHA1(k24, sizeof(k24), md);
        assert_int_equal(create(t, NA(t), &o), CKR_OK);
        assert_ulong_attr(o, CKA_VALUE_LEN, 24);
        assert_attr(o, CKA_CHECK_VALUE, md, 3);
        obj_free(o);
        o = NULL;
    }
    {
        CK_ATTRIBUTE bad[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, aes), AVAR(CKA_VALUE, k15)};
        CK_ATTRIBUTE wl[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, aes), AVAR(CKA_VALUE, k16),
                             AVAR(CKA_VALUE_LEN, len17)};
        CK_ATTRIBUTE nov[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, aes)};
        CK_ATTRIBUTE empty[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, gen),
                                ATTR(CKA_VALUE, "", 0)};
        CK_ATTRIBUTE d3[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, des), AVAR(CKA_VALUE, k24)};
        CK_ATTRIBUTE cv[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, aes), AVAR(CKA_VALUE, k16),
                             ATTR(CKA_CHECK_VALUE, "\x00\x00\x00", 3)};
        CK_ATTRIBUTE subj[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, aes), AVAR(CKA_VALUE, k16),
                               ATTR(CKA_SUBJECT, "", 0)};
        assert_int_equal(create(bad, NA(bad), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        assert_int_equal(create(wl, NA(wl), &o), CKR_TEMPLATE_INCONSISTENT);
        assert_int_equal(create(nov, NA(nov), &o), CKR_TEMPLATE_INCOMPLETE);
        assert_int_equal(create(empty, NA(empty), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        assert_int_equal(create(d3, NA(d3), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        assert_int_equal(create(cv, NA(cv), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        assert_int_equal(create(subj, NA(subj), &o), CKR_TEMPLATE_INCONSISTENT);
        assert_null(o);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cert_minimal),   cmocka_unit_test(test_cert_full),
        cmocka_unit_test(test_cert_malformed), cmocka_unit_test(test_cert_mismatch),
        cmocka_unit_test(test_cert_trusted),   cmocka_unit_test(test_rsa_public),
        cmocka_unit_test(test_rsa_private),    cmocka_unit_test(test_rsa_private_inconsistent),
        cmocka_unit_test(test_ec_public),      cmocka_unit_test(test_ec_private),
        cmocka_unit_test(test_ed25519),        cmocka_unit_test(test_ed448),
        cmocka_unit_test(test_ed_bad_params),  cmocka_unit_test(test_secret_keys),
    };

    return cmocka_run_group_tests_name("mod_objimport", tests, group_setup, group_teardown);
}
