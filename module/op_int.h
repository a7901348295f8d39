/*
 * op_int.h — cryptographic operations: shared by op.c (bookkeeping, key and
 * parameter checks), op_sign.c (C_Sign*, C_Verify*), op_cipher.c
 * (C_Encrypt*, C_Decrypt*) and op_digest.c (C_Digest*).
 *
 * Life of an operation
 *   C_xInit: op_start() checks the mechanism, its parameters and the key
 *   under the global lock, takes a reference to the key's EVP_PKEY and marks
 *   the session's operation active and busy; the family's prepare function
 *   then builds (or reuses) the OpenSSL contexts with the lock released.
 *   C_x/C_xUpdate/C_xFinal: op_acquire() marks the active operation busy
 *   and releases the lock; the computation runs without it; op_release()
 *   takes the lock again and ends the operation unless the result keeps it
 *   (a length query or CKR_BUFFER_TOO_SMALL set op->keep, an Update that
 *   succeeded continues it).
 *
 * Reuse
 *   An ended operation stays attached to its session, idle, with its key
 *   reference and prepared contexts. The next C_xInit of the same kind with
 *   the same key, mechanism and parameters reuses them: a steady stream of
 *   signatures allocates nothing in the module. A C_Logout drops idle
 *   references to private keys; closing the session frees everything.
 */
#ifndef EVERTOKEN_OP_INT_H
#define EVERTOKEN_OP_INT_H

#include <stddef.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "mod_int.h"

enum op_kind { OP_NONE = 0, OP_SIGN, OP_VERIFY, OP_ENCRYPT, OP_DECRYPT, OP_DIGEST };

/* Input buffered by C_xUpdate for mechanisms that are single-part by nature
 * (the whole input is needed at once): at most the mechanism's maximum
 * input, and for the two without one these caps. */
#define OP_RAW_HASH_MAX 1024UL       /* CKM_ECDSA: a hash (truncated by OpenSSL) */
#define OP_EDDSA_MAX    (16UL << 20) /* CKM_EDDSA: the message */

/* PKCS#11 3.0 CK_EDDSA_PARAMS (not in p11-kit's 2.40 header). */
struct op_eddsa_params {
    CK_BBOOL phFlag;
    CK_ULONG ulContextDataLen;
    CK_BYTE_PTR pContextData;
};

struct op_params {
    int md;               /* MD_*: the mechanism's hash, or PSS/OAEP hashAlg */
    int mgf;              /* MD_* of the MGF1 function (PSS, OAEP) */
    CK_ULONG salt;        /* PSS sLen */
    unsigned char *label; /* OAEP label (owned, OPENSSL_malloc) */
    size_t label_len;
    /* secret-key mechanisms (op_sym.c); none of them changes the contexts */
    unsigned char iv[256]; /* CBC IV, CTR counter block, GCM IV (up to OP_IV_MAX) */
    size_t iv_len;
    CK_ULONG ctr_bits;  /* CTR: counter bits of the block */
    unsigned char *aad; /* GCM additional data (owned) */
    size_t aad_len;
    size_t tag_len; /* GCM tag bytes */
    size_t mac_len; /* MAC bytes (the full MAC, or the _GENERAL length) */
};

struct mod_op {
    enum op_kind kind;
    const struct mod_mech *m;
    struct op_params p;
    EVP_PKEY *pkey; /* a reference (NULL for digests) */
    unsigned gen;   /* counts C_xInit calls on this operation structure */
    /* state, changed under the global lock */
    int active;    /* between C_xInit and the call that ends it */
    int busy;      /* a thread works on it with the lock released */
    int orphan;    /* the session closed while busy: the worker frees it */
    int dead;      /* C_Logout while busy: the worker drops the key */
    int priv;      /* the key is a private object */
    int need_auth; /* CKA_ALWAYS_AUTHENTICATE: C_Login(CKU_CONTEXT_SPECIFIC) needed */
    int authed;    /* ... and it happened for this operation */
    /* state of the worker (only the busy thread touches it) */
    int multi; /* C_xUpdate was called */
    int keep;  /* the result of this call keeps the operation active */
    /* prepared OpenSSL state */
    int ready; /* contexts match kind, m, p and pkey */
    EVP_PKEY_CTX *pctx;
    EVP_MD_CTX *hctx;   /* hashing mechanisms and digests */
    EVP_MD_CTX *tmpl;   /* EdDSA: DigestSign/VerifyInit done, copied per operation */
    EVP_MD_CTX *work;   /* EdDSA: the copy */
    size_t keybytes;    /* RSA modulus / EC group order length in bytes */
    size_t outlen;      /* signature or ciphertext length; largest plaintext */
    size_t max_in;      /* largest input (buffered, or single-part); 0: none */
    unsigned char *buf; /* input buffered by C_xUpdate */
    size_t len, cap;
    unsigned char *scratch; /* DER signature (ECDSA) or plaintext (decrypt) */
    size_t scap;
    /* secret-key mechanisms (op_sym.c) */
    unsigned char *skey;  /* copy of the key's value (sodium_malloc, MOD_SECRET_MAX) */
    size_t skey_len;      /* 0: no secret key */
    EVP_CIPHER_CTX *cctx; /* AES modes: keyed once, re-initialised per operation */
    EVP_MAC_CTX *mctx;    /* HMAC, CMAC: keyed once */
    int fresh;            /* the contexts are initialised and unused */
    int lazy;    /* C_xInit reused the contexts: sym_reinit at the first call that uses them */
    size_t pend; /* bytes the cipher context holds back (block modes) */
    unsigned long long done;        /* bytes processed (CTR counter limit) */
    unsigned long long blocks_left; /* CTR: blocks before the counter wraps */
    size_t gcm_ivlen; /* IV length the GCM context is set to (0: OpenSSL's default, 12) */
    int fin_done;     /* the final result is in scratch (fin_len bytes) */
    size_t fin_len;
};

