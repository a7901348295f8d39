# First enrollment (PKCSReq with the challenge password) into a fresh token:
# the key is generated in the token, the issued certificate checked and stored
# beside it, the post-processing script and notification command run with the
# documented environment, status/--json report it; a wrong challenge is a
# clear refusal that leaves the token empty.
. "$(dirname "$0")/lib.sh"
ca_init
scep_start
cat >"$T/post.sh" <<'SH'
#!/bin/sh
env | grep '^EVERTOKEN_' | sort >"$POST_OUT"
SH
chmod 700 "$T/post.sh"
export POST_OUT=$T/post.env
echo "Use the credential alice for VPN." >"$T/instructions.txt"
profile alice "[hooks]" "post_script = $T/post.sh" "instructions = $T/instructions.txt"

# Status before anything: no certificate → critical (2).
expect_rc 2 enr status
enr validate >/dev/null || die "profile does not validate"

# A wrong challenge: refused by the CA, reported, token untouched.
printf 'wrong\n' >"$T/challenge.bad"
sed "s|secret_file = .*|secret_file = $T/challenge.bad|" "$PROFILES/alice.conf" >"$T/bad.conf"
mkdir -p "$T/badprof" && mv "$T/bad.conf" "$T/badprof/alice.conf"
rc=0; host "$ENROLL_BIN" --profiles "$T/badprof" --state-dir "$T/state-bad" enroll 2>"$T/bad.err" || rc=$?
[ "$rc" = 7 ] || die "wrong challenge: exit $rc (want 7): $(cat "$T/bad.err")"
grep -q "the CA refused the request: badRequest" "$T/bad.err" || die "refusal not explained: $(cat "$T/bad.err")"
grep -q "instructions for profile alice" "$T/bad.err" || die "instructions not shown on failure"
[ -z "$(token_objects)" ] || die "token changed by a refused enrollment: $(token_objects)"
ok "wrong challenge refused, token untouched"

# First enrollment.
enr enroll 2>"$T/enroll.err" || die "enroll failed: $(cat "$T/enroll.err")"
grep -q "POST PKCSReq .* SUCCESS" "$CA/requests.log" || die "no PKCSReq over POST: $(cat "$CA/requests.log")"
[ "$(count_objects Certificate alice)" = 1 ] || die "certificate missing: $(token_objects)"
[ "$(count_objects Private alice)" = 1 ] || die "private key missing: $(token_objects)"
[ "$(count_objects Public alice)" = 1 ] || die "public key missing: $(token_objects)"
[ "$(token_objects | wc -l)" = 3 ] || die "unexpected objects: $(token_objects)"
token_cert alice >"$T/alice.pem"
openssl x509 -in "$T/alice.pem" -noout -subject | grep -q "CN = alice, O = evertoken tests" || die "subject"
openssl x509 -in "$T/alice.pem" -noout -ext subjectAltName | grep -q "DNS:alice.example" || die "SAN"
openssl verify -CAfile "$CA/ca.pem" "$T/alice.pem" >/dev/null || die "does not chain"
# The private key is sensitive and not extractable (generated in the token).
p11 -O --type privkey 2>/dev/null | grep -q "never extractable" || die "key not generated in the token"
cred_works alice || die "the enrolled credential does not sign/verify"
ok "enrolled: key generated in the token, certificate stored beside it"

# Hooks and notification.
grep -q "^EVERTOKEN_PROFILE=alice$" "$POST_OUT" || die "post script env: $(cat "$POST_OUT")"
grep -q "^EVERTOKEN_PKCS11_URI=pkcs11:.*object=alice" "$POST_OUT" || die "no URI: $(cat "$POST_OUT")"
serial=$(openssl x509 -in "$T/alice.pem" -noout -serial | sed 's/serial=//')
grep -qi "^EVERTOKEN_SERIAL=$serial$" "$POST_OUT" || die "serial: $(cat "$POST_OUT")"
grep -q "^EVERTOKEN_NOT_AFTER=20" "$POST_OUT" || die "not-after"
certfile=$(sed -n 's/^EVERTOKEN_CERT_FILE=//p' "$POST_OUT")
cmp <(openssl x509 -in "$certfile") "$T/alice.pem" || die "EVERTOKEN_CERT_FILE is not the certificate"
[ "$(stat -c %a "$certfile")" = 600 ] || die "certificate file not 0600"
! grep -qi "let-me-in\|$PIN" "$POST_OUT" || die "a secret leaked into the hook environment"
grep -q "^enrolled|alice|issued certificate serial" "$T/notify.log" || die "no notification: $(cat "$T/notify.log" 2>/dev/null)"
grep -q "^hook-success|alice|" "$T/notify.log" || die "hook result not notified"
ok "post-processing script and notification ran with the documented environment"

# State database and status.
[ "$(stat -c %a "$STATE")" = 700 ] && [ "$(stat -c %a "$STATE/enroll.db")" = 600 ] || die "state permissions"
enr status >"$T/status.txt"; rc=$?
grep -q "^alice .* valid" "$T/status.txt" || die "status: $(cat "$T/status.txt")"
enr status --json >"$T/status.json" || die "status --json exit $?"
python3 - "$T/status.json" "$serial" <<'PY' || die "status --json content"
import json, sys
d = json.load(open(sys.argv[1]))
p = d["profiles"][0]
assert p["profile"] == "alice" and p["state"] == "valid", p
assert p["serial"].lower() == sys.argv[2].lower(), p
assert 80 <= p["days_left"] <= 90 and p["level"] == 0 and p["hook"] == "ok", p
assert p["last_error"] is None and p["next_check"], p
PY
ok "status table and JSON"

# A second check changes nothing (valid, outside the renewal window).
enr check 2>"$T/check2.err" || die "second check failed: $(cat "$T/check2.err")"
[ "$(token_serial alice)" = "$serial" ] || die "second check replaced the certificate"
[ "$(grep -c PKCSReq "$CA/requests.log")" = 2 ] || die "second check contacted the CA for a request"
ok "a valid certificate outside its window is left alone"
