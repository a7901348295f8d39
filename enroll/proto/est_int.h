/*
 * est_int.h — what est.c (the EST exchanges) and est_csrattrs.c (/csrattrs
 * and the key planned from it) share.
 */
#ifndef EVERTOKEN_ENROLL_EST_INT_H
#define EVERTOKEN_ENROLL_EST_INT_H

#include <openssl/evp.h>

#include "enr_int.h"
#include "enr_parse.h"

/* The base64 body (N > 0 bytes) of an answer of OP: *DER (malloc'd), *LEN. */
enr_rc est_unbase64(const char *op, const unsigned char *body, size_t n, unsigned char **der,
                    int *len);
/* KP (a copy of P): the new key's parameters, as /csrattrs (A) asks when the
 * profile leaves them open; ENR_E_CONFIG when the profile fixes others,
 * ENR_E_REJECTED when the server asks for a key this client cannot make. */
enr_rc est_key_plan(const enr_profile *p, const enr_est_attrs *a, enr_profile *kp);
/* Is KEY what /csrattrs asks (as planned in KP)? Else 0 after a message
 * naming the key as WHICH ("kept", "new"). */
int est_key_meets(const enr_profile *p, const enr_est_attrs *a, const enr_profile *kp,
                  EVP_PKEY *key, const char *which);

#endif
