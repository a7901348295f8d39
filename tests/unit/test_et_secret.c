/*
 * test_et_secret.c — common/secret.c: the secret-file reader the CLI and the
 * enrollment helper share (one length rule: too long is an error, never a
 * truncation; the first line; empty, unreadable, not a regular file, the
 * file's mode reported) and the wipe function.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "et_secret.h"

typedef struct fx {
    char dir[256];
    char path[300];
} fx;

static int
setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("TMPDIR");

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "%s/et_secret_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/secret", f->dir);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fx *f = *state;
    char fifo[300];

    snprintf(fifo, sizeof(fifo), "%s/fifo", f->dir);
    chmod(f->path, 0600);
    unlink(f->path);
    unlink(fifo);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Write N bytes of DATA to the fixture's file with MODE. */
static const char *
put(fx *f, const void *data, size_t n, mode_t mode)
{
    FILE *fp;

    unlink(f->path);
    fp = fopen(f->path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(chmod(f->path, mode), 0);
    return f->path;
}

/* Read PATH with FLAGS: it must succeed with WANT (N bytes). */
static void
read_ok(const char *path, unsigned flags, const char *want, size_t n)
{
    et_secret_file s;

    assert_int_equal(et_secret_read_file(path, "test secret", flags, &s), 0);
    assert_string_equal(s.err, "");
    assert_non_null(s.buf);
    assert_int_equal(s.len, n);
    assert_memory_equal(s.buf, want, n);
    assert_int_equal(s.buf[n], '\0');
    et_secure_free(s.buf);
}

/* Read PATH with FLAGS: it must fail with a message containing WANT. */
static void
read_fails(const char *path, unsigned flags, const char *want)
{
    et_secret_file s;

    assert_int_equal(et_secret_read_file(path, "test secret", flags, &s), -1);
    assert_null(s.buf);
    assert_int_equal(s.len, 0);
    if (strstr(s.err, want) == NULL)
        fail_msg("error \"%s\" does not say \"%s\"", s.err, want);
    assert_non_null(strstr(s.err, "test secret"));
}

static void
test_line_endings(void **state)
{
    fx *f = *state;

    read_ok(put(f, "1234", 4, 0600), 0, "1234", 4);
    read_ok(put(f, "1234\n", 5, 0600), 0, "1234", 4);
    read_ok(put(f, "1234\r\n", 6, 0600), 0, "1234", 4);
    read_ok(put(f, "1234\r", 5, 0600), 0, "1234", 4);
    /* Only the first line counts; spaces inside are kept. */
    read_ok(put(f, "se cret\nsecond line\n", 20, 0600), 0, "se cret", 7);
    read_ok(put(f, "\nsecond", 7, 0600), 0, "", 0);
}

static void
test_length_rule(void **state)
{
    fx *f = *state;
    size_t big = ET_SECRET_MAX + 100;
    char *b = malloc(big);

    assert_non_null(b);
    memset(b, 'a', big);
    /* Exactly the limit, with and without a line ending. */
    read_ok(put(f, b, ET_SECRET_MAX, 0600), 0, b, ET_SECRET_MAX);
    b[ET_SECRET_MAX] = '\n';
    read_ok(put(f, b, ET_SECRET_MAX + 1, 0600), 0, b, ET_SECRET_MAX);
    b[ET_SECRET_MAX] = '\r';
    read_ok(put(f, b, ET_SECRET_MAX + 2, 0600), 0, b, ET_SECRET_MAX);
    /* One byte more is refused, in both modes, never cut short. */
    b[ET_SECRET_MAX] = 'a';
    read_fails(put(f, b, ET_SECRET_MAX + 1, 0600), 0, "longer than 4096 bytes");
    read_fails(put(f, b, big, 0600), ET_SECRET_REGULAR_ONLY | ET_SECRET_NONEMPTY,
               "longer than 4096 bytes");
    /* A short first line followed by a lot: the line is the secret. */
    b[5] = '\n';
    read_ok(put(f, b, big, 0600), 0, "aaaaa", 5);
    free(b);
}

static void
test_empty(void **state)
{
    fx *f = *state;

    read_ok(put(f, "", 0, 0600), 0, "", 0);
    read_fails(put(f, "", 0, 0600), ET_SECRET_NONEMPTY, "is empty");
    read_fails(put(f, "\n", 1, 0600), ET_SECRET_NONEMPTY, "is empty");
}

static void
test_unreadable(void **state)
{
    fx *f = *state;
    char missing[320];

    snprintf(missing, sizeof(missing), "%s/none", f->dir);
    read_fails(missing, 0, "No such file or directory");
    read_fails(f->dir, 0, "a directory");
    read_fails(f->dir, ET_SECRET_REGULAR_ONLY, "not a regular file");
    if (geteuid() != 0) {
        /* root reads a file of mode 0000 anyway */
        read_fails(put(f, "1234", 4, 0000), 0, "Permission denied");
    }
}

static void
test_fifo(void **state)
{
    fx *f = *state;
    char fifo[300];

    snprintf(fifo, sizeof(fifo), "%s/fifo", f->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    /* Neither blocks: no writer means no secret, at once. */
    read_fails(fifo, ET_SECRET_REGULAR_ONLY, "not a regular file");
    read_fails(fifo, 0, "FIFO or pipe that nobody writes to");
}

static void
test_mode_reported(void **state)
{
    fx *f = *state;
    et_secret_file s;

    assert_int_equal(et_secret_read_file(put(f, "1234", 4, 0640), "x", 0, &s), 0);
    assert_true(S_ISREG(s.mode));
    assert_int_equal(s.mode & 07777, 0640);
    et_secure_free(s.buf);
    assert_int_equal(et_secret_read_file(put(f, "1234", 4, 0600), "x", 0, &s), 0);
    assert_int_equal(s.mode & 07777, 0600);
    et_secure_free(s.buf);
    /* Known on failure too, once the file was opened. */
    assert_int_equal(et_secret_read_file(put(f, "", 0, 0644), "x", ET_SECRET_NONEMPTY, &s), -1);
    assert_int_equal(s.mode & 07777, 0644);
}

static void
test_wipe(void **state)
{
    unsigned char *p = et_secure_alloc(64);
    unsigned char zero[64] = {0};

    (void)state;
    assert_non_null(p);
    memset(p, 0xa5, 64);
    et_wipe(p, 32);
    assert_memory_equal(p, zero, 32);
    assert_int_equal(p[32], 0xa5);
    et_wipe(p, 64);
    assert_memory_equal(p, zero, 64);
    et_wipe(NULL, 10); /* no-op */
    et_secure_free(p);
    et_secure_free(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_endings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_length_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mode_reported, setup, teardown),
        cmocka_unit_test(test_wipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
