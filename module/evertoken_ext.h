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
#define ET_EXT_VERSION_MINOR 0

/* The one setting so far. Values: "none", "process" (default), "user:N"
 * with N seconds, 1..2592000. */
#define ET_SETTING_LOGIN_CACHE "login_cache"

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
} ET_FUNCTION_LIST;

#endif /* EVERTOKEN_EXT_H */
