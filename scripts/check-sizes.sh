#!/usr/bin/env bash
# The project's size limits (docs/architecture.md): no source file in
# module/, keystore/, enroll/, tools/ or common/ over 1,000 lines, and no
# function there over 120 lines, counted from the line with the function's
# name (at the start of a line, the project's style) to its closing brace
# (a "}" at the start of a line). Prints every file and function over a
# limit; exit 1 if there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r f; do
    n=$(wc -l <"$f")
    if [ "$n" -gt 1000 ]; then
        echo "$f: $n lines (limit 1,000)"
        bad=1
    fi
    out=$(awk -v file="$f" '
        /^[A-Za-z_][A-Za-z0-9_]*\(/ && !/;[[:space:]]*$/ { name = $0; sub(/\(.*/, "", name); start = NR; next }
        /^}/ && start { len = NR - start + 1; if (len > 120) printf "%s:%d: %s() is %d lines (limit 120)\n", file, start, name, len; start = 0 }
    ' "$f")
    if [ -n "$out" ]; then
        echo "$out"
        bad=1
    fi
done < <(git ls-files 'module/*.c' 'keystore/*.c' 'enroll/*.c' 'enroll/proto/*.c' 'tools/*.c' 'common/*.c' 2>/dev/null ||
    find module keystore enroll tools common -name '*.c')
[ "$bad" = 0 ] && echo "check-sizes: every file and function within the limits"
exit "$bad"
