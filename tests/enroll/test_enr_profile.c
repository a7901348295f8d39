/*
 * test_enr_profile.c — profile parsing: a complete profile, defaults, and a
 * precise FILE:LINE error for each kind of mistake (captured from stderr).
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

#include "enr_int.h"

static char dir[256];

static void
write_file(const char *name, const char *text)
{
    char path[512];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static int
setup(void **st)
{
    snprintf(dir, sizeof(dir), "/tmp/enr-prof.XXXXXX");
    assert_non_null(mkdtemp(dir));
    write_file("ca.pem", "anchor\n");
    write_file("secret", "s3cret\n");
    return 0;
}

static int
teardown(void **st)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Load TEXT as a profile with stderr redirected; ERR gets what was printed. */
static enr_rc
load(const char *text, enr_profile **p, char *err, size_t errsz)
{
    char path[512], epath[512];
    int saved, fd;
    enr_rc rc;
    FILE *fp;

    write_file("p.conf", text);
    snprintf(path, sizeof(path), "%s/p.conf", dir);
    snprintf(epath, sizeof(epath), "%s/stderr", dir);
    fflush(stderr);
    saved = dup(2);
    fd = creat(epath, 0600);
    dup2(fd, 2);
    close(fd);
    rc = enr_profile_load(path, p);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fp = fopen(epath, "r");
    size_t n = fread(err, 1, errsz - 1, fp);
    err[n] = '\0';
    fclose(fp);
    return rc;
}

#define BASE                                                                                       \
    "[ca]\nurl = http://127.0.0.1:1/scep\nanchors = ca.pem\nsecret_file = secret\n"                \
    "[certificate]\nsubject = CN=alice, O=Example\n"                                               \
    "[token]\nuri = pkcs11:token=demo;object=alice\n"

static void
test_complete(void **st)
{
    enr_profile *p = NULL;
    char err[2048];
    enr_rc rc = load(BASE "module = /lib/x.so\npin_file = /p\n"
                          "[certificate]\nsan = DNS:a.example, email:alice@example.com\n"
                          "san = IP:10.0.0.1\nkey_size = 3072\nallow_duplicate = yes\n"
                          "[renewal]\nwindow_days = 20\nwindow_fraction = 0.5\nrekey = no\n"
                          "grace_period = 2d\nwarn_days = 10, 30, 5\n"
                          "[hooks]\nnotify_command = logger x\n",
                     &p, err, sizeof(err));
    assert_int_equal(rc, ENR_OK);
    assert_string_equal(p->name, "p");
    assert_string_equal(p->label, "alice");
    assert_string_equal(p->module, "/lib/x.so");
    assert_string_equal(p->pin_file, "/p");
    assert_int_equal(p->key_type, ENR_KEY_RSA);
    assert_int_equal(p->key_bits, 3072);
    assert_int_equal(p->allow_duplicate, 1);
    assert_int_equal(p->rekey, 0);
    assert_int_equal(p->grace_period, 2 * 86400);
    assert_int_equal(p->window_days, 20);
    assert_int_equal(p->n_warn, 3);
    assert_int_equal(p->warn_days[0], 30);
    assert_int_equal(p->warn_days[2], 5);
    assert_string_equal(p->san, "DNS:a.example, email:alice@example.com,IP:10.0.0.1");
    assert_non_null(strstr(p->anchors, "/ca.pem"));
    assert_int_equal(p->anchors[0], '/'); /* resolved against the profile's directory */
    assert_int_equal(X509_NAME_entry_count(p->subject_name), 2);
    /* Window: the earlier of 20 days and half the lifetime (100 days → 50). */
    assert_int_equal(enr_profile_window_start(p, 0, 100 * 86400), 50 * 86400);
    enr_profile_free(p);
}

static void
test_defaults(void **st)
{
    enr_profile *p = NULL;
    char err[2048];

    setenv("EVERTOKEN_MODULE", "/x/libevertoken.so", 1);
    assert_int_equal(load(BASE, &p, err, sizeof(err)), ENR_OK);
    assert_string_equal(p->module, "/x/libevertoken.so");
    assert_int_equal(p->key_bits, 2048);
    assert_int_equal(p->rekey, 1);
    assert_int_equal(p->grace_period, 7 * 86400);
    assert_int_equal(p->n_warn, 2);
    assert_int_equal(p->id_len, 16);
    assert_null(p->pin_file);
    /* Default window: the last third of the lifetime. */
    assert_int_equal(enr_profile_window_start(p, 0, 90 * 86400), 60 * 86400);
    enr_profile_free(p);
    unsetenv("EVERTOKEN_MODULE");
}

