/*
 * t_slot.c — slots and tokens: C_GetSlotList, C_GetSlotInfo, C_GetTokenInfo,
 * C_GetMechanismList, C_InitToken, C_InitPIN, C_SetPIN.
 * PKCS#11 2.40 sections 5.5 and 5.6.
 */
#include <stdlib.h>
#include <string.h>

#include "conf.h"

static void
t_slot_list_protocol(void **state)
{
    CK_ULONG n = 0, small, n_present = 0;
    CK_SLOT_ID *list, *present;

    (void)state;
    assert_rv(F->C_GetSlotList(CK_FALSE, NULL, NULL), CKR_ARGUMENTS_BAD);
    /* An empty token directory still has the slot of an uninitialised token. */
    assert_ok(F->C_GetSlotList(CK_FALSE, NULL, &n));
    assert_true(n >= 1);
    conf_create_token(CONF_LABEL);

    /* Sizing call, then a list one short: CKR_BUFFER_TOO_SMALL with the count. */
    assert_ok(F->C_GetSlotList(CK_FALSE, NULL, &n));
    assert_true(n >= 2);
    list = calloc(n, sizeof(*list));
    assert_non_null(list);
    small = n - 1;
    assert_rv(F->C_GetSlotList(CK_FALSE, list, &small), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(small, n);
    small = 0;
    assert_rv(F->C_GetSlotList(CK_FALSE, list, &small), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(small, n);
    assert_ok(F->C_GetSlotList(CK_FALSE, list, &n));
    if (is_evertoken())
        /* One token and the one free slot. */
        assert_int_equal(n, 2);

    /* tokenPresent: a subset, and contains the token's slot. */
    assert_ok(F->C_GetSlotList(CK_TRUE, NULL, &n_present));
    assert_true(n_present <= n && n_present >= 1);
    present = calloc(n_present, sizeof(*present));
    assert_non_null(present);
    assert_ok(F->C_GetSlotList(CK_TRUE, present, &n_present));
    int found = 0;
    for (CK_ULONG i = 0; i < n_present; i++) {
        int in_all = 0;
        for (CK_ULONG j = 0; j < n; j++)
            in_all |= present[i] == list[j];
        assert_true(in_all);
        found |= present[i] == E.slot;
    }
    assert_true(found);
    free(present);
    free(list);
}

static void
t_slot_info(void **state)
{
    CK_SLOT_INFO si;
    CK_TOKEN_INFO ti;
    CK_SLOT_ID bad = conf_invalid_slot();

    (void)state;
    assert_rv(F->C_GetSlotInfo(bad, &si), CKR_SLOT_ID_INVALID);
    assert_rv(F->C_GetTokenInfo(bad, &ti), CKR_SLOT_ID_INVALID);
    assert_rv(F->C_GetSlotInfo(E.slot, NULL), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_GetTokenInfo(E.slot, NULL), CKR_ARGUMENTS_BAD);

    assert_ok(F->C_GetSlotInfo(E.slot, &si));
    assert_true(si.flags & CKF_TOKEN_PRESENT);
    for (size_t i = 0; i < sizeof(si.slotDescription); i++)
        assert_true(si.slotDescription[i] >= 0x20);
    if (is_evertoken()) {
        assert_true(conf_padded_eq(si.manufacturerID, 32, "evertoken"));
        assert_false(si.flags & (CKF_REMOVABLE_DEVICE | CKF_HW_SLOT));
    }
}

static void
t_token_info(void **state)
{
    CK_TOKEN_INFO ti, ti2, fti;
    CK_SLOT_ID free_slot = conf_free_slot();

    (void)state;
    assert_ok(F->C_GetTokenInfo(E.slot, &ti));
    assert_true(conf_padded_eq(ti.label, 32, CONF_LABEL));
    assert_true(ti.flags & CKF_TOKEN_INITIALIZED);
    assert_true(ti.flags & CKF_USER_PIN_INITIALIZED);
    assert_true(ti.flags & CKF_LOGIN_REQUIRED);
    assert_false(ti.flags & (CKF_USER_PIN_LOCKED | CKF_SO_PIN_LOCKED | CKF_WRITE_PROTECTED));
    assert_true(ti.ulMinPinLen <= 4 && ti.ulMaxPinLen >= 8);
    assert_session_count(ti.ulSessionCount, 0);
    assert_session_count(ti.ulRwSessionCount, 0);

    /* The uninitialised token. */
    assert_ok(F->C_GetTokenInfo(free_slot, &fti));
    assert_false(fti.flags & CKF_TOKEN_INITIALIZED);
    assert_false(fti.flags & CKF_USER_PIN_INITIALIZED);

    /* Session counts follow this process's sessions. */
    CK_SESSION_HANDLE ro = conf_open(0), rw = conf_open(CKF_RW_SESSION);
    assert_ok(F->C_GetTokenInfo(E.slot, &ti2));
    assert_session_count(ti2.ulSessionCount, 2);
    assert_session_count(ti2.ulRwSessionCount, 1);
    assert_ok(F->C_CloseSession(ro));
    assert_ok(F->C_CloseSession(rw));

    /* Identity is stable across C_Finalize/C_Initialize (re-find by label:
     * a module may number slots differently after a restart). */
    conf_reinit();
    E.slot = conf_slot_by_label(CONF_LABEL);
    assert_ok(F->C_GetTokenInfo(E.slot, &ti2));
    assert_memory_equal(ti.serialNumber, ti2.serialNumber, sizeof(ti.serialNumber));
    assert_memory_equal(ti.manufacturerID, ti2.manufacturerID, sizeof(ti.manufacturerID));
    assert_memory_equal(ti.model, ti2.model, sizeof(ti.model));
    assert_memory_equal(ti.label, ti2.label, sizeof(ti.label));
    if (is_evertoken()) {
        assert_true(conf_padded_eq(ti.manufacturerID, 32, "evertoken"));
        assert_true(conf_padded_eq(ti.model, 16, "evertoken soft"));
        assert_true(ti.flags & CKF_RNG);
    }
}

static void
t_mechanism_list(void **state)
{
    CK_ULONG n = 0;
    CK_MECHANISM_TYPE *m;

    (void)state;
    assert_rv(F->C_GetMechanismList(conf_invalid_slot(), NULL, &n), CKR_SLOT_ID_INVALID);
    assert_rv(F->C_GetMechanismList(E.slot, NULL, NULL), CKR_ARGUMENTS_BAD);
    assert_ok(F->C_GetMechanismList(E.slot, NULL, &n));
    m = calloc(n + 1, sizeof(*m));
    assert_non_null(m);
    if (n > 0) {
        CK_ULONG small = n - 1;
        assert_rv(F->C_GetMechanismList(E.slot, m, &small), CKR_BUFFER_TOO_SMALL);
        assert_int_equal(small, n);
    }
    assert_ok(F->C_GetMechanismList(E.slot, m, &n));
    free(m);
}

static void
t_init_token_flow(void **state)
{
    CK_UTF8CHAR lab[32];
    CK_SLOT_ID free_slot, slot;
    CK_SESSION_HANDLE h;
    CK_TOKEN_INFO ti;
    CK_ULONG n_before, n_after;
    CK_SLOT_ID *l;

    (void)state;
    free_slot = conf_free_slot();
    l = conf_slots(&n_before);
    free(l);
    conf_pad(lab, "flow");
    assert_rv(
        F->C_InitToken(conf_invalid_slot(), (CK_UTF8CHAR_PTR)CONF_SO_PIN, strlen(CONF_SO_PIN), lab),
        CKR_SLOT_ID_INVALID);
    assert_rv(F->C_InitToken(free_slot, (CK_UTF8CHAR_PTR)CONF_SO_PIN, strlen(CONF_SO_PIN), NULL),
              CKR_ARGUMENTS_BAD);
    assert_ok(F->C_InitToken(free_slot, (CK_UTF8CHAR_PTR)CONF_SO_PIN, strlen(CONF_SO_PIN), lab));

    /* A new free slot appears next to the new token. */
    l = conf_slots(&n_after);
    free(l);
    assert_int_equal(n_after, n_before + 1);
    slot = conf_slot_by_label("flow");
    conf_free_slot();
    if (is_evertoken())
        assert_int_equal(slot, free_slot);
    E.slot = slot;

    assert_ok(F->C_GetTokenInfo(slot, &ti));
    assert_true(ti.flags & CKF_TOKEN_INITIALIZED);
    assert_false(ti.flags & CKF_USER_PIN_INITIALIZED);

    h = conf_open(CKF_RW_SESSION);
    /* No user PIN yet. */
    assert_rv(F->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)CONF_USER_PIN, strlen(CONF_USER_PIN)),
              CKR_USER_PIN_NOT_INITIALIZED);
    conf_login_so(h);
    assert_ok(F->C_InitPIN(h, (CK_UTF8CHAR_PTR)CONF_USER_PIN, strlen(CONF_USER_PIN)));
    assert_ok(F->C_Logout(h));
    assert_ok(F->C_GetTokenInfo(slot, &ti));
    assert_true(ti.flags & CKF_USER_PIN_INITIALIZED);
    conf_login_user(h);
    assert_ok(F->C_CloseSession(h));
}

