/*
 * t_object.c — object management: C_CreateObject, C_CopyObject,
 * C_DestroyObject, C_GetObjectSize, C_GetAttributeValue, C_SetAttributeValue,
 * C_FindObjects*, and random numbers (C_GenerateRandom, C_SeedRandom).
 * PKCS#11 2.40 sections 4 (object classes), 5.7 and 5.15.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

#define NA(t) (sizeof(t) / sizeof((t)[0]))

/* One attribute of OBJ into BUF (asserting CKR_OK); returns its length. */
static CK_ULONG
get_attr(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, void *buf, CK_ULONG size)
{
    CK_ATTRIBUTE a = {type, buf, size};

    assert_ok(F->C_GetAttributeValue(h, o, &a, 1));
    return a.ulValueLen;
}

static CK_BBOOL
get_bool(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL b = 0xAA;

    assert_int_equal(get_attr(h, o, type, &b, sizeof(b)), sizeof(b));
    return b;
}

static void
assert_attr_eq(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, const void *want,
               CK_ULONG n)
{
    unsigned char buf[4096];
    CK_ULONG got = get_attr(h, o, type, buf, sizeof(buf));

    assert_int_equal(got, n);
    assert_memory_equal(buf, want, n);
}

static int
handle_in(CK_OBJECT_HANDLE o, const CK_OBJECT_HANDLE *l, CK_ULONG n)
{
    for (CK_ULONG i = 0; i < n; i++)
        if (l[i] == o)
            return 1;
    return 0;
}

/* ---- key and certificate objects ---------------------------------------- */

static CK_RV
create_cert(CK_SESSION_HANDLE h, CK_BBOOL token, CK_OBJECT_HANDLE *o)
{
    const struct conf_material *m = conf_material();
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
        {CKA_TOKEN, &token, sizeof(token)},
        {CKA_PRIVATE, &no, sizeof(no)},
        {CKA_LABEL, "cert", 4},
        {CKA_ID, "\x01\x02", 2},
        {CKA_SUBJECT, m->cert_subject.p, m->cert_subject.n},
        {CKA_ISSUER, m->cert_issuer.p, m->cert_issuer.n},
        {CKA_SERIAL_NUMBER, m->cert_serial.p, m->cert_serial.n},
        {CKA_VALUE, m->cert.p, m->cert.n},
    };
    return F->C_CreateObject(h, t, NA(t), o);
}

static CK_RV
create_rsa(CK_SESSION_HANDLE h, CK_BBOOL token, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
    const struct conf_material *m = conf_material();
    CK_OBJECT_CLASS pubc = CKO_PUBLIC_KEY, privc = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    CK_ATTRIBUTE tpub[] = {
        {CKA_CLASS, &pubc, sizeof(pubc)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &token, sizeof(token)},
        {CKA_PRIVATE, &no, sizeof(no)},
        {CKA_LABEL, "rsa", 3},
        {CKA_ID, "\x0a", 1},
        {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_MODULUS, m->rsa_n.p, m->rsa_n.n},
        {CKA_PUBLIC_EXPONENT, m->rsa_e.p, m->rsa_e.n},
    };
    CK_ATTRIBUTE tpriv[] = {
        {CKA_CLASS, &privc, sizeof(privc)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &token, sizeof(token)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_SIGN, &yes, sizeof(yes)},
        {CKA_LABEL, "rsa", 3},
        {CKA_ID, "\x0a", 1},
        {CKA_MODULUS, m->rsa_n.p, m->rsa_n.n},
        {CKA_PUBLIC_EXPONENT, m->rsa_e.p, m->rsa_e.n},
        {CKA_PRIVATE_EXPONENT, m->rsa_d.p, m->rsa_d.n},
        {CKA_PRIME_1, m->rsa_p.p, m->rsa_p.n},
        {CKA_PRIME_2, m->rsa_q.p, m->rsa_q.n},
        {CKA_EXPONENT_1, m->rsa_dp.p, m->rsa_dp.n},
        {CKA_EXPONENT_2, m->rsa_dq.p, m->rsa_dq.n},
        {CKA_COEFFICIENT, m->rsa_qinv.p, m->rsa_qinv.n},
    };
    CK_RV rv = F->C_CreateObject(h, tpub, NA(tpub), pub);

    if (rv != CKR_OK)
        return rv;
    return F->C_CreateObject(h, tpriv, NA(tpriv), priv);
}

static CK_RV
create_ec(CK_SESSION_HANDLE h, CK_BBOOL token, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
    const struct conf_material *m = conf_material();
    CK_OBJECT_CLASS pubc = CKO_PUBLIC_KEY, privc = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    CK_ATTRIBUTE tpub[] = {
        {CKA_CLASS, &pubc, sizeof(pubc)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &token, sizeof(token)},
        {CKA_PRIVATE, &no, sizeof(no)},
        {CKA_LABEL, "ec", 2},
        {CKA_ID, "\x0e", 1},
        {CKA_EC_PARAMS, m->ec_params.p, m->ec_params.n},
        {CKA_EC_POINT, m->ec_point.p, m->ec_point.n},
    };
    CK_ATTRIBUTE tpriv[] = {
        {CKA_CLASS, &privc, sizeof(privc)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &token, sizeof(token)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_SIGN, &yes, sizeof(yes)},
        {CKA_LABEL, "ec", 2},
        {CKA_ID, "\x0e", 1},
        {CKA_EC_PARAMS, m->ec_params.p, m->ec_params.n},
        {CKA_VALUE, m->ec_value.p, m->ec_value.n},
    };
    CK_RV rv = F->C_CreateObject(h, tpub, NA(tpub), pub);

    if (rv != CKR_OK)
        return rv;
    return F->C_CreateObject(h, tpriv, NA(tpriv), priv);
}

/* ---- tests -------------------------------------------------------------- */

