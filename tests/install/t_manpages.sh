#!/usr/bin/env bash
# The man pages built from docs/man/*.scd render without a warning, and cover
# what the programs really have: every command and option of `evertoken` and
# `evertoken-enroll` (taken from their --help), every profile key the parser
# knows (enroll/profile_keys.c; a protocol's own section: enroll/proto/*_conf.c)
# and every EVERTOKEN_* variable the code reads.
. "$EVERTOKEN_SOURCE_DIR/tests/external/lib.sh"
need man scdoc
: "${EVERTOKEN_BINARY_DIR:?run through ctest}"
SRC=$EVERTOKEN_SOURCE_DIR
MAN=$EVERTOKEN_BINARY_DIR/docs/man
ENROLL=$EVERTOKEN_BINARY_DIR/enroll/evertoken-enroll
pages=(evertoken.1 evertoken-enroll.1 evertoken-enroll.conf.5 evertoken.7)

# ---- every page is built from its source and renders without warnings
for p in "${pages[@]}"; do
    [ -s "$MAN/$p" ] || die "man page $p was not built (expected $MAN/$p)"
    [ -f "$SRC/docs/man/$p.scd" ] || die "no source docs/man/$p.scd"
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$MAN/$p" >"$T/$p.txt" 2>"$T/$p.err" ||
        die "man -l $p failed: $(cat "$T/$p.err")"
    [ -s "$T/$p.err" ] && die "man -l $p warns: $(cat "$T/$p.err")"
    grep -q "^NAME" "$T/$p.txt" || die "$p has no NAME section"
done
ok "${#pages[@]} man pages render without warnings"

# The text of each page with the roff escapes removed; has PAGE WORD.
for p in "${pages[@]}"; do
    sed -e 's/\\f[BIRP]//g' -e 's/\\&//g' -e 's/\\-/-/g' "$MAN/$p" >"$T/$p.words"
done
has() { grep -qF -- "$2" "$T/$1.words"; }

# ---- evertoken: commands from `evertoken --help`, options from each command's help
mapfile -t cmds < <("$CLI" --help | awk '/^Commands:/ { on = 1; next } on && /^$/ { exit } on { print $1 }')
[ "${#cmds[@]}" -ge 10 ] || die "could not read the commands from evertoken --help: ${cmds[*]}"
for c in "${cmds[@]}"; do
    has evertoken.1 "$c" || die "evertoken.1 does not mention the command $c"
    grep -Eq "^\*$c[* ]" "$SRC/docs/man/evertoken.1.scd" ||
        die "evertoken.1 has no entry for the command $c"
    "$CLI" "$c" --help >"$T/help.$c" || die "evertoken $c --help failed"
    for o in $(grep -oE -- '--[a-z][a-z-]+' "$T/help.$c" | sort -u); do
        has evertoken.1 "$o" || die "evertoken.1 does not mention option $o (of $c)"
    done
done
# every long option of the option table
for o in $(grep -oE '^ *\{"[a-z][a-z-]+", (required|no)_argument' "$SRC/tools/evertoken.c" |
    sed -E 's/^ *\{"([a-z-]+)".*/\1/'); do
    has evertoken.1 "--$o" || die "evertoken.1 does not mention option --$o"
done
ok "evertoken.1: ${#cmds[@]} commands and their options"

# ---- evertoken-enroll: commands and options from its help
mapfile -t ecmds < <("$ENROLL" --help | awk '/^Commands:/ { on = 1; next } on && /^$/ { exit } on && /^  [a-z]/ { print $1 }')
[ "${#ecmds[@]}" -ge 8 ] || die "could not read the commands from evertoken-enroll --help: ${ecmds[*]}"
for c in "${ecmds[@]}"; do
    grep -Eq "^\*$c[* ]" "$SRC/docs/man/evertoken-enroll.1.scd" ||
        die "evertoken-enroll.1 has no entry for the command $c"
    "$ENROLL" "$c" --help >"$T/ehelp.$c" || die "evertoken-enroll $c --help failed"
    for o in $(grep -oE -- '--[a-z][a-z-]+' "$T/ehelp.$c" | sort -u); do
        has evertoken-enroll.1 "$o" || die "evertoken-enroll.1 does not mention option $o (of $c)"
    done
