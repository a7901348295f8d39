#!/usr/bin/env bash
# Chromium (Debian's /usr/bin/chromium) with its client certificate and key
# in the token, in a real window under Xvfb:
#  * an RSA-2048 client key and its certificate from the test CA are imported
#    into the token with the evertoken CLI (same CKA_ID); the NSS database
#    Chromium reads ($HOME/.pki/nssdb, HOME being temporary) holds the module
#    (modutil -add) and trusts the test CA (certutil -A -t C,,);
#  * a managed policy (AutoSelectCertificateForUrls, a uniquely named file
#    in /etc/chromium/policies/managed/, removed at the end) selects the
#    certificate, so no certificate picker appears;
#  * nginx on 127.0.0.1 requires a client certificate from the test CA
#    (ssl_verify_client on) and answers with $ssl_client_s_dn;
#  * Chromium asks for the token PIN in its own dialog ("Unlock Security
#    Device"): the test waits for that window and types the PIN, read from
#    the PIN file, with xdotool;
#  * the page, read over the DevTools protocol (chromium/cdp.js, Node's
#    standard library only), shows the certificate's subject; nginx logged
#    the request with $ssl_client_verify = SUCCESS over TLS 1.3;
#  * the PKCS#11 call log (OpenSC's pkcs11-spy between Chromium and the
#    module, reached through chromium/spyshim.c) shows exactly one
#    C_Login(CKU_USER), successful, and a C_SignInit(CKM_RSA_PKCS_PSS) on the
#    private key Chromium found by the certificate's CKA_ID, whose C_Sign
#    returned CKR_OK; OpenSSL verifies that signature (data and signature
#    taken from the log) with the public key read back from the token.
# Every process (Xvfb, Chromium and its children, nginx) runs as the leader
# of its own process group, and the group is killed at the end. A failure
# prints Chromium's stderr, the X windows and the logins so far, and leaves
# page.png (DevTools) and screen.png (the whole screen, from Xvfb's frame
# buffer) in $T, kept with ET_KEEP=1. With E2E_SPY=FILE, Chromium's call log
# is copied to FILE.chromium. Skipped (77) with a sanitized evertoken module:
# see docs/testing.md.
. "$(dirname "$0")/lib_e2e.sh" || exit 1
need certutil modutil openssl nginx Xvfb xdotool xwininfo node setsid ss cc
CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] || { echo "SKIP: $CHROMIUM (Debian's chromium) not installed" >&2; exit 77; }
[ -d /etc/chromium ] || { echo "SKIP: /etc/chromium missing (Debian's chromium reads its policies there)" >&2; exit 77; }
CDP=$EVERTOKEN_SOURCE_DIR/tests/e2e/chromium/cdp.js
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
# Deadlines (seconds) of the three waits; even if each takes nearly all of
# its time the test ends within 90 s (a passing run takes about 10 s).
WAIT_START=25 WAIT_DIALOG=20 WAIT_PAGE=20

# ---- cleanup: process groups, the policy file, then lib.sh's cleanup
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
    [ -z "${E2E_SPY:-}" ] || [ ! -f "$SPYLOG" ] || cp "$SPYLOG" "$E2E_SPY.chromium" 2>/dev/null
    set +e
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
SPYLOG=$T/chromium.spy.log
# NSS gets the spy through a shim without C_GetInterface (see spyshim.c:
# OpenSC 0.23's spy crashes NSS on a PKCS#11 3.0 module otherwise).
SHIM=$T/spyshim.so
out=$(cc -shared -fPIC -O1 -DSPY_PATH="\"$SPY\"" -o "$SHIM" \
    "$EVERTOKEN_SOURCE_DIR/tests/e2e/chromium/spyshim.c" -ldl 2>&1) || die "cannot build spyshim.c: $out"

# ---- token, CA, server and client credentials
TOK=e2e-chromium
e2e_token "$TOK"
e2e_ca
e2e_server_cert
SUBJ="/CN=e2e chromium client $$/O=evertoken e2e"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/client.key" 2>/dev/null ||
    die "client key"
