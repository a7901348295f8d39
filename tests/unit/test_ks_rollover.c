/*
 * test_ks_rollover.c — credential rollover in the keystore: pending objects,
 * the one-transaction commit, rollback, purge with an injected clock, state
 * tampering, migration of a schema 2 file, and commit under injected
 * SQLite allocation failures (the old credential stays active and intact);
 * schema 7: ks_find_pending, forged index columns (a rollover never acts on
 * an object they point it at), migrations from schemas 6, 5 and 4 of a
 * token in the middle of a rollover.
 */
#include "test_ks_util.h"

#include "ks_int.h" /* the statements whose query plans test_plans checks */

#define CLS_CERT 1
#define CLS_PUB  2
#define CLS_PRIV 3
#define A_VALUE  0x11

static const unsigned char CRED[] = "cred-A";
#define CRED_ARGS CRED, sizeof(CRED) - 1

/* What one load shows of an object. */
struct vobj {
    int64_t id;
    ks_state state;
    unsigned long cls;
    char id_attr[32], label[32], value[32];
};

struct view {
    int n;
    struct vobj o[32];
};

static void
attr_str(const ks_object *o, uint64_t type, char *out, size_t n)
{
    out[0] = '\0';
    for (size_t i = 0; i < o->nattrs; i++)
        if (o->attrs[i].type == type) {
            size_t l = o->attrs[i].len < n - 1 ? o->attrs[i].len : n - 1;
            memcpy(out, o->attrs[i].value, l);
            out[l] = '\0';
        }
}

static int
view_cb(void *ctx, const ks_object *o)
{
    struct view *v = ctx;
    struct vobj *x;

    assert_true(v->n < 32);
    x = &v->o[v->n++];
    x->id = o->id;
    x->state = o->state;
    x->cls = 0;
    for (size_t i = 0; i < o->nattrs; i++)
        if (o->attrs[i].type == KS_ATTR_CLASS && o->attrs[i].len == sizeof(unsigned long))
            memcpy(&x->cls, o->attrs[i].value, sizeof(unsigned long));
    attr_str(o, KS_ATTR_ID, x->id_attr, sizeof(x->id_attr));
    attr_str(o, KS_ATTR_LABEL, x->label, sizeof(x->label));
    attr_str(o, A_VALUE, x->value, sizeof(x->value));
    return 0;
}

static void
load(ks_token *t, struct view *v, unsigned *bad)
{
    memset(v, 0, sizeof(*v));
    assert_int_equal(ks_load_objects(t, view_cb, v, bad), KS_OK);
}

/* The active object of class CLS with CKA_ID = CRED, or NULL; asserts
 * there is at most one. */
static const struct vobj *
active(const struct view *v, unsigned long cls)
{
    const struct vobj *r = NULL;

    for (int i = 0; i < v->n; i++)
        if (v->o[i].state == KS_ACTIVE && v->o[i].cls == cls &&
            strcmp(v->o[i].id_attr, (const char *)CRED) == 0) {
            assert_null(r);
            r = &v->o[i];
        }
    return r;
}

static const struct vobj *
must_active(const struct view *v, unsigned long cls)
{
    const struct vobj *r = active(v, cls);

    assert_non_null(r);
    return r;
}

static int64_t
mk(ks_token *t, int pending, unsigned long cls, const char *id, const char *label,
   const char *value)
{
    ks_attr a[4] = {{KS_ATTR_CLASS, sizeof(cls), (unsigned char *)&cls},
                    {KS_ATTR_LABEL, strlen(label), (unsigned char *)label},
                    {KS_ATTR_ID, strlen(id), (unsigned char *)id},
                    {A_VALUE, strlen(value), (unsigned char *)value}};
    int64_t oid = 0;
    int priv = cls == CLS_PRIV;

    if (pending)
        assert_int_equal(ks_object_create_pending(t, priv, a, 4, CRED_ARGS, &oid), KS_OK);
    else
        assert_int_equal(ks_object_create(t, priv, a, 4, &oid), KS_OK);
    return oid;
}

