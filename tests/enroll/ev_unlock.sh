# The service and the token's login cache (docs/enrollment.md, "Unlock: the
# check at once": an enrollment check at once after the token is unlocked;
# issue 6: the helper renewing unattended). The profile has no pin_file and the token's policy is
# login_cache=user:600. The real-time service (run --unlock-poll 1):
#  1. finds the token locked: waits, says it needs a login (log, status,
#     notification), and does not spin while it waits;
#  2. `evertoken unlock` (PIN on stdin): enrolls within seconds, unattended;
#     status and history say so;
#  3. `evertoken lock`, then a renewal check finds the token locked again and
#     waits; the next `evertoken unlock` lets the service renew by itself.
# Nothing in this test logs in with the PIN while the token should be locked
# (a PIN login fills the cache).
. "$(dirname "$0")/lib.sh"
[ "$ENR_TOKEN_KIND" = evertoken ] || die "evertoken only"
ca_init
scep_start
"$CLI" settings --token "$LABEL" --pin "file:$T/pin" login_cache=user:600 >/dev/null ||
    die "cannot set the login cache policy"
"$CLI" lock --token "$LABEL" >/dev/null # the settings login filled nothing, but be sure
# window_days = 365 > the 90-day lifetime: every renewal check renews.
profile alice "[renewal]" "window_days = 365"
sed -i '/^pin_file = /d' "$PROFILES/alice.conf"
field() { enr status --json | python3 -c 'import json,sys; p=[p for p in json.load(sys.stdin)["profiles"] if p["profile"]=="alice"][0]; print(p[sys.argv[1]])' "$1"; }
wait_log() { # PATTERN SECONDS: wait for PATTERN in the service log
    for _ in $(seq $(($2 * 10))); do grep -q "$1" "$T/svc.err" && return 0; sleep 0.1; done
    return 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# (the binary itself in the background, so $! is its pid)
LD_PRELOAD=${ET_PRELOAD:-} "$ENROLL_BIN" --profiles "$PROFILES" --state-dir "$STATE" run --unlock-poll 1 2>"$T/svc.err" &
svc=$!
ET_PIDS+=("$svc")

# 1. Locked: the service waits and says why.
wait_log "PIN needed" 30 || die "the service did not report the locked token: $(cat "$T/svc.err")"
[ "$(field state)" = pin-needed ] || die "state: $(enr status --json)"
[ "$(field level_reason)" = "no certificate" ] || die "level: $(enr status --json)"
{ enr status || true; } | grep -q "^alice .* pin-needed " || die "status table: $(enr status)"
[ "$(grep -c "^pin-needed|alice|PIN needed" "$T/notify.log")" = 1 ] || die "want one pin-needed notification: $(cat "$T/notify.log")"
c0=$(cpu_ticks "$svc")
sleep 3
c1=$(cpu_ticks "$svc")
# Three one-second looks at the token: a few milliseconds each. A busy loop
# would use all of the 300 ticks.
[ $((c1 - c0)) -lt 100 ] || die "the waiting service used $((c1 - c0)) CPU ticks in 3 s"
! grep -q "profile alice: enrolled" "$T/svc.err" || die "enrolled without a login"
[ "$(field state)" = pin-needed ] || die "state changed while locked: $(enr status --json)"
ok "locked token: the service waits (pin-needed, notified once), $((c1 - c0)) CPU ticks in 3 s"

# 2. Unlock: the service enrolls at once, unattended.
t0=$(date +%s)
"$CLI" unlock --token "$LABEL" <"$T/pin" >/dev/null || die "evertoken unlock failed"
wait_log "profile alice: enrolled" 20 || die "no enrollment after the unlock: $(cat "$T/svc.err")"
dt=$(($(date +%s) - t0))
[ $dt -le 10 ] || die "the enrollment came $dt s after the unlock"
grep -q "profile alice: the token is unlocked (a login is usable now); checking at once" "$T/svc.err" ||
    die "the unlock was not noticed as such: $(cat "$T/svc.err")"
# The log line comes before the check's state is written: wait for it.
for _ in $(seq 100); do [ "$(field last_result)" = enrolled ] && break; sleep 0.1; done
[ "$(field state)" = valid ] && [ "$(field last_result)" = enrolled ] && [ "$(field last_error)" = None ] ||
    die "status after the unlock: $(enr status --json)"
[ "$(field rollover)" = native ] || die "rollover: $(enr status --json)"
enr history alice | grep -q " alice unlocked login usable" || die "history: $(enr history alice)"
grep -q "^enrolled|alice|" "$T/notify.log" || die "enrollment not notified"
s1=$(token_serial alice)
cred_works alice || die "the enrolled credential does not work"
ok "evertoken unlock: enrolled ${dt}s later by the waiting service"

# 3. Lock again: the next check (a renewal check, here run by hand) needs a
# login and waits; the service renews once the token is unlocked.
"$CLI" lock --token "$LABEL" >/dev/null
# (the service's own daily renewal check, drawn within the first hour, may
# have run while the token was unlocked; none may succeed from here on)
renewals=$(grep -c "profile alice: renewed" "$T/svc.err" || true)
rc=0; enr renew alice 2>"$T/r.err" || rc=$?
[ "$rc" = 6 ] || die "renewal check with the token locked: exit $rc, want 6: $(cat "$T/r.err")"
grep -q "PIN needed" "$T/r.err" || die "not explained: $(cat "$T/r.err")"
[ "$(field state)" = pin-needed ] || die "state after lock: $(enr status --json)"
[ "$(field level_reason)" = "waiting for a login: unlock the token (PIN needed)" ] || die "level: $(enr status --json)"
sleep 2
[ "$(grep -c "profile alice: renewed" "$T/svc.err" || true)" = "$renewals" ] || die "renewed while locked: $(cat "$T/svc.err")"
t0=$(date +%s)
"$CLI" unlock --token "$LABEL" <"$T/pin" >/dev/null || die "second unlock failed"
for _ in $(seq 200); do [ "$(grep -c "profile alice: renewed" "$T/svc.err" || true)" -gt "$renewals" ] && break; sleep 0.1; done
[ "$(grep -c "profile alice: renewed" "$T/svc.err" || true)" -gt "$renewals" ] || die "no renewal after the second unlock: $(cat "$T/svc.err")"
dt=$(($(date +%s) - t0))
[ $dt -le 10 ] || die "the renewal came $dt s after the unlock"
# The log line comes before the check's state is written (notifications run
# in between): wait for the state rather than race it.
for _ in $(seq 100); do [ "$(field state)" = valid ] && [ "$(field last_result)" = renewed ] && break; sleep 0.1; done
[ "$(field state)" = valid ] && [ "$(field last_result)" = renewed ] || die "status after renewal: $(enr status --json)"
[ "$(token_serial alice)" != "$s1" ] || die "serial unchanged"
cred_works alice || die "the renewed credential does not work"
[ "$(enr history alice | grep -c " alice unlocked ")" = 2 ] || die "history: $(enr history alice)"
ok "evertoken lock: the renewal check waited; after unlock the service renewed in ${dt}s, unattended"

kill -TERM "$svc"
rc=0; wait "$svc" || rc=$?
[ "$rc" = 0 ] || die "service exit $rc"
grep -q "service stopped" "$T/svc.err" || die "no clean stop"
