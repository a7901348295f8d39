# The schedule (docs/enrollment.md "Schedule and retry"): at first start an enrollment check at
# once, then one random time within the first hour for the enrollment check
# and another for the renewal check, each repeated daily at its time of day.
# Driven by the service loop in simulated time (run --until), no sleeping.
. "$(dirname "$0")/lib.sh"
ca_init
scep_start
profile alice
T0=$(now_epoch)
export EVERTOKEN_ENROLL_FAKE_TIME=$T0
echo "$T0" >"$CA/now"
enr run --until $((T0 + 3 * 86400 + 3600)) 2>"$T/run.err" || die "run: $(cat "$T/run.err")"
[ "$(count_objects Certificate alice)" = 1 ] || die "not enrolled at start"
enr history alice >"$T/h.txt"
python3 - "$T/h.txt" "$T0" <<'PY' || die "schedule wrong: $(cat "$T/h.txt")"
import sys, datetime
t0 = int(sys.argv[2])
def ts(s): return int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp())
ev = [l.split() for l in open(sys.argv[1])]
checks = [(ts(e[0]), e[2]) for e in ev if e[2] in ("enroll", "renew", "retry", "check")]
assert all(r == "ok" for r in [e[3] for e in ev if e[2] in ("enroll", "renew")]), ev
assert checks[0] == (t0, "enroll"), checks[0]                          # at once at start
enroll = [t for t, k in checks[1:] if k == "enroll"]
renew = [t for t, k in checks if k == "renew"]
assert len(enroll) == 4 and len(renew) == 4, (enroll, renew)           # days 0..3
e0, r0 = enroll[0], renew[0]
assert t0 <= e0 < t0 + 3600 and t0 <= r0 < t0 + 3600, (e0 - t0, r0 - t0)
assert enroll == [e0 + d * 86400 for d in range(4)], enroll            # daily, same time
assert renew == [r0 + d * 86400 for d in range(4)], renew
assert not [k for _, k in checks if k == "retry"]
PY
enr status --json >"$T/st.json" || die "status"
grep -q '"state": "valid"' "$T/st.json" || die "state: $(cat "$T/st.json")"
ok "enrollment check at start, then daily random times within the first hour"

# A second service start does not draw new times (they are in the state DB).
before=$(enr status --json | python3 -c 'import json,sys; p=json.load(sys.stdin)["profiles"][0]; print(p["enroll_check_time"], p["renew_check_time"])')
export EVERTOKEN_ENROLL_FAKE_TIME=$((T0 + 3 * 86400 + 3700))
enr run --until $((T0 + 4 * 86400 + 3600)) 2>>"$T/run.err" || die "second run"
after=$(enr history alice | awk '$3=="enroll"||$3=="renew"{print $1}' | tail -2)
python3 - "$T0" $before $after <<'PY' || die "times of day changed: $before / $after"
import sys, datetime
def ts(s): return int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp())
b = [ts(x) % 86400 for x in sys.argv[2:4]]
a = [ts(x) % 86400 for x in sys.argv[4:6]]
assert sorted(a) == sorted(b), (a, b)
PY
ok "daily times survive a restart"

# The real service (real clock): enrolls a new profile at once, then sleeps;
# SIGTERM stops it cleanly within a moment.
profile bob
unset EVERTOKEN_ENROLL_FAKE_TIME
rm -f "$CA/now"
# (the binary itself in the background, so $! is its pid, not a subshell's)
"$ENROLL_BIN" --profiles "$PROFILES" --state-dir "$STATE" run 2>"$T/svc.err" &
svc=$!
ET_PIDS+=("$svc")
# Watch the log, not the token (no second process on the token meanwhile).
for _ in $(seq 600); do grep -q "profile bob: enrolled" "$T/svc.err" && break; sleep 0.1; done
grep -q "profile bob: enrolled" "$T/svc.err" || die "the service did not enroll bob: $(cat "$T/svc.err")"
kill -TERM "$svc"
for _ in $(seq 100); do kill -0 "$svc" 2>/dev/null || break; sleep 0.05; done
! kill -0 "$svc" 2>/dev/null || die "the service did not stop on SIGTERM"
rc=0; wait "$svc" || rc=$?
[ "$rc" = 0 ] || die "service exit code $rc"
grep -q "service stopped" "$T/svc.err" || die "no clean stop: $(cat "$T/svc.err")"
[ "$(count_objects Certificate bob)" = 1 ] || die "bob's certificate not in the token: $(token_objects)"
ok "service: new profile enrolled at once, SIGTERM stops it"
