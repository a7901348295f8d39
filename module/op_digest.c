/*
 * op_digest.c — C_DigestInit/C_Digest/C_DigestUpdate/C_DigestKey/
 * C_DigestFinal: SHA-1 and SHA-2 (224, 256, 384, 512) through an EVP_MD_CTX
 * that the session keeps and re-initialises per operation.
 *
 * C_DigestKey feeds the value of a secret key (CKO_SECRET_KEY's CKA_VALUE)
 * into the digest; other keys are CKR_KEY_INDIGESTIBLE, other objects
 * CKR_KEY_HANDLE_INVALID. The value is read
 * under the lock (the key cannot be freed meanwhile) and is short.
 */
#include <openssl/err.h>

#include "op_int.h"

CK_RV
digest_prepare(struct mod_op *op)
{
    if (!op->ready) {
        op->hctx = EVP_MD_CTX_new();
        if (op->hctx == NULL)
            return CKR_HOST_MEMORY;
        op->outlen = md_info(op->m->md)->len;
        op->ready = 1;
    }
    return EVP_DigestInit_ex2(op->hctx, md_get(op->m->md), NULL) == 1 ? CKR_OK
                                                                      : CKR_FUNCTION_FAILED;
}

static CK_RV
do_final(struct mod_op *op, const unsigned char *in, size_t inlen, CK_BYTE_PTR out,
         CK_ULONG_PTR outlen)
{
    unsigned int len = 0;

    if (out == NULL) {
        *outlen = op->outlen;
        op->keep = 1;
        return CKR_OK;
    }
    if (*outlen < op->outlen) {
        *outlen = op->outlen;
        op->keep = 1;
        return CKR_BUFFER_TOO_SMALL;
    }
    if (inlen > 0 && EVP_DigestUpdate(op->hctx, in, inlen) != 1)
        return CKR_FUNCTION_FAILED;
    if (EVP_DigestFinal_ex(op->hctx, out, &len) != 1)
        return CKR_FUNCTION_FAILED;
    *outlen = len;
    return CKR_OK;
}

CK_RV
mod_C_DigestInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_start(hs, OP_DIGEST, mech, CK_INVALID_HANDLE);
}

CK_RV
mod_C_Digest(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
             CK_ULONG_PTR outlen)
{
    struct mod_op *op = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (outlen == NULL || (in == NULL && inlen > 0))
        return CKR_ARGUMENTS_BAD;
    rv = op_acquire(hs, OP_DIGEST, &op);
    if (rv != CKR_OK)
        return rv;
    /* C_Digest cannot finish a multi-part operation (section 5.10). */
    rv = op->multi ? CKR_OPERATION_ACTIVE : do_final(op, in, inlen, out, outlen);
    op_err_clear();
    return op_release(op, rv, 0);
}

CK_RV
mod_C_DigestUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen)
{
    struct mod_op *op = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (in == NULL && inlen > 0)
        return CKR_ARGUMENTS_BAD;
    rv = op_acquire(hs, OP_DIGEST, &op);
    if (rv != CKR_OK)
        return rv;
    op->multi = 1;
    rv = inlen == 0 || EVP_DigestUpdate(op->hctx, in, inlen) == 1 ? CKR_OK : CKR_FUNCTION_FAILED;
    op_err_clear();
    return op_release(op, rv, 1);
}

CK_RV
mod_C_DigestKey(CK_SESSION_HANDLE hs, CK_OBJECT_HANDLE key)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    struct mod_object *o = NULL;
    struct mod_op *op;
    const ks_attr *v;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    mod_lock();
    /* The key's value is looked up after a sync: the token lock. */
    rv = session_enter_relock(hs, &s, &locked);
    if (rv != CKR_OK)
        goto out;
    op = s->op;
    if (op == NULL || !op->active || op->kind != OP_DIGEST) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
        goto out;
    }
    if (op->busy) {
        rv = CKR_OPERATION_ACTIVE;
        goto out;
    }
    op->multi = 1;
    rv = cache_sync_relock(s->tok);
    if (rv == CKR_OK)
        rv = cache_lookup_inlock(s->tok, key, &o);
    if (rv == CKR_OBJECT_HANDLE_INVALID) {
        rv = CKR_KEY_HANDLE_INVALID;
    } else if (rv == CKR_OK) {
        CK_OBJECT_CLASS cls = obj_ulong(o->attrs, CKA_CLASS, CK_UNAVAILABLE_INFORMATION);
        v = obj_find(o->attrs, CKA_VALUE);
        if (cls != CKO_SECRET_KEY && cls != CKO_PRIVATE_KEY && cls != CKO_PUBLIC_KEY)
            rv = CKR_KEY_HANDLE_INVALID; /* not a key */
        else if (cls != CKO_SECRET_KEY || v == NULL)
            rv = CKR_KEY_INDIGESTIBLE;
        else if (v->len > 0 && EVP_DigestUpdate(op->hctx, v->value, v->len) != 1)
            rv = CKR_FUNCTION_FAILED;
    }
    /* Like C_DigestUpdate, an error ends the operation. */
    if (rv != CKR_OK)
        op_finish_inlock(op);
    op_err_clear();
out:
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

CK_RV
mod_C_DigestFinal(CK_SESSION_HANDLE hs, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    struct mod_op *op = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (outlen == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = op_acquire(hs, OP_DIGEST, &op);
    if (rv != CKR_OK)
        return rv;
    rv = do_final(op, NULL, 0, out, outlen);
    op_err_clear();
    return op_release(op, rv, 0);
}
