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
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sqlite3.h>

#include "et_escape.h"
#include "expiry.h"
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

/* ---- checks ------------------------------------------------------------- */

/* One certificate's findings, worst first: expired, revoked, unexpected,
 * untrusted (2), then expiring, weak (1), else valid. */
typedef struct finding {
    const char *state;
    char detail[512];
    int level;
} finding;

static void note(finding *f, const char *state, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
note(finding *f, const char *state, int level, const char *fmt, ...)
{
    va_list ap;

    if (f->state != NULL && f->level >= level)
        return; /* a finding as bad or worse is already there */
    f->state = state;
    f->level = level;
    va_start(ap, fmt);
    vsnprintf(f->detail, sizeof(f->detail), fmt, ap);
    va_end(ap);
}

/* RSA below 2048 bits, SHA-1 or MD5 signature: "" when neither. */
static void
weak(X509 *x, finding *f)
{
    EVP_PKEY *pk = X509_get0_pubkey(x);
    int md = NID_undef, pk_nid = NID_undef;

    if (pk != NULL && EVP_PKEY_is_a(pk, "RSA") && EVP_PKEY_get_bits(pk) < 2048)
        note(f, "weak", 1, "RSA key of %d bits (below 2048)", EVP_PKEY_get_bits(pk));
    if (OBJ_find_sigid_algs(X509_get_signature_nid(x), &md, &pk_nid) &&
        (md == NID_sha1 || md == NID_md5))
        note(f, "weak", 1, "signed with %s", OBJ_nid2sn(md));
}

/* Chain to ANCHORS with the intermediates the source gave; expiry is judged
 * separately (no time check here). */
static int
trusted(X509 *x, STACK_OF(X509) * chain, STACK_OF(X509) * anchors, const char **why)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = 0;

    *why = "out of memory";
    if (store != NULL && ctx != NULL) {
        for (int i = 0; i < sk_X509_num(anchors); i++)
            X509_STORE_add_cert(store, sk_X509_value(anchors, i));
        if (X509_STORE_CTX_init(ctx, store, x, chain)) {
            X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_NO_CHECK_TIME);
            X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY);
            ok = X509_verify_cert(ctx) == 1;
            if (!ok)
                *why = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
        }
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return ok;
}

/* expect = sha256:HEX (colons allowed) or subject:DN (attributes in any order). */
static int
expected(X509 *x, const char *expect)
{
    if (!strncmp(expect, "sha256:", 7)) {
        unsigned char md[32];
        unsigned int ml = sizeof(md);
        char *hex;
        const char *e = expect + 7;
        size_t k = 0;
        int same = 1;
        if (!X509_digest(x, EVP_sha256(), md, &ml) || (hex = enr_hex(md, ml)) == NULL)
            return 0;
        for (; *e && same; e++) {
            if (*e == ':')
                continue;
            same = k < 64 && tolower((unsigned char)*e) == hex[k++];
        }
        same = same && k == 64;
        free(hex);
        return same;
    }
    X509_NAME *subj = X509_get_subject_name(x);
    char *dup = enr_strdup(expect + 8), *save = NULL;
    int n = 0, same = dup != NULL;
    for (char *t = strtok_r(dup, ",", &save); t != NULL && same; t = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(t, '=');
        while (*t == ' ')
            t++;
        if (eq == NULL)
            same = 0;
        else {
            *eq = '\0';
            int nid = OBJ_txt2nid(t), found = 0;
            for (int i = -1; !found && (i = X509_NAME_get_index_by_NID(subj, nid, i)) >= 0;) {
                ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
                found = (size_t)ASN1_STRING_length(d) == strlen(eq + 1) &&
                        !memcmp(ASN1_STRING_get0_data(d), eq + 1, strlen(eq + 1));
            }
            same = nid != NID_undef && found;
            n++;
        }
    }
    free(dup);
    return same && n == X509_NAME_entry_count(subj);
}

/* Expiry state from the certificate's dates and the entry's thresholds,
 * by the same function as the profiles' (expiry.c): expired (2), inside the
 * smallest threshold (2), inside the first (1); PP carries the thresholds. */
