/*
 * op.c — bookkeeping of cryptographic operations (op_int.h): starting one
 * (mechanism, parameter and key checks), handing it to a thread that
 * computes with the global lock released, ending it, and what closing a
 * session, logging out, cancelling and CKU_CONTEXT_SPECIFIC do to it.
 *
 * Error codes at C_xInit (PKCS#11 3.0 sections 5.8-5.13), checked in this
 * order: CKR_OPERATION_ACTIVE (the session runs an operation: this token
 * does not do dual operations), CKR_MECHANISM_INVALID (not in the table, or
 * not for this function), CKR_MECHANISM_PARAM_INVALID, CKR_KEY_HANDLE_INVALID
 * (no such object for this login state, or not a key: private objects do not
 * exist without a user login, as everywhere in this module),
 * CKR_KEY_FUNCTION_NOT_PERMITTED (CKA_SIGN/VERIFY/ENCRYPT/DECRYPT not TRUE;
 * a public key has no CKA_SIGN), CKR_MECHANISM_INVALID (CKA_ALLOWED_MECHANISMS
 * excludes it), CKR_KEY_TYPE_INCONSISTENT, CKR_KEY_SIZE_RANGE, and
 * CKR_MECHANISM_PARAM_INVALID for parameters that do not fit the key.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "op_int.h"

static CK_FLAGS
kind_flag(enum op_kind kind)
{
    switch (kind) {
    case OP_SIGN:
        return CKF_SIGN;
    case OP_VERIFY:
        return CKF_VERIFY;
    case OP_ENCRYPT:
        return CKF_ENCRYPT;
    case OP_DECRYPT:
        return CKF_DECRYPT;
    case OP_DIGEST:
        return CKF_DIGEST;
    default:
        return 0;
    }
}

static CK_ATTRIBUTE_TYPE
kind_usage(enum op_kind kind)
{
    switch (kind) {
    case OP_SIGN:
        return CKA_SIGN;
    case OP_VERIFY:
        return CKA_VERIFY;
    case OP_ENCRYPT:
        return CKA_ENCRYPT;
    default:
        return CKA_DECRYPT;
    }
}

/* ---- operation structure ------------------------------------------------ */

/* Free what P owns (the IV and lengths need no wiping: not secret). */
static void
params_clear(struct op_params *p)
{
    if (p->label != NULL)
        OPENSSL_free(p->label);
    if (p->aad != NULL)
        OPENSSL_free(p->aad);
    p->label = p->aad = NULL;
    p->label_len = p->aad_len = 0;
}

static int
params_equal(const struct op_params *a, const struct op_params *b)
{
    return a->md == b->md && a->mgf == b->mgf && a->salt == b->salt &&
           a->label_len == b->label_len &&
           (a->label_len == 0 || memcmp(a->label, b->label, a->label_len) == 0);
}

void
op_drop_ctx(struct mod_op *op)
{
    EVP_PKEY_CTX_free(op->pctx);
    EVP_MD_CTX_free(op->hctx);
    EVP_MD_CTX_free(op->tmpl);
    EVP_MD_CTX_free(op->work);
    EVP_CIPHER_CTX_free(op->cctx); /* cleanses the key schedule */
    EVP_MAC_CTX_free(op->mctx);
    op->pctx = NULL;
    op->hctx = op->tmpl = op->work = NULL;
    op->cctx = NULL;
    op->mctx = NULL;
    op->ready = 0;
    op->lazy = 0;
}

/* Drop everything tied to a key and mechanism (not the buffers). */
static void
op_forget(struct mod_op *op)
{
    op_drop_ctx(op);
    EVP_PKEY_free(op->pkey);
    op->pkey = NULL;
    if (op->skey != NULL)
        sodium_memzero(op->skey, MOD_SECRET_MAX);
    op->skey_len = 0;
    params_clear(&op->p);
    op->m = NULL;
    op->kind = OP_NONE;
    op->priv = 0;
}

static void
op_free(struct mod_op *op)
{
    if (op == NULL)
        return;
    op_forget(op);
    if (op->buf != NULL)
        OPENSSL_clear_free(op->buf, op->cap);
    if (op->scratch != NULL)
        OPENSSL_clear_free(op->scratch, op->scap);
    if (op->skey != NULL)
        sodium_free(op->skey);
    free(op);
}

