/*
 * b64.c — the one base64 decoding path of evertoken-enroll (EST answers,
 * RFC 7030: "base64" in the sense of RFC 2045, with or without line breaks).
 *
 * Field servers differ in the details: one line without a final newline,
 * 64- or 76-character lines ended by LF or CRLF, whitespace after the last
 * line, and a trailing NUL byte (a C string sent with its terminator). All of
 * that is accepted; anything else is refused with a message that says what
 * and where. The decoding itself is OpenSSL's (EVP_DecodeUpdate/Final); the
 * scan before it only decides whether the text is acceptable, because
 * OpenSSL's decoder skips some bytes silently and stops at '-' (the start of
 * a PEM boundary) without an error.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "enr_parse.h"

static int
b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

static int
b64_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* A byte for a message: 'c' when printable, else its hex value. */
static void
show_byte(unsigned char c, char *buf, size_t n)
{
    if (c > 0x20 && c < 0x7f)
        snprintf(buf, n, "'%c'", c);
    else
        snprintf(buf, n, "0x%02x", c);
}

enr_rc
enr_base64_decode(const char *what, const unsigned char *in, size_t n, size_t max,
                  unsigned char **out, size_t *outlen)
{
    EVP_ENCODE_CTX *ctx = NULL;
    unsigned char *buf = NULL;
    size_t end = n, chars = 0, pad = 0, done = 0;
    char b[8];
    int k, tail;
    enr_rc rc = ENR_E_REJECTED;

    *out = NULL;
    *outlen = 0;
    /* A trailing NUL and whitespace after the data are the sender's, not data. */
    while (end > 0 && (in[end - 1] == '\0' || b64_space(in[end - 1])))
        end--;
    for (size_t i = 0; i < end; i++) {
        unsigned char c = in[i];
        if (b64_space(c))
            continue;
        if (c == '=') {
            pad++;
        } else if (!b64_char(c)) {
            show_byte(c, b, sizeof(b));
            enr_err("%s is not base64: invalid character %s at byte %zu of %zu", what, b, i, n);
            return ENR_E_REJECTED;
        } else if (pad > 0) {
            enr_err("%s is not base64: data after the '=' padding (byte %zu)", what, i);
            return ENR_E_REJECTED;
        }
        chars++;
    }
    if (chars == 0) {
        enr_err("%s is not base64: no base64 data (%zu bytes of whitespace or NUL)", what, n);
        return ENR_E_REJECTED;
    }
    if (chars % 4 != 0 || pad > 2) {
        enr_err("%s is not base64: truncated (%zu base64 characters, not whole groups of 4 "
                "with at most two '=' at the end)",
                what, chars);
        return ENR_E_REJECTED;
    }
    if (chars / 4 * 3 - pad > max) {
        enr_err("%s is too large: %zu bytes decoded, at most %zu accepted", what,
                chars / 4 * 3 - pad, max);
        return ENR_E_REJECTED;
    }
    ctx = EVP_ENCODE_CTX_new();
    buf = malloc(chars / 4 * 3 + 80);
    if (ctx == NULL || buf == NULL) {
        rc = ENR_E_FAIL;
        goto done;
    }
    EVP_DecodeInit(ctx);
    /* In slices, so that the size stays an int whatever the body's. */
    for (size_t i = 0; i < end;) {
        int m = end - i > 65536 ? 65536 : (int)(end - i);
        if (EVP_DecodeUpdate(ctx, buf + done, &k, in + i, m) < 0 || k < 0)
            goto bad;
        done += (size_t)k;
        i += (size_t)m;
    }
    if (EVP_DecodeFinal(ctx, buf + done, &tail) != 1)
        goto bad;
    done += (size_t)tail;
    if (done != chars / 4 * 3 - pad)
        goto bad;
    *out = buf;
    *outlen = done;
    buf = NULL;
    rc = ENR_OK;
    goto done;
bad:
    enr_err("%s is not base64: OpenSSL's decoder refused it", what);
done:
    ERR_clear_error();
    EVP_ENCODE_CTX_free(ctx);
    free(buf);
    return rc;
}
