/*
 * test_ks_changes.c — the change sequence and ks_load_changes: a second
 * handle that keeps a copy of the token up to date from the changes alone
 * must see exactly what a full ks_load_objects sees, after every kind of
 * write (create, update, destroy, pending, rollover commit/rollback/purge,
 * re-initialisation), logged in or not, and after tampering. The same for a
 * lazy reader (the module's partial cache): it starts empty at
 * ks_change_seq, reads objects by search (ks_find by CKA_ID, label or
 * class; ks_find_pending) and by id, and follows the changes, applying
 * them only to the objects it holds: what it holds is always what a full
 * load shows, and every search answers exactly the objects a full load has
 * with that value.
 */
#include "test_ks_util.h"

#define MAXO 512

/* One object as a reader sees it: identity, version, state, a hash of its
 * attributes. */
struct view_obj {
    int64_t id;
    uint32_t version;
    int is_private;
    ks_state state;
    unsigned char digest[16];
};

struct view {
    struct view_obj o[MAXO];
    int n;
    int64_t seq; /* highest sequence number taken in */
};

static void
digest_of(const ks_object *ko, unsigned char out[16])
{
    crypto_generichash_state h;

    crypto_generichash_init(&h, NULL, 0, 16);
    for (size_t i = 0; i < ko->nattrs; i++) {
        uint64_t t = ko->attrs[i].type, l = ko->attrs[i].len;
        crypto_generichash_update(&h, (const unsigned char *)&t, sizeof(t));
        crypto_generichash_update(&h, (const unsigned char *)&l, sizeof(l));
        if (l > 0)
            crypto_generichash_update(&h, ko->attrs[i].value, (size_t)l);
    }
    crypto_generichash_final(&h, out, 16);
}

static int
view_find(const struct view *v, int64_t id)
{
    for (int i = 0; i < v->n; i++)
        if (v->o[i].id == id)
            return i;
    return -1;
}

static int
view_put(void *ctx, const ks_object *ko)
{
    struct view *v = ctx;
    int i = view_find(v, ko->id);

    if (ko->state == KS_RETIRED) {
        /* Retired: out of the view (the module keeps it only for handles
         * already given out). */
        if (i >= 0)
            v->o[i] = v->o[--v->n];
        return 0;
    }
    if (i < 0) {
        assert_true(v->n < MAXO);
        i = v->n++;
    }
    v->o[i].id = ko->id;
    v->o[i].version = ko->version;
    v->o[i].is_private = ko->is_private;
    v->o[i].state = ko->state;
    digest_of(ko, v->o[i].digest);
    if (ko->seq > v->seq)
        v->seq = ko->seq;
    return 0;
}

static int gone_calls;

static void
view_gone(void *ctx, int64_t id)
{
    struct view *v = ctx;
    int i = view_find(v, id);

    gone_calls++;
    if (i >= 0)
        v->o[i] = v->o[--v->n];
}

static int
cmp_obj(const void *a, const void *b)
{
    int64_t x = ((const struct view_obj *)a)->id, y = ((const struct view_obj *)b)->id;

    return x < y ? -1 : x > y;
}

/* Full load of T into V (the reference). */
static void
view_full(ks_token *t, struct view *v)
{
    memset(v, 0, sizeof(*v));
    assert_int_equal(ks_load_objects(t, view_put, v, NULL), KS_OK);
}

/* Bring V up to date from T's changes. */
static void
view_delta(ks_token *t, struct view *v)
{
    int64_t upto = -1;

    assert_int_equal(ks_load_changes(t, v->seq, view_put, view_gone, v, &upto, NULL), KS_OK);
    assert_true(upto >= v->seq);
    v->seq = upto;
}

