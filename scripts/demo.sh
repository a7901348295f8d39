#!/usr/bin/env bash
# evertoken end to end: install what the demo needs, build, create a token in
# a temporary directory, import a PKCS#12 client credential, and show it
# through pkcs11-tool, p11tool and NSS certutil; then generate a key in the
# token, have the demo CA certify it, and use it for a TLS client-certificate
# handshake on 127.0.0.1; finally enroll a certificate from a local SCEP (or,
# with EST=1, EST) test CA and renew it while a running TLS client keeps
# using the token. Touches no real token or NSS database.
#   scripts/demo.sh            the demo (about 1.5 minutes after the install)
#   EST=1 scripts/demo.sh      enrollment over EST instead of SCEP
#   ACME=1 scripts/demo.sh     instead: a server certificate over ACME (local
#                              pebble) into the token, nginx serving TLS with
#                              it, renewed while a client loop runs
#   DEMO_KEEP=1 scripts/demo.sh  keep the demo's files afterwards
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
. scripts/deps.sh
# the pkcs11 engine's configuration, free ports, nginx and pebble helpers
. scripts/lib/pkcs11-tls.sh

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# The last line of the summary: what is removed, what stays.
cleanup_note() {
    if [ "${DEMO_KEEP:-0}" = 1 ]; then
        echo "Clean up: rm -rf $W $here/build-demo"
    else
        echo "Clean up: $W is removed now (DEMO_KEEP=1 keeps it); rm -rf $here/build-demo removes the build."
    fi
}
# One sentence: what the step just proved.
proved() { printf '\033[32m-> %s\033[0m\n' "$*"; }
# Run quietly; show the output only if the command fails.
quiet() {
    local log
    log=$(mktemp /tmp/evertoken-demo-log.XXXXXX)
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "failed: $*" >&2
        return 1
    fi
    rm -f "$log"
}

step "install the Debian packages the demo needs (scripts/deps.sh: runtime and demo sets)"
et_install_demo_deps
proved "every package of the runtime and demo sets is installed (nothing else: the test set is for scripts/test.sh)."

step "build the module, the CLI, the enrollment helper and the demo's test CAs"
quiet cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEVERTOKEN_MAN=OFF
quiet cmake --build build-demo -j"$(nproc 2>/dev/null || echo 2)" \
    --target evertoken evertoken-cli evertoken-enroll scepsrv estsrv
MODULE=$here/build-demo/module/libevertoken.so
CLI=$here/build-demo/tools/evertoken
export EVERTOKEN_MODULE=$MODULE
echo "module: $MODULE"
echo "CLI:    $CLI ($("$CLI" --version))"
proved "the sources build into a PKCS#11 module (libevertoken.so), the evertoken CLI and evertoken-enroll."

W=$(mktemp -d /tmp/evertoken-demo.XXXXXX)
chmod 700 "$W"
# Remove the demo's files at the end unless DEMO_KEEP=1.
cleanup_files() { [ "${DEMO_KEEP:-0}" = 1 ] || rm -rf "$W"; }
trap 'cleanup_files' EXIT
export HOME=$W/home EVERTOKEN_DIR=$W/tokens
mkdir -p "$HOME"
# Demo-only secrets, passed through the environment (never argv).
export DEMO_SO_PIN=so-secret-1234 DEMO_PIN=123456 DEMO_P12_PASS=export-pass

step "a test CA and a client credential (PKCS#12), made with openssl"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=evertoken demo CA" -keyout "$W/ca.key" -out "$W/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=alice@example.test/O=evertoken demo" \
    -keyout "$W/alice.key" -out "$W/alice.csr" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n' >"$W/ext.cnf"
openssl x509 -req -in "$W/alice.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial \
    -days 30 -extfile "$W/ext.cnf" -out "$W/alice.pem" 2>/dev/null
openssl pkcs12 -export -inkey "$W/alice.key" -in "$W/alice.pem" -certfile "$W/ca.pem" \
    -name alice -passout env:DEMO_P12_PASS -out "$W/alice.p12"
rm -f "$W/alice.key"
echo "alice.p12: $(openssl x509 -in "$W/alice.pem" -noout -subject)"
proved "a PKCS#12 file holds alice's RSA key and certificate, as a CA or an export would hand it out."