static long
expiry(const enr_profile *pp, time_t nb, time_t na, time_t now, finding *f, int *threshold)
{
    enr_expiry e;

    enr_expiry_of(pp, na, now, &e);
    *threshold = e.threshold;
    if (e.expired)
        note(f, "expired", 2, "expired on %s", enr_fmt_time(na, (char[32]){0}, 32));
    else if (nb > now)
        note(f, "not-yet-valid", 1, "valid only from %s", enr_fmt_time(nb, (char[32]){0}, 32));
    else if (e.level > 0)
        note(f, "expiring", e.level, "expires in %ld days (%s)", e.days_left,
             enr_fmt_time(na, (char[32]){0}, 32));
    return e.days_left;
}

/* A profile-shaped description of a watch entry, for the revocation check
 * and the notifications (enr_notify). */
static void
pseudo_profile(const enr_watch *w, const char *cfgpath, char *name, size_t nl, enr_profile *p)
{
    memset(p, 0, sizeof(*p));
    snprintf(name, nl, "watch:%s", w->name);
    p->name = name;
    p->path = (char *)(cfgpath ? cfgpath : "monitor settings");
    p->anchors = w->anchors;
    p->revocation = w->revocation;
    p->revocation_timeout = w->revocation_timeout;
    p->n_warn = w->n_warn;
    memcpy(p->warn_days, w->warn_days, sizeof(p->warn_days));
}

static void
revocation(const enr_watch *w, enr_profile *pp, X509 *x, STACK_OF(X509) * anchors, time_t now,
           finding *f)
{
    enr_rev rev = ENR_REV_NONE;
    enr_rc rc;

    if (w->revocation == ENR_REVPOL_OFF || anchors == NULL)
        return;
    rc = enr_revocation(pp, x, anchors, now, &rev);
    if (rc == ENR_OK && rev == ENR_REV_REVOKED)
        note(f, "revoked", 2, "revoked (OCSP/CRL)");
    else if (rc != ENR_OK && w->revocation == ENR_REVPOL_HARD)
        note(f, "error", 1, "revocation status unknown: no OCSP or CRL answer");
    else if (rc != ENR_OK)
        enr_warn("watch %s: revocation status unknown (no OCSP or CRL answer)", w->name);
}

typedef struct prev {
    char *state;
    int warned;
} prev;

static void
prev_get(sqlite3 *db, const char *id, prev *p)
{
    sqlite3_stmt *s = NULL;

    memset(p, 0, sizeof(*p));
    if (sqlite3_prepare_v2(db, "SELECT state, warned_days FROM watch_state WHERE id = ?1", -1, &s,
                           NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) {
        p->state = col(s, 0);
        p->warned = sqlite3_column_int(s, 1);
    }
    sqlite3_finalize(s);
}

static void
put_row(sqlite3 *db, const char *entry, const char *id, X509 *x, const finding *f, time_t now,
        int warned)
{
    sqlite3_stmt *s = NULL;
    char subj[256] = "", *serial = x ? enr_serial_hex(x) : NULL;

    if (x != NULL)
        X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO watch_state VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7,"
                           " ?8, ?9, ?10, ?11)",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, entry, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, x ? subj : NULL, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, serial, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, x ? (sqlite3_int64)enr_asn1_time(X509_get0_notBefore(x)) : 0);
        sqlite3_bind_int64(s, 6, x ? (sqlite3_int64)enr_asn1_time(X509_get0_notAfter(x)) : 0);
        sqlite3_bind_text(s, 7, f->state, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 8, f->detail, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 9, f->level);
        sqlite3_bind_int64(s, 10, (sqlite3_int64)now);
        sqlite3_bind_int(s, 11, warned);
        if (sqlite3_step(s) != SQLITE_DONE)
            enr_warn("state database: cannot record watched %s: %s", id, sqlite3_errmsg(db));
    }
    sqlite3_finalize(s);
    free(serial);
}

/* Notices: expiry warnings once per threshold and certificate (as for
 * profiles), other findings when the state changes, "recovered" back. */
