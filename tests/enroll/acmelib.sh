# Helpers for tests/enroll/acme_*.sh (sourced after lib.sh): Debian's pebble
# (a real ACME server we did not write) with pebble-challtestsrv as its DNS
# (every name resolves to 127.0.0.1), inside the test's network namespace.
# Deterministic: no validation sleep, no nonce rejection, no reuse of valid
# authorizations (each order is validated again) unless a test asks.
#   acme_init            TLS certificate for pebble, its configuration (with
#                        ACME_OCSP_URL set: the OCSP URL pebble writes into the
#                        certificates it issues)
#   acme_start [ENV…]    start challtestsrv and pebble (ENV: extra PEBBLE_* settings);
#                        sets ACME_URL, and $CA/root.pem (pebble's issuing root)
#   acme_stop
#   acme_profile NAME [LINES…]  an ACME profile for NAME.acme.test (http-01 responder
#                        on 127.0.0.1:$ACME_HTTP_PORT, where pebble's VA connects)
#                        (tls-alpn-01: pebble validates on 127.0.0.1:$ACME_TLS_PORT)
need pebble pebble-challtestsrv curl
[ -n "${ENR_IN_NETNS:-}" ] || { echo "SKIP: pebble tests need a network namespace (root, unshare -n)" >&2; exit 77; }
ACME_HTTP_PORT=5002
ACME_TLS_PORT=5001
ACME_DIR=$T/pebble
mkdir -p "$ACME_DIR"

# pebble's TLS, configuration and start: scripts/lib/pkcs11-tls.sh (shared
# with the demo).
. "$EVERTOKEN_SOURCE_DIR/scripts/lib/pkcs11-tls.sh"
acme_init() {
    # pebble's own TLS certificate (its listener), issued by a test CA that
    # only the profiles' server_anchors trust.
    pebble_tls "$ACME_DIR"
    acme_config "${ACME_EAB:-}"
}
# pebble's configuration (EAB required when $1 is set: kid-1 with the key in $T/eab.key).
acme_config() {
    local eab=""
    [ -n "$1" ] && eab=', "externalAccountBindingRequired": true, "externalAccountMACKeys": {"kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"}'
    printf 'zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W\n' >"$T/eab.key"
    chmod 600 "$T/eab.key"
    pebble_config "$ACME_DIR" 127.0.0.1:14000 127.0.0.1:15000 "$ACME_HTTP_PORT" "$ACME_TLS_PORT" \
        "${ACME_OCSP_URL:-}" "$eab"
}
acme_start() {
    local ok=0
    pebble_run "$ACME_DIR" "$CA/root.pem" 8053 8055 15000 PEBBLE_AUTHZREUSE=0 "$@" && ok=1
    ACME_DNS_PID=${PEBBLE_PIDS[0]}
    ACME_PID=${PEBBLE_PIDS[1]}
    ET_PIDS+=("${PEBBLE_PIDS[@]}")
    [ "$ok" = 1 ] || die "pebble did not start: $(cat "$ACME_DIR/pebble.log")"
    ACME_URL=https://127.0.0.1:14000/dir
}
acme_stop() {
    kill "$ACME_PID" "$ACME_DNS_PID" 2>/dev/null
    wait "$ACME_PID" "$ACME_DNS_PID" 2>/dev/null || true
}
acme_profile() {
    local name=$1; shift
    {
        printf '[ca]\nprotocol = acme\nurl = %s\nanchors = %s\npoll_interval = 1\n' "$ACME_URL" "$CA/root.pem"
        printf '[certificate]\nsubject = CN=%s.acme.test\nsan = DNS:%s.acme.test\nsubject_match = any\n' "$name" "$name"
        printf '[token]\nuri = pkcs11:token=%s;object=%s\nmodule = %s\npin_file = %s\n' "$LABEL" "$name" "$MOD" "$T/pin"
        printf '[hooks]\nnotify_command = printf "%%s|%%s|%%s\\n" "$EVERTOKEN_EVENT" "$EVERTOKEN_PROFILE" "$EVERTOKEN_MESSAGE" >>%s\n' "$T/notify.log"
        printf '[acme]\nserver_anchors = %s\nhttp_listen = 127.0.0.1:%s\n' "$ACME_DIR/tlsca.pem" "$ACME_HTTP_PORT"
        for l in "$@"; do printf '%s\n' "$l"; done
    } >"$PROFILES/$name.conf"
}
# The project's front for pebble (tests/enroll/acme_front.py): adds ACME
# Renewal Information and the hostile modes; ACME_URL then points at it.
# Its window: acme_window START END [RETRY_AFTER]; its mode: acme_mode MODE.
ACME_FRONT=$(dirname "${BASH_SOURCE[0]}")/acme_front.py
acme_front_start() {
    need python3
    rm -f "$ACME_DIR/front.port"
    python3 "$ACME_FRONT" 14001 14000 "$ACME_DIR/tls.pem" "$ACME_DIR/tls.key" "$ACME_DIR/tlsca.pem" \
        "$ACME_DIR" >>"$T/front.err" 2>&1 &
    ACME_FRONT_PID=$!
    ET_PIDS+=("$ACME_FRONT_PID")
    for _ in $(seq 200); do [ -s "$ACME_DIR/front.port" ] && break; sleep 0.05; done
    [ -s "$ACME_DIR/front.port" ] || die "the ACME front did not start: $(cat "$T/front.err")"
    ACME_URL=https://127.0.0.1:14001/dir
}
acme_window() { printf '{"start": %s, "end": %s, "retry_after": %s}\n' "$1" "$2" "${3:-0}" >"$ACME_DIR/window.json"; }
acme_mode() { printf '%s\n' "${1:-}" >"$ACME_DIR/mode"; }
# RFC 9773 certificate identifier of a PEM certificate (computed here with openssl).
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
cert_id() {
    local aki serial
    aki=$(openssl x509 -in "$1" -noout -ext authorityKeyIdentifier | sed -n 's/^ *\(keyid:\)\{0,1\}\([0-9A-F:]*\)$/\2/p' | grep -m1 ':' | tr -d ':')
    serial=$(openssl x509 -in "$1" -noout -serial | sed 's/serial=//')
    [ $((${#serial} % 2)) = 1 ] && serial=0$serial
    case $serial in [89A-F]*) serial=00$serial ;; esac
    printf '%s.%s' "$(printf '%s' "$aki" | xxd -r -p | b64url)" "$(printf '%s' "$serial" | xxd -r -p | b64url)"
}
