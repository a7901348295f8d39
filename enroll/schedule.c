/*
 * schedule.c — [schedule] of a profile: `window = 02:00-04:00` makes every
 * enrollment and renewal check fall at a random second inside that window
 * of local time (each day, or each interval moved into it); `interval = 6h`
 * checks every interval instead of daily. Retries (300 s after a network
 * failure, an absent token, a pending request) are not moved: they are the
 * recovery of a check that already ran. Without [schedule] the daily random
 * times of sched.c stay as they are.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "schedule.h"

#define MINUTES_PER_DAY (24 * 60)

static int
parse_hhmm(const char *s, int *out)
{
    int h, m, k = 0;

    if (sscanf(s, "%2d:%2d%n", &h, &m, &k) != 2 || k != 5 || h < 0 || h > 23 || m < 0 || m > 59)
        return -1;
    *out = h * 60 + m;
    return 0;
}

int
enr_parse_sched_window(const char *v, int *start, int *end, char *why, size_t n)
{
    const char *dash = strchr(v, '-');
    char a[8];

    if (dash == NULL || dash - v != 5 || strlen(dash + 1) != 5) {
        snprintf(why, n, "'%s' is not a window HH:MM-HH:MM (e.g. 02:00-04:00)", v);
        return -1;
    }
    memcpy(a, v, 5);
    a[5] = '\0';
    if (parse_hhmm(a, start) != 0 || parse_hhmm(dash + 1, end) != 0) {
        snprintf(why, n, "'%s': hours 00..23 and minutes 00..59 (HH:MM-HH:MM)", v);
        return -1;
    }
    if (*start == *end) {
        snprintf(why, n, "'%s' is an empty window (start equals end)", v);
        return -1;
    }
    return 0;
}

int
enr_schedule_set(const enr_profile *p)
{
    return p->sched_start >= 0 || p->sched_interval > 0;
}

/* Minutes of the window's length (wrapping midnight). */
static int
window_len(const enr_profile *p)
{
    int len = p->sched_end - p->sched_start;

    return len > 0 ? len : len + MINUTES_PER_DAY;
}

/* Minute of the local day of T. */
static int
minute_of(time_t t)
{
    struct tm tm;

    localtime_r(&t, &tm);
    return tm.tm_hour * 60 + tm.tm_min;
}

static int
in_window(const enr_profile *p, time_t t)
{
    int m = minute_of(t), off = m - p->sched_start;

    if (off < 0)
        off += MINUTES_PER_DAY;
    return off < window_len(p);
}

/* The first window start strictly after AFTER (local time). */
static time_t
next_window_start(const enr_profile *p, time_t after)
{
    struct tm tm;
    time_t t;

    localtime_r(&after, &tm);
    tm.tm_hour = p->sched_start / 60;
    tm.tm_min = p->sched_start % 60;
    tm.tm_sec = 0;
    tm.tm_isdst = -1;
    t = mktime(&tm);
    while (t <= after) {
        tm.tm_mday++;
        tm.tm_isdst = -1;
        t = mktime(&tm);
    }
    return t;
}

time_t
enr_schedule_next(const enr_profile *p, time_t after)
{
    time_t t;

    if (p->sched_interval > 0) {
        t = after + (time_t)p->sched_interval;
        if (p->sched_start < 0 || in_window(p, t))
            return t;
    }
    if (p->sched_start < 0)
        return after + ENR_DAY;
    /* Daily (or an interval that left the window): a random second of the
     * next window. */
    t = next_window_start(p, after);
    return t + (time_t)randombytes_uniform((uint32_t)window_len(p) * 60u);
}

void
enr_schedule_apply(const enr_profile *p, enr_pstate *ps, time_t now, int enroll_moved,
                   int renew_moved)
{
    if (!enr_schedule_set(p))
        return;
    /* Moved by the daily schedule, due, or (the times drawn at the first
     * check) outside the window. */
    if (enroll_moved || ps->next_enroll <= now ||
        (p->sched_start >= 0 && !in_window(p, (time_t)ps->next_enroll)))
        ps->next_enroll = enr_schedule_next(p, now);
    if (renew_moved || ps->next_renew <= now ||
        (p->sched_start >= 0 && !in_window(p, (time_t)ps->next_renew)))
        ps->next_renew = enr_schedule_next(p, now);
}

const char *
enr_schedule_why(const enr_profile *p, const enr_pstate *ps, char *buf, size_t n)
{
    const char *kind = NULL;
    char win[64] = "";
    int s = p->sched_start, e = p->sched_end;

    enr_sched_next_due(ps, &kind);
    if (!strcmp(kind, "retry")) {
        snprintf(buf, n, "retry of the %s check that did not succeed (every %d s)",
                 ps->retry_kind ? ps->retry_kind : "last", ENR_RETRY_SECONDS);
        return buf;
    }
    if (s >= 0 && s < MINUTES_PER_DAY && e >= 0 && e < MINUTES_PER_DAY)
        snprintf(win, sizeof(win), " in the window %02d:%02d-%02d:%02d", s / 60 % 24, s % 60,
                 e / 60 % 24, e % 60);
    if (p->sched_interval > 0)
        snprintf(buf, n, "%s check every %lds%s ([schedule])", kind, p->sched_interval, win);
    else if (win[0])
        snprintf(buf, n, "daily %s check at a random time%s ([schedule])", kind, win);
    else
        snprintf(buf, n, "daily %s check at its time of day", kind);
    return buf;
}
