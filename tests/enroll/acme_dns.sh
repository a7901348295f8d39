# ACME challenges other than the built-in http-01, against pebble:
#  - dns-01 through [acme] challenge_hook: the hook publishes the TXT record
#    with pebble-challtestsrv's management API (as a DNS provider's API
#    would be used), pebble validates over DNS, the hook cleans up;
#  - a failing hook: its output in a precise error, no certificate, the
#    cleanup still run;
#  - an IP address identifier (RFC 8738) by the built-in http-01 responder.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/acmelib.sh"
acme_init
acme_start
# (The sanitizer build preloads ASan into the helper, and so into its hooks;
# curl hangs with it preloaded.)
cat >"$T/dnshook" <<HOOK
#!/bin/sh
unset LD_PRELOAD
echo "\$1 \$2 \$3 \$EVERTOKEN_PROFILE value=\$EVERTOKEN_ACME_VALUE" >>"$T/hook.log"
case "\$1" in
deploy) curl -sf -d "{\"host\":\"_acme-challenge.\$3.\",\"value\":\"\$EVERTOKEN_ACME_VALUE\"}" http://127.0.0.1:8055/set-txt ;;
cleanup) curl -sf -d "{\"host\":\"_acme-challenge.\$3.\"}" http://127.0.0.1:8055/clear-txt ;;
esac
HOOK
chmod 755 "$T/dnshook"
acme_profile alice "agree_tos = true" "challenge = dns-01" "challenge_hook = $T/dnshook"
enr -v enroll alice 2>"$T/e.err" || die "dns-01: $(cat "$T/e.err")"
grep -q "answering the dns-01 challenge for dns:alice.acme.test" "$T/e.err" || die "no dns-01: $(cat "$T/e.err")"
grep -q "dns:alice.acme.test validated by the CA (dns-01)" "$T/e.err" || die "not validated by dns-01"
# the TXT value is base64url(SHA-256(key authorization)): 43 characters
grep -Eq "^deploy dns-01 alice.acme.test alice value=[A-Za-z0-9_-]{43}\$" "$T/hook.log" || die "deploy: $(cat "$T/hook.log")"
grep -q "^cleanup dns-01 alice.acme.test alice " "$T/hook.log" || die "no cleanup: $(cat "$T/hook.log")"
! grep -q "http-01 responder listening" "$T/e.err" || die "the http-01 responder ran"
cred_works alice || die "alice's credential does not work"
ok "dns-01 through challenge_hook: TXT record published and cleaned up, validated by pebble over DNS"

printf '#!/bin/sh\necho "$1" >>%s\n[ "$1" = cleanup ] && exit 0\necho "no DNS API credentials for $3"\nexit 3\n' "$T/fail.log" >"$T/badhook"
chmod 755 "$T/badhook"
acme_profile bob "agree_tos = true" "challenge = dns-01" "challenge_hook = $T/badhook"
expect_rc 7 enr enroll bob 2>"$T/b.err"
grep -q "ACME: challenge_hook $T/badhook deploy dns-01 bob.acme.test failed (3): no DNS API credentials for bob.acme.test" "$T/b.err" ||
    die "no precise hook error: $(cat "$T/b.err")"
grep -q "^cleanup$" "$T/fail.log" || die "cleanup not run after a failed deploy"
[ "$(count_objects Certificate bob)" = 0 ] && [ "$(pending_count bob)" = 0 ] || die "bob: $(token_objects)"
ok "a failing challenge_hook: its output in the error, cleanup still run, the token as it was"

acme_profile carol "agree_tos = true"
sed -i 's|^subject = .*|subject = O=evertoken tests|; s|^san = .*|san = IP:127.0.0.1|' "$PROFILES/carol.conf"
enr -v enroll carol 2>"$T/i.err" || die "IP identifier: $(cat "$T/i.err")"
grep -q "ip:127.0.0.1 validated by the CA (http-01)" "$T/i.err" || die "not an IP identifier: $(cat "$T/i.err")"
token_cert carol | openssl x509 -noout -ext subjectAltName | grep -q "IP Address:127.0.0.1" || die "no IP SAN"
cred_works carol || die "carol's credential does not work"
ok "an IP address identifier (RFC 8738) by http-01"
acme_stop
