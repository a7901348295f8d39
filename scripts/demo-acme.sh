# shellcheck shell=bash
# Sourced by scripts/demo.sh with ACME=1 (after the token "demo" exists): a
# local ACME CA (Debian's pebble, pebble-challtestsrv as its DNS answering
# 127.0.0.1 for every name), evertoken-enroll enrolling www.demo.test with
# the account key and the certificate key generated in the token, nginx
# serving TLS with that key (pkcs11 engine), and a renewal while a client
# loop keeps requesting: the post-processing script reloads nginx, no
# request fails. Uses from demo.sh: here, W, MODULE, DEMO_PIN, step, proved,
# quiet, cleanup_note; pebble, nginx and the engine's configuration come from
# scripts/lib/pkcs11-tls.sh (shared with the tests). Every port is a free
# one on 127.0.0.1; every process is stopped.
et_install_packages pebble nginx libengine-pkcs11-openssl curl
A=$W/acme
NGX=$W/nginx
ENROLL=$here/build-demo/enroll/evertoken-enroll
printf '%s\n' "$DEMO_PIN" >"$W/pin"
chmod 600 "$W/pin"
mkdir -p "$A" "$NGX/ssl" "$W/profiles"
chmod 700 "$NGX/ssl"
ACME_PIDS=()
NGX_PID=
LOOP_PID=
acme_cleanup() {
    [ -n "$LOOP_PID" ] && kill "$LOOP_PID" 2>/dev/null
    [ -s "$NGX/nginx.pid" ] && kill -QUIT "$(cat "$NGX/nginx.pid")" 2>/dev/null
    [ -n "$NGX_PID" ] && wait "$NGX_PID" 2>/dev/null
    for p in "${ACME_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    cleanup_files
}
trap 'acme_cleanup' EXIT
P_ACME=$(free_port) P_MGMT=$(free_port) P_HTTP=$(free_port) P_DNS=$(free_port) P_DNSM=$(free_port)
P_WEB=$(free_port)

step "a local ACME CA: Debian's pebble on 127.0.0.1:$P_ACME (its DNS: pebble-challtestsrv, every name is 127.0.0.1)"
pebble_tls "$A"
pebble_config "$A" "127.0.0.1:$P_ACME" "127.0.0.1:$P_MGMT" "$P_HTTP" "$(free_port)"
started=1
pebble_run "$A" "$A/root.pem" "$P_DNS" "$P_DNSM" "$P_MGMT" || started=0
ACME_PIDS+=("${PEBBLE_PIDS[@]}")
[ "$started" = 1 ] || { cat "$A/pebble.log" >&2; echo "pebble did not start" >&2; exit 1; }
openssl x509 -in "$A/root.pem" -noout -subject
proved "an ACME server (RFC 8555) we did not write is listening; its issuing root is in $A/root.pem."

step "evertoken-enroll: enroll www.demo.test over ACME (account key and certificate key generated in the token, http-01 by the built-in responder)"
# nginx's OpenSSL configuration: the pkcs11 engine, the module and the PIN
# (a secret: 0600); the post-processing script installs the chain and
# reloads nginx when it runs (docs/clients.md, "nginx").
pkcs11_engine_conf "$NGX/ssl/openssl.cnf" "$MODULE" "$DEMO_PIN" 1
nginx_deploy_script "$W/nginx-deploy" "$NGX"
cat >"$W/profiles/www.conf" <<CONF
[ca]
protocol = acme
url = https://127.0.0.1:$P_ACME/dir
anchors = $A/root.pem
poll_interval = 1
[certificate]
subject = CN=www.demo.test
san = DNS:www.demo.test
subject_match = any
[token]
uri = pkcs11:token=demo;object=www
module = $MODULE
pin_file = $W/pin
[acme]
server_anchors = $A/tlsca.pem
http_listen = 127.0.0.1:$P_HTTP
agree_tos = true
contact = ops@example.org
[hooks]
post_script = $W/nginx-deploy
CONF
enr() { "$ENROLL" --profiles "$W/profiles" --state-dir "$W/state" "$@"; }
www_serial() {
    pkcs11-tool --module "$MODULE" --token-label demo --read-object --type cert --label www 2>/dev/null |
        openssl x509 -inform DER -noout -serial | sed 's/^serial=//'
}
enr -v enroll www >"$W/enroll.log" 2>&1 || { cat "$W/enroll.log" >&2; exit 1; }
grep -E "ACME account|validated|generated|enrolled|stored|issued" "$W/enroll.log" || true
enr status www || true
pkcs11-tool --module "$MODULE" --token-label demo --login --pin "$DEMO_PIN" -O --type privkey 2>/dev/null |
    grep -E "label: *(www|acme-account:www)$" || true