static void
t_create_data(void **state)
{
    CK_SESSION_HANDLE ro = conf_open(0), ro2 = conf_open(0);
    CK_OBJECT_HANDLE o;
    CK_OBJECT_CLASS cls;
    CK_ULONG n;
    CK_OBJECT_HANDLE found;

    (void)state;
    /* A public session object is allowed even in a R/O public session. */
    assert_ok(conf_create_data(ro, CK_FALSE, CK_FALSE, "sess-data", &o));
    assert_true(o != CK_INVALID_HANDLE);
    assert_int_equal(get_attr(ro, o, CKA_CLASS, &cls, sizeof(cls)), sizeof(cls));
    assert_int_equal(cls, CKO_DATA);
    assert_false(get_bool(ro, o, CKA_TOKEN));
    assert_false(get_bool(ro, o, CKA_PRIVATE));
    assert_attr_eq(ro, o, CKA_LABEL, "sess-data", 9);
    assert_attr_eq(ro, o, CKA_VALUE, "sess-data", 9);
    assert_attr_eq(ro, o, CKA_APPLICATION, "p11conf", 7);

    /* Session objects are visible to every session of the application... */
    n = conf_find_label(ro2, "sess-data", &found);
    assert_int_equal(n, 1);
    assert_int_equal(found, o);
    /* ...and die with the session that made them. */
    assert_ok(F->C_CloseSession(ro));
    assert_int_equal(conf_find_label(ro2, "sess-data", NULL), 0);
    assert_rv(F->C_GetAttributeValue(ro2, o, &(CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)}, 1),
              CKR_OBJECT_HANDLE_INVALID);

    /* Template errors. */
    assert_rv(F->C_CreateObject(ro2, NULL, 1, &o), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_CreateObject(ro2, &(CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)}, 1, NULL),
              CKR_ARGUMENTS_BAD);
    assert_rv(
        F->C_CreateObject(CK_INVALID_HANDLE, &(CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)}, 1, &o),
        CKR_SESSION_HANDLE_INVALID);
    /* No class at all. */
    assert_rv(F->C_CreateObject(ro2, &(CK_ATTRIBUTE){CKA_LABEL, "x", 1}, 1, &o),
              CKR_TEMPLATE_INCOMPLETE);
}

static void
t_create_token_rules(void **state)
{
    CK_SESSION_HANDLE ro, rw;
    CK_OBJECT_HANDLE o;

    (void)state;
    ro = conf_open(0);
    rw = conf_open(CKF_RW_SESSION);

    /* Token object in a R/O session (logged in, so only R/O is wrong). */
    conf_login_user(ro);
    assert_rv(conf_create_data(ro, CK_TRUE, CK_FALSE, "t", &o), CKR_SESSION_READ_ONLY);
    assert_rv(conf_create_data(ro, CK_TRUE, CK_TRUE, "t", &o), CKR_SESSION_READ_ONLY);
    assert_ok(F->C_Logout(ro));
    assert_rv(conf_create_data(ro, CK_TRUE, CK_FALSE, "t", &o), CKR_SESSION_READ_ONLY);

    /* Private objects need the user (session and token objects alike). */
    assert_rv(conf_create_data(rw, CK_FALSE, CK_TRUE, "p", &o), CKR_USER_NOT_LOGGED_IN);
    assert_rv(conf_create_data(rw, CK_TRUE, CK_TRUE, "p", &o), CKR_USER_NOT_LOGGED_IN);

    /* A public token object in a public R/W session. */
    if (is_evertoken())
        /* Deliberate deviation (docs/module.md): every token-object write
         * needs a login, because stored records are MAC'd under a key only a
         * login unwraps. */
        assert_rv(conf_create_data(rw, CK_TRUE, CK_FALSE, "pub-token", &o), CKR_USER_NOT_LOGGED_IN);
    else
        /* The standard allows it (2.40 section 6.7.6, R/W public session). */
        assert_ok(conf_create_data(rw, CK_TRUE, CK_FALSE, "pub-token", &o));

    /* The SO may create public token objects, not private ones. */
    assert_ok(F->C_CloseSession(ro));
    conf_login_so(rw);
    assert_ok(conf_create_data(rw, CK_TRUE, CK_FALSE, "so-token", &o));
    assert_true(get_bool(rw, o, CKA_TOKEN));
    assert_rv(conf_create_data(rw, CK_TRUE, CK_TRUE, "so-priv", &o), CKR_USER_NOT_LOGGED_IN);
    assert_ok(F->C_Logout(rw));

    /* The user may create both. */
    conf_login_user(rw);
    assert_ok(conf_create_data(rw, CK_TRUE, CK_FALSE, "user-pub", &o));
    assert_ok(conf_create_data(rw, CK_TRUE, CK_TRUE, "user-priv", &o));
    assert_true(get_bool(rw, o, CKA_PRIVATE));
    assert_ok(F->C_CloseSession(rw));
}

static void
t_private_visibility(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_OBJECT_HANDLE pub, priv, spriv, all[64];
    CK_ULONG n;
    CK_BYTE buf[64];
    CK_ATTRIBUTE a = {CKA_LABEL, buf, sizeof(buf)};

    (void)state;
    conf_login_user(h);
    assert_ok(conf_create_data(h, CK_TRUE, CK_FALSE, "vis-pub", &pub));
    assert_ok(conf_create_data(h, CK_TRUE, CK_TRUE, "vis-priv", &priv));
    assert_ok(conf_create_data(h, CK_FALSE, CK_TRUE, "vis-spriv", &spriv));
    n = conf_find(h, NULL, 0, all, NA(all), 16);
    assert_true(handle_in(pub, all, n) && handle_in(priv, all, n));
    assert_ok(F->C_Logout(h));

    /* Logged out: the private token object is invisible, the public one not. */
    n = conf_find(h, NULL, 0, all, NA(all), 16);
    assert_true(n <= NA(all));
    assert_true(handle_in(pub, all, n));
    assert_false(handle_in(priv, all, n));
    assert_false(handle_in(spriv, all, n));
    assert_int_equal(conf_find_label(h, "vis-priv", NULL), 0);
    assert_rv(F->C_GetAttributeValue(h, priv, &a, 1), CKR_OBJECT_HANDLE_INVALID);

    /* Logged in again (new login, same process): visible again. The handle
     * may differ (PKCS#11 2.40, "Object handles": a handle is only
     * guaranteed while the object stays accessible; SoftHSMv2 drops private
     * handles at logout). evertoken's handle is the stored object's id. */
    conf_login_user(h);
    CK_OBJECT_HANDLE again;
    assert_int_equal(conf_find_label(h, "vis-priv", &again), 1);
    if (is_evertoken())
        assert_int_equal(again, priv);
    a.ulValueLen = sizeof(buf);
    assert_ok(F->C_GetAttributeValue(h, again, &a, 1));
    assert_int_equal(a.ulValueLen, 8);
    assert_memory_equal(buf, "vis-priv", 8);
    assert_ok(F->C_CloseSession(h));
}

