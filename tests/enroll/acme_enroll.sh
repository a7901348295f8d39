# ACME (RFC 8555) against Debian's pebble, keys in the token under test:
#  - first enrollment: account key generated in the token (ES256), account
#    created (terms agreed, contact), order, http-01 by the built-in
#    responder, finalize with a CSR signed by the new token key, chain
#    downloaded and verified to pebble's root, the credential stored;
#  - EC certificate key, RSA account key (RS256);
#  - the account found again (onlyReturnExisting) by a later run;
#  - forced renewal: a new key, a new certificate, the old serial replaced;
#  - http-01 by webroot (a web server we did not write serves the directory);
#  - without agree_tos no account is created: a precise error.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/acmelib.sh"
need python3
acme_init
acme_start
acme_profile alice "agree_tos = true" "contact = ops@example.org"
acme_profile carol "agree_tos = true" "account_key = rsa" "[certificate]" "key_type = ec"
enr -v enroll 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
for n in alice carol; do
    grep -q "generated the ACME account key \"acme-account:$n\"" "$T/e.err" || die "$n: no account key generated: $(cat "$T/e.err")"
    grep -q "profile $n: ACME account https://127.0.0.1:14000/my-account/.* created" "$T/e.err" || die "$n: no account created"
    grep -q "profile $n: dns:$n.acme.test validated by the CA" "$T/e.err" || die "$n: not validated"
    token_cert $n >"$T/${n}1.pem" || die "$n: no certificate"
    [ "$(count_objects Certificate $n)" = 1 ] && [ "$(count_objects Private $n)" = 1 ] || die "$n: $(token_objects)"
    [ "$(count_objects Private "acme-account:$n")" = 1 ] || die "$n: account key: $(token_objects)"
    openssl x509 -in "$T/${n}1.pem" -noout -ext subjectAltName | grep -q "DNS:$n.acme.test" || die "$n: SAN lost"
    curl -s --cacert "$ACME_DIR/tlsca.pem" https://127.0.0.1:15000/intermediates/0 >"$T/inter.pem"
    openssl verify -CAfile "$CA/root.pem" -untrusted "$T/inter.pem" "$T/${n}1.pem" >/dev/null ||
        die "$n: the certificate does not chain to pebble's root"
done
cred_works alice || die "alice's credential does not work"
openssl x509 -in "$T/carol1.pem" -noout -text | grep -q "NIST CURVE: P-256" || die "carol: not an EC key"
# The account keys never left the token: private, sensitive, not extractable.
p11 -O --type privkey --label "acme-account:alice" 2>/dev/null | grep -q "EC" || die "alice's account key is not EC"
p11 -O --type privkey --label "acme-account:carol" 2>/dev/null | grep -q "RSA" || die "carol's account key is not RSA"
p11 -O --type privkey 2>/dev/null | grep -A8 "acme-account" | grep -q "sensitive" || die "account key not sensitive"
grep -q "^enrolled|alice|issued certificate serial" "$T/notify.log" || die "enrollment not notified"
ok "ACME enrollment with pebble: account keys (ES256, RS256) and certificate keys (RSA, EC) in the token, http-01 answered, chain verified"

# Renewal: the account is found again (no new account, no new account key).
enr -v renew --force alice 2>"$T/r.err" || die "renew: $(cat "$T/r.err")"
grep -q "profile alice: ACME account https://127.0.0.1:14000/my-account/" "$T/r.err" || die "account not found: $(cat "$T/r.err")"
! grep -q "generated the ACME account key\|created (key" "$T/r.err" || die "a second account or key was made: $(cat "$T/r.err")"
token_cert alice >"$T/alice2.pem"
[ "$(openssl x509 -in "$T/alice2.pem" -noout -serial)" != "$(openssl x509 -in "$T/alice1.pem" -noout -serial)" ] || die "alice not renewed"
! cmp -s <(openssl x509 -in "$T/alice1.pem" -noout -pubkey) <(openssl x509 -in "$T/alice2.pem" -noout -pubkey) || die "alice kept her key"
[ "$(count_objects Certificate alice)" = 1 ] && [ "$(count_objects Private "acme-account:alice")" = 1 ] || die "$(token_objects)"
cred_works alice || die "alice's renewed credential does not work"
grep -q "^renewed|alice|renewed certificate serial" "$T/notify.log" || die "renewal not notified"
ok "forced renewal: the account found again by its key (onlyReturnExisting), a new certificate key"

