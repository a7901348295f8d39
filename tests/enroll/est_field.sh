# EST against a server that behaves like RFC-conformant CAs in the field
# (docs/enrollment.md "EST flow", "Servers in the field"): base64 bodies on
# one line without a newline, HTTP authentication required on
# /simplereenroll besides the TLS client certificate, subjects narrowed to
# the CN, a CRL distribution point that never answers. With the defaults
# (revocation = soft) and subject_match = cn, an enrollment and a renewal
# succeed. Then each behaviour alone: the other base64 forms, no HTTP
# credentials for a server that wants them, subject_match = exact against a
# narrowing CA, revocation = hard, and hostile bodies (a character that is
# not base64, truncated base64, an oversized body): each refused with a
# precise message, the token untouched.
. "$(dirname "$0")/lib.sh"
: "${ESTSRV:?run through ctest}"
need curl
ca_init
est_tls
printf 'pw-of-bob\n' >"$T/password"
printf 'one-time-4711\n' >"$T/code"
chmod 600 "$T/password" "$T/code"
FIELD=(--user bob --password-file "$T/password" --code-file "$T/code" --b64 unwrapped
    --reenroll-auth --cn-only --crl-url hang)
est_start "${FIELD[@]}"
# window_days = 100: the 90-day certificate is in its renewal window at once,
# so a plain renewal check (with its revocation check) renews it.
fprofile() {
    local name=$1; shift
    est_profile "$name" "[ca]" "username = bob" "secret_file = $T/password" \
        "[certificate]" "subject_match = cn" "[renewal]" "window_days = 100" \
        "revocation_timeout = 2" "$@"
}

# The body really is one line without a newline, and the certificate names
# the CRL distribution point that never answers.
curl -s --cacert "$CA/ca.pem" -o "$T/cacerts.b64" "$EST_URL/.well-known/est/cacerts" || die "curl cacerts"
[ "$(wc -l <"$T/cacerts.b64")" = 0 ] && [ -s "$T/cacerts.b64" ] || die "cacerts not unwrapped: $(od -c "$T/cacerts.b64" | tail -3)"

fprofile alice
enr -v enroll alice 2>"$T/e.err" || die "enrollment against the field server: $(cat "$T/e.err")"
grep -q "^simpleenroll 200 basic issued .* CN-only" "$CA/requests.log" || die "server log: $(cat "$CA/requests.log")"
token_cert alice >"$T/a1.pem" || die "no certificate"
subj=$(openssl x509 -in "$T/a1.pem" -noout -subject -nameopt RFC2253)
[ "$subj" = "subject=CN=alice" ] || die "subject not narrowed: $subj"
openssl x509 -in "$T/a1.pem" -noout -ext crlDistributionPoints | grep -q "URI:http://127.0.0.1:" || die "no CRL distribution point"
cred_works alice || die "alice's credential does not work"
ok "enrolled: unwrapped base64, subject narrowed to the CN accepted (subject_match = cn)"

# Renewal check in the window: the CRL never answers (soft: unknown, warned),
# /simplereenroll gets 401 + WWW-Authenticate after the client certificate
# and is sent once more with the profile's basic credentials.
s1=$(token_serial alice)
enr -v renew alice 2>"$T/r.err" || die "renewal against the field server: $(cat "$T/r.err")"
grep -q "revocation status of certificate $s1 is unknown (no revocation source answered usably); not blocking (revocation = soft)" "$T/r.err" ||
    die "unreachable CRL not taken as unknown: $(cat "$T/r.err")"
grep -q "EST simplereenroll: the server wants HTTP authentication besides the TLS client certificate (HTTP 401, WWW-Authenticate: Basic realm=\"est\"); sending the profile's credentials" "$T/r.err" ||
    die "no HTTP authentication retry: $(cat "$T/r.err")"
grep -q "^simplereenroll 401 client-cert without HTTP credentials" "$CA/requests.log" || die "server log: $(cat "$CA/requests.log")"
grep -q "^simplereenroll 200 client-cert+basic issued .* CN-only" "$CA/requests.log" || die "server log: $(cat "$CA/requests.log")"
# RFC 7030 3.2.3: the credentials go over the same authenticated TLS.
c401=$(grep "^simplereenroll 401 client-cert without HTTP credentials" "$CA/requests.log" | tail -1)
c200=$(grep "^simplereenroll 200 client-cert+basic issued" "$CA/requests.log" | tail -1)
[ -n "${c401##* conn=}" ] && [ "${c401##* conn=}" = "${c200##* conn=}" ] ||
    die "the retry with credentials used another connection: $c401 / $c200"
