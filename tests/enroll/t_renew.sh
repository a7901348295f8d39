# Renewal: with a new key (RenewalReq signed by the old certificate and the
# old key in the token), with the same key, the old key retired for the grace
# period then destroyed, the server's early-renewal refusal surfaced as a
# clear error with the token unchanged, renew --force, and a failed
# post-processing script reported and re-run with `hooks rerun`.
. "$(dirname "$0")/lib.sh"
ca_init
scep_start
NOW=$(now_epoch)
at() { export EVERTOKEN_ENROLL_FAKE_TIME=$1; echo "$1" >"$CA/now"; }
pubkey_of() { openssl x509 -in "$1" -noout -pubkey; }

profile alice "[renewal]" "grace_period = 7d"
profile bob "[renewal]" "rekey = no"
enr enroll 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
token_cert alice >"$T/alice1.pem"; token_cert bob >"$T/bob1.pem"
s1=$(token_serial alice)

# Inside the 90-day lifetime but before the window (last third): nothing.
at $((NOW + 40 * 86400))
enr check 2>"$T/c.err" || die "check: $(cat "$T/c.err")"
[ "$(token_serial alice)" = "$s1" ] || die "renewed before the window"
! grep -q RenewalReq "$CA/requests.log" || die "RenewalReq before the window"

# In the window: renewal with a new key for alice, the same key for bob.
at $((NOW + 65 * 86400))
enr check 2>"$T/r.err" || die "renewal failed: $(cat "$T/r.err")"
[ "$(grep -c 'POST RenewalReq .* SUCCESS' "$CA/requests.log")" = 2 ] || die "no RenewalReq: $(cat "$CA/requests.log")"
token_cert alice >"$T/alice2.pem"; token_cert bob >"$T/bob2.pem"
[ "$(token_serial alice)" != "$s1" ] || die "alice not renewed"
! cmp -s <(pubkey_of "$T/alice1.pem") <(pubkey_of "$T/alice2.pem") || die "alice kept its key (rekey expected)"
cmp -s <(pubkey_of "$T/bob1.pem") <(pubkey_of "$T/bob2.pem") || die "bob's key changed (rekey = no)"
[ "$(openssl x509 -in "$T/bob2.pem" -noout -serial)" != "$(openssl x509 -in "$T/bob1.pem" -noout -serial)" ] || die "bob not renewed"
for n in alice bob; do
    [ "$(count_objects Certificate $n)" = 1 ] && [ "$(count_objects Private $n)" = 1 ] &&
        [ "$(count_objects Public $n)" = 1 ] || die "$n: not exactly one credential: $(token_objects)"
    cred_works $n || die "$n: renewed credential does not work"
done
if native; then
    # evertoken: the native commit retired the old pair and certificate
    # (invisible); only the new key is found under the credential's label.
    [ "$(pending_count alice)" = 0 ] || die "pending objects left: $(pending_count alice)"
    enr status --json | grep -q '"profile": "alice".*"rollover": "native"' || die "status does not say native: $(enr status --json)"
else
    token_objects | grep -q "^Private alice (retired $((NOW + 65 * 86400)))$" || die "old key not retired: $(token_objects)"
    ! token_objects | grep -q "(pending)" || die "pending objects left: $(token_objects)"
    enr status --json | grep -q '"profile": "alice".*"rollover": "standard"' || die "status does not say standard: $(enr status --json)"
fi
[ "$(token_objects | grep -c '^Certificate')" = 2 ] || die "old certificates left: $(token_objects)"
grep -q "^renewed|alice|renewed certificate serial" "$T/notify.log" || die "renewal not notified"
ok "renewed: alice with a new key (old key retired), bob with the same key"

# The grace period ends: the retired key is destroyed at the next check.
at $((NOW + 73 * 86400))
enr check 2>"$T/g.err" || die "check: $(cat "$T/g.err")"
if native; then
    # Purged by the token (rollover_grace = the profile's 7 days, module clock
    # following the helper's): nothing left to roll back to.
    rc=0; probe rollback alice >"$T/rb.out" || rc=$?
    [ "$rc" = 3 ] || die "the retired credential survived the grace period: rollback exit $rc: $(cat "$T/rb.out")"
else
    ! token_objects | grep -q retired || die "retired key kept past the grace period: $(token_objects)"
fi
cred_works alice || die "alice broken after the grace period"
ok "retired key destroyed after the grace period"

# Already renewed: nothing more to do for the renewed certificates.
enr renew 2>"$T/n.err" || die "renew: $(cat "$T/n.err")"
[ "$(grep -c 'RenewalReq' "$CA/requests.log")" = 2 ] || die "renewed twice"

# The CA refuses early renewal: a clear error, the token unchanged.
scep_stop
scep_start --renew-window 10
sed -i "s|^url = .*|url = $SCEP_URL|" "$PROFILES"/*.conf
before=$(token_objects)
rc=0; enr renew --force alice 2>"$T/early.err" || rc=$?
[ "$rc" = 7 ] || die "early renewal: exit $rc, want 7: $(cat "$T/early.err")"
grep -q "the CA refused the request: badRequest" "$T/early.err" || die "refusal not explained: $(cat "$T/early.err")"
grep -q "RenewalReq .* FAILURE: too early to renew" "$CA/requests.log" || die "server did not refuse"
[ "$(token_objects)" = "$before" ] || die "token changed by a refused renewal: $(token_objects)"
enr status --json >"$T/st.json" || true
grep -q '"last_error": "the CA refused the request' "$T/st.json" || die "status lacks the error: $(cat "$T/st.json")"
ok "early renewal refused by the CA: reported, token unchanged"

# renew --force renews outside the window when the CA allows it.
scep_stop
scep_start
sed -i "s|^url = .*|url = $SCEP_URL|" "$PROFILES"/*.conf
s2=$(token_serial alice)
enr renew --force alice 2>"$T/f.err" || die "renew --force: $(cat "$T/f.err")"
[ "$(token_serial alice)" != "$s2" ] || die "renew --force did not renew"
cred_works alice || die "alice broken after forced renewal"
ok "renew --force"

# A failing post-processing script: notified, status warns, hooks rerun fixes it.
cat >"$T/post.sh" <<SH
#!/bin/sh
[ -e "$T/post.ok" ] || { echo "not ready" >&2; exit 3; }
echo "\$EVERTOKEN_SERIAL" >"$T/post.ran"
SH
chmod 700 "$T/post.sh"
profile carol "[hooks]" "post_script = $T/post.sh"
enr enroll carol 2>"$T/h.err" || die "enroll carol: $(cat "$T/h.err")"
grep -q "^hook-failure|carol|post-processing script .* failed with exit code 3" "$T/notify.log" || die "hook failure not notified"
rc=0; enr status >/dev/null || rc=$?
[ "$rc" = 1 ] || die "status with a failed hook: exit $rc, want 1"
touch "$T/post.ok"
enr hooks rerun carol 2>"$T/hr.err" || die "hooks rerun: $(cat "$T/hr.err")"
[ "$(cat "$T/post.ran")" = "$(token_serial carol)" ] || die "rerun did not get the serial"
grep -q "^hook-success|carol|" "$T/notify.log" || die "rerun success not notified"
enr status --json | grep -q '"profile": "carol".*"hook": "ok"' || die "status still shows the hook failed"
ok "failed post-processing script notified and re-run"