/* The operation is over; its contexts stay for reuse unless it is dead. */
void
op_finish_inlock(struct mod_op *op)
{
    op->active = 0;
    op->need_auth = op->authed = 0;
    op->multi = op->keep = 0;
    if (op->len > 0)
        OPENSSL_cleanse(op->buf, op->len);
    op->len = 0;
    if (op->fin_len > 0)
        OPENSSL_cleanse(op->scratch, op->fin_len); /* a result never collected */
    op->fin_done = 0;
    op->fin_len = 0;
    if (op->dead) {
        op_forget(op);
        op->dead = 0;
    }
}

CK_RV
op_buffer(struct mod_op *op, const unsigned char *in, size_t len)
{
    size_t need;
    unsigned char *p;

    if (len == 0)
        return CKR_OK;
    if (len > op->max_in - op->len)
        return CKR_DATA_LEN_RANGE;
    need = op->len + len;
    if (need > op->cap) {
        size_t ncap = op->cap ? op->cap : 256;
        while (ncap < need)
            ncap *= 2;
        if (ncap > op->max_in)
            ncap = op->max_in;
        /* Not realloc: the old buffer may hold a plaintext or a message
         * and is cleansed before it is freed. */
        p = OPENSSL_malloc(ncap);
        if (p == NULL)
            return CKR_HOST_MEMORY;
        if (op->len > 0)
            memcpy(p, op->buf, op->len);
        if (op->buf != NULL)
            OPENSSL_clear_free(op->buf, op->cap);
        op->buf = p;
        op->cap = ncap;
    }
    memcpy(op->buf + op->len, in, len);
    op->len += len;
    return CKR_OK;
}

CK_RV
op_scratch(struct mod_op *op, size_t n)
{
    if (n <= op->scap)
        return CKR_OK;
    if (op->scratch != NULL)
        OPENSSL_clear_free(op->scratch, op->scap);
    op->scap = 0;
    op->scratch = OPENSSL_malloc(n);
    if (op->scratch == NULL)
        return CKR_HOST_MEMORY;
    op->scap = n;
    return CKR_OK;
}

/* ---- parameters ---------------------------------------------------------- */

static CK_RV
params_parse(const struct mod_mech *m, const CK_MECHANISM *mech, struct op_params *p)
{
    memset(p, 0, sizeof(*p));
    p->md = m->md;
    if (mech->pParameter == NULL && mech->ulParameterLen != 0)
        return CKR_ARGUMENTS_BAD;
    if (MF_IS_SYM(m->fam))
        return sym_params(m, mech, p);
    switch (m->fam) {
    case MF_RSA_PSS: {
        const CK_RSA_PKCS_PSS_PARAMS *pp = mech->pParameter;
        int md;
        if (pp == NULL || mech->ulParameterLen != sizeof(*pp))
            return CKR_MECHANISM_PARAM_INVALID;
        md = md_by_mech(pp->hashAlg);
        /* The hashing variants sign with their own hash: hashAlg must name
         * it (PKCS#11 3.0 section 2.1.14). */
        if (md == MD_NONE || (m->md != MD_NONE && md != m->md))
            return CKR_MECHANISM_PARAM_INVALID;
        p->md = md;
        p->mgf = md_by_mgf(pp->mgf);
        if (p->mgf == MD_NONE)
            return CKR_MECHANISM_PARAM_INVALID;
        p->salt = pp->sLen;
        return CKR_OK;
    }
    case MF_RSA_OAEP: {
        const CK_RSA_PKCS_OAEP_PARAMS *op = mech->pParameter;
        if (op == NULL || mech->ulParameterLen != sizeof(*op))
            return CKR_MECHANISM_PARAM_INVALID;
        p->md = md_by_mech(op->hashAlg);
        p->mgf = md_by_mgf(op->mgf);
        if (p->md == MD_NONE || p->mgf == MD_NONE)
            return CKR_MECHANISM_PARAM_INVALID;
        /* CKZ_DATA_SPECIFIED is the only source (section 2.1.8); 0 with no
         * label is accepted too, as some applications pass it. */
        if (op->source != CKZ_DATA_SPECIFIED && !(op->source == 0 && op->ulSourceDataLen == 0))
            return CKR_MECHANISM_PARAM_INVALID;
        if (op->ulSourceDataLen > 0) {
            if (op->pSourceData == NULL || op->ulSourceDataLen > 0x10000)
                return CKR_MECHANISM_PARAM_INVALID;
            p->label = OPENSSL_memdup(op->pSourceData, op->ulSourceDataLen);
            if (p->label == NULL)
                return CKR_HOST_MEMORY;
            p->label_len = op->ulSourceDataLen;
        }
        return CKR_OK;
    }
    case MF_EDDSA: {
        const struct op_eddsa_params *ep = mech->pParameter;
        if (mech->ulParameterLen == 0)
            return CKR_OK;
        if (ep == NULL || mech->ulParameterLen != sizeof(*ep))
            return CKR_MECHANISM_PARAM_INVALID;
        /* Pure EdDSA only: OpenSSL 3.0 has neither Ed25519ph/Ed448ph nor
         * context strings. phFlag FALSE without context is pure EdDSA. */
        if (ep->phFlag != CK_FALSE || ep->ulContextDataLen != 0)
            return CKR_MECHANISM_PARAM_INVALID;
        return CKR_OK;
    }
    default:
        /* No parameters (a non-NULL pointer with length 0 is tolerated). */
        if (mech->ulParameterLen != 0)
            return CKR_MECHANISM_PARAM_INVALID;
        return CKR_OK;
    }
}

