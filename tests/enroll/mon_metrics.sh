#!/usr/bin/env bash
# Metrics (issue 21 item 2): the helper rewrites its metrics file after each
# check; Debian's node_exporter (textfile collector) serves it and the scrape
# over 127.0.0.1 has the helper's series with the right values; promtool
# lints the format; a failing check keeps the certificate values and counts
# the failure; readers never see a half-written file; the alert rules of
# docs/monitoring.md pass `promtool test rules`.
. "$(dirname "$0")/lib.sh"
need curl prometheus-node-exporter promtool
ca_init
scep_start
TXT=$T/textfile
mkdir -p "$TXT" "$XDG_CONFIG_HOME/evertoken"
printf '[metrics]\nmetrics_file = %s/evertoken.prom\n' "$TXT" >"$XDG_CONFIG_HOME/evertoken/monitor.conf"
profile alice
PROM=$TXT/evertoken.prom

enr enroll 2>"$T/enroll.err" || die "enroll failed: $(cat "$T/enroll.err")"
[ -s "$PROM" ] || die "no metrics file after a check"
[ "$(stat -c %a "$PROM")" = 644 ] || die "metrics file mode $(stat -c %a "$PROM") (want 644)"
ls "$TXT" | grep -v '^evertoken.prom$' && die "temporary files left in the textfile directory"
promtool check metrics <"$PROM" >"$T/lint" 2>&1 || die "promtool check metrics: $(cat "$T/lint")"
tail -1 "$PROM" | grep -qx '# EOF' || die "no end marker"
na=$(date -d "$(token_cert alice | openssl x509 -noout -enddate | sed 's/notAfter=//')" +%s)
val() { awk -v k="$1" 'index($0, k" ") == 1 { printf "%.0f\n", $NF }' "${2:-$PROM}"; }
S='{kind="profile",name="alice"}'
[ "$(val "evertoken_enroll_certificate_not_after_seconds$S")" = "$na" ] || die "not_after: $(grep not_after "$PROM")"
ts=$(val evertoken_enroll_metrics_timestamp_seconds)
[ "$(val "evertoken_enroll_certificate_remaining_seconds$S")" = "$((na - ts))" ] || die "remaining: $(grep remaining "$PROM")"
[ "$(val "evertoken_enroll_checks_total$S")" = 1 ] || die "checks_total: $(grep checks_total "$PROM")"
[ "$(val "evertoken_enroll_check_failures_total$S")" = 0 ] || die "failures_total"
[ "$(val "evertoken_enroll_consecutive_failures$S")" = 0 ] || die "consecutive"
succ=$(val "evertoken_enroll_last_success_timestamp_seconds$S")
[ "$succ" -gt 0 ] || die "no last success"
grep -q '^evertoken_enroll_state_info{kind="profile",name="alice",state="valid"} 1$' "$PROM" || die "state: $(grep state_info "$PROM")"
grep -q '^evertoken_enroll_renewal_window_start_seconds{kind="profile",name="alice"} ' "$PROM" || die "no window start"
grep -q '^evertoken_enroll_token_present{profile="alice",token="pkcs11:token=enr;object=alice"} 1$' "$PROM" ||
    die "token present: $(grep token_ "$PROM")"
grep -q '^evertoken_enroll_token_pin_locked{profile="alice",.*} 0$' "$PROM" || die "pin locked: $(grep token_ "$PROM")"
grep -q '^evertoken_enroll_token_login_cached{profile="alice",.*} [01]$' "$PROM" || die "login cache: $(grep token_ "$PROM")"
cmp <(enr status --format openmetrics | grep -v '_timestamp_seconds \|_remaining_seconds') \
    <(grep -v '_timestamp_seconds \|_remaining_seconds' "$PROM") ||
    die "status --format openmetrics differs from the metrics file"
ok "metrics file written after the check, values right, format lint-clean"

# node_exporter (Debian's) serves the file through its textfile collector.
PORT=$((20000 + RANDOM % 20000))
prometheus-node-exporter --web.listen-address=127.0.0.1:$PORT --collector.disable-defaults \
    --collector.textfile --collector.textfile.directory="$TXT" >"$T/ne.log" 2>&1 &
NE_PID=$!
ET_PIDS+=("$NE_PID")
scrape() { curl -sf "http://127.0.0.1:$PORT/metrics" >"$T/scrape" 2>/dev/null; }
for _ in $(seq 100); do scrape && break; sleep 0.1; done
scrape || die "node_exporter did not answer: $(cat "$T/ne.log")"
grep -q '^node_textfile_scrape_error 0$' "$T/scrape" || die "textfile collector error: $(grep textfile "$T/scrape"; cat "$T/ne.log")"
[ "$(val "evertoken_enroll_certificate_not_after_seconds$S" "$T/scrape")" = "$na" ] ||
    die "scraped not_after: $(grep not_after "$T/scrape")"
