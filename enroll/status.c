/*
 * status.c — `evertoken-enroll status`: every profile's certificate, expiry,
 * days left, state, last/next check and last error, as a table or JSON, with
 * an exit code for monitoring (0 all fine, 1 warning, 2 critical). It reads
 * the state database only, so it works while the token is locked.
 */
#include <stdlib.h>
#include <string.h>

#include "enr_int.h"
#include "et_escape.h"
#include "expiry.h"
#include "mon.h"
#include "schedule.h"

static void
json_str(FILE *out, const char *s)
{
    if (s == NULL) {
        fputs("null", out);
        return;
    }
    /* Valid JSON whatever S holds (invalid UTF-8 included). */
    char *e = et_escape_alloc(s, strlen(s), ET_ESC_JSON);

    fprintf(out, "\"%s\"", e != NULL ? e : "(out of memory)");
    free(e);
}

static void
json_time(FILE *out, long long t)
{
    char b[32];

    if (t == 0)
        fputs("null", out);
    else
        json_str(out, enr_fmt_time((time_t)t, b, sizeof(b)));
}

/* 0 ok, 1 warning, 2 critical, with the reason. */
int
enr_status_level(const enr_profile *p, const enr_pstate *ps, time_t now, long *days,
                 const char **why)
{
    enr_expiry e;

    /* The same computation as the expiry warnings (expiry.c). */
    enr_expiry_of(p, (time_t)ps->cert_not_after, now, &e);
    *days = e.known ? e.days_left : -1;
    if (!e.known) {
        *why = "no certificate";
        return 2;
    }
    if (e.expired) {
        *why = "expired";
        return 2;
    }
    if (ps->state != NULL && !strcmp(ps->state, "revoked")) {
        *why = "revoked";
        return 2;
    }
    if (e.level == 2 && ps->last_error != NULL) {
        *why = "expires soon and renewal is failing";
        return 2;
    }
    if (ps->state != NULL && !strcmp(ps->state, "pin-needed")) {
        *why = "waiting for a login: unlock the token (PIN needed)";
        return 1;
    }
    if (ps->last_error != NULL) {
        *why = "last check failed";
        return 1;
    }
    if (ps->hook_status != NULL && !strcmp(ps->hook_status, "failed")) {
        *why = "post-processing script failed";
        return 1;
    }
    if (ps->pending_txid != NULL) {
        *why = "request pending at the CA";
        return 1;
    }
    if (e.level >= 1) {
        *why = "expires soon";
        return 1;
    }
    *why = "ok";
    return 0;
}

