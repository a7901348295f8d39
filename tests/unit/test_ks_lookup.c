/*
 * test_ks_lookup.c — lookup columns and searches (keystore/lookup.c,
 * schemas 5 and 6): ks_find by CKA_ID, CKA_LABEL, CKA_CLASS, CKA_KEY_TYPE,
 * CKA_CERTIFICATE_TYPE and CKA_SUBJECT, ks_find_issuer_serial; public
 * objects in the clear (subject, issuer/serial: unkeyed hash) and private
 * ones by keyed hash; forged columns cause a miss or a record read and
 * dropped, never a wrong object; migrations from schemas 5 and 4 fill the
 * columns (public at open, private at login), as from a file of schema 2;
 * ks_change_seq.
 */
#include "test_ks_util.h"

struct hits {
    int n;
    int64_t ids[16];
    int priv[16];
};

static int
hits_cb(void *ctx, const ks_object *o)
{
    struct hits *h = ctx;

    if (h->n < 16) {
        h->ids[h->n] = o->id;
        h->priv[h->n] = o->is_private;
    }
    h->n++;
    return 0;
}

static int64_t
mk(ks_token *t, int is_private, const char *id, const char *label)
{
    unsigned char c[8] = {is_private ? 3 : 1};
    ks_attr a[3] = {
        {KS_ATTR_CLASS, sizeof(c), c},
        {KS_ATTR_LABEL, strlen(label), (unsigned char *)label},
        {KS_ATTR_ID, strlen(id), (unsigned char *)id},
    };
    int64_t oid = 0;

    assert_int_equal(ks_object_create(t, is_private, a, 3, &oid), KS_OK);
    return oid;
}

static struct hits
find(ks_token *t, uint64_t type, const char *v, unsigned *tampered)
{
    struct hits h;

    memset(&h, 0, sizeof(h));
    assert_int_equal(ks_find(t, type, v, strlen(v), hits_cb, &h, tampered), KS_OK);
    return h;
}

static void
test_find(void **state)
{
    struct ks_fixture *f = *state;
    int64_t pub, priv, other;
    struct hits h;
    unsigned bad = 9;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    pub = mk(f->tok, 0, "cred-1", "my cert");
    priv = mk(f->tok, 1, "cred-1", "my key");
    other = mk(f->tok, 0, "cred-2", "other");
    h = find(f->tok, KS_ATTR_ID, "cred-1", &bad);
    assert_int_equal(bad, 0);
    assert_int_equal(h.n, 2);
    assert_true(h.ids[0] == pub && h.ids[1] == priv);
    h = find(f->tok, KS_ATTR_LABEL, "my key", NULL);
    assert_int_equal(h.n, 1);
    assert_true(h.ids[0] == priv && h.priv[0] == 1);
    h = find(f->tok, KS_ATTR_LABEL, "other", NULL);
    assert_true(h.n == 1 && h.ids[0] == other);
    assert_int_equal(find(f->tok, KS_ATTR_ID, "cred-3", NULL).n, 0);
    assert_int_equal(find(f->tok, KS_ATTR_ID, "cred-", NULL).n, 0);
    /* Logged out: the public one only. */
    ks_logout(f->tok);
    h = find(f->tok, KS_ATTR_ID, "cred-1", NULL);
    assert_true(h.n == 1 && h.ids[0] == pub);
    /* The private key's id and label are not in the file in the clear. */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE l_id = CAST('cred-1' AS "
                                      "BLOB) OR l_label = CAST('my key' AS BLOB)"),
                     1);
    assert_int_equal(raw_int(f->path, "SELECT length(l_id) FROM objects WHERE is_private = 1"), 16);
    /* Renaming moves the lookup value. */
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    {
        ks_attr upd = {KS_ATTR_LABEL, 7, (unsigned char *)"renamed"};

        assert_int_equal(ks_object_update(f->tok, priv, &upd, 1), KS_OK);
    }
    assert_int_equal(find(f->tok, KS_ATTR_LABEL, "my key", NULL).n, 0);
    h = find(f->tok, KS_ATTR_LABEL, "renamed", NULL);
    assert_true(h.n == 1 && h.ids[0] == priv);
    assert_int_equal(ks_find(f->tok, 0x11, "x", 1, hits_cb, &h, NULL), KS_E_ARGS);
}

