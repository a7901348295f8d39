#!/usr/bin/env bash
# Integrity and path reporting without debug mode (issue 13, finding 4):
#  - objects that fail their integrity check are hidden AND reported:
#    `list --login` and `info --login` print "N object(s) failed ... hidden"
#    and exit 9; the module also says it once per process in syslog;
#  - a settings row planted without a MAC (login_cache=user:86400) is
#    refused: `settings` shows the policy in effect (process), reports the
#    refused row and exits 9; `unlock` does not fill a cache;
#  - a token path that is not a regular file (directory, FIFO, dangling
#    symlink) and refused directories (world-writable, foreign owner,
#    relative EVERTOKEN_DIR) give their reason in `list` and `init`.
. "$EVERTOKEN_SOURCE_DIR/tests/external/lib.sh"
[ -n "$CLI" ] || die "EVERTOKEN_CLI unset"
need pkcs11-tool sqlite3
export SO_PIN=so-secret-1234 USER_PIN=123456

"$CLI" init --label integ --so-pin env:SO_PIN --pin env:USER_PIN >/dev/null
db=$(ls "$EVERTOKEN_DIR"/token-*.db)
echo value >"$T/v"
p11() { host pkcs11-tool --module "$MODULE" --token-label integ --login --pin "$USER_PIN" "$@"; }
p11 --write-object "$T/v" --type data --label pub1 >/dev/null 2>&1 || die "write pub1"
p11 --write-object "$T/v" --type data --label priv1 --private >/dev/null 2>&1 || die "write priv1"
p11 --write-object "$T/v" --type data --label priv2 --private >/dev/null 2>&1 || die "write priv2"
"$CLI" list --token integ --login --pin env:USER_PIN >"$T/out" || die "clean token: exit $?"
if grep -q "integrity" "$T/out"; then die "a clean token reports a failure: $(cat "$T/out")"; fi

# Damage two records: one sealed (private) and one MAC'd (public).
sqlite3 "$db" "UPDATE objects SET data = substr(data, 1, length(data) - 1) || x'00' WHERE id IN (1, 3);"
set +e; "$CLI" list --token integ --login --pin env:USER_PIN >"$T/out" 2>&1; rc=$?; set -e
[ $rc = 9 ] || die "list with damaged records: exit $rc ($(cat "$T/out"))"
grep -q "2 objects failed their integrity check and are hidden" "$T/out" || die "list: $(cat "$T/out")"
grep -q "1 object$" <(head -1 "$T/out") || die "list shows the hidden ones: $(cat "$T/out")"
set +e; "$CLI" info --token integ --login --pin env:USER_PIN >"$T/out" 2>&1; rc=$?; set -e
[ $rc = 9 ] && grep -q "integrity: *2 objects failed their integrity check and are hidden" "$T/out" ||
    die "info --login: exit $rc ($(cat "$T/out"))"
"$CLI" info --token integ >"$T/out" || die "info without login: exit $?"
grep -q "integrity: *not checked" "$T/out" || die "info without login: $(cat "$T/out")"
ok "hidden objects are counted by list --login and info --login (exit 9)"

# Syslog, once per process: a private mount namespace with our own /dev/log.
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null && command -v python3 >/dev/null; then
    cat >"$T/syslog.sh" <<'SH'
set -e
mount --make-rprivate /
mkdir -p "$T/olddev"
mount --rbind /dev "$T/olddev"
mount -t tmpfs -o mode=755 none /dev
for d in null zero urandom random tty; do
    touch "/dev/$d"; mount --bind "$T/olddev/$d" "/dev/$d"
done
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind("/dev/log"); s.settimeout(120)
open(sys.argv[1], "w").close()
out = open(sys.argv[2], "wb")
while True:
    try:
        m = s.recv(4096)
    except socket.timeout:
        break
    if m == b"END":
        break
    out.write(m + b"\n"); out.flush()
