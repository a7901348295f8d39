/*
 * t_tmpl.c — the attribute-array attributes of PKCS#11 3.0 (CKF_ARRAY_ATTRIBUTE)
 * through the function list: CKA_WRAP_TEMPLATE restricts which keys a key
 * wraps, CKA_UNWRAP_TEMPLATE is merged into every key it unwraps,
 * C_GetAttributeValue reads them with the nested buffer protocol, and a
 * token key keeps them across C_Finalize / C_Initialize.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

#define N_(a) (sizeof(a) / sizeof((a)[0]))

static const CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static const unsigned char kekv[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const unsigned char aesv[32] = {0x42};
static const unsigned char genv[24] = {0x17};

static CK_SESSION_HANDLE
user_session(void)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);

    conf_login_user(h);
    return h;
}

/* An AES key-wrapping key (TOKEN or a session key) with wrap template WT
 * and unwrap template UT (NULL: none). */
static CK_OBJECT_HANDLE
kek_with(CK_SESSION_HANDLE h, CK_BBOOL token, CK_ATTRIBUTE *wt, CK_ULONG wn, CK_ATTRIBUTE *ut,
         CK_ULONG un)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE t[9] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE, (void *)kekv, 16},  {CKA_WRAP, (void *)&yes, 1},
        {CKA_UNWRAP, (void *)&yes, 1},  {CKA_ENCRYPT, (void *)&no, 1},
        {CKA_DECRYPT, (void *)&no, 1},  {CKA_TOKEN, &token, 1},
    };
    CK_ULONG n = 8;
    CK_OBJECT_HANDLE k;

    if (wt != NULL)
        t[n++] = (CK_ATTRIBUTE){CKA_WRAP_TEMPLATE, wt, wn * sizeof(CK_ATTRIBUTE)};
    if (ut != NULL)
        t[n++] = (CK_ATTRIBUTE){CKA_UNWRAP_TEMPLATE, ut, un * sizeof(CK_ATTRIBUTE)};
    assert_ok(F->C_CreateObject(h, t, n, &k));
    return k;
}

static CK_OBJECT_HANDLE
secret(CK_SESSION_HANDLE h, CK_KEY_TYPE kt, const unsigned char *v, CK_ULONG len)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE, (void *)v, len},    {CKA_EXTRACTABLE, (void *)&yes, 1},
        {CKA_TOKEN, (void *)&no, 1},
    };
    CK_OBJECT_HANDLE k;

    assert_ok(F->C_CreateObject(h, t, N_(t), &k));
    return k;
}

/* The wrap template names the keys a key may wrap: AES keys only here. */
static void
t_tmpl_wrap(void **state)
{
    CK_SESSION_HANDLE h = user_session();
    CK_KEY_TYPE aes = CKK_AES;
    CK_ATTRIBUTE wt[] = {{CKA_KEY_TYPE, &aes, sizeof(aes)}};
    CK_MECHANISM kw = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_OBJECT_HANDLE w = kek_with(h, CK_FALSE, wt, N_(wt), NULL, 0);
    CK_OBJECT_HANDLE a = secret(h, CKK_AES, aesv, sizeof(aesv));
    CK_OBJECT_HANDLE g = secret(h, CKK_GENERIC_SECRET, genv, sizeof(genv));
    CK_OBJECT_HANDLE plain = kek_with(h, CK_FALSE, NULL, 0, NULL, 0);
    unsigned char out[128];
    CK_ULONG len = sizeof(out);

    (void)state;
    assert_ok(F->C_WrapKey(h, &kw, w, a, out, &len));
    assert_int_equal(len, sizeof(aesv) + 8);
    len = sizeof(out);
    assert_rv(F->C_WrapKey(h, &kw, w, g, out, &len), CKR_KEY_NOT_WRAPPABLE);
    /* Without a template any extractable key. */
    len = sizeof(out);
    assert_ok(F->C_WrapKey(h, &kw, plain, g, out, &len));
    /* The template is fixed at creation: no way to widen it later. */
    {
        CK_ATTRIBUTE none[] = {{CKA_WRAP_TEMPLATE, NULL, 0}};
        CK_RV rv = F->C_SetAttributeValue(h, w, none, 1);
        assert_true(rv == CKR_ATTRIBUTE_READ_ONLY || rv == CKR_ACTION_PROHIBITED);
        len = sizeof(out);
        assert_rv(F->C_WrapKey(h, &kw, w, g, out, &len), CKR_KEY_NOT_WRAPPABLE);
    }
    assert_ok(F->C_CloseSession(h));
}

