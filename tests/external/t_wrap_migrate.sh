#!/usr/bin/env bash
# Key migration by wrapping (tests/external/wrap_migrate.c): an EC P-256 and
# an RSA-2048 private key generated in an evertoken token are wrapped with
# CKM_AES_KEY_WRAP_PAD (PKCS#8 inside) and unwrapped into a second evertoken
# token and into a SoftHSMv2 token; each unwrapped key signs, and the
# original public key verifies the signature.
. "$(dirname "$0")/lib.sh"
need pkcs11-tool softhsm2-util
SOFTHSM=${ET_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
[ -f "$SOFTHSM" ] || { echo "SKIP: no SoftHSMv2 module" >&2; exit 77; }
MIGRATE=$EVERTOKEN_BINARY_DIR/tests/external/wrap_migrate
[ -x "$MIGRATE" ] || die "wrap_migrate not built ($MIGRATE)"

P() { host pkcs11-tool --module "$MODULE" "$@"; }
SO=87654321
PIN=11223344
mk_token() {
    local slot
    slot=$(P -L | awk '/^Slot [0-9]+ \(0x[0-9a-f]+\)/ { id = $3; gsub(/[():]/, "", id) }
                       /token state: *uninitialized/ { print id; exit }')
    [ -n "$slot" ] || die "no free slot: $(P -L)"
    P --init-token --slot "$slot" --label "$1" --so-pin "$SO" >/dev/null || die "init-token $1"
    P --token-label "$1" --init-pin --login --login-type so --so-pin "$SO" --new-pin "$PIN" \
        >/dev/null || die "init-pin $1"
}
mk_token ev-src
mk_token ev-dst

# ---- evertoken -> evertoken (two tokens of one module)
out=$(host "$MIGRATE" "$MODULE" ev-src "$PIN" "$MODULE" ev-dst "$PIN" 2>&1) ||
    die "evertoken -> evertoken: $out"
[ "$(grep -c '^ok:' <<<"$out")" = 2 ] || die "evertoken -> evertoken said: $out"
out=$(P --token-label ev-dst --login --pin "$PIN" -O --type privkey 2>&1)
[ "$(grep -c 'label: *migrated' <<<"$out")" = 2 ] || die "migrated keys not stored: $out"
ok "evertoken -> evertoken: EC and RSA keys migrated, signing verifiably"

# ---- evertoken -> SoftHSMv2
mkdir -m 700 "$T/softhsm"
printf 'directories.tokendir = %s\nobjectstore.backend = file\n' "$T/softhsm" >"$T/softhsm2.conf"
export SOFTHSM2_CONF=$T/softhsm2.conf
softhsm2-util --init-token --free --label sh-dst --so-pin "$SO" --pin "$PIN" >/dev/null ||
    die "softhsm2-util --init-token"
out=$(host "$MIGRATE" "$MODULE" ev-src "$PIN" "$SOFTHSM" sh-dst "$PIN" 2>&1) ||
    die "evertoken -> SoftHSMv2: $out"
[ "$(grep -c '^ok:' <<<"$out")" = 2 ] || die "evertoken -> SoftHSMv2 said: $out"
ok "evertoken -> SoftHSMv2: EC and RSA keys migrated, signing verifiably"
