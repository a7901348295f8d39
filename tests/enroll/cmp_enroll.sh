# CMP (OpenSSL's CMP client against cmpsrv, OpenSSL's CMP server):
#  - first enrollment (ir) protected by the MAC of reference + secret_file,
#    RSA and EC keys generated in the token;
#  - renewal by kur signed with the old key inside the token, a new key in
#    the token: the CA verified the kur's protection against exactly the old
#    certificate (its log says so), certConf confirmed it;
#  - same-key renewal (rekey = false);
#  - implicit confirmation when asked and granted (no certConf).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cmplib.sh"
pubkey_of() { openssl x509 -in "$1" -noout -pubkey; }
cmp_init
cmp_start
cmp_profile alice
cmp_profile bob "[renewal]" "rekey = no"
cmp_profile carol "[certificate]" "key_type = ec" "curve = P-384"
enr -v enroll 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
grep -q "CMP ir protected by the MAC of reference \"alice-ref\"" "$T/e.err" || die "no MAC ir: $(cat "$T/e.err")"
[ "$(grep -c '^ir issued serial .* (MAC)$' "$CA/requests.log")" = 3 ] || die "CA log: $(cat "$CA/requests.log")"
[ "$(grep -c '^certConf PKIStatus: accepted' "$CA/requests.log")" = 3 ] || die "no certConf: $(cat "$CA/requests.log")"
for n in alice bob carol; do
    token_cert $n >"$T/${n}1.pem" || die "$n: no certificate"
    [ "$(count_objects Certificate $n)" = 1 ] && [ "$(count_objects Private $n)" = 1 ] || die "$n: $(token_objects)"
    openssl verify -CAfile "$CA/ca.pem" "$T/${n}1.pem" >/dev/null || die "$n: not issued by the CA"
    openssl x509 -in "$T/${n}1.pem" -noout -ext subjectAltName | grep -q "DNS:$n.example" || die "$n: SAN lost"
done
cred_works alice || die "alice's credential does not work"
openssl x509 -in "$T/carol1.pem" -noout -text | grep -q "NIST CURVE: P-384" || die "carol: not a P-384 key"
grep -q "^enrolled|alice|issued certificate serial" "$T/notify.log" || die "enrollment not notified"
ok "ir with MAC protection: RSA and EC (P-384) keys generated in the token, certConf sent"

# Renewal: kur signed by the old key in the token.
: >"$CA/requests.log"
enr -v renew --force 2>"$T/r.err" || die "renew: $(cat "$T/r.err")"
grep -q "CMP kur signed by the current key in the token" "$T/r.err" || die "no kur: $(cat "$T/r.err")"
for n in alice bob carol; do
    s1=$(openssl x509 -in "$T/${n}1.pem" -noout -serial | sed 's/serial=//')
    grep -q "^kur protection verified against old certificate $s1\$" "$CA/requests.log" ||
        die "$n: the CA did not verify the kur against the old certificate $s1: $(cat "$CA/requests.log")"
    token_cert $n >"$T/${n}2.pem"
    [ "$(openssl x509 -in "$T/${n}2.pem" -noout -serial)" != "serial=$s1" ] || die "$n not renewed"
    [ "$(count_objects Certificate $n)" = 1 ] && [ "$(count_objects Public $n)" = 1 ] || die "$n: $(token_objects)"
    [ "$(openssl x509 -in "$T/${n}2.pem" -noout -subject)" = "$(openssl x509 -in "$T/${n}1.pem" -noout -subject)" ] || die "$n: subject changed"
done
[ "$(grep -c '^kur issued serial .* (signature)$' "$CA/requests.log")" = 3 ] || die "CA log: $(cat "$CA/requests.log")"
! cmp -s <(pubkey_of "$T/alice1.pem") <(pubkey_of "$T/alice2.pem") || die "alice kept its key (rekey expected)"
! cmp -s <(pubkey_of "$T/carol1.pem") <(pubkey_of "$T/carol2.pem") || die "carol kept its key (rekey expected)"
cmp -s <(pubkey_of "$T/bob1.pem") <(pubkey_of "$T/bob2.pem") || die "bob's key changed (rekey = no)"
cred_works alice || die "alice's renewed credential does not work"
cred_works bob || die "bob's renewed credential does not work"
if native; then
    [ "$(pending_count alice)" = 0 ] || die "pending objects left"
    grep -q "native rollover" "$T/r.err" || die "not the native rollover: $(cat "$T/r.err")"
else
    token_objects | grep -q "^Private alice (retired " || die "alice's old key not retired: $(token_objects)"
fi
grep -q "^renewed|alice|renewed certificate serial" "$T/notify.log" || die "renewal not notified"
ok "kur signed by the old key in the token, verified by the CA against the old certificate; same-key kur (rekey = no)"

# Implicit confirmation, asked by the profile and granted by the CA: no certConf.
cmp_stop
: >"$CA/requests.log"
cmp_start --implicit-confirm
rm "$PROFILES"/*.conf
cmp_profile dave "[ca]" "implicit_confirm = yes"
enr enroll dave 2>"$T/d.err" || die "implicit confirm: $(cat "$T/d.err")"
grep -q "^ir issued serial" "$CA/requests.log" || die "not issued: $(cat "$CA/requests.log")"
! grep -q "certConf" "$CA/requests.log" || die "certConf sent although implicit confirmation was granted"
cred_works dave || die "dave's credential does not work"
ok "implicit confirmation: granted, no certConf"

# Proxies come from libcurl's usual environment variables: with http_proxy
# set, the request for an unresolvable CA host goes to the proxy (here the
# test CA itself, which answers a proxied POST like a direct one).
cmp_profile erin
sed -i "s|^url = .*|url = http://ca.invalid:8829/pkix/|" "$PROFILES/erin.conf"
http_proxy=http://127.0.0.1:$CMP_PORT no_proxy= enr enroll erin 2>"$T/p.err" || die "through the proxy: $(cat "$T/p.err")"
grep -q "^POST http://ca.invalid:8829/pkix/\$" "$CA/requests.log" || die "not proxied: $(cat "$CA/requests.log")"
cred_works erin || die "erin's credential does not work"
ok "http_proxy honoured: the request went through the proxy"
