#!/usr/bin/env bash
# OpenSSL through the pkcs11 engine (libengine-pkcs11-openssl, libp11), with
# RSA-2048 and EC P-256 key pairs generated in the token:
#  * `openssl req -engine pkcs11 -keyform engine -key pkcs11:...` makes a CSR
#    signed by the token key; `openssl req -verify` accepts it and its public
#    key is the token's;
#  * a test CA issues a client certificate for that key, the certificate is
#    imported into the token next to its key (same CKA_ID), and
#    `openssl s_client -engine pkcs11 -key pkcs11:...` completes TLS 1.3 and
#    TLS 1.2 handshakes against `openssl s_server -Verify 1
#    -verify_return_error` on 127.0.0.1: the server verified the client
#    certificate (subject in its log) and data went both ways. TLS 1.3 signs
#    with RSA-PSS, TLS 1.2 is made to use PKCS#1 v1.5 (RSA+SHA256).
#  * without the client certificate the server refuses the connection.
# The token holds RSA and EC keys only: libp11 0.4.12 cannot enumerate the
# keys of a token that also holds an EdDSA key ("Unable to enumerate private
# keys").
. "$(dirname "$0")/lib_e2e.sh"
need pkcs11-tool openssl ss

TOK=e2e-engine
e2e_token "$TOK"
e2e_engine_conf
e2e_ca
e2e_server_cert

uri() { echo "pkcs11:token=$TOK;object=$1;type=private"; }

for k in rsa:rsa:2048:01 ec:EC:prime256v1:02; do
    IFS=: read -r name kt bits id <<<"$k"
    label=engine-$name
    e2e_keygen "$TOK" "$kt:$bits" "$id" "$label"
    e2e_pubkey "$TOK" "$id" "$T/$name.pub.pem"

    # ---- a CSR signed by the token key
    out=$(E openssl req -new -engine pkcs11 -keyform engine -key "$(uri "$label")" \
        -subj "/CN=e2e engine $name client/O=evertoken e2e" -out "$T/$name.csr" 2>&1 </dev/null) ||
        die "openssl req -engine pkcs11 with the $name token key: $out"
    out=$(openssl req -verify -in "$T/$name.csr" -noout 2>&1) || die "CSR ($name) does not verify: $out"
    grep -q "verify OK" <<<"$out" || die "openssl req -verify ($name) said: $out"
    openssl req -in "$T/$name.csr" -pubkey -noout | cmp -s - "$T/$name.pub.pem" ||
        die "CSR ($name) does not carry the token's public key"
    ok "$name: CSR signed by the token key through the engine, verified by openssl req -verify"

    # ---- the CA's certificate for the token key goes into the token
    e2e_ca_sign "$T/$name.csr" "$T/$name.pem" client
    e2e_import "$TOK" "$id" "$T/$name.pem" "$label"
    P --token-label "$TOK" --read-object --type cert --id "$id" -o "$T/$name.back.der" >/dev/null 2>&1 ||
        die "certificate $id not readable from the token"
    openssl x509 -in "$T/$name.pem" -outform DER | cmp -s - "$T/$name.back.der" ||
        die "certificate $id read back from the token differs"

    # ---- TLS client-certificate handshakes with the token key
    for proto in tls1_3 tls1_2; do
        sopts=(-rev -naccept 1 "-$proto")
        want=RSA-PSS
        [ "$name" = ec ] && want=ECDSA
        if [ "$proto" = tls1_2 ] && [ "$name" = rsa ]; then
            sopts+=(-client_sigalgs RSA+SHA256)
            want=RSA
        fi
        e2e_s_server "$T/srv.$name.$proto.log" "${sopts[@]}"
        msg="evertoken e2e $name $proto $RANDOM"
        out=$(printf '%s\nCLOSE\n' "$msg" | E timeout 30 openssl s_client -connect "127.0.0.1:$SPORT" \
            -engine pkcs11 -keyform engine -key "$(uri "$label")" -cert "$T/$name.pem" \
            -CAfile "$T/ca/ca.pem" -verify_return_error -ign_eof -quiet 2>&1) ||
            die "s_client ($name, $proto) with the token key failed: $out
server: $(cat "$SLOG")"
        e2e_wait_exit "$SPID" || true
        slog=$(cat "$SLOG")
        rev=$(rev <<<"$msg")
        grep -qxF "$rev" <<<"$out" || die "no reply '$rev' from the server ($name, $proto): $out
server: $slog"
        grep -q "^depth=0 CN = e2e engine $name client, O = evertoken e2e\$" <<<"$slog" ||
            die "server did not see the client certificate ($name, $proto): $slog"
        grep -q "^Protocol version: ${proto/tls1_/TLSv1.}\$" <<<"$slog" || die "not ${proto}: $slog"
        grep -q "^Signature type: $want\$" <<<"$slog" ||
            die "client signature ($name, $proto) is not $want: $slog"
        ok "$name: openssl s_client -engine pkcs11 ${proto/tls1_/TLS 1.}: client certificate verified ($want), data exchanged"
    done
done

# ---- without a client certificate the server refuses
e2e_s_server "$T/srv.nocert.log" -rev -naccept 1
out=$(printf 'no cert\nCLOSE\n' | timeout 30 openssl s_client -connect "127.0.0.1:$SPORT" \
    -CAfile "$T/ca/ca.pem" -verify_return_error -ign_eof -quiet 2>&1) || true
e2e_wait_exit "$SPID" || true
grep -q "trec on" <<<"$out" && die "server answered a client without certificate: $out"
grep -q "peer did not return a certificate" "$SLOG" ||
    die "server did not refuse the client without certificate: $(cat "$SLOG")"
ok "without a client certificate s_server refuses the connection"
