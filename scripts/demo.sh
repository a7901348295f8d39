#!/usr/bin/env bash
# evertoken end to end: install, build, create a token in a temporary
# directory, import a PKCS#12 client credential, and show it through
# pkcs11-tool, p11tool and NSS certutil. Touches no real token or NSS db.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
. scripts/deps.sh
et_install_deps

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build"
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-demo -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
MODULE=$here/build-demo/module/libevertoken.so
CLI=$here/build-demo/tools/evertoken
export EVERTOKEN_MODULE=$MODULE

W=$(mktemp -d /tmp/evertoken-demo.XXXXXX)
chmod 700 "$W"
trap 'rm -rf "$W"' EXIT
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

step "create a token (evertoken init)"
"$CLI" init --label demo --so-pin env:DEMO_SO_PIN --pin env:DEMO_PIN

step "import the PKCS#12 credential (evertoken import)"
"$CLI" import --token demo --pin env:DEMO_PIN --passphrase env:DEMO_P12_PASS "$W/alice.p12"

step "evertoken list --token demo --login"
"$CLI" list --token demo --login --pin env:DEMO_PIN

step "pkcs11-tool -L (slots and tokens)"
pkcs11-tool --module "$MODULE" -L

step "pkcs11-tool -O --login (key and certificate share one CKA_ID)"
pkcs11-tool --module "$MODULE" --token-label demo --login --pin "$DEMO_PIN" -O

step "p11tool --list-all-certs (no PIN needed for certificates)"
p11tool --provider "$MODULE" --list-all-certs

step "p11tool --list-privkeys --login"
GNUTLS_PIN=$DEMO_PIN p11tool --provider "$MODULE" --login --list-privkeys

step "NSS: add the module to a temporary NSS database and list certificates"
mkdir -p "$W/nss"
certutil -N -d "sql:$W/nss" --empty-password
modutil -dbdir "sql:$W/nss" -add evertoken -libfile "$MODULE" -force </dev/null >/dev/null
modutil -dbdir "sql:$W/nss" -list evertoken </dev/null | sed -n '1,20p'
certutil -L -d "sql:$W/nss" -h all

step "done: token file $(ls "$EVERTOKEN_DIR")"

# ---- Automatic enrollment and renewal (evertoken-enroll, docs/enrollment.md) ----
step "evertoken-enroll: enroll bob into the token from a local SCEP test CA (tests/enroll/scepsrv)"
ENROLL=$here/build-demo/enroll/evertoken-enroll
mkdir -p "$W/scep" "$W/profiles"
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=evertoken demo SCEP CA" \
    -addext "basicConstraints=critical,CA:TRUE" -keyout "$W/scep/ca.key" -out "$W/scep/ca.pem" 2>/dev/null
printf 'demo-challenge\n' >"$W/challenge"
printf '%s\n' "$DEMO_PIN" >"$W/pin"
chmod 600 "$W/challenge" "$W/pin"
"$here/build-demo/tests/enroll/scepsrv" --dir "$W/scep" --port-file "$W/scep/port" \
    --challenge-file "$W/challenge" 2>"$W/scep/log" &
SCEP_PID=$!
trap 'kill $SCEP_PID 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 100); do [ -s "$W/scep/port" ] && break; sleep 0.05; done
cat >"$W/profiles/bob.conf" <<CONF
[ca]
url = http://127.0.0.1:$(cat "$W/scep/port")/scep
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
enr enroll
enr status || true

step "time travel 65 days into the renewal window: the renewal check sends RenewalReq signed by the old key"
export EVERTOKEN_ENROLL_FAKE_TIME=$(($(date +%s) + 65 * 86400))
echo "$EVERTOKEN_ENROLL_FAKE_TIME" >"$W/scep/now"
enr check
enr status || true
grep -E "PKCSReq|RenewalReq" "$W/scep/requests.log"
pkcs11-tool --module "$MODULE" --token-label demo --login --pin "$DEMO_PIN" -O | grep -A3 "label: *bob"
