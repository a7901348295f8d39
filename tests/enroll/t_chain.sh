# The CA chain: the SCEP CA is an intermediate under a root the profile
# trusts. Enrollment stores the intermediate in the token as a CA
# certificate (no duplicate on renewal) and writes cert.pem, chain.pem and
# fullchain.pem (EVERTOKEN_CHAIN_FILE for the post script); `evertoken
# export-cert --chain` writes the bundle; a real TLS client (gnutls-cli,
# which builds the chain from the token) presents the intermediate to a
# server that trusts only the root; a re-issued intermediate replaces the old
# one at the next renewal; a chain that does not verify is refused with
# the token unchanged.
. "$(dirname "$0")/lib.sh"
need tstclnt certutil modutil ss
ca_init
ROOT=$T/root
mkdir -p "$ROOT"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$ROOT/root.key" -out "$ROOT/root.pem" \
    -subj "/CN=evertoken test root" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' >"$ROOT/int.ext"
# The intermediate (re-)issued by the root for the CA's key: $1 output, $2 days.
issue_int() {
    openssl req -new -key "$CA/ca.key" -subj "/CN=evertoken test issuing CA" -out "$ROOT/int.csr" 2>/dev/null
    openssl x509 -req -in "$ROOT/int.csr" -CA "$ROOT/root.pem" -CAkey "$ROOT/root.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days "$2" -sha256 -extfile "$ROOT/int.ext" -out "$1" 2>/dev/null
}
issue_int "$CA/ca.pem" 3000
cp "$CA/ca.pem" "$T/int1.pem"
scep_start
NOW=$(now_epoch)
at() { export EVERTOKEN_ENROLL_FAKE_TIME=$1; echo "$1" >"$CA/now"; }
cat >"$T/post.sh" <<'SH'
#!/bin/sh
env | grep '^EVERTOKEN_' | sort >"$POST_OUT"
SH
chmod 700 "$T/post.sh"
export POST_OUT=$T/post.env
profile alice "[hooks]" "post_script = $T/post.sh"
sed -i "s|^anchors = .*|anchors = $ROOT/root.pem|" "$PROFILES/alice.conf"
INT_CN="evertoken test issuing CA"

# A chain that does not verify (anchors of another root): refused, token unchanged.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/other.key" -out "$T/other.pem" \
    -subj "/CN=some other root" -days 30 2>/dev/null
mkdir -p "$T/badprof"
sed "s|^anchors = .*|anchors = $T/other.pem|" "$PROFILES/alice.conf" >"$T/badprof/alice.conf"
rc=0; host "$ENROLL_BIN" --profiles "$T/badprof" --state-dir "$T/state-bad" enroll 2>"$T/bad.err" || rc=$?
[ "$rc" = 7 ] || die "foreign anchors: exit $rc (want 7): $(cat "$T/bad.err")"
grep -q "does not chain to the profile's trust anchors" "$T/bad.err" || die "no precise error: $(cat "$T/bad.err")"
[ -z "$(token_objects)" ] || die "token changed by a refused chain: $(token_objects)"
ok "a chain that does not verify is refused, token unchanged"

enr enroll 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
[ "$(count_objects Certificate alice)" = 1 ] || die "leaf missing: $(token_objects)"
[ "$(count_objects Certificate "$INT_CN")" = 1 ] || die "intermediate not in the token: $(token_objects)"
! token_objects | grep -q "evertoken test root" || die "the anchor itself was stored: $(token_objects)"
host "$CLI" --module "$MOD" list --token "$LABEL" 2>/dev/null | grep "X.509/CA" | grep -q "$INT_CN" ||
    die "the intermediate is not a CA certificate (category authority): $(host "$CLI" --module "$MOD" list --token "$LABEL" 2>&1)"
D=$STATE/certs/alice
for f in cert chain fullchain; do
    [ -s "$D/$f.pem" ] || die "$f.pem missing"
    [ "$(stat -c %a "$D/$f.pem")" = 600 ] || die "$f.pem not 0600"
done
cmp -s <(openssl x509 -in "$D/chain.pem" -outform DER) <(openssl x509 -in "$T/int1.pem" -outform DER) || die "chain.pem is not the intermediate"
[ "$(grep -c 'BEGIN CERTIFICATE' "$D/fullchain.pem")" = 2 ] || die "fullchain.pem: not leaf + intermediate"
token_cert alice | cmp -s - <(openssl x509 -in "$D/cert.pem") || die "cert.pem is not the token's certificate"
openssl verify -CAfile "$ROOT/root.pem" -untrusted "$D/chain.pem" "$D/cert.pem" >/dev/null || die "cert.pem does not verify with chain.pem"
grep -q "^EVERTOKEN_CHAIN_FILE=$D/chain.pem$" "$POST_OUT" || die "post script: no EVERTOKEN_CHAIN_FILE: $(cat "$POST_OUT")"
grep -q "^EVERTOKEN_FULLCHAIN_FILE=$D/fullchain.pem$" "$POST_OUT" || die "post script: no EVERTOKEN_FULLCHAIN_FILE"
ok "enrolled: intermediate stored as a CA certificate, cert/chain/fullchain.pem written"

