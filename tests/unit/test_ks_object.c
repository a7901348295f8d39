/*
 * test_ks_object.c — objects: create/read/update/destroy, visibility,
 * tamper detection, blob swaps, secure delete, change detection.
 */
#include <sys/wait.h>
#include <unistd.h>

#include "test_ks_util.h"

/* Flip one byte of objects.COL of row ID at OFFSET, behind the keystore's back. */
static void
raw_flip(const char *path, int64_t id, const char *col, int offset)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    unsigned char *buf;
    char sql[128];
    int n;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    snprintf(sql, sizeof(sql), "SELECT %s FROM objects WHERE id = ?1", col);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, id);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    n = sqlite3_column_bytes(st, 0);
    assert_true(offset < n);
    buf = malloc((size_t)n);
    assert_non_null(buf);
    memcpy(buf, sqlite3_column_blob(st, 0), (size_t)n);
    sqlite3_finalize(st);
    buf[offset] ^= 0x01;
    snprintf(sql, sizeof(sql), "UPDATE objects SET %s = ?2 WHERE id = ?1", col);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_blob(st, 2, buf, n, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(buf);
}

static int64_t
mk(ks_token *t, int is_private, const char *value)
{
    ks_attr a[3] = {
        {0x102, strlen(value), (unsigned char *)value},
        {0x3, 4, (unsigned char *)"cert"},
        {0x0, 0, NULL},
    };
    int64_t id = 0;

    /* Given unsorted; stored sorted: type 0 (empty), 3, 0x102. */
    assert_int_equal(ks_object_create(t, is_private, a, 3, &id), KS_OK);
    assert_true(id > 0);
    return id;
}

static int
value_cb(void *ctx, const ks_object *o)
{
    char *out = ctx;

    assert_int_equal(o->nattrs, 3);
    assert_int_equal(o->attrs[0].type, 0);
    assert_int_equal(o->attrs[0].len, 0);
    assert_int_equal(o->attrs[1].type, 3);
    assert_int_equal(o->attrs[2].type, 0x102);
    memcpy(out, o->attrs[2].value, o->attrs[2].len);
    out[o->attrs[2].len] = '\0';
    return 0;
}

static void
test_crud_and_visibility(void **state)
{
    struct ks_fixture *f = *state;
    ks_attr dup[2] = {{1, 1, (unsigned char *)"a"}, {1, 1, (unsigned char *)"b"}};
    ks_attr nullv = {1, 5, NULL};
    ks_attr upd = {7, 3, (unsigned char *)"new"};
    struct seen s;
    int64_t pub, priv, id;
    unsigned bad = 99;
    char buf[64];
    ks_info info;

    /* Writes need the TMK. */
    assert_int_equal(ks_object_create(f->tok, 0, &upd, 1, &id), KS_E_NOT_LOGGED_IN);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_object_create(f->tok, 0, dup, 2, &id), KS_E_ARGS);
    assert_int_equal(ks_object_create(f->tok, 0, &nullv, 1, &id), KS_E_ARGS);
    assert_int_equal(ks_object_create(f->tok, 0, NULL, 1, &id), KS_E_ARGS);
    pub = mk(f->tok, 0, "public value");
    priv = mk(f->tok, 1, "private value");
    assert_true(priv > pub);
    /* An object with no attributes is allowed. */
    assert_int_equal(ks_object_create(f->tok, 0, NULL, 0, &id), KS_OK);
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.object_count, 3);

    assert_int_equal(ks_object_get(f->tok, priv, value_cb, buf), KS_OK);
    assert_string_equal(buf, "private value");
    assert_int_equal(ks_object_get(f->tok, pub, value_cb, buf), KS_OK);
    assert_string_equal(buf, "public value");
    memset(&s, 0, sizeof(s));
    assert_int_equal(ks_load_objects(f->tok, seen_cb, &s, &bad), KS_OK);
    assert_int_equal(bad, 0);
    assert_int_equal(s.count, 3);
    assert_int_equal(s.ids[0], pub);
    assert_int_equal(s.ids[1], priv);
    assert_int_equal(s.is_private[1], 1);
    assert_int_equal(s.version[0], 1);

    /* Logged out: private objects are invisible, public ones still there. */
    ks_logout(f->tok);
    memset(&s, 0, sizeof(s));
    assert_int_equal(ks_load_objects(f->tok, seen_cb, &s, &bad), KS_OK);
    assert_int_equal(s.count, 2);
    assert_int_equal(s.ids[0], pub);
    assert_int_equal(ks_object_get(f->tok, priv, value_cb, buf), KS_E_NOT_FOUND);
    assert_int_equal(ks_object_get(f->tok, pub, value_cb, buf), KS_OK);
    assert_int_equal(ks_object_get(f->tok, 12345, value_cb, buf), KS_E_NOT_FOUND);
    assert_int_equal(ks_object_update(f->tok, pub, &upd, 1), KS_E_NOT_LOGGED_IN);
    assert_int_equal(ks_object_destroy(f->tok, pub), KS_E_NOT_LOGGED_IN);

    /* Update replaces the set and bumps the version; privacy stays. */
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_object_update(f->tok, priv, &upd, 1), KS_OK);
    assert_int_equal(ks_object_update(f->tok, 12345, &upd, 1), KS_E_NOT_FOUND);
    memset(&s, 0, sizeof(s));
    assert_int_equal(ks_object_get(f->tok, priv, seen_cb, &s), KS_OK);
    assert_int_equal(s.count, 1);
    assert_int_equal(s.version[0], 2);
    assert_int_equal(s.is_private[0], 1);
    assert_int_equal(s.nattrs[0], 1);
    assert_memory_equal(s.value[0], "new", 3);

    assert_int_equal(ks_object_destroy(f->tok, priv), KS_OK);
    assert_int_equal(ks_object_destroy(f->tok, priv), KS_E_NOT_FOUND);
    assert_int_equal(ks_object_get(f->tok, priv, seen_cb, &s), KS_E_NOT_FOUND);
    /* Ids are never reused (AUTOINCREMENT). */
    id = mk(f->tok, 1, "again");
    assert_true(id > priv);
}