static void
t_init_token_reinit(void **state)
{
    CK_UTF8CHAR lab[32];
    CK_SESSION_HANDLE h;
    CK_OBJECT_HANDLE o;
    CK_TOKEN_INFO ti;

    (void)state;
    /* An object that re-initialisation must destroy. */
    h = conf_open(CKF_RW_SESSION);
    conf_login_user(h);
    assert_ok(conf_create_data(h, CK_TRUE, CK_FALSE, "doomed", &o));

    conf_pad(lab, "again");
    /* 2.40 section 5.6: sessions open on the token -> CKR_SESSION_EXISTS. */
    assert_rv(F->C_InitToken(E.slot, (CK_UTF8CHAR_PTR)CONF_SO_PIN, strlen(CONF_SO_PIN), lab),
              CKR_SESSION_EXISTS);
    assert_ok(F->C_CloseSession(h));

    assert_rv(F->C_InitToken(E.slot, (CK_UTF8CHAR_PTR) "87654321", 8, lab), CKR_PIN_INCORRECT);
    assert_ok(F->C_GetTokenInfo(E.slot, &ti));
    assert_true(conf_padded_eq(ti.label, 32, CONF_LABEL));

    assert_ok(F->C_InitToken(E.slot, (CK_UTF8CHAR_PTR)CONF_SO_PIN, strlen(CONF_SO_PIN), lab));
    E.slot = conf_slot_by_label("again");
    assert_ok(F->C_GetTokenInfo(E.slot, &ti));
    assert_true(ti.flags & CKF_TOKEN_INITIALIZED);
    assert_false(ti.flags & CKF_USER_PIN_INITIALIZED);

    /* The old object is gone. */
    h = conf_open(0);
    assert_int_equal(conf_find_label(h, "doomed", NULL), 0);
    assert_ok(F->C_CloseSession(h));
}

