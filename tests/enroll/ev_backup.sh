# Backup and restore of a token together with the helper's state
# (`evertoken backup --with-helper-state`, docs/cli.md): after a wiped
# machine is restored from the one bundle file, the helper resumes without
# re-enrolling — the same certificate, the pending SCEP transaction polled
# under its id, the learned anchors and chain files back in place. A damaged
# bundle, a wrong path and a newer state are refused with precise errors and
# nothing changed.
. "$(dirname "$0")/lib.sh"
ca_init
scep_start
export EVERTOKEN_ENROLL_FAKE_TIME=$(now_epoch) # polls advance this clock instead of sleeping
profile alice
enr enroll alice 2>"$T/e.err" || die "enroll alice: $(cat "$T/e.err")"
SER_A=$(token_serial alice)
# bob: the CA holds the request (a second endpoint answering PENDING).
scep_start --pending 3
profile bob "[ca]" "poll_max = 1"
expect_rc 5 enr enroll bob
txid() {
    python3 -c 'import sqlite3, sys
r = sqlite3.connect(sys.argv[1]).execute("SELECT pending_txid FROM profile_state WHERE profile = ?", (sys.argv[2],)).fetchone()
print(r[0] if r and r[0] else "")' "$STATE/enroll.db" "$1"
}
TX_B=$(txid bob)
[ -n "$TX_B" ] || die "no pending transaction for bob"
# An anchor learned by a CA rollover lives in the state directory too.
cp "$CA/ca.pem" "$STATE/certs/alice/anchors.learned.pem"
n_req() { grep -c "PKCSReq" "$CA/requests.log" || true; }
[ "$(n_req)" = 2 ] || die "requests: $(cat "$CA/requests.log")"

# The bundle: one file, 0600; an existing file is never overwritten.
"$CLI" backup --token "$LABEL" --with-helper-state --enroll-state "$STATE" "$T/full.bak" \
    >"$T/b.out" 2>&1 || die "backup: $(cat "$T/b.out")"
[ "$(stat -c %a "$T/full.bak")" = 600 ] || die "bundle mode $(stat -c %a "$T/full.bak")"
grep -q "helper state of .* included" "$T/b.out" || die "backup output: $(cat "$T/b.out")"
expect_rc 7 "$CLI" backup --token "$LABEL" --with-helper-state --enroll-state "$STATE" "$T/full.bak"
expect_rc 2 "$CLI" backup --token "$LABEL" --enroll-state "$STATE" "$T/x.bak"
expect_rc 3 "$CLI" backup --token "$LABEL" --with-helper-state --enroll-state "$T/nostate" "$T/y.bak"
[ ! -e "$T/y.bak" ] || die "a failed backup left $T/y.bak"
ok "backup with the helper state: one 0600 file"

