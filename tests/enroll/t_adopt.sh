# Adopt: a credential imported from a PKCS#12 (key, certificate issued by the
# profile's CA, the CA certificate) is brought under a profile's renewal with
# `evertoken-enroll adopt PROFILE --label L`, then renewed by the next check
# in its window. Refused with a precise error and the token unchanged: a
# certificate whose key in the token does not match it, a certificate that
# does not chain to the profile's anchors, a profile that has a credential.
. "$(dirname "$0")/lib.sh"
ca_init
scep_start
NOW=$(now_epoch)
export USER_PIN=$PIN P12_PASS=p12-pass
imp() { host "$CLI" --module "$MOD" import --token "$LABEL" --pin env:USER_PIN --passphrase env:P12_PASS "$@" >/dev/null; }
# A key and a certificate for CN=NAME issued by the test CA (outside the helper).
issue() {
    local name=$1
    openssl req -new -newkey rsa:2048 -nodes -keyout "$T/$name.key" -subj "/CN=$name/O=evertoken tests" \
        -out "$T/$name.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s.example\nkeyUsage=critical,digitalSignature,keyEncipherment\n' "$name" >"$T/$name.ext"
    openssl x509 -req -in "$T/$name.csr" -CA "$CA/ca.pem" -CAkey "$CA/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
        -days 90 -sha256 -extfile "$T/$name.ext" -out "$T/$name.pem" 2>/dev/null
}
issue dave
openssl pkcs12 -export -inkey "$T/dave.key" -in "$T/dave.pem" -certfile "$CA/ca.pem" -name dave-imported \
    -passout env:P12_PASS -out "$T/dave.p12"
imp "$T/dave.p12"
[ "$(count_objects Certificate dave-imported)" = 1 ] && [ "$(count_objects Private dave-imported)" = 1 ] ||
    die "import: $(token_objects)"
profile dave
profile erin

# A certificate whose key is not in the token under its CKA_ID: the key of
# another pair is given the certificate's id.
issue frank
openssl req -new -newkey rsa:2048 -nodes -keyout "$T/other.key" -subj "/CN=other" -out /dev/null 2>/dev/null
openssl pkey -in "$T/other.key" -out "$T/other.pem"
imp "$T/other.pem"
oid=$(p11 -O --type privkey 2>/dev/null | awk '/label:/{l=$2} /ID:/{id=$2} /Usage/{if (l!="dave-imported") print id}' | head -1)
[ -n "$oid" ] || die "no id of the other key: $(p11 -O 2>&1)"
openssl x509 -in "$T/frank.pem" -outform DER -out "$T/frank.der"
p11 --write-object "$T/frank.der" --type cert --id "$oid" --label mismatch >/dev/null 2>&1 || die "writing the mismatching certificate"
token_objects >"$T/before"
rc=0; enr adopt erin --label mismatch 2>"$T/mm.err" || rc=$?
[ "$rc" = 7 ] || die "mismatching key: exit $rc (want 7): $(cat "$T/mm.err")"
grep -q "does not match the certificate" "$T/mm.err" || die "not explained: $(cat "$T/mm.err")"
token_objects | cmp -s - "$T/before" || die "token changed by a refused adopt: $(token_objects)"
ok "a certificate whose key does not match: refused, nothing changed"

# A certificate that does not chain to the profile's anchors.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/s.key" -out "$T/s.pem" -subj "/CN=erin/O=evertoken tests" \
    -days 30 -addext "basicConstraints=critical,CA:FALSE" 2>/dev/null
openssl pkcs12 -export -inkey "$T/s.key" -in "$T/s.pem" -name stranger -passout env:P12_PASS -out "$T/s.p12"
imp "$T/s.p12"
token_objects >"$T/before"
rc=0; enr adopt erin --label stranger 2>"$T/st.err" || rc=$?
[ "$rc" = 7 ] || die "foreign certificate: exit $rc (want 7): $(cat "$T/st.err")"
grep -q "does not chain to the anchors of profile erin" "$T/st.err" || die "not explained: $(cat "$T/st.err")"
token_objects | cmp -s - "$T/before" || die "token changed by a refused adopt"
expect_rc 3 enr adopt erin
expect_rc 3 enr adopt erin --id zz
ok "a certificate that does not chain: refused, nothing changed; bad arguments"

# The imported credential is adopted by dave.
serial=$(openssl x509 -in "$T/dave.pem" -noout -serial | sed 's/serial=//')
enr adopt dave --label dave-imported 2>"$T/a.err" || die "adopt: $(cat "$T/a.err")"
[ "$(count_objects Certificate dave)" = 1 ] && [ "$(count_objects Private dave)" = 1 ] || die "not under the profile: $(token_objects)"
[ "$(count_objects Certificate dave-imported)" = 0 ] || die "old label left: $(token_objects)"
[ "$(token_serial dave)" = "$serial" ] || die "another certificate"
[ "$(token_id dave)" = "$(cred_id dave)" ] || die "not the profile's CKA_ID"
cred_works dave || die "the adopted credential does not work"
grep -q "^adopted|dave|certificate " "$T/notify.log" || die "adopt not notified: $(cat "$T/notify.log")"
enr status --json >"$T/st.json" || true
python3 -c 'import json,sys; p=[p for p in json.load(open(sys.argv[1]))["profiles"] if p["profile"]=="dave"][0]; assert p["state"]=="valid" and p["serial"].lower()==sys.argv[2].lower() and p["last_result"]=="adopted", p' "$T/st.json" "$serial" ||
    die "status after adopt: $(cat "$T/st.json")"
[ -s "$STATE/certs/dave/cert.pem" ] || die "cert.pem not written"
issue dave2
openssl pkcs12 -export -inkey "$T/dave2.key" -in "$T/dave2.pem" -name dave-second -passout env:P12_PASS -out "$T/dave2.p12"
imp "$T/dave2.p12"
rc=0; enr adopt dave --label dave-second 2>"$T/twice.err" || rc=$?
[ "$rc" = 1 ] && grep -q "profile dave already has a credential" "$T/twice.err" || die "second adopt: exit $rc: $(cat "$T/twice.err")"
[ "$(count_objects Certificate dave-second)" = 1 ] || die "second adopt changed the token: $(token_objects)"
ok "adopted: the imported credential now has the profile's CKA_ID and label"

# dave enrolls nothing (it has a certificate) and renews it in its window.
enr check dave 2>"$T/c.err" || die "check: $(cat "$T/c.err")"
[ "$(token_serial dave)" = "$serial" ] || die "replaced before the window"
! grep -q "PKCSReq" "$CA/requests.log" || die "a fresh enrollment instead of adopting: $(cat "$CA/requests.log")"
export EVERTOKEN_ENROLL_FAKE_TIME=$((NOW + 65 * 86400))
echo "$EVERTOKEN_ENROLL_FAKE_TIME" >"$CA/now"
enr check dave 2>"$T/r.err" || die "renewal: $(cat "$T/r.err")"
grep -q "POST RenewalReq .* SUCCESS" "$CA/requests.log" || die "no RenewalReq: $(cat "$CA/requests.log")"
[ "$(token_serial dave)" != "$serial" ] || die "not renewed"
[ "$(count_objects Certificate dave)" = 1 ] || die "after renewal: $(token_objects)"
cred_works dave || die "the renewed credential does not work"
ok "the adopted credential is renewed by the profile (RenewalReq signed by the imported key)"
