# Desktop notifications on a real session bus (docs/enrollment.md "Desktop
# notifications"): a private dbus-daemon and a notification server
# (tests/enroll/notifysrv.py: actions and body-markup, like the desktops'
# servers). With the token locked (login_cache=user:600, no pin_file):
#  1. one-shot checks: the pin-needed failure is shown (critical, no action:
#     no process would hear it); after `evertoken unlock` the next check
#     enrolls and the failure's notice is withdrawn (CloseNotification),
#     the success shown as an ordinary notice;
#  2. the service: the failure offers "Renew now"; choosing it runs
#     `evertoken unlock --token LABEL` (in x-terminal-emulator, the service
#     having no terminal), then the check: the credential is enrolled and
#     the notice withdrawn, `recovered` shown.
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
et_bg "$PYD" "$EVERTOKEN_SOURCE_DIR/tests/enroll/notifysrv.py" "$T/notif.log" "$T/notif.ready" 2>"$T/notifysrv.err"
for _ in $(seq 100); do [ -s "$T/notif.ready" ] && break; sleep 0.05; done
[ -s "$T/notif.ready" ] || die "the notification server did not start: $(cat "$T/notifysrv.err")"
touch "$T/notif.log"
# q EXPR: evaluate EXPR over the recorded calls (list `c`), print the result.
q() { python3 -c 'import json, sys
c = [json.loads(l) for l in open(sys.argv[1])]
print(eval(sys.argv[2]))' "$T/notif.log" "$1"; }
# notice_id EVENT PROFILE: the id of the last Notify of that event.
notice_id() { q "[n['id'] for n in c if n['call'] == 'Notify' and n['summary'] == 'evertoken: $1 ($2)'][-1]"; }
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
cat >"$T/bin/x-terminal-emulator" <<EOF
#!/bin/sh
echo "x-terminal-emulator \$*" >>"$T/actions.log"
[ "\$1" = -e ] && shift
exec "\$@"
EOF
cat >"$T/bin/evertoken" <<EOF
#!/bin/sh
echo "evertoken \$*" >>"$T/actions.log"
exec "$CLI" "\$@" --pin "file:$T/pin"
EOF
chmod 755 "$T/bin/x-terminal-emulator" "$T/bin/evertoken"
PATH=$T/bin:$PATH LD_PRELOAD=${ET_PRELOAD:-} "$ENROLL_BIN" --profiles "$PROFILES" --state-dir "$STATE" \
    run --unlock-poll 3600 </dev/null 2>"$T/svc.err" &
svc=$!
ET_PIDS+=("$svc")
wait_for "any(n['call'] == 'Notify' and n['summary'] == 'evertoken: pin-needed (bob)' for n in c)" 30 ||
    die "no pin-needed notice from the service: $(cat "$T/notif.log") $(cat "$T/svc.err")"
ID2=$(notice_id pin-needed bob)
[ "$(q "[(n['urgency'], n['actions']) for n in c if n['id'] == $ID2][-1]")" = "(2, ['renew', 'Renew now'])" ] ||
    die "the service's failure notice offers no 'Renew now': $(cat "$T/notif.log")"
[ ! -e "$T/actions.log" ] || die "ran something before the action: $(cat "$T/actions.log")"
dbus-send --session --print-reply --dest=org.freedesktop.Notifications /org/freedesktop/Notifications \
    org.evertoken.Test.Invoke "uint32:$ID2" string:renew >/dev/null || die "cannot invoke the action"
wait_for "any(n['call'] == 'Notify' and n['summary'] == 'evertoken: recovered (bob)' for n in c)" 30 ||
    die "no recovery after 'Renew now': $(cat "$T/notif.log") $(cat "$T/svc.err")"
grep -qx "x-terminal-emulator -e evertoken unlock --token $LABEL" "$T/actions.log" &&
    grep -qx "evertoken unlock --token $LABEL" "$T/actions.log" || die "actions run: $(cat "$T/actions.log")"
grep -q 'profile bob: "Renew now" chosen in the desktop notification' "$T/svc.err" || die "service log: $(cat "$T/svc.err")"
[ "$(count_objects Certificate bob)" = 1 ] || die "bob not enrolled: $(token_objects)"
[ "$(q "any(n['call'] == 'CloseNotification' and n['id'] == $ID2 for n in c)")" = True ] ||
    die "the failure notice was not withdrawn: $(cat "$T/notif.log")"
enr history bob | grep -q "action Renew now" || die "history: $(enr history bob)"
kill "$svc"
wait "$svc" 2>/dev/null || true
ok "service: 'Renew now' ran evertoken unlock in a terminal, then the check; enrolled, notice withdrawn"
