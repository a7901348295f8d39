#!/usr/bin/env bash
# The login cache (login_cache = none | process | user:N; docs/module.md):
# settings through the CLI, `evertoken unlock` then other processes
# (pkcs11-tool, NSS certutil, a small C client) log in and sign without a
# PIN, new sessions start logged in, C_Logout ends only the own process's
# login, `evertoken lock`, expiry, PIN change (also a stale entry put back by
# hand), lockout, CKA_ALWAYS_AUTHENTICATE, another uid, root.
# Keyring timeouts are real time: one test sleeps 3 s.
. "$(dirname "$0")/lib.sh"
need pkcs11-tool p11tool keyctl certutil modutil setsid openssl setpriv

PROBE=$EVERTOKEN_BINARY_DIR/tests/external/lc_probe
[ -x "$PROBE" ] || die "lc_probe not built ($PROBE)"
P() { host pkcs11-tool --module "$MODULE" "$@"; }
E() { host "$CLI" "$@"; }
probe() { host "$PROBE" "$MODULE" "$@"; }
N() { host setsid -w "$@" </dev/null; }
export SO=87654321 PIN=13572468 PIN2=24681357
LABEL=ext-lcache
TOKENS=()

# Kernel keyrings may be missing in a container (seccomp): skip only then.
if ! kid=$(keyctl add user "evertoken-test-probe:$$" x @u 2>/dev/null); then
    echo "SKIP: no kernel keyring (add_key refused)" >&2
    exit 77
fi
keyctl invalidate "$kid"

# Leave no cached key behind, whatever happens.
lc_cleanup() {
    local rc=$?
    for l in "${TOKENS[@]}"; do E lock --token "$l" >/dev/null 2>&1 || true; done
    (exit $rc)
    et_cleanup
}
trap lc_cleanup EXIT

mktoken() {
    E init --label "$1" --so-pin env:SO --pin env:PIN >/dev/null || die "init $1"
    TOKENS+=("$1")
}
# The keyring entry of the token (by its id, from `evertoken info`; other
# tests may hold entries of their own tokens meanwhile) — serial or empty.
entry() { keyctl search @u user "evertoken:$TID" 2>/dev/null || true; }
state() { probe "$LABEL" state; }

mktoken "$LABEL"
TID=$(E info --token "$LABEL" | awk '/^ *token id:/ { print $3 }')
[[ $TID =~ ^[0-9a-f]{32}$ ]] || die "no token id from evertoken info: $(E info --token "$LABEL")"
# An EC key for signing and one with CKA_ALWAYS_AUTHENTICATE.
P --token-label "$LABEL" --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 \
    --label k1 --id 01 >/dev/null || die "keypairgen k1"
P --token-label "$LABEL" --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 \
    --label aa --id aa --always-auth >/dev/null || die "keypairgen aa (always-auth)"

# ---- settings: default process; set and read back; changing needs the PIN
[ "$(E settings --token "$LABEL")" = "login_cache=process" ] || die "default is not process"
must_fail E settings --token "$LABEL" login_cache=user:0 --pin env:PIN 2>/dev/null
must_fail E settings --token "$LABEL" login_cache=forever --pin env:PIN 2>/dev/null
must_fail E settings --token "$LABEL" color=blue --pin env:PIN 2>/dev/null
export WRONG=00000000
set +e
E settings --token "$LABEL" login_cache=user:60 --pin env:WRONG >/dev/null 2>&1
rc=$?
set -e
[ $rc -eq 4 ] || die "settings with a wrong PIN: exit $rc, not 4"
[ "$(E settings --token "$LABEL")" = "login_cache=process" ] || die "wrong PIN changed the setting"
ok "settings: default process, malformed values and a wrong PIN refused"

