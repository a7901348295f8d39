/*
 * bundle.c — the single-file backup of a token together with the enrollment
 * helper's state (`backup --with-helper-state`, docs/cli.md).
 *
 * The bundle is an SQLite database (application_id "ETB1", so `file` and
 * `sqlite3` recognise it) with two tables: meta (format version, when it was
 * made, the token's label, the newest time of the helper state) and files
 * (part "token": the keystore copy; part "state": each file of the helper's
 * state directory), every file with its SHA-256. Reading checks SQLite's
 * integrity, the format, every digest and every name before anything is
 * handed on, so a damaged bundle changes nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "et_int.h"

#define BUNDLE_APPID  0x45544231 /* "ETB1" */
#define BUNDLE_FORMAT "1"

static const char bundle_schema[] =
    "PRAGMA application_id = 1163149873;" /* BUNDLE_APPID */
    "PRAGMA journal_mode = MEMORY;"
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE files(part TEXT NOT NULL, name TEXT NOT NULL, sha256 BLOB NOT NULL,"
    " data BLOB NOT NULL, PRIMARY KEY(part, name));";

_Static_assert(BUNDLE_APPID == 1163149873, "application_id in bundle_schema");

static int
put_meta(sqlite3 *db, const char *k, const char *v)
{
    sqlite3_stmt *s = NULL;
    int r;

    if (sqlite3_prepare_v2(db, "INSERT INTO meta VALUES (?, ?)", -1, &s, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, v, -1, SQLITE_STATIC);
    r = sqlite3_step(s);
    sqlite3_finalize(s);
    return r == SQLITE_DONE ? 0 : -1;
}

static int
put_file(sqlite3 *db, const char *part, const et_sfile *f)
{
    unsigned char h[crypto_hash_sha256_BYTES];
    sqlite3_stmt *s = NULL;
    int r;

    crypto_hash_sha256(h, f->data, f->len);
    if (sqlite3_prepare_v2(db, "INSERT INTO files VALUES (?, ?, ?, ?)", -1, &s, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(s, 1, part, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, f->name, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, h, sizeof(h), SQLITE_STATIC);
    sqlite3_bind_blob64(s, 4, f->len ? (const void *)f->data : (const void *)"",
                        (sqlite3_uint64)f->len, SQLITE_STATIC);
    r = sqlite3_step(s);
    sqlite3_finalize(s);
    return r == SQLITE_DONE ? 0 : -1;
}

int
et_bundle_write(const char *out, const et_sfile *keystore, const char *label,
                const et_sfiles *state, long long latest)
{
    sqlite3 *db = NULL;
    char num[32];
    int fd, ok = 0;

    /* Created 0600 by us (never over an existing file), then filled. */
    fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        et_err("backup: cannot create %s: %s", out, strerror(errno));
        return errno == EEXIST ? ET_EXIT_EXISTS : ET_EXIT_FAIL;
    }
    close(fd);
    if (sqlite3_open_v2(out, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(db, bundle_schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        goto done;
    snprintf(num, sizeof(num), "%lld", (long long)time(NULL));
    if (put_meta(db, "format", BUNDLE_FORMAT) != 0 || put_meta(db, "created", num) != 0 ||
        put_meta(db, "token_label", label) != 0)
        goto done;
    snprintf(num, sizeof(num), "%lld", latest);
    if (put_meta(db, "state_latest", num) != 0 || put_file(db, "token", keystore) != 0)
        goto done;
    for (size_t i = 0; i < state->n; i++)
        if (put_file(db, "state", &state->v[i]) != 0)
            goto done;
    ok = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
done:
    if (!ok)
        et_err("backup: cannot write %s: %s", out, db ? sqlite3_errmsg(db) : "out of memory");
    if (sqlite3_close(db) != SQLITE_OK)
        ok = 0;
    if (ok) {
        fd = open(out, O_RDONLY | O_CLOEXEC);
        ok = fd >= 0 && fsync(fd) == 0;
        if (fd >= 0)
            close(fd);
    }
    if (!ok) {
        unlink(out);
        return ET_EXIT_FAIL;
    }
    return ET_EXIT_OK;
}

int
et_bundle_is(const char *path)
{
    unsigned char hdr[72];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return 0;
    n = read(fd, hdr, sizeof(hdr));
    close(fd);
    /* SQLite's header, then the application id (big-endian) at offset 68. */
    return n == (ssize_t)sizeof(hdr) && memcmp(hdr, "SQLite format 3", 16) == 0 && hdr[68] == 'E' &&
           hdr[69] == 'T' && hdr[70] == 'B' && hdr[71] == '1';
}

/* meta value KEY into BUF; -1 when missing. */
static int
get_meta(sqlite3 *db, const char *k, char *buf, size_t n)
{
    sqlite3_stmt *s = NULL;
    int rc = -1;

    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?", -1, &s, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0) != NULL) {
        snprintf(buf, n, "%s", (const char *)sqlite3_column_text(s, 0));
        rc = 0;
    }
    sqlite3_finalize(s);
    return rc;
}

/* Every file of the bundle into TOKEN or STATE after checking its digest
 * and name; ERR says what is wrong. */
static int
read_files(sqlite3 *db, et_bundle *b, char *err, size_t errn)
{
    sqlite3_stmt *s = NULL;
    int r, rc = -1;

    /* A name twice: which copy would win is undefined; damaged. */
    if (sqlite3_prepare_v2(db,
                           "SELECT part, name FROM files GROUP BY part, name HAVING count(*) > 1",
                           -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        const char *a = (const char *)sqlite3_column_text(s, 0);
        const char *n = (const char *)sqlite3_column_text(s, 1);
        snprintf(err, errn, "it holds %s/%s twice (damaged)", a ? a : "", n ? n : "");
        sqlite3_finalize(s);
        return -1;
    }
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_prepare_v2(db, "SELECT part, name, sha256, data FROM files", -1, &s, NULL) !=
        SQLITE_OK) {
        snprintf(err, errn, "no file table (%s)", sqlite3_errmsg(db));
        return -1;
    }
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        const char *part = (const char *)sqlite3_column_text(s, 0);
        const char *name = (const char *)sqlite3_column_text(s, 1);
        const void *h = sqlite3_column_blob(s, 2), *d = sqlite3_column_blob(s, 3);
        int hn = sqlite3_column_bytes(s, 2), dn = sqlite3_column_bytes(s, 3);
        unsigned char mine[crypto_hash_sha256_BYTES];
        et_sfiles *to;
        et_sfile *v;

        if (part == NULL || name == NULL || dn < 0 || hn != (int)sizeof(mine)) {
            snprintf(err, errn, "a file entry is incomplete");
            goto done;
        }
        to = !strcmp(part, "token") ? &b->token : !strcmp(part, "state") ? &b->state : NULL;
        if (to == NULL || !et_enr_state_name_ok(name) ||
            (to == &b->token && strcmp(name, "keystore.db") != 0)) {
            snprintf(err, errn, "unexpected file %s/%s", part, name);
            goto done;
        }
        crypto_hash_sha256(mine, d ? d : (const void *)"", (unsigned long long)dn);
        if (sodium_memcmp(mine, h, sizeof(mine)) != 0) {
            snprintf(err, errn, "%s/%s does not match its SHA-256 (damaged)", part, name);
            goto done;
        }
        if ((v = realloc(to->v, (to->n + 1) * sizeof(*v))) == NULL) {
            snprintf(err, errn, "out of memory");
            goto done;
        }
        to->v = v;
        v[to->n].name = strdup(name);
        v[to->n].data = malloc(dn > 0 ? (size_t)dn : 1);
        v[to->n].len = (size_t)dn;
        if (v[to->n].name == NULL || v[to->n].data == NULL) {
            free(v[to->n].name);
            free(v[to->n].data);
            snprintf(err, errn, "out of memory");
            goto done;
        }
        if (dn > 0)
            memcpy(v[to->n].data, d, (size_t)dn);
        to->n++;
    }
    if (r != SQLITE_DONE) {
        snprintf(err, errn, "%s", sqlite3_errmsg(db));
        goto done;
    }
    if (b->token.n != 1) {
        snprintf(err, errn, "it holds no keystore");
        goto done;
    }
    rc = 0;
done:
    sqlite3_finalize(s);
    return rc;
}

void
et_bundle_free(et_bundle *b)
{
    et_sfiles_free(&b->token);
    et_sfiles_free(&b->state);
    memset(b, 0, sizeof(*b));
}

int
et_bundle_read(const char *path, et_bundle *b)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    char err[512] = "", fmt[16], num[32];
    const unsigned char *t = NULL;
    int rc = ET_EXIT_INPUT;

    memset(b, 0, sizeof(*b));
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, sizeof(err), "%s", db ? sqlite3_errmsg(db) : "out of memory");
        goto done;
    }
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        t = sqlite3_column_text(s, 0);
    if (t == NULL || strcmp((const char *)t, "ok") != 0) {
        snprintf(err, sizeof(err), "the file is damaged (%s)",
                 t ? (const char *)t : sqlite3_errmsg(db));
        goto done;
    }
    if (get_meta(db, "format", fmt, sizeof(fmt)) != 0 || strcmp(fmt, BUNDLE_FORMAT) != 0) {
        snprintf(err, sizeof(err), "unknown bundle format (not %s)", BUNDLE_FORMAT);
        goto done;
    }
    if (get_meta(db, "token_label", b->label, sizeof(b->label)) != 0 ||
        get_meta(db, "state_latest", num, sizeof(num)) != 0) {
        snprintf(err, sizeof(err), "its description (meta) is incomplete");
        goto done;
    }
    b->state_latest = strtoll(num, NULL, 10);
    if (read_files(db, b, err, sizeof(err)) != 0)
        goto done;
    rc = ET_EXIT_OK;
done:
    if (rc != ET_EXIT_OK) {
        et_err("restore: %s is not a usable evertoken backup bundle: %s", path, err);
        et_bundle_free(b);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rc;
}
