# The CA answers "waiting" (CMP polling, RFC 9810 section 5.3.22): the helper
# sends pollReq until the certificate comes, within one check when the CA
# decides soon; when it holds the request longer than poll_max polls, the
# helper abandons the transaction (an error message tells the CA), keeps the
# new key pending in the token, reports "pending" (exit 5) and the next check
# asks again with the same key.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cmplib.sh"
cmp_init
export EVERTOKEN_ENROLL_FAKE_TIME=$(now_epoch) # polls advance this clock instead of sleeping

# Decided after two polls: one check.
cmp_start --pending 2
cmp_profile alice "[ca]" "poll_max = 5"
enr -v enroll alice 2>"$T/a.err" || die "enroll with polling: $(cat "$T/a.err")"
grep -q "the CA holds the request (waiting); polling (2)" "$T/a.err" || die "no polling: $(cat "$T/a.err")"
[ "$(grep -c '^pollReq: still waiting' "$CA/requests.log")" = 2 ] && grep -q "^pollReq: released" "$CA/requests.log" ||
    die "CA log: $(cat "$CA/requests.log")"
grep -q "^ir issued serial" "$CA/requests.log" || die "not issued: $(cat "$CA/requests.log")"
cred_works alice || die "alice's credential does not work"
ok "waiting answered by pollReq until the certificate came, in one check"
cmp_stop

# Held longer than poll_max polls: pending, the new key kept, then a later check.
: >"$CA/requests.log"
cmp_start --pending 3
cmp_profile bob "[ca]" "poll_max = 1"
rm "$PROFILES/alice.conf"
rc=0; enr enroll bob 2>"$T/b1.err" || rc=$?
[ "$rc" = 5 ] || die "pending: exit $rc, want 5: $(cat "$T/b1.err")"
grep -q "abandoning this transaction" "$T/b1.err" || die "$(cat "$T/b1.err")"
grep -q "^error from the client: PKIStatus: rejection" "$CA/requests.log" || die "the CA was not told: $(cat "$CA/requests.log")"
[ "$(pending_count bob)" = 2 ] || die "pending key pair not kept: $(pending_count bob); $(token_objects)"
[ "$(count_objects Private bob)" = 0 ] && [ "$(count_objects Certificate bob)" = 0 ] || die "visible objects: $(token_objects)"
enr status --json >"$T/st.json" || true
grep -q '"state": "pending"' "$T/st.json" || die "status does not say pending: $(cat "$T/st.json")"
grep -q "^pending|bob|the CA holds the request" "$T/notify.log" || die "pending not notified"
ok "held beyond poll_max: transaction abandoned, the CA told, new key kept pending, exit 5"

enr -v retry bob 2>"$T/b2.err" || die "retry: $(cat "$T/b2.err")"
grep -q "reusing the new key pair of an earlier attempt" "$T/b2.err" || die "new key not reused: $(cat "$T/b2.err")"
grep -q "^ir issued serial" "$CA/requests.log" || die "not issued: $(cat "$CA/requests.log")"
[ "$(pending_count bob)" = 0 ] && [ "$(count_objects Certificate bob)" = 1 ] && [ "$(count_objects Private bob)" = 1 ] || die "bob: $(token_objects)"
cred_works bob || die "bob's credential does not work"
ok "the next check asked again with the pending key and stored the certificate"
