/*
 * store.h — the one path by which new objects enter a token (module/store.c),
 * shared by C_CreateObject, C_CopyObject, C_GenerateKeyPair and C_DeriveKey
 * (module/keygen.c).
 *
 * All functions need the global lock held (mod_int.h); the *_relock ones
 * also the session's token lock, and run the keystore write with the
 * global lock released (the token lock keeps everything of the token as it
 * was). The *_inlock ones keep the global lock throughout. The write rules
 * are docs/module.md's: token objects need an R/W session and a login,
 * private objects a user login.
 */
#ifndef EVERTOKEN_STORE_H
#define EVERTOKEN_STORE_H

#include "mod_int.h"

/* What session S's login allows the object layer (CKA_TRUSTED by the SO). */
obj_policy store_policy_inlock(const struct mod_session *s);

/* May session S create, change or destroy an object with these properties?
 * CKR_SESSION_READ_ONLY or CKR_USER_NOT_LOGGED_IN otherwise. */
CK_RV store_write_check_inlock(const struct mod_session *s, CK_BBOOL token, CK_BBOOL priv);

/* Session H with its token's lock taken (*LOCKED, for tok_unlock_inlock;
 * set whenever the session existed) and its visible object OH, after
 * syncing the token's cache (cache_sync_relock). */
CK_RV store_lookup_relock(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, struct mod_session **sp,
                          struct mod_object **op, struct mod_token **locked);

/* Store ATTRS (always taken) as a new object of S's token after the write
 * check; *OUT its handle. On failure nothing was created. */
CK_RV store_object_inlock(struct mod_session *s, mod_attrs *attrs, CK_OBJECT_HANDLE *out);
/* Same; with CRED (non-NULL) the token object is stored pending for that
 * credential (docs/rollover.md). */
CK_RV store_object_ex_inlock(struct mod_session *s, mod_attrs *attrs, const unsigned char *cred,
                             size_t cred_len, CK_OBJECT_HANDLE *out);
/* store_object_ex_inlock, the write without the global lock. */
CK_RV store_object_relock(struct mod_session *s, mod_attrs *attrs, const unsigned char *cred,
                          size_t cred_len, CK_OBJECT_HANDLE *out);

/* Store two objects (both always taken) or neither: both are write-checked
 * first, and if the second cannot be stored the first is removed again. */
CK_RV store_pair_inlock(struct mod_session *s, mod_attrs *a, mod_attrs *b, CK_OBJECT_HANDLE *ha,
                        CK_OBJECT_HANDLE *hb);
/* Same, both pending for credential CRED when CRED is non-NULL. */
CK_RV store_pair_ex_inlock(struct mod_session *s, mod_attrs *a, mod_attrs *b,
                           const unsigned char *cred, size_t cred_len, CK_OBJECT_HANDLE *ha,
                           CK_OBJECT_HANDLE *hb);
/* store_pair_ex_inlock, the writes without the global lock. */
CK_RV store_pair_relock(struct mod_session *s, mod_attrs *a, mod_attrs *b,
                        const unsigned char *cred, size_t cred_len, CK_OBJECT_HANDLE *ha,
                        CK_OBJECT_HANDLE *hb);

/* The keystore side of C_DestroyObject and C_SetAttributeValue on token
 * object H of T (T's token lock held): the write without the global lock.
 * The caller updates the cache afterwards. */
ks_rv store_ks_destroy_relock(struct mod_token *t, CK_OBJECT_HANDLE h);
ks_rv store_ks_update_relock(struct mod_token *t, CK_OBJECT_HANDLE h, const mod_attrs *attrs);

#endif /* EVERTOKEN_STORE_H */
