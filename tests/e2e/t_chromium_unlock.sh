#!/usr/bin/env bash
# Chromium after `evertoken unlock`: no PIN dialog (issue 6, login cache).
# The same browser set-up as t_chromium.sh (chromium/lib_chromium.sh: Debian's
# Chromium in a window under Xvfb, nginx on 127.0.0.1 requiring a client
# certificate from the test CA, the credential in the token, the module in an
# NSS database in the temporary HOME through pkcs11-spy, the
# AutoSelectCertificateForUrls policy), then:
#  1. `evertoken settings login_cache=user:600` on the token and `evertoken
#     unlock` with the PIN on standard input: the token key is in this uid's
#     kernel keyring (entry evertoken:<token id>, looked up by the id, so
#     other tests' entries do not matter);
#  2. a fresh Chromium (new profile) loads the page: the page shows the
#     certificate's subject, nginx verified it over TLS 1.3, and nothing was
#     typed. A watcher polls the X server (xdotool search) every 0.2 s during
#     the whole run for Chromium's PIN dialog ("Unlock Security Device"): it
#     never appeared. The call log shows why: the token says
#     CKF_PROTECTED_AUTHENTICATION_PATH, every session NSS opened is in a user
#     state (C_GetSessionInfo: CKS_RO_USER_FUNCTIONS or CKS_RW_USER_FUNCTIONS),
#     no C_Login with a PIN was made (none at all, or only ones with an empty
#     PIN), no C_Logout, and the handshake signature made with the token key
#     (C_Sign) verifies with OpenSSL against the token's public key;
#  3. `evertoken lock` removes the keyring entry; a fresh Chromium then
#     shows the PIN dialog again (nothing typed into it, the page is not
#     loaded, nginx logs no new request) and its call log shows public
#     sessions (CKS_RO_PUBLIC_SESSION), no protected-path flag and no
#     signature.
# The EXIT trap runs `evertoken lock` (no cached key is left behind) before
# removing everything else; a failure prints evidence as t_chromium.sh does.
# evertoken only (the login cache is evertoken's): not registered for
# SoftHSMv2.
. "$(dirname "$0")/lib_e2e.sh" || exit 1
[ "$E2E_MODULE" = evertoken ] ||
    { echo "SKIP: the login cache is evertoken's (E2E_MODULE=$E2E_MODULE)" >&2; exit 77; }
# Chromium, Xvfb, nginx, the NSS database, the policy, the spy, the checks.
. "$EVERTOKEN_SOURCE_DIR/tests/e2e/chromium/lib_chromium.sh"
need keyctl
# Kernel keyrings may be missing in a container (seccomp): skip only then.
if ! kid=$(keyctl add user "evertoken-test-probe:$$" x @u 2>/dev/null); then
    echo "SKIP: no kernel keyring (add_key refused)" >&2
    exit 77
fi
keyctl invalidate "$kid"

ET() { host "$CLI" --module "$REAL" "$@"; }
TOK=e2e-chromium-unlock
TID=
WATCH=
# Run from chromium_cleanup (lib_chromium.sh) after Chromium has stopped and
# before the token directory goes: whatever happened, no cached key survives
# the test (`lock` is harmless when there is nothing to remove).
chromium_cleanup_hook() {
    [ -z "$WATCH" ] || { kill "$WATCH" 2>/dev/null; wait "$WATCH" 2>/dev/null; }
    [ -n "$TID" ] || return 0
    ET lock --token "$TOK" >/dev/null 2>&1 || echo "warning: evertoken lock --token $TOK failed in cleanup" >&2
    if [ -n "$(entry)" ]; then
        echo "warning: keyring entry evertoken:$TID still there after lock; invalidating it" >&2
        keyctl invalidate "$(entry)" 2>/dev/null
    fi
}
# The token's keyring entry (by its id): serial or empty.
entry() { keyctl search @u user "evertoken:$TID" 2>/dev/null || true; }