static void
test_uri_fields(void **st)
{
    enr_profile *p = NULL;
    char err[2048];

    assert_int_equal(load("[ca]\nurl = https://ca/scep\nanchors = ca.pem\n"
                          "[certificate]\nsubject = CN=x\n"
                          "[token]\nuri = pkcs11:token=t;id=%01%02;object=o?pin-source=file:/pin"
                          "&module-path=/m.so\n",
                          &p, err, sizeof(err)),
                     ENR_OK);
    assert_int_equal(p->id_len, 2);
    assert_int_equal(p->id[1], 2);
    assert_string_equal(p->pin_file, "/pin");
    assert_string_equal(p->module, "/m.so");
    enr_profile_free(p);
}

/* Each bad profile fails with exactly this text in the error. */
static const struct {
    const char *text, *expect;
} bad[] = {
    {BASE "[ca]\nprotocol = sftp\n",
     "p.conf:10: [ca] protocol: unknown protocol 'sftp' (scep, est, cmp, acme)"},
    {BASE "[acme]\ncontact = a@b.example\n", "[acme]: only for protocol = acme"},
    {BASE "[ca]\nprotocol = acme\n",
     "ACME needs DNS: or IP: names in [certificate] san (the order's identifiers)"},
    {BASE "[ca]\nprotocol = acme\n[certificate]\nsan = DNS:a.example\n[acme]\neab_kid = k\n",
     "[acme] eab_kid and eab_hmac_file go together"},
    {BASE "[ca]\nprotocol = acme\n[acme]\nhttp_listen = 1.2.3.4\n",
     "p.conf:12: [acme] http_listen: '1.2.3.4' is not address:port"},
    {BASE "[ca]\nprotocol = acme\n[acme]\ntls_alpn_listen = 127.0.0.1:0\n",
     "p.conf:12: [acme] tls_alpn_listen: '127.0.0.1:0' is not address:port"},
    {BASE "[ca]\nprotocol = acme\n[certificate]\nsan = DNS:a.example\n[acme]\nchallenge = "
          "tls-alpn-01\nchallenge = tls-alpn-01\n",
     "[acme] challenge: given twice"},
    {BASE "[ca]\nprotocol = acme\n[certificate]\nsan = DNS:a.example\n[acme]\ntls_alpn_listen = "
          ":443\n",
     "[acme] tls_alpn_listen is for the built-in tls-alpn-01 responder"},
    {BASE "[ca]\nprotocol = acme\n[acme]\naccount_key = dsa\n",
     "p.conf:12: [acme] account_key: 'dsa' is not ec (ES256) or rsa (RS256)"},
    {BASE "[ca]\nprotocol = acme\n[acme]\nagree_tos = perhaps\n",
     "p.conf:12: [acme] agree_tos: 'perhaps' is not true or false"},
    {BASE "[ca]\nprotocol = acme\n[acme]\nflavour = x\n",
     "p.conf:12: [acme] flavour: unknown key in [acme]"},
    {BASE "[ca]\nprotocol = acme\n[acme]\naccount_id = 0g\n",
     "p.conf:12: [acme] account_id: '0g' is not 1 to 32 bytes in hex"},
    {BASE "[ca]\nprotocol = cmp\n",
     "[ca] reference missing: CMP's MAC protection needs both reference and secret_file"},
    {BASE "[ca]\nreference = r1\n", "[ca] reference: only for protocol = cmp"},
    {BASE "[ca]\nimplicit_confirm = yes\n", "[ca] implicit_confirm: only for protocol = cmp"},
    {BASE "[ca]\nbootstrap = boot\n", "[ca] bootstrap: only for protocol = est or cmp"},
    {BASE "[ca]\nprotocol = cmp\nrecipient = bob\n",
     "p.conf:11: [ca] recipient: 'bob' is not TYPE=value"},
    {BASE "[ca]\nprotocol = cmp\nimplicit_confirm = maybe\n",
     "p.conf:11: [ca] implicit_confirm: 'maybe' is not true or false"},
    {"[ca]\nurl = http://x\nanchors = ca.pem\nprotocol = cmp\n[certificate]\nsubject = CN=a\n"
     "[token]\nuri = pkcs11:object=a\n",
     "protocol = cmp: a first enrollment needs reference and secret_file (MAC) or bootstrap"},
    {BASE "[ca]\nprotocol = est\n", "[ca] url: EST runs over TLS only"},
    {BASE "[ca]\nest_label = a/b\n", "[ca] est_label: 'a/b' is not a URL path segment"},
    {BASE "[ca]\nusername = bob\n", "[ca] username: only for protocol = est"},
    {BASE "[ca]\nsecret = x\n", "p.conf:10: [ca] secret: secrets are never written"},
    {BASE "pin = 1234\n", "p.conf:9: [token] pin: PINs are never written"},
    {BASE "[certificate]\nkey_size = 1024\n", "p.conf:10: [certificate] key_size: '1024'"},
    {BASE "[certificate]\nkey_type = dsa\n", "p.conf:10: [certificate] key_type: unknown key"},
    {BASE "[certificate]\nkey_type = ec\n", "[certificate] key_type: SCEP needs an RSA key"},
    {BASE "[certificate]\nsan = FOO:bar\n", "p.conf:10: [certificate] san: 'FOO:bar'"},
    {BASE "[certificate]\nsubject = CN=y\n", "p.conf:10: [certificate] subject: given twice"},
    {"[certificate]\nsubject = XX=alice\n", "p.conf:2: [certificate] subject: unknown attribute"},
    {"[certificate]\nsubject = alice\n", "p.conf:2: [certificate] subject: 'alice' is not"},
    {BASE "[renewal]\nwindow_fraction = 1.5\n", "p.conf:10: [renewal] window_fraction: '1.5'"},
    {BASE "[renewal]\ngrace_period = 7w\n", "p.conf:10: [renewal] grace_period: '7w'"},
    {BASE "[renewal]\nwarn_days = 30,x\n", "p.conf:10: [renewal] warn_days: 'x'"},
    {BASE "[renewal]\nrekey = maybe\n", "p.conf:10: [renewal] rekey: 'maybe' is not true"},
    {BASE "[hooks]\nbogus = 1\n", "p.conf:10: unknown key 'bogus' in [hooks]"},
    {BASE "[extra]\nx = 1\n", "p.conf:10: unknown section [extra]"},
    {"url = x\n", "p.conf:1: 'url' outside a section"},
    {BASE "this line has no equals\n", "p.conf:9: syntax error"},
    {"[ca]\nurl = ftp://x\n", "p.conf:2: [ca] url: 'ftp://x' is not an http"},
    {"[ca]\nurl = http://x\n", "missing 'anchors' in [ca]"},
    {"[ca]\nurl = http://x\nanchors = ca.pem\n[certificate]\nsubject = CN=a\n",
     "missing 'uri' in [token]"},
    {BASE "[ca]\nanchors = nope.pem\n", "p.conf:10: [ca] anchors: given twice"},
    {"[ca]\nurl = http://x\nanchors = nope.pem\n[certificate]\nsubject = CN=a\n[token]\n"
     "uri = pkcs11:\n",
     "[ca] anchors: "},
    {"[ca]\nurl = http://x\nanchors = ca.pem\n[certificate]\nsubject = CN=a\n[token]\n"
     "uri = file:///x\n",
     "p.conf:7: [token] uri: 'file:///x' is not a pkcs11: URI"},
    {"[ca]\nurl = http://x\nanchors = ca.pem\n[certificate]\nsubject = CN=a\n[token]\n"
     "uri = pkcs11:object=a?pin-value=1234\n",
     "pin-value is not accepted"},
    {"[ca]\nurl = http://x\nanchors = ca.pem\n[certificate]\nsubject = CN=a\n[token]\n"
     "uri = pkcs11:object=a%20(pending)\n",
     "may not end in \" (pending)\""},
    {BASE "[certificate]\nsubject_match = loose\n",
     "p.conf:10: [certificate] subject_match: 'loose' is not exact, cn or any"},
    {BASE "[certificate]\nsan_match = cn\n",
     "p.conf:10: [certificate] san_match: 'cn' is not exact, subset or any"},
    {BASE "[renewal]\nrevocation = maybe\n",
     "p.conf:10: [renewal] revocation: 'maybe' is not hard, soft or off"},
    {BASE "[renewal]\nrevocation_timeout = 1h\n",
     "p.conf:10: [renewal] revocation_timeout: '1h' is not a duration between 1s and 5m"},
    {"[ca]\nurl = http://x\nanchors = ca.pem\n[certificate]\nsubject = O=Example\n"
     "subject_match = cn\n[token]\nuri = pkcs11:object=a\n",
     "[certificate] subject_match: cn needs a CN in the subject"},
};

