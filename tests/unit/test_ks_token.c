/*
 * test_ks_token.c — token lifecycle, PINs, lockout, info, settings, reinit.
 */
#include "test_ks_util.h"

#include <pthread.h>
#include <sys/stat.h>

static void
test_create_open_close(void **state)
{
    struct ks_fixture *f = *state;
    ks_token *t2 = NULL;
    ks_info a, b;
    struct stat st;
    char *p;

    assert_int_equal(ks_get_info(f->tok, &a), KS_OK);
    assert_string_equal(a.label, "test token");
    assert_int_equal(strlen(a.serial), KS_SERIAL_LEN);
    assert_true(a.user_pin_initialized);
    assert_int_equal(a.max_attempts, KS_MAX_ATTEMPTS);
    assert_int_equal(a.kdf.opslimit, test_kdf.opslimit);
    assert_int_equal(a.kdf.memlimit, test_kdf.memlimit);
    assert_int_equal(a.schema_version, KS_SCHEMA_VERSION);
    assert_int_equal(a.object_count, 0);
    assert_string_equal(ks_path(f->tok), f->path);

    /* The file is 0600, its side files not group/world readable. */
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(asprintf(&p, "%s-wal", f->path) > 0, 1);
    if (stat(p, &st) == 0)
        assert_int_equal(st.st_mode & 077, 0);
    free(p);

    assert_int_equal(ks_open(f->path, &t2), KS_OK);
    assert_int_equal(ks_get_info(t2, &b), KS_OK);
    assert_memory_equal(a.token_id, b.token_id, KS_TOKEN_ID_LEN);
    assert_string_equal(a.serial, b.serial);
    assert_int_equal(ks_logged_in(t2), 0);
    assert_int_equal(ks_login(t2, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_logged_in(t2), 1);
    ks_logout(t2);
    assert_int_equal(ks_logged_in(t2), 0);
    ks_close(t2);
    ks_close(NULL);

    /* Creating over an existing file is refused. */
    assert_int_equal(ks_create(f->path, "x", PIN(SO_PIN), &test_kdf, &t2), KS_E_EXISTS);
    assert_null(t2);
}

static void
test_create_args(void **state)
{
    struct ks_fixture *f = *state;
    ks_kdf_params low = {crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN - 1};
    ks_token *t = NULL;
    char path[400];
    struct stat st;

    snprintf(path, sizeof(path), "%s/sub/dir/token-1.db", f->dir);
    assert_int_equal(ks_create(path, "x", (const unsigned char *)"123", 3, &test_kdf, &t),
                     KS_E_PIN_LEN);
    assert_int_equal(
        ks_create(path, "a label that is much longer than 32 bytes", PIN(SO_PIN), &test_kdf, &t),
        KS_E_ARGS);
    assert_int_equal(ks_create(path, "bad\xff", PIN(SO_PIN), &test_kdf, &t), KS_E_ARGS);
    assert_int_equal(ks_create(path, "x", PIN(SO_PIN), &low, &t), KS_E_ARGS);
    assert_int_equal(ks_create(NULL, "x", PIN(SO_PIN), &test_kdf, &t), KS_E_ARGS);
    assert_int_equal(ks_create(path, "x", PIN(SO_PIN), &test_kdf, NULL), KS_E_ARGS);
    /* Missing directories are created 0700; UTF-8 labels are fine. */
    assert_int_equal(ks_create(path, "caf\xc3\xa9", PIN(SO_PIN), &test_kdf, &t), KS_OK);
    snprintf(path, sizeof(path), "%s/sub/dir", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    ks_close(t);
}

static void
test_user_pin_uninitialised(void **state)
{
    struct ks_fixture *f = *state;
    ks_token *t = NULL;
    ks_info info;
    char path[400];

    snprintf(path, sizeof(path), "%s/token-9.db", f->dir);
    assert_int_equal(ks_create(path, "fresh", PIN(SO_PIN), &test_kdf, &t), KS_OK);
    assert_int_equal(ks_get_info(t, &info), KS_OK);
    assert_false(info.user_pin_initialized);
    assert_int_equal(ks_login(t, KS_USER, PIN(USER_PIN)), KS_E_PIN_NOT_INITIALIZED);
    assert_int_equal(ks_init_user_pin(t, PIN(USER_PIN)), KS_E_NOT_LOGGED_IN);
    assert_int_equal(ks_login(t, KS_SO, PIN(SO_PIN)), KS_OK);
    assert_int_equal(ks_init_user_pin(t, (const unsigned char *)"12", 2), KS_E_PIN_LEN);
    ks_close(t);
}

static void
test_wrong_pin(void **state)
{
    struct ks_fixture *f = *state;
    ks_info info;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN("wrong-pin")), KS_E_PIN_INCORRECT);
    assert_int_equal(ks_logged_in(f->tok), 0);
    assert_non_null(strstr(ks_last_error(f->tok), "wrong user PIN"));
    assert_non_null(strstr(ks_last_error(f->tok), ".c:")); /* file:line prefix */
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.user_fail_count, 1);
    assert_int_equal(info.so_fail_count, 0);
    assert_int_equal(ks_login(f->tok, KS_SO, PIN("wrong-pin")), KS_E_PIN_INCORRECT);
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.so_fail_count, 1);
    /* The SO PIN does not open the user's wrap and vice versa. */
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(SO_PIN)), KS_E_PIN_INCORRECT);
    assert_int_equal(ks_login(f->tok, KS_SO, PIN(USER_PIN)), KS_E_PIN_INCORRECT);
    /* Success resets the counter of that PIN. */
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.user_fail_count, 0);
    assert_int_equal(info.so_fail_count, 2);
    assert_int_equal(ks_login(f->tok, KS_SO, PIN(SO_PIN)), KS_OK);
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.so_fail_count, 0);
    /* Length checks come first and are not counted. */
    assert_int_equal(ks_login(f->tok, KS_USER, (const unsigned char *)"1", 1), KS_E_PIN_LEN);
    assert_int_equal(ks_login(f->tok, 7, PIN(USER_PIN)), KS_E_ARGS);
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.user_fail_count, 0);
}