# ---- process: no cache, unlock refused, empty PIN is no login
out=$(echo "$PIN" | E unlock --token "$LABEL" 2>&1) && die "unlock under process succeeded: $out"
grep -q "login_cache=process" <<<"$out" || die "unlock did not say why: $out"
out=$(state)
grep -q "pap=0" <<<"$out" || die "process: PIN pad flag: $out"
grep -q "session=public" <<<"$out" || die "process: session not public: $out"
out=$(probe "$LABEL" login-twice "$PIN" "$WRONG")
grep -q "again=0x100" <<<"$out" || die "process: second C_Login not ALREADY_LOGGED_IN: $out"
grep -q "wrong=0x100" <<<"$out" || die "process: logged-in C_Login not ALREADY_LOGGED_IN: $out"
set +e
out=$(probe "$LABEL" login-null)
rc=$?
set -e
[ $rc -ne 0 ] && grep -q "login=0x7 " <<<"$out" || die "process: NULL PIN login: $out"
ok "process: no cache, unlock refused, NULL PIN is CKR_ARGUMENTS_BAD, standard re-login"

# ---- none: every C_Login verifies its PIN; a planted entry is never used
E settings --token "$LABEL" --pin env:PIN login_cache=none >/dev/null || die "set none"
[ "$(E settings --token "$LABEL")" = "login_cache=none" ] || die "none not stored"
out=$(probe "$LABEL" login-twice "$PIN" "$WRONG")
grep -q "first=0x0" <<<"$out" || die "none: first login: $out"
grep -q "again=0x100" <<<"$out" || die "none: right PIN again is not ALREADY_LOGGED_IN: $out"
grep -q "wrong=0xa0" <<<"$out" || die "none: wrong PIN while logged in not refused: $out"
grep -q "session=user" <<<"$out" || die "none: the process login ended: $out"
out=$(echo "$PIN" | E unlock --token "$LABEL" 2>&1) && die "unlock under none succeeded: $out"
ok "none: a logged-in C_Login still verifies the PIN (wrong one CKR_PIN_INCORRECT); unlock refused"

# ---- user:N: unlock (PIN on standard input), entry in the user keyring
E settings --token "$LABEL" --pin env:PIN login_cache=user:300 >/dev/null || die "set user:300"
[ "$(E settings --token "$LABEL")" = "login_cache=user:300" ] || die "user:300 not stored"
set +e
echo "$WRONG" | E unlock --token "$LABEL" >/dev/null 2>&1
rc=$?
set -e
[ $rc -eq 4 ] || die "unlock with a wrong PIN: exit $rc"
[ -z "$(entry)" ] || die "an entry appeared after a wrong PIN: $(keyctl show @u)"
# A process that opened its session while the token was locked (a browser
# that loaded the module earlier) sees it logged in after the unlock.
probe "$LABEL" wait-unlock >"$T/wait.out" 2>&1 &
wpid=$!
for _ in $(seq 100); do grep -q "^before=" "$T/wait.out" && break; sleep 0.1; done
grep -q "^before=public" "$T/wait.out" || { kill $wpid 2>/dev/null; die "wait-unlock: $(cat "$T/wait.out")"; }
out=$(echo "$PIN" | E unlock --token "$LABEL") || die "unlock: $out"
grep -q "unlocked for 300 seconds" <<<"$out" || die "unlock said: $out"
wait $wpid || die "session opened before the unlock: $(cat "$T/wait.out")"
grep -q "^after_unlock=user private=[1-9]" "$T/wait.out" || die "wait-unlock: $(cat "$T/wait.out")"
ok "a session opened while locked is logged in after the unlock (C_GetSessionInfo), its C_Logout sticks"
# Named by the token id (not the label), exactly once.
desc=evertoken:$TID
[ "$(keyctl show @u | grep -c "$desc")" -eq 1 ] || die "not one entry $desc: $(keyctl show @u)"
keyctl show @u | grep "evertoken:" | grep -q "$LABEL" && die "the label shows in the keyring"
serial=$(entry)
[ -n "$serial" ] || die "no keyring entry after unlock"
# type;uid;gid;perm;description — possessor + user only, nothing for group/other.
IFS=';' read -r ktype kuid kgid kperm kdesc < <(keyctl rdescribe "$serial")
[ "$ktype" = user ] && [ "$kuid" = "$(id -u)" ] && [ "$kdesc" = "$desc" ] ||
    die "entry: $ktype $kuid $kdesc"
