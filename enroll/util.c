/*
 * util.c — logging, the injectable clock, secrets and private files.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "enr_int.h"
#include "et_escape.h"
#include "et_secret.h"
#include "mon.h"

static int enr_verbose;
static char enr_lasterr[512];

void
enr_set_verbose(int v)
{
    enr_verbose = v;
}

static void
enr_vlog(const char *tag, const char *fmt, va_list ap)
{
    char line[1024];

    vsnprintf(line, sizeof(line), fmt, ap);
    /* Under systemd: a journal entry with its priority (journal.c). */
    if (enr_journal_line(*tag == 'w'   ? LOG_WARNING
                         : *tag == 'd' ? LOG_DEBUG
                                       : LOG_INFO,
                         et_escs(line)) == 0)
        return;
    /* Messages quote subjects, URLs and server answers: one escaped line. */
    fprintf(stderr, "evertoken-enroll: %s%s\n", tag, et_escs(line));
}

void
enr_err(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(enr_lasterr, sizeof(enr_lasterr), fmt, ap);
    va_end(ap);
    if (enr_journal_line(LOG_ERR, et_escs(enr_lasterr)) == 0)
        return;
    fprintf(stderr, "evertoken-enroll: error: %s\n", et_escs(enr_lasterr));
}

void
enr_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    enr_vlog("warning: ", fmt, ap);
    va_end(ap);
}

void
enr_info(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    enr_vlog("", fmt, ap);
    va_end(ap);
}

void
enr_debug(const char *fmt, ...)
{
    va_list ap;

    if (!enr_verbose)
        return;
    va_start(ap, fmt);
    enr_vlog("debug: ", fmt, ap);
    va_end(ap);
}

const char *
enr_last_error(void)
{
    return enr_lasterr;
}

void
enr_clear_error(void)
{
    enr_lasterr[0] = '\0';
}

void
enr_ssl_errors(void)
{
    unsigned long e;
    char buf[256];

    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
        enr_debug("openssl: %s", buf);
    }
}

int
enr_rc_exit(enr_rc rc)
{
    switch (rc) {
    case ENR_OK:
        return ENR_EXIT_OK;
    case ENR_E_CONFIG:
        return ENR_EXIT_CONFIG;
    case ENR_E_NETWORK:
        return ENR_EXIT_NETWORK;
    case ENR_E_PENDING:
        return ENR_EXIT_PENDING;
    case ENR_E_TOKEN:
    case ENR_E_PIN:
    case ENR_E_PIN_WRONG:
        return ENR_EXIT_TOKEN;
    case ENR_E_REJECTED:
        return ENR_EXIT_REJECTED;
    case ENR_E_FAIL:
        break;
    }
    return ENR_EXIT_FAIL;
}

const char *
enr_rc_name(enr_rc rc)
{
    switch (rc) {
    case ENR_OK:
        return "ok";
    case ENR_E_CONFIG:
        return "config";
    case ENR_E_NETWORK:
        return "network";
    case ENR_E_PENDING:
        return "pending";
    case ENR_E_TOKEN:
        return "token-absent";
    case ENR_E_PIN:
        return "pin-needed";
    case ENR_E_PIN_WRONG:
        return "pin-refused";
    case ENR_E_REJECTED:
        return "rejected";
    case ENR_E_FAIL:
        break;
    }
    return "failed";
}

/* ---- Clock -------------------------------------------------------------- */

static int enr_fake_set; /* 0: unknown, 1: fake, -1: real */
static time_t enr_fake;

static void
enr_clock_init(void)
{
    const char *s;

    if (enr_fake_set != 0)
        return;
    enr_fake_set = -1;
    s = getenv("EVERTOKEN_ENROLL_FAKE_TIME");
    if (s != NULL && *s != '\0') {
        if (enr_parse_time(s, &enr_fake) == 0)
            enr_fake_set = 1;
        else
            enr_warn("EVERTOKEN_ENROLL_FAKE_TIME=%s is not a time; using the real clock", s);
    }
}

time_t
enr_now(void)
{
    enr_clock_init();
    return enr_fake_set == 1 ? enr_fake : time(NULL);
}

void
enr_clock_set(time_t t)
{
    enr_fake_set = 1;
    enr_fake = t;
}

int
enr_clock_is_fake(void)
{
    enr_clock_init();
    return enr_fake_set == 1;
}

