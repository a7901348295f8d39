# EST first enrollment (RFC 7030): /cacerts over TLS authenticated by the
# profile's anchors, then /simpleenroll with HTTP basic credentials (a wrong
# password and no credentials are 401s that leave the token untouched), and
# with a one-time enrollment code (a reused code is a 403), and with a
# bootstrap certificate in the token (TLS client authentication); the label
# segment of the profile selects the server's CA.
. "$(dirname "$0")/lib.sh"
: "${ESTSRV:?run through ctest}"
ca_init
est_tls
printf 'pw-of-bob\n' >"$T/password"
printf 'one-time-4711\n' >"$T/code"
chmod 600 "$T/password" "$T/code"
est_start --user bob --password-file "$T/password" --code-file "$T/code" --label tests

# No credentials at all: 401, explained, token untouched.
est_profile nocred "[ca]" "est_label = tests"
rc=0; enr enroll 2>"$T/nocred.err" || rc=$?
[ "$rc" = 7 ] || die "no credentials: exit $rc (want 7): $(cat "$T/nocred.err")"
grep -q "requires authentication (HTTP 401); the profile gives none" "$T/nocred.err" || die "401 not explained: $(cat "$T/nocred.err")"
grep -q "^simpleenroll 401 no credentials" "$CA/requests.log" || die "server log: $(cat "$CA/requests.log")"
[ -z "$(token_objects)" ] || die "token changed by a refused enrollment: $(token_objects)"
rm "$PROFILES/nocred.conf"
ok "no credentials: HTTP 401, token untouched"

# A wrong password: 401 again, the password never in the output.
printf 'not-the-password\n' >"$T/badpw"; chmod 600 "$T/badpw"
est_profile badpw "[ca]" "est_label = tests" "username = bob" "secret_file = $T/badpw"
rc=0; enr -v enroll 2>"$T/badpw.err" || rc=$?
[ "$rc" = 7 ] || die "wrong password: exit $rc: $(cat "$T/badpw.err")"
grep -q "the credentials were not accepted" "$T/badpw.err" || die "$(cat "$T/badpw.err")"
! grep -q "not-the-password" "$T/badpw.err" || die "password logged"
[ -z "$(token_objects)" ] || die "token changed: $(token_objects)"
rm "$PROFILES/badpw.conf"
ok "wrong password: HTTP 401, token untouched, password not logged"

# A wrong label: 404 from the server, reported.
est_profile lbl "[ca]" "est_label = other" "username = bob" "secret_file = $T/password"
rc=0; enr enroll 2>"$T/lbl.err" || rc=$?
[ "$rc" = 7 ] && grep -q "EST cacerts: the server rejected the request (HTTP 404): unknown EST label" "$T/lbl.err" || die "label: exit $rc $(cat "$T/lbl.err")"
rm "$PROFILES/lbl.conf"
ok "unknown label: HTTP 404 explained"

# Basic credentials.
est_profile alice "[ca]" "est_label = tests" "username = bob" "secret_file = $T/password"
enr -v enroll 2>"$T/alice.err" || die "basic enrollment failed: $(cat "$T/alice.err")"
grep -q "^simpleenroll 200 basic issued" "$CA/requests.log" || die "server log: $(cat "$CA/requests.log")"
! grep -q "pw-of-bob" "$T/alice.err" || die "password logged"
token_cert alice >"$T/alice.pem" || die "no certificate stored: $(token_objects)"
openssl verify -CAfile "$CA/ca.pem" "$T/alice.pem" >/dev/null || die "does not chain"
openssl x509 -in "$T/alice.pem" -noout -ext subjectAltName | grep -q "DNS:alice.example" || die "SAN"
p11 -O --type privkey 2>/dev/null | grep -q "never extractable" || die "key not generated in the token"
cred_works alice || die "the enrolled credential does not sign/verify"
grep -q "^enrolled|alice|issued certificate serial" "$T/notify.log" || die "no notification: $(cat "$T/notify.log")"
enr status >"$T/status.txt" || true
grep -q "^alice .* valid" "$T/status.txt" || die "status: $(cat "$T/status.txt")"
ok "enrolled with HTTP basic credentials: key in the token, certificate checked and stored"

# A one-time enrollment code (challengePassword in the CSR).
est_profile carol "[ca]" "est_label = tests" "secret_file = $T/code"
enr enroll 2>"$T/carol.err" || die "code enrollment failed: $(cat "$T/carol.err")"
grep -q "^simpleenroll 200 code issued" "$CA/requests.log" || die "server log: $(cat "$CA/requests.log")"
token_cert carol >/dev/null || die "no certificate for carol"
cred_works carol || die "carol's credential does not work"
ok "enrolled with a one-time enrollment code"

# The code is spent: a second device using it is refused (403), untouched.
est_profile dave "[ca]" "est_label = tests" "secret_file = $T/code"
before=$(token_objects)
rc=0; enr enroll 2>"$T/dave.err" || rc=$?
[ "$rc" = 7 ] || die "reused code: exit $rc: $(cat "$T/dave.err")"
grep -q "refused the request (HTTP 403, forbidden): enrollment code already used" "$T/dave.err" || die "$(cat "$T/dave.err")"
[ "$(token_objects)" = "$before" ] || die "token changed: $(token_objects)"
ok "a used enrollment code is refused (403), token untouched"

