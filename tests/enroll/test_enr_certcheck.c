/*
 * test_enr_certcheck.c — the checks every issued certificate passes before it
 * is stored (docs/enrollment.md "Conditions"): one good certificate, then one
 * certificate per way of being wrong, each refused with its own message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "enr_int.h"

#define NOW 1800000000

static EVP_PKEY *ca_key, *other_ca_key, *key, *key2;
static X509 *ca, *other_ca;
static enr_profile prof;

static X509 *
make(X509 *issuer, EVP_PKEY *ikey, EVP_PKEY *pub, const char *cn, const char *san, long nb, long na,
     int is_ca)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    X509V3_CTX v3;
    X509_EXTENSION *e;
    static long serial = 1;

    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_set_version(x, 2);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    if (!is_ca)
        X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"Example", -1, -1,
                                   0);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509_NAME_free(n);
    X509_set_pubkey(x, pub);
    ASN1_TIME_set(X509_getm_notBefore(x), NOW + nb);
    ASN1_TIME_set(X509_getm_notAfter(x), NOW + na);
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
                            is_ca ? "critical,CA:TRUE" : "CA:FALSE");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    if (san != NULL) {
        e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, ikey, EVP_sha256()) > 0);
    return x;
}

static int
setup(void **st)
{
    ca_key = EVP_RSA_gen(2048);
    other_ca_key = EVP_RSA_gen(2048);
    key = EVP_RSA_gen(2048);
    key2 = EVP_RSA_gen(2048);
    ca = make(NULL, ca_key, ca_key, "CA", NULL, -86400, 3650L * 86400, 1);
    other_ca = make(NULL, other_ca_key, other_ca_key, "CA", NULL, -86400, 3650L * 86400, 1);
    memset(&prof, 0, sizeof(prof));
    prof.subject = "CN=alice, O=Example";
    prof.subject_name = X509_NAME_new();
    X509_NAME_add_entry_by_txt(prof.subject_name, "CN", MBSTRING_UTF8,
                               (const unsigned char *)"alice", -1, -1, 0);
    X509_NAME_add_entry_by_txt(prof.subject_name, "O", MBSTRING_UTF8,
                               (const unsigned char *)"Example", -1, -1, 0);
    prof.san = "DNS:alice.example,email:alice@example.com";
    return 0;
}

static int
teardown(void **st)
{
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(other_ca_key);
    EVP_PKEY_free(key);
    EVP_PKEY_free(key2);
    X509_free(ca);
    X509_free(other_ca);
    X509_NAME_free(prof.subject_name);
    return 0;
}

/* Run the checks on X with stderr captured; returns rc, MSG gets the text. */
static enr_rc
check(X509 *x, EVP_PKEY *pub, char *msg, size_t n)
{
    STACK_OF(X509) *anchors = sk_X509_new_null();
    char path[] = "/tmp/enr-cc.XXXXXX";
    int fd = mkstemp(path), saved;
    enr_rc rc;
    ssize_t r;

    sk_X509_push(anchors, ca);
    fflush(stderr);
    saved = dup(2);
    dup2(fd, 2);
    rc = enr_check_issued(&prof, x, pub, NULL, anchors, NOW);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    r = read(fd, msg, n - 1);
    msg[r > 0 ? r : 0] = '\0';
    close(fd);
    unlink(path);
    sk_X509_free(anchors);
    X509_free(x);
    return rc;
}

static void
expect_refused(X509 *x, EVP_PKEY *pub, const char *what)
{
    char msg[1024];
    enr_rc rc = check(x, pub, msg, sizeof(msg));
    if (rc != ENR_E_REJECTED || strstr(msg, what) == NULL)
        fail_msg("expected refusal \"%s\", got rc %d: %s", what, rc, msg);
}

#define SAN "DNS:alice.example,email:alice@example.com"

static void
test_good(void **st)
{
    char msg[1024];
    assert_int_equal(
        check(make(ca, ca_key, key, "alice", SAN, -60, 90 * 86400, 0), key, msg, sizeof(msg)),
        ENR_OK);
    /* SAN order does not matter. */
    assert_int_equal(check(make(ca, ca_key, key, "alice",
                                "email:alice@example.com,DNS:alice.example", -60, 90 * 86400, 0),
                           key, msg, sizeof(msg)),
                     ENR_OK);
}

