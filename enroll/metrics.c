/*
 * metrics.c — check counters in the state database and every metric in the
 * Prometheus text exposition format (docs/monitoring.md "Metrics"), for
 * `status --format openmetrics` and the metrics_file that node_exporter's
 * textfile collector reads. The file is written to a temporary name and
 * renamed, so a scrape never sees half of it; a failed check changes only
 * the failure counters and timestamps, the certificate values stay.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "et_escape.h"
#include "mon.h"

static const char counters_schema[] =
    "CREATE TABLE IF NOT EXISTS monitor_counters(name TEXT PRIMARY KEY, checks INTEGER,"
    " failures INTEGER, consecutive INTEGER, last_check INTEGER, last_success INTEGER);";

void
enr_monitor_record(enr_state *st, const char *name, enr_rc rc, time_t now)
{
    sqlite3 *db = enr_state_db(st);
    sqlite3_stmt *s = NULL;
    int ok = rc == ENR_OK || rc == ENR_E_PENDING;

    if (sqlite3_exec(db, counters_schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO monitor_counters VALUES(?1, 1, ?2, ?2, ?3, ?4)"
                           " ON CONFLICT(name) DO UPDATE SET checks = checks + 1,"
                           " failures = failures + ?2,"
                           " consecutive = CASE WHEN ?2 THEN consecutive + 1 ELSE 0 END,"
                           " last_check = ?3,"
                           " last_success = CASE WHEN ?2 THEN last_success ELSE ?3 END",
                           -1, &s, NULL) != SQLITE_OK) {
        enr_warn("state database: cannot count the check of %s: %s", name, sqlite3_errmsg(db));
        return;
    }
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, !ok);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)now);
    if (ok)
        sqlite3_bind_int64(s, 4, (sqlite3_int64)now);
    else
        sqlite3_bind_null(s, 4);
    if (sqlite3_step(s) != SQLITE_DONE)
        enr_warn("state database: cannot count the check of %s: %s", name, sqlite3_errmsg(db));
    sqlite3_finalize(s);
}

void
enr_monitor_counters(enr_state *st, const char *name, enr_counters *c)
{
    sqlite3 *db = enr_state_db(st);
    sqlite3_stmt *s = NULL;

    memset(c, 0, sizeof(*c));
    if (sqlite3_exec(db, counters_schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT checks, failures, consecutive, last_check, last_success"
                           " FROM monitor_counters WHERE name = ?1",
                           -1, &s, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) {
        c->checks = sqlite3_column_int64(s, 0);
        c->failures = sqlite3_column_int64(s, 1);
        c->consecutive = sqlite3_column_int64(s, 2);
        c->last_check = sqlite3_column_int64(s, 3);
        c->last_success = sqlite3_column_int64(s, 4);
    }
    sqlite3_finalize(s);
}

/* ---- the text format ---------------------------------------------------- */

/* A label value: backslash, double quote and newline escaped. */
static void
label(FILE *out, const char *k, const char *v, int first)
{
    fprintf(out, "%s%s=\"", first ? "" : ",", k);
    for (const char *c = v ? v : ""; *c; c++) {
        if (*c == '\\' || *c == '"')
            fprintf(out, "\\%c", *c);
        else if (*c == '\n')
            fputs("\\n", out);
        else
            fputc(*c, out);
    }
    fputc('"', out);
}

/* The metric families, in order; each sample is printed under its header. */
enum {
    M_NOT_AFTER,
    M_DAYS_LEFT,
    M_INFO,
    M_STATE,
    M_LEVEL,
    M_LAST_CHECK,
    M_LAST_SUCCESS,
    M_CONSEC,
    M_CHECKS,
    M_FAILURES,
    M_WINDOW,
    M_ARI_START,
    M_ARI_END,
    M_ARI_RENEW,
    M_TOK_PRESENT,
    M_TOK_CACHE,
    M_TOK_LOCKED,
    M_TOK_LOW,
    M_COUNT
};
static const struct family {
    const char *name, *type, *help;
} fam[M_COUNT] = {
    {"evertoken_enroll_certificate_not_after_seconds", "gauge",
     "End of the certificate's validity (Unix time)."},
    {"evertoken_enroll_certificate_remaining_seconds", "gauge",
     "Seconds from the metrics' timestamp to the certificate's end (negative: expired)."},
    {"evertoken_enroll_certificate_info", "gauge",
     "The current certificate's serial and subject (value 1)."},
    {"evertoken_enroll_state_info", "gauge",
     "The credential's or watched certificate's state (value 1)."},
    {"evertoken_enroll_level", "gauge", "status level: 0 fine, 1 warning, 2 critical."},
    {"evertoken_enroll_last_check_timestamp_seconds", "gauge", "When the last check ran."},
    {"evertoken_enroll_last_success_timestamp_seconds", "gauge",
     "When a check last succeeded (0: never)."},
    {"evertoken_enroll_consecutive_failures", "gauge", "Failed checks since the last success."},
    {"evertoken_enroll_checks_total", "counter", "Checks run."},
    {"evertoken_enroll_check_failures_total", "counter", "Checks that failed."},
    {"evertoken_enroll_renewal_window_start_seconds", "gauge",
     "When the renewal window of the current certificate opens."},
    {"evertoken_enroll_ari_window_start_seconds", "gauge",
     "ACME: start of the renewal window the CA suggests (ARI, RFC 9773)."},
    {"evertoken_enroll_ari_window_end_seconds", "gauge",
     "ACME: end of the renewal window the CA suggests (ARI)."},
    {"evertoken_enroll_ari_renew_at_seconds", "gauge",
     "ACME: the renewal time drawn inside the ARI window."},
    {"evertoken_enroll_token_present", "gauge", "The profile's token was found (1) or not (0)."},
    {"evertoken_enroll_token_login_cached", "gauge",
     "A check could log in without a PIN now (1), not (0)."},
    {"evertoken_enroll_token_pin_locked", "gauge", "The user PIN is locked (1)."},
    {"evertoken_enroll_token_pin_count_low", "gauge",
     "The token reports failed PIN attempts (count low or final try)."},
};

