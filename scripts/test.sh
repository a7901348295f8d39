#!/usr/bin/env bash
# Install everything, build, and run every test twice: a normal build and an
# AddressSanitizer + UndefinedBehaviorSanitizer build; a short fuzzing run;
# then build the Debian packages, install them and test the installed module
# (scripts/package-test.sh). Exit non-zero on any failure.
#   scripts/test.sh            full run
#   ET_SKIP_ASAN=1 scripts/test.sh   only the normal build (quicker while developing)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
. scripts/deps.sh
et_install_deps

jobs=$(nproc 2>/dev/null || echo 2)

echo "== format check"
mapfile -t sources < <(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
if [ "${#sources[@]}" -gt 0 ]; then
    clang-format --dry-run --Werror "${sources[@]}"
fi

echo "== layer check"
scripts/check-layers.sh

run_suite() {
    local dir=$1; shift
    echo "== configure $dir ($*)"
    cmake -S . -B "$dir" -DEVERTOKEN_WERROR=ON "$@"
    echo "== build $dir"
    cmake --build "$dir" -j"$jobs"
    echo "== test $dir"
    ctest --test-dir "$dir" --output-on-failure --timeout 900 -j"$jobs"
}

run_suite build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "${ET_SKIP_ASAN:-0}" != 1 ]; then
    run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DEVERTOKEN_SANITIZE=ON
fi
scripts/fuzz.sh "${ET_FUZZ_SECONDS:-30}"
echo "== Debian packages: build, lintian, install, installed-module tests"
scripts/package-test.sh
echo "== all tests passed"
