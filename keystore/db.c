/*
 * db.c — the SQLite side of the keystore, part 1: error recording, the
 * handle's lock and cached statements, transactions, meta and pins rows,
 * change detection. Files, schema and migrations: db_open.c; backup and
 * restore: db_backup.c.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ks_int.h"

/* ---- errors ------------------------------------------------------------- */

static _Thread_local char open_err[KS_ERR_MAX];

static const char *
base_name(const char *file)
{
    const char *s = strrchr(file, '/');
    return s ? s + 1 : file;
}

ks_rv
ks_err_at(ks_token *tok, ks_rv rv, const char *file, int line, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (tok != NULL)
        snprintf(tok->err, sizeof(tok->err), "%s:%d: %s", base_name(file), line, msg);
    else
        snprintf(open_err, sizeof(open_err), "%s:%d: %s", base_name(file), line, msg);
    return rv;
}

ks_rv
ks_open_err_at(ks_rv rv, const char *file, int line, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(open_err, sizeof(open_err), "%s:%d: %s", base_name(file), line, msg);
    return rv;
}

/* The thread's open error from a handle's message, naming the file (the
 * message keeps the file:line where the error began). */
void
ks_open_err_from(const char *msg, const char *path)
{
    char tmp[sizeof(open_err)];
    int n;

    /* Truncation is acceptable for a message; the check keeps GCC's
     * -Wformat-truncation quiet without hiding real overflows. */
    n = snprintf(tmp, sizeof(tmp), "%s [%s]", msg, path);
    if (n < 0)
        tmp[0] = '\0';
    memcpy(open_err, tmp, sizeof(open_err));
}

void
ks_open_err_clear(void)
{
    open_err[0] = '\0';
}

const char *
ks_open_error(void)
{
    return open_err;
}

const char *
ks_last_error(const ks_token *tok)
{
    return tok != NULL ? tok->err : "";
}

ks_rv
ks_sqlite_rv(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return KS_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return KS_E_BUSY;
    case SQLITE_NOMEM:
        return KS_E_NOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_SCHEMA:
    case SQLITE_ERROR:    /* "no such table/column": the structure is wrong */
    case SQLITE_MISMATCH: /* a value of the wrong type where we insisted */
    case SQLITE_CONSTRAINT:
    case SQLITE_FORMAT:
    case SQLITE_TOOBIG: /* only a damaged length makes a stored value this big */
    case SQLITE_RANGE:
        return KS_E_CORRUPT;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return KS_E_PERM;
    case SQLITE_FULL: /* ENOSPC/EDQUOT on a write: the transaction rolled back */
        return KS_E_FULL;
    default: /* IOERR, CANTOPEN, FULL, READONLY, PROTOCOL, ... */
        return KS_E_IO;
    }
}

ks_rv
ks_sqlerr_at(ks_token *tok, int rc, const char *what, const char *file, int line)
{
    const char *m = (tok != NULL && tok->db != NULL) ? sqlite3_errmsg(tok->db) : sqlite3_errstr(rc);
    ks_rv rv = ks_sqlite_rv(rc);

    if (rv == KS_OK)
        rv = KS_E_IO;
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
        return ks_err_at(tok, rv, file, line, "%s: database busy for more than %d ms (%s)", what,
                         KS_BUSY_TIMEOUT_MS, m);
    return ks_err_at(tok, rv, file, line, "%s: %s", what, m);
}

/* ---- locking and statements -------------------------------------------- */

void
ks_lock(ks_token *tok)
{
    pthread_mutex_lock(&tok->mu);
}

void
ks_unlock(ks_token *tok)
{
    pthread_mutex_unlock(&tok->mu);
}

/* The next change sequence number (docs/keystore-format.md, "Change
 * sequence"): one more than any row or tombstone has. Evaluated inside the
 * writing statement, so under the write lock: numbers follow commit order. */