openssl req -new -key "$T/client.key" -subj "$SUBJ" -out "$T/client.csr" || die "client CSR"
e2e_ca_sign "$T/client.csr" "$T/client.pem" client
cat "$T/client.key" "$T/client.pem" >"$T/client.bundle.pem"
e2e_import "$TOK" 0c1e47 "$T/client.bundle.pem" chromium-client
rm -f "$T/client.key" "$T/client.bundle.pem"
# The public key as the token holds it (signatures are verified against it).
e2e_pubkey "$TOK" 0c1e47 "$T/client.pub.pem"
openssl x509 -in "$T/client.pem" -noout -pubkey | cmp -s - "$T/client.pub.pem" ||
    die "the token's public key 0c1e47 is not the certificate's"
DN=$(openssl x509 -in "$T/client.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
ok "RSA-2048 client key and certificate ($DN) imported into $TOK with CKA_ID 0c1e47"

# ---- NSS database in the temporary HOME: the test CA trusted, the module added
NSSDB=sql:$HOME/.pki/nssdb
mkdir -p "$HOME/.pki/nssdb"
chmod 700 "$HOME/.pki" "$HOME/.pki/nssdb"
out=$(certutil -N -d "$NSSDB" --empty-password 2>&1) || die "certutil -N: $out"
out=$(certutil -A -d "$NSSDB" -n "e2e test CA" -t "C,," -i "$T/ca/ca.pem" 2>&1) ||
    die "certutil -A (test CA): $out"
# NSS tools load every module of the database: through the spy too.
MU() { PKCS11SPY=$REAL PKCS11SPY_OUTPUT=$T/modutil.spy.log host setsid -w modutil -dbdir "$NSSDB" "$@" </dev/null; }
out=$(MU -add evertoken -libfile "$SHIM" -force 2>&1) || die "modutil -add: $out"
out=$(MU -list evertoken 2>&1) ||
    die "modutil -list evertoken: $out"
grep -q "Token Name: $TOK" <<<"$out" || die "modutil does not see token $TOK through the module: $out"
ok "NSS database $HOME/.pki/nssdb: test CA trusted, module added, token $TOK visible"
# NSS also takes the module without the spy (its PKCS#11 3.0 C_GetInterface).
mkdir -m 700 "$T/nss-direct"
out=$(certutil -N -d "sql:$T/nss-direct" --empty-password 2>&1) || die "certutil -N: $out"
out=$(host setsid -w modutil -dbdir "sql:$T/nss-direct" -add evertoken -libfile "$REAL" -force </dev/null 2>&1 &&
    host setsid -w modutil -dbdir "sql:$T/nss-direct" -list evertoken </dev/null 2>&1) ||
    die "modutil with the module itself ($REAL): $out"
grep -q "Token Name: $TOK" <<<"$out" || die "modutil does not see token $TOK through $REAL: $out"

# ---- nginx requiring a client certificate from the test CA
PORT=$(e2e_port)
URL=https://127.0.0.1:$PORT/
mkdir -p "$T/nginx/logs"
NGINX_USER=
[ "$(id -u)" = 0 ] && NGINX_USER="user root;" # its files are in the 0700 $T
cat >"$T/nginx/nginx.conf" <<EOF
$NGINX_USER
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

# ---- the policy that selects the certificate for the test URL
# Chromium does not merge a list policy set in two files of managed/: one
# wins. Every run (this one, e2e.softhsm.chromium, a parallel ctest -j) thus
# writes the same content, which fits them all: any port of 127.0.0.1, a
# certificate issued by "e2e test CA" (each run's token holds one).
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

# ---- Xvfb on a display number it picks itself (-displayfd)
mkdir -p "$T/fb"
bg_group Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp -fbdir "$T/fb" \
    3>"$T/xvfb.display" </dev/null >"$T/xvfb.log" 2>&1
XPID=$LAST_PID
for _ in $(seq 1 100); do
    [ -s "$T/xvfb.display" ] && break
    kill -0 "$XPID" 2>/dev/null || die "Xvfb exited: $(cat "$T/xvfb.log")"
    sleep 0.1
done
D=$(tr -dc 0-9 <"$T/xvfb.display")
[ -n "$D" ] || die "Xvfb gave no display number within 10 s: $(cat "$T/xvfb.log")"
export DISPLAY=:$D
ok "Xvfb on display $DISPLAY"

# ---- Chromium in a window, through the spy; it opens the URL at once
CHROME_ENV=(PKCS11SPY="$REAL" PKCS11SPY_OUTPUT="$SPYLOG" LANGUAGE=en_US LANG=C.UTF-8
    XDG_CACHE_HOME="$HOME/.cache")
bg_group env "${CHROME_ENV[@]}" "$CHROMIUM" --user-data-dir="$T/profile" --no-first-run \
    --no-default-browser-check --remote-debugging-port=0 --no-sandbox --password-store=basic \
    --disable-gpu --lang=en-US --window-size=1280,800 "$URL" </dev/null >"$T/chromium.log" 2>&1
CPID=$LAST_PID
CDPPORT=

# Failure with evidence: Chromium's stderr tail, the windows, the C_Login
# calls so far, a screenshot of the page (DevTools) and of the whole screen
# (Xvfb's frame buffer, converted to PNG).
cdie() {
    local shots=""
    if [ -n "$CDPPORT" ] && timeout 10 node "$CDP" "$CDPPORT" screenshot "$T/page.png" >/dev/null 2>&1; then
        shots="page: $T/page.png "
    fi
    if timeout 20 node "$EVERTOKEN_SOURCE_DIR/tests/e2e/chromium/xwd2png.js" "$T/fb/Xvfb_screen0" \
        "$T/screen.png" 2>/dev/null; then
        shots="${shots}screen: $T/screen.png"
    fi
    die "$*
--- windows: $(timeout 5 xwininfo -root -tree 2>&1 | grep -E '^ +0x' | grep -v 'has no name' | head -20)
--- C_Login calls: $(awk -f "$EVERTOKEN_SOURCE_DIR/tests/e2e/chromium/spylog.awk" "$SPYLOG" 2>/dev/null |
        grep '^login' | tr '\n' ';')
--- chromium stderr (tail, without D-Bus complaints):
$(grep -v 'dbus/' "$T/chromium.log" 2>/dev/null | tail -25)
--- nginx error log (tail):
$(tail -5 "$T/nginx/logs/error.log" 2>/dev/null)
--- screenshots (kept with ET_KEEP=1): ${shots:-none}"
}

for _ in $(seq 1 $((WAIT_START * 10))); do
    [ -s "$T/profile/DevToolsActivePort" ] && break
    kill -0 "$CPID" 2>/dev/null || cdie "Chromium exited at start"
    sleep 0.1
done
CDPPORT=$(head -1 "$T/profile/DevToolsActivePort" 2>/dev/null | tr -dc 0-9) || true
[ -n "$CDPPORT" ] || cdie "Chromium wrote no DevToolsActivePort within $WAIT_START s"
ok "Chromium started (DevTools on 127.0.0.1:$CDPPORT), loading $URL"

# ---- the PIN dialog ("Unlock Security Device"): type the PIN from the file
WIN=
for _ in $(seq 1 $((WAIT_DIALOG * 5))); do
    WIN=$(timeout 5 xdotool search --name '^Unlock Security Device$' 2>/dev/null | head -1) || true
    [ -n "$WIN" ] && break
    kill -0 "$CPID" 2>/dev/null || cdie "Chromium exited before asking for the PIN"
    sleep 0.2
done
[ -n "$WIN" ] || cdie "Chromium's PIN dialog (Unlock Security Device) did not appear within $WAIT_DIALOG s"
# No window manager: give the dialog the X input focus, then type into it.
timeout 10 xdotool windowfocus --sync "$WIN" >/dev/null 2>&1 || cdie "cannot focus the PIN dialog (window $WIN)"
sleep 0.5 # the dialog's text field takes the focus after the window
tr -d '\n' <"$PINFILE" | timeout 20 xdotool type --delay 50 --file - || cdie "xdotool type failed"
timeout 10 xdotool key Return || cdie "xdotool key Return failed"
ok "PIN typed into Chromium's dialog (window $WIN)"

# ---- the page, over the DevTools protocol
out=$(timeout $((WAIT_PAGE + 10)) node "$CDP" "$CDPPORT" text "$URL" "client subject=$DN" "$WAIT_PAGE" 2>&1) ||
    cdie "the page does not show the client certificate's subject: $out"
ok "the page shows the token's certificate: $(grep '^text:' <<<"$out")"

# ---- the TLS handshake used the client certificate (nginx's access log)
line=$(grep '^"GET / HTTP/1.1" 200 ' "$T/nginx/logs/access.log" | head -1) || true
[ -n "$line" ] || cdie "nginx logged no successful GET /: $(cat "$T/nginx/logs/access.log")"
[ "$line" = "\"GET / HTTP/1.1\" 200 verify=SUCCESS proto=TLSv1.3 dn=\"$DN\"" ] ||
    cdie "nginx did not log a TLS 1.3 request verified with the token's certificate: $line"
ok "nginx: client certificate verified (SUCCESS) over TLSv1.3: $line"

# ---- what Chromium asked of the token (the spy's call log)
EV=$(awk -f "$EVERTOKEN_SOURCE_DIR/tests/e2e/chromium/spylog.awk" "$SPYLOG")
logins=$(grep '^login ' <<<"$EV" || true)
[ "$logins" = "login CKU_USER CKR_OK" ] ||
    die "expected exactly one C_Login (CKU_USER, CKR_OK) in $SPYLOG, got: ${logins:-none}"
keys=$(awk '$1 == "found" && $3 == "CKO_PRIVATE_KEY" && $4 == "0c1e47" {
    for (i = 5; i <= NF; i++) print $i }' <<<"$EV" | sort -u | tr '\n' ' ')
[ -n "$keys" ] || die "Chromium never found the private key with CKA_ID 0c1e47: $(grep '^found' <<<"$EV")"
# Each successful C_SignInit on that key, then the C_Sign of its session.
pairs=$(awk -v keys=" $keys" '
    $1 == "signinit" && $8 == "CKR_OK" && index(keys, " " $7 " ") { init[$2] = $0; next }
    $1 == "sign" && ($2 in init) { print init[$2], $0; delete init[$2] }' <<<"$EV")
[ -n "$pairs" ] || die "no C_SignInit + C_Sign with the token key (handle $keys) in $SPYLOG:
$(grep '^sign' <<<"$EV" | cut -c1-120)"
n=0
while read -r _ _ mech hash mgf slen hkey _ _ sess rv data sig; do
    [ "$rv" = CKR_OK ] || die "C_Sign on session $sess (key $hkey) returned $rv"
    # TLS 1.3 signs with RSA-PSS: CKM_RSA_PKCS_PSS over the handshake hash.
    [ "$mech" = CKM_RSA_PKCS_PSS ] || die "Chromium signed with $mech, expected CKM_RSA_PKCS_PSS (TLS 1.3)"
    if [ "$data" = - ] || [ "$sig" = - ]; then die "C_Sign on session $sess: data or signature not logged"; fi
    md=${hash#CKM_} mgfmd=${mgf#CKG_MGF1_}
    xxd -r -p <<<"$data" >"$T/tbs.$n"
    xxd -r -p <<<"$sig" >"$T/sig.$n"
    out=$(openssl pkeyutl -verify -pubin -inkey "$T/client.pub.pem" -in "$T/tbs.$n" -sigfile "$T/sig.$n" \
        -pkeyopt rsa_padding_mode:pss -pkeyopt "digest:${md,,}" -pkeyopt "rsa_mgf1_md:${mgfmd,,}" \
        -pkeyopt "rsa_pss_saltlen:$slen" 2>&1) ||
        die "Chromium's signature (C_Sign, session $sess) does not verify with the token's public key: $out"
    n=$((n + 1))
    ok "C_SignInit(CKM_RSA_PKCS_PSS, $hash, $mgf, salt $slen) on key $hkey (CKA_ID 0c1e47), C_Sign CKR_OK; signature verified by OpenSSL"
done <<<"$pairs"
ok "spy log: one C_Login(CKU_USER), $n signature(s) with the token key"
