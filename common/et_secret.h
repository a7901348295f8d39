/*
 * et_secret.h — secrets in the CLI (tools/) and the enrollment helper
 * (enroll/): the one wipe function, locked memory, and the one secret-file
 * reader with one length rule (docs/architecture.md, "Where secrets live and
 * how they are wiped").
 *
 * A secret file holds the secret on its first line; the line ends at the
 * first "\n" or "\r" (so "\n", "\r\n" and "\r" endings all work) and what
 * follows is not read beyond ET_SECRET_MAX + 1 bytes, nor kept. A first
 * line longer than ET_SECRET_MAX bytes is an error, never cut short.
 */
#ifndef EVERTOKEN_COMMON_ET_SECRET_H
#define EVERTOKEN_COMMON_ET_SECRET_H

#include <stddef.h>

/* The longest secret (PIN, passphrase, enrollment secret) in bytes, from
 * any source; a longer one is refused. */
#define ET_SECRET_MAX 4096

/* How long a secret file that is a FIFO or pipe may take to deliver. */
#define ET_SECRET_FIFO_WAIT_MS 10000

/* Overwrite N bytes at P with zeros in a way the compiler cannot drop
 * (sodium_memzero). */
void et_wipe(void *p, size_t n);
/* N bytes of locked memory (sodium_malloc: guarded pages, mlock'd, never
 * swapped); NULL when it cannot be had. */
void *et_secure_alloc(size_t n);
/* Wipe, unlock and release memory from et_secure_alloc (NULL is fine). */
void et_secure_free(void *p);

enum {
    /* Only a regular file (else a FIFO or a pipe, e.g. `file:<(...)`, is
     * waited for up to ET_SECRET_FIFO_WAIT_MS, and a directory refused). */
    ET_SECRET_REGULAR_ONLY = 1,
    /* An empty secret is an error. */
    ET_SECRET_NONEMPTY = 2,
};

typedef struct et_secret_file {
    unsigned char *buf; /* the secret, NUL-terminated, in et_secure_alloc memory */
    size_t len;         /* bytes before the NUL */
    unsigned mode;      /* the file's st_mode once it was opened, else 0 */
    char err[512];      /* why et_secret_read_file failed, one line */
} et_secret_file;

/*
 * Read the secret in the file PATH (WHAT names it in messages: "user PIN")
 * into OUT. FLAGS: ET_SECRET_*. 0 on success (free OUT->buf with
 * et_secure_free); -1 with OUT->err set and OUT->buf NULL. The file is
 * opened non-blocking, so a FIFO without a writer never hangs the open.
 */
int et_secret_read_file(const char *path, const char *what, unsigned flags, et_secret_file *out);

#endif