static void
t_certificate(void **state)
{
    const struct conf_material *m = conf_material();
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION), ro;
    CK_OBJECT_HANDLE o, found[4];
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct;
    CK_ATTRIBUTE by_class = {CKA_CLASS, &cls, sizeof(cls)};

    (void)state;
    conf_login_user(h);
    assert_ok(create_cert(h, CK_TRUE, &o));
    assert_int_equal(get_attr(h, o, CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)), sizeof(ct));
    assert_int_equal(ct, CKC_X_509);
    assert_attr_eq(h, o, CKA_VALUE, m->cert.p, m->cert.n);
    assert_attr_eq(h, o, CKA_SUBJECT, m->cert_subject.p, m->cert_subject.n);
    assert_attr_eq(h, o, CKA_ID, "\x01\x02", 2);
    assert_ok(F->C_Logout(h));

    /* A public certificate: found by subject, by issuer and serial, by
     * certificate type and by class without login, from a R/O session
     * (evertoken: each from the keystore's lookup columns, the logout
     * having emptied its cache). */
    ro = conf_open(0);
    {
        CK_CERTIFICATE_TYPE x509 = CKC_X_509;
        CK_ATTRIBUTE by_subj = {CKA_SUBJECT, m->cert_subject.p, m->cert_subject.n};
        CK_ATTRIBUTE by_isn[] = {
            {CKA_ISSUER, m->cert_issuer.p, m->cert_issuer.n},
            {CKA_SERIAL_NUMBER, m->cert_serial.p, m->cert_serial.n},
        };
        CK_ATTRIBUTE other_isn[] = {
            {CKA_ISSUER, m->cert_issuer.p, m->cert_issuer.n},
            {CKA_SERIAL_NUMBER, "\x02\x01\x7f", 3},
        };
        CK_ATTRIBUTE by_type = {CKA_CERTIFICATE_TYPE, &x509, sizeof(x509)};

        assert_int_equal(conf_find(ro, &by_subj, 1, found, NA(found), 4), 1);
        assert_int_equal(found[0], o);
        assert_int_equal(conf_find(ro, other_isn, NA(other_isn), found, NA(found), 4), 0);
        assert_int_equal(conf_find(ro, by_isn, NA(by_isn), found, NA(found), 4), 1);
        assert_int_equal(found[0], o);
        assert_int_equal(conf_find(ro, &by_type, 1, found, NA(found), 4), 1);
        assert_int_equal(found[0], o);
    }
    assert_int_equal(conf_find(ro, &by_class, 1, found, NA(found), 4), 1);
    assert_int_equal(found[0], o);
    assert_attr_eq(ro, o, CKA_VALUE, m->cert.p, m->cert.n);

    /* Garbage as a certificate body is refused. */
    if (is_evertoken()) {
        /* evertoken parses CKA_VALUE (SoftHSMv2 stores any bytes). */
        CK_OBJECT_CLASS c2 = CKO_CERTIFICATE;
        CK_CERTIFICATE_TYPE x509 = CKC_X_509;
        CK_ATTRIBUTE bad[] = {
            {CKA_CLASS, &c2, sizeof(c2)},
            {CKA_CERTIFICATE_TYPE, &x509, sizeof(x509)},
            {CKA_SUBJECT, m->cert_subject.p, m->cert_subject.n},
            {CKA_VALUE, "not a certificate", 17},
        };
        assert_rv(F->C_CreateObject(ro, bad, NA(bad), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    }
    assert_ok(F->C_CloseSession(ro));
    assert_ok(F->C_CloseSession(h));
}

static void
t_rsa_keys(void **state)
{
    const struct conf_material *m = conf_material();
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_OBJECT_HANDLE pub, priv, found[4];
    CK_KEY_TYPE kt;
    CK_BYTE buf[1024];
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE a[] = {{CKA_PRIVATE_EXPONENT, buf, sizeof(buf)}};
    CK_ATTRIBUTE q[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, "\x0a", 1}};

    (void)state;
    /* A private key without login: refused. */
    assert_rv(create_rsa(h, CK_FALSE, &pub, &priv), CKR_USER_NOT_LOGGED_IN);
    conf_login_user(h);
    assert_ok(create_rsa(h, CK_TRUE, &pub, &priv));

    assert_attr_eq(h, pub, CKA_MODULUS, m->rsa_n.p, m->rsa_n.n);
    assert_attr_eq(h, pub, CKA_PUBLIC_EXPONENT, m->rsa_e.p, m->rsa_e.n);
    assert_int_equal(get_attr(h, priv, CKA_KEY_TYPE, &kt, sizeof(kt)), sizeof(kt));
    assert_int_equal(kt, CKK_RSA);
    /* Public parts of the private key are readable. */
    assert_attr_eq(h, priv, CKA_MODULUS, m->rsa_n.p, m->rsa_n.n);
    assert_true(get_bool(h, priv, CKA_SENSITIVE));
    assert_false(get_bool(h, priv, CKA_EXTRACTABLE));
    /* Imported: never "always sensitive" nor "never extractable", not local. */
    assert_false(get_bool(h, priv, CKA_ALWAYS_SENSITIVE));
    assert_false(get_bool(h, priv, CKA_NEVER_EXTRACTABLE));
    assert_false(get_bool(h, priv, CKA_LOCAL));

    /* 2.40 section 5.7 case 1: sensitive -> CK_UNAVAILABLE_INFORMATION. */
    assert_rv(F->C_GetAttributeValue(h, priv, a, 1), CKR_ATTRIBUTE_SENSITIVE);
    assert_int_equal(a[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    a[0].type = CKA_PRIME_1;
    a[0].ulValueLen = sizeof(buf);
    assert_rv(F->C_GetAttributeValue(h, priv, a, 1), CKR_ATTRIBUTE_SENSITIVE);
    assert_int_equal(a[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);

    /* Pairing by CKA_ID. */
    assert_int_equal(conf_find(h, q, NA(q), found, NA(found), 4), 1);
    assert_int_equal(found[0], priv);
    assert_ok(F->C_Logout(h));
    /* The private key is private. */
    assert_int_equal(conf_find(h, q, NA(q), found, NA(found), 4), 0);
    assert_ok(F->C_CloseSession(h));
}

static void
t_ec_keys(void **state)
{
    const struct conf_material *m = conf_material();
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_OBJECT_HANDLE pub, priv;
    CK_KEY_TYPE kt;
    CK_BYTE buf[256];
    CK_ATTRIBUTE a = {CKA_VALUE, buf, sizeof(buf)};

    (void)state;
    conf_login_user(h);
    /* Session keys this time. */
    assert_ok(create_ec(h, CK_FALSE, &pub, &priv));
    assert_false(get_bool(h, priv, CKA_TOKEN));
    assert_int_equal(get_attr(h, pub, CKA_KEY_TYPE, &kt, sizeof(kt)), sizeof(kt));
    assert_int_equal(kt, CKK_EC);
    assert_attr_eq(h, pub, CKA_EC_PARAMS, m->ec_params.p, m->ec_params.n);
    assert_attr_eq(h, pub, CKA_EC_POINT, m->ec_point.p, m->ec_point.n);
    assert_attr_eq(h, priv, CKA_EC_PARAMS, m->ec_params.p, m->ec_params.n);
    assert_rv(F->C_GetAttributeValue(h, priv, &a, 1), CKR_ATTRIBUTE_SENSITIVE);
    assert_int_equal(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);

    /* A non-sensitive, extractable private key shows its value. */
    CK_OBJECT_CLASS privc = CKO_PRIVATE_KEY;
    CK_KEY_TYPE ec = CKK_EC;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &privc, sizeof(privc)},        {CKA_KEY_TYPE, &ec, sizeof(ec)},
        {CKA_PRIVATE, &yes, sizeof(yes)},          {CKA_SENSITIVE, &no, sizeof(no)},
        {CKA_EXTRACTABLE, &yes, sizeof(yes)},      {CKA_EC_PARAMS, m->ec_params.p, m->ec_params.n},
        {CKA_VALUE, m->ec_value.p, m->ec_value.n},
    };
    CK_OBJECT_HANDLE open;
    assert_ok(F->C_CreateObject(h, t, NA(t), &open));
    assert_attr_eq(h, open, CKA_VALUE, m->ec_value.p, m->ec_value.n);
    assert_ok(F->C_CloseSession(h));
}

static void
t_get_attribute_protocol(void **state)
{
    CK_SESSION_HANDLE h = conf_open(0);
    CK_OBJECT_HANDLE o;
    CK_OBJECT_CLASS cls = 0xffff;
    CK_BYTE lab[64], val[4];

    (void)state;
    assert_ok(conf_create_data(h, CK_FALSE, CK_FALSE, "attribute-protocol", &o));

    /* NULL pValue: lengths only. */
    CK_ATTRIBUTE q[] = {{CKA_LABEL, NULL, 0}, {CKA_CLASS, NULL, 0}};
    assert_ok(F->C_GetAttributeValue(h, o, q, NA(q)));
    assert_int_equal(q[0].ulValueLen, 18);
    assert_int_equal(q[1].ulValueLen, sizeof(CK_OBJECT_CLASS));

    /* Too small: CKR_BUFFER_TOO_SMALL, that entry unavailable, others filled. */
    CK_ATTRIBUTE s[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_VALUE, val, sizeof(val)}};
    assert_rv(F->C_GetAttributeValue(h, o, s, NA(s)), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(s[0].ulValueLen, sizeof(cls));
    assert_int_equal(cls, CKO_DATA);
    assert_int_equal(s[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);

    /* Invalid type among valid ones: the valid ones are still filled. */
    cls = 0xffff;
    memset(lab, 0, sizeof(lab));
    CK_ATTRIBUTE inv[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_MODULUS, lab + 32, 32}, /* not a data object attribute */
        {CKA_LABEL, lab, 32},
    };
    assert_rv(F->C_GetAttributeValue(h, o, inv, NA(inv)), CKR_ATTRIBUTE_TYPE_INVALID);
    assert_int_equal(inv[0].ulValueLen, sizeof(cls));
    assert_int_equal(cls, CKO_DATA);
    assert_int_equal(inv[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(inv[2].ulValueLen, 18);
    assert_memory_equal(lab, "attribute-protocol", 18);

    /* A vendor type nobody defines. */
    CK_ATTRIBUTE vend = {CKA_VENDOR_DEFINED | 0x7a7a7a, lab, sizeof(lab)};
    assert_rv(F->C_GetAttributeValue(h, o, &vend, 1), CKR_ATTRIBUTE_TYPE_INVALID);
    assert_int_equal(vend.ulValueLen, CK_UNAVAILABLE_INFORMATION);

    /* Bad arguments and handles. */
    assert_rv(F->C_GetAttributeValue(h, o, NULL, 1), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_GetAttributeValue(h, CK_INVALID_HANDLE, q, 1), CKR_OBJECT_HANDLE_INVALID);
    assert_rv(F->C_GetAttributeValue(CK_INVALID_HANDLE, o, q, 1), CKR_SESSION_HANDLE_INVALID);
    assert_ok(F->C_CloseSession(h));
}

static void
t_set_attribute(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_OBJECT_HANDLE o, frozen, key, pub, found;
    CK_OBJECT_CLASS cls = CKO_DATA, other = CKO_CERTIFICATE;
    CK_ATTRIBUTE lab = {CKA_LABEL, "renamed", 7};

    (void)state;
    conf_login_user(h);
    assert_ok(conf_create_data(h, CK_TRUE, CK_FALSE, "before", &o));
    assert_ok(F->C_SetAttributeValue(h, o, &lab, 1));
    assert_attr_eq(h, o, CKA_LABEL, "renamed", 7);
    assert_rv(F->C_SetAttributeValue(h, o, NULL, 1), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_SetAttributeValue(h, CK_INVALID_HANDLE, &lab, 1), CKR_OBJECT_HANDLE_INVALID);
    /* CKA_CLASS never changes. */
    CK_ATTRIBUTE cl = {CKA_CLASS, &other, sizeof(other)};
    assert_rv(F->C_SetAttributeValue(h, o, &cl, 1), CKR_ATTRIBUTE_READ_ONLY);

    /* CKA_MODIFIABLE FALSE: nothing changes. */
    CK_ATTRIBUTE tf[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_TOKEN, &no, sizeof(no)},
        {CKA_PRIVATE, &no, sizeof(no)}, {CKA_MODIFIABLE, &no, sizeof(no)},
        {CKA_LABEL, "frozen", 6},
    };
    assert_ok(F->C_CreateObject(h, tf, NA(tf), &frozen));
    assert_false(get_bool(h, frozen, CKA_MODIFIABLE));
    assert_rv(F->C_SetAttributeValue(h, frozen, &lab, 1), CKR_ACTION_PROHIBITED);
    assert_attr_eq(h, frozen, CKA_LABEL, "frozen", 6);

    /* CKA_SENSITIVE may go FALSE->TRUE only; CKA_EXTRACTABLE TRUE->FALSE only. */
    assert_ok(create_ec(h, CK_FALSE, &pub, &key));
    CK_ATTRIBUTE unsens = {CKA_SENSITIVE, &no, sizeof(no)};
    assert_rv(F->C_SetAttributeValue(h, key, &unsens, 1), CKR_ATTRIBUTE_READ_ONLY);
    assert_true(get_bool(h, key, CKA_SENSITIVE));
    const struct conf_material *m = conf_material();
    CK_OBJECT_CLASS privc = CKO_PRIVATE_KEY;
    CK_KEY_TYPE ec = CKK_EC;
    CK_ATTRIBUTE tx[] = {
        {CKA_CLASS, &privc, sizeof(privc)},        {CKA_KEY_TYPE, &ec, sizeof(ec)},
        {CKA_PRIVATE, &yes, sizeof(yes)},          {CKA_SENSITIVE, &no, sizeof(no)},
        {CKA_EXTRACTABLE, &yes, sizeof(yes)},      {CKA_EC_PARAMS, m->ec_params.p, m->ec_params.n},
        {CKA_VALUE, m->ec_value.p, m->ec_value.n},
    };
    CK_OBJECT_HANDLE xkey;
    assert_ok(F->C_CreateObject(h, tx, NA(tx), &xkey));
    CK_ATTRIBUTE sens = {CKA_SENSITIVE, &yes, sizeof(yes)};
    assert_ok(F->C_SetAttributeValue(h, xkey, &sens, 1));
    assert_true(get_bool(h, xkey, CKA_SENSITIVE));
    assert_rv(F->C_SetAttributeValue(h, xkey, &unsens, 1), CKR_ATTRIBUTE_READ_ONLY);
    CK_ATTRIBUTE extr = {CKA_EXTRACTABLE, &no, sizeof(no)};
    assert_ok(F->C_SetAttributeValue(h, xkey, &extr, 1));
    assert_false(get_bool(h, xkey, CKA_EXTRACTABLE));
    CK_ATTRIBUTE reextr = {CKA_EXTRACTABLE, &yes, sizeof(yes)};
    assert_rv(F->C_SetAttributeValue(h, xkey, &reextr, 1), CKR_ATTRIBUTE_READ_ONLY);

    /* The changed label persists. */
    assert_ok(F->C_CloseSession(h));
    conf_reinit();
    E.slot = conf_slot_by_label(CONF_LABEL);
    h = conf_open(0);
    assert_int_equal(conf_find_label(h, "renamed", &found), 1);
    assert_int_equal(conf_find_label(h, "before", NULL), 0);

    /* Writing a token object needs R/W; on evertoken also a login. (Handles
     * are used only while a session that found them is open: SoftHSMv2
     * renumbers token objects once all sessions closed, which the standard
     * allows.) */
    assert_rv(F->C_SetAttributeValue(h, found, &lab, 1), CKR_SESSION_READ_ONLY);
    CK_SESSION_HANDLE h_ro = h;
    h = conf_open(CKF_RW_SESSION);
    assert_ok(F->C_CloseSession(h_ro));
    CK_ATTRIBUTE lab2 = {CKA_LABEL, "public-rename", 13};
    if (is_evertoken())
        /* Deliberate deviation: token-object writes need a login. */
        assert_rv(F->C_SetAttributeValue(h, found, &lab2, 1), CKR_USER_NOT_LOGGED_IN);
    else
        assert_ok(F->C_SetAttributeValue(h, found, &lab2, 1));
    assert_ok(F->C_CloseSession(h));
}

static void
t_copy_object(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_OBJECT_HANDLE o, c, tc, nc;
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE lab = {CKA_LABEL, "copy", 4};
    CK_ATTRIBUTE tok[] = {{CKA_TOKEN, &yes, sizeof(yes)}, {CKA_LABEL, "token-copy", 10}};

    (void)state;
    assert_ok(conf_create_data(h, CK_FALSE, CK_FALSE, "original", &o));
    assert_ok(F->C_CopyObject(h, o, &lab, 1, &c));
    assert_true(c != o);
    assert_attr_eq(h, c, CKA_LABEL, "copy", 4);
    assert_attr_eq(h, c, CKA_VALUE, "original", 8);
    assert_attr_eq(h, o, CKA_LABEL, "original", 8);
    if (is_evertoken()) {
        /* A data object's copy may carry a new value and application; the
         * original keeps its own. (SoftHSMv2 2.6: CKR_ATTRIBUTE_READ_ONLY.) */
        CK_OBJECT_HANDLE v;
        CK_ATTRIBUTE newval[] = {{CKA_VALUE, "changed value", 13}, {CKA_APPLICATION, "other", 5}};
        assert_ok(F->C_CopyObject(h, o, newval, NA(newval), &v));
        assert_attr_eq(h, v, CKA_VALUE, "changed value", 13);
        assert_attr_eq(h, v, CKA_APPLICATION, "other", 5);
        assert_attr_eq(h, o, CKA_VALUE, "original", 8);
    }
    assert_rv(F->C_CopyObject(h, CK_INVALID_HANDLE, &lab, 1, &c), CKR_OBJECT_HANDLE_INVALID);
    assert_rv(F->C_CopyObject(h, o, &lab, 1, NULL), CKR_ARGUMENTS_BAD);

    /* Session object copied to a token object. */
    if (is_evertoken())
        /* Deliberate deviation: token-object writes need a login. */
        assert_rv(F->C_CopyObject(h, o, tok, NA(tok), &tc), CKR_USER_NOT_LOGGED_IN);
    conf_login_user(h);
    assert_ok(F->C_CopyObject(h, o, tok, NA(tok), &tc));
    assert_true(get_bool(h, tc, CKA_TOKEN));
    assert_attr_eq(h, tc, CKA_VALUE, "original", 8);
    CK_SESSION_HANDLE ro = conf_open(0);
    CK_ATTRIBUTE ro_tok = {CKA_TOKEN, &yes, sizeof(yes)};
    assert_rv(F->C_CopyObject(ro, o, &ro_tok, 1, &tc), CKR_SESSION_READ_ONLY);
    assert_ok(F->C_CloseSession(ro));

    /* CKA_COPYABLE FALSE. */
    CK_ATTRIBUTE tn[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &no, sizeof(no)},
        {CKA_PRIVATE, &no, sizeof(no)},
        {CKA_COPYABLE, &no, sizeof(no)},
    };
    assert_ok(F->C_CreateObject(h, tn, NA(tn), &nc));
    assert_rv(F->C_CopyObject(h, nc, &lab, 1, &c), CKR_ACTION_PROHIBITED);
    assert_ok(F->C_CloseSession(h));
}

static void
t_destroy_object(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION), ro;
    CK_OBJECT_HANDLE o, t, keep;
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};

    (void)state;
    assert_rv(F->C_DestroyObject(h, CK_INVALID_HANDLE), CKR_OBJECT_HANDLE_INVALID);
    assert_rv(F->C_DestroyObject(CK_INVALID_HANDLE, 1), CKR_SESSION_HANDLE_INVALID);
    assert_ok(conf_create_data(h, CK_FALSE, CK_FALSE, "gone", &o));
    assert_ok(F->C_DestroyObject(h, o));
    assert_rv(F->C_GetAttributeValue(h, o, &a, 1), CKR_OBJECT_HANDLE_INVALID);
    assert_rv(F->C_DestroyObject(h, o), CKR_OBJECT_HANDLE_INVALID);

    /* CKA_DESTROYABLE FALSE (3.0; SoftHSMv2 supports it too). */
    CK_ATTRIBUTE tk[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &no, sizeof(no)},
        {CKA_PRIVATE, &no, sizeof(no)},
        {CKA_DESTROYABLE, &no, sizeof(no)},
    };
    assert_ok(F->C_CreateObject(h, tk, NA(tk), &keep));
    assert_rv(F->C_DestroyObject(h, keep), CKR_ACTION_PROHIBITED);
    assert_ok(F->C_GetAttributeValue(h, keep, &a, 1));

    /* Token object: R/O session refused; destroyed for good. */
    conf_login_user(h);
    assert_ok(conf_create_data(h, CK_TRUE, CK_TRUE, "token-gone", &t));
    ro = conf_open(0);
    assert_rv(F->C_DestroyObject(ro, t), CKR_SESSION_READ_ONLY);
    assert_ok(F->C_CloseSession(ro));
    assert_ok(F->C_DestroyObject(h, t));
    assert_ok(F->C_CloseSession(h));
    conf_reinit();
    E.slot = conf_slot_by_label(CONF_LABEL);
    h = conf_open(0);
    conf_login_user(h);
    assert_int_equal(conf_find_label(h, "token-gone", NULL), 0);
    assert_ok(F->C_CloseSession(h));
}

