/*
 * op_cipher.c — C_Encrypt* and C_Decrypt* with RSA: CKM_RSA_PKCS (PKCS #1
 * v1.5) and CKM_RSA_PKCS_OAEP (hashAlg, MGF1 and a label). The AES
 * mechanisms are computed by op_sym.c; the entry points here hand them over.
 *
 * Both mechanisms are single-part by nature (PKCS#11 3.0 sections 2.1.6 and
 * 2.1.8); C_EncryptUpdate/C_DecryptUpdate are still accepted: they collect
 * the input (at most one block: k - 11 or k - 2hLen - 2 bytes of plaintext,
 * k bytes of ciphertext), return no output, and the final call does the
 * work.
 *
 * Decryption writes the plaintext into the operation's scratch buffer first
 * (its length is only known afterwards); the buffer is cleansed after the
 * copy and on every failure. A plaintext that does not fit the caller's
 * buffer gives CKR_BUFFER_TOO_SMALL with the exact length and the operation
 * stays active; the next call decrypts again.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "op_int.h"

CK_RV
cipher_prepare(struct mod_op *op)
{
    int enc = op->kind == OP_ENCRYPT, ok;
    size_t hlen;

    if (op->ready)
        return CKR_OK;
    op->pctx = EVP_PKEY_CTX_new_from_pkey(NULL, op->pkey, NULL);
    if (op->pctx == NULL)
        return CKR_HOST_MEMORY;
    ok = enc ? EVP_PKEY_encrypt_init(op->pctx) : EVP_PKEY_decrypt_init(op->pctx);
    if (ok != 1)
        return CKR_FUNCTION_FAILED;
    op->keybytes = (size_t)EVP_PKEY_get_size(op->pkey);
    if (op->m->fam == MF_RSA_OAEP) {
        unsigned char *label = NULL;
        ok = EVP_PKEY_CTX_set_rsa_padding(op->pctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_oaep_md(op->pctx, md_get(op->p.md)) == 1 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(op->pctx, md_get(op->p.mgf)) == 1;
        if (ok && op->p.label_len > 0) {
            /* The context takes ownership of its copy. */
            label = OPENSSL_memdup(op->p.label, op->p.label_len);
            ok = label != NULL &&
                 EVP_PKEY_CTX_set0_rsa_oaep_label(op->pctx, label, (int)op->p.label_len) == 1;
            if (!ok)
                OPENSSL_free(label);
        }
        hlen = md_info(op->p.md)->len;
        op->max_in = op->keybytes - 2 * hlen - 2;
    } else {
        ok = EVP_PKEY_CTX_set_rsa_padding(op->pctx, RSA_PKCS1_PADDING) == 1;
        op->max_in = op->keybytes - 11;
    }
    if (!ok)
        return CKR_FUNCTION_FAILED;
    /* Encryption: the ciphertext is k bytes. Decryption: the plaintext is at
     * most max_in bytes, the input exactly k. */
    op->outlen = enc ? op->keybytes : op->max_in;
    if (!enc) {
        CK_RV rv = op_scratch(op, op->keybytes);
        if (rv != CKR_OK)
            return rv;
        op->max_in = op->keybytes; /* what C_DecryptUpdate may collect */
    }
    op->ready = 1;
    return CKR_OK;
}

static CK_RV
do_encrypt(struct mod_op *op, const unsigned char *in, size_t inlen, int single, CK_BYTE_PTR out,
           CK_ULONG_PTR outlen)
{
    size_t len;

    if (!single) {
        in = op->buf;
        inlen = op->len;
    }
    /* Section 2.1.6/2.1.8: longer input is CKR_DATA_LEN_RANGE. */
    if (inlen > op->max_in)
        return CKR_DATA_LEN_RANGE;
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
    len = *outlen;
    if (EVP_PKEY_encrypt(op->pctx, out, &len, in, inlen) != 1)
        return CKR_FUNCTION_FAILED;
    *outlen = len;
    return CKR_OK;
}

static CK_RV
do_decrypt(struct mod_op *op, const unsigned char *in, size_t inlen, int single, CK_BYTE_PTR out,
           CK_ULONG_PTR outlen)
{
    size_t len;
    CK_RV rv;

    if (op->need_auth && !op->authed)
        return CKR_USER_NOT_LOGGED_IN;
    if (!single) {
        in = op->buf;
        inlen = op->len;
    }
    if (inlen != op->keybytes)
        return CKR_ENCRYPTED_DATA_LEN_RANGE;
    if (out == NULL) {
        *outlen = op->outlen; /* an upper bound (section 5.2 allows it) */
        op->keep = 1;
        return CKR_OK;
    }
    len = op->scap;
    if (EVP_PKEY_decrypt(op->pctx, op->scratch, &len, in, inlen) != 1) {
        OPENSSL_cleanse(op->scratch, op->scap);
        /* Bad padding, or a value not below the modulus. */
        return CKR_ENCRYPTED_DATA_INVALID;
    }
    if (*outlen < len) {
        *outlen = len;
        op->keep = 1;
        rv = CKR_BUFFER_TOO_SMALL;
    } else {
        memcpy(out, op->scratch, len);
        *outlen = len;
        rv = CKR_OK;
    }
    OPENSSL_cleanse(op->scratch, len);
    return rv;
}

