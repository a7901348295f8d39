#!/usr/bin/env bash
# evertoken CLI: backup while another process holds a logged-in session,
# restore into a new slot (same objects), overwrite protection, bad input.
. "$(dirname "$0")/lib.sh"
[ -n "$CLI" ] || die "EVERTOKEN_CLI unset"
need openssl pkcs11-tool
export SO_PIN=so-secret-1234 USER_PIN=123456 P12_PASS=export-pass
cd "$T"

openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=alice" -keyout alice.key \
    -out alice.pem >/dev/null 2>&1 || die "fixture"
openssl pkcs12 -export -inkey alice.key -in alice.pem -name alice -passout env:P12_PASS \
    -out alice.p12 || die "fixture p12"
"$CLI" init --label bk --so-pin env:SO_PIN --pin env:USER_PIN >/dev/null
"$CLI" import --token bk --pin env:USER_PIN --passphrase env:P12_PASS alice.p12 >/dev/null
# Objects without their per-process handles: class, type, id, label.
objs() { "$CLI" list "$@" --login --pin env:USER_PIN | awk 'NR > 2 && $1 ~ /^[0-9]+$/ { print $2, $3, $4, $NF }' | sort; }
objs --token bk >orig.txt
[ "$(wc -l <orig.txt)" = 3 ] || die "expected 3 objects: $(cat orig.txt)"
id=$(awk '$1 == "privkey" { print $3 }' orig.txt)

# Another process: pkcs11-tool logs in, starts a signature and blocks reading
# its input from a FIFO, keeping its session open until we release it.
mkfifo hold
# (env execs pkcs11-tool, so $! is pkcs11-tool itself; LD_PRELOAD as host() does.)
et_bg env ${ET_PRELOAD:+LD_PRELOAD=$ET_PRELOAD} pkcs11-tool --module "$MODULE" --token-label bk --login --pin "$USER_PIN" --sign \
    -m SHA256-RSA-PKCS --id "$id" -i hold -o sig
holder=${ET_PIDS[-1]}
# Opened read-write after the fork (so the reader does not hold a writer
# itself): this never blocks, and closing it later gives the reader EOF.
exec 3<>hold
for _ in $(seq 1 100); do
    ls -l /proc/"$holder"/fd 2>/dev/null | grep -q "$T/hold" && break
    sleep 0.1
done
kill -0 "$holder" 2>/dev/null || die "the session-holding pkcs11-tool exited early"

"$CLI" backup --token bk bk.backup >out || die "backup failed while a session is open"
grep -q "backed up" out || die "backup output: $(cat out)"
[ "$(stat -c %a bk.backup)" = 600 ] || die "backup file not 0600"
set +e; "$CLI" backup --token bk bk.backup 2>err; rc=$?; set -e
[ $rc = 7 ] || die "backup over an existing file: exit $rc"

# Release the other process: its signature completes on the live token.
echo "data signed during the backup" >&3
exec 3>&-
wait "$holder" || die "the session-holding pkcs11-tool failed"
openssl x509 -in alice.pem -pubkey -noout >alice.pub
printf 'data signed during the backup\n' | openssl dgst -sha256 -verify alice.pub -signature sig \
    >/dev/null || die "signature made during the backup does not verify"
ok "backup while another process holds a session"

# The backup is the encrypted keystore: the private key does not appear in it.
# (The last bytes of the DER key: its CRT coefficient, a secret. The first
# ones would be the modulus, which the certificate carries in clear anyway.)
openssl rsa -in alice.key -outform DER 2>/dev/null | tail -c 16 >keybytes
hex() { od -An -v -tx1 "$1" | tr -d ' \n'; }
[ -s keybytes ] || die "could not extract key bytes"
if hex bk.backup | grep -qF "$(hex keybytes)"; then
    die "key bytes found in the backup in clear"
fi

# Restore into a new slot: same objects, usable with the same PIN.
"$CLI" restore bk.backup >out || die "restore failed"
slot=$(sed -n "s/.*to slot \([0-9]*\).*/\1/p" out)
[ -n "$slot" ] || die "restore output: $(cat out)"
objs --slot "$slot" >restored.txt
diff orig.txt restored.txt || die "restored token lists different objects"
host pkcs11-tool --module "$MODULE" -L >p11.txt 2>&1
[ "$(grep -c "token label *: bk" p11.txt)" = 2 ] || die "pkcs11-tool -L: $(cat p11.txt)"
# The label is now ambiguous: --token refuses and names --slot.
set +e; "$CLI" list --token bk 2>err; rc=$?; set -e
[ $rc = 2 ] && grep -q -- "--slot" err || die "ambiguous label: exit $rc $(cat err)"
ok "restore into a new slot"

# Overwrite protection and --force.
set +e; "$CLI" restore bk.backup --slot "$slot" 2>err; rc=$?; set -e
[ $rc = 7 ] && grep -q -- "--force" err || die "restore over a token without --force: exit $rc"
"$CLI" delete --slot "$slot" --pin env:USER_PIN --label alice --class cert >/dev/null
"$CLI" restore bk.backup --slot "$slot" --force >/dev/null || die "restore --force failed"
objs --slot "$slot" >restored2.txt
diff orig.txt restored2.txt || die "forced restore did not bring back the objects"
# Reading the backup leaves nothing beside it.
[ ! -e bk.backup-wal ] && [ ! -e bk.backup-shm ] || die "restore left $(ls bk.backup-*) beside the backup"
ok "restore refuses to overwrite without --force; no -wal/-shm left beside the backup"

# Not a keystore: clear error, nothing written.
n=$(ls "$EVERTOKEN_DIR" | wc -l)
cp alice.pem notakeystore
set +e; "$CLI" restore notakeystore 2>err; rc=$?; set -e
[ $rc = 6 ] && grep -q "not a readable evertoken keystore" err || die "bad backup: exit $rc $(cat err)"
[ "$(ls "$EVERTOKEN_DIR" | wc -l)" = "$n" ] || die "bad restore wrote a file"
set +e; "$CLI" restore 2>/dev/null; rc=$?; set -e
[ $rc = 2 ] || die "restore without a file: exit $rc"
ok "restore of a non-keystore refused"
