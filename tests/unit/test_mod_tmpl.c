/*
 * test_mod_tmpl.c — attribute-array attributes in the object layer
 * (module/obj_tmpl.c): CKA_WRAP_TEMPLATE / CKA_UNWRAP_TEMPLATE /
 * CKA_DERIVE_TEMPLATE checked and encoded on create, read back with the
 * nested C_GetAttributeValue protocol, never changed afterwards, matched in
 * searches, kept by obj_from_ks/obj_dup; the wrap-template match and the
 * unwrap-template merge.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "object.h"

#define NA(t) (sizeof(t) / sizeof((t)[0]))

static CK_BBOOL T = CK_TRUE, F = CK_FALSE;
static CK_OBJECT_CLASS SEC = CKO_SECRET_KEY;
static CK_KEY_TYPE AES = CKK_AES, GEN = CKK_GENERIC_SECRET;
static const unsigned char val[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const obj_policy user_pol = {CK_FALSE, CK_TRUE};

/* An AES session key with array attribute TYPE = ARR (N entries). */
static CK_RV
key_with(CK_ATTRIBUTE_TYPE type, CK_ATTRIBUTE *arr, CK_ULONG n, mod_attrs **out)
{
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &SEC, sizeof(SEC)},        {CKA_KEY_TYPE, &AES, sizeof(AES)},
        {CKA_VALUE, (void *)val, sizeof(val)}, {CKA_EXTRACTABLE, &T, 1},
        {type, arr, n * sizeof(CK_ATTRIBUTE)},
    };

    return obj_from_template(t, NA(t), &user_pol, out);
}

