/*
 * crypto.c — random numbers, and the cryptographic entry points that have no
 * mechanism: signatures with recovery, the dual-function updates, operation
 * state, the legacy parallel functions and the 3.0 message-based functions.
 *
 * The operations that do have mechanisms live in op_sign.c, op_cipher.c and
 * op_digest.c (mechanism table: mech.c). Here each function checks
 * initialisation, the session and its pointer arguments, then returns the
 * code the standard gives for the situation: CKR_MECHANISM_INVALID for a
 * function that would start an operation no offered mechanism supports
 * (C_SignRecoverInit, C_VerifyRecoverInit, C_Message*Init),
 * CKR_OPERATION_NOT_INITIALIZED for one that continues an operation that
 * cannot have been started (the dual-function updates need two active
 * operations, and a session runs one at a time). docs/module.md lists each.
 */
#include <stddef.h>

#include <openssl/rand.h>

#include "mod_int.h"

/* Initialisation and session checks shared by the functions below. */
static CK_RV
op_none(CK_SESSION_HANDLE hs, CK_RV result)
{
    struct mod_session *s = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    mod_lock();
    rv = session_lookup_inlock(hs, &s);
    mod_unlock();
    return rv != CKR_OK ? rv : result;
}

CK_RV
mod_C_SeedRandom(CK_SESSION_HANDLE hs, CK_BYTE_PTR seed, CK_ULONG len)
{
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (seed == NULL && len > 0)
        return CKR_ARGUMENTS_BAD;
    rv = op_none(hs, CKR_OK);
    if (rv != CKR_OK)
        return rv;
    /* Mixed into OpenSSL's DRBG as extra input; it never replaces the
     * operating system's entropy, so a bad seed cannot weaken the output.
     * The entropy estimate 0 says exactly that. */
    if (len > 0)
        RAND_add(seed, (int)(len > 0x7fffffffUL ? 0x7fffffffUL : len), 0.0);
    return CKR_OK;
}

CK_RV
mod_C_GenerateRandom(CK_SESSION_HANDLE hs, CK_BYTE_PTR out, CK_ULONG len)
{
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (out == NULL && len > 0)
        return CKR_ARGUMENTS_BAD;
    rv = op_none(hs, CKR_OK);
    if (rv != CKR_OK)
        return rv;
    /* Outside the lock: OpenSSL's DRBG is thread-safe. RAND_bytes takes an
     * int, so large requests are served in chunks. */
    while (len > 0) {
        int chunk = len > 0x40000000UL ? 0x40000000 : (int)len;
        if (RAND_bytes(out, chunk) != 1)
            return CKR_FUNCTION_FAILED;
        out += chunk;
        len -= (CK_ULONG)chunk;
    }
    return CKR_OK;
}

/* PKCS#11 2.40 section 5.20: legacy functions; a library that does not run
 * functions in parallel returns CKR_FUNCTION_NOT_PARALLEL. */
CK_RV
mod_C_GetFunctionStatus(CK_SESSION_HANDLE hs)
{
    return op_none(hs, CKR_FUNCTION_NOT_PARALLEL);
}

CK_RV
mod_C_CancelFunction(CK_SESSION_HANDLE hs)
{
    return op_none(hs, CKR_FUNCTION_NOT_PARALLEL);
}

/* Operation state is not saveable: it holds OpenSSL contexts and key
 * references, which cannot leave the process. */
CK_RV
mod_C_GetOperationState(CK_SESSION_HANDLE hs, CK_BYTE_PTR state, CK_ULONG_PTR len)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (len == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_none(hs, CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV
mod_C_SetOperationState(CK_SESSION_HANDLE hs, CK_BYTE_PTR state, CK_ULONG len,
                        CK_OBJECT_HANDLE enc_key, CK_OBJECT_HANDLE auth_key)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (state == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_none(hs, CKR_FUNCTION_NOT_SUPPORTED);
}

CK_RV
mod_C_SignRecoverInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_none(hs, CKR_MECHANISM_INVALID);
}

CK_RV
mod_C_SignRecover(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                  CK_ULONG_PTR outlen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_VerifyRecoverInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_none(hs, CKR_MECHANISM_INVALID);
}

CK_RV
mod_C_VerifyRecover(CK_SESSION_HANDLE hs, CK_BYTE_PTR sig, CK_ULONG siglen, CK_BYTE_PTR out,
                    CK_ULONG_PTR outlen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_DigestEncryptUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                          CK_ULONG_PTR outlen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_DecryptDigestUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                          CK_ULONG_PTR outlen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_SignEncryptUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                        CK_ULONG_PTR outlen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_DecryptVerifyUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                          CK_ULONG_PTR outlen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_MessageEncryptInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_none(hs, CKR_MECHANISM_INVALID);
}

CK_RV
mod_C_EncryptMessage(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen, CK_BYTE_PTR ad,
                     CK_ULONG adlen, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                     CK_ULONG_PTR outlen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_EncryptMessageBegin(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen,
                          CK_BYTE_PTR ad, CK_ULONG adlen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_EncryptMessageNext(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen, CK_BYTE_PTR in,
                         CK_ULONG inlen, CK_BYTE_PTR out, CK_ULONG_PTR outlen, CK_FLAGS flags)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_MessageEncryptFinal(CK_SESSION_HANDLE hs)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_MessageDecryptInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_none(hs, CKR_MECHANISM_INVALID);
}

CK_RV
mod_C_DecryptMessage(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen, CK_BYTE_PTR ad,
                     CK_ULONG adlen, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                     CK_ULONG_PTR outlen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_DecryptMessageBegin(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen,
                          CK_BYTE_PTR ad, CK_ULONG adlen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_DecryptMessageNext(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen, CK_BYTE_PTR in,
                         CK_ULONG inlen, CK_BYTE_PTR out, CK_ULONG_PTR outlen, CK_FLAGS flags)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_MessageDecryptFinal(CK_SESSION_HANDLE hs)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_MessageSignInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_none(hs, CKR_MECHANISM_INVALID);
}

CK_RV
mod_C_SignMessage(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen, CK_BYTE_PTR in,
                  CK_ULONG inlen, CK_BYTE_PTR sig, CK_ULONG_PTR siglen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_SignMessageBegin(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_SignMessageNext(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen, CK_BYTE_PTR in,
                      CK_ULONG inlen, CK_BYTE_PTR sig, CK_ULONG_PTR siglen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_MessageSignFinal(CK_SESSION_HANDLE hs)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_MessageVerifyInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_none(hs, CKR_MECHANISM_INVALID);
}

CK_RV
mod_C_VerifyMessage(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen, CK_BYTE_PTR in,
                    CK_ULONG inlen, CK_BYTE_PTR sig, CK_ULONG siglen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_VerifyMessageBegin(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_VerifyMessageNext(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen, CK_BYTE_PTR in,
                        CK_ULONG inlen, CK_BYTE_PTR sig, CK_ULONG siglen)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}

CK_RV
mod_C_MessageVerifyFinal(CK_SESSION_HANDLE hs)
{
    /* No such operation can have been started. */
    return op_none(hs, CKR_OPERATION_NOT_INITIALIZED);
}