struct cred_ids {
    int64_t old_priv, old_pub, old_cert, new_priv, new_pub;
};

/* An active credential (pair + certificate) and a pending pair for it. */
static void
setup_cred(ks_token *t, struct cred_ids *c)
{
    c->old_priv = mk(t, 0, CLS_PRIV, "cred-A", "mykey", "old-secret");
    c->old_pub = mk(t, 0, CLS_PUB, "cred-A", "mykey", "old-public");
    c->old_cert = mk(t, 0, CLS_CERT, "cred-A", "mycert", "old-cert-bytes");
    c->new_priv = mk(t, 1, CLS_PRIV, "tmp-id", "tmp", "new-secret");
    c->new_pub = mk(t, 1, CLS_PUB, "tmp-id", "tmp", "new-public");
}

static void
commit(ks_token *t, int64_t now, int64_t *cert_id)
{
    unsigned long cls = CLS_CERT;
    ks_attr cert[2] = {{KS_ATTR_CLASS, sizeof(cls), (unsigned char *)&cls},
                       {A_VALUE, 14, (unsigned char *)"new-cert-bytes"}};

    assert_int_equal(ks_rollover_commit(t, CRED_ARGS, cert, 2, now, cert_id), KS_OK);
}

static void
assert_old_active(ks_token *t)
{
    struct view v;
    unsigned bad = 9;

    load(t, &v, &bad);
    assert_int_equal(bad, 0);
    assert_string_equal(must_active(&v, CLS_PRIV)->value, "old-secret");
    assert_string_equal(must_active(&v, CLS_PUB)->value, "old-public");
    assert_string_equal(must_active(&v, CLS_CERT)->value, "old-cert-bytes");
}

static void
test_pending_then_commit(void **state)
{
    struct ks_fixture *f = *state;
    struct cred_ids c;
    struct view v;
    ks_state s;
    int64_t at = 0, cert_id = 0;
    unsigned bad = 9;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    setup_cred(f->tok, &c);
    /* Pending objects are handed out, marked pending; the credential is the old one. */
    load(f->tok, &v, &bad);
    assert_int_equal(v.n, 5);
    assert_int_equal(v.o[3].state, KS_PENDING);
    assert_int_equal(v.o[4].state, KS_PENDING);
    assert_old_active(f->tok);

    commit(f->tok, 1000, &cert_id);
    assert_true(cert_id > c.new_pub);
    load(f->tok, &v, &bad);
    assert_int_equal(bad, 0);
    assert_int_equal(v.n, 3); /* retired ones are not handed out */
    assert_int_equal(must_active(&v, CLS_PRIV)->id, c.new_priv);
    assert_string_equal(must_active(&v, CLS_PRIV)->value, "new-secret");
    assert_string_equal(must_active(&v, CLS_PRIV)->label, "mykey"); /* same class's label */
    assert_int_equal(must_active(&v, CLS_PUB)->id, c.new_pub);
    assert_string_equal(must_active(&v, CLS_PUB)->label, "mykey");
    assert_int_equal(must_active(&v, CLS_CERT)->id, cert_id);
    assert_string_equal(must_active(&v, CLS_CERT)->label, "mycert");
    assert_string_equal(must_active(&v, CLS_CERT)->value, "new-cert-bytes");
    assert_int_equal(ks_object_state(f->tok, c.old_priv, &s, &at), KS_OK);
    assert_int_equal(s, KS_RETIRED);
    assert_int_equal(at, 1000);
    assert_int_equal(ks_object_state(f->tok, c.old_cert, &s, &at), KS_OK);
    assert_int_equal(s, KS_RETIRED);
    assert_int_equal(ks_object_state(f->tok, c.new_priv, &s, &at), KS_OK);
    assert_int_equal(s, KS_ACTIVE);
    assert_int_equal(at, 0);
    assert_int_equal(ks_object_get(f->tok, c.old_priv, view_cb, &v), KS_E_NOT_FOUND);

    /* Another handle (as another process would) sees the swap, authenticated. */
    {
        ks_token *t2 = NULL;

        assert_int_equal(ks_open(f->path, &t2), KS_OK);
        assert_int_equal(ks_login(t2, KS_USER, PIN(USER_PIN)), KS_OK);
        load(t2, &v, &bad);
        assert_int_equal(bad, 0);
        assert_string_equal(must_active(&v, CLS_PRIV)->value, "new-secret");
        ks_close(t2);
    }
    /* A second commit needs a new pending pair. */
    assert_int_equal(ks_rollover_commit(f->tok, CRED_ARGS,
                                        &(ks_attr){KS_ATTR_CLASS, 1, (unsigned char *)"x"}, 1, 2000,
                                        NULL),
                     KS_E_NOT_FOUND);
    load(f->tok, &v, &bad);
    assert_int_equal(v.n, 3);
}

