/*
 * test_enr_b64.c — the base64 decoding path of every EST answer
 * (enr_base64_decode, enroll/b64.c): the forms RFC 7030 servers send in the
 * field decode to the same bytes (one line without a newline, 64- and
 * 76-character lines with LF or CRLF, trailing whitespace, a trailing NUL),
 * and every other text is refused with its own message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "enr_parse.h"

/* Decode IN (N bytes) with stderr captured into MSG. */
static enr_rc
decode(const void *in, size_t n, size_t max, unsigned char **out, size_t *outlen, char *msg,
       size_t mn)
{
    char path[] = "/tmp/enr-b64.XXXXXX";
    int fd = mkstemp(path), saved;
    enr_rc rc;
    ssize_t r;

    assert_true(fd >= 0);
    fflush(stderr);
    saved = dup(2);
    dup2(fd, 2);
    rc = enr_base64_decode("EST test: the answer", in, n, max, out, outlen);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    r = read(fd, msg, mn - 1);
    msg[r > 0 ? r : 0] = '\0';
    close(fd);
    unlink(path);
    return rc;
}

/* Base64 of DATA in lines of WIDTH characters (0: one line) ended by EOL,
 * the last line ended only when LAST_EOL; then TAIL (TAILN bytes). */
static char *
encode(const unsigned char *data, int n, int width, const char *eol, int last_eol, const char *tail,
       size_t tailn, size_t *len)
{
    unsigned char *flat = malloc((size_t)(4 * ((n + 2) / 3) + 1));
    int m = EVP_EncodeBlock(flat, data, n);
    char *out = malloc((size_t)m * 2 + tailn + 16);
    size_t j = 0;

    for (int k = 0; k < m; k++) {
        out[j++] = (char)flat[k];
        if (width > 0 && (k + 1) % width == 0 && (k + 1 < m || last_eol)) {
            memcpy(out + j, eol, strlen(eol));
            j += strlen(eol);
        } else if (k + 1 == m && last_eol && (width == 0 || (k + 1) % width != 0)) {
            memcpy(out + j, eol, strlen(eol));
            j += strlen(eol);
        }
    }
    memcpy(out + j, tail, tailn);
    j += tailn;
    free(flat);
    *len = j;
    return out;
}

static void
expect_same(const unsigned char *data, int n, const char *text, size_t len)
{
    unsigned char *out = NULL;
    size_t outlen = 0;
    char msg[512];
    enr_rc rc = decode(text, len, 1 << 20, &out, &outlen, msg, sizeof(msg));

    if (rc != ENR_OK)
        fail_msg("refused (%zu bytes): %s", len, msg);
    assert_int_equal(outlen, (size_t)n);
    assert_memory_equal(out, data, (size_t)n);
    free(out);
}

/* Every accepted form, for lengths that need 0, 1 and 2 '=' of padding. */
static void
test_field_forms(void **st)
{
    static const struct {
        int width;
        const char *eol;
        int last_eol;
        const char *tail;
        size_t tailn;
    } forms[] = {
        {0, "", 0, "", 0},              /* one line, no newline (the field case) */
        {0, "\n", 1, "", 0},            /* one line, LF */
        {64, "\n", 1, "", 0},           /* PEM-style lines */
        {76, "\r\n", 1, "", 0},         /* RFC 2045 lines, CRLF */
        {76, "\r\n", 0, "", 0},         /* CRLF lines, none after the last */
        {64, "\n", 1, "  \t\r\n ", 6},  /* trailing whitespace */
        {0, "", 0, "\0", 1},            /* a trailing NUL */
        {64, "\r\n", 1, "\r\n\0", 3},   /* CRLF, then a NUL */
        {64, "\n", 1, "\0\0", 2},       /* NULs */
        {4, " ", 0, "", 0},             /* spaces between the groups */
        {76, "\r\n", 1, "\r\n\r\n", 4}, /* blank lines at the end */
    };
    unsigned char data[1000];

    (void)st;
    assert_int_equal(RAND_bytes(data, sizeof(data)), 1);
    for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++)
        for (int n = 1; n <= 3; n++)
            for (int extra = 0; extra < 600; extra += 299) {
                size_t len;
                char *t = encode(data, n + extra, forms[f].width, forms[f].eol, forms[f].last_eol,
                                 forms[f].tail, forms[f].tailn, &len);
                expect_same(data, n + extra, t, len);
                free(t);
            }
}

static void
expect_refused(const char *text, size_t len, size_t max, const char *what)
{
    unsigned char *out = (unsigned char *)"x";
    size_t outlen = 7;
    char msg[512];
    enr_rc rc = decode(text, len, max, &out, &outlen, msg, sizeof(msg));

    if (rc != ENR_E_REJECTED || strstr(msg, what) == NULL)
        fail_msg("\"%.*s\": expected \"%s\", got rc %d: %s", (int)len, text, what, rc, msg);
    assert_null(out);
    assert_int_equal(outlen, 0);
}

static void
test_refusals(void **st)
{
    (void)st;
    expect_refused("QUJD!EVG", 8, 100,
                   "EST test: the answer is not base64: invalid character '!' at byte 4 of 8");
    expect_refused("QUJD\0REVG", 9, 100, "invalid character 0x00 at byte 4 of 9");
    expect_refused("<html>busy</html>", 17, 100, "invalid character '<' at byte 0");
    /* A PEM boundary: OpenSSL's decoder alone would stop at '-' quietly. */
    expect_refused("QUJD\n-----END CERTIFICATE-----\n", 31, 100, "invalid character '-' at byte 5");
    expect_refused("QUJDREV", 7, 100, "truncated (7 base64 characters");
    expect_refused("QUJDRE\r\nV", 9, 100, "truncated (7 base64 characters");
    expect_refused("QQ", 2, 100, "truncated (2 base64 characters");
    expect_refused("=", 1, 100, "truncated (1 base64 characters");
    expect_refused("QQ===", 5, 100, "truncated (5 base64 characters");
    expect_refused("QQ==QUJD", 8, 100, "data after the '=' padding (byte 4)");
    expect_refused("Q===", 4, 100,
                   "truncated (4 base64 characters, not whole groups of 4 with "
                   "at most two '='");
    expect_refused("", 0, 100, "no base64 data (0 bytes");
    expect_refused(" \r\n\0", 4, 100, "no base64 data (4 bytes");
    expect_refused("QUJDREVG", 8, 5, "too large: 6 bytes decoded, at most 5 accepted");
    expect_refused("QU=D", 4, 100, "data after the '=' padding (byte 3)");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_field_forms),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
