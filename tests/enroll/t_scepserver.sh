# Interoperability with a SCEP server not written for these tests: Debian's
# `scep` package (micromdm scepserver). It listens on all interfaces, so this
# test needs its own network namespace (lib.sh enters one when run as root)
# and skips otherwise. First enrollment with the challenge, renewal by
# RenewalReq signed with the old key, and the server's early-renewal refusal.
. "$(dirname "$0")/lib.sh"
need scepserver
[ -n "${ENR_IN_NETNS:-}" ] || { echo "SKIP: no private network namespace for scepserver" >&2; exit 77; }
D=$T/depot
(cd "$T" && scepserver ca -init -depot "$D" -keySize 2048 -organization "evertoken tests" >/dev/null 2>&1) ||
    die "scepserver ca -init failed"
start_scepserver() {
    # The challenge is on scepserver's own command line (a test-only secret).
    scepserver -depot "$D" -port 18080 -challenge let-me-in -allowrenew "$1" >>"$T/scepserver.log" 2>&1 &
    SS_PID=$!
    ET_PIDS+=("$SS_PID")
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:18080/scep?operation=GetCACaps" && break; sleep 0.05; done
}
stop_scepserver() { kill "$SS_PID"; wait "$SS_PID" 2>/dev/null || true; }
need curl
start_scepserver 0
SCEP_URL=http://127.0.0.1:18080/scep
openssl x509 -in "$D/ca.pem" -noout >/dev/null 2>&1 || openssl x509 -inform DER -in "$D/ca.pem" -out "$D/ca.pem"
cp "$D/ca.pem" "$CA/ca.pem"
# scepserver copies no SANs and adds its own subject attributes only from the CSR.
profile alice
sed -i '/^san = /d' "$PROFILES/alice.conf"
enr enroll 2>"$T/e.err" || die "enroll against scepserver: $(cat "$T/e.err") $(tail -5 "$T/scepserver.log")"
[ "$(count_objects Certificate alice)" = 1 ] || die "no certificate: $(token_objects)"
cred_works alice || die "credential from scepserver does not work"
s1=$(token_serial alice)
ok "first enrollment against Debian's scepserver"

enr renew --force 2>"$T/r.err" || die "renewal against scepserver: $(cat "$T/r.err") $(tail -5 "$T/scepserver.log")"
grep -q "sending RenewalReq" "$T/r.err" || die "no RenewalReq: $(cat "$T/r.err")"
[ "$(token_serial alice)" != "$s1" ] && [ "$(count_objects Certificate alice)" = 1 ] || die "not renewed: $(token_objects)"
cred_works alice || die "renewed credential does not work"
ok "renewal by RenewalReq signed with the old key, accepted by scepserver"

# scepserver refuses renewal earlier than -allowrenew days before expiry.
stop_scepserver
start_scepserver 14
before=$(token_objects)
rc=0; enr renew --force 2>"$T/x.err" || rc=$?
[ "$rc" = 7 ] || die "early renewal: exit $rc, want 7: $(cat "$T/x.err")"
grep -q "the CA refused the request" "$T/x.err" || die "refusal not explained: $(cat "$T/x.err")"
# (scepserver's -allowrenew refuses a DN it issued until n days before expiry.)
grep -q 'failed to sign CSR.*already exists' "$T/scepserver.log" || die "refused for another reason: $(tail -3 "$T/scepserver.log")"
[ "$(token_objects)" = "$before" ] || die "token changed: $(token_objects)"
ok "scepserver's early-renewal refusal surfaced, token unchanged"