static void
test_commit_refusals(void **state)
{
    struct ks_fixture *f = *state;
    ks_attr cert = {KS_ATTR_CLASS, 1, (unsigned char *)"x"};
    struct view v;
    unsigned bad;

    assert_int_equal(ks_rollover_commit(f->tok, CRED_ARGS, &cert, 1, 5, NULL), KS_E_NOT_LOGGED_IN);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    mk(f->tok, 0, CLS_PRIV, "cred-A", "mykey", "old-secret");
    /* No pending pair: nothing changes. */
    assert_int_equal(ks_rollover_commit(f->tok, CRED_ARGS, &cert, 1, 5, NULL), KS_E_NOT_FOUND);
    load(f->tok, &v, &bad);
    assert_int_equal(v.n, 1);
    assert_int_equal(v.o[0].state, KS_ACTIVE);
    assert_int_equal(ks_rollover_commit(f->tok, CRED, 0, &cert, 1, 5, NULL), KS_E_ARGS);
    assert_int_equal(ks_rollover_commit(f->tok, CRED_ARGS, &cert, 1, 0, NULL), KS_E_ARGS);
    assert_int_equal(ks_rollover_commit(f->tok, CRED_ARGS, NULL, 0, 5, NULL), KS_E_ARGS);
    assert_int_equal(ks_rollover_rollback(f->tok, CRED_ARGS), KS_E_NOT_FOUND);
}

static void
test_rollback(void **state)
{
    struct ks_fixture *f = *state;
    struct cred_ids c;
    struct view v;
    ks_state s;
    int64_t cert_id;
    unsigned bad = 9;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    setup_cred(f->tok, &c);
    commit(f->tok, 1000, &cert_id);
    assert_int_equal(ks_rollover_rollback(f->tok, CRED_ARGS), KS_OK);
    assert_old_active(f->tok);
    load(f->tok, &v, &bad);
    assert_int_equal(v.n, 3);
    assert_int_equal(must_active(&v, CLS_PRIV)->id, c.old_priv);
    assert_string_equal(must_active(&v, CLS_PRIV)->label, "mykey");
    assert_int_equal(ks_object_state(f->tok, c.new_priv, &s, NULL), KS_E_NOT_FOUND);
    assert_int_equal(ks_object_state(f->tok, cert_id, &s, NULL), KS_E_NOT_FOUND);
    assert_int_equal(ks_object_state(f->tok, c.old_cert, &s, NULL), KS_OK);
    assert_int_equal(s, KS_ACTIVE);
    /* Only once. */
    assert_int_equal(ks_rollover_rollback(f->tok, CRED_ARGS), KS_E_NOT_FOUND);
    assert_old_active(f->tok);

    /* Two rollovers: a rollback returns to the middle generation. */
    c.new_priv = mk(f->tok, 1, CLS_PRIV, "t", "t", "gen2-secret");
    commit(f->tok, 2000, NULL);
    mk(f->tok, 1, CLS_PRIV, "t", "t", "gen3-secret");
    commit(f->tok, 3000, NULL);
    load(f->tok, &v, &bad);
    assert_string_equal(must_active(&v, CLS_PRIV)->value, "gen3-secret");
    assert_int_equal(ks_rollover_rollback(f->tok, CRED_ARGS), KS_OK);
    load(f->tok, &v, &bad);
    assert_int_equal(bad, 0);
    assert_string_equal(must_active(&v, CLS_PRIV)->value, "gen2-secret");
    assert_int_equal(must_active(&v, CLS_PRIV)->id, c.new_priv);
}

