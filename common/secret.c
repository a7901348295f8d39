/*
 * secret.c — the one wipe function and the one secret-file reader of the
 * CLI and the enrollment helper (et_secret.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "et_secret.h"

void
et_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        sodium_memzero(p, n);
}

void *
et_secure_alloc(size_t n)
{
    /* sodium_malloc needs the library initialised (idempotent). */
    if (sodium_init() < 0)
        return NULL;
    return sodium_malloc(n);
}

void
et_secure_free(void *p)
{
    if (p != NULL)
        sodium_free(p); /* wipes before unmapping */
}

static void fail(et_secret_file *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
fail(et_secret_file *out, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out->err, sizeof(out->err), fmt, ap);
    va_end(ap);
}

/* Up to CAP bytes of FD into BUF (*GOT of them): until end of file or CAP;
 * a FIFO's data is waited for, boundedly. 0, or -1 with OUT->err set. */
static int
read_upto(int fd, unsigned char *buf, size_t cap, size_t *got, const char *path, const char *what,
          et_secret_file *out)
{
    *got = 0;
    while (*got < cap) {
        ssize_t r = read(fd, buf + *got, cap - *got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN) {
            struct pollfd pfd = {fd, POLLIN, 0};
            if (poll(&pfd, 1, ET_SECRET_FIFO_WAIT_MS) == 0) {
                fail(out, "no %s arrived from %s within %d seconds", what, path,
                     ET_SECRET_FIFO_WAIT_MS / 1000);
                return -1;
            }
            continue;
        }
        if (r < 0) {
            fail(out, "cannot read the %s from %s: %s", what, path, strerror(errno));
            return -1;
        }
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return 0;
}

/* The first line of the GOT bytes at BUF as the secret: its length, or -1
 * when it is longer than ET_SECRET_MAX. What follows it is wiped. */
static long
first_line(unsigned char *buf, size_t got)
{
    size_t len = got;

    for (size_t i = 0; i < got; i++)
        if (buf[i] == '\n' || buf[i] == '\r') {
            len = i;
            break;
        }
    if (len > ET_SECRET_MAX)
        return -1;
    et_wipe(buf + len, got - len);
    buf[len] = '\0';
    return (long)len;
}

int
et_secret_read_file(const char *path, const char *what, unsigned flags, et_secret_file *out)
{
    struct stat st;
    size_t got = 0;
    long len = -1;
    int fd;

    memset(out, 0, sizeof(*out));
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        fail(out, "cannot read the %s from %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        fail(out, "cannot read the %s from %s: %s", what, path, strerror(errno));
        goto done;
    }
    out->mode = (unsigned)st.st_mode;
    if ((flags & ET_SECRET_REGULAR_ONLY) && !S_ISREG(st.st_mode)) {
        fail(out, "cannot read the %s from %s: not a regular file", what, path);
        goto done;
    }
    if (S_ISDIR(st.st_mode)) {
        fail(out, "cannot read the %s from %s: a directory", what, path);
        goto done;
    }
    /* One byte beyond the limit tells a line that is too long, one more
     * holds the NUL. */
    out->buf = et_secure_alloc(ET_SECRET_MAX + 2);
    if (out->buf == NULL) {
        fail(out, "cannot allocate locked memory for the %s", what);
        goto done;
    }
    if (read_upto(fd, out->buf, ET_SECRET_MAX + 1, &got, path, what, out) != 0)
        goto done;
    if (got == 0 && !S_ISREG(st.st_mode)) {
        fail(out, "no %s in %s: it is a FIFO or pipe that nobody writes to", what, path);
        goto done;
    }
    len = first_line(out->buf, got);
    if (len < 0)
        fail(out, "the %s in %s is longer than %d bytes", what, path, ET_SECRET_MAX);
    else if (len == 0 && (flags & ET_SECRET_NONEMPTY))
        fail(out, "the %s file %s is empty", what, path);
    else
        out->len = (size_t)len;
done:
    close(fd);
    if (out->err[0] != '\0') {
        et_secure_free(out->buf);
        out->buf = NULL;
        out->len = 0;
        return -1;
    }
    return 0;
}
