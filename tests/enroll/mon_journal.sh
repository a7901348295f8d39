#!/usr/bin/env bash
# journald (issue 21 item 4): under systemd the helper's notifications are
# journal entries with structured fields (PROFILE, EVENT, SERIAL, NOT_AFTER,
# ...), so `journalctl PROFILE=vpn` finds them; without a journal, plain
# stderr stays. The journal is a real systemd-journald started in a private
# mount namespace (a tmpfs on /run, so the host's journal is never touched);
# where that is impossible (not root, no unshare, no journald) the test is
# skipped and says why.
. "$(dirname "$0")/lib.sh"
JOURNALD=/lib/systemd/systemd-journald
[ -x "$JOURNALD" ] || { echo "SKIP: no journal available: systemd-journald is not installed" >&2; exit 77; }
need journalctl systemd-cat
[ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null ||
    { echo "SKIP: no journal available: a private journald needs root and unshare -m" >&2; exit 77; }
ca_init
scep_start
profile vpn

# Without a journal: the notification is a stderr line.
EVERTOKEN_ENROLL_JOURNAL=0 enr enroll 2>"$T/plain.err" || die "enroll failed: $(cat "$T/plain.err")"
grep -q "^evertoken-enroll: profile vpn: enrolled: " "$T/plain.err" || die "no stderr line: $(cat "$T/plain.err")"
serial=$(token_cert vpn | openssl x509 -noout -serial | sed 's/serial=//' | tr 'A-F' 'a-f')
ok "no journal: plain stderr"

cat >"$T/inner.sh" <<'SH'
set -euo pipefail
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/systemd/journal /run/log/journal
"$JOURNALD" >"$T/journald.log" 2>&1 &
JPID=$!
trap 'kill $JPID 2>/dev/null; wait $JPID 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && [ -S /run/systemd/journal/stdout ] && break; sleep 0.05; done
[ -S /run/systemd/journal/stdout ] || { echo "journald did not start: $(cat "$T/journald.log")" >&2; exit 1; }
# As under systemd: stderr is a journal stream, and $JOURNAL_STREAM names its
# device and inode (systemd-cat connects the stream; the service manager
# would set the variable).
systemd-cat -t evertoken-enroll bash -c 'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec "$@"' sh \
    "${PRE[@]}" "$ENROLL_BIN" --profiles "$PROFILES" --state-dir "$STATE" renew --force
journalctl --sync 2>/dev/null || true
sleep 0.5
journalctl -D /run/log/journal --no-pager -o export >"$T/journal.export"
journalctl -D /run/log/journal --no-pager -o cat PROFILE=vpn EVENT=renewed >"$T/journal.match"
SH
export T PROFILES STATE ENROLL_BIN JOURNALD
PRE=()
[ -n "${ET_PRELOAD:-}" ] && PRE=(env "LD_PRELOAD=$ET_PRELOAD")
export PRE
unshare -m --propagation private bash -c "$(declare -p PRE); $(cat "$T/inner.sh")" ||
    die "the run under a private journald failed"
[ -s "$T/journal.export" ] || die "the journal is empty"
# Entries of the export format are separated by empty lines; find the one with EVENT=renewed.
awk -v RS= '/\nEVENT=renewed\n/' "$T/journal.export" >"$T/renewed"
[ -s "$T/renewed" ] || die "no journal entry with EVENT=renewed: $(grep -a '^MESSAGE=' "$T/journal.export")"
grep -qx "PROFILE=vpn" "$T/renewed" || die "no PROFILE field"
grep -qx "PRIORITY=6" "$T/renewed" || die "not priority info"
grep -qx "SYSLOG_IDENTIFIER=evertoken-enroll" "$T/renewed" || die "identifier"
grep -q "^MESSAGE=profile vpn: renewed: " "$T/renewed" || die "message"
new=$(token_cert vpn | openssl x509 -noout -serial | sed 's/serial=//' | tr 'A-F' 'a-f')
grep -qix "SERIAL=$new" "$T/renewed" || die "SERIAL is not the renewed certificate's $new: $(grep SERIAL "$T/renewed")"
grep -q "^NOT_AFTER=20..-..-..T..:..:..Z$" "$T/renewed" || die "no NOT_AFTER field"
# Plain log lines are entries too, with their priority (debug lines absent).
awk -v RS= '/\nPRIORITY=/ && /SYSLOG_IDENTIFIER=evertoken-enroll/' "$T/journal.export" | grep -q "^EVENT=" ||
    die "no structured entries at all"
! grep -aq "^MESSAGE=evertoken-enroll: profile vpn: renewed" "$T/journal.export" ||
    die "the notification went to the journal twice (stderr line too)"
grep -q "^profile vpn: renewed: renewed certificate serial" "$T/journal.match" ||
    die "journalctl PROFILE=vpn EVENT=renewed finds nothing: $(cat "$T/journal.match")"
ok "journald entries carry PROFILE, EVENT, SERIAL, NOT_AFTER (journalctl PROFILE=vpn)"