#define SEQ_NEXT                                                                                   \
    "(SELECT max(coalesce((SELECT max(seq) FROM objects), 0),"                                     \
    " coalesce((SELECT max(seq) FROM gone), 0)) + 1)"

/* The columns object.c decodes (enum C_ID ... C_SEQ there). */
#define OBJ_COLS "id, is_private, version, nonce, data, mac, state, retired_at, cred, seq"
/* The candidates' ids first (each part through an index), then their rows
 * by id in id order: sorting whole rows (ORDER BY over the union) would
 * copy every candidate's record into a temporary b-tree, megabytes for
 * "all certificates". */
#define OBJ_FIND(col)                                                                              \
    "SELECT " OBJ_COLS " FROM objects WHERE id IN ("                                               \
    "SELECT id FROM objects WHERE " col " IN (?1, ?2) AND lk = 1 AND (is_private = 0 OR ?3)"       \
    " UNION ALL SELECT id FROM objects WHERE lk = 0 AND is_private = 0"                            \
    " UNION ALL SELECT id FROM objects WHERE lk = 0 AND is_private = 1 AND ?3)"                    \
    " ORDER BY id"

/* The lookup columns (lookup.c, KS_LK_* order) set from parameters A..G. */
#define LK_SET(a, b, c, d, e, f, g)                                                                \
    "l_id = ?" #a ", l_label = ?" #b ", l_class = ?" #c ", l_ktype = ?" #d ", l_ctype = ?" #e      \
    ", l_subj = ?" #f ", l_isn = ?" #g

