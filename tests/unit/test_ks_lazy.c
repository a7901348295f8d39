/*
 * test_ks_lazy.c — what a reader that loads nothing up front relies on
 * (issue 17, keystore side; keystore/lookup.c, docs/keystore-format.md
 * "Lookup columns"):
 *   - every lookup column of a PRIVATE object forged to another object's
 *     keyed hash (or a public object's clear value): a search misses the
 *     forged object or reads and drops it; what it hands out always has the
 *     attribute searched for (test_ks_lookup forges public ones);
 *   - a file of every schema the tests can build (1 to 6) migrates to the
 *     current one: public columns filled at the first open, private ones at
 *     the first login, every search right in between;
 *   - another PROCESS (forked, its own handle and login) creates, updates
 *     and destroys objects, some of which this reader has read (cached) and
 *     some not: following the change sequence from the number it started
 *     with, the reader's cached objects become the file's, and its searches
 *     find exactly what a full load finds.
 */
#include <sys/wait.h>

#include "test_ks_util.h"

#define CLS_CERT 1UL
#define CLS_PRIV 3UL
#define CKK_EC   3UL

/* An object with every attribute a lookup column covers (those that are
 * NULL are left out). */
struct spec {
    int priv;
    unsigned long cls, type; /* CKA_KEY_TYPE of a key, CKA_CERTIFICATE_TYPE of a certificate */
    const char *id, *label, *subject, *issuer, *serial;
};

static void
ulong_le(unsigned long v, unsigned char out[8])
{
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(v >> (8 * i));
}

static ks_rv
create_spec(ks_token *t, const struct spec *o, int64_t *oid)
{
    unsigned char c[8], ty[8];
    ks_attr a[8];
    size_t n = 0;

    ulong_le(o->cls, c);
    ulong_le(o->type, ty);
    a[n++] = (ks_attr){KS_ATTR_CLASS, sizeof(c), c};
    a[n++] = (ks_attr){KS_ATTR_LABEL, strlen(o->label), (unsigned char *)o->label};
    if (o->cls == CLS_CERT) {
        a[n++] = (ks_attr){KS_ATTR_CERT_TYPE, sizeof(ty), ty};
        a[n++] = (ks_attr){KS_ATTR_ISSUER, strlen(o->issuer), (unsigned char *)o->issuer};
        a[n++] = (ks_attr){KS_ATTR_SERIAL, strlen(o->serial), (unsigned char *)o->serial};
    } else {
        a[n++] = (ks_attr){KS_ATTR_KEY_TYPE, sizeof(ty), ty};
    }
    a[n++] = (ks_attr){KS_ATTR_ID, strlen(o->id), (unsigned char *)o->id};
    a[n++] = (ks_attr){KS_ATTR_SUBJECT, strlen(o->subject), (unsigned char *)o->subject};
    return ks_object_create(t, o->priv, a, n, oid);
}

static int64_t
mk_spec(ks_token *t, const struct spec *o)
{
    int64_t oid = 0;

    assert_int_equal(create_spec(t, o, &oid), KS_OK);
    return oid;
}

/* A search's results; each is checked to have what was searched for. */
struct found {
    uint64_t type, type2; /* type2: CKA_SERIAL_NUMBER of an issuer/serial search */
    const void *v, *v2;
    size_t len, len2;
    int n;
    int64_t ids[8];
};

static int
has(const ks_object *o, uint64_t type, const void *v, size_t len)
{
    for (size_t i = 0; i < o->nattrs; i++)
        if (o->attrs[i].type == type)
            return o->attrs[i].len == len && (len == 0 || memcmp(o->attrs[i].value, v, len) == 0);
    return 0;
}

static int
found_cb(void *ctx, const ks_object *o)
{
    struct found *f = ctx;

    /* Never a wrong object: the attribute is really the value searched. */
    assert_true(has(o, f->type, f->v, f->len));
    if (f->type2 != 0)
        assert_true(has(o, f->type2, f->v2, f->len2));
    if (f->n < 8)
        f->ids[f->n] = o->id;
    f->n++;
    return 0;
}

