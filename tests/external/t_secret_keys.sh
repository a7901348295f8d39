#!/usr/bin/env bash
# Secret keys through real tools: OpenSC pkcs11-tool generates AES-128,
# AES-256 and generic (HMAC) keys, encrypts and decrypts with AES-CBC-PAD and
# AES-GCM-less modes, signs and verifies with HMAC; OpenSSL decrypts what the
# token encrypted and computes the same HMAC under an imported key of known
# value (written by GnuTLS p11tool; this gnutls-bin has no --generate-aes);
# NSS symkeyutil generates an AES key in a fresh NSS
# database and lists it.
. "$(dirname "$0")/lib.sh"
need pkcs11-tool openssl p11tool symkeyutil certutil modutil setsid xxd

P() { host pkcs11-tool --module "$MODULE" "$@"; }
N() { host setsid -w "$@" </dev/null; }
SO=87654321
PIN=24681357
LABEL=ext-secret

slot=$(P -L | awk '/^Slot [0-9]+ \(0x[0-9a-f]+\)/ { id = $3; gsub(/[():]/, "", id) }
                   /token state: *uninitialized/ { print id; exit }')
[ -n "$slot" ] || die "no free slot: $(P -L)"
P --init-token --slot "$slot" --label "$LABEL" --so-pin "$SO" >/dev/null || die "init-token"
TOK=(--token-label "$LABEL")
P "${TOK[@]}" --init-pin --login --login-type so --so-pin "$SO" --new-pin "$PIN" >/dev/null ||
    die "init-pin"
U() { P "${TOK[@]}" --login --pin "$PIN" "$@"; }

# ---- pkcs11-tool --keygen AES:16 and AES:32 (token keys must be --private:
# evertoken stores key material sealed only, docs/objects.md)
for len in 16 32; do
    out=$(U --keygen --key-type "AES:$len" --label "aes$len" --id "a0$len" --private \
        --sensitive 2>&1) || die "--keygen AES:$len: $out"
    grep -q "Secret Key Object; AES length $len" <<<"$out" || die "--keygen AES:$len said: $out"
done
out=$(U -O --type secrkey 2>&1) || die "list secret keys: $out"
grep -q "label: *aes16" <<<"$out" && grep -q "label: *aes32" <<<"$out" || die "keys not listed: $out"
ok "pkcs11-tool --keygen AES:16 and AES:32 made token keys"

# ---- encrypt / decrypt with the generated keys (CBC-PAD, ECB, CTR-less CBC)
head -c 1000 /dev/urandom >"$T/data"
IV=000102030405060708090a0b0c0d0e0f
for id in a016 a032; do
    U --encrypt --id "$id" -m AES-CBC-PAD --iv "$IV" -i "$T/data" -o "$T/ct.$id" >/dev/null 2>&1 ||
        die "encrypt with $id"
    [ "$(stat -c %s "$T/ct.$id")" = 1008 ] || die "CBC-PAD ciphertext of 1000 bytes is not 1008"
    U --decrypt --id "$id" -m AES-CBC-PAD --iv "$IV" -i "$T/ct.$id" -o "$T/pt.$id" >/dev/null 2>&1 ||
        die "decrypt with $id"
    cmp -s "$T/data" "$T/pt.$id" || die "decrypt($id) != plaintext"
done
cmp -s "$T/ct.a016" "$T/ct.a032" && die "two keys gave the same ciphertext"
ok "pkcs11-tool AES-CBC-PAD encrypt/decrypt round trip with both keys"

# ---- OpenSSL decrypts what the token encrypted (imported key of known value)
KEY=$(openssl rand -hex 32)
echo "$KEY" | xxd -r -p >"$T/key.bin"
U --write-object "$T/key.bin" --type secrkey --key-type AES:32 --label known --id b0 --private \
    --usage-decrypt >/dev/null 2>&1 || die "write AES key"
U --encrypt --id b0 -m AES-CBC-PAD --iv "$IV" -i "$T/data" -o "$T/ct.known" >/dev/null 2>&1 ||
    die "encrypt with the imported key"
openssl enc -d -aes-256-cbc -K "$KEY" -iv "$IV" -in "$T/ct.known" -out "$T/pt.openssl" ||
    die "openssl enc -d failed on the token's ciphertext"
cmp -s "$T/data" "$T/pt.openssl" || die "openssl's plaintext differs"
head -c 64 "$T/data" >"$T/blocks"
U --encrypt --id b0 -m AES-ECB -i "$T/blocks" -o "$T/ecb.token" >/dev/null 2>&1 || die "AES-ECB"
openssl enc -aes-256-ecb -nopad -K "$KEY" -in "$T/blocks" -out "$T/ecb.openssl"
cmp -s "$T/ecb.token" "$T/ecb.openssl" || die "AES-ECB differs from openssl"
ok "openssl enc decrypts the token's AES-256-CBC-PAD; AES-ECB equals openssl's"

# ---- HMAC: a generated key signs and verifies; an imported one equals openssl
out=$(U --keygen --key-type GENERIC:32 --label hmac --id c0 --private --usage-sign 2>&1) ||
    die "--keygen GENERIC:32: $out"
U --sign --id c0 -m SHA256-HMAC -i "$T/data" -o "$T/mac" >/dev/null 2>&1 || die "HMAC sign"
[ "$(stat -c %s "$T/mac")" = 32 ] || die "HMAC-SHA256 is not 32 bytes"
out=$(U --verify --id c0 -m SHA256-HMAC -i "$T/data" --signature-file "$T/mac" 2>&1) ||
    die "HMAC verify: $out"
grep -q "Signature is valid" <<<"$out" || die "verify said: $out"
# Byte 5 changed to another value (its bits inverted: never the same byte).
b5=$(od -An -tu1 -j5 -N1 "$T/mac" | tr -d ' ')
printf "\\$(printf '%03o' $((255 - b5)))" | dd of="$T/mac" bs=1 seek=5 conv=notrunc 2>/dev/null
[ "$(od -An -tu1 -j5 -N1 "$T/mac" | tr -d ' ')" != "$b5" ] || die "the test could not change the HMAC"
out=$(U --verify --id c0 -m SHA256-HMAC -i "$T/data" --signature-file "$T/mac" 2>&1) &&
    grep -q "Signature is valid" <<<"$out" && die "a changed HMAC verified: $out"
# pkcs11-tool --write-object takes no generic secrets: GnuTLS p11tool writes
# the HMAC key of known value (it picks the CKA_ID itself).
HK=$(openssl rand -hex 40)
out=$(GNUTLS_PIN=$PIN host p11tool --provider "$MODULE" --login --write --label hk \
    --secret-key "$HK" "pkcs11:token=$LABEL" 2>&1) || die "p11tool --write --secret-key: $out"
hid=$(U -O --type secrkey 2>&1 | awk '/label: *hk$/ { f = 1 } f && /ID:/ { print $2; exit }')
[ -n "$hid" ] || die "the key p11tool wrote is not listed: $(U -O --type secrkey 2>&1)"
for md in SHA256 SHA512 SHA-1; do
    U --sign --id "$hid" -m "$md-HMAC" -i "$T/data" -o "$T/mac.$md" >/dev/null 2>&1 || die "$md-HMAC"
    want=$(openssl dgst "-$(tr -d - <<<"$md" | tr A-Z a-z)" -mac HMAC -macopt "hexkey:$HK" \
        -binary "$T/data" | xxd -p | tr -d '\n')
    [ "$(xxd -p "$T/mac.$md" | tr -d '\n')" = "$want" ] || die "$md-HMAC differs from openssl"
done
ok "HMAC sign/verify; a changed MAC fails; SHA-1/256/512 HMAC equal openssl's"

# ---- GnuTLS p11tool lists the secret keys (this gnutls-bin has no
# --generate-aes; it wrote the HMAC key above)
out=$(GNUTLS_PIN=$PIN host p11tool --provider "$MODULE" --login --list-all "pkcs11:token=$LABEL" 2>&1) ||
    die "p11tool --list-all: $out"
grep -q "object=hk" <<<"$out" && grep -q "object=aes32" <<<"$out" || die "p11tool --list-all: $out"
ok "p11tool wrote an HMAC key and lists the secret keys"

# ---- NSS: symkeyutil generates an AES key in the token from a fresh database
DB=sql:$T/nss
mkdir -m 700 "$T/nss"
N certutil -N -d "$DB" --empty-password >/dev/null 2>&1 || die "certutil -N"
N modutil -dbdir "$DB" -add evertoken -libfile "$MODULE" -force >/dev/null 2>&1 || die "modutil -add"
echo "$PIN" >"$T/pw"
out=$(N symkeyutil -K -n nss-aes -t aes -s 32 -d "$DB" -h "$LABEL" -f "$T/pw" 2>&1) ||
    die "symkeyutil -K: $out"
out=$(N symkeyutil -L -d "$DB" -h "$LABEL" -f "$T/pw" 2>&1) || die "symkeyutil -L: $out"
grep -q "nss-aes" <<<"$out" || die "symkeyutil -L does not list the key: $out"
out=$(U -O --type secrkey 2>&1)
grep -q "label: *nss-aes" <<<"$out" || die "pkcs11-tool does not see NSS's key: $out"
ok "NSS symkeyutil generated an AES-256 key in the token"

# ---- the CLI lists secret keys: type, length, check value, never the value
if [ -n "$CLI" ]; then
    out=$(PIN=$PIN host "$CLI" list --token "$LABEL" --login --pin env:PIN 2>&1) ||
        die "evertoken list: $out"
    grep -Eq "secretkey +AES-128 +a016 +aes16" <<<"$out" || die "list: AES-128 key: $out"
    grep -Eq "secretkey +AES-256 +b0 +known" <<<"$out" || die "list: imported AES-256 key: $out"
    grep -Eq "secretkey +generic-320 .* hk" <<<"$out" || die "list: HMAC key: $out"
    # The check value of the key of known value: E(K, 0^128)'s first 3 bytes.
    kcv=$(head -c 16 /dev/zero | openssl enc -aes-256-ecb -nopad -K "$KEY" | head -c 3 | xxd -p)
    grep -A1 -E "secretkey +AES-256 +b0" <<<"$out" | grep -q "check value: $kcv" ||
        die "list: no check value $kcv for the known key: $out"
    grep -qi "$KEY" <<<"$out" && die "list printed a key value: $out"
    grep -qi "$HK" <<<"$out" && die "list printed a key value: $out"
    ok "evertoken list shows secret keys with type, length and check value, never the value"
fi
