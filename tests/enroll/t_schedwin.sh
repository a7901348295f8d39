# [schedule] (docs/enrollment.md "Schedule and retry"), in simulated time
# (run --until, TZ=UTC): `window = 02:00-04:00` puts every enrollment and
# renewal check after the one at start inside the window; `interval = 6h`
# checks every six hours; status says when the next check is and why; an
# invalid window or interval is a precise profile error.
. "$(dirname "$0")/lib.sh"
export TZ=UTC
ca_init
scep_start
profile alice "[schedule]" "window = 02:00-04:00"
profile bob "[schedule]" "interval = 6h"
T0=$(now_epoch)
export EVERTOKEN_ENROLL_FAKE_TIME=$T0
echo "$T0" >"$CA/now"
enr run --until $((T0 + 3 * 86400)) 2>"$T/run.err" || die "run: $(cat "$T/run.err")"
for n in alice bob; do enr history "$n" >"$T/h.$n"; done
python3 - "$T/h.alice" "$T/h.bob" "$T0" <<'PY' || die "schedule: $(cat "$T/h.alice" "$T/h.bob")"
import sys, datetime
t0 = int(sys.argv[3])
def ts(s): return int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp())
def checks(f):
    return [(ts(l.split()[0]), l.split()[2]) for l in open(f) if l.split()[2] in ("enroll", "renew")]
a = checks(sys.argv[1])
assert a[0] == (t0, "enroll"), a[0]
later = a[1:]
assert len(later) >= 4, later                                    # two a day at least over 3 days
for t, k in later:
    assert 2 * 3600 <= t % 86400 < 4 * 3600, (k, datetime.datetime.utcfromtimestamp(t))
b = checks(sys.argv[2])
enr = [t for t, k in b[1:] if k == "enroll"]
assert len(enr) >= 10, enr                                       # every 6 h over 3 days
gaps = {y - x for x, y in zip(enr, enr[1:])}
assert gaps == {6 * 3600}, gaps
PY
enr status --json >"$T/st.json" || true
python3 - "$T/st.json" <<'PY' || die "status: $(cat "$T/st.json")"
import json, sys
p = {x["profile"]: x for x in json.load(open(sys.argv[1]))["profiles"]}
assert "window 02:00-04:00" in p["alice"]["next_check_why"], p["alice"]
assert "every 21600s" in p["bob"]["next_check_why"], p["bob"]
PY
ok "window: every check after the first inside 02:00-04:00; interval: every 6 h; status says why"

# Invalid schedules: precise errors.
mkdir -p "$T/bad"
for w in "window = 04:00-04:00|empty window" "window = 25:00-01:00|hours 00..23" "window = 2-4|not a window HH:MM-HH:MM" "interval = 1m|between 5m and 7d"; do
    line=${w%%|*} msg=${w#*|}
    printf '[ca]\nurl = %s\nanchors = %s\nsecret_file = %s\n[certificate]\nsubject = CN=x\n[token]\nuri = pkcs11:token=%s\nmodule = %s\n[schedule]\n%s\n' \
        "$SCEP_URL" "$CA/ca.pem" "$T/challenge" "$LABEL" "$MOD" "$line" >"$T/bad/x.conf"
    rc=0; enr validate "$T/bad/x.conf" >/dev/null 2>"$T/v.err" || rc=$?
    [ "$rc" = 3 ] || die "$line: exit $rc"
    grep -q "x.conf:11: \[schedule\] ${line%% *}: .*$msg" "$T/v.err" || die "$line: $(cat "$T/v.err")"
done
# A check with such a profile changes nothing: no request, no state row.
n_req=$(grep -c PKCSReq "$CA/requests.log" || true)
printf '[ca]\nurl = %s\nanchors = %s\nsecret_file = %s\n[certificate]\nsubject = CN=x\n[token]\nuri = pkcs11:token=%s;object=x\nmodule = %s\npin_file = %s\n[schedule]\nwindow = 25:00-01:00\n' \
    "$SCEP_URL" "$CA/ca.pem" "$T/challenge" "$LABEL" "$MOD" "$T/pin" >"$T/bad/x.conf"
rc=0; enr check "$T/bad/x.conf" >/dev/null 2>"$T/cx.err" || rc=$?
[ "$rc" = 3 ] && grep -q "x.conf:.*\[schedule\] window: .*hours 00..23" "$T/cx.err" || die "check of an invalid window: exit $rc: $(cat "$T/cx.err")"
[ "$(grep -c PKCSReq "$CA/requests.log" || true)" = "$n_req" ] || die "a request was sent for an invalid profile"
[ "$(count_objects Certificate x)" = 0 ] || die "token changed: $(token_objects)"
[ "$(python3 -c 'import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM profile_state WHERE profile = ?", ("x",)).fetchone()[0])' "$STATE/enroll.db")" = 0 ] ||
    die "the invalid profile got a state row"
ok "invalid window and interval: FILE:LINE errors; a check with one changes nothing"