static void
view_assert_equal(struct view *a, struct view *b)
{
    qsort(a->o, (size_t)a->n, sizeof(a->o[0]), cmp_obj);
    qsort(b->o, (size_t)b->n, sizeof(b->o[0]), cmp_obj);
    assert_int_equal(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        assert_int_equal(a->o[i].id, b->o[i].id);
        assert_int_equal(a->o[i].version, b->o[i].version);
        assert_int_equal(a->o[i].is_private, b->o[i].is_private);
        assert_int_equal(a->o[i].state, b->o[i].state);
        assert_memory_equal(a->o[i].digest, b->o[i].digest, 16);
    }
}

/* The incremental view of reader R matches a full load of R. */
static void
check(ks_token *r, struct view *inc)
{
    static struct view full;

    view_delta(r, inc);
    view_full(r, &full);
    view_assert_equal(inc, &full);
}

static int64_t
mk_obj(ks_token *t, int is_private, uint64_t cls, const char *id, const char *label)
{
    unsigned char c[8];
    ks_attr a[3] = {
        {KS_ATTR_CLASS, sizeof(c), c},
        {KS_ATTR_LABEL, strlen(label), (unsigned char *)label},
        {KS_ATTR_ID, strlen(id), (unsigned char *)id},
    };
    int64_t oid = 0;

    memcpy(c, &cls, sizeof(c));
    assert_int_equal(ks_object_create(t, is_private, a, 3, &oid), KS_OK);
    return oid;
}

static void
test_basic_changes(void **state)
{
    struct ks_fixture *f = *state;
    ks_token *r = NULL;
    static struct view v;
    ks_attr upd = {KS_ATTR_LABEL, 7, (unsigned char *)"renamed"};
    int64_t a, b, upto = -1;

    assert_int_equal(ks_open(f->path, &r), KS_OK);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    view_full(r, &v);
    assert_int_equal(v.n, 0);

    /* Nothing changed: nothing handed out, the number stays. */
    gone_calls = 0;
    assert_int_equal(ks_load_changes(r, v.seq, view_put, view_gone, &v, &upto, NULL), KS_OK);
    assert_int_equal(upto, v.seq);
    assert_int_equal(gone_calls, 0);

    a = mk_obj(f->tok, 0, 1, "id-a", "a");
    b = mk_obj(f->tok, 0, 1, "id-b", "b");
    check(r, &v);
    assert_int_equal(v.n, 2);

    assert_int_equal(ks_object_update(f->tok, a, &upd, 1), KS_OK);
    check(r, &v);

    /* Destroying the object with the highest number: the tombstone still
     * gets a higher one, so the reader learns of it. */
    assert_int_equal(ks_object_destroy(f->tok, b), KS_OK);
    gone_calls = 0;
    check(r, &v);
    assert_int_equal(gone_calls, 1);
    assert_int_equal(v.n, 1);

    /* A private object: invisible to a reader that is logged out (told as
     * gone), visible once it logs in and reloads. */
    mk_obj(f->tok, 1, 3, "id-k", "key");
    check(r, &v);
    assert_int_equal(v.n, 1);
    assert_int_equal(ks_login(r, KS_USER, PIN(USER_PIN)), KS_OK);
    view_full(r, &v);
    assert_int_equal(v.n, 2);
    mk_obj(f->tok, 1, 3, "id-k2", "key2");
    check(r, &v);
    assert_int_equal(v.n, 3);

    /* Arguments. */
    assert_int_equal(ks_load_changes(NULL, 0, view_put, view_gone, &v, &upto, NULL), KS_E_ARGS);
    assert_int_equal(ks_load_changes(r, 0, NULL, view_gone, &v, &upto, NULL), KS_E_ARGS);
    assert_int_equal(ks_load_changes(r, 0, view_put, NULL, &v, &upto, NULL), KS_E_ARGS);
    assert_int_equal(ks_load_changes(r, 0, view_put, view_gone, &v, NULL, NULL), KS_E_ARGS);
    assert_int_equal(ks_load_changes(r, -1, view_put, view_gone, &v, &upto, NULL), KS_E_ARGS);
    ks_close(r);
}

