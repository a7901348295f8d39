/*
 * find.c — object management entry points: create, copy, destroy, size,
 * get/set attributes, and find.
 *
 * Module core decides whether the caller may touch an object (session kind,
 * login state, visibility); the object layer (object.h) decides what the
 * object may become. Every lookup first syncs the token's cache so changes
 * made by other processes are seen.
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
store_lookup_inlock(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, struct mod_session **sp,
                    struct mod_object **op)
{
    CK_RV rv;

    rv = session_lookup_inlock(h, sp);
    if (rv != CKR_OK)
        return rv;
    rv = cache_sync_inlock((*sp)->tok);
    if (rv != CKR_OK)
        return rv;
    return cache_lookup_inlock((*sp)->tok, oh, op);
}

/* Remove object H of S's token again (store_pair_inlock's undo). */
static void
unstore_inlock(struct mod_session *s, CK_OBJECT_HANDLE h)
{
    struct mod_token *t = s->tok;
    struct mod_object *o = NULL;
    int token = h <= MOD_TOKEN_HANDLE_MAX;
    ks_rv kr;

    if (token) {
        kr = ks_object_destroy(t->ks, (int64_t)h);
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

CK_RV
store_object_inlock(struct mod_session *s, mod_attrs *attrs, CK_OBJECT_HANDLE *out)
{
    return store_object_ex_inlock(s, attrs, NULL, 0, out);
}

CK_RV
store_object_ex_inlock(struct mod_session *s, mod_attrs *attrs, const unsigned char *cred,
                       size_t cred_len, CK_OBJECT_HANDLE *out)
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
        kr = ks_object_create_pending(t->ks, priv, attrs->a, attrs->n, cred, cred_len, &id);
    else
        kr = ks_object_create(t->ks, priv, attrs->a, attrs->n, &id);
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
        /* ATTRS was freed. The caller is told the object was not created,
         * so it must not stay stored; if it cannot be removed, it appears
         * at the next reload, which is forced. */
        kr = ks_object_destroy(t->ks, id);
        if (kr != KS_OK && kr != KS_E_NOT_FOUND) {
            mod_log("object %lld not cached and could not be removed: %s", (long long)id,
                    ks_last_error(t->ks));
            cache_drop_inlock(t);
        }
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

CK_RV
store_pair_inlock(struct mod_session *s, mod_attrs *a, mod_attrs *b, CK_OBJECT_HANDLE *ha,
                  CK_OBJECT_HANDLE *hb)
{
    return store_pair_ex_inlock(s, a, b, NULL, 0, ha, hb);
}

CK_RV
store_pair_ex_inlock(struct mod_session *s, mod_attrs *a, mod_attrs *b, const unsigned char *cred,
                     size_t cred_len, CK_OBJECT_HANDLE *ha, CK_OBJECT_HANDLE *hb)
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
    rv = store_object_ex_inlock(s, a, cred, cred_len, &h1);
    if (rv != CKR_OK) {
        obj_free(b);
        return rv;
    }
    rv = store_object_ex_inlock(s, b, cred, cred_len, &h2);
    if (rv != CKR_OK) {
        unstore_inlock(s, h1);
        return rv;
    }
    *ha = h1;
    *hb = h2;
    return CKR_OK;
}

CK_RV
mod_C_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
    struct mod_session *s = NULL;
    mod_attrs *attrs = NULL;
    CK_ATTRIBUTE *t2 = NULL;
    CK_ULONG n2 = 0;
    CK_BBOOL commit = CK_FALSE;
    obj_policy pol;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (out == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = obj_template_check(tmpl, n);
    if (rv != CKR_OK)
        return rv;
    /* The rollover commit is a certificate template with a vendor flag. */
    rv = rollover_strip(tmpl, n, CKA_EVERTOKEN_COMMIT_ROLLOVER, &t2, &n2, &commit);
    if (rv != CKR_OK)
        return rv;
    mod_lock();
    rv = session_lookup_inlock(h, &s);
    if (rv != CKR_OK)
        goto out;
    pol = store_policy_inlock(s);
    rv = obj_from_template(t2, n2, &pol, &attrs);
    if (rv != CKR_OK)
        goto out;
    if (commit)
        rv = rollover_commit_inlock(s, attrs, out);
    else
        rv = store_object_inlock(s, attrs, out);
out:
    mod_unlock();
    free(t2);
    return rv;
}

CK_RV
mod_C_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,
                 CK_OBJECT_HANDLE_PTR out)
{
    struct mod_session *s = NULL;
    struct mod_object *o = NULL;
    mod_attrs *attrs = NULL;
    obj_policy pol;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (out == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = obj_template_check(tmpl, n);
    if (rv != CKR_OK)
        return rv;
    mod_lock();
    rv = store_lookup_inlock(h, oh, &s, &o);
    if (rv != CKR_OK)
        goto out;
    if (o->profile) {
        /* The token has exactly one profile object. */
        rv = CKR_ACTION_PROHIBITED;
        goto out;
    }
    pol = store_policy_inlock(s);
    rv = obj_copy(o->attrs, tmpl, n, &pol, &attrs);
    if (rv != CKR_OK)
        goto out;
    rv = store_object_inlock(s, attrs, out);
out:
    mod_unlock();
    return rv;
}

CK_RV
mod_C_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh)
{
    struct mod_session *s = NULL;
    struct mod_object *o = NULL;
    ks_rv kr;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    mod_lock();
    rv = store_lookup_inlock(h, oh, &s, &o);
    if (rv != CKR_OK)
        goto out;
    if (o->profile) {
        rv = CKR_ACTION_PROHIBITED;
        goto out;
    }
    rv = store_write_check_inlock(s, o->token, o->priv);
    if (rv != CKR_OK)
        goto out;
    if (!obj_bool(o->attrs, CKA_DESTROYABLE, CK_TRUE)) {
        rv = CKR_ACTION_PROHIBITED;
        goto out;
    }
    if (o->token) {
        kr = ks_object_destroy(s->tok->ks, (int64_t)o->h);
        /* Already destroyed by another process: gone either way. */
        if (kr != KS_OK && kr != KS_E_NOT_FOUND) {
            rv = mod_ks_ckr(kr, s->tok->ks, "ks_object_destroy");
            goto out;
        }
        if (kr == KS_E_NOT_FOUND)
            rv = CKR_OBJECT_HANDLE_INVALID;
    }
    cache_remove_inlock(s->tok, o);
out:
    mod_unlock();
    return rv;
}

