/*
 * test_et_escape.c — common/escape.c: untrusted strings made safe to print
 * (text and JSON forms) and the UTF-8 check used for object labels.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "et_escape.h"

static void
check_text(const char *in, size_t n, const char *want)
{
    const char *got = et_esc(in, n);
    char *a = et_escape_alloc(in, n, ET_ESC_TEXT);

    assert_non_null(a);
    assert_string_equal(got, want);
    assert_string_equal(a, want);
    free(a);
}

static void
check_json(const char *in, size_t n, const char *want)
{
    char *a = et_escape_alloc(in, n, ET_ESC_JSON);

    assert_non_null(a);
    assert_string_equal(a, want);
    free(a);
}

static void
test_text(void **state)
{
    (void)state;
    check_text("plain label", 11, "plain label");
    check_text("caf\xc3\xa9 \xe2\x82\xac", 9, "caf\xc3\xa9 \xe2\x82\xac"); /* UTF-8 stays */
    /* A forged listing row and a screen clear become visible text. */
    check_text("x\n9  privkey  FORGED", 20, "x\\x0A9  privkey  FORGED");
    check_text("\x1b[2J", 4, "\\x1B[2J");
    check_text("a\rb\tc\x7f", 6, "a\\x0Db\\x09c\\x7F");
    check_text("nul\0x", 5, "nul\\x00x");
    check_text("back\\slash", 10, "back\\\\slash"); /* the escape character itself */
    /* Not UTF-8: each offending byte. */
    check_text("\xff\xfe", 2, "\\xFF\\xFE");
    check_text("\xc0\xaf", 2, "\\xC0\\xAF");                   /* overlong '/' */
    check_text("\xed\xa0\x80", 3, "\\xED\\xA0\\x80");          /* surrogate */
    check_text("\xf4\x90\x80\x80", 4, "\\xF4\\x90\\x80\\x80"); /* > U+10FFFF */
    check_text("ok\xe2\x82", 4, "ok\\xE2\\x82");               /* truncated */
    /* C1 control (CSI) and bidi override. */
    check_text("\xc2\x9b"
               "2J",
               4, "\\u009b2J");
    check_text("abc\xe2\x80\xae"
               "gpj.exe",
               13, "abc\\u202egpj.exe");
    assert_string_equal(et_escs(NULL), "(null)");
    assert_string_equal(et_escs("a\nb"), "a\\x0Ab");
}

static void
test_json(void **state)
{
    (void)state;
    check_json("say \"hi\"\\", 9, "say \\\"hi\\\"\\\\");
    check_json("l1\nl2\x1b", 6, "l1\\u000al2\\u001b");
    check_json("\xff", 1, "\\\\xFF");
    check_json("\xe2\x80\xae", 3, "\\u202e");
    check_json("\xc3\xa9", 2, "\xc3\xa9");
}

static void
test_long(void **state)
{
    char in[3000];
    const char *out;

    (void)state;
    memset(in, '\n', sizeof(in));
    out = et_esc(in, sizeof(in));
    assert_true(strlen(out) <= ET_ESC_MAX + 3);
    assert_memory_equal(out + strlen(out) - 3, "...", 3);
    assert_memory_equal(out, "\\x0A\\x0A", 8); /* cut between whole escapes */
    assert_int_equal((strlen(out) - 3) % 4, 0);
    /* Several in one printf stay distinct. */
    out = et_escs("one");
    assert_string_equal(et_escs("two"), "two");
    assert_string_equal(out, "one");
}

static void
test_utf8(void **state)
{
    (void)state;
    assert_true(et_utf8_valid("", 0));
    assert_true(et_utf8_valid("abc\n", 4)); /* valid UTF-8; controls are the printers' concern */
    assert_true(et_utf8_valid("\xf0\x9f\x94\x91", 4));
    assert_false(et_utf8_valid("\xff", 1));
    assert_false(et_utf8_valid("\xc0\x80", 2));
    assert_false(et_utf8_valid("\xed\xbf\xbf", 3));
    assert_false(et_utf8_valid("\xe2\x82", 2));
    assert_false(et_utf8_valid("a\x80", 2));
}

static void
test_fix(void **state)
{
    char out[16];

    (void)state;
    assert_int_equal(et_utf8_fix(out, sizeof(out), "ok\n", 3), 3);
    assert_string_equal(out, "ok\n");
    assert_int_equal(et_utf8_fix(out, sizeof(out),
                                 "a\xff"
                                 "b",
                                 3),
                     5);
    assert_string_equal(out, "a\xef\xbf\xbd"
                             "b");
    /* Cut at a character boundary: 5 x "\xc3\xa9" in 8 bytes is 3 of them. */
    assert_int_equal(et_utf8_fix(out, 8, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 10), 6);
    assert_true(et_utf8_valid(out, strlen(out)));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text), cmocka_unit_test(test_json), cmocka_unit_test(test_long),
        cmocka_unit_test(test_utf8), cmocka_unit_test(test_fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
