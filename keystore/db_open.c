/*
 * db_open.c — opening a keystore file: file and directory checks, the
 * connection's pragmas, schema creation and migrations, structure checks.
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
ks_rv
ks_check_header(const char *path)
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
    /* 4 -> 5: lookup columns, so that a search reads only the records it
     * returns (keystore/lookup.c, docs/keystore-format.md "Lookup columns"):
     * the value in the clear for a public object, a keyed hash for a
     * private one; lk = 0 until they are filled (public rows at the next
     * open, private ones at the next login). The indexes are partial so
     * that a new row (inserted empty, then written) touches them once. */
    {4, "ALTER TABLE objects ADD COLUMN l_id BLOB;"
        "ALTER TABLE objects ADD COLUMN l_label BLOB;"
        "ALTER TABLE objects ADD COLUMN lk INTEGER NOT NULL DEFAULT 0;"
        "CREATE INDEX objects_l_id ON objects(l_id) WHERE l_id IS NOT NULL;"
        "CREATE INDEX objects_l_label ON objects(l_label) WHERE l_label IS NOT NULL;"
        "CREATE INDEX objects_unfilled ON objects(is_private, id) WHERE lk = 0;"
        "CREATE INDEX objects_retired ON objects(retired_at) WHERE state = 2;"},
    /* 5 -> 6: more lookup columns (class, key and certificate type, subject,
     * issuer and serial), so that "all certificates" or a search by
     * subject reads only what it returns. Every row is marked unfilled:
     * the fill (public rows at the next open, private ones at the next
     * login) writes all columns, and a search reads unfilled rows. */
    {5, "ALTER TABLE objects ADD COLUMN l_class BLOB;"
        "ALTER TABLE objects ADD COLUMN l_ktype BLOB;"
        "ALTER TABLE objects ADD COLUMN l_ctype BLOB;"
        "ALTER TABLE objects ADD COLUMN l_subj BLOB;"
        "ALTER TABLE objects ADD COLUMN l_isn BLOB;"
        "CREATE INDEX objects_l_class ON objects(l_class) WHERE l_class IS NOT NULL;"
        "CREATE INDEX objects_l_ktype ON objects(l_ktype) WHERE l_ktype IS NOT NULL;"
        "CREATE INDEX objects_l_ctype ON objects(l_ctype) WHERE l_ctype IS NOT NULL;"
        "CREATE INDEX objects_l_subj ON objects(l_subj) WHERE l_subj IS NOT NULL;"
        "CREATE INDEX objects_l_isn ON objects(l_isn) WHERE l_isn IS NOT NULL;"
        "UPDATE objects SET lk = 0 WHERE lk <> 0;"},
    /* 6 -> 7: indexes of the rollover state, so that a rollover (commit,
     * rollback, discard, purge) and the list of pending and retired
     * objects read only the rows they may touch. The state and the
     * credential link are row columns since schema 3 (they rebuild the
     * AD): nothing to fill. */
    {6, "CREATE INDEX objects_cred ON objects(cred) WHERE cred IS NOT NULL;"
        "CREATE INDEX objects_inactive ON objects(id) WHERE state <> 0;"},
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
    ks_stmts_finalize(tok);
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
    rv = ks_stmts_prepare(tok);
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
    /* Rows from before schema 5: their public lookup columns, once. A
     * failure (a busy or full disk) leaves them to be read by every search
     * until a later open fills them. */
    (void)ks_lookup_fill(tok, 0);
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
        rv = ks_check_header(path);
    if (rv != KS_OK)
        goto done;
    tok = tok_alloc(path);
    if (tok == NULL) {
        rv = KS_OPEN_ERR(KS_E_NOMEM, "out of memory");
        goto done;
    }
    rv = open_db(tok);
    if (rv != KS_OK) {
        ks_open_err_from(tok->err, path);
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
        rv = ks_stmts_prepare(tok);
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
        ks_open_err_from(tok->err, path);
    }
    tok_free(tok); /* the last connection: checkpoints and removes the WAL */
    return rv;
}
