# CMP certificate updates by general message (RFC 9483 section 4.3) and a
# root CA key update (docs/enrollment.md "CMP flow"):
#  - every request is preceded by genm caCerts and genm rootCaCert; the CA
#    without a new key answers "no update" and nothing changes;
#  - the CA rebuilds with a new root key: its rootCaKeyUpdate offers
#    NewWithNew with a NewWithOld link certificate signed by an impostor key:
#    not trusted, the certificate the new key issued is refused, the token is
#    untouched;
#  - a genuine NewWithOld (signed by the old root the profile trusts): the
#    new root is trusted for the check, the renewal the new key issued is
#    accepted and works (its stored chain is NewWithOld, so it verifies to
#    the old root), and so does the next one.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cmplib.sh"
cmp_init
cmp_start
cmp_profile alice
enr -v enroll alice 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
grep -q "^genm rootCaCert: no update" "$CA/requests.log" || die "no genm rootCaCert: $(cat "$CA/requests.log")"
grep -q "^genm caCerts: 1 certificate" "$CA/requests.log" || die "no genm caCerts: $(cat "$CA/requests.log")"
! grep -q "new trust anchor" "$T/e.err" || die "a new anchor without a rollover: $(cat "$T/e.err")"
s1=$(token_serial alice)
ok "genm caCerts and rootCaCert before the request; no update, nothing changes"

# The CA's new root key.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$CA/ca2.key" -out "$CA/ca2.pem" \
    -subj "/CN=evertoken test CA G2" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

restart() { cmp_stop; cmp_start "$@"; sed -i "s|^url = .*|url = $CMP_URL|" "$PROFILES"/*.conf; }
restart --rollover --misbehave root-impostor
before=$(token_objects)
rc=0; enr -v renew --force alice 2>"$T/i.err" || rc=$?
[ "$rc" != 0 ] || die "a renewal issued under an unvouched root succeeded"
grep -q "CMP rootCaKeyUpdate: the CA offers the new root certificate /CN=evertoken test CA G2 to replace .*, but NewWithOld does not chain to the profile's anchors: not trusted" "$T/i.err" ||
    die "impostor link not refused precisely: $(cat "$T/i.err")"
grep -q "^genm rootCaCert: update offered (NewWithOld by an impostor)" "$CA/requests.log" || die "CA log: $(cat "$CA/requests.log")"
[ "$(token_objects)" = "$before" ] && [ "$(token_serial alice)" = "$s1" ] || die "token changed: $(token_objects)"
cred_works alice || die "alice's credential does not work"
[ ! -s "$STATE/certs/alice/anchors.learned.pem" ] || die "an unvouched root was kept"
ok "NewWithOld signed by an impostor: the new root is not trusted, the renewal refused, the token untouched"

restart --rollover
enr -v renew --force alice 2>"$T/r.err" || die "renewal after the CA's key update: $(cat "$T/r.err")"
grep -q "new trust anchor from CMP genm (rootCaKeyUpdate): /CN=evertoken test CA G2, vouched for by the current anchor .* (NewWithOld)" "$T/r.err" ||
    die "new root not learned: $(cat "$T/r.err")"
grep -q "^genm rootCaCert: update offered (NewWithOld)\$" "$CA/requests.log" || die "CA log: $(cat "$CA/requests.log")"
# Kept in the helper's state and in the token from now on (docs/enrollment.md "CA rollover").
grep -q "the CA's new certificate /CN=evertoken test CA G2 (accepted through the current anchors) is trusted from now on" "$T/r.err" ||
    die "new root not kept: $(cat "$T/r.err")"
openssl x509 -in "$STATE/certs/alice/anchors.learned.pem" -noout -subject 2>/dev/null | grep -q "evertoken test CA G2" ||
    die "anchors.learned.pem does not hold the new root"
token_cert alice >"$T/a2.pem" || die "no certificate"
[ "$(token_serial alice)" != "$s1" ] || die "alice not renewed"
openssl verify -CAfile "$CA/ca2.pem" "$T/a2.pem" >/dev/null || die "not issued by the new root key"
cred_works alice || die "alice's renewed credential does not work"
# The stored chain is the link a relying party of the old root needs.
chain=$STATE/certs/alice/chain.pem
[ "$(openssl x509 -in "$chain" -noout -subject -issuer -nameopt RFC2253 | tr '\n' ' ')" = "subject=CN=evertoken test CA G2 issuer=CN=evertoken test CA " ] ||
    die "chain.pem is not NewWithOld: $(openssl x509 -in "$chain" -noout -subject -issuer 2>&1)"
openssl verify -CAfile "$CA/ca.pem" -untrusted "$chain" "$T/a2.pem" >/dev/null ||
    die "the renewed certificate does not verify to the old root through chain.pem"
s2=$(token_serial alice)
enr -v renew --force alice 2>"$T/r2.err" || die "second renewal under the new root: $(cat "$T/r2.err")"
[ "$(token_serial alice)" != "$s2" ] || die "alice not renewed again"
ok "a genuine root CA key update: the new root is trusted through NewWithOld and renewals go on"
