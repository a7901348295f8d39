/*
 * sched.c — the schedule (docs/enrollment.md "Schedule and retry"): at first start one
 * random time within the first hour for the enrollment check and, drawn
 * separately, one for the renewal check; each then repeats daily at its time
 * of day. A network failure (or an absent token, or a CA that holds the
 * request) schedules silent retries every 300 s until a check succeeds.
 * Pure functions of the state row and a time, so tests drive them directly.
 */
#include <string.h>

#include <sodium.h>

#include "enr_int.h"

void
enr_sched_init(enr_pstate *ps, time_t now)
{
    ps->first_start = now;
    ps->enroll_time = now + (time_t)randombytes_uniform(3600);
    ps->renew_time = now + (time_t)randombytes_uniform(3600);
    ps->next_enroll = ps->enroll_time;
    ps->next_renew = ps->renew_time;
    if (ps->state == NULL)
        enr_pstate_set(&ps->state, "new");
}

time_t
enr_sched_next_daily(time_t first, time_t after)
{
    long long k;

    if (first > after)
        return first;
    k = ((long long)after - (long long)first) / ENR_DAY + 1;
    return first + (time_t)(k * ENR_DAY);
}

time_t
enr_sched_next_due(const enr_pstate *ps, const char **kind)
{
    time_t t = ps->next_enroll;
    const char *k = "enroll";

    if (ps->next_renew < t) {
        t = ps->next_renew;
        k = "renew";
    }
    if (ps->retry_at > 0 && ps->retry_at < t) {
        t = ps->retry_at;
        k = "retry";
    }
    if (kind != NULL)
        *kind = k;
    return t;
}

static int
is_transient(enr_rc rc)
{
    /* PIN needed is retried too: the check then runs within 300 s of the
     * person unlocking the token (evertoken's per-user PIN cache). */
    return rc == ENR_E_NETWORK || rc == ENR_E_TOKEN || rc == ENR_E_PENDING || rc == ENR_E_PIN;
}

void
enr_sched_after(enr_pstate *ps, const char *kind, time_t now, enr_rc rc)
{
    time_t hint = enr_retry_hint_take(); /* the CA's Retry-After, if any */

    /* A check that ran (daily, by hand or as a retry) covers the daily run
     * due at or before NOW; the next is the following occurrence. */
    if (!strcmp(kind, "enroll") || !strcmp(kind, "check")) {
        if (ps->next_enroll <= now)
            ps->next_enroll = enr_sched_next_daily(ps->enroll_time, now);
    }
    if (!strcmp(kind, "renew") || !strcmp(kind, "check")) {
        if (ps->next_renew <= now)
            ps->next_renew = enr_sched_next_daily(ps->renew_time, now);
    }
    ps->last_check = now;
    if (rc == ENR_OK) {
        ps->retry_at = 0;
        enr_pstate_set(&ps->retry_kind, NULL);
        ps->attempts = 0;
        ps->net_notified = 0;
        return;
    }
    ps->attempts++;
    if (is_transient(rc)) {
        ps->retry_at = hint > now + ENR_RETRY_SECONDS ? hint : now + ENR_RETRY_SECONDS;
        if (strcmp(kind, "retry") != 0)
            enr_pstate_set(&ps->retry_kind, kind);
    } else {
        /* Not cured by waiting five minutes (refused, bad profile): the
         * daily check tries again; the failure has been notified. */
        ps->retry_at = 0;
        enr_pstate_set(&ps->retry_kind, NULL);
    }
}

static time_t retry_hint;

void
enr_retry_hint(time_t t)
{
    if (t > retry_hint)
        retry_hint = t;
}

time_t
enr_retry_hint_take(void)
{
    time_t t = retry_hint;

    retry_hint = 0;
    return t;
}
