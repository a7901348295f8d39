/*
 * adopt.h — `evertoken-enroll adopt` (adopt.c): an existing key and
 * certificate of the token brought under a profile's renewal.
 */
#ifndef EVERTOKEN_ENROLL_ADOPT_H
#define EVERTOKEN_ENROLL_ADOPT_H

#include "enr_int.h"

/*
 * Adopt the credential whose certificate has CKA_ID ID_HEX (hex, colons
 * allowed) or CKA_LABEL LABEL (exactly one given) into profile P, after
 * checking that its private key is in the token and matches, that it chains
 * to P's anchors, is not expired and that P has no credential yet. Then its
 * objects take P's CKA_ID and label, the chain is stored, and the state
 * records the certificate. Any failed check changes nothing.
 */
enr_rc enr_adopt_profile(enr_ctx *ctx, const enr_profile *p, const char *id_hex, const char *label);

#endif /* EVERTOKEN_ENROLL_ADOPT_H */