CK_RV
mod_C_EncryptInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_start(hs, OP_ENCRYPT, mech, key);
}

CK_RV
mod_C_Encrypt(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
              CK_ULONG_PTR outlen)
{
    struct mod_op *op = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (outlen == NULL || (in == NULL && inlen > 0))
        return CKR_ARGUMENTS_BAD;
    rv = op_acquire(hs, OP_ENCRYPT, &op);
    if (rv != CKR_OK)
        return rv;
    rv = op->multi               ? CKR_OPERATION_ACTIVE
         : MF_IS_SYM(op->m->fam) ? sym_crypt(op, in, inlen, out, outlen)
                                 : do_encrypt(op, in, inlen, 1, out, outlen);
    op_err_clear();
    return op_release(op, rv, 0);
}

/* RSA: collects the input, never produces output (*outlen = 0). AES: the
 * mode's output so far (op_sym.c). */
static CK_RV
cipher_update(CK_SESSION_HANDLE hs, enum op_kind kind, CK_BYTE_PTR in, CK_ULONG inlen,
              CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    struct mod_op *op = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (outlen == NULL || (in == NULL && inlen > 0))
        return CKR_ARGUMENTS_BAD;
    rv = op_acquire(hs, kind, &op);
    if (rv != CKR_OK)
        return rv;
    if (MF_IS_SYM(op->m->fam)) {
        rv = sym_update(op, in, inlen, out, outlen);
        op_err_clear();
        return op_release(op, rv, 1);
    }
    op->multi = 1;
    rv = op_buffer(op, in, inlen);
    if (rv == CKR_DATA_LEN_RANGE && kind == OP_DECRYPT)
        rv = CKR_ENCRYPTED_DATA_LEN_RANGE;
    if (rv == CKR_OK)
        *outlen = 0;
    return op_release(op, rv, 1);
}

CK_RV
mod_C_EncryptUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                    CK_ULONG_PTR outlen)
{
    return cipher_update(hs, OP_ENCRYPT, in, inlen, out, outlen);
}

CK_RV
mod_C_EncryptFinal(CK_SESSION_HANDLE hs, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    struct mod_op *op = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (outlen == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = op_acquire(hs, OP_ENCRYPT, &op);
    if (rv != CKR_OK)
        return rv;
    rv = MF_IS_SYM(op->m->fam) ? sym_final(op, out, outlen)
                               : do_encrypt(op, NULL, 0, 0, out, outlen);
    op_err_clear();
    return op_release(op, rv, 0);
}

CK_RV
mod_C_DecryptInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (mech == NULL)
        return CKR_ARGUMENTS_BAD;
    return op_start(hs, OP_DECRYPT, mech, key);
}

CK_RV
mod_C_Decrypt(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
              CK_ULONG_PTR outlen)
{
    struct mod_op *op = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (outlen == NULL || (in == NULL && inlen > 0))
        return CKR_ARGUMENTS_BAD;
    rv = op_acquire(hs, OP_DECRYPT, &op);
    if (rv != CKR_OK)
        return rv;
    rv = op->multi               ? CKR_OPERATION_ACTIVE
         : MF_IS_SYM(op->m->fam) ? sym_crypt(op, in, inlen, out, outlen)
                                 : do_decrypt(op, in, inlen, 1, out, outlen);
    op_err_clear();
    return op_release(op, rv, 0);
}

CK_RV
mod_C_DecryptUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                    CK_ULONG_PTR outlen)
{
    return cipher_update(hs, OP_DECRYPT, in, inlen, out, outlen);
}

CK_RV
mod_C_DecryptFinal(CK_SESSION_HANDLE hs, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    struct mod_op *op = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (outlen == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = op_acquire(hs, OP_DECRYPT, &op);
    if (rv != CKR_OK)
        return rv;
    rv = MF_IS_SYM(op->m->fam) ? sym_final(op, out, outlen)
                               : do_decrypt(op, NULL, 0, 0, out, outlen);
    op_err_clear();
    return op_release(op, rv, 0);
}
