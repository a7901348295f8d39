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
# Chromium, Xvfb, nginx, the NSS database, the policy, the spy, the checks.
. "$EVERTOKEN_SOURCE_DIR/tests/e2e/chromium/lib_chromium.sh"

# ---- token, CA, server and client credentials
TOK=e2e-chromium
e2e_token "$TOK"
chromium_credential "$TOK"

# ---- NSS database in the temporary HOME: the test CA trusted, the module added
chromium_nssdb "$TOK"
# NSS also takes the module without the spy (its PKCS#11 3.0 C_GetInterface).
mkdir -m 700 "$T/nss-direct"
out=$(certutil -N -d "sql:$T/nss-direct" --empty-password 2>&1) || die "certutil -N: $out"
out=$(host setsid -w modutil -dbdir "sql:$T/nss-direct" -add evertoken -libfile "$REAL" -force </dev/null 2>&1 &&
    host setsid -w modutil -dbdir "sql:$T/nss-direct" -list evertoken </dev/null 2>&1) ||
    die "modutil with the module itself ($REAL): $out"
grep -q "Token Name: $TOK" <<<"$out" || die "modutil does not see token $TOK through $REAL: $out"

# ---- nginx requiring a client certificate, the policy, Xvfb, Chromium
chromium_nginx
chromium_policy
chromium_xvfb
chromium_start

# ---- the PIN dialog ("Unlock Security Device"): type the PIN from the file
chromium_wait_dialog
# No window manager: give the dialog the X input focus, then type into it.
timeout 10 xdotool windowfocus --sync "$WIN" >/dev/null 2>&1 || cdie "cannot focus the PIN dialog (window $WIN)"
sleep 0.5 # the dialog's text field takes the focus after the window
tr -d '\n' <"$PINFILE" | timeout 20 xdotool type --delay 50 --file - || cdie "xdotool type failed"
timeout 10 xdotool key Return || cdie "xdotool key Return failed"
ok "PIN typed into Chromium's dialog (window $WIN)"

# ---- the page, over the DevTools protocol; nginx verified the certificate
chromium_read_page
chromium_check_nginx 1

# ---- what Chromium asked of the token (the spy's call log)
EV=$(awk -f "$CHROMIUM_DIR/spylog.awk" "$SPYLOG")
logins=$(grep '^login ' <<<"$EV" || true)
[ "$logins" = "login CKU_USER CKR_OK ${#E2E_PIN}" ] ||
    die "expected exactly one C_Login (CKU_USER, CKR_OK, the ${#E2E_PIN}-digit PIN) in $SPYLOG, got: ${logins:-none}"
chromium_check_signatures
ok "spy log: one C_Login(CKU_USER), $NSIG signature(s) with the token key"