static void
t_init_pin_rules(void **state)
{
    CK_SESSION_HANDLE rw, ro;

    (void)state;
    rw = conf_open(CKF_RW_SESSION);
    /* 2.40 section 5.6: only in a R/W SO session. */
    assert_rv(F->C_InitPIN(rw, (CK_UTF8CHAR_PTR) "5555", 4), CKR_USER_NOT_LOGGED_IN);
    conf_login_user(rw);
    assert_rv(F->C_InitPIN(rw, (CK_UTF8CHAR_PTR) "5555", 4), CKR_USER_NOT_LOGGED_IN);
    assert_ok(F->C_Logout(rw));
    ro = conf_open(0);
    assert_rv2(F->C_InitPIN(ro, (CK_UTF8CHAR_PTR) "5555", 4), CKR_USER_NOT_LOGGED_IN,
               CKR_SESSION_READ_ONLY);
    assert_ok(F->C_CloseSession(ro));
    assert_rv(F->C_InitPIN(CK_INVALID_HANDLE, (CK_UTF8CHAR_PTR) "5555", 4),
              CKR_SESSION_HANDLE_INVALID);

    conf_login_so(rw);
    assert_ok(F->C_InitPIN(rw, (CK_UTF8CHAR_PTR) "5555", 4));
    assert_ok(F->C_Logout(rw));
    assert_rv(F->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR)CONF_USER_PIN, strlen(CONF_USER_PIN)),
              CKR_PIN_INCORRECT);
    assert_ok(F->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR) "5555", 4));
    assert_ok(F->C_CloseSession(rw));
}

