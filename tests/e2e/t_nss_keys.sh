#!/usr/bin/env bash
# NSS with keys made in the token, in a temporary NSS database with the module
# added (modutil -add); the PIN comes from a password file, the key noise from
# a file, and the tools run without a terminal (setsid, stdin /dev/null):
#  * `certutil -S -h TOKEN -x` generates an RSA-2048 and an EC P-256 key pair
#    in the token and a self-signed certificate for each, stored in the token;
#    `certutil -L -h TOKEN` lists them, `certutil -K` lists their keys;
#    OpenSSL verifies each self-signature (certificate read from the token with
#    pkcs11-tool), and the certificate's public key is the one the token holds;
#  * `certutil -R` makes a request signed by an existing token key (by its key
#    id) and one with a new EC P-384 key generated in the token; OpenSSL
#    verifies both requests.
. "$(dirname "$0")/lib_e2e.sh"
need certutil modutil pkcs11-tool openssl setsid

N() { host setsid -w "$@" </dev/null; }
TOK=e2e-nss
DB=sql:$T/nss
e2e_token "$TOK"
mkdir -m 700 "$T/nss"
N certutil -N -d "$DB" --empty-password >"$T/n.log" 2>&1 || die "certutil -N: $(cat "$T/n.log")"
N modutil -dbdir "$DB" -add e2e-module -libfile "$M" -force >"$T/add.log" 2>&1 ||
    die "modutil -add: $(cat "$T/add.log")"
PW=(-f "$PINFILE")
head -c 2048 /dev/urandom >"$T/noise"

# ---- certutil -S: key pair and self-signed certificate inside the token
for k in rsa:-g:2048 ec:-q:nistp256; do
    IFS=: read -r kt opt val <<<"$k"
    nick=nss-$kt
    out=$(N certutil -S -d "$DB" -h "$TOK" "${PW[@]}" -z "$T/noise" -n "$nick" -x -t u,u,u \
        -s "CN=e2e nss $kt,O=evertoken e2e" -k "$kt" "$opt" "$val" -v 12 2>&1) ||
        die "certutil -S -k $kt $opt $val -h $TOK on $E2E_MODULE: $out"
    # Read back from the token itself (certutil -L -n ignores -f on a token
    # that needs a login to list certificates, and then fails without a terminal).
    out=$(P --token-label "$TOK" --read-object --type cert --label "$nick" -o "$T/$kt.der" 2>&1) ||
        die "certificate $nick not found in the token: $out"
    openssl x509 -inform DER -in "$T/$kt.der" -out "$T/$kt.pem" 2>/dev/null ||
        die "token object $nick is no certificate"
    grep -q "^subject=O = evertoken e2e, CN = e2e nss $kt\$" <<<"$(openssl x509 -in "$T/$kt.pem" -noout -subject)" ||
        die "certificate $nick subject: $(openssl x509 -in "$T/$kt.pem" -noout -subject)"
    out=$(openssl verify -check_ss_sig -CAfile "$T/$kt.pem" "$T/$kt.pem" 2>&1) ||
        die "the self-signature of $nick (made by the token key) does not verify: $out"
    ok "certutil -S -k $kt: self-signed certificate $TOK:$nick, signature verified by OpenSSL"
done

# The certificates are on the token (listed through -h TOKEN) ...
out=$(N certutil -L -d "$DB" -h "$TOK" "${PW[@]}" 2>&1) || die "certutil -L -h $TOK: $out"
for kt in rsa ec; do
    grep -Eq "^$TOK:nss-$kt +u,u,u\$" <<<"$out" || die "certutil -L -h $TOK does not list nss-$kt: $out"
done
# ... and so are their keys, with NSS's key ids.
keys=$(N certutil -K -d "$DB" -h "$TOK" "${PW[@]}" 2>&1) || die "certutil -K -h $TOK: $keys"
declare -A KID
for kt in rsa ec; do
    KID[$kt]=$(awk -v t="$kt" -v n="$TOK:nss-$kt" '$3 == t && $5 == n { print $4 }' <<<"$keys")
    [ -n "${KID[$kt]}" ] || die "certutil -K -h $TOK does not list the $kt key of nss-$kt: $keys"
done
# pkcs11-tool sees certificates and private keys in the token itself, and the
# certificate's public key is the token's public key of the same CKA_ID.
list=$(P --token-label "$TOK" --login --pin "$E2E_PIN" -O 2>&1) || die "pkcs11-tool -O: $list"
for kt in rsa ec; do
    id=${KID[$kt]}
    grep -q "^Certificate Object" <<<"$list" || die "no certificate object on the token: $list"
    [ -n "$(e2e_obj Private "$id" <<<"$list")" ] || die "no private key $id ($kt) on the token: $list"
    e2e_pubkey "$TOK" "$id" "$T/$kt.pub.pem"
    openssl x509 -in "$T/$kt.pem" -noout -pubkey | cmp -s - "$T/$kt.pub.pem" ||
        die "certificate nss-$kt does not carry the token's public key $id"
done
ok "certutil -L -h $TOK / -K list both certificates and keys; they are token objects"

# ---- certutil -R: a request signed by an existing token key
out=$(N certutil -R -d "$DB" -h "$TOK" "${PW[@]}" -z "$T/noise" -k "${KID[rsa]}" \
    -s "CN=e2e nss request,O=evertoken e2e" -o "$T/req.der" 2>&1) ||
    die "certutil -R -k ${KID[rsa]} (existing RSA key): $out"
out=$(openssl req -inform DER -in "$T/req.der" -verify -noout -subject 2>&1) ||
    die "request by the token's RSA key does not verify: $out"
grep -q "verify OK" <<<"$out" || die "openssl req -verify: $out"
grep -q "subject=O = evertoken e2e, CN = e2e nss request" <<<"$out" || die "request subject: $out"
openssl req -inform DER -in "$T/req.der" -noout -pubkey | cmp -s - "$T/rsa.pub.pem" ||
    die "request does not carry the existing RSA key"
ok "certutil -R with the existing token RSA key: request verified by OpenSSL"

# ---- certutil -R with a new key generated in the token
out=$(N certutil -R -d "$DB" -h "$TOK" "${PW[@]}" -z "$T/noise" -k ec -q nistp384 \
    -s "CN=e2e nss request ec,O=evertoken e2e" -o "$T/req2.der" 2>&1) ||
    die "certutil -R -k ec -q nistp384 -h $TOK: $out"
out=$(openssl req -inform DER -in "$T/req2.der" -verify -noout -text 2>&1) ||
    die "request with the new P-384 key does not verify: $out"
grep -q "NIST CURVE: P-384" <<<"$out" || die "request key is not P-384: $out"
keys=$(N certutil -K -d "$DB" -h "$TOK" "${PW[@]}" 2>&1) || die "certutil -K: $keys"
[ "$(grep -c "^<" <<<"$keys")" = 3 ] || die "the new P-384 key is not in the token: $keys"
ok "certutil -R -k ec -q nistp384: key generated in the token, request verified by OpenSSL"
