/*
 * escape.c — escaping untrusted strings for terminals, logs and JSON
 * (et_escape.h has the rules).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "et_escape.h"

/* Length of the valid UTF-8 sequence at S (N bytes left) and its code point,
 * or 0 if the byte at S does not start one. */
static size_t
utf8_seq(const unsigned char *s, size_t n, unsigned *cp)
{
    unsigned c = s[0], v, min;
    size_t k;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        k = 2;
        v = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        k = 3;
        v = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < k)
        return 0;
    for (size_t j = 1; j < k; j++) {
        if ((s[j] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[j] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return k;
}

int
et_utf8_valid(const void *s, size_t n)
{
    const unsigned char *p = s;
    size_t i = 0;
    unsigned cp;

    while (i < n) {
        size_t k = utf8_seq(p + i, n - i, &cp);

        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

size_t
et_utf8_fix(char *dst, size_t dstsz, const void *src, size_t n)
{
    const unsigned char *p = src;
    size_t i = 0, len = 0;
    unsigned cp;

    while (i < n) {
        size_t k = utf8_seq(p + i, n - i, &cp);
        const void *from = k > 0 ? (const void *)(p + i) : "\xef\xbf\xbd";
        size_t w = k > 0 ? k : 3;

        if (len + w >= dstsz)
            break;
        memcpy(dst + len, from, w);
        len += w;
        i += k > 0 ? k : 1;
    }
    dst[len] = '\0';
    return len;
}

/* Code points shown as \uNNNN in both forms: C1 and bidi controls. */
static int
invisible(unsigned cp)
{
    return (cp >= 0x80 && cp <= 0x9f) || cp == 0x200e || cp == 0x200f ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/* Write the escaped form of one input unit at S into OUT (at least 13
 * bytes); returns the bytes written and sets *USED to the input consumed. */
static size_t
esc_unit(const unsigned char *s, size_t n, enum et_esc_form form, char *out, size_t *used)
{
    unsigned cp;
    size_t k = utf8_seq(s, n, &cp);

    if (k == 0) { /* not UTF-8: the byte itself, visibly */
        *used = 1;
        return (size_t)snprintf(out, 13, form == ET_ESC_JSON ? "\\\\x%02X" : "\\x%02X", s[0]);
    }
    *used = k;
    if (cp == '\\') {
        memcpy(out, "\\\\", 2);
        return 2;
    }
    if (cp == '"' && form == ET_ESC_JSON) {
        memcpy(out, "\\\"", 2);
        return 2;
    }
    if (cp < 0x20 || cp == 0x7f)
        return (size_t)snprintf(out, 13, form == ET_ESC_JSON ? "\\u%04x" : "\\x%02X", cp);
    if (invisible(cp))
        return (size_t)snprintf(out, 13, "\\u%04x", cp);
    memcpy(out, s, k);
    return k;
}

char *
et_escape_alloc(const void *s, size_t n, enum et_esc_form form)
{
    const unsigned char *p = s;
    char *out, unit[16];
    size_t len = 0, i = 0;

    /* Every input byte becomes at most 6 output bytes ("\\\\xNN" or a
     * 2-byte C1 control as "\\u0080"); a 3-byte bidi control 6 as well. */
    if (n > ((size_t)-1 - 1) / 6)
        return NULL;
    out = malloc(n * 6 + 1);
    if (out == NULL)
        return NULL;
    while (i < n) {
        size_t used, w = esc_unit(p + i, n - i, form, unit, &used);

        memcpy(out + len, unit, w);
        len += w;
        i += used;
    }
    out[len] = '\0';
    return out;
}

#define ESC_SLOTS 8

const char *
et_esc(const void *s, size_t n)
{
    static _Thread_local char buf[ESC_SLOTS][ET_ESC_MAX + 4];
    static _Thread_local unsigned next;
    const unsigned char *p = s;
    char *out = buf[next++ % ESC_SLOTS], unit[16];
    size_t len = 0, i = 0;

    while (i < n) {
        size_t used, w = esc_unit(p + i, n - i, ET_ESC_TEXT, unit, &used);

        if (len + w > ET_ESC_MAX) {
            memcpy(out + len, "...", 3);
            len += 3;
            break;
        }
        memcpy(out + len, unit, w);
        len += w;
        i += used;
    }
    out[len] = '\0';
    return out;
}

const char *
et_escs(const char *s)
{
    return s == NULL ? "(null)" : et_esc(s, strlen(s));
}
