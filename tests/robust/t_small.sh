#!/usr/bin/env bash
# The small findings of issue 13 (finding 5), each must fail fast and
# precisely:
#  - `import` of a FIFO and `--pin file:FIFO` never block in open();
#    a PIN from a pipe (`file:<(...)`) still works;
#  - `export-cert -o` refuses an existing file (exit 7) and a symbolic link,
#    with `--force` replaces a regular file only;
#  - an EC key with explicit curve parameters is refused (exit 6).
. "$EVERTOKEN_SOURCE_DIR/tests/external/lib.sh"
[ -n "$CLI" ] || die "EVERTOKEN_CLI unset"
need openssl timeout
export SO_PIN=so-secret-1234 USER_PIN=123456
"$CLI" init --label small --so-pin env:SO_PIN --pin env:USER_PIN >/dev/null

# ---- FIFOs
mkfifo "$T/fifo"
set +e; timeout 20 "$CLI" import --token small --pin env:USER_PIN "$T/fifo" 2>"$T/err"; rc=$?; set -e
[ $rc = 6 ] && grep -q "not a regular file (a FIFO)" "$T/err" || die "import of a FIFO: exit $rc $(cat "$T/err")"
set +e; timeout 20 "$CLI" list --token small --login --pin "file:$T/fifo" >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc = 1 ] && grep -q "FIFO or pipe that nobody writes to" "$T/err" || die "PIN FIFO: exit $rc $(cat "$T/err")"
"$CLI" list --token small --login --pin "file:"<(echo "$USER_PIN") >/dev/null || die "PIN from a pipe refused"
ok "FIFOs never block: import and --pin file: fail at once; a pipe still gives a PIN"

# ---- export-cert
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/k.pem" \
    -out "$T/c.pem" -subj "/CN=small" -days 3 2>/dev/null
"$CLI" import --token small --pin env:USER_PIN --label small "$T/k.pem" "$T/c.pem" >/dev/null
echo keep >"$T/exists.pem"
set +e; "$CLI" export-cert --token small --label small -o "$T/exists.pem" 2>"$T/err"; rc=$?; set -e
[ $rc = 7 ] && grep -q -- "--force" "$T/err" || die "export over a file: exit $rc $(cat "$T/err")"
[ "$(cat "$T/exists.pem")" = keep ] || die "the existing file was changed"
echo target >"$T/target"
ln -s "$T/target" "$T/link.pem"
ln -s "$T/nowhere" "$T/dangling.pem"
for l in link dangling; do
    for f in "" --force; do
        set +e; "$CLI" export-cert --token small --label small -o "$T/$l.pem" $f 2>"$T/err"; rc=$?; set -e
        [ $rc = 7 ] || die "export to a $l symlink $f: exit $rc $(cat "$T/err")"
    done
done
[ "$(cat "$T/target")" = target ] && [ ! -e "$T/nowhere" ] || die "a symlink was followed"
"$CLI" export-cert --token small --label small -o "$T/exists.pem" --force || die "--force"
openssl x509 -in "$T/exists.pem" -noout || die "--force did not write the certificate"
"$CLI" export-cert --token small --label small -o "$T/new.pem" || die "export to a new file"
cmp -s "$T/new.pem" "$T/exists.pem" || die "forced and new exports differ"
ok "export-cert never overwrites or follows a symlink; --force replaces a regular file"

# ---- explicit EC parameters
openssl ecparam -name prime256v1 -param_enc explicit -genkey -noout -out "$T/explicit.pem"
set +e; "$CLI" import --token small --pin env:USER_PIN "$T/explicit.pem" 2>"$T/err"; rc=$?; set -e
[ $rc = 6 ] && grep -q "explicit" "$T/err" || die "explicit EC key: exit $rc $(cat "$T/err")"
ok "an EC key with explicit curve parameters is refused"