step "create a token (evertoken init)"
"$CLI" init --label demo --so-pin env:DEMO_SO_PIN --pin env:DEMO_PIN
echo "token files in $EVERTOKEN_DIR: $(cd "$EVERTOKEN_DIR" && ls token-*.db)"
proved "a token is one encrypted file, created with an SO PIN and a user PIN."

step "import the PKCS#12 credential (evertoken import)"
"$CLI" import --token demo --pin env:DEMO_PIN --passphrase env:DEMO_P12_PASS "$W/alice.p12"
proved "the key and certificate went from the PKCS#12 file into the token (the file is no longer needed)."

step "evertoken list --token demo --login"
"$CLI" list --token demo --login --pin env:DEMO_PIN
proved "after a login the token lists alice's private key, public key and certificate under one CKA_ID."

step "pkcs11-tool -L (slots and tokens)"
pkcs11-tool --module "$MODULE" -L
proved "OpenSC's pkcs11-tool loads the module and sees the token, plus the free slot for the next one."

step "pkcs11-tool -O --login (key and certificate share one CKA_ID)"
pkcs11-tool --module "$MODULE" --token-label demo --login --pin "$DEMO_PIN" -O
proved "a standard PKCS#11 client finds the objects evertoken imported, with the key usable for signing."

step "p11tool --list-all-certs (no PIN needed for certificates)"
p11tool --provider "$MODULE" --list-all-certs
proved "GnuTLS reads the certificate without a PIN: certificates are public objects."

step "p11tool --list-privkeys --login"
GNUTLS_PIN=$DEMO_PIN p11tool --provider "$MODULE" --login --list-privkeys
proved "the private key is visible only after a login with the user PIN."

step "NSS: add the module to a temporary NSS database and list certificates"
mkdir -p "$W/nss"
certutil -N -d "sql:$W/nss" --empty-password
modutil -dbdir "sql:$W/nss" -add evertoken -libfile "$MODULE" -force </dev/null >/dev/null
modutil -dbdir "sql:$W/nss" -list evertoken </dev/null | sed -n '1,20p'
certutil -L -d "sql:$W/nss" -h all
proved "NSS (Firefox, Chromium, Thunderbird) loads the module and lists alice's certificate from the token."

# ---- A key generated in the token, certified by the CA, used for TLS ----
step "generate a key pair IN the token (pkcs11-tool --keypairgen): the private key never leaves it"
pkcs11-tool --module "$MODULE" --token-label demo --login --pin "$DEMO_PIN" \
    --keypairgen --key-type EC:prime256v1 --id 42 --label carol --usage-sign
proved "the token generates key pairs itself (C_GenerateKeyPair); carol's private key never exists outside it."
# OpenSSL reaches the token through the pkcs11 engine (libengine-pkcs11-openssl),
# configured in a private openssl.cnf. Only the commands that use the token key get it.
pkcs11_engine_conf "$W/engine.cnf" "$MODULE" "$DEMO_PIN" 0 req
KEY_URI="pkcs11:token=demo;object=carol;type=private"
CERT_URI="pkcs11:token=demo;object=carol;type=cert"

step "a certificate request signed by the token key (openssl req -engine pkcs11), issued by the demo CA"
OPENSSL_CONF=$W/engine.cnf openssl req -new -engine pkcs11 -keyform engine -key "$KEY_URI" \
    -subj "/CN=carol@example.test/O=evertoken demo" -out "$W/carol.csr"
openssl req -verify -in "$W/carol.csr" -noout
openssl x509 -req -in "$W/carol.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial \
    -days 30 -extfile "$W/ext.cnf" -out "$W/carol.pem" 2>/dev/null
openssl x509 -in "$W/carol.pem" -noout -subject -issuer
proved "OpenSSL signs a certificate request with the token's key through the pkcs11 engine; the CA issued it."

step "write the certificate to the token next to its key (same CKA_ID 42)"
"$CLI" import --token demo --pin env:DEMO_PIN --id 42 --label carol "$W/carol.pem"
"$CLI" list --token demo --login --pin env:DEMO_PIN
proved "the issued certificate sits next to its key in the token: carol is a complete credential."

