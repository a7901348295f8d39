# CA rebuild with EST: during the CA's key rollover /cacerts carries
# NewWithOld, through which the helper accepts the new CA certificate; it is
# kept (anchors.learned.pem) and installed in the token. When the old CA is
# gone (the server has only the new CA, its TLS certificate re-issued under
# it), the next renewal still works because of the learned anchor, while a
# state without it is refused: the profile's anchors file is never edited.
. "$(dirname "$0")/lib.sh"
: "${ESTSRV:?run through ctest}"
ca_init
est_tls
printf 'pw-of-bob\n' >"$T/password"
chmod 600 "$T/password"
est_start --user bob --password-file "$T/password"
cp "$CA/ca.pem" "$T/anchors.pem"
EST_ANCHORS=$T/anchors.pem est_profile carol "[ca]" "username = bob" "secret_file = $T/password"
enr enroll 2>"$T/e.err" || die "enroll: $(cat "$T/e.err")"
openssl verify -CAfile "$CA/ca.pem" <(token_cert carol) >/dev/null || die "not issued by the first CA"

# The CA rolls its key over: NewWithOld, OldWithNew and the new certificate in /cacerts.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$CA/ca2.key" -out "$CA/ca2.pem" \
    -subj "/CN=evertoken test CA G2" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" 2>/dev/null
est_stop; est_start --user bob --password-file "$T/password" --rollover
sed -i "s|^url = .*|url = $EST_URL|" "$PROFILES/carol.conf"
enr renew --force 2>"$T/r1.err" || die "renewal during the rollover: $(cat "$T/r1.err")"
openssl verify -CAfile "$CA/ca2.pem" <(token_cert carol) >/dev/null || die "not issued by the new CA key"
grep -q "the CA's new certificate /CN=evertoken test CA G2 .* is trusted from now on" "$T/r1.err" || die "not learned: $(cat "$T/r1.err")"
[ -s "$STATE/certs/carol/anchors.learned.pem" ] || die "no learned anchors file"
[ "$(count_objects Certificate "evertoken test CA G2")" -ge 1 ] || die "new CA certificate not installed in the token: $(token_objects)"
ok "rollover: the new CA certificate accepted through NewWithOld, kept and installed in the token"

# The old CA is gone: only the new one, the TLS certificate re-issued under it.
cp -r "$STATE" "$T/state-unlearned"
rm "$T/state-unlearned/certs/carol/anchors.learned.pem"
mv "$CA/ca2.pem" "$CA/ca.pem"; mv "$CA/ca2.key" "$CA/ca.key"
est_tls
est_stop; est_start --user bob --password-file "$T/password"
sed -i "s|^url = .*|url = $EST_URL|" "$PROFILES/carol.conf"
before=$(token_serial carol)
rc=0; host "$ENROLL_BIN" --profiles "$PROFILES" --state-dir "$T/state-unlearned" renew --force 2>"$T/u.err" || rc=$?
[ "$rc" = 7 ] || die "without the learned anchor: exit $rc (want 7): $(cat "$T/u.err")"
[ "$(token_serial carol)" = "$before" ] || die "token changed by a refused renewal"
enr renew --force 2>"$T/r2.err" || die "renewal after the CA rebuild: $(cat "$T/r2.err")"
[ "$(token_serial carol)" != "$before" ] || die "not renewed"
openssl verify -CAfile "$CA/ca.pem" <(token_cert carol) >/dev/null || die "not issued by the rebuilt CA"
cred_works carol || die "credential after the rebuild"
[ "$(count_objects Certificate "evertoken test CA G2")" = 1 ] || die "CA certificates after the rebuild: $(token_objects)"
ok "CA rebuilt: the renewal works through the learned anchor (refused without it); one CA certificate in the token"
