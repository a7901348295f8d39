/*
 * evertoken_ext.h — the module's vendor-defined PKCS#11 3.0 interface.
 *
 * PKCS#11 3.0 lets a module offer interfaces besides "PKCS 11"
 * (C_GetInterfaceList / C_GetInterface, section 5.4); names starting with
 * "Vendor " are the vendor's. evertoken offers "Vendor evertoken" version
 * 1.0 with the functions below, so that token settings and the login cache
 * are managed through the module like everything else (the `evertoken` CLI
 * uses it; any program may). Obtain it with
 *
 *     CK_INTERFACE_PTR i;
 *     C_GetInterface((CK_UTF8CHAR_PTR)ET_VENDOR_INTERFACE, NULL, &i, 0);
 *     const ET_FUNCTION_LIST *et = i->pFunctionList;
 *
 * Strings are NUL-terminated UTF-8. Every function needs C_Initialize and
 * returns CKR_CRYPTOKI_NOT_INITIALIZED before it. docs/module.md documents
 * the behaviour.
 */
#ifndef EVERTOKEN_EXT_H
#define EVERTOKEN_EXT_H

#include "p11.h"

#define ET_VENDOR_INTERFACE  "Vendor evertoken"
#define ET_EXT_VERSION_MAJOR 1
#define ET_EXT_VERSION_MINOR 2 /* 1.1 added the rollover functions, 1.2 ET_GetIntegrity */

/* Settings. login_cache: "none", "process" (default), "user:N" with N
 * seconds, 1..2592000. rollover_grace: seconds a retired credential is kept
 * (for ET_RolloverRollback) before it is destroyed, 0..315360000, default
 * 604800 (7 days); see docs/rollover.md. */
#define ET_SETTING_LOGIN_CACHE    "login_cache"
#define ET_SETTING_ROLLOVER_GRACE "rollover_grace"

typedef struct ET_FUNCTION_LIST {
    CK_VERSION version; /* first, like every PKCS#11 function list */

    /* The current value of setting KEY of the token in SLOT, as
     * "login_cache=..." would show it (the default when never set). VALUE
     * NULL: *LEN is set to the size needed, NUL included; too small:
     * CKR_BUFFER_TOO_SMALL with *LEN set. Unknown KEY: CKR_ARGUMENTS_BAD.
     * No session or login needed (settings are not secret). */
    CK_RV (*ET_GetSetting)(CK_SLOT_ID slot, const char *key, char *value, CK_ULONG_PTR len);

    /* Store setting KEY=VALUE in the token of session H. Needs an R/W
     * session (CKR_SESSION_READ_ONLY) of a process logged in as the user or
     * the SO with a PIN — a login restored from the login cache is not
     * enough (CKR_USER_NOT_LOGGED_IN). A malformed value is
     * CKR_ARGUMENTS_BAD. Changing login_cache empties the token's cache. */
    CK_RV (*ET_SetSetting)(CK_SESSION_HANDLE h, const char *key, const char *value);

    /* *LIVE = CK_TRUE while a cached login exists for SLOT's token in this
     * user's keyring. */
    CK_RV (*ET_LoginCacheStatus)(CK_SLOT_ID slot, CK_BBOOL *live);

    /* Empty SLOT's cache (`evertoken lock`): the keyring entry is
     * invalidated; *REMOVED (may be NULL) tells whether there was one.
     * Logins that processes already hold are not ended. */
    CK_RV (*ET_LoginCacheClear)(CK_SLOT_ID slot, CK_BBOOL *removed);

    /* ---- 1.1: credential rollover (docs/rollover.md) ----
     * Each needs an R/W session H whose token is logged in as the user
     * (CKR_SESSION_READ_ONLY, CKR_USER_NOT_LOGGED_IN) and is one keystore
     * transaction; other processes see the result at their next lookup. */

    /* Undo the last committed rollover of the credential whose CKA_ID is
     * ID: the objects it activated are destroyed and the retired ones become
     * visible again. CKR_OBJECT_HANDLE_INVALID (nothing changes) if there is
     * none to undo (never committed, already undone, or purged). */
    CK_RV (*ET_RolloverRollback)(CK_SESSION_HANDLE h, const CK_BYTE *id, CK_ULONG len);

    /* Destroy the pending keys of credential ID (an abandoned renewal);
     * *N (may be NULL) gets how many. */
    CK_RV (*ET_RolloverDiscard)(CK_SESSION_HANDLE h, const CK_BYTE *id, CK_ULONG len, CK_ULONG *n);

    /* Destroy (secure_delete) retired objects older than rollover_grace now
     * (C_Login does this too); *COUNT (may be NULL) gets how many. */
    CK_RV (*ET_PurgeRetired)(CK_SESSION_HANDLE h, CK_ULONG *count);

    /* ---- 1.2: integrity (docs/module.md, "Integrity reports") ----
     * What this process's view of SLOT's token leaves out, after bringing it
     * up to date: *HIDDEN (may be NULL) stored objects that failed their
     * integrity check (MAC or AEAD; checked only while logged in, so 0 when
     * nobody is) and are hidden; *REFUSED (may be NULL) settings ignored
     * because they are not authenticated (stored without a MAC, or with one
     * that does not verify). No session or login needed. */
    CK_RV (*ET_GetIntegrity)(CK_SLOT_ID slot, CK_ULONG *hidden, CK_ULONG *refused);
} ET_FUNCTION_LIST;

#endif /* EVERTOKEN_EXT_H */