# The chain from ACME's answer: chain.pem is pebble's intermediate,
# fullchain.pem the renewed certificate plus it, cert.pem the token's
# certificate; the intermediate is in the token once, as a CA certificate
# labelled with its CN (docs/enrollment.md "The CA chain").
d=$STATE/certs/alice
cmp -s <(openssl x509 -in "$d/chain.pem" -outform DER) <(openssl x509 -in "$T/inter.pem" -outform DER) ||
    die "chain.pem is not pebble's intermediate: $(openssl x509 -in "$d/chain.pem" -noout -subject 2>&1)"
[ "$(grep -c 'BEGIN CERTIFICATE' "$d/fullchain.pem")" = 2 ] || die "fullchain.pem: $(grep -c 'BEGIN CERTIFICATE' "$d/fullchain.pem") certificates"
cmp -s <(openssl x509 -in "$d/cert.pem" -outform DER) <(openssl x509 -in "$T/alice2.pem" -outform DER) ||
    die "cert.pem is not the renewed certificate"
ICN=$(openssl x509 -in "$T/inter.pem" -noout -subject -nameopt RFC2253 | sed -e 's/^subject=//' -e 's/^CN=//' -e 's/,.*//')
[ "$(count_objects Certificate "$ICN")" = 1 ] || die "intermediate \"$ICN\" in the token: $(token_objects)"
ok "ACME chain: chain.pem, fullchain.pem, cert.pem written after the renewal; the intermediate stored once in the token"

# http-01 through a webroot served by another web server (Python's http.server).
mkdir -p "$T/www"
python3 -m http.server --bind 127.0.0.1 --directory "$T/www" "$ACME_HTTP_PORT" >>"$T/www.log" 2>&1 &
WWW_PID=$!
ET_PIDS+=("$WWW_PID")
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$ACME_HTTP_PORT/" && break; sleep 0.05; done
acme_profile dave "agree_tos = true"
sed -i '/^http_listen/d' "$PROFILES/dave.conf"
printf 'webroot = %s\n' "$T/www" >>"$PROFILES/dave.conf"
enr -v enroll dave 2>"$T/w.err" || die "webroot: $(cat "$T/w.err")"
grep -q "GET /.well-known/acme-challenge/" "$T/www.log" || die "pebble did not fetch from the webroot: $(cat "$T/www.log")"
[ -z "$(ls -A "$T/www/.well-known/acme-challenge")" ] || die "challenge files left in the webroot"
cred_works dave || die "dave's credential does not work"
kill "$WWW_PID"; wait "$WWW_PID" 2>/dev/null || true
ok "http-01 by webroot: the file served by another web server, removed afterwards"

# No agreement to the terms: no account is created, and the message says why.
acme_profile erin
expect_rc 3 enr enroll erin 2>"$T/t.err"
grep -q "creating an ACME account means agreeing to the CA's terms of service (.*); set agree_tos = true" "$T/t.err" ||
    die "no precise message: $(cat "$T/t.err")"
[ "$(count_objects Certificate erin)" = 0 ] || die "erin got a certificate"
ok "no account without agree_tos: a precise error"
acme_stop

# Alternate chains (Link rel="alternate"): pebble with a second root; the
# profile trusts only that root and names it in preferred_chain.
acme_start PEBBLE_ALTERNATE_ROOTS=1
curl -s --cacert "$ACME_DIR/tlsca.pem" https://127.0.0.1:15000/roots/1 >"$CA/root1.pem"
cn1=$(openssl x509 -in "$CA/root1.pem" -noout -subject -nameopt multiline | sed -n 's/^ *commonName *= //p')
[ -n "$cn1" ] || die "pebble has no second root"
acme_profile frank "agree_tos = true" "preferred_chain = $cn1"
sed -i "s|^anchors = .*|anchors = $CA/root1.pem|" "$PROFILES/frank.conf"
enr -v enroll frank 2>"$T/p.err" || die "preferred_chain: $(cat "$T/p.err")"
grep -q "using the alternate chain up to \"$cn1\"" "$T/p.err" || die "the alternate chain was not chosen: $(cat "$T/p.err")"
cred_works frank || die "frank's credential does not work"
acme_profile gina "agree_tos = true"
sed -i "s|^anchors = .*|anchors = $CA/root1.pem|" "$PROFILES/gina.conf"
expect_rc 7 enr enroll gina 2>"$T/g.err"
[ "$(count_objects Certificate gina)" = 0 ] || die "gina got a certificate chaining elsewhere"
ok "preferred_chain: the alternate chain up to the named root is fetched and verified; without it the default chain is refused by the anchors"
acme_stop
