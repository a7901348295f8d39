/*
 * test_ks_fault.c — fault injection (SQLite's test_malloc idea): make the
 * Nth SQLite allocation fail, for N = 1, 2, ... over open and over a
 * sequence of writes. Every failure must be reported as an error code
 * (never a crash), and the file must stay consistent: it reopens, the PIN
 * still works, and no record fails its integrity check.
 */
#include "test_ks_util.h"

static sqlite3_mem_methods orig_mem;
static int fail_at = -1; /* the allocation number to fail; -1: none */
static int alloc_count;

static int
should_fail(void)
{
    return fail_at >= 0 && ++alloc_count == fail_at;
}

static void *
f_malloc(int n)
{
    return should_fail() ? NULL : orig_mem.xMalloc(n);
}

static void *
f_realloc(void *p, int n)
{
    return should_fail() ? NULL : orig_mem.xRealloc(p, n);
}

static void
arm(int n)
{
    alloc_count = 0;
    fail_at = n;
}

/* Disarm; returns non-zero if the armed failure happened. */
static int
disarm(void)
{
    int hit = fail_at >= 0 && alloc_count >= fail_at;

    fail_at = -1;
    return hit;
}

/* The user PIN in force (the PIN change may or may not have happened). */
static const unsigned char *
cur_pin(int changed)
{
    return (const unsigned char *)(changed ? "changed-pin" : USER_PIN);
}

static int
ok_or_failure(ks_rv rv)
{
    return rv == KS_OK || rv == KS_E_NOMEM || rv == KS_E_IO;
}

static void
test_open_under_faults(void **state)
{
    struct ks_fixture *f = *state;
    ks_token *t = NULL;
    int n, hit = 1;

    for (n = 1; hit && n < 5000; n++) {
        ks_rv rv;

        arm(n);
        rv = ks_open(f->path, &t);
        hit = disarm();
        if (!ok_or_failure(rv))
            fprintf(stderr, "alloc %d: ks_open -> %s: %s\n", n, ks_strerror(rv), ks_open_error());
        assert_true(ok_or_failure(rv));
        if (rv == KS_OK) {
            assert_int_equal(ks_login(t, KS_USER, PIN(USER_PIN)), KS_OK);
            ks_close(t);
            t = NULL;
        }
    }
    assert_false(hit);    /* the loop ended because the whole open succeeded */
    assert_true(n > 100); /* ... after failing each of its many allocations */
    fprintf(stderr, "ks_open: %d allocation failures injected\n", n - 2);
}

static void
check_consistent(const char *path, int *pin_changed)
{
    ks_token *t = NULL;
    unsigned bad = 99;
    struct seen s;

    assert_int_equal(ks_open(path, &t), KS_OK);
    if (ks_login(t, KS_USER, PIN(USER_PIN)) != KS_OK) {
        assert_int_equal(ks_login(t, KS_USER, PIN("changed-pin")), KS_OK);
        *pin_changed = 1;
    }
    memset(&s, 0, sizeof(s));
    assert_int_equal(ks_load_objects(t, seen_cb, &s, &bad), KS_OK);
    assert_int_equal(bad, 0);
    ks_close(t);
}

static void
test_writes_under_faults(void **state)
{
    struct ks_fixture *f = *state;
    ks_attr a = {1, 8, (unsigned char *)"payload!"};
    ks_attr b = {2, 4, (unsigned char *)"more"};
    int n, hit = 1, pin_changed = 0;

    for (n = 1; hit && n < 20000; n++) {
        ks_token *t = NULL;
        int64_t id1 = 0, id2 = 0;
        struct seen s;
        unsigned bad;
        ks_rv rv[8];
        int k;

        assert_int_equal(ks_open(f->path, &t), KS_OK);
        if (ks_login(t, KS_USER, cur_pin(pin_changed),
                     strlen((const char *)cur_pin(pin_changed))) != KS_OK) {
            fprintf(stderr, "alloc %d: login: %s\n", n, ks_last_error(t));
            fail();
        }
        memset(&s, 0, sizeof(s));
        arm(n);
        rv[0] = ks_object_create(t, 1, &a, 1, &id1);
        rv[1] = ks_object_create(t, 0, &b, 1, &id2);
        rv[2] = ks_load_objects(t, seen_cb, &s, &bad);
        rv[3] = id1 ? ks_object_update(t, id1, &b, 1) : KS_OK;
        rv[4] = id2 ? ks_object_destroy(t, id2) : KS_OK;
        rv[5] = ks_set_setting(t, "k", "v");
        rv[6] = pin_changed ? KS_OK : ks_set_pin(t, KS_USER, PIN(USER_PIN), PIN("changed-pin"));
        rv[7] = id1 ? ks_object_destroy(t, id1) : KS_OK;
        hit = disarm();
        for (k = 0; k < 8; k++) {
            if (!ok_or_failure(rv[k]))
                fprintf(stderr, "alloc %d: step %d -> %s: %s\n", n, k, ks_strerror(rv[k]),
                        ks_last_error(t));
            assert_true(ok_or_failure(rv[k]));
        }
        if (rv[6] == KS_OK)
            pin_changed = 1;
        ks_close(t);
        check_consistent(f->path, &pin_changed);
        if (id1 && rv[7] != KS_OK) {
            /* Clean up what the failed destroy left, outside injection. */
            assert_int_equal(ks_open(f->path, &t), KS_OK);
            assert_int_equal(ks_login(t, KS_USER, cur_pin(pin_changed),
                                      strlen((const char *)cur_pin(pin_changed))),
                             KS_OK);
            (void)!ks_object_destroy(t, id1);
            ks_close(t);
        }
    }
    assert_false(hit);
    fprintf(stderr, "writes: %d allocation failures injected\n", n - 2);
    assert_true(n > 20);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_under_faults, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_writes_under_faults, fixture_setup, fixture_teardown),
    };
    sqlite3_mem_methods m;

    /* Must precede any other SQLite call. */
    if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &orig_mem) != SQLITE_OK)
        return 1;
    m = orig_mem;
    m.xMalloc = f_malloc;
    m.xRealloc = f_realloc;
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &m) != SQLITE_OK)
        return 1;
    /* No lookaside: every small allocation goes through f_malloc. */
    if (sqlite3_config(SQLITE_CONFIG_LOOKASIDE, 0, 0) != SQLITE_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
