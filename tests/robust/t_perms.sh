#!/usr/bin/env bash
# File permissions: a token file that is group/world writable or owned by
# another uid, or a token directory that is group/world writable, is refused
# with a message naming the file and the fix — by the keystore (the CLI's
# backup/info path prints it), and by the module (EVERTOKEN_DEBUG=1 logs it;
# the slot's token is not recognised: C_GetTokenInfo fails, objects are not
# reachable); `evertoken list` and a command naming the token print the
# keystore's reason. Restoring the mode makes the token usable again.
. "$EVERTOKEN_SOURCE_DIR/tests/external/lib.sh"
[ -n "$CLI" ] || die "EVERTOKEN_CLI unset"
export SO_PIN=so-secret-1234 USER_PIN=123456

"$CLI" init --label perm --so-pin env:SO_PIN --pin env:USER_PIN >/dev/null
f=$(ls "$EVERTOKEN_DIR"/token-*.db)
"$CLI" list --token perm --login --pin env:USER_PIN >/dev/null || die "token unusable at the start"

# The module's view of the token: "ok", or the CLI's complaint.
module_view() { "$CLI" list --token perm --login --pin env:USER_PIN 2>&1; }

# $1: mode change description; $2: text the message must contain.
expect_refused() {
    local what=$1 want=$2 out
    # Keystore, through the CLI's backup (which opens the file itself).
    set +e
    out=$("$CLI" backup --token perm "$T/backup-$RANDOM.db" 2>&1)
    rc=$?
    set -e
    [ $rc != 0 ] || die "$what: backup succeeded"
    grep -qF "$want" <<<"$out" || die "$what: backup message lacks '$want': $out"
    grep -qF "$f" <<<"$out" || grep -qF "$EVERTOKEN_DIR" <<<"$out" ||
        die "$what: backup message does not name the file or directory: $out"
    # Module: the token is not usable, and the debug log says why.
    set +e
    out=$(EVERTOKEN_DEBUG=1 "$CLI" list 2>&1)
    set -e
    grep -qF "$want" <<<"$out" || die "$what: module debug log lacks '$want': $out"
    grep -q "token 'perm'" <<<"$out" && die "$what: the module still shows the token: $out"
    set +e
    out=$(module_view)
    rc=$?
    set -e
    [ $rc != 0 ] || die "$what: the CLI reached the token through the module"
    grep -qF "$want" <<<"$out" || die "$what: the CLI's message lacks '$want': $out"
    out=$("$CLI" list 2>&1) || die "$what: list failed: $out"
    grep -qF "$want" <<<"$out" || die "$what: list does not say why: $out"
    ok "$what: refused ($want)"
}

chmod 620 "$f"
expect_refused "group-writable file" "chmod 600"
chmod 602 "$f"
expect_refused "world-writable file" "group/world writable"
chmod 600 "$f"
module_view >/dev/null || die "mode 600 again: token unusable"

chmod 770 "$EVERTOKEN_DIR"
expect_refused "group-writable directory" "chmod 700"
chmod 700 "$EVERTOKEN_DIR"
module_view >/dev/null || die "mode 700 again: token unusable"

# Another owner: needs root to give the file away.
if [ "$(id -u)" = 0 ]; then
    chown 65534 "$f"
    expect_refused "file owned by another uid" "owned by uid 65534"
    chown 0 "$f"
    module_view >/dev/null || die "owner restored: token unusable"
else
    echo "not root: the other-owner case is covered by tests/unit/test_ks_file only" >&2
fi
ok "permissions"
