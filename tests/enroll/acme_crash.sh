# kill -9 during an ACME renewal leaves exactly one working credential:
#  - killed while the certificate is being downloaded (the front holds the
#    download): the old credential is untouched and works; the next check
#    renews with the pending key of the interrupted attempt;
#  - killed right after each token mutation of the renewal in turn
#    (EVERTOKEN_ENROLL_CRASH_AT=N): the next run repairs the token to exactly
#    one working credential, the new one once its certificate was stored.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/acmelib.sh"
if [ -n "${ET_PRELOAD:-}" ]; then
    echo "SKIP: crash test runs in the non-sanitized build only" >&2
    exit 77
fi
exactly_one() {
    local name=$1
    [ "$(count_objects Certificate "$name")" = 1 ] && [ "$(count_objects Private "$name")" = 1 ] &&
        [ "$(count_objects Public "$name")" = 1 ] && ! token_objects | grep -q "$name (pending)" &&
        [ "$(pending_count "$name")" = 0 ]
}
acme_init
acme_start
acme_front_start
acme_profile alice "agree_tos = true"
enr enroll alice 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
s1=$(token_serial alice)

acme_mode cert-slow
"$ENROLL_BIN" --profiles "$PROFILES" --state-dir "$STATE" renew --force alice 2>"$T/k.err" &
pid=$!
ET_PIDS+=("$pid")
for _ in $(seq 400); do grep -q "^certificate requested" "$ACME_DIR/front.log" 2>/dev/null && break; sleep 0.05; done
grep -q "^certificate requested" "$ACME_DIR/front.log" || die "no download in flight: $(cat "$T/k.err")"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
acme_mode ""
[ "$(count_objects Certificate alice)" = 1 ] && [ "$(count_objects Private alice)" = 1 ] || die "after the kill: $(token_objects)"
[ "$(token_serial alice)" = "$s1" ] || die "the certificate changed although none was stored"
cred_works alice || die "the old credential does not work after the kill"
enr -v renew --force alice 2>"$T/k2.err" || die "renewal after the kill: $(cat "$T/k2.err")"
grep -q "reusing the new key pair of an earlier attempt" "$T/k2.err" || die "pending key not reused: $(cat "$T/k2.err")"
exactly_one alice && cred_works alice || die "after the renewal: $(token_objects)"
[ "$(token_serial alice)" != "$s1" ] || die "not renewed"
ok "killed while downloading the certificate: the old credential worked, the next check renewed with the pending key"

n=1
while :; do
    old=$(token_serial alice)
    rc=0
    EVERTOKEN_ENROLL_CRASH_AT=$n enr renew --force alice 2>"$T/crash.err" || rc=$?
    [ "$rc" = 0 ] && break # no step $n: every step has been crashed
    [ "$rc" = 137 ] || die "step $n: exit $rc, want SIGKILL (137): $(cat "$T/crash.err")"
    step=$(sed -n 's/.*killed after step [0-9]* (\(.*\))/\1/p' "$T/crash.err")
    enr check alice 2>"$T/repair.err" || die "repair after step $n failed: $(cat "$T/repair.err")"
    [ "$(count_objects Certificate alice)" = 1 ] && [ "$(count_objects Private alice)" = 1 ] ||
        die "after step $n ($step) and repair: $(token_objects)"
    cred_works alice || die "after step $n ($step) and repair the credential does not work"
    if [ $n -ge 2 ]; then
        exactly_one alice || die "after step $n ($step) and repair: $(token_objects)"
        [ "$(token_serial alice)" != "$old" ] || die "step $n ($step): the stored new certificate was lost"
    fi
    enr renew --force alice 2>"$T/clean.err" || die "renewal after step $n: $(cat "$T/clean.err")"
    exactly_one alice || die "not clean after step $n: $(token_objects)"
    echo "ok: killed after step $n ($step): one working credential after repair"
    n=$((n + 1))
done
if native; then min=3; else min=9; fi
[ $n -ge $min ] || die "only $((n - 1)) steps crashed; the rollover has more"
ok "ACME renewal killed after each of $((n - 1)) token steps: one working credential each time"

# The CA keeps the order processing beyond the polls of one check: the check
# ends PENDING (exit 5) with the order as its transaction and the new key
# kept; the next check resumes that order and stores its certificate.
acme_mode order-processing
s2=$(token_serial alice)
expect_rc 5 enr -v --now "@$(date +%s)" renew --force alice 2>"$T/p.err"
grep -q "the CA is still processing order https://127.0.0.1:14001/my-order/" "$T/p.err" || die "not pending: $(cat "$T/p.err")"
[ "$(token_serial alice)" = "$s2" ] && cred_works alice || die "the credential changed while pending"
enr status >"$T/st.txt" || true
grep -q "pending" "$T/st.txt" || die "status does not show pending: $(cat "$T/st.txt")"
acme_mode ""
enr -v renew --force alice 2>"$T/p2.err" || die "resume: $(cat "$T/p2.err")"
grep -q "resuming the ACME order https://127.0.0.1:14001/my-order/" "$T/p2.err" || die "order not resumed: $(cat "$T/p2.err")"
! grep -q "profile alice: ACME order https" "$T/p2.err" || die "a new order was made: $(cat "$T/p2.err")"
exactly_one alice && cred_works alice || die "after the resume: $(token_objects)"
[ "$(token_serial alice)" != "$s2" ] || die "not renewed by the resumed order"
ok "an order still processing: PENDING, then the next check resumes the same order with the same key"
