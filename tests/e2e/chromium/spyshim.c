/*
 * spyshim.c — puts OpenSC's pkcs11-spy in front of a PKCS#11 3.0 module for NSS.
 *
 * t_chromium.sh compiles it at run time (cc -shared) with SPY_PATH set to
 * pkcs11-spy.so. It exports C_GetFunctionList only, handing out the spy's,
 * and no C_GetInterface: NSS then loads the spy the PKCS#11 2.x way.
 *
 * Why: NSS (3.87) first asks C_GetInterface("PKCS 11", NULL, &iface,
 * CKF_INTERFACE_FORK_SAFE). evertoken offers no fork-safe interface and
 * answers CKR_ARGUMENTS_BAD, as PKCS#11 3.0 section 5.4.4 says; the spy of
 * OpenSC 0.23 then reads *iface although the call failed, an uninitialised
 * pointer of NSS's, and crashes the browser (or modutil). A module that is
 * itself loaded directly (no spy) is not affected: NSS takes the second,
 * flag-less C_GetInterface answer.
 */
#include <dlfcn.h>
#include <stdio.h>

#ifndef SPY_PATH
#error "compile with -DSPY_PATH='\"/usr/lib/.../pkcs11-spy.so\"'"
#endif

/* The two PKCS#11 types needed, ABI-compatible with the standard's (no
 * header dependency: CK_RV is an unsigned long, the list is a pointer). */
typedef unsigned long CK_RV;
#define CKR_GENERAL_ERROR 0x05UL
typedef CK_RV (*get_list_fn)(void **list);

CK_RV C_GetFunctionList(void **list);

CK_RV
C_GetFunctionList(void **list)
{
    static get_list_fn spy_get;
    if (spy_get == NULL) {
        void *h = dlopen(SPY_PATH, RTLD_NOW | RTLD_LOCAL);
        if (h == NULL) {
            fprintf(stderr, "spyshim: %s\n", dlerror());
            return CKR_GENERAL_ERROR;
        }
        *(void **)&spy_get = dlsym(h, "C_GetFunctionList");
        if (spy_get == NULL) {
            fprintf(stderr, "spyshim: no C_GetFunctionList in %s\n", SPY_PATH);
            return CKR_GENERAL_ERROR;
        }
    }
    return spy_get(list);
}