/* Random writes by one handle, a reader following by changes only. */
static void
test_random_mirror(void **state)
{
    struct ks_fixture *f = *state;
    ks_token *r = NULL;
    static struct view v;
    int64_t live[MAXO];
    int nlive = 0, logged_in_reader = 0;
    char id[32], lab[32];
    const unsigned char cred[] = "cred-1";
    int64_t now = 1000000;

    assert_int_equal(ks_open(f->path, &r), KS_OK);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    /* A credential to roll over: key (private) and certificate. */
    live[nlive++] = mk_obj(f->tok, 1, 3, (const char *)cred, "cred key");
    live[nlive++] = mk_obj(f->tok, 0, 1, (const char *)cred, "cred cert");
    view_full(r, &v);
    srand(7);
    for (int step = 0; step < 400; step++) {
        int op = rand() % 10;

        if (op <= 2 || nlive < 4) {
            snprintf(id, sizeof(id), "id-%d", step);
            snprintf(lab, sizeof(lab), "obj %d", step);
            if (nlive < MAXO / 2)
                live[nlive++] = mk_obj(f->tok, rand() % 3 == 0, (uint64_t)(rand() % 4), id, lab);
        } else if (op <= 4) {
            int i = 2 + rand() % (nlive - 2);
            snprintf(lab, sizeof(lab), "upd %d", step);
            ks_attr a = {KS_ATTR_LABEL, strlen(lab), (unsigned char *)lab};
            assert_int_equal(ks_object_update(f->tok, live[i], &a, 1), KS_OK);
        } else if (op <= 6) {
            int i = 2 + rand() % (nlive - 2);
            assert_int_equal(ks_object_destroy(f->tok, live[i]), KS_OK);
            live[i] = live[--nlive];
        } else if (op == 7) {
            /* A renewal: pending key, commit with a new certificate. */
            unsigned char c[8];
            uint64_t cls = 1;
            ks_attr pk[1] = {{KS_ATTR_LABEL, 3, (unsigned char *)"new"}};
            ks_attr cert[2] = {{KS_ATTR_CLASS, sizeof(c), c}, {0x11, 4, (unsigned char *)"DER!"}};
            int64_t pid = 0, cid = 0;
            memcpy(c, &cls, sizeof(c));
            assert_int_equal(
                ks_object_create_pending(f->tok, 1, pk, 1, cred, sizeof(cred) - 1, &pid), KS_OK);
            if (rand() % 2) {
                assert_int_equal(
                    ks_rollover_commit(f->tok, cred, sizeof(cred) - 1, cert, 2, now++, &cid),
                    KS_OK);
                if (rand() % 3 == 0)
                    assert_int_equal(ks_rollover_rollback(f->tok, cred, sizeof(cred) - 1), KS_OK);
            }
        } else if (op == 8) {
            unsigned n = 0;
            assert_int_equal(ks_purge_retired(f->tok, now + 10, 0, &n), KS_OK);
            (void)n;
        } else {
            /* The reader logs in or out: it reloads in full, as the
             * module does, and goes on from there. */
            if (logged_in_reader)
                ks_logout(r);
            else
                assert_int_equal(ks_login(r, KS_USER, PIN(USER_PIN)), KS_OK);
            logged_in_reader = !logged_in_reader;
            view_full(r, &v);
        }
        /* Not after every step: changes pile up between two reads too. */
        if (rand() % 3 == 0)
            check(r, &v);
    }
    check(r, &v);
    ks_close(r);
}

/* Objects with attribute TYPE = VALUE, as a full load sees them (ids). */
struct match {
    uint64_t type;
    const void *value;
    size_t len;
    int64_t ids[MAXO];
    int n;
};

static int
match_cb(void *ctx, const ks_object *ko)
{
    struct match *m = ctx;

    for (size_t i = 0; i < ko->nattrs; i++)
        if (ko->attrs[i].type == m->type && ko->attrs[i].len == m->len &&
            memcmp(ko->attrs[i].value, m->value, m->len) == 0)
            m->ids[m->n++] = ko->id;
    return 0;
}

