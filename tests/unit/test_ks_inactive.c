/*
 * test_ks_inactive.c — ks_list_inactive, what `evertoken info` lists as
 * "not active": pending and retired records with their state, retirement
 * time and credential link; public ones with their attributes while logged
 * out, private ones only after a login; never an active record; a record
 * with a malformed state is skipped and counted.
 */
#include "test_ks_util.h"

#define CLS_CERT 1
#define CLS_PUB  2
#define CLS_PRIV 3

static const unsigned char CRED[] = "cred-I";
#define CRED_ARGS CRED, sizeof(CRED) - 1

struct got {
    int n;
    struct {
        int64_t id, retired_at;
        ks_state state;
        int is_private, has_attrs;
        char label[32];
        unsigned char cred[16];
        size_t cred_len;
    } o[16];
};

static int
got_cb(void *ctx, const ks_inactive *x)
{
    struct got *g = ctx;

    assert_true(g->n < 16);
    g->o[g->n].id = x->id;
    g->o[g->n].retired_at = x->retired_at;
    g->o[g->n].state = x->state;
    g->o[g->n].is_private = x->is_private;
    g->o[g->n].has_attrs = x->attrs != NULL;
    g->o[g->n].label[0] = '\0';
    for (size_t i = 0; i < x->nattrs; i++)
        if (x->attrs[i].type == KS_ATTR_LABEL && x->attrs[i].len < sizeof(g->o[0].label)) {
            memcpy(g->o[g->n].label, x->attrs[i].value, x->attrs[i].len);
            g->o[g->n].label[x->attrs[i].len] = '\0';
        }
    assert_true(x->cred_len <= sizeof(g->o[0].cred));
    memcpy(g->o[g->n].cred, x->cred, x->cred_len);
    g->o[g->n].cred_len = x->cred_len;
    g->n++;
    return 0;
}

static int64_t
mk(ks_token *t, int pending, unsigned long cls, const char *id, const char *label)
{
    ks_attr a[3] = {{KS_ATTR_CLASS, sizeof(cls), (unsigned char *)&cls},
                    {KS_ATTR_LABEL, strlen(label), (unsigned char *)label},
                    {KS_ATTR_ID, strlen(id), (unsigned char *)id}};
    int64_t oid = 0;

    if (pending)
        assert_int_equal(ks_object_create_pending(t, cls == CLS_PRIV, a, 3, CRED_ARGS, &oid),
                         KS_OK);
    else
        assert_int_equal(ks_object_create(t, cls == CLS_PRIV, a, 3, &oid), KS_OK);
    return oid;
}

/* An active credential (key pair, certificate) rolled over to a new pair at
 * time 1000, then a second pending pair. */
static void
setup(ks_token *t)
{
    unsigned long cls = CLS_CERT;
    ks_attr cert[1] = {{KS_ATTR_CLASS, sizeof(cls), (unsigned char *)&cls}};

    assert_int_equal(ks_login(t, KS_USER, PIN(USER_PIN)), KS_OK);
    mk(t, 0, CLS_PRIV, "cred-I", "old-key");
    mk(t, 0, CLS_PUB, "cred-I", "old-key");
    mk(t, 0, CLS_CERT, "cred-I", "old-cert");
    mk(t, 1, CLS_PRIV, "x", "new-key");
    mk(t, 1, CLS_PUB, "x", "new-key");
    assert_int_equal(ks_rollover_commit(t, CRED_ARGS, cert, 1, 1000, NULL), KS_OK);
    mk(t, 1, CLS_PRIV, "y", "next-key");
    mk(t, 1, CLS_PUB, "y", "next-pub");
}

static void
test_logged_out(void **state)
{
    struct ks_fixture *f = *state;
    struct got g = {0};
    unsigned bad = 99;

    setup(f->tok);
    ks_logout(f->tok);
    assert_int_equal(ks_list_inactive(f->tok, got_cb, &g, &bad), KS_OK);
    assert_int_equal(bad, 0);
    /* 3 retired (the old credential), 2 pending; the active new pair and
     * certificate are not listed. */
    assert_int_equal(g.n, 5);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(g.o[i].state, KS_RETIRED);
        assert_int_equal(g.o[i].retired_at, 1000);
    }
    for (int i = 3; i < 5; i++) {
        assert_int_equal(g.o[i].state, KS_PENDING);
        assert_int_equal(g.o[i].retired_at, 0);
    }
    for (int i = 0; i < 5; i++) {
        assert_int_equal(g.o[i].cred_len, sizeof(CRED) - 1);
        assert_memory_equal(g.o[i].cred, CRED, sizeof(CRED) - 1);
        /* logged out: public records with attributes, private ones without */
        assert_int_equal(g.o[i].has_attrs, !g.o[i].is_private);
    }
    assert_true(g.o[0].is_private); /* created first: the old private key */
    assert_string_equal(g.o[1].label, "old-key");
    assert_string_equal(g.o[2].label, "old-cert");
    assert_true(g.o[3].is_private);
    assert_string_equal(g.o[4].label, "next-pub");
}

static void
test_logged_in(void **state)
{
    struct ks_fixture *f = *state;
    struct got g = {0};

    setup(f->tok);
    assert_int_equal(ks_list_inactive(f->tok, got_cb, &g, NULL), KS_OK);
    assert_int_equal(g.n, 5);
    for (int i = 0; i < 5; i++)
        assert_true(g.o[i].has_attrs);
    assert_string_equal(g.o[0].label, "old-key");
    assert_string_equal(g.o[3].label, "next-key");
}

static int
stop_cb(void *ctx, const ks_inactive *x)
{
    (void)x;
    return ++*(int *)ctx == 2;
}

static void
test_stop_and_tampered(void **state)
{
    struct ks_fixture *f = *state;
    struct got g = {0};
    unsigned bad = 0;
    int calls = 0;

    setup(f->tok);
    assert_int_equal(ks_list_inactive(f->tok, stop_cb, &calls, NULL), KS_OK);
    assert_int_equal(calls, 2);
    ks_logout(f->tok);
    /* A retired record without a retirement time is malformed: skipped. */
    raw_exec(f->path, "UPDATE objects SET retired_at = NULL WHERE id = "
                      "(SELECT min(id) FROM objects WHERE state = 2)");
    assert_int_equal(ks_list_inactive(f->tok, got_cb, &g, &bad), KS_OK);
    assert_int_equal(bad, 1);
    assert_int_equal(g.n, 4);
    /* A public record whose data no longer authenticates is skipped once
     * logged in (its MAC is checked then). */
    raw_exec(f->path, "UPDATE objects SET data = x'00' || data WHERE id = "
                      "(SELECT max(id) FROM objects WHERE state = 1 AND is_private = 0)");
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    memset(&g, 0, sizeof(g));
    assert_int_equal(ks_list_inactive(f->tok, got_cb, &g, &bad), KS_OK);
    assert_int_equal(bad, 2);
    assert_int_equal(g.n, 3);
    assert_int_equal(ks_list_inactive(NULL, got_cb, &g, NULL), KS_E_ARGS);
    assert_int_equal(ks_list_inactive(f->tok, NULL, &g, NULL), KS_E_ARGS);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_logged_out, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_logged_in, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stop_and_tampered, fixture_setup, fixture_teardown),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
