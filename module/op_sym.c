/*
 * op_sym.c — the secret-key mechanisms (docs/mechanisms.md): AES ECB, CBC,
 * CBC_PAD, CTR and GCM through an EVP_CIPHER_CTX, AES CMAC and HMAC
 * (SHA-1, SHA-2) through an EVP_MAC_CTX, single- and multi-part.
 *
 * Contexts: op.c copies the key's value into the operation's locked buffer
 * (op->skey) under the lock; sym_prepare keys a context once and every
 * later operation of the session with the same key value and mechanism only
 * re-initialises it (EVP_CipherInit_ex2 / EVP_MAC_init without a key), so a
 * steady stream of operations allocates nothing and recomputes no key
 * schedule. OpenSSL cleanses the contexts when they are freed.
 *
 * Buffer-size protocol (PKCS#11 3.0 section 5.2): every output length is
 * computed before OpenSSL is called, so a length query (NULL output) or a
 * CKR_BUFFER_TOO_SMALL leaves the operation exactly where it was. The two
 * results whose length is only known afterwards (the last block of a
 * CBC_PAD decryption, a GCM decryption) are computed once into the
 * operation's scratch buffer and handed out by the call that has room
 * (the length reported is then exact).
 *
 * GCM decryption releases nothing before the tag is checked: C_DecryptUpdate
 * collects the ciphertext (up to OP_GCM_MAX bytes) and returns no output;
 * C_DecryptFinal (or C_Decrypt) checks the tag and returns the plaintext.
 * The token never generates an IV: the caller's CK_GCM_PARAMS gives it.
 */
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "op_int.h"

/* Longest GCM ciphertext C_DecryptUpdate collects, and longest AAD. */
#define OP_GCM_MAX (64UL << 20)
#define OP_AAD_MAX (1UL << 20)
#define OP_IV_MAX  256 /* GCM IV bytes */

#define AES_BLOCK 16

/* ---- ciphers and MACs fetched once per process --------------------------- */

static const char *const cipher_modes[] = {"ECB", "CBC", "CTR", "GCM", "WRAP", "WRAP-PAD"};
#define N_MODES (sizeof(cipher_modes) / sizeof(cipher_modes[0]))
static EVP_CIPHER *ciphers[N_MODES][3];
static EVP_MAC *mac_hmac, *mac_cmac;
static pthread_once_t sym_once = PTHREAD_ONCE_INIT;

static void
sym_fetch_all(void)
{
    static const int bits[3] = {128, 192, 256};
    char name[32];

    for (size_t i = 0; i < N_MODES; i++)
        for (size_t k = 0; k < 3; k++) {
            snprintf(name, sizeof(name), "AES-%d-%s", bits[k], cipher_modes[i]);
            ciphers[i][k] = EVP_CIPHER_fetch(NULL, name, NULL);
        }
    mac_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    mac_cmac = EVP_MAC_fetch(NULL, "CMAC", NULL);
    ERR_clear_error();
}

const EVP_CIPHER *
sym_cipher(const char *mode, size_t keylen)
{
    size_t k = keylen == 16 ? 0 : keylen == 24 ? 1 : keylen == 32 ? 2 : 3;

    if (k == 3)
        return NULL;
    pthread_once(&sym_once, sym_fetch_all);
    for (size_t i = 0; i < N_MODES; i++)
        if (strcmp(cipher_modes[i], mode) == 0)
            return ciphers[i][k];
    return NULL;
}

static int
is_general(CK_MECHANISM_TYPE t)
{
    return t == CKM_AES_CMAC_GENERAL || t == CKM_SHA_1_HMAC_GENERAL ||
           t == CKM_SHA224_HMAC_GENERAL || t == CKM_SHA256_HMAC_GENERAL ||
           t == CKM_SHA384_HMAC_GENERAL || t == CKM_SHA512_HMAC_GENERAL;
}

