# EST /csrattrs (RFC 7030 section 4.5, RFC 9908): asked before every CSR.
# No attributes (404, 204): enrollment as before. A server asking for SHA-384
# (sha384WithRSAEncryption) and an extKeyUsage gets a CSR signed with SHA-384
# that carries it, at enrollment and at re-enrollment (estsrv enforces it:
# 400 otherwise); what the helper cannot fill in is logged as ignored and
# the challengePassword (tls-unique linking) is reported as unsupported. A
# server asking for an EC P-384 key gets one when the profile leaves the key
# type open, and a precise error with the token untouched when the profile
# fixes RSA. A malformed answer is refused precisely, token untouched.
. "$(dirname "$0")/lib.sh"
: "${ESTSRV:?run through ctest}"
ca_init
est_tls
printf 'pw-of-bob\n' >"$T/password"; chmod 600 "$T/password"
restart() { est_stop; est_start --user bob --password-file "$T/password" "$@"; sed -i "s|^url = .*|url = $EST_URL|" "$PROFILES"/*.conf 2>/dev/null || true; }
# base64 of the DER that `openssl asn1parse -genconf` makes of stdin.
csrattrs() { { openssl asn1parse -genconf /dev/stdin -out "$T/ca.der" >/dev/null && openssl base64 -in "$T/ca.der"; } || die "openssl asn1parse -genconf failed"; }

# No /csrattrs at all (404): as before.
est_start --user bob --password-file "$T/password"
est_profile plain "[ca]" "username = bob" "secret_file = $T/password"
enr -v enroll 2>"$T/plain.err" || die "enrollment without csrattrs: $(cat "$T/plain.err")"
grep -q "^csrattrs 404" "$CA/requests.log" || die "csrattrs not asked: $(cat "$CA/requests.log")"
grep -q "^simpleenroll 200 basic issued .* sig=sha256WithRSAEncryption key=RSA-2048" "$CA/requests.log" || die "server log: $(cat "$CA/requests.log")"
cred_works plain || die "plain credential does not work"
rm "$PROFILES/plain.conf"
ok "server without /csrattrs (404): enrollment as before (RSA 2048, SHA-256)"

# 204: no attributes either.
: >"$T/empty.b64"
restart --csrattrs "$T/empty.b64"
est_profile none "[ca]" "username = bob" "secret_file = $T/password"
enr enroll 2>"$T/none.err" || die "enrollment with csrattrs 204: $(cat "$T/none.err")"
grep -q "^csrattrs 204 none" "$CA/requests.log" || die "no 204: $(cat "$CA/requests.log")"
rm "$PROFILES/none.conf"
ok "/csrattrs 204 (none): enrollment as before"

# SHA-384, an extKeyUsage (clientAuth) to include, challengePassword and an
# OID the client cannot fill in (macAddress, RFC 7030's example).
csrattrs >"$T/sha384.b64" <<'CNF'
asn1 = SEQUENCE:attrs
[attrs]
a1 = OID:challengePassword
a2 = OID:sha384WithRSAEncryption
a3 = SEQUENCE:extreq
a4 = OID:1.3.6.1.1.1.1.22
[extreq]
type = OID:1.2.840.113549.1.9.14
values = SET:extreqvals
[extreqvals]
v1 = SEQUENCE:exts
[exts]
e1 = SEQUENCE:eku
[eku]
id = OID:extendedKeyUsage
val = FORMAT:HEX,OCTETSTRING:300a06082b06010505070302
CNF
restart --csrattrs "$T/sha384.b64" --csrattrs-enforce
est_profile alice "[ca]" "username = bob" "secret_file = $T/password"
enr -v enroll 2>"$T/alice.err" || die "SHA-384 enrollment: $(cat "$T/alice.err")"
grep -q "^csrattrs 200" "$CA/requests.log" || die "csrattrs not served: $(cat "$CA/requests.log")"
grep -q "^simpleenroll 200 basic issued .* sig=sha384WithRSAEncryption key=RSA-2048" "$CA/requests.log" || die "CSR not SHA-384: $(cat "$CA/requests.log")"
grep -q "the CSR is signed with SHA384, as the EST server asks" "$T/alice.err" || die "hash not reported: $(cat "$T/alice.err")"
grep -q "the CSR asks for the X509v3 Extended Key Usage the server requests" "$T/alice.err" || die "EKU not taken: $(cat "$T/alice.err")"
grep -q "EST csrattrs: ignored: OID 1.3.6.1.1.1.1.22" "$T/alice.err" || die "ignored OID not logged: $(cat "$T/alice.err")"
grep -q "tls-unique linking .* is not supported by evertoken-enroll; the request goes without it" "$T/alice.err" || die "linking not reported: $(cat "$T/alice.err")"
cred_works alice || die "alice does not work"
ok "csrattrs sha384WithRSAEncryption + extKeyUsage: CSR signed with SHA-384 carrying it; the rest logged as ignored"

# Re-enrollment: the same attributes, the same hash (the server enforces it).
s1=$(token_serial alice)
enr renew --force 2>"$T/re.err" || die "SHA-384 re-enrollment: $(cat "$T/re.err")"
grep -q "^simplereenroll 200 client-cert issued .* sig=sha384WithRSAEncryption" "$CA/requests.log" || die "re-enrollment CSR not SHA-384: $(cat "$CA/requests.log")"
[ "$(token_serial alice)" != "$s1" ] || die "alice not renewed"
rm "$PROFILES/alice.conf"
ok "re-enrollment honours csrattrs too (SHA-384)"

# EC P-384 with ecdsa-with-SHA384 (RFC 7030 section 4.5.2's example form).
csrattrs >"$T/p384.b64" <<'CNF'
asn1 = SEQUENCE:attrs
[attrs]
a1 = SEQUENCE:ec
a2 = OID:ecdsa-with-SHA384
[ec]
type = OID:id-ecPublicKey
values = SET:curves
[curves]
c1 = OID:secp384r1
CNF
restart --csrattrs "$T/p384.b64" --csrattrs-enforce
# A profile that fixes RSA: a precise error, the token untouched.
est_profile fixed "[ca]" "username = bob" "secret_file = $T/password" "[certificate]" "key_type = rsa"
before=$(token_objects); sent=$(grep -c "^simpleenroll" "$CA/requests.log")
rc=0; enr enroll 2>"$T/fixed.err" || rc=$?
[ "$rc" = 3 ] || die "profile conflict: exit $rc (want 3): $(cat "$T/fixed.err")"
grep -q "profile fixed: the EST server requires an EC P-384 key (/csrattrs) but the profile fixes an RSA key" "$T/fixed.err" || die "conflict not explained: $(cat "$T/fixed.err")"
[ "$(token_objects)" = "$before" ] || die "token changed: $(token_objects)"
[ "$(grep -c "^simpleenroll" "$CA/requests.log")" = "$sent" ] || die "a CSR was sent: $(cat "$CA/requests.log")"
rm "$PROFILES/fixed.conf"
ok "server requires EC P-384, profile fixes RSA: refused precisely (exit 3), token untouched"

# A profile leaving the key type open: a P-384 key, CSR signed with ECDSA-SHA384.
est_profile bob "[ca]" "username = bob" "secret_file = $T/password"
enr -v enroll 2>"$T/bob.err" || die "P-384 enrollment: $(cat "$T/bob.err")"
grep -q "the EST server asks for an EC P-384 key (/csrattrs); a new key will be EC P-384" "$T/bob.err" || die "key choice not reported: $(cat "$T/bob.err")"
grep -q "^simpleenroll 200 basic issued .* sig=ecdsa-with-SHA384 key=EC-secp384r1" "$CA/requests.log" || die "not a P-384 CSR: $(cat "$CA/requests.log")"
token_cert bob >"$T/bob.pem" || die "bob not stored"
openssl x509 -in "$T/bob.pem" -noout -text | grep -q "NIST CURVE: P-384" || die "certificate key not P-384"
p11 -O --type pubkey 2>/dev/null >"$T/pub.txt"
awk '/Object;/{o=$0} /label:/{sub(/^[ \t]*label:[ \t]*/,""); if ($1 == "bob") print o}' "$T/pub.txt" | grep -q "EC .*384 bits" || die "token public key not EC 384: $(cat "$T/pub.txt")"
ok "server asks for EC P-384: the profile leaving it open gets a P-384 key, CSR ECDSA-SHA384"

