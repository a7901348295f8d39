#!/usr/bin/env bash
# GnuTLS p11tool sees the built module's token as any other PKCS#11 token:
# token list (label, manufacturer "evertoken", serial), public certificate
# without login, private objects only with the PIN, certificate export that
# equals what was written. Only --provider is used, never p11-kit's system
# configuration.
. "$(dirname "$0")/lib.sh"
need p11tool pkcs11-tool openssl

P() { host pkcs11-tool --module "$MODULE" "$@"; }
G() { host p11tool --provider "$MODULE" "$@"; }
# The paragraph p11tool printed for the object labelled $1 (objects are
# separated by blank lines).
obj() { awk -v RS= -v l="$1" '$0 ~ "\n\tLabel: " l "\n" { print; exit }'; }
SO=87654321
PIN=24681357
LABEL=ext-gnutls

# ---- a token with a certificate, its private key and a private data object
slot=$(P -L | awk '/^Slot [0-9]+ \(0x[0-9a-f]+\)/ { id = $3; gsub(/[():]/, "", id) }
                   /token state: *uninitialized/ { print id; exit }')
[ -n "$slot" ] || die "no free slot: $(P -L)"
P --init-token --slot "$slot" --label "$LABEL" --so-pin "$SO" >/dev/null || die "init-token"
TOK=(--token-label "$LABEL")
P "${TOK[@]}" --init-pin --login --login-type so --so-pin "$SO" --new-pin "$PIN" >/dev/null ||
    die "init-pin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/key.pem" \
    -out "$T/cert.pem" -subj "/CN=p11tool ext test" -days 30 2>/dev/null
openssl x509 -in "$T/cert.pem" -outform DER -out "$T/cert.der"
openssl pkey -in "$T/key.pem" -outform DER -out "$T/key.der"
printf 'private payload\n' >"$T/secret.bin"
P "${TOK[@]}" --login --pin "$PIN" --write-object "$T/cert.der" --type cert --id a1b2 \
    --label extcert >/dev/null || die "write cert"
P "${TOK[@]}" --login --pin "$PIN" --write-object "$T/secret.bin" --type data \
    --label extsecret --private >/dev/null || die "write private data object"
P "${TOK[@]}" --login --pin "$PIN" --write-object "$T/key.der" --type privkey --id a1b2 \
    --label extkey >/dev/null || die "write private key"
serial=$(P -L | grep -A10 "token label *: $LABEL\$" | awk -F': ' '/serial num/ { print $2; exit }')
[ -n "$serial" ] || die "pkcs11-tool shows no serial: $(P -L)"

# ---- --list-tokens: label, manufacturer, serial (the same one pkcs11-tool shows)
out=$(G --list-tokens) || die "p11tool --list-tokens: $out"
tok=$(echo "$out" | awk -v l="$LABEL" '/^Token [0-9]+:/ { blk = "" } { blk = blk $0 "\n" }
                                        $0 ~ "^\tLabel: " l "$" { found = 1 }
                                        found && /^\tModule:/ { printf "%s", blk; exit }')
[ -n "$tok" ] || die "token '$LABEL' not in --list-tokens: $out"
grep -q "Manufacturer: evertoken\$" <<<"$tok" || die "manufacturer is not evertoken: $tok"
grep -q "Serial: $serial\$" <<<"$tok" || die "serial $serial not shown: $tok"
grep -Eq '^[0-9A-Fa-f]{16}$' <<<"$serial" || die "serial '$serial' is not 16 hex digits"
grep -q "URL: pkcs11:.*manufacturer=evertoken.*serial=$serial.*token=$LABEL" <<<"$tok" ||
    die "token URL lacks manufacturer/serial/label: $tok"
url=$(echo "$tok" | sed -n 's/^\tURL: //p')
ok "--list-tokens: $LABEL, manufacturer evertoken, serial $serial"

# ---- --list-all without login: the certificate, nothing private
unset GNUTLS_PIN
out=$(G --list-all "$url" </dev/null 2>&1) || die "--list-all: $out"
cert=$(echo "$out" | obj extcert)
grep -q "Type: X.509 Certificate" <<<"$cert" || die "certificate not listed without login: $out"
grep -q "ID: a1:b2" <<<"$cert" || die "certificate ID missing: $out"
grep -Eq "extsecret|extkey" <<<"$out" && die "private object listed without login: $out"
ok "--list-all without login shows the certificate only"

# ---- --list-all --login with the PIN from GNUTLS_PIN: private objects too
export GNUTLS_PIN=$PIN
out=$(G --login --list-all "$url" </dev/null 2>&1) || die "--login --list-all: $out"
grep -q "Label: extcert" <<<"$out" || die "certificate not listed after login: $out"
echo "$out" | obj extsecret | grep -q "Type: Data" || die "private data object not listed after login: $out"
echo "$out" | obj extkey | grep -q "Type: Private key (EC" ||
    die "private key not listed after login: $out"
ok "--login --list-all (GNUTLS_PIN) shows the private data object and key"

# ---- the same with --set-pin, and a wrong PIN is refused
unset GNUTLS_PIN
out=$(G --login --set-pin "$PIN" --list-all-privkeys "$url" </dev/null 2>&1) ||
    die "--set-pin --list-all-privkeys: $out"
grep -q "Label: extkey" <<<"$out" || die "private key not listed with --set-pin: $out"
out=$(G --login --set-pin 11112222 --list-all "$url" </dev/null 2>&1) &&
    grep -q "extsecret" <<<"$out" && die "wrong PIN showed private objects: $out"
ok "--set-pin works; a wrong PIN shows no private object"

# ---- --list-all-certs and --list-certs (certificate with a matching private key)
out=$(G --list-all-certs "$url" </dev/null 2>&1) || die "--list-all-certs: $out"
grep -q "Label: extcert" <<<"$out" || die "--list-all-certs misses the certificate: $out"
[ "$(echo "$out" | grep -c "^Object ")" = 1 ] || die "--list-all-certs lists other objects: $out"
ok "--list-all-certs"

# ---- --export returns the certificate that was written
G --export "$url;object=extcert;type=cert" </dev/null >"$T/export.pem" 2>"$T/export.err" ||
    die "--export: $(cat "$T/export.err")"
openssl x509 -in "$T/export.pem" -outform DER -out "$T/export.der" ||
    die "--export output is no PEM certificate: $(cat "$T/export.pem")"
cmp -s "$T/cert.der" "$T/export.der" || die "exported certificate differs from the written one"
ok "--export returns the same certificate"