static void
test_discard(void **state)
{
    struct ks_fixture *f = *state;
    struct cred_ids c;
    unsigned n = 9;
    ks_state s;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    setup_cred(f->tok, &c);
    assert_int_equal(ks_rollover_discard(f->tok, CRED_ARGS, &n), KS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ks_object_state(f->tok, c.new_priv, &s, NULL), KS_E_NOT_FOUND);
    assert_old_active(f->tok);
}

static void
test_purge(void **state)
{
    struct ks_fixture *f = *state;
    const int64_t grace = 7 * 86400;
    struct cred_ids c;
    unsigned n = 9;
    ks_state s;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    setup_cred(f->tok, &c);
    commit(f->tok, 1000000, NULL);
    assert_int_equal(ks_purge_retired(f->tok, 1000000 + grace - 1, grace, &n), KS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(ks_object_state(f->tok, c.old_priv, &s, NULL), KS_OK);
    assert_int_equal(ks_purge_retired(f->tok, 1000000 + grace, grace, &n), KS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ks_object_state(f->tok, c.old_priv, &s, NULL), KS_E_NOT_FOUND);
    assert_int_equal(ks_object_state(f->tok, c.old_cert, &s, NULL), KS_E_NOT_FOUND);
    assert_int_equal(ks_object_state(f->tok, c.new_priv, &s, NULL), KS_OK);
    assert_int_equal(s, KS_ACTIVE);
    /* Nothing to roll back to any more. */
    assert_int_equal(ks_rollover_rollback(f->tok, CRED_ARGS), KS_E_NOT_FOUND);
    ks_logout(f->tok);
    assert_int_equal(ks_purge_retired(f->tok, 1, 0, &n), KS_E_NOT_LOGGED_IN);
    ks_close(f->tok);
    f->tok = NULL;
    /* secure_delete: the old certificate's bytes are gone from the file. */
    assert_false(file_contains(f->path, "old-cert-bytes", 14));
    assert_true(file_contains(f->path, "new-cert-bytes", 14));
}

static int
row_exists(const char *path, int64_t id)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int r;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT 1 FROM objects WHERE id = ?1", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, id);
    r = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return r;
}

/* The state is authenticated: flipping it in the file is detected. */
static void
test_state_tamper(void **state)
{
    struct ks_fixture *f = *state;
    struct cred_ids c;
    struct view v;
    unsigned bad = 0, n = 9;
    char sql[200];

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    setup_cred(f->tok, &c);
    commit(f->tok, 1000, NULL);
    /* A retired key made active again; an active key marked retired long ago. */
    snprintf(sql, sizeof(sql),
             "UPDATE objects SET state = 0, retired_at = NULL, cred = NULL WHERE id = %lld;"
             "UPDATE objects SET state = 2, retired_at = 1 WHERE id = %lld;",
             (long long)c.old_priv, (long long)c.new_pub);
    raw_exec(f->path, sql);
    load(f->tok, &v, &bad);
    assert_int_equal(bad, 2); /* both fail their check; neither is shown */
    assert_null(active(&v, CLS_PUB));
    assert_int_equal(must_active(&v, CLS_PRIV)->id, c.new_priv);
    /* Purge destroys only genuinely retired records, not the forged one. */
    assert_int_equal(ks_purge_retired(f->tok, 1000, 0, &n), KS_OK);
    assert_int_equal(n, 2); /* old public key and old certificate */
    assert_true(row_exists(f->path, c.new_pub));
    assert_true(row_exists(f->path, c.old_priv));
    assert_false(row_exists(f->path, c.old_cert));
}

