/*
 * monround.c — what the service does for monitoring besides the profile
 * checks (engine.c calls it every round): the daily mail digest and the
 * daily watch checks, each when due, and the time the next one is due so the
 * service wakes for it (in simulated time too).
 */
#include "mon.h"

time_t
enr_monitor_round(enr_ctx *ctx, time_t now)
{
    time_t next = enr_mail_digest_next(now);

    if (next != 0 && next <= now) {
        enr_mail_digest(ctx, now, 0, NULL);
        next = enr_mail_digest_next(now);
    }
    time_t w = enr_watch_run_due(ctx, now);
    if (w != 0 && (next == 0 || w < next))
        next = w;
    return next;
}
