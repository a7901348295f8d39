#!/usr/bin/env bash
# NSS (modutil, certutil) with the built module in a temporary NSS database:
# the module is added and lists its token; a certificate written into the
# token is listed as <token>:<nickname> WITHOUT a PIN (the token's CKO_PROFILE
# object says CKP_PUBLIC_CERTIFICATES_TOKEN, so NSS does not log in to find
# certificates); the private key is listed only after a login.
. "$(dirname "$0")/lib.sh"
need certutil modutil pkcs11-tool openssl setsid

P() { host pkcs11-tool --module "$MODULE" "$@"; }
# NSS tools without a terminal: setsid drops the controlling terminal, so a
# PIN prompt (NSS reads /dev/tty) fails at once instead of waiting, and
# stdin is empty for modutil's questions.
N() { host setsid -w "$@" </dev/null; }
SO=87654321
PIN=13572468
LABEL=ext-nss
NICK=extnsscert
DB=sql:$T/nss

# ---- a token with a certificate and its private key (same CKA_ID)
slot=$(P -L | awk '/^Slot [0-9]+ \(0x[0-9a-f]+\)/ { id = $3; gsub(/[():]/, "", id) }
                   /token state: *uninitialized/ { print id; exit }')
[ -n "$slot" ] || die "no free slot: $(P -L)"
P --init-token --slot "$slot" --label "$LABEL" --so-pin "$SO" >/dev/null || die "init-token"
TOK=(--token-label "$LABEL")
P "${TOK[@]}" --init-pin --login --login-type so --so-pin "$SO" --new-pin "$PIN" >/dev/null ||
    die "init-pin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/key.pem" \
    -out "$T/cert.pem" -subj "/CN=nss ext test/O=Ext Org" -days 30 2>/dev/null
openssl x509 -in "$T/cert.pem" -outform DER -out "$T/cert.der"
openssl pkey -in "$T/key.pem" -outform DER -out "$T/key.der"
P "${TOK[@]}" --login --pin "$PIN" --write-object "$T/cert.der" --type cert --id c0ffee \
    --label "$NICK" >/dev/null || die "write cert"
P "${TOK[@]}" --login --pin "$PIN" --write-object "$T/key.der" --type privkey --id c0ffee \
    --label "$NICK" >/dev/null || die "write private key"

# ---- a temporary NSS database with the module added
mkdir -m 700 "$T/nss"
N certutil -N -d "$DB" --empty-password >"$T/n.log" 2>&1 || die "certutil -N: $(cat "$T/n.log")"
N modutil -dbdir "$DB" -add evertoken -libfile "$MODULE" -force >"$T/add.log" 2>&1 ||
    die "modutil -add: $(cat "$T/add.log")"
grep -q 'Module "evertoken" added to database.' "$T/add.log" || die "modutil -add said: $(cat "$T/add.log")"
out=$(N modutil -dbdir "$DB" -list evertoken 2>&1) || die "modutil -list evertoken: $out"
grep -Eq "Library file: $MODULE\$" <<<"$out" || die "modutil -list: library file: $out"
grep -Eq "^Manufacturer: evertoken *\$" <<<"$out" || die "modutil -list: library manufacturer: $out"
# modutil prints the blank-padded PKCS#11 strings as they are.
tok=$(echo "$out" | awk -v l="$LABEL" '/^  Slot: / { blk = "" } { blk = blk $0 "\n" }
                                       $0 ~ "^  Token Name: " l " *$" { found = 1 }
                                       found && /^  User Pin:/ { printf "%s", blk; exit }')
[ -n "$tok" ] || die "modutil -list: token $LABEL missing: $out"
grep -Eq "^  Token Manufacturer: evertoken *\$" <<<"$tok" || die "modutil -list: token manufacturer: $tok"
grep -q "^  Status: Enabled" <<<"$tok" || die "modutil -list: token slot not enabled: $tok"
grep -q "^  User Pin: Initialized" <<<"$tok" || die "modutil -list: user PIN state: $tok"
out=$(N modutil -dbdir "$DB" -list 2>&1) || die "modutil -list: $out"
grep -Eq "^ *[0-9]+\. evertoken\$" <<<"$out" || die "modutil -list does not show evertoken: $out"
grep -Eq "token: $LABEL\$" <<<"$out" || die "modutil -list does not show token $LABEL: $out"
ok "modutil: module added, token $LABEL listed"

# ---- certificates are listed without a PIN
out=$(N certutil -L -d "$DB" -h all 2>&1) || die "certutil -L -h all (no PIN): $out"
# Without the profile NSS tries to log in first: the prompt fails (no
# terminal) and is printed, even though the public certificate is then found.
grep -q "Error opening input terminal" <<<"$out" && die "certutil -L asked for a PIN: $out"
grep -Eq "^$LABEL:$NICK +[a-zA-Z,]* *\$" <<<"$out" ||
    die "certutil -L does not list $LABEL:$NICK without a PIN: $out"
out=$(N certutil -L -d "$DB" -n "$LABEL:$NICK" -a 2>&1) || die "certutil -L -n -a: $out"
echo "$out" | openssl x509 -outform DER -out "$T/nss.der" 2>/dev/null ||
    die "certutil -L -n -a printed no certificate: $out"
cmp -s "$T/cert.der" "$T/nss.der" || die "NSS returned a different certificate"
ok "certutil -L lists $LABEL:$NICK without a PIN, same certificate"

# ---- the private key: not without a PIN, listed after login
out=$(N certutil -K -d "$DB" -h "$LABEL" 2>&1) && grep -q "$NICK" <<<"$out" &&
    die "private key listed without a PIN: $out"
printf '%s\n' "$PIN" >"$T/pwfile"
out=$(N certutil -K -d "$DB" -h "$LABEL" -f "$T/pwfile" 2>&1) || die "certutil -K with PIN: $out"
# NSS prints the key's CKA_ID in hex and its nickname (its CKA_LABEL).
grep -Eq "^< *0> ec +c0ffee +($LABEL:)?$NICK *\$" <<<"$out" ||
    die "certutil -K does not list the EC key c0ffee ($NICK): $out"
# NSS retries a failing password file once more: two counted failures.
printf '0000\n' >"$T/badpw"
out=$(N certutil -K -d "$DB" -h "$LABEL" -f "$T/badpw" 2>&1) && die "certutil -K with a wrong PIN succeeded: $out"
grep -q "SEC_ERROR_BAD_PASSWORD" <<<"$out" || die "wrong PIN not SEC_ERROR_BAD_PASSWORD: $out"
grep -q "$NICK" <<<"$out" && die "wrong PIN listed the key: $out"
ok "certutil -K lists the private key only with the PIN"
