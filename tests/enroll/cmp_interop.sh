# Interoperability with OpenSSL's own CMP implementation (the `openssl cmp`
# command), not only between the project's client and server:
#  - `openssl cmp` as a client obtains certificates from the test CA
#    (cmpsrv): ir with MAC, cr and p10cr signed by an enrolled certificate,
#    kur signed by the old key (verified by the CA against it), rr; a kur
#    signed by a certificate of another CA is refused;
#  - the helper completes an exchange with `openssl cmp`'s built-in mock
#    server (-port, -srv_ref/-srv_secret, -rsp_cert): the certificate it
#    returns was issued by the test for the token's pending key (the key the
#    helper generated in the token while cmpsrv held its first request).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cmplib.sh"
cmp_init
cmp_start
SECRET=$(cat "$T/cmpsecret")
W=$T/ossl
mkdir -p "$W"
ocmp() { openssl cmp -server "127.0.0.1:$CMP_PORT" -path pkix/ -trusted "$CA/ca.pem" "$@" >>"$W/cmp.log" 2>&1; }
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/$1.key" 2>/dev/null; }

newkey k1
ocmp -cmd ir -ref alice-ref -secret "pass:$SECRET" -newkey "$W/k1.key" -subject "/CN=openssl client" \
    -sans "DNS:client.example" -certout "$W/c1.pem" || die "openssl cmp ir: $(tail -5 "$W/cmp.log")"
openssl verify -CAfile "$CA/ca.pem" "$W/c1.pem" >/dev/null || die "ir certificate does not verify"
openssl x509 -in "$W/c1.pem" -noout -ext subjectAltName | grep -q "DNS:client.example" || die "SAN lost"
newkey k2
ocmp -cmd cr -cert "$W/c1.pem" -key "$W/k1.key" -newkey "$W/k2.key" -subject "/CN=openssl client 2" \
    -certout "$W/c2.pem" || die "openssl cmp cr: $(tail -5 "$W/cmp.log")"
openssl req -new -key "$W/k2.key" -subj "/CN=openssl p10" -out "$W/p10.csr" 2>/dev/null
ocmp -cmd p10cr -cert "$W/c1.pem" -key "$W/k1.key" -csr "$W/p10.csr" -certout "$W/c3.pem" ||
    die "openssl cmp p10cr: $(tail -5 "$W/cmp.log")"
openssl x509 -in "$W/c3.pem" -noout -subject | grep -q "CN = openssl p10" || die "p10cr subject"
newkey k4
s1=$(openssl x509 -in "$W/c1.pem" -noout -serial | sed 's/serial=//')
ocmp -cmd kur -cert "$W/c1.pem" -key "$W/k1.key" -newkey "$W/k4.key" -certout "$W/c4.pem" ||
    die "openssl cmp kur: $(tail -5 "$W/cmp.log")"
grep -q "^kur protection verified against old certificate $s1\$" "$CA/requests.log" || die "CA log: $(cat "$CA/requests.log")"
for t in ir cr p10cr kur; do grep -q "^$t issued serial" "$CA/requests.log" || die "no $t in the CA log"; done
ocmp -cmd rr -cert "$W/c4.pem" -key "$W/k4.key" -oldcert "$W/c4.pem" || die "openssl cmp rr: $(tail -5 "$W/cmp.log")"
s4=$(openssl x509 -in "$W/c4.pem" -noout -serial | sed 's/serial=//')
grep -q "^rr revoked serial $s4 " "$CA/requests.log" || die "rr: $(cat "$CA/requests.log")"
ok "openssl cmp (client) against the test CA: ir (MAC), cr, p10cr, kur, rr"

# kur signed by a certificate another CA issued: refused.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/other.key" -out "$W/other.pem" -subj "/CN=other" \
    -days 30 -addext "keyUsage=critical,digitalSignature" 2>/dev/null
newkey k5
! ocmp -cmd kur -cert "$W/other.pem" -key "$W/other.key" -newkey "$W/k5.key" -certout "$W/c5.pem" ||
    die "kur by a foreign certificate accepted"
[ ! -e "$W/c5.pem" ] || die "a certificate was issued"
ok "openssl cmp kur signed by another CA's certificate: refused"
cmp_stop

# The helper against OpenSSL's mock server. First cmpsrv holds the helper's
# ir (waiting) and records the public key of the pending pair in the token.
: >"$CA/requests.log"
cmp_start --pending 1000
cmp_profile bob "[ca]" "poll_max = 0"
rc=0; enr enroll bob 2>"$T/b1.err" || rc=$?
[ "$rc" = 5 ] || die "hold: exit $rc: $(cat "$T/b1.err")"
cmp_stop
[ -s "$CA/held-pub.pem" ] || die "no held public key"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectAltName=DNS:bob.example\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' >"$W/bob.ext"
openssl x509 -new -subj "/CN=bob/O=evertoken tests" -force_pubkey "$CA/held-pub.pem" -CA "$CA/ca.pem" \
    -CAkey "$CA/ca.key" -days 30 -extfile "$W/bob.ext" -out "$W/bob.pem" 2>"$W/x509.err" ||
    die "cannot issue for the held key: $(cat "$W/x509.err")"
MP=$((20000 + RANDOM % 20000))
openssl cmp -port "$MP" -srv_ref mock-ref -srv_secret "pass:$SECRET" -rsp_cert "$W/bob.pem" \
    >"$W/mock.log" 2>&1 &
MOCK=$!
ET_PIDS+=("$MOCK")
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$MP/" && break; sleep 0.05; done
sed -i "s|^url = .*|url = http://127.0.0.1:$MP/pkix/|" "$PROFILES/bob.conf"
enr -v retry bob 2>"$T/b2.err" || die "helper against openssl's mock server: $(cat "$T/b2.err") $(cat "$W/mock.log")"
grep -q "reusing the new key pair of an earlier attempt" "$T/b2.err" || die "$(cat "$T/b2.err")"
grep -q "CMP: received IP" "$T/b2.err" && grep -q "CMP: received PKICONF" "$T/b2.err" || die "exchange: $(cat "$T/b2.err")"
[ "$(token_serial bob)" = "$(openssl x509 -in "$W/bob.pem" -noout -serial | sed 's/serial=//')" ] || die "bob's certificate is not the mock's"
cred_works bob || die "bob's credential does not work"
kill "$MOCK" 2>/dev/null || true
ok "the helper completed ir (MAC) and certConf with openssl cmp's mock server"