[ "$kperm" = 3f2f0000 ] || die "entry permissions $kperm, expected 3f2f0000"
# A timeout is set (the expiry column of /proc/keys is not "perm").
exp=$(awk -v s="$(printf '%08x' "$serial")" '$1 == s { print $4 }' /proc/keys)
[ -n "$exp" ] && [ "$exp" != perm ] || die "entry has no timeout (/proc/keys: '$exp')"
[ "$(keyctl pipe "$serial" | wc -c)" -eq 44 ] || die "payload is not 44 bytes"
keyctl pipe "$serial" | head -c 4 | grep -q "ETc1" || die "payload magic"
ok "unlock: entry $desc (perm $kperm, expires in $exp, 44 bytes) in the user keyring"

# ---- other processes: no PIN needed
out=$(state)
grep -q "pap=1" <<<"$out" || die "no CKF_PROTECTED_AUTHENTICATION_PATH while cached: $out"
grep -q "session=user" <<<"$out" || die "new session not logged in: $out"
grep -q "private=2" <<<"$out" || die "new session does not see the private keys: $out"
out=$(P --token-label "$LABEL" -O 2>&1) || die "pkcs11-tool -O: $out"
grep -q "Private Key Object; EC" <<<"$out" || die "pkcs11-tool -O (no --login) lists no private key: $out"
out=$(P --token-label "$LABEL" -T 2>&1)
grep -q "PIN pad present" <<<"$out" || die "pkcs11-tool -T: no PIN pad flag: $out"
head -c 32 /dev/urandom >"$T/data"
P --token-label "$LABEL" --login --sign --mechanism ECDSA-SHA256 --id 01 --signature-format openssl \
    -i "$T/data" -o "$T/sig" >"$T/sign.log" 2>&1 </dev/null || die "sign without PIN: $(cat "$T/sign.log")"
# (p11tool, not pkcs11-tool --read-object: the latter reads freed memory
# when converting an EC public key, which ASan reports.)
host p11tool --provider "$MODULE" --export-pubkey "pkcs11:token=$LABEL;object=k1;type=public" \
    >"$T/pub.pem" 2>"$T/read.log" || die "read public key: $(cat "$T/read.log")"
openssl dgst -sha256 -verify "$T/pub.pem" -signature "$T/sig" "$T/data" >/dev/null ||
    die "the signature made without a PIN does not verify"
out=$(E list --token "$LABEL" --login </dev/null 2>&1) || die "evertoken list --login: $out"
grep -q "k1" <<<"$out" || die "list --login without PIN: $out"
ok "after unlock: pkcs11-tool -O lists private keys and signs (verified) with no PIN, PIN pad flag set"

out=$(probe "$LABEL" login-null) || die "C_Login(USER, NULL): $out"
grep -q "private_before=0" <<<"$out" || die "after C_Logout private keys still visible: $out"
grep -q "private=2" <<<"$out" || die "NULL-PIN login does not show private keys: $out"
out=$(probe "$LABEL" login-empty) || die "C_Login(USER, \"\"): $out"
out=$(probe "$LABEL" relogin) || die "C_Logout / new session: $out"
[ "$(entry)" = "$serial" ] || die "C_Logout in one process removed the cache"
ok "C_Login with NULL and empty PIN log in; C_Logout ends only that process's login, entry stays"

# ---- CKA_ALWAYS_AUTHENTICATE still needs the PIN every time
out=$(probe "$LABEL" always-auth "$PIN") || die "always-auth: $out"
ok "CKA_ALWAYS_AUTHENTICATE: no signature without CKU_CONTEXT_SPECIFIC + PIN (NULL/empty refused)"

# ---- NSS: certutil lists the private keys without a PIN prompt
DB=sql:$T/nss
mkdir -m 700 "$T/nss"
N certutil -N -d "$DB" --empty-password >"$T/n.log" 2>&1 || die "certutil -N: $(cat "$T/n.log")"
N modutil -dbdir "$DB" -add evertoken -libfile "$MODULE" -force >"$T/add.log" 2>&1 ||
    die "modutil -add: $(cat "$T/add.log")"