int
sym_key_size_ok(const struct mod_mech *m, size_t len)
{
    if (m->fam == MF_HMAC)
        return len >= 1 && len <= MOD_SECRET_MAX;
    return len == 16 || len == 24 || len == 32;
}

/* ---- parameters ---------------------------------------------------------- */

static CK_RV
take(unsigned char **dst, size_t *dlen, const void *src, size_t len)
{
    *dst = OPENSSL_memdup(src, len ? len : 1);
    if (*dst == NULL)
        return CKR_HOST_MEMORY;
    *dlen = len;
    return CKR_OK;
}

/* CTR: blocks the counter (the low CTR_BITS bits of the block) can still
 * count before it wraps, capped at ULLONG_MAX. */
static unsigned long long
ctr_blocks_left(const unsigned char cb[16], CK_ULONG bits)
{
    unsigned __int128 v = 0, room;

    for (int i = 0; i < 16; i++)
        v = (v << 8) | cb[i];
    if (bits < 128) {
        unsigned __int128 mask = (((unsigned __int128)1) << bits) - 1;
        room = mask - (v & mask) + 1;
    } else {
        room = ~v; /* 2^128 - v - 1, plus this block */
        if (room < (unsigned __int128)ULLONG_MAX)
            room += 1;
    }
    return room > (unsigned __int128)ULLONG_MAX ? ULLONG_MAX : (unsigned long long)room;
}

CK_RV
sym_params(const struct mod_mech *m, const CK_MECHANISM *mech, struct op_params *p)
{
    const void *prm = mech->pParameter;
    size_t plen = mech->ulParameterLen;

    switch (m->fam) {
    case MF_AES_ECB:
        return plen == 0 ? CKR_OK : CKR_MECHANISM_PARAM_INVALID;
    case MF_AES_CBC:
    case MF_AES_CBC_PAD:
        if (prm == NULL || plen != AES_BLOCK)
            return CKR_MECHANISM_PARAM_INVALID;
        memcpy(p->iv, prm, AES_BLOCK);
        p->iv_len = AES_BLOCK;
        return CKR_OK;
    case MF_AES_CTR: {
        const CK_AES_CTR_PARAMS *c = prm;
        if (c == NULL || plen != sizeof(*c) || c->ulCounterBits == 0 || c->ulCounterBits > 128)
            return CKR_MECHANISM_PARAM_INVALID;
        p->ctr_bits = c->ulCounterBits;
        memcpy(p->iv, c->cb, AES_BLOCK);
        p->iv_len = AES_BLOCK;
        return CKR_OK;
    }
    case MF_AES_GCM: {
        const CK_GCM_PARAMS *g = prm;
        CK_RV rv;
        if (g == NULL || plen != sizeof(*g))
            return CKR_MECHANISM_PARAM_INVALID;
        /* SP 800-38D section 5.2.1.2: 128, 120, 112, 104, 96, and 64 or 32
         * bits for special uses. ulIvBits is not looked at (applications
         * disagree about it); ulIvLen is the IV. */
        switch (g->ulTagBits) {
        case 32:
        case 64:
        case 96:
        case 104:
        case 112:
        case 120:
        case 128:
            break;
        default:
            return CKR_MECHANISM_PARAM_INVALID;
        }
        if (g->pIv == NULL || g->ulIvLen == 0 || g->ulIvLen > OP_IV_MAX ||
            (g->ulAADLen > 0 && g->pAAD == NULL) || g->ulAADLen > OP_AAD_MAX)
            return CKR_MECHANISM_PARAM_INVALID;
        p->tag_len = g->ulTagBits / 8;
        memcpy(p->iv, g->pIv, g->ulIvLen);
        p->iv_len = g->ulIvLen;
        rv = CKR_OK;
        if (g->ulAADLen > 0)
            rv = take(&p->aad, &p->aad_len, g->pAAD, g->ulAADLen);
        return rv;
    }
    case MF_CMAC:
    case MF_HMAC: {
        size_t full = m->fam == MF_CMAC ? AES_BLOCK : md_info(m->md)->len;
        if (!is_general(m->type)) {
            if (plen != 0)
                return CKR_MECHANISM_PARAM_INVALID;
            p->mac_len = full;
            return CKR_OK;
        }
        /* CK_MAC_GENERAL_PARAMS: the MAC's length, 1 .. full. */
        if (prm == NULL || plen != sizeof(CK_ULONG))
            return CKR_MECHANISM_PARAM_INVALID;
        p->mac_len = *(const CK_ULONG *)prm;
        if (p->mac_len == 0 || p->mac_len > full)
            return CKR_MECHANISM_PARAM_INVALID;
        return CKR_OK;
    }
    default:
        return CKR_MECHANISM_INVALID;
    }
}

