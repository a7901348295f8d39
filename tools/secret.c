/*
 * secret.c — PINs and passphrases: where they come from and where they live.
 *
 * Every secret is read straight into locked memory (et_secure_alloc:
 * guarded pages, mlock'd, never swapped, wiped when freed), and never
 * through stdio so no copy is left in a FILE buffer; a secret file through
 * the reader the helper shares (common/et_secret.h), every source with its
 * one length rule (ET_SECRET_MAX: longer is refused). Without a source the
 * user is prompted on /dev/tty with echo off; with no terminal the command
 * fails at once instead of blocking on stdin.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "et_int.h"

void
et_secret_free(et_secret *s)
{
    if (s == NULL)
        return;
    et_secure_free(s->buf);
    s->buf = NULL;
    s->len = 0;
}

static int
et_secret_alloc(et_secret *s)
{
    s->buf = et_secure_alloc(ET_SECRET_MAX + 1);
    s->len = 0;
    if (s->buf == NULL) {
        et_err("cannot allocate locked memory for a secret");
        return ET_EXIT_FAIL;
    }
    et_wipe(s->buf, ET_SECRET_MAX + 1);
    return ET_EXIT_OK;
}

/* The first line of the file PATH (common/secret.c: a FIFO or pipe is
 * waited for, boundedly; a longer line than ET_SECRET_MAX is refused). */
static int
et_secret_from_file(const char *path, const char *what, et_secret *s)
{
    et_secret_file f;

    if (et_secret_read_file(path, what, 0, &f) != 0) {
        et_err("%s", f.err);
        return ET_EXIT_FAIL;
    }
    et_secret_free(s);
    s->buf = f.buf;
    s->len = f.len;
    return ET_EXIT_OK;
}

/* One line of standard input, read a byte at a time so that nothing after
 * the line is consumed (and no stdio buffer keeps a copy). */
static int
et_secret_from_stdin(const char *what, et_secret *s)
{
    unsigned char c;

    for (;;) {
        ssize_t r = read(STDIN_FILENO, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            et_err("cannot read the %s from standard input: %s", what, strerror(errno));
            return ET_EXIT_FAIL;
        }
        if (r == 0 || c == '\n')
            break;
        if (s->len >= ET_SECRET_MAX) {
            et_err("the %s on standard input is longer than %d bytes", what, ET_SECRET_MAX);
            return ET_EXIT_USAGE;
        }
        s->buf[s->len++] = c;
    }
    c = 0;
    et_wipe(&c, sizeof(c));
    if (s->len > 0 && s->buf[s->len - 1] == '\r')
        s->buf[--s->len] = '\0';
    s->buf[s->len] = '\0';
    return ET_EXIT_OK;
}

/* Prompt on the controlling terminal with echo off. */
static int
et_secret_prompt(const char *prompt, const char *what, et_secret *s)
{
    struct termios old, noecho;
    int fd, rc = ET_EXIT_FAIL, restored = 1;
    size_t n = 0;
    char c;

    fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        et_err("a %s is needed but there is no terminal to ask on; give it with "
               "env:VAR or file:PATH (see `evertoken help`)",
               what);
        return ET_EXIT_NOSECRET;
    }
    if (tcgetattr(fd, &old) == 0) {
        noecho = old;
        noecho.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        noecho.c_lflag |= ICANON;
        if (tcsetattr(fd, TCSAFLUSH, &noecho) == 0)
            restored = 0;
    }
    if (write(fd, prompt, strlen(prompt)) < 0)
        goto done;
    for (;;) {
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            et_err("no %s entered", what);
            goto done;
        }
        if (c == '\n' || c == '\r')
            break;
        if (n >= ET_SECRET_MAX) {
            et_err("the %s is longer than %d bytes", what, ET_SECRET_MAX);
            goto done;
        }
        s->buf[n++] = (unsigned char)c;
    }
    s->buf[n] = '\0';
    s->len = n;
    rc = ET_EXIT_OK;
done:
    c = 0;
    et_wipe(&c, sizeof(c));
    if (!restored)
        (void)tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) {
        /* Nothing useful to do: the prompt line just stays unterminated. */
    }
    close(fd);
    if (rc != ET_EXIT_OK) {
        et_wipe(s->buf, ET_SECRET_MAX + 1);
        s->len = 0;
    }
    return rc;
}

int
et_secret_get(const char *src, const char *what, int confirm, et_secret *out)
{
    et_secret s = {NULL, 0}, again = {NULL, 0};
    int rc;

    out->buf = NULL;
    out->len = 0;
    rc = et_secret_alloc(&s);
    if (rc != ET_EXIT_OK)
        return rc;

    if (src == NULL || strcmp(src, "prompt") == 0) {
        char prompt[128];
        snprintf(prompt, sizeof(prompt), "Enter %s: ", what);
        rc = et_secret_prompt(prompt, what, &s);
        if (rc != ET_EXIT_OK)
            goto done;
        if (confirm) {
            rc = et_secret_alloc(&again);
            if (rc != ET_EXIT_OK)
                goto done;
            snprintf(prompt, sizeof(prompt), "Repeat %s: ", what);
            rc = et_secret_prompt(prompt, what, &again);
            if (rc != ET_EXIT_OK)
                goto done;
            if (again.len != s.len || sodium_memcmp(again.buf, s.buf, s.len) != 0) {
                et_err("the two %ss differ", what);
                rc = ET_EXIT_USAGE;
                goto done;
            }
        }
    } else if (strncmp(src, "env:", 4) == 0) {
        const char *v = getenv(src + 4);
        size_t n;
        if (src[4] == '\0' || v == NULL) {
            et_err("the %s should come from environment variable '%s', which is not set", what,
                   src + 4);
            rc = ET_EXIT_NOSECRET;
            goto done;
        }
        n = strlen(v);
        if (n > ET_SECRET_MAX) {
            et_err("the %s in $%s is longer than %d bytes", what, src + 4, ET_SECRET_MAX);
            rc = ET_EXIT_USAGE;
            goto done;
        }
        memcpy(s.buf, v, n);
        s.len = n;
    } else if (strcmp(src, "stdin") == 0) {
        rc = et_secret_from_stdin(what, &s);
        if (rc != ET_EXIT_OK)
            goto done;
    } else if (strncmp(src, "file:", 5) == 0) {
        rc = et_secret_from_file(src + 5, what, &s);
        if (rc != ET_EXIT_OK)
            goto done;
    } else if (strncmp(src, "pass:", 5) == 0) {
        size_t n = strlen(src + 5);
        et_warn("the %s was given on the command line (pass:), where other users can see it "
                "in the process list; prefer env:VAR or file:PATH",
                what);
        if (n > ET_SECRET_MAX) {
            et_err("the %s is longer than %d bytes", what, ET_SECRET_MAX);
            rc = ET_EXIT_USAGE;
            goto done;
        }
        memcpy(s.buf, src + 5, n);
        s.len = n;
        /* argv strings are writable: blank the copy in our argv so that
         * /proc/PID/cmdline stops showing it (it was visible until now). */
        et_wipe((char *)src + 5, n);
    } else {
        et_err("unknown source '%s' for the %s: use env:VAR, file:PATH, pass:VALUE, stdin or "
               "prompt",
               src, what);
        rc = ET_EXIT_USAGE;
        goto done;
    }
    *out = s;
    s.buf = NULL;
    rc = ET_EXIT_OK;
done:
    et_secret_free(&again);
    et_secret_free(&s);
    return rc;
}
