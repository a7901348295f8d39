/*
 * fuzz_import.c — the parsers of `evertoken import` (tools/import_parse.c)
 * on arbitrary bytes: PEM (certificates, PKCS#7, private keys, encrypted
 * ones), DER certificates, PKCS#12, PKCS#7 and DER private keys, detected
 * from the content as the CLI does. Encrypted inputs get the passphrase
 * "fuzz-passphrase" (the seed corpus uses it). Whatever is parsed is freed.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/provider.h>
#include <sodium.h>

#include "import_parse.h"

/* The CLI's reporting functions (tools/evertoken.c), silent here unless
 * FUZZ_VERBOSE is set. */
void
et_err(const char *fmt, ...)
{
    va_list ap;

    if (getenv("FUZZ_VERBOSE") == NULL)
        return;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void
et_warn(const char *fmt, ...)
{
    (void)fmt;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static OSSL_PROVIDER *legacy;

/* Before OpenSSL's own clean-up (atexit handlers run in reverse order). */
static void
unload_legacy(void)
{
    if (legacy != NULL)
        OSSL_PROVIDER_unload(legacy);
    legacy = NULL;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0) /* secrets live in sodium_malloc'd memory */
        abort();
    /* As the CLI does: RC2-40 PKCS#12 files need the legacy provider. */
    legacy = OSSL_PROVIDER_try_load(NULL, "legacy", 1);
    ERR_clear_error();
    atexit(unload_legacy);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    et_input in = {0};
    et_pass pass = {0};
    /* Writable: the CLI blanks a pass: source after reading it (argv). */
    char src[] = "pass:fuzz-passphrase";

    if (size == 0 || size > ET_IMPORT_MAX_FILE)
        return 0;
    pass.src = src;
    in.certs = sk_X509_new_null();
    if (in.certs == NULL)
        return 0;
    (void)et_load_buf(&in, "fuzz-input", data, size, &pass);
    for (size_t k = 0; k < in.nkeys; k++)
        EVP_PKEY_free(in.keys[k]);
    sk_X509_pop_free(in.certs, X509_free);
    et_secret_free(&pass.s);
    ERR_clear_error();
    return 0;
}
