#!/usr/bin/env bash
# Help and versions of both tools: `--help` on every command (the command
# list is read from the tools' own help), `help CMD`, `--version` equal to
# the project version of CMakeLists.txt (also the module's C_GetInfo library
# version), `evertoken info` listing the interfaces the module offers, and
# evertoken-enroll's errors for a missing or an empty profile directory.
. "$EVERTOKEN_SOURCE_DIR/tests/external/lib.sh"
: "${EVERTOKEN_BINARY_DIR:?run through ctest}"
ENROLL=$EVERTOKEN_BINARY_DIR/enroll/evertoken-enroll
version=$(sed -nE 's/^project\(evertoken VERSION ([0-9.]+).*/\1/p' "$EVERTOKEN_SOURCE_DIR/CMakeLists.txt")
[ -n "$version" ] || die "no project version in CMakeLists.txt"

# ---- --version
[ "$("$CLI" --version)" = "evertoken $version" ] || die "evertoken --version: $("$CLI" --version)"
[ "$("$ENROLL" --version)" = "evertoken-enroll $version" ] || die "evertoken-enroll --version: $("$ENROLL" --version)"
ok "--version of both tools: $version"

# ---- every command's --help, and help CMD (the same text)
check_help() { # TOOL-NAME OUTPUT-FILE COMMAND
    [ -s "$2" ] || die "$1 $3 --help printed nothing"
    head -1 "$2" | grep -Eq "^usage: $1 .*$3" || die "$1 $3 --help does not start with its usage: $(head -3 "$2")"
}
for tool in "$CLI" "$ENROLL"; do
    name=$(basename "$tool")
    "$tool" --help >"$T/all" || die "$name --help failed"
    mapfile -t cmds < <(awk '/^Commands:/ { on = 1; next } on && /^$/ { exit } on && /^  [a-z]/ { print $1 }' "$T/all")
    [ "${#cmds[@]}" -ge 8 ] || die "$name --help lists too few commands: ${cmds[*]}"
    "$tool" help >"$T/help0" || die "$name help failed"
    cmp -s "$T/all" "$T/help0" || die "$name help differs from $name --help"
    for c in "${cmds[@]}"; do
        if [ "$c" = help ]; then # help about help: the command list or its own usage
            "$tool" help --help | grep -q "help" || die "$name help --help"
            continue
        fi
        "$tool" "$c" --help >"$T/h1" 2>"$T/e1" || die "$name $c --help failed: $(cat "$T/e1")"
        check_help "$name" "$T/h1" "$c"
        "$tool" help "$c" >"$T/h2" || die "$name help $c failed"
        cmp -s "$T/h1" "$T/h2" || die "$name help $c differs from $name $c --help"
        "$tool" "$c" -h >"$T/h3" || die "$name $c -h failed"
        cmp -s "$T/h1" "$T/h3" || die "$name $c -h differs from --help"
    done
    rc=0; "$tool" no-such-command >/dev/null 2>"$T/e" || rc=$?
    [ "$rc" = 2 ] || die "$name no-such-command: exit $rc, not 2"
    grep -q "unknown command 'no-such-command'" "$T/e" || die "$name no-such-command: $(cat "$T/e")"
    rc=0; "$tool" help no-such-command >/dev/null 2>&1 || rc=$?
    [ "$rc" = 2 ] || die "$name help no-such-command: exit $rc, not 2"
    ok "$name: --help, -h and help CMD for ${#cmds[@]} commands"
done
# `hooks rerun --help` (a command with a sub-command) also gives the help
"$ENROLL" hooks rerun --help | grep -q "^usage: evertoken-enroll .*hooks rerun" || die "hooks rerun --help"

# ---- info: the interfaces the module really offers, the library version
"$CLI" --module "$MODULE" info >"$T/info" || die "evertoken info: $(cat "$T/info")"
grep -Eq "^  interfaces: .*PKCS 11 3\.0" "$T/info" || die "info does not list PKCS 11 3.0: $(cat "$T/info")"
grep -Eq "^  interfaces: .*PKCS 11 2\.40" "$T/info" || die "info does not list PKCS 11 2.40: $(cat "$T/info")"
grep -Eq "^  interfaces: .*Vendor evertoken" "$T/info" || die "info does not list the vendor interface"
mm=$(echo "$version" | cut -d. -f1,2)
grep -Eq "^  library: .* $mm\$" "$T/info" || die "C_GetInfo library version is not $mm: $(grep library "$T/info")"
ok "info: interfaces PKCS 11 3.0 and 2.40, library version $mm"

# ---- evertoken-enroll: a missing or empty profile directory is an error
mkdir -p "$T/empty"
for d in "$T/missing" "$T/empty"; do
    for c in status check validate run; do
        rc=0; "$ENROLL" --profiles "$d" --state-dir "$T/state" "$c" >"$T/o" 2>"$T/e" || rc=$?
        [ "$rc" = 3 ] || die "$c with profile directory $d: exit $rc, not 3 ($(cat "$T/e"))"
        grep -qF "$d" "$T/e" || die "$c: the error does not name $d: $(cat "$T/e")"
        grep -q -- "--profiles DIR" "$T/e" || die "$c: the error does not say what to do: $(cat "$T/e")"
        [ -s "$T/o" ] && die "$c with profile directory $d printed: $(cat "$T/o")"
    done
done
# history needs no profiles
"$ENROLL" --profiles "$T/missing" --state-dir "$T/state" history >/dev/null ||
    die "history with a missing profile directory failed"
ok "evertoken-enroll: a missing or empty profile directory is exit 3 with the path and what to do"
