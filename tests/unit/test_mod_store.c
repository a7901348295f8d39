/*
 * test_mod_store.c — module/store.h, the path by which new objects enter a
 * token: the write rules, and store_pair_inlock's "both or neither" (the
 * first object is removed again when the second cannot be stored).
 *
 * A real keystore file in a temporary directory, logged in as the user; a
 * token and a session built by hand (single-threaded, so the *_inlock
 * functions are called directly). The second object is made unstorable by
 * giving it a duplicate attribute type, which ks_object_create refuses
 * (KS_E_ARGS).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mod_int.h"
#include "store.h"

#define SO_PIN   "12345678"
#define USER_PIN "1234"

struct fixture {
    char dir[64];
    char path[128];
    struct mod_token tok;
    struct mod_session rw, ro;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    ks_token *ks = NULL;

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/et-store.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/token-0.db", f->dir);
    setenv("EVERTOKEN_KDF", "fast", 1);
    assert_int_equal(
        ks_create(f->path, "store", (const unsigned char *)SO_PIN, strlen(SO_PIN), NULL, &ks),
        KS_OK);
    assert_int_equal(ks_login(ks, KS_SO, (const unsigned char *)SO_PIN, strlen(SO_PIN)), KS_OK);
    assert_int_equal(ks_init_user_pin(ks, (const unsigned char *)USER_PIN, strlen(USER_PIN)),
                     KS_OK);
    ks_logout(ks);
    assert_int_equal(ks_login(ks, KS_USER, (const unsigned char *)USER_PIN, strlen(USER_PIN)),
                     KS_OK);
    f->tok.state = TOK_OPEN;
    f->tok.ks = ks;
    f->tok.login = CKU_USER;
    f->tok.loaded = 1;
    f->rw.h = 1;
    f->rw.tok = &f->tok;
    f->rw.flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
    f->ro.h = 2;
    f->ro.tok = &f->tok;
    f->ro.flags = CKF_SERIAL_SESSION;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[200];

    cache_free_inlock(&f->tok);
    ks_close(f->tok.ks);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int
count_cb(void *ctx, const ks_object *obj)
{
    (void)obj;
    (*(int *)ctx)++;
    return 0;
}

/* Records in the file. */
static int
stored(struct fixture *f)
{
    int n = 0;
    unsigned tampered = 0;

    assert_int_equal(ks_load_objects(f->tok.ks, count_cb, &n, &tampered), KS_OK);
    assert_int_equal(tampered, 0);
    return n;
}

static int
session_objects(struct fixture *f)
{
    int n = 0;

    for (struct mod_object *o = f->tok.sobjs; o != NULL; o = o->next)
        n++;
    return n;
}

/* A valid data object. */
static mod_attrs *
data_object(CK_BBOOL token, CK_BBOOL priv, const char *label)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_TOKEN, &token, sizeof(token)},
                        {CKA_PRIVATE, &priv, sizeof(priv)},
                        {CKA_LABEL, (void *)label, strlen(label)}};
    obj_policy pol = {CK_FALSE, CK_TRUE};
    mod_attrs *o = NULL;

    assert_int_equal(obj_from_template(t, 4, &pol, &o), CKR_OK);
    return o;
}

/* A token object the keystore refuses: CKA_LABEL twice. */
static mod_attrs *
unstorable(void)
{
    static const CK_OBJECT_CLASS cls = CKO_DATA;
    static const CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    mod_attrs *o = calloc(1, sizeof(*o));
    ks_attr *a = calloc(5, sizeof(*a));

    assert_non_null(o);
    assert_non_null(a);
    a[0] = (ks_attr){CKA_CLASS, sizeof(cls), (unsigned char *)&cls};
    a[1] = (ks_attr){CKA_TOKEN, sizeof(yes), (unsigned char *)&yes};
    a[2] = (ks_attr){CKA_PRIVATE, sizeof(no), (unsigned char *)&no};
    a[3] = (ks_attr){CKA_LABEL, 1, (unsigned char *)"x"};
    a[4] = (ks_attr){CKA_LABEL, 1, (unsigned char *)"y"};
    o->n = 5;
    o->a = a; /* obj_free frees the array; the values are static */
    return o;
}