/* ---- preparation --------------------------------------------------------- */

static const char *
fam_mode(enum mod_mech_family f)
{
    switch (f) {
    case MF_AES_ECB:
        return "ECB";
    case MF_AES_CTR:
        return "CTR";
    case MF_AES_GCM:
        return "GCM";
    default:
        return "CBC";
    }
}

/* Set up the contexts for one operation: IV, padding, AAD; MAC restart. */
static CK_RV
sym_reinit(struct mod_op *op)
{
    int enc = op->kind == OP_ENCRYPT || op->kind == OP_SIGN;
    const struct mod_mech *m = op->m;
    int outl = 0;

    op->pend = 0;
    op->done = 0;
    op->fin_done = 0;
    op->fin_len = 0;
    if (m->fam == MF_HMAC || m->fam == MF_CMAC) {
        if (EVP_MAC_init(op->mctx, NULL, 0, NULL) != 1)
            return CKR_FUNCTION_FAILED;
        op->fresh = 1;
        return CKR_OK;
    }
    if (m->fam == MF_AES_GCM) {
        /* The IV length is a context setting: changed only when it does
         * (12 bytes, OpenSSL's default, is by far the most common). */
        if (op->p.iv_len != (op->gcm_ivlen ? op->gcm_ivlen : 12)) {
            OSSL_PARAM prm[2] = {OSSL_PARAM_END, OSSL_PARAM_END};
            size_t ivlen = op->p.iv_len;
            prm[0] = OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, &ivlen);
            if (EVP_CIPHER_CTX_set_params(op->cctx, prm) != 1)
                return CKR_FUNCTION_FAILED;
            op->gcm_ivlen = ivlen;
        }
        if (EVP_CipherInit_ex2(op->cctx, NULL, NULL, op->p.iv, enc, NULL) != 1)
            return CKR_FUNCTION_FAILED;
        if (op->p.aad_len > 0 &&
            (op->p.aad_len > INT_MAX ||
             EVP_CipherUpdate(op->cctx, NULL, &outl, op->p.aad, (int)op->p.aad_len) != 1))
            return CKR_FUNCTION_FAILED;
    } else {
        if (EVP_CipherInit_ex2(op->cctx, NULL, NULL, op->p.iv_len ? op->p.iv : NULL, enc, NULL) !=
                1 ||
            EVP_CIPHER_CTX_set_padding(op->cctx, m->fam == MF_AES_CBC_PAD) != 1)
            return CKR_FUNCTION_FAILED;
    }
    op->blocks_left = m->fam == MF_AES_CTR ? ctr_blocks_left(op->p.iv, op->p.ctr_bits) : ULLONG_MAX;
    op->fresh = 1;
    return CKR_OK;
}