# ---- token, credential, NSS database, nginx, policy, Xvfb
e2e_token "$TOK"
TID=$(ET info --token "$TOK" | awk '/^ *token id:/ { print $3 }')
[[ $TID =~ ^[0-9a-f]{32}$ ]] || die "no token id from evertoken info: $(ET info --token "$TOK")"
chromium_credential "$TOK"
chromium_nssdb "$TOK"
chromium_nginx
chromium_policy
chromium_xvfb

# ---- the login cache: user:600, then unlock with the PIN on standard input
out=$(ET settings --token "$TOK" --pin env:E2E_PIN login_cache=user:600 2>&1) || die "settings: $out"
[ "$(ET settings --token "$TOK")" = "login_cache=user:600" ] ||
    die "login_cache not stored: $(ET settings --token "$TOK" 2>&1)"
[ -z "$(entry)" ] || die "a keyring entry evertoken:$TID exists before unlock"
out=$(ET unlock --token "$TOK" <"$PINFILE" 2>&1) || die "evertoken unlock (PIN on stdin): $out"
grep -q "unlocked for 600 seconds" <<<"$out" || die "evertoken unlock said: $out"
SERIAL=$(entry)
[ -n "$SERIAL" ] || die "no keyring entry evertoken:$TID after unlock: $(keyctl show @u 2>&1)"
ok "login_cache=user:600 set; evertoken unlock (PIN on stdin) put evertoken:$TID (key $SERIAL) in the user keyring"

# ---- the dialog watcher: every 0.2 s, for the whole unlocked phase
: >"$T/dialogs"
(
    while :; do
        w=$(pin_dialog)
        [ -z "$w" ] || echo "$(date +%T.%N) window $w: $(xdotool getwindowname "$w" 2>/dev/null)" >>"$T/dialogs"
        sleep 0.2
    done
) </dev/null >/dev/null 2>&1 &
WATCH=$!

# ---- a fresh Chromium loads the page; nothing is typed
chromium_start 1
if ! page=$(timeout $((WAIT_PAGE + 10)) node "$CDP" "$CDPPORT" text "$URL" "client subject=$DN" "$WAIT_PAGE" 2>&1); then
    [ ! -s "$T/dialogs" ] ||
        cdie "Chromium asked for the PIN although the token was unlocked ($(head -1 "$T/dialogs")); the page did not load: $page"
    cdie "the page does not show the client certificate's subject (no PIN dialog seen): $page"
fi
ok "the page shows the token's certificate: $(grep '^text:' <<<"$page")"
chromium_check_nginx 1
# The page is there: let the watcher look a little longer (a dialog that
# would come late), then stop it.
sleep 1
pin_dialog | grep -q . && cdie "a PIN dialog is open although the page loaded"
kill "$WATCH" && wait "$WATCH" 2>/dev/null || true
WATCH=
[ ! -s "$T/dialogs" ] || cdie "Chromium showed the PIN dialog while the token was unlocked:
$(head -5 "$T/dialogs")"
ok "no PIN dialog appeared (X windows polled every 0.2 s from before Chromium's start to after the page loaded); nothing typed"

# ---- why, from the call log
EV1=$(awk -f "$CHROMIUM_DIR/spylog.awk" "$SPYLOG")
slot=$(awk -v t="$TOK" '$1 == "tokeninfo" && $3 == t && $4 == "CKR_OK" { print $2; exit }' <<<"$EV1")
[ -n "$slot" ] || die "Chromium never read the token info of $TOK: $(grep '^tokeninfo' <<<"$EV1" | head -3)"
tflags=$(awk -v t="$TOK" '$1 == "tokeninfo" && $3 == t && $4 == "CKR_OK" { print $5 }' <<<"$EV1" | sort -u)
[ "$(wc -l <<<"$tflags")" -eq 1 ] && [[ ,$tflags, == *,CKF_PROTECTED_AUTHENTICATION_PATH,* ]] ||
    die "token flags while unlocked: $tflags (expected CKF_PROTECTED_AUTHENTICATION_PATH in every C_GetTokenInfo)"
sessions=$(awk -v s="$slot" '$1 == "opensession" && $2 == s && $4 == "CKR_OK" { print $5 }' <<<"$EV1" |
    sort -u | tr '\n' ' ')