/* ---- key ----------------------------------------------------------------- */

static CK_RV
key_check_inlock(struct mod_session *s, enum op_kind kind, const struct mod_mech *m,
                 CK_OBJECT_HANDLE key, const struct op_params *p, EVP_PKEY **pkey,
                 const ks_attr **sval, int *priv, int *need_auth)
{
    struct mod_token *t = s->tok;
    struct mod_object *o = NULL;
    const ks_attr *allowed;
    CK_OBJECT_CLASS cls;
    CK_OBJECT_CLASS want =
        (kind == OP_SIGN || kind == OP_DECRYPT) ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY;
    int bits;
    CK_RV rv;

    rv = cache_lookup_key_inlock(t, key, &o);
    if (rv == CKR_OBJECT_HANDLE_INVALID)
        return CKR_KEY_HANDLE_INVALID;
    if (rv != CKR_OK)
        return rv;
    cls = obj_ulong(o->attrs, CKA_CLASS, CK_UNAVAILABLE_INFORMATION);
    if (cls != CKO_PRIVATE_KEY && cls != CKO_PUBLIC_KEY && cls != CKO_SECRET_KEY)
        return CKR_KEY_HANDLE_INVALID;
    if (!obj_bool(o->attrs, kind_usage(kind), CK_FALSE))
        return CKR_KEY_FUNCTION_NOT_PERMITTED;
    allowed = obj_find(o->attrs, CKA_ALLOWED_MECHANISMS);
    if (allowed != NULL && allowed->len > 0) {
        const CK_MECHANISM_TYPE *list = (const CK_MECHANISM_TYPE *)(const void *)allowed->value;
        size_t n = allowed->len / sizeof(CK_MECHANISM_TYPE), i;
        for (i = 0; i < n && list[i] != m->type; i++)
            ;
        if (i == n)
            return CKR_MECHANISM_INVALID;
    }
    if (MF_IS_SYM(m->fam)) {
        /* A secret key: its value, copied by the caller under the lock. */
        const ks_attr *v = obj_find(o->attrs, CKA_VALUE);
        if (cls != CKO_SECRET_KEY ||
            obj_ulong(o->attrs, CKA_KEY_TYPE, CK_UNAVAILABLE_INFORMATION) != m->key_type)
            return CKR_KEY_TYPE_INCONSISTENT;
        if (v == NULL || !sym_key_size_ok(m, v->len))
            return CKR_KEY_SIZE_RANGE;
        *sval = v;
        *priv = o->priv;
        *need_auth = 0;
        return CKR_OK;
    }
    if (cls != want || obj_ulong(o->attrs, CKA_KEY_TYPE, CK_UNAVAILABLE_INFORMATION) != m->key_type)
        return CKR_KEY_TYPE_INCONSISTENT;
    rv = cache_pkey_inlock(o, pkey);
    if (rv != CKR_OK)
        return rv;
    bits = EVP_PKEY_get_bits(*pkey);
    if (m->key_type != CKK_EC_EDWARDS &&
        (bits < (int)m->info.ulMinKeySize || bits > (int)m->info.ulMaxKeySize))
        rv = CKR_KEY_SIZE_RANGE;
    if (rv == CKR_OK && m->fam == MF_RSA_PSS) {
        /* RFC 8017 section 9.1.1: emLen >= hLen + sLen + 2, emLen =
         * ceil((modBits - 1) / 8). */
        size_t emlen = ((size_t)bits - 1 + 7) / 8, hlen = md_info(p->md)->len;
        if (emlen < hlen + 2 || p->salt > emlen - hlen - 2)
            rv = CKR_MECHANISM_PARAM_INVALID;
    }
    if (rv == CKR_OK && m->fam == MF_RSA_OAEP) {
        size_t k = (size_t)EVP_PKEY_get_size(*pkey), hlen = md_info(p->md)->len;
        if (k < 2 * hlen + 2)
            rv = CKR_KEY_SIZE_RANGE; /* no message fits */
    }
    if (rv != CKR_OK) {
        EVP_PKEY_free(*pkey);
        *pkey = NULL;
        return rv;
    }
    *priv = o->priv;
    *need_auth = cls == CKO_PRIVATE_KEY && obj_bool(o->attrs, CKA_ALWAYS_AUTHENTICATE, CK_FALSE);
    return CKR_OK;
}

