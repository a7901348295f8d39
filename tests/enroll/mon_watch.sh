#!/usr/bin/env bash
# Watch entries (issue 21 item 1): monitored-only certificates in a token
# (an imported one, under no profile), in a DER file and a directory of PEM
# files, and served by TLS endpoints on 127.0.0.1 (openssl s_server, SNI)
# get the right states, notices, JSON and metrics: valid, about to expire,
# revoked (a local OCSP responder: openssl ocsp), SHA-1 signed (weak), an
# endpoint serving an unexpected certificate, an unreachable endpoint.
. "$(dirname "$0")/lib.sh"
ca_init
scep_start
profile alice
enr enroll 2>"$T/enroll.err" || die "enroll failed: $(cat "$T/enroll.err")"

W=$T/watch
mkdir -p "$W/dir"
OCSP_PORT=$((20000 + RANDOM % 10000))
# issue NAME DAYS [openssl x509 -req options...]: $W/NAME.pem (+ .key) from the test CA.
issue() {
    local name=$1 days=$2; shift 2
    openssl req -new -newkey rsa:2048 -nodes -keyout "$W/$name.key" -subj "/CN=$name.example" \
        -out "$W/$name.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:%s.example\nauthorityInfoAccess=OCSP;URI:http://127.0.0.1:%s\n' \
        "$name" "$OCSP_PORT" >"$W/$name.ext"
    openssl x509 -req -in "$W/$name.csr" -CA "$CA/ca.pem" -CAkey "$CA/ca.key" -CAcreateserial \
        -days "$days" -extfile "$W/$name.ext" -out "$W/$name.pem" "$@" 2>/dev/null || die "issuing $name failed"
}
issue good 200 -sha256
issue soon 5 -sha256
issue revoked 200 -sha256
issue legacy 200 -sha1
issue web 200 -sha256
issue other 200 -sha256
issue imported 300 -sha256
cp "$W/good.pem" "$W/soon.pem" "$W/revoked.pem" "$W/dir/"
openssl x509 -in "$W/legacy.pem" -outform DER -out "$W/legacy.der"

# An intermediate CA and a leaf it issued (its own OCSP responder says
# revoked), served with its chain by a TLS endpoint.
OCSP2_PORT=$((OCSP_PORT + 1))
openssl req -new -newkey rsa:2048 -nodes -keyout "$W/ica.key" -subj "/CN=evertoken test intermediate" \
    -out "$W/ica.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' >"$W/ica.ext"
openssl x509 -req -in "$W/ica.csr" -CA "$CA/ca.pem" -CAkey "$CA/ca.key" -CAcreateserial -days 300 \
    -extfile "$W/ica.ext" -out "$W/ica.pem" 2>/dev/null || die "intermediate"
openssl req -new -newkey rsa:2048 -nodes -keyout "$W/chained.key" -subj "/CN=chained.example" \
    -out "$W/chained.csr" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nauthorityInfoAccess=OCSP;URI:http://127.0.0.1:%s\n' "$OCSP2_PORT" >"$W/chained.ext"
openssl x509 -req -in "$W/chained.csr" -CA "$W/ica.pem" -CAkey "$W/ica.key" -CAcreateserial -days 200 \
    -extfile "$W/chained.ext" -out "$W/chained.pem" 2>/dev/null || die "leaf of the intermediate"

# The OCSP responder's index: revoked.pem revoked, the others good.
idx() { # STATUS CERT [REVDATE]
    local exp serial subj
    exp=$(date -u -d "$(openssl x509 -in "$2" -noout -enddate | sed 's/notAfter=//')" +%y%m%d%H%M%SZ)
    serial=$(openssl x509 -in "$2" -noout -serial | sed 's/serial=//')
    subj=$(openssl x509 -in "$2" -noout -subject -nameopt compat | sed 's/subject=//')
    printf '%s\t%s\t%s\t%s\tunknown\t%s\n' "$1" "$exp" "${3:-}" "$serial" "$subj"
}
{
    idx V "$W/good.pem"
    idx V "$W/soon.pem"
    idx R "$W/revoked.pem" "$(date -u -d '-1 day' +%y%m%d%H%M%SZ),keyCompromise"
    idx V "$W/web.pem"
    idx V "$W/other.pem"
    idx V "$W/imported.pem"
} >"$W/index.txt"
echo "unique_subject = no" >"$W/index.txt.attr"
openssl ocsp -index "$W/index.txt" -port "$OCSP_PORT" -rsigner "$CA/ca.pem" -rkey "$CA/ca.key" \
    -CA "$CA/ca.pem" -ignore_err >"$T/ocsp.log" 2>&1 &
ET_PIDS+=($!)

idx R "$W/chained.pem" "$(date -u -d '-1 day' +%y%m%d%H%M%SZ),superseded" >"$W/index2.txt"
echo "unique_subject = no" >"$W/index2.txt.attr"
openssl ocsp -index "$W/index2.txt" -port "$OCSP2_PORT" -rsigner "$W/ica.pem" -rkey "$W/ica.key" \
    -CA "$W/ica.pem" -ignore_err >"$T/ocsp2.log" 2>&1 &