/* A schema 2 file (objects without state columns) migrates; its objects
 * are active and keep authenticating; a rollover then works. */
static void
test_migrate_from_v2(void **state)
{
    struct ks_fixture *f = *state;
    struct view v;
    ks_info info;
    unsigned bad = 9;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    mk(f->tok, 0, CLS_PRIV, "cred-A", "mykey", "old-secret");
    mk(f->tok, 0, CLS_PUB, "cred-A", "mykey", "old-public");
    mk(f->tok, 0, CLS_CERT, "cred-A", "mycert", "old-cert-bytes");
    ks_close(f->tok);
    f->tok = NULL;
    raw_objects_v2(f->path);
    {
        /* Really the old layout: no state column. */
        sqlite3 *db;
        sqlite3_stmt *st = NULL;

        assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
        assert_int_not_equal(sqlite3_prepare_v2(db, "SELECT state FROM objects", -1, &st, NULL),
                             SQLITE_OK);
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
    assert_int_equal(ks_open(f->path, &f->tok), KS_OK);
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.schema_version, KS_SCHEMA_VERSION);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_old_active(f->tok);
    mk(f->tok, 1, CLS_PRIV, "t", "t", "new-secret");
    commit(f->tok, 77, NULL);
    load(f->tok, &v, &bad);
    assert_int_equal(bad, 0);
    assert_string_equal(must_active(&v, CLS_PRIV)->value, "new-secret");
    assert_null(active(&v, CLS_PUB)); /* retired; no new public key in this test */
}

/* ---- schema 7: the rollover reads through indexes ---------------------- */

struct pend {
    int n;
    int64_t ids[8];
};

static int
pend_cb(void *ctx, const ks_object *o)
{
    struct pend *p = ctx;

    assert_int_equal(o->state, KS_PENDING);
    if (p->n < 8)
        p->ids[p->n] = o->id;
    p->n++;
    return 0;
}

static struct pend
find_pending(ks_token *t, const char *cred, unsigned *bad)
{
    struct pend p;

    memset(&p, 0, sizeof(p));
    assert_int_equal(
        ks_find_pending(t, (const unsigned char *)cred, strlen(cred), pend_cb, &p, bad), KS_OK);
    return p;
}

/* ks_find_pending: the pending objects of one credential, checked; only
 * the rows linked to it are read. */
static void
test_find_pending(void **state)
{
    struct ks_fixture *f = *state;
    struct cred_ids c;
    struct pend p;
    unsigned bad = 9;
    int64_t other;
    char sql[200];

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    setup_cred(f->tok, &c);
    other = mk(f->tok, 0, CLS_PRIV, "cred-B", "b", "b-secret");
    p = find_pending(f->tok, "cred-A", &bad);
    assert_int_equal(bad, 0);
    assert_true(p.n == 2 && p.ids[0] == c.new_priv && p.ids[1] == c.new_pub);
    assert_int_equal(find_pending(f->tok, "cred-B", NULL).n, 0);
    assert_int_equal(find_pending(f->tok, "cred-", NULL).n, 0);
    /* A damaged record linked to nothing is not even read (not counted). */
    snprintf(sql, sizeof(sql), "UPDATE objects SET data = x'0102' WHERE id = %lld",
             (long long)other);
    raw_exec(f->path, sql);
    p = find_pending(f->tok, "cred-A", &bad);
    assert_int_equal(bad, 0);
    assert_int_equal(p.n, 2);
    /* A damaged pending record is counted and skipped. */
    snprintf(sql, sizeof(sql), "UPDATE objects SET data = x'0102' WHERE id = %lld",
             (long long)c.new_pub);
    raw_exec(f->path, sql);
    p = find_pending(f->tok, "cred-A", &bad);
    assert_int_equal(bad, 1);
    assert_true(p.n == 1 && p.ids[0] == c.new_priv);
    /* Logged out: the private pending key is not read. */
    ks_logout(f->tok);
    p = find_pending(f->tok, "cred-A", &bad);
    assert_true(p.n == 0 && bad == 1);
    assert_int_equal(ks_find_pending(f->tok, CRED, 0, pend_cb, &p, NULL), KS_E_ARGS);
    assert_int_equal(ks_find_pending(f->tok, CRED_ARGS, NULL, &p, NULL), KS_E_ARGS);
}

