# evertoken's native rollover driven by the helper (docs/enrollment.md
# "Rollover on an evertoken token"): the helper detects the vendor interface
# and says so (log, status); a renewal leaves no label tags, only the new
# credential visible, no pending objects; the retired credential can be rolled
# back through the vendor interface while the grace period lasts, and the
# helper copes with the rolled-back credential; grace_period = 0 purges the
# old credential at once; EVERTOKEN_ENROLL_ROLLOVER=standard falls back to the
# standard-call sequence on the same token, whose retired keys the helper
# still expires.
. "$(dirname "$0")/lib.sh"
[ "$ENR_TOKEN_KIND" = evertoken ] || die "evertoken only"
ca_init
scep_start
pubkey_of() { openssl x509 -in "$1" -noout -pubkey; }

profile alice
enr -v enroll alice 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
grep -q "native rollover" "$T/e.err" || die "the helper did not say it uses the native rollover: $(cat "$T/e.err")"
grep -q "evertoken vendor interface 1\.[1-9]" "$T/e.err" || die "detection not logged: $(cat "$T/e.err")"
enr status --json | grep -q '"profile": "alice".*"rollover": "native"' || die "status: $(enr status --json)"
{ enr status || true; } | grep -q "^alice .* valid  *native " || die "status table lacks the path: $(enr status)"
token_cert alice >"$T/a1.pem"; s1=$(token_serial alice)
[ "$(pending_count alice)" = 0 ] || die "pending objects after the first enrollment"
ok "first enrollment through a pending pair and a native commit; status says native"

enr renew --force alice 2>"$T/r.err" || die "renew: $(cat "$T/r.err")"
token_cert alice >"$T/a2.pem"; s2=$(token_serial alice)
[ "$s2" != "$s1" ] || die "not renewed"
! cmp -s <(pubkey_of "$T/a1.pem") <(pubkey_of "$T/a2.pem") || die "no new key"
[ "$(count_objects Certificate alice)" = 1 ] && [ "$(count_objects Private alice)" = 1 ] &&
    [ "$(count_objects Public alice)" = 1 ] || die "not exactly one visible credential: $(token_objects)"
! token_objects | grep -q "(retired\|(pending)" || die "label tags on a native token: $(token_objects)"
[ "$(pending_count alice)" = 0 ] || die "pending objects left"
cred_works alice || die "the renewed credential does not work"
ok "renewal: only the new credential visible (old key and certificate retired, invisible)"

# The old credential is retained: the vendor interface rolls it back.
probe rollback alice >"$T/rb.out" || die "rollback failed: $(cat "$T/rb.out")"
[ "$(token_serial alice)" = "$s1" ] || die "rollback did not restore the old certificate"
cred_works alice || die "the rolled-back credential does not work (old key not restored)"
[ "$(count_objects Private alice)" = 1 ] || die "after rollback: $(token_objects)"
# The helper sees the restored certificate; it was renewed already, so an
# ordinary renewal is refused (restore from backup), --force renews again.
enr check alice 2>"$T/c.err" || die "check after rollback: $(cat "$T/c.err")"
enr status --json | grep -q "\"profile\": \"alice\", \"subject\": [^}]*\"serial\": \"$s1\"" || die "status: $(enr status --json)"
enr renew --force alice 2>"$T/r2.err" || die "renew after rollback: $(cat "$T/r2.err")"
[ "$(token_serial alice)" != "$s1" ] && [ "$(token_serial alice)" != "$s2" ] || die "not renewed after rollback"
cred_works alice || die "broken after the second renewal"
ok "retired credential rolled back through ET_RolloverRollback; helper renews from there"

# The fallback on the same token: labels tell the retired key, and the
# helper expires it after the grace period; the next native renewal works
# next to it.
EVERTOKEN_ENROLL_ROLLOVER=standard enr renew --force alice 2>"$T/s.err" || die "standard renewal: $(cat "$T/s.err")"
grep -q "standard rollover" "$T/s.err" || die "the forced fallback is not logged: $(cat "$T/s.err")"
token_objects | grep -q "^Private alice (retired " || die "standard path: no retired label: $(token_objects)"
enr status --json | grep -q '"profile": "alice".*"rollover": "standard"' || die "status: $(enr status --json)"
cred_works alice || die "broken after the standard renewal"
enr renew --force alice 2>"$T/n.err" || die "native renewal next to a standard-retired key: $(cat "$T/n.err")"
cred_works alice || die "broken after switching back"
enr --now "$(($(now_epoch) + 8 * 86400))" check alice 2>"$T/x.err" || true
! token_objects | grep -q "retired" || die "the standard-retired key outlived its grace period: $(token_objects)"
ok "EVERTOKEN_ENROLL_ROLLOVER=standard: standard sequence on evertoken, its retired key expired later"

# grace_period = 0: the helper sets the token's rollover_grace to 0 and
# purges at once, so nothing can be rolled back.
profile bob "[renewal]" "grace_period = 0"
enr enroll bob 2>"$T/b.err" || die "enroll bob: $(cat "$T/b.err")"
enr -v renew --force bob 2>"$T/b2.err" || die "renew bob: $(cat "$T/b2.err")"
grep -q "rollover_grace 0 s" "$T/b.err" "$T/b2.err" || die "rollover_grace not set: $(cat "$T/b.err" "$T/b2.err")"
grep -q "retired objects past the grace period destroyed" "$T/b2.err" || die "no purge: $(cat "$T/b2.err")"
rc=0; probe rollback bob >"$T/rb2.out" || rc=$?
[ "$rc" = 3 ] || die "grace 0: the old credential was kept (rollback exit $rc)"
cred_works bob || die "bob broken"
ok "grace_period = 0: rollover_grace 0 and the old credential purged at once"
