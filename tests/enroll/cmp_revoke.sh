# Revocation by request: `evertoken-enroll revoke PROFILE [--reason R]` sends
# a CMP rr signed by the certificate's own key in the token; the CA revokes
# (its index and CRL), and the helper's own revocation check then sees it and
# enrolls a fresh credential. A kur signed by a revoked certificate is
# refused by the CA, the token untouched. SCEP and EST profiles are told that
# their protocol has no revocation request and what to do instead.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cmplib.sh"
cmp_init
cmp_start --crl-url self
cmp_profile alice
enr enroll alice 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
s1=$(token_serial alice)
openssl x509 -in <(token_cert alice) -noout -ext crlDistributionPoints | grep -q "127.0.0.1:$CMP_PORT/crl" || die "no CRL URL"
enr check alice 2>"$T/c.err" || die "check before revocation: $(cat "$T/c.err")"
[ "$(token_serial alice)" = "$s1" ] || die "replaced a good certificate"

rc=0; enr revoke alice --reason bogus 2>"$T/x.err" || rc=$?
[ "$rc" = 3 ] && grep -q "not a revocation reason" "$T/x.err" || die "bad reason: exit $rc $(cat "$T/x.err")"
enr revoke alice --reason keyCompromise 2>"$T/rv.err" || die "revoke: $(cat "$T/rv.err")"
grep -q "^rr revoked serial $s1 (signature)$" "$CA/requests.log" || die "CA log: $(cat "$CA/requests.log")"
grep -q "^R.*	$s1	" "$CA/index.txt" || die "index: $(cat "$CA/index.txt")"
grep -q "^revoked|alice|certificate $s1 revoked" "$T/notify.log" || die "revocation not notified: $(cat "$T/notify.log")"
openssl crl -in "$CA/ca.crl" -inform DER -noout -text | grep -q "Serial Number: $s1" || die "not in the CRL"
ok "rr signed by the token key: the CA revoked $s1 and published it in its CRL"

enr check alice 2>"$T/r.err" || die "check after revocation: $(cat "$T/r.err")"
grep -q "enrolling (the certificate is revoked)" "$T/r.err" || die "the helper's check missed the revocation: $(cat "$T/r.err")"
grep -q "GET crl" "$CA/requests.log" || die "CRL not fetched"
s2=$(token_serial alice)
[ "$s2" != "$s1" ] && [ "$(count_objects Certificate alice)" = 1 ] || die "not re-enrolled: $(token_objects)"
cred_works alice || die "new credential does not work"
ok "the helper's revocation check (CRL) saw it and enrolled a fresh credential"

# Without a CRL URL the helper cannot see the revocation: a renewal's kur,
# signed by the revoked certificate, is refused by the CA.
cmp_stop
cmp_start
sed -i "s|^url = .*|url = $CMP_URL|" "$PROFILES/alice.conf"
cmp_profile bob
enr enroll bob 2>"$T/eb.err" || die "enroll bob: $(cat "$T/eb.err")"
b1=$(token_serial bob)
enr revoke bob 2>"$T/rb.err" || die "revoke bob: $(cat "$T/rb.err")"
before=$(token_objects)
rc=0; enr renew --force bob 2>"$T/kb.err" || rc=$?
[ "$rc" = 7 ] || die "kur by a revoked certificate: exit $rc: $(cat "$T/kb.err")"
grep -q "CMP kur: the CA refused the request (.*certRevoked.*)" "$T/kb.err" || die "not explained: $(cat "$T/kb.err")"
grep -q "^kur refused: old certificate $b1 is revoked" "$CA/requests.log" || die "CA log: $(cat "$CA/requests.log")"
[ "$(token_objects)" = "$before" ] && [ "$(token_serial bob)" = "$b1" ] && [ "$(pending_count bob)" = 0 ] || die "token changed: $(token_objects)"
ok "a kur signed by a revoked certificate is refused (certRevoked), token untouched"

# SCEP and EST have no revocation request: a precise error, nothing sent.
URL_OVERRIDE=http://127.0.0.1:1/scep profile carol
rc=0; enr revoke carol 2>"$T/s.err" || rc=$?
[ "$rc" = 3 ] && grep -q "SCEP (RFC 8894) has no revocation request; ask the CA's operator to revoke" "$T/s.err" || die "SCEP revoke: exit $rc $(cat "$T/s.err")"
sed -i 's|^url = http://127.0.0.1:1/scep|protocol = est\nurl = https://127.0.0.1:1|' "$PROFILES/carol.conf"
rc=0; enr revoke carol 2>"$T/s2.err" || rc=$?
[ "$rc" = 3 ] && grep -q "EST (RFC 7030) has no revocation request" "$T/s2.err" || die "EST revoke: exit $rc $(cat "$T/s2.err")"
ok "SCEP and EST: no revocation request, explained"
