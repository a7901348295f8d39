# Shared helpers for tests/enroll/t_*.sh (sourced). Each script runs in its
# own network namespace (unshare -n, only lo up) when it can, so the SCEP CA
# and OCSP responder it starts are unreachable from outside and never clash
# with other tests' ports. It reuses tests/external/lib.sh (temporary HOME,
# XDG dirs, cleanup) and adds:
#   ENR_TOKEN_KIND  softhsm | evertoken (set by CTest: each script runs on both)
#   MOD             the PKCS#11 module of the token under test
#   enr ARGS        the helper (profiles/state under $T), never sleeping
#   ca_init / scep_start ARGS / scep_stop / profile NAME [LINES…] / p11 ARGS
if [ -z "${ENR_IN_NETNS:-}" ] && [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
    export ENR_IN_NETNS=1
    exec unshare -n bash -c 'ip link set lo up && exec bash "$@"' bash "$0" "$@"
fi
. "$EVERTOKEN_SOURCE_DIR/tests/external/lib.sh"
: "${ENROLL_BIN:?run through ctest}" "${SCEPSRV:?run through ctest}" "${ENR_PROBE:?run through ctest}"
need openssl pkcs11-tool
# Never the user's desktop: no session bus unless a test starts its own
# (ev_desktop.sh); the helper's desktop notifications then show nothing.
unset DBUS_SESSION_BUS_ADDRESS
ENR_TOKEN_KIND=${ENR_TOKEN_KIND:-softhsm}
PIN=1234
SO_PIN=12345678
LABEL=enr
PROFILES=$XDG_CONFIG_HOME/evertoken/profiles
STATE=$T/state
CA=$T/ca
mkdir -p "$PROFILES" "$CA"
printf '%s\n' "$PIN" >"$T/pin"
printf 'let-me-in\n' >"$T/challenge"
chmod 600 "$T/pin" "$T/challenge"

case "$ENR_TOKEN_KIND" in
softhsm)
    MOD=/usr/lib/softhsm/libsofthsm2.so
    [ -e "$MOD" ] || { echo "SKIP: SoftHSMv2 not installed" >&2; exit 77; }
    export SOFTHSM2_CONF=$T/softhsm2.conf
    mkdir -p "$T/softhsm"
    echo "directories.tokendir = $T/softhsm" >"$SOFTHSM2_CONF"
    softhsm2-util --init-token --free --label "$LABEL" --so-pin "$SO_PIN" --pin "$PIN" >/dev/null
    ;;
evertoken)
    MOD=$EVERTOKEN_MODULE
    DEMO_SO=$SO_PIN DEMO_PIN=$PIN "$CLI" init --label "$LABEL" --so-pin env:DEMO_SO --pin env:DEMO_PIN >/dev/null
    ;;
*) die "unknown ENR_TOKEN_KIND $ENR_TOKEN_KIND" ;;
esac

# The helper, with this test's profiles and state.
enr() { host "$ENROLL_BIN" --profiles "$PROFILES" --state-dir "$STATE" "$@"; }
# pkcs11-tool on the token under test, logged in.
p11() { host pkcs11-tool --module "$MOD" --token-label "$LABEL" --login --pin "$PIN" "$@"; }

# A test CA (and an RA certificate when RA=1) for scepsrv.
ca_init() {
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$CA/ca.key" -out "$CA/ca.pem" \
        -subj "/CN=evertoken test CA" -days 3650 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    if [ "${RA:-0}" = 1 ]; then
        openssl req -new -newkey rsa:2048 -nodes -keyout "$CA/ra.key" -subj "/CN=evertoken test RA" \
            -out "$CA/ra.csr" 2>/dev/null
        printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' >"$CA/ra.ext"
        openssl x509 -req -in "$CA/ra.csr" -CA "$CA/ca.pem" -CAkey "$CA/ca.key" -CAcreateserial \
            -days 3650 -sha256 -extfile "$CA/ra.ext" -out "$CA/ra.pem" 2>/dev/null
    fi
    cat >"$CA/ca.cnf" <<CNF
[ca]
default_ca = CA_default
[CA_default]
dir = $CA
database = $CA/index.txt
certificate = $CA/ca.pem
private_key = $CA/ca.key
crlnumber = $CA/crlnumber
default_md = sha256
default_crl_days = 30
CNF
    echo 01 >"$CA/crlnumber"
    touch "$CA/index.txt"
}