# The machine is wiped: no token, no helper state.
cp -a "$STATE" "$T/state.orig"
rm -rf "$EVERTOKEN_DIR"/* "$STATE"

# Bad input first: nothing may change.
# (SQLite's -wal/-shm companions appear when the state is read, the empty
# lock files enroll.lock and enroll.inuse when it is locked: not state.)
snap() {
    { ls -la "$EVERTOKEN_DIR"; if [ -d "$STATE" ]; then find "$STATE" -type f ! -name '*-wal' ! -name '*-shm' ! -name enroll.lock ! -name enroll.inuse -exec sha256sum {} +; fi; } 2>&1 | sort
}
BEFORE=$(snap)
cp "$T/full.bak" "$T/damaged.bak"
size=$(stat -c %s "$T/damaged.bak")
printf 'XXXXXXXXXXXXXXXX' | dd of="$T/damaged.bak" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
rc=0; "$CLI" restore "$T/damaged.bak" --enroll-state "$STATE" 2>"$T/d.err" || rc=$?
[ "$rc" = 6 ] || die "damaged bundle: exit $rc: $(cat "$T/d.err")"
grep -q "not a usable evertoken backup bundle: .*damaged" "$T/d.err" || die "damaged: $(cat "$T/d.err")"
head -c $((size / 3)) "$T/full.bak" >"$T/short.bak"
expect_rc 6 "$CLI" restore "$T/short.bak" --enroll-state "$STATE"
rc=0; "$CLI" restore "$T/nosuch.bak" --enroll-state "$STATE" 2>"$T/n.err" || rc=$?
[ "$rc" = 3 ] && grep -q "cannot read .*nosuch.bak: No such file" "$T/n.err" || die "wrong path: exit $rc: $(cat "$T/n.err")"
[ "$(snap)" = "$BEFORE" ] || die "a refused restore changed something"
ok "damaged, truncated bundle and a wrong path: refused, nothing changed"

# Restore: token and state back, the helper resumes.
"$CLI" restore "$T/full.bak" --enroll-state "$STATE" >"$T/r.out" 2>&1 || die "restore: $(cat "$T/r.out")"
grep -q "restored the helper state" "$T/r.out" || die "restore output: $(cat "$T/r.out")"
[ "$(stat -c %a "$STATE")" = 700 ] && [ "$(stat -c %a "$STATE/enroll.db")" = 600 ] ||
    die "restored modes: $(ls -la "$STATE")"
cmp -s "$STATE/certs/alice/anchors.learned.pem" "$CA/ca.pem" || die "learned anchor not restored"
cmp -s "$STATE/certs/alice/fullchain.pem" "$T/state.orig/certs/alice/fullchain.pem" || die "chain files not restored"
[ "$(txid bob)" = "$TX_B" ] || die "pending transaction id not restored: $(txid bob)"
enr status --json >"$T/st.json" || true
grep -q "\"serial\": \"$SER_A\"" "$T/st.json" || grep -qi "\"serial\": \"$(tr 'A-F' 'a-f' <<<"$SER_A")\"" "$T/st.json" ||
    die "status after restore: $(cat "$T/st.json")"
export EVERTOKEN_ENROLL_FAKE_TIME=$((EVERTOKEN_ENROLL_FAKE_TIME + 3600)) # an hour later
enr check alice 2>"$T/c.err" || die "check alice after restore: $(cat "$T/c.err")"
[ "$(token_serial alice)" = "$SER_A" ] || die "alice re-enrolled"
[ "$(grep -c '^enrolled|alice|' "$T/notify.log")" = 1 ] || die "alice enrolled again: $(cat "$T/notify.log")"
enr retry bob 2>"$T/p.err" || die "retry bob after restore: $(cat "$T/p.err")"
grep -q "CertPoll $TX_B SUCCESS" "$CA/requests.log" || die "the pending transaction was not polled: $(cat "$CA/requests.log")"
[ "$(n_req)" = 2 ] || die "a new request was sent instead of polling: $(cat "$CA/requests.log")"
cred_works bob || die "bob's credential does not work"
ok "restored: same certificate, pending transaction $TX_B polled, nothing re-enrolled"

# The state now is newer than the bundle's: refused without --force.
BEFORE=$(snap)
rc=0; "$CLI" restore "$T/full.bak" --enroll-state "$STATE" 2>"$T/nw.err" || rc=$?
[ "$rc" = 7 ] && grep -q "helper state in .* is newer .* add --force" "$T/nw.err" || die "newer state: exit $rc: $(cat "$T/nw.err")"
[ "$(snap)" = "$BEFORE" ] || die "the refused restore changed something: $(diff <(echo "$BEFORE") <(snap))"
"$CLI" restore "$T/full.bak" --slot 0 --force --enroll-state "$STATE" >"$T/f.out" 2>&1 || die "restore --force: $(cat "$T/f.out")"
[ "$(txid bob)" = "$TX_B" ] || die "--force did not put the backup's state back"
ok "a newer state is replaced only with --force"

# A plain keystore backup still restores as before; --enroll-state does not apply to it.
"$CLI" backup --token "$LABEL" "$T/plain.bak" >/dev/null || die "plain backup"
expect_rc 2 "$CLI" restore "$T/plain.bak" --enroll-state "$STATE"
ok "plain backups unchanged"

# ---- Refusals before anything changes (review findings) -------------------
# The token must not change when the state part is refused: the token is
# changed after the backup, so a restored token would show.
tok_sum() { sha256sum "$EVERTOKEN_DIR"/token-*.db | sort; }
DEMO_SO=$SO_PIN DEMO_SO2=87654321 "$CLI" pin change --so --slot 0 --so-pin env:DEMO_SO \
    --new-pin env:DEMO_SO2 >/dev/null || die "SO PIN change"
refused() { # EXIT PATTERN CMD…: exit EXIT, PATTERN on stderr, token and state unchanged
    local want=$1 pat=$2 rc=0 before tb
    shift 2
    before=$(snap)
    tb=$(tok_sum)
    "$@" 2>"$T/rf.err" || rc=$?
    [ "$rc" = "$want" ] && grep -q -- "$pat" "$T/rf.err" || die "$*: exit $rc: $(cat "$T/rf.err")"
    [ "$(snap)" = "$before" ] && [ "$(tok_sum)" = "$tb" ] ||
        die "$*: refused but changed something: $(diff <(echo "$before") <(snap))"
}
# A check running (the helper holds enroll.lock).
rm -f "$T/held"
(exec 9>>"$STATE/enroll.lock" && flock 9 && touch "$T/held" && exec sleep 30) &
holder=$!
ET_PIDS+=("$holder")
for _ in $(seq 200); do [ -e "$T/held" ] && break; sleep 0.05; done
refused 1 "evertoken-enroll is running a check on .*enroll.lock.*nothing changed" \
    "$CLI" restore "$T/full.bak" --slot 0 --force --enroll-state "$STATE"
# backup waits for the check (and says so) rather than mixing moments.
"$CLI" backup --token "$LABEL" --with-helper-state --enroll-state "$STATE" "$T/wait.bak" \
    >"$T/w.out" 2>&1 &
bk=$!
ET_PIDS+=("$bk")
for _ in $(seq 200); do grep -q "waiting up to" "$T/w.out" && break; sleep 0.05; done
grep -q "evertoken-enroll is running a check on .*waiting up to" "$T/w.out" ||
    die "backup did not wait for the check: $(cat "$T/w.out")"
[ ! -e "$T/wait.bak" ] || die "backup wrote its bundle while a check held the lock"
kill "$holder"
wait "$holder" 2>/dev/null || true
rc=0; wait "$bk" || rc=$?
[ "$rc" = 0 ] && [ -s "$T/wait.bak" ] || die "backup after the check: exit $rc: $(cat "$T/w.out")"
ok "a running check: restore refused with nothing changed, backup waits for it"

# The service running, idle: it has the state open, restore is refused.
(unset EVERTOKEN_ENROLL_FAKE_TIME; exec "$ENROLL_BIN" --profiles "$PROFILES" --state-dir "$STATE" run) \
    2>"$T/svc.err" &
svc=$!
ET_PIDS+=("$svc")
for _ in $(seq 600); do ! flock -n "$STATE/enroll.inuse" true 2>/dev/null && break; sleep 0.05; done
! flock -n "$STATE/enroll.inuse" true || die "the service does not hold enroll.inuse: $(cat "$T/svc.err")"
for _ in $(seq 600); do flock -n "$STATE/enroll.lock" true && break; sleep 0.1; done # its first checks done
refused 1 "the enrollment service (evertoken-enroll run) .* has the state in .* open: stop it first" \
    "$CLI" restore "$T/full.bak" --slot 0 --force --enroll-state "$STATE"
kill -TERM "$svc"
wait "$svc" 2>/dev/null || true
ok "the service running: restore refused with nothing changed"

# A helper started while a restore holds enroll.inuse waits for it, then
# locks the file of the state that is there afterwards (the restore
# exchanged the directory meanwhile), not the replaced one.
rm -f "$T/held"
(exec 9>>"$STATE/enroll.inuse" && flock -x 9 && touch "$T/held" && exec sleep 30) &
holder=$!
ET_PIDS+=("$holder")
for _ in $(seq 200); do [ -e "$T/held" ] && break; sleep 0.05; done
ino=$(stat -c %i "$STATE/enroll.inuse")
(unset EVERTOKEN_ENROLL_FAKE_TIME; exec "$ENROLL_BIN" --profiles "$PROFILES" --state-dir "$STATE" run) \
    2>"$T/svc2.err" &
svc=$!
ET_PIDS+=("$svc")
blocked() { grep -Eq -- "-> FLOCK +ADVISORY +READ +$svc [0-9a-f]+:[0-9a-f]+:$ino " /proc/locks; }
for _ in $(seq 600); do blocked && break; sleep 0.05; done
blocked || die "the service does not wait for the restore's lock: $(cat /proc/locks) $(cat "$T/svc2.err")"
mv "$STATE" "$T/state.prev" # what the restore's exchange does
cp -a "$T/state.prev" "$STATE"
kill "$holder"
wait "$holder" 2>/dev/null || true
for _ in $(seq 600); do ! flock -n "$STATE/enroll.inuse" true && break; sleep 0.05; done
! flock -n "$STATE/enroll.inuse" true || die "the service holds the replaced state, not the new one: $(cat "$T/svc2.err")"
kill -TERM "$svc"
wait "$svc" 2>/dev/null || true
rm -rf "$T/state.prev"
ok "a helper started during a restore waits, then opens the restored state"

# The state directory is no directory: refused before the token changes.
mv "$STATE" "$T/state.keep"
echo junk >"$STATE"
BEFORE_TOK=$(tok_sum)
rc=0; "$CLI" restore "$T/full.bak" --slot 0 --force --enroll-state "$STATE" 2>"$T/nd.err" || rc=$?
[ "$rc" = 1 ] && grep -q "$STATE is not a directory" "$T/nd.err" || die "state a file: exit $rc: $(cat "$T/nd.err")"
[ "$(tok_sum)" = "$BEFORE_TOK" ] && [ "$(cat "$STATE")" = junk ] || die "a refused restore changed the token"
rm -f "$STATE"
# A symbolic link to a directory (e.g. on another disk) is followed: the
# link stays, the directory it leads to gets the state.
ln -s "$T/state.keep" "$STATE"
"$CLI" restore "$T/full.bak" --slot 0 --force --enroll-state "$STATE" >"$T/sl.out" 2>&1 ||
    die "restore through a symbolic link: $(cat "$T/sl.out")"
[ -L "$STATE" ] && [ "$(readlink "$STATE")" = "$T/state.keep" ] || die "the link was replaced: $(ls -la "$T")"
[ "$(txid bob)" = "$TX_B" ] && [ "$(stat -c %a "$T/state.keep")" = 700 ] || die "state behind the link not restored"
rm "$STATE"
mv "$T/state.keep" "$STATE"
ok "a state path that is a file is refused; a symbolic link to a directory is followed"

# A state never locked (no enroll.lock): backup and restore create it 0600.
rm -f "$STATE/enroll.lock"
"$CLI" backup --token "$LABEL" --with-helper-state --enroll-state "$STATE" "$T/nl.bak" >/dev/null 2>&1 ||
    die "backup of a never-locked state"
[ "$(stat -c %a "$STATE/enroll.lock")" = 600 ] || die "enroll.lock: $(ls -la "$STATE")"
ok "a never-locked state gets its enroll.lock (0600)"

# The bundle's own claim of its state's time is not trusted: the state in
# place is newer than the database in the bundle, whatever meta says.
enr check alice 2>/dev/null || true
python3 - "$STATE/enroll.db" <<'PY'
import sqlite3, sys
d = sqlite3.connect(sys.argv[1]); d.execute("INSERT INTO events(time, profile, kind, detail) VALUES (4000000000, 'alice', 'test', '')"); d.commit()
PY
cp "$T/full.bak" "$T/lie.bak"
python3 -c 'import sqlite3, sys; d = sqlite3.connect(sys.argv[1]); d.execute("UPDATE meta SET value = ? WHERE key = ?", ("9999999999", "state_latest")); d.commit()' "$T/lie.bak"
refused 7 "helper state in .* is newer .* add --force" "$CLI" restore "$T/lie.bak" --enroll-state "$STATE"
# A file twice in a bundle: damaged (exit 6).
cp "$T/full.bak" "$T/dup.bak"
python3 - "$T/dup.bak" <<'PY' # (a crafted file: the table without its key)
import sqlite3, sys
d = sqlite3.connect(sys.argv[1])
d.executescript("ALTER TABLE files RENAME TO f0; CREATE TABLE files AS SELECT * FROM f0; DROP TABLE f0;")
d.execute("INSERT INTO files SELECT * FROM files WHERE part = ? AND name = ?", ("state", "enroll.db"))
d.commit()
PY
refused 6 "not a usable evertoken backup bundle: it holds state/enroll.db twice (damaged)" \
    "$CLI" restore "$T/dup.bak" --slot 0 --force --enroll-state "$STATE"
ok "a forged state time and a duplicated file are refused"
