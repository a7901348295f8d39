#!/usr/bin/env bash
# evertoken CLI: import of PKCS#12 (RSA, EC), PEM (plain and encrypted keys),
# DER and PKCS#7; key and certificate share one CKA_ID (the SHA-1 key
# identifier); pkcs11-tool sees them paired; export-cert; delete; malformed
# input and all-or-nothing behaviour.
. "$(dirname "$0")/lib.sh"
[ -n "$CLI" ] || die "EVERTOKEN_CLI unset"
need openssl pkcs11-tool
export SO_PIN=so-secret-1234 USER_PIN=123456 P12_PASS=export-pass KEY_PASS=key-pass
cd "$T"

# ---- fixtures (generated here; -x509 certificates carry subjectKeyIdentifier) ----
q() { "$@" >/dev/null 2>&1 || die "fixture: $*"; }
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=TestRootCA" -keyout ca.key -out ca.pem
printf 'subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nbasicConstraints=CA:FALSE\n' >ext.cnf
leaf() { # NAME KEYALG-ARGS...
    local n=$1; shift
    q openssl req -newkey "$@" -nodes -subj "/CN=$n/O=evertoken test" -keyout "$n.key" -out "$n.csr"
    q openssl x509 -req -in "$n.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
        -extfile ext.cnf -out "$n.pem"
}
leaf alice rsa:2048
leaf bob ec -pkeyopt ec_paramgen_curve:P-384
leaf carol ec -pkeyopt ec_paramgen_curve:P-256
leaf dave rsa:2048
q openssl pkcs12 -export -inkey alice.key -in alice.pem -certfile ca.pem -name alice \
    -passout env:P12_PASS -out alice.p12
q openssl pkcs12 -export -inkey bob.key -in bob.pem -name bob -passout env:P12_PASS -out bob.p12
q openssl pkey -in carol.key -aes256 -passout env:KEY_PASS -out carol.enc.key
q openssl x509 -in dave.pem -outform DER -out dave.cer
q openssl crl2pkcs7 -nocrl -certfile ca.pem -out chain.p7b

"$CLI" init --label imp --so-pin env:SO_PIN --pin env:USER_PIN >/dev/null
L() { "$CLI" list --token imp --login --pin env:USER_PIN; }
# CKA_ID of the object of class $1 labelled $2, from `evertoken list`.
id_of() { L | awk -v c="$1" -v l="$2" '$2 == c && $NF == l { print $4 }'; }
ski_of() { openssl x509 -in "$1" -noout -ext subjectKeyIdentifier | tail -1 | tr -d ' :' | tr A-F a-f; }
nobj() { L | sed -n "s/.*: \([0-9]*\) objects\?.*/\1/p"; }
paired() { # LABEL: private key, public key and certificate share one id, = SKI of CERT
    local k p c s
    k=$(id_of privkey "$1"); p=$(id_of pubkey "$1"); c=$(id_of cert "$1"); s=$(ski_of "$2")
    [ -n "$k" ] || die "$1: no private key listed: $(L)"
    [ "$k" = "$p" ] && [ "$k" = "$c" ] || die "$1: ids differ: key=$k pub=$p cert=$c"
    [ "$k" = "$s" ] || die "$1: CKA_ID $k is not the subjectKeyIdentifier $s"
}

# ---- malformed input: clear message, nothing imported (before any login) ----
head -c 200 alice.p12 >broken.p12
printf -- '-----BEGIN CERTIFICATE-----\nMIIB@@notbase64\n-----END CERTIFICATE-----\n' >broken.pem
echo "just text" >text.txt
for bad in broken.p12 broken.pem text.txt; do
    set +e; "$CLI" import --token imp --pin env:USER_PIN --passphrase env:P12_PASS alice.p12 "$bad" 2>err; rc=$?; set -e
    [ $rc = 6 ] || die "$bad: exit $rc, expected 6"
    grep -q "$bad" err && grep -q "nothing was imported" err || die "$bad: message: $(cat err)"
    [ "$(nobj)" = 0 ] || die "$bad: objects were created: $(L)"
done
ok "malformed input rejected, nothing imported"