static struct found
search(ks_token *t, uint64_t type, const void *v, size_t len)
{
    struct found f;
    unsigned bad = 9;

    memset(&f, 0, sizeof(f));
    f.type = type;
    f.v = v;
    f.len = len;
    assert_int_equal(ks_find(t, type, v, len, found_cb, &f, &bad), KS_OK);
    assert_int_equal(bad, 0); /* forged columns are not damaged records */
    return f;
}

static struct found
search_str(ks_token *t, uint64_t type, const char *v)
{
    return search(t, type, v, strlen(v));
}

static struct found
search_ulong(ks_token *t, uint64_t type, unsigned long v)
{
    static unsigned char b[8];

    ulong_le(v, b);
    return search(t, type, b, sizeof(b));
}

static struct found
search_isn(ks_token *t, const char *issuer, const char *serial)
{
    struct found f;

    memset(&f, 0, sizeof(f));
    f.type = KS_ATTR_ISSUER;
    f.v = issuer;
    f.len = strlen(issuer);
    f.type2 = KS_ATTR_SERIAL;
    f.v2 = serial;
    f.len2 = strlen(serial);
    assert_int_equal(ks_find_issuer_serial(t, issuer, f.len, serial, f.len2, found_cb, &f, NULL),
                     KS_OK);
    return f;
}

/* Copy column COL of row FROM onto row TO, as an attacker with the file. */
static void
forge(const char *path, const char *col, int64_t from, int64_t to)
{
    char sql[256];

    snprintf(sql, sizeof(sql),
             "UPDATE objects SET %s = (SELECT %s FROM objects WHERE id = %lld) "
             "WHERE id = %lld",
             col, col, (long long)from, (long long)to);
    raw_exec(path, sql);
}

static const struct spec p_cert = {1, CLS_CERT, 0, "p-cert", "cert label", "CN=p", "CN=ca", "01"};
static const struct spec p_key = {1, CLS_PRIV, CKK_EC, "p-key", "key label", "CN=k", NULL, NULL};
static const struct spec q_pub = {0, CLS_CERT, 0, "q-pub", "q label", "CN=q", "CN=ca", "02"};

/* Each private column of one private object forged to another private
 * object's keyed hash: searches for the other's value read both and hand
 * out the right one; searches for the forged object's own value miss it. */
static void
test_forged_private_columns(void **state)
{
    struct ks_fixture *f = *state;
    static const char *const cols[] = {"l_id", "l_label", "l_class", "l_ktype", "l_subj"};
    int64_t c, k, q;
    struct found r;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    c = mk_spec(f->tok, &p_cert);
    k = mk_spec(f->tok, &p_key);
    q = mk_spec(f->tok, &q_pub);
    for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
        forge(f->path, cols[i], k, c); /* the certificate claims the key's values */
    forge(f->path, "l_isn", c, k);     /* the key claims the certificate's issuer/serial */
    /* The key's values: the key only (the certificate read and dropped). */
    r = search_str(f->tok, KS_ATTR_ID, "p-key");
    assert_true(r.n == 1 && r.ids[0] == k);
    r = search_str(f->tok, KS_ATTR_LABEL, "key label");
    assert_true(r.n == 1 && r.ids[0] == k);
    r = search_ulong(f->tok, KS_ATTR_CLASS, CLS_PRIV);
    assert_true(r.n == 1 && r.ids[0] == k);
    r = search_ulong(f->tok, KS_ATTR_KEY_TYPE, CKK_EC);
    assert_true(r.n == 1 && r.ids[0] == k);
    r = search_str(f->tok, KS_ATTR_SUBJECT, "CN=k");
    assert_true(r.n == 1 && r.ids[0] == k);
    /* The certificate's own values: hidden by the forgery (a miss) ... */
    assert_int_equal(search_str(f->tok, KS_ATTR_ID, "p-cert").n, 0);
    assert_int_equal(search_str(f->tok, KS_ATTR_LABEL, "cert label").n, 0);
    assert_int_equal(search_str(f->tok, KS_ATTR_SUBJECT, "CN=p").n, 0);
    /* ... except by the issuer/serial, which the key now claims too. */
    r = search_isn(f->tok, "CN=ca", "01");
    assert_true(r.n == 1 && r.ids[0] == c);
    /* "All certificates" finds the public one (the private one's class
     * column says private key). */
    r = search_ulong(f->tok, KS_ATTR_CLASS, CLS_CERT);
    assert_true(r.n == 1 && r.ids[0] == q);
    /* A private row claiming a public object's clear value: read, dropped. */
    raw_exec(f->path, "UPDATE objects SET l_id = CAST('q-pub' AS BLOB) WHERE is_private = 1");
    r = search_str(f->tok, KS_ATTR_ID, "q-pub");
    assert_true(r.n == 1 && r.ids[0] == q);
    /* Logged out, private rows are not read whatever their columns say. */
    ks_logout(f->tok);
    raw_exec(f->path, "UPDATE objects SET l_label = CAST('q label' AS BLOB) WHERE is_private = 1");
    r = search_str(f->tok, KS_ATTR_LABEL, "q label");
    assert_true(r.n == 1 && r.ids[0] == q);
    /* Marked unfilled, the private rows' columns are recomputed from their
     * records at the next login: found again by their own values. */
    raw_exec(f->path, "UPDATE objects SET lk = 0 WHERE is_private = 1");
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    r = search_str(f->tok, KS_ATTR_ID, "p-cert");
    assert_true(r.n == 1 && r.ids[0] == c);
    r = search_str(f->tok, KS_ATTR_LABEL, "cert label");
    assert_true(r.n == 1 && r.ids[0] == c);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE lk = 0"), 0);
}