static void
t_find_objects(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_OBJECT_HANDLE objs[6], all[64], one[64], got[8], cert;
    CK_ULONG n_all, n_one, n;
    CK_OBJECT_CLASS data = CKO_DATA, certc = CKO_CERTIFICATE, trust = CONF_CKO_NSS_TRUST;
    CK_ATTRIBUTE by_class = {CKA_CLASS, &data, sizeof(data)};
    CK_ATTRIBUTE by_trust = {CKA_CLASS, &trust, sizeof(trust)};
    char label[16];

    (void)state;
    /* NULL arguments; find not initialised. */
    assert_rv(F->C_FindObjectsInit(h, NULL, 1), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_FindObjects(h, all, 1, &n), CKR_OPERATION_NOT_INITIALIZED);
    assert_rv(F->C_FindObjectsFinal(h), CKR_OPERATION_NOT_INITIALIZED);
    assert_rv(F->C_FindObjectsInit(CK_INVALID_HANDLE, NULL, 0), CKR_SESSION_HANDLE_INVALID);

    assert_ok(F->C_FindObjectsInit(h, NULL, 0));
    assert_rv(F->C_FindObjectsInit(h, NULL, 0), CKR_OPERATION_ACTIVE);
    assert_rv(F->C_FindObjects(h, NULL, 1, &n), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_FindObjects(h, all, 1, NULL), CKR_ARGUMENTS_BAD);
    assert_ok(F->C_FindObjectsFinal(h));
    assert_rv(F->C_FindObjectsFinal(h), CKR_OPERATION_NOT_INITIALIZED);

    /* What is visible before we add anything. */
    n = conf_find(h, NULL, 0, NULL, 0, 16);
    if (is_evertoken())
        assert_int_equal(n, 1); /* the CKO_PROFILE object */
    else
        assert_int_equal(n, 0);

    conf_login_user(h);
    for (int i = 0; i < 6; i++) {
        snprintf(label, sizeof(label), "find-%d", i);
        /* Alternate token/session and public/private. */
        assert_ok(conf_create_data(h, i % 2 == 0, i % 3 == 0, label, &objs[i]));
    }
    /* Data objects have no CKA_ID; the certificate carries one. */
    assert_ok(create_cert(h, CK_TRUE, &cert));

    /* Empty template: everything visible; chunks of 1 give the same set. */
    n_all = conf_find(h, NULL, 0, all, NA(all), 64);
    n_one = conf_find(h, NULL, 0, one, NA(one), 1);
    assert_int_equal(n_all, n + 7);
    assert_int_equal(n_one, n_all);
    for (int i = 0; i < 6; i++)
        assert_true(handle_in(objs[i], all, n_all));
    for (CK_ULONG i = 0; i < n_one; i++) {
        assert_true(handle_in(one[i], all, n_all));
        for (CK_ULONG j = 0; j < i; j++)
            assert_true(one[i] != one[j]);
    }

    /* By class, by label, by CKA_ID, combined. */
    assert_int_equal(conf_find(h, &by_class, 1, got, NA(got), 3), 6);
    CK_ATTRIBUTE by_cert = {CKA_CLASS, &certc, sizeof(certc)};
    assert_int_equal(conf_find(h, &by_cert, 1, got, NA(got), 3), 1);
    assert_int_equal(got[0], cert);
    assert_int_equal(conf_find_label(h, "find-4", got), 1);
    assert_int_equal(got[0], objs[4]);
    CK_ATTRIBUTE by_id = {CKA_ID, "\x01\x02", 2};
    assert_int_equal(conf_find(h, &by_id, 1, got, NA(got), 3), 1);
    assert_int_equal(got[0], cert);
    CK_ATTRIBUTE no_id = {CKA_ID, "\x01\x03", 2};
    assert_int_equal(conf_find(h, &no_id, 1, got, NA(got), 3), 0);
    CK_ATTRIBUTE tok_priv[] = {{CKA_TOKEN, &yes, sizeof(yes)},
                               {CKA_PRIVATE, &yes, sizeof(yes)},
                               {CKA_CLASS, &data, sizeof(data)}};
    assert_int_equal(conf_find(h, tok_priv, NA(tok_priv), got, NA(got), 3), 1); /* find-0 */
    assert_int_equal(got[0], objs[0]);

    /* Classes other modules define find nothing. */
    assert_int_equal(conf_find(h, &by_trust, 1, NULL, 0, 8), 0);

    /* Logged out: private ones drop out (0 and 3). */
    assert_ok(F->C_Logout(h));
    assert_int_equal(conf_find(h, &by_class, 1, got, NA(got), 8), 4);
    assert_false(handle_in(objs[0], got, 4));
    assert_false(handle_in(objs[3], got, 4));
    assert_ok(F->C_CloseSession(h));
}

