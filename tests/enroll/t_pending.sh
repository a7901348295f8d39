# The CA holds the request (PENDING): the helper polls with CertPoll
# (GetCertInitial), keeps the new key pending in the token (invisible under
# the credential's ID), reports "pending" with exit 5, and a later check or
# `retry` picks up the certificate for the same key. GET transport, an RA
# certificate and 3DES when the CA does not offer POST/AES.
. "$(dirname "$0")/lib.sh"
RA=1 ca_init
scep_start --pending 3 --no-post --no-aes
profile alice "[ca]" "poll_max = 1"
export EVERTOKEN_ENROLL_FAKE_TIME=$(now_epoch) # polls advance this clock instead of sleeping

rc=0; enr enroll 2>"$T/p1.err" || rc=$?
[ "$rc" = 5 ] || die "pending: exit $rc, want 5: $(cat "$T/p1.err")"
grep -q "GET PKCSReq .* PENDING" "$CA/requests.log" || die "no PENDING: $(cat "$CA/requests.log")"
grep -q "GET CertPoll .* PENDING" "$CA/requests.log" || die "no CertPoll: $(cat "$CA/requests.log")"
! grep -q "POST" "$CA/requests.log" || die "POST used although not advertised"
# The new pair waits invisibly: evertoken's native pending objects (seen only
# through CKA_EVERTOKEN_PENDING), else the standard sequence's "alice (pending)".
[ "$(pending_count alice)" = 2 ] || die "pending key pair not kept: $(pending_count alice) pending objects; $(token_objects)"
[ "$(count_objects Private alice)" = 0 ] || die "the pending key is visible under the credential's label: $(token_objects)"
[ "$(count_objects Certificate alice)" = 0 ] || die "certificate before issue"
enr status --json >"$T/st.json" || true
grep -q '"state": "pending".*"pending": true' "$T/st.json" || die "status does not say pending: $(cat "$T/st.json")"
grep -q "^pending|alice|the CA holds the request" "$T/notify.log" || die "pending not notified"
ok "PENDING: polled, new key kept pending, reported"

# The retry polls the same transaction and gets the certificate for the same key.
enr retry 2>"$T/p2.err" || die "retry failed: $(cat "$T/p2.err")"
grep -q "GET CertPoll .* SUCCESS" "$CA/requests.log" || die "no successful CertPoll: $(cat "$CA/requests.log")"
[ "$(grep -c 'PKCSReq' "$CA/requests.log")" = 1 ] || die "request sent twice instead of polled"
[ "$(count_objects Certificate alice)" = 1 ] && [ "$(count_objects Private alice)" = 1 ] || die "not stored: $(token_objects)"
! token_objects | grep -q pending || die "pending objects left: $(token_objects)"
[ "$(pending_count alice)" = 0 ] || die "pending objects left after the commit: $(pending_count alice)"
cred_works alice || die "credential does not work"
enr status --json >"$T/st.json" || die "status exit $?"
grep -q '"state": "valid".*"pending": false' "$T/st.json" || die "status after issue: $(cat "$T/st.json")"
ok "retry picked up the certificate (RA, GET, 3DES)"
