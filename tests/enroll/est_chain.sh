# The CA chain with EST: the CA is an intermediate under the root the
# profile trusts (the TLS server sends it, /cacerts returns it). After the
# first enrollment and after a /simplereenroll the intermediate is in the
# token once and cert.pem/chain.pem/fullchain.pem are written.
. "$(dirname "$0")/lib.sh"
: "${ESTSRV:?run through ctest}"
ca_init
ca_under_root
est_tls
cat "$CA/ca.pem" >>"$CA/tls.pem"
printf 'pw-of-bob\n' >"$T/password"
chmod 600 "$T/password"
est_start --user bob --password-file "$T/password"
EST_ANCHORS=$ROOT/root.pem est_profile alice "[ca]" "username = bob" "secret_file = $T/password"
NOW=$(now_epoch)
enr enroll 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
chain_files_ok alice || die "after enrollment"
ok "EST enrollment: the intermediate stored in the token and the chain files written"
export EVERTOKEN_ENROLL_FAKE_TIME=$((NOW + 65 * 86400))
echo "$EVERTOKEN_ENROLL_FAKE_TIME" >"$CA/now"
enr check 2>"$T/r.err" || die "renewal: $(cat "$T/r.err")"
grep -q "simplereenroll 200" "$CA/requests.log" || die "no simplereenroll: $(cat "$CA/requests.log")"
chain_files_ok alice || die "after renewal"
ok "EST renewal: the chain kept, no duplicate"