/* Finds by CKA_LABEL and CKA_ID (evertoken answers them from an index of
 * its stored objects): the index follows creation, attribute changes,
 * destruction, duplicates and a reload after C_Finalize. */
/* Every object labelled LABEL (up to 64) into OUT. */
static CK_ULONG
find_lab(CK_SESSION_HANDLE h, const char *label, CK_OBJECT_HANDLE *out)
{
    CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};

    return conf_find(h, &t, 1, out, 64, 3);
}

static void
t_find_indexed(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_OBJECT_HANDLE objs[40], got[64], cert, cert2;
    CK_OBJECT_CLASS data = CKO_DATA;
    char label[16];

    (void)state;
    conf_login_user(h);
    for (int i = 0; i < 40; i++) {
        snprintf(label, sizeof(label), "ix-%d", i % 20); /* each label twice */
        assert_ok(conf_create_data(h, i % 4 != 3, i % 5 == 0, label, &objs[i]));
    }
    for (int i = 0; i < 20; i++) {
        snprintf(label, sizeof(label), "ix-%d", i);
        assert_int_equal(find_lab(h, label, got), 2);
        assert_true(handle_in(objs[i], got, 2));
        assert_true(handle_in(objs[i + 20], got, 2));
    }
    assert_int_equal(find_lab(h, "ix-", got), 0);
    assert_int_equal(find_lab(h, "ix-20", got), 0);
    /* With another attribute: the full template still applies. */
    CK_ATTRIBUTE lab_priv[] = {{CKA_LABEL, "ix-0", 4}, {CKA_PRIVATE, &yes, sizeof(yes)}};
    assert_int_equal(conf_find(h, lab_priv, NA(lab_priv), got, NA(got), 8), 2); /* 0 and 20 */
    CK_ATTRIBUTE lab_cls[] = {{CKA_CLASS, &data, sizeof(data)}, {CKA_LABEL, "ix-1", 4}};
    assert_int_equal(conf_find(h, lab_cls, NA(lab_cls), got, NA(got), 8), 2);

    /* A new label: found under it, no longer under the old one. */
    CK_ATTRIBUTE relabel = {CKA_LABEL, "ix-renamed", 10};
    assert_ok(F->C_SetAttributeValue(h, objs[2], &relabel, 1));
    assert_int_equal(find_lab(h, "ix-2", got), 1);
    assert_int_equal(got[0], objs[22]);
    assert_int_equal(find_lab(h, "ix-renamed", got), 1);
    assert_int_equal(got[0], objs[2]);
    /* Destroyed: gone from the answers. */
    assert_ok(F->C_DestroyObject(h, objs[22]));
    assert_int_equal(find_lab(h, "ix-2", got), 0);

    /* CKA_ID: two certificates share one, then one of them changes it. */
    assert_ok(create_cert(h, CK_TRUE, &cert));
    assert_ok(create_cert(h, CK_TRUE, &cert2));
    CK_ATTRIBUTE by_id = {CKA_ID, "\x01\x02", 2};
    assert_int_equal(conf_find(h, &by_id, 1, got, NA(got), 1), 2);
    assert_true(handle_in(cert, got, 2) && handle_in(cert2, got, 2));
    CK_ATTRIBUTE new_id = {CKA_ID, "\x07\x07\x07", 3};
    assert_ok(F->C_SetAttributeValue(h, cert2, &new_id, 1));
    assert_int_equal(conf_find(h, &by_id, 1, got, NA(got), 8), 1);
    assert_int_equal(got[0], cert);
    assert_int_equal(conf_find(h, &new_id, 1, got, NA(got), 8), 1);
    assert_int_equal(got[0], cert2);
    CK_ATTRIBUTE empty_id = {CKA_ID, "", 0};
    assert_int_equal(conf_find(h, &empty_id, 1, got, NA(got), 8), 0);

    /* After a reload from the file: the same answers for the token objects
     * (SoftHSMv2 numbers slots and handles anew). */
    conf_reinit();
    E.slot = conf_slot_by_label(CONF_LABEL);
    h = conf_open(CKF_RW_SESSION);
    conf_login_user(h);
    assert_int_equal(find_lab(h, "ix-renamed", got), 1);
    assert_attr_eq(h, got[0], CKA_VALUE, "ix-2", 4); /* created as ix-2 */
    assert_int_equal(find_lab(h, "ix-1", got), 2);
    assert_int_equal(find_lab(h, "ix-3", got), 0); /* objs[3] and [23]: session objects */
    assert_int_equal(find_lab(h, "ix-2", got), 0);
    assert_int_equal(conf_find(h, &new_id, 1, got, NA(got), 8), 1);
    assert_int_equal(conf_find(h, &by_id, 1, got, NA(got), 8), 1);
    /* Logged out: private ones drop out (objs[0] and [20] are private). */
    assert_ok(F->C_Logout(h));
    assert_int_equal(find_lab(h, "ix-0", got), 0);
    assert_int_equal(find_lab(h, "ix-1", got), 2);
    assert_ok(F->C_CloseSession(h));
}

