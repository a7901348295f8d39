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
# (SQLite's -wal/-shm companions appear when the state is read: not state.)
snap() {
    { ls -la "$EVERTOKEN_DIR"; if [ -d "$STATE" ]; then find "$STATE" -type f ! -name '*-wal' ! -name '*-shm' -exec sha256sum {} +; fi; } 2>&1 | sort
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
