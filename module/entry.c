/*
 * entry.c — the function lists: 2.40 C_GetFunctionList, 3.0
 * C_GetInterfaceList and C_GetInterface, with the vendor interface
 * "Vendor evertoken" (ext.c). Nothing else lives here: the lock, readiness
 * and C_Initialize/C_Finalize are in init.c.
 */
#include <stdint.h>
#include <string.h>

#include "evertoken_ext.h"
#include "mod_int.h"

#define MOD_EXPORT __attribute__((visibility("default")))

/* ---- function lists and interfaces -------------------------------------- */

MOD_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);
MOD_EXPORT CK_RV C_GetInterfaceList(CK_INTERFACE_PTR list, CK_ULONG_PTR count);
MOD_EXPORT CK_RV C_GetInterface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version,
                                CK_INTERFACE_PTR_PTR iface, CK_FLAGS flags);

static CK_FUNCTION_LIST mod_list_240 = {
    .version = {2, 40},
    .C_Initialize = mod_C_Initialize,
    .C_Finalize = mod_C_Finalize,
    .C_GetInfo = mod_C_GetInfo_240,
    .C_GetFunctionList = C_GetFunctionList,
    .C_GetSlotList = mod_C_GetSlotList,
    .C_GetSlotInfo = mod_C_GetSlotInfo,
    .C_GetTokenInfo = mod_C_GetTokenInfo,
    .C_GetMechanismList = mod_C_GetMechanismList,
    .C_GetMechanismInfo = mod_C_GetMechanismInfo,
    .C_InitToken = mod_C_InitToken,
    .C_InitPIN = mod_C_InitPIN,
    .C_SetPIN = mod_C_SetPIN,
    .C_OpenSession = mod_C_OpenSession,
    .C_CloseSession = mod_C_CloseSession,
    .C_CloseAllSessions = mod_C_CloseAllSessions,
    .C_GetSessionInfo = mod_C_GetSessionInfo,
    .C_GetOperationState = mod_C_GetOperationState,
    .C_SetOperationState = mod_C_SetOperationState,
    .C_Login = mod_C_Login,
    .C_Logout = mod_C_Logout,
    .C_CreateObject = mod_C_CreateObject,
    .C_CopyObject = mod_C_CopyObject,
    .C_DestroyObject = mod_C_DestroyObject,
    .C_GetObjectSize = mod_C_GetObjectSize,
    .C_GetAttributeValue = mod_C_GetAttributeValue,
    .C_SetAttributeValue = mod_C_SetAttributeValue,
    .C_FindObjectsInit = mod_C_FindObjectsInit,
    .C_FindObjects = mod_C_FindObjects,
    .C_FindObjectsFinal = mod_C_FindObjectsFinal,
    .C_EncryptInit = mod_C_EncryptInit,
    .C_Encrypt = mod_C_Encrypt,
    .C_EncryptUpdate = mod_C_EncryptUpdate,
    .C_EncryptFinal = mod_C_EncryptFinal,
    .C_DecryptInit = mod_C_DecryptInit,
    .C_Decrypt = mod_C_Decrypt,
    .C_DecryptUpdate = mod_C_DecryptUpdate,
    .C_DecryptFinal = mod_C_DecryptFinal,
    .C_DigestInit = mod_C_DigestInit,
    .C_Digest = mod_C_Digest,
    .C_DigestUpdate = mod_C_DigestUpdate,
    .C_DigestKey = mod_C_DigestKey,
    .C_DigestFinal = mod_C_DigestFinal,
    .C_SignInit = mod_C_SignInit,
    .C_Sign = mod_C_Sign,
    .C_SignUpdate = mod_C_SignUpdate,
    .C_SignFinal = mod_C_SignFinal,
    .C_SignRecoverInit = mod_C_SignRecoverInit,
    .C_SignRecover = mod_C_SignRecover,
    .C_VerifyInit = mod_C_VerifyInit,
    .C_Verify = mod_C_Verify,
    .C_VerifyUpdate = mod_C_VerifyUpdate,
    .C_VerifyFinal = mod_C_VerifyFinal,
    .C_VerifyRecoverInit = mod_C_VerifyRecoverInit,
    .C_VerifyRecover = mod_C_VerifyRecover,
    .C_DigestEncryptUpdate = mod_C_DigestEncryptUpdate,
    .C_DecryptDigestUpdate = mod_C_DecryptDigestUpdate,
    .C_SignEncryptUpdate = mod_C_SignEncryptUpdate,
    .C_DecryptVerifyUpdate = mod_C_DecryptVerifyUpdate,
    .C_GenerateKey = mod_C_GenerateKey,
    .C_GenerateKeyPair = mod_C_GenerateKeyPair,
    .C_WrapKey = mod_C_WrapKey,
    .C_UnwrapKey = mod_C_UnwrapKey,
    .C_DeriveKey = mod_C_DeriveKey,
    .C_SeedRandom = mod_C_SeedRandom,
    .C_GenerateRandom = mod_C_GenerateRandom,
    .C_GetFunctionStatus = mod_C_GetFunctionStatus,
    .C_CancelFunction = mod_C_CancelFunction,
    .C_WaitForSlotEvent = mod_C_WaitForSlotEvent,
};

