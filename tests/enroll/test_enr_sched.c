/*
 * test_enr_sched.c — the schedule (random times in the first hour, drawn
 * separately; daily repeat; 300 s retry after transient failures) and the
 * state database (round trip, 0600 file in a 0700 directory, events).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "enr_int.h"

#define T0 1800000000 /* 2027-01-15 */

static void
test_first_hour(void **st)
{
    int differ = 0;

    for (int i = 0; i < 200; i++) {
        enr_pstate ps;
        memset(&ps, 0, sizeof(ps));
        enr_sched_init(&ps, T0);
        assert_true(ps.enroll_time >= T0 && ps.enroll_time < T0 + 3600);
        assert_true(ps.renew_time >= T0 && ps.renew_time < T0 + 3600);
        assert_int_equal(ps.next_enroll, ps.enroll_time);
        assert_int_equal(ps.next_renew, ps.renew_time);
        differ += ps.enroll_time != ps.renew_time;
        enr_pstate_clear(&ps);
    }
    assert_true(differ > 150); /* two separate draws */
}

static void
test_daily(void **st)
{
    assert_int_equal(enr_sched_next_daily(T0 + 100, T0), T0 + 100);
    assert_int_equal(enr_sched_next_daily(T0 + 100, T0 + 100), T0 + 100 + 86400);
    assert_int_equal(enr_sched_next_daily(T0 + 100, T0 + 86400 * 5 + 50), T0 + 100 + 86400 * 5);
    assert_int_equal(enr_sched_next_daily(T0 + 100, T0 + 86400 * 5 + 150), T0 + 100 + 86400 * 6);
}

static void
test_after_and_retry(void **st)
{
    enr_pstate ps;
    const char *kind;

    memset(&ps, 0, sizeof(ps));
    ps.enroll_time = ps.next_enroll = T0 + 600;
    ps.renew_time = ps.next_renew = T0 + 1200;
    assert_int_equal(enr_sched_next_due(&ps, &kind), T0 + 600);
    assert_string_equal(kind, "enroll");

    /* The enrollment check succeeds: tomorrow, same time. */
    enr_sched_after(&ps, "enroll", T0 + 600, ENR_OK);
    assert_int_equal(ps.next_enroll, T0 + 600 + 86400);
    assert_int_equal(enr_sched_next_due(&ps, &kind), T0 + 1200);
    assert_string_equal(kind, "renew");

    /* The renewal check fails on the network: retry in 300 s, daily time kept. */
    enr_sched_after(&ps, "renew", T0 + 1200, ENR_E_NETWORK);
    assert_int_equal(ps.retry_at, T0 + 1500);
    assert_string_equal(ps.retry_kind, "renew");
    assert_int_equal(ps.next_renew, T0 + 1200 + 86400);
    assert_int_equal(enr_sched_next_due(&ps, &kind), T0 + 1500);
    assert_string_equal(kind, "retry");
    assert_int_equal(ps.attempts, 1);

    /* Still failing: every 300 s. */
    enr_sched_after(&ps, "retry", T0 + 1500, ENR_E_NETWORK);
    assert_int_equal(ps.retry_at, T0 + 1800);
    assert_string_equal(ps.retry_kind, "renew");
    assert_int_equal(ps.attempts, 2);

    /* Success ends the retries; back to the daily schedule. */
    enr_sched_after(&ps, "retry", T0 + 1800, ENR_OK);
    assert_int_equal(ps.retry_at, 0);
    assert_null(ps.retry_kind);
    assert_int_equal(ps.attempts, 0);
    assert_int_equal(enr_sched_next_due(&ps, &kind), T0 + 600 + 86400);

    /* A refusal is not retried every 300 s: the daily check tries again. */
    enr_sched_after(&ps, "enroll", T0 + 600 + 86400, ENR_E_REJECTED);
    assert_int_equal(ps.retry_at, 0);
    assert_int_equal(ps.next_enroll, T0 + 600 + 2 * 86400);

    /* PIN needed is retried (the person may unlock the token any moment)… */
    enr_sched_after(&ps, "check", T0 + 700 + 86400, ENR_E_PIN);
    assert_int_equal(ps.retry_at, T0 + 1000 + 86400);
    /* …a refused PIN never (each attempt counts towards the lockout). */
    enr_sched_after(&ps, "retry", T0 + 1000 + 86400, ENR_E_PIN_WRONG);
    assert_int_equal(ps.retry_at, 0);
    /* An absent token and a CA holding the request are retried. */
    enr_sched_after(&ps, "check", T0 + 1100 + 86400, ENR_E_TOKEN);
    assert_int_equal(ps.retry_at, T0 + 1400 + 86400);
    enr_sched_after(&ps, "retry", T0 + 1400 + 86400, ENR_E_PENDING);
    assert_int_equal(ps.retry_at, T0 + 1700 + 86400);
    enr_pstate_clear(&ps);
}