ET_PIDS+=($!)

# TLS endpoints: one answers SNI web.example with web.pem (else other.pem),
# one serves soon.pem.
tls_server() { # PORT CERT KEY [ARGS]
    local port=$1 cert=$2 key=$3; shift 3
    openssl s_server -accept "127.0.0.1:$port" -cert "$cert" -key "$key" -quiet -naccept 100 "$@" \
        </dev/null >>"$T/s_server.log" 2>&1 &
    ET_PIDS+=($!)
}
P1=$((30000 + RANDOM % 10000))
P2=$((P1 + 1))
tls_server "$P1" "$W/other.pem" "$W/other.key" -servername web.example -cert2 "$W/web.pem" -key2 "$W/web.key"
tls_server "$P2" "$W/soon.pem" "$W/soon.key"
P3=$((P1 + 2))
tls_server "$P3" "$W/chained.pem" "$W/chained.key" -cert_chain "$W/ica.pem"
# (The one-connection-at-a-time OCSP responder is probed with a whole HTTP
# request; a bare connect would keep it waiting.)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$OCSP_PORT/" && break; sleep 0.05; done
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$OCSP2_PORT/" && break; sleep 0.05; done
for _ in $(seq 100); do
    openssl s_client -connect "127.0.0.1:$P1" </dev/null >/dev/null 2>&1 &&
        openssl s_client -connect "127.0.0.1:$P2" </dev/null >/dev/null 2>&1 &&
        openssl s_client -connect "127.0.0.1:$P3" </dev/null >/dev/null 2>&1 && break
    sleep 0.1
done

# An imported certificate in the token, under no profile.
openssl x509 -in "$W/imported.pem" -outform DER -out "$W/imported.der"
p11 --write-object "$W/imported.der" --type cert --label imported --id 99 >/dev/null 2>&1 ||
    die "importing a certificate into the token failed"

websha=$(openssl x509 -in "$W/web.pem" -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1)
soonsha=$(openssl x509 -in "$W/soon.pem" -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1)
mkdir -p "$XDG_CONFIG_HOME/evertoken"
cat >"$XDG_CONFIG_HOME/evertoken/monitor.conf" <<CONF
[metrics]
metrics_file = $T/metrics.prom

[watch files]
source = $W/dir
anchors = $CA/ca.pem

[watch legacy]
source = $W/legacy.der

[watch tok]
source = pkcs11:token=$LABEL;object=imported
module = $MOD
anchors = $CA/ca.pem
revocation = off

[watch web]
source = tls://127.0.0.1:$P1
sni = web.example
expect = subject:CN=web.example
anchors = $CA/ca.pem

[watch soonweb]
source = tls://127.0.0.1:$P2
expect = sha256:$soonsha
anchors = $CA/ca.pem

[watch wrong]
source = tls://127.0.0.1:$P1
expect = sha256:$websha

[watch chained]
source = tls://127.0.0.1:$P3
anchors = $CA/ca.pem

[watch down]
source = tls://127.0.0.1:1
timeout = 3
CONF

rc=0
enr watch check >"$T/watch.out" 2>"$T/watch.err" || rc=$?
[ "$rc" = 2 ] || die "watch check: exit $rc (want 2, critical findings): $(cat "$T/watch.out" "$T/watch.err")"
state() { awk -v id="$1" '$1 == id { for (i = 1; i <= NF; i++) if ($i ~ /^(valid|expiring|expired|revoked|untrusted|weak|unexpected|error|not-yet-valid)$/) { print $i; exit } }' "$T/watch.out"; }
want() { [ "$(state "$1")" = "$2" ] || die "$1: state '$(state "$1")', want $2: $(cat "$T/watch.out")"; }
want files/good.pem valid
want files/soon.pem expiring
want files/revoked.pem revoked
want legacy weak
want tok/imported valid
want web valid
want soonweb expiring
want wrong unexpected
want down error
want chained revoked
grep -q "^legacy .*signed with SHA1" "$T/watch.out" || die "SHA-1 not named: $(grep ^legacy "$T/watch.out")"
grep -q "^files/soon.pem .*expires in [45] days" "$T/watch.out" || die "expiry detail: $(grep soon.pem "$T/watch.out")"
ok "states: valid, expiring, revoked (OCSP, also through an intermediate the endpoint sent), weak (SHA-1), unexpected, error; token, DER file, directory, TLS with SNI"

# Notices: once per finding, like a profile's.
enr history >"$T/history"
grep -q "watch:files notify expiry-warning: watched certificate files/soon.pem" "$T/history" ||
    die "no expiry notice: $(grep watch: "$T/history")"
