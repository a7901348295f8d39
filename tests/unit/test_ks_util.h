/*
 * test_ks_util.h — helpers shared by the keystore unit tests (header only,
 * so each test_ks_*.c stays one self-contained cmocka binary).
 */
#ifndef EVERTOKEN_TEST_KS_UTIL_H
#define EVERTOKEN_TEST_KS_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sqlite3.h>
#include <sodium.h>

#include "keystore.h"

#define SO_PIN    "so-secret-1"
#define USER_PIN  "user-1234"
#define PINLEN(p) (sizeof(p) - 1)
#define PIN(p)    (const unsigned char *)(p), PINLEN(p)

/* Argon2id at libsodium's minimum cost: tests stay fast. */
static const ks_kdf_params test_kdf = {crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN};

struct ks_fixture {
    char dir[256];
    char path[300];
    ks_token *tok;
};

static inline int
rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static inline void
rm_rf(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void
tmp_dir(char *buf, size_t n)
{
    const char *t = getenv("TMPDIR");

    snprintf(buf, n, "%s/ks-test-XXXXXX", t && *t ? t : "/tmp");
    assert_non_null(mkdtemp(buf));
}

/* A token with SO_PIN and USER_PIN set, nobody logged in. */
static inline int
fixture_setup(void **state)
{
    struct ks_fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    tmp_dir(f->dir, sizeof(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/token-0.db", f->dir);
    assert_int_equal(ks_create(f->path, "test token", PIN(SO_PIN), &test_kdf, &f->tok), KS_OK);
    assert_int_equal(ks_login(f->tok, KS_SO, PIN(SO_PIN)), KS_OK);
    assert_int_equal(ks_init_user_pin(f->tok, PIN(USER_PIN)), KS_OK);
    ks_logout(f->tok);
    *state = f;
    return 0;
}

static inline int
fixture_teardown(void **state)
{
    struct ks_fixture *f = *state;

    ks_close(f->tok);
    rm_rf(f->dir);
    free(f);
    return 0;
}

/* Run SQL directly on a token file, as an attacker or a broken disk would. */
static inline void
raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "raw_exec(%s): %s\n", sql, msg);
        fail();
    }
    sqlite3_close(db);
}

/* A single integer from SQL run directly on the file. */
static inline long long
raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Turn a current token file's objects table back into the version 1/2
 * layout (no rollover state or change sequence columns, no tombstones), as
 * the old code wrote it. */
static inline void
raw_objects_v2(const char *path)
{
    raw_exec(path, "CREATE TABLE o2 (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                   " is_private INTEGER NOT NULL CHECK (is_private IN (0, 1)),"
                   " version INTEGER NOT NULL CHECK (version >= 1),"
                   " nonce BLOB, data BLOB NOT NULL, mac BLOB);"
                   "INSERT INTO o2 SELECT id, is_private, version, nonce, data, mac FROM objects;"
                   "DROP TABLE objects; ALTER TABLE o2 RENAME TO objects;"
                   "DROP TABLE gone; PRAGMA user_version = 2;");
}

/* Turn a current token file back into the version 6 layout (no indexes
 * of the rollover state), as the code before schema 7 wrote it. */
static inline void
raw_objects_v6(const char *path)
{
    raw_exec(path, "DROP INDEX objects_cred; DROP INDEX objects_inactive;"
                   "PRAGMA user_version = 6;");
}

/* Turn a current token file back into the version 5 layout (lookup
 * columns for CKA_ID and CKA_LABEL only), as the code before schema 6
 * wrote it. */
static inline void
raw_objects_v5(const char *path)
{
    raw_objects_v6(path);
    raw_exec(path, "DROP INDEX objects_l_class; DROP INDEX objects_l_ktype;"
                   "DROP INDEX objects_l_ctype; DROP INDEX objects_l_subj;"
                   "DROP INDEX objects_l_isn;"
                   "ALTER TABLE objects DROP COLUMN l_class;"
                   "ALTER TABLE objects DROP COLUMN l_ktype;"
                   "ALTER TABLE objects DROP COLUMN l_ctype;"
                   "ALTER TABLE objects DROP COLUMN l_subj;"
                   "ALTER TABLE objects DROP COLUMN l_isn;"
                   "PRAGMA user_version = 5;");
}

/* Turn a current token file back into the version 4 layout (no lookup
 * columns), as the code before schema 5 wrote it; the caller sets
 * user_version (4, or lower after undoing more). */
static inline void
raw_objects_v4(const char *path)
{
    raw_objects_v5(path);
    raw_exec(path, "DROP INDEX objects_l_id; DROP INDEX objects_l_label;"
                   "DROP INDEX objects_unfilled; DROP INDEX objects_retired;"
                   "ALTER TABLE objects DROP COLUMN l_id;"
                   "ALTER TABLE objects DROP COLUMN l_label; ALTER TABLE objects DROP COLUMN lk;"
                   "PRAGMA user_version = 4;");
}

/* Copies every attribute of the objects it is shown (for checks). */
struct seen {
    int count;
    int64_t ids[64];
    int is_private[64];
    uint32_t version[64];
    unsigned char value[64][64]; /* value of the first attribute */
    size_t len[64];
    size_t nattrs[64];
};

static inline int
seen_cb(void *ctx, const ks_object *o)
{
    struct seen *s = ctx;
    int i = s->count;

    if (i >= 64)
        return 1;
    s->ids[i] = o->id;
    s->is_private[i] = o->is_private;
    s->version[i] = o->version;
    s->nattrs[i] = o->nattrs;
    for (size_t k = 1; k < o->nattrs; k++)
        assert_true(o->attrs[k - 1].type < o->attrs[k].type);
    if (o->nattrs > 0) {
        s->len[i] = o->attrs[0].len < 64 ? o->attrs[0].len : 64;
        memcpy(s->value[i], o->attrs[0].value, s->len[i]);
    }
    s->count++;
    return 0;
}

/* Does FILE contain NEEDLE anywhere? */
static inline int
file_contains(const char *file, const void *needle, size_t n)
{
    FILE *f = fopen(file, "rb");
    unsigned char *buf;
    long sz;
    int found = 0;

    if (f == NULL)
        return 0;
    fseek(f, 0, SEEK_END);
    sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(sz > 0 ? (size_t)sz : 1);
    assert_non_null(buf);
    if (sz > 0 && fread(buf, 1, (size_t)sz, f) == (size_t)sz)
        found = memmem(buf, (size_t)sz, needle, n) != NULL;
    free(buf);
    fclose(f);
    return found;
}

#endif
