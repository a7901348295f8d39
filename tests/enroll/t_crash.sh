# Crash safety of the rollover (standard calls on SoftHSMv2; evertoken's
# native pending pair + one-transaction commit on evertoken): the helper is killed
# (SIGKILL, EVERTOKEN_ENROLL_CRASH_AT=N) right after each token mutation of a
# renewal in turn. After every kill the token still holds a complete, working
# credential (a certificate and its private key under one CKA_ID that sign and
# verify — checked with OpenSSL's pkcs11 engine, which selects keys by label
# and ID); the next run repairs it to exactly one credential, the new one once
# its certificate was stored.
. "$(dirname "$0")/lib.sh"
# This test is about what a SIGKILL leaves in the token, not about memory
# errors (the same code paths run under ASan in every other enroll test). With
# sanitizers each of its ~30 kill/repair rounds takes about ten times as long
# (over 5 minutes per token kind), and one loaded CI run lost the token
# listing right after a kill; it runs in the normal build only.
if [ -n "${ET_PRELOAD:-}" ]; then
    echo "SKIP: crash test runs in the non-sanitized build only" >&2
    exit 77
fi
ENGINE=$(ls /usr/lib/*/engines-3/pkcs11.so 2>/dev/null | head -1)
[ -n "$ENGINE" ] || { echo "SKIP: libengine-pkcs11-openssl not installed" >&2; exit 77; }
cat >"$T/engine.cnf" <<CNF
openssl_conf = init
[init]
engines = engines
[engines]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $ENGINE
MODULE_PATH = $MOD
init = 0
CNF
ca_init
scep_start

# "CLASS LABEL ID" for every object.
objects_with_ids() {
    p11 -O 2>/dev/null | awk '/Object;/{c=$1} /label:/{sub(/^[ \t]*label:[ \t]*/,""); l=$0} /ID:/{print c "\t" l "\t" $2}'
}
# Does the private key labelled KL sign so that the certificate labelled CL verifies?
pair_works() {
    local cl=$1 kl=$2 uri
    p11 --read-object --type cert --label "$cl" -o "$T/pw.der" >/dev/null 2>&1 || return 1
    openssl x509 -inform DER -in "$T/pw.der" -noout -pubkey >"$T/pw.pub" || return 1
    uri="pkcs11:token=$LABEL;object=$(printf %s "$kl" | sed 's/ /%20/g;s/(/%28/g;s/)/%29/g');type=private?pin-value=$PIN"
    printf 'crash test data' >"$T/pw.dat"
    OPENSSL_CONF=$T/engine.cnf host openssl dgst -sha256 -engine pkcs11 -keyform engine -sign "$uri" \
        -out "$T/pw.sig" "$T/pw.dat" >/dev/null 2>"$T/pw.err" || return 1
    openssl dgst -sha256 -verify "$T/pw.pub" -signature "$T/pw.sig" "$T/pw.dat" >/dev/null 2>&1
}
# Some certificate of credential NAME and a private key with the same CKA_ID work together.
some_credential_works() {
    local name=$1 cl cid kl kid
    while IFS=$'\t' read -r cl cid; do
        while IFS=$'\t' read -r kl kid; do
            [ "$cid" = "$kid" ] && pair_works "$cl" "$kl" && return 0
        done < <(objects_with_ids | awk -F'\t' -v n="$name" '$1=="Private" && ($2==n || $2==n" (pending)") {print $2 "\t" $3}')
    done < <(objects_with_ids | awk -F'\t' -v n="$name" '$1=="Certificate" && ($2==n || $2==n" (pending)") {print $2 "\t" $3}')
    return 1
}
exactly_one() {
    local name=$1
    [ "$(count_objects Certificate "$name")" = 1 ] && [ "$(count_objects Private "$name")" = 1 ] &&
        [ "$(count_objects Public "$name")" = 1 ] && ! token_objects | grep -q "$name (pending)" &&
        [ "$(pending_count "$name")" = 0 ]
}

for round in "alice 7d" "bob 0"; do
    set -- $round
    name=$1 grace=$2
    profile "$name" "[renewal]" "grace_period = $grace"
    enr enroll "$name" 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
    pair_works "$name" "$name" || die "the engine check does not work on a fresh credential"
    n=1
    while :; do
        old=$(token_serial "$name")
        rc=0
        EVERTOKEN_ENROLL_CRASH_AT=$n enr renew --force "$name" 2>"$T/crash.err" || rc=$?
        if [ "$rc" = 0 ]; then
            grep -q "crash test" "$T/crash.err" && die "crash hook printed but the process survived"
            break # no step $n: every step has been crashed
        fi
        [ "$rc" = 137 ] || die "step $n: exit $rc, want SIGKILL (137): $(cat "$T/crash.err")"
        step=$(sed -n 's/.*killed after step [0-9]* (\(.*\))/\1/p' "$T/crash.err")
        some_credential_works "$name" ||
            die "after a crash at step $n ($step) no working credential: $(token_objects)
pkcs11-tool -O: $(p11 -O 2>&1 | tail -5)"
        # The next run repairs: one credential, the new one once its certificate was stored.
        enr check "$name" 2>"$T/repair.err" || die "repair after step $n failed: $(cat "$T/repair.err")"
        if [ $n -ge 2 ]; then
            exactly_one "$name" || die "after step $n ($step) and repair: $(token_objects)"
            [ "$(token_serial "$name")" != "$old" ] || die "step $n ($step): the stored new certificate was lost"
        fi
        cred_works "$name" || die "after step $n ($step) and repair the credential does not work"
        # Finish cleanly so the next round starts from one plain credential.
        enr renew --force "$name" 2>"$T/clean.err" || die "renewal after step $n: $(cat "$T/clean.err")"
        exactly_one "$name" || die "not clean after step $n: $(token_objects)"
        echo "ok: killed after step $n ($step): working credential kept, repaired"
        n=$((n + 1))
    done
    # Standard calls: 9 or more steps; evertoken's native rollover: generate
    # the pending pair, commit (and with grace 0 the purge).
    if native; then min=3; else min=9; fi
    [ $n -ge $min ] || die "only $((n - 1)) steps crashed; the rollover has more"
    exactly_one "$name" && cred_works "$name" || die "final state: $(token_objects)"
    ok "grace period $grace: killed after each of $((n - 1)) token steps, never without a working credential"
done
