/*
 * enrstate.c — the enrollment helper's state directory as files: where it
 * is, a consistent snapshot of it, and putting a snapshot back in place
 * without ever leaving a half-written state (et_enrstate.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "et_enrstate.h"

#define DB_NAME    "enroll.db"
#define LOCK_NAME  "enroll.lock"
#define INUSE_NAME "enroll.inuse"

static int fail(char *err, size_t errn, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errn, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errn > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errn, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static char *
cat_path(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);

    if (p != NULL) {
        memcpy(p, a, la);
        p[la] = '/';
        memcpy(p + la + 1, b, lb + 1);
    }
    return p;
}

char *
et_enr_state_dir(char *err, size_t errn)
{
    const char *e = getenv("EVERTOKEN_ENROLL_STATE_DIR");

    if (e != NULL && *e != '\0')
        return strdup(e);
    e = getenv("XDG_STATE_HOME");
    if (e != NULL && *e == '/')
        return cat_path(e, "evertoken");
    e = getenv("HOME");
    if (e == NULL || *e != '/') {
        fail(err, errn, "cannot find the state directory: neither XDG_STATE_HOME nor HOME is set");
        return NULL;
    }
    return cat_path(e, ".local/state/evertoken");
}

int
et_enr_state_name_ok(const char *name)
{
    const char *s = name;

    if (name == NULL || *name == '\0' || *name == '/')
        return 0;
    while (*s != '\0') {
        size_t n = strcspn(s, "/");
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        s += n;
        if (*s == '/')
            s++;
        else
            break;
        if (*s == '\0')
            return 0; /* trailing slash */
    }
    return 1;
}

void
et_sfiles_free(et_sfiles *f)
{
    for (size_t i = 0; f != NULL && i < f->n; i++) {
        free(f->v[i].name);
        free(f->v[i].data);
    }
    if (f != NULL) {
        free(f->v);
        f->v = NULL;
        f->n = 0;
    }
}

static int
push(et_sfiles *f, char *name, unsigned char *data, size_t len)
{
    et_sfile *v = realloc(f->v, (f->n + 1) * sizeof(*v));

    if (v == NULL)
        return -1;
    f->v = v;
    v[f->n].name = name;
    v[f->n].data = data;
    v[f->n].len = len;
    f->n++;
    return 0;
}

/* ---- The state database ---------------------------------------------- */

static const char latest_sql[] =
    "SELECT max(coalesce(m, 0)) FROM (SELECT max(last_check) AS m FROM profile_state"
    " UNION ALL SELECT max(enroll_time) FROM profile_state"
    " UNION ALL SELECT max(renew_time) FROM profile_state"
    " UNION ALL SELECT max(time) FROM events)";

