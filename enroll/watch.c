/*
 * watch.c — monitored-only certificates (docs/monitoring.md "Watch
 * entries"): certificates the helper does not renew, from a token (every
 * certificate the URI selects, imported ones included), PEM/DER files or
 * directories, and TLS endpoints. Each is checked once a day (and by
 * `evertoken-enroll watch check`) for expiry with the profile thresholds and
 * notices, chain validity against the entry's anchors, revocation (OCSP/CRL
 * as for profiles), weak keys and signatures, and for endpoints whether the
 * served certificate is the expected one. Results are rows of the state
 * database's watch_state table, which status, --json and the metrics read.
 */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "mon.h"

static const char watch_schema[] =
    "CREATE TABLE IF NOT EXISTS watch_state(id TEXT PRIMARY KEY, entry TEXT, subject TEXT,"
    " serial TEXT, not_before INTEGER, not_after INTEGER, state TEXT, detail TEXT,"
    " level INTEGER, last_check INTEGER, warned_days INTEGER);";

static char *
col(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);

    return t ? enr_strdup((const char *)t) : NULL;
}

enr_rc
enr_wstate_list(enr_state *st, enr_wstate **out, size_t *n)
{
    sqlite3 *db = enr_state_db(st);
    sqlite3_stmt *s = NULL;
    enr_wstate *v = NULL;
    size_t k = 0;

    *out = NULL;
    *n = 0;
    if (sqlite3_exec(db, watch_schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT id, entry, subject, serial, not_before, not_after, state,"
                           " detail, level, last_check, warned_days FROM watch_state ORDER BY id",
                           -1, &s, NULL) != SQLITE_OK) {
        enr_warn("state database: cannot read the watched certificates: %s", sqlite3_errmsg(db));
        return ENR_E_FAIL;
    }
    while (sqlite3_step(s) == SQLITE_ROW) {
        enr_wstate *nv = realloc(v, (k + 1) * sizeof(*nv));
        if (nv == NULL)
            break;
        v = nv;
        enr_wstate *w = &v[k++];
        memset(w, 0, sizeof(*w));
        w->id = col(s, 0);
        w->entry = col(s, 1);
        w->subject = col(s, 2);
        w->serial = col(s, 3);
        w->not_before = sqlite3_column_int64(s, 4);
        w->not_after = sqlite3_column_int64(s, 5);
        w->state = col(s, 6);
        w->detail = col(s, 7);
        w->level = sqlite3_column_int(s, 8);
        w->last_check = sqlite3_column_int64(s, 9);
        w->warned_days = sqlite3_column_int(s, 10);
    }
    sqlite3_finalize(s);
    *out = v;
    *n = k;
    return ENR_OK;
}

void
enr_wstate_free(enr_wstate *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].entry);
        free(v[i].id);
        free(v[i].subject);
        free(v[i].serial);
        free(v[i].state);
        free(v[i].detail);
    }
    free(v);
}