[ -n "$sessions" ] || die "Chromium opened no session on slot $slot"
# NSS asks C_GetSessionInfo of its slot session (PK11_IsLoggedIn) before it
# would ask for the PIN: the state it got is why it did not.
states=$(awk '$1 == "sessinfo" && $5 == "CKR_OK" { printf "%s%s %s", sep, $2, $4; sep = ", " }' <<<"$EV1")
[ -n "$states" ] || die "Chromium never called C_GetSessionInfo: no proof of the session state"
awk '$1 == "sessinfo" && $5 == "CKR_OK" && $4 != "CKS_RO_USER_FUNCTIONS" && $4 != "CKS_RW_USER_FUNCTIONS"' <<<"$EV1" |
    grep -q . && die "a session NSS looked at was not logged in: $states"
logins=$(grep '^login ' <<<"$EV1" || true)
if [ -n "$logins" ]; then
    # A C_Login that is there must carry no PIN (the cache answers it).
    grep -Ev '^login CKU_USER (CKR_OK|CKR_USER_ALREADY_LOGGED_IN) (0|-)$' <<<"$logins" | grep -q . &&
        die "Chromium called C_Login with a PIN, or it failed, while unlocked: $(tr '\n' ';' <<<"$logins")"
    logins_note="C_Login only without a PIN: $(tr '\n' ';' <<<"$logins")"
else
    logins_note="no C_Login at all"
fi
logouts=$(grep '^logout ' <<<"$EV1" || true)
[ -z "$logouts" ] || die "Chromium called C_Logout: $logouts"
ok "spy log: token flags $tflags; sessions ${sessions}opened on slot $slot, C_GetSessionInfo: $states; $logins_note; no C_Logout"
chromium_check_signatures
ok "the handshake was signed by the token key without a PIN: $NSIG signature(s) verified"
chromium_stop

# ---- lock: the entry goes; a fresh Chromium asks for the PIN again
out=$(ET lock --token "$TOK" 2>&1) || die "evertoken lock: $out"
grep -q "cached login removed" <<<"$out" || die "evertoken lock said: $out"
[ -z "$(entry)" ] || die "keyring entry evertoken:$TID still there after lock"
ok "evertoken lock: keyring entry evertoken:$TID removed"
chromium_start 2
chromium_wait_dialog
ok "Chromium's PIN dialog appeared again after lock (window $WIN: $(xdotool getwindowname "$WIN" 2>/dev/null)); nothing typed"
EV2=$(awk -f "$CHROMIUM_DIR/spylog.awk" "$SPYLOG")
tflags=$(awk -v t="$TOK" '$1 == "tokeninfo" && $3 == t && $4 == "CKR_OK" { print $5 }' <<<"$EV2" | sort -u)
[ -n "$tflags" ] || die "the second Chromium never read the token info of $TOK"
[[ ,$tflags, == *,CKF_PROTECTED_AUTHENTICATION_PATH,* ]] &&
    die "the token still says CKF_PROTECTED_AUTHENTICATION_PATH after lock: $tflags"
states=$(awk '$1 == "sessinfo" && $5 == "CKR_OK" { printf "%s%s %s", sep, $2, $4; sep = ", " }' <<<"$EV2")
[ -n "$states" ] || die "the second Chromium never called C_GetSessionInfo"
awk '$1 == "sessinfo" && $5 == "CKR_OK" && $4 ~ /USER_FUNCTIONS/' <<<"$EV2" | grep -q . &&
    die "a session is logged in after lock: $states"
grep -q '^login ' <<<"$EV2" && die "C_Login after lock although nothing was typed: $(grep '^login ' <<<"$EV2")"
grep -q '^sign ' <<<"$EV2" && die "a C_Sign after lock although nothing was typed"
[ "$(grep -c '^"GET / HTTP/1.1" ' "$T/nginx/logs/access.log")" -eq 1 ] ||
    die "nginx served the page after lock: $(cat "$T/nginx/logs/access.log")"
ok "after lock: token flags $tflags; C_GetSessionInfo: $states; no C_Login, no signature, no new request"
chromium_stop
