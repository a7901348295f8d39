# Revocation at an ACME CA, then the helper's revocation check sees it.
# Debian's pebble 2.4 has no OCSP responder, but it writes the URL it is
# given (ocspResponderURL) into every certificate's AIA and tells its
# revocation state on its management interface. The test runs OpenSSL's
# OCSP responder (`openssl ocsp`) as pebble's: signed with pebble's own
# intermediate key (management /intermediate-keys/0), its index built from
# pebble's /cert-status-by-serial/ answers — so a verdict comes from the
# CA's own state, as a field CA's responder publishes it:
#  - before: the check asks the responder (the issuer is the intermediate of
#    the kept chain), the certificate is good, nothing happens;
#  - `revoke --reason keyCompromise` (revokeCert by the certificate's key);
#    pebble reports it revoked with that reason;
#  - the next check gets "revoked" from the responder and enrolls a fresh
#    credential (new key, new serial); the event is in the history;
#  - the certificate's private key destroyed in the token: `revoke` without
#    --by-account says precisely that the key is missing (exit 6);
#    `revoke --by-account --reason superseded`: revokeCert signed by the
#    account key in the token (kid), only the certificate needed; pebble
#    reports it revoked, reason 4; with the certificate gone from the token
#    too, `revoke --by-account --cert FILE` (DER here) revokes the copy;
#    a profile whose account key is gone gets a precise error and no new
#    account.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/acmelib.sh"
OCSP_PORT=8888
ACME_OCSP_URL=http://127.0.0.1:$OCSP_PORT/
mgmt() { curl -sS --cacert "$ACME_DIR/tlsca.pem" "https://127.0.0.1:15000/$1"; }
acme_init
acme_start
acme_profile alice "agree_tos = true"
enr -v enroll alice 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
token_cert alice >"$T/c1.pem"
openssl x509 -in "$T/c1.pem" -noout -ocsp_uri | grep -qx "$ACME_OCSP_URL" ||
    die "pebble did not write the OCSP URL: $(openssl x509 -in "$T/c1.pem" -noout -ocsp_uri)"
mgmt intermediates/0 >"$T/inter.pem"
mgmt intermediate-keys/0 >"$T/inter.key"
openssl pkey -in "$T/inter.key" -noout 2>/dev/null || die "no intermediate key from pebble: $(head -c 200 "$T/inter.key")"

# The responder's index (openssl ca's format) from pebble's view of SERIAL.
ocsp_index() {
    local serial=$1 pem=$2 st exp rev reason
    st=$(mgmt "cert-status-by-serial/$(printf '%s' "$serial" | tr 'A-F' 'a-f' | sed 's/^0*//')")
    exp=$(date -u -d "$(openssl x509 -in "$pem" -noout -enddate | sed 's/notAfter=//')" +%y%m%d%H%M%SZ)
    if printf '%s' "$st" | grep -q '"Status": *"Revoked"'; then
        # pebble: "RevokedAt": "2026-12-07 15:38:55.549069712 +0000 UTC"
        rev=$(printf '%s' "$st" | sed -n 's/.*"RevokedAt": *"\([0-9-]* [0-9:]*\).*/\1/p')
        rev=$(date -u -d "$rev UTC" +%y%m%d%H%M%SZ)
        reason=$(printf '%s' "$st" | sed -n 's/.*"Reason": *\([0-9]*\).*/\1/p')
        case $reason in 1) reason=keyCompromise ;; 4) reason=superseded ;; *) reason=unspecified ;; esac
        printf 'R\t%s\t%s,%s\t%s\tunknown\t/CN=alice\n' "$exp" "$rev" "$reason" "$serial"
    else
        printf '%s' "$st" | grep -q '"Status": *"Valid"' || die "pebble's status of $serial: $st"
        printf 'V\t%s\t\t%s\tunknown\t/CN=alice\n' "$exp" "$serial"
    fi >"$T/index.txt"
}
OCSP_PID=
ocsp_start() {
    [ -n "$OCSP_PID" ] && { kill "$OCSP_PID"; wait "$OCSP_PID" 2>/dev/null || true; }
    openssl ocsp -index "$T/index.txt" -port "$OCSP_PORT" -CA "$T/inter.pem" -rsigner "$T/inter.pem" \
        -rkey "$T/inter.key" -nmin 5 >>"$T/ocsp.log" 2>&1 &
    OCSP_PID=$!
    ET_PIDS+=("$OCSP_PID")
    for _ in $(seq 100); do
        openssl ocsp -issuer "$T/inter.pem" -cert "$T/c1.pem" -url "$ACME_OCSP_URL" -noverify \
            >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    die "the OCSP responder did not start: $(cat "$T/ocsp.log")"
}
serial1=$(token_serial alice)
ocsp_index "$serial1" "$T/c1.pem"
ocsp_start
openssl ocsp -issuer "$T/inter.pem" -cert "$T/c1.pem" -url "$ACME_OCSP_URL" -CAfile "$CA/root.pem" \
    -VAfile "$T/inter.pem" 2>&1 | grep -q ": good" || die "the responder does not say good"
enr -v check alice 2>"$T/c.err" || die "check: $(cat "$T/c.err")"
! grep -q "not among the anchors\|revocation status .* unknown\|does not know" "$T/c.err" ||
    die "the revocation status was not checked: $(cat "$T/c.err")"
[ "$(token_serial alice)" = "$serial1" ] || die "a good certificate was replaced"
grep -q "HTTP POST $ACME_OCSP_URL" "$T/c.err" || die "the check did not ask the OCSP responder: $(cat "$T/c.err")"
ok "pebble's certificate names the OCSP URL; the check asked the responder (issuer: the kept intermediate) and kept the good certificate"