CK_RV
sym_prepare(struct mod_op *op)
{
    const struct mod_mech *m = op->m;
    int enc = op->kind == OP_ENCRYPT || op->kind == OP_SIGN;

    if (!op->ready) {
        pthread_once(&sym_once, sym_fetch_all);
        if (m->fam == MF_HMAC || m->fam == MF_CMAC) {
            OSSL_PARAM prm[2] = {OSSL_PARAM_END, OSSL_PARAM_END};
            const char *alg;
            if (m->fam == MF_HMAC) {
                alg = md_info(m->md)->ossl;
                prm[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)alg, 0);
            } else {
                alg = op->skey_len == 16   ? "AES-128-CBC"
                      : op->skey_len == 24 ? "AES-192-CBC"
                                           : "AES-256-CBC";
                prm[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, (char *)alg, 0);
            }
            if ((m->fam == MF_HMAC ? mac_hmac : mac_cmac) == NULL)
                return CKR_FUNCTION_FAILED;
            op->mctx = EVP_MAC_CTX_new(m->fam == MF_HMAC ? mac_hmac : mac_cmac);
            if (op->mctx == NULL)
                return CKR_HOST_MEMORY;
            if (EVP_MAC_init(op->mctx, op->skey, op->skey_len, prm) != 1)
                return CKR_FUNCTION_FAILED;
        } else {
            const EVP_CIPHER *c = sym_cipher(fam_mode(m->fam), op->skey_len);
            if (c == NULL)
                return CKR_FUNCTION_FAILED;
            op->cctx = EVP_CIPHER_CTX_new();
            if (op->cctx == NULL)
                return CKR_HOST_MEMORY;
            op->gcm_ivlen = 0;
            if (EVP_CipherInit_ex2(op->cctx, c, op->skey, NULL, enc, NULL) != 1)
                return CKR_FUNCTION_FAILED;
        }
        /* What C_xUpdate may collect: GCM decryption only. */
        op->max_in = OP_GCM_MAX;
        op->ready = 1;
        op->fresh = 1;
        if (m->fam == MF_HMAC || m->fam == MF_CMAC)
            return CKR_OK; /* EVP_MAC_init with the key started it */
    }
    return sym_reinit(op);
}

/* A context used by an earlier attempt (a single-part call that returned
 * CKR_BUFFER_TOO_SMALL after computing) starts over. */
static CK_RV
sym_fresh(struct mod_op *op)
{
    return op->fresh ? CKR_OK : sym_reinit(op);
}

/* The re-initialisation a reusing C_xInit left to the first call that uses
 * the operation (op->lazy, op.c); contexts that fail it are dropped. */
static CK_RV
sym_lazy(struct mod_op *op)
{
    CK_RV rv;

    if (!op->lazy)
        return CKR_OK;
    op->lazy = 0;
    rv = sym_reinit(op);
    if (rv != CKR_OK)
        op_drop_ctx(op);
    return rv;
}

/* ---- encryption and decryption ------------------------------------------- */

static CK_RV
len_range(const struct mod_op *op)
{
    return op->kind == OP_ENCRYPT ? CKR_DATA_LEN_RANGE : CKR_ENCRYPTED_DATA_LEN_RANGE;
}

/* CTR: would LEN more bytes run the counter past its bits? */
static int
ctr_over(const struct mod_op *op, size_t len)
{
    unsigned long long total = op->done + len;
    unsigned long long blocks = total / AES_BLOCK + (total % AES_BLOCK != 0);

    return op->m->fam == MF_AES_CTR && (total < op->done || blocks > op->blocks_left);
}

static CK_RV
evp_update(struct mod_op *op, unsigned char *out, size_t *outl, const unsigned char *in,
           size_t inlen)
{
    int l = 0;

    op->fresh = 0;
    if (inlen == 0) {
        *outl = 0;
        return CKR_OK;
    }
    if (inlen > INT_MAX || EVP_CipherUpdate(op->cctx, out, &l, in, (int)inlen) != 1)
        return CKR_FUNCTION_FAILED;
    *outl = (size_t)l;
    op->done += inlen;
    return CKR_OK;
}

