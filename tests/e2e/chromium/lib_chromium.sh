# shellcheck shell=bash
# Shared set-up for tests/e2e/t_chromium*.sh: Debian's Chromium in a real
# window under Xvfb, nginx on loopback requiring a client certificate from the
# test CA, the client credential in the token, an NSS database in the
# temporary HOME with the module (through OpenSC's pkcs11-spy) and the CA,
# and the AutoSelectCertificateForUrls policy. Source it after lib_e2e.sh:
#   . "$(dirname "$0")/lib_e2e.sh" || exit 1
#   . "$EVERTOKEN_SOURCE_DIR/tests/e2e/chromium/lib_chromium.sh"
# It installs the EXIT trap (process groups, policy file, then an optional
# function chromium_cleanup_hook, then lib.sh's et_cleanup). Skips (77) when
# a tool is missing or with a sanitized evertoken module.
need certutil modutil openssl nginx Xvfb xdotool xwininfo node setsid ss cc
CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] || { echo "SKIP: $CHROMIUM (Debian's chromium) not installed" >&2; exit 77; }
[ -d /etc/chromium ] || { echo "SKIP: /etc/chromium missing (Debian's chromium reads its policies there)" >&2; exit 77; }
CHROMIUM_DIR=$EVERTOKEN_SOURCE_DIR/tests/e2e/chromium
CDP=$CHROMIUM_DIR/cdp.js
# A sanitized module cannot run inside Chromium (see docs/testing.md): with
# the ASan runtime preloaded the browser spins at start-up (Chromium's own
# malloc, PartitionAlloc's allocator shim, against ASan's interceptors: not
# even --version returns); loaded late with the module, ASan aborts because
# its shadow memory range overlaps address space Chromium has already
# reserved ("Shadow memory range interleaves with an existing memory mapping").
if [ -n "${ET_PRELOAD:-}" ] && [ "$E2E_MODULE" = evertoken ]; then
    echo "SKIP: AddressSanitizer build: Chromium cannot host an ASan-instrumented module (preloaded ASan runtime: Chromium hangs at start-up; loaded with the module: ASan's shadow memory overlaps Chromium's reserved address space)" >&2
    exit 77
fi
# Deadlines (seconds) of the waits; a passing start and page load take a few
# seconds each.
WAIT_START=25 WAIT_DIALOG=20 WAIT_PAGE=20

# ---- cleanup: process groups, the policy file, the hook, then lib.sh's cleanup
GROUPS_=()
POLICY=
PDIR=/etc/chromium/policies/managed
# Marks a policy directory an e2e run created: the last run removes it.
PMARK=.created-by-evertoken-e2e
stop_group() { # pgid
    kill -TERM -- "-$1" 2>/dev/null || return 0
    for _ in $(seq 1 30); do
        kill -0 -- "-$1" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$1" 2>/dev/null || true
}
chromium_cleanup() {
    local rc=$?
    local g
    for g in "${GROUPS_[@]}"; do stop_group "$g"; done
    [ -z "$POLICY" ] || rm -f "$POLICY"
    if [ -n "$POLICY" ] && ! ls "$PDIR"/evertoken-e2e-*.json >/dev/null 2>&1; then
        if [ -e "${PDIR%/*}/$PMARK" ]; then
            rm -f "${PDIR%/*}/$PMARK" && rmdir "$PDIR" "${PDIR%/*}" 2>/dev/null
        elif [ -e "$PDIR/$PMARK" ]; then
            rm -f "$PDIR/$PMARK" && rmdir "$PDIR" 2>/dev/null
        fi
    fi
    # With E2E_SPY (lib_e2e.sh), Chromium's call log is kept next to it.
    [ -z "${E2E_SPY:-}" ] || [ ! -f "${SPYLOG:-}" ] || cp "$SPYLOG" "$E2E_SPY.chromium" 2>/dev/null
    set +e
    if declare -F chromium_cleanup_hook >/dev/null; then chromium_cleanup_hook; fi
    (exit "$rc")
    et_cleanup
}
trap chromium_cleanup EXIT
trap 'exit 143' TERM INT HUP
# Start "$@" in the background as the leader of a new process group (setsid
# does not fork here: a background job of a script is no group leader).
bg_group() {
    setsid "$@" &
    GROUPS_+=($!)
    LAST_PID=$!
}