static void
test_errors(void **st)
{
    char err[2048];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enr_profile *p = NULL;
        enr_rc rc = load(bad[i].text, &p, err, sizeof(err));
        if (rc != ENR_E_CONFIG || strstr(err, bad[i].expect) == NULL)
            fail_msg("case %zu: rc %d, expected \"%s\", got \"%s\"", i, rc, bad[i].expect, err);
        assert_null(p);
    }
}

/* A CMP profile: MAC reference, recipient, implicit confirmation, EC key. */
static void
test_cmp(void **st)
{
    enr_profile *p = NULL;
    char err[2048], name[256];

    (void)st;
    assert_int_equal(load(BASE "[ca]\nprotocol = cmp\nreference = dev-42\n"
                               "recipient = CN=Issuing CA, O=Example\nimplicit_confirm = yes\n"
                               "[certificate]\nkey_type = ec\n",
                          &p, err, sizeof(err)),
                     ENR_OK);
    assert_int_equal(p->proto, ENR_PROTO_CMP);
    assert_string_equal(p->reference, "dev-42");
    assert_int_equal(p->implicit_confirm, 1);
    assert_int_equal(p->key_type, ENR_KEY_EC);
    X509_NAME_oneline(p->recipient_name, name, sizeof(name));
    assert_string_equal(name, "/CN=Issuing CA/O=Example");
    enr_profile_free(p);
    /* A bootstrap credential instead of the MAC: no secret needed. */
    assert_int_equal(load("[ca]\nurl = http://x\nanchors = ca.pem\nprotocol = cmp\n"
                          "bootstrap = boot\n[certificate]\nsubject = CN=a\n"
                          "[token]\nuri = pkcs11:object=a\n",
                          &p, err, sizeof(err)),
                     ENR_OK);
    assert_string_equal(p->bootstrap, "boot");
    assert_null(p->secret_file);
    enr_profile_free(p);
}