/* The unwrap template is merged into the caller's template; a conflict is
 * refused. */
static void
t_tmpl_unwrap(void **state)
{
    CK_SESSION_HANDLE h = user_session();
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES;
    CK_ATTRIBUTE ut[] = {
        {CKA_SENSITIVE, (void *)&yes, 1},
        {CKA_EXTRACTABLE, (void *)&no, 1},
        {CKA_KEY_TYPE, &aes, sizeof(aes)},
    };
    CK_MECHANISM kw = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_OBJECT_HANDLE w = kek_with(h, CK_FALSE, NULL, 0, ut, N_(ut));
    CK_OBJECT_HANDLE a = secret(h, CKK_AES, aesv, sizeof(aesv)), u = CK_INVALID_HANDLE;
    CK_ATTRIBUTE mine[] = {
        {CKA_CLASS, &cls, sizeof(cls)},    {CKA_TOKEN, (void *)&no, 1},
        {CKA_KEY_TYPE, &aes, sizeof(aes)}, {CKA_SENSITIVE, (void *)&yes, 1},
        {CKA_EXTRACTABLE, (void *)&no, 1},
    };
    CK_ATTRIBUTE clash[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, (void *)&no, 1},
        {CKA_EXTRACTABLE, (void *)&yes, 1},
        {CKA_KEY_TYPE, &aes, sizeof(aes)},
    };
    CK_BBOOL sens = 0xff, extr = 0xff;
    CK_ATTRIBUTE get[] = {{CKA_SENSITIVE, &sens, 1}, {CKA_EXTRACTABLE, &extr, 1}};
    unsigned char out[128];
    CK_ULONG len = sizeof(out);

    (void)state;
    assert_ok(F->C_WrapKey(h, &kw, w, a, out, &len));
    /* The key type and the flags may come from the unwrap template alone
     * (SoftHSMv2 2.6 wants them repeated in the caller's template). */
    assert_ok(F->C_UnwrapKey(h, &kw, w, out, len, mine, is_evertoken() ? 2 : N_(mine), &u));
    assert_ok(F->C_GetAttributeValue(h, u, get, N_(get)));
    assert_int_equal(sens, CK_TRUE);
    assert_int_equal(extr, CK_FALSE);
    assert_rv(F->C_UnwrapKey(h, &kw, w, out, len, clash, N_(clash), &u), CKR_TEMPLATE_INCONSISTENT);
    assert_ok(F->C_CloseSession(h));
}

/* C_GetAttributeValue of an array attribute (3.0 section 5.7.5 item 5),
 * and the template of a token key after a restart. */
