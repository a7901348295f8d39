# Hostile CMP answers are refused with a precise error, and the token stays
# as it was (no new objects on enrollment, the old credential untouched and
# working on renewal): a certificate for another key, broken protection, an
# unknown transaction id, answers signed by an untrusted impostor, another
# sender than the profile's recipient, garbage, a truncated answer, a wrong
# content type, an answer above the HTTP layer's 8 MiB limit.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cmplib.sh"
cmp_init
cmp_start
cmp_profile alice
enr enroll alice 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
cmp_stop

# MODE  "error text expected"
cases=(
    "wrong-key|the issued certificate is refused: public key in new certificate does not match our enrollment key"
    "bad-protection|the CA's answer failed the checks: .*error validating \\(protection\\|signature\\)"
    "txid|the CA's answer failed the checks: .*transactionid unmatched"
    "untrusted|the CA's answer failed the checks: no suitable sender cert"
    "garbage|the CA's answer (.* bytes) is not a CMP message"
    "truncated|the CA's answer (.* bytes) is not a CMP message"
    "ctype|the CA answered with text/html, not application/pkixcmp"
    "big|http://127.0.0.1:[0-9]*/pkix/: the answer exceeds 8 MiB"
)
for c in "${cases[@]}"; do
    mode=${c%%|*} want=${c#*|}
    cmp_start --misbehave "$mode"
    sed -i "s|^url = .*|url = $CMP_URL|" "$PROFILES/alice.conf"
    # First enrollment (ir) of another credential: nothing stays in the token.
    cmp_profile bob
    before=$(token_objects)
    rc=0; enr enroll bob 2>"$T/b.err" || rc=$?
    [ "$rc" = 7 ] || die "$mode (ir): exit $rc, want 7: $(cat "$T/b.err")"
    grep -q -e "CMP ir: $want" -e "error: $want" "$T/b.err" || die "$mode (ir): not explained: $(cat "$T/b.err")"
    [ "$(token_objects)" = "$before" ] || die "$mode (ir): token changed: $(token_objects)"
    [ "$(pending_count bob)" = 0 ] || die "$mode (ir): pending objects left"
    rm "$PROFILES/bob.conf"
    # Renewal (kur) of alice: the old credential stays, working.
    serial=$(token_serial alice)
    rc=0; enr renew --force alice 2>"$T/a.err" || rc=$?
    [ "$rc" = 7 ] || die "$mode (kur): exit $rc, want 7: $(cat "$T/a.err")"
    grep -q -e "CMP kur: $want" -e "error: $want" "$T/a.err" || die "$mode (kur): not explained: $(cat "$T/a.err")"
    [ "$(token_objects)" = "$before" ] && [ "$(token_serial alice)" = "$serial" ] || die "$mode (kur): token changed: $(token_objects)"
    [ "$(pending_count alice)" = 0 ] || die "$mode (kur): pending objects left"
    cred_works alice || die "$mode (kur): the old credential no longer works"
    cmp_stop
    ok "$mode: refused on ir and kur (\"$(grep -o 'error: .*' "$T/a.err" | head -1 | cut -c1-120)\"), token untouched"
done

# Another sender than the profile's recipient (expected sender).
cmp_start
sed -i "s|^url = .*|url = $CMP_URL|" "$PROFILES/alice.conf"
cmp_profile bob "[ca]" "recipient = CN=some other CA, O=elsewhere"
before=$(token_objects)
rc=0; enr enroll bob 2>"$T/r.err" || rc=$?
[ "$rc" = 7 ] || die "wrong recipient: exit $rc: $(cat "$T/r.err")"
grep -q "CMP ir: the CA's answer failed the checks: .*does not match expected sender = /CN=some other CA" "$T/r.err" || die "wrong recipient not explained: $(cat "$T/r.err")"
[ "$(token_objects)" = "$before" ] || die "wrong recipient: token changed"
ok "an answer from another sender than the profile's recipient is refused"