ENROLLED_SERIAL=$(www_serial)
[ -n "$ENROLLED_SERIAL" ] || { echo "no certificate for www in the token" >&2; exit 1; }
proved "the ACME account key and www's key were generated in the token; pebble validated http-01 and issued certificate $ENROLLED_SERIAL."

step "nginx (master and two workers on 127.0.0.1:$P_WEB) serves TLS with www's key from the token"
nginx_token_conf "$NGX" "$P_WEB" www.demo.test "pkcs11:token=demo;object=www;type=private"
grep -E "ssl_certificate|env " "$NGX/nginx.conf"
nginx_token "$NGX" -g 'daemon off; master_process on;' </dev/null >"$NGX/logs/stderr.log" 2>&1 &
NGX_PID=$!
req() {
    curl -sS --max-time 5 --cacert "$A/root.pem" --resolve "www.demo.test:$P_WEB:127.0.0.1" \
        -w '%{certs}' -o /dev/null "https://www.demo.test:$P_WEB/" 2>>"$W/curl.err" |
        openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//'
}
for _ in $(seq 100); do [ -n "$(req 2>/dev/null)" ] && break; sleep 0.1; done
[ "$(req)" = "$ENROLLED_SERIAL" ] || { cat "$NGX/logs/error.log" "$NGX/logs/stderr.log" >&2; exit 1; }
: >"$W/curl.err"
# A client loop: one new connection every 0.2 s, verified against pebble's root.
(
    while :; do
        s=$(req)
        echo "${s:-FAIL}"
        sleep 0.2
    done
) >"$W/loop.log" 2>&1 &
LOOP_PID=$!
sleep 2
proved "curl verifies nginx's certificate $ENROLLED_SERIAL against pebble's root; the signature of each handshake is made in the token."

step "renewal over ACME while the client loop runs: a new key in the token, a new certificate, the post-processing script reloads nginx"
enr -v renew --force www >"$W/renew.log" 2>&1 || { cat "$W/renew.log" >&2; exit 1; }
grep -E "renew|replaces|post|nginx" "$W/renew.log" || true
RENEWED_SERIAL=$(www_serial)
[ -n "$RENEWED_SERIAL" ] && [ "$RENEWED_SERIAL" != "$ENROLLED_SERIAL" ] ||
    { echo "www was not renewed ($ENROLLED_SERIAL)" >&2; exit 1; }
for _ in $(seq 50); do [ "$(grep -c "^$RENEWED_SERIAL\$" "$W/loop.log")" -ge 5 ] && break; sleep 0.2; done
kill "$LOOP_PID" 2>/dev/null
wait "$LOOP_PID" 2>/dev/null || true
LOOP_PID=
echo "requests of the client loop, by the certificate nginx served:"
uniq -c "$W/loop.log" | awk -v old="$ENROLLED_SERIAL" -v new="$RENEWED_SERIAL" \
    '{ printf "  %4d x %s\n", $1, $2 == old ? "serial " $2 " (enrolled)" : $2 == new ? "serial " $2 " (renewed)" : "FAILED" }'
FAILED=$(grep -c -v -E "^($ENROLLED_SERIAL|$RENEWED_SERIAL)\$" "$W/loop.log" || true)
if [ "$FAILED" = 0 ] && grep -q "^$RENEWED_SERIAL\$" "$W/loop.log"; then
    proved "nginx switched from $ENROLLED_SERIAL to $RENEWED_SERIAL at the reload; not one of the client's requests failed."
else
    echo "-> $FAILED requests failed during the renewal: $(sort "$W/curl.err" | uniq -c)"
    exit 1
fi

step "summary"
cat <<SUMMARY
Created:  token "demo" in $EVERTOKEN_DIR holding alice, carol, the ACME account key
          (acme-account:www) and www's key and certificate.
Renewed:  www.demo.test $ENROLLED_SERIAL -> $RENEWED_SERIAL over ACME (pebble), with a new key,
          served by nginx through the pkcs11 engine; nginx -s reload from the post-processing script.
Files:    the demo's token, pebble's and nginx's files and the enrollment state are in $W;
          the build is in $here/build-demo.
SUMMARY
cleanup_note
