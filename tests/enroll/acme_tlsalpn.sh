# The tls-alpn-01 challenge (RFC 8737) by the helper's built-in responder:
#  - the responder on its own (tests/enroll/tlsalpnsrv): a ClientHello
#    offering another protocol (h2), or no ALPN at all, or naming another
#    identifier in SNI is refused with a TLS alert; with acme-tls/1 and the
#    identifier it answers a self-signed certificate holding that single
#    dNSName and the critical acmeIdentifier extension whose value is the
#    SHA-256 of the key authorization (checked here with openssl asn1parse);
#  - issuance against pebble, which validates on its tlsPort where the
#    profile's tls_alpn_listen is: a DNS identifier, then an IP identifier
#    (RFC 8738: SNI is the address's reverse name, SAN the address);
#  - tls_alpn_listen without challenge = tls-alpn-01: a precise error.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/acmelib.sh"
[ -x "${TLSALPNSRV:-}" ] || die "TLSALPNSRV is not set (run from CTest)"

# --- the responder on its own ------------------------------------------
KA=tok123.thumb456
mkfifo "$T/srv.in"
"$TLSALPNSRV" "127.0.0.1:$ACME_TLS_PORT" dns:probe.acme.test "$KA" <"$T/srv.in" >"$T/srv.out" 2>"$T/srv.err" &
SRV_PID=$!
ET_PIDS+=("$SRV_PID")
exec 9>"$T/srv.in"
for _ in $(seq 200); do grep -q ready "$T/srv.out" && break; sleep 0.05; done
grep -q ready "$T/srv.out" || die "tlsalpnsrv did not start: $(cat "$T/srv.err")"
hello() { openssl s_client -connect "127.0.0.1:$ACME_TLS_PORT" "$@" </dev/null 2>&1; }
hello -alpn h2 -servername probe.acme.test >"$T/h2.out" && die "a ClientHello with ALPN h2 was answered: $(cat "$T/h2.out")"
grep -q "alert no application protocol" "$T/h2.out" || die "ALPN h2: no no_application_protocol alert: $(cat "$T/h2.out")"
hello -servername probe.acme.test >"$T/none.out" && die "a ClientHello without ALPN was answered: $(cat "$T/none.out")"
grep -q "alert no application protocol" "$T/none.out" || die "no ALPN: no alert: $(cat "$T/none.out")"
hello -alpn acme-tls/1 -servername other.acme.test >"$T/other.out" && die "another SNI was answered: $(cat "$T/other.out")"
grep -q "unrecognized name" "$T/other.out" || die "another SNI: no unrecognized_name alert: $(cat "$T/other.out")"
hello -alpn acme-tls/1 -servername probe.acme.test >"$T/ok.out" || die "acme-tls/1 refused: $(cat "$T/ok.out")"
grep -q "ALPN protocol: acme-tls/1" "$T/ok.out" || die "acme-tls/1 not negotiated: $(cat "$T/ok.out")"
openssl x509 -in "$T/ok.out" -out "$T/v.pem" || die "no certificate"
openssl x509 -in "$T/v.pem" -noout -text >"$T/v.txt"
grep -A1 "X509v3 Subject Alternative Name" "$T/v.txt" | grep -qx " *DNS:probe.acme.test" || die "SAN: $(cat "$T/v.txt")"
grep -q "1.3.6.1.5.5.7.1.31: critical" "$T/v.txt" || die "no critical acmeIdentifier: $(cat "$T/v.txt")"
openssl verify -ignore_critical -CAfile "$T/v.pem" -check_ss_sig "$T/v.pem" >/dev/null 2>&1 || die "not self-signed"
# extnValue = DER OCTET STRING (04 20) of SHA-256(key authorization)
want=0420$(printf '%s' "$KA" | openssl dgst -sha256 -r | cut -d' ' -f1 | tr a-f A-F)
openssl x509 -in "$T/v.pem" -outform DER | openssl asn1parse -inform DER >"$T/v.asn1"
got=$(grep -A2 ":1.3.6.1.5.5.7.1.31" "$T/v.asn1" | sed -n 's/.*OCTET STRING *\[HEX DUMP\]://p')
[ "$got" = "$want" ] || die "acmeIdentifier $got, want $want: $(cat "$T/v.asn1")"
exec 9>&-
wait "$SRV_PID" || die "tlsalpnsrv failed: $(cat "$T/srv.err")"
grep -q "a ClientHello without acme-tls/1 refused" "$T/srv.err" || die "$(cat "$T/srv.err")"
ok "tls-alpn-01 responder: ALPN h2 and no ALPN refused, another SNI refused; acme-tls/1 answers the identifier's self-signed certificate with the critical acmeIdentifier = SHA-256(key authorization)"

# --- against pebble ------------------------------------------------------
acme_init
acme_start
acme_profile alice "agree_tos = true" "challenge = tls-alpn-01" "tls_alpn_listen = 127.0.0.1:$ACME_TLS_PORT"
sed -i '/^http_listen/d' "$PROFILES/alice.conf"
enr -v enroll alice 2>"$T/e.err" || die "tls-alpn-01: $(cat "$T/e.err")"
grep -q "tls-alpn-01 responder listening on 127.0.0.1:$ACME_TLS_PORT" "$T/e.err" || die "no responder: $(cat "$T/e.err")"
grep -q "dns:alice.acme.test validated by the CA (tls-alpn-01)" "$T/e.err" || die "not validated: $(cat "$T/e.err")"
! grep -q "http-01 responder listening" "$T/e.err" || die "the http-01 responder ran"
token_cert alice >"$T/alice.pem" || die "alice: no certificate"
openssl x509 -in "$T/alice.pem" -noout -ext subjectAltName | grep -q "DNS:alice.acme.test" || die "alice: SAN lost"
[ "$(count_objects Certificate alice)" = 1 ] && [ "$(count_objects Private alice)" = 1 ] || die "alice: $(token_objects)"
# the validation keys stayed out of the token: only alice's and the account key
[ "$(token_objects | grep -c "^Private")" = 2 ] || die "other private keys in the token: $(token_objects)"
cred_works alice || die "alice's credential does not work"
ok "tls-alpn-01 against pebble: validated on its tlsPort by the built-in responder, certificate issued, key in the token"

acme_profile carol "agree_tos = true" "challenge = tls-alpn-01" "tls_alpn_listen = 127.0.0.1:$ACME_TLS_PORT"
sed -i '/^http_listen/d; s|^subject = .*|subject = O=evertoken tests|; s|^san = .*|san = IP:127.0.0.1|' "$PROFILES/carol.conf"
enr -v enroll carol 2>"$T/i.err" || die "tls-alpn-01 for an IP: $(cat "$T/i.err")"
grep -q "ip:127.0.0.1 validated by the CA (tls-alpn-01)" "$T/i.err" || die "not validated: $(cat "$T/i.err")"
token_cert carol | openssl x509 -noout -ext subjectAltName | grep -q "IP Address:127.0.0.1" || die "no IP SAN"
ok "tls-alpn-01 for an IP address identifier (RFC 8738)"

acme_profile erin "agree_tos = true" "tls_alpn_listen = 127.0.0.1:$ACME_TLS_PORT"
expect_rc 3 enr enroll erin 2>"$T/x.err"
grep -q "tls_alpn_listen is for the built-in tls-alpn-01 responder: set challenge = tls-alpn-01" "$T/x.err" ||
    die "no precise error: $(cat "$T/x.err")"
ok "tls_alpn_listen without challenge = tls-alpn-01: a precise error"
acme_stop