/* Forged index columns: a rollover never acts on an object they point it
 * at (the records decide), and a forged link fails the record's check. */
static void
test_forged_rollover_columns(void **state)
{
    struct ks_fixture *f = *state;
    struct cred_ids c;
    int64_t b_priv, b_pub, b_cert;
    unsigned n = 9, bad = 9;
    struct view v;
    ks_state s;
    char sql[400];

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    setup_cred(f->tok, &c);
    b_priv = mk(f->tok, 0, CLS_PRIV, "cred-B", "b", "b-secret");
    b_pub = mk(f->tok, 0, CLS_PUB, "cred-B", "b", "b-public");
    b_cert = mk(f->tok, 0, CLS_CERT, "cred-B", "b", "b-cert");
    /* B's key and certificate claim cred-A's CKA_ID (its keyed hash, its
     * clear value): the commit reads them, and leaves them active. */
    snprintf(sql, sizeof(sql),
             "UPDATE objects SET l_id = (SELECT l_id FROM objects WHERE id = %lld) "
             "WHERE id = %lld;"
             "UPDATE objects SET l_id = CAST('cred-A' AS BLOB) WHERE id = %lld;",
             (long long)c.old_priv, (long long)b_priv, (long long)b_cert);
    raw_exec(f->path, sql);
    commit(f->tok, 1000, NULL);
    assert_int_equal(ks_object_state(f->tok, b_priv, &s, NULL), KS_OK);
    assert_int_equal(s, KS_ACTIVE);
    assert_int_equal(ks_object_state(f->tok, b_cert, &s, NULL), KS_OK);
    assert_int_equal(s, KS_ACTIVE);
    assert_int_equal(ks_object_state(f->tok, c.old_priv, &s, NULL), KS_OK);
    assert_int_equal(s, KS_RETIRED);
    /* B's public key claims to be linked to cred-A: the record fails its
     * check, so rollback and discard leave it alone. */
    snprintf(sql, sizeof(sql), "UPDATE objects SET cred = CAST('cred-A' AS BLOB) WHERE id = %lld",
             (long long)b_pub);
    raw_exec(f->path, sql);
    assert_int_equal(ks_rollover_rollback(f->tok, CRED_ARGS), KS_OK);
    assert_true(row_exists(f->path, b_pub));
    assert_int_equal(ks_rollover_discard(f->tok, CRED_ARGS, &n), KS_OK);
    assert_int_equal(n, 0);
    assert_true(row_exists(f->path, b_pub));
    load(f->tok, &v, &bad);
    assert_int_equal(bad, 1); /* the forged link */
    assert_int_equal(v.n, 5); /* cred-A's three, B's key and certificate */
    assert_string_equal(must_active(&v, CLS_PRIV)->value, "old-secret"); /* rolled back */
    assert_string_equal(must_active(&v, CLS_CERT)->value, "old-cert-bytes");
    /* A credential's object whose l_id is forged away is missed by a
     * commit: it stays active (a miss, never a wrong object). */
    mk(f->tok, 1, CLS_PRIV, "t", "t", "next-secret");
    snprintf(sql, sizeof(sql), "UPDATE objects SET l_id = x'00' WHERE id = %lld",
             (long long)c.old_cert);
    raw_exec(f->path, sql);
    commit(f->tok, 2000, NULL);
    assert_int_equal(ks_object_state(f->tok, c.old_cert, &s, NULL), KS_OK);
    assert_int_equal(s, KS_ACTIVE);
    assert_int_equal(ks_object_state(f->tok, c.old_priv, &s, NULL), KS_OK);
    assert_int_equal(s, KS_RETIRED);
}

