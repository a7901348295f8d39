/*
 * test_ks_logincache.c — the keystore side of the login cache: exporting the
 * TMK after a user login, ks_login_tmk (wrong key, locked PIN, stale PIN
 * generation, tampered generation, re-initialised token) and authenticated
 * settings.
 */
#include "test_ks_util.h"

#define NEW_PIN "user-5678"

/* Log F's token in as the user and export its TMK and generation. */
static void
export_user(ks_token *tok, unsigned char tmk[KS_TMK_LEN], uint64_t *gen)
{
    assert_int_equal(ks_login(tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_export_tmk(tok, tmk, gen), KS_OK);
    ks_logout(tok);
}

static unsigned
user_fails(ks_token *tok)
{
    ks_info info;

    assert_int_equal(ks_get_info(tok, &info), KS_OK);
    return info.user_fail_count;
}

static void
test_export_needs_user_login(void **state)
{
    struct ks_fixture *f = *state;
    unsigned char tmk[KS_TMK_LEN];
    uint64_t gen = 99;

    assert_int_equal(ks_export_tmk(f->tok, tmk, &gen), KS_E_NOT_LOGGED_IN);
    assert_int_equal(gen, 0);
    /* The SO's login unwraps the same TMK but is no user login. */
    assert_int_equal(ks_login(f->tok, KS_SO, PIN(SO_PIN)), KS_OK);
    assert_int_equal(ks_export_tmk(f->tok, tmk, &gen), KS_E_NOT_LOGGED_IN);
    ks_logout(f->tok);
    assert_int_equal(ks_export_tmk(NULL, tmk, &gen), KS_E_ARGS);
    assert_int_equal(ks_export_tmk(f->tok, NULL, &gen), KS_E_ARGS);
}

static void
test_login_with_tmk(void **state)
{
    struct ks_fixture *f = *state;
    unsigned char tmk[KS_TMK_LEN], again[KS_TMK_LEN];
    ks_attr a = {0x11 /* CKA_VALUE */, 6, (unsigned char *)"secret"};
    struct seen seen;
    ks_token *t2 = NULL;
    uint64_t gen = 0, gen2 = 0;
    int64_t id;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_object_create(f->tok, 1, &a, 1, &id), KS_OK);
    assert_int_equal(ks_export_tmk(f->tok, tmk, &gen), KS_OK);
    /* The fixture set the user PIN once (ks_init_user_pin): generation 1. */
    assert_int_equal(gen, 1);
    ks_logout(f->tok);

    /* Another handle (another process) logs in with the key alone. */
    assert_int_equal(ks_open(f->path, &t2), KS_OK);
    assert_int_equal(ks_login_tmk(t2, tmk, sizeof(tmk), gen), KS_OK);
    assert_true(ks_logged_in(t2));
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(ks_load_objects(t2, seen_cb, &seen, NULL), KS_OK);
    assert_int_equal(seen.count, 1);
    assert_true(seen.is_private[0]);
    assert_memory_equal(seen.value[0], "secret", 6);
    /* A login from the cache can be exported again (it is a user login). */
    assert_int_equal(ks_export_tmk(t2, again, &gen2), KS_OK);
    assert_memory_equal(again, tmk, KS_TMK_LEN);
    assert_int_equal(gen2, gen);
    ks_logout(t2);
    assert_false(ks_logged_in(t2));
    ks_close(t2);

    assert_int_equal(ks_login_tmk(f->tok, tmk, sizeof(tmk) - 1, gen), KS_E_ARGS);
    assert_int_equal(ks_login_tmk(f->tok, NULL, KS_TMK_LEN, gen), KS_E_ARGS);
    assert_int_equal(ks_login_tmk(NULL, tmk, KS_TMK_LEN, gen), KS_E_ARGS);
    sodium_memzero(tmk, sizeof(tmk));
    sodium_memzero(again, sizeof(again));
}

static void
test_wrong_key_refused(void **state)
{
    struct ks_fixture *f = *state;
    unsigned char tmk[KS_TMK_LEN];
    uint64_t gen = 0;

    export_user(f->tok, tmk, &gen);
    tmk[7] ^= 0x01;
    assert_int_equal(ks_login_tmk(f->tok, tmk, sizeof(tmk), gen), KS_E_PIN_INCORRECT);
    assert_false(ks_logged_in(f->tok));
    randombytes_buf(tmk, sizeof(tmk));
    assert_int_equal(ks_login_tmk(f->tok, tmk, sizeof(tmk), gen), KS_E_PIN_INCORRECT);
    assert_non_null(strstr(ks_last_error(f->tok), "does not open this token"));
    /* Not a PIN guess: nothing counted. */
    assert_int_equal(user_fails(f->tok), 0);
}