/* ---- start, acquire, release -------------------------------------------- */

/* The locked part of op_start: check the mechanism and the key, attach (or
 * reuse) the session's operation and mark it active and busy (*OUT). */
static CK_RV
op_begin(CK_SESSION_HANDLE hs, enum op_kind kind, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key,
         struct mod_op **out)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    struct mod_op *op;
    const struct mod_mech *m;
    struct op_params p;
    EVP_PKEY *pkey = NULL;
    const ks_attr *sval = NULL;
    int priv = 0, need_auth = 0, same_key, reuse;
    CK_RV rv, sync = CKR_OK;

    p.label = p.aad = NULL; /* params_parse fills the rest */
    mod_lock();
    rv = session_lookup_inlock(hs, &s);
    /* The key's object: trusted from the cache when it was checked less
     * than MOD_SYNC_RECENT ago (no token lock, no keystore); else the
     * token lock and a sync first (its error counts where the key does). */
    if (rv == CKR_OK && kind != OP_DIGEST && !cache_recent_inlock(s->tok)) {
        rv = session_enter_relock(hs, &s, &locked);
        if (rv == CKR_OK)
            sync = cache_sync_relock(s->tok);
    }
    if (rv != CKR_OK)
        goto out;
    if (s->op != NULL && (s->op->active || s->op->busy)) {
        rv = CKR_OPERATION_ACTIVE;
        goto out;
    }
    /* The mechanism of the last operation is the likely one (the table is
     * searched linearly). */
    m = s->op != NULL && s->op->m != NULL && s->op->m->type == mech->mechanism
            ? s->op->m
            : mech_find(mech->mechanism);
    if (m == NULL || !(m->info.flags & kind_flag(kind))) {
        rv = CKR_MECHANISM_INVALID;
        goto out;
    }
    rv = params_parse(m, mech, &p);
    if (rv != CKR_OK)
        goto out;
    if (kind != OP_DIGEST) {
        rv = sync != CKR_OK
                 ? sync
                 : key_check_inlock(s, kind, m, key, &p, &pkey, &sval, &priv, &need_auth);
        if (rv != CKR_OK)
            goto out;
    }
    if (s->op == NULL) {
        s->op = calloc(1, sizeof(*s->op));
        if (s->op == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
    }
    op = s->op;
    if (sval != NULL) {
        /* Secret keys are compared by value (an object may go and another
         * come at the same address), in constant time (CRYPTO_memcmp: the
         * assembly one, several times faster than sodium_memcmp). */
        same_key =
            op->skey_len == sval->len && CRYPTO_memcmp(op->skey, sval->value, sval->len) == 0;
        if (op->skey == NULL) {
            if (sodium_init() < 0 || (op->skey = sodium_malloc(MOD_SECRET_MAX)) == NULL) {
                rv = CKR_HOST_MEMORY;
                goto out;
            }
        }
    } else {
        same_key = op->pkey == pkey && op->skey_len == 0;
    }
    reuse = op->ready && op->kind == kind && op->m == m && same_key && params_equal(&op->p, &p);
    if (reuse) {
        /* Same key, mechanism and parameters as last time: reuse the
         * contexts. Per-operation parameters (IV, AAD) are taken anew. */
        EVP_PKEY_free(pkey);
        params_clear(&op->p);
        op->p = p;
        p.label = p.aad = NULL; /* now op->p's */
    } else {
        op_forget(op);
        op->kind = kind;
        op->m = m;
        op->p = p;
        op->pkey = pkey;
        p.label = p.aad = NULL;
        if (sval != NULL) {
            memcpy(op->skey, sval->value, sval->len);
            op->skey_len = sval->len;
        }
    }
    pkey = NULL;
    op->priv = priv;
    op->need_auth = need_auth;
    op->authed = 0;
    op->multi = op->keep = 0;
    op->len = 0;
    op->gen++;
    op->active = 1;
    if (reuse && MF_IS_SYM(m->fam)) {
        /* Nothing left to prepare but the IV / MAC restart, which the
         * first call using the operation does (op_sym.c): the operation
         * starts idle, without a second trip through the lock. */
        op->lazy = 1;
        goto out;
    }
    op->lazy = 0;
    op->busy = 1;
    mod_g.inflight++;
    *out = op;
out:
    EVP_PKEY_free(pkey);
    params_clear(&p);
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

CK_RV
op_start(CK_SESSION_HANDLE hs, enum op_kind kind, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    struct mod_op *op = NULL;
    CK_RV rv;

    rv = op_begin(hs, kind, mech, key, &op);
    if (rv != CKR_OK || op == NULL) /* NULL: started, nothing to prepare */
        return rv;
    /* Without the lock: the OpenSSL contexts of a busy operation. */
    switch (MF_IS_SYM(op->m != NULL ? op->m->fam : MF_DIGEST) ? OP_NONE : kind) {
    case OP_NONE:
        rv = sym_prepare(op);
        break;
    case OP_SIGN:
    case OP_VERIFY:
        rv = sign_prepare(op);
        break;
    case OP_ENCRYPT:
    case OP_DECRYPT:
        rv = cipher_prepare(op);
        break;
    default:
        rv = digest_prepare(op);
        break;
    }
    if (rv != CKR_OK)
        op_drop_ctx(op);
    op_err_clear();
    return op_release(op, rv, 1);
}

CK_RV
op_acquire(CK_SESSION_HANDLE hs, enum op_kind kind, struct mod_op **out)
{
    struct mod_session *s = NULL;
    struct mod_op *op;
    CK_RV rv;

    mod_lock();
    rv = session_lookup_inlock(hs, &s);
    if (rv != CKR_OK)
        goto out;
    op = s->op;
    if (op == NULL || !op->active || op->kind != kind) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
        goto out;
    }
    if (op->busy) {
        /* Another thread is in a call on this same session. */
        rv = CKR_OPERATION_ACTIVE;
        goto out;
    }
    op->busy = 1;
    op->keep = 0;
    mod_g.inflight++;
    *out = op;
out:
    mod_unlock();
    return rv;
}

