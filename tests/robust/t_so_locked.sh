#!/usr/bin/env bash
# A locked SO PIN (issue 13, finding 3): the error says that re-initialising
# (a new token) or a backup is all that is left, and never suggests
# `evertoken pin unlock`, which needs the very SO PIN that is locked. A
# locked user PIN keeps its advice (the SO can unlock it).
. "$EVERTOKEN_SOURCE_DIR/tests/external/lib.sh"
[ -n "$CLI" ] || die "EVERTOKEN_CLI unset"
export SO_PIN=so-secret-1234 USER_PIN=123456 NEW=654321 BAD=so-wrong-0000

"$CLI" init --label solock --so-pin env:SO_PIN --pin env:USER_PIN >/dev/null
for i in $(seq 1 10); do
    set +e; "$CLI" pin unlock --token solock --so-pin env:BAD --new-pin env:NEW 2>/dev/null; set -e
done
set +e; "$CLI" pin unlock --token solock --so-pin env:SO_PIN --new-pin env:NEW 2>"$T/err"; rc=$?; set -e
[ $rc = 5 ] || die "locked SO PIN: exit $rc ($(cat "$T/err"))"
grep -q "SO PIN is locked" "$T/err" || die "message does not name the SO PIN: $(cat "$T/err")"
grep -q "Re-initialising is the only way" "$T/err" || die "message lacks the way out: $(cat "$T/err")"
if grep -q "pin unlock" "$T/err"; then die "message suggests pin unlock: $(cat "$T/err")"; fi
set +e; "$CLI" pin change --so --token solock --so-pin env:SO_PIN --new-pin env:NEW 2>"$T/err"; rc=$?; set -e
[ $rc = 5 ] && grep -q "Re-initialising is the only way" "$T/err" || die "pin change --so: exit $rc $(cat "$T/err")"
ok "a locked SO PIN says what is left"

# The user PIN: the SO can still unlock it, and the message says so.
"$CLI" init --label ulock --so-pin env:SO_PIN --pin env:USER_PIN >/dev/null
for i in $(seq 1 10); do
    set +e; "$CLI" list --token ulock --login --pin env:BAD >/dev/null 2>&1; set -e
done
set +e; "$CLI" list --token ulock --login --pin env:USER_PIN >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc = 5 ] && grep -q "pin unlock" "$T/err" || die "locked user PIN: exit $rc $(cat "$T/err")"
ok "a locked user PIN points to pin unlock"
