#!/usr/bin/env bash
# curl (OpenSSL backend) with its client key, and certificate, from the token
# against `openssl s_server -www -Verify 1 -verify_return_error` on
# 127.0.0.1, which answers with the client certificate it verified:
#  * an RSA-2048 credential imported as PKCS#12 and an EC P-384 credential
#    imported as PEM (through the evertoken CLI, so signing is tested
#    independently of key generation);
#  * three ways to name them: `--engine pkcs11 --key-type ENG --key pkcs11:...
#    --cert FILE`, key and certificate both as PKCS#11 URIs (`--cert-type
#    ENG`), and bare pkcs11: URIs (curl picks the engine itself);
#  * the page shows exactly the certificate stored in the token; without a
#    client certificate the request fails.
. "$(dirname "$0")/lib_e2e.sh"
need curl openssl pkcs11-tool ss

TOK=e2e-curl
e2e_token "$TOK"
e2e_engine_conf
e2e_ca
e2e_server_cert

# ---- client credentials imported into the token
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/rsa.key" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$T/ec.key" 2>/dev/null
for name in rsa ec; do
    openssl req -new -key "$T/$name.key" -subj "/CN=e2e curl $name client" -out "$T/$name.csr" ||
        die "CSR $name"
    e2e_ca_sign "$T/$name.csr" "$T/$name.pem" client
done
openssl pkcs12 -export -inkey "$T/rsa.key" -in "$T/rsa.pem" -name curl-rsa -passout pass: \
    -out "$T/rsa.p12" || die "PKCS#12"
e2e_import "$TOK" 01 "$T/rsa.p12" curl-rsa
cat "$T/ec.key" "$T/ec.pem" >"$T/ec.bundle.pem"
e2e_import "$TOK" 02 "$T/ec.bundle.pem" curl-ec
rm -f "$T/rsa.key" "$T/ec.key" "$T/ec.bundle.pem" "$T/rsa.p12"
ok "RSA (PKCS#12) and EC P-384 (PEM) credentials imported"

# ---- the server
e2e_s_server "$T/srv.log" -www

# The client certificate the -www page shows, as PEM.
page_cert() { awk '/^Client certificate/ { on = 1 } on && /-----BEGIN CERTIFICATE/ { p = 1 } p { print }
                   p && /-----END CERTIFICATE/ { exit }'; }

for name in rsa ec; do
    key="pkcs11:token=$TOK;object=curl-$name;type=private"
    crt="pkcs11:token=$TOK;object=curl-$name;type=cert"
    for how in file-cert uri-cert bare-uri; do
        case $how in
        file-cert) args=(--engine pkcs11 --key-type ENG --key "$key" --cert "$T/$name.pem") ;;
        uri-cert) args=(--engine pkcs11 --key-type ENG --key "$key" --cert-type ENG --cert "$crt") ;;
        bare-uri) args=(--key "$key" --cert "$crt") ;;
        esac
        out=$(EK timeout 30 curl -sS --fail --cacert "$T/ca/ca.pem" "${args[@]}" \
            "https://127.0.0.1:$SPORT/" 2>&1) ||
            die "curl ($name, $how) with the token key failed: $out
server: $(tail -20 "$SLOG")"
        grep -q "^Client certificate" <<<"$out" || die "server saw no client certificate ($name, $how): $out"
        page_cert <<<"$out" | openssl x509 -outform DER 2>/dev/null |
            cmp -s - <(openssl x509 -in "$T/$name.pem" -outform DER) ||
            die "server saw another client certificate ($name, $how): $out"
        ok "curl $how ($name): TLS with the token's key, server verified the client certificate"
    done
done

# ---- without a client certificate the request fails
out=$(timeout 30 curl -sS --cacert "$T/ca/ca.pem" "https://127.0.0.1:$SPORT/" 2>&1) &&
    die "curl without a client certificate succeeded: $out"
grep -Eq "certificate required|handshake failure|alert" <<<"$out" ||
    die "curl without a client certificate failed for another reason: $out"
ok "curl without a client certificate is refused"
