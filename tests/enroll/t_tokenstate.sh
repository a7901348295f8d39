# The token side of the conditions: an absent token (notified once, retried
# every 300 s, enrolled once it appears), a PIN that is needed but not
# available, a wrong PIN, a duplicate subject refused unless allow_duplicate,
# and a broken profile reported with FILE:LINE.
. "$(dirname "$0")/lib.sh"
ca_init
scep_start

# Token absent.
profile alice
sed -i "s|^uri = .*|uri = pkcs11:token=later;object=alice|" "$PROFILES/alice.conf"
rc=0; enr check 2>"$T/a.err" || rc=$?
[ "$rc" = 6 ] || die "absent token: exit $rc, want 6: $(cat "$T/a.err")"
grep -q "token absent: no initialised token" "$T/a.err" || die "not explained: $(cat "$T/a.err")"
rc=0; enr retry 2>/dev/null || rc=$?
[ "$rc" = 6 ] || die "absent token on retry: exit $rc"
[ "$(grep -c '^token-absent|alice|' "$T/notify.log")" = 1 ] || die "want one token-absent notification: $(cat "$T/notify.log")"
enr status --json >"$T/st.json" || true
grep -q '"state": "retry".*"retry_at": "20' "$T/st.json" || die "no retry scheduled: $(cat "$T/st.json")"
case "$ENR_TOKEN_KIND" in
softhsm) softhsm2-util --init-token --free --label later --so-pin "$SO_PIN" --pin "$PIN" >/dev/null ;;
evertoken) DEMO_SO=$SO_PIN DEMO_PIN=$PIN "$CLI" init --label later --so-pin env:DEMO_SO --pin env:DEMO_PIN >/dev/null ;;
esac
enr retry 2>"$T/r.err" || die "retry after the token appeared: $(cat "$T/r.err")"
grep -q "^enrolled|alice|" "$T/notify.log" || die "not enrolled after the token appeared"
ok "absent token: notified once, retried, enrolled when it appeared"

# PIN needed (no pin_file, token not unlocked) and wrong PIN.
profile bob
sed -i '/^pin_file = /d' "$PROFILES/bob.conf"
rc=0; enr enroll bob 2>"$T/p.err" || rc=$?
[ "$rc" = 6 ] || die "no PIN: exit $rc, want 6: $(cat "$T/p.err")"
grep -q "PIN needed" "$T/p.err" || die "not explained: $(cat "$T/p.err")"
grep -q "^pin-needed|bob|" "$T/notify.log" || die "pin-needed not notified"
enr status --json >"$T/st.json" || true
python3 -c 'import json,sys; p=[p for p in json.load(open(sys.argv[1]))["profiles"] if p["profile"]=="bob"][0]; assert p["retry_at"], p' "$T/st.json" ||
    die "PIN needed: no retry scheduled: $(cat "$T/st.json")"
printf '9999\n' >"$T/badpin"; chmod 600 "$T/badpin"
sed -i "s|^\\[hooks\\]|[token]\\npin_file = $T/badpin\\n[hooks]|" "$PROFILES/bob.conf"
rc=0; enr enroll bob 2>"$T/w.err" || rc=$?
[ "$rc" = 6 ] || die "wrong PIN: exit $rc, want 6: $(cat "$T/w.err")"
grep -q "wrong PIN (CKR_PIN_INCORRECT)" "$T/w.err" || die "wrong PIN not explained: $(cat "$T/w.err")"
! grep -q 9999 "$T/w.err" "$STATE/enroll.db" "$T/notify.log" || die "the PIN leaked"
enr status --json >"$T/st.json" || true
python3 -c 'import json,sys; p=[p for p in json.load(open(sys.argv[1]))["profiles"] if p["profile"]=="bob"][0]; assert p["retry_at"] is None, p' "$T/st.json" ||
    die "a refused PIN is retried (lockout risk): $(cat "$T/st.json")"
ok "PIN needed and wrong PIN reported"

# A second credential with alice's subject: refused unless allow_duplicate.
profile carol
sed -i "s|^subject = .*|subject = CN=alice, O=evertoken tests|;s|^san = .*|san = DNS:alice.example|" "$PROFILES/carol.conf"
sed -i "s|^uri = .*|uri = pkcs11:token=later;object=carol|" "$PROFILES/carol.conf"
rc=0; enr enroll carol 2>"$T/d.err" || rc=$?
[ "$rc" = 7 ] || die "duplicate: exit $rc, want 7: $(cat "$T/d.err")"
grep -q 'already holds a valid certificate for CN=alice, O=evertoken tests ("alice")' "$T/d.err" || die "not explained: $(cat "$T/d.err")"
sed -i "s|^\\[token\\]|allow_duplicate = true\\n[token]|" "$PROFILES/carol.conf"
enr enroll carol 2>"$T/d2.err" || die "allow_duplicate: $(cat "$T/d2.err")"
grep -q "^enrolled|carol|" "$T/notify.log" || die "carol not enrolled"
ok "duplicate subject refused unless allow_duplicate"

# A broken profile: precise error, status critical, the others still work.
printf '[ca]\nurl = http://x\nanchors = %s\n[certificate]\nsubject = CN=x\nkey_size = 512\n[token]\nuri = pkcs11:\n' "$CA/ca.pem" >"$PROFILES/broken.conf"
rc=0; enr validate 2>"$T/v.err" >/dev/null || rc=$?
[ "$rc" = 3 ] || die "validate: exit $rc, want 3"
grep -q "broken.conf:6: \[certificate\] key_size: '512' is not an RSA size" "$T/v.err" || die "validate message: $(cat "$T/v.err")"
rc=0; enr status >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || die "status with a broken profile: exit $rc, want 2"
enr check alice 2>/dev/null || die "a broken profile stopped the others"
ok "broken profile: FILE:LINE error, status critical"
