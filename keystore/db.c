/*
 * db.c — the SQLite side of the keystore: file and directory checks, the
 * connection's pragmas, schema creation and migrations, structure checks,
 * cached statements, error recording, change detection, backup and restore.
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

static _Thread_local char open_err[320];

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
static void
open_err_from(const char *msg, const char *path)
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
    [ST_OBJ_INSERT] = "INSERT INTO objects(is_private, version, data) VALUES (?1, 1, x'')",
    [ST_OBJ_WRITE] = "UPDATE objects SET version = ?2, nonce = ?3, data = ?4, mac = ?5, "
                     "state = ?6, retired_at = ?7, cred = ?8, seq = " SEQ_NEXT " WHERE id = ?1",
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
};

static ks_rv
stmts_prepare(ks_token *tok)
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

static void
stmts_finalize(ks_token *tok)
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

/* ---- files and directories --------------------------------------------- */

char *
ks_dirname(const char *path)
{
    const char *s = strrchr(path, '/');
    char *d;

    if (s == NULL)
        return strdup(".");
    if (s == path)
        return strdup("/");
    d = strndup(path, (size_t)(s - path));
    return d;
}

ks_rv
ks_mkdir_p(const char *dir)
{
    char *p = strdup(dir);
    char *s;
    ks_rv rv = KS_OK;

    if (p == NULL)
        return KS_E_NOMEM;
    for (s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;

            *s = '\0';
            if (mkdir(p, 0700) != 0 && errno != EEXIST) {
                rv = KS_OPEN_ERR(KS_E_IO, "cannot create directory %s: %s", p, strerror(errno));
                goto done;
            }
            *s = c;
            if (c == '\0')
                break;
        }
    }
done:
    free(p);
    return rv;
}

/* The directory must be ours and not writable by others: whoever can write
 * it can replace the token file. */
