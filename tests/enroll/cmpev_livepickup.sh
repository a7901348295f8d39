# Live pickup over CMP: a long-running PKCS#11 application (enr_probe watch,
# tests/enroll/enr_probe.c) keeps signing with the credential looked up by
# CKA_ID while evertoken-enroll renews it three times by kur; it reports each
# new serial without a restart and never sees a failed lookup or a mismatched
# pair (evertoken's native commit). evertoken only, as ev_livepickup.sh.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cmplib.sh"
[ "$ENR_TOKEN_KIND" = evertoken ] || die "evertoken only"
cmp_init
cmp_start
cmp_profile alice
enr enroll alice 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
serials=("$(token_serial alice)")
LD_PRELOAD=${ET_PRELOAD:-} "$ENR_PROBE" watch "$MOD" "$LABEL" "$(cred_id alice)" "$T/pin" 10 >"$T/probe.out" 2>"$T/probe.err" &
probe_pid=$!
ET_PIDS+=("$probe_pid")
for _ in $(seq 200); do [ "$(grep -c " ok$" "$T/probe.out" 2>/dev/null || true)" -ge 5 ] 2>/dev/null && break; sleep 0.05; done
grep -q "^round [0-9]* serial ${serials[0]} ok$" "$T/probe.out" || die "the probe does not see the credential: $(head "$T/probe.out" "$T/probe.err")"
for i in 1 2 3; do
    enr renew --force alice 2>"$T/r$i.err" || die "renewal $i: $(cat "$T/r$i.err")"
    grep -q "native rollover" "$T/r$i.err" || die "renewal $i did not use the native rollover: $(cat "$T/r$i.err")"
    s=$(token_serial alice)
    [ "$s" != "${serials[-1]}" ] || die "renewal $i: serial unchanged"
    grep -q "^kur protection verified against old certificate ${serials[-1]}\$" "$CA/requests.log" || die "renewal $i: not a kur by the old key"
    serials+=("$s")
    for _ in $(seq 200); do grep -q "serial $s ok$" "$T/probe.out" && break; sleep 0.05; done
    grep -q "serial $s ok$" "$T/probe.out" || die "renewal $i: the probe never saw serial $s: $(tail -3 "$T/probe.out")"
    kill -0 "$probe_pid" 2>/dev/null || die "the probe died: $(cat "$T/probe.err")"
done
kill -TERM "$probe_pid"
rc=0; wait "$probe_pid" || rc=$?
summary=$(tail -1 "$T/probe.out")
[ "$rc" = 0 ] || die "the probe saw errors (exit $rc): $summary"
! grep -q "ERROR" "$T/probe.out" || die "the probe saw a failed lookup or a mismatched pair"
echo "$summary" | grep -q "^summary rounds=[0-9]* errors=0 raced=[0-3] serials=4$" || die "unexpected summary: $summary"
ok "a running application followed three CMP kur renewals without restart: $summary"
