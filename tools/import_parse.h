/*
 * import_parse.h — the input side of `evertoken import`: PEM, DER, PKCS#12
 * and PKCS#7 files parsed into private keys and certificates
 * (import_parse.c). Kept apart from the token side (import.c) so that the
 * parsers can be linked on their own (tests/fuzz).
 */
#ifndef EVERTOKEN_TOOLS_IMPORT_PARSE_H
#define EVERTOKEN_TOOLS_IMPORT_PARSE_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "et_int.h"

#define ET_IMPORT_MAX_FILE (4u << 20) /* bytes; credentials files are small */
#define ET_MAX_KEYS        64

/* The passphrase for encrypted inputs: asked once per run, when first needed. */
typedef struct et_pass {
    const char *src;
    et_secret s;
    int have;
    int rc; /* why obtaining it failed (ET_EXIT_*), 0 if it did not */
} et_pass;

typedef struct et_input {
    EVP_PKEY *keys[ET_MAX_KEYS];
    size_t nkeys;
    STACK_OF(X509) * certs;
} et_input;

/* Parse FILE (read into locked memory; at most ET_IMPORT_MAX_FILE bytes) and
 * add what it holds to IN. The format is detected from the content. Errors
 * are reported with et_err; returns an ET_EXIT_* code. */
int et_load_file(et_input *in, const char *file, et_pass *pass);
/* The same for LEN bytes at BUF (FILE names it in messages). */
int et_load_buf(et_input *in, const char *file, const unsigned char *buf, size_t len,
                et_pass *pass);

#endif /* EVERTOKEN_TOOLS_IMPORT_PARSE_H */