step "TLS with a client certificate: openssl s_server -Verify 1 on 127.0.0.1, curl with key and certificate from the token"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$W/server.key" -out "$W/server.csr" 2>/dev/null
printf 'extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$W/server.ext"
openssl x509 -req -in "$W/server.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial \
    -days 30 -extfile "$W/server.ext" -out "$W/server.pem" 2>/dev/null
PORT=$(free_port)
# -Verify 1: a client certificate from the demo CA is required; -www answers
# one HTTP request with what the server saw of the connection; -naccept 1: then it exits.
openssl s_server -accept "127.0.0.1:$PORT" -cert "$W/server.pem" -key "$W/server.key" \
    -Verify 1 -CAfile "$W/ca.pem" -verify_return_error -www -naccept 1 >"$W/s_server.log" 2>&1 </dev/null &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null; cleanup_files' EXIT
for _ in $(seq 100); do [ -n "$(ss -Htln "sport = :$PORT")" ] && break; sleep 0.1; done
OPENSSL_CONF=$W/engine.cnf curl -sS --fail --cacert "$W/ca.pem" \
    --engine pkcs11 --key-type ENG --key "$KEY_URI" --cert-type ENG --cert "$CERT_URI" \
    "https://127.0.0.1:$PORT/" >"$W/page.txt"
wait $SERVER_PID || true
trap 'cleanup_files' EXIT
echo "what the server saw (s_server -www page and log):"
grep -E "^(New, |Peer signing digest|Peer signature type)" "$W/page.txt"
grep "^depth=" "$W/s_server.log"
awk '/^Client certificate/ { on = 1 } on' "$W/page.txt" | openssl x509 -noout -subject -issuer -fingerprint -sha256
proved "curl completed a TLS handshake authenticated by carol's key inside the token; the server verified her certificate."

# ---- ACME=1: a server certificate over ACME into the token, nginx serving
# with it, renewed live (scripts/demo-acme.sh; docs/clients.md "nginx").
if [ "${ACME:-0}" = 1 ]; then
    . scripts/demo-acme.sh
    exit 0
fi

# ---- Automatic enrollment and renewal (evertoken-enroll, docs/enrollment.md) ----
# EST=1 uses the local EST test CA (tests/enroll/estsrv, RFC 7030) instead of
# SCEP, CMP=1 the local CMP test CA (tests/enroll/cmpsrv, RFC 9810, OpenSSL's
# CMP server): the only difference for the helper is the profile's [ca] section.
EST=${EST:-0}
CMP=${CMP:-0}
ENROLL=$here/build-demo/enroll/evertoken-enroll
mkdir -p "$W/scep" "$W/profiles"
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=evertoken demo enrollment CA" \
    -addext "basicConstraints=critical,CA:TRUE" -keyout "$W/scep/ca.key" -out "$W/scep/ca.pem" 2>/dev/null
printf 'demo-challenge\n' >"$W/challenge"
printf '%s\n' "$DEMO_PIN" >"$W/pin"
chmod 600 "$W/challenge" "$W/pin"
if [ "$CMP" = 1 ]; then
    step "evertoken-enroll: enroll bob into the token from a local CMP test CA (tests/enroll/cmpsrv): ir protected by a MAC"
    # The CA's CMP signer certificate (the CA signs its answers with it),
    # valid past the demo's time travel.
    openssl req -new -newkey rsa:2048 -nodes -keyout "$W/scep/srv.key" -subj "/CN=evertoken demo CMP server" 2>/dev/null |
        openssl x509 -req -CA "$W/scep/ca.pem" -CAkey "$W/scep/ca.key" -CAcreateserial -days 365 \
            -extfile <(printf 'keyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\n') -out "$W/scep/srv.pem" 2>/dev/null
    "$here/build-demo/tests/enroll/cmpsrv" --dir "$W/scep" --port-file "$W/scep/port" \
        --secret-file "$W/challenge" 2>"$W/scep/log" &
