#!/usr/bin/env bash
# OpenSC pkcs11-tool drives the built module through a token's whole life:
# list the free slot, create a token, set and change the user PIN, write,
# list, read and delete a certificate and a data object, and reject a wrong
# PIN with CKR_PIN_INCORRECT. Outputs are checked for the exact strings the
# tool prints (labels, IDs, subjects), not only exit codes.
. "$(dirname "$0")/lib.sh"
need pkcs11-tool openssl

P() { host pkcs11-tool --module "$MODULE" "$@"; }
SO=87654321
PIN=1234
PIN2=98765
LABEL=ext-p11tool

# The slot id (as pkcs11-tool prints it, 0x...) of the first slot whose token
# is uninitialised: evertoken's free slot.
free_slot() {
    awk '/^Slot [0-9]+ \(0x[0-9a-f]+\)/ { id = $3; gsub(/[():]/, "", id) }
         /token state: *uninitialized/ { print id; exit }'
}

# ---- -L lists the free slot holding an uninitialised token
out=$(P -L) || die "pkcs11-tool -L: $out"
grep -q "^Available slots:" <<<"$out" || die "-L printed no slot list: $out"
slot=$(echo "$out" | free_slot)
[ -n "$slot" ] || die "-L shows no free slot with an uninitialised token: $out"
ok "-L lists the free slot $slot"

# ---- --init-token on the free slot
out=$(P --init-token --slot "$slot" --label "$LABEL" --so-pin "$SO" 2>&1) ||
    die "--init-token: $out"
grep -q "Token successfully initialized" <<<"$out" || die "--init-token said: $out"
out=$(P -L)
grep -Eq "token label +: $LABEL\$" <<<"$out" || die "new token label not listed: $out"
grep -q "token initialized" <<<"$out" || die "token initialized flag missing: $out"
grep -q "PIN initialized" <<<"$out" && die "user PIN flagged initialised too early: $out"
# A new free slot appears next to the token.
[ -n "$(echo "$out" | free_slot)" ] || die "no free slot after --init-token: $out"
ok "--init-token created '$LABEL' and a new free slot"

# From here on the token is addressed by label (slot ids are the module's business).
TOK=(--token-label "$LABEL")

# ---- --init-pin as the SO
out=$(P "${TOK[@]}" --init-pin --login --login-type so --so-pin "$SO" --new-pin "$PIN" 2>&1) ||
    die "--init-pin: $out"
grep -q "User PIN successfully initialized" <<<"$out" || die "--init-pin said: $out"
P -L | grep -A8 "token label *: $LABEL\$" | grep -q "PIN initialized" ||
    die "user PIN initialized flag missing: $(P -L)"
ok "--init-pin set the user PIN"

# ---- --change-pin (user, old -> new); the old PIN stops working
out=$(P "${TOK[@]}" --change-pin --pin "$PIN" --new-pin "$PIN2" 2>&1) || die "--change-pin: $out"
grep -q "PIN successfully changed" <<<"$out" || die "--change-pin said: $out"
out=$(P "${TOK[@]}" --login --pin "$PIN" -O 2>&1) && die "old PIN still accepted: $out"
grep -q "CKR_PIN_INCORRECT" <<<"$out" || die "old PIN not CKR_PIN_INCORRECT: $out"
out=$(P "${TOK[@]}" --login --pin "$PIN2" -O 2>&1) || die "login with the new PIN: $out"
ok "--change-pin: new PIN works, old PIN is CKR_PIN_INCORRECT"
PIN=$PIN2

# ---- a wrong PIN fails with CKR_PIN_INCORRECT and writes nothing
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/key.pem" \
    -out "$T/cert.pem" -subj "/CN=evertoken ext test/O=Ext Org" -days 30 2>/dev/null
openssl x509 -in "$T/cert.pem" -outform DER -out "$T/cert.der"
out=$(P "${TOK[@]}" --login --pin 000000 --write-object "$T/cert.der" --type cert --id 01 \
    --label extcert 2>&1) && die "write with a wrong PIN succeeded: $out"
