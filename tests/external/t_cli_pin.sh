#!/usr/bin/env bash
# evertoken CLI: pin change (user and SO), lockout and pin unlock.
. "$(dirname "$0")/lib.sh"
[ -n "$CLI" ] || die "EVERTOKEN_CLI unset"
export SO_PIN=so-secret-1234 USER_PIN=123456 NEW_PIN=654321 NEW_SO=so-secret-5678 BAD=000000

"$CLI" init --label pins --so-pin env:SO_PIN --pin env:USER_PIN >/dev/null

# User PIN change: the old PIN stops working, the new one works.
"$CLI" pin change --token pins --pin env:USER_PIN --new-pin env:NEW_PIN >"$T/out"
grep -q "user PIN changed" "$T/out" || die "pin change output: $(cat "$T/out")"
set +e; "$CLI" list --token pins --login --pin env:USER_PIN 2>/dev/null; rc=$?; set -e
[ $rc = 4 ] || die "old PIN still works after change (exit $rc)"
"$CLI" list --token pins --login --pin env:NEW_PIN >/dev/null || die "new PIN refused"
# pkcs11-tool agrees.
if command -v pkcs11-tool >/dev/null; then
    host pkcs11-tool --module "$MODULE" --token-label pins --login --pin "$NEW_PIN" -O \
        >/dev/null 2>&1 || die "pkcs11-tool login with the new PIN failed"
fi
ok "user PIN change"

# A wrong old PIN is reported and changes nothing.
set +e
"$CLI" pin change --token pins --pin env:BAD --new-pin env:USER_PIN 2>"$T/err"; rc=$?
set -e
[ $rc = 4 ] && grep -q "wrong PIN" "$T/err" || die "pin change with wrong old PIN: exit $rc"
"$CLI" list --token pins --login --pin env:NEW_PIN >/dev/null || die "PIN changed by a failed change"
ok "pin change with a wrong old PIN"

# SO PIN change, then the new SO PIN is what unlock needs.
"$CLI" pin change --so --token pins --so-pin env:SO_PIN --new-pin env:NEW_SO >"$T/out"
grep -q "SO PIN changed" "$T/out" || die "SO pin change: $(cat "$T/out")"
set +e; "$CLI" pin unlock --token pins --so-pin env:SO_PIN --new-pin env:USER_PIN 2>/dev/null
rc=$?; set -e
[ $rc = 4 ] || die "old SO PIN still accepted (exit $rc)"
ok "SO PIN change"

# Lockout: wrong PINs until the token locks; then even the right PIN is refused.
locked=0
for i in $(seq 1 12); do
    set +e; "$CLI" list --token pins --login --pin env:BAD 2>"$T/err" >/dev/null; rc=$?; set -e
    if [ $rc = 5 ]; then locked=1; break; fi
    [ $rc = 4 ] || die "attempt $i: exit $rc, expected 4 (wrong) or 5 (locked): $(cat "$T/err")"
done
[ $locked = 1 ] || die "user PIN never locked after 12 wrong attempts"
grep -q "locked" "$T/err" || die "lockout message: $(cat "$T/err")"
set +e; "$CLI" list --token pins --login --pin env:NEW_PIN 2>"$T/err"; rc=$?; set -e
[ $rc = 5 ] || die "right PIN accepted on a locked token (exit $rc)"
"$CLI" list >"$T/out"
grep -q "user-pin-locked" "$T/out" || die "list does not show the lock: $(cat "$T/out")"
ok "lockout after $i attempts"

# pin unlock: SO sets a new user PIN, which clears the lockout.
set +e
"$CLI" pin unlock --token pins --so-pin env:BAD --new-pin env:USER_PIN 2>"$T/err"; rc=$?
set -e
[ $rc = 4 ] || die "unlock with a wrong SO PIN: exit $rc"
"$CLI" pin unlock --token pins --so-pin env:NEW_SO --new-pin env:USER_PIN >"$T/out"
grep -q "unlocked" "$T/out" || die "unlock output: $(cat "$T/out")"
"$CLI" list --token pins --login --pin env:USER_PIN >/dev/null || die "login after unlock failed"
"$CLI" list >"$T/out"
grep -q "user-pin-locked" "$T/out" && die "still locked after unlock: $(cat "$T/out")"
"$CLI" info --token pins >"$T/out"
grep -q "user PIN: *set, 0 failed attempts" "$T/out" || die "counter not reset: $(cat "$T/out")"
ok "pin unlock"

# Usage errors.
set +e; "$CLI" pin frob --token pins 2>/dev/null; rc=$?; set -e
[ $rc = 2 ] || die "pin frob: exit $rc"
set +e; "$CLI" pin unlock --so --token pins 2>/dev/null; rc=$?; set -e
[ $rc = 2 ] || die "pin unlock --so: exit $rc"
ok "pin usage errors"
