# ACME account key rollover and revocation against pebble:
#  - acme-keychange: a new account key generated in the token, pebble told
#    (keyChange, RFC 8555 section 7.3.5), the old key deleted, the new one
#    under the old label; the account (same URL) keeps working with it;
#  - the new key of an interrupted key change that the CA never took is
#    dropped by the next run;
#  - revoke: revokeCert signed by the certificate's key in the token; pebble
#    reports the certificate revoked.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/acmelib.sh"
acme_init
acme_start
acme_profile alice "agree_tos = true"
# The account public key's EC point, from the listing (pkcs11-tool's
# --read-object of an EC public key reads freed memory, which ASan stops).
acct_pub() { p11 -O --type pubkey --label "acme-account:alice" 2>/dev/null | sed -n 's/^ *EC_POINT: *//p'; }
enr -v enroll alice 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
url=$(sed -n 's/.*ACME account \(https:[^ ]*\) created.*/\1/p' "$T/e.err")
[ -n "$url" ] || die "no account URL: $(cat "$T/e.err")"
pub1=$(acct_pub)
[ -n "$pub1" ] || die "no account public key: $(token_objects)"
id1=$(p11 -O --type privkey 2>/dev/null | awk '/label:.*acme-account:alice/{f=1} f&&/ID:/{print $2; exit}')

enr -v acme-keychange alice 2>"$T/k.err" || die "acme-keychange: $(cat "$T/k.err")"
grep -q "profile alice: the account $url now has a new key \"acme-account:alice\" in the token" "$T/k.err" ||
    die "no key change message: $(cat "$T/k.err")"
pub2=$(acct_pub)
[ -n "$pub2" ] && [ "$pub1" != "$pub2" ] || die "the account key did not change"
[ "$(count_objects Private "acme-account:alice")" = 1 ] && [ "$(count_objects Public "acme-account:alice")" = 1 ] || die "$(token_objects)"
! token_objects | grep -q "(new)" || die "the new key kept its temporary label: $(token_objects)"
id2=$(p11 -O --type privkey 2>/dev/null | awk '/label:.*acme-account:alice/{f=1} f&&/ID:/{print $2; exit}')
[ "$id1" = "$id2" ] || die "the account key's CKA_ID changed: $id1 -> $id2"
enr -v renew --force alice 2>"$T/r.err" || die "renew after the key change: $(cat "$T/r.err")"
grep -q "profile alice: ACME account $url (key" "$T/r.err" || die "the account is not found by the new key: $(cat "$T/r.err")"
grep -q "acme-keychange" <(enr history alice) || die "no history event"
ok "acme-keychange: a new account key in the token, pebble switched the account to it, the old key deleted"

# An interrupted key change whose new key the CA never saw: dropped.
p11 --keypairgen --key-type EC:prime256v1 --label "acme-account:alice (new)" --id "${id1}ff" >/dev/null 2>&1 ||
    die "cannot make a stray new key"
enr -v renew --force alice 2>"$T/i.err" || die "renew: $(cat "$T/i.err")"
grep -q "dropping the new key of an interrupted account key change" "$T/i.err" || die "stray key not handled: $(cat "$T/i.err")"
! token_objects | grep -q "(new)" || die "stray new key left: $(token_objects)"
grep -q "profile alice: ACME account $url (key" "$T/i.err" || die "the account was lost: $(cat "$T/i.err")"
ok "the new key of an interrupted key change the CA never took is dropped; the account stays"

# Revocation by the certificate's own key.
serial=$(token_serial alice | tr 'A-F' 'a-f' | sed 's/^0*//')
enr -v revoke alice --reason superseded 2>"$T/v.err" || die "revoke: $(cat "$T/v.err")"
curl -s --cacert "$ACME_DIR/tlsca.pem" "https://127.0.0.1:15000/cert-status-by-serial/$serial" >"$T/status.json"
grep -q '"Status": *"Revoked"' "$T/status.json" || die "pebble does not report $serial revoked: $(cat "$T/status.json")"
grep -q "^revoked|alice|" "$T/notify.log" || die "revocation not notified"
[ "$(count_objects Certificate alice)" = 1 ] || die "the token changed"
ok "revokeCert signed by the certificate's key in the token: pebble reports it revoked"
acme_stop