/* A file of schema FROM (6, 5 or 4) holding a committed rollover and a
 * pending pair migrates (the indexes are built; the lookup columns filled
 * as after any migration) and every rollover function works on it. */
static void
migrate_with_rollover(struct ks_fixture *f, int from)
{
    struct cred_ids c;
    struct pend p;
    int64_t next_priv;
    ks_info info;
    unsigned n = 9;
    ks_state s;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    setup_cred(f->tok, &c);
    commit(f->tok, 1000, NULL);
    next_priv = mk(f->tok, 1, CLS_PRIV, "t", "t", "next-secret");
    ks_close(f->tok);
    f->tok = NULL;
    if (from == 6)
        raw_objects_v6(f->path);
    else if (from == 5)
        raw_objects_v5(f->path);
    else
        raw_objects_v4(f->path);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name IN "
                                      "('objects_cred', 'objects_inactive')"),
                     0);
    assert_int_equal(ks_open(f->path, &f->tok), KS_OK);
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.schema_version, KS_SCHEMA_VERSION);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name IN "
                                      "('objects_cred', 'objects_inactive')"),
                     2);
    /* Before the login fills the private columns: pending keys found. */
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    p = find_pending(f->tok, "cred-A", NULL);
    assert_true(p.n == 1 && p.ids[0] == next_priv);
    /* Roll back to the old credential, commit again, discard, purge. */
    assert_int_equal(ks_rollover_rollback(f->tok, CRED_ARGS), KS_OK);
    assert_old_active(f->tok);
    commit(f->tok, 2000, NULL);
    assert_int_equal(ks_object_state(f->tok, next_priv, &s, NULL), KS_OK);
    assert_int_equal(s, KS_ACTIVE);
    mk(f->tok, 1, CLS_PRIV, "t", "t", "third-secret");
    assert_int_equal(ks_rollover_discard(f->tok, CRED_ARGS, &n), KS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ks_purge_retired(f->tok, 2000, 0, &n), KS_OK);
    assert_int_equal(n, 3); /* the old pair and certificate */
    assert_int_equal(ks_object_state(f->tok, c.old_priv, &s, NULL), KS_E_NOT_FOUND);
    (void)c;
}

static void
test_migrate_rollover_from_v6(void **state)
{
    migrate_with_rollover(*state, 6);
}

static void
test_migrate_rollover_from_v5(void **state)
{
    migrate_with_rollover(*state, 5);
}

static void
test_migrate_rollover_from_v4(void **state)
{
    migrate_with_rollover(*state, 4);
}

/* Every statement that reads objects by the rollover state or a lookup
 * column goes through an index (SQLite's query plan for the file as the
 * keystore made it): no "SCAN objects" without "USING ... INDEX". */