static int
collect_first_value(void *ctx, const ks_object *o)
{
    char *out = ctx;

    memcpy(out, o->attrs[0].value, o->attrs[0].len);
    out[o->attrs[0].len] = '\0';
    return 0;
}

static void
test_pin_change_keeps_objects(void **state)
{
    struct ks_fixture *f = *state;
    ks_attr a = {1, 6, (unsigned char *)"secret"};
    ks_attr b = {3, 6, (unsigned char *)"public"};
    int64_t id1, id2;
    char buf[32];

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_object_create(f->tok, 1, &a, 1, &id1), KS_OK);
    assert_int_equal(ks_object_create(f->tok, 0, &b, 1, &id2), KS_OK);
    ks_logout(f->tok);

    assert_int_equal(ks_set_pin(f->tok, KS_USER, PIN("bad-old-pin"), PIN("new-user-pin")),
                     KS_E_PIN_INCORRECT);
    assert_int_equal(ks_set_pin(f->tok, KS_USER, PIN(USER_PIN), PIN("12")), KS_E_PIN_LEN);
    assert_int_equal(ks_set_pin(f->tok, KS_USER, PIN(USER_PIN), PIN("new-user-pin")), KS_OK);
    assert_int_equal(ks_set_pin(f->tok, KS_SO, PIN(SO_PIN), PIN("new-so-pin")), KS_OK);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_E_PIN_INCORRECT);
    assert_int_equal(ks_login(f->tok, KS_SO, PIN(SO_PIN)), KS_E_PIN_INCORRECT);
    assert_int_equal(ks_login(f->tok, KS_SO, PIN("new-so-pin")), KS_OK);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN("new-user-pin")), KS_OK);
    assert_int_equal(ks_object_get(f->tok, id1, collect_first_value, buf), KS_OK);
    assert_string_equal(buf, "secret");
    assert_int_equal(ks_object_get(f->tok, id2, collect_first_value, buf), KS_OK);
    assert_string_equal(buf, "public");

    /* ... also through a fresh handle (nothing cached). */
    ks_close(f->tok);
    assert_int_equal(ks_open(f->path, &f->tok), KS_OK);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN("new-user-pin")), KS_OK);
    assert_int_equal(ks_object_get(f->tok, id1, collect_first_value, buf), KS_OK);
    assert_string_equal(buf, "secret");
}