static void
t_tmpl_get(void **state)
{
    CK_SESSION_HANDLE h = user_session();
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES;
    CK_BBOOL odd = 0x05; /* any non-zero byte is TRUE */
    CK_ATTRIBUTE ut[] = {{CKA_KEY_TYPE, &aes, sizeof(aes)}, {CKA_SENSITIVE, &odd, 1}};
    CK_ATTRIBUTE find[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_TOKEN, (void *)&yes, 1}};
    CK_OBJECT_HANDLE w = kek_with(h, CK_TRUE, NULL, 0, ut, N_(ut));
    CK_ATTRIBUTE inner[2];
    CK_ATTRIBUTE outer = {CKA_UNWRAP_TEMPLATE, NULL, 0};
    CK_KEY_TYPE kt = 0;
    CK_BBOOL b = 0;
    CK_ULONG cnt = 0;

    (void)state;
    for (int round = 0; round < 2; round++) {
        /* The size of the array. */
        outer.pValue = NULL;
        outer.ulValueLen = 0;
        assert_ok(F->C_GetAttributeValue(h, w, &outer, 1));
        assert_int_equal(outer.ulValueLen, 2 * sizeof(CK_ATTRIBUTE));
        /* Too small for the array. */
        outer.pValue = inner;
        outer.ulValueLen = sizeof(CK_ATTRIBUTE);
        assert_rv(F->C_GetAttributeValue(h, w, &outer, 1), CKR_BUFFER_TOO_SMALL);
        assert_int_equal(outer.ulValueLen, CK_UNAVAILABLE_INFORMATION);
        /* The elements' types and lengths. */
        memset(inner, 0, sizeof(inner));
        outer.ulValueLen = sizeof(inner);
        assert_ok(F->C_GetAttributeValue(h, w, &outer, 1));
        assert_int_equal(outer.ulValueLen, sizeof(inner));
        for (int i = 0; i < 2; i++) {
            if (inner[i].type == CKA_KEY_TYPE)
                assert_int_equal(inner[i].ulValueLen, sizeof(CK_KEY_TYPE));
            else if (inner[i].type == CKA_SENSITIVE)
                assert_int_equal(inner[i].ulValueLen, 1);
            else
                fail_msg("unexpected type %lx", (unsigned long)inner[i].type);
        }
        /* The values. */
        for (int i = 0; i < 2; i++)
            inner[i].pValue = inner[i].type == CKA_KEY_TYPE ? (void *)&kt : (void *)&b;
        assert_ok(F->C_GetAttributeValue(h, w, &outer, 1));
        assert_int_equal(kt, CKK_AES);
        assert_true(b != 0);
        /* One element too small. */
        for (int i = 0; i < 2; i++)
            if (inner[i].type == CKA_KEY_TYPE)
                inner[i].ulValueLen = 1;
        assert_rv(F->C_GetAttributeValue(h, w, &outer, 1), CKR_BUFFER_TOO_SMALL);
        for (int i = 0; i < 2; i++)
            if (inner[i].type == CKA_KEY_TYPE)
                assert_int_equal(inner[i].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        if (round == 1)
            break;
        /* A token key keeps its template across a restart. */
        assert_ok(F->C_CloseSession(h));
        conf_reinit();
        E.slot = conf_slot_by_label(CONF_LABEL); /* SoftHSMv2 renumbers slots */
        h = user_session();
        assert_ok(F->C_FindObjectsInit(h, find, N_(find)));
        assert_ok(F->C_FindObjects(h, &w, 1, &cnt));
        assert_int_equal(cnt, 1);
        assert_ok(F->C_FindObjectsFinal(h));
    }
    assert_ok(F->C_CloseSession(h));
}

/* Malformed arrays: not a whole number of CK_ATTRIBUTEs, an array inside
 * an array; and an attribute the class does not have. */
static void
t_tmpl_invalid(void **state)
{
    CK_SESSION_HANDLE h = user_session();
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY, dcls = CKO_DATA;
    CK_KEY_TYPE aes = CKK_AES;
    CK_ATTRIBUTE nested_in[] = {{CKA_KEY_TYPE, &aes, sizeof(aes)}};
    CK_ATTRIBUTE nested[] = {{CKA_WRAP_TEMPLATE, nested_in, sizeof(nested_in)}};
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},    {CKA_KEY_TYPE, &aes, sizeof(aes)},
        {CKA_VALUE, (void *)kekv, 16},     {CKA_TOKEN, (void *)&no, 1},
        {CKA_WRAP_TEMPLATE, nested_in, 3},
    };
    CK_ATTRIBUTE data[] = {
        {CKA_CLASS, &dcls, sizeof(dcls)},
        {CKA_WRAP_TEMPLATE, nested_in, sizeof(nested_in)},
    };
    CK_OBJECT_HANDLE k;

    (void)state;
    assert_rv(F->C_CreateObject(h, t, N_(t), &k), CKR_ATTRIBUTE_VALUE_INVALID);
    if (is_evertoken()) {
        /* SoftHSMv2 2.6 takes nested arrays. */
        t[4].pValue = nested;
        t[4].ulValueLen = sizeof(nested);
        assert_rv(F->C_CreateObject(h, t, N_(t), &k), CKR_ATTRIBUTE_VALUE_INVALID);
        /* SoftHSMv2 2.6 takes any attribute on a data object. */
        assert_rv(F->C_CreateObject(h, data, N_(data), &k), CKR_TEMPLATE_INCONSISTENT);
    }
    assert_ok(F->C_CloseSession(h));
}

struct conf_group
conf_tmpl_tests(void)
{
    static const struct CMUnitTest tests[] = {
        CONF_TEST_TOKEN(t_tmpl_wrap),
        CONF_TEST_TOKEN(t_tmpl_unwrap),
        CONF_TEST_TOKEN(t_tmpl_get),
        CONF_TEST_TOKEN(t_tmpl_invalid),
    };
    struct conf_group g = {"templates", tests, N_(tests)};
    return g;
}