CK_RV
mod_C_GetObjectSize(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ULONG_PTR size)
{
    struct mod_session *s = NULL;
    struct mod_object *o = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (size == NULL)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = store_lookup_inlock(h, oh, &s, &o);
    if (rv == CKR_OK)
        *size = obj_size(o->attrs);
    mod_unlock();
    return rv;
}

CK_RV
mod_C_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
    struct mod_session *s = NULL;
    struct mod_object *o = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    /* pValue NULL is a length query here, so obj_template_check does not
     * apply; only the array itself must exist. */
    if (tmpl == NULL && n > 0)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = store_lookup_inlock(h, oh, &s, &o);
    if (rv == CKR_OK)
        rv = obj_get(o->attrs, tmpl, n);
    mod_unlock();
    return rv;
}

CK_RV
mod_C_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
    struct mod_session *s = NULL;
    struct mod_object *o = NULL;
    mod_attrs *attrs = NULL;
    obj_policy pol;
    ks_rv kr;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    rv = obj_template_check(tmpl, n);
    if (rv != CKR_OK)
        return rv;
    mod_lock();
    rv = store_lookup_inlock(h, oh, &s, &o);
    if (rv != CKR_OK)
        goto out;
    if (o->profile) {
        rv = CKR_ACTION_PROHIBITED; /* CKA_MODIFIABLE is FALSE */
        goto out;
    }
    rv = store_write_check_inlock(s, o->token, o->priv);
    if (rv != CKR_OK)
        goto out;
    pol = store_policy_inlock(s);
    rv = obj_set(o->attrs, tmpl, n, &pol, &attrs);
    if (rv != CKR_OK)
        goto out;
    /* Where an object lives and whether it is sealed cannot change in
     * place (copy it instead). */
    if (obj_bool(attrs, CKA_TOKEN, CK_FALSE) != obj_bool(o->attrs, CKA_TOKEN, CK_FALSE) ||
        obj_bool(attrs, CKA_PRIVATE, CK_FALSE) != obj_bool(o->attrs, CKA_PRIVATE, CK_FALSE)) {
        rv = CKR_ATTRIBUTE_READ_ONLY;
        goto out;
    }
    if (o->token) {
        kr = ks_object_update(s->tok->ks, (int64_t)o->h, attrs->a, attrs->n);
        if (kr != KS_OK) {
            rv = mod_ks_ckr(kr, s->tok->ks, "ks_object_update");
            goto out;
        }
    }
    /* Also drops the OpenSSL key built from the old set (a new set may
     * later reuse the old one's address). */
    cache_set_attrs_inlock(s->tok, o, attrs);
    attrs = NULL;
out:
    obj_free(attrs);
    mod_unlock();
    return rv;
}

/* ---- find --------------------------------------------------------------- */

void
find_end(struct mod_session *s)
{
    free(s->found);
    s->found = NULL;
    s->nfound = s->pos = 0;
    s->find_active = 0;
}

/* Pending rollover keys are found only by a template that asks for them
 * with CKA_EVERTOKEN_PENDING = TRUE, and then nothing else is
 * (docs/rollover.md): an application's ordinary search never sees them. */
static int
find_match(const struct mod_token *t, const struct mod_object *o, const CK_ATTRIBUTE *tmpl,
           CK_ULONG n, CK_BBOOL pending)
{
    return o != NULL && (o->pending != 0) == (pending != CK_FALSE) && cache_visible(t, o) &&
           obj_match(o->attrs, tmpl, n);
}