/* GCM decryption of IN (ciphertext || tag) into scratch. */
static CK_RV
gcm_open(struct mod_op *op, const unsigned char *in, size_t inlen)
{
    size_t clen, l = 0;
    int fl = 0;
    CK_RV rv;

    if (inlen < op->p.tag_len)
        return CKR_ENCRYPTED_DATA_LEN_RANGE;
    clen = inlen - op->p.tag_len;
    rv = op_scratch(op, clen + AES_BLOCK);
    if (rv == CKR_OK)
        rv = sym_fresh(op);
    if (rv == CKR_OK)
        rv = evp_update(op, op->scratch, &l, in, clen);
    if (rv != CKR_OK)
        return rv;
    if (EVP_CIPHER_CTX_ctrl(op->cctx, EVP_CTRL_AEAD_SET_TAG, (int)op->p.tag_len,
                            (void *)(in + clen)) != 1)
        return CKR_FUNCTION_FAILED;
    if (EVP_CipherFinal_ex(op->cctx, op->scratch + l, &fl) != 1) {
        OPENSSL_cleanse(op->scratch, clen);
        return CKR_ENCRYPTED_DATA_INVALID; /* the tag does not match */
    }
    op->fin_len = l + (size_t)fl;
    op->fin_done = 1;
    return CKR_OK;
}

/* Hand out the result in scratch: length query, too small, or the copy. */
static CK_RV
give_fin(struct mod_op *op, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    if (out == NULL) {
        *outlen = op->fin_len;
        op->keep = 1;
        return CKR_OK;
    }
    if (*outlen < op->fin_len) {
        *outlen = op->fin_len;
        op->keep = 1;
        return CKR_BUFFER_TOO_SMALL;
    }
    if (op->fin_len > 0)
        memcpy(out, op->scratch, op->fin_len);
    *outlen = op->fin_len;
    return CKR_OK;
}

CK_RV
sym_crypt(struct mod_op *op, const unsigned char *in, size_t inlen, CK_BYTE_PTR out,
          CK_ULONG_PTR outlen)
{
    enum mod_mech_family f = op->m->fam;
    int enc = op->kind == OP_ENCRYPT;
    size_t need, l1 = 0;
    int l2 = 0;
    CK_RV rv;

    rv = sym_lazy(op);
    if (rv != CKR_OK)
        return rv;

    if (op->fin_done) /* computed by an earlier call that had no room */
        return give_fin(op, out, outlen);
    switch (f) {
    case MF_AES_ECB:
    case MF_AES_CBC:
        if (inlen % AES_BLOCK != 0)
            return len_range(op);
        need = inlen;
        break;
    case MF_AES_CBC_PAD:
        if (!enc && (inlen == 0 || inlen % AES_BLOCK != 0))
            return CKR_ENCRYPTED_DATA_LEN_RANGE;
        need = enc ? inlen - inlen % AES_BLOCK + AES_BLOCK : inlen; /* decrypt: a bound */
        break;
    case MF_AES_CTR:
        if (ctr_over(op, inlen))
            return CKR_DATA_LEN_RANGE;
        need = inlen;
        break;
    default: /* GCM */
        if (!enc) {
            rv = gcm_open(op, in, inlen);
            return rv != CKR_OK ? rv : give_fin(op, out, outlen);
        }
        if (inlen > SIZE_MAX - op->p.tag_len)
            return CKR_DATA_LEN_RANGE;
        need = inlen + op->p.tag_len;
        break;
    }
    if (out == NULL) {
        *outlen = need;
        op->keep = 1;
        return CKR_OK;
    }
    if (*outlen < need && !(f == MF_AES_CBC_PAD && !enc)) {
        *outlen = need;
        op->keep = 1;
        return CKR_BUFFER_TOO_SMALL;
    }
    rv = sym_fresh(op);
    if (rv != CKR_OK)
        return rv;
    if (f == MF_AES_CBC_PAD && !enc && *outlen < need) {
        /* The plaintext's length is known after the padding check. */
        rv = op_scratch(op, inlen);
        if (rv == CKR_OK)
            rv = evp_update(op, op->scratch, &l1, in, inlen);
        if (rv != CKR_OK)
            return rv;
        if (EVP_CipherFinal_ex(op->cctx, op->scratch + l1, &l2) != 1) {
            OPENSSL_cleanse(op->scratch, inlen);
            return CKR_ENCRYPTED_DATA_INVALID;
        }
        op->fin_len = l1 + (size_t)l2;
        op->fin_done = 1;
        return give_fin(op, out, outlen);
    }
    rv = evp_update(op, out, &l1, in, inlen);
    if (rv != CKR_OK)
        return rv;
    if (EVP_CipherFinal_ex(op->cctx, out + l1, &l2) != 1) {
        OPENSSL_cleanse(out, l1);
        return enc ? CKR_FUNCTION_FAILED : CKR_ENCRYPTED_DATA_INVALID;
    }
    l1 += (size_t)l2;
    if (f == MF_AES_GCM) {
        if (EVP_CIPHER_CTX_ctrl(op->cctx, EVP_CTRL_AEAD_GET_TAG, (int)op->p.tag_len, out + l1) != 1)
            return CKR_FUNCTION_FAILED;
        l1 += op->p.tag_len;
    }
    *outlen = l1;
    return CKR_OK;
}