# ---- the PKCS#11 spy between Chromium and the module
if [ -n "${E2E_SPY:-}" ]; then
    SPY=$M REAL=$PKCS11SPY # lib_e2e.sh already put the spy in front
else
    SPY=$(find /usr/lib/*/pkcs11-spy.so /usr/lib/*/pkcs11/pkcs11-spy.so -print -quit 2>/dev/null || true)
    [ -n "$SPY" ] || { echo "SKIP: OpenSC's pkcs11-spy.so not found" >&2; exit 77; }
    REAL=$M
fi
# NSS gets the spy through a shim without C_GetInterface (see spyshim.c:
# OpenSC 0.23's spy crashes NSS on a PKCS#11 3.0 module otherwise).
SHIM=$T/spyshim.so
out=$(cc -shared -fPIC -O1 -DSPY_PATH="\"$SPY\"" -o "$SHIM" "$CHROMIUM_DIR/spyshim.c" -ldl 2>&1) ||
    die "cannot build spyshim.c: $out"
# The call log of the Chromium run being checked (chromium_start sets it).
SPYLOG=

# ---- the client credential: RSA-2048 key and certificate from the test CA,
# imported into token $1 with CKA_ID 0c1e47. Sets DN (RFC 2253 subject);
# $T/client.pub.pem is the public key read back from the token.
chromium_credential() {
    local tok=$1 subj out
    e2e_ca
    e2e_server_cert
    subj="/CN=e2e chromium client $$/O=evertoken e2e"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/client.key" 2>/dev/null ||
        die "client key"
    openssl req -new -key "$T/client.key" -subj "$subj" -out "$T/client.csr" || die "client CSR"
    e2e_ca_sign "$T/client.csr" "$T/client.pem" client
    cat "$T/client.key" "$T/client.pem" >"$T/client.bundle.pem"
    e2e_import "$tok" 0c1e47 "$T/client.bundle.pem" chromium-client
    rm -f "$T/client.key" "$T/client.bundle.pem"
    # The public key as the token holds it (signatures are verified against it).
    e2e_pubkey "$tok" 0c1e47 "$T/client.pub.pem"
    openssl x509 -in "$T/client.pem" -noout -pubkey | cmp -s - "$T/client.pub.pem" ||
        die "the token's public key 0c1e47 is not the certificate's"
    DN=$(openssl x509 -in "$T/client.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
    ok "RSA-2048 client key and certificate ($DN) imported into $tok with CKA_ID 0c1e47"
}

# ---- NSS database in the temporary HOME (never the real ~/.pki/nssdb): the
# test CA trusted, the module (through the spy shim) added; token $1 visible.
chromium_nssdb() {
    local tok=$1 out
    NSSDB=sql:$HOME/.pki/nssdb
    mkdir -p "$HOME/.pki/nssdb"
    chmod 700 "$HOME/.pki" "$HOME/.pki/nssdb"
    out=$(certutil -N -d "$NSSDB" --empty-password 2>&1) || die "certutil -N: $out"
    out=$(certutil -A -d "$NSSDB" -n "e2e test CA" -t "C,," -i "$T/ca/ca.pem" 2>&1) ||
        die "certutil -A (test CA): $out"
    # NSS tools load every module of the database: through the spy too.
    out=$(MU -add evertoken -libfile "$SHIM" -force 2>&1) || die "modutil -add: $out"
    out=$(MU -list evertoken 2>&1) || die "modutil -list evertoken: $out"
    grep -q "Token Name: $tok" <<<"$out" || die "modutil does not see token $tok through the module: $out"
    ok "NSS database $HOME/.pki/nssdb: test CA trusted, module added, token $tok visible"
}
MU() { PKCS11SPY=$REAL PKCS11SPY_OUTPUT=$T/modutil.spy.log host setsid -w modutil -dbdir "$NSSDB" "$@" </dev/null; }

# ---- nginx requiring a client certificate from the test CA. Sets PORT, URL.
chromium_nginx() {
    local user=
    PORT=$(e2e_port)
    URL=https://127.0.0.1:$PORT/
    mkdir -p "$T/nginx/logs"
    [ "$(id -u)" = 0 ] && user="user root;" # its files are in the 0700 $T
    cat >"$T/nginx/nginx.conf" <<EOF
$user
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $T/nginx/body;
    proxy_temp_path $T/nginx/proxy;
    fastcgi_temp_path $T/nginx/fastcgi;
    uwsgi_temp_path $T/nginx/uwsgi;
    scgi_temp_path $T/nginx/scgi;
    log_format e2e '"\$request" \$status verify=\$ssl_client_verify proto=\$ssl_protocol dn="\$ssl_client_s_dn"';
    server {
        listen 127.0.0.1:$PORT ssl;
        ssl_certificate $T/server.pem;
        ssl_certificate_key $T/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_client_certificate $T/ca/ca.pem;
        ssl_verify_client on;
        access_log $T/nginx/logs/access.log e2e;
        location = / {
            default_type text/html;
            return 200 "<!doctype html><title>evertoken e2e</title><p>client subject=\$ssl_client_s_dn</p>\n";
        }
        location / { return 404; }
    }
}
EOF
    bg_group nginx -p "$T/nginx" -c "$T/nginx/nginx.conf" -e "$T/nginx/logs/error.log" -g 'daemon off;' \
        </dev/null >"$T/nginx/logs/stdout.log" 2>&1
    e2e_wait_port "$PORT" "$LAST_PID" "$T/nginx/logs/error.log"
    ok "nginx on 127.0.0.1:$PORT (ssl_verify_client on)"
}

