/*
 * proto.h — the protocol interface of evertoken-enroll.
 *
 * Each enrollment protocol (enroll/proto/scep.c, est.c, cmp.c) is one table
 * of operations; the engine (engine.c) and the profile loader drive them
 * without knowing which protocol they run. The order of a check:
 *
 *   check    at profile load: what the protocol needs of the profile
 *   prepare  before the new key exists (may be NULL): talk to the CA and
 *            choose the new key's parameters in KEYP (EST's /csrattrs);
 *            state for request() in *STATE
 *   request  the certificate for NEWKEY: a first enrollment (R->old NULL;
 *            R->boot_cert: a bootstrap credential from the token) or a
 *            renewal with the old certificate and its key (NEWKEY is the old
 *            key itself for rekey = false); R->txid resumes a transaction an
 *            earlier check left pending. ENR_E_PENDING with RES->txid when
 *            the CA still holds it
 *   revoke   ask the CA to revoke CERT (NULL: the protocol has no such
 *            request; the engine then says what to do instead), signed by
 *            the certificate's key, or (ACME) by the account key
 *   release  free prepare()'s state (may be NULL)
 *   renew_at when the current certificate is due (may be NULL: the
 *            profile's renewal window decides)
 *
 * Everything the protocols send goes through the HTTP layer (http.c).
 */
#ifndef EVERTOKEN_ENROLL_PROTO_H
#define EVERTOKEN_ENROLL_PROTO_H

#include "enr_int.h"

typedef struct enr_proto_req {
    const enr_profile *p;
    X509 *old;        /* renewal: the current certificate (NULL: first enrollment) */
    EVP_PKEY *oldkey; /* its token-backed key */
    X509 *boot_cert;  /* first enrollment: the profile's bootstrap credential, or NULL */
    EVP_PKEY *boot_key;
    STACK_OF(X509) * anchors; /* the profile's trust anchors (prepare may add to them) */
    const char *txid;         /* a pending transaction of an earlier check, or NULL */
    STACK_OF(X509) * chain;   /* the CA chain known from earlier answers (chain.pem), or NULL */
    enr_token *tok;           /* the open token (ACME: the account key lives there) */
} enr_proto_req;

typedef struct enr_proto_ops {
    const char *name;  /* the profile's protocol = value */
    const char *title; /* for messages: "SCEP (RFC 8894)" */
    int bootstrap;     /* a first enrollment may use the profile's bootstrap credential */
    /* PATH: the profile file, for messages. ENR_OK or ENR_E_CONFIG (reported). */
    enr_rc (*check)(const enr_profile *p, const char *path);
    enr_rc (*prepare)(const enr_proto_req *r, enr_profile *keyp, void **state);
    enr_rc (*request)(const enr_proto_req *r, void *state, EVP_PKEY *newkey, enr_scep_result *res);
    /* BY_ACCOUNT: signed by the profile's ACME account key in T instead of
     * the certificate's KEY (the engine allows it for ACME only). */
    enr_rc (*revoke)(const enr_profile *p, enr_token *t, X509 *cert, EVP_PKEY *key,
                     STACK_OF(X509) * anchors, int reason, int by_account);
    void (*release)(void *state);
    /* When to renew CERT (may be NULL): *WHEN holds the profile's window
     * start and may be moved (ACME's renewal information). */
    void (*renew_at)(const enr_profile *p, X509 *cert, const char *state_dir, time_t now,
                     time_t *when);
} enr_proto_ops;

extern const enr_proto_ops enr_proto_scep, enr_proto_est, enr_proto_cmp, enr_proto_acme;

/* The operations of protocol PROTO (enr_proto); SCEP for 0. */
const enr_proto_ops *enr_proto_get(int proto);

#endif /* EVERTOKEN_ENROLL_PROTO_H */