out=$(N certutil -K -d "$DB" -h "$LABEL" 2>&1) || die "certutil -K without PIN after unlock: $out"
grep -q "Error opening input terminal" <<<"$out" && die "certutil asked for a PIN: $out"
grep -Eq "^< *[01]> ec +01 " <<<"$out" || die "certutil -K does not list key 01: $out"
ok "NSS certutil -K lists the token's private keys with no PIN and no prompt"

# ---- lock empties the cache
out=$(E lock --token "$LABEL") || die "lock: $out"
grep -q "cached login removed" <<<"$out" || die "lock said: $out"
[ -z "$(entry)" ] || die "entry still there after lock"
out=$(state)
grep -q "pap=0" <<<"$out" && grep -q "session=public" <<<"$out" || die "after lock: $out"
set +e
out=$(probe "$LABEL" login-null)
rc=$?
set -e
[ $rc -ne 0 ] && grep -q "login=0xa0 " <<<"$out" || die "NULL PIN after lock: $out"
out=$(N certutil -K -d "$DB" -h "$LABEL" 2>&1) && grep -Eq "^< *[01]> ec +01 " <<<"$out" &&
    die "certutil lists the key after lock: $out"
[ "$(E lock --token "$LABEL")" = "token '$LABEL': no cached login (nothing to remove)" ] ||
    die "second lock"
ok "lock: entry removed, NULL PIN is CKR_PIN_INCORRECT, sessions public, NSS needs the PIN again"

# ---- expiry (real time)
E settings --token "$LABEL" --pin env:PIN login_cache=user:2 >/dev/null || die "set user:2"
echo "$PIN" | E unlock --token "$LABEL" >/dev/null || die "unlock user:2"
state | grep -q "session=user" || die "user:2: not logged in right after unlock"
sleep 3
out=$(state)
grep -q "pap=0" <<<"$out" && grep -q "session=public" <<<"$out" ||
    die "cache alive after its 2 s: $out"
ok "user:2: the cache is gone after 3 s"

# ---- PIN change invalidates; a stale entry put back is refused (generation)
E settings --token "$LABEL" --pin env:PIN login_cache=user:300 >/dev/null || die "set user:300"
echo "$PIN" | E unlock --token "$LABEL" >/dev/null || die "unlock"
keyctl pipe "$(entry)" >"$T/stale"
E pin change --token "$LABEL" --pin env:PIN --new-pin env:PIN2 >/dev/null || die "pin change"
[ -z "$(entry)" ] || die "entry survives the PIN change"
# Same bytes back under the same name, as if the change had been made by a
# process that could not reach this keyring.
keyctl padd user "evertoken:$TID" @u <"$T/stale" >/dev/null
[ -n "$(entry)" ] || die "could not put the stale entry back"
set +e
out=$(probe "$LABEL" login-null)
rc=$?
set -e
[ $rc -ne 0 ] && grep -q "login=0xa0 " <<<"$out" || die "stale entry accepted: $out"
[ -z "$(entry)" ] || die "refused stale entry not removed"
state | grep -q "session=public" || die "stale entry logged a session in"
echo "$PIN2" | E unlock --token "$LABEL" >/dev/null || die "unlock with the new PIN"
state | grep -q "session=user" || die "unlock with the new PIN does not work"
ok "PIN change empties the cache; the old entry put back is refused (PIN generation) and removed"

# ---- SO reset (C_InitPIN) invalidates too. pkcs11-tool's R/W session starts
# logged in as the user (from the cache); its SO login replaces that login.
[ -n "$(entry)" ] || die "no entry before the SO reset"
out=$(P --token-label "$LABEL" --init-pin --login --login-type so --so-pin "$SO" --new-pin "$PIN" 2>&1) ||
    die "SO login + C_InitPIN while the cache is live: $out"
[ -z "$(entry)" ] || die "entry survives C_InitPIN"
ok "SO login replaces a login restored from the cache; the SO reset of the user PIN empties the cache"

