#!/usr/bin/env bash
# GnuTLS as the client, the module given with --provider (the PIN from
# GNUTLS_PIN, never a person):
#  * `p11tool --generate-privkey` makes RSA-2048 and ECDSA P-256 key pairs in
#    the token (the public key it prints is the one the token returns);
#    `p11tool --test-sign` signs and verifies with each;
#  * `certtool --generate-request --load-privkey pkcs11:...` with a template
#    makes CSRs that `openssl req -verify` accepts, carrying the token keys;
#  * the test CA's certificates are written into the token with
#    `p11tool --write` next to their keys;
#  * `gnutls-cli --x509keyfile pkcs11:... --x509certfile pkcs11:...` (key and
#    certificate from the token) completes TLS 1.3 and TLS 1.2 handshakes
#    against `openssl s_server -Verify 1 -verify_return_error` on 127.0.0.1
#    (gnutls-serv cannot be bound to loopback only), which verified the
#    client certificate; data goes both ways.
# p11tool 3.7.9 cannot generate EdDSA keys in a token ("unsupported feature").
. "$(dirname "$0")/lib_e2e.sh"
need p11tool certtool gnutls-cli openssl pkcs11-tool ss

TOK=e2e-gnutls
e2e_token "$TOK"
e2e_ca
e2e_server_cert
export GNUTLS_PIN=$E2E_PIN
G() { hostk p11tool --provider "$M" "$@" </dev/null; }
turl="pkcs11:token=$TOK"

for k in rsa:01:--bits=2048 ec:02:--curve=secp256r1; do
    IFS=: read -r name id opt <<<"$k"
    label=gnutls-$name
    type=$name
    [ "$name" = ec ] && type=ecdsa

    # ---- key generation in the token
    out=$(G --login --generate-privkey "$type" "$opt" --label "$label" --id "$id" \
        --outfile "$T/$name.gen.pub" "$turl" 2>&1) ||
        die "p11tool --generate-privkey $type $opt on $E2E_MODULE: $out"
    out=$(G --login --list-all-privkeys "$turl" 2>&1) || die "p11tool --list-all-privkeys: $out"
    grep -q "Label: $label\$" <<<"$out" || die "generated key $label not listed: $out"
    e2e_pubkey "$TOK" "$id" "$T/$name.pub.pem"
    openssl pkey -pubin -in "$T/$name.gen.pub" | cmp -s - "$T/$name.pub.pem" ||
        die "p11tool printed another public key than the token holds ($name)"
    out=$(G --login --test-sign "$turl;object=$label;type=private" 2>&1) ||
        die "p11tool --test-sign ($name): $out"
    grep -q "Verifying against public key in the token... ok" <<<"$out" ||
        die "p11tool --test-sign ($name) said: $out"
    ok "$name: p11tool --generate-privkey $type $opt, --test-sign"

    # ---- certificate request signed by the token key
    cat >"$T/$name.tmpl" <<EOF
cn = "e2e gnutls $name client"
organization = "evertoken e2e"
tls_www_client
signing_key
EOF
    out=$(hostk certtool --provider "$M" --generate-request \
        --load-privkey "$turl;object=$label;type=private" --template "$T/$name.tmpl" \
        --outfile "$T/$name.csr" </dev/null 2>&1) || die "certtool --generate-request ($name): $out"
    out=$(openssl req -verify -in "$T/$name.csr" -noout -subject 2>&1) ||
        die "certtool's CSR ($name) does not verify: $out"
    grep -q "verify OK" <<<"$out" || die "openssl req -verify ($name): $out"
    grep -q "subject=O = evertoken e2e, CN = e2e gnutls $name client" <<<"$out" ||
        die "CSR subject ($name): $out"
    openssl req -in "$T/$name.csr" -pubkey -noout | cmp -s - "$T/$name.pub.pem" ||
        die "certtool's CSR ($name) does not carry the token's public key"
    ok "$name: certtool --generate-request with the token key, verified by OpenSSL"

    # ---- the certificate goes into the token through GnuTLS
    e2e_ca_sign "$T/$name.csr" "$T/$name.pem" client
    out=$(G --login --write --load-certificate "$T/$name.pem" --label "$label" --id "$id" "$turl" 2>&1) ||
        die "p11tool --write certificate ($name): $out"
    G --export "$turl;object=$label;type=cert" --outfile "$T/$name.back.pem" >/dev/null 2>&1 ||
        die "p11tool --export ($name)"
    cmp -s <(openssl x509 -in "$T/$name.pem" -outform DER) <(openssl x509 -in "$T/$name.back.pem" -outform DER) ||
        die "certificate read back ($name) differs"

    # ---- gnutls-cli with key and certificate from the token
    for proto in 1.3 1.2; do
        sopts=(-rev -naccept 1)
        want=RSA-PSS
        [ "$name" = ec ] && want=ECDSA
        if [ "$proto" = 1.2 ] && [ "$name" = rsa ]; then
            sopts+=(-client_sigalgs RSA+SHA256)
            want=RSA
        fi
        e2e_s_server "$T/srv.$name.$proto.log" "${sopts[@]}"
        msg="evertoken e2e gnutls $name $proto $RANDOM"
        out=$(printf '%s\nCLOSE\n' "$msg" | hostk timeout 30 gnutls-cli --provider "$M" \
            --priority "NORMAL:-VERS-ALL:+VERS-TLS$proto" \
            --x509keyfile "$turl;object=$label;type=private" \
            --x509certfile "$turl;object=$label;type=cert" \
            --x509cafile "$T/ca/ca.pem" -p "$SPORT" 127.0.0.1 2>&1) ||
            die "gnutls-cli ($name, TLS $proto) with the token key failed: $out
server: $(cat "$SLOG")"
        e2e_wait_exit "$SPID" || true
        slog=$(cat "$SLOG")
        rev=$(rev <<<"$msg")
        grep -qxF "$rev" <<<"$out" || die "no reply '$rev' from the server ($name, TLS $proto): $out
server: $slog"
        grep -q "^depth=0 O = evertoken e2e, CN = e2e gnutls $name client\$" <<<"$slog" ||
            die "server did not see the client certificate ($name, TLS $proto): $slog"
        grep -q "^Protocol version: TLSv$proto\$" <<<"$slog" || die "not TLS $proto: $slog"
        grep -q "^Signature type: $want\$" <<<"$slog" ||
            die "client signature ($name, TLS $proto) is not $want: $slog"
        ok "$name: gnutls-cli TLS $proto with pkcs11: key and certificate, client certificate verified ($want)"
    done
done
