/*
 * find.c — C_FindObjectsInit, C_FindObjects, C_FindObjectsFinal: a search
 * takes a snapshot of the matching handles (using the token's CKA_ID and
 * CKA_LABEL indexes when the template has either, and on a partial cache
 * the keystore's lookup columns) and returns them in turn.
 */
#include <stdlib.h>
#include <string.h>

#include "mod_int.h"

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
    return o != NULL && (o->pending != 0) == (pending != CK_FALSE) && !o->retired &&
           cache_visible(t, o) && obj_match(o->attrs, tmpl, n);
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
    struct mod_token *locked = NULL;
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
    rv = session_enter_relock(h, &s, &locked);
    if (rv != CKR_OK)
        goto out;
    if (s->find_active) {
        rv = CKR_OPERATION_ACTIVE;
        goto out;
    }
    t = s->tok;
    rv = cache_sync_relock(t);
    if (rv != CKR_OK)
        goto out;
    /* A snapshot of the matching handles: objects created later are not
     * found by this search; destroyed ones are skipped when returned. With
     * CKA_ID or CKA_LABEL in the template, the stored objects looked at are
     * the index's candidates for that value (still matched in full); a
     * partial cache first reads those from the keystore (one indexed
     * search). Any other template scans every cached object: with
     * another attribute the keystore indexes (cache_resolve_tmpl_relock)
     * those are all that can match, else the whole token is loaded. */
    for (int j = 0; j < MOD_IX_COUNT && k < 0 && rv == CKR_OK; j++)
        for (CK_ULONG i = 0; i < n2; i++)
            if (t2[i].type == cache_ix_type(j)) {
                rv = cache_resolve_relock(t, j, t2[i].pValue, t2[i].ulValueLen);
                if (rv == CKR_OK &&
                    cache_ix_lookup_inlock(t, j, t2[i].pValue, t2[i].ulValueLen, &first))
                    k = j;
                break;
            }
    if (rv == CKR_OK && k < 0) {
        int done = 0;

        /* Another indexed attribute: the cache then holds every object
         * that can match, scanned below; none: the whole token. */
        rv = cache_resolve_tmpl_relock(t, t2, n2, &done);
        if (rv == CKR_OK && !done)
            rv = cache_sync_full_relock(t);
    }
    if (rv != CKR_OK)
        goto out;
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
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    free(owned);
    return rv;
}

CK_RV
mod_C_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR count)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    struct mod_object *o;
    CK_ULONG k = 0;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (out == NULL || count == NULL)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = session_enter_relock(h, &s, &locked);
    if (rv != CKR_OK)
        goto out;
    if (!s->find_active) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
        goto out;
    }
    /* No sync with the keystore here: the search is the snapshot
     * C_FindObjectsInit took. Another process's change since then (a
     * credential rollover retiring the objects found) is seen by the next
     * search; applying it now would return neither the old objects nor the
     * new ones. Skip only what this process destroyed or made invisible (a
     * logout) since the search started. */
    while (k < max && s->pos < s->nfound) {
        CK_OBJECT_HANDLE oh = s->found[s->pos++];
        if (cache_lookup_inlock(s->tok, oh, &o) == CKR_OK)
            out[k++] = oh;
    }
    *count = k;
out:
    if (locked != NULL)
        tok_unlock_inlock(locked);
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