/* Empty this thread's OpenSSL error queue, after a computation, so that a
 * failure here is not reported by the application's next OpenSSL call.
 * Only when there is something in it: OpenSSL 3's ERR_clear_error clears
 * every slot of the queue (32 frees) even when it is empty, which was 12 %
 * of a 4 KiB AES-GCM C_EncryptInit + C_Encrypt (docs/performance.md). */
static inline void
op_err_clear(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* Init: all checks, key reference, operation marked active and busy, then
 * the family's prepare function with the lock released; ends with
 * op_release. KEY is ignored for digests. */
CK_RV op_start(CK_SESSION_HANDLE hs, enum op_kind kind, CK_MECHANISM_PTR mech,
               CK_OBJECT_HANDLE key);
/* The session's active operation of KIND, marked busy, lock released.
 * CKR_OPERATION_NOT_INITIALIZED when there is none. */
CK_RV op_acquire(CK_SESSION_HANDLE hs, enum op_kind kind, struct mod_op **out);
/* Unmark busy; end the operation unless op->keep or (CONTINUE and rv OK).
 * Returns RV. */
CK_RV op_release(struct mod_op *op, CK_RV rv, int cont);

/* End the operation now (lock held, not busy); a dead one also drops its
 * key. Its contexts stay for reuse. */
void op_finish_inlock(struct mod_op *op);

/* Append IN to the input buffer (max op->max_in): CKR_DATA_LEN_RANGE when
 * it would grow past it. */
CK_RV op_buffer(struct mod_op *op, const unsigned char *in, size_t len);
/* Grow op->scratch to N bytes. */
CK_RV op_scratch(struct mod_op *op, size_t n);
/* Free and forget the prepared contexts (op->ready = 0). */
void op_drop_ctx(struct mod_op *op);

/* Family prepare functions (lock released; op busy). They build the
 * contexts when !op->ready and reset per-operation state. */
CK_RV sign_prepare(struct mod_op *op);
CK_RV cipher_prepare(struct mod_op *op);
CK_RV digest_prepare(struct mod_op *op);
CK_RV sym_prepare(struct mod_op *op);

/* op_sym.c: the secret-key mechanisms. Every entry below first does the
 * re-initialisation a reusing C_xInit left to it (op->lazy). */
/* op_sym.c: the secret-key mechanisms. Parameters of an AES or MAC
 * mechanism into P (CKR_MECHANISM_PARAM_INVALID, CKR_HOST_MEMORY). */
CK_RV sym_params(const struct mod_mech *m, const CK_MECHANISM *mech, struct op_params *p);
/* C_Encrypt/C_Decrypt, C_xUpdate, C_xFinal of an AES mechanism. */
CK_RV sym_crypt(struct mod_op *op, const unsigned char *in, size_t inlen, CK_BYTE_PTR out,
                CK_ULONG_PTR outlen);
CK_RV sym_update(struct mod_op *op, const unsigned char *in, size_t inlen, CK_BYTE_PTR out,
                 CK_ULONG_PTR outlen);
CK_RV sym_final(struct mod_op *op, CK_BYTE_PTR out, CK_ULONG_PTR outlen);
/* C_Sign/C_SignFinal (SINGLE: IN is the whole message), C_Verify/
 * C_VerifyFinal, C_SignUpdate/C_VerifyUpdate of a MAC mechanism. */
CK_RV mac_sign(struct mod_op *op, const unsigned char *in, size_t inlen, int single,
               CK_BYTE_PTR out, CK_ULONG_PTR outlen);
CK_RV mac_verify(struct mod_op *op, const unsigned char *in, size_t inlen, int single,
                 const unsigned char *sig, size_t siglen);
CK_RV mac_update(struct mod_op *op, const unsigned char *in, size_t inlen);
/* Is a secret key of LEN bytes usable with mechanism M? */
int sym_key_size_ok(const struct mod_mech *m, size_t len);
/* AES ciphers fetched once per process: MODE one of "ECB", "CBC", "CTR",
 * "GCM", "WRAP", "WRAP-PAD"; KEYLEN 16, 24 or 32. NULL if unavailable. */
const EVP_CIPHER *sym_cipher(const char *mode, size_t keylen);

/* PKCS#11 ECDSA signatures (r || s, each half the order's length) <-> DER. */
CK_RV ecdsa_rs_to_der(const unsigned char *rs, size_t rslen, unsigned char *der, size_t *derlen);
CK_RV ecdsa_der_to_rs(const unsigned char *der, size_t derlen, unsigned char *rs, size_t rslen);

#endif /* EVERTOKEN_OP_INT_H */
