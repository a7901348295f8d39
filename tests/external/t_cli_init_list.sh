#!/usr/bin/env bash
# evertoken CLI: help, init, list, info, PIN sources and their errors.
. "$(dirname "$0")/lib.sh"
[ -n "$CLI" ] || die "EVERTOKEN_CLI unset"
export SO_PIN=so-secret-1234 USER_PIN=123456

# help: overall and per command, exit 0; an unknown command is a usage error.
"$CLI" help | grep -q "import" || die "help does not list commands"
"$CLI" import --help | grep -q "PKCS#12" || die "import --help"
"$CLI" help pin | grep -q "pin unlock" || die "help pin"
set +e; "$CLI" frobnicate 2>"$T/err"; rc=$?; set -e
[ $rc = 2 ] || die "unknown command: exit $rc, expected 2"
grep -q "unknown command 'frobnicate'" "$T/err" || die "unknown command message: $(cat "$T/err")"
set +e; "$CLI" list --label x 2>"$T/err"; rc=$?; set -e
[ $rc = 2 ] && grep -q "does not apply" "$T/err" || die "misplaced option: exit $rc $(cat "$T/err")"
ok "help and usage errors"

# Fresh directory: one free slot, no token.
"$CLI" list >"$T/out"
grep -q "free" "$T/out" || die "no free slot listed: $(cat "$T/out")"

# init needs a label.
set +e; "$CLI" init --so-pin env:SO_PIN --pin env:USER_PIN 2>"$T/err"; rc=$?; set -e
[ $rc = 2 ] && grep -q -- "--label" "$T/err" || die "init without label: exit $rc"

"$CLI" init --label first --so-pin env:SO_PIN --pin env:USER_PIN >"$T/out"
grep -q "created token 'first'" "$T/out" || die "init output: $(cat "$T/out")"
ls "$EVERTOKEN_DIR"/token-*.db >/dev/null || die "no token file in $EVERTOKEN_DIR"
[ "$(stat -c %a "$EVERTOKEN_DIR")" = 700 ] || die "token dir not 0700"
for f in "$EVERTOKEN_DIR"/token-*.db; do [ "$(stat -c %a "$f")" = 600 ] || die "$f not 0600"; done
ok "init"

# A second token from a PIN file (file:PATH, first line, newline dropped).
printf '%s\n' "$SO_PIN" >"$T/so.txt"
printf 'second-pin\n' >"$T/pin.txt"
chmod 600 "$T/so.txt" "$T/pin.txt"
"$CLI" init --label second --so-pin "file:$T/so.txt" --pin "file:$T/pin.txt" >/dev/null

"$CLI" list >"$T/out"
grep -q "token 'first'" "$T/out" || die "list misses first: $(cat "$T/out")"
grep -q "token 'second'" "$T/out" || die "list misses second"
grep -q "user-pin-initialized" "$T/out" || die "list flags: $(cat "$T/out")"
[ "$(grep -c "free" "$T/out")" = 1 ] || die "expected exactly one free slot: $(cat "$T/out")"
# The second token's PIN came from the file, without its newline.
"$CLI" list --token second --login --pin env:NOPE_UNSET 2>"$T/err" && die "unset env var accepted"
grep -q "NOPE_UNSET" "$T/err" || die "unset env message: $(cat "$T/err")"
"$CLI" list --token second --login --pin "file:$T/pin.txt" >/dev/null || die "PIN from file rejected"
ok "list tokens, file: and env: sources"

# A label that exists is refused, nothing created.
n_before=$(ls "$EVERTOKEN_DIR" | wc -l)
set +e; "$CLI" init --label first --so-pin env:SO_PIN --pin env:USER_PIN 2>"$T/err"; rc=$?; set -e
[ $rc = 7 ] || die "duplicate label: exit $rc, expected 7"
grep -q "already exists" "$T/err" || die "duplicate label message: $(cat "$T/err")"
[ "$(ls "$EVERTOKEN_DIR" | wc -l)" = "$n_before" ] || die "duplicate init created a file"
ok "duplicate label refused"

# Wrong PIN: clear message, exit code 4, and the token reports it.
set +e; "$CLI" list --token first --login --pin env:SO_PIN 2>"$T/err"; rc=$?; set -e
[ $rc = 4 ] || die "wrong PIN: exit $rc, expected 4"
grep -q "wrong PIN" "$T/err" || die "wrong PIN message: $(cat "$T/err")"
"$CLI" list --token first --login --pin env:USER_PIN >"$T/out" || die "right PIN refused"
grep -q "0 objects" "$T/out" || die "new token not empty: $(cat "$T/out")"
ok "wrong PIN message and exit code"

# pass: works but warns that argv is visible.
"$CLI" list --token first --login --pin "pass:$USER_PIN" >/dev/null 2>"$T/err"
grep -q "warning:.*command line" "$T/err" || die "no pass: warning: $(cat "$T/err")"
ok "pass: warns"

# No source and no terminal: a clear error at once, not a hang.
set +e
timeout 20 setsid "$CLI" list --token first --login </dev/null >/dev/null 2>"$T/err"; rc=$?
set -e
[ $rc = 8 ] || die "no tty: exit $rc, expected 8"
grep -q "no terminal" "$T/err" || die "no tty message: $(cat "$T/err")"
ok "no PIN source and no tty -> error"

# Unknown token, unknown source syntax.
set +e; "$CLI" list --token nosuch 2>"$T/err"; rc=$?; set -e
[ $rc = 3 ] && grep -q "no token labelled 'nosuch'" "$T/err" || die "unknown token: exit $rc"
set +e; "$CLI" list --token first --login --pin "$USER_PIN" 2>"$T/err"; rc=$?; set -e
[ $rc = 2 ] && grep -q "unknown source" "$T/err" || die "bare PIN accepted as source: $rc"
ok "unknown token / source errors"

# info: module, token and keystore details.
"$CLI" info --token first >"$T/out"
for want in "PKCS#11 version" "token 'first'" "keystore file:" "schema version:" \
    "Argon2id" "failed attempt"; do
    grep -q "$want" "$T/out" || die "info lacks '$want': $(cat "$T/out")"
done
"$CLI" info >"$T/out"
grep -q "token 'second'" "$T/out" || die "info without token misses tokens"
ok "info"