/* SQL of the cached statements, in enum ks_stmt order. */
static const char *const stmt_sql[ST_COUNT] = {
    [ST_DATA_VERSION] = "PRAGMA data_version",
    [ST_BEGIN] = "BEGIN",
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_META_ALL] = "SELECT key, value FROM meta",
    [ST_META_PUT] = "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
    [ST_PIN_GET] =
        "SELECT fail_count, kdf_ops, kdf_mem, salt, nonce, wrapped FROM pins WHERE who = ?1",
    [ST_PIN_FAIL_INC] = "UPDATE pins SET fail_count = fail_count + 1 WHERE who = ?1",
    [ST_PIN_FAIL_DEC] = "UPDATE pins SET fail_count = max(fail_count - 1, 0) WHERE who = ?1",
    [ST_PIN_FAIL_RESET] = "UPDATE pins SET fail_count = 0 WHERE who = ?1 AND fail_count <> 0",
    [ST_PIN_SET] = "UPDATE pins SET fail_count = 0, kdf_ops = ?2, kdf_mem = ?3, salt = ?4, "
                   "nonce = ?5, wrapped = ?6 WHERE who = ?1",
    [ST_PIN_CLEAR] = "UPDATE pins SET fail_count = 0, kdf_ops = NULL, kdf_mem = NULL, salt = NULL, "
                     "nonce = NULL, wrapped = NULL WHERE who = ?1",
    [ST_OBJ_ALL] = "SELECT id, is_private, version, nonce, data, mac, state, retired_at, cred, seq "
                   "FROM objects ORDER BY id",
    [ST_OBJ_PUBLIC] =
        "SELECT id, is_private, version, nonce, data, mac, state, retired_at, cred, seq "
        "FROM objects WHERE is_private = 0 ORDER BY id",
    [ST_OBJ_ONE] = "SELECT id, is_private, version, nonce, data, mac, state, retired_at, cred, seq "
                   "FROM objects WHERE id = ?1",
    [ST_OBJ_HEAD] =
        "SELECT is_private, version, state, retired_at, cred FROM objects WHERE id = ?1",
    /* lk = 1: the write that follows in the same transaction fills the
     * lookup columns (so the row never enters objects_unfilled). */
    [ST_OBJ_INSERT] = "INSERT INTO objects(is_private, version, data, lk) VALUES (?1, 1, x'', 1)",
    [ST_OBJ_WRITE] = "UPDATE objects SET version = ?2, nonce = ?3, data = ?4, mac = ?5, "
                     "state = ?6, retired_at = ?7, cred = ?8, " LK_SET(
                         9, 10, 11, 12, 13, 14, 15) ", lk = 1, seq = " SEQ_NEXT " WHERE id = ?1",
    [ST_OBJ_DELETE] = "DELETE FROM objects WHERE id = ?1",
    [ST_OBJ_DELETE_ALL] = "DELETE FROM objects",
    [ST_OBJ_COUNT] = "SELECT count(*) FROM objects",
    /* One statement, one snapshot: rows first, then tombstones (a NULL
     * is_private marks one), each in sequence order. */
    [ST_OBJ_SINCE] =
        "SELECT * FROM (SELECT id, is_private, version, nonce, data, mac, state, retired_at, cred,"
        " seq FROM objects WHERE seq > ?1 ORDER BY seq)"
        " UNION ALL SELECT * FROM (SELECT id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, seq"
        " FROM gone WHERE seq > ?1 ORDER BY seq)",
    [ST_GONE_ONE] = "INSERT OR REPLACE INTO gone(id, seq) VALUES (?1, " SEQ_NEXT ")",
    [ST_GONE_ALL] = "INSERT OR REPLACE INTO gone(id, seq) SELECT id, " SEQ_NEXT " FROM objects",
    [ST_GONE_PRUNE] = "DELETE FROM gone WHERE seq < (SELECT max(seq) FROM gone)",
    [ST_SET_GET] = "SELECT value, mac FROM settings WHERE key = ?1",
    [ST_SET_PUT] = "INSERT OR REPLACE INTO settings(key, value, mac) VALUES (?1, ?2, ?3)",
    [ST_SET_DELETE_ALL] = "DELETE FROM settings",
    [ST_ATT_LIST] = "SELECT key, value FROM meta WHERE key > ?1 AND key < ?2",
    [ST_ATT_DEL] = "DELETE FROM meta WHERE key = ?1",
    [ST_ATT_DEL_WHO] = "DELETE FROM meta WHERE key > ?1 AND key < ?2",
    [ST_EPOCH_GET] = "SELECT value FROM meta WHERE key = 'restore_epoch'",
    [ST_SEQ_NOW] = "SELECT max(coalesce((SELECT max(seq) FROM objects), 0),"
                   " coalesce((SELECT max(seq) FROM gone), 0))",
    /* Candidates of a search (lookup.c): rows whose lookup column holds the
     * clear value (?1) or the keyed hash (?2), plus every row whose columns
     * are not filled; private rows only when ?3 (logged in). Each part uses
     * an index; the rows come in id order. */
    [ST_OBJ_FIND_ID] = OBJ_FIND("l_id"),
    [ST_OBJ_FIND_LABEL] = OBJ_FIND("l_label"),
    [ST_OBJ_FIND_CLASS] = OBJ_FIND("l_class"),
    [ST_OBJ_FIND_KTYPE] = OBJ_FIND("l_ktype"),
    [ST_OBJ_FIND_CTYPE] = OBJ_FIND("l_ctype"),
    [ST_OBJ_FIND_SUBJ] = OBJ_FIND("l_subj"),
    [ST_OBJ_FIND_ISN] = OBJ_FIND("l_isn"),
    [ST_OBJ_UNFILLED] = "SELECT " OBJ_COLS " FROM objects WHERE lk = 0 AND is_private = ?1"
                        " AND id > ?2 ORDER BY id LIMIT 256",
    [ST_OBJ_ANY_UNFILLED] = "SELECT 1 FROM objects WHERE lk = 0 AND is_private = ?1 LIMIT 1",
    [ST_OBJ_FILL] = "UPDATE objects SET " LK_SET(2, 3, 4, 5, 6, 7, 8) ", lk = 1 WHERE id = ?1",
    [ST_OBJ_ANY_PURGE] = "SELECT 1 FROM objects WHERE state = 2 AND retired_at <= ?1 LIMIT 1",
    /* The rollover reads only what it may touch (rollover.c; each part
     * through an index): the rows linked to the credential (objects_cred),
     * those whose CKA_ID lookup value is the credential's (objects_l_id:
     * clear ?2 for public rows, keyed hash ?3 for private ones) and those
     * not filled yet (objects_unfilled). The records decide what is done. */
    [ST_OBJ_ROLL_COMMIT] = "SELECT " OBJ_COLS " FROM objects WHERE id IN ("
                           "SELECT id FROM objects WHERE cred = ?1"
                           " UNION ALL SELECT id FROM objects WHERE l_id IN (?2, ?3) AND lk = 1"
                           " UNION ALL SELECT id FROM objects WHERE lk = 0) ORDER BY id",
    [ST_OBJ_BY_CRED] = "SELECT " OBJ_COLS " FROM objects WHERE cred = ?1 ORDER BY id",
    /* The ids first: a plain ORDER BY id would make SQLite scan the table
     * in id order instead of using objects_retired. */
    [ST_OBJ_PURGE] = "SELECT " OBJ_COLS " FROM objects WHERE id IN (SELECT id FROM objects"
                     " WHERE state = 2 AND retired_at <= ?1) ORDER BY id",
    [ST_OBJ_INACTIVE] = "SELECT " OBJ_COLS " FROM objects WHERE state <> 0 ORDER BY id",
};

