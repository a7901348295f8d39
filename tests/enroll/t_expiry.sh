# Expiry warnings that never go silent: with the token locked (no PIN),
# absent, or the renewal pending at the CA, the 30- and 10-day warnings and
# the final "expired" notice still come, once per threshold (injectable
# clock: 31, 30, 29, 11, 10 and 0 days left), each saying why renewal has not
# happened and what to do; the expiry is read from the public certificate
# (no PIN). `status` computes the same days left. When the problem is solved
# the next check succeeds and `recovered` supersedes the failure.
. "$(dirname "$0")/lib.sh"
ca_init
scep_start
NORMAL_URL=$SCEP_URL
at() { export EVERTOKEN_ENROLL_FAKE_TIME=$1; echo "$1" >"$CA/now"; }
NOW=$(now_epoch)
at "$NOW"
profile alice "[renewal]" "warn_days = 30, 10"
profile bob
profile carol
enr enroll 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
notafter() { date -d "$(token_cert "$1" | openssl x509 -noout -enddate | sed 's/notAfter=//')" +%s; }
NA_A=$(notafter alice)
NA_B=$(notafter bob)
NA_C=$(notafter carol)

# alice: the token is locked (no PIN source). bob: the token is absent.
# carol: the CA holds every request (a second CA endpoint answering PENDING).
sed -i '/^pin_file = /d' "$PROFILES/alice.conf"
sed -i "s|^uri = .*|uri = pkcs11:token=gone;object=bob|" "$PROFILES/bob.conf"
scep_start --pending 1000
sed -i "s|^url = .*|url = $SCEP_URL|" "$PROFILES/carol.conf"
n_events() { grep -c "^$1|$2|" "$T/notify.log" || true; }

# 31 days left: nothing about expiry yet (the failures themselves are notified).
at $((NA_A - 31 * 86400))
expect_rc 6 enr check alice
grep -q "^pin-needed|alice|" "$T/notify.log" || die "pin-needed not notified"
[ "$(n_events expiry-warning alice)" = 0 ] || die "warned at 31 days: $(cat "$T/notify.log")"
# 30 days: the warning, with the reason and what to do, the PIN never asked.
at $((NA_A - 30 * 86400))
expect_rc 6 enr retry alice
grep -q "^expiry-warning|alice|the certificate .* expires in 30 days .*the token is locked.*evertoken unlock" "$T/notify.log" ||
    die "no 30-day warning for the locked token: $(cat "$T/notify.log")"
# 29 and 11 days: no repetition (once per threshold, even though pin-needed repeats nothing).
for d in 29 11; do
    at $((NA_A - d * 86400))
    expect_rc 6 enr retry alice
done
[ "$(n_events expiry-warning alice)" = 1 ] || die "30-day warning repeated: $(grep expiry "$T/notify.log")"
# status: the same days left, the level from the same computation.
at $((NA_A - 11 * 86400))
rc=0; enr status --json >"$T/st.json" || rc=$?
python3 - "$T/st.json" <<'PY' || die "status: $(cat "$T/st.json")"
import json, sys
p = [p for p in json.load(open(sys.argv[1]))["profiles"] if p["profile"] == "alice"][0]
assert p["days_left"] == 11 and p["level"] >= 1, p
PY
at $((NA_A - 10 * 86400))
expect_rc 6 enr retry alice
grep -q "^expiry-warning|alice|.* expires in 10 days .*evertoken unlock" "$T/notify.log" ||
    die "no 10-day warning: $(grep alice "$T/notify.log")"
[ "$(n_events expiry-warning alice)" = 2 ] || die "warnings: $(grep expiry "$T/notify.log")"
at "$NA_A"
expect_rc 6 enr retry alice
grep -q "^expired|alice|the certificate .* expired on .*evertoken unlock" "$T/notify.log" ||
    die "no expired notice: $(grep alice "$T/notify.log")"