int
enr_status(enr_ctx *ctx, int json, FILE *out)
{
    enr_profile **v = NULL;
    size_t n = 0, bad = 0;
    time_t now = enr_now();
    int worst = 0;

    if (enr_profile_load_dir(ctx->profile_dir, &v, &n, &bad) != ENR_OK)
        return 2;
    if (bad > 0)
        worst = 2;
    if (json)
        fprintf(out, "{\"time\": \"%s\", \"invalid_profiles\": %zu, \"profiles\": [",
                enr_fmt_time(now, (char[32]){0}, 32), bad);
    else
        fprintf(out, "%-14s %-28s %-20s %5s %-12s %-9s %-20s %-20s %s\n", "PROFILE", "SUBJECT",
                "NOT-AFTER", "DAYS", "STATE", "ROLLOVER", "LAST-CHECK", "NEXT-CHECK", "LAST-ERROR");
    for (size_t i = 0; i < n; i++) {
        enr_pstate ps;
        int found, lv;
        long days;
        const char *why, *kind;
        char na[32], lc[32], nc[32], dl[24], why_next[200];
        time_t next;
        long long ws, we, wr; /* ACME renewal information */

        if (enr_state_get(ctx->st, v[i]->name, &ps, &found) != ENR_OK)
            continue;
        lv = enr_status_level(v[i], &ps, now, &days, &why);
        if (lv > worst)
            worst = lv;
        next = found ? enr_sched_next_due(&ps, &kind) : 0;
        if (json) {
            fprintf(out, "%s\n  {\"profile\": ", i ? "," : "");
            json_str(out, v[i]->name);
            fputs(", \"subject\": ", out);
            json_str(out, v[i]->subject);
            fputs(", \"serial\": ", out);
            json_str(out, ps.cert_serial);
            fputs(", \"not_after\": ", out);
            json_time(out, ps.cert_not_after);
            if (ps.cert_not_after)
                fprintf(out, ", \"days_left\": %ld", days);
            else
                fputs(", \"days_left\": null", out);
            fputs(", \"state\": ", out);
            json_str(out, ps.state ? ps.state : "new");
            fputs(", \"rollover\": ", out);
            json_str(out, ps.rollover);
            fputs(", \"last_check\": ", out);
            json_time(out, ps.last_check);
            fputs(", \"last_result\": ", out);
            json_str(out, ps.last_result);
            fputs(", \"next_check\": ", out);
            json_time(out, next);
            fputs(", \"next_check_why\": ", out);
            json_str(out, found ? enr_schedule_why(v[i], &ps, why_next, sizeof(why_next)) : NULL);
            fputs(", \"enroll_check_time\": ", out);
            json_time(out, ps.next_enroll);
            fputs(", \"renew_check_time\": ", out);
            json_time(out, ps.next_renew);
            fputs(", \"retry_at\": ", out);
            json_time(out, ps.retry_at);
            fprintf(out, ", \"attempts\": %lld, \"last_error\": ", ps.attempts);
            json_str(out, ps.last_error);
            fputs(", \"pending\": ", out);
            fputs(ps.pending_txid ? "true" : "false", out);
            fputs(", \"hook\": ", out);
            json_str(out, ps.hook_status);
            fprintf(out, ", \"hook_exit\": %d, \"level\": %d, \"level_reason\": ", ps.hook_exit,
                    lv);
            json_str(out, why);
            if (v[i]->proto == ENR_PROTO_ACME &&
                enr_acme_ari_window(enr_state_dir(ctx->st), v[i]->name, &ws, &we, &wr)) {
                fputs(", \"renewal_window\": {\"source\": \"ari\", \"start\": ", out);
                json_time(out, ws);
                fputs(", \"end\": ", out);
                json_time(out, we);
                fputs(", \"renew_at\": ", out);
                json_time(out, wr);
                fputs("}", out);
            }
            fputs("}", out);
        } else {
            char subj[29];
            snprintf(subj, sizeof(subj), "%s", et_escs(v[i]->subject));
            fprintf(out, "%-14s %-28s %-20s %5s %-12s %-9s %-20s %-20s %s\n", et_escs(v[i]->name),
                    subj, enr_fmt_time((time_t)ps.cert_not_after, na, sizeof(na)),
                    ps.cert_not_after ? (snprintf(dl, sizeof(dl), "%ld", days), dl) : "-",
                    et_escs(ps.state ? ps.state : "new"), et_escs(ps.rollover ? ps.rollover : "-"),
                    enr_fmt_time((time_t)ps.last_check, lc, 32), enr_fmt_time(next, nc, sizeof(nc)),
                    et_escs(ps.last_error ? ps.last_error : ""));
            if (v[i]->proto == ENR_PROTO_ACME &&
                enr_acme_ari_window(enr_state_dir(ctx->st), v[i]->name, &ws, &we, &wr)) {
                fprintf(out, "%-14s renewal window from the CA (ACME ARI): %s .. ", "",
                        enr_fmt_time((time_t)ws, na, sizeof(na)));
                fprintf(out, "%s, renewal at %s\n", enr_fmt_time((time_t)we, na, sizeof(na)),
                        enr_fmt_time((time_t)wr, nc, sizeof(nc)));
            }
        }
        enr_pstate_clear(&ps);
    }
    if (json)
        fputs("\n]", out);
    /* The watched certificates (watch.c, docs/monitoring.md). */
    int wl = enr_watch_status(ctx, json, out, 0, NULL);
    if (json)
        fputs("}\n", out);
    enr_profile_free_all(v, n);
    return wl > worst ? wl : worst;
}