# ---- the policy that selects the certificate for the test URL
# Chromium does not merge a list policy set in two files of managed/: one
# wins. Every run (e2e.chromium, e2e.softhsm.chromium, e2e.chromium_unlock,
# a parallel ctest -j) thus writes the same content, which fits them all: any
# port of 127.0.0.1, a certificate issued by "e2e test CA" (each run's token
# holds one).
chromium_policy() {
    [ -w /etc/chromium ] || { echo "SKIP: cannot write Chromium's policies under /etc/chromium (not root?)" >&2; exit 77; }
    if [ ! -d "${PDIR%/*}" ]; then
        mkdir -p "$PDIR" && touch "${PDIR%/*}/$PMARK"
    elif [ ! -d "$PDIR" ]; then
        mkdir -p "$PDIR" && touch "$PDIR/$PMARK"
    fi
    POLICY=$PDIR/evertoken-e2e-$$-$RANDOM.json
    # (mkdir again: a run that just ended may have removed the directories.)
    for _ in 1 2 3; do
        mkdir -p "$PDIR" && cat >"$POLICY" <<'EOF' && break
{ "AutoSelectCertificateForUrls": [
    "{\"pattern\":\"https://127.0.0.1:*\",\"filter\":{\"ISSUER\":{\"CN\":\"e2e test CA\"}}}" ] }
EOF
    done
    [ -s "$POLICY" ] || die "cannot write $POLICY"
    chmod 644 "$POLICY"
}

# ---- Xvfb on a display number it picks itself (-displayfd); exports DISPLAY.
chromium_xvfb() {
    local xpid d
    mkdir -p "$T/fb"
    bg_group Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp -fbdir "$T/fb" \
        3>"$T/xvfb.display" </dev/null >"$T/xvfb.log" 2>&1
    xpid=$LAST_PID
    for _ in $(seq 1 100); do
        [ -s "$T/xvfb.display" ] && break
        kill -0 "$xpid" 2>/dev/null || die "Xvfb exited: $(cat "$T/xvfb.log")"
        sleep 0.1
    done
    d=$(tr -dc 0-9 <"$T/xvfb.display")
    [ -n "$d" ] || die "Xvfb gave no display number within 10 s: $(cat "$T/xvfb.log")"
    export DISPLAY=:$d
    ok "Xvfb on display $DISPLAY"
}

