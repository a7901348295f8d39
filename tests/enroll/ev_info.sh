# `evertoken info` names the objects a rollover keeps out of sight
# (docs/cli.md "info"): after a native renewal the old certificate and keys
# are retired (stored, invisible to `list`), while a renewal held PENDING by
# the CA keeps a pending key pair; info lists both kinds by class, label (the
# private key's label is encrypted: it says a login is needed), credential and
# retirement time, and its totals agree with the stored-object count.
. "$(dirname "$0")/lib.sh"
[ "$ENR_TOKEN_KIND" = evertoken ] || die "evertoken only"
ca_init
scep_start
info() { "$CLI" --module "$MOD" info --token "$LABEL"; }
cid=$(cred_id alice)

profile alice
enr enroll alice 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
info >"$T/i0" || die "info: $(cat "$T/i0")"
grep -q "^  not active: *none" "$T/i0" || die "info after the enrollment shows inactive objects: $(cat "$T/i0")"
grep -q "^  objects stored: *3\$" "$T/i0" || die "info: $(cat "$T/i0")"
ok "after the enrollment: 3 objects stored, none inactive"

enr renew --force alice 2>"$T/r.err" || die "renew: $(cat "$T/r.err")"
info >"$T/i1" || die "info: $(cat "$T/i1")"
[ "$(count_objects Certificate alice)" = 1 ] || die "not one visible certificate: $(token_objects)"
grep -q "^  objects stored: *6\$" "$T/i1" || die "info after the renewal: $(cat "$T/i1")"
for want in "retired  cert     'alice' credential $cid since 20" \
    "retired  pubkey   'alice' credential $cid since 20" \
    "retired  private  (label needs a login) credential $cid since 20" \
    "(3 retired, 0 pending;"; do
    grep -qF -- "$want" "$T/i1" || die "info does not show '$want': $(cat "$T/i1")"
done
ok "after a native renewal: 6 stored = 3 visible + 3 retired, each named"

# A renewal the CA holds: a pending pair waits in the token.
scep_stop
scep_start --pending 100 --no-post --no-aes
profile alice
rc=0; enr renew --force alice 2>"$T/p.err" || rc=$?
[ "$rc" = 5 ] || die "pending renewal: exit $rc, want 5: $(cat "$T/p.err")"
info >"$T/i2" || die "info: $(cat "$T/i2")"
grep -qF "pending  pubkey   " "$T/i2" || die "info does not show the pending public key: $(cat "$T/i2")"
grep -qF "pending  private  (label needs a login) credential $cid" "$T/i2" ||
    die "info does not show the pending private key: $(cat "$T/i2")"
grep -qF "(3 retired, 2 pending;" "$T/i2" || die "info totals: $(cat "$T/i2")"
grep -q "^  objects stored: *8\$" "$T/i2" || die "info: $(cat "$T/i2")"
ok "a renewal held PENDING: the pending pair is listed next to the retired objects"
