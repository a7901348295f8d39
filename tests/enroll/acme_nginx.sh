# nginx serving TLS with its private key in the token, renewed live by ACME
# (docs/clients.md "nginx"):
#  - the helper enrolls www.acme.test against Debian's pebble, the key is
#    generated in the token; the post-processing script installs the full
#    chain for nginx (atomic rename) and runs `nginx -s reload`;
#  - nginx (Debian's, master and two workers, its own prefix in the test's
#    directory, 127.0.0.1 only) loads the key through OpenSSL's pkcs11
#    engine (libp11): `ssl_certificate_key "engine:pkcs11:pkcs11:..."`,
#    module and PIN in an OpenSSL configuration of mode 0600;
#  - a client loop (curl every 0.2 s, verifying against pebble's root) runs
#    through a forced renewal: zero failed requests, the new serial seen
#    after the reload, and the old one never again;
#  - every process started here is stopped (nginx by its pid file).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/acmelib.sh"
need nginx
pkcs11_engine_so >/dev/null || { echo "SKIP: libengine-pkcs11-openssl not installed" >&2; exit 77; }
NGX=$T/nginx
NGX_PORT=8443
NAME=www
HOSTNAME_=$NAME.acme.test
NGX_WRAP=host
# nginx's configuration and the OpenSSL one of its pkcs11 engine (module
# and PIN, mode 0600), the post-processing script: scripts/lib/pkcs11-tls.sh,
# shared with the demo.
nginx_token_conf "$NGX" "$NGX_PORT" "$HOSTNAME_" "pkcs11:token=$LABEL;object=$NAME;type=private"
pkcs11_engine_conf "$NGX/ssl/openssl.cnf" "$MOD" "$PIN" 1
ngx() { nginx_token "$NGX" "$@"; }
# The post-processing script: the new full chain atomically in place, then
# nginx reloads (only when it runs: the first enrollment comes before it).
nginx_deploy_script "$T/deploy.sh" "$NGX" "$T/deploy.log"

acme_init
acme_start
acme_profile "$NAME" "agree_tos = true" "[hooks]" "post_script = $T/deploy.sh"
enr -v enroll "$NAME" 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
[ -s "$NGX/ssl/fullchain.pem" ] || die "the post-processing script did not install the chain: $(cat "$T/e.err")"
serial1=$(token_serial "$NAME")
[ -n "$serial1" ] || die "no certificate in the token"
[ "$(openssl x509 -in "$NGX/ssl/fullchain.pem" -noout -serial | sed 's/serial=//')" = "$serial1" ] ||
    die "the installed certificate is not the token's"
ok "enrolled $HOSTNAME_ by ACME with the key in the token; the post-processing script installed the chain"

# nginx, in the foreground of its own process group (killed at the end).
NGX_PID=
ngx_stop() {
    local p
    p=$(cat "$NGX/nginx.pid" 2>/dev/null || true)
    [ -n "$p" ] && kill -QUIT "$p" 2>/dev/null
    [ -n "$NGX_PID" ] && { wait "$NGX_PID" 2>/dev/null || true; }
    NGX_PID=
}
ngx -g 'daemon off; master_process on;' </dev/null >>"$NGX/logs/stderr.log" 2>&1 &
NGX_PID=$!
ET_PIDS+=("$NGX_PID")
# One request; prints the serial of the certificate nginx served.
req() {
    curl -sS --max-time 5 --cacert "$CA/root.pem" --resolve "$HOSTNAME_:$NGX_PORT:127.0.0.1" \
        -w '%{certs}' -o "$T/body" "https://$HOSTNAME_:$NGX_PORT/" 2>>"$T/curl.err" >"$T/certs.pem" &&
        grep -q "hello from nginx" "$T/body" &&
        openssl x509 -in "$T/certs.pem" -noout -serial | sed 's/serial=//'
}
for _ in $(seq 100); do req >/dev/null 2>&1 && break; sleep 0.1; done
s=$(req) || die "nginx does not serve: $(cat "$NGX/logs/error.log" "$NGX/logs/stderr.log" "$T/curl.err")"
[ "$s" = "$serial1" ] || die "nginx serves serial $s, the token holds $serial1"
ok "nginx serves TLS with the token key (engine:pkcs11), verified against pebble's root"

# The client loop: one request every 0.2 s, each result on a line.
: >"$T/loop.log"
(
    while [ ! -e "$T/loop.stop" ]; do
        if s=$(req); then echo "ok $s"; else echo "FAIL $(tail -1 "$T/curl.err" 2>/dev/null)"; fi
        sleep 0.2
    done
) >>"$T/loop.log" 2>&1 &
LOOP_PID=$!
ET_PIDS+=("$LOOP_PID")
for _ in $(seq 100); do [ "$(grep -c '^ok' "$T/loop.log")" -ge 5 ] && break; sleep 0.1; done

enr -v renew --force "$NAME" 2>"$T/r.err" || die "renew: $(cat "$T/r.err")"
serial2=$(token_serial "$NAME")
[ "$serial2" != "$serial1" ] || die "not renewed"
grep -q "^renewed $serial2" "$T/deploy.log" && grep -q "^reloaded" "$T/deploy.log" ||
    die "the post-processing script did not reload nginx: $(cat "$T/deploy.log") $(cat "$T/r.err")"
# The loop goes on until it has seen the new serial a few times.
for _ in $(seq 300); do [ "$(grep -c "^ok $serial2\$" "$T/loop.log")" -ge 5 ] && break; sleep 0.1; done
touch "$T/loop.stop"
wait "$LOOP_PID" 2>/dev/null || true
ngx_stop

n_ok=$(grep -c '^ok' "$T/loop.log" || true)
n_fail=$(grep -c -v '^ok' "$T/loop.log" || true)
[ "$n_fail" = 0 ] || die "$n_fail failed requests of $((n_ok + n_fail)): $(grep -v '^ok' "$T/loop.log" | head -5); nginx: $(grep -E 'crit|emerg|alert|error' "$NGX/logs/error.log" | head -5)"
grep -q "^ok $serial1\$" "$T/loop.log" || die "the old serial was never served"
grep -q "^ok $serial2\$" "$T/loop.log" || die "the new serial $serial2 was never served: $(tail -3 "$T/loop.log")"
# Once the new certificate is served, the old one never comes back.
sed -n "/^ok $serial2\$/,\$p" "$T/loop.log" | grep -q "^ok $serial1\$" && die "the old certificate served after the new one"
ok "$n_ok requests through the renewal, none failed; serial $serial1 then $serial2 after nginx -s reload"
acme_stop