# export-cert --chain: the bundle from the token.
if [ "$ENR_TOKEN_KIND" = evertoken ]; then
    "$CLI" export-cert --token "$LABEL" --label alice --chain -o "$T/bundle.pem" || die "export-cert --chain"
    cmp -s "$T/bundle.pem" "$D/fullchain.pem" || die "export-cert --chain differs from fullchain.pem"
    expect_rc 2 "$CLI" export-cert --token "$LABEL" --label alice --chain --der
    ok "evertoken export-cert --chain writes leaf + intermediate"
fi

# A real TLS client takes key and certificate from the token and sends the
# intermediate it found there (NSS builds the chain from the token's CA
# certificates); the server trusts only the root.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/srv.key" -out "$T/srv.pem" -subj "/CN=127.0.0.1" \
    -days 30 -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
NSS=$T/nss
mkdir -p "$NSS"
certutil -N -d "sql:$NSS" --empty-password
out=$(host setsid -w modutil -dbdir "sql:$NSS" -add enr -libfile "$MOD" -force </dev/null 2>&1) || die "modutil -add: $out"
tls_check() {
    local port pid log=$T/s_server.$1.log out
    port=$((20000 + RANDOM % 40000))
    openssl s_server -accept "127.0.0.1:$port" -cert "$T/srv.pem" -key "$T/srv.key" -Verify 3 \
        -attime "${EVERTOKEN_ENROLL_FAKE_TIME:-$(date +%s)}" -CAfile "$ROOT/root.pem" -verify_return_error -naccept 1 -rev >"$log" 2>&1 </dev/null &
    pid=$!
    ET_PIDS+=("$pid")
    for _ in $(seq 100); do [ -n "$(ss -Htln "sport = :$port")" ] && break; sleep 0.1; done
    out=$(printf 'chain test\nCLOSE\n' | host timeout 8 tstclnt -h 127.0.0.1 -p "$port" -d "sql:$NSS" \
        -n "$LABEL:alice" -w "$PIN" -o 2>&1) || true
    wait "$pid" 2>/dev/null || true
    grep -q "^depth=1 CN = $INT_CN" "$log" || die "the server did not get the intermediate: $(cat "$log")
client: $out"
    grep -q "^depth=0 CN = alice" "$log" || die "no client certificate: $(cat "$log")"
    ! grep -qi "verify error" "$log" || die "client chain did not verify: $(cat "$log")"
}
tls_check 1
ok "NSS tstclnt presents the intermediate from the token to a server trusting only the root"

# Renewal: the same chain, no duplicate.
at $((NOW + 65 * 86400))
enr check 2>"$T/r.err" || die "renewal: $(cat "$T/r.err")"
grep -q "RenewalReq .* SUCCESS" "$CA/requests.log" || die "not renewed: $(cat "$CA/requests.log")"
[ "$(count_objects Certificate "$INT_CN")" = 1 ] || die "intermediate duplicated: $(token_objects)"
openssl verify -attime "$EVERTOKEN_ENROLL_FAKE_TIME" -CAfile "$ROOT/root.pem" -untrusted "$D/chain.pem" "$D/cert.pem" >/dev/null || die "renewed cert.pem"
token_cert alice | cmp -s - <(openssl x509 -in "$D/cert.pem") || die "cert.pem not updated by the renewal"
ok "renewed: chain kept, no duplicate"

# The CA's intermediate is re-issued (new serial, same key): the next renewal
# installs the new one and removes the old one, which nothing needs any more.
issue_int "$CA/ca.pem" 3500
cp "$CA/ca.pem" "$T/int2.pem"
scep_stop
scep_start
sed -i "s|^url = .*|url = $SCEP_URL|" "$PROFILES/alice.conf"
at $((NOW + 130 * 86400))
enr check 2>"$T/r2.err" || die "renewal after the CA's re-issue: $(cat "$T/r2.err")"
[ "$(count_objects Certificate "$INT_CN")" = 1 ] || die "old and new intermediate: $(token_objects)"
cmp -s <(openssl x509 -in "$D/chain.pem" -outform DER) <(openssl x509 -in "$T/int2.pem" -outform DER) || die "chain.pem is not the new intermediate"
p11 --read-object --type cert --label "$INT_CN" -o "$T/int.der" >/dev/null 2>&1 || die "read intermediate"
cmp -s "$T/int.der" <(openssl x509 -in "$T/int2.pem" -outform DER) || die "the token holds the old intermediate"
tls_check 2
ok "a re-issued intermediate replaces the old one in the token"