ks_rv
ks_stmts_prepare(ks_token *tok)
{
    int i, rc;

    for (i = 0; i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(tok->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &tok->st[i],
                                NULL);
        if (rc != SQLITE_OK) {
            /* Preparing checks every table and column the code uses. */
            return KS_ERR(tok, ks_sqlite_rv(rc) == KS_E_CORRUPT ? KS_E_CORRUPT : ks_sqlite_rv(rc),
                          "schema does not match: %s", sqlite3_errmsg(tok->db));
        }
    }
    return KS_OK;
}

void
ks_stmts_finalize(ks_token *tok)
{
    int i;

    for (i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(tok->st[i]);
        tok->st[i] = NULL;
    }
}

sqlite3_stmt *
ks_stmt_inlock(ks_token *tok, enum ks_stmt which)
{
    return tok->st[which];
}

void
ks_stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Step ST (expecting SQLITE_DONE) and reset it. */
ks_rv
ks_step_done_inlock(ks_token *tok, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    ks_rv rv = KS_OK;

    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        rv = KS_SQLERR(tok, rc, what);
    ks_stmt_done(st);
    return rv;
}

ks_rv
ks_exec_inlock(ks_token *tok, enum ks_stmt which)
{
    return ks_step_done_inlock(tok, tok->st[which], stmt_sql[which]);
}

/* The connection's synchronous setting for the next commit, set outside a
 * transaction (SQLite refuses it inside one) and only when it changes: a
 * PRAGMA without I/O. */