static int
notices(enr_ctx *ctx, enr_profile *pp, const char *id, X509 *x, const finding *f, long days,
        int threshold, const prev *pv)
{
    char subj[256], *serial = enr_serial_hex(x), *msg = NULL, ev_name[48];
    int warned = pv->warned;
    time_t na = enr_asn1_time(X509_get0_notAfter(x));

    X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
    pp->subject = subj;
    /* Once per threshold and certificate, the smallest reached (expiry.c). */
    if (threshold > 0 && na > enr_now() && (warned == 0 || warned > threshold)) {
        msg = enr_aprintf("watched certificate %s (%s, serial %s) expires in %ld days", id, subj,
                          serial ? serial : "?", days);
        enr_event ev = {"expiry-warning", msg ? msg : id, NULL, NULL, serial, na, (int)days};
        enr_notify(pp, ctx->st, &ev);
        free(msg);
        msg = NULL;
        warned = threshold;
    }
    if (strcmp(f->state, "expiring") != 0 && (pv->state == NULL || strcmp(pv->state, f->state))) {
        if (f->level > 0)
            snprintf(ev_name, sizeof(ev_name), "watch-%s", f->state);
        else
            snprintf(ev_name, sizeof(ev_name), "%s", pv->state ? "recovered" : "");
        if (ev_name[0]) {
            msg = enr_aprintf("watched certificate %s (%s): %s", id, subj, f->detail);
            enr_event ev = {ev_name, msg ? msg : id, NULL, NULL, serial, na, (int)days};
            enr_notify(pp, ctx->st, &ev);
            free(msg);
        }
    }
    free(serial);
    return warned;
}

static void
check_cert(enr_ctx *ctx, const enr_watch *w, enr_profile *pp, STACK_OF(X509) * anchors,
           enr_wcert *c, time_t now)
{
    finding f = {NULL, "", 0};
    const char *why;
    prev pv;
    long days;
    int threshold = 0;
    sqlite3 *db = enr_state_db(ctx->st);

    days = expiry(pp, enr_asn1_time(X509_get0_notBefore(c->cert)),
                  enr_asn1_time(X509_get0_notAfter(c->cert)), now, &f, &threshold);
    if (anchors != NULL && !trusted(c->cert, c->chain, anchors, &why))
        note(&f, "untrusted", 2, "does not chain to the anchors: %s", why);
    if (w->expect != NULL && !expected(c->cert, w->expect))
        note(&f, "unexpected", 2, "serves another certificate than %s", w->expect);
    if (f.level < 2) {
        /* The certificate chains to the anchors: the intermediates the source
         * gave may name its issuer for OCSP/CRL (enr_revocation looks for the
         * issuer, and trusts responses, among what it is given). */
        STACK_OF(X509) *known = anchors ? sk_X509_dup(anchors) : NULL;
        for (int i = 0; known != NULL && i < sk_X509_num(c->chain); i++)
            sk_X509_push(known, sk_X509_value(c->chain, i));
        revocation(w, pp, c->cert, known, now, &f);
        sk_X509_free(known);
    }
    weak(c->cert, &f);
    if (f.state == NULL)
        note(&f, "valid", 0, "valid for %ld days", days);
    prev_get(db, c->id, &pv);
    /* The row first, so the status table of a mailed notice shows it. */
    put_row(db, w->name, c->id, c->cert, &f, now, pv.warned);
    int warned = notices(ctx, pp, c->id, c->cert, &f, days, threshold, &pv);
    if (warned != pv.warned)
        put_row(db, w->name, c->id, c->cert, &f, now, warned);
    enr_debug("watch %s: %s: %s", c->id, f.state, f.detail);
    free(pv.state);
}

/* The source could not be read: its rows say so, the last values stay. */
static void
source_failed(enr_ctx *ctx, const enr_watch *w, time_t now)
{
    sqlite3 *db = enr_state_db(ctx->st);
    sqlite3_stmt *s = NULL;
    const char *err = enr_last_error()[0] ? enr_last_error() : "cannot read the source";
    int changed = 0;

    if (sqlite3_prepare_v2(db,
                           "UPDATE watch_state SET state = 'error', detail = ?2, level ="
                           " max(level, 1), last_check = ?3 WHERE entry = ?1",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, w->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, err, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, (sqlite3_int64)now);
        sqlite3_step(s);
        changed = sqlite3_changes(db);
    }
    sqlite3_finalize(s);
    if (changed == 0) {
        finding f = {"error", "", 1};
        snprintf(f.detail, sizeof(f.detail), "%s", err);
        put_row(db, w->name, w->name, NULL, &f, now, 0);
    }
}

