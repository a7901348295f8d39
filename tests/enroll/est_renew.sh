# EST re-enrollment (RFC 7030 section 4.2.2): /simplereenroll over TLS
# client-authenticated by the current certificate and its key in the token,
# the CSR repeating subject and SANs; a new key by default, the same key with
# rekey = no. A server that does not accept the client certificate (403)
# leaves the token as it was. The server's own rules, checked directly: no
# client certificate is a 401, a changed subject a 400.
. "$(dirname "$0")/lib.sh"
: "${ESTSRV:?run through ctest}"
ca_init
est_tls
printf 'pw-of-bob\n' >"$T/password"; chmod 600 "$T/password"
est_start --user bob --password-file "$T/password"
pubkey_of() { openssl x509 -in "$1" -noout -pubkey; }

est_profile alice "[ca]" "username = bob" "secret_file = $T/password"
est_profile bob "[ca]" "username = bob" "secret_file = $T/password" "[renewal]" "rekey = no"
est_profile carol "[ca]" "username = bob" "secret_file = $T/password" "[certificate]" "key_type = ec"
enr enroll 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
token_cert alice >"$T/alice1.pem"; token_cert bob >"$T/bob1.pem"; token_cert carol >"$T/carol1.pem"

enr -v renew --force 2>"$T/r.err" || die "re-enrollment failed: $(cat "$T/r.err")"
[ "$(grep -c '^simplereenroll 200 client-cert issued' "$CA/requests.log")" = 3 ] || die "no client-authenticated simplereenroll: $(cat "$CA/requests.log")"
grep -q "TLS client certificate from the token" "$T/r.err" || die "client certificate not used: $(cat "$T/r.err")"
token_cert alice >"$T/alice2.pem"; token_cert bob >"$T/bob2.pem"
[ "$(openssl x509 -in "$T/alice2.pem" -noout -serial)" != "$(openssl x509 -in "$T/alice1.pem" -noout -serial)" ] || die "alice not renewed"
[ "$(openssl x509 -in "$T/bob2.pem" -noout -serial)" != "$(openssl x509 -in "$T/bob1.pem" -noout -serial)" ] || die "bob not renewed"
! cmp -s <(pubkey_of "$T/alice1.pem") <(pubkey_of "$T/alice2.pem") || die "alice kept its key (rekey expected)"
cmp -s <(pubkey_of "$T/bob1.pem") <(pubkey_of "$T/bob2.pem") || die "bob's key changed (rekey = no)"
for n in alice bob; do
    [ "$(openssl x509 -in "$T/${n}2.pem" -noout -subject)" = "$(openssl x509 -in "$T/${n}1.pem" -noout -subject)" ] || die "$n: subject changed"
    openssl x509 -in "$T/${n}2.pem" -noout -ext subjectAltName | grep -q "DNS:$n.example" || die "$n: SAN lost"
    [ "$(count_objects Certificate $n)" = 1 ] && [ "$(count_objects Public $n)" = 1 ] || die "$n: $(token_objects)"
    cred_works $n || die "$n: renewed credential does not work"
done
if native; then
    # Native commit: the old pair is retired invisibly; no pending keys remain.
    [ "$(pending_count alice)" = 0 ] || die "pending objects left: $(pending_count alice)"
    ! p11 -O --type privkey 2>/dev/null | grep -q "(retired" || die "retired labels on a native token"
else
    token_objects | grep -q "^Private alice (retired " || die "alice's old key not retired: $(token_objects)"
fi
# An EC credential (EST, unlike SCEP, needs no RSA key): the TLS client
# signature is ECDSA in the token.
token_cert carol >"$T/carol2.pem"
openssl x509 -in "$T/carol2.pem" -noout -text | grep -q "id-ecPublicKey" || die "carol: not an EC certificate"
[ "$(openssl x509 -in "$T/carol2.pem" -noout -serial)" != "$(openssl x509 -in "$T/carol1.pem" -noout -serial)" ] || die "carol not renewed"
! cmp -s <(pubkey_of "$T/carol1.pem") <(pubkey_of "$T/carol2.pem") || die "carol kept its key"
grep -q "^renewed|alice|renewed certificate serial" "$T/notify.log" || die "renewal not notified"
ok "re-enrolled over client-authenticated TLS: alice with a new key, bob with the same key, carol (EC)"

# A server whose CA did not issue the token's certificate (another CA, same
# TLS identity): 403, explained, the token untouched, the old credential fine.
est_stop
mkdir -p "$T/ca2"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca2/ca.key" -out "$T/ca2/ca.pem" \
    -subj "/CN=another CA" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
cp "$CA/tls.pem" "$CA/tls.key" "$T/ca2/"
cat "$CA/ca.pem" "$T/ca2/ca.pem" >"$T/both.pem"
ESTDIR=$T/ca2 est_start --user bob --password-file "$T/password"
sed -i "s|^url = .*|url = $EST_URL|; s|^anchors = .*|anchors = $T/both.pem|" "$PROFILES/alice.conf"
rm "$PROFILES/bob.conf" "$PROFILES/carol.conf"
before=$(token_objects); serial=$(token_serial alice)
rc=0; enr renew --force 2>"$T/x.err" || rc=$?
[ "$rc" = 7 ] || die "foreign server: exit $rc, want 7: $(cat "$T/x.err")"
grep -q "EST simplereenroll: the server refused the request (HTTP 403, forbidden): client certificate not issued by this CA" "$T/x.err" || die "403 not explained: $(cat "$T/x.err")"
[ "$(token_objects)" = "$before" ] && [ "$(token_serial alice)" = "$serial" ] || die "token changed: $(token_objects)"
cred_works alice || die "old credential broken"
ok "re-enrollment refused (403) for a certificate another CA issued; token untouched"
est_stop

# The server's rules, with curl and file keys: no client certificate → 401,
# a CSR with another subject than the client certificate → 400.
est_start --user bob --password-file "$T/password"
csr() { openssl req -new -newkey rsa:2048 -nodes -keyout "$T/$1.key" -subj "$2" -outform DER 2>/dev/null | base64; }
post() { curl -s -o "$T/body" -w '%{http_code}' --cacert "$CA/ca.pem" -H 'Content-Type: application/pkcs10' --data-binary @- "$@"; }
code=$(csr f1 "/CN=file one" | post -u bob:pw-of-bob "$EST_URL/.well-known/est/simpleenroll")
[ "$code" = 200 ] || die "curl simpleenroll: $code $(cat "$T/body")"
base64 -d "$T/body" | openssl pkcs7 -inform DER -print_certs >"$T/f1.pem" || die "not PKCS#7"
code=$(csr f2 "/CN=file one" | post "$EST_URL/.well-known/est/simplereenroll")
[ "$code" = 401 ] || die "reenroll without client certificate: $code"
code=$(csr f3 "/CN=somebody else" | post --cert "$T/f1.pem" --key "$T/f1.key" "$EST_URL/.well-known/est/simplereenroll")
[ "$code" = 400 ] && grep -q "subject differs" "$T/body" || die "changed subject: $code $(cat "$T/body")"
code=$(csr f4 "/CN=file one" | post --cert "$T/f1.pem" --key "$T/f1.key" "$EST_URL/.well-known/est/simplereenroll")
[ "$code" = 200 ] || die "valid reenroll with a file key: $code $(cat "$T/body")"
ok "server: 401 without a client certificate, 400 for a changed subject"