static ks_rv
sync_mode_inlock(ks_token *tok, int normal)
{
    int rc;

    if (tok->sync_normal == normal)
        return KS_OK;
    rc = sqlite3_exec(tok->db, normal ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return KS_SQLERR(tok, rc, "PRAGMA synchronous");
    tok->sync_normal = normal;
    return KS_OK;
}

ks_rv
ks_begin_inlock(ks_token *tok, int immediate)
{
    ks_rv rv;

    /* Every write not explicitly relaxed is committed with FULL: PIN
     * counters, PINs, destruction, rollover, settings. */
    if (immediate && (rv = sync_mode_inlock(tok, 0)) != KS_OK)
        return rv;
    /* IMMEDIATE takes the write lock up front, so a writer never fails half
     * way on a lock upgrade; the busy handler waits KS_BUSY_TIMEOUT_MS. */
    return ks_exec_inlock(tok, immediate ? ST_BEGIN_IMMEDIATE : ST_BEGIN);
}

ks_rv
ks_begin_normal_inlock(ks_token *tok)
{
    ks_rv rv = sync_mode_inlock(tok, 1);

    if (rv != KS_OK)
        return rv;
    return ks_exec_inlock(tok, ST_BEGIN_IMMEDIATE);
}

ks_rv
ks_commit_inlock(ks_token *tok)
{
    ks_rv rv = ks_exec_inlock(tok, ST_COMMIT);

    if (rv != KS_OK && !sqlite3_get_autocommit(tok->db))
        ks_rollback_inlock(tok);
    return rv;
}

void
ks_rollback_inlock(ks_token *tok)
{
    if (sqlite3_get_autocommit(tok->db))
        return; /* SQLite already rolled back (e.g. after SQLITE_FULL) */
    sqlite3_step(tok->st[ST_ROLLBACK]);
    sqlite3_reset(tok->st[ST_ROLLBACK]);
}

/* ---- meta and pins ------------------------------------------------------ */

static int
is_hex(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
            return 0;
    return 1;
}

enum {
    META_TOKEN_ID = 1 << 0,
    META_SERIAL = 1 << 1,
    META_LABEL = 1 << 2,
    META_KDF_OPS = 1 << 3,
    META_KDF_MEM = 1 << 4,
    META_MAX_ATTEMPTS = 1 << 5,
    META_ALL = (1 << 6) - 1
};

static const char *const meta_names[] = {"token_id", "serial",  "label",
                                         "kdf_ops",  "kdf_mem", "max_attempts"};

ks_rv
ks_meta_read_inlock(ks_token *tok, struct ks_meta *m)
{
    sqlite3_stmt *st = tok->st[ST_META_ALL];
    unsigned seen = 0;
    ks_rv rv = KS_OK;
    int rc, i;

    memset(m, 0, sizeof(*m));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int ktype = sqlite3_column_type(st, 0);
        int type = sqlite3_column_type(st, 1);
        const char *k = (const char *)sqlite3_column_text(st, 0);
        const void *v = NULL;
        int n = 0;

        /* Fetch the value only in its stored type: a conversion would
         * change what column_type means, and could run out of memory. */
        if (type == SQLITE_TEXT)
            v = sqlite3_column_text(st, 1);
        else if (type == SQLITE_BLOB)
            v = sqlite3_column_blob(st, 1);
        if (type == SQLITE_TEXT || type == SQLITE_BLOB)
            n = sqlite3_column_bytes(st, 1);
        if ((k == NULL && ktype != SQLITE_NULL) || (v == NULL && n > 0) ||
            (v == NULL && type == SQLITE_TEXT)) {
            rv = ks_col_nomem(tok, "meta");
            goto done;
        }
        if (k == NULL)
            continue;
        if (strcmp(k, "token_id") == 0) {
            if (type != SQLITE_BLOB || n != KS_TOKEN_ID_LEN) {
                rv = KS_ERR(tok, KS_E_CORRUPT, "meta key token_id malformed");
                goto done;
            }
            memcpy(m->token_id, v, KS_TOKEN_ID_LEN);
            seen |= META_TOKEN_ID;
        } else if (strcmp(k, "serial") == 0) {
            if (type != SQLITE_TEXT || n != KS_SERIAL_LEN || !is_hex(v, (size_t)n)) {
                rv = KS_ERR(tok, KS_E_CORRUPT, "meta key serial malformed");
                goto done;
            }
            memcpy(m->serial, v, KS_SERIAL_LEN);
            seen |= META_SERIAL;
        } else if (strcmp(k, "label") == 0) {
            if (type != SQLITE_TEXT || n > KS_LABEL_MAX || memchr(v, 0, (size_t)n) != NULL) {
                rv = KS_ERR(tok, KS_E_CORRUPT, "meta key label malformed");
                goto done;
            }
            memcpy(m->label, v, (size_t)n);
            seen |= META_LABEL;
        } else if (strcmp(k, "kdf_ops") == 0 || strcmp(k, "kdf_mem") == 0) {
            int ops = k[4] == 'o';
            sqlite3_int64 x = sqlite3_column_int64(st, 1);
            uint64_t lo = ops ? crypto_pwhash_OPSLIMIT_MIN : crypto_pwhash_MEMLIMIT_MIN;
            uint64_t hi = ops ? crypto_pwhash_OPSLIMIT_MAX : crypto_pwhash_MEMLIMIT_MAX;

            if (type != SQLITE_INTEGER || x < 0 || (uint64_t)x < lo || (uint64_t)x > hi) {
                rv = KS_ERR(tok, KS_E_CORRUPT, "meta key %s malformed", k);
                goto done;
            }
            if (ops) {
                m->kdf_ops = (uint64_t)x;
                seen |= META_KDF_OPS;
            } else {
                m->kdf_mem = (uint64_t)x;
                seen |= META_KDF_MEM;
            }
        } else if (strcmp(k, "max_attempts") == 0) {
            sqlite3_int64 x = sqlite3_column_int64(st, 1);

            if (type != SQLITE_INTEGER || x < 1 || x > 100) {
                rv = KS_ERR(tok, KS_E_CORRUPT, "meta key max_attempts malformed");
                goto done;
            }
            m->max_attempts = (unsigned)x;
            seen |= META_MAX_ATTEMPTS;
        } else if (strcmp(k, "meta_mac") == 0) {
            if (type != SQLITE_BLOB || n != KS_MAC_LEN) {
                rv = KS_ERR(tok, KS_E_CORRUPT, "meta key meta_mac malformed");
                goto done;
            }
            memcpy(m->mac, v, KS_MAC_LEN);
            m->has_mac = 1;
        }
        /* Unknown keys are tolerated: a later minor version may add some. */
    }
    if (rc != SQLITE_DONE) {
        rv = KS_SQLERR(tok, rc, "reading meta");
        goto done;
    }
    for (i = 0; i < 6; i++) {
        if (!(seen & (1u << i))) {
            rv = KS_ERR(tok, KS_E_CORRUPT, "meta key %s missing", meta_names[i]);
            goto done;
        }
    }
done:
    ks_stmt_done(st);
    return rv;
}