static int
stop_cb(void *ctx, const ks_object *o)
{
    (void)o;
    (*(int *)ctx)++;
    return 1;
}

static void
test_callback_stops(void **state)
{
    struct ks_fixture *f = *state;
    int calls = 0;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    mk(f->tok, 0, "a");
    mk(f->tok, 1, "b");
    assert_int_equal(ks_load_objects(f->tok, stop_cb, &calls, NULL), KS_OK);
    assert_int_equal(calls, 1);
    assert_int_equal(ks_load_objects(f->tok, NULL, NULL, NULL), KS_E_ARGS);
}

static void
test_tampered_private(void **state)
{
    struct ks_fixture *f = *state;
    struct seen s;
    int64_t a, b;
    unsigned bad = 0;
    char buf[64];

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    a = mk(f->tok, 1, "first secret");
    b = mk(f->tok, 1, "second secret");
    raw_flip(f->path, a, "data", 20);
    assert_int_equal(ks_object_get(f->tok, a, value_cb, buf), KS_E_TAMPERED);
    assert_non_null(strstr(ks_last_error(f->tok), "failed authentication"));
    memset(&s, 0, sizeof(s));
    assert_int_equal(ks_load_objects(f->tok, seen_cb, &s, &bad), KS_OK);
    assert_int_equal(bad, 1);
    assert_int_equal(s.count, 1);
    assert_int_equal(s.ids[0], b);
    /* A flipped nonce is caught too. */
    raw_flip(f->path, b, "nonce", 0);
    assert_int_equal(ks_object_get(f->tok, b, value_cb, buf), KS_E_TAMPERED);
}

static void
test_tampered_public(void **state)
{
    struct ks_fixture *f = *state;
    struct seen s;
    int64_t a, b;
    unsigned bad = 0;
    char buf[64];

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    a = mk(f->tok, 0, "attacker wants to change this");
    b = mk(f->tok, 0, "untouched");
    /* Flip a byte inside the last attribute's value (end of the blob). */
    raw_flip(f->path, a, "data", 1 + 12 + 0 + 12 + 4 + 12 + 3);
    assert_int_equal(ks_object_get(f->tok, a, value_cb, buf), KS_E_TAMPERED);
    assert_non_null(strstr(ks_last_error(f->tok), "MAC mismatch"));
    memset(&s, 0, sizeof(s));
    assert_int_equal(ks_load_objects(f->tok, seen_cb, &s, &bad), KS_OK);
    assert_int_equal(bad, 1);
    assert_int_equal(s.count, 1);
    assert_int_equal(s.ids[0], b);
    /* Changing the version (to replay a record under another) fails too. */
    raw_exec(f->path, "UPDATE objects SET version = 5");
    assert_int_equal(ks_object_get(f->tok, b, value_cb, buf), KS_E_TAMPERED);
    /* Logged out, the MAC cannot be checked: public objects are shown. */
    ks_logout(f->tok);
    memset(&s, 0, sizeof(s));
    assert_int_equal(ks_load_objects(f->tok, seen_cb, &s, &bad), KS_OK);
    assert_int_equal(bad, 0);
    assert_int_equal(s.count, 2);
}