/* Forged columns: a miss, or a record read and dropped; never a wrong one. */
static void
test_tampered_columns(void **state)
{
    struct ks_fixture *f = *state;
    int64_t a, b, k;
    struct hits h;
    char sql[256];

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    a = mk(f->tok, 0, "id-a", "a");
    b = mk(f->tok, 0, "id-b", "b");
    k = mk(f->tok, 1, "id-k", "k");
    /* A's column claims B's id: a search for B reads A too, drops it. */
    snprintf(sql, sizeof(sql), "UPDATE objects SET l_id = CAST('id-b' AS BLOB) WHERE id = %lld",
             (long long)a);
    raw_exec(f->path, sql);
    h = find(f->tok, KS_ATTR_ID, "id-b", NULL);
    assert_true(h.n == 1 && h.ids[0] == b);
    /* ... and a search for A misses it (the forged column hides it). */
    assert_int_equal(find(f->tok, KS_ATTR_ID, "id-a", NULL).n, 0);
    /* The private key's hash copied onto B: B is read and dropped. */
    snprintf(sql, sizeof(sql),
             "UPDATE objects SET l_id = (SELECT l_id FROM objects WHERE id = %lld) WHERE id = %lld",
             (long long)k, (long long)b);
    raw_exec(f->path, sql);
    h = find(f->tok, KS_ATTR_ID, "id-k", NULL);
    assert_true(h.n == 1 && h.ids[0] == k);
    /* A row marked unfilled is read by every search, found when it matches. */
    snprintf(sql, sizeof(sql), "UPDATE objects SET lk = 0, l_id = NULL WHERE id = %lld",
             (long long)a);
    raw_exec(f->path, sql);
    h = find(f->tok, KS_ATTR_ID, "id-a", NULL);
    assert_true(h.n == 1 && h.ids[0] == a);
    assert_int_equal(find(f->tok, KS_ATTR_ID, "id-b", NULL).n, 0); /* B's column is k's hash */
    /* A damaged record the column points at is counted, not handed out. */
    snprintf(sql, sizeof(sql), "UPDATE objects SET data = x'0102' WHERE id = %lld", (long long)k);
    raw_exec(f->path, sql);
    {
        unsigned bad = 0;

        h = find(f->tok, KS_ATTR_ID, "id-k", &bad);
        assert_int_equal(h.n, 0);
        assert_int_equal(bad, 1);
    }
}

/* A certificate or a key with the attributes of schema 6's columns. */
struct full {
    int priv;
    unsigned long cls, type; /* type: CKA_KEY_TYPE of a key, CKA_CERTIFICATE_TYPE of a cert */
    const char *subject, *issuer, *serial;
};

static int64_t
mk_full(ks_token *t, const struct full *o)
{
    unsigned char c[8] = {0}, ty[8] = {0};
    ks_attr a[6];
    size_t n = 0;
    int64_t oid = 0;

    for (int i = 0; i < 8; i++) {
        c[i] = (unsigned char)(o->cls >> (8 * i));
        ty[i] = (unsigned char)(o->type >> (8 * i));
    }
    a[n++] = (ks_attr){KS_ATTR_CLASS, sizeof(c), c};
    if (o->cls == 1) {
        a[n++] = (ks_attr){KS_ATTR_CERT_TYPE, sizeof(ty), ty};
        a[n++] = (ks_attr){KS_ATTR_ISSUER, strlen(o->issuer), (unsigned char *)o->issuer};
        a[n++] = (ks_attr){KS_ATTR_SERIAL, strlen(o->serial), (unsigned char *)o->serial};
    } else {
        a[n++] = (ks_attr){KS_ATTR_KEY_TYPE, sizeof(ty), ty};
    }
    a[n++] = (ks_attr){KS_ATTR_SUBJECT, strlen(o->subject), (unsigned char *)o->subject};
    assert_int_equal(ks_object_create(t, o->priv, a, n, &oid), KS_OK);
    return oid;
}

static struct hits
find_ulong(ks_token *t, uint64_t type, unsigned long v)
{
    unsigned char b[8];
    struct hits h;

    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    memset(&h, 0, sizeof(h));
    assert_int_equal(ks_find(t, type, b, sizeof(b), hits_cb, &h, NULL), KS_OK);
    return h;
}

static struct hits
find_isn(ks_token *t, const char *issuer, const char *serial)
{
    struct hits h;

    memset(&h, 0, sizeof(h));
    assert_int_equal(
        ks_find_issuer_serial(t, issuer, strlen(issuer), serial, strlen(serial), hits_cb, &h, NULL),
        KS_OK);
    return h;
}

/* Three certificates and two private keys (CKO_CERTIFICATE 1, CKO_PRIVATE_KEY 3;
 * CKK_RSA 0, CKK_EC 3). */