ks_rv
ks_meta_put_blob_inlock(ks_token *tok, const char *key, const void *v, size_t n)
{
    sqlite3_stmt *st = tok->st[ST_META_PUT];

    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, v, (int)n, SQLITE_STATIC);
    return ks_step_done_inlock(tok, st, "writing meta");
}

ks_rv
ks_meta_put_text_inlock(ks_token *tok, const char *key, const char *v)
{
    sqlite3_stmt *st = tok->st[ST_META_PUT];

    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, v, -1, SQLITE_STATIC);
    return ks_step_done_inlock(tok, st, "writing meta");
}

ks_rv
ks_meta_put_int_inlock(ks_token *tok, const char *key, int64_t v)
{
    sqlite3_stmt *st = tok->st[ST_META_PUT];

    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, v);
    return ks_step_done_inlock(tok, st, "writing meta");
}

ks_rv
ks_epoch_read_inlock(ks_token *tok, unsigned char out[KS_EPOCH_LEN])
{
    sqlite3_stmt *st = tok->st[ST_EPOCH_GET];
    ks_rv rv = KS_OK;
    int rc = sqlite3_step(st);

    memset(out, 0, KS_EPOCH_LEN);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_type(st, 0) != SQLITE_BLOB ||
            sqlite3_column_bytes(st, 0) != KS_EPOCH_LEN)
            rv = KS_ERR(tok, KS_E_CORRUPT, "meta key restore_epoch malformed");
        else
            memcpy(out, sqlite3_column_blob(st, 0), KS_EPOCH_LEN);
    } else if (rc != SQLITE_DONE) {
        rv = KS_SQLERR(tok, rc, "reading the restore epoch");
    }
    ks_stmt_done(st);
    return rv;
}