/* One sample as text, kept per family until the end. */
typedef struct sample_buf {
    char *text[M_COUNT];
    size_t len[M_COUNT];
    FILE *f[M_COUNT];
} sample_buf;

static FILE *
at(sample_buf *b, int m)
{
    if (b->f[m] == NULL)
        b->f[m] = open_memstream(&b->text[m], &b->len[m]);
    return b->f[m];
}

/* NAME and KIND as the first labels of a sample of family M. */
static FILE *
begin(sample_buf *b, int m, const char *kind, const char *name)
{
    FILE *f = at(b, m);

    if (f == NULL)
        return NULL;
    fprintf(f, "%s{", fam[m].name);
    label(f, "kind", kind, 1);
    label(f, "name", name, 0);
    return f;
}

static void
gauge(sample_buf *b, int m, const char *kind, const char *name, long long v)
{
    FILE *f = begin(b, m, kind, name);

    if (f != NULL)
        fprintf(f, "} %lld\n", v);
}

static void
info(sample_buf *b, int m, const char *kind, const char *name, const char *k1, const char *v1,
     const char *k2, const char *v2)
{
    FILE *f = begin(b, m, kind, name);

    if (f == NULL)
        return;
    label(f, k1, v1, 0);
    if (k2 != NULL)
        label(f, k2, v2, 0);
    fputs("} 1\n", f);
}

static void
common(sample_buf *b, const char *kind, const char *name, long long not_after, const char *serial,
       const char *subject, const char *state, int level, enr_state *st, const char *cname,
       time_t now)
{
    enr_counters c;

    if (not_after != 0) {
        gauge(b, M_NOT_AFTER, kind, name, not_after);
        gauge(b, M_DAYS_LEFT, kind, name, not_after - (long long)now);
        info(b, M_INFO, kind, name, "serial", serial, "subject", subject);
    }
    info(b, M_STATE, kind, name, "state", state, NULL, NULL);
    gauge(b, M_LEVEL, kind, name, level);
    enr_monitor_counters(st, cname, &c);
    gauge(b, M_LAST_CHECK, kind, name, c.last_check);
    gauge(b, M_LAST_SUCCESS, kind, name, c.last_success);
    gauge(b, M_CONSEC, kind, name, c.consecutive);
    gauge(b, M_CHECKS, kind, name, c.checks);
    gauge(b, M_FAILURES, kind, name, c.failures);
}

/* Token flags, once per token (module + URI). */
static void
token_metrics(sample_buf *b, enr_profile **v, size_t n, size_t i)
{
    enr_tokinfo ti;
    FILE *f;

    for (size_t j = 0; j < i; j++)
        if (!strcmp(v[j]->token_uri, v[i]->token_uri) && !strcmp(v[j]->module, v[i]->module))
            return;
    if (enr_tokscan(v[i]->module, v[i]->token_uri, 0, &ti) != ENR_OK)
        memset(&ti, 0, sizeof(ti));
    int vals[] = {ti.found, ti.login_cached, ti.pin_locked, ti.pin_count_low};
    for (int m = M_TOK_PRESENT; m <= M_TOK_LOW; m++) {
        if (m > M_TOK_PRESENT && !ti.found)
            break;
        if (m == M_TOK_CACHE && ti.login_cached < 0)
            continue;
        f = at(b, m);
        if (f == NULL)
            continue;
        fprintf(f, "%s{", fam[m].name);
        label(f, "profile", v[i]->name, 1);
        label(f, "token", v[i]->token_uri, 0);
        fprintf(f, "} %d\n", vals[m - M_TOK_PRESENT]);
    }
    enr_tokinfo_clear(&ti);
}

