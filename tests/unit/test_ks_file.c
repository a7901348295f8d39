/*
 * test_ks_file.c — the file as a file: schema versions and migration,
 * damaged and foreign files, permissions, backup and restore.
 */
#include "test_ks_util.h"

#include <fcntl.h>
#include <sys/stat.h>

static void
write_file(const char *path, const void *data, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
    chmod(path, mode);
}

static void
expect_open(const char *path, ks_rv want, const char *msg)
{
    ks_token *t = (ks_token *)1;

    assert_int_equal(ks_open(path, &t), want);
    assert_null(t);
    if (msg != NULL && strstr(ks_open_error(), msg) == NULL) {
        fprintf(stderr, "open error \"%s\" lacks \"%s\"\n", ks_open_error(), msg);
        fail();
    }
}

static void
test_newer_version_refused(void **state)
{
    struct ks_fixture *f = *state;

    ks_close(f->tok);
    f->tok = NULL;
    {
        char sql[64];

        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d;", KS_SCHEMA_VERSION + 1);
        raw_exec(f->path, sql);
    }
    expect_open(f->path, KS_E_VERSION, "newer");
    raw_exec(f->path, "PRAGMA user_version = 0;");
    expect_open(f->path, KS_E_CORRUPT, "schema version 0");
}

/* A genuine version-1 file (no settings table) is migrated on open. */
static void
test_old_version_migrates(void **state)
{
    struct ks_fixture *f = *state;
    ks_attr a = {1, 5, (unsigned char *)"kept!"};
    struct seen s;
    ks_info info;
    char *v = NULL;
    int64_t id;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_object_create(f->tok, 1, &a, 1, &id), KS_OK);
    ks_close(f->tok);
    f->tok = NULL;
    raw_objects_v2(f->path);
    raw_exec(f->path, "DROP TABLE settings; PRAGMA user_version = 1;");
    assert_int_equal(ks_open(f->path, &f->tok), KS_OK);
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.schema_version, KS_SCHEMA_VERSION);
    assert_int_equal(ks_set_setting(f->tok, "k", "v"), KS_OK);
    assert_int_equal(ks_get_setting(f->tok, "k", &v), KS_OK);
    assert_string_equal(v, "v");
    free(v);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    memset(&s, 0, sizeof(s));
    assert_int_equal(ks_load_objects(f->tok, seen_cb, &s, NULL), KS_OK);
    assert_int_equal(s.count, 1);
    assert_memory_equal(s.value[0], "kept!", 5);
    ks_close(f->tok);
    /* The file itself now says the current version. */
    {
        sqlite3 *db;
        sqlite3_stmt *st;

        assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(st, 0), KS_SCHEMA_VERSION);
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    assert_int_equal(ks_open(f->path, &f->tok), KS_OK);
}

static void
test_structure_checks(void **state)
{
    struct ks_fixture *f = *state;

    ks_close(f->tok);
    f->tok = NULL;
    raw_exec(f->path, "DELETE FROM meta WHERE key = 'kdf_ops';");
    expect_open(f->path, KS_E_CORRUPT, "meta key kdf_ops missing");
    raw_exec(f->path, "INSERT INTO meta VALUES ('kdf_ops', 'lots');");
    expect_open(f->path, KS_E_CORRUPT, "meta key kdf_ops malformed");
    raw_exec(f->path, "UPDATE meta SET value = 1 WHERE key = 'kdf_ops';"
                      "UPDATE meta SET value = x'00' WHERE key = 'token_id';");
    expect_open(f->path, KS_E_CORRUPT, "meta key token_id malformed");
    raw_exec(f->path, "UPDATE meta SET value = randomblob(16) WHERE key = 'token_id';"
                      "DELETE FROM pins WHERE who = 0;");
    expect_open(f->path, KS_E_CORRUPT, "pins row for the SO PIN missing");
    raw_exec(f->path, "INSERT INTO pins(who) VALUES (0);");
    expect_open(f->path, KS_E_CORRUPT, "SO PIN has no wrapped key");
    raw_exec(f->path, "DROP TABLE objects;");
    expect_open(f->path, KS_E_CORRUPT, "missing table objects");
    raw_exec(f->path, "CREATE TABLE objects (id INTEGER PRIMARY KEY AUTOINCREMENT, x);");
    expect_open(f->path, KS_E_CORRUPT, "schema does not match");
}