static void
test_refusals(void **st)
{
    expect_refused(make(ca, ca_key, key2, "alice", SAN, -60, 86400, 0), key,
                   "different public key");
    expect_refused(make(ca, ca_key, key, "mallory", SAN, -60, 86400, 0), key,
                   "subject /CN=mallory/O=Example is not the requested CN=alice, O=Example");
    expect_refused(make(ca, ca_key, key, "alice", "DNS:alice.example", -60, 86400, 0), key,
                   "lacks a requested subject alternative name");
    expect_refused(make(ca, ca_key, key, "alice", SAN ",DNS:evil.example", -60, 86400, 0), key,
                   "carries a subject alternative name that was not requested");
    expect_refused(make(ca, ca_key, key, "alice", NULL, -60, 86400, 0), key,
                   "lacks a requested subject alternative name");
    expect_refused(make(ca, ca_key, key, "alice", SAN, 3600, 86400, 0), key, "not valid yet");
    expect_refused(make(ca, ca_key, key, "alice", SAN, 60, -60, 0), key,
                   "notAfter is not after its notBefore");
    expect_refused(make(ca, ca_key, key, "alice", SAN, -2 * 86400, -60, 0), key,
                   "has already expired");
    expect_refused(make(ca, ca_key, key, "alice", SAN, -60, 4000L * 86400, 0), key,
                   "lifetime (4000 days) is not plausible");
    expect_refused(make(other_ca, other_ca_key, key, "alice", SAN, -60, 86400, 0), key,
                   "does not chain to the profile's trust anchors");
}

/* The same attributes in another RDN order are the requested subject; an
 * extra or changed attribute is not. */
static void
test_subject_order(void **st)
{
    char msg[1024];
    X509 *x = make(ca, ca_key, key, "alice", SAN, -60, 86400, 0);
    X509_NAME *n = X509_NAME_new();

    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"Example", -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"alice", -1, -1, 0);
    X509_set_subject_name(x, n);
    assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
    assert_int_equal(check(x, key, msg, sizeof(msg)), ENR_OK);

    x = make(ca, ca_key, key, "alice", SAN, -60, 86400, 0);
    X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_ASC, (const unsigned char *)"Extra", -1, -1, 0);
    X509_set_subject_name(x, n);
    assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
    expect_refused(x, key, "is not the requested CN=alice, O=Example");
    X509_NAME_free(n);
}

/* A CN-only certificate with only some of the SANs. */
static X509 *
narrowed(const char *cn, const char *san)
{
    X509 *x = make(ca, ca_key, key, cn, san, -60, 86400, 0);
    X509_NAME *n = X509_NAME_new();

    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(x, n);
    X509_NAME_free(n);
    assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
    return x;
}

/* subject_match and san_match: what each accepts, and what is refused with
 * both subjects or the name and the key to change. */
static void
test_policies(void **st)
{
    char msg[1024];

    /* exact (the default) refuses a CN-only subject, naming the fix. */
    expect_refused(
        narrowed("alice", SAN), key,
        "subject /CN=alice is not the requested CN=alice, O=Example (subject_match = "
        "exact); if the CA keeps only some attributes by policy, set subject_match = cn");
    prof.subject_match = ENR_MATCH_CN;
    assert_int_equal(check(narrowed("alice", SAN), key, msg, sizeof(msg)), ENR_OK);
    /* cn: the rest of the subject is the CA's, the CN is not. */
    assert_int_equal(
        check(make(ca, ca_key, key, "alice", SAN, -60, 86400, 0), key, msg, sizeof(msg)), ENR_OK);
    expect_refused(narrowed("mallory", SAN), key,
                   "subject /CN=mallory does not carry the requested CN of CN=alice, O=Example "
                   "(subject_match = cn)");
    /* Whatever the policy: the key and the chain. */
    expect_refused(narrowed("alice", SAN), key2, "different public key");
    prof.subject_match = ENR_MATCH_ANY;
    assert_int_equal(check(narrowed("mallory", SAN), key, msg, sizeof(msg)), ENR_OK);
    expect_refused(make(other_ca, other_ca_key, key, "mallory", SAN, -60, 86400, 0), key,
                   "does not chain to the profile's trust anchors");
    expect_refused(narrowed("mallory", SAN), key2, "different public key");
    prof.subject_match = ENR_MATCH_EXACT;

    /* SANs: exact names what is missing; subset lets the CA drop, not add. */
    expect_refused(make(ca, ca_key, key, "alice", "DNS:alice.example", -60, 86400, 0), key,
                   "lacks a requested subject alternative name (email:alice@example.com; "
                   "requested " SAN ") (san_match = exact); if the CA drops names by policy, set "
                   "san_match = subset");
    prof.san_match = ENR_MATCH_SUBSET;
    assert_int_equal(check(make(ca, ca_key, key, "alice", "DNS:alice.example", -60, 86400, 0), key,
                           msg, sizeof(msg)),
                     ENR_OK);
    assert_int_equal(
        check(make(ca, ca_key, key, "alice", NULL, -60, 86400, 0), key, msg, sizeof(msg)), ENR_OK);
    expect_refused(make(ca, ca_key, key, "alice", "DNS:evil.example", -60, 86400, 0), key,
                   "carries a subject alternative name that was not requested (DNS:evil.example; "
                   "requested " SAN ") (san_match = subset)");
    prof.san_match = ENR_MATCH_ANY;
    assert_int_equal(check(make(ca, ca_key, key, "alice", "DNS:evil.example", -60, 86400, 0), key,
                           msg, sizeof(msg)),
                     ENR_OK);
    prof.san_match = ENR_MATCH_EXACT;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_subject_order),
        cmocka_unit_test(test_policies),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
