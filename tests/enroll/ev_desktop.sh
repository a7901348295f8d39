# Desktop notifications on a real session bus (docs/enrollment.md "Desktop
# notifications"): a private dbus-daemon and a notification server
# (tests/enroll/notifysrv.py: actions and body-markup, like the desktops'
# servers). With the token locked (login_cache=user:600, no pin_file):
#  1. one-shot checks: the pin-needed failure is shown (critical, no action:
#     no process would hear it); after `evertoken unlock` the next check
#     enrolls and the failure's notice is withdrawn (CloseNotification),
#     the success shown as an ordinary notice;
#  2. the service: the failure offers "Renew now"; choosing it starts
#     `evertoken unlock --token LABEL` (in x-terminal-emulator, the service
#     having no terminal; not waited for), and when it ends the check: the
#     credential is enrolled and the notice (closed by the server on the
#     action) forgotten, `recovered` shown. Signals forged by another
#     client of the session bus (ActionInvoked, NotificationClosed with the
#     notice's id) are ignored: only the server's count, also after the
#     server restarted under the service. A notice the server closes (the
#     user dismissed it) is forgotten by the service;
#  3. the notification server restarts (new session, crashed shell): its
#     ids start again and another program's notice gets the id kept for
#     the helper's old notice; the helper neither replaces nor closes it.
. "$(dirname "$0")/lib.sh"
[ "$ENR_TOKEN_KIND" = evertoken ] || die "evertoken only"
need dbus-daemon dbus-send python3
# Debian's python3 (python3-dbus, python3-gi), also where another python3 comes first in PATH.
PYD=
for p in /usr/bin/python3 python3; do
    "$p" -c 'import dbus, dbus.mainloop.glib; from gi.repository import GLib' 2>/dev/null && { PYD=$p; break; }
done
[ -n "$PYD" ] || { echo "SKIP: python3-dbus or python3-gi not installed" >&2; exit 77; }
ca_init
scep_start
"$CLI" settings --token "$LABEL" --pin "file:$T/pin" login_cache=user:600 >/dev/null ||
    die "cannot set the login cache policy"
"$CLI" lock --token "$LABEL" >/dev/null
profile alice
sed -i '/^pin_file = /d' "$PROFILES/alice.conf"

