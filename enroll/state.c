/*
 * state.c — the helper's own SQLite database: one row per profile (schedule,
 * last/next check, attempts, last error, current certificate, pending SCEP
 * transaction, hook result) and an event history. The file is 0600 in a 0700
 * directory; nothing secret is stored in it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "enr_int.h"
#include "et_enrstate.h"

struct enr_state {
    sqlite3 *db;
    char *dir;
    int lockfd;
    int holdfd; /* enroll.inuse, shared, while the state is open */
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE IF NOT EXISTS profile_state("
    " profile TEXT PRIMARY KEY, first_start INTEGER, enroll_time INTEGER, renew_time INTEGER,"
    " next_enroll INTEGER, next_renew INTEGER, last_check INTEGER, last_result TEXT,"
    " attempts INTEGER, last_error TEXT, last_error_time INTEGER, retry_at INTEGER,"
    " retry_kind TEXT, net_notified INTEGER, cert_serial TEXT, cert_subject TEXT,"
    " cert_not_before INTEGER, cert_not_after INTEGER, pending_txid TEXT, pending_kind TEXT,"
    " pending_since INTEGER, renewed_serial TEXT, warned_days INTEGER, hook_status TEXT,"
    " hook_exit INTEGER, hook_time INTEGER, hook_output TEXT, state TEXT, rollover TEXT);"
    "CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, time INTEGER, profile TEXT,"
    " kind TEXT, detail TEXT);"
    "INSERT OR IGNORE INTO meta VALUES('schema', '1');";

static enr_rc
sq_fail(enr_state *st, const char *what)
{
    enr_err("state database %s/enroll.db: %s: %s", st->dir, what, sqlite3_errmsg(st->db));
    return ENR_E_FAIL;
}

/* The one rule for where the state lives, shared with the CLI's backup
 * (common/et_enrstate.h). */
static char *
default_dir(void)
{
    char err[256] = "";
    char *d = et_enr_state_dir(err, sizeof(err));

    if (d == NULL)
        enr_err("%s", err[0] ? err : "out of memory");
    return d;
}

enr_rc
enr_state_open(const char *dir, enr_state **out)
{
    enr_state *st;
    char *path = NULL;
    char *msg = NULL, errbuf[512] = "";
    int fd;

    *out = NULL;
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return ENR_E_FAIL;
    st->lockfd = -1;
    st->holdfd = -1;
    st->dir = dir ? enr_strdup(dir) : default_dir();
    if (st->dir == NULL || enr_mkdir_private(st->dir) != 0)
        goto fail;
    /* Held for as long as the state is open: a restore refuses to replace
     * the state under a running helper (common/et_enrstate.h). */
    st->holdfd = et_enr_state_hold(st->dir, errbuf, sizeof(errbuf));
    if (st->holdfd < 0) {
        enr_err("%s", errbuf);
        goto fail;
    }
    path = enr_aprintf("%s/enroll.db", st->dir);
    if (path == NULL)
        goto fail;
    /* Create it 0600 before SQLite opens it (SQLite would use the umask). */
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        enr_err("cannot open the state database %s: %s", path, strerror(errno));
        goto fail;
    }
    if (fchmod(fd, 0600) != 0) {
        enr_err("cannot make %s private (0600): %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    close(fd);
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        enr_err("cannot open the state database %s: %s", path,
                st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(st->db, 10000);
    if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(st->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        enr_err("state database %s: %s (not a state database, or damaged)", path,
                msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        goto fail;
    }
    /* Databases from before the rollover column: add it (an error only
     * means it exists already). */
    if (sqlite3_exec(st->db, "ALTER TABLE profile_state ADD COLUMN rollover TEXT;", NULL, NULL,
                     &msg) != SQLITE_OK) {
        if (msg == NULL || strstr(msg, "duplicate column") == NULL)
            enr_warn("state database %s: cannot add the rollover column: %s", path,
                     msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        msg = NULL;
    }
    free(path);
    *out = st;
    return ENR_OK;
fail:
    free(path);
    enr_state_close(st);
    return ENR_E_FAIL;
}

void
enr_state_close(enr_state *st)
{
    if (st == NULL)
        return;
    if (st->db != NULL)
        sqlite3_close(st->db);
    if (st->lockfd >= 0)
        close(st->lockfd);
    if (st->holdfd >= 0)
        close(st->holdfd);
    free(st->dir);
    free(st);
}

/* The SQLite handle, for the monitoring tables (metrics.c, watch.c). */
sqlite3 *
enr_state_db(enr_state *st)
{
    return st->db;
}

const char *
enr_state_dir(const enr_state *st)
{
    return st->dir;
}

void
enr_pstate_set(char **field, const char *value)
{
    char *old = *field;

    /* VALUE may be the field's own string: copy before freeing. */
    *field = value ? strdup(value) : NULL;
    free(old);
}

void
enr_pstate_clear(enr_pstate *ps)
{
    free(ps->profile);
    free(ps->last_result);
    free(ps->last_error);
    free(ps->retry_kind);
    free(ps->cert_serial);
    free(ps->cert_subject);
    free(ps->pending_txid);
    free(ps->pending_kind);
    free(ps->renewed_serial);
    free(ps->hook_status);
    free(ps->hook_output);
    free(ps->state);
    free(ps->rollover);
    memset(ps, 0, sizeof(*ps));
}

/* Column order shared by get and put. */
#define COLS                                                                                       \
    "profile, first_start, enroll_time, renew_time, next_enroll, next_renew, last_check,"          \
    " last_result, attempts, last_error, last_error_time, retry_at, retry_kind, net_notified,"     \
    " cert_serial, cert_subject, cert_not_before, cert_not_after, pending_txid, pending_kind,"     \
    " pending_since, renewed_serial, warned_days, hook_status, hook_exit, hook_time,"              \
    " hook_output, state, rollover"

static char *
col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? strdup((const char *)t) : NULL;
}

enr_rc
enr_state_get(enr_state *st, const char *profile, enr_pstate *ps, int *found)
{
    sqlite3_stmt *s = NULL;
    int r, i = 1;

    memset(ps, 0, sizeof(*ps));
    *found = 0;
    ps->profile = strdup(profile);
    if (sqlite3_prepare_v2(st->db, "SELECT " COLS " FROM profile_state WHERE profile = ?", -1, &s,
                           NULL) != SQLITE_OK)
        return sq_fail(st, "read");
    sqlite3_bind_text(s, 1, profile, -1, SQLITE_STATIC);
    r = sqlite3_step(s);
    if (r == SQLITE_ROW) {
        *found = 1;
        ps->first_start = sqlite3_column_int64(s, i++);
        ps->enroll_time = sqlite3_column_int64(s, i++);
        ps->renew_time = sqlite3_column_int64(s, i++);
        ps->next_enroll = sqlite3_column_int64(s, i++);
        ps->next_renew = sqlite3_column_int64(s, i++);
        ps->last_check = sqlite3_column_int64(s, i++);
        ps->last_result = col_text(s, i++);
        ps->attempts = sqlite3_column_int64(s, i++);
        ps->last_error = col_text(s, i++);
        ps->last_error_time = sqlite3_column_int64(s, i++);
        ps->retry_at = sqlite3_column_int64(s, i++);
        ps->retry_kind = col_text(s, i++);
        ps->net_notified = sqlite3_column_int(s, i++);
        ps->cert_serial = col_text(s, i++);
        ps->cert_subject = col_text(s, i++);
        ps->cert_not_before = sqlite3_column_int64(s, i++);
        ps->cert_not_after = sqlite3_column_int64(s, i++);
        ps->pending_txid = col_text(s, i++);
        ps->pending_kind = col_text(s, i++);
        ps->pending_since = sqlite3_column_int64(s, i++);
        ps->renewed_serial = col_text(s, i++);
        ps->warned_days = sqlite3_column_int(s, i++);
        ps->hook_status = col_text(s, i++);
        ps->hook_exit = sqlite3_column_int(s, i++);
        ps->hook_time = sqlite3_column_int64(s, i++);
        ps->hook_output = col_text(s, i++);
        ps->state = col_text(s, i++);
        ps->rollover = col_text(s, i++);
    } else if (r != SQLITE_DONE) {
        sqlite3_finalize(s);
        return sq_fail(st, "read");
    }
    sqlite3_finalize(s);
    return ENR_OK;
}

enr_rc
enr_state_put(enr_state *st, const enr_pstate *ps)
{
    sqlite3_stmt *s = NULL;
    int i = 1, r;

    if (sqlite3_prepare_v2(st->db,
                           "INSERT OR REPLACE INTO profile_state (" COLS ") VALUES (?,?,?,?,?,?,?,"
                           "?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &s, NULL) != SQLITE_OK)
        return sq_fail(st, "write");
    sqlite3_bind_text(s, i++, ps->profile, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, i++, ps->first_start);
    sqlite3_bind_int64(s, i++, ps->enroll_time);
    sqlite3_bind_int64(s, i++, ps->renew_time);
    sqlite3_bind_int64(s, i++, ps->next_enroll);
    sqlite3_bind_int64(s, i++, ps->next_renew);
    sqlite3_bind_int64(s, i++, ps->last_check);
    sqlite3_bind_text(s, i++, ps->last_result, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, i++, ps->attempts);
    sqlite3_bind_text(s, i++, ps->last_error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, i++, ps->last_error_time);
    sqlite3_bind_int64(s, i++, ps->retry_at);
    sqlite3_bind_text(s, i++, ps->retry_kind, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, i++, ps->net_notified);
    sqlite3_bind_text(s, i++, ps->cert_serial, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, i++, ps->cert_subject, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, i++, ps->cert_not_before);
    sqlite3_bind_int64(s, i++, ps->cert_not_after);
    sqlite3_bind_text(s, i++, ps->pending_txid, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, i++, ps->pending_kind, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, i++, ps->pending_since);
    sqlite3_bind_text(s, i++, ps->renewed_serial, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, i++, ps->warned_days);
    sqlite3_bind_text(s, i++, ps->hook_status, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, i++, ps->hook_exit);
    sqlite3_bind_int64(s, i++, ps->hook_time);
    sqlite3_bind_text(s, i++, ps->hook_output, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, i++, ps->state, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, i++, ps->rollover, -1, SQLITE_STATIC);
    r = sqlite3_step(s);
    sqlite3_finalize(s);
    if (r != SQLITE_DONE)
        return sq_fail(st, "write");
    return ENR_OK;
}

enr_rc
enr_state_event(enr_state *st, const char *profile, const char *kind, const char *detail)
{
    sqlite3_stmt *s = NULL;
    int r;

    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO events(time, profile, kind, detail) VALUES (?,?,?,?)", -1,
                           &s, NULL) != SQLITE_OK)
        return sq_fail(st, "write event");
    sqlite3_bind_int64(s, 1, (sqlite3_int64)enr_now());
    sqlite3_bind_text(s, 2, profile, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, detail, -1, SQLITE_STATIC);
    r = sqlite3_step(s);
    sqlite3_finalize(s);
    if (r != SQLITE_DONE)
        return sq_fail(st, "write event");
    if (sqlite3_prepare_v2(st->db,
                           "DELETE FROM events WHERE profile = ?1 AND id <= (SELECT id FROM events"
                           " WHERE profile = ?1 ORDER BY id DESC LIMIT 1 OFFSET 1000)",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, profile, -1, SQLITE_STATIC);
        sqlite3_step(s);
        sqlite3_finalize(s);
    }
    return ENR_OK;
}

enr_rc
enr_state_print_events(enr_state *st, const char *profile, FILE *out)
{
    sqlite3_stmt *s = NULL;
    char tb[32];

    if (sqlite3_prepare_v2(st->db,
                           "SELECT time, profile, kind, detail FROM events WHERE ?1 IS NULL OR"
                           " profile = ?1 ORDER BY id",
                           -1, &s, NULL) != SQLITE_OK)
        return sq_fail(st, "read events");
    sqlite3_bind_text(s, 1, profile, -1, SQLITE_STATIC);
    while (sqlite3_step(s) == SQLITE_ROW) {
        const unsigned char *d = sqlite3_column_text(s, 3);
        fprintf(out, "%s %s %s %s\n", enr_fmt_time((time_t)sqlite3_column_int64(s, 0), tb, 32),
                sqlite3_column_text(s, 1), sqlite3_column_text(s, 2), d ? (const char *)d : "");
    }
    sqlite3_finalize(s);
    return ENR_OK;
}

int
enr_state_lock(enr_state *st)
{
    char *p;

    if (st->lockfd < 0) {
        p = enr_aprintf("%s/enroll.lock", st->dir);
        if (p == NULL)
            return -1;
        st->lockfd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        free(p);
        if (st->lockfd < 0) {
            enr_err("cannot open the lock file in %s: %s", st->dir, strerror(errno));
            return -1;
        }
    }
    while (flock(st->lockfd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            enr_err("cannot lock %s/enroll.lock: %s", st->dir, strerror(errno));
            return -1;
        }
    }
    return 0;
}

void
enr_state_unlock(enr_state *st)
{
    if (st->lockfd >= 0)
        flock(st->lockfd, LOCK_UN);
}
