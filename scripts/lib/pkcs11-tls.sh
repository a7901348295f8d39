# shellcheck shell=bash
# Shell helpers shared by the demo (scripts/demo.sh, scripts/demo-acme.sh)
# and the tests (tests/enroll/acmelib.sh, acme_nginx.sh, tests/e2e/lib_e2e.sh):
# the pkcs11 engine's OpenSSL configuration, nginx serving TLS with its key
# in a token, Debian's pebble as a local ACME CA, free ports. Functions only:
# sourcing it runs nothing, and it works under `set -euo pipefail`.
#
#   free_port                     a free TCP/UDP port on this host (prints it)
#   pkcs11_engine_so              libp11's engine for OpenSSL 3 (prints its
#                                 path; status 1 when not installed)
#   pkcs11_engine_conf FILE MODULE PIN INIT [req]
#                                 an openssl.cnf (mode 0600: it holds the PIN)
#                                 loading the engine with MODULE_PATH, PIN and
#                                 init = INIT; "req": with an empty [req]
#                                 section for `openssl req`
#   nginx_token_conf PREFIX PORT NAME KEY_URI
#                                 PREFIX/{logs,tmp,ssl} and PREFIX/nginx.conf:
#                                 master and two workers on 127.0.0.1:PORT
#                                 serving NAME with PREFIX/ssl/fullchain.pem
#                                 and the key KEY_URI through the engine
#                                 (PREFIX/ssl/openssl.cnf); the token's
#                                 environment kept for the workers
#   nginx_token PREFIX ARGS...    run nginx on that prefix ($NGX_WRAP, e.g. the
#                                 tests' `host`, in front when set)
#   nginx_deploy_script FILE PREFIX [LOG]
#                                 a post_script for evertoken-enroll: the new
#                                 full chain atomically into PREFIX/ssl, then
#                                 `nginx -s reload` when nginx runs; LOG gets
#                                 "EVENT SERIAL" and "reloaded" lines
#   pebble_tls DIR                pebble's own TLS certificate: DIR/tlsca.pem
#                                 (the anchor for [acme] server_anchors),
#                                 DIR/tls.pem and DIR/tls.key (127.0.0.1)
#   pebble_config DIR LISTEN MGMT HTTP_PORT TLS_PORT [OCSP_URL [JSON]]
#                                 DIR/config.json; JSON: more members
#                                 (", \"key\": value")
#   pebble_run DIR ROOT DNS DNS_MGMT MGMT [ENV...]
#                                 pebble-challtestsrv (DNS on 127.0.0.1:DNS,
#                                 every name 127.0.0.1) and pebble (no
#                                 validation sleep, no nonce rejection, ENV:
#                                 more PEBBLE_* settings), logs in DIR; their
#                                 pids in PEBBLE_PIDS; waits for pebble's
#                                 issuing root into ROOT (status 1 if it
#                                 does not come)

free_port() {
    local p
    for p in $(shuf -i 20000-60000 -n 50); do
        [ -z "$(ss -Htlnu "sport = :$p")" ] && { echo "$p"; return 0; }
    done
    return 1
}

