/*
 * et_escape.h — printing strings that come from a token or an imported file.
 *
 * A label, a certificate subject, a PKCS#12 friendly name, a URI or an error
 * text quoting one of them may hold anything: a newline that forges a line of
 * a listing, an escape sequence that clears or rewrites the terminal, bytes
 * that are not UTF-8. Every such string goes through these functions before
 * it is printed (CLI output, the enrollment helper's logs and status).
 *
 * Text form (et_esc, ET_ESC_TEXT): printable ASCII and valid UTF-8 stay as
 * they are; a backslash becomes "\\"; a control character (0x00-0x1f, 0x7f),
 * a byte that is not part of valid UTF-8 (invalid, overlong, surrogate,
 * beyond U+10FFFF, truncated) becomes "\xNN"; a C1 control (U+0080-U+009F)
 * or a bidirectional-text control (U+200E, U+200F, U+202A-U+202E,
 * U+2066-U+2069) becomes "\uNNNN". The result is one line of valid UTF-8,
 * and two different inputs never give the same output.
 *
 * JSON form (ET_ESC_JSON): the contents of a JSON string (without the
 * quotes): '"' and '\' escaped, controls, C1 and bidi controls as \uNNNN,
 * and each byte that is not valid UTF-8 as the six characters \\xNN (i.e.
 * the decoded string shows "\xNN"), so the document is always valid JSON.
 */
#ifndef EVERTOKEN_ESCAPE_H
#define EVERTOKEN_ESCAPE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum et_esc_form { ET_ESC_TEXT = 0, ET_ESC_JSON = 1 };

/* Escape N bytes at S into a malloc'd NUL-terminated string (NULL: out of
 * memory). S may be NULL when N is 0. */
char *et_escape_alloc(const void *s, size_t n, enum et_esc_form form);

/* Text form of N bytes at S in one of a few rotating thread-local buffers,
 * for use as printf arguments (up to 8 in one call). Output longer than
 * ET_ESC_MAX bytes is cut at a character boundary and ends in "...". Never
 * NULL. */
#define ET_ESC_MAX 1024
const char *et_esc(const void *s, size_t n);
/* et_esc of a NUL-terminated string; NULL gives "(null)". */
const char *et_escs(const char *s);

/* 1 if N bytes at S are valid UTF-8 (no overlong forms, surrogates or code
 * points beyond U+10FFFF; NUL and controls are valid UTF-8). */
int et_utf8_valid(const void *s, size_t n);

/* Copy N bytes at SRC into DST (DSTSZ > 0 bytes, NUL-terminated) as valid
 * UTF-8: each byte that is not part of a valid sequence becomes U+FFFD
 * (the replacement character); the copy is cut at a character boundary.
 * For labels made from a file's contents (a certificate's CN, a PKCS#12
 * friendly name). Returns the length written. */
size_t et_utf8_fix(char *dst, size_t dstsz, const void *src, size_t n);

#ifdef __cplusplus
}
#endif

#endif
