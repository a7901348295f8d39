/*
 * test_enr_moncfg.c — the monitor settings (enroll/moncfg.c): a complete
 * file, defaults, a missing file (default path: nothing configured; named:
 * an error), and a precise FILE:LINE error for each kind of mistake; the
 * metrics text of an empty state (enroll/metrics.c) is well formed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "mon.h"

static char dir[256];

static int
setup(void **st)
{
    (void)st;
    snprintf(dir, sizeof(dir), "/tmp/enr-moncfg.XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int
teardown(void **st)
{
    char cmd[300];

    (void)st;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Load TEXT with stderr captured into ERR. */
static enr_rc
load(const char *text, enr_moncfg **c, char *err, size_t errsz)
{
    char path[512], epath[512];
    int saved, fd;
    enr_rc rc;
    FILE *fp;

    snprintf(path, sizeof(path), "%s/monitor.conf", dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    snprintf(epath, sizeof(epath), "%s/stderr", dir);
    fflush(stderr);
    saved = dup(2);
    fd = creat(epath, 0600);
    dup2(fd, 2);
    close(fd);
    rc = enr_moncfg_load(path, 1, c);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fp = fopen(epath, "r");
    size_t n = fread(err, 1, errsz - 1, fp);
    err[n] = '\0';
    fclose(fp);
    return rc;
}

static void
test_complete(void **st)
{
    enr_moncfg *c = NULL;
    char err[2048];

    (void)st;
    assert_int_equal(load("[metrics]\nmetrics_file = /var/lib/x/evertoken.prom\n"
                          "[mail]\nsmtp_url = smtps://mail.example:465\nfrom = e@h.example\n"
                          "to = mailto:a@example.com, b@example.com\nto = mailto:c@example.com\n"
                          "user = u\npassword_file = /pw\nevents = all\ndigest = yes\n"
                          "digest_time = 06:30\ntimeout = 12\nstarttls = no\n"
                          "[watch web]\nsource = tls://[::1]:8443\nsni = www.example\n"
                          "expect = sha256:AB\nwarn_days = 7, 60\nrevocation = hard\n"
                          "[watch tok]\nsource = pkcs11:token=t\n"
                          "[watch f]\nsource = /nonexistent/cert.pem\n",
                          &c, err, sizeof(err)),
                     ENR_OK);
    assert_string_equal(err, "");
    assert_string_equal(c->metrics_file, "/var/lib/x/evertoken.prom");
    assert_string_equal(c->smtp_url, "smtps://mail.example:465");
    assert_int_equal(c->n_mail_to, 3);
    assert_string_equal(c->mail_to[0], "a@example.com");
    assert_string_equal(c->mail_to[1], "b@example.com");
    assert_string_equal(c->mail_to[2], "c@example.com");
    assert_int_equal(c->mail_events, 2);
    assert_int_equal(c->digest, 1);
    assert_int_equal(c->digest_hour, 6);
    assert_int_equal(c->digest_min, 30);
    assert_int_equal(c->mail_timeout, 12);
    assert_int_equal(c->smtp_starttls, 0);
    assert_int_equal(c->n_watch, 3);
    assert_int_equal(c->watch[0].kind, ENR_WATCH_TLS);
    assert_string_equal(c->watch[0].host, "::1");
    assert_string_equal(c->watch[0].port, "8443");
    assert_int_equal(c->watch[0].n_warn, 2);
    assert_int_equal(c->watch[0].warn_days[0], 60); /* sorted descending */
    assert_int_equal(c->watch[0].revocation, ENR_REVPOL_HARD);
    assert_int_equal(c->watch[1].kind, ENR_WATCH_TOKEN);
    assert_int_equal(c->watch[1].n_warn, 4); /* default 30, 14, 7, 1 */
    assert_int_equal(c->watch[2].kind, ENR_WATCH_FILE);
    enr_moncfg_free(c);
}

static void
test_missing(void **st)
{
    enr_moncfg *c = NULL;
    char path[512];

    (void)st;
    snprintf(path, sizeof(path), "%s/absent.conf", dir);
    /* At the default place: nothing configured. */
    assert_int_equal(enr_moncfg_load(path, 0, &c), ENR_OK);
    assert_non_null(c);
    assert_null(c->metrics_file);
    assert_int_equal(c->n_watch, 0);
    enr_moncfg_free(c);
    /* Named explicitly: an error. */
    c = NULL;
    fflush(stderr);
    int saved = dup(2), fd = open("/dev/null", O_WRONLY);
    dup2(fd, 2);
    close(fd);
    assert_int_equal(enr_moncfg_load(path, 1, &c), ENR_E_CONFIG);
    dup2(saved, 2);
    close(saved);
    assert_null(c);
}

static void
bad(const char *text, const char *want)
{
    enr_moncfg *c = NULL;
    char err[2048];

    assert_int_equal(load(text, &c, err, sizeof(err)), ENR_E_CONFIG);
    assert_null(c);
    if (strstr(err, want) == NULL)
        fail_msg("expected \"%s\" in: %s", want, err);
}

static void
test_errors(void **st)
{
    (void)st;
    bad("[metrics]\nmetrics_file = relative.prom\n",
        "monitor.conf:2: [metrics] metrics_file: 'relative.prom' is not an absolute path");
    bad("[metrics]\nmetrics_dir = /x\n", "monitor.conf:2: [metrics] metrics_dir: unknown");
    bad("[mail]\nsmtp_url = http://x\n", "monitor.conf:2: [mail] smtp_url: 'http://x' is not smtp");
    bad("[mail]\nsmtp_url = smtp://x\nfrom = e@x\nto = nobody\n",
        "monitor.conf:4: [mail] to: 'nobody' is not a mail address");
    bad("[mail]\nsmtp_url = smtp://x\nfrom = e@x\n", "[mail] needs smtp_url, from and to together");
    bad("[mail]\nsmtp_url = smtp://x\nfrom = e@x\nto = a@x\npassword_file = /p\n",
        "[mail] password_file needs user");
    bad("[mail]\nevents = some\n",
        "monitor.conf:2: [mail] events: 'some' is not none, problems or all");
    bad("[mail]\ndigest_time = 25:00\n",
        "monitor.conf:2: [mail] digest_time: '25:00' is not HH:MM");
    bad("[watch]\nsource = /x\n", "a watch section needs a name: [watch NAME]");
    bad("[watch w]\nsni = x\n", "[watch w] has no source");
    bad("[watch w]\nsource = relative/path\n",
        "monitor.conf:2: [watch] source: 'relative/path' is not");
    bad("[watch w]\nsource = tls://nohostport\n", "'tls://nohostport' is not tls://HOST:PORT");
    bad("[watch w]\nsource = /x\nexpect = md5:00\n", "monitor.conf:3: [watch] expect: 'md5:00'");
    bad("[watch w]\nsource = /x\nwarn_days = 0\n", "monitor.conf:3: [watch] warn_days: '0'");
    bad("[other]\nkey = v\n", "monitor.conf:2: [other] key: unknown section or key");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete),
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