static void
test_corrupted_files(void **state)
{
    struct ks_fixture *f = *state;
    unsigned char junk[8192], *buf;
    char path[400];
    ks_token *t = NULL;
    struct stat st;
    FILE *fp;
    size_t n;

    /* Random bytes. */
    snprintf(path, sizeof(path), "%s/random.db", f->dir);
    randombytes_buf(junk, sizeof(junk));
    write_file(path, junk, sizeof(junk), 0600);
    expect_open(path, KS_E_CORRUPT, "not an SQLite database");

    /* Empty file. */
    write_file(path, "", 0, 0600);
    expect_open(path, KS_E_CORRUPT, "not an SQLite database");

    /* An SQLite header followed by garbage. */
    memcpy(junk, "SQLite format 3", 16);
    write_file(path, junk, sizeof(junk), 0600);
    expect_open(path, KS_E_CORRUPT, NULL);

    /* Some other program's SQLite database. */
    snprintf(path, sizeof(path), "%s/other.db", f->dir);
    raw_exec(path, "CREATE TABLE foo (x); INSERT INTO foo VALUES (1);");
    chmod(path, 0600);
    expect_open(path, KS_E_CORRUPT, "not an evertoken keystore");

    /* Our token, truncated at several points (with data in it). */
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    for (int i = 0; i < 40; i++) {
        unsigned char big[3000];
        ks_attr a = {1, sizeof(big), big};
        int64_t id;

        randombytes_buf(big, sizeof(big));
        assert_int_equal(ks_object_create(f->tok, i & 1, &a, 1, &id), KS_OK);
    }
    ks_close(f->tok);
    f->tok = NULL;
    assert_int_equal(stat(f->path, &st), 0);
    buf = malloc((size_t)st.st_size);
    assert_non_null(buf);
    fp = fopen(f->path, "rb");
    assert_non_null(fp);
    n = fread(buf, 1, (size_t)st.st_size, fp);
    fclose(fp);
    assert_int_equal(n, (size_t)st.st_size);
    snprintf(path, sizeof(path), "%s/trunc.db", f->dir);
    for (size_t cut = 50; cut < n; cut = cut * 2 + 1000) {
        ks_rv rv;

        write_file(path, buf, cut, 0600);
        rv = ks_open(path, &t);
        if (rv == KS_OK) {
            /* The damage may be in pages open does not read: reading must
             * then fail cleanly, never crash or pass garbage on. */
            struct seen s;
            ks_info info;

            memset(&s, 0, sizeof(s));
            rv = ks_get_info(t, &info);
            if (rv == KS_OK)
                rv = ks_load_objects(t, seen_cb, &s, NULL);
            assert_true(rv == KS_OK || rv == KS_E_CORRUPT);
            ks_close(t);
            t = NULL;
        } else {
            assert_int_equal(rv, KS_E_CORRUPT);
        }
        unlink(path);
    }
    /* Random byte damage all over a valid file. */
    for (int round = 0; round < 20; round++) {
        unsigned char *copy = malloc(n);

        assert_non_null(copy);
        memcpy(copy, buf, n);
        for (int k = 0; k < 30; k++)
            copy[100 + randombytes_uniform((uint32_t)(n - 100))] ^=
                (unsigned char)(1 + randombytes_uniform(255));
        write_file(path, copy, n, 0600);
        if (ks_open(path, &t) == KS_OK) {
            struct seen s;

            memset(&s, 0, sizeof(s));
            ks_rv lr = ks_login(t, KS_USER, PIN(USER_PIN));
            ks_rv rr;

            /* Damage shows as damage (or as a wrong PIN when it hit the
             * wrapped key), never as anything else. */
            assert_true(lr == KS_OK || lr == KS_E_CORRUPT || lr == KS_E_TAMPERED ||
                        lr == KS_E_PIN_INCORRECT || lr == KS_E_PIN_LOCKED);
            rr = ks_load_objects(t, seen_cb, &s, NULL);
            if (rr != KS_OK && rr != KS_E_CORRUPT)
                fprintf(stderr, "load: %d %s\n", rr, ks_last_error(t));
            assert_true(rr == KS_OK || rr == KS_E_CORRUPT);
            ks_close(t);
            t = NULL;
        }
        unlink(path);
        snprintf(path + strlen(path), 5, "-wal");
        unlink(path);
        path[strlen(path) - 4] = '\0';
        free(copy);
    }
    free(buf);
    /* Missing file. */
    snprintf(path, sizeof(path), "%s/absent.db", f->dir);
    expect_open(path, KS_E_IO, "No such file");
}

