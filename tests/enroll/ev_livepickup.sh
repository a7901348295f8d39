# Live pickup: a long-running PKCS#11 application (enr_probe watch: module
# loaded once, one login, then round after round it looks the certificate and
# the private key up by the credential's CKA_ID, signs with the key and
# verifies the signature with the certificate's public key) keeps running
# while evertoken-enroll renews the credential over SCEP three times. The
# probe must report each new serial without a restart and must never see a
# failed lookup, two objects under the ID, or a certificate whose key is not
# the key it signed with while the certificate stays the same: the native
# commit switches the credential in one transaction. evertoken only: SoftHSMv2 through the standard-call fallback
# has short windows where another process sees two keys under the ID
# (docs/enrollment.md).
. "$(dirname "$0")/lib.sh"
[ "$ENR_TOKEN_KIND" = evertoken ] || die "evertoken only"
ca_init
scep_start
profile alice
enr enroll alice 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
serials=("$(token_serial alice)")

# The probe, in the background (killed by the cleanup trap if the test fails).
# (the binary itself in the background, so $! is its pid, not a subshell's;
# LD_PRELOAD does what host() does under a sanitizer build)
LD_PRELOAD=${ET_PRELOAD:-} "$ENR_PROBE" watch "$MOD" "$LABEL" "$(cred_id alice)" "$T/pin" 10 >"$T/probe.out" 2>"$T/probe.err" &
probe_pid=$!
ET_PIDS+=("$probe_pid")
# Wait for its first rounds with the enrolled certificate.
for _ in $(seq 200); do [ "$(grep -c " ok$" "$T/probe.out" 2>/dev/null || true)" -ge 5 ] 2>/dev/null && break; sleep 0.05; done
grep -q "^round [0-9]* serial ${serials[0]} ok$" "$T/probe.out" || die "the probe does not see the credential: $(head "$T/probe.out" "$T/probe.err")"

for i in 1 2 3; do
    enr renew --force alice 2>"$T/r$i.err" || die "renewal $i: $(cat "$T/r$i.err")"
    grep -q "native rollover" "$T/r$i.err" || die "renewal $i did not use the native rollover: $(cat "$T/r$i.err")"
    s=$(token_serial alice)
    [ "$s" != "${serials[-1]}" ] || die "renewal $i: serial unchanged"
    serials+=("$s")
    # The running probe picks the new credential up at its next lookup.
    for _ in $(seq 200); do grep -q "serial $s ok$" "$T/probe.out" && break; sleep 0.05; done
    grep -q "serial $s ok$" "$T/probe.out" || die "renewal $i: the probe never saw serial $s: $(tail -3 "$T/probe.out")"
    kill -0 "$probe_pid" 2>/dev/null || die "the probe died: $(cat "$T/probe.err")"
done
kill -TERM "$probe_pid"
rc=0; wait "$probe_pid" || rc=$?
summary=$(tail -1 "$T/probe.out")
grep "ERROR" "$T/probe.out" | head -5 >&2 || true
[ "$rc" = 0 ] || die "the probe saw errors (exit $rc): $summary"
! grep -q "ERROR" "$T/probe.out" || die "the probe saw a failed lookup or a mismatched pair"
echo "$summary" | grep -q "^summary rounds=[0-9]* errors=0 raced=[0-3] serials=4$" || die "unexpected summary: $summary"
# A round whose certificate and key lookups straddle a commit (old
# certificate, new key: two lookups, each consistent) is recognised and
# repeated: at most one per commit.
# The serials appear in order and never come back: old, then new, never a mix.
python3 - "$T/probe.out" "${serials[@]}" <<'PY' || die "serial sequence wrong"
import sys
lines = [l.split() for l in open(sys.argv[1]) if l.startswith("round ")]
seen = [l[3] for l in lines if l[2] == "serial"]
order = []
for s in seen:
    if not order or order[-1] != s:
        order.append(s)
assert order == sys.argv[2:], (order, sys.argv[2:])
print("ok: %d rounds, serial changes %s" % (len(seen), " -> ".join(order)))
PY
ok "a running application followed three renewals without restart: $summary"
