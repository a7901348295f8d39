/*
 * store.c — the one path by which objects enter, change in and leave a
 * token's keystore and cache (store.h): the write rules, store one object,
 * store a pair or neither, and the lookup every object call starts with.
 */
#include <stdlib.h>
#include <string.h>

#include "mod_int.h"
#include "store.h"

obj_policy
store_policy_inlock(const struct mod_session *s)
{
    obj_policy p;

    memset(&p, 0, sizeof(p));
    p.so = s->tok->login == CKU_SO ? CK_TRUE : CK_FALSE;
    p.user = s->tok->login == CKU_USER ? CK_TRUE : CK_FALSE;
    return p;
}

/*
 * May session S create, change or destroy an object with these properties?
 * Standard rules (section 6.7.x): token objects need an R/W session, private
 * objects a user login. Deliberate deviation (docs/module.md): token objects
 * always need a login (user, or SO for public ones), because every stored
 * record is sealed or MAC'd under the token key, which only a login unwraps.
 */
CK_RV
store_write_check_inlock(const struct mod_session *s, CK_BBOOL token, CK_BBOOL priv)
{
    CK_USER_TYPE who = s->tok->login;

    if (token && !(s->flags & CKF_RW_SESSION))
        return CKR_SESSION_READ_ONLY;
    if (priv && who != CKU_USER)
        return CKR_USER_NOT_LOGGED_IN;
    if (token && who == MOD_NOBODY)
        return CKR_USER_NOT_LOGGED_IN;
    return CKR_OK;
}

CK_RV
store_lookup_relock(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, struct mod_session **sp,
                    struct mod_object **op, struct mod_token **locked)
{
    CK_RV rv;

    rv = session_enter_relock(h, sp, locked);
    if (rv != CKR_OK)
        return rv;
    rv = cache_sync_relock((*sp)->tok);
    if (rv != CKR_OK)
        return rv;
    return cache_lookup_inlock((*sp)->tok, oh, op);
}

/*
 * Keystore writes. With RELOCK the caller holds the token's lock and the
 * write (a transaction and its fsync) runs with the global lock released:
 * nothing of the token (cache, login, sessions) changes meanwhile, since
 * each of those changes needs the token lock (mod_int.h). Without RELOCK
 * (store_*_inlock) the global lock is kept throughout.
 */
#define STORE_IO(relock, stmt)                                                                     \
    do {                                                                                           \
        if (relock)                                                                                \
            mod_unlock();                                                                          \
        stmt;                                                                                      \
        if (relock)                                                                                \
            mod_lock();                                                                            \
    } while (0)

/* Remove object H of S's token again (store_pair's undo). */
static void
unstore(struct mod_session *s, CK_OBJECT_HANDLE h, int relock)
{
    struct mod_token *t = s->tok;
    struct mod_object *o = NULL;
    int token = h <= MOD_TOKEN_HANDLE_MAX;
    ks_rv kr = KS_OK;

    if (token) {
        STORE_IO(relock, kr = ks_object_destroy(t->ks, (int64_t)h));
        if (kr != KS_OK && kr != KS_E_NOT_FOUND) {
            /* Left stored: the reload shows it, so nothing lies about it. */
            mod_log("could not remove object %lu again: %s", (unsigned long)h,
                    ks_last_error(t->ks));
            cache_drop_inlock(t);
            return;
        }
    }
    if (cache_lookup_inlock(t, h, &o) == CKR_OK)
        cache_remove_inlock(t, o);
}

/* The stored object ID could not be cached: the caller is told the object
 * was not created, so it must not stay stored; if it cannot be removed, it
 * appears at the next reload, which is forced. */
static void
store_undo(struct mod_token *t, int64_t id, int relock)
{
    ks_rv kr;

    STORE_IO(relock, kr = ks_object_destroy(t->ks, id));
    if (kr != KS_OK && kr != KS_E_NOT_FOUND) {
        mod_log("object %lld not cached and could not be removed: %s", (long long)id,
                ks_last_error(t->ks));
        cache_drop_inlock(t);
    }
}