ks_rv
ks_check_dir_perms(const char *dir)
{
    struct stat st;

    if (stat(dir, &st) != 0)
        return KS_OPEN_ERR(KS_E_IO, "cannot stat directory %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return KS_OPEN_ERR(KS_E_IO, "%s is not a directory", dir);
    if (st.st_uid != geteuid())
        return KS_OPEN_ERR(KS_E_PERM, "directory %s is owned by uid %u, not by uid %u", dir,
                           (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return KS_OPEN_ERR(KS_E_PERM,
                           "directory %s is group/world writable (mode %04o); chmod 700 it", dir,
                           (unsigned)(st.st_mode & 07777));
    return KS_OK;
}

static ks_rv
check_file_perms(const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return KS_OPEN_ERR(KS_E_IO, "cannot open %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return KS_OPEN_ERR(KS_E_IO, "%s is not a regular file", path);
    if (st.st_uid != geteuid())
        return KS_OPEN_ERR(KS_E_PERM, "%s is owned by uid %u, not by uid %u", path,
                           (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return KS_OPEN_ERR(KS_E_PERM, "%s is group/world writable (mode %04o); chmod 600 it", path,
                           (unsigned)(st.st_mode & 07777));
    return KS_OK;
}

static const char *
file_kind(mode_t m)
{
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISSOCK(m))
        return "a socket";
    if (S_ISCHR(m) || S_ISBLK(m))
        return "a device";
    return "not a regular file";
}

ks_rv
ks_check_path(const char *path)
{
    struct stat st, target;
    char *dir;
    ks_rv rv = KS_OK;

    ks_open_err_clear();
    if (path == NULL || *path == '\0')
        return KS_OPEN_ERR(KS_E_ARGS, "ks_check_path: NULL or empty argument");
    if (path[0] != '/')
        return KS_OPEN_ERR(KS_E_ARGS, "%s is a relative path; the token directory must be absolute",
                           path);
    dir = ks_dirname(path);
    if (dir == NULL)
        return KS_OPEN_ERR(KS_E_NOMEM, "out of memory");
    if (stat(dir, &st) == 0 || errno != ENOENT)
        rv = ks_check_dir_perms(dir);
    free(dir);
    if (rv != KS_OK)
        return rv;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? KS_OK
                               : KS_OPEN_ERR(KS_E_IO, "cannot stat %s: %s", path, strerror(errno));
    if (S_ISLNK(st.st_mode)) {
        if (stat(path, &target) != 0)
            return KS_OPEN_ERR(KS_E_IO,
                               "%s is a symbolic link to nothing (%s); remove it or restore its "
                               "target",
                               path, strerror(errno));
        if (!S_ISREG(target.st_mode))
            return KS_OPEN_ERR(KS_E_IO,
                               "%s is a symbolic link to %s, not to a token file; remove it", path,
                               file_kind(target.st_mode));
    } else if (!S_ISREG(st.st_mode)) {
        return KS_OPEN_ERR(KS_E_IO, "%s is %s, not a token file; remove or rename it", path,
                           file_kind(st.st_mode));
    }
    return check_file_perms(path);
}

/* SQLite creates -wal and -shm with the main file's mode, but a side file
 * left by an older or foreign program may be looser: it holds recent pages
 * (public attributes in clear), so it is tightened or refused. */
static ks_rv
check_side_file(const char *path, const char *suffix)
{
    char side[4096];
    struct stat st;

    if ((size_t)snprintf(side, sizeof(side), "%s%s", path, suffix) >= sizeof(side))
        return KS_OPEN_ERR(KS_E_ARGS, "path too long");
    if (lstat(side, &st) != 0)
        return errno == ENOENT ? KS_OK
                               : KS_OPEN_ERR(KS_E_IO, "cannot stat %s: %s", side, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return KS_OPEN_ERR(KS_E_PERM, "%s is not a regular file", side);
    if (st.st_uid != geteuid())
        return KS_OPEN_ERR(KS_E_PERM, "%s is owned by uid %u, not by uid %u", side,
                           (unsigned)st.st_uid, (unsigned)geteuid());
    if ((st.st_mode & 077) != 0 && chmod(side, st.st_mode & 0700) != 0)
        return KS_OPEN_ERR(KS_E_PERM, "%s is group/world accessible and chmod failed: %s", side,
                           strerror(errno));
    return KS_OK;
}

/* Cheap first check, so that an empty or foreign file is reported as such
 * (SQLite would happily treat an empty file as an empty database). */
static ks_rv
check_header(const char *path)
{
    static const char magic[16] = "SQLite format 3";
    unsigned char hdr[100];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return KS_OPEN_ERR(KS_E_IO, "cannot open %s: %s", path, strerror(errno));
    n = read(fd, hdr, sizeof(hdr));
    close(fd);
    if (n < 0)
        return KS_OPEN_ERR(KS_E_IO, "cannot read %s: %s", path, strerror(errno));
    if (n < (ssize_t)sizeof(hdr) || memcmp(hdr, magic, sizeof(magic)) != 0)
        return KS_OPEN_ERR(KS_E_CORRUPT, "%s: not an SQLite database%s", path,
                           n == 0 ? " (empty file)" : "");
    return KS_OK;
}

ks_rv
ks_fsync_path(const char *path, int is_dir)
{
    int fd = open(path, (is_dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return KS_OPEN_ERR(KS_E_IO, "cannot open %s: %s", path, strerror(errno));
    rc = fsync(fd);
    close(fd);
    if (rc != 0)
        return KS_OPEN_ERR(KS_E_IO, "fsync %s: %s", path, strerror(errno));
    return KS_OK;
}

/* ---- connection set-up, schema, migrations ----------------------------- */

static ks_rv
exec_sql(ks_token *tok, const char *sql, const char *what)
{
    char *msg = NULL;
    int rc = sqlite3_exec(tok->db, sql, NULL, NULL, &msg);
    ks_rv rv = KS_OK;

    if (rc != SQLITE_OK) {
        ks_rv r = ks_sqlite_rv(rc);

        rv = KS_ERR(tok, r == KS_OK ? KS_E_IO : r, "%s: %s", what, msg ? msg : sqlite3_errstr(rc));
    }
    sqlite3_free(msg);
    return rv;
}

static ks_rv
pragma_int(ks_token *tok, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(tok->db, sql, -1, &st, NULL);
    ks_rv rv = KS_OK;

    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        rv = KS_SQLERR(tok, rc, sql);
    sqlite3_finalize(st);
    return rv;
}

/*
 * Connection settings. synchronous=FULL by default: in WAL mode NORMAL may
 * lose the last commits on power loss, and one of them may be a failed-PIN
 * count written before the KDF ran; FULL syncs the WAL at every commit.
 * The creation of public objects switches to NORMAL (ks_begin_normal_inlock;
 * docs/keystore-format.md, "Durability").
 */
static ks_rv
configure(ks_token *tok)
{
    sqlite3_stmt *st = NULL;
    ks_rv rv;
    int rc;

    sqlite3_extended_result_codes(tok->db, 1);
    sqlite3_busy_timeout(tok->db, KS_BUSY_TIMEOUT_MS);
    /* No schema tricks through this connection, no functions from the file. */
    sqlite3_db_config(tok->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    sqlite3_db_config(tok->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    rv = exec_sql(tok, "PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON;", "pragmas");
    if (rv != KS_OK)
        return rv;
    rc = sqlite3_prepare_v2(tok->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rv = KS_SQLERR(tok, rc, "setting WAL mode");
        goto done;
    }
    if (sqlite3_column_text(st, 0) == NULL) {
        rv = ks_col_nomem(tok, "journal mode");
        goto done;
    }
    if (sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
        rv = KS_ERR(tok, KS_E_IO, "cannot use WAL journal mode (got %s)",
                    (const char *)sqlite3_column_text(st, 0));
        goto done;
    }
    rv = exec_sql(tok, "PRAGMA synchronous = FULL;", "pragmas");
done:
    sqlite3_finalize(st);
    return rv;
}

/* Schema version 1: the first layout. Later versions are reached through
 * the migrations below, so a new file takes the same path as an old one. */
static const char schema_v1[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value NOT NULL);"
    "CREATE TABLE pins ("
    " who INTEGER PRIMARY KEY CHECK (who IN (0, 1)),"
    " fail_count INTEGER NOT NULL DEFAULT 0 CHECK (fail_count >= 0),"
    " kdf_ops INTEGER, kdf_mem INTEGER, salt BLOB, nonce BLOB, wrapped BLOB);"
    "CREATE TABLE objects ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " is_private INTEGER NOT NULL CHECK (is_private IN (0, 1)),"
    " version INTEGER NOT NULL CHECK (version >= 1),"
    " nonce BLOB, data BLOB NOT NULL, mac BLOB);"
    "INSERT INTO pins(who) VALUES (0), (1);";

/* Migration from version FROM to FROM + 1. Append only; never edit one that
 * has shipped. */
static const struct ks_migration {
    uint32_t from;
    const char *sql;
} migrations[] = {
    /* 1 -> 2: per-token settings (e.g. the module's login cache policy). */
    {1, "CREATE TABLE settings (key TEXT PRIMARY KEY NOT NULL,"
        " value TEXT NOT NULL, mac BLOB);"},
    /* 2 -> 3: credential rollover state (keystore/object.c, docs/rollover.md). */
    {2, "ALTER TABLE objects ADD COLUMN state INTEGER NOT NULL DEFAULT 0"
        " CHECK (state IN (0, 1, 2));"
        "ALTER TABLE objects ADD COLUMN retired_at INTEGER;"
        "ALTER TABLE objects ADD COLUMN cred BLOB;"},
    /* 3 -> 4: change sequence numbers and tombstones, so that a process
     * holding a cache reads only what others changed (docs/keystore-format.md). */
    {3, "ALTER TABLE objects ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;"
        "CREATE INDEX objects_seq ON objects(seq);"
        "CREATE TABLE gone (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL);"
        "CREATE INDEX gone_seq ON gone(seq);"},
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == KS_SCHEMA_VERSION - 1,
               "one migration per schema version step");

/* Run every migration from *VER up; the caller holds a write transaction. */
static ks_rv
migrate_intx(ks_token *tok, uint32_t ver)
{
    char sql[64];
    size_t i;
    ks_rv rv;

    for (i = 0; i < sizeof(migrations) / sizeof(migrations[0]); i++) {
        if (migrations[i].from != ver)
            continue;
        rv = exec_sql(tok, migrations[i].sql, "migration");
        if (rv != KS_OK)
            return rv;
        ver++;
    }
    if (ver != KS_SCHEMA_VERSION)
        return KS_ERR(tok, KS_E_CORRUPT, "no migration path from schema version %u", ver);
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %u;", ver);
    return exec_sql(tok, sql, "migration");
}

static ks_rv
migrate(ks_token *tok)
{
    int64_t ver;
    ks_rv rv;

    rv = exec_sql(tok, "BEGIN IMMEDIATE;", "migration");
    if (rv != KS_OK)
        return rv;
    /* Another process may have migrated it while we waited for the lock. */
    rv = pragma_int(tok, "PRAGMA user_version", &ver);
    if (rv == KS_OK && ver < KS_SCHEMA_VERSION)
        rv = migrate_intx(tok, (uint32_t)ver);
    if (rv == KS_OK)
        rv = exec_sql(tok, "COMMIT;", "migration");
    if (rv != KS_OK && !sqlite3_get_autocommit(tok->db))
        sqlite3_exec(tok->db, "ROLLBACK;", NULL, NULL, NULL);
    return rv;
}

static ks_rv
check_tables(ks_token *tok)
{
    static const char *const tables[] = {"meta",     "pins", "objects",
                                         "settings", "gone", "sqlite_sequence"};
    sqlite3_stmt *st = NULL;
    ks_rv rv = KS_OK;
    size_t i;
    int rc;

    rc = sqlite3_prepare_v2(
        tok->db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return KS_SQLERR(tok, rc, "reading the schema");
    for (i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        sqlite3_bind_text(st, 1, tables[i], -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_DONE) {
            rv = KS_ERR(tok, KS_E_CORRUPT, "missing table %s", tables[i]);
            break;
        }
        if (rc != SQLITE_ROW) {
            rv = KS_SQLERR(tok, rc, "reading the schema");
            break;
        }
    }
    sqlite3_finalize(st);
    return rv;
}

static ks_token *
tok_alloc(const char *path)
{
    ks_token *tok = calloc(1, sizeof(*tok));

    if (tok == NULL)
        return NULL;
    tok->path = strdup(path);
    if (tok->path == NULL || pthread_mutex_init(&tok->mu, NULL) != 0) {
        free(tok->path);
        free(tok);
        return NULL;
    }
    return tok;
}

static void
tok_free(ks_token *tok)
{
    if (tok == NULL)
        return;
    ks_keys_free(tok->keys);
    tok->keys = NULL;
    ks_secure_free(tok->scratch);
    stmts_finalize(tok);
    if (tok->db != NULL)
        sqlite3_close_v2(tok->db);
    pthread_mutex_destroy(&tok->mu);
    free(tok->attrs);
    free(tok->path);
    free(tok);
}

static ks_rv
sql_open(ks_token *tok)
{
    int rc =
        sqlite3_open_v2(tok->path, &tok->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    int persist;

    if (rc != SQLITE_OK) {
        ks_rv r = ks_sqlite_rv(rc);

        return KS_ERR(tok, (r == KS_E_CORRUPT || r == KS_E_NOMEM) ? r : KS_E_IO,
                      "cannot open %s: %s", tok->path,
                      tok->db ? sqlite3_errmsg(tok->db) : sqlite3_errstr(rc));
    }
    /* A token file (token-<N>.db; not a backup, nor restore's temporary)
     * keeps its -wal and -shm when the last connection closes (the WAL is
     * truncated to 0 bytes, journal_size_limit = 0): the next open then
     * maps the existing 32 KiB -shm instead of allocating it, so a token
     * can still be opened and read on a full disk (docs/keystore-format.md,
     * "Full disks"). Before the first read, which maps the -shm. */
    persist = ks_is_token_file(tok->path);
    (void)sqlite3_file_control(tok->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
    rc = sqlite3_exec(tok->db, "PRAGMA journal_size_limit = 0", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return KS_SQLERR(tok, rc, "PRAGMA journal_size_limit");
    return KS_OK;
}

/* Everything ks_open does after the file checks; errors land in tok->err. */
static ks_rv
open_db(ks_token *tok)
{
    struct ks_meta m;
    struct ks_pin_row p;
    int64_t appid, ver;
    ks_rv rv;

    rv = sql_open(tok);
    if (rv != KS_OK)
        return rv;
    sqlite3_extended_result_codes(tok->db, 1);
    sqlite3_busy_timeout(tok->db, KS_BUSY_TIMEOUT_MS);
    /* Identify the file before changing anything in it. */
    rv = pragma_int(tok, "PRAGMA application_id", &appid);
    if (rv != KS_OK)
        return rv;
    rv = pragma_int(tok, "PRAGMA user_version", &ver);
    if (rv != KS_OK)
        return rv;
    if (appid != KS_APPLICATION_ID)
        return KS_ERR(tok, KS_E_CORRUPT,
                      "not an evertoken keystore (application_id 0x%08" PRIx64 ")", appid);
    if (ver > KS_SCHEMA_VERSION)
        return KS_ERR(tok, KS_E_VERSION,
                      "schema version %" PRId64 " is newer than %d (upgrade evertoken)", ver,
                      KS_SCHEMA_VERSION);
    if (ver < 1)
        return KS_ERR(tok, KS_E_CORRUPT, "schema version %" PRId64 " is invalid", ver);
    rv = configure(tok);
    if (rv != KS_OK)
        return rv;
    if (ver < KS_SCHEMA_VERSION) {
        rv = migrate(tok);
        if (rv != KS_OK)
            return rv;
    }
    rv = check_tables(tok);
    if (rv != KS_OK)
        return rv;
    rv = stmts_prepare(tok);
    if (rv != KS_OK)
        return rv;
    rv = ks_begin_inlock(tok, 0);
    if (rv != KS_OK)
        return rv;
    rv = ks_meta_read_inlock(tok, &m);
    if (rv == KS_OK)
        rv = ks_pin_read_inlock(tok, KS_SO, &p);
    if (rv == KS_OK)
        rv = ks_pin_read_inlock(tok, KS_USER, &p);
    if (rv == KS_OK)
        rv = ks_epoch_read_inlock(tok, tok->epoch);
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
    sodium_memzero(&p, sizeof(p));
    if (rv != KS_OK)
        return rv;
    memcpy(tok->token_id, m.token_id, KS_TOKEN_ID_LEN);
    return ks_changed_init_inlock(tok);
}

ks_rv
ks_open(const char *path, ks_token **out)
{
    ks_token *tok = NULL;
    char *dir = NULL;
    ks_rv rv;

    ks_open_err_clear();
    if (out != NULL)
        *out = NULL;
    if (path == NULL || out == NULL || *path == '\0')
        return KS_OPEN_ERR(KS_E_ARGS, "ks_open: NULL or empty argument");
    if (sodium_init() < 0)
        return KS_OPEN_ERR(KS_E_CRYPTO, "libsodium initialisation failed");
    dir = ks_dirname(path);
    if (dir == NULL)
        return KS_OPEN_ERR(KS_E_NOMEM, "out of memory");
    rv = ks_check_dir_perms(dir);
    if (rv == KS_OK)
        rv = check_file_perms(path);
    if (rv == KS_OK)
        rv = check_side_file(path, "-wal");
    if (rv == KS_OK)
        rv = check_side_file(path, "-shm");
    if (rv == KS_OK)
        rv = check_header(path);
    if (rv != KS_OK)
        goto done;
    tok = tok_alloc(path);
    if (tok == NULL) {
        rv = KS_OPEN_ERR(KS_E_NOMEM, "out of memory");
        goto done;
    }
    rv = open_db(tok);
    if (rv != KS_OK) {
        open_err_from(tok->err, path);
        goto done;
    }
    *out = tok;
    tok = NULL;
done:
    tok_free(tok);
    free(dir);
    return rv;
}

void
ks_close(ks_token *tok)
{
    tok_free(tok);
}

const char *
ks_path(const ks_token *tok)
{
    return tok != NULL ? tok->path : NULL;
}

/* Build a complete token database in the empty file PATH. */
ks_rv
ks_db_create_file(const char *path, const struct ks_meta *m, const struct ks_pin_row *so,
                  const unsigned char mac_key[KS_KEY_LEN])
{
    ks_token *tok = tok_alloc(path);
    sqlite3_stmt *st;
    char sql[96];
    ks_rv rv;

    if (tok == NULL)
        return KS_OPEN_ERR(KS_E_NOMEM, "out of memory");
    rv = sql_open(tok);
    if (rv == KS_OK)
        rv = configure(tok);
    if (rv == KS_OK)
        rv = exec_sql(tok, "BEGIN IMMEDIATE;", "creating schema");
    if (rv != KS_OK)
        goto done;
    snprintf(sql, sizeof(sql), "PRAGMA application_id = %d; PRAGMA user_version = 1;",
             KS_APPLICATION_ID);
    rv = exec_sql(tok, sql, "creating schema");
    if (rv == KS_OK)
        rv = exec_sql(tok, schema_v1, "creating schema");
    if (rv == KS_OK)
        rv = migrate_intx(tok, 1);
    if (rv == KS_OK)
        rv = stmts_prepare(tok);
    if (rv != KS_OK)
        goto done;
    rv = ks_meta_put_blob_inlock(tok, "token_id", m->token_id, KS_TOKEN_ID_LEN);
    if (rv == KS_OK)
        rv = ks_meta_put_text_inlock(tok, "serial", m->serial);
    if (rv == KS_OK)
        rv = ks_meta_put_text_inlock(tok, "label", m->label);
    if (rv == KS_OK)
        rv = ks_meta_put_int_inlock(tok, "kdf_ops", (int64_t)m->kdf_ops);
    if (rv == KS_OK)
        rv = ks_meta_put_int_inlock(tok, "kdf_mem", (int64_t)m->kdf_mem);
    if (rv == KS_OK)
        rv = ks_meta_put_int_inlock(tok, "max_attempts", (int64_t)m->max_attempts);
    if (rv == KS_OK) {
        unsigned char mac[KS_MAC_LEN];

        ks_meta_mac(mac, mac_key, m);
        rv = ks_meta_put_blob_inlock(tok, "meta_mac", mac, sizeof(mac));
    }
    if (rv != KS_OK)
        goto done;
    st = tok->st[ST_PIN_SET];
    sqlite3_bind_int(st, 1, KS_SO);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)so->kdf_ops);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)so->kdf_mem);
    sqlite3_bind_blob(st, 4, so->salt, sizeof(so->salt), SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, so->nonce, sizeof(so->nonce), SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, so->wrapped, sizeof(so->wrapped), SQLITE_STATIC);
    rv = ks_step_done_inlock(tok, st, "writing the SO PIN");
    if (rv == KS_OK)
        rv = exec_sql(tok, "COMMIT;", "creating schema");
done:
    if (rv != KS_OK) {
        if (tok->db != NULL && !sqlite3_get_autocommit(tok->db))
            sqlite3_exec(tok->db, "ROLLBACK;", NULL, NULL, NULL);
        open_err_from(tok->err, path);
    }
    tok_free(tok); /* the last connection: checkpoints and removes the WAL */
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

/* ---- backup and restore ------------------------------------------------- */

/* Copy database SRC into the open, empty connection DST (online backup). */
static ks_rv
copy_db(ks_token *err_tok, sqlite3 *dst, sqlite3 *src)
{
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    int rc;

    if (b == NULL)
        return KS_ERR(err_tok, ks_sqlite_rv(sqlite3_errcode(dst)), "backup: %s",
                      sqlite3_errmsg(dst));
    /* One step copies everything under one read transaction: consistent even
     * while other processes write (they wait for our busy handler at most). */
    do {
        rc = sqlite3_backup_step(b, -1);
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
            sqlite3_sleep(50);
    } while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE)
        return KS_ERR(err_tok, ks_sqlite_rv(rc) == KS_OK ? KS_E_IO : ks_sqlite_rv(rc), "backup: %s",
                      sqlite3_errstr(rc));
    rc = sqlite3_errcode(dst);
    if (rc != SQLITE_OK && rc != SQLITE_DONE)
        return KS_ERR(err_tok, KS_E_IO, "backup: %s", sqlite3_errmsg(dst));
    return KS_OK;
}

void
ks_unlink_db(const char *path)
{
    char side[4096];

    unlink(path);
    if ((size_t)snprintf(side, sizeof(side), "%s-wal", path) < sizeof(side))
        unlink(side);
    if ((size_t)snprintf(side, sizeof(side), "%s-shm", path) < sizeof(side))
        unlink(side);
}

/* Copy SRC_DB into the new file DEST (which we created, 0600). */
static ks_rv
backup_into(ks_token *err_tok, sqlite3 *src_db, const char *dest)
{
    sqlite3 *dst = NULL;
    ks_rv rv;
    int rc;

    rc = sqlite3_open_v2(dest, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rv = KS_ERR(err_tok, KS_E_IO, "cannot open %s: %s", dest,
                    dst ? sqlite3_errmsg(dst) : sqlite3_errstr(rc));
        goto done;
    }
    sqlite3_busy_timeout(dst, KS_BUSY_TIMEOUT_MS);
    rv = copy_db(err_tok, dst, src_db);
done:
    if (dst != NULL && sqlite3_close(dst) != SQLITE_OK && rv == KS_OK)
        rv = KS_ERR(err_tok, KS_E_IO, "closing %s failed", dest);
    if (rv == KS_OK)
        rv = ks_fsync_path(dest, 0);
    return rv;
}

ks_rv
ks_backup(ks_token *tok, const char *dest)
{
    char *dir = NULL;
    ks_rv rv;
    int fd;

    if (tok == NULL || dest == NULL || *dest == '\0')
        return KS_E_ARGS;
    ks_lock(tok);
    fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rv = KS_ERR(tok, errno == EEXIST ? KS_E_EXISTS : KS_E_IO, "cannot create %s: %s", dest,
                    strerror(errno));
        goto out;
    }
    close(fd);
    rv = backup_into(tok, tok->db, dest);
    if (rv != KS_OK) {
        ks_unlink_db(dest);
        goto out;
    }
    dir = ks_dirname(dest);
    if (dir != NULL)
        (void)ks_fsync_path(dir, 1); /* best effort: the data itself is synced */
out:
    ks_unlock(tok);
    free(dir);
    return rv;
}

/* Give the keystore file PATH (ours, not open elsewhere) a new random
 * restore epoch. */
static ks_rv
set_epoch(ks_token *err_tok, const char *path)
{
    unsigned char epoch[KS_EPOCH_LEN];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    ks_rv rv = KS_OK;
    int rc;

    randombytes_buf(epoch, sizeof(epoch));
    rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db,
                                "INSERT OR REPLACE INTO meta(key, value) "
                                "VALUES ('restore_epoch', ?1)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, epoch, sizeof(epoch), SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK)
        rv = KS_ERR(err_tok, ks_sqlite_rv(rc) == KS_OK ? KS_E_IO : ks_sqlite_rv(rc),
                    "writing the restore epoch: %s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_finalize(st);
    if (sqlite3_close(db) != SQLITE_OK && rv == KS_OK)
        rv = KS_ERR(err_tok, KS_E_IO, "closing %s failed", path);
    return rv;
}

/*
 * Restore the validated copy TMP into DEST in place when DEST is a keystore
 * file: SQLite's online backup API writes it into the live database as one
 * write transaction (under SQLite's locks, with synchronous=FULL), so every
 * other connection - other processes holding the token open included - sees
 * either the old or the restored content, and the restored content from its
 * next read on (data_version moves, the new restore epoch makes caches
 * reload in full). *LIVE = 0 when DEST is missing or not a keystore (the
 * caller renames TMP into place instead).
 */
static ks_rv
restore_live(ks_token *err_tok, const char *tmp, const char *dest, int *live)
{
    sqlite3 *ddb = NULL, *tdb = NULL;
    sqlite3_stmt *st = NULL;
    struct stat sb;
    ks_rv rv = KS_OK;
    int rc, app = 0;

    *live = 0;
    /* lstat first: never open (and block on) a FIFO, never follow a link. */
    if (lstat(dest, &sb) != 0 || !S_ISREG(sb.st_mode))
        return KS_OK;
    rc = sqlite3_open_v2(dest, &ddb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(ddb, "PRAGMA application_id", -1, &st, NULL);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        app = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_OK || app != KS_APPLICATION_ID) {
        sqlite3_close(ddb); /* damaged or foreign: replaced by rename */
        return KS_OK;
    }
    *live = 1;
    sqlite3_busy_timeout(ddb, KS_BUSY_TIMEOUT_MS);
    rc = sqlite3_exec(ddb, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rv = KS_ERR(err_tok, KS_E_IO, "cannot restore into %s: %s", dest, sqlite3_errmsg(ddb));
        goto done;
    }
    rc = sqlite3_open_v2(tmp, &tdb, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rv = KS_ERR(err_tok, KS_E_IO, "cannot open %s: %s", tmp,
                    tdb ? sqlite3_errmsg(tdb) : sqlite3_errstr(rc));
        goto done;
    }
    rv = copy_db(err_tok, ddb, tdb);
done:
    sqlite3_close(tdb);
    if (sqlite3_close(ddb) != SQLITE_OK && rv == KS_OK)
        rv = KS_ERR(err_tok, KS_E_IO, "closing %s failed", dest);
    return rv;
}

ks_rv
ks_restore(const char *src, const char *dest)
{
    ks_token *tmp_tok = NULL;
    sqlite3 *sdb = NULL;
    char *dir = NULL, *tmp = NULL;
    ks_token errt;
    char side[4096];
    ks_rv rv;
    int fd = -1, rc, live = 0;

    ks_open_err_clear();
    memset(&errt, 0, sizeof(errt));
    if (src == NULL || dest == NULL || *src == '\0' || *dest == '\0')
        return KS_OPEN_ERR(KS_E_ARGS, "ks_restore: NULL or empty argument");
    if (sodium_init() < 0)
        return KS_OPEN_ERR(KS_E_CRYPTO, "libsodium initialisation failed");
    rv = check_header(src);
    if (rv != KS_OK)
        return rv;
    dir = ks_dirname(dest);
    if (dir == NULL || asprintf(&tmp, "%s/.restore-XXXXXX", dir) < 0) {
        tmp = NULL;
        rv = KS_OPEN_ERR(KS_E_NOMEM, "out of memory");
        goto done;
    }
    /* Restoring onto a fresh machine: the token directory may not exist. */
    rv = ks_mkdir_p(dir);
    if (rv == KS_OK)
        rv = ks_check_dir_perms(dir);
    if (rv != KS_OK)
        goto done;
    fd = mkostemp(tmp, O_CLOEXEC); /* 0600 */
    if (fd < 0) {
        rv = KS_OPEN_ERR(KS_E_IO, "cannot create a file in %s: %s", dir, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto done;
    }
    close(fd);
    /* Copy with the backup API rather than bytes, so that a source with a
     * live WAL still gives a consistent copy; SRC is only read. */
    rc = sqlite3_open_v2(src, &sdb, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rv = KS_OPEN_ERR(KS_E_IO, "cannot open %s: %s", src,
                         sdb ? sqlite3_errmsg(sdb) : sqlite3_errstr(rc));
        goto done;
    }
    sqlite3_busy_timeout(sdb, KS_BUSY_TIMEOUT_MS);
    rv = backup_into(&errt, sdb, tmp);
    if (rv != KS_OK) {
        open_err_from(errt.err, src);
        goto done;
    }
    /* Validate the copy we are about to install (and migrate it if old). */
    rv = ks_open(tmp, &tmp_tok);
    if (rv != KS_OK) {
        char why[sizeof(open_err)];

        snprintf(why, sizeof(why), "%s", open_err);
        open_err_from(why, src);
        goto done;
    }
    ks_close(tmp_tok); /* checkpoints, removes the temporary's WAL */
    tmp_tok = NULL;
    /* A new restore epoch: processes that have the token open load it in
     * full instead of applying changes numbered in the file it replaces. */
    rv = set_epoch(&errt, tmp);
    if (rv != KS_OK) {
        open_err_from(errt.err, tmp);
        goto done;
    }
    rv = ks_fsync_path(tmp, 0);
    if (rv != KS_OK)
        goto done;
    /* Over an existing keystore: copy into the live database, one write
     * transaction that every connection sees at its next read. */
    rv = restore_live(&errt, tmp, dest, &live);
    if (rv != KS_OK) {
        open_err_from(errt.err, dest);
        goto done;
    }
    if (live) {
        ks_unlink_db(tmp);
        goto done;
    }
    /* Side files of what is replaced (not a keystore: nobody can be using
     * it) must not be taken for the restored file's (a WAL replayed onto
     * it, a wal-index describing another file). */
    if ((size_t)snprintf(side, sizeof(side), "%s-wal", dest) < sizeof(side))
        unlink(side);
    if ((size_t)snprintf(side, sizeof(side), "%s-shm", dest) < sizeof(side))
        unlink(side);
    if (rename(tmp, dest) != 0) {
        rv = KS_OPEN_ERR(KS_E_IO, "cannot rename into %s: %s", dest, strerror(errno));
        goto done;
    }
    free(tmp);
    tmp = NULL;
    rv = ks_fsync_path(dir, 1);
done:
    sqlite3_close(sdb);
    ks_close(tmp_tok);
    if (tmp != NULL) {
        ks_unlink_db(tmp);
        free(tmp);
    }
    free(dir);
    return rv;
}