static void
t_set_pin(void **state)
{
    CK_SESSION_HANDLE ro, rw;
    CK_UTF8CHAR_PTR up = (CK_UTF8CHAR_PTR)CONF_USER_PIN, sp = (CK_UTF8CHAR_PTR)CONF_SO_PIN;

    (void)state;
    ro = conf_open(0);
    assert_rv(F->C_SetPIN(ro, up, 4, (CK_UTF8CHAR_PTR) "4321", 4), CKR_SESSION_READ_ONLY);
    assert_ok(F->C_CloseSession(ro));

    rw = conf_open(CKF_RW_SESSION);
    assert_rv(F->C_SetPIN(rw, (CK_UTF8CHAR_PTR) "9999", 4, (CK_UTF8CHAR_PTR) "4321", 4),
              CKR_PIN_INCORRECT);
    /* Public R/W session: changes the user PIN (2.40 section 5.6). */
    assert_ok(F->C_SetPIN(rw, up, 4, (CK_UTF8CHAR_PTR) "4321", 4));
    assert_rv(F->C_Login(rw, CKU_USER, up, 4), CKR_PIN_INCORRECT);
    assert_ok(F->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR) "4321", 4));
    /* User session: the user PIN again. */
    assert_ok(F->C_SetPIN(rw, (CK_UTF8CHAR_PTR) "4321", 4, (CK_UTF8CHAR_PTR) "24680", 5));
    assert_ok(F->C_Logout(rw));
    assert_ok(F->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR) "24680", 5));
    assert_ok(F->C_Logout(rw));

    /* SO session: the SO PIN. */
    conf_login_so(rw);
    assert_ok(F->C_SetPIN(rw, sp, 8, (CK_UTF8CHAR_PTR) "abcdefgh", 8));
    assert_ok(F->C_Logout(rw));
    assert_rv(F->C_Login(rw, CKU_SO, sp, 8), CKR_PIN_INCORRECT);
    assert_ok(F->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR) "abcdefgh", 8));
    assert_ok(F->C_Logout(rw));
    /* The new PINs persist. */
    assert_ok(F->C_CloseSession(rw));
    conf_reinit();
    E.slot = conf_slot_by_label(CONF_LABEL);
    rw = conf_open(CKF_RW_SESSION);
    assert_ok(F->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR) "24680", 5));
    assert_ok(F->C_CloseSession(rw));
}

struct conf_group
conf_slot_tests(void)
{
    static const struct CMUnitTest tests[] = {
        CONF_TEST_INIT(t_slot_list_protocol), CONF_TEST_TOKEN(t_slot_info),
        CONF_TEST_TOKEN(t_token_info),        CONF_TEST_TOKEN(t_mechanism_list),
        CONF_TEST_INIT(t_init_token_flow),    CONF_TEST_TOKEN(t_init_token_reinit),
        CONF_TEST_TOKEN(t_init_pin_rules),    CONF_TEST_TOKEN(t_set_pin),
    };
    struct conf_group g = {"slot", tests, sizeof(tests) / sizeof(tests[0])};
    return g;
}