CK_RV
sym_update(struct mod_op *op, const unsigned char *in, size_t inlen, CK_BYTE_PTR out,
           CK_ULONG_PTR outlen)
{
    enum mod_mech_family f = op->m->fam;
    int enc = op->kind == OP_ENCRYPT;
    size_t need, n, l = 0;
    CK_RV rv;

    rv = sym_lazy(op);
    if (rv != CKR_OK)
        return rv;

    op->multi = 1;
    if (f == MF_AES_GCM && !enc) {
        /* Nothing before the tag is checked: collect (not on a length
         * query, which asks and changes nothing). */
        if (out == NULL) {
            *outlen = 0;
            op->keep = 1;
            return CKR_OK;
        }
        rv = op_buffer(op, in, inlen);
        if (rv == CKR_DATA_LEN_RANGE)
            rv = CKR_ENCRYPTED_DATA_LEN_RANGE;
        if (rv == CKR_OK)
            *outlen = 0;
        return rv;
    }
    if (f == MF_AES_CTR || f == MF_AES_GCM) {
        if (ctr_over(op, inlen))
            return CKR_DATA_LEN_RANGE;
        need = inlen;
    } else {
        if (inlen > SIZE_MAX - op->pend)
            return len_range(op);
        n = op->pend + inlen;
        need = n - n % AES_BLOCK;
        /* CBC_PAD decryption holds back the last whole block (it may be
         * all padding). */
        if (f == MF_AES_CBC_PAD && !enc && n > 0 && n % AES_BLOCK == 0)
            need -= AES_BLOCK;
    }
    if (out == NULL) {
        *outlen = need;
        op->keep = 1;
        return CKR_OK;
    }
    if (*outlen < need) {
        *outlen = need;
        op->keep = 1;
        return CKR_BUFFER_TOO_SMALL;
    }
    rv = evp_update(op, out, &l, in, inlen);
    if (rv != CKR_OK)
        return rv;
    if (l != need) {
        OPENSSL_cleanse(out, l);
        return CKR_GENERAL_ERROR; /* OpenSSL and this file disagree */
    }
    op->pend = op->pend + inlen - l;
    *outlen = l;
    return CKR_OK;
}

