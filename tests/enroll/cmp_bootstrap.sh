# First enrollment (ir) signed by a bootstrap certificate and key already in
# the token (a device credential from a bootstrap CA the CMP CA trusts;
# profile key bootstrap, no MAC secret). The bootstrap credential stays as it
# was. A bootstrap certificate the CA does not trust is refused.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cmplib.sh"
cmp_init
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=evertoken tests bootstrap CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
    -keyout "$T/boot-ca.key" -out "$T/boot-ca.pem" 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -subj "/CN=device 0042" -keyout "$T/boot.key" 2>/dev/null |
    openssl x509 -req -CA "$T/boot-ca.pem" -CAkey "$T/boot-ca.key" -CAcreateserial -days 30 \
        -extfile <(printf 'keyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\n') -out "$T/boot.pem" 2>/dev/null
openssl pkey -in "$T/boot.key" -outform DER -out "$T/boot.key.der"
openssl x509 -in "$T/boot.pem" -outform DER -out "$T/boot.der"
p11 --write-object "$T/boot.key.der" --type privkey --id b007 --label boot --usage-sign >/dev/null 2>&1 ||
    die "bootstrap key not written"
p11 --write-object "$T/boot.der" --type cert --id b007 --label boot >/dev/null 2>&1 || die "bootstrap certificate not written"

# The CA does not trust the bootstrap CA: refused, nothing stored.
cmp_start
CMP_NO_MAC=1 cmp_profile erin "[ca]" "bootstrap = boot"
before=$(token_objects)
rc=0; enr enroll erin 2>"$T/x.err" || rc=$?
[ "$rc" = 7 ] || die "untrusted bootstrap: exit $rc: $(cat "$T/x.err")"
grep -q "CMP ir: the CA refused the request (.*no suitable sender" "$T/x.err" || die "not explained: $(cat "$T/x.err")"
[ "$(token_objects)" = "$before" ] || die "token changed: $(token_objects)"
cmp_stop
ok "a bootstrap certificate the CA does not trust is refused ($(grep -o "CMP ir: .*" "$T/x.err" | head -1 | cut -c1-120)), token untouched"

cmp_start --bootstrap-ca "$T/boot-ca.pem"
sed -i "s|^url = .*|url = $CMP_URL|" "$PROFILES/erin.conf"
! grep -q "secret_file" "$PROFILES/erin.conf" || die "the profile has a MAC secret"
enr -v enroll erin 2>"$T/e.err" || die "bootstrap enrollment: $(cat "$T/e.err")"
grep -q 'CMP ir signed by the bootstrap certificate "boot"' "$T/e.err" || die "$(cat "$T/e.err")"
grep -q "^ir issued serial .* for /CN=erin/O=evertoken tests (signature)$" "$CA/requests.log" || die "CA log: $(cat "$CA/requests.log")"
[ "$(count_objects Certificate erin)" = 1 ] && [ "$(count_objects Private erin)" = 1 ] || die "$(token_objects)"
cred_works erin || die "erin's credential does not work"
[ "$(token_cert boot | openssl x509 -noout -fingerprint)" = "$(openssl x509 -in "$T/boot.pem" -noout -fingerprint)" ] || die "the bootstrap certificate was touched"
[ "$(count_objects Private boot)" = 1 ] || die "the bootstrap key was touched: $(token_objects)"
ok "ir signed by the bootstrap credential in the token; bootstrap credential untouched"

# The renewal is a kur signed by erin's own key, not the bootstrap key.
: >"$CA/requests.log"
s1=$(token_serial erin)
enr renew --force erin 2>"$T/r.err" || die "renewal: $(cat "$T/r.err")"
grep -q "^kur protection verified against old certificate $s1\$" "$CA/requests.log" || die "CA log: $(cat "$CA/requests.log")"
ok "renewal by kur signed with the enrolled key"