static CK_FUNCTION_LIST_3_0 mod_list_30 = {
    .version = {3, 0},
    .C_Initialize = mod_C_Initialize,
    .C_Finalize = mod_C_Finalize,
    .C_GetInfo = mod_C_GetInfo_30,
    .C_GetFunctionList = C_GetFunctionList,
    .C_GetSlotList = mod_C_GetSlotList,
    .C_GetSlotInfo = mod_C_GetSlotInfo,
    .C_GetTokenInfo = mod_C_GetTokenInfo,
    .C_GetMechanismList = mod_C_GetMechanismList,
    .C_GetMechanismInfo = mod_C_GetMechanismInfo,
    .C_InitToken = mod_C_InitToken,
    .C_InitPIN = mod_C_InitPIN,
    .C_SetPIN = mod_C_SetPIN,
    .C_OpenSession = mod_C_OpenSession,
    .C_CloseSession = mod_C_CloseSession,
    .C_CloseAllSessions = mod_C_CloseAllSessions,
    .C_GetSessionInfo = mod_C_GetSessionInfo,
    .C_GetOperationState = mod_C_GetOperationState,
    .C_SetOperationState = mod_C_SetOperationState,
    .C_Login = mod_C_Login,
    .C_Logout = mod_C_Logout,
    .C_CreateObject = mod_C_CreateObject,
    .C_CopyObject = mod_C_CopyObject,
    .C_DestroyObject = mod_C_DestroyObject,
    .C_GetObjectSize = mod_C_GetObjectSize,
    .C_GetAttributeValue = mod_C_GetAttributeValue,
    .C_SetAttributeValue = mod_C_SetAttributeValue,
    .C_FindObjectsInit = mod_C_FindObjectsInit,
    .C_FindObjects = mod_C_FindObjects,
    .C_FindObjectsFinal = mod_C_FindObjectsFinal,
    .C_EncryptInit = mod_C_EncryptInit,
    .C_Encrypt = mod_C_Encrypt,
    .C_EncryptUpdate = mod_C_EncryptUpdate,
    .C_EncryptFinal = mod_C_EncryptFinal,
    .C_DecryptInit = mod_C_DecryptInit,
    .C_Decrypt = mod_C_Decrypt,
    .C_DecryptUpdate = mod_C_DecryptUpdate,
    .C_DecryptFinal = mod_C_DecryptFinal,
    .C_DigestInit = mod_C_DigestInit,
    .C_Digest = mod_C_Digest,
    .C_DigestUpdate = mod_C_DigestUpdate,
    .C_DigestKey = mod_C_DigestKey,
    .C_DigestFinal = mod_C_DigestFinal,
    .C_SignInit = mod_C_SignInit,
    .C_Sign = mod_C_Sign,
    .C_SignUpdate = mod_C_SignUpdate,
    .C_SignFinal = mod_C_SignFinal,
    .C_SignRecoverInit = mod_C_SignRecoverInit,
    .C_SignRecover = mod_C_SignRecover,
    .C_VerifyInit = mod_C_VerifyInit,
    .C_Verify = mod_C_Verify,
    .C_VerifyUpdate = mod_C_VerifyUpdate,
    .C_VerifyFinal = mod_C_VerifyFinal,
    .C_VerifyRecoverInit = mod_C_VerifyRecoverInit,
    .C_VerifyRecover = mod_C_VerifyRecover,
    .C_DigestEncryptUpdate = mod_C_DigestEncryptUpdate,
    .C_DecryptDigestUpdate = mod_C_DecryptDigestUpdate,
    .C_SignEncryptUpdate = mod_C_SignEncryptUpdate,
    .C_DecryptVerifyUpdate = mod_C_DecryptVerifyUpdate,
    .C_GenerateKey = mod_C_GenerateKey,
    .C_GenerateKeyPair = mod_C_GenerateKeyPair,
    .C_WrapKey = mod_C_WrapKey,
    .C_UnwrapKey = mod_C_UnwrapKey,
    .C_DeriveKey = mod_C_DeriveKey,
    .C_MessageEncryptInit = mod_C_MessageEncryptInit,
    .C_EncryptMessage = mod_C_EncryptMessage,
    .C_EncryptMessageBegin = mod_C_EncryptMessageBegin,
    .C_EncryptMessageNext = mod_C_EncryptMessageNext,
    .C_MessageEncryptFinal = mod_C_MessageEncryptFinal,
    .C_MessageDecryptInit = mod_C_MessageDecryptInit,
    .C_DecryptMessage = mod_C_DecryptMessage,
    .C_DecryptMessageBegin = mod_C_DecryptMessageBegin,
    .C_DecryptMessageNext = mod_C_DecryptMessageNext,
    .C_MessageDecryptFinal = mod_C_MessageDecryptFinal,
    .C_MessageSignInit = mod_C_MessageSignInit,
    .C_SignMessage = mod_C_SignMessage,
    .C_SignMessageBegin = mod_C_SignMessageBegin,
    .C_SignMessageNext = mod_C_SignMessageNext,
    .C_MessageSignFinal = mod_C_MessageSignFinal,
    .C_MessageVerifyInit = mod_C_MessageVerifyInit,
    .C_VerifyMessage = mod_C_VerifyMessage,
    .C_VerifyMessageBegin = mod_C_VerifyMessageBegin,
    .C_VerifyMessageNext = mod_C_VerifyMessageNext,
    .C_MessageVerifyFinal = mod_C_MessageVerifyFinal,
    .C_SeedRandom = mod_C_SeedRandom,
    .C_GenerateRandom = mod_C_GenerateRandom,
    .C_GetFunctionStatus = mod_C_GetFunctionStatus,
    .C_CancelFunction = mod_C_CancelFunction,
    .C_WaitForSlotEvent = mod_C_WaitForSlotEvent,
    .C_GetInterfaceList = C_GetInterfaceList,
    .C_GetInterface = C_GetInterface,
    .C_LoginUser = mod_C_LoginUser,
    .C_SessionCancel = mod_C_SessionCancel,
};

