# shellcheck shell=bash
# Shared helpers for tests/e2e/t_*.sh (end-to-end tests with real clients).
# Source it first; it sources tests/external/lib.sh (temporary HOME and token
# directory, et_bg, die/ok/need/host/must_fail):
#   . "$(dirname "$0")/lib_e2e.sh"
#
# The module under test is a parameter: evertoken (the built module, default)
# or, with E2E_MODULE=softhsm, SoftHSMv2 in a temporary token directory. Every
# test runs against both (CTest registers e2e.NAME and e2e.softhsm.NAME), so a
# test that passes on SoftHSMv2 and fails on evertoken shows a module bug, not
# a test bug. Exports:
#   M         path of the module under test
#   E2E_SO_PIN, E2E_PIN   the PINs every test token gets
#   PINFILE   a 0600 file holding the user PIN (one line)
: "${EVERTOKEN_SOURCE_DIR:?run through ctest (EVERTOKEN_SOURCE_DIR unset)}"
# shellcheck source=../external/lib.sh
. "$EVERTOKEN_SOURCE_DIR/tests/external/lib.sh"
# shellcheck source=../../scripts/lib/pkcs11-tls.sh
. "$EVERTOKEN_SOURCE_DIR/scripts/lib/pkcs11-tls.sh"

E2E_MODULE=${E2E_MODULE:-evertoken}
export E2E_SO_PIN=87654321 E2E_PIN=31415926
PINFILE=$T/pin
(umask 077 && printf '%s\n' "$E2E_PIN" >"$PINFILE")

case $E2E_MODULE in
evertoken)
    M=$MODULE
    [ -n "$CLI" ] || die "EVERTOKEN_CLI unset"
    ;;
softhsm)
    M=${E2E_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
    [ -r "$M" ] || { echo "SKIP: SoftHSMv2 module $M not installed" >&2; exit 77; }
    need softhsm2-util
    mkdir -m 700 "$T/softhsm"
    export SOFTHSM2_CONF=$T/softhsm/softhsm2.conf
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$T/softhsm" >"$SOFTHSM2_CONF"
    ;;
*) die "E2E_MODULE=$E2E_MODULE: expected evertoken or softhsm" ;;
esac
# E2E_SPY=FILE: load the module through OpenSC's pkcs11-spy, which logs
# every PKCS#11 call with its arguments to FILE (to see what a client asks of
# the token).
if [ -n "${E2E_SPY:-}" ]; then
    spy=$(find /usr/lib/*/pkcs11-spy.so /usr/lib/*/pkcs11/pkcs11-spy.so -print -quit 2>/dev/null || true)
    [ -n "$spy" ] || die "E2E_SPY: OpenSC's pkcs11-spy.so not found"
    export PKCS11SPY=$M PKCS11SPY_OUTPUT=$E2E_SPY
    M=$spy
fi
echo "e2e: module under test: $E2E_MODULE ($M${E2E_SPY:+, spied on into $E2E_SPY})"

# Run a host program that links p11-kit (GnuTLS's tools; curl, through
# librtmp and GnuTLS): with the ASan runtime preloaded these deadlock while
# p11-kit initialises, whatever the module (seen with SoftHSMv2 as well). They
# run without the preload; a sanitized module pulls the ASan runtime in when
# it is loaded, which ASan accepts with verify_asan_link_order=0.
hostk() {
    if [ -n "${ET_PRELOAD:-}" ]; then
        ASAN_OPTIONS=${ASAN_OPTIONS:-}:verify_asan_link_order=0 "$@"
    else
        "$@"
    fi
}

# pkcs11-tool on the module under test.
P() { host pkcs11-tool --module "$M" "$@"; }

# Create a token labelled $1 with E2E_SO_PIN and E2E_PIN on the free slot.
e2e_token() {
    local out
    case $E2E_MODULE in
    evertoken)
        out=$("$CLI" --module "$M" init --label "$1" --so-pin env:E2E_SO_PIN \
            --pin env:E2E_PIN 2>&1) || die "evertoken init --label $1: $out" ;;
    softhsm)
        out=$(softhsm2-util --init-token --free --label "$1" --so-pin "$E2E_SO_PIN" \
            --pin "$E2E_PIN" 2>&1) || die "softhsm2-util --init-token $1: $out" ;;
    esac
    P --token-label "$1" --login --pin "$E2E_PIN" -O >/dev/null 2>&1 ||
        die "token $1 created but the user PIN does not log in: $(P -L 2>&1)"
}

