# A CA that cannot be reached: one notification, then silent retries every
# 300 s (the service loop in simulated time, no sleeping), `retry` by hand
# once the CA is back, return to the daily schedule; expiry warnings at 30
# and 10 days while renewal keeps failing, and the status exit codes.
. "$(dirname "$0")/lib.sh"
ca_init
scep_start
port=$SCEP_PORT
scep_stop # the CA is down
profile alice
T0=$(now_epoch)
export EVERTOKEN_ENROLL_FAKE_TIME=$T0
echo "$T0" >"$CA/now"

enr run --until $((T0 + 7200)) 2>"$T/run1.err" || die "run: $(cat "$T/run1.err")"
[ "$(grep -c '^network-failure|alice|' "$T/notify.log")" = 1 ] || die "want exactly one network notification: $(cat "$T/notify.log")"
grep -q "retrying every 300 s" "$T/notify.log" || die "notification does not say it retries"
enr history alice >"$T/h1.txt"
# Retries: one every 300 s after the first failure.
python3 - "$T/h1.txt" "$T0" <<'PY' || die "retry times wrong: $(cat "$T/h1.txt")"
import sys, datetime
t0 = int(sys.argv[2])
def ts(s): return int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp())
ev = [l.split() for l in open(sys.argv[1])]
checks = [(ts(e[0]), e[2]) for e in ev if e[2] in ("enroll", "renew", "retry", "check") and e[3] == "network"]
retries = [t for t, k in checks if k == "retry"]
assert checks[0][0] == t0, checks[:3]                       # at start, at once
assert len(retries) >= 20, len(retries)
times = [t for t, _ in checks]
gaps = [b - a for a, b in zip(times, times[1:])]
assert max(gaps) == 300 and min(gaps) > 0, gaps            # never more than 300 s apart
assert checks[1][0] - t0 <= 300, checks[1][0] - t0   # (a daily check may come first)
assert all(t <= t0 + 7200 for t, _ in checks)
PY
[ "$(count_objects Certificate alice)" = 0 ] || die "certificate without a CA?"
rc=0; enr status >/dev/null || rc=$?
[ "$rc" = 2 ] || die "status without a certificate: exit $rc, want 2"
ok "network failure: notified once, retried every 300 s"

# The CA is back; `retry` succeeds at once and the schedule is daily again.
scep_start --port "$port"
export EVERTOKEN_ENROLL_FAKE_TIME=$((T0 + 7300))
enr retry 2>"$T/retry.err" || die "retry: $(cat "$T/retry.err")"
[ "$(count_objects Certificate alice)" = 1 ] || die "not enrolled after retry"
enr status --json >"$T/st.json" || die "status after success: exit $?"
python3 - "$T/st.json" "$T0" <<'PY' || die "schedule after success: $(cat "$T/st.json")"
import json, sys, datetime
p = json.load(open(sys.argv[1]))["profiles"][0]
assert p["retry_at"] is None and p["attempts"] == 0 and p["last_error"] is None, p
nxt = datetime.datetime.strptime(p["next_check"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
t0 = int(sys.argv[2])
assert t0 + 86400 <= nxt < t0 + 86400 + 3600, (nxt - t0)       # tomorrow, at the daily time
PY
grep -q "^enrolled|alice|" "$T/notify.log" || die "success not notified"
ok "retry by hand after the CA came back; daily schedule resumed"

# Renewal keeps failing (CA down): warnings at 30 and 10 days, once each.
scep_stop
export EVERTOKEN_ENROLL_FAKE_TIME=$((T0 + 61 * 86400))
rc=0; enr check 2>/dev/null || rc=$?
[ "$rc" = 4 ] || die "renewal with the CA down: exit $rc, want 4"
grep -q "^expiry-warning|alice|.*expires in 29 days" "$T/notify.log" || die "no 30-day warning: $(cat "$T/notify.log")"
rc=0; enr status >/dev/null || rc=$?
[ "$rc" = 1 ] || die "status 29 days before expiry with failures: exit $rc, want 1"
export EVERTOKEN_ENROLL_FAKE_TIME=$((T0 + 62 * 86400))
enr check 2>/dev/null || true
[ "$(grep -c '^expiry-warning|alice|' "$T/notify.log")" = 1 ] || die "30-day warning repeated"
export EVERTOKEN_ENROLL_FAKE_TIME=$((T0 + 81 * 86400))
enr check 2>/dev/null || true
grep -q "^expiry-warning|alice|.*expires in 9 days" "$T/notify.log" || die "no 10-day warning: $(cat "$T/notify.log")"
[ "$(grep -c '^expiry-warning|alice|' "$T/notify.log")" = 2 ] || die "warnings: $(grep expiry "$T/notify.log")"
rc=0; enr status >/dev/null || rc=$?
[ "$rc" = 2 ] || die "status 9 days before expiry with failures: exit $rc, want 2"
ok "expiry warnings at 30 and 10 days; status exit codes 1 and 2"
