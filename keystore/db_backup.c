/*
 * db_backup.c — online backup of a token file and restore over a token.
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

/* Open SRC read-only. A backup file without a -wal beside it is opened as
 * immutable, so that reading it leaves no -wal/-shm files next to it (a
 * WAL-mode file otherwise gets them, and a read-only connection cannot
 * remove them); one with a -wal is read through it. */
static int
open_source(const char *src, sqlite3 **db)
{
    char *wal = NULL, *uri = NULL;
    size_t n = strlen(src), j = 0;
    int rc;

    *db = NULL;
    if (asprintf(&wal, "%s-wal", src) < 0)
        return SQLITE_NOMEM;
    if (access(wal, F_OK) == 0 || errno != ENOENT) {
        free(wal);
        return sqlite3_open_v2(src, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    }
    free(wal);
    /* file: URI of the path: '%', '?' and '#' percent-encoded (RFC 3986 as
     * SQLite reads it). */
    uri = malloc(5 + 3 * n + sizeof("?immutable=1"));
    if (uri == NULL)
        return SQLITE_NOMEM;
    memcpy(uri, "file:", 5);
    j = 5;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)src[i];
        if (ch == '%' || ch == '?' || ch == '#') {
            snprintf(uri + j, 4, "%%%02X", ch);
            j += 3;
        } else {
            uri[j++] = (char)ch;
        }
    }
    memcpy(uri + j, "?immutable=1", sizeof("?immutable=1"));
    rc = sqlite3_open_v2(uri, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI,
                         NULL);
    free(uri);
    return rc;
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
    rv = ks_check_header(src);
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
    rc = open_source(src, &sdb);
    if (rc != SQLITE_OK) {
        rv = KS_OPEN_ERR(KS_E_IO, "cannot open %s: %s", src,
                         sdb ? sqlite3_errmsg(sdb) : sqlite3_errstr(rc));
        goto done;
    }
    sqlite3_busy_timeout(sdb, KS_BUSY_TIMEOUT_MS);
    rv = backup_into(&errt, sdb, tmp);
    if (rv != KS_OK) {
        ks_open_err_from(errt.err, src);
        goto done;
    }
    /* Validate the copy we are about to install (and migrate it if old). */
    rv = ks_open(tmp, &tmp_tok);
    if (rv != KS_OK) {
        char why[KS_ERR_MAX];

        snprintf(why, sizeof(why), "%s", ks_open_error());
        ks_open_err_from(why, src);
        goto done;
    }
    ks_close(tmp_tok); /* checkpoints, removes the temporary's WAL */
    tmp_tok = NULL;
    /* A new restore epoch: processes that have the token open load it in
     * full instead of applying changes numbered in the file it replaces. */
    rv = set_epoch(&errt, tmp);
    if (rv != KS_OK) {
        ks_open_err_from(errt.err, tmp);
        goto done;
    }
    rv = ks_fsync_path(tmp, 0);
    if (rv != KS_OK)
        goto done;
    /* Over an existing keystore: copy into the live database, one write
     * transaction that every connection sees at its next read. */
    rv = restore_live(&errt, tmp, dest, &live);
    if (rv != KS_OK) {
        ks_open_err_from(errt.err, dest);
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