# Generate a key pair on token $1: key type $2 in pkcs11-tool's syntax
# (rsa:2048, EC:prime256v1, EC:edwards25519), CKA_ID $3 (hex), label $4.
# Both objects get sign/verify (and decrypt/encrypt for RSA, derive for EC).
e2e_keygen() {
    local tok=$1 type=$2 id=$3 label=$4 usage out
    case $type in
    rsa:*) usage=(--usage-sign --usage-decrypt) ;;
    EC:edwards*) usage=(--usage-sign) ;;
    *) usage=(--usage-sign --usage-derive) ;;
    esac
    out=$(P --token-label "$tok" --login --pin "$E2E_PIN" --keypairgen --key-type "$type" \
        --id "$id" --label "$label" "${usage[@]}" 2>&1) ||
        die "pkcs11-tool --keypairgen --key-type $type on $E2E_MODULE: $out"
    grep -q "^Key pair generated:" <<<"$out" || die "--keypairgen $type said: $out"
}

# Import a PEM/PKCS#12 private key and/or certificate file $3 into token $1
# with CKA_ID $2 and label $4 through the evertoken CLI (which is an ordinary
# PKCS#11 application and works on SoftHSMv2 too).
e2e_import() {
    local out
    out=$("$CLI" --module "$M" import --token "$1" --pin env:E2E_PIN --id "$2" \
        --label "$4" "$3" 2>&1) || die "evertoken import $3 into $1 ($E2E_MODULE): $out"
}

# The paragraph `pkcs11-tool -O` printed for the object of class $1 (Private,
# Public) with CKA_ID $2 (the listing on stdin).
e2e_obj() {
    awk -v c="$1 Key Object" -v id="$2" '
        /^[^ ]/ { if (hit) exit; blk = ""; on = index($0, c) == 1 }
        { blk = blk $0 "\n" }
        on && $1 == "ID:" && $2 == id { hit = 1 }
        END { if (hit) printf "%s", blk }'
}

# DER: tag $1 (hex) around content $2 (hex).
der() {
    local n=$((${#2} / 2)) l
    if [ "$n" -lt 128 ]; then l=$(printf '%02x' "$n")
    elif [ "$n" -lt 256 ]; then l=$(printf '81%02x' "$n")
    else l=$(printf '82%04x' "$n"); fi
    printf '%s%s%s' "$1" "$l" "$2"
}

# Write the SubjectPublicKeyInfo of the public key with CKA_ID $2 on token $1
# to $3 as PEM, read back from the token (not from the key generation). RSA:
# pkcs11-tool --read-object. EC and EdDSA keys are rebuilt from the
# CKA_EC_PARAMS and CKA_EC_POINT that pkcs11-tool lists, because pkcs11-tool
# 0.23 cannot export P-384 ("cannot create EVP_PKEY") or Ed448 keys.
e2e_pubkey() {
    local out blk params point b hex
    out=$(P --token-label "$1" -O 2>&1) || die "pkcs11-tool -O: $out"
    blk=$(e2e_obj Public "$2" <<<"$out")
    [ -n "$blk" ] || die "no public key with CKA_ID $2 on $1: $out"
    case $blk in
    "Public Key Object; RSA"*)
        out=$(P --token-label "$1" --read-object --type pubkey --id "$2" -o "$3.der" 2>&1) ||
            die "--read-object pubkey $2: $out"
        hex=$(xxd -p "$3.der" | tr -d '\n') ;;
    "Public Key Object; EC"*)
        params=$(awk '$1 == "EC_PARAMS:" { print $2 }' <<<"$blk")
        point=$(awk '$1 == "EC_POINT:" { print $2 }' <<<"$blk")
        { [ -n "$params" ] && [ "${point:0:2}" = 04 ]; } || die "public key $2: no EC_PARAMS/EC_POINT: $blk"
        # PKCS#11 3.0 allows a curve name (PrintableString) as EdDSA parameters.
        case $params in
        130c656477617264733235353139) params=06032b6570 ;; # "edwards25519"
        130a65647761726473343438) params=06032b6571 ;;     # "edwards448"
        esac
        # CKA_EC_POINT is a DER OCTET STRING: drop its tag and length.
        b=$((0x${point:2:2}))
        if [ "$b" -lt 128 ]; then point=${point:4}; else point=${point:$((4 + 2 * (b - 128)))}; fi
        case $blk in
        "Public Key Object; EC_EDWARDS"*) hex=$(der 30 "$(der 30 "$params")$(der 03 "00$point")") ;;
        *) hex=$(der 30 "$(der 30 "06072a8648ce3d0201$params")$(der 03 "00$point")") ;;
        esac ;;
    *) die "public key $2: unexpected type: $blk" ;;
    esac
    xxd -r -p <<<"$hex" | openssl pkey -pubin -inform DER -out "$3" 2>"$3.err" ||
        die "public key $2 read from the token is no valid key: $(cat "$3.err") $blk"
}