grep -q "CKR_PIN_INCORRECT" <<<"$out" || die "wrong PIN not CKR_PIN_INCORRECT: $out"
P "${TOK[@]}" -O 2>&1 | grep -q "extcert" && die "object written despite the wrong PIN"
ok "wrong PIN: CKR_PIN_INCORRECT, nothing written"

# ---- --login -O on the empty token lists no certificate or data object
out=$(P "${TOK[@]}" --login --pin "$PIN" -O 2>&1) || die "--login -O: $out"
grep -Eq "Certificate Object|Data object" <<<"$out" && die "fresh token has objects: $out"
ok "--login -O on the fresh token"

# ---- write a certificate (logged in); it is listed WITHOUT login
out=$(P "${TOK[@]}" --login --pin "$PIN" --write-object "$T/cert.der" --type cert --id 01 \
    --label extcert 2>&1) || die "--write-object cert: $out"
grep -q "Created certificate:" <<<"$out" || die "--write-object cert said: $out"
out=$(P "${TOK[@]}" -O 2>&1) || die "-O without login: $out"
grep -q "Certificate Object; type = X.509 cert" <<<"$out" || die "cert not listed without login: $out"
grep -Eq "label: +extcert\$" <<<"$out" || die "cert label missing: $out"
grep -Eq "subject: +DN: CN=evertoken ext test, ?O=Ext Org" <<<"$out" || die "cert subject missing: $out"
grep -Eq "ID: +01\$" <<<"$out" || die "cert ID missing: $out"
ok "certificate written with login, listed without login (label, subject, ID)"

# ---- the certificate reads back byte for byte
P "${TOK[@]}" --read-object --type cert --id 01 -o "$T/back.der" >/dev/null 2>&1 ||
    die "--read-object cert"
cmp -s "$T/cert.der" "$T/back.der" || die "certificate read back differs"
ok "--read-object returns the same certificate"

# ---- a public data object and a private one
printf 'evertoken data object payload\n' >"$T/data.bin"
out=$(P "${TOK[@]}" --login --pin "$PIN" --write-object "$T/data.bin" --type data \
    --label extdata --application-label extapp 2>&1) || die "--write-object data: $out"
grep -q "Created Data Object:" <<<"$out" || die "--write-object data said: $out"
out=$(P "${TOK[@]}" --login --pin "$PIN" --write-object "$T/data.bin" --type data \
    --label extsecret --private 2>&1) || die "--write-object private data: $out"
out=$(P "${TOK[@]}" -O 2>&1)
grep -q "Data object" <<<"$out" || die "public data object not listed: $out"
grep -Eq "label: +'extdata'" <<<"$out" || die "data object label missing: $out"
grep -Eq "application: +'extapp'" <<<"$out" || die "data object application missing: $out"
grep -q "extsecret" <<<"$out" && die "private data object listed without login: $out"
out=$(P "${TOK[@]}" --login --pin "$PIN" -O 2>&1)
grep -Eq "label: +'extsecret'" <<<"$out" || die "private data object not listed after login: $out"
echo "$out" | grep -A6 "label: *'extsecret'" | grep -q "private" ||
    die "private data object not flagged private: $out"
P "${TOK[@]}" --read-object --type data --label extdata -o "$T/data.back" >/dev/null 2>&1 ||
    die "--read-object data"
cmp -s "$T/data.bin" "$T/data.back" || die "data object read back differs"
ok "data objects: public listed without login, private only with it, value round-trips"

# ---- delete the certificate; it is gone, the data objects stay
out=$(P "${TOK[@]}" --login --pin "$PIN" --delete-object --type cert --id 01 2>&1) ||
    die "--delete-object cert: $out"
out=$(P "${TOK[@]}" --login --pin "$PIN" -O 2>&1)
grep -q "Certificate Object" <<<"$out" && die "certificate still listed after delete: $out"
grep -q "extcert" <<<"$out" && die "certificate label still listed after delete: $out"
grep -Eq "label: +'extdata'" <<<"$out" || die "delete of the cert removed the data object: $out"
must_fail P "${TOK[@]}" --read-object --type cert --id 01 -o "$T/gone.der" >/dev/null 2>&1
ok "--delete-object removed the certificate only"