# ---- PKCS#12, RSA with CA chain ----
set +e; "$CLI" import --token imp --pin env:USER_PIN --passphrase pass:wrong alice.p12 2>err
rc=$?; set -e
[ $rc = 4 ] && grep -q "wrong passphrase" err || die "wrong p12 passphrase: exit $rc $(cat err)"
"$CLI" import --token imp --pin env:USER_PIN --passphrase env:P12_PASS alice.p12 >out
paired alice alice.pem
[ "$(id_of cert TestRootCA)" = "$(ski_of ca.pem)" ] || die "CA cert id is not its own key id: $(L)"
L | grep -q "X.509/CA" || die "CA certificate not category authority: $(L)"
ok "PKCS#12 RSA + chain"

# ---- PKCS#12, EC ----
"$CLI" import --token imp --pin env:USER_PIN --passphrase env:P12_PASS bob.p12 >/dev/null
paired bob bob.pem
L | grep -q "EC-secp384r1" || die "EC curve not shown: $(L)"
ok "PKCS#12 EC"

# ---- PEM: encrypted key + certificate (two files), with --label ----
"$CLI" import --token imp --pin env:USER_PIN --passphrase env:KEY_PASS --label carol-vpn \
    carol.enc.key carol.pem >/dev/null
k=$(id_of privkey carol-vpn); c=$(id_of cert carol-vpn)
[ -n "$k" ] && [ "$k" = "$c" ] && [ "$k" = "$(ski_of carol.pem)" ] || die "carol: key=$k cert=$c"
ok "PEM encrypted key + certificate"

# ---- PEM: plain key + certificate in one file ----
cat dave.key dave.pem >dave-bundle.pem
"$CLI" import --token imp --pin env:USER_PIN dave-bundle.pem >/dev/null
paired dave dave.pem
ok "PEM plain key + certificate"

# ---- legacy PKCS#12 (RC2-40 certificate bag, as older exporters write) ----
leaf frank ec -pkeyopt ec_paramgen_curve:P-256
q openssl pkcs12 -export -legacy -inkey frank.key -in frank.pem -name frank \
    -passout env:P12_PASS -out frank.p12
"$CLI" import --token imp --pin env:USER_PIN --passphrase env:P12_PASS frank.p12 >/dev/null
paired frank frank.pem
ok "legacy (RC2) PKCS#12"

# ---- Ed25519 (CKK_EC_EDWARDS), PKCS#8 PEM key and certificate in one file ----
q openssl req -x509 -newkey ed25519 -nodes -days 30 -subj "/CN=gina" -keyout gina.key -out gina.pem
cat gina.pem gina.key >gina-bundle.pem
"$CLI" import --token imp --pin env:USER_PIN gina-bundle.pem >/dev/null
paired gina gina.pem
L | grep -q "ED25519.* gina$" || die "Ed25519 key type not shown: $(L)"
ok "Ed25519"

# ---- explicit --id and --label ----
leaf hank rsa:2048
"$CLI" import --token imp --pin env:USER_PIN --id 0102abcd --label hank-id hank.key hank.pem >/dev/null
[ "$(id_of privkey hank-id)" = 0102abcd ] && [ "$(id_of pubkey hank-id)" = 0102abcd ] &&
    [ "$(id_of cert hank-id)" = 0102abcd ] || die "--id/--label not applied: $(L)"
set +e; "$CLI" import --token imp --pin env:USER_PIN --id 01 hank.key dave.key 2>err; rc=$?; set -e
[ $rc = 2 ] && grep -q "exactly one private key" err || die "--id with two keys: exit $rc"
set +e; "$CLI" import --token imp --pin env:USER_PIN --id xyz hank.pem 2>/dev/null; rc=$?; set -e
[ $rc = 2 ] || die "bad --id hex: exit $rc"
ok "--id and --label"

# ---- DER certificate (already there: skipped), PKCS#7 chain (CA already there) ----
n=$(nobj)
"$CLI" import --token imp --pin env:USER_PIN dave.cer >out
grep -q "already on the token" out || die "DER duplicate not detected: $(cat out)"
[ "$(nobj)" = "$n" ] || die "DER duplicate imported twice"
"$CLI" delete --token imp --pin env:USER_PIN --label dave --class cert >/dev/null
"$CLI" import --token imp --pin env:USER_PIN dave.cer >/dev/null
paired dave dave.pem
"$CLI" delete --token imp --pin env:USER_PIN --id "$(ski_of ca.pem)" >/dev/null
[ -z "$(id_of cert TestRootCA)" ] || die "CA not deleted"
"$CLI" import --token imp --pin env:USER_PIN chain.p7b >/dev/null
[ "$(id_of cert TestRootCA)" = "$(ski_of ca.pem)" ] || die "PKCS#7 chain: $(L)"
openssl crl2pkcs7 -nocrl -certfile ca.pem -certfile alice.pem -outform DER -out chain.der.p7b
"$CLI" import --token imp --pin env:USER_PIN chain.der.p7b >out
[ "$(grep -c "already on the token" out)" = 2 ] || die "DER PKCS#7: $(cat out)"
ok "DER certificate and PKCS#7 (PEM and DER)"

