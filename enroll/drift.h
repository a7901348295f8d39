/*
 * drift.h — a credential's certificate against its profile as it is now
 * (drift.c; docs/enrollment.md "Profile changes").
 */
#ifndef EVERTOKEN_ENROLL_DRIFT_H
#define EVERTOKEN_ENROLL_DRIFT_H

#include "enr_int.h"

enum {
    ENR_DRIFT_NONE = 0,  /* the certificate follows the profile */
    ENR_DRIFT_RENEW = 1, /* SANs or key parameters changed: a renewal asks for them */
    ENR_DRIFT_ENROLL = 2 /* the subject changed (or the key, with rekey = no): a new enrollment */
};

/* Does CERT still follow P (subject, SANs, fixed key parameters)? One of
 * ENR_DRIFT_*, with the reason in WHY when not NONE. */
int enr_drift(const enr_profile *p, X509 *cert, char *why, size_t n);

/* CERT chains to P's anchors file at NOW through the token's certificates
 * and ANCHORS (the anchors in use, e.g. with EST's implicit ones). */
int enr_cert_chains(enr_state *st, enr_token *t, const enr_profile *p, X509 *cert,
                    STACK_OF(X509) * anchors, time_t now);

/* The anchors file differs from the one recorded at the last good check. */
int enr_anchors_changed(enr_state *st, const enr_profile *p);
/* Record the anchors file's fingerprint (after a good check). */
void enr_anchors_record(enr_state *st, const enr_profile *p);

#endif /* EVERTOKEN_ENROLL_DRIFT_H */
