# SCEP against a CA that behaves like CAs in the field (docs/enrollment.md
# "Servers in the field"): subjects narrowed to the CN and a CRL
# distribution point nobody answers. With subject_match = cn and the default
# revocation = soft, an enrollment and a renewal (RenewalReq) succeed; with
# subject_match = exact the narrowed certificate is refused with both subjects
# and the fix, the token untouched; revocation = hard makes the unanswered CRL
# a network failure (exit 4). An OCSP responder that cannot be reached falls
# back to the CRL, whose "revoked" still leads to a fresh enrollment.
. "$(dirname "$0")/lib.sh"
ca_init
DEAD=http://127.0.0.1:1/ca.crl # nothing listens on port 1
scep_start --cn-only --crl-url "$DEAD"

profile alice "[certificate]" "subject_match = cn" "[renewal]" "window_days = 100"
enr enroll alice 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
token_cert alice >"$T/a1.pem" || die "no certificate"
subj=$(openssl x509 -in "$T/a1.pem" -noout -subject -nameopt RFC2253)
[ "$subj" = "subject=CN=alice" ] || die "subject not narrowed: $subj"
s1=$(token_serial alice)
enr -v renew alice 2>"$T/r.err" || die "renewal: $(cat "$T/r.err")"
grep -q "revocation status of certificate $s1 is unknown (no revocation source answered usably); not blocking (revocation = soft)" "$T/r.err" ||
    die "unreachable CRL not taken as unknown: $(cat "$T/r.err")"
grep -q "POST RenewalReq .* SUCCESS" "$CA/requests.log" || die "no RenewalReq: $(cat "$CA/requests.log")"
[ "$(token_serial alice)" != "$s1" ] && [ "$(count_objects Certificate alice)" = 1 ] || die "not renewed: $(token_objects)"
cred_works alice || die "renewed credential does not work"
ok "CN-only subjects (subject_match = cn) and an unreachable CRL (soft): enrolled and renewed"

# revocation = hard: the unanswered CRL blocks the renewal (retried), the token stays.
profile hal "[certificate]" "subject_match = cn" "[renewal]" "window_days = 100" "revocation = hard"
enr enroll hal 2>"$T/h0.err" || die "enroll hal: $(cat "$T/h0.err")"
before=$(token_objects); hs=$(token_serial hal)
rc=0; enr renew hal 2>"$T/h.err" || rc=$?
[ "$rc" = 4 ] && grep -q "cannot be checked; retrying (revocation = hard" "$T/h.err" || die "hard: exit $rc: $(cat "$T/h.err")"
[ "$(token_objects)" = "$before" ] && [ "$(token_serial hal)" = "$hs" ] || die "token changed: $(token_objects)"
# renew --force does not wait on it.
enr -v renew --force hal 2>"$T/hf.err" || die "forced renewal: $(cat "$T/hf.err")"
grep -q "renew --force: the revocation status of certificate $hs is not checked" "$T/hf.err" || die "$(cat "$T/hf.err")"
[ "$(token_serial hal)" != "$hs" ] || die "hal not renewed by --force"
ok "revocation = hard: exit 4, token untouched; renew --force skips the revocation check"

# subject_match = exact (the default): refused, both subjects and the fix named.
profile erin
before=$(token_objects)
rc=0; enr enroll erin 2>"$T/x.err" || rc=$?
[ "$rc" = 7 ] || die "exact subject: exit $rc: $(cat "$T/x.err")"
grep -q "the issued certificate's subject /CN=erin is not the requested CN=erin, O=evertoken tests (subject_match = exact); if the CA keeps only some attributes by policy, set subject_match = cn" "$T/x.err" ||
    die "refusal not explained: $(cat "$T/x.err")"
[ "$(token_objects)" = "$before" ] || die "token changed: $(token_objects)"
rm "$PROFILES/erin.conf"
ok "subject_match = exact refuses the narrowed subject, token untouched"

# An OCSP responder nobody answers, then the CRL: its verdict counts.
scep_stop
scep_start --ocsp-url http://127.0.0.1:1/ --crl-url self
sed -i "s|^url = .*|url = $SCEP_URL|" "$PROFILES/alice.conf" "$PROFILES/hal.conf"
profile bob
enr enroll bob 2>"$T/b.err" || die "enroll bob: $(cat "$T/b.err")"
b1=$(token_serial bob)
openssl ca -config "$CA/ca.cnf" -revoke "$CA/issued/$b1.pem" 2>>"$T/ca.log" || die "revoke: $(cat "$T/ca.log")"
openssl ca -config "$CA/ca.cnf" -gencrl -out "$CA/ca.crl" 2>>"$T/ca.log" || die "gencrl"
enr check bob 2>"$T/rb.err" || die "check bob: $(cat "$T/rb.err")"
grep -q "GET crl" "$CA/requests.log" || die "CRL not fetched after the OCSP responder failed"
grep -q "enrolling (the certificate is revoked)" "$T/rb.err" || die "revocation missed: $(cat "$T/rb.err")"
[ "$(token_serial bob)" != "$b1" ] || die "bob not re-enrolled"
ok "unreachable OCSP responder: the CRL decides; revoked → fresh enrollment"