static void
check_entry(enr_ctx *ctx, const enr_moncfg *cfg, const enr_watch *w, time_t now)
{
    enr_profile pp;
    char name[300];
    STACK_OF(X509) *anchors = NULL;
    enr_wcert *v = NULL;
    size_t n = 0;
    enr_rc rc = ENR_OK;
    sqlite3 *db = enr_state_db(ctx->st);

    pseudo_profile(w, cfg->path, name, sizeof(name), &pp);
    enr_clear_error();
    if (w->anchors != NULL)
        rc = enr_load_anchors(&pp, &anchors);
    if (rc == ENR_OK)
        rc = enr_watch_collect(w, &v, &n);
    if (rc != ENR_OK) {
        source_failed(ctx, w, now);
        enr_event ev = {"watch-error",
                        enr_last_error()[0] ? enr_last_error() : "source unreadable",
                        NULL,
                        NULL,
                        NULL,
                        0,
                        -1};
        enr_notify(&pp, ctx->st, &ev);
    } else {
        /* Certificates gone from the source are forgotten. */
        sqlite3_stmt *s = NULL;
        for (size_t i = 0; i < n; i++)
            check_cert(ctx, w, &pp, anchors, &v[i], now);
        if (sqlite3_prepare_v2(db, "DELETE FROM watch_state WHERE entry = ?1 AND last_check < ?2",
                               -1, &s, NULL) == SQLITE_OK) {
            sqlite3_bind_text(s, 1, w->name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, (sqlite3_int64)now);
            sqlite3_step(s);
        }
        sqlite3_finalize(s);
    }
    enr_monitor_record(ctx->st, name, rc, now);
    enr_wcert_free(v, n);
    sk_X509_pop_free(anchors, X509_free);
}

/* Rows of entries no longer in the settings are dropped. */
static void
forget_removed(sqlite3 *db, const enr_moncfg *cfg)
{
    sqlite3_stmt *s = NULL, *d = NULL;

    if (sqlite3_prepare_v2(db, "SELECT DISTINCT entry FROM watch_state", -1, &s, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db, "DELETE FROM watch_state WHERE entry = ?1", -1, &d, NULL) !=
            SQLITE_OK) {
        sqlite3_finalize(s);
        return;
    }
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *e = (const char *)sqlite3_column_text(s, 0);
        int known = 0;
        for (size_t i = 0; e != NULL && i < cfg->n_watch && !known; i++)
            known = !strcmp(cfg->watch[i].name, e);
        if (e != NULL && !known) {
            sqlite3_bind_text(d, 1, e, -1, SQLITE_TRANSIENT);
            sqlite3_step(d);
            sqlite3_reset(d);
        }
    }
    sqlite3_finalize(s);
    sqlite3_finalize(d);
}

int
enr_watch_check(enr_ctx *ctx, int argc, char **argv, time_t now)
{
    const enr_moncfg *cfg = enr_moncfg_get();
    int matched = 0;

    if (cfg == NULL ||
        sqlite3_exec(enr_state_db(ctx->st), watch_schema, NULL, NULL, NULL) != SQLITE_OK)
        return 0;
    forget_removed(enr_state_db(ctx->st), cfg);
    for (size_t i = 0; i < cfg->n_watch; i++) {
        int sel = argc == 0;
        for (int j = 0; j < argc; j++)
            sel |= !strcmp(argv[j], cfg->watch[i].name);
        if (!sel)
            continue;
        matched++;
        check_entry(ctx, cfg, &cfg->watch[i], now);
    }
    enr_metrics_update(ctx);
    return matched;
}

