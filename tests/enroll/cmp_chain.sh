# The CA chain with CMP: the CA is an intermediate under the root the
# profile trusts and sends it in extraCerts (DIR/chain.pem of cmpsrv). After
# the ir and after a kur the intermediate is in the token once and
# cert.pem/chain.pem/fullchain.pem are written.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cmplib.sh"
cmp_init
ca_under_root
cmp_start
cmp_profile alice
sed -i "s|^anchors = .*|anchors = $ROOT/root.pem|" "$PROFILES/alice.conf"
NOW=$(now_epoch)
enr enroll 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
chain_files_ok alice || die "after enrollment"
ok "CMP ir: the intermediate from extraCerts stored in the token and the chain files written"
export EVERTOKEN_ENROLL_FAKE_TIME=$((NOW + 65 * 86400))
echo "$EVERTOKEN_ENROLL_FAKE_TIME" >"$CA/now"
enr check 2>"$T/r.err" || die "renewal: $(cat "$T/r.err")"
grep -q "^kur issued" "$CA/requests.log" || die "no kur: $(cat "$CA/requests.log")"
chain_files_ok alice || die "after renewal"
ok "CMP kur: the chain kept, no duplicate"