ks_rv
ks_col_nomem(ks_token *tok, const char *what)
{
    if (sqlite3_errcode(tok->db) == SQLITE_NOMEM)
        return KS_ERR(tok, KS_E_NOMEM, "reading %s: out of memory", what);
    return KS_ERR(tok, KS_E_CORRUPT, "reading %s: unexpected NULL value", what);
}

static int
blob_col(sqlite3_stmt *st, int col, void *out, size_t n)
{
    if (sqlite3_column_type(st, col) != SQLITE_BLOB || (size_t)sqlite3_column_bytes(st, col) != n)
        return -1;
    memcpy(out, sqlite3_column_blob(st, col), n);
    return 0;
}

ks_rv
ks_pin_read_inlock(ks_token *tok, ks_who who, struct ks_pin_row *p)
{
    sqlite3_stmt *st = tok->st[ST_PIN_GET];
    const char *name = who == KS_SO ? "SO" : "user";
    ks_rv rv = KS_OK;
    sqlite3_int64 x;
    int rc;

    memset(p, 0, sizeof(*p));
    sqlite3_bind_int(st, 1, (int)who);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        rv = KS_ERR(tok, KS_E_CORRUPT, "pins row for the %s PIN missing", name);
        goto done;
    }
    if (rc != SQLITE_ROW) {
        rv = KS_SQLERR(tok, rc, "reading pins");
        goto done;
    }
    x = sqlite3_column_int64(st, 0);
    if (sqlite3_column_type(st, 0) != SQLITE_INTEGER || x < 0 || x > 1000000) {
        rv = KS_ERR(tok, KS_E_CORRUPT, "pins: %s failure counter malformed", name);
        goto done;
    }
    p->fail_count = (unsigned)x;
    if (sqlite3_column_type(st, 5) == SQLITE_NULL) {
        if (who == KS_SO) {
            rv = KS_ERR(tok, KS_E_CORRUPT, "pins: the SO PIN has no wrapped key");
            goto done;
        }
        goto done; /* user PIN not initialised */
    }
    p->kdf_ops = (uint64_t)sqlite3_column_int64(st, 1);
    p->kdf_mem = (uint64_t)sqlite3_column_int64(st, 2);
    if (sqlite3_column_type(st, 1) != SQLITE_INTEGER ||
        sqlite3_column_type(st, 2) != SQLITE_INTEGER || p->kdf_ops < crypto_pwhash_OPSLIMIT_MIN ||
        p->kdf_ops > crypto_pwhash_OPSLIMIT_MAX || p->kdf_mem < crypto_pwhash_MEMLIMIT_MIN ||
        p->kdf_mem > crypto_pwhash_MEMLIMIT_MAX || blob_col(st, 3, p->salt, sizeof(p->salt)) != 0 ||
        blob_col(st, 4, p->nonce, sizeof(p->nonce)) != 0 ||
        blob_col(st, 5, p->wrapped, sizeof(p->wrapped)) != 0) {
        rv = KS_ERR(tok, KS_E_CORRUPT, "pins: %s PIN row malformed", name);
        goto done;
    }
    p->initialized = 1;
done:
    ks_stmt_done(st);
    return rv;
}

/* ---- change detection --------------------------------------------------- */