static void
mk_five(ks_token *t, int64_t id[5])
{
    static const struct full o[5] = {
        {0, 1, 0, "CN=a", "CN=ca", "01"}, {0, 1, 0, "CN=b", "CN=ca", "02"},
        {0, 1, 0, "CN=a", "CN=c", "a02"}, /* issuer/serial: "CN=ca"/"02" shifted */
        {1, 3, 3, "CN=a", NULL, NULL},    {1, 3, 0, "CN=b", NULL, NULL},
    };

    for (int i = 0; i < 5; i++)
        id[i] = mk_full(t, &o[i]);
}

/* Schema 6: class, key and certificate type, subject, issuer and serial. */
static void
test_find_schema6(void **state)
{
    struct ks_fixture *f = *state;
    int64_t id[5];
    struct hits h;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    mk_five(f->tok, id);
    h = find_ulong(f->tok, KS_ATTR_CLASS, 1);
    assert_true(h.n == 3 && h.ids[0] == id[0] && h.ids[1] == id[1] && h.ids[2] == id[2]);
    h = find_ulong(f->tok, KS_ATTR_CLASS, 3);
    assert_true(h.n == 2 && h.ids[0] == id[3] && h.ids[1] == id[4]);
    h = find_ulong(f->tok, KS_ATTR_KEY_TYPE, 3);
    assert_true(h.n == 1 && h.ids[0] == id[3]);
    h = find_ulong(f->tok, KS_ATTR_CERT_TYPE, 0);
    assert_int_equal(h.n, 3);
    h = find(f->tok, KS_ATTR_SUBJECT, "CN=a", NULL);
    assert_true(h.n == 3 && h.ids[0] == id[0] && h.ids[1] == id[2] && h.ids[2] == id[3]);
    h = find_isn(f->tok, "CN=ca", "02");
    assert_true(h.n == 1 && h.ids[0] == id[1]);
    h = find_isn(f->tok, "CN=c", "a02");
    assert_true(h.n == 1 && h.ids[0] == id[2]);
    assert_int_equal(find_isn(f->tok, "CN=ca", "03").n, 0);
    assert_int_equal(ks_find_issuer_serial(f->tok, NULL, 1, "", 0, hits_cb, &h, NULL), KS_E_ARGS);
    assert_int_equal(ks_find(f->tok, KS_ATTR_SERIAL, "02", 2, hits_cb, &h, NULL), KS_E_ARGS);
    assert_int_equal(ks_find(f->tok, KS_ATTR_ISSUER, "CN=ca", 5, hits_cb, &h, NULL), KS_E_ARGS);
    /* Logged out: the certificates only. */
    ks_logout(f->tok);
    assert_int_equal(find_ulong(f->tok, KS_ATTR_CLASS, 3).n, 0);
    assert_int_equal(find(f->tok, KS_ATTR_SUBJECT, "CN=a", NULL).n, 2);
    /* In the file: the public class in the clear, the private one hashed;
     * subjects and issuer/serial hashed (16 bytes) for both. */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE length(l_class) = 8"), 3);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE is_private = 1 AND "
                                      "length(l_class) = 16 AND length(l_ktype) = 16"),
                     2);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE length(l_subj) = 16"), 5);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE length(l_isn) = 16"), 3);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE l_isn IS NOT NULL AND "
                                      "l_ctype IS NOT NULL AND l_ktype IS NULL"),
                     3);
    /* Equal subjects: equal public hashes, a different keyed one for the key. */
    assert_int_equal(raw_int(f->path, "SELECT count(DISTINCT l_subj) FROM objects"), 4);
}

