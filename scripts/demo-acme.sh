# shellcheck shell=bash
# Sourced by scripts/demo.sh with ACME=1 (after the token "demo" exists): a
# local ACME CA (Debian's pebble, pebble-challtestsrv as its DNS answering
# 127.0.0.1 for every name), evertoken-enroll enrolling www.demo.test with
# the account key and the certificate key generated in the token, nginx
# serving TLS with that key (pkcs11 engine), and a renewal while a client
# loop keeps requesting: the post-processing script reloads nginx, no
# request fails. Uses from demo.sh: here, W, MODULE, DEMO_PIN, step, proved,
# quiet. Every port is a free one on 127.0.0.1; every process is stopped.
et_install_packages pebble nginx libengine-pkcs11-openssl curl
A=$W/acme
NGX=$W/nginx
ENROLL=$here/build-demo/enroll/evertoken-enroll
printf '%s\n' "$DEMO_PIN" >"$W/pin"
chmod 600 "$W/pin"
mkdir -p "$A" "$NGX/logs" "$NGX/tmp" "$NGX/ssl" "$W/profiles"
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
free_port() {
    local p
    for p in $(shuf -i 20000-60000 -n 50); do
        [ -z "$(ss -Htlnu "sport = :$p")" ] && { echo "$p"; return; }
    done
    return 1
}
P_ACME=$(free_port) P_MGMT=$(free_port) P_HTTP=$(free_port) P_DNS=$(free_port) P_DNSM=$(free_port)
P_WEB=$(free_port)

step "a local ACME CA: Debian's pebble on 127.0.0.1:$P_ACME (its DNS: pebble-challtestsrv, every name is 127.0.0.1)"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$A/tlsca.key" -out "$A/tlsca.pem" -days 30 \
    -subj "/CN=pebble TLS demo CA" -addext "basicConstraints=critical,CA:TRUE" 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -keyout "$A/tls.key" -subj "/CN=127.0.0.1" 2>/dev/null |
    openssl x509 -req -CA "$A/tlsca.pem" -CAkey "$A/tlsca.key" -CAcreateserial -days 30 \
        -extfile <(printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n') -out "$A/tls.pem" 2>/dev/null
cat >"$A/config.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$P_ACME", "managementListenAddress": "127.0.0.1:$P_MGMT",
  "certificate": "$A/tls.pem", "privateKey": "$A/tls.key",
  "httpPort": $P_HTTP, "tlsPort": $(free_port), "ocspResponderURL": ""}}
JSON
pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "127.0.0.1:$P_DNS" -http01 "" \
    -https01 "" -tlsalpn01 "" -management "127.0.0.1:$P_DNSM" >"$A/dns.log" 2>&1 &
ACME_PIDS+=($!)
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 pebble -config "$A/config.json" -dnsserver "127.0.0.1:$P_DNS" \
    >"$A/pebble.log" 2>&1 &
ACME_PIDS+=($!)
for _ in $(seq 200); do
    curl -s --cacert "$A/tlsca.pem" "https://127.0.0.1:$P_MGMT/roots/0" >"$A/root.pem" 2>/dev/null &&
        [ -s "$A/root.pem" ] && break
    sleep 0.05
done
[ -s "$A/root.pem" ] || { cat "$A/pebble.log" >&2; echo "pebble did not start" >&2; exit 1; }
openssl x509 -in "$A/root.pem" -noout -subject
proved "an ACME server (RFC 8555) we did not write is listening; its issuing root is in $A/root.pem."

step "evertoken-enroll: enroll www.demo.test over ACME (account key and certificate key generated in the token, http-01 by the built-in responder)"
# nginx's OpenSSL configuration: the pkcs11 engine, the module and the PIN
# (a secret: 0600); the post-processing script installs the chain and
# reloads nginx when it runs (docs/clients.md, "nginx").
cat >"$NGX/ssl/openssl.cnf" <<EOF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $(find /usr/lib/*/engines-3 -name pkcs11.so -print -quit)
MODULE_PATH = $MODULE
PIN = $DEMO_PIN
init = 1
EOF
chmod 600 "$NGX/ssl/openssl.cnf"
cat >"$W/nginx-deploy" <<EOF
#!/bin/sh
set -e
cp "\$EVERTOKEN_FULLCHAIN_FILE" "$NGX/ssl/fullchain.pem.new"
mv "$NGX/ssl/fullchain.pem.new" "$NGX/ssl/fullchain.pem"
if [ -s "$NGX/nginx.pid" ]; then
    OPENSSL_CONF="$NGX/ssl/openssl.cnf" nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/logs/error.log" -s reload
    echo "nginx reloaded for certificate \$EVERTOKEN_SERIAL"
fi
EOF
chmod 755 "$W/nginx-deploy"
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
user=
[ "$(id -u)" = 0 ] && user="user root;" # its files are in the 0700 $W
cat >"$NGX/nginx.conf" <<EOF
$user
worker_processes 2;
pid $NGX/nginx.pid;
error_log $NGX/logs/error.log;
env EVERTOKEN_DIR;
env HOME;
events { worker_connections 64; }
http {
    access_log $NGX/logs/access.log;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    server {
        listen 127.0.0.1:$P_WEB ssl;
        server_name www.demo.test;
        ssl_certificate $NGX/ssl/fullchain.pem;
        ssl_certificate_key "engine:pkcs11:pkcs11:token=demo;object=www;type=private";
        location / { return 200 "hello from nginx\n"; }
    }
}
EOF
grep -E "ssl_certificate|env " "$NGX/nginx.conf"
OPENSSL_CONF=$NGX/ssl/openssl.cnf nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/logs/error.log" \
    -g 'daemon off; master_process on;' </dev/null >"$NGX/logs/stderr.log" 2>&1 &
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
if [ "${DEMO_KEEP:-0}" = 1 ]; then
    echo "Clean up: rm -rf $W $here/build-demo"
else
    echo "Clean up: $W is removed now (DEMO_KEEP=1 keeps it); rm -rf $here/build-demo removes the build."
fi