/* Turn the file back into schema FROM (1 to 6), as the code of that
 * schema wrote it. */
static void
downgrade(const char *path, int from)
{
    switch (from) {
    case 6:
        raw_objects_v6(path);
        break;
    case 5:
        raw_objects_v5(path);
        break;
    case 4:
        raw_objects_v4(path);
        break;
    case 3:
        raw_objects_v4(path);
        raw_exec(path, "DROP INDEX objects_seq; ALTER TABLE objects DROP COLUMN seq;"
                       "DROP TABLE gone; PRAGMA user_version = 3;");
        break;
    case 2:
        raw_objects_v2(path);
        break;
    default:
        raw_objects_v2(path);
        raw_exec(path, "DROP TABLE settings; PRAGMA user_version = 1;");
        break;
    }
    assert_int_equal(raw_int(path, "PRAGMA user_version"), from);
}

static void
migrate_from(struct ks_fixture *f, int from)
{
    int64_t c, k, q;
    struct found r;
    ks_info info;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    c = mk_spec(f->tok, &p_cert);
    k = mk_spec(f->tok, &p_key);
    q = mk_spec(f->tok, &q_pub);
    ks_close(f->tok);
    f->tok = NULL;
    downgrade(f->path, from);
    assert_int_equal(ks_open(f->path, &f->tok), KS_OK);
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.schema_version, KS_SCHEMA_VERSION);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), KS_SCHEMA_VERSION);
    /* At the first open: the public row filled; the private ones only from
     * schema 6 on (6 -> 7 fills nothing). */
    assert_int_equal(raw_int(f->path, "SELECT lk FROM objects WHERE is_private = 0"), 1);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE lk = 0"),
                     from >= 6 ? 0 : 2);
    r = search_str(f->tok, KS_ATTR_ID, "q-pub");
    assert_true(r.n == 1 && r.ids[0] == q);
    r = search_isn(f->tok, "CN=ca", "02");
    assert_true(r.n == 1 && r.ids[0] == q);
    assert_int_equal(search_str(f->tok, KS_ATTR_ID, "p-key").n, 0); /* logged out */
    /* At the first login: the private rows filled; found by every column. */
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE lk = 0"), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE is_private = 1 AND "
                                      "length(l_id) = 16 AND length(l_subj) = 16"),
                     2);
    r = search_str(f->tok, KS_ATTR_ID, "p-key");
    assert_true(r.n == 1 && r.ids[0] == k);
    r = search_str(f->tok, KS_ATTR_LABEL, "cert label");
    assert_true(r.n == 1 && r.ids[0] == c);
    r = search_ulong(f->tok, KS_ATTR_CLASS, CLS_CERT);
    assert_true(r.n == 2 && r.ids[0] == c && r.ids[1] == q);
    r = search_ulong(f->tok, KS_ATTR_KEY_TYPE, CKK_EC);
    assert_true(r.n == 1 && r.ids[0] == k);
    r = search_str(f->tok, KS_ATTR_SUBJECT, "CN=k");
    assert_true(r.n == 1 && r.ids[0] == k);
    r = search_isn(f->tok, "CN=ca", "01");
    assert_true(r.n == 1 && r.ids[0] == c);
}