# An existing bootstrap certificate (a device credential already in the
# token, issued by a bootstrap CA the EST server trusts) authenticates
# /simpleenroll by TLS client authentication; no password, no code.
est_stop
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=evertoken tests bootstrap CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
    -keyout "$T/boot-ca.key" -out "$T/boot-ca.pem" 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -subj "/CN=device 0042" -keyout "$T/boot.key" 2>/dev/null |
    openssl x509 -req -CA "$T/boot-ca.pem" -CAkey "$T/boot-ca.key" -CAcreateserial -days 30 \
        -extfile <(printf 'extendedKeyUsage=clientAuth\n') -out "$T/boot.pem" 2>/dev/null
openssl pkey -in "$T/boot.key" -outform DER -out "$T/boot.key.der"
openssl x509 -in "$T/boot.pem" -outform DER -out "$T/boot.der"
p11 --write-object "$T/boot.key.der" --type privkey --id b007 --label boot --usage-sign >/dev/null 2>&1 ||
    die "bootstrap key not written: $(p11 --write-object "$T/boot.key.der" --type privkey --id b007 --label boot 2>&1)"
p11 --write-object "$T/boot.der" --type cert --id b007 --label boot >/dev/null 2>&1 || die "bootstrap certificate not written"
est_start --bootstrap-ca "$T/boot-ca.pem" --label tests
est_profile erin "[ca]" "est_label = tests" "bootstrap = boot"
enr -v enroll erin 2>"$T/erin.err" || die "bootstrap enrollment failed: $(cat "$T/erin.err")"
grep -q "^simpleenroll 200 bootstrap-cert issued" "$CA/requests.log" || die "server log: $(cat "$CA/requests.log")"
grep -q 'TLS client authentication by the bootstrap certificate "boot"' "$T/erin.err" || die "$(cat "$T/erin.err")"
token_cert erin >"$T/erin.pem" || die "no certificate for erin"
openssl x509 -in "$T/erin.pem" -noout -subject | grep -q "CN *= *erin" || die "erin: $(openssl x509 -in "$T/erin.pem" -noout -subject)"
cred_works erin || die "erin's credential does not work"
[ "$(token_cert boot | openssl x509 -noout -fingerprint)" = "$(openssl x509 -in "$T/boot.pem" -noout -fingerprint)" ] || die "the bootstrap certificate was touched"
ok "enrolled with a bootstrap certificate from the token (TLS client authentication)"

# A bootstrap label that is not in the token: a clear error, nothing sent.
est_profile frank "[ca]" "est_label = tests" "bootstrap = nosuch"
before=$(token_objects); n=$(grep -c . "$CA/requests.log")
rc=0; enr enroll frank 2>"$T/frank.err" || rc=$?
[ "$rc" != 0 ] || die "a missing bootstrap credential was not an error"
grep -q 'no bootstrap certificate labelled "nosuch"' "$T/frank.err" || die "$(cat "$T/frank.err")"
[ "$(token_objects)" = "$before" ] || die "token changed: $(token_objects)"
[ "$(grep -c . "$CA/requests.log")" = "$n" ] || die "requests were sent: $(cat "$CA/requests.log")"
ok "a missing bootstrap credential is refused before anything is sent"

# A server that wants HTTP authentication besides the bootstrap certificate
# (RFC 7030 3.2.3): the 401 is answered once more with the profile's
# credentials, over the same TLS connection.
est_stop
est_start --bootstrap-ca "$T/boot-ca.pem" --label tests --reenroll-auth --user bob --password-file "$T/password"
est_profile gina "[ca]" "est_label = tests" "bootstrap = boot" "username = bob" "secret_file = $T/password"
enr -v enroll gina 2>"$T/gina.err" || die "bootstrap + HTTP authentication: $(cat "$T/gina.err")"
l200=$(grep "^simpleenroll 200 bootstrap-cert+basic issued" "$CA/requests.log" | tail -1)
[ -n "$l200" ] || die "server log: $(cat "$CA/requests.log")"
l401=$(grep "^simpleenroll 401 client-cert without HTTP credentials" "$CA/requests.log" | tail -1)
if [ -n "$l401" ]; then
    grep -q "the server wants HTTP authentication besides the TLS client certificate" "$T/gina.err" ||
        die "401 retry not explained: $(cat "$T/gina.err")"
    [ "${l401##* conn=}" = "${l200##* conn=}" ] || die "the retry used another connection: $l401 / $l200"
fi
cred_works gina || die "gina's credential does not work"
ok "bootstrap certificate plus HTTP authentication: enrolled${l401:+ (401 answered on the same connection)}"
est_profile gina2 "[ca]" "est_label = tests" "bootstrap = boot"
before=$(token_objects)
rc=0; enr enroll gina2 2>"$T/gina2.err" || rc=$?
[ "$rc" = 7 ] && grep -q "the profile gives no HTTP credentials: set username and secret_file in \[ca\]" "$T/gina2.err" ||
    die "bootstrap without the HTTP credentials a server wants: exit $rc: $(cat "$T/gina2.err")"
[ "$(token_objects)" = "$before" ] || die "token changed: $(token_objects)"
ok "bootstrap certificate, HTTP authentication wanted and not configured: precise error, token untouched"