static void
t_find_in_progress(void **state)
{
    CK_SESSION_HANDLE a = conf_open(0), b = conf_open(0);
    CK_OBJECT_HANDLE o[3], got[4];
    CK_ULONG n;

    (void)state;
    for (int i = 0; i < 3; i++)
        assert_ok(conf_create_data(a, CK_FALSE, CK_FALSE, "chunk", &o[i]));
    /* Finds in two sessions are independent. */
    CK_ATTRIBUTE t = {CKA_LABEL, "chunk", 5};
    assert_ok(F->C_FindObjectsInit(a, &t, 1));
    assert_ok(F->C_FindObjectsInit(b, &t, 1));
    assert_ok(F->C_FindObjects(a, got, 1, &n));
    assert_int_equal(n, 1);
    assert_ok(F->C_FindObjects(b, got, 4, &n));
    assert_int_equal(n, 3);
    assert_ok(F->C_FindObjectsFinal(b));
    assert_ok(F->C_FindObjects(a, got, 4, &n));
    assert_int_equal(n, 2);
    assert_ok(F->C_FindObjects(a, got, 4, &n));
    assert_int_equal(n, 0);
    assert_ok(F->C_FindObjectsFinal(a));

    /* 3.0: C_SessionCancel(CKF_FIND_OBJECTS) ends a find. */
    if (conf_get_interface != NULL) {
        CK_INTERFACE *iface = NULL;
        CK_VERSION v30 = {3, 0};
        assert_ok(conf_get_interface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &iface, 0));
        CK_FUNCTION_LIST_3_0 *f3 = iface->pFunctionList;
        assert_ok(F->C_FindObjectsInit(a, &t, 1));
        assert_ok(f3->C_SessionCancel(a, CKF_FIND_OBJECTS));
        assert_rv(F->C_FindObjects(a, got, 4, &n), CKR_OPERATION_NOT_INITIALIZED);
    }
}