' "$T/ready" "$T/syslog.txt" &
srv=$!
for i in $(seq 1 300); do [ -e "$T/ready" ] && break; sleep 0.1; done
"$CLI" list --token integ --login --pin env:USER_PIN >/dev/null 2>&1 || true
# Datagrams arrive in order: everything the CLI sent comes before END.
python3 -c 'import socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"END", "/dev/log")'
wait $srv 2>/dev/null || true
SH
    T=$T CLI=$CLI unshare -m bash "$T/syslog.sh" || die "syslog namespace script failed"
    grep -q "evertoken: slot 0 .*2 stored object(s) failed their integrity check and are hidden" \
        "$T/syslog.txt" || die "no syslog report: $(cat "$T/syslog.txt" 2>/dev/null)"
    [ "$(grep -c 'failed their integrity check' "$T/syslog.txt")" = 1 ] || die "reported more than once"
    ok "the module reports hidden objects to syslog, once per process"
else
    echo "note: syslog check skipped (needs root and unshare -m)"
fi

# A planted, unauthenticated setting.
sqlite3 "$db" "INSERT OR REPLACE INTO settings(key, value, mac) VALUES ('login_cache', 'user:86400', NULL);"
set +e; "$CLI" settings --token integ >"$T/out" 2>&1; rc=$?; set -e
[ $rc = 9 ] || die "settings with a planted row: exit $rc ($(cat "$T/out"))"
grep -q "^login_cache=process$" "$T/out" || die "planted value shown as in effect: $(cat "$T/out")"
grep -q "1 setting stored without authentication" "$T/out" || die "not reported: $(cat "$T/out")"
set +e; "$CLI" unlock --token integ --pin env:USER_PIN >/dev/null 2>&1; rc=$?; set -e
[ $rc != 0 ] || die "unlock filled a cache on a planted policy"
ok "an unauthenticated settings row is refused and reported, never shown as in effect"

# Token paths that are not regular files, and refused directories.
export EVERTOKEN_DIR=$T/paths
mkdir -m 700 "$EVERTOKEN_DIR"
check_path() { # $1 what, $2 text expected in list and init
    "$CLI" list >"$T/out" 2>&1 || true
    grep -q "slot 0: (unusable: .*$2" "$T/out" || die "$1: list says $(cat "$T/out")"
    set +e; timeout 20 "$CLI" init --label p --so-pin env:SO_PIN --pin env:USER_PIN >"$T/out" 2>&1; rc=$?; set -e
    [ $rc = 1 ] && grep -q "$2" "$T/out" || die "$1: init exit $rc: $(cat "$T/out")"
}
mkdir "$EVERTOKEN_DIR/token-0.db"
check_path directory "token-0.db is a directory, not a token file"
rmdir "$EVERTOKEN_DIR/token-0.db"
mkfifo "$EVERTOKEN_DIR/token-0.db"
check_path FIFO "token-0.db is a FIFO, not a token file"
rm "$EVERTOKEN_DIR/token-0.db"
ln -s "$T/nowhere" "$EVERTOKEN_DIR/token-0.db"
check_path symlink "token-0.db is a symbolic link to nothing"
rm "$EVERTOKEN_DIR/token-0.db"
chmod 777 "$EVERTOKEN_DIR"
check_path "world-writable directory" "is group/world writable (mode 0777); chmod 700 it"
chmod 700 "$EVERTOKEN_DIR"
if [ "$(id -u)" = 0 ]; then
    chown 65534 "$EVERTOKEN_DIR"
    check_path "foreign directory" "is owned by uid 65534"
    chown 0 "$EVERTOKEN_DIR"
fi
set +e; EVERTOKEN_DIR=relative/dir "$CLI" list >"$T/out" 2>&1; rc=$?; set -e
[ $rc != 0 ] && grep -q "must be an absolute path" "$T/out" || die "relative dir: exit $rc $(cat "$T/out")"
"$CLI" init --label p --so-pin env:SO_PIN --pin env:USER_PIN >/dev/null || die "init after the fixes"
ok "token paths that are not regular files and refused directories give their reason in list and init"