static void
test_pair_stored(void **state)
{
    struct fixture *f = *state;
    CK_OBJECT_HANDLE a = 0, b = 0;

    assert_int_equal(store_pair_inlock(&f->rw, data_object(CK_TRUE, CK_FALSE, "pub"),
                                       data_object(CK_TRUE, CK_TRUE, "priv"), &a, &b),
                     CKR_OK);
    assert_int_not_equal(a, b);
    assert_int_equal(stored(f), 2);
    assert_int_equal(f->tok.nobjs, 2);
    /* Session + token. */
    assert_int_equal(store_pair_inlock(&f->rw, data_object(CK_FALSE, CK_FALSE, "s"),
                                       data_object(CK_TRUE, CK_TRUE, "t"), &a, &b),
                     CKR_OK);
    assert_true(a >= MOD_HANDLE_SOBJ_FIRST);
    assert_true(b <= MOD_TOKEN_HANDLE_MAX);
    assert_int_equal(stored(f), 3);
    assert_int_equal(session_objects(f), 1);
}

static void
test_pair_rolled_back(void **state)
{
    struct fixture *f = *state;
    CK_OBJECT_HANDLE a = 0, b = 0;

    /* The first (token) object is stored, the second refused: the first
     * is removed from the file and the cache again. */
    assert_int_not_equal(
        store_pair_inlock(&f->rw, data_object(CK_TRUE, CK_FALSE, "first"), unstorable(), &a, &b),
        CKR_OK);
    assert_int_equal(a, 0);
    assert_int_equal(b, 0);
    assert_int_equal(stored(f), 0);
    assert_int_equal(f->tok.nobjs, 0);
    /* Same with a session object first. */
    assert_int_not_equal(
        store_pair_inlock(&f->rw, data_object(CK_FALSE, CK_TRUE, "first"), unstorable(), &a, &b),
        CKR_OK);
    assert_int_equal(session_objects(f), 0);
    assert_int_equal(stored(f), 0);
    /* A single refused object leaves nothing either. */
    assert_int_not_equal(store_object_inlock(&f->rw, unstorable(), &a), CKR_OK);
    assert_int_equal(stored(f), 0);
    assert_int_equal(f->tok.nobjs, 0);
}

static void
test_write_rules(void **state)
{
    struct fixture *f = *state;
    CK_OBJECT_HANDLE a = 0, b = 0;

    /* Either object breaking a rule: nothing is stored. */
    assert_int_equal(store_pair_inlock(&f->ro, data_object(CK_FALSE, CK_FALSE, "a"),
                                       data_object(CK_TRUE, CK_TRUE, "b"), &a, &b),
                     CKR_SESSION_READ_ONLY);
    assert_int_equal(session_objects(f), 0);
    assert_int_equal(store_write_check_inlock(&f->ro, CK_FALSE, CK_TRUE), CKR_OK);
    assert_int_equal(store_write_check_inlock(&f->ro, CK_TRUE, CK_FALSE), CKR_SESSION_READ_ONLY);
    f->tok.login = MOD_NOBODY;
    assert_int_equal(store_pair_inlock(&f->rw, data_object(CK_FALSE, CK_FALSE, "a"),
                                       data_object(CK_FALSE, CK_TRUE, "b"), &a, &b),
                     CKR_USER_NOT_LOGGED_IN);
    assert_int_equal(store_write_check_inlock(&f->rw, CK_TRUE, CK_FALSE), CKR_USER_NOT_LOGGED_IN);
    assert_int_equal(store_write_check_inlock(&f->rw, CK_FALSE, CK_FALSE), CKR_OK);
    f->tok.login = CKU_SO;
    assert_int_equal(store_write_check_inlock(&f->rw, CK_TRUE, CK_FALSE), CKR_OK);
    assert_int_equal(store_write_check_inlock(&f->rw, CK_FALSE, CK_TRUE), CKR_USER_NOT_LOGGED_IN);
    assert_int_equal(store_policy_inlock(&f->rw).so, CK_TRUE);
    f->tok.login = CKU_USER;
    assert_int_equal(store_policy_inlock(&f->rw).user, CK_TRUE);
    assert_int_equal(session_objects(f), 0);
    assert_int_equal(stored(f), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pair_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pair_rolled_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_rules, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