static void
test_locked_pin_refused(void **state)
{
    struct ks_fixture *f = *state;
    unsigned char tmk[KS_TMK_LEN];
    uint64_t gen = 0, gen2 = 0;

    export_user(f->tok, tmk, &gen);
    assert_int_equal(ks_login(f->tok, KS_SO, PIN(SO_PIN)), KS_OK);
    assert_int_equal(ks_set_max_attempts(f->tok, 3), KS_OK);
    ks_logout(f->tok);
    /* Fewer failures than the limit: the cached key still works. */
    assert_int_equal(ks_login(f->tok, KS_USER, PIN("wrong-pin")), KS_E_PIN_INCORRECT);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN("wrong-pin")), KS_E_PIN_INCORRECT);
    assert_int_equal(ks_login_tmk(f->tok, tmk, sizeof(tmk), gen), KS_OK);
    ks_logout(f->tok);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN("wrong-pin")), KS_E_PIN_INCORRECT);
    assert_int_equal(user_fails(f->tok), 3);
    /* Locked: the right key is refused too. */
    assert_int_equal(ks_login_tmk(f->tok, tmk, sizeof(tmk), gen), KS_E_PIN_LOCKED);
    assert_false(ks_logged_in(f->tok));

    /* The SO's reset (C_InitPIN) unlocks but moves the generation on: the
     * key cached under the old PIN stays refused. */
    assert_int_equal(ks_login(f->tok, KS_SO, PIN(SO_PIN)), KS_OK);
    assert_int_equal(ks_init_user_pin(f->tok, PIN(NEW_PIN)), KS_OK);
    ks_logout(f->tok);
    assert_int_equal(ks_login_tmk(f->tok, tmk, sizeof(tmk), gen), KS_E_PIN_INCORRECT);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(NEW_PIN)), KS_OK);
    assert_int_equal(ks_export_tmk(f->tok, tmk, &gen2), KS_OK);
    assert_int_equal(gen2, gen + 1);
    ks_logout(f->tok);
    assert_int_equal(ks_login_tmk(f->tok, tmk, sizeof(tmk), gen2), KS_OK);
}

static void
test_generation_mismatch_refused(void **state)
{
    struct ks_fixture *f = *state;
    unsigned char tmk[KS_TMK_LEN], tmk2[KS_TMK_LEN];
    ks_token *other = NULL;
    uint64_t gen = 0, gen2 = 0;

    /* This handle logs in (generation 1), another process changes the PIN. */
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_export_tmk(f->tok, tmk, &gen), KS_OK);
    assert_int_equal(ks_open(f->path, &other), KS_OK);
    assert_int_equal(ks_set_pin(other, KS_USER, PIN(USER_PIN), PIN(NEW_PIN)), KS_OK);

    /* The TMK itself did not change, but its cached entry is stale. */
    assert_int_equal(ks_login_tmk(other, tmk, sizeof(tmk), gen), KS_E_PIN_INCORRECT);
    assert_non_null(strstr(ks_last_error(other), "stale"));
    assert_false(ks_logged_in(other));
    /* Nor can the handle logged in before the change export it again. */
    assert_int_equal(ks_export_tmk(f->tok, tmk2, &gen2), KS_E_NOT_LOGGED_IN);
    /* A newer generation than the token's is refused as well. */
    assert_int_equal(ks_login_tmk(other, tmk, sizeof(tmk), gen + 2), KS_E_PIN_INCORRECT);

    /* A login with the new PIN gives the new generation, which works. */
    assert_int_equal(ks_login(other, KS_USER, PIN(NEW_PIN)), KS_OK);
    assert_int_equal(ks_export_tmk(other, tmk2, &gen2), KS_OK);
    assert_int_equal(gen2, gen + 1);
    assert_memory_equal(tmk2, tmk, KS_TMK_LEN);
    ks_logout(other);
    assert_int_equal(ks_login_tmk(other, tmk2, sizeof(tmk2), gen2), KS_OK);

    /* Changing the SO PIN does not touch the user's generation. */
    assert_int_equal(ks_set_pin(other, KS_SO, PIN(SO_PIN), PIN("so-secret-2")), KS_OK);
    ks_logout(other);
    assert_int_equal(ks_login_tmk(other, tmk2, sizeof(tmk2), gen2), KS_OK);
    ks_close(other);
}