static void
test_lockout_and_unlock(void **state)
{
    struct ks_fixture *f = *state;
    ks_info info;
    unsigned i;

    assert_int_equal(ks_set_max_attempts(f->tok, 3), KS_E_NOT_LOGGED_IN);
    assert_int_equal(ks_login(f->tok, KS_SO, PIN(SO_PIN)), KS_OK);
    assert_int_equal(ks_set_max_attempts(f->tok, 0), KS_E_ARGS);
    assert_int_equal(ks_set_max_attempts(f->tok, 101), KS_E_ARGS);
    assert_int_equal(ks_set_max_attempts(f->tok, 3), KS_OK);
    ks_logout(f->tok);

    for (i = 0; i < 3; i++)
        assert_int_equal(ks_login(f->tok, KS_USER, PIN("wrong-pin")), KS_E_PIN_INCORRECT);
    /* Locked: even the right PIN is refused, without trying. */
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_E_PIN_LOCKED);
    assert_int_equal(ks_set_pin(f->tok, KS_USER, PIN(USER_PIN), PIN("other-pin")), KS_E_PIN_LOCKED);
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.user_fail_count, 3);
    assert_int_equal(info.max_attempts, 3);

    /* The lock survives close and reopen: it is in the file. */
    ks_close(f->tok);
    assert_int_equal(ks_open(f->path, &f->tok), KS_OK);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_E_PIN_LOCKED);

    /* The SO unlocks by setting a user PIN. */
    assert_int_equal(ks_login(f->tok, KS_SO, PIN(SO_PIN)), KS_OK);
    assert_int_equal(ks_init_user_pin(f->tok, PIN("fresh-user-pin")), KS_OK);
    ks_logout(f->tok);
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.user_fail_count, 0);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN("fresh-user-pin")), KS_OK);

    /* The SO PIN locks the same way. */
    for (i = 0; i < 3; i++)
        assert_int_equal(ks_login(f->tok, KS_SO, PIN("wrong-pin")), KS_E_PIN_INCORRECT);
    assert_int_equal(ks_login(f->tok, KS_SO, PIN(SO_PIN)), KS_E_PIN_LOCKED);
    assert_int_equal(ks_reinit(f->tok, PIN(SO_PIN), "x"), KS_E_PIN_LOCKED);
}

static void
test_default_lockout_counts_before_kdf(void **state)
{
    struct ks_fixture *f = *state;
    ks_info info;
    unsigned i;

    for (i = 0; i < KS_MAX_ATTEMPTS; i++)
        assert_int_equal(ks_login(f->tok, KS_USER, PIN("wrong-pin")), KS_E_PIN_INCORRECT);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_E_PIN_LOCKED);
    /* A counter written by another process (as if this one died during the
     * KDF after counting) is honoured. */
    raw_exec(f->path, "UPDATE pins SET fail_count = 0 WHERE who = 1");
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    raw_exec(f->path, "UPDATE pins SET fail_count = 9 WHERE who = 1");
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.user_fail_count, 9);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN("wrong-pin")), KS_E_PIN_INCORRECT);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_E_PIN_LOCKED);
}

static void
test_settings(void **state)
{
    struct ks_fixture *f = *state;
    char *v = NULL;

    assert_int_equal(ks_get_setting(f->tok, "login_cache", &v), KS_E_NOT_FOUND);
    assert_null(v);
    assert_int_equal(ks_set_setting(f->tok, "", "x"), KS_E_ARGS);
    assert_int_equal(ks_set_setting(f->tok, "k", NULL), KS_E_ARGS);
    /* Logged out: stored without MAC. */
    assert_int_equal(ks_set_setting(f->tok, "plain", "one"), KS_OK);
    assert_int_equal(ks_get_setting(f->tok, "plain", &v), KS_OK);
    assert_string_equal(v, "one");
    free(v);
    /* Logged in: MAC'd, and checked on read while logged in. */
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_set_setting(f->tok, "login_cache", "300"), KS_OK);
    assert_int_equal(ks_set_setting(f->tok, "login_cache", "600"), KS_OK);
    assert_int_equal(ks_get_setting(f->tok, "login_cache", &v), KS_OK);
    assert_string_equal(v, "600");
    free(v);
    assert_int_equal(ks_get_setting(f->tok, "plain", &v), KS_OK);
    free(v);
    raw_exec(f->path, "UPDATE settings SET value = '999999' WHERE key = 'login_cache'");
    assert_int_equal(ks_get_setting(f->tok, "login_cache", &v), KS_E_TAMPERED);
    assert_null(v);
    ks_logout(f->tok);
    /* Logged out the MAC cannot be checked: the value is returned. */
    assert_int_equal(ks_get_setting(f->tok, "login_cache", &v), KS_OK);
    assert_string_equal(v, "999999");
    free(v);
}