/* The default (first) interface is 3.0; the 2.40 list is offered too, and
 * the vendor interface "Vendor evertoken". The
 * flags are 0: not CKF_INTERFACE_FORK_SAFE, a child must call C_Initialize. */
static CK_INTERFACE mod_ifaces[] = {
    {(CK_UTF8CHAR_PTR) "PKCS 11", &mod_list_30, 0},
    {(CK_UTF8CHAR_PTR) "PKCS 11", &mod_list_240, 0},
    /* Settings and the login cache (evertoken_ext.h, docs/module.md). The
     * list is never written through this pointer. */
    {(CK_UTF8CHAR_PTR)ET_VENDOR_INTERFACE, (CK_VOID_PTR)(uintptr_t)&mod_ext_list, 0},
};
#define MOD_NIFACES (sizeof(mod_ifaces) / sizeof(mod_ifaces[0]))

MOD_EXPORT CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    if (list == NULL)
        return CKR_ARGUMENTS_BAD;
    *list = &mod_list_240;
    return CKR_OK;
}

/* PKCS#11 3.0 section 5.4.3; usable before C_Initialize. */
MOD_EXPORT CK_RV
C_GetInterfaceList(CK_INTERFACE_PTR list, CK_ULONG_PTR count)
{
    if (count == NULL)
        return CKR_ARGUMENTS_BAD;
    if (list == NULL) {
        *count = MOD_NIFACES;
        return CKR_OK;
    }
    if (*count < MOD_NIFACES) {
        *count = MOD_NIFACES;
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(list, mod_ifaces, sizeof(mod_ifaces));
    *count = MOD_NIFACES;
    return CKR_OK;
}

/* PKCS#11 3.0 section 5.4.4: NULL name means the default interface; a
 * version or flags that no interface has is CKR_ARGUMENTS_BAD. */
MOD_EXPORT CK_RV
C_GetInterface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version, CK_INTERFACE_PTR_PTR iface,
               CK_FLAGS flags)
{
    if (iface == NULL)
        return CKR_ARGUMENTS_BAD;
    for (size_t i = 0; i < MOD_NIFACES; i++) {
        const CK_VERSION *v = mod_ifaces[i].pFunctionList; /* version is first */
        if (name != NULL &&
            strcmp((const char *)name, (const char *)mod_ifaces[i].pInterfaceName) != 0)
            continue;
        if (version != NULL && (version->major != v->major || version->minor != v->minor))
            continue;
        if ((flags & mod_ifaces[i].flags) != flags)
            continue;
        *iface = &mod_ifaces[i];
        return CKR_OK;
    }
    return CKR_ARGUMENTS_BAD;
}