/* Forged schema-6 columns: a miss, or a record read and dropped. */
static void
test_tampered_schema6(void **state)
{
    struct ks_fixture *f = *state;
    int64_t id[5];
    struct hits h;
    char sql[256];

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    mk_five(f->tok, id);
    /* A key claims to be a certificate: "all certificates" reads and drops it. */
    snprintf(sql, sizeof(sql),
             "UPDATE objects SET l_class = (SELECT l_class FROM objects WHERE id = %lld) "
             "WHERE id = %lld",
             (long long)id[0], (long long)id[4]);
    raw_exec(f->path, sql);
    h = find_ulong(f->tok, KS_ATTR_CLASS, 1);
    assert_true(h.n == 3 && h.ids[2] == id[2]);
    /* ... and is missed by "all private keys". */
    h = find_ulong(f->tok, KS_ATTR_CLASS, 3);
    assert_true(h.n == 1 && h.ids[0] == id[3]);
    /* A certificate's subject hash moved onto another: read and dropped,
     * and the real one missed. */
    snprintf(sql, sizeof(sql),
             "UPDATE objects SET l_subj = (SELECT l_subj FROM objects WHERE id = %lld) "
             "WHERE id = %lld",
             (long long)id[0], (long long)id[1]);
    raw_exec(f->path, sql);
    h = find(f->tok, KS_ATTR_SUBJECT, "CN=a", NULL);
    assert_true(h.n == 3 && h.ids[0] == id[0] && h.ids[1] == id[2]);
    assert_int_equal(find(f->tok, KS_ATTR_SUBJECT, "CN=b", NULL).n, 1); /* the key only */
    /* The issuer/serial column of one certificate on the other. */
    snprintf(sql, sizeof(sql),
             "UPDATE objects SET l_isn = (SELECT l_isn FROM objects WHERE id = %lld) "
             "WHERE id = %lld",
             (long long)id[1], (long long)id[2]);
    raw_exec(f->path, sql);
    h = find_isn(f->tok, "CN=ca", "02");
    assert_true(h.n == 1 && h.ids[0] == id[1]);
    assert_int_equal(find_isn(f->tok, "CN=c", "a02").n, 0);
    /* An unfilled row is read by every search and found when it matches. */
    snprintf(sql, sizeof(sql), "UPDATE objects SET lk = 0 WHERE id = %lld", (long long)id[2]);
    raw_exec(f->path, sql);
    h = find_isn(f->tok, "CN=c", "a02");
    assert_true(h.n == 1 && h.ids[0] == id[2]);
    /* A damaged certificate the class column points at: counted, skipped. */
    snprintf(sql, sizeof(sql), "UPDATE objects SET data = x'0102' WHERE id = %lld",
             (long long)id[0]);
    raw_exec(f->path, sql);
    {
        unsigned char c1[8] = {1};
        unsigned bad = 0;

        memset(&h, 0, sizeof(h));
        assert_int_equal(ks_find(f->tok, KS_ATTR_CLASS, c1, 8, hits_cb, &h, &bad), KS_OK);
        assert_int_equal(bad, 1);
        assert_true(h.n == 2 && h.ids[0] == id[1] && h.ids[1] == id[2]);
    }
}

/* Schema 5 -> 6: every row unfilled by the migration, public ones filled at
 * open, private ones at login; searches right in between. */
static void
test_migration_from_v5(void **state)
{
    struct ks_fixture *f = *state;
    int64_t id[5];
    struct hits h;
    ks_info info;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    mk_five(f->tok, id);
    ks_close(f->tok);
    f->tok = NULL;
    raw_objects_v5(f->path);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE lk = 1"), 5);
    assert_int_equal(ks_open(f->path, &f->tok), KS_OK);
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.schema_version, KS_SCHEMA_VERSION);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), KS_SCHEMA_VERSION);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE lk = 1 AND is_private = "
                                      "0 AND length(l_class) = 8 AND length(l_isn) = 16"),
                     3);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE lk = 0"), 2);
    h = find_ulong(f->tok, KS_ATTR_CLASS, 1);
    assert_int_equal(h.n, 3);
    h = find(f->tok, KS_ATTR_ID, "x", NULL);
    assert_int_equal(h.n, 0);
    /* Logged in, the unfilled private rows are filled; found either way. */
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE lk = 0"), 0);
    h = find_ulong(f->tok, KS_ATTR_KEY_TYPE, 0);
    assert_true(h.n == 1 && h.ids[0] == id[4]);
    h = find(f->tok, KS_ATTR_SUBJECT, "CN=b", NULL);
    assert_true(h.n == 2 && h.ids[0] == id[1] && h.ids[1] == id[4]);
    h = find_isn(f->tok, "CN=ca", "01");
    assert_true(h.n == 1 && h.ids[0] == id[0]);
}