s2=$(token_serial alice)
[ "$s2" != "$s1" ] && [ "$(count_objects Certificate alice)" = 1 ] || die "alice not renewed: $(token_objects)"
cred_works alice || die "renewed credential does not work"
enr history alice | grep -q "revocation-unknown" || die "unknown revocation status not in the history"
ok "renewed: unreachable CRL = unknown (soft), HTTP basic authentication on top of the client certificate"

# renew --force never waits on a revocation source.
enr -v renew --force alice 2>"$T/f.err" || die "forced renewal: $(cat "$T/f.err")"
grep -q "renew --force: the revocation status of certificate $s2 is not checked" "$T/f.err" || die "$(cat "$T/f.err")"
! grep -q "revocation status of certificate $s2 is unknown" "$T/f.err" || die "forced renewal consulted the CRL"
[ "$(token_serial alice)" != "$s2" ] || die "not renewed by --force"
ok "renew --force does not consult the revocation source"

# revocation = hard: no answer is a network failure (exit 4), nothing renewed.
fprofile hal "revocation = hard"
enr enroll hal 2>"$T/h0.err" || die "enroll hal: $(cat "$T/h0.err")"
before=$(token_objects); hs=$(token_serial hal)
rc=0; enr renew hal 2>"$T/h.err" || rc=$?
[ "$rc" = 4 ] || die "revocation = hard: exit $rc (want 4): $(cat "$T/h.err")"
grep -q "the revocation status of certificate $hs cannot be checked; retrying (revocation = hard" "$T/h.err" || die "$(cat "$T/h.err")"
[ "$(token_objects)" = "$before" ] && [ "$(token_serial hal)" = "$hs" ] || die "token changed: $(token_objects)"
# The global default: EVERTOKEN_ENROLL_REVOCATION=off for a profile that sets none.
sed -i '/^revocation = hard$/d' "$PROFILES/hal.conf"
EVERTOKEN_ENROLL_REVOCATION=off enr -v renew hal 2>"$T/h2.err" || die "revocation off: $(cat "$T/h2.err")"
grep -q "revocation not checked (revocation = off)" "$T/h2.err" || die "$(cat "$T/h2.err")"
[ "$(token_serial hal)" != "$hs" ] || die "hal not renewed"
rc=0; EVERTOKEN_ENROLL_REVOCATION=sometimes enr validate "$PROFILES/hal.conf" 2>"$T/h3.err" || rc=$?
[ "$rc" != 0 ] && grep -q "EVERTOKEN_ENROLL_REVOCATION='sometimes' is not hard, soft or off" "$T/h3.err" || die "bad global default: $rc $(cat "$T/h3.err")"
rm "$PROFILES/hal.conf"
ok "revocation = hard blocks (exit 4, token untouched); EVERTOKEN_ENROLL_REVOCATION sets the default"

# No HTTP credentials (a credential enrolled with a one-time code): the
# server's demand is reported as such, exit 7, the token untouched.
est_profile dave "[ca]" "secret_file = $T/code" "[certificate]" "subject_match = cn" \
    "[renewal]" "window_days = 100" "revocation = off"
enr enroll dave 2>"$T/d0.err" || die "enroll dave with a code: $(cat "$T/d0.err")"
before=$(token_objects); ds=$(token_serial dave)
rc=0; enr renew dave 2>"$T/d.err" || rc=$?
[ "$rc" = 7 ] || die "no HTTP credentials: exit $rc: $(cat "$T/d.err")"
grep -q "EST simplereenroll: the server wants HTTP authentication besides the TLS client certificate (HTTP 401, WWW-Authenticate: Basic realm=\"est\"): HTTP authentication required; the profile gives no HTTP credentials: set username and secret_file in \[ca\]" "$T/d.err" ||
    die "not explained: $(cat "$T/d.err")"
[ "$(token_objects)" = "$before" ] && [ "$(token_serial dave)" = "$ds" ] || die "token changed: $(token_objects)"
# Wrong credentials after the retry: the server's word, the credentials blamed.
printf 'not-the-password\n' >"$T/badpw"; chmod 600 "$T/badpw"
sed -i "s|^secret_file = .*|secret_file = $T/badpw|; 0,/^\[ca\]\$/s//[ca]\nusername = bob/" "$PROFILES/dave.conf"
rc=0; enr renew dave 2>"$T/d2.err" || rc=$?
[ "$rc" = 7 ] && grep -q "EST simplereenroll: the server requires authentication (HTTP 401); the credentials were not accepted (username, secret_file): wrong user name or password" "$T/d2.err" ||
    die "wrong password: exit $rc: $(cat "$T/d2.err")"