done
for o in $("$ENROLL" --help | awk '/^Options:/ { on = 1 } on' | grep -oE -- '--[a-z][a-z-]+' | sort -u); do
    has evertoken-enroll.1 "$o" || die "evertoken-enroll.1 does not mention option $o"
done
ok "evertoken-enroll.1: ${#ecmds[@]} commands and their options"

# ---- evertoken-enroll.conf.5: every section and key the profile parser knows
# The parser's table (enroll/profile_keys.c): one row {"section", "key", parser, ...} per key.
ktab=$(sed -n '/^static const key_rule keys\[\] = {/,/^};/p' "$SRC/enroll/profile_keys.c")
mapfile -t keys < <(grep -oE '^ *\{"[a-z]+", "[a-z_]+", p_[a-z_]+,' <<<"$ktab" | sort -u |
    sed -E 's/^ *\{"([a-z]+)", "([a-z_]+)".*/\1 \2/')
[ "${#keys[@]}" -ge 30 ] || die "could not read the profile keys from enroll/profile_keys.c"
rows=$(grep -c '^ *{' <<<"$ktab")
[ "$rows" -eq "${#keys[@]}" ] ||
    die "enroll/profile_keys.c: $rows rows in the key table but ${#keys[@]} keys read from them"
# A protocol's own section ([acme]) is parsed by its *_conf.c: IS("section", "key").
mapfile -t pkeys < <(grep -ohE 'IS\("[a-z]+", "[a-z_]+"\)' "$SRC"/enroll/proto/*_conf.c | sort -u |
    sed -E 's/IS\("([a-z]+)", "([a-z_]+)"\)/\1 \2/')
[ "${#pkeys[@]}" -ge 10 ] || die "could not read the [acme] keys from enroll/proto/acme_conf.c"
keys+=("${pkeys[@]}")
for k in "${keys[@]}"; do
    set -- $k
    grep -q "^# SECTION \[$1\]" "$SRC/docs/man/evertoken-enroll.conf.5.scd" ||
        die "evertoken-enroll.conf.5 has no section [$1]"
    has evertoken-enroll.conf.5 "$2" || die "evertoken-enroll.conf.5 does not mention [$1] $2"
done
ok "evertoken-enroll.conf.5: ${#keys[@]} profile keys"
# ... and every key of the monitor settings (enroll/moncfg.c), under its
# section ([watch NAME] for watch).
mapfile -t mkeys < <(grep -oE 'IS\("[a-z]+", "[a-z_]+"\)' "$SRC/enroll/moncfg.c" | sort -u |
    sed -E 's/IS\("([a-z]+)", "([a-z_]+)"\)/\1 \2/')
[ "${#mkeys[@]}" -ge 10 ] || die "could not read the monitor keys from enroll/moncfg.c"
for k in "${mkeys[@]}"; do
    set -- $k
    grep -q "^# SECTION \[$1[] ]" "$SRC/docs/man/evertoken-enroll.conf.5.scd" ||
        die "evertoken-enroll.conf.5 has no section [$1]"
    grep -q "^\*$2\* \|, \*$2\* =" "$SRC/docs/man/evertoken-enroll.conf.5.scd" ||
        die "evertoken-enroll.conf.5 has no entry for the monitor key [$1] $2"
done
ok "evertoken-enroll.conf.5: ${#mkeys[@]} monitor settings keys"

# ---- environment variables the code reads, in the page of the program that reads them
envs() { grep -rhoE 'getenv\("EVERTOKEN_[A-Z_]+"\)' "$@" | sed -E 's/getenv\("(.*)"\)/\1/' | sort -u; }
n=0
for v in $(envs "$SRC/module" "$SRC/keystore"); do has evertoken.7 "$v" || die "evertoken.7 does not mention $v"; n=$((n + 1)); done
for v in $(envs "$SRC/tools"); do has evertoken.1 "$v" || die "evertoken.1 does not mention $v"; n=$((n + 1)); done
for v in $(envs "$SRC/enroll"); do has evertoken-enroll.1 "$v" || die "evertoken-enroll.1 does not mention $v"; n=$((n + 1)); done
[ "$n" -ge 8 ] || die "found only $n environment variables in the code"
ok "$n environment variables documented where they are read"