/* Schema 4 -> 5: public columns filled at open, private ones at login. */
static void
test_migration_from_v4(void **state)
{
    struct ks_fixture *f = *state;
    int64_t pub, priv;
    struct hits h;
    ks_info info;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    pub = mk(f->tok, 0, "old-id", "old cert");
    priv = mk(f->tok, 1, "old-id", "old key");
    ks_close(f->tok);
    f->tok = NULL;
    raw_objects_v4(f->path);
    assert_int_equal(ks_open(f->path, &f->tok), KS_OK);
    assert_int_equal(ks_get_info(f->tok, &info), KS_OK);
    assert_int_equal(info.schema_version, KS_SCHEMA_VERSION);
    assert_int_equal(raw_int(f->path, "SELECT lk FROM objects WHERE is_private = 0"), 1);
    assert_int_equal(raw_int(f->path, "SELECT lk FROM objects WHERE is_private = 1"), 0);
    h = find(f->tok, KS_ATTR_ID, "old-id", NULL);
    assert_true(h.n == 1 && h.ids[0] == pub);
    /* Before the private columns are filled, the search still finds it
     * (it reads the unfilled row). */
    assert_int_equal(ks_login(f->tok, KS_SO, PIN(SO_PIN)), KS_OK);
    assert_int_equal(raw_int(f->path, "SELECT lk FROM objects WHERE is_private = 1"), 1);
    ks_logout(f->tok);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    h = find(f->tok, KS_ATTR_ID, "old-id", NULL);
    assert_true(h.n == 2 && h.ids[0] == pub && h.ids[1] == priv);
    h = find(f->tok, KS_ATTR_LABEL, "old key", NULL);
    assert_true(h.n == 1 && h.ids[0] == priv);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE l_label = CAST('old key' "
                                      "AS BLOB)"),
                     0);
}

/* From schema 2 (the oldest layout the tests build with objects): every
 * migration runs, then the columns are filled as from schema 4. */
static void
test_migration_from_v2(void **state)
{
    struct ks_fixture *f = *state;
    int64_t pub, priv;
    struct hits h;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    pub = mk(f->tok, 0, "v2-id", "v2 cert");
    priv = mk(f->tok, 1, "v2-id", "v2 key");
    ks_close(f->tok);
    f->tok = NULL;
    raw_objects_v2(f->path);
    assert_int_equal(ks_open(f->path, &f->tok), KS_OK);
    h = find(f->tok, KS_ATTR_LABEL, "v2 cert", NULL);
    assert_true(h.n == 1 && h.ids[0] == pub);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE lk = 0"), 1);
    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM objects WHERE lk = 0"), 0);
    h = find(f->tok, KS_ATTR_ID, "v2-id", NULL);
    assert_true(h.n == 2 && h.ids[0] == pub && h.ids[1] == priv);
}

/* An unfilled private row is found after login even if the fill did not
 * run (read, decrypted, matched). */
static void
test_unfilled_private(void **state)
{
    struct ks_fixture *f = *state;
    int64_t priv;
    struct hits h;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    priv = mk(f->tok, 1, "p-id", "p");
    raw_exec(f->path, "UPDATE objects SET lk = 0, l_id = NULL, l_label = NULL");
    h = find(f->tok, KS_ATTR_ID, "p-id", NULL);
    assert_true(h.n == 1 && h.ids[0] == priv);
    ks_logout(f->tok);
    assert_int_equal(find(f->tok, KS_ATTR_ID, "p-id", NULL).n, 0);
}

struct changes {
    int n, gone;
};

static int
ch_cb(void *ctx, const ks_object *o)
{
    (void)o;
    ((struct changes *)ctx)->n++;
    return 0;
}

static void
ch_gone(void *ctx, int64_t id)
{
    (void)id;
    ((struct changes *)ctx)->gone++;
}

/* ks_change_seq: a reader that never loaded in full learns only what
 * changed after it. */
static void
test_change_seq(void **state)
{
    struct ks_fixture *f = *state;
    ks_token *r = NULL;
    struct changes c = {0, 0};
    int64_t seq = -1, upto = 0, a;

    assert_int_equal(ks_login(f->tok, KS_USER, PIN(USER_PIN)), KS_OK);
    a = mk(f->tok, 0, "s-a", "a");
    (void)mk(f->tok, 0, "s-b", "b");
    assert_int_equal(ks_open(f->path, &r), KS_OK);
    assert_int_equal(ks_change_seq(r, &seq), KS_OK);
    assert_true(seq >= 2);
    (void)mk(f->tok, 0, "s-c", "c");
    assert_int_equal(ks_object_destroy(f->tok, a), KS_OK);
    assert_int_equal(ks_load_changes(r, seq, ch_cb, ch_gone, &c, &upto, NULL), KS_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.gone, 1);
    assert_true(upto > seq);
    assert_int_equal(ks_change_seq(NULL, &seq), KS_E_ARGS);
    ks_close(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_find, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tampered_columns, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_find_schema6, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tampered_schema6, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v5, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v4, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v2, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_unfilled_private, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_change_seq, fixture_setup, fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
