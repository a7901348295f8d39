#!/usr/bin/env bash
# Bulk import is all or nothing even under kill -9 (issue 13, finding 5):
# R_IMPORT_KILL_ROUNDS rounds (default 15) each import one PEM file with 60
# certificates into a new token and SIGKILL the CLI as soon as the token's
# WAL has grown by a random number of pages (each created object is a
# commit), i.e. at any point of the import: creating the objects, at the
# commit marker, setting the final labels, or after. The next import on that token (of another file)
# must finish what the killed one left: afterwards exactly 0 or 60 of the
# 60 certificates are there, each under its final label, no temporary
# label is left, and every record passes PRAGMA integrity_check.
. "$EVERTOKEN_SOURCE_DIR/tests/external/lib.sh"
[ -n "$CLI" ] || die "EVERTOKEN_CLI unset"
need openssl sqlite3 python3
export SO_PIN=so-secret-1234 USER_PIN=123456
rounds=${R_IMPORT_KILL_ROUNDS:-15}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/k.pem" \
    -out "$T/one.pem" -subj "/CN=one more" -days 3 2>/dev/null
: >"$T/bulk.pem"
for i in $(seq 1 60); do
    openssl req -x509 -key "$T/k.pem" -out "$T/c.pem" -subj "/CN=bulk-$i" -days 3 \
        -set_serial "$i" 2>/dev/null
    cat "$T/c.pem" >>"$T/bulk.pem"
done

interrupted=0 rolled_back=0
for r in $(seq 1 "$rounds"); do
    "$CLI" init --label "r$r" --so-pin env:SO_PIN --pin env:USER_PIN >/dev/null
    db=$(ls -t "$EVERTOKEN_DIR"/token-*.db | head -1)
    # Kill once the WAL has grown by a random number of bytes (each object
    # is a commit of a few pages): python polls it without a process per look.
    state=$(python3 - "$db-wal" $((RANDOM % 400 + 1)) "$CLI" import --token "r$r" \
        --pin env:USER_PIN "$T/bulk.pem" <<'PY'
import os, signal, subprocess, sys
wal, pages, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while p.poll() is None:
    try:
        if os.stat(wal).st_size >= pages * 4096:
            break
    except FileNotFoundError:
        pass
p.send_signal(signal.SIGKILL)
print("killed" if p.wait() == -signal.SIGKILL else "ended")
PY
)
    [ "$state" = killed ] && interrupted=$((interrupted + 1))
    # The next import completes or rolls back the killed one.
    "$CLI" import --token "r$r" --pin env:USER_PIN "$T/one.pem" >/dev/null 2>"$T/err" ||
        die "round $r: recovery import failed: $(cat "$T/err")"
    "$CLI" list --token "r$r" --login --pin env:USER_PIN >"$T/list" || die "round $r: list"
    bulk=$(grep -c " bulk-[0-9]*$" "$T/list" || true)
    [ "$bulk" = 0 ] || [ "$bulk" = 60 ] || die "round $r: $bulk of 60 certificates after the kill"
    [ "$bulk" = 0 ] && rolled_back=$((rolled_back + 1))
    if grep -q "evertoken-import-" "$T/list"; then die "round $r: temporary labels left: $(cat "$T/list")"; fi
    grep -q " one more$" "$T/list" || die "round $r: the recovery import is missing"
    [ "$(sqlite3 "$db" 'PRAGMA integrity_check')" = ok ] || die "round $r: integrity_check"
done
ok "$rounds bulk imports, $interrupted killed before they ended: always 0 or 60 of 60 ($rolled_back rolled back)"
