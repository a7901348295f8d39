# A broken or hostile CA: junk instead of the CA certificate, junk or a
# truncated PKIOperation answer, the wrong content type, an answer signed by
# a stranger using the CA's name, an answer that does not echo our nonce.
# Each is a precise error (exit 7), never a crash, and the token is untouched.
. "$(dirname "$0")/lib.sh"
ca_init
for mode in cacert racert reply truncated ctype signer nonce; do
    scep_start --garbage "$mode"
    profile alice
    rc=0; enr enroll 2>"$T/$mode.err" || rc=$?
    case $mode in
    cacert|racert) want="GetCACert from .*: no certificate in the answer" ;;
    reply|truncated) want="the CA's answer is not a CMS message\|not signed by the CA/RA" ;;
    ctype) want="answered PKIOperation with text/html, not application/x-pki-message" ;;
    signer) want="not signed by the CA/RA certificate from GetCACert" ;;
    nonce) want="does not echo our nonce" ;;
    esac
    [ "$rc" = 7 ] || die "$mode: exit $rc, want 7: $(cat "$T/$mode.err")"
    grep -q "$want" "$T/$mode.err" || die "$mode: message: $(cat "$T/$mode.err")"
    [ -z "$(token_objects)" ] || die "$mode: token changed: $(token_objects)"
    scep_stop
    echo "ok: $mode refused: $(grep -m1 'error:' "$T/$mode.err" | sed 's/.*error: //')"
done
ok "hostile CA answers refused precisely, token untouched"