static void
profile_metrics(enr_ctx *ctx, sample_buf *b, enr_profile **v, size_t n, size_t i, time_t now)
{
    enr_pstate ps;
    int found, lv;
    long days;
    const char *why;

    if (enr_state_get(ctx->st, v[i]->name, &ps, &found) != ENR_OK)
        return;
    lv = enr_status_level(v[i], &ps, now, &days, &why);
    common(b, "profile", v[i]->name, ps.cert_not_after, ps.cert_serial, ps.cert_subject,
           ps.state ? ps.state : "new", lv, ctx->st, v[i]->name, now);
    if (ps.cert_not_after != 0)
        gauge(b, M_WINDOW, "profile", v[i]->name,
              (long long)enr_profile_window_start(v[i], (time_t)ps.cert_not_before,
                                                  (time_t)ps.cert_not_after));
    long long ws, we, wr;
    if (v[i]->proto == ENR_PROTO_ACME &&
        enr_acme_ari_window(enr_state_dir(ctx->st), v[i]->name, &ws, &we, &wr)) {
        gauge(b, M_ARI_START, "profile", v[i]->name, ws);
        gauge(b, M_ARI_END, "profile", v[i]->name, we);
        gauge(b, M_ARI_RENEW, "profile", v[i]->name, wr);
    }
    enr_pstate_clear(&ps);
    token_metrics(b, v, n, i);
}

int
enr_metrics_render(enr_ctx *ctx, FILE *out)
{
    enr_profile **v = NULL;
    size_t n = 0, bad = 0, nw = 0;
    enr_wstate *w = NULL;
    sample_buf b;
    time_t now = enr_now();

    memset(&b, 0, sizeof(b));
    if (enr_profile_load_dir(ctx->profile_dir, &v, &n, &bad) != ENR_OK)
        n = 0;
    for (size_t i = 0; i < n; i++)
        profile_metrics(ctx, &b, v, n, i, now);
    if (enr_wstate_list(ctx->st, &w, &nw) == ENR_OK)
        for (size_t i = 0; i < nw; i++) {
            char *cname = enr_aprintf("watch:%s", w[i].entry);
            common(&b, "watch", w[i].id, w[i].not_after, w[i].serial, w[i].subject, w[i].state,
                   w[i].level, ctx->st, cname ? cname : "", now);
            free(cname);
        }
    enr_wstate_free(w, nw);
    fputs("# HELP evertoken_enroll_invalid_profiles Profiles that failed to load.\n"
          "# TYPE evertoken_enroll_invalid_profiles gauge\n",
          out);
    fprintf(out, "evertoken_enroll_invalid_profiles %zu\n", bad);
    fputs("# HELP evertoken_enroll_metrics_timestamp_seconds When these metrics were written.\n"
          "# TYPE evertoken_enroll_metrics_timestamp_seconds gauge\n",
          out);
    fprintf(out, "evertoken_enroll_metrics_timestamp_seconds %lld\n", (long long)now);
    for (int m = 0; m < M_COUNT; m++) {
        if (b.f[m] == NULL)
            continue;
        fclose(b.f[m]);
        fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", fam[m].name, fam[m].help, fam[m].name,
                fam[m].type);
        if (b.text[m] != NULL)
            fwrite(b.text[m], 1, b.len[m], out);
        free(b.text[m]);
    }
    /* The end marker of OpenMetrics (a comment to the Prometheus text format):
     * a reader can tell a complete file. */
    fputs("# EOF\n", out);
    enr_profile_free_all(v, n);
    return ferror(out) ? -1 : 0;
}

/* Write TEXT to PATH through a temporary file in the same directory and a
 * rename: a reader sees the old file or the new one, never a part. Mode
 * 0644: metrics are not secret, and node_exporter runs as another user. The
 * temporary name does not end in .prom, so the textfile collector skips it. */
static int
write_atomic(const char *path, const char *text, size_t len)
{
    char *tmp = enr_aprintf("%s.tmp.%ld", path, (long)getpid());
    FILE *f;
    int ok;

    if (tmp == NULL)
        return -1;
    f = fopen(tmp, "we");
    if (f == NULL) {
        enr_warn("cannot write the metrics file %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    ok = fwrite(text, 1, len, f) == len && fflush(f) == 0 && fchmod(fileno(f), 0644) == 0 &&
         fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        enr_warn("cannot write the metrics file %s: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

void
enr_metrics_update(enr_ctx *ctx)
{
    const enr_moncfg *c = enr_moncfg_get();
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    if (c == NULL || c->metrics_file == NULL)
        return;
    f = open_memstream(&text, &len);
    if (f == NULL)
        return;
    int r = enr_metrics_render(ctx, f);
    fclose(f);
    if (r == 0 && text != NULL)
        write_atomic(c->metrics_file, text, len);
    free(text);
}