/*
 * PRAGMA data_version is the authority: SQLite changes it for every commit
 * by another connection. Reading it opens and closes a read transaction,
 * which costs two fcntl() lock calls and a few microseconds. A commit in WAL
 * mode becomes visible to every reader only through the wal-index header at
 * the start of the shared memory (-shm) that SQLite maps anyway: each commit
 * rewrites it (iChange counts transactions; mxFrame, the checksums and, after
 * a WAL restart, the salts change too). So while that header holds exactly
 * the bytes it held just before data_version was last read, nobody can have
 * committed since, and data_version is not asked. Any difference (a commit
 * by anyone, this handle included, or a torn read of a header being
 * rewritten) sends the check to data_version. The header is read lock-free,
 * as SQLite's own readers do first. The mapping stays valid while the
 * connection is open in WAL mode (it keeps the WAL and -shm open; nobody can
 * leave WAL mode or truncate -shm while it holds its shared locks).
 */

/* Region 0 of the connection's shared memory, as SQLite mapped it (after a
 * read transaction); NULL if unavailable (not WAL, heap memory, old VFS). */
static const volatile unsigned char *
shm_map(ks_token *tok)
{
    sqlite3_file *f = NULL;
    volatile void *p = NULL;

    if (sqlite3_file_control(tok->db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK ||
        f == NULL || f->pMethods == NULL || f->pMethods->iVersion < 2 ||
        f->pMethods->xShmMap == NULL)
        return NULL;
    /* bExtend = 0: never creates or grows anything, only returns the region
     * SQLite already mapped. */
    if (f->pMethods->xShmMap(f, 0, 32768, 0, &p) != SQLITE_OK)
        return NULL;
    return (const volatile unsigned char *)p;
}

static void
shm_read(const ks_token *tok, unsigned char out[KS_WAL_HDR_LEN])
{
    for (size_t i = 0; i < KS_WAL_HDR_LEN; i++)
        out[i] = tok->shm[i];
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
}

/* PRAGMA data_version into *V; HDR (may be NULL) the header read first. */
static ks_rv
data_version_inlock(ks_token *tok, int64_t *v, const unsigned char *hdr)
{
    sqlite3_stmt *st = tok->st[ST_DATA_VERSION];
    ks_rv rv = KS_OK;
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_int64(st, 0);
        if (hdr != NULL) {
            memcpy(tok->shm_hdr, hdr, KS_WAL_HDR_LEN);
            tok->shm_hdr_ok = 1;
        }
    } else {
        rv = KS_SQLERR(tok, rc, "PRAGMA data_version");
    }
    ks_stmt_done(st);
    return rv;
}

ks_rv
ks_changed_init_inlock(ks_token *tok)
{
    unsigned char hdr[KS_WAL_HDR_LEN];
    ks_rv rv;

    /* Open's read transactions mapped the shared memory. */
    tok->shm = getenv("EVERTOKEN_NO_SHM_CHECK") != NULL ? NULL : shm_map(tok);
    tok->shm_hdr_ok = 0;
    if (tok->shm != NULL)
        shm_read(tok, hdr);
    rv = data_version_inlock(tok, &tok->data_version, tok->shm != NULL ? hdr : NULL);
    return rv;
}

ks_rv
ks_changed(ks_token *tok, int *changed)
{
    unsigned char hdr[KS_WAL_HDR_LEN];
    int64_t v = 0;
    ks_rv rv;

    if (tok == NULL || changed == NULL)
        return KS_E_ARGS;
    *changed = 0;
    ks_lock(tok);
    if (tok->shm != NULL) {
        shm_read(tok, hdr);
        if (tok->shm_hdr_ok && memcmp(hdr, tok->shm_hdr, KS_WAL_HDR_LEN) == 0) {
            ks_unlock(tok);
            return KS_OK; /* nobody committed since data_version was read */
        }
    }
    rv = data_version_inlock(tok, &v, tok->shm != NULL ? hdr : NULL);
    if (rv == KS_OK) {
        /* data_version moves only for commits by other connections. */
        *changed = v != tok->data_version;
        tok->data_version = v;
    }
    ks_unlock(tok);
    return rv;
}
