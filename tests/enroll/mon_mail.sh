#!/usr/bin/env bash
# Mail (issue 21 item 3): a local SMTP sink (Debian's aiosmtpd on 127.0.0.1,
# STARTTLS required, then AUTH) receives the per-event mail and the daily
# digest (by `digest --send` and from the service at digest_time) with the
# expected content; a wrong SMTP password and an unreachable server are
# logged failures that never block the renewal.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
$PY -c 'import aiosmtpd' 2>/dev/null || { echo "SKIP: python3-aiosmtpd not installed" >&2; exit 77; }
ca_init
est_tls
scep_start
SINK=$T/sink
mkdir -p "$SINK"
SMTP_PORT=$((20000 + RANDOM % 20000))
$PY "$EVERTOKEN_SOURCE_DIR/tests/enroll/smtpsink.py" "$SINK" --port "$SMTP_PORT" \
    --tls "$CA/tls.pem" "$CA/tls.key" --auth evertoken 's3cret pass' 2>"$T/sink.log" &
ET_PIDS+=($!)
for _ in $(seq 100); do [ -s "$SINK/port" ] && break; sleep 0.1; done
[ -s "$SINK/port" ] || die "SMTP sink did not start: $(cat "$T/sink.log")"
printf 's3cret pass\n' >"$T/smtp.pw"
chmod 600 "$T/smtp.pw"
mkdir -p "$XDG_CONFIG_HOME/evertoken"
monitor_conf() {
    cat >"$XDG_CONFIG_HOME/evertoken/monitor.conf" <<CONF
[mail]
smtp_url = ${1:-smtp://127.0.0.1:$SMTP_PORT}
starttls = yes
anchors = $CA/ca.pem
user = evertoken
password_file = ${2:-$T/smtp.pw}
from = evertoken@host1.example
to = mailto:pki@example.com, mailto:ops@example.com
events = all
digest = yes
digest_time = ${3:-07:00}
timeout = 5
CONF
}
monitor_conf
profile alice
mails() { ls "$SINK" | grep -c '\.eml$' || true; }
# The mail whose subject matches PATTERN (its file name), the latest one.
mail_with() { grep -l "^Subject: .*$1" "$SINK"/*.eml 2>/dev/null | sort -t/ -k2 -V | tail -1; }

enr enroll 2>"$T/enroll.err" || die "enroll failed: $(cat "$T/enroll.err")"
m=$(mail_with "evertoken: enrolled (alice)") || true
[ -n "$m" ] || die "no mail for the enrollment: $(ls "$SINK"; cat "$T/enroll.err")"
env=${m%.eml}.env
grep -qx "tls yes" "$env" || die "mail not sent over STARTTLS"
grep -qx "auth yes" "$env" || die "mail not authenticated"
grep -qx "from evertoken@host1.example" "$env" || die "envelope sender: $(cat "$env")"
grep -qx "to pki@example.com" "$env" && grep -qx "to ops@example.com" "$env" || die "recipients: $(cat "$env")"
serial=$(token_cert alice | openssl x509 -noout -serial | sed 's/serial=//')
tr -d '\r' <"$m" >"$T/m.txt"
grep -q "^Profile:  alice$" "$T/m.txt" || die "no profile line: $(cat "$T/m.txt")"
grep -q "^Event:    enrolled$" "$T/m.txt" || die "no event line"
grep -qi "^Serial:   $serial$" "$T/m.txt" || die "no serial $serial"
grep -q "^PROFILE .*NOT-AFTER" "$T/m.txt" || die "no status table"
grep -q "^Content-Type: text/plain; charset=utf-8$" "$T/m.txt" || die "not plain text"
! grep -q "s3cret" "$T/m.txt" "$T/enroll.err" || die "the SMTP password leaked"
ok "per-event mail over STARTTLS with AUTH: event, serial, status table"

# The digest, by hand.
enr digest >"$T/digest.out" || die "digest failed"
grep -q "Nothing needs attention" "$T/digest.out" || die "digest text: $(cat "$T/digest.out")"
n=$(mails)
enr digest --send 2>"$T/dsend.err" || die "digest --send failed: $(cat "$T/dsend.err")"
[ "$(mails)" = $((n + 1)) ] || die "digest --send sent no mail"
m=$(mail_with "evertoken daily digest on .*: 0 need attention")
[ -n "$m" ] || die "digest subject: $(grep -h ^Subject "$SINK"/*.eml)"
tr -d '\r' <"$m" | grep -q "^alice " || die "digest without the status table"
ok "digest --send mails the summary and the status table"

# The service sends the digest once at digest_time (simulated day, no sleeping).
now=$(date -u +%s)
at=$(date -u -d "@$((now + 3 * 3600))" +%H:%M)
monitor_conf "" "" "$at"
n=$(mails)
enr run --until "@$((now + 26 * 3600))" 2>"$T/run.err" || die "run failed: $(cat "$T/run.err")"
d=$(grep -l "^Subject: evertoken daily digest" "$SINK"/*.eml | wc -l)
[ "$d" = 2 ] || die "the service sent $((d - 1)) digests in a day (want 1): $(grep -h ^Subject "$SINK"/*.eml)"
ok "the service mails the digest once a day at digest_time"

# A wrong password: the renewal goes through, the failure is logged.
printf 'wrong\n' >"$T/bad.pw"
chmod 600 "$T/bad.pw"
monitor_conf "" "$T/bad.pw"
old=$serial
n=$(mails)
enr renew --force 2>"$T/badpw.err" || die "renewal failed with a wrong SMTP password: $(cat "$T/badpw.err")"
new=$(token_cert alice | openssl x509 -noout -serial | sed 's/serial=//')
[ "$new" != "$old" ] || die "not renewed"
grep -q 'mail "evertoken: renewed (alice).*" not sent through smtp://127.0.0.1:.*Login denied' "$T/badpw.err" ||
    die "wrong password not logged: $(cat "$T/badpw.err")"
[ "$(mails)" = "$n" ] || die "a mail went through with a wrong password"
ok "wrong SMTP password: logged, renewal done"

# An unreachable server: the same.
monitor_conf "smtp://127.0.0.1:1"
enr renew --force 2>"$T/unreach.err" || die "renewal failed with an unreachable SMTP server: $(cat "$T/unreach.err")"
[ "$(token_cert alice | openssl x509 -noout -serial | sed 's/serial=//')" != "$new" ] || die "not renewed"
grep -q 'mail "evertoken: renewed (alice).*" not sent through smtp://127.0.0.1:1: ' "$T/unreach.err" ||
    die "unreachable server not logged: $(cat "$T/unreach.err")"
ok "unreachable SMTP server: logged, renewal done"

# A watched certificate's finding is mailed too (events = problems by default).
openssl req -new -newkey rsa:2048 -nodes -keyout "$T/soon.key" -subj /CN=soon.example -out "$T/soon.csr" 2>/dev/null
openssl x509 -req -in "$T/soon.csr" -CA "$CA/ca.pem" -CAkey "$CA/ca.key" -CAcreateserial -days 3 \
    -out "$T/soon.pem" 2>/dev/null
monitor_conf
sed -i '/^events = /d' "$XDG_CONFIG_HOME/evertoken/monitor.conf"
printf '[watch soon]\nsource = %s\nanchors = %s\nrevocation = off\n' "$T/soon.pem" "$CA/ca.pem" \
    >>"$XDG_CONFIG_HOME/evertoken/monitor.conf"
n=$(mails)
rc=0; enr watch check soon >/dev/null 2>"$T/wmail.err" || rc=$?
[ "$rc" = 1 ] || die "watch check soon: exit $rc: $(cat "$T/wmail.err")"
m=$(mail_with "evertoken: expiry-warning (watch:soon)")
[ -n "$m" ] || die "no mail for the watched certificate: $(grep -h ^Subject "$SINK"/*.eml)"
tr -d '\r' <"$m" | grep -q "^Message:  watched certificate soon (/CN=soon.example, serial .*) expires in [23] days$" ||
    die "watch mail body: $(tr -d '\r' <"$m")"
tr -d '\r' <"$m" | grep -q "^soon .* expiring " || die "watch mail without the watched table: $(tr -d '\r' <"$m")"
ok "a watched certificate's expiry notice is mailed, with the status table"

# STARTTLS required: a server certificate the anchors do not vouch for is refused.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/other.key" -out "$T/other.pem" -subj /CN=other -days 2 2>/dev/null
monitor_conf
sed -i "s|^anchors = .*|anchors = $T/other.pem|" "$XDG_CONFIG_HOME/evertoken/monitor.conf"
n=$(mails)
enr digest --send 2>"$T/anch.err" && die "digest sent to an unverified server"
[ "$(mails)" = "$n" ] || die "mail delivered to an unverified server"
ok "the SMTP server's certificate is verified against the anchors"