pkcs11_engine_so() {
    local so
    so=$(find /usr/lib/*/engines-3 -name pkcs11.so -print -quit 2>/dev/null || true)
    [ -n "$so" ] && echo "$so"
}

pkcs11_engine_conf() {
    local file=$1 module=$2 pin=$3 init=$4 req=${5:-} so
    so=$(pkcs11_engine_so) || return 1
    (
        umask 077
        cat >"$file" <<EOF
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $so
MODULE_PATH = $module
PIN = $pin
init = $init
EOF
        [ "$req" = req ] && printf '[req]\ndistinguished_name = req_dn\n[req_dn]\n' >>"$file"
        chmod 600 "$file"
    )
}

nginx_token_conf() {
    local prefix=$1 port=$2 name=$3 key_uri=$4 user='' envs='' v
    mkdir -p "$prefix/logs" "$prefix/tmp" "$prefix/ssl"
    chmod 700 "$prefix/ssl"
    # Running as root, the workers would switch to "nobody", which cannot
    # read a 0700 directory: they stay root here.
    [ "$(id -u)" = 0 ] && user="user root;"
    # nginx clears the workers' environment (its `env` directive keeps a
    # variable), and libp11 initialises the module again in every worker.
    for v in EVERTOKEN_DIR EVERTOKEN_KDF SOFTHSM2_CONF HOME; do
        [ -n "${!v:-}" ] && envs+="env $v;"$'\n'
    done
    cat >"$prefix/nginx.conf" <<EOF
$user
worker_processes 2;
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log info;
$envs
events { worker_connections 64; }
http {
    access_log $prefix/logs/access.log;
    client_body_temp_path $prefix/tmp/body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;
    server {
        listen 127.0.0.1:$port ssl;
        server_name $name;
        ssl_certificate $prefix/ssl/fullchain.pem;
        ssl_certificate_key "engine:pkcs11:$key_uri";
        location / { return 200 "hello from nginx\n"; }
    }
}
EOF
}

nginx_token() {
    local prefix=$1
    shift
    OPENSSL_CONF=$prefix/ssl/openssl.cnf ${NGX_WRAP:-} nginx -p "$prefix" -c "$prefix/nginx.conf" \
        -e "$prefix/logs/error.log" "$@"
}

nginx_deploy_script() {
    local file=$1 prefix=$2 log=${3:-/dev/null}
    cat >"$file" <<EOF
#!/bin/sh
set -e
cp "\$EVERTOKEN_FULLCHAIN_FILE" "$prefix/ssl/fullchain.pem.new"
mv "$prefix/ssl/fullchain.pem.new" "$prefix/ssl/fullchain.pem"
echo "\$EVERTOKEN_EVENT \$EVERTOKEN_SERIAL" >>"$log"
if [ -s "$prefix/nginx.pid" ]; then
    OPENSSL_CONF="$prefix/ssl/openssl.cnf" nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" -s reload
    echo reloaded >>"$log"
    echo "nginx reloaded for certificate \$EVERTOKEN_SERIAL"
fi
EOF
    chmod 755 "$file"
}

pebble_tls() {
    local d=$1
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/tlsca.key" -out "$d/tlsca.pem" -days 30 \
        -subj "/CN=pebble TLS test CA" -addext "basicConstraints=critical,CA:TRUE" 2>/dev/null
    openssl req -new -newkey rsa:2048 -nodes -keyout "$d/tls.key" -subj "/CN=127.0.0.1" 2>/dev/null |
        openssl x509 -req -CA "$d/tlsca.pem" -CAkey "$d/tlsca.key" -CAcreateserial -days 30 \
            -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n') \
            -out "$d/tls.pem" 2>/dev/null
}

pebble_config() {
    local d=$1
    cat >"$d/config.json" <<JSON
{"pebble": {"listenAddress": "$2", "managementListenAddress": "$3",
  "certificate": "$d/tls.pem", "privateKey": "$d/tls.key",
  "httpPort": $4, "tlsPort": $5, "ocspResponderURL": "${6:-}"${7:-}}}
JSON
}

pebble_run() {
    local d=$1 root=$2 dns=$3 dnsm=$4 mgmt=$5
    shift 5
    PEBBLE_PIDS=()
    pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "127.0.0.1:$dns" -http01 "" \
        -https01 "" -tlsalpn01 "" -management "127.0.0.1:$dnsm" >>"$d/dns.log" 2>&1 &
    PEBBLE_PIDS+=($!)
    env PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 "$@" \
        pebble -config "$d/config.json" -dnsserver "127.0.0.1:$dns" >>"$d/pebble.log" 2>&1 &
    PEBBLE_PIDS+=($!)
    for _ in $(seq 200); do
        curl -s --cacert "$d/tlsca.pem" "https://127.0.0.1:$mgmt/roots/0" >"$root" 2>/dev/null &&
            [ -s "$root" ] && return 0
        sleep 0.05
    done
    return 1
}
