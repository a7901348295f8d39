#!/usr/bin/env bash
# OpenVPN 2.6 with its client key and certificate in the token
# (`--pkcs11-providers MODULE --pkcs11-id ID`), against an OpenVPN server with
# an ordinary key file. Server and client run in two network namespaces the
# test creates (a veth pair between them, each with its own tun device); both
# namespaces and every process are removed at the end.
#  * The credentials: an RSA-2048 and an EC P-256 key pair generated IN the
#    token (pkcs11-tool --keypairgen), each with a certificate from the test CA
#    for the public key read back from the token, written to the token with
#    the key's CKA_ID.
#  * `openvpn --show-pkcs11-ids MODULE` lists both certificates without a PIN;
#    its "Serialized id" is the --pkcs11-id.
#  * The PIN: OpenVPN asks for it on its management interface
#    (--management-query-passwords; there is no option to read a token PIN
#    from a file, and without a terminal the console prompt fails). The test
#    answers ">PASSWORD:Need '... token' password" with the PIN from $PINFILE,
#    over a TCP socket on the client namespace's own loopback.
#  * For each key: the client logs "Initialization Sequence Completed", the
#    server log shows the client certificate (its CN) verified and the peer
#    connection initiated under that CN, and a ping through the tunnel (client
#    10.89.0.2 -> server 10.89.0.1) is answered.
#  * The client loads the module through OpenSC's pkcs11-spy: the call log
#    shows C_Login with the PIN, C_SignInit on the private key found by the
#    certificate's CKA_ID (RSA: CKM_RSA_PKCS_PSS, TLS 1.3; EC: CKM_ECDSA) and
#    C_Sign returning CKR_OK; each logged signature is verified by OpenSSL
#    with the public key read back from the token.
# Needs root (network namespaces, tun devices); skipped (77) otherwise.
. "$(dirname "$0")/lib_e2e.sh"
need openvpn ip ping pkcs11-tool openssl xxd

[ "$(id -u)" = 0 ] || { echo "SKIP: network namespaces and tun devices need root" >&2; exit 77; }
[ -c /dev/net/tun ] || { echo "SKIP: /dev/net/tun missing" >&2; exit 77; }

# The spy: with E2E_SPY the library already loads the module through it;
# otherwise the OpenVPN client alone gets its own spy and log.
if [ -n "${E2E_SPY:-}" ]; then
    SPY_MOD=$M SPY_LOG=$E2E_SPY
    SPY_ENV=()
else
    SPY_MOD=$(find /usr/lib/*/pkcs11-spy.so /usr/lib/*/pkcs11/pkcs11-spy.so -print -quit 2>/dev/null || true)
    [ -n "$SPY_MOD" ] || die "OpenSC's pkcs11-spy.so not found"
    SPY_LOG=$T/spy.log
    SPY_ENV=(PKCS11SPY="$M" PKCS11SPY_OUTPUT="$SPY_LOG")
fi

NS_S=et-ovpn-$$-srv
NS_C=et-ovpn-$$-cli
NS_MADE=()
ovpn_cleanup() {
    local rc=$?
    for p in "${ET_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${ET_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    for ns in "${NS_MADE[@]}"; do ip netns del "$ns" 2>/dev/null || echo "could not delete netns $ns" >&2; done
    set +e # so that the next line only sets $? for et_cleanup
    (exit "$rc")
    et_cleanup
}
trap ovpn_cleanup EXIT
# A signal ends the test through the EXIT trap too (bash skips it otherwise).
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