static void
t_object_size(void **state)
{
    CK_SESSION_HANDLE h = conf_open(0);
    CK_OBJECT_HANDLE small, big;
    CK_ULONG s1 = 0, s2 = 0;
    char biglabel[600];

    (void)state;
    memset(biglabel, 'x', sizeof(biglabel) - 1);
    biglabel[sizeof(biglabel) - 1] = '\0';
    assert_ok(conf_create_data(h, CK_FALSE, CK_FALSE, "s", &small));
    assert_ok(conf_create_data(h, CK_FALSE, CK_FALSE, biglabel, &big));
    assert_ok(F->C_GetObjectSize(h, small, &s1));
    assert_ok(F->C_GetObjectSize(h, big, &s2));
    /* 2.40 section 5.7: a size, or CK_UNAVAILABLE_INFORMATION (SoftHSMv2). */
    assert_true(s1 > 0);
    if (is_evertoken()) {
        assert_true(s1 != CK_UNAVAILABLE_INFORMATION);
        assert_true(s2 > s1);
    }
    assert_rv(F->C_GetObjectSize(h, small, NULL), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_GetObjectSize(h, CK_INVALID_HANDLE, &s1), CKR_OBJECT_HANDLE_INVALID);
    assert_rv(F->C_GetObjectSize(CK_INVALID_HANDLE, small, &s1), CKR_SESSION_HANDLE_INVALID);
    assert_ok(F->C_CloseSession(h));
}

