# ACME with hostile and faulty answers (the project's front in front of
# pebble breaks one thing at a time): each gives a precise message and the
# right exit code, and the working credential stays as it was (same
# certificate, its key still signs; a refused attempt leaves no new key).
#   directory: truncated JSON, HTML instead of JSON, 3 MiB body;
#   every POST answered badNonce (a storm): given up after 11, retried later;
#   newOrder: 429 rateLimited with Retry-After; truncated JSON;
#   authorization: truncated JSON; order: an unknown status;
#   certificate: wrong content type, a PEM that is no certificate, a
#   certificate for another key.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/acmelib.sh"
acme_init
acme_start
acme_front_start
acme_profile alice "agree_tos = true"
enr enroll alice 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
token_cert alice >"$T/good.pem"
# another credential's certificate, for the "certificate for another key" case
acme_profile bob "agree_tos = true"
enr -v enroll bob 2>"$T/b.err" || die "bob: $(cat "$T/b.err")"
token_cert bob >"$ACME_DIR/other.pem"
curl -s --cacert "$ACME_DIR/tlsca.pem" https://127.0.0.1:15000/intermediates/0 >>"$ACME_DIR/other.pem"

hostile() { # MODE EXIT MESSAGE-REGEX
    acme_mode "$1"
    local rc=0
    enr renew --force alice 2>"$T/h.err" || rc=$?
    [ "$rc" = "$2" ] || die "$1: exit $rc, not $2: $(cat "$T/h.err")"
    grep -Eq "$3" "$T/h.err" || die "$1: no precise message (want /$3/): $(cat "$T/h.err")"
    token_cert alice >"$T/now.pem"
    cmp -s "$T/good.pem" "$T/now.pem" || die "$1: the credential changed"
    cred_works alice || die "$1: the credential does not work any more"
    if [ "$2" = 7 ]; then [ "$(pending_count alice)" = 0 ] || die "$1: a new key was left: $(token_objects)"; fi
    ok "$1: $(grep -m1 -Eo "$3" "$T/h.err")"
}
hostile dir-garbage 7 "ACME directory: malformed JSON at byte [0-9]+"
hostile dir-ctype 7 "ACME directory: the CA answered with text/html, not application/json"
hostile dir-huge 7 "ACME: https://127.0.0.1:14001/dir: the answer exceeds 1024 KiB"
hostile badnonce-storm 4 "the CA refused 11 nonces in a row \(badNonce\); giving up for now"
hostile ratelimit 4 "ACME newOrder: the CA answered HTTP 429: too many new orders recently \(urn:ietf:params:acme:error:rateLimited\)"
grep -q "ACME newOrder: the CA asks to retry after 3600 s" "$T/h.err" || die "Retry-After not reported"
enr status --json >"$T/st.json" || true # exit 1: a check failed
retry_at=$(python3 -c 'import json,sys,datetime; d=json.load(sys.stdin); print(int(datetime.datetime.strptime(d["profiles"][0]["retry_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()))' <"$T/st.json")
[ "$retry_at" -ge $(($(date +%s) + 3000)) ] || die "the retry does not wait for Retry-After: $(cat "$T/st.json")"
ok "the retry after the 429 waits for its Retry-After (3600 s)"
hostile order-garbage 7 "ACME newOrder: malformed JSON at byte [0-9]+"
hostile authz-truncated 7 "ACME authorization: malformed JSON at byte [0-9]+"
hostile order-status 7 "ACME order https://127.0.0.1:14001/my-order/[^ ]+: unknown status \"exploded\""
hostile cert-ctype 7 "ACME certificate: the CA answered with text/html, not application/pem-certificate-chain"
hostile cert-garbage 7 "ACME certificate: the CA's answer \([0-9]+ bytes\) holds no PEM certificate"
hostile cert-other 7 "the issued certificate is for a different public key than the one in"
# And back to a sane CA: the renewal completes (with the key a retried attempt kept).
acme_mode ""
enr renew --force alice 2>"$T/s.err" || die "renewal after the hostile answers: $(cat "$T/s.err")"
token_cert alice >"$T/new.pem"
! cmp -s "$T/good.pem" "$T/new.pem" || die "not renewed"
cred_works alice || die "the renewed credential does not work"
[ "$(pending_count alice)" = 0 ] || die "pending objects left: $(token_objects)"
ok "after the hostile answers a sane CA renews the credential"