static void
test_generation_tamper(void **state)
{
    struct ks_fixture *f = *state;
    unsigned char tmk[KS_TMK_LEN];
    uint64_t gen = 0;
    char sql[200];

    export_user(f->tok, tmk, &gen);
    /* Only the keystore writes its own settings. */
    assert_int_equal(ks_set_setting(f->tok, "ks.user_pin_generation", "7"), KS_E_ARGS);
    assert_int_equal(ks_set_setting(f->tok, "ks.anything", "x"), KS_E_ARGS);
    /* Someone with write access to the file rolls the counter: its MAC no
     * longer matches, so neither the old nor the forged number is accepted. */
    snprintf(sql, sizeof(sql),
             "UPDATE settings SET value = '%llu' WHERE key = 'ks.user_pin_generation'",
             (unsigned long long)gen + 5);
    raw_exec(f->path, sql);
    assert_int_equal(ks_login_tmk(f->tok, tmk, sizeof(tmk), gen + 5), KS_E_TAMPERED);
    assert_int_equal(ks_login_tmk(f->tok, tmk, sizeof(tmk), gen), KS_E_TAMPERED);
    assert_false(ks_logged_in(f->tok));
    /* Deleting the row (generation 0) does not help either. */
    raw_exec(f->path, "DELETE FROM settings WHERE key = 'ks.user_pin_generation'");
    assert_int_equal(ks_login_tmk(f->tok, tmk, sizeof(tmk), gen), KS_E_PIN_INCORRECT);
}

static void
test_reinit_refuses_old_key(void **state)
{
    struct ks_fixture *f = *state;
    unsigned char tmk[KS_TMK_LEN];
    uint64_t gen = 0;

    export_user(f->tok, tmk, &gen);
    assert_int_equal(ks_reinit(f->tok, PIN(SO_PIN), "again"), KS_OK);
    assert_int_equal(ks_login(f->tok, KS_SO, PIN(SO_PIN)), KS_OK);
    assert_int_equal(ks_init_user_pin(f->tok, PIN(USER_PIN)), KS_OK);
    ks_logout(f->tok);
    /* The generation restarted at 1 but the TMK is new. */
    assert_int_equal(ks_login_tmk(f->tok, tmk, sizeof(tmk), gen), KS_E_PIN_INCORRECT);
    assert_non_null(strstr(ks_last_error(f->tok), "does not open this token"));
}

static void
test_pin_not_initialised(void **state)
{
    struct ks_fixture *f = *state;
    unsigned char tmk[KS_TMK_LEN];
    char path[400];
    ks_token *t = NULL;

    snprintf(path, sizeof(path), "%s/token-1.db", f->dir);
    assert_int_equal(ks_create(path, "fresh", PIN(SO_PIN), &test_kdf, &t), KS_OK);
    randombytes_buf(tmk, sizeof(tmk));
    assert_int_equal(ks_login_tmk(t, tmk, sizeof(tmk), 0), KS_E_PIN_NOT_INITIALIZED);
    ks_close(t);
}

static void
test_setting_auth(void **state)
{
    struct ks_fixture *f = *state;
    char *v = NULL;
    int auth = -1;

    /* Written without a login: readable, never authenticated. */
    assert_int_equal(ks_set_setting(f->tok, "login_cache", "user:60"), KS_OK);
    assert_int_equal(ks_get_setting_auth(f->tok, "login_cache", &v, &auth), KS_OK);
    assert_string_equal(v, "user:60");
    assert_int_equal(auth, 0);
    free(v);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_get_setting_auth(f->tok, "login_cache", &v, &auth), KS_OK);
    assert_int_equal(auth, 0);
    free(v);
    /* Written while logged in: authenticated when read logged in. */
    assert_int_equal(ks_set_setting(f->tok, "login_cache", "user:30"), KS_OK);
    assert_int_equal(ks_get_setting_auth(f->tok, "login_cache", &v, &auth), KS_OK);
    assert_string_equal(v, "user:30");
    assert_int_equal(auth, 1);
    free(v);
    ks_logout(f->tok);
    assert_int_equal(ks_get_setting_auth(f->tok, "login_cache", &v, &auth), KS_OK);
    assert_int_equal(auth, 0);
    free(v);
    /* A forged value under the old MAC fails once logged in. */
    raw_exec(f->path, "UPDATE settings SET value = 'user:99999' WHERE key = 'login_cache'");
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_get_setting_auth(f->tok, "login_cache", &v, &auth), KS_E_TAMPERED);
    assert_null(v);
    assert_int_equal(auth, 0);
    assert_int_equal(ks_get_setting_auth(f->tok, "login_cache", &v, NULL), KS_E_ARGS);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_export_needs_user_login, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_login_with_tmk, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_key_refused, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_locked_pin_refused, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_generation_mismatch_refused, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_generation_tamper, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_reinit_refuses_old_key, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_pin_not_initialised, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_setting_auth, fixture_setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