static void
test_blob_swap_rejected(void **state)
{
    struct ks_fixture *f = *state;
    int64_t a, b;
    unsigned bad = 0;
    struct seen s;
    char buf[64];

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    a = mk(f->tok, 1, "key of alice");
    b = mk(f->tok, 1, "key of bob");
    /* Swap the whole sealed records (nonce and ciphertext) between ids. */
    raw_exec(f->path, "CREATE TEMP TABLE t AS SELECT id, nonce, data FROM objects;"
                      "UPDATE objects SET nonce = (SELECT nonce FROM t WHERE t.id <> objects.id),"
                      " data = (SELECT data FROM t WHERE t.id <> objects.id);");
    assert_int_equal(ks_object_get(f->tok, a, value_cb, buf), KS_E_TAMPERED);
    assert_int_equal(ks_object_get(f->tok, b, value_cb, buf), KS_E_TAMPERED);
    memset(&s, 0, sizeof(s));
    assert_int_equal(ks_load_objects(f->tok, seen_cb, &s, &bad), KS_OK);
    assert_int_equal(bad, 2);
    assert_int_equal(s.count, 0);
    /* A private record turned public without a MAC is not trusted either. */
    raw_exec(f->path, "UPDATE objects SET is_private = 0");
    assert_int_equal(ks_object_get(f->tok, a, value_cb, buf), KS_E_TAMPERED);
}

/* A sealed record from another token (another TMK and token id) fails. */
static void
test_blob_from_other_token_rejected(void **state)
{
    struct ks_fixture *f = *state;
    ks_token *t2 = NULL;
    char path2[400], sql[800], buf[64];
    int64_t a, b;

    snprintf(path2, sizeof(path2), "%s/token-1.db", f->dir);
    assert_int_equal(ks_create(path2, "two", PIN(SO_PIN), &test_kdf, &t2), KS_OK);
    assert_int_equal(ks_login(t2, KS_SO, PIN(SO_PIN)), KS_OK);
    b = mk(t2, 1, "foreign");
    ks_close(t2);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    a = mk(f->tok, 1, "local");
    assert_int_equal(a, b); /* same id in both files */
    snprintf(sql, sizeof(sql),
             "ATTACH '%s' AS o; UPDATE main.objects SET nonce = (SELECT nonce FROM o.objects),"
             " data = (SELECT data FROM o.objects);",
             path2);
    raw_exec(f->path, sql);
    assert_int_equal(ks_object_get(f->tok, a, value_cb, buf), KS_E_TAMPERED);
}

static void
test_secure_delete(void **state)
{
    struct ks_fixture *f = *state;
    static const char pub_canary[] = "PUBLIC-CANARY-7f3a9c-should-vanish";
    static const char priv_canary[] = "PRIVATE-CANARY-b81e44-never-stored";
    char wal[400];
    int64_t a, b, keep;

    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    keep = mk(f->tok, 0, "stays");
    a = mk(f->tok, 0, pub_canary);
    b = mk(f->tok, 1, priv_canary);
    raw_exec(f->path, "PRAGMA wal_checkpoint(TRUNCATE);");
    /* The public value is in the clear in the file (that is what public
     * means); the private one never is: it is sealed. */
    assert_true(file_contains(f->path, pub_canary, strlen(pub_canary)));
    assert_false(file_contains(f->path, priv_canary, strlen(priv_canary)));

    assert_int_equal(ks_object_destroy(f->tok, a), KS_OK);
    assert_int_equal(ks_object_destroy(f->tok, b), KS_OK);
    /* Before the checkpoint the WAL holds the old page images. After it,
     * the database and WAL must hold no trace: secure_delete zeroed the
     * freed cells. */
    raw_exec(f->path, "PRAGMA wal_checkpoint(TRUNCATE);");
    assert_false(file_contains(f->path, pub_canary, strlen(pub_canary)));
    assert_false(file_contains(wal, pub_canary, strlen(pub_canary)));
    assert_false(file_contains(f->path, priv_canary, strlen(priv_canary)));
    assert_false(file_contains(wal, priv_canary, strlen(priv_canary)));
    assert_true(file_contains(f->path, "stays", 5));
    (void)keep;
}