# Malformed answers: refused precisely, the token untouched.
printf 'MAMCAQE=\n' >"$T/bad.b64" # SEQUENCE { INTEGER 1 }: not an AttrOrOID
restart --csrattrs "$T/bad.b64"
est_profile carol "[ca]" "username = bob" "secret_file = $T/password"
before=$(token_objects); sent=$(grep -c "^simpleenroll" "$CA/requests.log")
rc=0; enr enroll 2>"$T/bad.err" || rc=$?
[ "$rc" = 7 ] || die "malformed csrattrs: exit $rc (want 7): $(cat "$T/bad.err")"
grep -q "EST csrattrs: the answer is not a DER CsrAttrs (a SEQUENCE OF OBJECT IDENTIFIER or Attribute, RFC 7030 section 4.5.2): 5 bytes that do not decode as one" "$T/bad.err" || die "not explained: $(cat "$T/bad.err")"
[ "$(token_objects)" = "$before" ] || die "token changed: $(token_objects)"
printf '%%%% not base64 %%%%\n' >"$T/bad.b64"
restart --csrattrs "$T/bad.b64"
rc=0; enr enroll 2>"$T/bad2.err" || rc=$?
[ "$rc" = 7 ] && grep -q "EST csrattrs: the answer is not base64" "$T/bad2.err" || die "not base64: exit $rc: $(cat "$T/bad2.err")"
[ "$(token_objects)" = "$before" ] || die "token changed: $(token_objects)"
csrattrs >"$T/bad.b64" <<'CNF'
asn1 = SEQUENCE:attrs
[attrs]
a1 = SEQUENCE:ec
[ec]
type = OID:id-ecPublicKey
values = SET:curves
[curves]
c1 = INTEGER:384
CNF
restart --csrattrs "$T/bad.b64"
rc=0; enr enroll 2>"$T/bad3.err" || rc=$?
[ "$rc" = 7 ] && grep -q "EST csrattrs: the id-ecPublicKey attribute's value is not a curve OBJECT IDENTIFIER" "$T/bad3.err" || die "bad curve value: exit $rc: $(cat "$T/bad3.err")"
[ "$(token_objects)" = "$before" ] || die "token changed: $(token_objects)"
[ "$(grep -c "^simpleenroll" "$CA/requests.log")" = "$sent" ] || die "a CSR was sent: $(cat "$CA/requests.log")"
ok "malformed /csrattrs answers refused precisely (exit 7), token untouched"