# ---- pkcs11-tool sees each key paired with its certificate ----
host pkcs11-tool --module "$MODULE" --token-label imp --login --pin "$USER_PIN" -O >p11.txt 2>&1 \
    || die "pkcs11-tool -O failed: $(cat p11.txt)"
for who in alice bob dave; do
    pk=$(awk -v l="$who" '/^Private Key Object/{t="k"} /^Certificate Object/{t="c"}
        /^Public Key Object/{t="p"} /label:/{lab=$2} /ID:/{ if (lab==l && t=="k") print $2 }' p11.txt)
    ce=$(awk -v l="$who" '/^Private Key Object/{t="k"} /^Certificate Object/{t="c"}
        /^Public Key Object/{t="p"} /label:/{lab=$2} /ID:/{ if (lab==l && t=="c") print $2 }' p11.txt)
    [ -n "$pk" ] && [ "$pk" = "$ce" ] || die "pkcs11-tool: $who key id '$pk' cert id '$ce'"
done
ok "pkcs11-tool -O --login sees key and certificate paired"

# The imported RSA key signs, and OpenSSL verifies with the certificate.
echo "signed by the token" >data
if host pkcs11-tool --module "$MODULE" --token-label imp --login --pin "$USER_PIN" --sign \
    -m SHA256-RSA-PKCS --id "$(id_of privkey alice)" -i data -o sig >/dev/null 2>&1; then
    openssl x509 -in alice.pem -pubkey -noout >alice.pub
    openssl dgst -sha256 -verify alice.pub -signature sig data >/dev/null \
        || die "signature by the imported key does not verify"
    ok "imported RSA key signs correctly"
else
    die "pkcs11-tool could not sign with the imported key"
fi

# ---- export-cert equals the original ----
"$CLI" export-cert --token imp --label alice >exp.pem
cmp exp.pem alice.pem || die "exported PEM differs"
"$CLI" export-cert --token imp --id "$(ski_of bob.pem)" --der -o exp.der
openssl x509 -in bob.pem -outform DER | cmp - exp.der || die "exported DER differs"
set +e; "$CLI" export-cert --token imp --label nosuch 2>err; rc=$?; set -e
[ $rc = 3 ] || die "export of a missing cert: exit $rc"
ok "export-cert"

# ---- delete ----
"$CLI" delete --token imp --pin env:USER_PIN --label bob --class privkey >/dev/null
[ -z "$(id_of privkey bob)" ] && [ -n "$(id_of cert bob)" ] || die "delete --class privkey: $(L)"
"$CLI" delete --token imp --pin env:USER_PIN --label bob >/dev/null
L | grep -q " bob$" && die "delete --label left objects: $(L)"
set +e; "$CLI" delete --token imp --pin env:USER_PIN --label bob 2>/dev/null; rc=$?; set -e
[ $rc = 3 ] || die "delete of nothing: exit $rc"
set +e; "$CLI" delete --token imp --pin env:USER_PIN --label x --id 01 2>/dev/null; rc=$?; set -e
[ $rc = 2 ] || die "delete with --id and --label: exit $rc"
ok "delete"

# ---- all or nothing: a key with no PKCS#11 form (3-prime RSA) after a good one ----
q openssl req -x509 -newkey rsa:2048 -nodes -subj "/CN=erin" -keyout erin.key -out erin.pem
q openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -pkeyopt rsa_keygen_primes:3 \
    -out mp.key
n=$(nobj)
set +e; "$CLI" import --token imp --pin env:USER_PIN erin.key erin.pem mp.key >out 2>err; rc=$?; set -e
[ $rc != 0 ] || die "import with an unusable key succeeded"
grep -q "removed again" err || die "rollback not reported: $(cat err)"
[ "$(nobj)" = "$n" ] || die "objects left after a failed import: $(L)"
[ -z "$(id_of privkey erin)" ] || die "erin's key left behind"
ok "failed import leaves nothing"