# ---- lockout invalidates
echo "$PIN" | E unlock --token "$LABEL" >/dev/null || die "unlock"
for i in $(seq 1 9); do
    E pin change --token "$LABEL" --pin env:WRONG --new-pin env:PIN2 >/dev/null 2>&1 && die "wrong PIN accepted"
    [ -n "$(entry)" ] || die "the cache went after $i wrong PINs (not locked yet)"
done
E pin change --token "$LABEL" --pin env:WRONG --new-pin env:PIN2 >/dev/null 2>&1 && die "wrong PIN accepted"
[ -z "$(entry)" ] || die "the cache survives the lockout"
out=$(P --token-label "$LABEL" -T 2>&1)
grep -q "PIN pad present" <<<"$out" && die "PIN pad flag on a locked token: $out"
E pin unlock --token "$LABEL" --so-pin env:SO --new-pin env:PIN >/dev/null || die "SO unlock"
ok "10 wrong PINs lock the user PIN and empty the cache"

# ---- another uid cannot reach the entry; root only by becoming the uid
echo "$PIN" | E unlock --token "$LABEL" >/dev/null || die "unlock"
serial=$(entry)
if [ "$(id -u)" -eq 0 ]; then
    NB=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    "${NB[@]}" keyctl search @u user "evertoken:$TID" >/dev/null 2>&1 &&
        die "uid 65534 finds root's entry"
    "${NB[@]}" keyctl print "$serial" >/dev/null 2>&1 && die "uid 65534 reads root's entry"
    # The other way round: an entry of uid 65534, seen by root.
    U=$(mktemp -d /tmp/evertoken-lc65534.XXXXXX)
    chown 65534:65534 "$U"
    chmod 700 "$U"
    NENV=(env HOME="$U" XDG_CONFIG_HOME="$U/.config" XDG_DATA_HOME="$U/.local/share"
        EVERTOKEN_DIR="$U/tokens" EVERTOKEN_KDF=fast SO="$SO" PIN="$PIN")
    nbcli() { host "${NB[@]}" "${NENV[@]}" "$CLI" "$@"; }
    ok_nb=1
    nbcli init --label nb --so-pin env:SO --pin env:PIN >/dev/null 2>&1 || ok_nb=0
    if [ $ok_nb = 1 ]; then
        nbcli settings --token nb --pin env:PIN login_cache=user:60 >/dev/null || die "nb settings"
        echo "$PIN" | nbcli unlock --token nb >/dev/null || die "nb unlock"
        nid=$(nbcli info --token nb | awk '/^ *token id:/ { print $3 }')
        nserial=$("${NB[@]}" keyctl search @u user "evertoken:$nid" 2>/dev/null || true)
        [ -n "$nserial" ] || die "no entry for uid 65534"
        keyctl print "$nserial" >/dev/null 2>&1 && die "root reads uid 65534's entry directly"
        "${NB[@]}" keyctl print "$nserial" >/dev/null 2>&1 || die "uid 65534 cannot read its own entry"
        # Root can become the uid (setuid): then the entry is reachable.
        "${NB[@]}" keyctl pipe "$nserial" | head -c 4 | grep -q ETc1 || die "setuid root cannot read"
        nbcli lock --token nb >/dev/null || die "nb lock"
        rm -rf "$U"
        ok "uid 65534 cannot find/read root's entry; root cannot read uid 65534's directly, only after setuid"
    else
        rm -rf "$U"
        ok "uid 65534 cannot find/read root's entry (65534's own token could not be created here)"
    fi
else
    echo "note: not root; the other-uid checks need root to switch uids" >&2
fi

# ---- changing the policy empties the cache; process ignores a planted entry
[ -n "$(entry)" ] || die "no entry before the policy change"
E settings --token "$LABEL" --pin env:PIN login_cache=process >/dev/null || die "set process"
[ -z "$(entry)" ] || die "policy change kept the entry"
keyctl padd user "evertoken:$TID" @u <"$T/stale" >/dev/null
out=$(state)
grep -q "pap=0" <<<"$out" && grep -q "session=public" <<<"$out" ||
    die "an entry under process was used: $out"
[ -z "$(entry)" ] || die "an entry under process was not removed"
ok "a policy change empties the cache; under process an entry is neither used nor kept"
