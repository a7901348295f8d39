/*
 * t_session.c — sessions and the login state machine: C_OpenSession,
 * C_CloseSession, C_CloseAllSessions, C_GetSessionInfo, C_Login, C_Logout,
 * PIN failure counting. PKCS#11 2.40 sections 5.6, 5.7 and 6.7.
 */
#include <string.h>

#include "conf.h"

static CK_RV
login(CK_SESSION_HANDLE h, CK_USER_TYPE u, const char *pin)
{
    return F->C_Login(h, u, (CK_UTF8CHAR_PTR)pin, strlen(pin));
}

static void
t_open_session_args(void **state)
{
    CK_SESSION_HANDLE h;

    (void)state;
    /* 2.40 section 5.6: CKF_SERIAL_SESSION must be set. */
    assert_rv(F->C_OpenSession(E.slot, 0, NULL, NULL, &h), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    assert_rv(F->C_OpenSession(E.slot, CKF_RW_SESSION, NULL, NULL, &h),
              CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    assert_rv(F->C_OpenSession(E.slot, CKF_SERIAL_SESSION, NULL, NULL, NULL), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_OpenSession(conf_invalid_slot(), CKF_SERIAL_SESSION, NULL, NULL, &h),
              CKR_SLOT_ID_INVALID);
    /* A token that is not initialised cannot hold sessions. */
    assert_rv(F->C_OpenSession(conf_free_slot(), CKF_SERIAL_SESSION, NULL, NULL, &h),
              CKR_TOKEN_NOT_RECOGNIZED);

    h = CK_INVALID_HANDLE;
    assert_ok(F->C_OpenSession(E.slot, CKF_SERIAL_SESSION, NULL, NULL, &h));
    assert_true(h != CK_INVALID_HANDLE);
    assert_ok(F->C_CloseSession(h));
}

static void
t_close_session(void **state)
{
    CK_SESSION_HANDLE a, b, c;
    CK_SESSION_INFO si;
    CK_TOKEN_INFO ti;

    (void)state;
    assert_rv(F->C_CloseSession(CK_INVALID_HANDLE), CKR_SESSION_HANDLE_INVALID);
    a = conf_open(0);
    b = conf_open(CKF_RW_SESSION);
    c = conf_open(0);
    assert_true(a != b && b != c && a != c);
    assert_ok(F->C_CloseSession(a));
    assert_rv(F->C_CloseSession(a), CKR_SESSION_HANDLE_INVALID);
    assert_rv(F->C_GetSessionInfo(a, &si), CKR_SESSION_HANDLE_INVALID);
    assert_ok(F->C_GetSessionInfo(b, &si));

    assert_rv(F->C_CloseAllSessions(conf_invalid_slot()), CKR_SLOT_ID_INVALID);
    assert_ok(F->C_CloseAllSessions(E.slot));
    assert_rv(F->C_GetSessionInfo(b, &si), CKR_SESSION_HANDLE_INVALID);
    assert_rv(F->C_GetSessionInfo(c, &si), CKR_SESSION_HANDLE_INVALID);
    assert_rv(F->C_CloseSession(b), CKR_SESSION_HANDLE_INVALID);
    assert_ok(F->C_GetTokenInfo(E.slot, &ti));
    assert_session_count(ti.ulSessionCount, 0);
    assert_session_count(ti.ulRwSessionCount, 0);
    /* Nothing left to close is fine. */
    assert_ok(F->C_CloseAllSessions(E.slot));
}

static void
t_session_info_states(void **state)
{
    CK_SESSION_HANDLE ro, rw;
    CK_SESSION_INFO si;

    (void)state;
    ro = conf_open(0);
    rw = conf_open(CKF_RW_SESSION);
    assert_rv(F->C_GetSessionInfo(ro, NULL), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_GetSessionInfo(CK_INVALID_HANDLE, &si), CKR_SESSION_HANDLE_INVALID);

    assert_ok(F->C_GetSessionInfo(ro, &si));
    assert_int_equal(si.slotID, E.slot);
    assert_int_equal(si.state, CKS_RO_PUBLIC_SESSION);
    assert_true(si.flags & CKF_SERIAL_SESSION);
    assert_false(si.flags & CKF_RW_SESSION);
    assert_ok(F->C_GetSessionInfo(rw, &si));
    assert_int_equal(si.state, CKS_RW_PUBLIC_SESSION);
    assert_true(si.flags & CKF_RW_SESSION);

    /* User login applies to every session of the application. */
    conf_login_user(ro);
    assert_int_equal(conf_session_state(ro), CKS_RO_USER_FUNCTIONS);
    assert_int_equal(conf_session_state(rw), CKS_RW_USER_FUNCTIONS);
    /* A session opened while logged in starts logged in. */
    CK_SESSION_HANDLE later = conf_open(0);
    assert_int_equal(conf_session_state(later), CKS_RO_USER_FUNCTIONS);
    assert_ok(F->C_Logout(rw));
    assert_int_equal(conf_session_state(ro), CKS_RO_PUBLIC_SESSION);
    assert_int_equal(conf_session_state(rw), CKS_RW_PUBLIC_SESSION);
    assert_int_equal(conf_session_state(later), CKS_RO_PUBLIC_SESSION);
    assert_ok(F->C_CloseSession(ro));
    assert_ok(F->C_CloseSession(later));

    /* SO: only with R/W sessions. */
    conf_login_so(rw);
    assert_int_equal(conf_session_state(rw), CKS_RW_SO_FUNCTIONS);
    CK_SESSION_HANDLE rw2 = conf_open(CKF_RW_SESSION);
    assert_int_equal(conf_session_state(rw2), CKS_RW_SO_FUNCTIONS);
    assert_ok(F->C_Logout(rw2));
    assert_int_equal(conf_session_state(rw), CKS_RW_PUBLIC_SESSION);
    assert_ok(F->C_CloseSession(rw2));
    assert_ok(F->C_CloseSession(rw));
}

static void
t_login_state_machine(void **state)
{
    CK_SESSION_HANDLE a, b, ro;

    (void)state;
    a = conf_open(CKF_RW_SESSION);
    b = conf_open(CKF_RW_SESSION);
    assert_logout_not_logged_in(a);
    assert_rv(login(CK_INVALID_HANDLE, CKU_USER, CONF_USER_PIN), CKR_SESSION_HANDLE_INVALID);
    assert_rv(login(a, 42, CONF_USER_PIN), CKR_USER_TYPE_INVALID);
    assert_rv(login(a, CKU_USER, "0000"), CKR_PIN_INCORRECT);
    assert_rv(login(a, CKU_SO, "00000000"), CKR_PIN_INCORRECT);
    assert_int_equal(conf_session_state(a), CKS_RW_PUBLIC_SESSION);

    /* User logged in: again (any session) / the SO. */
    conf_login_user(a);
    assert_rv(login(a, CKU_USER, CONF_USER_PIN), CKR_USER_ALREADY_LOGGED_IN);
    assert_rv(login(b, CKU_USER, CONF_USER_PIN), CKR_USER_ALREADY_LOGGED_IN);
    assert_rv(login(b, CKU_SO, CONF_SO_PIN), CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
    /* Logout in another session than the login's: the login is shared. */
    assert_ok(F->C_Logout(b));
    assert_logout_not_logged_in(a);

    /* SO logged in: again / the user / an R/O session. */
    conf_login_so(b);
    assert_rv(login(a, CKU_SO, CONF_SO_PIN), CKR_USER_ALREADY_LOGGED_IN);
    assert_rv(login(a, CKU_USER, CONF_USER_PIN), CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
    assert_rv(F->C_OpenSession(E.slot, CKF_SERIAL_SESSION, NULL, NULL, &ro),
              CKR_SESSION_READ_WRITE_SO_EXISTS);
    assert_ok(F->C_Logout(a));

    /* An R/O session open: no SO login. */
    ro = conf_open(0);
    assert_rv(login(a, CKU_SO, CONF_SO_PIN), CKR_SESSION_READ_ONLY_EXISTS);
    assert_rv(login(ro, CKU_SO, CONF_SO_PIN), CKR_SESSION_READ_ONLY_EXISTS);
    /* ...but the user may log in from the R/O session. */
    conf_login_user(ro);
    assert_int_equal(conf_session_state(a), CKS_RW_USER_FUNCTIONS);
    assert_ok(F->C_Logout(ro));
    assert_ok(F->C_CloseSession(ro));
    /* With the R/O session gone the SO may log in again. */
    conf_login_so(a);
    assert_ok(F->C_Logout(a));
    assert_ok(F->C_CloseSession(a));
    assert_ok(F->C_CloseSession(b));
}

static void
t_close_logs_out(void **state)
{
    CK_SESSION_HANDLE a, b;

    (void)state;
    /* Closing the last session logs the token out (2.40 section 5.6,
     * C_CloseSession). */
    a = conf_open(CKF_RW_SESSION);
    conf_login_user(a);
    assert_ok(F->C_CloseSession(a));
    a = conf_open(CKF_RW_SESSION);
    assert_int_equal(conf_session_state(a), CKS_RW_PUBLIC_SESSION);
    assert_logout_not_logged_in(a);

    /* So does C_CloseAllSessions. */
    b = conf_open(0);
    conf_login_user(b);
    assert_int_equal(conf_session_state(a), CKS_RW_USER_FUNCTIONS);
    assert_ok(F->C_CloseAllSessions(E.slot));
    a = conf_open(0);
    assert_int_equal(conf_session_state(a), CKS_RO_PUBLIC_SESSION);
    conf_login_user(a); /* not CKR_USER_ALREADY_LOGGED_IN */
    assert_ok(F->C_CloseSession(a));

    /* Closing one of two sessions keeps the login. */
    a = conf_open(CKF_RW_SESSION);
    b = conf_open(CKF_RW_SESSION);
    conf_login_user(a);
    assert_ok(F->C_CloseSession(a));
    assert_int_equal(conf_session_state(b), CKS_RW_USER_FUNCTIONS);
    assert_ok(F->C_CloseSession(b));

    /* And C_Finalize. */
    a = conf_open(CKF_RW_SESSION);
    conf_login_so(a);
    conf_reinit();
    E.slot = conf_slot_by_label(CONF_LABEL);
    a = conf_open(CKF_RW_SESSION);
    assert_int_equal(conf_session_state(a), CKS_RW_PUBLIC_SESSION);
}

static void
t_pin_lockout(void **state)
{
    CK_SESSION_HANDLE h;
    CK_FLAGS fl;
    CK_RV rv;
    int i;

    (void)state;
    if (!is_evertoken())
        skip(); /* SoftHSMv2 counts no PIN failures and never locks a PIN */

    /* evertoken: 10 tries. 1..8 failures: COUNT_LOW; 9: FINAL_TRY; 10: LOCKED. */
    h = conf_open(CKF_RW_SESSION);
    assert_false(conf_token_flags() &
                 (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED));
    assert_rv(login(h, CKU_USER, "0000"), CKR_PIN_INCORRECT);
    fl = conf_token_flags();
    assert_true(fl & CKF_USER_PIN_COUNT_LOW);
    assert_false(fl & (CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED));
    /* A good login resets the counter. */
    conf_login_user(h);
    assert_ok(F->C_Logout(h));
    assert_false(conf_token_flags() & CKF_USER_PIN_COUNT_LOW);

    for (i = 1; i <= 8; i++)
        assert_rv(login(h, CKU_USER, "0000"), CKR_PIN_INCORRECT);
    fl = conf_token_flags();
    assert_true(fl & CKF_USER_PIN_COUNT_LOW);
    assert_false(fl & (CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED));
    assert_rv(login(h, CKU_USER, "0000"), CKR_PIN_INCORRECT);
    fl = conf_token_flags();
    assert_true(fl & CKF_USER_PIN_FINAL_TRY);
    assert_false(fl & CKF_USER_PIN_LOCKED);
    /* The tenth failure locks; the wrong PIN may already say so. */
    assert_rv2(login(h, CKU_USER, "0000"), CKR_PIN_INCORRECT, CKR_PIN_LOCKED);
    assert_true(conf_token_flags() & CKF_USER_PIN_LOCKED);
    /* Locked: even the right PIN is refused, and so is C_SetPIN. */
    assert_rv(login(h, CKU_USER, CONF_USER_PIN), CKR_PIN_LOCKED);
    rv = F->C_SetPIN(h, (CK_UTF8CHAR_PTR)CONF_USER_PIN, 4, (CK_UTF8CHAR_PTR) "5678", 4);
    assert_rv(rv, CKR_PIN_LOCKED);

    /* The lock is persistent. */
    conf_reinit();
    E.slot = conf_slot_by_label(CONF_LABEL);
    assert_true(conf_token_flags() & CKF_USER_PIN_LOCKED);
    h = conf_open(CKF_RW_SESSION);
    assert_rv(login(h, CKU_USER, CONF_USER_PIN), CKR_PIN_LOCKED);

    /* The SO's C_InitPIN unlocks. */
    conf_login_so(h);
    assert_ok(F->C_InitPIN(h, (CK_UTF8CHAR_PTR) "5678", 4));
    assert_ok(F->C_Logout(h));
    fl = conf_token_flags();
    assert_false(fl & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED));
    assert_ok(login(h, CKU_USER, "5678"));
    assert_ok(F->C_CloseSession(h));
}

static void
t_so_pin_count(void **state)
{
    CK_SESSION_HANDLE h;

    (void)state;
    if (!is_evertoken())
        skip(); /* SoftHSMv2 counts no PIN failures */
    h = conf_open(CKF_RW_SESSION);
    assert_rv(login(h, CKU_SO, "00000000"), CKR_PIN_INCORRECT);
    assert_true(conf_token_flags() & CKF_SO_PIN_COUNT_LOW);
    conf_login_so(h);
    assert_false(conf_token_flags() & CKF_SO_PIN_COUNT_LOW);
    assert_ok(F->C_CloseSession(h));
}

struct conf_group
conf_session_tests(void)
{
    static const struct CMUnitTest tests[] = {
        CONF_TEST_TOKEN(t_open_session_args),   CONF_TEST_TOKEN(t_close_session),
        CONF_TEST_TOKEN(t_session_info_states), CONF_TEST_TOKEN(t_login_state_machine),
        CONF_TEST_TOKEN(t_close_logs_out),      CONF_TEST_TOKEN(t_pin_lockout),
        CONF_TEST_TOKEN(t_so_pin_count),
    };
    struct conf_group g = {"session", tests, sizeof(tests) / sizeof(tests[0])};
    return g;
}