static int
handle_cmp(const void *a, const void *b)
{
    CK_OBJECT_HANDLE x = *(const CK_OBJECT_HANDLE *)a, y = *(const CK_OBJECT_HANDLE *)b;

    return x < y ? -1 : x > y;
}

CK_RV
mod_C_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
    struct mod_session *s = NULL;
    struct mod_token *t;
    CK_OBJECT_HANDLE *found = NULL;
    CK_ATTRIBUTE *owned = NULL;
    const CK_ATTRIBUTE *t2 = tmpl;
    CK_ULONG n2 = n;
    CK_BBOOL pending = CK_FALSE;
    struct mod_object *first = NULL;
    size_t cap, nf = 0;
    int k = -1;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    rv = obj_template_check(tmpl, n);
    if (rv != CKR_OK)
        return rv;
    /* Only a template asking for pending keys is copied without the flag:
     * an ordinary search allocates nothing here. */
    for (CK_ULONG i = 0; i < n && owned == NULL; i++)
        if (tmpl[i].type == CKA_EVERTOKEN_PENDING) {
            rv = rollover_strip(tmpl, n, CKA_EVERTOKEN_PENDING, &owned, &n2, &pending);
            if (rv != CKR_OK)
                return rv;
            t2 = owned;
        }
    mod_lock();
    rv = session_lookup_inlock(h, &s);
    if (rv != CKR_OK)
        goto out;
    if (s->find_active) {
        rv = CKR_OPERATION_ACTIVE;
        goto out;
    }
    t = s->tok;
    rv = cache_sync_inlock(t);
    if (rv != CKR_OK)
        goto out;
    /* A snapshot of the matching handles: objects created later are not
     * found by this search; destroyed ones are skipped when returned. With
     * CKA_ID or CKA_LABEL in the template, the stored objects looked at are
     * the index's candidates for that value (still matched in full). */
    for (int j = 0; j < MOD_IX_COUNT && k < 0; j++)
        for (CK_ULONG i = 0; i < n2; i++)
            if (t2[i].type == cache_ix_type(j)) {
                if (cache_ix_lookup_inlock(t, j, t2[i].pValue, t2[i].ulValueLen, &first))
                    k = j;
                break;
            }
    cap = 1;
    if (k >= 0) {
        for (struct mod_object *o = first; o != NULL; o = o->ix_next[k])
            cap++;
    } else {
        cap += t->nobjs;
    }
    for (struct mod_object *o = t->sobjs; o != NULL; o = o->next)
        cap++;
    found = malloc(cap * sizeof(*found));
    if (found == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    if (find_match(t, t->prof, t2, n2, pending))
        found[nf++] = t->prof->h;
    if (k >= 0) {
        size_t from = nf;

        for (struct mod_object *o = first; o != NULL; o = o->ix_next[k])
            if (find_match(t, o, t2, n2, pending))
                found[nf++] = o->h;
        /* In handle order, as the scan returns them. */
        if (nf - from > 1)
            qsort(found + from, nf - from, sizeof(*found), handle_cmp);
    } else {
        for (size_t i = 0; i < t->nobjs; i++)
            if (find_match(t, t->objs[i], t2, n2, pending))
                found[nf++] = t->objs[i]->h;
    }
    for (struct mod_object *o = t->sobjs; o != NULL; o = o->next)
        if (find_match(t, o, t2, n2, pending))
            found[nf++] = o->h;
    s->found = found;
    s->nfound = nf;
    s->pos = 0;
    s->find_active = 1;
out:
    mod_unlock();
    free(owned);
    return rv;
}

CK_RV
mod_C_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR count)
{
    struct mod_session *s = NULL;
    struct mod_object *o;
    CK_ULONG k = 0;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (out == NULL || count == NULL)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = session_lookup_inlock(h, &s);
    if (rv != CKR_OK)
        goto out;
    if (!s->find_active) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
        goto out;
    }
    rv = cache_sync_inlock(s->tok);
    if (rv != CKR_OK)
        goto out;
    /* Skip handles destroyed (or made invisible by a logout) since the
     * search started. */
    while (k < max && s->pos < s->nfound) {
        CK_OBJECT_HANDLE oh = s->found[s->pos++];
        if (cache_lookup_inlock(s->tok, oh, &o) == CKR_OK)
            out[k++] = oh;
    }
    *count = k;
out:
    mod_unlock();
    return rv;
}

CK_RV
mod_C_FindObjectsFinal(CK_SESSION_HANDLE h)
{
    struct mod_session *s = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    mod_lock();
    rv = session_lookup_inlock(h, &s);
    if (rv != CKR_OK)
        goto out;
    if (!s->find_active) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
        goto out;
    }
    find_end(s);
out:
    mod_unlock();
    return rv;
}