# ---- Chromium in a window, through the spy, with the fresh profile
# $T/profile$1 and the call log $T/chromium$1.spy.log; it opens URL at once.
# Sets CPID, CGROUP, CDPPORT, SPYLOG, CLOG (its stderr).
chromium_start() {
    local tag=${1:-} env
    SPYLOG=$T/chromium$tag.spy.log CLOG=$T/chromium$tag.log CPROFILE=$T/profile$tag
    CDPPORT=
    env=(PKCS11SPY="$REAL" PKCS11SPY_OUTPUT="$SPYLOG" LANGUAGE=en_US LANG=C.UTF-8
        XDG_CACHE_HOME="$HOME/.cache")
    bg_group env "${env[@]}" "$CHROMIUM" --user-data-dir="$CPROFILE" --no-first-run \
        --no-default-browser-check --remote-debugging-port=0 --no-sandbox --password-store=basic \
        --disable-gpu --lang=en-US --window-size=1280,800 "$URL" </dev/null >"$CLOG" 2>&1
    CPID=$LAST_PID CGROUP=$LAST_PID
    for _ in $(seq 1 $((WAIT_START * 10))); do
        [ -s "$CPROFILE/DevToolsActivePort" ] && break
        kill -0 "$CPID" 2>/dev/null || cdie "Chromium exited at start"
        sleep 0.1
    done
    CDPPORT=$(head -1 "$CPROFILE/DevToolsActivePort" 2>/dev/null | tr -dc 0-9) || true
    [ -n "$CDPPORT" ] || cdie "Chromium wrote no DevToolsActivePort within $WAIT_START s"
    ok "Chromium started (profile $CPROFILE, DevTools on 127.0.0.1:$CDPPORT), loading $URL"
}
# Stop the Chromium chromium_start started (its whole process group).
chromium_stop() {
    stop_group "$CGROUP"
    kill -0 -- "-$CGROUP" 2>/dev/null && die "Chromium (process group $CGROUP) did not stop"
    CDPPORT=
}

# Failure with evidence: Chromium's stderr tail, the windows, the C_Login
# calls so far, a screenshot of the page (DevTools) and of the whole screen
# (Xvfb's frame buffer, converted to PNG).
cdie() {
    local shots=""
    if [ -n "${CDPPORT:-}" ] && timeout 10 node "$CDP" "$CDPPORT" screenshot "$T/page.png" >/dev/null 2>&1; then
        shots="page: $T/page.png "
    fi
    if timeout 20 node "$CHROMIUM_DIR/xwd2png.js" "$T/fb/Xvfb_screen0" "$T/screen.png" 2>/dev/null; then
        shots="${shots}screen: $T/screen.png"
    fi
    die "$*
--- windows: $(timeout 5 xwininfo -root -tree 2>&1 | grep -E '^ +0x' | grep -v 'has no name' | head -20)
--- C_Login calls: $(awk -f "$CHROMIUM_DIR/spylog.awk" "$SPYLOG" 2>/dev/null | grep '^login' | tr '\n' ';')
--- chromium stderr (tail, without D-Bus complaints):
$(grep -v 'dbus/' "${CLOG:-/dev/null}" 2>/dev/null | tail -25)
--- nginx error log (tail):
$(tail -5 "$T/nginx/logs/error.log" 2>/dev/null)
--- screenshots (kept with ET_KEEP=1): ${shots:-none}"
}

# The window id of Chromium's PIN dialog ("Unlock Security Device"), or
# nothing. Matches the title anywhere (xdotool: an extended regular
# expression, case-insensitive).
pin_dialog() {
    timeout 5 xdotool search --name 'Unlock Security Device' 2>/dev/null | head -1 || true
}

# Wait (WAIT_DIALOG s) for the PIN dialog; sets WIN.
chromium_wait_dialog() {
    WIN=
    for _ in $(seq 1 $((WAIT_DIALOG * 5))); do
        WIN=$(pin_dialog)
        [ -n "$WIN" ] && return 0
        kill -0 "$CPID" 2>/dev/null || cdie "Chromium exited before asking for the PIN"
        sleep 0.2
    done
    cdie "Chromium's PIN dialog (Unlock Security Device) did not appear within $WAIT_DIALOG s"
}

# The page, over the DevTools protocol: it must show the client
# certificate's subject within WAIT_PAGE s.
chromium_read_page() {
    local out
    out=$(timeout $((WAIT_PAGE + 10)) node "$CDP" "$CDPPORT" text "$URL" "client subject=$DN" "$WAIT_PAGE" 2>&1) ||
        cdie "the page does not show the client certificate's subject: $out"
    ok "the page shows the token's certificate: $(grep '^text:' <<<"$out")"
}