static void
test_state_db(void **st)
{
    char dir[64] = "/tmp/enr-state.XXXXXX", sub[128], path[160];
    enr_state *s = NULL;
    enr_pstate ps, back;
    struct stat sb;
    int found;

    assert_non_null(mkdtemp(dir));
    snprintf(sub, sizeof(sub), "%s/a/b", dir);
    assert_int_equal(enr_state_open(sub, &s), ENR_OK);
    assert_int_equal(stat(sub, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/enroll.db", sub);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    assert_int_equal(enr_state_get(s, "alice", &ps, &found), ENR_OK);
    assert_int_equal(found, 0);
    enr_sched_init(&ps, T0);
    enr_pstate_set(&ps.last_error, "CA unreachable");
    enr_pstate_set(&ps.hook_status, "failed");
    ps.hook_exit = 3;
    ps.cert_not_after = T0 + 90 * 86400;
    assert_int_equal(enr_state_put(s, &ps), ENR_OK);
    assert_int_equal(enr_state_event(s, "alice", "enrolled", "serial 01"), ENR_OK);
    enr_state_close(s);

    assert_int_equal(enr_state_open(sub, &s), ENR_OK);
    assert_int_equal(enr_state_get(s, "alice", &back, &found), ENR_OK);
    assert_int_equal(found, 1);
    assert_int_equal(back.enroll_time, ps.enroll_time);
    assert_int_equal(back.renew_time, ps.renew_time);
    assert_string_equal(back.last_error, "CA unreachable");
    assert_string_equal(back.hook_status, "failed");
    assert_string_equal(back.state, "new");
    assert_int_equal(back.hook_exit, 3);
    assert_int_equal(back.cert_not_after, T0 + 90 * 86400);
    assert_int_equal(enr_state_lock(s), 0);
    enr_state_unlock(s);
    enr_state_close(s);
    enr_pstate_clear(&ps);
    enr_pstate_clear(&back);
    snprintf(path, sizeof(path), "rm -rf %s", dir);
    assert_int_equal(system(path), 0);
}

static void
test_parse_time(void **st)
{
    time_t t;
    char b[32];

    assert_int_equal(enr_parse_time("1800000000", &t), 0);
    assert_int_equal(t, 1800000000);
    assert_int_equal(enr_parse_time("@1800000000", &t), 0);
    assert_int_equal(enr_parse_time("2027-01-15T08:00:00Z", &t), 0);
    assert_string_equal(enr_fmt_time(t, b, sizeof(b)), "2027-01-15T08:00:00Z");
    assert_int_equal(enr_parse_time("2027-01-15", &t), 0);
    assert_string_equal(enr_fmt_time(t, b, sizeof(b)), "2027-01-15T00:00:00Z");
    assert_int_equal(enr_parse_time("2027-13-45", &t), -1);
    assert_int_equal(enr_parse_time("soon", &t), -1);
    enr_clock_set(1234);
    assert_int_equal(enr_now(), 1234);
    assert_true(enr_clock_is_fake());
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_hour),      cmocka_unit_test(test_daily),
        cmocka_unit_test(test_after_and_retry), cmocka_unit_test(test_state_db),
        cmocka_unit_test(test_parse_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
