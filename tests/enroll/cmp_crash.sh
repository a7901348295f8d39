# kill -9 during a CMP kur leaves exactly one working credential:
#  - killed while the kur is in flight (the CA holds it, the helper polls):
#    the old credential is untouched and works; the next check finishes the
#    renewal with the pending key;
#  - killed right after each token mutation of the renewal in turn
#    (EVERTOKEN_ENROLL_CRASH_AT=N): the next run repairs the token to exactly
#    one working credential, the new one once its certificate was stored.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cmplib.sh"
if [ -n "${ET_PRELOAD:-}" ]; then
    echo "SKIP: crash test runs in the non-sanitized build only" >&2
    exit 77
fi
cmp_init
exactly_one() {
    local name=$1
    [ "$(count_objects Certificate "$name")" = 1 ] && [ "$(count_objects Private "$name")" = 1 ] &&
        [ "$(count_objects Public "$name")" = 1 ] && ! token_objects | grep -q "$name (pending)" &&
        [ "$(pending_count "$name")" = 0 ]
}

# In flight: the CA answers "waiting" to every poll; the helper is killed
# while it polls.
cmp_start
cmp_profile alice "[ca]" "poll_max = 1000"
enr enroll alice 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
s1=$(token_serial alice)
cmp_stop
: >"$CA/requests.log"
cmp_start --pending 1000
sed -i "s|^url = .*|url = $CMP_URL|" "$PROFILES/alice.conf"
LD_PRELOAD=${ET_PRELOAD:-} "$ENROLL_BIN" --profiles "$PROFILES" --state-dir "$STATE" renew --force alice 2>"$T/k.err" &
pid=$!
ET_PIDS+=("$pid")
for _ in $(seq 200); do grep -q "^pollReq: still waiting" "$CA/requests.log" && break; sleep 0.05; done
grep -q "^kur held" "$CA/requests.log" || die "no kur in flight: $(cat "$CA/requests.log") $(cat "$T/k.err")"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
[ "$(count_objects Certificate alice)" = 1 ] && [ "$(count_objects Private alice)" = 1 ] || die "after the kill: $(token_objects)"
[ "$(token_serial alice)" = "$s1" ] || die "the certificate changed although nothing was issued"
cred_works alice || die "the old credential does not work after the kill"
cmp_stop
cmp_start
sed -i "s|^url = .*|url = $CMP_URL|" "$PROFILES/alice.conf"
enr -v renew --force alice 2>"$T/k2.err" || die "renewal after the kill: $(cat "$T/k2.err")"
grep -q "reusing the new key pair of an earlier attempt" "$T/k2.err" || die "pending key not reused: $(cat "$T/k2.err")"
exactly_one alice && cred_works alice || die "after the renewal: $(token_objects)"
[ "$(token_serial alice)" != "$s1" ] || die "not renewed"
ok "killed while the kur was in flight: the old credential worked, the next check renewed with the pending key"

# After each token mutation of a kur renewal.
n=1
while :; do
    old=$(token_serial alice)
    rc=0
    EVERTOKEN_ENROLL_CRASH_AT=$n enr renew --force alice 2>"$T/crash.err" || rc=$?
    if [ "$rc" = 0 ]; then
        break # no step $n: every step has been crashed
    fi
    [ "$rc" = 137 ] || die "step $n: exit $rc, want SIGKILL (137): $(cat "$T/crash.err")"
    step=$(sed -n 's/.*killed after step [0-9]* (\(.*\))/\1/p' "$T/crash.err")
    enr check alice 2>"$T/repair.err" || die "repair after step $n failed: $(cat "$T/repair.err")"
    # Step 1 only generated the new pair: it stays pending for the next attempt.
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
ok "kur renewal killed after each of $((n - 1)) token steps: one working credential each time"