static void
test_reinit(void **state)
{
    struct ks_fixture *f = *state;
    ks_attr a = {1, 3, (unsigned char *)"abc"};
    struct seen s;
    ks_info before, after;
    int64_t id, id2;

    assert_int_equal(ks_get_info(f->tok, &before), KS_OK);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_object_create(f->tok, 1, &a, 1, &id), KS_OK);
    assert_int_equal(ks_object_create(f->tok, 0, &a, 1, &id), KS_OK);
    assert_int_equal(ks_set_setting(f->tok, "k", "v"), KS_OK);
    assert_int_equal(ks_reinit(f->tok, PIN("wrong-pin"), "new"), KS_E_PIN_INCORRECT);
    assert_int_equal(ks_reinit(f->tok, PIN(SO_PIN), "a label that is much longer than 32"),
                     KS_E_ARGS);
    assert_int_equal(ks_reinit(f->tok, PIN(SO_PIN), "renamed"), KS_OK);
    assert_int_equal(ks_logged_in(f->tok), 0);
    assert_int_equal(ks_get_info(f->tok, &after), KS_OK);
    assert_string_equal(after.label, "renamed");
    assert_string_equal(after.serial, before.serial);
    assert_memory_equal(after.token_id, before.token_id, KS_TOKEN_ID_LEN);
    assert_false(after.user_pin_initialized);
    assert_int_equal(after.object_count, 0);
    assert_int_equal(after.so_fail_count, 0);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_E_PIN_NOT_INITIALIZED);
    assert_int_equal(ks_login(f->tok, KS_SO, PIN(SO_PIN)), KS_OK);
    memset(&s, 0, sizeof(s));
    assert_int_equal(ks_load_objects(f->tok, seen_cb, &s, NULL), KS_OK);
    assert_int_equal(s.count, 0);
    /* Ids are never reused, even after everything was destroyed. */
    assert_int_equal(ks_object_create(f->tok, 0, &a, 1, &id2), KS_OK);
    assert_true(id2 > id);
}

/* Another handle re-initialises the token: this handle's TMK is stale and
 * its writes must not go through under the old key. */
static void
test_stale_tmk_after_foreign_reinit(void **state)
{
    struct ks_fixture *f = *state;
    ks_attr a = {1, 3, (unsigned char *)"abc"};
    ks_token *other = NULL;
    int64_t id;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_open(f->path, &other), KS_OK);
    assert_int_equal(ks_reinit(other, PIN(SO_PIN), "other"), KS_OK);
    assert_int_equal(ks_object_create(f->tok, 1, &a, 1, &id), KS_E_NOT_LOGGED_IN);
    assert_int_equal(ks_logged_in(f->tok), 0);
    ks_close(other);
}

struct thr {
    ks_token *tok;
    int ok;
};

static void *
login_thread(void *arg)
{
    struct thr *t = arg;

    for (int i = 0; i < 5; i++)
        if (ks_login(t->tok, KS_USER, PIN(USER_PIN)) == KS_OK)
            t->ok++;
    return NULL;
}

static void
test_threads(void **state)
{
    struct ks_fixture *f = *state;
    struct thr t[4];
    pthread_t th[4];
    ks_info info;
    int i;

    for (i = 0; i < 4; i++) {
        t[i].tok = f->tok;
        t[i].ok = 0;
        assert_int_equal(pthread_create(&th[i], NULL, login_thread, &t[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].ok, 5);
    }
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.user_fail_count, 0);
    assert_true(ks_logged_in(f->tok));
}

static void
test_strerror(void **state)
{
    (void)state;
    assert_string_equal(ks_strerror(KS_E_PIN_INCORRECT), "wrong PIN");
    for (int i = KS_OK; i <= KS_E_CRYPTO; i++)
        assert_string_not_equal(ks_strerror((ks_rv)i), "unknown error");
    assert_string_equal(ks_strerror((ks_rv)999), "unknown error");
    assert_string_equal(ks_last_error(NULL), "");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_open_close, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_create_args, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_user_pin_uninitialised, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_pin, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_pin_change_keeps_objects, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_lockout_and_unlock, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_default_lockout_counts_before_kdf, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_settings, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_reinit, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stale_tmk_after_foreign_reinit, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_threads, fixture_setup, fixture_teardown),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