static CK_RV
store_object(struct mod_session *s, mod_attrs *attrs, const unsigned char *cred, size_t cred_len,
             CK_OBJECT_HANDLE *out, int relock)
{
    struct mod_token *t = s->tok;
    CK_BBOOL token = obj_bool(attrs, CKA_TOKEN, CK_FALSE);
    CK_BBOOL priv = obj_bool(attrs, CKA_PRIVATE, CK_FALSE);
    int64_t id = 0;
    ks_rv kr;
    CK_RV rv;

    rv = store_write_check_inlock(s, token, priv);
    if (rv != CKR_OK)
        goto fail;
    if (!token && cred != NULL) {
        rv = CKR_TEMPLATE_INCONSISTENT; /* a pending key is a token object */
        goto fail;
    }
    if (!token)
        return cache_add_session_inlock(t, s->h, attrs, out);
    if (cred != NULL)
        STORE_IO(relock, kr = ks_object_create_pending(t->ks, priv, attrs->a, attrs->n, cred,
                                                       cred_len, &id));
    else
        STORE_IO(relock, kr = ks_object_create(t->ks, priv, attrs->a, attrs->n, &id));
    if (kr != KS_OK) {
        rv = mod_ks_ckr(kr, t->ks, "ks_object_create");
        goto fail;
    }
    if (id <= 0 || (uint64_t)id > MOD_TOKEN_HANDLE_MAX) {
        /* Never expected (ids count up from 1); no handle can name it. */
        mod_log("new object id %lld out of handle range; removed", (long long)id);
        if (ks_object_destroy(t->ks, id) != KS_OK)
            mod_log("and could not be removed: %s", ks_last_error(t->ks));
        rv = CKR_DEVICE_MEMORY;
        goto fail;
    }
    rv = cache_add_token_inlock(t, (CK_OBJECT_HANDLE)id, attrs);
    if (rv != CKR_OK) {
        store_undo(t, id, relock); /* ATTRS was freed */
        return rv;
    }
    if (cred != NULL) {
        struct mod_object *o = NULL;

        if (cache_lookup_inlock(t, (CK_OBJECT_HANDLE)id, &o) == CKR_OK)
            o->pending = 1;
    }
    *out = (CK_OBJECT_HANDLE)id;
    return CKR_OK;
fail:
    obj_free(attrs);
    return rv;
}

static CK_RV
store_pair(struct mod_session *s, mod_attrs *a, mod_attrs *b, const unsigned char *cred,
           size_t cred_len, CK_OBJECT_HANDLE *ha, CK_OBJECT_HANDLE *hb, int relock)
{
    CK_OBJECT_HANDLE h1 = CK_INVALID_HANDLE, h2 = CK_INVALID_HANDLE;
    CK_RV rv;

    rv = store_write_check_inlock(s, obj_bool(a, CKA_TOKEN, CK_FALSE),
                                  obj_bool(a, CKA_PRIVATE, CK_FALSE));
    if (rv == CKR_OK)
        rv = store_write_check_inlock(s, obj_bool(b, CKA_TOKEN, CK_FALSE),
                                      obj_bool(b, CKA_PRIVATE, CK_FALSE));
    if (rv != CKR_OK) {
        obj_free(a);
        obj_free(b);
        return rv;
    }
    rv = store_object(s, a, cred, cred_len, &h1, relock);
    if (rv != CKR_OK) {
        obj_free(b);
        return rv;
    }
    rv = store_object(s, b, cred, cred_len, &h2, relock);
    if (rv != CKR_OK) {
        unstore(s, h1, relock);
        return rv;
    }
    *ha = h1;
    *hb = h2;
    return CKR_OK;
}

CK_RV
store_object_inlock(struct mod_session *s, mod_attrs *attrs, CK_OBJECT_HANDLE *out)
{
    return store_object(s, attrs, NULL, 0, out, 0);
}

CK_RV
store_object_ex_inlock(struct mod_session *s, mod_attrs *attrs, const unsigned char *cred,
                       size_t cred_len, CK_OBJECT_HANDLE *out)
{
    return store_object(s, attrs, cred, cred_len, out, 0);
}

CK_RV
store_object_relock(struct mod_session *s, mod_attrs *attrs, const unsigned char *cred,
                    size_t cred_len, CK_OBJECT_HANDLE *out)
{
    return store_object(s, attrs, cred, cred_len, out, 1);
}

CK_RV
store_pair_inlock(struct mod_session *s, mod_attrs *a, mod_attrs *b, CK_OBJECT_HANDLE *ha,
                  CK_OBJECT_HANDLE *hb)
{
    return store_pair(s, a, b, NULL, 0, ha, hb, 0);
}

CK_RV
store_pair_ex_inlock(struct mod_session *s, mod_attrs *a, mod_attrs *b, const unsigned char *cred,
                     size_t cred_len, CK_OBJECT_HANDLE *ha, CK_OBJECT_HANDLE *hb)
{
    return store_pair(s, a, b, cred, cred_len, ha, hb, 0);
}

CK_RV
store_pair_relock(struct mod_session *s, mod_attrs *a, mod_attrs *b, const unsigned char *cred,
                  size_t cred_len, CK_OBJECT_HANDLE *ha, CK_OBJECT_HANDLE *hb)
{
    return store_pair(s, a, b, cred, cred_len, ha, hb, 1);
}

ks_rv
store_ks_destroy_relock(struct mod_token *t, CK_OBJECT_HANDLE h)
{
    ks_rv kr;

    STORE_IO(1, kr = ks_object_destroy(t->ks, (int64_t)h));
    return kr;
}

ks_rv
store_ks_update_relock(struct mod_token *t, CK_OBJECT_HANDLE h, const mod_attrs *attrs)
{
    ks_rv kr;

    STORE_IO(1, kr = ks_object_update(t->ks, (int64_t)h, attrs->a, attrs->n));
    return kr;
}
