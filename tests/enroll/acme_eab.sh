# ACME against pebble with nonce rejection and External Account Binding:
#  - pebble rejects half of the good nonces (PEBBLE_WFE_NONCEREJECT=50): every
#    badNonce is retried with the fresh nonce the refusal carries, and the
#    enrollment completes;
#  - pebble requires EAB: without eab_kid a precise error and no account; with
#    eab_kid and the HMAC key read from eab_hmac_file the account is bound;
#    a wrong HMAC key is a precise refusal from the CA.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/acmelib.sh"
ACME_EAB=1 acme_init
acme_start PEBBLE_WFE_NONCEREJECT=50
acme_profile alice "agree_tos = true"
expect_rc 3 enr enroll alice 2>"$T/n.err"
grep -q "the CA requires External Account Binding; set eab_kid and eab_hmac_file in \[acme\]" "$T/n.err" ||
    die "no precise EAB message: $(cat "$T/n.err")"
[ "$(count_objects Certificate alice)" = 0 ] || die "alice got a certificate"
ok "EAB required by the CA and missing in the profile: a precise error"

printf 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n' >"$T/wrong.key"
chmod 600 "$T/wrong.key"
acme_profile bob "agree_tos = true" "eab_kid = kid-1" "eab_hmac_file = $T/wrong.key"
expect_rc 7 enr enroll bob 2>"$T/w.err"
grep -q "ACME newAccount: the CA answered HTTP 403: external account binding .*(urn:ietf:params:acme:error:unauthorized)" "$T/w.err" ||
    die "wrong EAB key: no precise refusal: $(cat "$T/w.err")"
ok "a wrong EAB HMAC key: the CA's problem document reported"

acme_profile carol "agree_tos = true" "eab_kid = kid-1" "eab_hmac_file = $T/eab.key"
enr -v enroll carol 2>"$T/e.err" || die "EAB enrollment: $(cat "$T/e.err")"
grep -q "profile carol: ACME account .* created" "$T/e.err" || die "no account: $(cat "$T/e.err")"
cp "$T/e.err" "$T/all.err"
# About ten signed requests per run at 50%: a run without a badNonce is rare,
# three in a row rarer still.
for _ in 1 2 3; do
    grep -q "badNonce; retrying with the fresh nonce" "$T/all.err" && break
    enr -v renew --force carol 2>"$T/e.err" || die "renewal: $(cat "$T/e.err")"
    cat "$T/e.err" >>"$T/all.err"
done
grep -q "badNonce; retrying with the fresh nonce" "$T/all.err" || die "pebble rejected no nonce in four runs (50%)"
cred_works carol || die "carol's credential does not work"
ok "EAB with kid and the HMAC key file; badNonce answers retried until the enrollment completes"
acme_stop
