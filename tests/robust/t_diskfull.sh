#!/usr/bin/env bash
# A full file system (issue 13, finding 5), on a small tmpfs in a private
# mount namespace (skipped, exit 77, where that cannot be had: needs root
# and unshare -m):
#  - the token still opens and reads (public objects listed) with no byte
#    free: its -shm and -wal are kept between opens, nothing is allocated;
#  - a write (C_CreateObject) answers CKR_DEVICE_MEMORY, not
#    CKR_DEVICE_ERROR, and the CLI says the file system is full;
#  - a login needs to count its attempt: refused the same way, never
#    counted as a failure; nothing is lost: with space again everything
#    works and PRAGMA integrity_check is ok.
. "$EVERTOKEN_SOURCE_DIR/tests/external/lib.sh"
[ -n "$CLI" ] || die "EVERTOKEN_CLI unset"
need pkcs11-tool sqlite3
if [ "$(id -u)" != 0 ] || ! unshare -m true 2>/dev/null; then
    echo "SKIP: needs root and unshare -m for a private tmpfs" >&2
    exit 77
fi
export SO_PIN=so-secret-1234 USER_PIN=123456 CLI MODULE T

cat >"$T/inner.sh" <<'SH'
set -euo pipefail
die() { echo "FAIL: $*" >&2; exit 1; }
host() { if [ -n "${ET_PRELOAD:-}" ]; then LD_PRELOAD=$ET_PRELOAD "$@"; else "$@"; fi; }
mount --make-rprivate /
mkdir -p "$T/fs"
mount -t tmpfs -o size=1m,mode=700 none "$T/fs"
export EVERTOKEN_DIR=$T/fs/tok
p11() { host pkcs11-tool --module "$MODULE" --token-label full --login --pin "$USER_PIN" "$@"; }
"$CLI" init --label full --so-pin env:SO_PIN --pin env:USER_PIN >/dev/null
echo value >"$T/v"
p11 --write-object "$T/v" --type data --label before >/dev/null 2>&1 || die "write before"
# Fill the file system to the last block.
dd if=/dev/zero of="$T/fs/filler" bs=4k >/dev/null 2>&1 || true
dd if=/dev/zero of="$T/fs/filler2" bs=512 >/dev/null 2>&1 || true
[ "$(df -k --output=avail "$T/fs" | tail -1 | tr -d ' ')" = 0 ] || die "tmpfs not full"
"$CLI" list --token full >"$T/list" 2>&1 || die "read-only list on a full disk: $(cat "$T/list")"
grep -q "before" "$T/list" || die "list on a full disk: $(cat "$T/list")"
echo "ok: the token opens and lists on a full file system"
set +e; "$CLI" list --token full --login --pin env:USER_PIN >"$T/out" 2>&1; rc=$?; set -e
[ $rc = 1 ] && grep -q "file system holding it is full" "$T/out" || die "login on a full disk: exit $rc $(cat "$T/out")"
set +e; p11 --write-object "$T/v" --type data --label during >"$T/out" 2>&1; rc=$?; set -e
[ $rc != 0 ] && grep -q "CKR_DEVICE_MEMORY" "$T/out" || die "write on a full disk: $(cat "$T/out")"
echo "ok: login and write on a full file system fail with CKR_DEVICE_MEMORY"
rm -f "$T/fs/filler" "$T/fs/filler2"
"$CLI" info --token full >"$T/out"
grep -q "user PIN: *set, 0 failed attempts" "$T/out" || die "failure counted: $(grep PIN "$T/out")"
p11 --write-object "$T/v" --type data --label after >/dev/null 2>&1 || die "write after freeing space"
"$CLI" list --token full --login --pin env:USER_PIN >"$T/list" || die "list after"
grep -q before "$T/list" && grep -q after "$T/list" || die "objects after: $(cat "$T/list")"
if grep -q during "$T/list"; then die "the refused write left an object"; fi
[ "$(sqlite3 "$EVERTOKEN_DIR"/token-0.db 'PRAGMA integrity_check')" = ok ] || die "integrity_check"
echo "ok: nothing lost, nothing counted; writes work again with space"
SH
unshare -m bash "$T/inner.sh" || die "full-disk checks failed"
