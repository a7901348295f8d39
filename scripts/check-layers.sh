#!/usr/bin/env bash
# The layer rule for includes (docs/architecture.md): the upper layers
# (tools/, enroll/) include only their own headers, the public headers of
# include/evertoken/ (as <evertoken/NAME.h>) and the keystore's contract
# keystore/keystore.h. A header of module/ or a keystore header other than
# keystore.h included from an upper layer fails the check.
#   scripts/check-layers.sh [SOURCE_ROOT]
# Exit 0: clean; 1: violations (listed on stderr); 2: usage.
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
[ -d "$root/module" ] && [ -d "$root/keystore" ] || {
    echo "check-layers: $root is not an evertoken source tree" >&2
    exit 2
}

# Internal headers: every header of module/, every keystore header but its contract.
declare -A internal=()
for h in "$root"/module/*.h "$root"/keystore/*.h; do
    [ -e "$h" ] || continue
    b=${h##*/}
    [ "$b" = keystore.h ] && continue
    internal[$b]=${h#"$root"/}
done

bad=0
for layer in tools enroll; do
    [ -d "$root/$layer" ] || continue
    while IFS= read -r f; do
        dir=${f%/*}
        # Every #include "X" and #include <X>, with its line number.
        while IFS=: read -r line inc; do
            name=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]([^">]+)[">].*/\1/' <<<"$inc")
            base=${name##*/}
            why=
            case "$name" in
            *module/* | *keystore/*) why="reaches into a lower layer's directory" ;;
            esac
            if [ -z "$why" ] && [ -n "${internal[$base]:-}" ] && [ ! -e "$dir/$name" ] \
                && [[ "$name" != evertoken/* ]]; then
                why="internal header ${internal[$base]}"
            fi
            if [ -n "$why" ]; then
                echo "${f#"$root"/}:$line: #include of $name: $why" >&2
                bad=1
            fi
        done < <(grep -nE '^[[:space:]]*#[[:space:]]*include' "$f" | sed -E 's/^([0-9]+):/\1:/')
    done < <(find "$root/$layer" -name '*.[ch]' -type f | sort)
done

# Nor may their build reach the internal include paths.
for layer in tools enroll; do
    cm=$root/$layer/CMakeLists.txt
    [ -f "$cm" ] || continue
    if grep -nE 'SOURCE_DIR\}/(module|keystore)' "$cm" >&2; then
        echo "$layer/CMakeLists.txt: adds a module/ or keystore/ include path" >&2
        bad=1
    fi
done

if [ "$bad" != 0 ]; then
    echo "check-layers: upper layers must include only include/evertoken/ and keystore/keystore.h" >&2
    exit 1
fi
echo "check-layers: ok"