CK_RV
sym_final(struct mod_op *op, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    enum mod_mech_family f = op->m->fam;
    int enc = op->kind == OP_ENCRYPT;
    int l = 0;
    CK_RV rv;

    rv = sym_lazy(op);
    if (rv != CKR_OK)
        return rv;

    if (op->fin_done)
        return give_fin(op, out, outlen);
    switch (f) {
    case MF_AES_ECB:
    case MF_AES_CBC:
        if (op->pend != 0)
            return len_range(op);
        op->fin_len = 0;
        break;
    case MF_AES_CTR:
        op->fin_len = 0;
        break;
    case MF_AES_CBC_PAD:
        if (!enc && op->pend != AES_BLOCK)
            return CKR_ENCRYPTED_DATA_LEN_RANGE;
        rv = op_scratch(op, AES_BLOCK);
        if (rv != CKR_OK)
            return rv;
        if (EVP_CipherFinal_ex(op->cctx, op->scratch, &l) != 1)
            return enc ? CKR_FUNCTION_FAILED : CKR_ENCRYPTED_DATA_INVALID;
        op->fin_len = (size_t)l;
        break;
    default: /* GCM */
        if (!enc) {
            rv = gcm_open(op, op->buf, op->len);
            if (rv != CKR_OK)
                return rv;
            break;
        }
        rv = op_scratch(op, AES_BLOCK + op->p.tag_len);
        if (rv != CKR_OK)
            return rv;
        if (EVP_CipherFinal_ex(op->cctx, op->scratch, &l) != 1 || l != 0 ||
            EVP_CIPHER_CTX_ctrl(op->cctx, EVP_CTRL_AEAD_GET_TAG, (int)op->p.tag_len, op->scratch) !=
                1)
            return CKR_FUNCTION_FAILED;
        op->fin_len = op->p.tag_len;
        break;
    }
    op->fresh = 0;
    op->fin_done = 1;
    return give_fin(op, out, outlen);
}

/* ---- MACs ----------------------------------------------------------------- */

CK_RV
mac_update(struct mod_op *op, const unsigned char *in, size_t inlen)
{
    CK_RV rv = sym_lazy(op);

    if (rv != CKR_OK)
        return rv;
    op->multi = 1;
    op->fresh = 0;
    if (inlen > 0 && EVP_MAC_update(op->mctx, in, inlen) != 1)
        return CKR_FUNCTION_FAILED;
    return CKR_OK;
}

/* The full MAC of the (single: IN; else the updates') message into MAC. */
static CK_RV
mac_compute(struct mod_op *op, const unsigned char *in, size_t inlen, int single,
            unsigned char mac[EVP_MAX_MD_SIZE])
{
    size_t l = 0;
    CK_RV rv;

    if (single) {
        rv = sym_fresh(op);
        if (rv == CKR_OK)
            rv = mac_update(op, in, inlen);
        if (rv != CKR_OK)
            return rv;
    }
    op->fresh = 0;
    if (EVP_MAC_final(op->mctx, mac, &l, EVP_MAX_MD_SIZE) != 1 || l < op->p.mac_len)
        return CKR_FUNCTION_FAILED;
    return CKR_OK;
}

CK_RV
mac_sign(struct mod_op *op, const unsigned char *in, size_t inlen, int single, CK_BYTE_PTR out,
         CK_ULONG_PTR outlen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    CK_RV rv;

    rv = sym_lazy(op);
    if (rv != CKR_OK)
        return rv;

    if (out == NULL) {
        *outlen = op->p.mac_len;
        op->keep = 1;
        return CKR_OK;
    }
    if (*outlen < op->p.mac_len) {
        *outlen = op->p.mac_len;
        op->keep = 1;
        return CKR_BUFFER_TOO_SMALL;
    }
    rv = mac_compute(op, in, inlen, single, mac);
    if (rv == CKR_OK) {
        memcpy(out, mac, op->p.mac_len);
        *outlen = op->p.mac_len;
    }
    OPENSSL_cleanse(mac, sizeof(mac));
    return rv;
}

CK_RV
mac_verify(struct mod_op *op, const unsigned char *in, size_t inlen, int single,
           const unsigned char *sig, size_t siglen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    CK_RV rv;

    rv = sym_lazy(op);
    if (rv != CKR_OK)
        return rv;

    if (siglen != op->p.mac_len)
        return CKR_SIGNATURE_LEN_RANGE;
    rv = mac_compute(op, in, inlen, single, mac);
    if (rv == CKR_OK && CRYPTO_memcmp(mac, sig, siglen) != 0)
        rv = CKR_SIGNATURE_INVALID;
    OPENSSL_cleanse(mac, sizeof(mac));
    return rv;
}
