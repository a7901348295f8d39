#!/usr/bin/env bash
# Memcheck over a subset of the unit tests and of the conformance suite
# (label `valgrind`; CTest runs one group per test so each stays short).
#   tests/robust/valgrind.sh BUILD_DIR [GROUP...]
# GROUP: unit:NAME (tests/unit binary) or module:GLOB (p11conf --filter);
# without GROUPs, the default subset below. Any memcheck error or definite or
# indirect leak fails (--error-exitcode=1). Not for sanitizer builds.
set -euo pipefail
build=${1:?usage: valgrind.sh BUILD_DIR [GROUP...]}
shift
groups=("$@")
if [ ${#groups[@]} = 0 ]; then
    groups=(unit:test_ks_token unit:test_ks_object unit:test_ks_file unit:test_mod_object
            unit:test_mod_objimport unit:test_mod_tmpl "module:t_tmpl*"
            "module:t_create*" "module:t_*attribute*" "module:t_find*" "module:t_sign_verify_all"
            "module:t_login_state_machine" "module:t_set_pin" "module:t_generate_ec"
            "module:t_persistence")
fi
command -v valgrind >/dev/null || { echo "SKIP: valgrind not installed" >&2; exit 77; }
export EVERTOKEN_KDF=fast
vg=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect
    --show-leak-kinds=definite,indirect --track-fds=no --trace-children=no)
for g in "${groups[@]}"; do
    echo "== valgrind $g"
    case $g in
    unit:*) "${vg[@]}" "$build/tests/unit/${g#unit:}" ;;
    module:*) "${vg[@]}" "$build/tests/module/p11conf" --target evertoken --filter "${g#module:}" \
        "$build/module/libevertoken.so" ;;
    *) echo "unknown group $g" >&2; exit 2 ;;
    esac
done
echo "== valgrind: clean"