int
enr_parse_time(const char *s, time_t *out)
{
    struct tm tm;
    const char *end;
    char *e;
    long long v;

    if (s == NULL || *s == '\0')
        return -1;
    if (*s == '@')
        s++;
    errno = 0;
    v = strtoll(s, &e, 10);
    if (errno == 0 && *e == '\0' && e != s) {
        *out = (time_t)v;
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%d", &tm);
    if (end == NULL)
        return -1;
    if (*end == 'T' || *end == ' ') {
        const char *e2 = strptime(end + 1, "%H:%M:%S", &tm);
        if (e2 == NULL)
            e2 = strptime(end + 1, "%H:%M", &tm);
        if (e2 == NULL)
            return -1;
        end = e2;
    }
    if (*end == 'Z')
        end++;
    if (*end != '\0')
        return -1;
    *out = timegm(&tm);
    return 0;
}

const char *
enr_fmt_time(time_t t, char *buf, size_t n)
{
    struct tm tm;

    if (t == 0) {
        snprintf(buf, n, "-");
        return buf;
    }
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

time_t
enr_asn1_time(const ASN1_TIME *t)
{
    struct tm tm;

    return ASN1_TIME_to_tm(t, &tm) == 1 ? timegm(&tm) : 0;
}

char *
enr_serial_hex(X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *h = bn ? BN_bn2hex(bn) : NULL, *s = h ? enr_strdup(h) : NULL;

    OPENSSL_free(h);
    BN_free(bn);
    return s;
}

/* ---- Secrets ------------------------------------------------------------ */

void
enr_secret_free(enr_secret *s)
{
    if (s == NULL)
        return;
    et_secure_free(s->buf); /* wipes before unmapping */
    s->buf = NULL;
    s->len = 0;
}

int
enr_secret_copy(const char *src, size_t n, enr_secret *out)
{
    out->buf = et_secure_alloc(n + 1);
    out->len = 0;
    if (out->buf == NULL) {
        enr_err("cannot allocate locked memory for a secret");
        return -1;
    }
    memcpy(out->buf, src, n);
    out->buf[n] = '\0';
    out->len = n;
    return 0;
}

int
enr_secret_read_file(const char *path, const char *what, enr_secret *out)
{
    et_secret_file f;
    int rc = et_secret_read_file(path, what, ET_SECRET_REGULAR_ONLY | ET_SECRET_NONEMPTY, &f);

    if (S_ISREG(f.mode) && (f.mode & 0077) != 0)
        enr_warn("%s (the %s) is readable by other users; make it 0600", path, what);
    if (rc != 0) {
        enr_err("%s", f.err);
        out->buf = NULL;
        out->len = 0;
        return -1;
    }
    out->buf = (char *)f.buf;
    out->len = f.len;
    return 0;
}

/* ---- Files -------------------------------------------------------------- */

int
enr_mkdir_private(const char *path)
{
    char *p = enr_strdup(path);
    struct stat sb;
    int rc = -1;

    if (p == NULL)
        return -1;
    for (char *s = p + 1; *s != '\0'; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            enr_err("cannot create directory %s: %s", p, strerror(errno));
            goto done;
        }
        *s = '/';
    }
    if (mkdir(p, 0700) != 0 && errno != EEXIST) {
        enr_err("cannot create directory %s: %s", p, strerror(errno));
        goto done;
    }
    if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        enr_err("%s is not a directory", p);
        goto done;
    }
    if ((sb.st_mode & 0077) != 0 && chmod(p, 0700) != 0) {
        enr_err("cannot make %s private (0700): %s", p, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(p);
    return rc;
}

int
enr_write_file(const char *path, const void *data, size_t len)
{
    char *tmp = enr_aprintf("%s.tmp.%ld", path, (long)getpid());
    const unsigned char *d = data;
    int fd, rc = -1;

    if (tmp == NULL)
        return -1;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        enr_err("cannot write %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    while (len > 0) {
        ssize_t w = write(fd, d, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            enr_err("cannot write %s: %s", tmp, strerror(errno));
            goto done;
        }
        d += w;
        len -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        enr_err("cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        enr_err("cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    close(fd);
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

int
enr_read_file(const char *path, unsigned char **data, size_t *len)
{
    /* O_NONBLOCK: a FIFO must not hang the open; only regular files. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    FILE *fp = NULL;
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    struct stat sb;

    *data = NULL;
    *len = 0;
    if (fd >= 0 && (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))) {
        enr_err("cannot read %s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (fd >= 0)
        fp = fdopen(fd, "rb");
    if (fp == NULL) {
        enr_err("cannot read %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    for (;;) {
        if (n + 4096 + 1 > cap) {
            unsigned char *nb;
            cap = cap ? cap * 2 : 8192;
            if (cap > (16u << 20)) {
                enr_err("%s is too large", path);
                goto fail;
            }
            nb = realloc(buf, cap);
            if (nb == NULL) {
                enr_err("out of memory reading %s", path);
                goto fail;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 4096, fp);
        n += r;
        if (r < 4096) {
            if (ferror(fp)) {
                enr_err("cannot read %s: %s", path, strerror(errno));
                goto fail;
            }
            break;
        }
    }
    fclose(fp);
    if (buf == NULL)
        buf = malloc(1);
    if (buf == NULL)
        return -1;
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
fail:
    fclose(fp);
    free(buf);
    return -1;
}

char *
enr_strdup(const char *s)
{
    char *d;

    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        enr_err("out of memory");
    return d;
}

char *
enr_aprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    int r;

    va_start(ap, fmt);
    r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0) {
        enr_err("out of memory");
        return NULL;
    }
    return s;
}

char *
enr_hex(const unsigned char *b, size_t n)
{
    static const char hx[] = "0123456789abcdef";
    char *s = malloc(2 * n + 1);

    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = hx[b[i] >> 4];
        s[2 * i + 1] = hx[b[i] & 15];
    }
    s[2 * n] = '\0';
    return s;
}