enr -v revoke alice --reason keyCompromise 2>"$T/v.err" || die "revoke: $(cat "$T/v.err")"
mgmt "cert-status-by-serial/$(printf '%s' "$serial1" | tr 'A-F' 'a-f' | sed 's/^0*//')" >"$T/status.json"
grep -q '"Status": *"Revoked"' "$T/status.json" || die "pebble does not report it revoked: $(cat "$T/status.json")"
ocsp_index "$serial1" "$T/c1.pem"
grep -q "^R.*keyCompromise" "$T/index.txt" || die "pebble's reason is not keyCompromise: $(cat "$T/status.json")"
ocsp_start
enr -v check alice 2>"$T/r.err" || die "check after the revocation: $(cat "$T/r.err")"
grep -q "the certificate is revoked" "$T/r.err" || die "the check did not see the revocation: $(cat "$T/r.err")"
serial2=$(token_serial alice)
[ -n "$serial2" ] && [ "$serial2" != "$serial1" ] || die "no fresh credential after the revocation"
cred_works alice || die "the fresh credential does not work"
enr history alice >"$T/h.out" 2>&1 || true
grep -q "revoked" "$T/h.out" || die "no revocation in the history: $(cat "$T/h.out")"
ok "revokeCert (keyCompromise) by the certificate key; the next check sees it revoked over OCSP and enrolls a fresh credential ($serial1 -> $serial2)"

# Revocation by the account key (kid-signed revokeCert): the account that
# ordered the certificate; looked up, never created for it. The case it
# exists for: the certificate's private key is lost (destroyed in the token),
# only the certificate and the account key remain.
ID2=$(token_id alice)
[ -n "$ID2" ] || die "no CKA_ID for alice's certificate: $(token_objects)"
p11 --delete-object --type privkey --id "$ID2" >/dev/null 2>&1 || die "cannot delete alice's private key"
[ "$(count_objects Certificate alice)" = 1 ] && [ "$(count_objects Private alice)" = 0 ] ||
    die "alice: not a certificate without its key: $(token_objects)"
expect_rc 6 enr revoke alice --reason superseded 2>"$T/k.err"
grep -q "the certificate's private key is not in token \"$LABEL\", so it cannot sign the revocation; revoke with the ACME account key instead (--by-account)" "$T/k.err" ||
    die "no precise message without the key: $(cat "$T/k.err")"
mgmt "cert-status-by-serial/$(printf '%s' "$serial2" | tr 'A-F' 'a-f' | sed 's/^0*//')" | grep -q '"Status": *"Valid"' ||
    die "revoked without a signature?"
enr -v revoke alice --by-account --reason superseded 2>"$T/a.err" || die "revoke --by-account: $(cat "$T/a.err")"
grep -q "profile alice: ACME account https://127.0.0.1:14000/my-account/" "$T/a.err" || die "no account used: $(cat "$T/a.err")"
grep -q "signed by the ACME account key" "$T/a.err" || die "not said: $(cat "$T/a.err")"
mgmt "cert-status-by-serial/$(printf '%s' "$serial2" | tr 'A-F' 'a-f' | sed 's/^0*//')" >"$T/status2.json"
grep -q '"Status": *"Revoked"' "$T/status2.json" && grep -q '"Reason": *4' "$T/status2.json" ||
    die "pebble does not report $serial2 revoked (superseded): $(cat "$T/status2.json")"
acme_profile bob "agree_tos = true"
enr enroll bob 2>"$T/b.err" || die "bob: $(cat "$T/b.err")"
# The token lost the certificate too (only a copy in a file remains):
# --by-account --cert FILE.
token_cert bob >"$T/b.pem"
serial_b=$(token_serial bob)
IDB=$(token_id bob)
p11 --delete-object --type privkey --id "$IDB" >/dev/null 2>&1 &&
    p11 --delete-object --type cert --id "$IDB" >/dev/null 2>&1 || die "cannot delete bob's credential"
expect_rc 1 enr revoke bob --by-account 2>"$T/bc.err"
grep -q "no certificate in token \"$LABEL\" to revoke (a copy of it in a file: --by-account --cert FILE)" "$T/bc.err" ||
    die "no precise message without the certificate: $(cat "$T/bc.err")"
expect_rc 3 enr revoke bob --cert "$T/b.pem" 2>"$T/bc.err"
grep -q "revoke --cert FILE needs --by-account" "$T/bc.err" || die "--cert alone: $(cat "$T/bc.err")"
openssl x509 -in "$T/b.pem" -outform DER -out "$T/b.der"
enr -v revoke bob --by-account --cert "$T/b.der" 2>"$T/bc.err" || die "revoke --by-account --cert: $(cat "$T/bc.err")"
mgmt "cert-status-by-serial/$(printf '%s' "$serial_b" | tr 'A-F' 'a-f' | sed 's/^0*//')" | grep -q '"Status": *"Revoked"' ||
    die "pebble does not report bob's $serial_b revoked"
p11 --delete-object --type privkey --label "acme-account:bob" >/dev/null 2>&1 || die "cannot delete bob's account key"
expect_rc 3 enr revoke bob --by-account --cert "$T/b.pem" 2>"$T/n.err"
grep -q 'no ACME account key "acme-account:bob" in the token' "$T/n.err" || die "no precise message: $(cat "$T/n.err")"
[ "$(count_objects Private "acme-account:bob")" = 0 ] || die "an account key was created for the revocation"
ok "certificate key destroyed: revoke says so; revokeCert signed by the account key (superseded): pebble reports it; certificate gone too: --cert FILE; without an account key a precise error, no account created"
acme_stop
