# Helpers for tests/enroll/cmp_*.sh (sourced after lib.sh): the CMP test CA
# (cmpsrv, OpenSSL's CMP server) and CMP profiles.
#   cmp_init             CA (ca_init) plus the server's CMP signing certificate srv.pem/srv.key
#   cmp_start ARGS       start cmpsrv on $CA with the MAC secret $T/cmpsecret; sets CMP_URL
#   cmp_stop
#   cmp_profile NAME [LINES…]  a CMP profile (MAC reference "alice-ref", the secret file)
: "${CMPSRV:?run through ctest}"
printf 'open-sesame-42\n' >"$T/cmpsecret"
chmod 600 "$T/cmpsecret"

cmp_init() {
    ca_init
    openssl req -new -newkey rsa:2048 -nodes -keyout "$CA/srv.key" -subj "/CN=evertoken test CMP server" \
        -out "$CA/srv.csr" 2>/dev/null
    printf 'keyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\n' >"$CA/srv.ext"
    openssl x509 -req -in "$CA/srv.csr" -CA "$CA/ca.pem" -CAkey "$CA/ca.key" -CAcreateserial \
        -days 3650 -sha256 -extfile "$CA/srv.ext" -out "$CA/srv.pem" 2>/dev/null
}
cmp_start() {
    rm -f "$CA/port"
    "$CMPSRV" --dir "$CA" --port-file "$CA/port" --secret-file "$T/cmpsecret" "$@" 2>>"$T/cmpsrv.log" &
    CMP_PID=$!
    ET_PIDS+=("$CMP_PID")
    for _ in $(seq 100); do [ -s "$CA/port" ] && break; sleep 0.05; done
    [ -s "$CA/port" ] || die "cmpsrv did not start: $(cat "$T/cmpsrv.log")"
    CMP_PORT=$(cat "$CA/port")
    CMP_URL=http://127.0.0.1:$CMP_PORT/pkix/
}
cmp_stop() { kill "$CMP_PID" 2>/dev/null; wait "$CMP_PID" 2>/dev/null || true; }
cmp_profile() {
    local name=$1; shift
    {
        printf '[ca]\nprotocol = cmp\nurl = %s\nanchors = %s\npoll_interval = 1\n' "$CMP_URL" "$CA/ca.pem"
        if [ -z "${CMP_NO_MAC:-}" ]; then printf 'reference = alice-ref\nsecret_file = %s\n' "$T/cmpsecret"; fi
        printf '[certificate]\nsubject = CN=%s, O=evertoken tests\nsan = DNS:%s.example\n' "$name" "$name"
        printf '[token]\nuri = pkcs11:token=%s;object=%s\nmodule = %s\npin_file = %s\n' "$LABEL" "$name" "$MOD" "$T/pin"
        printf '[hooks]\nnotify_command = printf "%%s|%%s|%%s\\n" "$EVERTOKEN_EVENT" "$EVERTOKEN_PROFILE" "$EVERTOKEN_MESSAGE" >>%s\n' "$T/notify.log"
        for l in "$@"; do printf '%s\n' "$l"; done
    } >"$PROFILES/$name.conf"
}