static void
test_migrate_from_v1(void **state)
{
    migrate_from(*state, 1);
}

static void
test_migrate_from_v2(void **state)
{
    migrate_from(*state, 2);
}

static void
test_migrate_from_v3(void **state)
{
    migrate_from(*state, 3);
}

static void
test_migrate_from_v4(void **state)
{
    migrate_from(*state, 4);
}

static void
test_migrate_from_v5(void **state)
{
    migrate_from(*state, 5);
}

static void
test_migrate_from_v6(void **state)
{
    migrate_from(*state, 6);
}

/* ---- another process's writes ------------------------------------------- */

#define NOBJ 10

/* What a lazy reader caches of an object: as the module does, only those
 * it has read (searched for), kept up to date from the change sequence. */
struct centry {
    int64_t id;
    uint32_t version;
    char label[32];
};

struct cache {
    struct centry e[2 * NOBJ];
    int n;
    int64_t seq;
};

static int
cache_find(const struct cache *c, int64_t id)
{
    for (int i = 0; i < c->n; i++)
        if (c->e[i].id == id)
            return i;
    return -1;
}

static void
label_of(const ks_object *o, char out[32])
{
    out[0] = '\0';
    for (size_t i = 0; i < o->nattrs; i++)
        if (o->attrs[i].type == KS_ATTR_LABEL && o->attrs[i].len < 32) {
            memcpy(out, o->attrs[i].value, o->attrs[i].len);
            out[o->attrs[i].len] = '\0';
        }
}

/* A search's result enters the cache. */
static int
cache_add(void *ctx, const ks_object *o)
{
    struct cache *c = ctx;
    int i = cache_find(c, o->id);

    if (i < 0) {
        assert_true(c->n < 2 * NOBJ);
        i = c->n++;
    }
    c->e[i].id = o->id;
    c->e[i].version = o->version;
    label_of(o, c->e[i].label);
    return 0;
}

static int changed_uncached;

/* A change is applied only to what is cached. */
static int
cache_change(void *ctx, const ks_object *o)
{
    struct cache *c = ctx;

    if (o->seq > c->seq)
        c->seq = o->seq;
    if (cache_find(c, o->id) < 0) {
        changed_uncached++;
        return 0;
    }
    return cache_add(ctx, o);
}

static void
cache_gone(void *ctx, int64_t id)
{
    struct cache *c = ctx;
    int i = cache_find(c, id);

    if (i >= 0)
        c->e[i] = c->e[--c->n];
}

/* Every cached object as a full load sees it (version and label). */
static void
cache_check(ks_token *r, const struct cache *c)
{
    static struct cache full;

    memset(&full, 0, sizeof(full));
    assert_int_equal(ks_load_objects(r, cache_add, &full, NULL), KS_OK);
    for (int i = 0; i < c->n; i++) {
        int j = cache_find(&full, c->e[i].id);

        assert_true(j >= 0);
        assert_int_equal(c->e[i].version, full.e[j].version);
        assert_string_equal(c->e[i].label, full.e[j].label);
    }
}

static int64_t
mk_obj(ks_token *t, int priv, const char *id, const char *label)
{
    struct spec s = {priv, priv ? CLS_PRIV : CLS_CERT, 0, id, label, "CN=x", "CN=ca", id};

    return mk_spec(t, &s);
}

/* In the child: another process's writes to objects 1 and 6 (renamed), 2
 * and 7 (destroyed), and two new ones (CKA_ID "o-1" and "new"). Exit
 * status 0 when all succeeded. */
