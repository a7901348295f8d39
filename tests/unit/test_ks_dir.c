/*
 * test_ks_dir.c — where tokens live: ks_token_dir precedence and config
 * parsing, ks_token_path, ks_dir_scan naming rules, EVERTOKEN_KDF.
 */
#include "test_ks_util.h"

#include <fcntl.h>
#include <sys/stat.h>

struct env_fixture {
    char dir[256];
};

static void
clear_env(void)
{
    unsetenv("EVERTOKEN_DIR");
    unsetenv("EVERTOKEN_CONF");
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("XDG_DATA_HOME");
    unsetenv("EVERTOKEN_KDF");
}

static int
env_setup(void **state)
{
    struct env_fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    tmp_dir(f->dir, sizeof(f->dir));
    clear_env();
    setenv("HOME", f->dir, 1); /* never the real home */
    *state = f;
    return 0;
}

static int
env_teardown(void **state)
{
    struct env_fixture *f = *state;

    clear_env();
    rm_rf(f->dir);
    free(f);
    return 0;
}

static void
put(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void
expect_dir(const char *want)
{
    const char *err = "unset";
    char *d = ks_token_dir(&err);

    if (d == NULL)
        fprintf(stderr, "ks_token_dir: %s\n", err);
    assert_non_null(d);
    assert_null(err);
    assert_string_equal(d, want);
    free(d);
}

static void
expect_dir_error(const char *msg)
{
    const char *err = NULL;
    char *d = ks_token_dir(&err);

    assert_null(d);
    assert_non_null(err);
    if (strstr(err, msg) == NULL) {
        fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, msg);
        fail();
    }
}

static void
test_token_dir_precedence(void **state)
{
    struct env_fixture *f = *state;
    char want[512], conf[512], xdg[512];

    /* Last resort: ~/.local/share/evertoken (no config file exists). */
    snprintf(want, sizeof(want), "%s/.local/share/evertoken", f->dir);
    expect_dir(want);

    /* XDG_DATA_HOME beats HOME; a relative one is ignored (XDG spec). */
    setenv("XDG_DATA_HOME", "relative/path", 1);
    expect_dir(want);
    setenv("XDG_DATA_HOME", "/data/home", 1);
    expect_dir("/data/home/evertoken");

    /* ~/.config/evertoken/evertoken.conf beats the data dir. */
    snprintf(conf, sizeof(conf), "%s/.config", f->dir);
    mkdir(conf, 0700);
    snprintf(conf, sizeof(conf), "%s/.config/evertoken", f->dir);
    mkdir(conf, 0700);
    snprintf(conf, sizeof(conf), "%s/.config/evertoken/evertoken.conf", f->dir);
    put(conf, "; comment\n[other]\ntoken_dir = /not/this\n[evertoken]\ntoken_dir = /from/home\n");
    expect_dir("/from/home");
    /* A config without the key falls through to the data dir. */
    put(conf, "[evertoken]\nother_key = 1\n");
    expect_dir("/data/home/evertoken");
    put(conf, "[evertoken]\ntoken_dir = ~/tokens\n");
    snprintf(want, sizeof(want), "%s/tokens", f->dir);
    expect_dir(want);

    /* $XDG_CONFIG_HOME/evertoken/evertoken.conf beats ~/.config. */
    snprintf(xdg, sizeof(xdg), "%s/xdg", f->dir);
    mkdir(xdg, 0700);
    setenv("XDG_CONFIG_HOME", xdg, 1);
    expect_dir("/data/home/evertoken"); /* no file there: missing is fine */
    snprintf(xdg, sizeof(xdg), "%s/xdg/evertoken", f->dir);
    mkdir(xdg, 0700);
    snprintf(xdg, sizeof(xdg), "%s/xdg/evertoken/evertoken.conf", f->dir);
    put(xdg, "[evertoken]\ntoken_dir=/from/xdg\n");
    expect_dir("/from/xdg");

    /* $EVERTOKEN_CONF beats both. */
    snprintf(conf, sizeof(conf), "%s/explicit.conf", f->dir);
    put(conf, "[evertoken]\ntoken_dir = /from/explicit\n");
    setenv("EVERTOKEN_CONF", conf, 1);
    expect_dir("/from/explicit");

    /* $EVERTOKEN_DIR beats everything, even a broken config. */
    put(conf, "this is not an ini file\n");
    setenv("EVERTOKEN_DIR", "/from/env", 1);
    expect_dir("/from/env");
    setenv("EVERTOKEN_DIR", "relative", 1);
    expect_dir_error("absolute");
}