CK_RV
op_release(struct mod_op *op, CK_RV rv, int cont)
{
    mod_lock();
    mod_g.inflight--;
    op->busy = 0;
    if (op->orphan) {
        /* The session closed meanwhile: nobody else has this operation. */
        op_free(op);
        if (rv == CKR_OK && cont)
            rv = CKR_SESSION_CLOSED;
        goto done;
    }
    if (op->dead) {
        /* Logged out (or cancelled) meanwhile: the key goes now. */
        op_finish_inlock(op);
        if (rv == CKR_OK && cont)
            rv = CKR_USER_NOT_LOGGED_IN;
    } else if (!op->keep && !(cont && rv == CKR_OK)) {
        op_finish_inlock(op);
    }
    op->keep = 0;
done:
    mod_unlock();
    return rv;
}

/* ---- session events ------------------------------------------------------ */

void
op_session_close_inlock(struct mod_session *s)
{
    struct mod_op *op = s->op;

    s->op = NULL;
    if (op == NULL)
        return;
    if (op->busy)
        op->orphan = 1;
    else
        op_free(op);
}

void
op_logout_inlock(struct mod_token *t)
{
    for (struct mod_session *s = mod_g.sessions; s != NULL; s = s->next) {
        struct mod_op *op = s->op;
        if (s->tok != t || op == NULL || (op->pkey == NULL && op->skey_len == 0) || !op->priv)
            continue;
        if (op->busy) {
            op->dead = 1;
        } else {
            op->dead = 1;
            op_finish_inlock(op);
        }
    }
}

void
op_cancel_inlock(struct mod_session *s, CK_FLAGS flags)
{
    struct mod_op *op = s->op;

    if (op == NULL || !op->active || !(flags & kind_flag(op->kind)))
        return;
    if (op->busy)
        op->dead = 1; /* ended by the thread working on it */
    else
        op_finish_inlock(op);
}

struct mod_op *
op_auth_pending_inlock(struct mod_session *s, unsigned *gen)
{
    struct mod_op *op = s->op;

    if (op == NULL || !op->active || !op->need_auth)
        return NULL;
    *gen = op->gen;
    return op;
}

CK_RV
op_auth_done_inlock(struct mod_session *s, const struct mod_op *op, unsigned gen)
{
    if (s->op != op || !s->op->active || s->op->gen != gen || !s->op->need_auth)
        return CKR_OPERATION_NOT_INITIALIZED;
    if (s->op->busy)
        return CKR_OPERATION_ACTIVE;
    s->op->authed = 1;
    return CKR_OK;
}