grep -q "watch:files notify watch-revoked: watched certificate files/revoked.pem" "$T/history" || die "no revocation notice"
grep -q "watch:wrong notify watch-unexpected: " "$T/history" || die "no unexpected-certificate notice"
grep -q "watch:legacy notify watch-weak: " "$T/history" || die "no weak notice"
grep -q "watch:down notify watch-error: " "$T/history" || die "no error notice"
n1=$(grep -c " notify " "$T/history")
enr watch check >/dev/null 2>&1 || true
[ "$(enr history | grep -c " notify ")" = "$((n1 + 1))" ] ||
    die "a second check repeated notices: $(enr history | grep ' notify ' | tail -5)"
ok "notices once per finding (the unreachable endpoint's error again)"

# status and --json list them; metrics have them.
rc=0; enr status >"$T/status.out" || rc=$?
[ "$rc" = 2 ] || die "status exit $rc"
grep -q "^WATCHED " "$T/status.out" && grep -q "^files/revoked.pem .* revoked " "$T/status.out" || die "status table: $(cat "$T/status.out")"
enr status --json >"$T/status.json" || true
/usr/bin/python3 - "$T/status.json" <<'PY' || die "JSON: $(cat "$T/status.json")"
import json, sys
d = json.load(open(sys.argv[1]))
w = {x["id"]: x for x in d["watched"]}
want = {"files/good.pem": "valid", "files/soon.pem": "expiring", "files/revoked.pem": "revoked",
        "legacy": "weak", "tok/imported": "valid", "web": "valid", "soonweb": "expiring",
        "wrong": "unexpected", "down": "error"}
for k, v in want.items():
    assert w[k]["state"] == v, (k, w[k])
assert w["files/soon.pem"]["days_left"] in (4, 5), w["files/soon.pem"]
assert w["files/revoked.pem"]["level"] == 2 and w["legacy"]["level"] == 1
assert w["web"]["subject"].endswith("CN=web.example"), w["web"]
assert d["profiles"][0]["profile"] == "alice"
PY
grep -q '^evertoken_enroll_state_info{kind="watch",name="files/revoked.pem",state="revoked"} 1$' "$T/metrics.prom" ||
    die "metrics: $(grep watch "$T/metrics.prom" | head)"
grep -q '^evertoken_enroll_check_failures_total{kind="watch",name="down"} 2$' "$T/metrics.prom" ||
    die "watch failure counter: $(grep 'name="down"' "$T/metrics.prom")"
ok "status table, --json and metrics list the watched certificates"

# A machine that only watches: no profile needed.
mkdir -p "$T/noprof"
rc=0
host "$ENROLL_BIN" --profiles "$T/noprof" --state-dir "$T/state2" watch check files legacy >"$T/only.out" 2>"$T/only.err" || rc=$?
[ "$rc" = 2 ] || die "watch-only machine: exit $rc: $(cat "$T/only.out" "$T/only.err")"
grep -q "^files/revoked.pem .* revoked " "$T/only.out" || die "watch-only: $(cat "$T/only.out")"
rc=0; host "$ENROLL_BIN" --profiles "$T/noprof" --state-dir "$T/state2" watch check nosuch 2>"$T/nosuch.err" || rc=$?
[ "$rc" = 3 ] && grep -q "no such watch entry" "$T/nosuch.err" || die "unknown entry: exit $rc: $(cat "$T/nosuch.err")"
ok "watch-only machine (no profiles), unknown entry refused"

# watch add: a new section, checked like the others; a bad one changes nothing.
cp "$XDG_CONFIG_HOME/evertoken/monitor.conf" "$T/monitor.before"
enr watch add extra "$W/good.pem" "anchors=$CA/ca.pem" "warn_days=400,30" >"$T/add.out" 2>&1 ||
    die "watch add failed: $(cat "$T/add.out")"
grep -q "^\[watch extra\]$" "$XDG_CONFIG_HOME/evertoken/monitor.conf" || die "section not added"
rc=0; enr watch check extra >"$T/extra.out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "^extra .* expiring " "$T/extra.out" || die "added entry: exit $rc: $(cat "$T/extra.out")"
cp "$XDG_CONFIG_HOME/evertoken/monitor.conf" "$T/monitor.after"
rc=0; enr watch add broken tls://nohostport 2>"$T/broken.err" || rc=$?
[ "$rc" = 3 ] && grep -q "is not tls://HOST:PORT" "$T/broken.err" || die "bad watch add: exit $rc: $(cat "$T/broken.err")"
rc=0; enr watch add extra "$W/good.pem" 2>"$T/dup.err" || rc=$?
[ "$rc" = 3 ] && grep -q "already has a \[watch extra\]" "$T/dup.err" || die "duplicate watch add: exit $rc: $(cat "$T/dup.err")"
cmp -s "$XDG_CONFIG_HOME/evertoken/monitor.conf" "$T/monitor.after" || die "a refused watch add changed the file"
ls "$XDG_CONFIG_HOME/evertoken" | grep -q '\.new\.' && die "temporary file left"
ok "watch add appends a checked section; a bad or duplicate one changes nothing"
