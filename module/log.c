/*
 * log.c — the debug log (EVERTOKEN_DEBUG=1), the one mapping from keystore
 * codes to CKR codes, and PKCS#11 text padding.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mod_int.h"

static int mod_debug;

void
mod_log_setup(void)
{
    const char *e = getenv("EVERTOKEN_DEBUG");

    mod_debug = e != NULL && strcmp(e, "0") != 0;
}

void
mod_log_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    if (!mod_debug)
        return;
    va_start(ap, fmt);
    fprintf(stderr, "evertoken[%ld] %s:%d: ", (long)getpid(), file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/*
 * The one mapping from keystore codes to CKR codes (documented in
 * docs/module.md). Chosen so that applications react sensibly: a transient
 * lock-out by another process (KS_E_BUSY) is CKR_FUNCTION_FAILED, which
 * applications retry or report, not CKR_DEVICE_ERROR, which NSS treats as a
 * removed token; damage and tampering are CKR_DEVICE_ERROR.
 */
CK_RV
mod_ks_ckr_at(ks_rv rv, const ks_token *ks, const char *what, const char *file, int line)
{
    CK_RV ck;

    switch (rv) {
    case KS_OK:
        return CKR_OK;
    case KS_E_ARGS:
        ck = CKR_ARGUMENTS_BAD;
        break;
    case KS_E_NOMEM:
        ck = CKR_HOST_MEMORY;
        break;
    case KS_E_IO:
    case KS_E_PERM:
    case KS_E_CORRUPT:
    case KS_E_TAMPERED:
    case KS_E_CRYPTO:
        ck = CKR_DEVICE_ERROR;
        break;
    case KS_E_VERSION:
        ck = CKR_TOKEN_NOT_RECOGNIZED;
        break;
    case KS_E_PIN_INCORRECT:
        ck = CKR_PIN_INCORRECT;
        break;
    case KS_E_PIN_LOCKED:
        ck = CKR_PIN_LOCKED;
        break;
    case KS_E_PIN_LEN:
        ck = CKR_PIN_LEN_RANGE;
        break;
    case KS_E_PIN_NOT_INITIALIZED:
        ck = CKR_USER_PIN_NOT_INITIALIZED;
        break;
    case KS_E_NOT_LOGGED_IN:
        ck = CKR_USER_NOT_LOGGED_IN;
        break;
    case KS_E_NOT_FOUND:
        ck = CKR_OBJECT_HANDLE_INVALID;
        break;
    case KS_E_BUSY:
    case KS_E_EXISTS:
        ck = CKR_FUNCTION_FAILED;
        break;
    case KS_E_FULL: /* the spec's "insufficient memory on the token" */
        ck = CKR_DEVICE_MEMORY;
        break;
    default:
        ck = CKR_GENERAL_ERROR;
        break;
    }
    mod_log_at(file, line, "%s: %s (%s) -> CKR 0x%lx", what, ks_strerror(rv),
               ks != NULL ? ks_last_error(ks) : ks_open_error(), (unsigned long)ck);
    return ck;
}

void
mod_pad(CK_UTF8CHAR *dst, size_t len, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    memset(dst, ' ', len);
    memcpy(dst, s, n < len ? n : len);
}
