# ACME Renewal Information (RFC 9773). Debian's pebble 2.4 has none, so the
# project's front (tests/enroll/acme_front.py) passes everything to pebble
# and adds renewalInfo with the windows this test sets:
#  - the certificate identifier the helper asks for is AKI.serial (checked
#    against openssl's view of the certificate); the first order replaces
#    nothing;
#  - a window in the future: no renewal now; status shows the window and
#    the drawn renewal time (text and JSON);
#  - at the drawn time (the fake clock) the check renews, and the new order
#    names the old certificate in "replaces";
#  - Retry-After: the stored answer is used until then (no second fetch);
#  - a window moved into the past (mass revocation): renewed at the next
#    check.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/acmelib.sh"
need xxd
acme_init
acme_start
acme_front_start
now=$(date +%s)
acme_window $((now + 10 * 86400)) $((now + 11 * 86400))
acme_profile alice "agree_tos = true"
enr -v enroll alice 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
grep -q "^newOrder replaces=-$" "$ACME_DIR/front.log" || die "the first order replaces something: $(cat "$ACME_DIR/front.log")"
token_cert alice >"$T/c1.pem"
id1=$(cert_id "$T/c1.pem")
[ -n "$id1" ] || die "no certificate id"

enr -v check alice 2>"$T/c.err" || die "check: $(cat "$T/c.err")"
grep -q "^renewalInfo $id1\$" "$ACME_DIR/front.log" || die "renewalInfo not asked for $id1: $(cat "$ACME_DIR/front.log")"
grep -q "the CA suggests renewing between" "$T/c.err" || die "no window message: $(cat "$T/c.err")"
token_cert alice >"$T/c1b.pem"
cmp -s "$T/c1.pem" "$T/c1b.pem" || die "renewed before the window"
at=$(sed -n 's/.*"renew_at":\([0-9]*\).*/\1/p' "$STATE/acme-ari-alice.json")
[ -n "$at" ] && [ "$at" -ge $((now + 10 * 86400)) ] && [ "$at" -lt $((now + 11 * 86400)) ] ||
    die "renewal time $at not inside the window: $(cat "$STATE/acme-ari-alice.json")"
enr status >"$T/status.txt" || true
grep -q "renewal window from the CA (ACME ARI): $(date -u -d @$((now + 10 * 86400)) +%FT%TZ) .. $(date -u -d @$((now + 11 * 86400)) +%FT%TZ), renewal at $(date -u -d @"$at" +%FT%TZ)" "$T/status.txt" ||
    die "status does not show the window: $(cat "$T/status.txt")"
enr status --json >"$T/status.json" || true
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); w=d["profiles"][0]["renewal_window"]; assert w["source"]=="ari" and w["renew_at"], w' "$T/status.json" ||
    die "status --json has no renewal window: $(cat "$T/status.json")"
# ... and so do the metrics (docs/monitoring.md).
enr status --format openmetrics >"$T/metrics.txt" || die "status --format openmetrics failed"
grep -qx "evertoken_enroll_ari_window_start_seconds{kind=\"profile\",name=\"alice\"} $((now + 10 * 86400))" "$T/metrics.txt" &&
    grep -qx "evertoken_enroll_ari_window_end_seconds{kind=\"profile\",name=\"alice\"} $((now + 11 * 86400))" "$T/metrics.txt" &&
    grep -qx "evertoken_enroll_ari_renew_at_seconds{kind=\"profile\",name=\"alice\"} $at" "$T/metrics.txt" ||
    die "ARI window metrics: $(grep ari_ "$T/metrics.txt")"
ok "ARI: certificate id AKI.serial, a future window keeps the certificate, status and metrics show the window and the drawn time"

# At the drawn time: renewed, replacing the old certificate.
enr -v --now "@$at" check alice 2>"$T/r.err" || die "check at $at: $(cat "$T/r.err")"
token_cert alice >"$T/c2.pem"
! cmp -s "$T/c1.pem" "$T/c2.pem" || die "not renewed at the drawn time: $(cat "$T/r.err")"
grep -q "^newOrder replaces=$id1\$" "$ACME_DIR/front.log" || die "the new order does not replace $id1: $(cat "$ACME_DIR/front.log")"
grep -q "the new order replaces certificate $id1 (ARI)" "$T/r.err" || die "no replaces message"
ok "renewed at the drawn time inside the window; the new order names the old certificate (replaces)"

# Retry-After: one fetch, then the stored answer until the time it names.
id2=$(cert_id "$T/c2.pem")
acme_window $((now + 20 * 86400)) $((now + 21 * 86400)) 21600
enr -v check alice 2>"$T/a.err" || die "check: $(cat "$T/a.err")"
n1=$(grep -c "^renewalInfo $id2\$" "$ACME_DIR/front.log")
enr -v check alice 2>"$T/b.err" || die "check: $(cat "$T/b.err")"
n2=$(grep -c "^renewalInfo $id2\$" "$ACME_DIR/front.log")
[ "$n1" = 1 ] && [ "$n2" = 1 ] || die "renewalInfo fetched $n1 then $n2 times despite Retry-After"
grep -q "ARI window from the CA kept until" "$T/b.err" || die "no Retry-After message: $(cat "$T/b.err")"
ok "Retry-After of the renewalInfo answer honoured"

# Mass revocation: the window moves into the past; the next check (after the
# Retry-After) renews at once.
acme_window $((now - 2 * 86400)) $((now - 86400)) 0
enr -v --now "@$((now + 21600 + 60))" check alice 2>"$T/m.err" || die "check: $(cat "$T/m.err")"
token_cert alice >"$T/c3.pem"
! cmp -s "$T/c2.pem" "$T/c3.pem" || die "a window in the past did not renew: $(cat "$T/m.err")"
grep -q "^newOrder replaces=$id2\$" "$ACME_DIR/front.log" || die "no replaces=$id2"
cred_works alice || die "alice's credential does not work"
ok "a window moved into the past renews at the next check"