# Namespaces left by an earlier run of this test that was killed (SIGKILL,
# e.g. a CTest timeout): their test process is gone.
for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^et-ovpn-[0-9]+-(srv|cli)$/ { print $1 }'); do
    pid=${ns#et-ovpn-}
    pid=${pid%-*}
    kill -0 "$pid" 2>/dev/null || ip netns del "$ns" 2>/dev/null || true
done

# ---- two network namespaces joined by a veth pair (192.0.2.0/24)
for ns in "$NS_S" "$NS_C"; do
    out=$(ip netns add "$ns" 2>&1) || { echo "SKIP: ip netns add: $out" >&2; exit 77; }
    NS_MADE+=("$ns")
    ip -n "$ns" link set lo up || die "lo up in $ns"
done
ip link add vs netns "$NS_S" type veth peer name vc netns "$NS_C" || die "veth pair"
{ ip -n "$NS_S" addr add 192.0.2.1/24 dev vs && ip -n "$NS_S" link set vs up; } || die "vs up"
{ ip -n "$NS_C" addr add 192.0.2.2/24 dev vc && ip -n "$NS_C" link set vc up; } || die "vc up"
out=$(ip netns exec "$NS_C" ping -c 1 -W 5 192.0.2.1 2>&1) || die "no ping over the veth pair: $out"
ok "namespaces $NS_S and $NS_C joined by a veth pair"

# ---- the token: key pairs generated in it, certificates from the test CA
TOK=e2e-openvpn
e2e_token "$TOK"
e2e_ca
e2e_server_cert
for k in rsa:rsa:2048:01 ec:EC:prime256v1:02; do
    IFS=: read -r name kt bits id <<<"$k"
    e2e_keygen "$TOK" "$kt:$bits" "$id" "openvpn-$name"
    e2e_pubkey "$TOK" "$id" "$T/$name.pub.pem"
    openssl x509 -new -subj "/CN=e2e openvpn $name client/O=evertoken e2e" -force_pubkey "$T/$name.pub.pem" \
        -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" -CAcreateserial -days 1 \
        -extfile "$T/ca/client.ext" -out "$T/$name.pem" 2>"$T/$name.err" ||
        die "CA could not certify the $name token key: $(cat "$T/$name.err")"
    e2e_import "$TOK" "$id" "$T/$name.pem" "openvpn-$name"
done
ok "RSA-2048 and EC P-256 keys generated in the token, certificates from the test CA stored next to them"

# ---- openvpn --show-pkcs11-ids: the serialized ids (no PIN needed)
IDS=$(host openvpn --show-pkcs11-ids "$M" </dev/null 2>&1) || die "openvpn --show-pkcs11-ids: $IDS"
# The "Serialized id" of the certificate whose DN has CN $1.
serialized_id() {
    awk -v cn="CN=$1" '
        $1 == "DN:" { hit = index($0, cn) > 0 }
        $1 == "Serialized" && $2 == "id:" && hit { print $3; exit }' <<<"$IDS"
}
for name in rsa ec; do
    [ -n "$(serialized_id "e2e openvpn $name client")" ] ||
        die "openvpn --show-pkcs11-ids does not list the $name certificate: $IDS"
done
ok "openvpn --show-pkcs11-ids lists both certificates"

# ---- the server: ordinary key file, test CA, 10.89.0.0/24 inside the tunnel
mkdir -m 700 "$T/ovpn"
et_bg ip netns exec "$NS_S" openvpn --mode server --tls-server --dev tun --topology subnet \
    --server 10.89.0.0 255.255.255.0 --proto udp --local 192.0.2.1 --port 1194 \
    --ca "$T/ca/ca.pem" --cert "$T/server.pem" --key "$T/server.key" --dh none \
    --disable-dco --verb 4 \
    >"$T/ovpn/server.log" 2>&1 </dev/null
SRV_PID=${ET_PIDS[-1]}

# Wait (at most $3 s) until $1 contains the line pattern $2 (grep -E);
# the process $4 dying first fails at once.
wait_log() {
    for _ in $(seq 1 $(($3 * 10))); do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        kill -0 "$4" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
wait_log "$T/ovpn/server.log" "Initialization Sequence Completed" 20 "$SRV_PID" ||
    die "OpenVPN server did not start: $(cat "$T/ovpn/server.log")"
ok "OpenVPN server up in $NS_S"

# The management client: answers OpenVPN's PIN request with the PIN from
# $PINFILE (read here, never on a command line), logs every line it gets.
mgmt_client() {
    local port=$1 log=$2 line tok pin
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    IFS= read -r pin <"$PINFILE"
    while IFS= read -r -t 60 line <&3; do
        line=${line%$'\r'}
        printf '%s\n' "$line" >>"$log"
        case $line in
        ">HOLD:"*) printf 'hold release\n' >&3 ;;
        ">PASSWORD:Need '"*"' password")
            tok=${line#*\'}
            tok=${tok%\'*}
            printf 'password "%s" %s\n' "$tok" "$pin" >&3 ;;
        esac
    done
}

# Summary of a pkcs11-spy log (OpenSC 0.23 format; a call is a block from
# "N: C_Name" to "Returned:"), one line per call that matters, hex in lower case:
#   find CLASS IDHEX HANDLE...   a search by CKA_CLASS and CKA_ID, the handles found
#   login USERTYPE RV | logout RV
#   signinit MECH HASHALG MGF SLEN HKEY RV   ("-" where the mechanism has no parameter)
#   sign RV DATAHEX SIGHEX
spy_summary() {
    awk '
    function flush() {
        if (dump == "id") id = id hex; else if (dump == "data") data = data hex; else if (dump == "sig") sig = sig hex
        dump = ""; hex = ""
    }
    /^[0-9]+: C_[A-Za-z]+$/ {
        flush(); fn = $2; cls = "-"; id = ""; mech = "-"; hash = "-"; mgf = "-"; slen = "-"; key = "-"; ut = "-"
        data = ""; sig = ""
        next
    }
    dump != "" && /^    [0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F]  / {
        n = split(substr($0, 15, 48), b, " ")
        for (i = 1; i <= n; i++) hex = hex tolower(b[i])
        next
    }
    { flush() }
    fn == "C_FindObjectsInit" && $1 == "CKA_CLASS" { cls = $2 }
    fn == "C_FindObjectsInit" && $1 == "CKA_ID" { dump = "id" }
    fn == "C_FindObjects" && $1 == "Object" && $3 == "matches" { found = found " " $2 }
    fn == "C_Login" && $2 == "userType" { ut = $4 }
    fn == "C_SignInit" && /pMechanism->type/ { mech = $4 }
    fn == "C_SignInit" && /pParameter->hashAlg/ { hash = $4 }
    fn == "C_SignInit" && /pParameter->mgf/ { mgf = $4 }
    fn == "C_SignInit" && /pParameter->sLen/ { slen = $4 }
    fn == "C_SignInit" && $2 == "hKey" { key = $4 }
    fn == "C_Sign" && /^\[in\] pData\[/ { dump = "data" }
    fn == "C_Sign" && /^\[out\] pSignature\[/ { dump = "sig" }
    /^Returned:/ {
        rv = $3
        if (fn == "C_FindObjectsInit") { fcls = cls; fid = (id == "" ? "-" : id); found = "" }
        else if (fn == "C_FindObjectsFinal" && fcls != "-") { print "find", fcls, fid found; fcls = "-" }
        else if (fn == "C_Login") print "login", ut, rv
        else if (fn == "C_Logout") print "logout", rv
        else if (fn == "C_SignInit") print "signinit", mech, hash, mgf, slen, key, rv
        else if (fn == "C_Sign") print "sign", rv, (data == "" ? "-" : data), (sig == "" ? "-" : sig)
    }' "$1"
}

# DER INTEGER of the unsigned big-endian hex $1.
der_int() {
    local h=$1
    while [ "${h:0:2}" = 00 ] && [ ${#h} -gt 2 ]; do h=${h:2}; done
    case ${h:0:1} in [89a-f]) h=00$h ;; esac
    der 02 "$h"
}

for name in rsa ec; do
    id=$(serialized_id "e2e openvpn $name client")
    clog=$T/ovpn/client.$name.log mlog=$T/ovpn/mgmt.$name.log
    : >"$mlog"
    spy_start=0
    [ ! -e "$SPY_LOG" ] || spy_start=$(wc -l <"$SPY_LOG")
    # The management interface listens on the client namespace's loopback;
    # --management-hold keeps OpenVPN waiting until the test is connected.
    et_bg ip netns exec "$NS_C" env "${SPY_ENV[@]}" ${ET_PRELOAD:+LD_PRELOAD=$ET_PRELOAD} \
        openvpn --client --dev tun --proto udp --remote 192.0.2.1 1194 --nobind \
        --ca "$T/ca/ca.pem" --remote-cert-tls server --verify-x509-name localhost name \
        --pkcs11-providers "$SPY_MOD" --pkcs11-id "$id" \
        --management 127.0.0.1 7505 --management-query-passwords --management-hold \
        --disable-dco --connect-retry-max 1 --hand-window 30 --verb 4 \
        >"$clog" 2>&1 </dev/null
    CLI_PID=${ET_PIDS[-1]}
    wait_log "$clog" "MANAGEMENT: TCP Socket listening" 20 "$CLI_PID" ||
        die "OpenVPN client ($name) did not open its management socket: $(cat "$clog")"
    et_bg ip netns exec "$NS_C" bash -c "$(declare -f mgmt_client); PINFILE=$PINFILE mgmt_client 7505 $mlog"
    MGMT_PID=${ET_PIDS[-1]}

    wait_log "$clog" "Initialization Sequence Completed" 40 "$CLI_PID" ||
        die "OpenVPN client ($name) did not complete: $(cat "$clog")
management: $(cat "$mlog")
server: $(cat "$T/ovpn/server.log")"
    [ "$(grep -c "^>PASSWORD:Need '.*' password" "$mlog")" = 1 ] ||
        die "OpenVPN ($name) did not ask for the PIN exactly once: $(cat "$mlog")"
    ok "$name: OpenVPN client with the token key: Initialization Sequence Completed (PIN asked once, on the management interface)"

    slog=$(cat "$T/ovpn/server.log")
    grep -q "VERIFY OK: depth=0, CN=e2e openvpn $name client, O=evertoken e2e" <<<"$slog" ||
        die "server did not verify the $name client certificate: $slog"
    grep -q "\[e2e openvpn $name client\] Peer Connection Initiated with \[AF_INET\]192.0.2.2:" <<<"$slog" ||
        die "server did not accept the $name client: $slog"
    ok "$name: the server verified the client certificate CN=e2e openvpn $name client"

    out=$(ip netns exec "$NS_C" ping -c 2 -W 5 10.89.0.1 2>&1) || die "no ping through the tunnel ($name): $out"
    grep -q "2 received" <<<"$out" || die "ping through the tunnel ($name): $out"
    ok "$name: ping 10.89.0.1 through the tunnel answered"

    kill "$CLI_PID" 2>/dev/null || true
    e2e_wait_exit "$CLI_PID" || true
    e2e_wait_exit "$MGMT_PID" || true
    tail -n +"$((spy_start + 1))" "$SPY_LOG" >"$T/spy.$name.log"
done

# ---- what OpenVPN asked of the token (the client's PKCS#11 call log)
for name in rsa ec; do
    case $name in rsa) cka_id=01 ;; ec) cka_id=02 ;; esac
    sum=$(spy_summary "$T/spy.$name.log")
    # pkcs11-helper looks for the private key before logging in (the search
    # finds nothing: private objects are invisible), then calls C_Logout —
    # CKR_USER_NOT_LOGGED_IN, the spec's answer when nobody is logged in
    # (SoftHSMv2 says CKR_OK) — and logs in on a new session.
    grep -qE "^logout (CKR_USER_NOT_LOGGED_IN|CKR_OK)$" <<<"$sum" ||
        die "$name: no C_Logout with CKR_USER_NOT_LOGGED_IN or CKR_OK in the call log: $sum"
    { [ "$(grep -c "^login " <<<"$sum")" = 1 ] && grep -qx "login CKU_USER CKR_OK" <<<"$sum"; } ||
        die "$name: OpenVPN did not log in exactly once (CKU_USER, CKR_OK): $sum"
    grep -q "^find CKO_CERTIFICATE $cka_id " <<<"$sum" ||
        die "$name: OpenVPN did not find its certificate by CKA_ID $cka_id: $sum"
    key=$(awk -v id="$cka_id" '$1 == "find" && $2 == "CKO_PRIVATE_KEY" && $3 == id && NF == 4 { k = $4 } END { print k }' <<<"$sum")
    [ -n "$key" ] || die "$name: no private key found by the certificate's CKA_ID $cka_id after the login: $sum"
    read -r _ mech hash mgf slen hkey rv < <(grep "^signinit " <<<"$sum" | tail -1)
    { [ "$hkey" = "$key" ] && [ "$rv" = CKR_OK ]; } ||
        die "$name: C_SignInit not on the private key $key with CKA_ID $cka_id, or failed: $sum"
    read -r _ rv data sig < <(grep "^sign " <<<"$sum" | tail -1)
    { [ "$rv" = CKR_OK ] && [ "$data" != - ] && [ "$sig" != - ]; } || die "$name: no successful C_Sign: $sum"
    xxd -r -p <<<"$data" >"$T/sign.$name.in"
    case $name:$mech in
    rsa:CKM_RSA_PKCS_PSS)
        { [ "$hash:$mgf" = CKM_SHA256:CKG_MGF1_SHA256 ] && [ "$slen" = 32 ]; } ||
            die "rsa: unexpected PSS parameters $hash $mgf $slen"
        xxd -r -p <<<"$sig" >"$T/sign.$name.sig"
        vopts=(-pkeyopt rsa_padding_mode:pss -pkeyopt digest:sha256 -pkeyopt rsa_pss_saltlen:32) ;;
    ec:CKM_ECDSA)
        # CKM_ECDSA gives r || s; OpenSSL wants the DER SEQUENCE.
        half=$((${#sig} / 2))
        xxd -r -p <<<"$(der 30 "$(der_int "${sig:0:half}")$(der_int "${sig:half}")")" >"$T/sign.$name.sig"
        vopts=() ;;
    *) die "$name: OpenVPN signed with $mech (expected RSA-PSS for TLS 1.3 with RSA, ECDSA for EC)" ;;
    esac
    out=$(openssl pkeyutl -verify -pubin -inkey "$T/$name.pub.pem" -in "$T/sign.$name.in" \
        -sigfile "$T/sign.$name.sig" "${vopts[@]}" 2>&1) || die "$name: OpenVPN's signature does not verify: $out"
    grep -q "Signature Verified Successfully" <<<"$out" || die "$name: openssl pkeyutl -verify said: $out"
    ok "$name: call log: C_Logout, one C_Login, certificate and private key found by CKA_ID $cka_id, $mech signature (C_Sign CKR_OK) verified by OpenSSL with the token's public key"
done