[ "$(val "evertoken_enroll_checks_total$S" "$T/scrape")" = 1 ] || die "scraped checks_total"
grep -q '^# TYPE evertoken_enroll_checks_total counter$' "$T/scrape" || die "counter type lost"
ok "node_exporter scrape over 127.0.0.1 has the helper's series"

# A failing check: the CA is gone. The certificate values stay, the failure counters move.
scep_stop
rc=0; enr renew --force 2>"$T/fail.err" || rc=$?
[ "$rc" = 4 ] || die "renewal without CA: exit $rc (want 4): $(cat "$T/fail.err")"
scrape || die "node_exporter gone"
[ "$(val "evertoken_enroll_certificate_not_after_seconds$S" "$T/scrape")" = "$na" ] || die "not_after lost on failure"
[ "$(val "evertoken_enroll_checks_total$S" "$T/scrape")" = 2 ] || die "checks_total after failure"
[ "$(val "evertoken_enroll_check_failures_total$S" "$T/scrape")" = 1 ] || die "failures_total after failure"
[ "$(val "evertoken_enroll_consecutive_failures$S" "$T/scrape")" = 1 ] || die "consecutive after failure"
[ "$(val "evertoken_enroll_last_success_timestamp_seconds$S" "$T/scrape")" = "$succ" ] || die "last success moved"
ok "a failed check keeps the last values and counts the failure"

# Never half-written: a reader and node_exporter look while checks rewrite it.
( for _ in $(seq 15); do enr renew --force 2>/dev/null || true; done ) &
W=$!
ET_PIDS+=("$W")
reads=0
while kill -0 "$W" 2>/dev/null; do
    cp "$PROM" "$T/snap" 2>/dev/null || continue
    tail -1 "$T/snap" | grep -qx '# EOF' || die "a reader saw a partial metrics file"
    grep -q "^evertoken_enroll_checks_total$S" "$T/snap" || die "a reader saw a file without the counters"
    reads=$((reads + 1))
done
wait "$W" || true
scrape && grep -q '^node_textfile_scrape_error 0$' "$T/scrape" || die "textfile collector error after rewrites"
[ "$(val "evertoken_enroll_check_failures_total$S" "$T/scrape")" = 16 ] || die "failures_total after 16 failures: $(grep failures_total "$T/scrape")"
[ "$reads" -gt 0 ] || die "the reader never read the file"
ok "$reads reads during 15 rewrites, never a partial file"

# The documented alert rules pass promtool's unit test.
awk '/^<!-- alert-rules begin -->/{on=1; next} /^<!-- alert-rules end -->/{on=0} on && !/^```/' \
    "$EVERTOKEN_SOURCE_DIR/docs/monitoring.md" >"$T/rules.yml"
[ -s "$T/rules.yml" ] || die "no alert rules found in docs/monitoring.md"
promtool check rules "$T/rules.yml" >"$T/pc" 2>&1 || die "promtool check rules: $(cat "$T/pc")"
cat >"$T/rules_test.yml" <<YML
rule_files: [$T/rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # expires at 8 days + 2 h (Unix time 698400), the last two checks failed
      - series: 'evertoken_enroll_certificate_not_after_seconds{kind="profile",name="vpn",instance="h1",job="node"}'
        values: '698400x3100'
      - series: 'evertoken_enroll_consecutive_failures{kind="profile",name="vpn",instance="h1",job="node"}'
        values: '2x3100'
      - series: 'evertoken_enroll_last_success_timestamp_seconds{kind="profile",name="vpn",instance="h1",job="node"}'
        values: '0x3100'
      # fine: 200 days, succeeding
      - series: 'evertoken_enroll_certificate_not_after_seconds{kind="profile",name="web",instance="h1",job="node"}'
        values: '17280000x3100'
      - series: 'evertoken_enroll_consecutive_failures{kind="profile",name="web",instance="h1",job="node"}'
        values: '0x3100'
      - series: 'evertoken_enroll_last_success_timestamp_seconds{kind="profile",name="web",instance="h1",job="node"}'
        values: '0+60x3100'
    alert_rule_test:
      - eval_time: 2h
        alertname: EvertokenCertificateExpiringRenewalFailing
        exp_alerts:
          - exp_labels: {severity: critical, kind: profile, name: vpn, instance: h1, job: node}
            exp_annotations:
              summary: "vpn on h1 expires within 10 days and its renewal is failing"
      - eval_time: 50h
        alertname: EvertokenNoSuccessfulCheck
        exp_alerts:
          - exp_labels: {severity: warning, kind: profile, name: vpn, instance: h1, job: node}
            exp_annotations:
              summary: "vpn on h1 has had no successful check for 2 days"
      - eval_time: 50h
        alertname: EvertokenCertificateExpiringRenewalFailing
        exp_alerts:
          - exp_labels: {severity: critical, kind: profile, name: vpn, instance: h1, job: node}
            exp_annotations:
              summary: "vpn on h1 expires within 10 days and its renewal is failing"
YML
promtool test rules "$T/rules_test.yml" >"$T/pt" 2>&1 || die "promtool test rules: $(cat "$T/pt")"
ok "documented alert rules pass promtool test rules"
