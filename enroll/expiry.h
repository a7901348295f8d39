/*
 * expiry.h — a credential's expiry state from its public certificate alone
 * (expiry.c): what `status` shows and what the expiry warnings say, whatever
 * else failed (docs/enrollment.md "Expiry warnings").
 */
#ifndef EVERTOKEN_ENROLL_EXPIRY_H
#define EVERTOKEN_ENROLL_EXPIRY_H

#include "enr_int.h"

typedef struct enr_expiry {
    int known;        /* a certificate is known (else the rest is zero) */
    time_t not_after; /* its notAfter */
    long days_left;   /* whole days left, (notAfter - now) / 86400; negative once expired */
    int expired;      /* now >= notAfter */
    int threshold;    /* the smallest warn_days threshold reached (days), 0: none */
    int level;        /* 0 ok, 1 within the first threshold, 2 within the last one or expired */
} enr_expiry;

/* The expiry state of a certificate valid until NOT_AFTER (0: none known)
 * at NOW under P's warn_days. */
void enr_expiry_of(const enr_profile *p, time_t not_after, time_t now, enr_expiry *e);

/*
 * Refresh PS's certificate fields (serial, subject, validity) without a PIN
 * when the check could not read them: the token's public certificate under
 * the credential's CKA_ID (a session without login; the module is loaded and
 * finalised again, so call it only while no token is open), else the
 * certificate file the helper wrote last. A certificate other than the one
 * PS knew resets its warnings.
 */
void enr_expiry_refresh(const enr_profile *p, enr_state *st, enr_pstate *ps);

/*
 * After a check that ended with RC: an "expiry-warning" for each warn_days
 * threshold reached and not yet notified for this certificate, an "expired"
 * notice once when it has expired, each saying why renewal has not happened
 * (from RC and PS) and what to do. Runs whatever RC is, every check and
 * every retry.
 */
void enr_expiry_notify(const enr_profile *p, enr_state *st, enr_pstate *ps, time_t now, enr_rc rc);

/* Why renewal has not happened and what to do, for RC (one sentence into BUF). */
const char *enr_expiry_advice(const enr_profile *p, const enr_pstate *ps, enr_rc rc, time_t now,
                              char *buf, size_t n);

#endif /* EVERTOKEN_ENROLL_EXPIRY_H */
