#!/usr/bin/env bash
# Build the fuzz targets with clang + libFuzzer (+ ASan/UBSan) in build-fuzz,
# fuzz each for a bounded time, then replay the committed corpora.
#   scripts/fuzz.sh [SECONDS]     seconds per target (default 60)
#   FUZZ_TARGETS="attrs import"   only these targets (default: every
#                                 tests/fuzz/fuzz_<name>.c)
#   FUZZ_JOBS=N                   build jobs (default 2)
# Inputs libFuzzer finds interesting go to build-fuzz/fuzz-corpus/<target>
# (not committed; copy small, new ones into tests/fuzz/corpus/<target>/),
# crashes to build-fuzz/fuzz-artifacts/<target>/; the script fails on any.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
secs=${1:-60}
targets=${FUZZ_TARGETS:-$(cd tests/fuzz && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//' | tr '\n' ' ')}
build=build-fuzz

command -v clang >/dev/null || { echo "fuzz.sh: clang is not installed (scripts/deps.sh)" >&2; exit 1; }
echo "== configure $build (clang, libFuzzer, ASan+UBSan)"
CC=clang cmake -S . -B "$build" -DEVERTOKEN_FUZZ=ON -DEVERTOKEN_SANITIZE=ON \
    -DEVERTOKEN_WERROR=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
echo "== build"
cmake --build "$build" -j"${FUZZ_JOBS:-2}" --target $(printf 'fuzz_%s ' $targets)

export EVERTOKEN_KDF=fast
# No OpenSSL secure heap in the fuzzed module: it is an mmap'd region that
# LeakSanitizer does not scan, so OpenSSL objects referenced only from it (the
# DRBG's cipher contexts) look leaked when libFuzzer runs a leak check in the
# middle of a run (the ordinary exit frees them). The heap itself is tested
# by the unit and robust suites.
export EVERTOKEN_SECURE_HEAP=0
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_odr_violation=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=0
for t in $targets; do
    corpus=$build/fuzz-corpus/$t
    arts=$build/fuzz-artifacts/$t
    mkdir -p "$corpus" "$arts"
    # The enrollment helper reports every refused answer on stderr: keep
    # libFuzzer's log readable (sanitizer reports still get through).
    quiet=
    [ "$t" = ca ] || [ "$t" = acme ] && quiet=-close_fd_mask=2
    echo "== fuzz $t for ${secs}s"
    if ! "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=30 -rss_limit_mb=2560 $quiet \
        -print_final_stats=1 -artifact_prefix="$arts/" "$corpus" "tests/fuzz/corpus/$t" \
        >"$build/fuzz-$t.log" 2>&1; then
        echo "fuzz.sh: $t FAILED; log $build/fuzz-$t.log, inputs in $arts:" >&2
        tail -40 "$build/fuzz-$t.log" >&2
        failed=1
    else
        grep -E "stat::number_of_executed_units|cov:" "$build/fuzz-$t.log" | tail -2
    fi
done
echo "== replay the committed corpora"
# Only the targets built above (FUZZ_TARGETS may name fewer than all).
ctest --test-dir "$build" -L fuzz -R "^fuzz\.($(echo $targets | tr ' ' '|'))\$" --output-on-failure ||
    failed=1
[ $failed = 0 ] && echo "== fuzzing passed"
exit $failed