elif [ "$EST" = 1 ]; then
    step "evertoken-enroll: enroll bob into the token from a local EST test CA (tests/enroll/estsrv)"
    openssl req -new -newkey rsa:2048 -nodes -keyout "$W/scep/tls.key" -subj "/CN=127.0.0.1" 2>/dev/null |
        openssl x509 -req -CA "$W/scep/ca.pem" -CAkey "$W/scep/ca.key" -CAcreateserial -days 30 \
            -extfile <(printf 'subjectAltName=IP:127.0.0.1\n') -out "$W/scep/tls.pem" 2>/dev/null
    "$here/build-demo/tests/enroll/estsrv" --dir "$W/scep" --port-file "$W/scep/port" \
        --user bob --password-file "$W/challenge" 2>"$W/scep/log" &
else
    step "evertoken-enroll: enroll bob into the token from a local SCEP test CA (tests/enroll/scepsrv)"
    "$here/build-demo/tests/enroll/scepsrv" --dir "$W/scep" --port-file "$W/scep/port" \
        --challenge-file "$W/challenge" 2>"$W/scep/log" &
fi
SCEP_PID=$!
trap 'kill $SCEP_PID 2>/dev/null; cleanup_files' EXIT
for _ in $(seq 100); do [ -s "$W/scep/port" ] && break; sleep 0.05; done
if [ "$CMP" = 1 ]; then
    CA_SECTION="[ca]
protocol = cmp
url = http://127.0.0.1:$(cat "$W/scep/port")/pkix/
reference = bob-demo"
elif [ "$EST" = 1 ]; then
    CA_SECTION="[ca]
protocol = est
url = https://127.0.0.1:$(cat "$W/scep/port")
username = bob"
else
    CA_SECTION="[ca]
url = http://127.0.0.1:$(cat "$W/scep/port")/scep"
fi
cat >"$W/profiles/bob.conf" <<CONF
$CA_SECTION
anchors = $W/scep/ca.pem
secret_file = $W/challenge
[certificate]
subject = CN=bob, O=evertoken demo
san = DNS:bob.example.test
[token]
uri = pkcs11:token=demo;object=bob
module = $MODULE
pin_file = $W/pin
CONF
enr() { "$ENROLL" --profiles "$W/profiles" --state-dir "$W/state" "$@"; }
# The serial of bob's certificate in the token.
bob_serial() {
    pkcs11-tool --module "$MODULE" --token-label demo --read-object --type cert --label bob 2>/dev/null |
        openssl x509 -inform DER -noout -serial | sed 's/^serial=//'
}
enr enroll
enr status || true
ENROLLED_SERIAL=$(bob_serial)
PROTO=$([ "$EST" = 1 ] && echo EST || echo SCEP)
proved "evertoken-enroll generated bob's key in the token, had the CA certify it over $PROTO, and stored certificate $ENROLLED_SERIAL next to the key."

FAKE=$(($(date +%s) + 65 * 86400))
step "a running TLS client: curl, started once, connects twice a second with bob's key and certificate from the token"
# The enrollment CA signs a server certificate; s_server verifies client
# certificates at the demo's future time (-attime), where both bob's current
# certificate and the renewed one are valid, and answers every request with
# the client certificate it saw (-www). curl is never restarted: one process,
# one load of the module and one login, a new TLS handshake per request.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$W/scep/web.key" 2>/dev/null |
    openssl x509 -req -CA "$W/scep/ca.pem" -CAkey "$W/scep/ca.key" -CAcreateserial -days 90 \
        -extfile <(printf 'subjectAltName=IP:127.0.0.1\n') -out "$W/scep/web.pem" 2>/dev/null
WPORT=$(free_port)
openssl s_server -accept "127.0.0.1:$WPORT" -cert "$W/scep/web.pem" -key "$W/scep/web.key" \
    -Verify 1 -CAfile "$W/scep/ca.pem" -verify_return_error -attime "$FAKE" -www \
    >"$W/web.log" 2>&1 </dev/null &