# A free TCP port on 127.0.0.1 (random, so parallel tests do not collide).
e2e_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ] && { echo "$p"; return 0; }
    done
    die "no free port found"
}

# Wait until something listens on 127.0.0.1:$1; $2 is the server's pid (its
# early death fails at once) and $3 its log. Checked with ss, not by
# connecting, so a server that accepts one connection only keeps it.
e2e_wait_port() {
    for _ in $(seq 1 100); do
        [ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ] && return 0
        kill -0 "$2" 2>/dev/null || die "server (pid $2) exited before listening on $1: $(cat "$3" 2>/dev/null)"
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1 after 10 s: $(cat "$3" 2>/dev/null)"
}

# Wait (at most 10 s) for the background process $1 to end; its exit status.
e2e_wait_exit() {
    local st
    for _ in $(seq 1 100); do
        st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || break
        [ "$st" = Z ] && break
        sleep 0.1
    done
    [ "${st:-}" = Z ] || [ ! -e "/proc/$1" ] || die "process $1 did not end within 10 s"
    wait "$1"
}

# Start `openssl s_server` on a free loopback port with the test server
# certificate, requiring a client certificate from the test CA; extra
# arguments are added. Sets SPORT, SPID; its output goes to $SLOG.
e2e_s_server() {
    SLOG=$1
    shift
    SPORT=$(e2e_port)
    et_bg openssl s_server -accept "127.0.0.1:$SPORT" -cert "$T/server.pem" -key "$T/server.key" \
        -Verify 1 -CAfile "$T/ca/ca.pem" -verify_return_error "$@" >"$SLOG" 2>&1 </dev/null
    SPID=${ET_PIDS[-1]}
    e2e_wait_port "$SPORT" "$SPID" "$SLOG"
}

# A test CA in $T/ca: ca.key, ca.pem (CN "e2e test CA").
e2e_ca() {
    mkdir -p "$T/ca"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$T/ca/ca.key" -out "$T/ca/ca.pem" -days 2 -subj "/CN=e2e test CA" \
        -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,cRLSign \
        2>"$T/ca/err" || die "CA: $(cat "$T/ca/err")"
    cat >"$T/ca/client.ext" <<EOF
basicConstraints=critical,CA:false
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
    cat >"$T/ca/server.ext" <<EOF
basicConstraints=critical,CA:false
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
}

# The CA signs the request $1 (PEM or DER, $3 = client|server) into the PEM
# certificate $2.
e2e_ca_sign() {
    local form=PEM
    grep -q -- "-----BEGIN" "$1" || form=DER
    openssl x509 -req -inform "$form" -in "$1" -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" \
        -CAcreateserial -days 1 -extfile "$T/ca/$3.ext" -out "$2" 2>"$2.err" ||
        die "CA could not sign $1: $(cat "$2.err")"
}

# A server key and certificate from the test CA: $T/server.key, $T/server.pem.
e2e_server_cert() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$T/server.key" -out "$T/server.csr" -subj "/CN=localhost" 2>/dev/null ||
        die "server key"
    e2e_ca_sign "$T/server.csr" "$T/server.pem" server
}

# An openssl.cnf ($T/openssl.cnf) loading the pkcs11 engine
# (libengine-pkcs11-openssl) with MODULE_PATH = the module under test and the
# user PIN (read from this file, never from a person). Only the commands that
# use the engine get it (E); with it, OpenSSL 3.0 fails to sign certificates
# with an ordinary EC key ("default_check: command not supported").
e2e_engine_conf() {
    pkcs11_engine_conf "$T/openssl.cnf" "$M" "$E2E_PIN" 0 req ||
        { echo "SKIP: libengine-pkcs11-openssl not installed" >&2; exit 77; }
}
# Run a program that loads the module through the engine.
E() { OPENSSL_CONF=$T/openssl.cnf host "$@"; }
# The same for curl, which links p11-kit (see hostk).
EK() { OPENSSL_CONF=$T/openssl.cnf hostk "$@"; }
