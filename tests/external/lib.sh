# Shared helpers for tests/external/t_*.sh. Source it first:
#   . "$(dirname "$0")/lib.sh"
# It gives every test its own temporary HOME and token directory (never the
# user's real tokens or NSS database), removes them and every process the test
# registered with et_bg on exit, and exports:
#   MODULE  path of the built libevertoken.so      CLI  path of the built CLI
#   T       the test's temporary directory         EVERTOKEN_DIR  $T/tokens
set -euo pipefail

: "${EVERTOKEN_MODULE:?run through ctest (EVERTOKEN_MODULE unset)}"
MODULE=$EVERTOKEN_MODULE
CLI=${EVERTOKEN_CLI:-}
T=$(mktemp -d "${TMPDIR:-/tmp}/evertoken-test.XXXXXX")
chmod 700 "$T"
export HOME=$T/home XDG_CONFIG_HOME=$T/home/.config XDG_DATA_HOME=$T/home/.local/share
export XDG_STATE_HOME=$T/home/.local/state XDG_RUNTIME_DIR=$T/run
mkdir -p "$HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$HOME" "$XDG_RUNTIME_DIR"
export EVERTOKEN_DIR=$T/tokens
export EVERTOKEN_KDF=${EVERTOKEN_KDF:-fast}
unset EVERTOKEN_CONF
ET_PIDS=()

et_cleanup() {
    local rc=$?
    for p in "${ET_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${ET_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "${ET_KEEP:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
    exit $rc
}
trap et_cleanup EXIT

# Log and fail.
die() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# Skip (exit 77) when a tool is missing.
need() { for t in "$@"; do command -v "$t" >/dev/null 2>&1 || { echo "SKIP: $t not installed" >&2; exit 77; }; done; }

# Run an uninstrumented host program that loads the module; under a sanitizer
# build the ASan runtime must be preloaded (ET_PRELOAD is set by CMake then).
host() {
    if [ -n "${ET_PRELOAD:-}" ]; then LD_PRELOAD=$ET_PRELOAD "$@"; else "$@"; fi
}

# Start a background process that is killed when the test ends.
et_bg() { "$@" & ET_PIDS+=($!); }

# Expect a command to fail.
must_fail() { if "$@"; then die "expected failure: $*"; fi; }