[ "$(token_objects)" = "$before" ] || die "token changed: $(token_objects)"
rm "$PROFILES/dave.conf"
ok "HTTP authentication wanted and none given / wrong: precise errors, token untouched"

# subject_match = exact (the default) against the narrowing CA: refused with
# both subjects and what to change; the new key is gone again.
est_profile erin "[ca]" "username = bob" "secret_file = $T/password"
before=$(token_objects)
rc=0; enr enroll erin 2>"$T/x.err" || rc=$?
[ "$rc" = 7 ] || die "exact subject: exit $rc: $(cat "$T/x.err")"
grep -q "the issued certificate's subject /CN=erin is not the requested CN=erin, O=evertoken tests (subject_match = exact); if the CA keeps only some attributes by policy, set subject_match = cn" "$T/x.err" ||
    die "refusal not explained: $(cat "$T/x.err")"
[ "$(token_objects)" = "$before" ] || die "token changed: $(token_objects)"
rm "$PROFILES/erin.conf"
ok "subject_match = exact refuses a narrowed subject, naming both subjects and the fix"
est_stop

# The other base64 forms servers send: CRLF lines with trailing whitespace,
# one line with CRLF and a trailing NUL, 64-character LF lines.
for form in crlf-ws nul lines; do
    est_start --user bob --password-file "$T/password" --b64 "$form"
    curl -s --cacert "$CA/ca.pem" -o "$T/$form.b64" "$EST_URL/.well-known/est/cacerts" || die "curl cacerts"
    case $form in
    nul) [ "$(tail -c 3 "$T/$form.b64" | od -An -tx1 | tr -d ' ')" = 0d0a00 ] || die "no trailing CRLF NUL" ;;
    crlf-ws) [ "$(tail -c 4 "$T/$form.b64" | od -An -tx1 | tr -d ' ')" = 20200d0a ] && grep -q $'
$' "$T/$form.b64" || die "no CRLF lines and trailing spaces" ;;
    esac
    est_profile "f$form" "[ca]" "username = bob" "secret_file = $T/password" "[renewal]" "window_days = 100"
    enr enroll "f$form" 2>"$T/$form.err" || die "--b64 $form: enrollment: $(cat "$T/$form.err")"
    s=$(token_serial "f$form")
    enr renew "f$form" 2>"$T/$form-r.err" || die "--b64 $form: renewal: $(cat "$T/$form-r.err")"
    [ "$(token_serial "f$form")" != "$s" ] || die "--b64 $form: not renewed"
    cred_works "f$form" || die "--b64 $form: credential does not work"
    rm "$PROFILES/f$form.conf"
    est_stop
done
ok "base64 with CRLF lines and trailing whitespace, with a trailing NUL, with LF lines: enrolled and renewed"

# Hostile bodies of /simpleenroll: refused precisely, nothing stored, the new
# key deleted.
hostile() {
    local h=$1 want=$2
    est_start --user bob --password-file "$T/password" --hostile "$h"
    est_profile "h$h" "[ca]" "username = bob" "secret_file = $T/password"
    before=$(token_objects)
    rc=0; enr enroll "h$h" 2>"$T/$h.err" || rc=$?
    [ "$rc" = 7 ] || die "--hostile $h: exit $rc (want 7): $(cat "$T/$h.err")"
    grep -qF "$want" "$T/$h.err" || die "--hostile $h: not explained: $(cat "$T/$h.err")"
    [ "$(token_objects)" = "$before" ] || die "--hostile $h: token changed: $(token_objects)"
    [ "$(pending_count "h$h")" = 0 ] || die "--hostile $h: pending objects left"
    rm "$PROFILES/h$h.conf"
    est_stop
}
hostile badchar "EST simpleenroll: the answer is not base64: invalid character '*' at byte"
hostile truncated "EST simpleenroll: the answer is not base64: truncated ("
hostile big "EST simpleenroll: the answer is larger than 8388608 bytes; refused"
ok "hostile bodies (invalid character, truncated, 9 MiB) refused precisely, token untouched"
