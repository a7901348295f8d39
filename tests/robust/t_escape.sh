#!/usr/bin/env bash
# Output hygiene (issue 13, finding 2): strings from a token or an imported
# file are escaped before they are printed, and object labels are UTF-8.
#  - a label with a newline, a forged listing row and a screen-clearing
#    escape sequence (written by another application, pkcs11-tool) is listed
#    as one line, the control characters visible as \xNN, no raw ESC;
#  - a label that is not UTF-8 is refused by the module (like token labels);
#  - a PKCS#12 friendly name with control characters: `import` and `list`
#    print it escaped; --label must be UTF-8;
#  - the enrollment helper's error log quotes a hostile profile value escaped.
. "$EVERTOKEN_SOURCE_DIR/tests/external/lib.sh"
[ -n "$CLI" ] || die "EVERTOKEN_CLI unset"
need pkcs11-tool openssl sqlite3
export SO_PIN=so-secret-1234 USER_PIN=123456 PW=pw
ESC=$(printf '\033')
NL=$'\n'

"$CLI" init --label esc --so-pin env:SO_PIN --pin env:USER_PIN >/dev/null
p11() { host pkcs11-tool --module "$MODULE" --token-label esc --login --pin "$USER_PIN" "$@"; }

# No raw control character (other than the line ends) and valid UTF-8.
clean() {
    if LC_ALL=C grep -q "[$ESC]" "$1"; then die "$2: raw ESC in output: $(od -c "$1" | head)"; fi
    iconv -f UTF-8 -t UTF-8 "$1" >/dev/null 2>&1 || die "$2: output is not valid UTF-8"
}

echo data >"$T/v"
p11 --write-object "$T/v" --type data --label "evil${NL}9  privkey  RSA-2048  deadbeef  FORGED${ESC}[2J" \
    >/dev/null 2>&1 || die "pkcs11-tool could not write the object"
"$CLI" list --token esc --login --pin env:USER_PIN >"$T/list"
clean "$T/list" "list"
grep -q 'evil\\x0A9  privkey  RSA-2048  deadbeef  FORGED\\x1B\[2J' "$T/list" || die "label not escaped: $(cat "$T/list")"
# header, column titles, one object row: three lines, no forged fourth
[ "$(wc -l <"$T/list")" = 3 ] || die "list has a forged row: $(cat "$T/list")"
ok "a label with a newline and an escape sequence is listed on one line, escaped"

# Not UTF-8: refused, as token labels are.
set +e; p11 --write-object "$T/v" --type data --label "bad$(printf '\377\376')" >"$T/out" 2>&1; rc=$?; set -e
[ $rc != 0 ] || die "a non-UTF-8 label was accepted"
grep -q "ATTRIBUTE_VALUE_INVALID" "$T/out" || die "non-UTF-8 label: $(cat "$T/out")"
n=$("$CLI" list --token esc --login --pin env:USER_PIN | head -1)
case $n in *": 1 object"*) ;; *) die "object count after the refused label: $n" ;; esac
ok "a label that is not UTF-8 is refused (CKR_ATTRIBUTE_VALUE_INVALID)"

# PKCS#12 friendly name with control characters.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/k.pem" \
    -out "$T/c.pem" -subj "/CN=cert${ESC}[31mred" -days 3 2>/dev/null
openssl pkcs12 -export -inkey "$T/k.pem" -in "$T/c.pem" -out "$T/f.p12" -passout pass:pw \
    -name "friendly${ESC}[2J${NL}FORGED ROW"
"$CLI" import --token esc --pin env:USER_PIN --passphrase env:PW "$T/f.p12" >"$T/imp"
clean "$T/imp" "import"
grep -q 'friendly\\x1B\[2J\\x0AFORGED ROW' "$T/imp" || die "import output: $(cat "$T/imp")"
[ "$(wc -l <"$T/imp")" = 2 ] || die "import output has extra lines: $(cat "$T/imp")"
"$CLI" list --token esc --login --pin env:USER_PIN >"$T/list"
clean "$T/list" "list after import"
[ "$(grep -c 'FORGED ROW' "$T/list")" = 3 ] || die "list after import: $(cat "$T/list")"
ok "a hostile PKCS#12 friendly name is printed escaped by import and list"

set +e; "$CLI" import --token esc --pin env:USER_PIN --passphrase env:PW --label "x$(printf '\377')" \
    "$T/f.p12" 2>"$T/err"; rc=$?; set -e
[ $rc = 2 ] && grep -q "UTF-8" "$T/err" || die "--label not UTF-8: exit $rc $(cat "$T/err")"
ok "--label must be UTF-8"

# The CLI's own error messages: a token name with control characters.
set +e; "$CLI" list --token "no${ESC}[2Jsuch${NL}token" 2>"$T/err"; set -e
clean "$T/err" "error message"
[ "$(wc -l <"$T/err")" = 1 ] || die "error message spans lines: $(cat "$T/err")"
ok "error messages are one escaped line"

# The enrollment helper's log.
if [ -n "${ENROLL_BIN:-}" ]; then
    mkdir -p "$T/prof" "$T/st"
    printf '[ca]\nurl = http://127.0.0.1:1/scep\nanchors = %s\n[certificate]\nsubject = CN=evil%s[2J\377x, O=t\n[token]\nuri = pkcs11:token=esc;object=a\nmodule = %s\n' \
        "$T/c.pem" "$ESC" "$MODULE" >"$T/prof/a.conf"
    set +e; host "$ENROLL_BIN" --profiles "$T/prof" --state-dir "$T/st" status --json >"$T/js" 2>"$T/err"; set -e
    clean "$T/err" "evertoken-enroll log"
    grep -q 'evil\\x1B\[2J\\xFFx' "$T/err" || die "enroll log: $(cat "$T/err")"
    python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/js" || die "status --json invalid"
    ok "evertoken-enroll logs a hostile profile value escaped"
    # A hostile last error in the state (a CA's answer is quoted there).
    printf '[ca]\nurl = http://127.0.0.1:1/scep\nanchors = %s\n[certificate]\nsubject = CN=good, O=t\n[token]\nuri = pkcs11:token=esc;object=good\nmodule = %s\n' \
        "$T/c.pem" "$MODULE" >"$T/prof/a.conf"
    host "$ENROLL_BIN" --profiles "$T/prof" --state-dir "$T/st" status >/dev/null 2>&1 || true
    sqlite3 "$T/st/enroll.db" "INSERT OR REPLACE INTO profile_state(profile, last_error, state)
        VALUES ('a', CAST(X'6261640a3920726f7720464f524745441b5b324aff22' AS TEXT), 'new')" ||
        die "cannot plant a state row"
    set +e; host "$ENROLL_BIN" --profiles "$T/prof" --state-dir "$T/st" status --json >"$T/js" 2>/dev/null
    host "$ENROLL_BIN" --profiles "$T/prof" --state-dir "$T/st" status >"$T/tab" 2>/dev/null; set -e
    python3 - "$T/js" <<'PY' || die "status --json: $(cat "$T/js")"
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
e = [p for p in d["profiles"] if p["profile"] == "a"][0]["last_error"]
assert e == 'bad\n9 row FORGED\x1b[2J\\xFF"', repr(e)
PY
    clean "$T/tab" "status table"
    [ "$(wc -l <"$T/tab")" = 2 ] || die "status table has a forged row: $(cat "$T/tab")"
    grep -q 'bad\\x0A9 row FORGED\\x1B\[2J\\xFF"' "$T/tab" || die "status table: $(cat "$T/tab")"
    ok "evertoken-enroll status: a hostile last error is escaped in the table and valid in JSON"
fi
