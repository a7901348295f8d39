/*
 * test_mod_object.c — the object layer (module/object.h): generic template
 * rules, C_GetAttributeValue's buffer protocol, C_SetAttributeValue /
 * C_CopyObject rules, matching, size, stored sets, the profile object, and
 * malformed input. Certificate and key import: test_mod_objimport.c;
 * attribute arrays: test_mod_tmpl.c.
 */
#include "test_mod_obj_util.h"

/* ---- Generic template rules ------------------------------------------------ */

static void
test_template_check(void **state)
{
    CK_ATTRIBUTE bad[] = {ATTR(CKA_LABEL, NULL, 4)};
    CK_ATTRIBUTE ok[] = {ATTR(CKA_LABEL, NULL, 0)};
    mod_attrs *o = NULL;

    (void)state;
    assert_int_equal(obj_template_check(NULL, 1), CKR_ARGUMENTS_BAD);
    assert_int_equal(obj_template_check(NULL, 0), CKR_OK);
    assert_int_equal(obj_template_check(bad, 1), CKR_ARGUMENTS_BAD);
    assert_int_equal(obj_template_check(ok, 1), CKR_OK);
    assert_int_equal(create(bad, 1, &o), CKR_ARGUMENTS_BAD);
    assert_null(o);
}

static void
test_data_minimal(void **state)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls)};
    mod_attrs *o = NULL;

    (void)state;
    assert_int_equal(create(t, NA(t), &o), CKR_OK);
    assert_sorted(o);
    assert_ulong_attr(o, CKA_CLASS, CKO_DATA);
    assert_bool_attr(o, CKA_TOKEN, CK_FALSE);
    assert_bool_attr(o, CKA_PRIVATE, CK_FALSE);
    assert_bool_attr(o, CKA_MODIFIABLE, CK_TRUE);
    assert_bool_attr(o, CKA_COPYABLE, CK_TRUE);
    assert_bool_attr(o, CKA_DESTROYABLE, CK_TRUE);
    assert_attr(o, CKA_LABEL, "", 0);
    assert_attr(o, CKA_APPLICATION, "", 0);
    assert_attr(o, CKA_OBJECT_ID, "", 0);
    assert_attr(o, CKA_VALUE, "", 0);
    assert_null(obj_find(o, CKA_KEY_TYPE));
    assert_int_equal(o->secure, 0);
    obj_free(o);
}

static void
test_data_full(void **state)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    buf oid = der_oid(NID_commonName);
    CK_BBOOL two = 2; /* any non-zero byte is TRUE; stored as CK_TRUE */
    CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls),
                        AVAR(CKA_TOKEN, two),
                        AVAR(CKA_PRIVATE, T),
                        ATTR(CKA_LABEL, "my data", 7),
                        ATTR(CKA_APPLICATION, "app", 3),
                        ABUF(CKA_OBJECT_ID, oid),
                        ATTR(CKA_VALUE, "\x00\x01\x02", 3)};
    mod_attrs *o = NULL;

    (void)state;
    assert_int_equal(create(t, NA(t), &o), CKR_OK);
    assert_bool_attr(o, CKA_TOKEN, CK_TRUE);
    assert_bool_attr(o, CKA_PRIVATE, CK_TRUE);
    assert_attr(o, CKA_LABEL, "my data", 7);
    assert_attr(o, CKA_APPLICATION, "app", 3);
    assert_attr(o, CKA_OBJECT_ID, oid.p, oid.n);
    assert_attr(o, CKA_VALUE, "\x00\x01\x02", 3);
    assert_int_equal(o->secure, 1); /* private objects live in locked memory */
    obj_free(o);
    buf_free(&oid);
}