expect_rc 6 enr retry alice
[ "$(n_events expired alice)" = 1 ] || die "expired notice repeated"
ok "locked token: warnings at 30 and 10 days and the expired notice, once each, saying 'evertoken unlock'"

# The token is unlocked again (pin_file back): a new certificate, and the
# failure is superseded by 'recovered'.
sed -i "s|^\\[hooks\\]|[token]\\npin_file = $T/pin\\n[hooks]|" "$PROFILES/alice.conf"
enr check alice 2>"$T/rec.err" || die "check after unlock: $(cat "$T/rec.err")"
grep -q "^enrolled|alice|" "$T/notify.log" || die "not re-enrolled"
grep -q "^recovered|alice|" "$T/notify.log" || die "no recovered event: $(grep alice "$T/notify.log")"
ok "unlocked: re-enrolled and 'recovered' notified"

# bob: the token is absent; the warnings come from the certificate the
# helper knows, and say to connect the token.
at $((NA_B - 31 * 86400))
expect_rc 6 enr check bob
[ "$(n_events expiry-warning bob)" = 0 ] || die "absent token: warned at 31 days: $(grep bob "$T/notify.log")"
at $((NA_B - 30 * 86400))
expect_rc 6 enr retry bob
grep -q "^expiry-warning|bob|.* expires in 30 days .*the token is not present: connect it" "$T/notify.log" ||
    die "no warning for the absent token: $(grep bob "$T/notify.log")"
at $((NA_B - 11 * 86400))
expect_rc 6 enr retry bob
[ "$(n_events expiry-warning bob)" = 1 ] || die "absent token: 30-day warning repeated at 11 days"
at $((NA_B - 10 * 86400))
expect_rc 6 enr retry bob
[ "$(n_events expiry-warning bob)" = 2 ] || die "absent token: warnings $(grep bob "$T/notify.log")"
at "$NA_B"
expect_rc 6 enr retry bob
grep -q "^expired|bob|the certificate .* expired on .*the token is not present: connect it" "$T/notify.log" ||
    die "absent token: no expired notice: $(grep bob "$T/notify.log")"
expect_rc 6 enr retry bob
[ "$(n_events expired bob)" = 1 ] || die "absent token: expired notice repeated"
[ "$(n_events token-absent bob)" = 1 ] || die "token-absent not once per streak"
ok "absent token: nothing at 31 days, warnings at 30 and 10 days (not at 11), the expired notice once"

# carol: the renewal waits for the CA's approval.
at $((NA_C - 31 * 86400))
enr check carol 2>/dev/null || true # renewal window not open yet, or already pending
[ "$(n_events expiry-warning carol)" = 0 ] || die "pending: warned at 31 days: $(grep carol "$T/notify.log")"
at $((NA_C - 30 * 86400))
expect_rc 5 enr check carol
grep -q "^expiry-warning|carol|.* expires in 30 days .*the CA holds the renewal request for approval" "$T/notify.log" ||
    die "no warning while pending: $(grep carol "$T/notify.log")"
at $((NA_C - 11 * 86400))
expect_rc 5 enr retry carol
[ "$(n_events expiry-warning carol)" = 1 ] || die "pending: 30-day warning repeated at 11 days"
at $((NA_C - 10 * 86400))
expect_rc 5 enr retry carol
[ "$(n_events expiry-warning carol)" = 2 ] || die "pending: warnings $(grep carol "$T/notify.log")"
at "$NA_C"
rc=0; enr retry carol || rc=$?
[ "$rc" != 0 ] || die "pending: the expired credential reported success"
grep -q "^expired|carol|the certificate .* expired on .*the CA holds the renewal request for approval" "$T/notify.log" ||
    die "pending: no expired notice: $(grep carol "$T/notify.log")"
[ "$(n_events expired carol)" = 1 ] || die "pending: expired notices $(grep carol "$T/notify.log")"
ok "pending request: nothing at 31 days, warnings at 30 and 10 days (not at 11), the expired notice once"