# The TLS handshake used the client certificate: nginx's access log has
# exactly $1 requests of the page (GET /; a favicon request is not counted),
# each over TLS 1.3 and verified with the token's certificate.
chromium_check_nginx() {
    local n=$1 got want
    got=$(grep '^"GET / HTTP/1.1" ' "$T/nginx/logs/access.log" 2>/dev/null) || true
    [ -n "$got" ] && [ "$(wc -l <<<"$got")" -eq "$n" ] ||
        cdie "nginx logged not $n request(s) of the page: $(cat "$T/nginx/logs/access.log" 2>/dev/null)"
    want="\"GET / HTTP/1.1\" 200 verify=SUCCESS proto=TLSv1.3 dn=\"$DN\""
    [ -z "$(grep -vxF "$want" <<<"$got")" ] ||
        cdie "nginx did not log TLS 1.3 requests verified with the token's certificate: $got"
    ok "nginx: client certificate verified (SUCCESS) over TLSv1.3: $(tail -1 <<<"$got")"
}

# The signatures Chromium made with the token key (CKA_ID 0c1e47) in the
# call log $SPYLOG: every C_SignInit + C_Sign pair on that key is
# CKM_RSA_PKCS_PSS, returned CKR_OK, and verifies with the token's public
# key. Sets NSIG (at least 1).
chromium_check_signatures() {
    local ev keys pairs out md mgfmd
    ev=$(awk -f "$CHROMIUM_DIR/spylog.awk" "$SPYLOG")
    keys=$(awk '$1 == "found" && $3 == "CKO_PRIVATE_KEY" && $4 == "0c1e47" {
        for (i = 5; i <= NF; i++) print $i }' <<<"$ev" | sort -u | tr '\n' ' ')
    [ -n "$keys" ] || die "Chromium never found the private key with CKA_ID 0c1e47: $(grep '^found' <<<"$ev")"
    # Each successful C_SignInit on that key, then the C_Sign of its session.
    pairs=$(awk -v keys=" $keys" '
        $1 == "signinit" && $8 == "CKR_OK" && index(keys, " " $7 " ") { init[$2] = $0; next }
        $1 == "sign" && ($2 in init) { print init[$2], $0; delete init[$2] }' <<<"$ev")
    [ -n "$pairs" ] || die "no C_SignInit + C_Sign with the token key (handle $keys) in $SPYLOG:
$(grep '^sign' <<<"$ev" | cut -c1-120)"
    NSIG=0
    while read -r _ _ mech hash mgf slen hkey _ _ sess rv data sig; do
        [ "$rv" = CKR_OK ] || die "C_Sign on session $sess (key $hkey) returned $rv"
        # TLS 1.3 signs with RSA-PSS: CKM_RSA_PKCS_PSS over the handshake hash.
        [ "$mech" = CKM_RSA_PKCS_PSS ] || die "Chromium signed with $mech, expected CKM_RSA_PKCS_PSS (TLS 1.3)"
        if [ "$data" = - ] || [ "$sig" = - ]; then die "C_Sign on session $sess: data or signature not logged"; fi
        md=${hash#CKM_} mgfmd=${mgf#CKG_MGF1_}
        xxd -r -p <<<"$data" >"$T/tbs.$NSIG"
        xxd -r -p <<<"$sig" >"$T/sig.$NSIG"
        out=$(openssl pkeyutl -verify -pubin -inkey "$T/client.pub.pem" -in "$T/tbs.$NSIG" \
            -sigfile "$T/sig.$NSIG" -pkeyopt rsa_padding_mode:pss -pkeyopt "digest:${md,,}" \
            -pkeyopt "rsa_mgf1_md:${mgfmd,,}" -pkeyopt "rsa_pss_saltlen:$slen" 2>&1) ||
            die "Chromium's signature (C_Sign, session $sess) does not verify with the token's public key: $out"
        NSIG=$((NSIG + 1))
        ok "C_SignInit(CKM_RSA_PKCS_PSS, $hash, $mgf, salt $slen) on key $hkey (CKA_ID 0c1e47), C_Sign CKR_OK; signature verified by OpenSSL"
    done <<<"$pairs"
}