static void
child_writes(const char *path, const int64_t ids[NOBJ])
{
    /* An update replaces the whole attribute set. */
    ks_attr a1[2] = {{KS_ATTR_LABEL, 9, (unsigned char *)"renamed-1"},
                     {KS_ATTR_ID, 3, (unsigned char *)"o-1"}};
    ks_attr a6[2] = {{KS_ATTR_LABEL, 9, (unsigned char *)"renamed-6"},
                     {KS_ATTR_ID, 3, (unsigned char *)"o-6"}};
    ks_token *c = NULL;
    int ok;

    ok = ks_open(path, &c) == KS_OK && ks_login(c, KS_USER, PIN(USER_PIN)) == KS_OK &&
         ks_object_update(c, ids[1], a1, 2) == KS_OK &&
         ks_object_update(c, ids[6], a6, 2) == KS_OK && ks_object_destroy(c, ids[2]) == KS_OK &&
         ks_object_destroy(c, ids[7]) == KS_OK;
    if (ok) {
        static const struct spec s1 = {1, CLS_PRIV, 0, "o-1", "second o-1", "CN=x", NULL, NULL};
        static const struct spec s2 = {0, CLS_CERT, 0, "new", "new one", "CN=x", "CN=ca", "9"};
        int64_t id = 0;

        /* mk_spec asserts; here a failure must become the exit status. */
        ok = create_spec(c, &s1, &id) == KS_OK && create_spec(c, &s2, &id) == KS_OK;
    }
    ks_close(c);
    _exit(ok ? 0 : 1);
}

static void
test_other_process_writes(void **state)
{
    struct ks_fixture *f = *state;
    static struct cache cache;
    ks_token *r = NULL;
    int64_t ids[NOBJ], upto = 0, seq0;
    struct found res;
    char id[16], lab[16];
    int status = 0;
    pid_t pid;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    for (int i = 0; i < NOBJ; i++) {
        snprintf(id, sizeof(id), "o-%d", i);
        snprintf(lab, sizeof(lab), "lab-%d", i);
        ids[i] = mk_obj(f->tok, i % 2, id, lab);
    }
    /* The reader starts empty, as of the change sequence now, and caches
     * objects 0 to 4 by searching for them. */
    assert_int_equal(ks_open(f->path, &r), KS_OK);
    assert_int_equal(ks_login(r, KS_USER, PIN(USER_PIN)), KS_OK);
    memset(&cache, 0, sizeof(cache));
    assert_int_equal(ks_change_seq(r, &cache.seq), KS_OK);
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "o-%d", i);
        assert_int_equal(ks_find(r, KS_ATTR_ID, id, strlen(id), cache_add, &cache, NULL), KS_OK);
    }
    assert_int_equal(cache.n, 5);
    /* Another process writes to cached (1, 2) and uncached (6, 7) objects. */
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child_writes(f->path, ids);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The reader follows the change sequence: the cached objects change,
     * the uncached ones are only reported. */
    changed_uncached = 0;
    seq0 = cache.seq;
    assert_int_equal(ks_load_changes(r, seq0, cache_change, cache_gone, &cache, &upto, NULL),
                     KS_OK);
    assert_true(upto > seq0);
    assert_int_equal(changed_uncached, 3); /* object 6 and the two new ones */
    assert_int_equal(cache.n, 4);          /* object 2 gone */
    assert_true(cache_find(&cache, ids[2]) < 0);
    assert_string_equal(cache.e[cache_find(&cache, ids[1])].label, "renamed-1");
    cache_check(r, &cache);
    /* Its searches see the other process's state, cached or not. */
    res = search_str(r, KS_ATTR_ID, "o-1");
    assert_true(res.n == 2 && res.ids[0] == ids[1] && res.ids[1] > ids[NOBJ - 1]);
    assert_int_equal(search_str(r, KS_ATTR_LABEL, "lab-6").n, 0);
    res = search_str(r, KS_ATTR_LABEL, "renamed-6");
    assert_true(res.n == 1 && res.ids[0] == ids[6]);
    assert_int_equal(search_str(r, KS_ATTR_ID, "o-2").n, 0);
    assert_int_equal(search_str(r, KS_ATTR_ID, "o-7").n, 0);
    res = search_str(r, KS_ATTR_ID, "o-6");
    assert_true(res.n == 1 && res.ids[0] == ids[6]);
    assert_int_equal(search_str(r, KS_ATTR_ID, "new").n, 1);
    /* Nothing more to follow. */
    cache.seq = upto;
    changed_uncached = 0;
    assert_int_equal(ks_load_changes(r, cache.seq, cache_change, cache_gone, &cache, &upto, NULL),
                     KS_OK);
    assert_int_equal(changed_uncached, 0);
    assert_int_equal(upto, cache.seq);
    ks_close(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_forged_private_columns, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v1, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v2, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v3, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v4, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v5, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_v6, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_other_process_writes, fixture_setup, fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