static void
test_token_dir_config_errors(void **state)
{
    struct env_fixture *f = *state;
    char conf[512];

    snprintf(conf, sizeof(conf), "%s/e.conf", f->dir);
    setenv("EVERTOKEN_CONF", conf, 1);
    put(conf, "[evertoken]\ntoken_dir = /ok\nthis line is malformed\n");
    expect_dir_error("malformed at line 3");
    put(conf, "[evertoken\ntoken_dir = /x\n");
    expect_dir_error("malformed at line 1");
    put(conf, "[evertoken]\ntoken_dir =\n");
    expect_dir_error("empty or repeated");
    put(conf, "[evertoken]\ntoken_dir = /a\ntoken_dir = /b\n");
    expect_dir_error("empty or repeated");
    put(conf, "[evertoken]\ntoken_dir = relative/dir\n");
    expect_dir_error("absolute");
    /* A config path that exists but cannot be read (a directory). */
    setenv("EVERTOKEN_CONF", f->dir, 1);
    expect_dir_error("config file");
    /* A missing explicit config file is fine. */
    snprintf(conf, sizeof(conf), "%s/absent.conf", f->dir);
    setenv("EVERTOKEN_CONF", conf, 1);
    unsetenv("HOME");
    expect_dir_error("HOME");
    setenv("HOME", f->dir, 1);
}

static void
test_token_path(void **state)
{
    char *p;

    (void)state;
    p = ks_token_path("/d", 0);
    assert_string_equal(p, "/d/token-0.db");
    free(p);
    p = ks_token_path("/d", KS_SLOT_MAX);
    assert_string_equal(p, "/d/token-2147483646.db");
    free(p);
    assert_null(ks_token_path("/d", KS_SLOT_MAX + 1));
    assert_null(ks_token_path(NULL, 1));
}

static void
test_dir_scan(void **state)
{
    struct env_fixture *f = *state;
    static const char *const names[] = {
        "token-0.db",  "token-7.db",          "token-12.db",
        "token-3.db",  "token-3.db-wal",      "token-3.db-shm",
        "token-01.db", "token-+4.db",         "token--4.db",
        "token- 4.db", "token-4.dbx",         "token-4.db.bak",
        "token-.db",   "token-x.db",          "token-4",
        "Token-4.db",  "token-2147483647.db", "token-99999999999999999999.db",
        ".token-abc",  "notes.txt",           "token-2147483646.db",
    };
    uint32_t *ids = NULL;
    size_t n = 99, i;
    char p[600];

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", f->dir, names[i]);
        put(p, "");
    }
    snprintf(p, sizeof(p), "%s/token-8.db", f->dir);
    mkdir(p, 0700); /* a directory is not a token file */
    assert_int_equal(ks_dir_scan(f->dir, &ids, &n), KS_OK);
    assert_int_equal(n, 5);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 3);
    assert_int_equal(ids[2], 7);
    assert_int_equal(ids[3], 12);
    assert_int_equal(ids[4], 2147483646u);
    free(ids);

    snprintf(p, sizeof(p), "%s/absent", f->dir);
    ids = (uint32_t *)1;
    assert_int_equal(ks_dir_scan(p, &ids, &n), KS_OK);
    assert_int_equal(n, 0);
    assert_null(ids);
    assert_int_equal(ks_dir_scan(NULL, &ids, &n), KS_E_ARGS);
}

static void
test_kdf_from_env(void **state)
{
    ks_kdf_params k;

    (void)state;
    assert_int_equal(ks_kdf_from_env(&k), KS_OK);
    assert_int_equal(k.opslimit, 0);
    assert_int_equal(k.memlimit, 0);
    setenv("EVERTOKEN_KDF", "fast", 1);
    assert_int_equal(ks_kdf_from_env(&k), KS_OK);
    assert_int_equal(k.opslimit, crypto_pwhash_OPSLIMIT_MIN);
    assert_int_equal(k.memlimit, crypto_pwhash_MEMLIMIT_MIN);
    setenv("EVERTOKEN_KDF", "moderate", 1);
    assert_int_equal(ks_kdf_from_env(&k), KS_OK);
    assert_int_equal(k.opslimit, crypto_pwhash_OPSLIMIT_MODERATE);
    setenv("EVERTOKEN_KDF", "sensitive", 1);
    assert_int_equal(ks_kdf_from_env(&k), KS_OK);
    assert_int_equal(k.memlimit, crypto_pwhash_MEMLIMIT_SENSITIVE);
    setenv("EVERTOKEN_KDF", "3:65536", 1);
    assert_int_equal(ks_kdf_from_env(&k), KS_OK);
    assert_int_equal(k.opslimit, 3);
    assert_int_equal(k.memlimit, 65536);
    static const char *const bad[] = {"quick",   "3:",  ":65536", "3:65536x", "-3:65536",
                                      "0:65536", "3:1", "3:0",    "1:8192:1", " 3:65536"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("EVERTOKEN_KDF", bad[i], 1);
        assert_int_equal(ks_kdf_from_env(&k), KS_E_ARGS);
    }
    assert_int_equal(ks_kdf_from_env(NULL), KS_E_ARGS);
    unsetenv("EVERTOKEN_KDF");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_token_dir_precedence, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_token_dir_config_errors, env_setup, env_teardown),
        cmocka_unit_test(test_token_path),
        cmocka_unit_test_setup_teardown(test_dir_scan, env_setup, env_teardown),
        cmocka_unit_test(test_kdf_from_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