# Put the CA (after ca_init) under a root: ROOT=$T/root holds root.pem/root.key,
# $CA/ca.pem becomes an intermediate (same name and key, so what the CA
# issued before still chains) issued by the root, with DAYS (default 3000) of validity; also
# copied to $CA/chain.pem. Profiles then trust $ROOT/root.pem.
ca_under_root() {
    ROOT=$T/root
    INT_CN="evertoken test CA"
    mkdir -p "$ROOT"
    [ -s "$ROOT/root.pem" ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout "$ROOT/root.key" \
        -out "$ROOT/root.pem" -subj "/CN=evertoken test root" -days 3650 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' >"$ROOT/int.ext"
    openssl req -new -key "$CA/ca.key" -subj "/CN=$INT_CN" -out "$ROOT/int.csr" 2>/dev/null
    openssl x509 -req -in "$ROOT/int.csr" -CA "$ROOT/root.pem" -CAkey "$ROOT/root.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days "${1:-3000}" -sha256 -extfile "$ROOT/int.ext" \
        -out "$CA/ca.pem" 2>/dev/null
    cp "$CA/ca.pem" "$CA/chain.pem"
}
# The profile's CA chain files: chain.pem is exactly $CA/ca.pem, fullchain.pem
# the token's certificate plus it, and cert.pem verifies to the root at the
# helper's (fake) time.
chain_files_ok() {
    local d=$STATE/certs/$1 t=${EVERTOKEN_ENROLL_FAKE_TIME:-$(date +%s)}
    cmp -s <(openssl x509 -in "$d/chain.pem" -outform DER) <(openssl x509 -in "$CA/ca.pem" -outform DER) ||
        { echo "$1: chain.pem is not the intermediate" >&2; return 1; }
    [ "$(grep -c 'BEGIN CERTIFICATE' "$d/fullchain.pem")" = 2 ] || { echo "$1: fullchain.pem" >&2; return 1; }
    token_cert "$1" | cmp -s - <(openssl x509 -in "$d/cert.pem") || { echo "$1: cert.pem is not the token's" >&2; return 1; }
    openssl verify -attime "$t" -CAfile "$ROOT/root.pem" -untrusted "$d/chain.pem" "$d/cert.pem" >/dev/null ||
        { echo "$1: cert.pem does not verify with chain.pem" >&2; return 1; }
    [ "$(count_objects Certificate "$INT_CN")" = 1 ] || { echo "intermediate in the token: $(token_objects)" >&2; return 1; }
}

# Start scepsrv with ARGS; sets SCEP_URL.
scep_start() {
    rm -f "$CA/port"
    "$SCEPSRV" --dir "$CA" --port-file "$CA/port" --challenge-file "$T/challenge" "$@" \
        2>>"$T/scepsrv.log" &
    SCEP_PID=$!
    ET_PIDS+=("$SCEP_PID")
    for _ in $(seq 100); do [ -s "$CA/port" ] && break; sleep 0.05; done
    [ -s "$CA/port" ] || die "scepsrv did not start: $(cat "$T/scepsrv.log")"
    SCEP_PORT=$(cat "$CA/port")
    SCEP_URL=http://127.0.0.1:$SCEP_PORT/scep
}
scep_stop() { kill "$SCEP_PID" 2>/dev/null; wait "$SCEP_PID" 2>/dev/null || true; }

# Write profile NAME: the base settings, then extra LINES (each "[section] key = value"
# style lines are appended verbatim).
profile() {
    local name=$1; shift
    {
        printf '[ca]\nurl = %s\nanchors = %s\nsecret_file = %s\npoll_interval = 5\n' \
            "${URL_OVERRIDE:-$SCEP_URL}" "$CA/ca.pem" "$T/challenge"
        printf '[certificate]\nsubject = CN=%s, O=evertoken tests\nsan = DNS:%s.example\n' "$name" "$name"
        printf '[token]\nuri = pkcs11:token=%s;object=%s\nmodule = %s\npin_file = %s\n' "$LABEL" "$name" "$MOD" "$T/pin"
        printf '[hooks]\nnotify_command = printf "%%s|%%s|%%s\\n" "$EVERTOKEN_EVENT" "$EVERTOKEN_PROFILE" "$EVERTOKEN_MESSAGE" >>%s\n' "$T/notify.log"
        for l in "$@"; do printf '%s\n' "$l"; done
    } >"$PROFILES/$name.conf"
}

# The certificate stored under label NAME in the token (PEM on stdout).
token_cert() {
    p11 --read-object --type cert --label "$1" -o "$T/tc.der" >/dev/null 2>&1 || return 1
    openssl x509 -inform DER -in "$T/tc.der"
}
token_serial() { token_cert "$1" | openssl x509 -noout -serial | sed 's/serial=//'; }
# Objects of the token, one "class label" per line.
token_objects() {
    p11 -O 2>/dev/null | awk '/Object;/{c=$1} /label:/{sub(/^[ \t]*label:[ \t]*/,""); print c, $0}' | sort
}
count_objects() { token_objects | grep -c "^$1 $2\$" || true; }
# CKA_ID (hex) of the certificate labelled NAME.
token_id() {
    p11 -O --type cert 2>/dev/null | awk -v n="$1" '/label:/{sub(/^[ \t]*label:[ \t]*/,""); l=$0} /ID:/{if (l==n) print $2}' | head -1
}

# The credential NAME works: its key signs, the certificate's key verifies.
cred_works() {
    local name=$1
    token_cert "$name" >"$T/cw.pem" || { echo "no certificate $name" >&2; return 1; }
    openssl x509 -in "$T/cw.pem" -noout -pubkey >"$T/cw.pub"
    printf 'data to sign' >"$T/cw.dat"
    # pkcs11-tool selects the signing key by --id (it ignores --label there).
    p11 --sign --mechanism SHA256-RSA-PKCS --id "$(token_id "$name")" -i "$T/cw.dat" -o "$T/cw.sig" >/dev/null 2>"$T/cw.err" ||
        { echo "signing with key $name failed: $(cat "$T/cw.err")" >&2; return 1; }
    openssl dgst -sha256 -verify "$T/cw.pub" -signature "$T/cw.sig" "$T/cw.dat" >/dev/null ||
        { echo "signature of $name does not verify with its certificate" >&2; return 1; }
}

# The default CKA_ID of profile NAME (hex): SHA-256("evertoken-enroll:NAME")[0:16].
cred_id() { printf 'evertoken-enroll:%s' "$1" | openssl dgst -sha256 -binary | head -c 16 | od -An -tx1 | tr -d ' \n'; }
# enr_probe (tests/enroll/enr_probe.c) on the token under test: CMD NAME [ARGS].
probe() { local cmd=$1 name=$2; shift 2; host "$ENR_PROBE" "$cmd" "$MOD" "$LABEL" "$(cred_id "$name")" "$T/pin" "$@"; }
# On evertoken the helper uses the native rollover: pending and retired objects
# are invisible, so the tests ask the module (probe pending/rollback) instead of
# looking for the standard sequence's label tags.
native() { [ "$ENR_TOKEN_KIND" = evertoken ]; }
# Pending objects of credential NAME: native ones (probe), else "NAME (pending)" labels.
pending_count() {
    if native; then probe pending "$1"; else token_objects | grep -c "^[A-Za-z]* $1 (pending)\$" || true; fi
}

# Expect exit code CODE from a command.
expect_rc() {
    local want=$1; shift
    local rc=0
    "$@" || rc=$?
    [ "$rc" = "$want" ] || die "expected exit $want, got $rc: $*"
}
now_epoch() { date +%s; }

# ---- EST (est_*.sh) ----------------------------------------------------------
# est_tls: a TLS server certificate for estsrv (127.0.0.1), issued by the CA.
est_tls() {
    openssl req -new -newkey rsa:2048 -nodes -keyout "$CA/tls.key" -subj "/CN=127.0.0.1" \
        -out "$CA/tls.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$CA/tls.ext"
    openssl x509 -req -in "$CA/tls.csr" -CA "$CA/ca.pem" -CAkey "$CA/ca.key" -CAcreateserial \
        -days 3650 -sha256 -extfile "$CA/tls.ext" -out "$CA/tls.pem" 2>/dev/null
}
# Start estsrv on DIR ($CA unless ESTDIR) with ARGS; sets EST_URL.
est_start() {
    local dir=${ESTDIR:-$CA}
    rm -f "$dir/port"
    "$ESTSRV" --dir "$dir" --port-file "$dir/port" "$@" 2>>"$T/estsrv.log" &
    EST_PID=$!
    ET_PIDS+=("$EST_PID")
    for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.05; done
    [ -s "$dir/port" ] || die "estsrv did not start: $(cat "$T/estsrv.log")"
    EST_URL=https://127.0.0.1:$(cat "$dir/port")
}
est_stop() { kill "$EST_PID" 2>/dev/null; wait "$EST_PID" 2>/dev/null || true; }
# An EST profile NAME (token, subject, SAN, notifications as in profile()) plus
# LINES ("[ca]" "username = …" "secret_file = …" and so on).
est_profile() {
    local name=$1; shift
    {
        printf '[ca]\nprotocol = est\nurl = %s\nanchors = %s\npoll_interval = 5\n' "$EST_URL" "${EST_ANCHORS:-$CA/ca.pem}"
        printf '[certificate]\nsubject = CN=%s, O=evertoken tests\nsan = DNS:%s.example\n' "$name" "$name"
        printf '[token]\nuri = pkcs11:token=%s;object=%s\nmodule = %s\npin_file = %s\n' "$LABEL" "$name" "$MOD" "$T/pin"
        printf '[hooks]\nnotify_command = printf "%%s|%%s|%%s\\n" "$EVERTOKEN_EVENT" "$EVERTOKEN_PROFILE" "$EVERTOKEN_MESSAGE" >>%s\n' "$T/notify.log"
        for l in "$@"; do printf '%s\n' "$l"; done
    } >"$PROFILES/$name.conf"
}