/* subject_match, san_match, revocation and its global default. */
static void
test_policies(void **st)
{
    enr_profile *p = NULL;
    char err[2048];

    assert_int_equal(load(BASE, &p, err, sizeof(err)), ENR_OK);
    assert_int_equal(p->subject_match, ENR_MATCH_EXACT);
    assert_int_equal(p->san_match, ENR_MATCH_EXACT);
    assert_int_equal(p->revocation, ENR_REVPOL_SOFT);
    assert_int_equal(p->revocation_timeout, ENR_REVOCATION_TIMEOUT);
    enr_profile_free(p);
    assert_int_equal(load(BASE "[certificate]\nsubject_match = CN\nsan_match = subset\n"
                               "[renewal]\nrevocation = hard\nrevocation_timeout = 3s\n",
                          &p, err, sizeof(err)),
                     ENR_OK);
    assert_int_equal(p->subject_match, ENR_MATCH_CN);
    assert_int_equal(p->san_match, ENR_MATCH_SUBSET);
    assert_int_equal(p->revocation, ENR_REVPOL_HARD);
    assert_int_equal(p->revocation_timeout, 3);
    enr_profile_free(p);
    /* The global default applies where the profile says nothing. */
    setenv("EVERTOKEN_ENROLL_REVOCATION", "off", 1);
    assert_int_equal(
        load(BASE "[certificate]\nsubject_match = any\nsan_match = any\n", &p, err, sizeof(err)),
        ENR_OK);
    assert_int_equal(p->revocation, ENR_REVPOL_OFF);
    assert_int_equal(p->subject_match, ENR_MATCH_ANY);
    assert_int_equal(p->san_match, ENR_MATCH_ANY);
    enr_profile_free(p);
    assert_int_equal(load(BASE "[renewal]\nrevocation = soft\n", &p, err, sizeof(err)), ENR_OK);
    assert_int_equal(p->revocation, ENR_REVPOL_SOFT);
    enr_profile_free(p);
    setenv("EVERTOKEN_ENROLL_REVOCATION", "strict", 1);
    p = NULL;
    assert_int_equal(load(BASE, &p, err, sizeof(err)), ENR_E_CONFIG);
    assert_non_null(strstr(err, "EVERTOKEN_ENROLL_REVOCATION='strict' is not hard, soft or off"));
    assert_null(p);
    unsetenv("EVERTOKEN_ENROLL_REVOCATION");
}

static void
test_missing_file(void **st)
{
    enr_profile *p = NULL;
    assert_int_equal(enr_profile_load("/nonexistent/x.conf", &p), ENR_E_CONFIG);
    assert_null(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete),     cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_uri_fields),   cmocka_unit_test(test_errors),
        cmocka_unit_test(test_missing_file), cmocka_unit_test(test_policies),
        cmocka_unit_test(test_cmp),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
