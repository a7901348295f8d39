# EST answers the helper must handle: HTTP 202 + Retry-After (polled, the new
# key kept pending between checks, picked up by `retry`), a certificate for
# another key (refused, token untouched, at enrollment and at renewal), an
# answer that is base64 but not PKCS#7, and /cacerts during a CA key rollover
# (OldWithOld, OldWithNew, NewWithOld, NewWithNew: the new CA becomes an
# implicit trust anchor through NewWithOld) or from a CA the anchors do not
# know (refused).
. "$(dirname "$0")/lib.sh"
: "${ESTSRV:?run through ctest}"
ca_init
est_tls
printf 'pw-of-bob\n' >"$T/password"; chmod 600 "$T/password"
export EVERTOKEN_ENROLL_FAKE_TIME=$(now_epoch) # polls advance this clock instead of sleeping
restart() { est_stop; est_start --user bob --password-file "$T/password" "$@"; sed -i "s|^url = .*|url = $EST_URL|" "$PROFILES"/*.conf; }

# 202: three answers held, poll_max = 1 → pending after the first check.
est_start --user bob --password-file "$T/password" --pending 3
est_profile alice "[ca]" "username = bob" "secret_file = $T/password" "poll_max = 1"
rc=0; enr enroll 2>"$T/p1.err" || rc=$?
[ "$rc" = 5 ] || die "202: exit $rc, want 5: $(cat "$T/p1.err")"
grep -q "accepted the request for later (HTTP 202); asking again in 2 s" "$T/p1.err" || die "Retry-After not honoured: $(cat "$T/p1.err")"
[ "$(grep -c '^simpleenroll 202' "$CA/requests.log")" = 2 ] || die "not polled: $(cat "$CA/requests.log")"
# The new pair waits invisibly: evertoken's native pending objects (seen only
# through CKA_EVERTOKEN_PENDING), else the standard sequence's "alice (pending)".
[ "$(pending_count alice)" = 2 ] || die "pending key pair not kept: $(pending_count alice) pending objects; $(token_objects)"
[ "$(count_objects Private alice)" = 0 ] || die "the pending key is visible under the credential's label: $(token_objects)"
[ "$(count_objects Certificate alice)" = 0 ] || die "certificate before issue"
grep -q "^pending|alice|" "$T/notify.log" || die "pending not notified"
enr retry 2>"$T/p2.err" || die "retry failed: $(cat "$T/p2.err")"
grep -q "^simpleenroll 200 basic issued" "$CA/requests.log" || die "not issued: $(cat "$CA/requests.log")"
[ "$(count_objects Certificate alice)" = 1 ] && [ "$(count_objects Private alice)" = 1 ] || die "not stored: $(token_objects)"
! token_objects | grep -q pending || die "pending objects left: $(token_objects)"
[ "$(pending_count alice)" = 0 ] || die "pending objects left after the commit: $(pending_count alice)"
cred_works alice || die "credential does not work"
ok "HTTP 202: polled after Retry-After, pending key kept, certificate picked up by retry"

# A certificate for another key: refused before anything is stored.
restart --wrong-key
est_profile bob "[ca]" "username = bob" "secret_file = $T/password"
before=$(token_objects)
rc=0; enr enroll 2>"$T/w.err" || rc=$?
[ "$rc" = 7 ] || die "wrong key: exit $rc, want 7: $(cat "$T/w.err")"
grep -q "issued certificate is for a different public key" "$T/w.err" || die "not explained: $(cat "$T/w.err")"
grep -q "WRONG-KEY" "$CA/requests.log" || die "server did not issue for a wrong key"
[ "$(token_objects)" = "$before" ] || die "token changed: $(token_objects)"
rm "$PROFILES/bob.conf"
serial=$(token_serial alice)
rc=0; enr renew --force 2>"$T/w2.err" || rc=$?
[ "$rc" = 7 ] && grep -q "different public key" "$T/w2.err" || die "wrong key at renewal: exit $rc: $(cat "$T/w2.err")"
[ "$(token_objects)" = "$before" ] && [ "$(token_serial alice)" = "$serial" ] || die "token changed: $(token_objects)"
cred_works alice || die "old credential broken"
ok "certificate for another key refused at enrollment and renewal; token untouched"

# Base64 that is not PKCS#7.
restart --garbage
before=$(token_objects)
rc=0; enr renew --force 2>"$T/g.err" || rc=$?
[ "$rc" = 7 ] && grep -q "EST cacerts: the answer is not a PKCS#7 structure" "$T/g.err" || die "garbage: exit $rc: $(cat "$T/g.err")"
[ "$(token_objects)" = "$before" ] || die "token changed: $(token_objects)"
ok "malformed PKCS#7 refused precisely"

# CA key rollover: the profile trusts only the old CA.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$CA/ca2.key" -out "$CA/ca2.pem" \
    -subj "/CN=evertoken test CA G2" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
restart --rollover
est_profile carol "[ca]" "username = bob" "secret_file = $T/password"
enr -v enroll 2>"$T/r.err" || die "enrollment during rollover failed: $(cat "$T/r.err")"
grep -q "^cacerts 200 4 certificates" "$CA/requests.log" || die "no rollover cacerts"
grep -q "implicit trust anchor from /cacerts: /CN=evertoken test CA G2" "$T/r.err" || die "new CA not taken as implicit anchor: $(cat "$T/r.err")"
token_cert carol >"$T/carol.pem" || die "carol not stored"
openssl verify -CAfile "$CA/ca2.pem" "$T/carol.pem" >/dev/null || die "carol not issued by the new CA key"
cred_works carol || die "carol does not work"
# Re-enrollment of the certificate the new key issued (client certificate under the new CA).
rm "$PROFILES/alice.conf"
s1=$(token_serial carol)
enr renew --force 2>"$T/r2.err" || die "re-enrollment after rollover: $(cat "$T/r2.err")"
[ "$(token_serial carol)" != "$s1" ] || die "carol not renewed"
ok "CA rollover: NewWithOld makes the new CA an implicit anchor; enrollment and re-enrollment work"

# A /cacerts whose certificates do not chain to the anchors: refused.
mkdir -p "$T/other"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/other/ca.key" -out "$T/other/ca.pem" \
    -subj "/CN=unknown CA" -days 3650 -sha256 -addext "basicConstraints=critical,CA:TRUE" 2>/dev/null
cp "$CA/tls.pem" "$CA/tls.key" "$T/other/"
est_stop; ESTDIR=$T/other est_start --user bob --password-file "$T/password"
sed -i "s|^url = .*|url = $EST_URL|" "$PROFILES"/*.conf
before=$(token_objects)
rc=0; enr renew --force 2>"$T/o.err" || rc=$?
[ "$rc" = 7 ] && grep -q "EST cacerts: none of the 1 certificates returned chains to the profile's anchors" "$T/o.err" || die "unknown CA: exit $rc: $(cat "$T/o.err")"
[ "$(token_objects)" = "$before" ] || die "token changed"
ok "/cacerts from a CA outside the anchors refused"
