#!/usr/bin/env bash
# scripts/check-layers.sh: passes on this tree, and fails - naming the file,
# line and header - on a copy where an upper layer includes an internal header.
set -euo pipefail
src=${EVERTOKEN_SOURCE_DIR:?}
check=$src/scripts/check-layers.sh
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

"$check" "$src"

mk() { # a minimal copy of the tree's headers and upper layers
    rm -rf "$T/tree"
    mkdir -p "$T/tree"
    cp -r "$src/module" "$src/keystore" "$src/tools" "$src/enroll" "$T/tree/"
}
expect_fail() { # FILE-PATTERN: the check must exit 1 and name it
    local rc=0
    "$check" "$T/tree" 2>"$T/err" >/dev/null || rc=$?
    if [ "$rc" != 1 ] || ! grep -q -- "$1" "$T/err"; then
        echo "FAIL: expected a violation matching '$1' (exit $rc):" >&2
        cat "$T/err" >&2
        exit 1
    fi
}

mk
printf '#include "mod_int.h"\n' >>"$T/tree/tools/backup.c"
expect_fail 'tools/backup.c:[0-9]*: #include of mod_int.h: internal header module/mod_int.h'

mk
printf '#include "ks_int.h"\n' >>"$T/tree/enroll/util.c"
expect_fail 'enroll/util.c:[0-9]*: #include of ks_int.h: internal header keystore/ks_int.h'

mk
printf '#include "../module/object.h"\n' >>"$T/tree/enroll/p11key.h"
expect_fail 'enroll/p11key.h:[0-9]*: #include of ../module/object.h'

mk
printf 'target_include_directories(x PRIVATE ${CMAKE_SOURCE_DIR}/module)\n' >>"$T/tree/tools/CMakeLists.txt"
expect_fail 'tools/CMakeLists.txt: adds a module/ or keystore/ include path'

# The keystore's contract and the public headers stay allowed.
mk
printf '#include "keystore.h"\n#include <evertoken/p11.h>\n' >>"$T/tree/tools/backup.c"
"$check" "$T/tree" >/dev/null

# The public headers stand alone: each compiles with only include/ and
# p11-kit on the include path (what an installed copy offers).
for h in "$src"/include/evertoken/*.h; do
    printf '#include <evertoken/%s>\n' "${h##*/}" >"$T/h.c"
    cc -std=c11 -fsyntax-only -Wall -Werror -I"$src/include" $(pkg-config --cflags p11-kit-1) "$T/h.c"
done
echo "t_check_layers: ok"