/* Open the state database PATH and check that it is one. */
static sqlite3 *
db_open(const char *path, int flags, char *err, size_t errn)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int ok = 0;

    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        fail(err, errn, "cannot open the state database %s: %s", path,
             db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN"
                           " ('profile_state', 'events')",
                           -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        ok = sqlite3_column_int(s, 0) == 2;
    if (s == NULL || !ok)
        fail(err, errn, "%s is not a state database of evertoken-enroll%s%s", path,
             s == NULL ? ": " : "", s == NULL ? sqlite3_errmsg(db) : "");
    sqlite3_finalize(s);
    if (!ok) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static int
db_latest(sqlite3 *db, long long *latest)
{
    sqlite3_stmt *s = NULL;
    int rc = -1;

    if (sqlite3_prepare_v2(db, latest_sql, -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        *latest = sqlite3_column_int64(s, 0);
        rc = 0;
    }
    sqlite3_finalize(s);
    return rc;
}

int
et_enr_state_latest(const char *dir, long long *latest, char *err, size_t errn)
{
    char *path = cat_path(dir, DB_NAME);
    sqlite3 *db;
    int rc = -1;

    *latest = 0;
    if (path == NULL)
        return fail(err, errn, "out of memory");
    if (access(path, F_OK) != 0) {
        free(path);
        return 0;
    }
    db = db_open(path, SQLITE_OPEN_READONLY, err, errn);
    if (db != NULL) {
        rc = db_latest(db, latest);
        if (rc != 0)
            fail(err, errn, "cannot read the state database %s: %s", path, sqlite3_errmsg(db));
    }
    sqlite3_close(db);
    free(path);
    return rc;
}

/* A consistent copy of DIR/enroll.db (SQLite's online backup API into
 * memory, then its bytes). */
static int
db_snapshot(const char *dir, et_sfiles *out, long long *latest, char *err, size_t errn)
{
    char *path = cat_path(dir, DB_NAME);
    sqlite3 *src = NULL, *mem = NULL;
    sqlite3_backup *b;
    sqlite3_int64 size = 0;
    unsigned char *ser = NULL, *copy = NULL;
    char *name = strdup(DB_NAME);
    int rc = -1;

    if (path == NULL || name == NULL) {
        fail(err, errn, "out of memory");
        goto done;
    }
    if (access(path, F_OK) != 0) {
        fail(err, errn, "%s holds no helper state (no %s)", dir, DB_NAME);
        goto done;
    }
    src = db_open(path, SQLITE_OPEN_READONLY, err, errn);
    if (src == NULL)
        goto done;
    if (sqlite3_open(":memory:", &mem) != SQLITE_OK) {
        fail(err, errn, "out of memory");
        goto done;
    }
    b = sqlite3_backup_init(mem, "main", src, "main");
    if (b == NULL || sqlite3_backup_step(b, -1) != SQLITE_DONE) {
        fail(err, errn, "cannot copy the state database %s: %s", path, sqlite3_errmsg(mem));
        sqlite3_backup_finish(b);
        goto done;
    }
    sqlite3_backup_finish(b);
    if (db_latest(mem, latest) != 0) {
        fail(err, errn, "cannot read the state database %s: %s", path, sqlite3_errmsg(mem));
        goto done;
    }
    ser = sqlite3_serialize(mem, "main", &size, 0);
    if (ser == NULL || size <= 0 || (copy = malloc((size_t)size)) == NULL) {
        fail(err, errn, "cannot copy the state database %s", path);
        goto done;
    }
    memcpy(copy, ser, (size_t)size);
    if (push(out, name, copy, (size_t)size) != 0) {
        fail(err, errn, "out of memory");
        free(copy);
        goto done;
    }
    name = NULL;
    rc = 0;
done:
    sqlite3_free(ser);
    sqlite3_close(mem);
    sqlite3_close(src);
    free(name);
    free(path);
    return rc;
}

/* ---- Snapshot of the other files ------------------------------------- */

static int
skipped(const char *rel)
{
    return !strcmp(rel, DB_NAME) || !strcmp(rel, LOCK_NAME) || !strcmp(rel, INUSE_NAME) ||
           !strcmp(rel, DB_NAME "-wal") || !strcmp(rel, DB_NAME "-shm") ||
           !strcmp(rel, DB_NAME "-journal");
}

static int
read_all(int fd, unsigned char **data, size_t *len)
{
    size_t cap = 0, n = 0;
    unsigned char *d = NULL;

    for (;;) {
        if (n == cap) {
            unsigned char *nd = realloc(d, cap = cap ? cap * 2 : 4096);
            if (nd == NULL) {
                free(d);
                return -1;
            }
            d = nd;
        }
        ssize_t r = read(fd, d + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(d);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > ET_ENRSTATE_MAX_BYTES) {
            free(d);
            errno = EFBIG;
            return -1;
        }
    }
    *data = d;
    *len = n;
    return 0;
}

typedef struct walk {
    et_sfiles *out;
    size_t bytes;
    char *err;
    size_t errn;
} walk;

static int
walk_dir(walk *w, const char *root, const char *rel)
{
    char *path = rel[0] ? cat_path(root, rel) : strdup(root);
    DIR *d = path ? opendir(path) : NULL;
    struct dirent *de;
    int rc = 0;

    if (d == NULL) {
        rc = fail(w->err, w->errn, "cannot read %s: %s", path ? path : root, strerror(errno));
        free(path);
        return rc;
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        char *r, *full;
        struct stat sb;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        r = rel[0] ? cat_path(rel, de->d_name) : strdup(de->d_name);
        full = r ? cat_path(root, r) : NULL;
        if (full == NULL) {
            rc = fail(w->err, w->errn, "out of memory");
        } else if (lstat(full, &sb) != 0) {
            rc = fail(w->err, w->errn, "cannot read %s: %s", full, strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            rc = walk_dir(w, root, r);
        } else if (S_ISREG(sb.st_mode) && !skipped(r)) {
            int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            unsigned char *data = NULL;
            size_t len = 0;
            if (fd < 0 || read_all(fd, &data, &len) != 0) {
                rc = fail(w->err, w->errn, "cannot read %s: %s", full, strerror(errno));
            } else if ((w->bytes += len) > ET_ENRSTATE_MAX_BYTES ||
                       w->out->n >= ET_ENRSTATE_MAX_FILES) {
                rc =
                    fail(w->err, w->errn, "the state directory %s is too large for a backup", root);
                free(data);
            } else if (push(w->out, r, data, len) != 0) {
                rc = fail(w->err, w->errn, "out of memory");
                free(data);
            } else {
                r = NULL;
            }
            if (fd >= 0)
                close(fd);
        }
        free(r);
        free(full);
    }
    closedir(d);
    free(path);
    return rc;
}

int
et_enr_state_snapshot(const char *dir, et_sfiles *out, long long *latest, char *err, size_t errn)
{
    walk w = {out, 0, err, errn};

    out->v = NULL;
    out->n = 0;
    *latest = 0;
    if (db_snapshot(dir, out, latest, err, errn) != 0 || walk_dir(&w, dir, "") != 0) {
        et_sfiles_free(out);
        return -1;
    }
    return 0;
}

/* ---- Putting a snapshot in place ------------------------------------- */

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

void
et_enr_state_discard(const char *stage)
{
    if (stage != NULL)
        nftw(stage, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* mkdir -p of PATH's components (0700). */
static int
mkdirs(const char *path, int last)
{
    char *p = strdup(path);
    int rc = 0;

    if (p == NULL)
        return -1;
    for (char *s = p + 1; *s != '\0' && rc == 0; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            rc = -1;
        *s = '/';
    }
    if (rc == 0 && last && mkdir(p, 0700) != 0 && errno != EEXIST)
        rc = -1;
    free(p);
    return rc;
}

static int
write_one(const char *path, const et_sfile *f)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    size_t off = 0;

    if (fd < 0)
        return -1;
    while (off < f->len) {
        ssize_t w = write(fd, f->data + off, f->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        close(fd);
        return -1;
    }
    return close(fd);
}

int
et_enr_state_stage(const char *dir, const et_sfiles *files, char **stage, long long *latest,
                   char *err, size_t errn)
{
    size_t dl = strlen(dir);
    char *tmpl = malloc(dl + sizeof(".restore-XXXXXX"));
    int have_db = 0;
    sqlite3 *db;

    *stage = NULL;
    *latest = 0;
    if (tmpl == NULL)
        return fail(err, errn, "out of memory");
    memcpy(tmpl, dir, dl);
    while (dl > 1 && tmpl[dl - 1] == '/')
        dl--;
    memcpy(tmpl + dl, ".restore-XXXXXX", sizeof(".restore-XXXXXX"));
    if (mkdirs(tmpl, 0) != 0 || mkdtemp(tmpl) == NULL) {
        fail(err, errn, "cannot create a directory beside %s: %s", dir, strerror(errno));
        free(tmpl);
        return -1;
    }
    for (size_t i = 0; i < files->n; i++) {
        const et_sfile *f = &files->v[i];
        char *p;
        if (!et_enr_state_name_ok(f->name) || (skipped(f->name) && strcmp(f->name, DB_NAME))) {
            fail(err, errn, "the helper state holds an unacceptable file name");
            goto fail;
        }
        have_db |= !strcmp(f->name, DB_NAME);
        p = cat_path(tmpl, f->name);
        if (p == NULL || mkdirs(p, 0) != 0 || write_one(p, f) != 0) {
            if (p != NULL && (errno == EEXIST || errno == ENOTDIR || errno == EISDIR))
                fail(err, errn,
                     "the helper state holds %s twice, or as a file and a directory (damaged)",
                     f->name);
            else
                fail(err, errn, "cannot write %s: %s", p ? p : f->name, strerror(errno));
            free(p);
            goto fail;
        }
        free(p);
    }
    if (!have_db) {
        fail(err, errn, "the helper state has no state database (%s)", DB_NAME);
        goto fail;
    }
    {
        char *p = cat_path(tmpl, DB_NAME);
        db = p ? db_open(p, SQLITE_OPEN_READWRITE, err, errn) : NULL;
        if (db != NULL) {
            sqlite3_stmt *s = NULL;
            const unsigned char *t = NULL;
            if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &s, NULL) == SQLITE_OK &&
                sqlite3_step(s) == SQLITE_ROW)
                t = sqlite3_column_text(s, 0);
            if (t == NULL || strcmp((const char *)t, "ok") != 0 || db_latest(db, latest) != 0) {
                fail(err, errn, "the helper state's database is damaged: %s",
                     t ? (const char *)t : sqlite3_errmsg(db));
                sqlite3_finalize(s);
                sqlite3_close(db);
                db = NULL;
            } else {
                sqlite3_finalize(s);
            }
        }
        free(p);
        if (db == NULL)
            goto fail;
        sqlite3_close(db);
    }
    *stage = tmpl;
    return 0;
fail:
    et_enr_state_discard(tmpl);
    free(tmpl);
    return -1;
}

/* Where the file system has no RENAME_EXCHANGE: the old state moves aside,
 * the new one takes its name (the old one comes back if that fails). */
static int
swap_by_rename(const char *dir, const char *stage, char *err, size_t errn)
{
    size_t n = strlen(stage) + sizeof(".old");
    char *old = malloc(n);
    int rc = -1;

    if (old == NULL)
        return fail(err, errn, "out of memory");
    snprintf(old, n, "%s.old", stage);
    if (rename(dir, old) != 0) {
        fail(err, errn, "cannot move %s aside: %s", dir, strerror(errno));
    } else if (rename(stage, dir) != 0) {
        fail(err, errn, "cannot move %s to %s: %s", stage, dir, strerror(errno));
        if (rename(old, dir) != 0)
            fail(err, errn, "cannot move %s to %s (the old state is in %s): %s", stage, dir, old,
                 strerror(errno));
    } else {
        et_enr_state_discard(old);
        rc = 0;
    }
    free(old);
    return rc;
}

int
et_enr_state_commit(const char *dir, const char *stage, char *err, size_t errn)
{
    if (renameat2(AT_FDCWD, stage, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
        et_enr_state_discard(stage); /* now the old state */
        return 0;
    }
    if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP)
        return swap_by_rename(dir, stage, err, errn); /* no atomic exchange here */
    return fail(err, errn, "cannot put the restored state in place of %s: %s", dir,
                strerror(errno));
}

/* ---- The helper's locks ---------------------------------------------- */

/* DIR/NAME opened for flock(): created 0600 when absent; read-only when it
 * cannot be written (flock works on either). */
static int
open_lock(const char *dir, const char *name)
{
    char *p = cat_path(dir, name);
    int fd;

    if (p == NULL) {
        errno = ENOMEM;
        return -1;
    }
    fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && (errno == EACCES || errno == EROFS))
        fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(p);
    return fd;
}

int
et_enr_state_resolve(const char *dir, char **real, int *created, char *err, size_t errn)
{
    struct stat sb;

    *real = NULL;
    *created = 0;
    if (lstat(dir, &sb) != 0) {
        if (errno != ENOENT)
            return fail(err, errn, "cannot read %s: %s", dir, strerror(errno));
        if (mkdirs(dir, 1) != 0)
            return fail(err, errn, "cannot create the state directory %s: %s", dir,
                        strerror(errno));
        *created = 1;
        *real = strdup(dir);
    } else if (S_ISLNK(sb.st_mode)) {
        *real = realpath(dir, NULL);
        if (*real == NULL)
            return fail(err, errn, "%s is a symbolic link that cannot be followed: %s", dir,
                        strerror(errno));
        if (stat(*real, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            fail(err, errn, "%s is a symbolic link to %s, which is not a directory", dir, *real);
            free(*real);
            *real = NULL;
            return -1;
        }
    } else if (!S_ISDIR(sb.st_mode)) {
        return fail(err, errn, "%s is not a directory", dir);
    } else {
        *real = strdup(dir);
    }
    return *real == NULL ? fail(err, errn, "out of memory") : 0;
}

int
et_enr_state_lock_restore(const char *dir, int fds[2], char *err, size_t errn)
{
    fds[0] = open_lock(dir, LOCK_NAME);
    fds[1] = fds[0] < 0 ? -1 : open_lock(dir, INUSE_NAME);
    if (fds[0] < 0 || fds[1] < 0) {
        fail(err, errn, "cannot open the lock files in %s: %s", dir, strerror(errno));
    } else if (flock(fds[0], LOCK_EX | LOCK_NB) != 0) {
        fail(err, errn,
             "evertoken-enroll is running a check on %s (it holds %s); let it finish or stop the "
             "service (systemctl --user stop evertoken-enroll) and try again",
             dir, LOCK_NAME);
    } else if (flock(fds[1], LOCK_EX | LOCK_NB) != 0) {
        fail(err, errn,
             "the enrollment service (evertoken-enroll run) or another evertoken-enroll command "
             "has the state in %s open: stop it first (systemctl --user stop evertoken-enroll) "
             "and try again",
             dir);
    } else {
        return 0;
    }
    et_enr_state_unlock(fds);
    return -1;
}

int
et_enr_state_lock_wait(const char *dir, int timeout, void (*waiting)(const char *, int), char *err,
                       size_t errn)
{
    int fd = open_lock(dir, LOCK_NAME);
    struct timespec pause = {0, 100 * 1000 * 1000};

    if (fd < 0)
        return fail(err, errn, "cannot open %s/%s: %s", dir, LOCK_NAME, strerror(errno));
    for (int i = 0; flock(fd, LOCK_EX | LOCK_NB) != 0; i++) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            fail(err, errn, "cannot lock %s/%s: %s", dir, LOCK_NAME, strerror(errno));
            close(fd);
            return -1;
        }
        if (i == 0 && waiting != NULL)
            waiting(dir, timeout);
        if (i >= timeout * 10) {
            fail(err, errn,
                 "evertoken-enroll is still running a check on %s (it holds %s) after %d s; "
                 "try again later",
                 dir, LOCK_NAME, timeout);
            close(fd);
            return -1;
        }
        nanosleep(&pause, NULL);
    }
    return fd;
}

void
et_enr_state_unlock(int fds[2])
{
    for (int i = 0; i < 2; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        fds[i] = -1;
    }
}

int
et_enr_state_hold(const char *dir, char *err, size_t errn)
{
    char *p = cat_path(dir, INUSE_NAME);
    struct stat a, b;
    int fd = -1, r;

    if (p == NULL)
        return fail(err, errn, "out of memory");
    /* A restore exchanges the directory while holding the old file: once
     * we have the lock, the name must still lead to the file locked. */
    for (;;) {
        fd = open_lock(dir, INUSE_NAME);
        if (fd < 0) {
            fail(err, errn, "cannot open %s: %s", p, strerror(errno));
            break;
        }
        while ((r = flock(fd, LOCK_SH)) != 0 && errno == EINTR)
            ;
        if (r != 0 || fstat(fd, &a) != 0 || (stat(p, &b) != 0 && errno != ENOENT)) {
            fail(err, errn, "cannot lock %s: %s", p, strerror(errno));
            close(fd);
            fd = -1;
            break;
        }
        if (stat(p, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
            break;
        close(fd); /* replaced meanwhile: lock the new one */
    }
    free(p);
    return fd;
}