/* The lazy reader's search: into V (as the module takes its results in),
 * and it must name exactly the full load's objects with that value. */
static void
lazy_search_bin(ks_token *r, struct view *v, uint64_t type, const void *value, size_t len)
{
    static struct match full, found;
    static struct view got;

    memset(&full, 0, sizeof(full));
    full.type = type;
    full.value = value;
    full.len = len;
    assert_int_equal(ks_load_objects(r, match_cb, &full, NULL), KS_OK);
    memset(&got, 0, sizeof(got));
    assert_int_equal(ks_find(r, type, value, len, view_put, &got, NULL), KS_OK);
    memset(&found, 0, sizeof(found));
    for (int i = 0; i < got.n; i++)
        found.ids[found.n++] = got.o[i].id;
    assert_int_equal(found.n, full.n);
    for (int i = 0; i < full.n; i++)
        assert_int_equal(found.ids[i], full.ids[i]); /* both in id order */
    for (int i = 0; i < got.n; i++) {
        int j = view_find(v, got.o[i].id);

        if (j < 0) {
            assert_true(v->n < MAXO);
            v->o[v->n++] = got.o[i];
        }
    }
}

static void
lazy_search(ks_token *r, struct view *v, uint64_t type, const char *value)
{
    lazy_search_bin(r, v, type, value, strlen(value));
}

/* The pending objects of credential CRED, as ks_find_pending hands them
 * out and as a full load shows them (state pending, linked to CRED). */
struct pmatch {
    const unsigned char *cred;
    size_t len;
    int64_t ids[MAXO];
    int n;
};

static int
pmatch_cb(void *ctx, const ks_object *ko)
{
    struct pmatch *m = ctx;

    if (ko->state == KS_PENDING && ko->cred_len == m->len &&
        memcmp(ko->cred, m->cred, m->len) == 0) {
        assert_true(m->n < MAXO);
        m->ids[m->n++] = ko->id;
    }
    return 0;
}

static void
lazy_pending(ks_token *r, const unsigned char *cred, size_t len)
{
    static struct pmatch full, found;
    unsigned bad = 9;

    memset(&full, 0, sizeof(full));
    full.cred = cred;
    full.len = len;
    found = full;
    assert_int_equal(ks_load_objects(r, pmatch_cb, &full, NULL), KS_OK);
    assert_int_equal(ks_find_pending(r, cred, len, pmatch_cb, &found, &bad), KS_OK);
    assert_int_equal(bad, 0);
    assert_int_equal(found.n, full.n);
    for (int i = 0; i < full.n; i++)
        assert_int_equal(found.ids[i], full.ids[i]);
}

/* A change reaches the lazy view only if it holds the object (as the
 * module's partial cache applies changes only to what it has cached). */
static int
cached_put(void *ctx, const ks_object *ko)
{
    struct view *v = ctx;

    if (view_find(v, ko->id) < 0) {
        if (ko->seq > v->seq)
            v->seq = ko->seq;
        return 0;
    }
    return view_put(ctx, ko);
}

/* Every object the lazy view holds is the full load's, unchanged. */
static void
lazy_check(ks_token *r, struct view *lv)
{
    static struct view full;
    int64_t upto = -1;

    assert_int_equal(ks_load_changes(r, lv->seq, cached_put, view_gone, lv, &upto, NULL), KS_OK);
    assert_true(upto >= lv->seq);
    lv->seq = upto;
    view_full(r, &full);
    for (int i = 0; i < lv->n; i++) {
        int j = view_find(&full, lv->o[i].id);

        assert_true(j >= 0);
        assert_int_equal(lv->o[i].version, full.o[j].version);
        assert_int_equal(lv->o[i].state, full.o[j].state);
        assert_memory_equal(lv->o[i].digest, full.o[j].digest, 16);
    }
}

