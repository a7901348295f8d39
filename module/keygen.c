/*
 * keygen.c — creating keys from mechanisms: C_GenerateKeyPair, C_DeriveKey,
 * C_GenerateKey, C_WrapKey, C_UnwrapKey.
 *
 * No key-creating mechanism is offered yet: each function checks
 * initialisation, its pointer arguments and the session, then returns
 * CKR_MECHANISM_INVALID (docs/module.md).
 */
#include <stddef.h>

#include "mod_int.h"

static CK_RV
op_none(CK_SESSION_HANDLE hs, CK_RV result)
{
    struct mod_session *s = NULL;
    CK_RV rv;

    mod_lock();
    rv = session_lookup_inlock(hs, &s);
    mod_unlock();
    return rv != CKR_OK ? rv : result;
}

CK_RV
mod_C_GenerateKey(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                  CK_OBJECT_HANDLE_PTR key)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    if (key == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_none(hs, CKR_MECHANISM_INVALID);
}

CK_RV
mod_C_GenerateKeyPair(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pubt,
                      CK_ULONG pubn, CK_ATTRIBUTE_PTR privt, CK_ULONG privn,
                      CK_OBJECT_HANDLE_PTR pub, CK_OBJECT_HANDLE_PTR priv)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    if (pub == NULL)
        return CKR_ARGUMENTS_BAD;
    if (priv == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_none(hs, CKR_MECHANISM_INVALID);
}

CK_RV
mod_C_WrapKey(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wkey,
              CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    if (outlen == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_none(hs, CKR_MECHANISM_INVALID);
}

CK_RV
mod_C_UnwrapKey(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE ukey, CK_BYTE_PTR in,
                CK_ULONG inlen, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR key)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    if (key == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_none(hs, CKR_MECHANISM_INVALID);
}

CK_RV
mod_C_DeriveKey(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE base,
                CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR key)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    if (key == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_none(hs, CKR_MECHANISM_INVALID);
}