static void
test_changed_two_handles(void **state)
{
    struct ks_fixture *f = *state;
    ks_token *b = NULL;
    int ch = -1;

    assert_int_equal(ks_open(f->path, &b), KS_OK);
    assert_int_equal(ks_changed(f->tok, &ch), KS_OK);
    assert_int_equal(ch, 0);
    assert_int_equal(ks_changed(b, &ch), KS_OK);
    assert_int_equal(ch, 0);

    /* B writes: A sees it once; B does not see its own write. */
    assert_int_equal(ks_login(b, KS_USER, PIN(USER_PIN)), KS_OK);
    mk(b, 0, "from b");
    assert_int_equal(ks_changed(f->tok, &ch), KS_OK);
    assert_int_equal(ch, 1);
    assert_int_equal(ks_changed(f->tok, &ch), KS_OK);
    assert_int_equal(ch, 0);
    assert_int_equal(ks_changed(b, &ch), KS_OK);
    assert_int_equal(ch, 0);

    /* A writes: the other way round. */
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    mk(f->tok, 1, "from a");
    assert_int_equal(ks_changed(b, &ch), KS_OK);
    assert_int_equal(ch, 1);
    assert_int_equal(ks_changed(f->tok, &ch), KS_OK);
    assert_int_equal(ch, 0);

    /* A failed login elsewhere also changes the file (the counter). */
    assert_int_equal(ks_login(b, KS_USER, PIN("wrong-pin")), KS_E_PIN_INCORRECT);
    assert_int_equal(ks_changed(f->tok, &ch), KS_OK);
    assert_int_equal(ch, 1);
    assert_int_equal(ks_changed(NULL, &ch), KS_E_ARGS);
    ks_close(b);
}

/* ks_changed's shared-memory shortcut (and, with EVERTOKEN_NO_SHM_CHECK,
 * the PRAGMA data_version path alone) against writes by another handle,
 * by another process, and checkpoints (which restart the WAL): every commit
 * by someone else is seen exactly once, nothing else is. */
static void
changed_stress(struct ks_fixture *f)
{
    ks_token *b = NULL;
    int ch = -1;
    unsigned seed = 7;

    assert_int_equal(ks_open(f->path, &b), KS_OK);
    assert_int_equal(ks_login(b, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_changed(f->tok, &ch), KS_OK);
    for (int i = 0; i < 200; i++) {
        int what = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 6;

        if (what == 0 || what == 1) { /* B commits */
            mk(b, what, "b");
        } else if (what == 2) { /* A commits: not a change for A */
            mk(f->tok, 0, "a");
        } else if (what == 3) { /* a checkpoint elsewhere: no change */
            raw_exec(f->path, "PRAGMA wal_checkpoint(PASSIVE);");
        } else if (what == 4) {
            /* A truncating checkpoint restarts the WAL: data_version may
             * count that as a change; either answer is right once. */
            raw_exec(f->path, "PRAGMA wal_checkpoint(TRUNCATE);");
        }
        assert_int_equal(ks_changed(f->tok, &ch), KS_OK);
        if (what != 4)
            assert_int_equal(ch, what <= 1);
        assert_int_equal(ks_changed(f->tok, &ch), KS_OK);
        assert_int_equal(ch, 0);
    }
    /* Another process writes. */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ks_token *c = NULL;
        int64_t id = 0;
        ks_attr a = {0x3, 1, (unsigned char *)"c"};

        _exit(ks_open(f->path, &c) != KS_OK || ks_login(c, KS_USER, PIN(USER_PIN)) != KS_OK ||
              ks_object_create(c, 0, &a, 1, &id) != KS_OK);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(ks_changed(f->tok, &ch), KS_OK);
    assert_int_equal(ch, 1);
    assert_int_equal(ks_changed(b, &ch), KS_OK);
    assert_int_equal(ch, 1); /* A's and the child's commits */
    assert_int_equal(ks_changed(f->tok, &ch), KS_OK);
    assert_int_equal(ch, 0);
    ks_close(b);
}

static void
test_changed_stress(void **state)
{
    changed_stress(*state);
}

static void
test_changed_stress_no_shm(void **state)
{
    struct ks_fixture *f = *state;

    /* Reopen the fixture's handle with the shortcut disabled. */
    setenv("EVERTOKEN_NO_SHM_CHECK", "1", 1);
    ks_close(f->tok);
    f->tok = NULL;
    assert_int_equal(ks_open(f->path, &f->tok), KS_OK);
    changed_stress(f);
    unsetenv("EVERTOKEN_NO_SHM_CHECK");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_crud_and_visibility, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_callback_stops, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tampered_private, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tampered_public, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_blob_swap_rejected, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_blob_from_other_token_rejected, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_secure_delete, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_changed_two_handles, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_changed_stress, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_changed_stress_no_shm, fixture_setup,
                                        fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