static void
lazy_start(ks_token *r, struct view *lv)
{
    memset(lv, 0, sizeof(*lv));
    assert_int_equal(ks_change_seq(r, &lv->seq), KS_OK);
}

/* The random mirror, read lazily. */
static void
test_random_mirror_lazy(void **state)
{
    struct ks_fixture *f = *state;
    ks_token *r = NULL;
    static struct view lv;
    int64_t live[MAXO];
    int nlive = 0, logged_in_reader = 0, last = 0;
    char id[32], lab[32];
    const unsigned char cred[] = "cred-1";
    int64_t now = 1000000;

    assert_int_equal(ks_open(f->path, &r), KS_OK);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    live[nlive++] = mk_obj(f->tok, 1, 3, (const char *)cred, "cred key");
    live[nlive++] = mk_obj(f->tok, 0, 1, (const char *)cred, "cred cert");
    lazy_start(r, &lv);
    srand(11);
    for (int step = 0; step < 400; step++) {
        int op = rand() % 12;

        if (op <= 2 || nlive < 4) {
            snprintf(id, sizeof(id), "id-%d", step % 50);
            snprintf(lab, sizeof(lab), "obj %d", step);
            if (nlive < MAXO / 2)
                live[nlive++] = mk_obj(f->tok, rand() % 3 == 0, (uint64_t)(rand() % 4), id, lab);
            last = step;
        } else if (op <= 4) {
            int i = 2 + rand() % (nlive - 2);
            snprintf(lab, sizeof(lab), "upd %d", step % 20);
            ks_attr a = {KS_ATTR_LABEL, strlen(lab), (unsigned char *)lab};
            assert_int_equal(ks_object_update(f->tok, live[i], &a, 1), KS_OK);
        } else if (op <= 6) {
            int i = 2 + rand() % (nlive - 2);
            assert_int_equal(ks_object_destroy(f->tok, live[i]), KS_OK);
            live[i] = live[--nlive];
        } else if (op == 7) {
            unsigned char c[8];
            uint64_t cls = 1;
            ks_attr pk[1] = {{KS_ATTR_LABEL, 3, (unsigned char *)"new"}};
            ks_attr cert[2] = {{KS_ATTR_CLASS, sizeof(c), c}, {0x11, 4, (unsigned char *)"DER!"}};
            int64_t pid = 0, cid = 0;
            memcpy(c, &cls, sizeof(c));
            assert_int_equal(
                ks_object_create_pending(f->tok, 1, pk, 1, cred, sizeof(cred) - 1, &pid), KS_OK);
            if (rand() % 2)
                assert_int_equal(
                    ks_rollover_commit(f->tok, cred, sizeof(cred) - 1, cert, 2, now++, &cid),
                    KS_OK);
        } else if (op == 8) {
            unsigned n = 0;
            assert_int_equal(ks_purge_retired(f->tok, now + 10, 0, &n), KS_OK);
        } else if (op <= 10) {
            /* The reader searches: by CKA_ID, label or class, values
             * that exist, existed or never will, or for the pending
             * objects of the credential. */
            int how = rand() % 6;

            if (how == 4) {
                uint64_t cls = (uint64_t)(rand() % 5);
                unsigned char c[8];

                memcpy(c, &cls, sizeof(c));
                lazy_search_bin(r, &lv, KS_ATTR_CLASS, c, sizeof(c));
            } else if (how == 5) {
                lazy_pending(r, cred, sizeof(cred) - 1);
            } else if (how < 2) {
                snprintf(id, sizeof(id), "id-%d", rand() % 60);
                lazy_search(r, &lv, KS_ATTR_ID, rand() % 5 ? id : (const char *)cred);
            } else {
                snprintf(lab, sizeof(lab), rand() % 2 ? "upd %d" : "obj %d",
                         rand() % 2 ? rand() % 20 : last);
                lazy_search(r, &lv, KS_ATTR_LABEL, lab);
            }
        } else {
            /* Login or logout: the module drops its cache and starts
             * empty again. */
            if (logged_in_reader)
                ks_logout(r);
            else
                assert_int_equal(ks_login(r, KS_USER, PIN(USER_PIN)), KS_OK);
            logged_in_reader = !logged_in_reader;
            lazy_start(r, &lv);
        }
        if (rand() % 3 == 0)
            lazy_check(r, &lv);
    }
    lazy_check(r, &lv);
    ks_close(r);
}