time_t
enr_watch_run_due(enr_ctx *ctx, time_t now)
{
    const enr_moncfg *cfg = enr_moncfg_get();
    time_t next = 0;
    int due = 0;

    for (size_t i = 0; cfg != NULL && i < cfg->n_watch; i++) {
        enr_counters k;
        char *name = enr_aprintf("watch:%s", cfg->watch[i].name);
        if (name == NULL)
            continue;
        enr_monitor_counters(ctx->st, name, &k);
        free(name);
        time_t t = k.last_check ? (time_t)k.last_check + ENR_DAY : now;
        if (t <= now)
            due = 1;
        else if (next == 0 || t < next)
            next = t;
    }
    if (due) {
        /* Every entry at once, so they keep one daily rhythm. */
        enr_watch_check(ctx, 0, NULL, now);
        next = now + ENR_DAY;
    }
    return next;
}

/* ---- status ------------------------------------------------------------- */

static void
jstr(FILE *out, const char *s)
{
    char *e;

    if (s == NULL) {
        fputs("null", out);
        return;
    }
    e = et_escape_alloc(s, strlen(s), ET_ESC_JSON);
    fprintf(out, "\"%s\"", e ? e : "(out of memory)");
    free(e);
}

int
enr_watch_status(enr_ctx *ctx, int json, FILE *out, int argc, char **argv)
{
    enr_wstate *v = NULL;
    size_t n = 0;
    int worst = 0, shown = 0;
    time_t now = enr_now();
    char na[32], lc[32], dl[24];

    if (enr_wstate_list(ctx->st, &v, &n) != ENR_OK)
        return 0;
    if (json)
        fputs(", \"watched\": [", out);
    else if (n > 0)
        fprintf(out, "\n%-26s %-28s %-20s %5s %-13s %-20s %s\n", "WATCHED", "SUBJECT", "NOT-AFTER",
                "DAYS", "STATE", "LAST-CHECK", "DETAIL");
    for (size_t i = 0; i < n; i++) {
        enr_wstate *w = &v[i];
        int sel = argc == 0;
        for (int j = 0; j < argc; j++)
            sel |= w->entry != NULL && !strcmp(argv[j], w->entry);
        if (!sel)
            continue;
        shown++;
        long days = w->not_after ? (long)((w->not_after - now) / ENR_DAY) : 0;
        if (w->level > worst)
            worst = w->level;
        if (json) {
            fprintf(out, "%s\n  {\"id\": ", shown > 1 ? "," : "");
            jstr(out, w->id);
            fputs(", \"entry\": ", out);
            jstr(out, w->entry);
            fputs(", \"subject\": ", out);
            jstr(out, w->subject);
            fputs(", \"serial\": ", out);
            jstr(out, w->serial);
            fputs(", \"not_after\": ", out);
            jstr(out, w->not_after ? enr_fmt_time((time_t)w->not_after, na, sizeof(na)) : NULL);
            if (w->not_after)
                fprintf(out, ", \"days_left\": %ld", days);
            else
                fputs(", \"days_left\": null", out);
            fputs(", \"state\": ", out);
            jstr(out, w->state);
            fputs(", \"detail\": ", out);
            jstr(out, w->detail);
            fprintf(out, ", \"level\": %d, \"last_check\": ", w->level);
            jstr(out, enr_fmt_time((time_t)w->last_check, lc, sizeof(lc)));
            fputs("}", out);
        } else {
            char subj[29];
            snprintf(subj, sizeof(subj), "%s", et_escs(w->subject ? w->subject : "-"));
            fprintf(out, "%-26s %-28s %-20s %5s %-13s %-20s %s\n", et_escs(w->id), subj,
                    enr_fmt_time((time_t)w->not_after, na, sizeof(na)),
                    w->not_after ? (snprintf(dl, sizeof(dl), "%ld", days), dl) : "-",
                    et_escs(w->state ? w->state : "-"),
                    enr_fmt_time((time_t)w->last_check, lc, sizeof(lc)),
                    et_escs(w->detail ? w->detail : ""));
        }
    }
    if (json)
        fputs(shown ? "\n]" : "]", out);
    enr_wstate_free(v, n);
    return worst;
}
