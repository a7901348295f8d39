# Renewal conditions that lead to a fresh enrollment instead of a renewal
# (docs/enrollment.md "Conditions"): a certificate revoked according to OCSP
# (a local `openssl ocsp` responder), revoked according to its CRL, expired,
# or present without its private key in this token. A good OCSP answer leaves
# a valid certificate alone.
. "$(dirname "$0")/lib.sh"
need curl
ca_init
OP=$((20000 + RANDOM % 20000))
# (Re)start the OCSP responder: it re-reads index.txt only when its mtime
# moves to a later second, so a restart is the reliable way after a change.
ocsp_start() {
    [ -n "${OCSP_PID:-}" ] && { kill "$OCSP_PID"; wait "$OCSP_PID" 2>/dev/null || true; }
    openssl ocsp -index "$CA/index.txt" -port "$OP" -rsigner "$CA/ca.pem" -rkey "$CA/ca.key" \
        -CA "$CA/ca.pem" -ignore_err 2>>"$T/ocsp.log" &
    OCSP_PID=$!
    ET_PIDS+=($OCSP_PID)
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$OP/" && break; sleep 0.05; done
}
ocsp_start
scep_start --ocsp-url "http://127.0.0.1:$OP" --crl-url self
profile alice
enr enroll alice 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
openssl x509 -in <(token_cert alice) -noout -ocsp_uri | grep -q "127.0.0.1:$OP" || die "no OCSP URL in the certificate"
s1=$(token_serial alice)

# Good according to OCSP: nothing happens.
enr check alice 2>"$T/c.err" || die "check with a good OCSP answer: $(cat "$T/c.err")"
[ "$(token_serial alice)" = "$s1" ] || die "replaced a good certificate"

# Revoked (OCSP): a fresh enrollment (PKCSReq), not a renewal.
openssl ca -config "$CA/ca.cnf" -revoke "$CA/issued/$s1.pem" 2>>"$T/ca.log" || die "revoke: $(cat "$T/ca.log")"
ocsp_start
openssl ocsp -issuer "$CA/ca.pem" -cert "$CA/issued/$s1.pem" -url "http://127.0.0.1:$OP" -CAfile "$CA/ca.pem" 2>/dev/null |
    grep -q revoked || die "the responder does not report the revocation"
enr check alice 2>"$T/r.err" || die "check of a revoked certificate: $(cat "$T/r.err")"
grep -q "enrolling (the certificate is revoked)" "$T/r.err" || die "not treated as revoked: $(cat "$T/r.err")"
! grep -q RenewalReq "$CA/requests.log" || die "a revoked certificate was renewed"
s2=$(token_serial alice)
[ "$s2" != "$s1" ] && [ "$(count_objects Certificate alice)" = 1 ] || die "not re-enrolled: $(token_objects)"
cred_works alice || die "new credential does not work"
ok "revoked (OCSP) → fresh enrollment"

# CRL only (no OCSP URL): revoked via the CRL → fresh enrollment.
scep_stop
scep_start --crl-url self
sed -i "s|^url = .*|url = $SCEP_URL|" "$PROFILES/alice.conf"
profile bob
enr enroll bob 2>"$T/eb.err" || die "enroll bob: $(cat "$T/eb.err")"
b1=$(token_serial bob)
openssl ca -config "$CA/ca.cnf" -gencrl -out "$CA/ca.crl" 2>>"$T/ca.log" || die "gencrl"
enr check bob 2>"$T/cb.err" || die "check bob (CRL good): $(cat "$T/cb.err")"
grep -q "GET crl" "$CA/requests.log" || die "CRL not fetched"
[ "$(token_serial bob)" = "$b1" ] || die "bob replaced although not revoked"
openssl ca -config "$CA/ca.cnf" -revoke "$CA/issued/$b1.pem" 2>>"$T/ca.log" || die "revoke bob"
openssl ca -config "$CA/ca.cnf" -gencrl -out "$CA/ca.crl" 2>>"$T/ca.log" || die "gencrl"
enr check bob 2>"$T/rb.err" || die "check bob (revoked): $(cat "$T/rb.err")"
grep -q "enrolling (the certificate is revoked)" "$T/rb.err" || die "CRL revocation missed: $(cat "$T/rb.err")"
[ "$(token_serial bob)" != "$b1" ] || die "bob not re-enrolled"
ok "revoked (CRL) → fresh enrollment"

# Expired → fresh enrollment.
NOW=$(now_epoch)
echo $((NOW + 100 * 86400)) >"$CA/now"
openssl ca -config "$CA/ca.cnf" -gencrl -out "$CA/ca.crl" 2>>"$T/ca.log" || die "gencrl"
b2=$(token_serial bob)
EVERTOKEN_ENROLL_FAKE_TIME=$((NOW + 100 * 86400)) enr check bob 2>"$T/x.err" || die "expired: $(cat "$T/x.err")"
grep -q "enrolling (the certificate has expired)" "$T/x.err" || die "expiry not detected: $(cat "$T/x.err")"
[ "$(token_serial bob)" != "$b2" ] || die "bob not re-enrolled after expiry"
! grep -q "RenewalReq" "$CA/requests.log" || die "an expired certificate was renewed"
rm -f "$CA/now"
ok "expired → fresh enrollment"

# Certificate present without its key in this token (e.g. copied from another
# device): not renewed here; this device enrolls its own credential.
profile carol
enr enroll carol 2>/dev/null || die "enroll carol"
c1=$(token_serial carol)
p11 --delete-object --type privkey --id "$(token_id carol)" >/dev/null 2>&1 || die "cannot delete carol's key"
enr renew --force carol 2>"$T/a.err" || die "check carol: $(cat "$T/a.err")"
grep -q "enrolling (the certificate's private key is not in this token)" "$T/a.err" || die "absent key missed: $(cat "$T/a.err")"
[ "$(token_serial carol)" != "$c1" ] && [ "$(count_objects Certificate carol)" = 1 ] || die "carol: $(token_objects)"
cred_works carol || die "carol's new credential does not work"
! grep -q "RenewalReq" "$CA/requests.log" || die "a certificate without its key was renewed"
ok "certificate without its key in this token → own enrollment"