/* Re-initialising the token leaves tombstones of every object. */
static void
test_reinit(void **state)
{
    struct ks_fixture *f = *state;
    ks_token *r = NULL;
    static struct view v;

    assert_int_equal(ks_open(f->path, &r), KS_OK);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    for (int i = 0; i < 20; i++)
        mk_obj(f->tok, 0, 1, "x", "x");
    view_full(r, &v);
    assert_int_equal(v.n, 20);
    ks_logout(f->tok);
    assert_int_equal(ks_reinit(f->tok, PIN(SO_PIN), "again"), KS_OK);
    check(r, &v);
    assert_int_equal(v.n, 0);
    /* And numbering goes on above what the reader has seen. */
    assert_int_equal(ks_login(f->tok, KS_SO, PIN(SO_PIN)), KS_OK);
    assert_int_equal(ks_init_user_pin(f->tok, PIN(USER_PIN)), KS_OK);
    ks_logout(f->tok);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    mk_obj(f->tok, 0, 1, "y", "y");
    check(r, &v);
    assert_int_equal(v.n, 1);
    ks_close(r);
}

/* A record changed behind the keystore's back is reported gone and counted. */
static void
test_tampered_change(void **state)
{
    struct ks_fixture *f = *state;
    ks_token *r = NULL;
    static struct view v;
    unsigned tampered = 0;
    int64_t a, upto = 0;
    char sql[160];

    assert_int_equal(ks_open(f->path, &r), KS_OK);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(ks_login(r, KS_USER, PIN(USER_PIN)), KS_OK);
    a = mk_obj(f->tok, 1, 3, "k", "k");
    view_full(r, &v);
    assert_int_equal(v.n, 1);
    snprintf(sql, sizeof(sql),
             "UPDATE objects SET data = zeroblob(length(data)), seq = seq + 100 WHERE id = %lld",
             (long long)a);
    raw_exec(f->path, sql);
    assert_int_equal(ks_load_changes(r, v.seq, view_put, view_gone, &v, &upto, &tampered), KS_OK);
    assert_int_equal(tampered, 1);
    assert_int_equal(v.n, 0);
    ks_close(r);
}

/* A version 3 file (no sequence numbers) is migrated; everything in it
 * counts as seen by a full load, later writes are numbered. */
static void
test_migration_from_v3(void **state)
{
    struct ks_fixture *f = *state;
    ks_token *r = NULL;
    static struct view v;
    ks_info info;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    mk_obj(f->tok, 0, 1, "old", "old");
    ks_close(f->tok);
    f->tok = NULL;
    raw_objects_v4(f->path);
    raw_exec(f->path, "DROP INDEX objects_seq; ALTER TABLE objects DROP COLUMN seq;"
                      "DROP TABLE gone; PRAGMA user_version = 3;");
    assert_int_equal(ks_open(f->path, &f->tok), KS_OK);
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.schema_version, KS_SCHEMA_VERSION);
    assert_int_equal(ks_open(f->path, &r), KS_OK);
    view_full(r, &v);
    assert_int_equal(v.n, 1);
    assert_int_equal(v.seq, 0);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    mk_obj(f->tok, 0, 1, "new", "new");
    check(r, &v);
    assert_int_equal(v.n, 2);
    ks_close(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic_changes, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_random_mirror, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_random_mirror_lazy, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_reinit, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tampered_change, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v3, fixture_setup, fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