static void
test_create_and_get(void **state)
{
    CK_BBOOL odd = 0x07;
    CK_ATTRIBUTE wt[] = {
        {CKA_EXTRACTABLE, &odd, 1}, /* out of order on purpose */
        {CKA_CLASS, &SEC, sizeof(SEC)},
    };
    CK_ATTRIBUTE inner[2], outer = {CKA_WRAP_TEMPLATE, NULL, 0};
    CK_ATTRIBUTE none = {CKA_UNWRAP_TEMPLATE, NULL, 0};
    CK_OBJECT_CLASS c = 0;
    CK_BBOOL b = 0;
    mod_attrs *o = NULL;

    (void)state;
    assert_int_equal(key_with(CKA_WRAP_TEMPLATE, wt, NA(wt), &o), CKR_OK);
    assert_int_equal(obj_get(o, &outer, 1), CKR_OK);
    assert_int_equal(outer.ulValueLen, 2 * sizeof(CK_ATTRIBUTE));
    /* Room for one entry only. */
    outer.pValue = inner;
    outer.ulValueLen = sizeof(CK_ATTRIBUTE) + 1;
    assert_int_equal(obj_get(o, &outer, 1), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(outer.ulValueLen, CK_UNAVAILABLE_INFORMATION);
    /* Types and lengths, in ascending type order. */
    memset(inner, 0, sizeof(inner));
    outer.ulValueLen = sizeof(inner);
    assert_int_equal(obj_get(o, &outer, 1), CKR_OK);
    assert_int_equal(inner[0].type, CKA_CLASS);
    assert_int_equal(inner[0].ulValueLen, sizeof(CK_OBJECT_CLASS));
    assert_int_equal(inner[1].type, CKA_EXTRACTABLE);
    assert_int_equal(inner[1].ulValueLen, 1);
    /* Values; the boolean normalised to CK_TRUE. */
    inner[0].pValue = &c;
    inner[1].pValue = &b;
    assert_int_equal(obj_get(o, &outer, 1), CKR_OK);
    assert_int_equal(c, CKO_SECRET_KEY);
    assert_int_equal(b, CK_TRUE);
    /* One element's buffer too small: that one unavailable, the other filled. */
    inner[0].ulValueLen = 1;
    b = 0;
    assert_int_equal(obj_get(o, &outer, 1), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(inner[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(inner[1].ulValueLen, 1);
    assert_int_equal(b, CK_TRUE);
    /* A secret key without an unwrap template has the empty array. */
    assert_int_equal(obj_get(o, &none, 1), CKR_OK);
    assert_int_equal(none.ulValueLen, 0);
    obj_free(o);
}

static void
test_invalid_arrays(void **state)
{
    CK_ATTRIBUTE inner[] = {{CKA_KEY_TYPE, &AES, sizeof(AES)}};
    CK_ATTRIBUTE nested[] = {{CKA_UNWRAP_TEMPLATE, inner, sizeof(inner)}};
    CK_ATTRIBUTE secret[] = {{CKA_VALUE, (void *)val, sizeof(val)}};
    CK_ATTRIBUTE unknown[] = {{CKA_VENDOR_DEFINED | 0x99, &T, 1}};
    CK_ATTRIBUTE badbool[] = {{CKA_SENSITIVE, &AES, sizeof(AES)}};
    CK_ATTRIBUTE nullv[] = {{CKA_LABEL, NULL, 3}};
    CK_ATTRIBUTE twice[] = {{CKA_SENSITIVE, &T, 1}, {CKA_SENSITIVE, &F, 1}};
    CK_ATTRIBUTE twice_same[] = {{CKA_SENSITIVE, &T, 1}, {CKA_SENSITIVE, &T, 1}};
    CK_ATTRIBUTE ragged[] = {
        {CKA_CLASS, &SEC, sizeof(SEC)},
        {CKA_KEY_TYPE, &AES, sizeof(AES)},
        {CKA_VALUE, (void *)val, sizeof(val)},
        {CKA_WRAP_TEMPLATE, inner, sizeof(inner) - 1},
    };
    CK_OBJECT_CLASS data = CKO_DATA;
    CK_ATTRIBUTE on_data[] = {
        {CKA_CLASS, &data, sizeof(data)},
        {CKA_WRAP_TEMPLATE, inner, sizeof(inner)},
    };
    CK_ATTRIBUTE both[] = {
        {CKA_CLASS, &SEC, sizeof(SEC)},        {CKA_KEY_TYPE, &AES, sizeof(AES)},
        {CKA_VALUE, (void *)val, sizeof(val)}, {CKA_WRAP_TEMPLATE, inner, sizeof(inner)},
        {CKA_WRAP_TEMPLATE, NULL, 0},
    };
    mod_attrs *o = NULL;

    (void)state;
    assert_int_equal(key_with(CKA_WRAP_TEMPLATE, nested, 1, &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(key_with(CKA_WRAP_TEMPLATE, secret, 1, &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(key_with(CKA_WRAP_TEMPLATE, unknown, 1, &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(key_with(CKA_UNWRAP_TEMPLATE, badbool, 1, &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(key_with(CKA_DERIVE_TEMPLATE, nullv, 1, &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(key_with(CKA_UNWRAP_TEMPLATE, twice, 2, &o), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_null(o);
    assert_int_equal(obj_from_template(ragged, NA(ragged), &user_pol, &o),
                     CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(obj_from_template(on_data, NA(on_data), &user_pol, &o),
                     CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(obj_from_template(both, NA(both), &user_pol, &o), CKR_TEMPLATE_INCONSISTENT);
    assert_null(o);
    /* The same attribute twice with one value is harmless. */
    assert_int_equal(key_with(CKA_UNWRAP_TEMPLATE, twice_same, 2, &o), CKR_OK);
    obj_free(o);
}

static void
test_fixed_after_creation(void **state)
{
    CK_ATTRIBUTE wt[] = {{CKA_KEY_TYPE, &AES, sizeof(AES)}};
    CK_ATTRIBUTE wider[] = {{CKA_WRAP_TEMPLATE, NULL, 0}};
    mod_attrs *o = NULL, *n = NULL, *d = NULL;
    CK_ATTRIBUTE get = {CKA_WRAP_TEMPLATE, NULL, 0};

    (void)state;
    assert_int_equal(key_with(CKA_WRAP_TEMPLATE, wt, NA(wt), &o), CKR_OK);
    assert_int_equal(obj_set(o, wider, 1, &user_pol, &n), CKR_ATTRIBUTE_READ_ONLY);
    assert_int_equal(obj_copy(o, wider, 1, &user_pol, &n), CKR_ATTRIBUTE_READ_ONLY);
    assert_null(n);
    /* A copy without it in the template keeps it. */
    assert_int_equal(obj_copy(o, NULL, 0, &user_pol, &n), CKR_OK);
    assert_int_equal(obj_get(n, &get, 1), CKR_OK);
    assert_int_equal(get.ulValueLen, sizeof(CK_ATTRIBUTE));
    assert_int_equal(obj_dup(n, &d), CKR_OK);
    get.ulValueLen = 0;
    assert_int_equal(obj_get(d, &get, 1), CKR_OK);
    assert_int_equal(get.ulValueLen, sizeof(CK_ATTRIBUTE));
    obj_free(o);
    obj_free(n);
    obj_free(d);
}

static void
test_match_in_search(void **state)
{
    CK_ATTRIBUTE wt[] = {{CKA_KEY_TYPE, &AES, sizeof(AES)}, {CKA_SENSITIVE, &T, 1}};
    CK_ATTRIBUTE same[] = {{CKA_SENSITIVE, &T, 1}, {CKA_KEY_TYPE, &AES, sizeof(AES)}};
    CK_ATTRIBUTE other[] = {{CKA_KEY_TYPE, &GEN, sizeof(GEN)}};
    CK_ATTRIBUTE q_same = {CKA_WRAP_TEMPLATE, same, sizeof(same)};
    CK_ATTRIBUTE q_other = {CKA_WRAP_TEMPLATE, other, sizeof(other)};
    CK_ATTRIBUTE q_empty = {CKA_UNWRAP_TEMPLATE, NULL, 0};
    mod_attrs *o = NULL;

    (void)state;
    assert_int_equal(key_with(CKA_WRAP_TEMPLATE, wt, NA(wt), &o), CKR_OK);
    assert_true(obj_match(o, &q_same, 1));
    assert_false(obj_match(o, &q_other, 1));
    assert_true(obj_match(o, &q_empty, 1)); /* no unwrap template: the empty one */
    obj_free(o);
}

/* obj_tmpl_match: what C_WrapKey checks against the wrapping key's
 * CKA_WRAP_TEMPLATE. */
static void
test_wrap_match(void **state)
{
    CK_ATTRIBUTE wt_aes[] = {{CKA_KEY_TYPE, &AES, sizeof(AES)}, {CKA_EXTRACTABLE, &T, 1}};
    CK_ATTRIBUTE wt_gen[] = {{CKA_KEY_TYPE, &GEN, sizeof(GEN)}};
    CK_ATTRIBUTE wt_trusted[] = {{CKA_TRUSTED, &T, 1}};
    mod_attrs *a = NULL, *g = NULL, *t = NULL;
    ks_attr bad = {CKA_WRAP_TEMPLATE, 5, (unsigned char *)"\x01\x02\x03\x04\x05"};

    (void)state;
    assert_int_equal(key_with(CKA_WRAP_TEMPLATE, wt_aes, NA(wt_aes), &a), CKR_OK);
    assert_int_equal(key_with(CKA_WRAP_TEMPLATE, wt_gen, NA(wt_gen), &g), CKR_OK);
    assert_int_equal(key_with(CKA_WRAP_TEMPLATE, wt_trusted, NA(wt_trusted), &t), CKR_OK);
    /* A (an extractable AES key) matches its own template, not G's nor T's. */
    assert_true(obj_tmpl_match(a, obj_find(a, CKA_WRAP_TEMPLATE)));
    assert_false(obj_tmpl_match(a, obj_find(g, CKA_WRAP_TEMPLATE)));
    assert_false(obj_tmpl_match(a, obj_find(t, CKA_WRAP_TEMPLATE)));
    /* No template: any key; bytes that do not parse: none. */
    assert_true(obj_tmpl_match(a, NULL));
    assert_false(obj_tmpl_match(a, &bad));
    obj_free(a);
    obj_free(g);
    obj_free(t);
}

/* obj_tmpl_merge: what C_UnwrapKey / C_DeriveKey do with the caller's
 * template and the key's CKA_UNWRAP_TEMPLATE / CKA_DERIVE_TEMPLATE. */
static void
test_unwrap_merge(void **state)
{
    CK_BBOOL two = 2;
    CK_ATTRIBUTE ut[] = {{CKA_SENSITIVE, &T, 1}, {CKA_KEY_TYPE, &AES, sizeof(AES)}};
    CK_ATTRIBUTE mine[] = {{CKA_CLASS, &SEC, sizeof(SEC)}, {CKA_SENSITIVE, &two, 1}};
    CK_ATTRIBUTE clash[] = {{CKA_KEY_TYPE, &GEN, sizeof(GEN)}};
    mod_attrs *o = NULL;
    const ks_attr *a;
    CK_ATTRIBUTE *m = NULL;
    CK_ULONG n = 0;
    int have_kt = 0;

    (void)state;
    assert_int_equal(key_with(CKA_UNWRAP_TEMPLATE, ut, NA(ut), &o), CKR_OK);
    a = obj_find(o, CKA_UNWRAP_TEMPLATE);
    assert_non_null(a);
    /* CKA_SENSITIVE is in both (2 and 1 are both TRUE): once; the key type
     * is added. */
    assert_int_equal(obj_tmpl_merge(mine, NA(mine), a->value, a->len, &m, &n), CKR_OK);
    assert_int_equal(n, 3);
    for (CK_ULONG i = 0; i < n; i++)
        if (m[i].type == CKA_KEY_TYPE) {
            have_kt = 1;
            assert_memory_equal(m[i].pValue, &AES, sizeof(AES));
        }
    assert_true(have_kt);
    free(m);
    m = NULL;
    assert_int_equal(obj_tmpl_merge(clash, NA(clash), a->value, a->len, &m, &n),
                     CKR_TEMPLATE_INCONSISTENT);
    assert_null(m);
    /* No stored template: the caller's alone. */
    assert_int_equal(obj_tmpl_merge(mine, NA(mine), NULL, 0, &m, &n), CKR_OK);
    assert_int_equal(n, NA(mine));
    free(m);
    obj_free(o);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_and_get),       cmocka_unit_test(test_invalid_arrays),
        cmocka_unit_test(test_fixed_after_creation), cmocka_unit_test(test_match_in_search),
        cmocka_unit_test(test_wrap_match),           cmocka_unit_test(test_unwrap_merge),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