static void
test_permissions(void **state)
{
    struct ks_fixture *f = *state;
    char side[400];
    struct stat st;

    ks_close(f->tok);
    f->tok = NULL;
    chmod(f->path, 0666);
    expect_open(f->path, KS_E_PERM, "group/world writable");
    chmod(f->path, 0620);
    expect_open(f->path, KS_E_PERM, "chmod 600");
    chmod(f->path, 0600);
    chmod(f->dir, 0777);
    expect_open(f->path, KS_E_PERM, "directory");
    chmod(f->dir, 0700);
    /* A readable side file left behind is tightened, not trusted as is. */
    snprintf(side, sizeof(side), "%s-shm", f->path);
    write_file(side, "", 0, 0644);
    assert_int_equal(ks_open(f->path, &f->tok), KS_OK);
    assert_int_equal(stat(side, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);
    snprintf(side, sizeof(side), "%s-wal", f->path);
    assert_int_equal(stat(side, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);
}

static void
test_backup_restore(void **state)
{
    struct ks_fixture *f = *state;
    ks_attr a = {1, 6, (unsigned char *)"backed"};
    ks_attr b = {1, 5, (unsigned char *)"later"};
    char bak[400], dest[400], junk[400];
    ks_token *t = NULL;
    struct seen s;
    struct stat st;
    ks_info i1, i2;
    int64_t id, id2;

    snprintf(bak, sizeof(bak), "%s/backup.db", f->dir);
    snprintf(dest, sizeof(dest), "%s/restored/token-5.db", f->dir);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_object_create(f->tok, 1, &a, 1, &id), KS_OK);
    assert_int_equal(ks_backup(f->tok, bak), KS_OK);
    assert_int_equal(stat(bak, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(ks_backup(f->tok, bak), KS_E_EXISTS);
    /* Changes after the backup are not in it. */
    assert_int_equal(ks_object_create(f->tok, 1, &b, 1, &id2), KS_OK);

    /* Restore into a new place. */
    snprintf(junk, sizeof(junk), "%s/restored", f->dir);
    assert_int_equal(mkdir(junk, 0700), 0);
    assert_int_equal(mkdir(dest, 0700), 0); /* a directory where the file should go */
    assert_int_not_equal(ks_restore(bak, dest), KS_OK);
    rmdir(dest);
    /* The destination directory is created (0700) when missing. */
    snprintf(junk, sizeof(junk), "%s/restored", f->dir);
    assert_int_equal(rmdir(junk), 0);
    assert_int_equal(ks_restore(bak, dest), KS_OK);
    assert_int_equal(stat(junk, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(dest, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(ks_open(dest, &t), KS_OK);
    assert_int_equal(ks_get_info(t, &i1), KS_OK);
    assert_int_equal(ks_get_info(f->tok, &i2), KS_OK);
    assert_memory_equal(i1.token_id, i2.token_id, KS_TOKEN_ID_LEN);
    assert_int_equal(ks_login(t, KS_USER, PIN(USER_PIN)), KS_OK);
    memset(&s, 0, sizeof(s));
    assert_int_equal(ks_load_objects(t, seen_cb, &s, NULL), KS_OK);
    assert_int_equal(s.count, 1);
    assert_memory_equal(s.value[0], "backed", 6);
    ks_close(t);

    /* Restore over the live original (closed first). */
    ks_close(f->tok);
    f->tok = NULL;
    assert_int_equal(ks_restore(bak, f->path), KS_OK);
    assert_int_equal(ks_open(f->path, &f->tok), KS_OK);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    memset(&s, 0, sizeof(s));
    assert_int_equal(ks_load_objects(f->tok, seen_cb, &s, NULL), KS_OK);
    assert_int_equal(s.count, 1);

    /* A bad source never touches the destination. */
    snprintf(junk, sizeof(junk), "%s/junk.db", f->dir);
    write_file(junk, "not a keystore at all, just text.....", 37, 0600);
    assert_int_equal(ks_restore(junk, dest), KS_E_CORRUPT);
    assert_non_null(strstr(ks_open_error(), "not an SQLite database"));
    unlink(junk);
    raw_exec(junk, "CREATE TABLE foo (x);");
    chmod(junk, 0600);
    assert_int_equal(ks_restore(junk, dest), KS_E_CORRUPT);
    assert_int_equal(ks_open(dest, &t), KS_OK);
    ks_close(t);
    assert_int_equal(ks_restore(NULL, dest), KS_E_ARGS);
    /* No temporary files are left behind. */
    {
        int count = 0;
        char cmd[600];
        FILE *p;

        snprintf(cmd, sizeof(cmd), "ls -A '%s/restored'", f->dir);
        p = popen(cmd, "r");
        assert_non_null(p);
        while (fgets(cmd, sizeof(cmd), p) != NULL) {
            assert_null(strstr(cmd, ".restore-"));
            count++;
        }
        pclose(p);
        assert_true(count >= 1);
    }
}

/* Another connection holds the write lock longer than KS_BUSY_TIMEOUT_MS:
 * writes report KS_E_BUSY (not corruption); reads go on (WAL). */
static void
test_busy(void **state)
{
    struct ks_fixture *f = *state;
    sqlite3 *db = NULL;
    ks_info info;
    char *v = NULL;

    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "BEGIN IMMEDIATE; UPDATE meta SET key = key;", NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(ks_set_setting(f->tok, "k", "v"), KS_E_BUSY);
    assert_non_null(strstr(ks_last_error(f->tok), "busy"));
    /* A login cannot count its attempt, so it does not try. */
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_E_BUSY);
    assert_int_equal(sqlite3_exec(db, "COMMIT;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(ks_set_setting(f->tok, "k", "v"), KS_OK);
    assert_int_equal(ks_get_setting(f->tok, "k", &v), KS_OK);
    free(v);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_newer_version_refused, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_old_version_migrates, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_structure_checks, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_corrupted_files, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_permissions, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_backup_restore, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_busy, fixture_setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