static void
test_plans(void **state)
{
    static const enum ks_stmt which[] = {
        ST_OBJ_ROLL_COMMIT, ST_OBJ_BY_CRED,      ST_OBJ_PURGE,      ST_OBJ_INACTIVE,
        ST_OBJ_ANY_PURGE,   ST_OBJ_FIND_ID,      ST_OBJ_FIND_LABEL, ST_OBJ_FIND_CLASS,
        ST_OBJ_FIND_KTYPE,  ST_OBJ_FIND_CTYPE,   ST_OBJ_FIND_SUBJ,  ST_OBJ_FIND_ISN,
        ST_OBJ_UNFILLED,    ST_OBJ_ANY_UNFILLED,
    };
    struct ks_fixture *f = *state;
    struct cred_ids c;
    sqlite3 *db = NULL;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    setup_cred(f->tok, &c);
    commit(f->tok, 1000, NULL);
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    for (size_t i = 0; i < sizeof(which) / sizeof(which[0]); i++) {
        const char *sql = sqlite3_sql(ks_stmt_inlock(f->tok, which[i]));
        char *q = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sql);
        sqlite3_stmt *st = NULL;
        int rows = 0;

        assert_non_null(q);
        assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *d = (const char *)sqlite3_column_text(st, 3);

            rows++;
            if (strncmp(d, "SCAN objects", 12) == 0 && strstr(d, "INDEX") == NULL) {
                fprintf(stderr, "statement %d reads every row: %s\n  (%s)\n", (int)which[i], d,
                        sql);
                fail();
            }
        }
        assert_true(rows > 0);
        sqlite3_finalize(st);
        sqlite3_free(q);
    }
    sqlite3_close(db);
    (void)c;
}

/* ---- fault injection: a commit that fails half-way changes nothing ---- */

static sqlite3_mem_methods orig_mem;
static int fail_at = -1;
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
test_commit_under_faults(void **state)
{
    struct ks_fixture *f = *state;
    struct cred_ids c;
    int n, failures = 0, done = 0;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    setup_cred(f->tok, &c);
    ks_close(f->tok);
    f->tok = NULL;
    for (n = 1; !done && n < 20000; n++) {
        ks_token *t = NULL;
        unsigned long cls = CLS_CERT;
        ks_attr cert[2] = {{KS_ATTR_CLASS, sizeof(cls), (unsigned char *)&cls},
                           {A_VALUE, 14, (unsigned char *)"new-cert-bytes"}};
        ks_rv rv;

        assert_int_equal(ks_open(f->path, &t), KS_OK);
        assert_int_equal(ks_login(t, KS_USER, PIN(USER_PIN)), KS_OK);
        alloc_count = 0;
        fail_at = n;
        rv = ks_rollover_commit(t, CRED_ARGS, cert, 2, 1000, NULL);
        fail_at = -1;
        ks_close(t);
        /* Reopen: either the whole swap happened or none of it. */
        assert_int_equal(ks_open(f->path, &t), KS_OK);
        assert_int_equal(ks_login(t, KS_USER, PIN(USER_PIN)), KS_OK);
        if (rv == KS_OK) {
            struct view v;
            unsigned bad = 9;

            load(t, &v, &bad);
            assert_int_equal(bad, 0);
            assert_string_equal(must_active(&v, CLS_PRIV)->value, "new-secret");
            assert_string_equal(must_active(&v, CLS_CERT)->value, "new-cert-bytes");
            assert_int_equal(v.n, 3);
            done = 1;
        } else {
            ks_state s;

            if (rv != KS_E_NOMEM && rv != KS_E_IO)
                fprintf(stderr, "alloc %d: %s: %s\n", n, ks_strerror(rv), ks_last_error(t));
            assert_true(rv == KS_E_NOMEM || rv == KS_E_IO);
            failures++;
            assert_old_active(t);
            assert_int_equal(ks_object_state(t, c.new_priv, &s, NULL), KS_OK);
            assert_int_equal(s, KS_PENDING);
        }
        ks_close(t);
    }
    fprintf(stderr, "commit: %d allocation failures injected\n", failures);
    assert_true(done);
    assert_true(failures > 10);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pending_then_commit, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_commit_refusals, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_rollback, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_discard, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_purge, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_state_tamper, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v2, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_commit_under_faults, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_find_pending, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_plans, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_forged_rollover_columns, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_rollover_from_v6, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_rollover_from_v5, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_rollover_from_v4, fixture_setup,
                                        fixture_teardown),
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
    return cmocka_run_group_tests(tests, NULL, NULL);
}