# A private session bus and the notification server on it.
et_bg dbus-daemon --session --nofork --nopidfile --address="unix:path=$T/bus" --print-address=1 >"$T/busaddr"
for _ in $(seq 100); do [ -s "$T/busaddr" ] && break; sleep 0.05; done
[ -s "$T/busaddr" ] || die "dbus-daemon did not start"
export DBUS_SESSION_BUS_ADDRESS=unix:path=$T/bus
notifysrv_start() { # sets NOTIF_PID
    rm -f "$T/notif.ready"
    et_bg "$PYD" "$EVERTOKEN_SOURCE_DIR/tests/enroll/notifysrv.py" "$T/notif.log" "$T/notif.ready" 2>"$T/notifysrv.err"
    NOTIF_PID=${ET_PIDS[-1]}
    for _ in $(seq 100); do [ -s "$T/notif.ready" ] && break; sleep 0.05; done
    [ -s "$T/notif.ready" ] || die "the notification server did not start: $(cat "$T/notifysrv.err")"
}
notifysrv_start
touch "$T/notif.log"
# q EXPR: evaluate EXPR over the recorded calls (list `c`), print the result.
q() { python3 -c 'import json, sys
c = [json.loads(l) for l in open(sys.argv[1])]
print(eval(sys.argv[2]))' "$T/notif.log" "$1"; }
# notice_id EVENT PROFILE: the id of the last Notify of that event.
notice_id() { q "[n['id'] for n in c if n['call'] == 'Notify' and n['summary'] == 'evertoken: $1 ($2)'][-1]"; }
# kept PROFILE: 1 when the state database keeps a notice id for PROFILE.
kept() { python3 -c 'import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM desktop_notice WHERE profile = ?", (sys.argv[2],)).fetchone()[0])' "$STATE/enroll.db" "$1"; }
wait_for() { # PYTHON-CONDITION SECONDS
    for _ in $(seq $(($2 * 10))); do [ "$(q "$1")" = True ] && return 0; sleep 0.1; done
    return 1
}

# 1. One-shot checks.
expect_rc 6 enr check alice
ID1=$(notice_id pin-needed alice) || die "no pin-needed notice: $(cat "$T/notif.log")"
[ "$(q "[(n['urgency'], n['actions'], n['app']) for n in c if n['id'] == $ID1][-1]")" = "(2, [], 'evertoken-enroll')" ] ||
    die "the failure notice: $(cat "$T/notif.log")"
"$CLI" unlock --token "$LABEL" <"$T/pin" >/dev/null || die "evertoken unlock"
enr check alice 2>"$T/c.err" || die "check after unlock: $(cat "$T/c.err")"
[ "$(q "any(n['call'] == 'CloseNotification' and n['id'] == $ID1 and n['live'] for n in c)")" = True ] ||
    die "the failure notice was not withdrawn: $(cat "$T/notif.log")"
REC=$(notice_id recovered alice) || die "no recovered notice: $(cat "$T/notif.log")"
[ "$(q "[(n['urgency'], n['actions'], n['replaces']) for n in c if n['id'] == $REC][-1]")" = "(1, [], 0)" ] ||
    die "the recovered notice: $(cat "$T/notif.log")"
ok "one-shot checks: pin-needed shown (critical), withdrawn when solved, recovered shown"

# 2. The service, with "Renew now". Fakes on PATH record what it runs: the
# terminal window runs its command, evertoken unlock gets its PIN from the
# file (a person would type it in the window).
"$CLI" lock --token "$LABEL" >/dev/null
profile bob
sed -i '/^pin_file = /d' "$PROFILES/bob.conf"
mkdir -p "$T/bin"
# The window stays open until the test creates $T/go (the person typing;
# at most 30 s, so nothing is left behind).
cat >"$T/bin/x-terminal-emulator" <<EOF
#!/bin/sh
echo "x-terminal-emulator \$*" >>"$T/actions.log"
for i in \$(seq 300); do [ -e "$T/go" ] && break; sleep 0.1; done
[ "\$1" = -e ] && shift
exec "\$@"
EOF
cat >"$T/bin/evertoken" <<EOF
#!/bin/sh
echo "evertoken \$*" >>"$T/actions.log"
exec "$CLI" "\$@" --pin "file:$T/pin"
EOF
chmod 755 "$T/bin/x-terminal-emulator" "$T/bin/evertoken"
PATH=$T/bin:$PATH LD_PRELOAD=${ET_PRELOAD:-} "$ENROLL_BIN" -v --profiles "$PROFILES" --state-dir "$STATE" \
    run --unlock-poll 3600 </dev/null 2>"$T/svc.err" &
svc=$!
ET_PIDS+=("$svc")
wait_for "any(n['call'] == 'Notify' and n['summary'] == 'evertoken: pin-needed (bob)' for n in c)" 30 ||
    die "no pin-needed notice from the service: $(cat "$T/notif.log") $(cat "$T/svc.err")"
ID2=$(notice_id pin-needed bob)
[ "$(q "[(n['urgency'], n['actions']) for n in c if n['id'] == $ID2][-1]")" = "(2, ['renew', 'Renew now'])" ] ||
    die "the service's failure notice offers no 'Renew now': $(cat "$T/notif.log")"
[ ! -e "$T/actions.log" ] || die "ran something before the action: $(cat "$T/actions.log")"
# Forged by another client of the bus (any program may send a signal with
# that interface, path and a guessed id): ignored, nothing run, the notice
# still known (the real action below finds it).
dbus-send --session --type=signal /org/freedesktop/Notifications \
    org.freedesktop.Notifications.NotificationClosed "uint32:$ID2" uint32:2 || die "cannot send a signal"
dbus-send --session --type=signal /org/freedesktop/Notifications \
    org.freedesktop.Notifications.ActionInvoked "uint32:$ID2" string:renew || die "cannot send a signal"
for m in NotificationClosed ActionInvoked; do
    for _ in $(seq 300); do grep -q "desktop: $m from :[0-9.]* ignored: not the notification server" "$T/svc.err" && break; sleep 0.1; done
    grep -q "desktop: $m from :[0-9.]* ignored: not the notification server" "$T/svc.err" ||
        die "the forged $m was not ignored: $(cat "$T/svc.err")"
done
[ ! -e "$T/actions.log" ] || die "a forged signal ran something: $(cat "$T/actions.log")"
! grep -q '"Renew now" chosen' "$T/svc.err" || die "a forged signal chose 'Renew now': $(cat "$T/svc.err")"
dbus-send --session --print-reply --dest=org.freedesktop.Notifications /org/freedesktop/Notifications \
    org.evertoken.Test.Invoke "uint32:$ID2" string:renew >/dev/null || die "cannot invoke the action"
# While the terminal window is open the service goes on (it does not wait
# for the unlock): it still hears the bus.
for _ in $(seq 300); do grep -q "^x-terminal-emulator" "$T/actions.log" 2>/dev/null && break; sleep 0.1; done
grep -q "^x-terminal-emulator" "$T/actions.log" 2>/dev/null || die "no terminal: $(cat "$T/svc.err")"
dbus-send --session --type=signal /org/freedesktop/Notifications \
    org.freedesktop.Notifications.ActionInvoked "uint32:$ID2" string:renew || die "cannot send a signal"
for _ in $(seq 300); do [ "$(grep -c "desktop: ActionInvoked from :[0-9.]* ignored" "$T/svc.err")" = 2 ] && break; sleep 0.1; done
[ "$(grep -c "desktop: ActionInvoked from :[0-9.]* ignored" "$T/svc.err")" = 2 ] ||
    die "the service does not hear the bus while the terminal is open: $(cat "$T/svc.err")"
[ ! -e "$T/go" ] && ! grep -q "^evertoken unlock" "$T/actions.log" || die "the unlock ran early"
touch "$T/go"
wait_for "any(n['call'] == 'Notify' and n['summary'] == 'evertoken: recovered (bob)' for n in c)" 30 ||
    die "no recovery after 'Renew now': $(cat "$T/notif.log") $(cat "$T/svc.err")"
grep -qx "x-terminal-emulator -e evertoken unlock --token $LABEL" "$T/actions.log" &&
    grep -qx "evertoken unlock --token $LABEL" "$T/actions.log" || die "actions run: $(cat "$T/actions.log")"
grep -q 'profile bob: "Renew now" chosen in the desktop notification' "$T/svc.err" || die "service log: $(cat "$T/svc.err")"
[ "$(count_objects Certificate bob)" = 1 ] || die "bob not enrolled: $(token_objects)"
# The server closed the notice on the action (NotificationClosed, as the
# desktops' servers do); the helper forgot its id (heard, or withdrawn).
[ "$(kept bob)" = 0 ] || die "bob's closed notice is still kept"
enr history bob | grep -q "action Renew now" || die "history: $(enr history bob)"
[ "$(grep -c '"Renew now" chosen' "$T/svc.err")" = 1 ] || die "'Renew now' not once: $(cat "$T/svc.err")"
# Dismissed by the user: NotificationClosed from the server; the service
# forgets the id (kept by a one-shot check, which does not listen).
"$CLI" lock --token "$LABEL" >/dev/null
expect_rc 6 enr check bob
ID3=$(notice_id pin-needed bob)
[ "$ID3" != "$ID2" ] || die "the pin-needed notice reused a closed id"
[ "$(kept bob)" = 1 ] || die "bob's notice id not kept"
dbus-send --session --print-reply --dest=org.freedesktop.Notifications /org/freedesktop/Notifications \
    org.evertoken.Test.Dismiss "uint32:$ID3" >/dev/null || die "cannot dismiss the notice"
for _ in $(seq 300); do [ "$(kept bob)" = 0 ] && break; sleep 0.1; done
[ "$(kept bob)" = 0 ] || die "the service did not forget the dismissed notice: $(cat "$T/svc.err")"
# The server restarts under the running service (NameOwnerChanged): the
# new server's signals are heeded. A refused PIN (notified every time) in a
# one-shot check shows a notice on the new server; dismissed, forgotten.
kill "$NOTIF_PID"
wait "$NOTIF_PID" 2>/dev/null || true
notifysrv_start
echo 0000 >"$T/wrongpin" && chmod 600 "$T/wrongpin"
sed -i "s|^\(\[token\]\)\$|\1\npin_file = $T/wrongpin|" "$PROFILES/bob.conf"
expect_rc 6 enr check bob
sed -i '/^pin_file = /d' "$PROFILES/bob.conf"
ID6=$(notice_id pin-needed bob)
[ "$(kept bob)" = 1 ] || die "bob's notice on the new server not kept"
dbus-send --session --print-reply --dest=org.freedesktop.Notifications /org/freedesktop/Notifications \
    org.evertoken.Test.Dismiss "uint32:$ID6" >/dev/null || die "cannot dismiss the notice"
for _ in $(seq 300); do [ "$(kept bob)" = 0 ] && break; sleep 0.1; done
[ "$(kept bob)" = 0 ] || die "the service did not follow the restarted server: $(cat "$T/svc.err")"
kill "$svc"
wait "$svc" 2>/dev/null || true
ok "service: forged signals ignored; 'Renew now' started evertoken unlock in a terminal (not waited for), then the check; enrolled, notice forgotten; a dismissed notice forgotten, also from a restarted server"

# 3. The server restarts. carol's pin-needed notice id is kept; the new
# server numbers from 1 again, and another program gets that id.
profile carol
sed -i '/^pin_file = /d' "$PROFILES/carol.conf"
expect_rc 6 enr check carol
ID4=$(notice_id pin-needed carol)
kill "$NOTIF_PID"
wait "$NOTIF_PID" 2>/dev/null || true
MARK=$(wc -l <"$T/notif.log")
notifysrv_start
"$PYD" -c 'import dbus, sys
n = dbus.Interface(dbus.SessionBus().get_object("org.freedesktop.Notifications", "/org/freedesktop/Notifications"),
                   "org.freedesktop.Notifications")
while n.Notify("chat", 0, "", "New message", "hi", [], {}, -1) < int(sys.argv[1]):
    pass' "$ID4" || die "the other program's notices"
[ "$(q "[n['id'] for n in c[$MARK:] if n.get('app') == 'chat'][-1]")" = "$ID4" ] ||
    die "the other program did not get id $ID4: $(tail -n +$((MARK + 1)) "$T/notif.log")"
# A problem notified every time (a refused PIN) while the kept id is the old
# server's: a new notice, not a replacement of the other program's.
sed -i "s|^\(\[token\]\)\$|\1\npin_file = $T/wrongpin|" "$PROFILES/carol.conf"
expect_rc 6 enr check carol
sed -i '/^pin_file = /d' "$PROFILES/carol.conf"
ID5=$(q "[n['id'] for n in c[$MARK:] if n['call'] == 'Notify' and n['summary'] == 'evertoken: pin-needed (carol)'][-1]") ||
    die "no pin-needed notice on the new server: $(tail -n +$((MARK + 1)) "$T/notif.log")"
[ "$ID5" != "$ID4" ] && [ "$(q "[n['replaces'] for n in c[$MARK:] if n['id'] == $ID5][-1]")" = 0 ] ||
    die "the old id was replaced on the new server: $(tail -n +$((MARK + 1)) "$T/notif.log")"
"$CLI" unlock --token "$LABEL" <"$T/pin" >/dev/null || die "evertoken unlock"
enr check carol 2>"$T/c3.err" || die "carol after unlock: $(cat "$T/c3.err")"
[ "$(q "any(n['call'] == 'CloseNotification' and n['id'] == $ID5 and n['live'] for n in c[$MARK:])")" = True ] ||
    die "carol's notice on the new server was not withdrawn: $(tail -n +$((MARK + 1)) "$T/notif.log")"
[ "$(q "[n for n in c[$MARK:] if n['id'] == $ID4 and n.get('app') != 'chat']")" = "[]" ] ||
    die "the other program's notice $ID4 was touched: $(tail -n +$((MARK + 1)) "$T/notif.log")"
ok "server restarted: the kept id of the old server is neither replaced nor closed (another program's notice now); the new notice withdrawn when solved"
