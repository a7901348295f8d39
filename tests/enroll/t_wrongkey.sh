# A CA that returns a certificate for another public key: the helper refuses
# it before storing anything, reports it, and the token is exactly as before
# (first enrollment and renewal).
. "$(dirname "$0")/lib.sh"
ca_init
scep_start --wrong-key
profile alice
before=$(token_objects)
rc=0; enr enroll 2>"$T/w.err" || rc=$?
[ "$rc" = 7 ] || die "wrong key: exit $rc, want 7: $(cat "$T/w.err")"
grep -q "issued certificate is for a different public key" "$T/w.err" || die "not explained: $(cat "$T/w.err")"
grep -q "WRONG KEY" "$T/scepsrv.log" || die "server did not issue for a wrong key"
[ "$(token_objects)" = "$before" ] || die "token changed: $(token_objects)"
grep -q "^failure|alice|the issued certificate is for a different public key" "$T/notify.log" || die "not notified"
ok "certificate for a wrong key refused at enrollment; token untouched"

# Enroll properly, then a renewal answered with a wrong key.
scep_stop; scep_start
sed -i "s|^url = .*|url = $SCEP_URL|" "$PROFILES/alice.conf"
enr enroll 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
scep_stop; scep_start --wrong-key
sed -i "s|^url = .*|url = $SCEP_URL|" "$PROFILES/alice.conf"
before=$(token_objects); serial=$(token_serial alice)
rc=0; enr renew --force 2>"$T/r.err" || rc=$?
[ "$rc" = 7 ] || die "wrong key at renewal: exit $rc: $(cat "$T/r.err")"
[ "$(token_objects)" = "$before" ] && [ "$(token_serial alice)" = "$serial" ] || die "token changed: $(token_objects)"
cred_works alice || die "old credential broken"
ok "certificate for a wrong key refused at renewal; old credential intact"
