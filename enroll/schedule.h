/*
 * schedule.h — the profile's [schedule] (schedule.c): a maintenance window
 * for the checks and/or an interval instead of the daily times
 * (docs/enrollment.md "Schedule and retry").
 */
#ifndef EVERTOKEN_ENROLL_SCHEDULE_H
#define EVERTOKEN_ENROLL_SCHEDULE_H

#include "enr_int.h"

/* "HH:MM-HH:MM" (local time; may wrap midnight, start != end) into minutes
 * of the day. 0, or -1 with the reason in WHY. */
int enr_parse_sched_window(const char *v, int *start, int *end, char *why, size_t n);

/* Does P have a [schedule] (window or interval)? */
int enr_schedule_set(const enr_profile *p);

/* The next check strictly after AFTER under P's [schedule]: AFTER +
 * interval, or the daily window; moved into the window when one is set, at
 * a random second inside it. */
time_t enr_schedule_next(const enr_profile *p, time_t after);

/* After a check at NOW: the enrollment and renewal checks the daily
 * schedule just moved (ENROLL_MOVED, RENEW_MOVED) are placed by P's
 * [schedule] instead. No-op without one. */
void enr_schedule_apply(const enr_profile *p, enr_pstate *ps, time_t now, int enroll_moved,
                        int renew_moved);

/* Why the next check of PS falls when it does, for status (into BUF). */
const char *enr_schedule_why(const enr_profile *p, const enr_pstate *ps, char *buf, size_t n);

#endif /* EVERTOKEN_ENROLL_SCHEDULE_H */
