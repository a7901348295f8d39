# Profile changes: editing a profile's SANs or RSA key size leads, at the
# next check and long before the renewal window, to a renewal with a new key
# that asks for them (SCEP RenewalReq: the subject is kept); editing the
# subject to a new enrollment (PKCSReq); each logged with the reason. A
# change of the anchors file revalidates the certificate: still chaining,
# nothing happens; no longer chaining, a new enrollment is tried (and refused
# here, the token unchanged).
. "$(dirname "$0")/lib.sh"
ca_init
scep_start
profile alice
enr enroll 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
s1=$(token_serial alice)
enr check 2>"$T/c0.err" || die "check: $(cat "$T/c0.err")"
[ "$(token_serial alice)" = "$s1" ] || die "an unchanged profile replaced the certificate"

# SANs: a renewal carrying the new names.
sed -i "s|^san = .*|san = DNS:alice.example, DNS:www.alice.example|" "$PROFILES/alice.conf"
enr check 2>"$T/c1.err" || die "check after the SAN change: $(cat "$T/c1.err")"
grep -q "the profile's subject alternative names changed .*; renewing" "$T/c1.err" || die "reason not logged: $(cat "$T/c1.err")"
grep -q "POST RenewalReq .* SUCCESS" "$CA/requests.log" || die "no RenewalReq: $(cat "$CA/requests.log")"
token_cert alice | openssl x509 -noout -ext subjectAltName | grep -q "DNS:www.alice.example" || die "new SAN missing"
s2=$(token_serial alice)
[ "$s2" != "$s1" ] || die "not replaced"
enr history alice | grep -q "profile-changed" || die "no profile-changed event"
enr check 2>/dev/null || die "check"
[ "$(token_serial alice)" = "$s2" ] || die "replaced again without a change"
ok "SAN change: renewed with the new names at the next check, then left alone"

# RSA key size: a renewal with a new 3072-bit key.
printf '[certificate]\nkey_type = rsa\nkey_size = 3072\n' >>"$PROFILES/alice.conf"
enr check 2>"$T/c2.err" || die "check after the key change: $(cat "$T/c2.err")"
grep -q "the profile asks for RSA-3072, the certificate has RSA-2048" "$T/c2.err" || die "reason: $(cat "$T/c2.err")"
token_cert alice | openssl x509 -noout -text | grep -q "Public-Key: (3072 bit)" || die "not a 3072-bit key"
cred_works alice || die "the new key does not work"
ok "key size change: renewed with a new RSA-3072 key"

# Subject: a new enrollment.
n_pkcs=$(grep -c "PKCSReq .* SUCCESS" "$CA/requests.log")
sed -i "s|^subject = .*|subject = CN=alice, O=evertoken tests, OU=lab|" "$PROFILES/alice.conf"
enr check 2>"$T/c3.err" || die "check after the subject change: $(cat "$T/c3.err")"
grep -q "the profile's subject changed" "$T/c3.err" || die "reason: $(cat "$T/c3.err")"
[ "$(grep -c "PKCSReq .* SUCCESS" "$CA/requests.log")" = $((n_pkcs + 1)) ] || die "no new PKCSReq: $(cat "$CA/requests.log")"
token_cert alice | openssl x509 -noout -subject | grep -q "OU = lab" || die "new subject missing"
[ "$(count_objects Certificate alice)" = 1 ] || die "objects: $(token_objects)"
cred_works alice || die "credential after re-enrollment"
ok "subject change: re-enrolled"

# Anchors: another CA added, the certificate still chains: nothing happens.
s3=$(token_serial alice)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/o.key" -out "$T/other.pem" -subj "/CN=other CA" -days 30 2>/dev/null
cat "$CA/ca.pem" "$T/other.pem" >"$T/anchors.pem"
sed -i "s|^anchors = .*|anchors = $T/anchors.pem|" "$PROFILES/alice.conf"
enr check 2>"$T/c4.err" || die "check after adding an anchor: $(cat "$T/c4.err")"
grep -q "the anchors changed; the certificate still chains to them" "$T/c4.err" || die "not revalidated: $(cat "$T/c4.err")"
[ "$(token_serial alice)" = "$s3" ] || die "replaced although it still chains"
# Only the other CA: the certificate no longer chains; the CA (not under the
# new anchors) is refused, the token keeps the credential.
cp "$T/other.pem" "$T/anchors.pem"
rc=0; enr check 2>"$T/c5.err" || rc=$?
[ "$rc" = 7 ] || die "anchors replaced: exit $rc (want 7): $(cat "$T/c5.err")"
grep -q "the profile's anchors changed and the certificate no longer chains to them" "$T/c5.err" || die "reason: $(cat "$T/c5.err")"
[ "$(token_serial alice)" = "$s3" ] && [ "$(count_objects Certificate alice)" = 1 ] || die "token changed: $(token_objects)"
ok "anchors change: revalidated; a certificate that no longer chains is replaced (attempted; refused here, token unchanged)"