WEB_PID=$!
CURL_PID=
trap 'kill $SCEP_PID $WEB_PID $CURL_PID 2>/dev/null; cleanup_files' EXIT
for _ in $(seq 100); do [ -n "$(ss -Htln "sport = :$WPORT")" ] && break; sleep 0.1; done
mkdir -p "$W/pages"
OPENSSL_CONF=$W/engine.cnf curl -sS --cacert "$W/scep/ca.pem" --no-sessionid --rate 2/s \
    --engine pkcs11 --key-type ENG --key "pkcs11:token=demo;object=bob;type=private" \
    --cert-type ENG --cert "pkcs11:token=demo;object=bob;type=cert" \
    "https://127.0.0.1:$WPORT/?n=[100-139]" -o "$W/pages/#1" 2>"$W/curl.err" &
CURL_PID=$!
sleep 4
proved "one curl process is connecting with bob's enrolled certificate ($(ls "$W/pages" | wc -l) requests so far)."

step "time travel 65 days into the renewal window: the renewal check sends RenewalReq (SCEP), simplereenroll over TLS client-authenticated by the old key (EST) or a kur signed by the old key (CMP)"
export EVERTOKEN_ENROLL_FAKE_TIME=$FAKE
echo "$EVERTOKEN_ENROLL_FAKE_TIME" >"$W/scep/now"
enr check
enr status || true
echo "requests the CA received:"
grep -E "PKCSReq|RenewalReq|simpleenroll|simplereenroll|issued serial|kur protection" "$W/scep/requests.log"
pkcs11-tool --module "$MODULE" --token-label demo --login --pin "$DEMO_PIN" -O | grep -A3 "label: *bob"
RENEWED_SERIAL=$(bob_serial)
[ -n "$RENEWED_SERIAL" ] && [ "$RENEWED_SERIAL" != "$ENROLLED_SERIAL" ] ||
    { echo "the certificate in the token was not renewed ($ENROLLED_SERIAL)" >&2; exit 1; }
proved "inside the renewal window the helper got certificate $RENEWED_SERIAL for a new key and swapped it in for $ENROLLED_SERIAL in one step."

step "the same curl process, never restarted, now presents the renewed certificate"
wait $CURL_PID || true
kill $WEB_PID 2>/dev/null || true
# One line per run of requests that presented the same certificate.
for f in $(ls "$W/pages" | sort -n); do
    printf '%s %s\n' "$f" "$(openssl x509 -noout -serial -in "$W/pages/$f" 2>/dev/null | sed 's/^serial=//')"
done | awk -v old="$ENROLLED_SERIAL" -v new="$RENEWED_SERIAL" '
    function flush() {
        if (n == 0) return
        what = cur == old ? "the enrolled certificate" : cur == new ? "the renewed certificate" : cur == "" ? "no answer" : "another certificate"
        printf "requests %s-%s: %s%s\n", first, last, cur == "" ? "" : "serial " cur ", ", what
    }
    { if (n > 0 && $2 == cur) { last = $1; next } flush(); cur = $2; first = $1; last = $1; n++ }
    END { flush() }' | tee "$W/runs.txt"
FAILED=$(grep -c "no answer" "$W/runs.txt" || true)
[ -s "$W/curl.err" ] && { echo "curl reported:"; sort "$W/curl.err" | uniq -c; }
if head -1 "$W/runs.txt" | grep -q "enrolled certificate" && tail -1 "$W/runs.txt" | grep -q "renewed certificate" &&
    [ "$FAILED" = 0 ] && [ ! -s "$W/curl.err" ]; then
    proved "a program that keeps the token open picks up the renewed certificate by itself, without a failed request."
else
    echo "-> the requests above did not all go from the enrolled to the renewed certificate without a failure."
fi

step "summary"
cat <<SUMMARY
Created:  token "demo" ($(cd "$EVERTOKEN_DIR" && ls token-*.db | tr '\n' ' ')in $EVERTOKEN_DIR) holding
          alice (imported from PKCS#12), carol (key made in the token) and bob (enrolled over $PROTO).
Renewed:  bob's certificate $ENROLLED_SERIAL -> $RENEWED_SERIAL, with a new key, 65 simulated days later.
Files:    the demo's token, CAs, NSS database and enrollment state are in $W;
          the build is in $here/build-demo.
SUMMARY
cleanup_note
echo "Packages: the runtime and demo sets of scripts/deps.sh stay installed (apt-get remove them if unwanted)."
