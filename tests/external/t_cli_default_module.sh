#!/usr/bin/env bash
# Without --module or EVERTOKEN_MODULE, the CLI and the helper run from the
# build tree use the module built beside them ($ORIGIN/../module in their
# RUNPATH, CMakeLists.txt); an installed copy never reaches into the build
# tree. The RUNPATH has no empty entry (which the loader would read as the
# current directory).
. "$(dirname "$0")/lib.sh"
[ -n "$CLI" ] || die "EVERTOKEN_CLI unset"
need readelf
built=$(readlink -f "$MODULE")
enroll=$EVERTOKEN_BINARY_DIR/enroll/evertoken-enroll

runpath() { readelf -d "$1" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p'; }
for prog in "$CLI" "$enroll"; do
    [ -x "$prog" ] || continue
    rp=$(runpath "$prog")
    case "$rp" in
    '$ORIGIN/../module:'*) ;;
    *) die "$prog: RUNPATH '$rp' does not start with \$ORIGIN/../module" ;;
    esac
    case ":$rp:" in *::*) die "$prog: RUNPATH '$rp' has an empty entry" ;; esac
done
ok "RUNPATH of the CLI and the helper"

# From the build tree, no setting: --help, list and info work, with this
# build's module (run from another directory: nothing depends on the cwd).
unset EVERTOKEN_MODULE
cd "$T"
"$CLI" --help >"$T/out" || die "--help failed"
grep -q "built beside" "$T/out" || die "--help does not say where the module comes from"
"$CLI" list >"$T/out" || die "list without --module failed: $(cat "$T/out")"
grep -q "free" "$T/out" || die "list: no free slot: $(cat "$T/out")"
"$CLI" info >"$T/out" || die "info without --module failed"
got=$(sed -n 's/^module: //p' "$T/out")
[ -n "$got" ] && [ "$(readlink -f "$got")" = "$built" ] ||
    die "info: not the module built beside it: $(head -1 "$T/out")"
ok "build/tools/evertoken --help, list, info without --module ($built)"

# Installed (DESTDIR): the copy must not use the build tree's module.
DESTDIR=$T/root cmake --install "$EVERTOKEN_BINARY_DIR" >"$T/install.log" 2>&1 ||
    die "cmake --install: $(tail -5 "$T/install.log")"
icli=$(find "$T/root" -path '*/bin/evertoken' -type f | head -1)
[ -n "$icli" ] || die "no installed CLI under $T/root"
[ "$(runpath "$icli")" = "$(runpath "$CLI")" ] || die "installed RUNPATH differs"
set +e
"$icli" info >"$T/out" 2>"$T/err"
set -e
if grep -q "^module: " "$T/out"; then
    case "$(sed -n 's/^module: //p' "$T/out")" in
    "$EVERTOKEN_BINARY_DIR"/*) die "installed CLI loaded the build tree's module" ;;
    esac
else
    grep -q "cannot load the PKCS#11 module libevertoken.so" "$T/err" ||
        die "installed CLI: unexpected error: $(cat "$T/err")"
    grep -q -- "--module PATH or the environment variable EVERTOKEN_MODULE" "$T/err" ||
        die "installed CLI: the error does not say how to name the module: $(cat "$T/err")"
fi
ok "installed CLI does not use the build tree's module"
