/*
 * chain.h — the CA chain of a credential (chain.c): built and verified from
 * what a protocol returned, kept in the token as CA certificates and next to
 * the leaf as PEM files (docs/enrollment.md "The CA chain").
 */
#ifndef EVERTOKEN_ENROLL_CHAIN_H
#define EVERTOKEN_ENROLL_CHAIN_H

#include <evertoken/p11.h>

#include "enr_int.h"
#include "p11key.h"

/*
 * The chain of LEAF up to, not including, its trust anchor: intermediates
 * from EXTRA (the certificates the CA returned) and POOL (e.g. anchors an
 * EST server added to the profile's ones), verified at NOW against the
 * anchors of the profile's anchors file only. *OUT (possibly empty) in
 * order issuer first. ENR_E_REJECTED (reported) when LEAF does not chain.
 */
enr_rc enr_chain_build(enr_state *st, const enr_profile *p, X509 *leaf, STACK_OF(X509) * extra,
                       STACK_OF(X509) * pool, time_t now, STACK_OF(X509) * *out);

/*
 * CA key rollover: anchors learned from the CA (anchors.learned.pem). A
 * self-signed CA certificate the protocol accepted into ANCHORS because it
 * chains to the current anchors (EST /cacerts with NewWithOld) is kept by
 * enr_anchors_learn after a certificate was stored, stored in the token as
 * a CA certificate, and added to the anchors of every later check by
 * enr_anchors_add_learned — so the renewal after the old CA is gone still
 * verifies. The chain above is built against the file's and the learned
 * anchors.
 */
void enr_anchors_add_learned(enr_state *st, const enr_profile *p, STACK_OF(X509) * anchors);
void enr_anchors_learn(enr_state *st, const enr_profile *p, enr_token *t, STACK_OF(X509) * anchors);

/* The file NAME ("cert.pem", "chain.pem", "fullchain.pem", "chain.next.pem")
 * of profile P under the state directory: STATE/certs/PROFILE/NAME. */
char *enr_chain_path(enr_state *st, const enr_profile *p, const char *name);

/* The chain kept for P (chain.pem; NULL when none): intermediates a
 * protocol may need to verify the CA's signature or to send with ours. */
STACK_OF(X509) * enr_chain_known(enr_state *st, const enr_profile *p);

/* Before the token changes: CHAIN becomes the profile's next chain
 * (chain.next.pem), picked up by enr_chain_sync once the leaf is stored. */
enr_rc enr_chain_stage(enr_state *st, const enr_profile *p, STACK_OF(X509) * chain);

/*
 * After the leaf LEAF is the token's credential (every check, so a crash
 * between commit and chain is healed): the staged chain (or the kept one)
 * whose first certificate issued LEAF is stored in the token as CA
 * certificates (no duplicates), cert.pem, chain.pem and fullchain.pem are
 * written, and CA certificates of the previous chain that no certificate in
 * the token needs any more are removed from it. Trouble is reported (a
 * warning: the next check tries again).
 */
enr_rc enr_chain_sync(enr_token *t, enr_state *st, const enr_profile *p, X509 *leaf);

/* Every certificate the token's session sees (CA certificates and others),
 * NULL when they cannot be listed. */
STACK_OF(X509) * enr_chain_token_certs(enr_token *t);

/* token.c: the module's function list and the open session of T
 * (enr_token_p11, declared in p11key.h). */

#endif /* EVERTOKEN_ENROLL_CHAIN_H */