static void
t_profile_object(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_OBJECT_CLASS pc = CKO_PROFILE;
    CK_ATTRIBUTE by_class = {CKA_CLASS, &pc, sizeof(pc)};
    CK_OBJECT_HANDLE p[4], c;
    CK_ULONG id = 0;
    CK_ULONG n = conf_find(h, &by_class, 1, p, NA(p), 4);

    (void)state;
    if (!is_evertoken()) {
        /* Optional in the standard; SoftHSMv2 2.6 has none. */
        assert_ok(F->C_CloseSession(h));
        skip();
    }
    /* evertoken: one public profile object announcing a certificates token
     * (so NSS lists certificates without the PIN). */
    assert_int_equal(n, 1);
    assert_int_equal(get_attr(h, p[0], CKA_PROFILE_ID, &id, sizeof(id)), sizeof(id));
    assert_int_equal(id, CKP_PUBLIC_CERTIFICATES_TOKEN);
    assert_true(get_bool(h, p[0], CKA_TOKEN));
    assert_false(get_bool(h, p[0], CKA_PRIVATE));
    conf_login_user(h);
    assert_rv(F->C_DestroyObject(h, p[0]), CKR_ACTION_PROHIBITED);
    CK_ATTRIBUTE lab = {CKA_LABEL, "x", 1};
    assert_rv(F->C_SetAttributeValue(h, p[0], &lab, 1), CKR_ACTION_PROHIBITED);
    assert_rv(F->C_CopyObject(h, p[0], NULL, 0, &c), CKR_ACTION_PROHIBITED);
    assert_ok(F->C_Logout(h));
    assert_int_equal(conf_find(h, &by_class, 1, NULL, 0, 4), 1);
    assert_ok(F->C_CloseSession(h));
}

static void
t_persistence(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_OBJECT_HANDLE tok, sess, priv, found;
    CK_OBJECT_CLASS cls;
    CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};
    CK_OBJECT_HANDLE pub, key;

    (void)state;
    conf_login_user(h);
    assert_ok(conf_create_data(h, CK_TRUE, CK_FALSE, "keeps", &tok));
    assert_ok(conf_create_data(h, CK_TRUE, CK_TRUE, "keeps-private", &priv));
    assert_ok(conf_create_data(h, CK_FALSE, CK_FALSE, "fades", &sess));
    assert_ok(create_rsa(h, CK_TRUE, &pub, &key));
    conf_reinit();
    E.slot = conf_slot_by_label(CONF_LABEL);
    h = conf_open(0);
    assert_int_equal(conf_find_label(h, "keeps", &found), 1);
    assert_attr_eq(h, found, CKA_VALUE, "keeps", 5);
    assert_int_equal(conf_find_label(h, "fades", NULL), 0);
    assert_int_equal(conf_find_label(h, "keeps-private", NULL), 0);
    assert_rv(F->C_GetAttributeValue(h, sess, &a, 1), CKR_OBJECT_HANDLE_INVALID);
    conf_login_user(h);
    assert_int_equal(conf_find_label(h, "keeps-private", &found), 1);
    assert_attr_eq(h, found, CKA_VALUE, "keeps-private", 13);
    /* The RSA private key survives, still sensitive, modulus intact. */
    CK_OBJECT_CLASS pk = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE q = {CKA_CLASS, &pk, sizeof(pk)};
    assert_int_equal(conf_find(h, &q, 1, &found, 1, 4), 1);
    assert_attr_eq(h, found, CKA_MODULUS, conf_material()->rsa_n.p, conf_material()->rsa_n.n);
    assert_true(get_bool(h, found, CKA_SENSITIVE));
    assert_ok(F->C_CloseSession(h));
}

static void
t_random(void **state)
{
    CK_SESSION_HANDLE h = conf_open(0);
    CK_BYTE a[32], b[32], zero[32];

    (void)state;
    memset(zero, 0, sizeof(zero));
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    assert_rv(F->C_GenerateRandom(h, NULL, 16), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_GenerateRandom(CK_INVALID_HANDLE, a, sizeof(a)), CKR_SESSION_HANDLE_INVALID);
    assert_ok(F->C_GenerateRandom(h, a, 0));
    assert_memory_equal(a, zero, sizeof(a));
    assert_ok(F->C_GenerateRandom(h, a, sizeof(a)));
    assert_ok(F->C_GenerateRandom(h, b, sizeof(b)));
    assert_memory_not_equal(a, zero, sizeof(a));
    assert_memory_not_equal(a, b, sizeof(a));

    assert_rv(F->C_SeedRandom(h, NULL, 4), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_SeedRandom(CK_INVALID_HANDLE, a, sizeof(a)), CKR_SESSION_HANDLE_INVALID);
    /* Seeding is optional (CKR_RANDOM_SEED_NOT_SUPPORTED); both modules mix it in. */
    assert_ok(F->C_SeedRandom(h, a, sizeof(a)));
    assert_ok(F->C_GenerateRandom(h, b, sizeof(b)));
    assert_memory_not_equal(a, b, sizeof(a));
    assert_ok(F->C_CloseSession(h));
}

struct conf_group
conf_object_tests(void)
{
    static const struct CMUnitTest tests[] = {
        CONF_TEST_TOKEN(t_create_data),
        CONF_TEST_TOKEN(t_create_token_rules),
        CONF_TEST_TOKEN(t_private_visibility),
        CONF_TEST_TOKEN(t_certificate),
        CONF_TEST_TOKEN(t_rsa_keys),
        CONF_TEST_TOKEN(t_ec_keys),
        CONF_TEST_TOKEN(t_get_attribute_protocol),
        CONF_TEST_TOKEN(t_set_attribute),
        CONF_TEST_TOKEN(t_copy_object),
        CONF_TEST_TOKEN(t_destroy_object),
        CONF_TEST_TOKEN(t_find_objects),
        CONF_TEST_TOKEN(t_find_indexed),
        CONF_TEST_TOKEN(t_find_in_progress),
        CONF_TEST_TOKEN(t_object_size),
        CONF_TEST_TOKEN(t_profile_object),
        CONF_TEST_TOKEN(t_persistence),
        CONF_TEST_TOKEN(t_random),
    };
    struct conf_group g = {"object", tests, sizeof(tests) / sizeof(tests[0])};
    return g;
}