static void
test_class_errors(void **state)
{
    CK_OBJECT_CLASS data = CKO_DATA, bogus = 0x4242, prof = CKO_PROFILE, hw = CKO_HW_FEATURE;
    CK_ATTRIBUTE none[] = {ATTR(CKA_LABEL, "x", 1)};
    CK_ATTRIBUTE t1[] = {AVAR(CKA_CLASS, bogus)};
    CK_ATTRIBUTE t2[] = {AVAR(CKA_CLASS, prof)};
    CK_ATTRIBUTE t3[] = {AVAR(CKA_CLASS, hw)};
    CK_ATTRIBUTE badoid[] = {AVAR(CKA_CLASS, data), ATTR(CKA_OBJECT_ID, "\x06\x05\x01", 3)};
    mod_attrs *o = NULL;

    (void)state;
    assert_int_equal(create(none, NA(none), &o), CKR_TEMPLATE_INCOMPLETE);
    assert_int_equal(create(t1, NA(t1), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(create(t2, NA(t2), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(create(t3, NA(t3), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(create(badoid, NA(badoid), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_null(o);
}

static void
test_wrong_sizes(void **state)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    uint32_t short_class = CKO_DATA;
    CK_BBOOL two[2] = {1, 0};
    CK_ATTRIBUTE t1[] = {ATTR(CKA_CLASS, &short_class, sizeof(short_class))};
    CK_ATTRIBUTE t2[] = {AVAR(CKA_CLASS, cls), ATTR(CKA_TOKEN, two, 2)};
    CK_ATTRIBUTE t3[] = {AVAR(CKA_CLASS, cls), ATTR(CKA_PRIVATE, NULL, 0)};
    mod_attrs *o = NULL;

    (void)state;
    assert_int_equal(create(t1, NA(t1), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(create(t2, NA(t2), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(create(t3, NA(t3), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_null(o);
}

static void
test_bad_dates(void **state)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    const char *bad[] = {"2025010", "2025130a", "20251301", "20250100", "18991231"};
    size_t i;
    mod_attrs *o = NULL;

    (void)state;
    for (i = 0; i < NA(bad); i++) {
        CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ATTR(CKA_VALUE, "k", 1),
                            ATTR(CKA_START_DATE, bad[i], strlen(bad[i]))};
        assert_int_equal(create(t, NA(t), &o), CKR_ATTRIBUTE_VALUE_INVALID);
    }
    {
        CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ATTR(CKA_VALUE, "k", 1),
                            ATTR(CKA_START_DATE, "20240229", 8), ATTR(CKA_END_DATE, "", 0)};
        assert_int_equal(create(t, NA(t), &o), CKR_OK);
        assert_attr(o, CKA_START_DATE, "20240229", 8);
        obj_free(o);
    }
}

static void
test_type_invalid_and_inconsistent(void **state)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ULONG one = 1;
    CK_ATTRIBUTE vendor[] = {AVAR(CKA_CLASS, cls), ATTR(CKA_VENDOR_DEFINED | 0x77, "x", 1)};
    CK_ATTRIBUTE wrapt[] = {AVAR(CKA_CLASS, cls), ATTR(CKA_WRAP_TEMPLATE, NULL, 0)};
    CK_ATTRIBUTE modulus[] = {AVAR(CKA_CLASS, cls), ATTR(CKA_MODULUS, "\x01", 1)};
    CK_ATTRIBUTE prime[] = {AVAR(CKA_CLASS, cls), ATTR(CKA_PRIME, "\x01", 1)};
    CK_ATTRIBUTE sign[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_SIGN, T)};
    CK_ATTRIBUTE cat[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_CATEGORY, one)};
    mod_attrs *o = NULL;

    (void)state;
    assert_int_equal(create(vendor, NA(vendor), &o), CKR_ATTRIBUTE_TYPE_INVALID);
    /* A data object has no wrap template. */
    assert_int_equal(create(wrapt, NA(wrapt), &o), CKR_TEMPLATE_INCONSISTENT);
    /* Attributes of the standard that this class does not have: 2.40
     * section 4.1.1, an inconsistent template. */
    assert_int_equal(create(modulus, NA(modulus), &o), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(create(prime, NA(prime), &o), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(create(sign, NA(sign), &o), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(create(cat, NA(cat), &o), CKR_TEMPLATE_INCONSISTENT);
    assert_null(o);
}

static void
test_duplicates(void **state)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE same[] = {AVAR(CKA_CLASS, cls), ATTR(CKA_LABEL, "a", 1), ATTR(CKA_LABEL, "a", 1),
                           AVAR(CKA_TOKEN, F), AVAR(CKA_TOKEN, F)};
    CK_ATTRIBUTE diff[] = {AVAR(CKA_CLASS, cls), ATTR(CKA_LABEL, "a", 1), ATTR(CKA_LABEL, "b", 1)};
    CK_ATTRIBUTE diffb[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_TOKEN, F), AVAR(CKA_TOKEN, T)};
    mod_attrs *o = NULL;

    (void)state;
    assert_int_equal(create(same, NA(same), &o), CKR_OK);
    assert_attr(o, CKA_LABEL, "a", 1);
    obj_free(o);
    o = NULL;
    assert_int_equal(create(diff, NA(diff), &o), CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(create(diffb, NA(diffb), &o), CKR_TEMPLATE_INCONSISTENT);
    assert_null(o);
}

static void
test_read_only_on_create(void **state)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_MECHANISM_TYPE mech = CKM_AES_KEY_GEN;
    unsigned char key[16] = {0};
    CK_ATTRIBUTE local[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), AVAR(CKA_VALUE, key),
                            AVAR(CKA_LOCAL, F)};
    CK_ATTRIBUTE as[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), AVAR(CKA_VALUE, key),
                         AVAR(CKA_ALWAYS_SENSITIVE, T)};
    CK_ATTRIBUTE ne[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), AVAR(CKA_VALUE, key),
                         AVAR(CKA_NEVER_EXTRACTABLE, T)};
    CK_ATTRIBUTE kgm[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), AVAR(CKA_VALUE, key),
                          AVAR(CKA_KEY_GEN_MECHANISM, mech)};
    CK_ATTRIBUTE uid[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), AVAR(CKA_VALUE, key),
                          ATTR(0x4 /* CKA_UNIQUE_ID */, "1", 1)};
    mod_attrs *o = NULL;

    (void)state;
    assert_int_equal(create(local, NA(local), &o), CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(create(as, NA(as), &o), CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(create(ne, NA(ne), &o), CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(create(kgm, NA(kgm), &o), CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(create(uid, NA(uid), &o), CKR_ATTRIBUTE_READ_ONLY);
    assert_null(o);
}

/* ---- C_GetAttributeValue --------------------------------------------------- */

static mod_attrs *
aes_key(CK_BBOOL sensitive, CK_BBOOL extractable)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    static const unsigned char key[16] = "0123456789abcdef";
    CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls),
                        AVAR(CKA_KEY_TYPE, kt),
                        ATTR(CKA_VALUE, key, sizeof(key)),
                        ATTR(CKA_LABEL, "aes", 3),
                        AVAR(CKA_SENSITIVE, sensitive),
                        AVAR(CKA_EXTRACTABLE, extractable)};
    mod_attrs *o = NULL;

    assert_int_equal(create(t, NA(t), &o), CKR_OK);
    return o;
}

static void
test_get_buffer_protocol(void **state)
{
    mod_attrs *o = aes_key(CK_TRUE, CK_FALSE);
    char label[8];
    CK_ULONG vlen = 0;
    CK_ATTRIBUTE q[] = {ATTR(CKA_LABEL, NULL, 0), ATTR(CKA_VALUE_LEN, NULL, 0)};
    CK_ATTRIBUTE g[] = {ATTR(CKA_LABEL, label, sizeof(label)), AVAR(CKA_VALUE_LEN, vlen)};
    CK_ATTRIBUTE small[] = {ATTR(CKA_LABEL, label, 2)};
    CK_ATTRIBUTE exact[] = {ATTR(CKA_LABEL, label, 3)};

    (void)state;
    assert_int_equal(obj_get(o, q, NA(q)), CKR_OK);
    assert_int_equal(q[0].ulValueLen, 3);
    assert_int_equal(q[1].ulValueLen, sizeof(CK_ULONG));
    assert_int_equal(obj_get(o, g, NA(g)), CKR_OK);
    assert_int_equal(g[0].ulValueLen, 3);
    assert_memory_equal(label, "aes", 3);
    assert_int_equal(vlen, 16);
    assert_int_equal(obj_get(o, small, 1), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(small[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(obj_get(o, exact, 1), CKR_OK);
    assert_int_equal(exact[0].ulValueLen, 3);
    assert_int_equal(obj_get(o, NULL, 0), CKR_OK);
    assert_int_equal(obj_get(o, NULL, 1), CKR_ARGUMENTS_BAD);
    obj_free(o);
}

static void
test_get_sensitive_and_invalid(void **state)
{
    mod_attrs *o = aes_key(CK_TRUE, CK_FALSE);
    unsigned char val[32], cv[3];
    char label[8];
    CK_ATTRIBUTE t[] = {ATTR(CKA_VALUE, val, sizeof(val)),
                        ATTR(CKA_LABEL, label, sizeof(label)),
                        ATTR(CKA_VENDOR_DEFINED | 5, val, sizeof(val)),
                        ATTR(CKA_WRAP_TEMPLATE, val, sizeof(val)),
                        ATTR(CKA_CHECK_VALUE, cv, sizeof(cv)),
                        ATTR(CKA_MODULUS, val, sizeof(val))};
    CK_ATTRIBUTE q[] = {ATTR(CKA_VALUE, NULL, 0)};
    CK_ATTRIBUTE inv[] = {ATTR(CKA_LABEL, label, sizeof(label)), ATTR(CKA_MODULUS, NULL, 0)};
    CK_RV rv;

    (void)state;
    rv = obj_get(o, t, NA(t));
    /* Several codes apply; any of them may be returned (section 5.7). */
    assert_true(rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID);
    assert_int_equal(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(t[1].ulValueLen, 3);
    assert_memory_equal(label, "aes", 3);
    assert_int_equal(t[2].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(t[3].ulValueLen, 0); /* no wrap template: the empty array */
    assert_int_equal(t[4].ulValueLen, 3); /* the check value is public */
    assert_int_equal(t[5].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    /* Even the length of a sensitive value is withheld. */
    assert_int_equal(obj_get(o, q, 1), CKR_ATTRIBUTE_SENSITIVE);
    assert_int_equal(q[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(obj_get(o, inv, NA(inv)), CKR_ATTRIBUTE_TYPE_INVALID);
    assert_int_equal(inv[0].ulValueLen, 3);
    assert_int_equal(inv[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    obj_free(o);
}

static void
test_get_extractable(void **state)
{
    unsigned char val[16];
    CK_ATTRIBUTE t[] = {ATTR(CKA_VALUE, val, sizeof(val))};
    mod_attrs *o;

    (void)state;
    /* Readable only when not sensitive AND extractable. */
    o = aes_key(CK_FALSE, CK_TRUE);
    assert_int_equal(obj_get(o, t, 1), CKR_OK);
    assert_int_equal(t[0].ulValueLen, 16);
    assert_memory_equal(val, "0123456789abcdef", 16);
    obj_free(o);
    o = aes_key(CK_FALSE, CK_FALSE);
    t[0].ulValueLen = sizeof(val);
    assert_int_equal(obj_get(o, t, 1), CKR_ATTRIBUTE_SENSITIVE);
    obj_free(o);
    o = aes_key(CK_TRUE, CK_TRUE);
    t[0].ulValueLen = sizeof(val);
    assert_int_equal(obj_get(o, t, 1), CKR_ATTRIBUTE_SENSITIVE);
    obj_free(o);
}

static void
test_get_rsa_private_sensitive(void **state)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    struct rsa_parts r;
    mod_attrs *o = NULL;
    unsigned char b[600];
    CK_ATTRIBUTE_TYPE hidden[] = {CKA_PRIVATE_EXPONENT, CKA_PRIME_1,    CKA_PRIME_2,
                                  CKA_EXPONENT_1,       CKA_EXPONENT_2, CKA_COEFFICIENT};
    size_t i;

    (void)state;
    rsa_parts_get(fx.rsa, &r);
    {
        CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls),
                            AVAR(CKA_KEY_TYPE, kt),
                            ABUF(CKA_MODULUS, r.n),
                            ABUF(CKA_PUBLIC_EXPONENT, r.e),
                            ABUF(CKA_PRIVATE_EXPONENT, r.d),
                            ABUF(CKA_PRIME_1, r.p),
                            ABUF(CKA_PRIME_2, r.q),
                            ABUF(CKA_EXPONENT_1, r.dp),
                            ABUF(CKA_EXPONENT_2, r.dq),
                            ABUF(CKA_COEFFICIENT, r.qi)};
        assert_int_equal(create(t, NA(t), &o), CKR_OK);
    }
    for (i = 0; i < NA(hidden); i++) {
        CK_ATTRIBUTE g[] = {ATTR(hidden[i], b, sizeof(b))};
        assert_int_equal(obj_get(o, g, 1), CKR_ATTRIBUTE_SENSITIVE);
        assert_int_equal(g[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        /* and a search cannot probe them */
        assert_false(obj_match(o, (CK_ATTRIBUTE[]){ABUF(CKA_PRIVATE_EXPONENT, r.d)}, 1));
    }
    {
        CK_ATTRIBUTE g[] = {ATTR(CKA_MODULUS, b, sizeof(b))};
        assert_int_equal(obj_get(o, g, 1), CKR_OK);
        assert_int_equal(g[0].ulValueLen, r.n.n);
        assert_memory_equal(b, r.n.p, r.n.n);
    }
    obj_free(o);
    rsa_parts_free(&r);
}

/* ---- C_SetAttributeValue --------------------------------------------------- */

static void
expect_set(const mod_attrs *o, CK_ATTRIBUTE *t, CK_ULONG n, const obj_policy *p, CK_RV want)
{
    mod_attrs *out = (mod_attrs *)(uintptr_t)1;

    assert_int_equal(obj_set(o, t, n, p, &out), want);
    if (want == CKR_OK) {
        assert_non_null(out);
        assert_sorted(out);
        obj_free(out);
    } else {
        assert_null(out);
    }
}

static void
test_set_rules(void **state)
{
    mod_attrs *o = aes_key(CK_FALSE, CK_TRUE), *n = NULL;
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE label[] = {ATTR(CKA_LABEL, "renamed", 7), ATTR(CKA_ID, "\x05", 1),
                            AVAR(CKA_SIGN, F), ATTR(CKA_END_DATE, "20991231", 8)};
    /* A secret key's CKA_ENCRYPT/CKA_DECRYPT are fixed at creation (wrap
     * policy, docs/threat-model.md). */
    CK_ATTRIBUTE enc_off[] = {AVAR(CKA_ENCRYPT, F)};
    CK_ATTRIBUTE dec_same[] = {AVAR(CKA_DECRYPT, T)};
    CK_ATTRIBUTE sens_on[] = {AVAR(CKA_SENSITIVE, T)};
    CK_ATTRIBUTE ext_off[] = {AVAR(CKA_EXTRACTABLE, F)};
    CK_ATTRIBUTE ext_same[] = {AVAR(CKA_EXTRACTABLE, T)};
    CK_ATTRIBUTE wwt[] = {AVAR(CKA_WRAP_WITH_TRUSTED, T)};
    CK_ATTRIBUTE copy_off[] = {AVAR(CKA_COPYABLE, F)};
    CK_ATTRIBUTE dest_off[] = {AVAR(CKA_DESTROYABLE, F)};
    CK_ATTRIBUTE ro[][1] = {{AVAR(CKA_CLASS, cls)},
                            {AVAR(CKA_TOKEN, T)},
                            {AVAR(CKA_PRIVATE, F)},
                            {AVAR(CKA_MODIFIABLE, F)},
                            {ATTR(CKA_VALUE, "0123456789abcdef", 16)},
                            {AVAR(CKA_LOCAL, T)},
                            {AVAR(CKA_ALWAYS_SENSITIVE, F)},
                            {ATTR(CKA_CHECK_VALUE, "abc", 3)}};
    CK_ATTRIBUTE notmine[] = {ATTR(CKA_MODULUS, "\x01", 1)};
    CK_ATTRIBUTE unknown[] = {ATTR(CKA_VENDOR_DEFINED | 9, "\x01", 1)};
    CK_ATTRIBUTE badsize[] = {ATTR(CKA_SIGN, "\x01\x00", 2)};
    size_t i;

    (void)state;
    assert_int_equal(obj_set(o, label, NA(label), &user_pol, &n), CKR_OK);
    assert_attr(n, CKA_LABEL, "renamed", 7);
    assert_attr(n, CKA_ID, "\x05", 1);
    assert_bool_attr(n, CKA_SIGN, CK_FALSE);
    assert_attr(n, CKA_END_DATE, "20991231", 8);
    assert_int_equal(n->secure, 1);
    assert_attr(o, CKA_LABEL, "aes", 3); /* the current set is untouched */
    {
        mod_attrs *x = NULL;
        assert_int_equal(obj_set(o, enc_off, NA(enc_off), &user_pol, &x), CKR_ATTRIBUTE_READ_ONLY);
        assert_null(x);
        assert_int_equal(obj_set(o, dec_same, NA(dec_same), &user_pol, &x), CKR_OK);
        obj_free(x);
    }
    /* One-way attributes. */
    {
        mod_attrs *s = NULL, *e = NULL, *c = NULL, *d = NULL;
        CK_ATTRIBUTE sens_off[] = {AVAR(CKA_SENSITIVE, F)};
        CK_ATTRIBUTE ext_on[] = {AVAR(CKA_EXTRACTABLE, T)};
        CK_ATTRIBUTE wwt_off[] = {AVAR(CKA_WRAP_WITH_TRUSTED, F)};
        CK_ATTRIBUTE copy_on[] = {AVAR(CKA_COPYABLE, T)};
        CK_ATTRIBUTE dest_on[] = {AVAR(CKA_DESTROYABLE, T)};

        assert_int_equal(obj_set(n, sens_on, 1, &user_pol, &s), CKR_OK);
        assert_bool_attr(s, CKA_SENSITIVE, CK_TRUE);
        expect_set(s, sens_off, 1, &user_pol, CKR_ATTRIBUTE_READ_ONLY);
        expect_set(s, sens_on, 1, &user_pol, CKR_OK); /* no change is fine */
        assert_int_equal(obj_set(n, ext_off, 1, &user_pol, &e), CKR_OK);
        expect_set(e, ext_on, 1, &user_pol, CKR_ATTRIBUTE_READ_ONLY);
        expect_set(n, ext_same, 1, &user_pol, CKR_OK);
        expect_set(n, wwt, 1, &user_pol, CKR_OK);
        {
            mod_attrs *w = NULL;
            assert_int_equal(obj_set(n, wwt, 1, &user_pol, &w), CKR_OK);
            expect_set(w, wwt_off, 1, &user_pol, CKR_ATTRIBUTE_READ_ONLY);
            obj_free(w);
        }
        assert_int_equal(obj_set(n, copy_off, 1, &user_pol, &c), CKR_OK);
        expect_set(c, copy_on, 1, &user_pol, CKR_ATTRIBUTE_READ_ONLY);
        assert_int_equal(obj_set(n, dest_off, 1, &user_pol, &d), CKR_OK);
        expect_set(d, dest_on, 1, &user_pol, CKR_ATTRIBUTE_READ_ONLY);
        obj_free(s);
        obj_free(e);
        obj_free(c);
        obj_free(d);
    }
    for (i = 0; i < NA(ro); i++)
        expect_set(n, ro[i], 1, &user_pol, CKR_ATTRIBUTE_READ_ONLY);
    expect_set(n, notmine, 1, &user_pol, CKR_ATTRIBUTE_TYPE_INVALID);
    expect_set(n, unknown, 1, &user_pol, CKR_ATTRIBUTE_TYPE_INVALID);
    expect_set(n, badsize, 1, &user_pol, CKR_ATTRIBUTE_VALUE_INVALID);
    expect_set(n, NULL, 1, &user_pol, CKR_ARGUMENTS_BAD);
    obj_free(n);
    obj_free(o);
}

static void
test_set_atomic(void **state)
{
    mod_attrs *o = aes_key(CK_TRUE, CK_FALSE), *n = (mod_attrs *)(uintptr_t)1;
    CK_ATTRIBUTE t[] = {ATTR(CKA_LABEL, "new", 3), AVAR(CKA_SIGN, F), AVAR(CKA_SENSITIVE, F)};

    (void)state;
    assert_int_equal(obj_set(o, t, NA(t), &user_pol, &n), CKR_ATTRIBUTE_READ_ONLY);
    assert_null(n);
    assert_attr(o, CKA_LABEL, "aes", 3);
    assert_bool_attr(o, CKA_SIGN, CK_TRUE);
    assert_bool_attr(o, CKA_SENSITIVE, CK_TRUE);
    obj_free(o);
}

static void
test_set_not_modifiable_and_trusted(void **state)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_ULONG cat = 1;
    CK_ATTRIBUTE fixed[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct),
                            ABUF(CKA_VALUE, fx.cert), AVAR(CKA_MODIFIABLE, F)};
    CK_ATTRIBUTE plain[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_CERTIFICATE_TYPE, ct),
                            ABUF(CKA_VALUE, fx.cert)};
    CK_ATTRIBUTE lbl[] = {ATTR(CKA_LABEL, "x", 1)};
    CK_ATTRIBUTE tr[] = {AVAR(CKA_TRUSTED, T)};
    CK_ATTRIBUTE trf[] = {AVAR(CKA_TRUSTED, F)};
    CK_ATTRIBUTE subj[] = {ATTR(CKA_SUBJECT, "\x30\x00", 2)};
    CK_ATTRIBUTE val[] = {ABUF(CKA_VALUE, fx.cert)};
    CK_ATTRIBUTE catt[] = {AVAR(CKA_CERTIFICATE_CATEGORY, cat)};
    mod_attrs *a = NULL, *b = NULL, *t = NULL;

    (void)state;
    assert_int_equal(create(fixed, NA(fixed), &a), CKR_OK);
    expect_set(a, lbl, 1, &user_pol, CKR_ACTION_PROHIBITED);
    expect_set(a, NULL, 0, &so_pol, CKR_ACTION_PROHIBITED);
    assert_int_equal(create(plain, NA(plain), &b), CKR_OK);
    expect_set(b, lbl, 1, &user_pol, CKR_OK);
    expect_set(b, catt, 1, &user_pol, CKR_OK);
    expect_set(b, tr, 1, &user_pol, CKR_ATTRIBUTE_READ_ONLY);
    expect_set(b, trf, 1, &user_pol, CKR_OK); /* already FALSE */
    expect_set(b, subj, 1, &user_pol, CKR_ATTRIBUTE_READ_ONLY);
    expect_set(b, val, 1, &user_pol, CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(obj_set(b, tr, 1, &so_pol, &t), CKR_OK);
    assert_bool_attr(t, CKA_TRUSTED, CK_TRUE);
    expect_set(t, trf, 1, &user_pol, CKR_ATTRIBUTE_READ_ONLY);
    expect_set(t, trf, 1, &so_pol, CKR_OK);
    obj_free(a);
    obj_free(b);
    obj_free(t);
}

static void
test_set_key_subject(void **state)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    buf p256 = der_oid(NID_X9_62_prime256v1);
    buf d = bn_param(fx.ec256, OSSL_PKEY_PARAM_PRIV_KEY, 32);
    unsigned char *subj = NULL;
    int subjlen = i2d_X509_NAME(X509_get_subject_name(fx.x509), &subj);
    CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_KEY_TYPE, kt), ABUF(CKA_EC_PARAMS, p256),
                        ABUF(CKA_VALUE, d)};
    CK_ATTRIBUTE s[] = {ATTR(CKA_SUBJECT, subj, subjlen), AVAR(CKA_SIGN_RECOVER, F)};
    CK_ATTRIBUTE bad[] = {ATTR(CKA_SUBJECT, "nope", 4)};
    CK_ATTRIBUTE params[] = {ABUF(CKA_EC_PARAMS, p256)};
    CK_ATTRIBUTE spki[] = {ATTR(CKA_PUBLIC_KEY_INFO, "", 0)};
    mod_attrs *o = NULL, *n = NULL;

    (void)state;
    assert_int_equal(create(t, NA(t), &o), CKR_OK);
    assert_int_equal(obj_set(o, s, NA(s), &user_pol, &n), CKR_OK);
    assert_attr(n, CKA_SUBJECT, subj, (size_t)subjlen);
    assert_int_equal(n->secure, 1);
    expect_set(o, bad, 1, &user_pol, CKR_ATTRIBUTE_VALUE_INVALID);
    expect_set(o, params, 1, &user_pol, CKR_ATTRIBUTE_READ_ONLY);
    expect_set(o, spki, 1, &user_pol, CKR_ATTRIBUTE_READ_ONLY);
    obj_free(o);
    obj_free(n);
    OPENSSL_free(subj);
    buf_free(&p256);
    buf_free(&d);
}

/* ---- C_CopyObject ---------------------------------------------------------- */

static void
test_copy(void **state)
{
    mod_attrs *o = aes_key(CK_FALSE, CK_TRUE), *c = NULL, *nc = NULL;
    CK_ATTRIBUTE t[] = {AVAR(CKA_TOKEN, T), AVAR(CKA_MODIFIABLE, F), AVAR(CKA_DESTROYABLE, F),
                        ATTR(CKA_LABEL, "copy", 4), AVAR(CKA_SENSITIVE, T)};
    CK_ATTRIBUTE pub[] = {AVAR(CKA_PRIVATE, F), AVAR(CKA_TOKEN, T)};
    CK_ATTRIBUTE pub_session[] = {AVAR(CKA_PRIVATE, F)};
    CK_ATTRIBUTE val[] = {ATTR(CKA_VALUE, "0123456789abcdeF", 16)};
    CK_ATTRIBUTE sens_off[] = {AVAR(CKA_SENSITIVE, F)};
    CK_ATTRIBUTE nocopy[] = {AVAR(CKA_COPYABLE, F)};
    CK_ATTRIBUTE dest_on[] = {AVAR(CKA_DESTROYABLE, T)};
    CK_ATTRIBUTE tr[] = {AVAR(CKA_TRUSTED, T)};
    mod_attrs *x = (mod_attrs *)(uintptr_t)1;

    (void)state;
    assert_int_equal(obj_copy(o, t, NA(t), &user_pol, &c), CKR_OK);
    assert_sorted(c);
    assert_bool_attr(c, CKA_TOKEN, CK_TRUE);
    assert_bool_attr(c, CKA_MODIFIABLE, CK_FALSE);
    assert_bool_attr(c, CKA_DESTROYABLE, CK_FALSE);
    assert_bool_attr(c, CKA_SENSITIVE, CK_TRUE);
    assert_attr(c, CKA_LABEL, "copy", 4);
    assert_attr(c, CKA_VALUE, "0123456789abcdef", 16);
    assert_int_equal(c->secure, 1);
    assert_bool_attr(o, CKA_TOKEN, CK_FALSE);
    /* The copy of an unmodifiable, undestroyable object may become
     * destroyable again: it is a new object. */
    assert_int_equal(obj_copy(c, dest_on, 1, &user_pol, &x), CKR_OK);
    assert_bool_attr(x, CKA_DESTROYABLE, CK_TRUE);
    obj_free(x);
    x = (mod_attrs *)(uintptr_t)1;
    assert_int_equal(obj_copy(o, pub, 2, &user_pol, &x), CKR_TEMPLATE_INCONSISTENT);
    assert_null(x);
    assert_int_equal(obj_copy(o, pub_session, 1, &user_pol, &x), CKR_OK); /* session copy */
    assert_bool_attr(x, CKA_PRIVATE, CK_FALSE);
    obj_free(x);
    x = NULL;
    assert_int_equal(obj_copy(o, val, 1, &user_pol, &x), CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(obj_copy(c, sens_off, 1, &user_pol, &x), CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(obj_copy(o, tr, 1, &user_pol, &x), CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(obj_copy(o, tr, 1, &so_pol, &x), CKR_OK);
    obj_free(x);
    x = NULL;
    assert_int_equal(obj_set(o, nocopy, 1, &user_pol, &nc), CKR_OK);
    assert_int_equal(obj_copy(nc, NULL, 0, &user_pol, &x), CKR_ACTION_PROHIBITED);
    assert_null(x);
    obj_free(nc);
    obj_free(c);
    obj_free(o);
}

static void
test_copy_private_data_to_public(void **state)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cls), AVAR(CKA_PRIVATE, T), ATTR(CKA_VALUE, "v", 1)};
    CK_ATTRIBUTE pub[] = {AVAR(CKA_PRIVATE, F)};
    mod_attrs *o = NULL, *c = NULL;

    (void)state;
    assert_int_equal(create(t, NA(t), &o), CKR_OK);
    assert_int_equal(o->secure, 1);
    assert_int_equal(obj_copy(o, pub, 1, &user_pol, &c), CKR_OK);
    assert_bool_attr(c, CKA_PRIVATE, CK_FALSE);
    assert_attr(c, CKA_VALUE, "v", 1);
    obj_free(c);
    obj_free(o);
}

/* ---- Matching, size, storage ------------------------------------------------ */

static void
test_match(void **state)
{
    mod_attrs *o = aes_key(CK_TRUE, CK_FALSE), *e = aes_key(CK_FALSE, CK_TRUE);
    CK_OBJECT_CLASS sec = CKO_SECRET_KEY, data = CKO_DATA;
    CK_ATTRIBUTE yes[] = {AVAR(CKA_CLASS, sec), ATTR(CKA_LABEL, "aes", 3)};
    CK_ATTRIBUTE no[] = {AVAR(CKA_CLASS, data)};
    CK_ATTRIBUTE prefix[] = {ATTR(CKA_LABEL, "ae", 2)};
    CK_ATTRIBUTE absent[] = {ATTR(CKA_MODULUS, "\x01", 1)};
    CK_ATTRIBUTE unknown[] = {ATTR(CKA_VENDOR_DEFINED | 1, "", 0)};
    CK_ATTRIBUTE value[] = {ATTR(CKA_VALUE, "0123456789abcdef", 16)};

    (void)state;
    assert_true(obj_match(o, NULL, 0));
    assert_true(obj_match(o, yes, NA(yes)));
    assert_false(obj_match(o, no, 1));
    assert_false(obj_match(o, prefix, 1));
    assert_false(obj_match(o, absent, 1));
    assert_false(obj_match(o, unknown, 1));
    assert_false(obj_match(o, NULL, 1));
    /* A sensitive value never matches (no search oracle); an extractable,
     * non-sensitive one does. */
    assert_false(obj_match(o, value, 1));
    assert_true(obj_match(e, value, 1));
    obj_free(o);
    obj_free(e);
}

static void
test_size_and_lookups(void **state)
{
    mod_attrs *o = aes_key(CK_TRUE, CK_FALSE), *n = NULL;
    CK_ATTRIBUTE lbl[] = {ATTR(CKA_LABEL, "a much longer label", 19)};

    (void)state;
    assert_true(obj_size(o) > 16 + 3);
    assert_int_equal(obj_set(o, lbl, 1, &user_pol, &n), CKR_OK);
    assert_int_equal(obj_size(n), obj_size(o) + 16);
    assert_int_equal(obj_bool(o, CKA_SIGN, CK_FALSE), CK_TRUE);
    assert_int_equal(obj_bool(o, CKA_MODULUS, CK_TRUE), CK_TRUE); /* absent: default */
    assert_int_equal(obj_bool(o, CKA_LABEL, CK_FALSE), CK_FALSE); /* wrong size: default */
    assert_int_equal(obj_ulong(o, CKA_KEY_TYPE, 0), CKK_AES);
    assert_int_equal(obj_ulong(o, CKA_LABEL, 7), 7);
    assert_null(obj_find(o, CKA_MODULUS));
    assert_null(obj_find(NULL, CKA_CLASS));
    assert_int_equal(obj_size(NULL), 0);
    obj_free(NULL);
    obj_free(n);
    obj_free(o);
}

static void
test_from_ks_and_dup(void **state)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY, dcls = CKO_DATA;
    CK_BBOOL f = CK_FALSE;
    unsigned char secret[] = "not really a key";
    ks_attr attrs[] = {{CKA_CLASS, sizeof(cls), (unsigned char *)&cls},
                       {CKA_PRIVATE, sizeof(f), &f},
                       {CKA_VALUE, sizeof(secret), secret}};
    ks_attr dattrs[] = {{CKA_CLASS, sizeof(dcls), (unsigned char *)&dcls},
                        {CKA_PRIVATE, sizeof(f), &f}};
    ks_attr dup[] = {{CKA_CLASS, sizeof(dcls), (unsigned char *)&dcls},
                     {CKA_CLASS, sizeof(dcls), (unsigned char *)&dcls}};
    ks_object ko = {.id = 7, .is_private = 0, .version = 1, .nattrs = 3, .attrs = attrs};
    mod_attrs *o = NULL, *d = NULL;

    (void)state;
    assert_int_equal(obj_from_ks(&ko, &o), CKR_OK);
    assert_int_equal(o->n, 3);
    assert_int_equal(o->secure, 1); /* a private key's set, whatever the flags */
    assert_attr(o, CKA_VALUE, secret, sizeof(secret));
    assert_int_equal(obj_dup(o, &d), CKR_OK);
    assert_int_equal(d->n, o->n);
    assert_int_equal(d->secure, 1);
    assert_attr(d, CKA_VALUE, secret, sizeof(secret));
    assert_ptr_not_equal(obj_find(d, CKA_VALUE)->value, obj_find(o, CKA_VALUE)->value);
    obj_free(d);
    obj_free(o);
    ko.attrs = dattrs;
    ko.nattrs = 2;
    assert_int_equal(obj_from_ks(&ko, &o), CKR_OK);
    assert_int_equal(o->secure, 0);
    obj_free(o);
    ko.is_private = 1;
    assert_int_equal(obj_from_ks(&ko, &o), CKR_OK);
    assert_int_equal(o->secure, 1); /* sealed in the keystore: locked here */
    obj_free(o);
    o = NULL;
    ko.attrs = dup;
    assert_int_equal(obj_from_ks(&ko, &o), CKR_GENERAL_ERROR);
    assert_null(o);
    ko.nattrs = 0;
    ko.attrs = NULL;
    assert_int_equal(obj_from_ks(&ko, &o), CKR_OK);
    assert_int_equal(o->n, 0);
    obj_free(o);
    assert_int_equal(obj_from_ks(NULL, &o), CKR_ARGUMENTS_BAD);

    /* Placed in caller memory (the cache's load arena): public sets only. */
    ko.is_private = 0;
    ko.attrs = attrs;
    ko.nattrs = 3;
    assert_int_equal(obj_from_ks_len(&ko), 0); /* a private key: locked memory */
    ko.attrs = dattrs;
    ko.nattrs = 2;
    size_t len = obj_from_ks_len(&ko);
    assert_true(len > 0 && len % 16 == 0);
    unsigned char *mem = aligned_alloc(16, len);
    assert_non_null(mem);
    assert_int_equal(obj_from_ks_in(&ko, mem, &o), CKR_OK);
    assert_ptr_equal(o, (void *)mem);
    assert_int_equal(o->n, 2);
    assert_int_equal(o->secure, 0);
    assert_attr(o, CKA_CLASS, &dcls, sizeof(dcls));
    assert_true((unsigned char *)obj_find(o, CKA_PRIVATE)->value + 1 <= mem + len);
    obj_free(o); /* frees nothing: the caller owns MEM */
    free(mem);
    ko.is_private = 1;
    assert_int_equal(obj_from_ks_len(&ko), 0);
    ko.is_private = 0;
    ko.attrs = dup;
    mem = aligned_alloc(16, 256);
    assert_int_equal(obj_from_ks_in(&ko, mem, &o), CKR_GENERAL_ERROR);
    free(mem);
}

static void
test_profile(void **state)
{
    mod_attrs *o = NULL, *x = (mod_attrs *)(uintptr_t)1;
    CK_ATTRIBUTE lbl[] = {ATTR(CKA_LABEL, "x", 1)};
    CK_ULONG id = 0;
    CK_ATTRIBUTE g[] = {AVAR(CKA_PROFILE_ID, id)};
    CK_OBJECT_CLASS cls = CKO_PROFILE;
    CK_ATTRIBUTE m[] = {AVAR(CKA_CLASS, cls)};

    (void)state;
    assert_int_equal(obj_profile(&o), CKR_OK);
    assert_sorted(o);
    assert_ulong_attr(o, CKA_CLASS, CKO_PROFILE);
    assert_ulong_attr(o, CKA_PROFILE_ID, CKP_PUBLIC_CERTIFICATES_TOKEN);
    assert_bool_attr(o, CKA_TOKEN, CK_TRUE);
    assert_bool_attr(o, CKA_PRIVATE, CK_FALSE);
    assert_bool_attr(o, CKA_MODIFIABLE, CK_FALSE);
    assert_bool_attr(o, CKA_DESTROYABLE, CK_FALSE);
    assert_int_equal(o->secure, 0);
    assert_int_equal(obj_get(o, g, 1), CKR_OK);
    assert_int_equal(id, CKP_PUBLIC_CERTIFICATES_TOKEN);
    assert_true(obj_match(o, m, 1));
    assert_int_equal(obj_set(o, lbl, 1, &so_pol, &x), CKR_ACTION_PROHIBITED);
    assert_null(x);
    assert_int_equal(obj_copy(o, NULL, 0, &so_pol, &x), CKR_ACTION_PROHIBITED);
    obj_free(o);
}

/* ---- Malformed input never crashes ----------------------------------------- */

/* Random and mutated inputs for every parser: a clear error, never a crash
 * (run under valgrind/ASan to make "never" mean something). */
static void
test_garbage_inputs(void **state)
{
    CK_OBJECT_CLASS cert = CKO_CERTIFICATE, pubc = CKO_PUBLIC_KEY;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_KEY_TYPE ec = CKK_EC, ed = CKK_EC_EDWARDS;
    buf p256 = der_oid(NID_X9_62_prime256v1);
    unsigned char junk[300], *mut = malloc(fx.cert.n);
    size_t len;
    int i;
    CK_RV rv;

    (void)state;
    assert_non_null(mut);
    for (i = 0; i < 400; i++) {
        mod_attrs *o = NULL;
        assert_int_equal(RAND_bytes(junk, sizeof(junk)), 1);
        len = 1 + junk[0] % (sizeof(junk) - 1);
        if (i % 4 == 0)
            junk[1] = 0x30; /* look like a SEQUENCE now and then */
        else if (junk[1] >= 0x02 && junk[1] <= 0x04)
            junk[1] = 0x05; /* no (DER-wrapped) point encoding: random x is on
                               the curve half the time when compressed */
        {
            CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cert), AVAR(CKA_CERTIFICATE_TYPE, ct),
                                ATTR(CKA_VALUE, junk + 1, len)};
            assert_int_equal(create(t, NA(t), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        }
        {
            CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, pubc), AVAR(CKA_KEY_TYPE, ec),
                                ATTR(CKA_EC_PARAMS, junk + 1, len), ABUF(CKA_EC_POINT, p256)};
            rv = create(t, NA(t), &o);
            assert_true(rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_CURVE_NOT_SUPPORTED);
        }
        {
            CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, pubc), AVAR(CKA_KEY_TYPE, ec),
                                ABUF(CKA_EC_PARAMS, p256), ATTR(CKA_EC_POINT, junk + 1, len)};
            assert_int_equal(create(t, NA(t), &o), CKR_ATTRIBUTE_VALUE_INVALID);
        }
        {
            CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, pubc), AVAR(CKA_KEY_TYPE, ed),
                                ATTR(CKA_EC_PARAMS, junk + 1, len), ATTR(CKA_EC_POINT, junk, 32)};
            rv = create(t, NA(t), &o);
            assert_true(rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_CURVE_NOT_SUPPORTED);
        }
        assert_null(o);
        /* One byte of a good certificate changed. */
        memcpy(mut, fx.cert.p, fx.cert.n);
        mut[(junk[2] << 8 | junk[3]) % fx.cert.n] ^= (unsigned char)(junk[4] | 1);
        {
            CK_ATTRIBUTE t[] = {AVAR(CKA_CLASS, cert), AVAR(CKA_CERTIFICATE_TYPE, ct),
                                ATTR(CKA_VALUE, mut, fx.cert.n)};
            rv = create(t, NA(t), &o);
            assert_true(rv == CKR_OK || rv == CKR_ATTRIBUTE_VALUE_INVALID);
            obj_free(o);
        }
    }
    free(mut);
    buf_free(&p256);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_template_check),
        cmocka_unit_test(test_data_minimal),
        cmocka_unit_test(test_data_full),
        cmocka_unit_test(test_class_errors),
        cmocka_unit_test(test_wrong_sizes),
        cmocka_unit_test(test_bad_dates),
        cmocka_unit_test(test_type_invalid_and_inconsistent),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_read_only_on_create),
        cmocka_unit_test(test_get_buffer_protocol),
        cmocka_unit_test(test_get_sensitive_and_invalid),
        cmocka_unit_test(test_get_extractable),
        cmocka_unit_test(test_get_rsa_private_sensitive),
        cmocka_unit_test(test_set_rules),
        cmocka_unit_test(test_set_atomic),
        cmocka_unit_test(test_set_not_modifiable_and_trusted),
        cmocka_unit_test(test_set_key_subject),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_copy_private_data_to_public),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_size_and_lookups),
        cmocka_unit_test(test_from_ks_and_dup),
        cmocka_unit_test(test_profile),
        cmocka_unit_test(test_garbage_inputs),
    };

    return cmocka_run_group_tests_name("mod_object", tests, group_setup, group_teardown);
}
