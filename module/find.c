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
    if (s->tok != NULL)
        s->tok->evict_at = 0; /* what it held may go now (cache_mem.c) */
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

struct find_args {
    const CK_ATTRIBUTE *tmpl;
    CK_ULONG n;
    CK_BBOOL pending;
};

static int
find_cb(const struct mod_token *t, const struct mod_object *o, void *arg)
{
    const struct find_args *a = arg;

    return find_match(t, o, a->tmpl, a->n, a->pending);
}

/* Which stored objects a search looks at (all in the cache unless
 * streamed): *K the index whose chain from *FIRST holds the candidates,
 * or -1: every cached object, or (*STREAM) every stored one, read from
 * the keystore by cache_stream_relock. */
static CK_RV
find_plan_relock(struct mod_token *t, const struct find_args *a, int *k, struct mod_object **first,
                 int *stream, const CK_ATTRIBUTE **by)
{
    CK_RV rv = CKR_OK;
    int done = 0;

    *k = -1;
    *first = NULL;
    *stream = 0;
    *by = NULL;
    for (int j = 0; j < MOD_IX_COUNT && *k < 0 && rv == CKR_OK; j++)
        for (CK_ULONG i = 0; i < a->n; i++)
            if (a->tmpl[i].type == cache_ix_type(j)) {
                rv = cache_resolve_relock(t, j, a->tmpl[i].pValue, a->tmpl[i].ulValueLen);
                if (rv == CKR_OK &&
                    cache_ix_lookup_inlock(t, j, a->tmpl[i].pValue, a->tmpl[i].ulValueLen, first))
                    *k = j;
                break;
            }
    if (rv != CKR_OK || *k >= 0)
        return rv;
    /* Another indexed attribute: the cache then holds every object that
     * can match, scanned (or, too many of them to cache, *BY: they are
     * streamed); none: a partial cache streams the token. */
    rv = cache_resolve_tmpl_relock(t, a->tmpl, a->n, &done, by);
    if (rv == CKR_OK && !done && !t->loaded)
        *stream = 1;
    return rv;
}

/* The search's snapshot: the profile object, the stored objects (as
 * find_plan_relock says; STREAMED the handles a stream found), the session
 * objects. */
static CK_RV
find_collect_inlock(struct mod_token *t, const struct find_args *a, int k, struct mod_object *first,
                    const CK_OBJECT_HANDLE *streamed, size_t ns, int stream, CK_OBJECT_HANDLE **out,
                    size_t *nout)
{
    CK_OBJECT_HANDLE *found;
    size_t cap = 1, nf = 0;

    if (k >= 0) {
        for (struct mod_object *o = first; o != NULL; o = o->ix_next[k])
            cap++;
    } else {
        cap += stream ? ns : t->nobjs;
    }
    for (struct mod_object *o = t->sobjs; o != NULL; o = o->next)
        cap++;
    found = malloc(cap * sizeof(*found));
    if (found == NULL)
        return CKR_HOST_MEMORY;
    if (find_cb(t, t->prof, (void *)a))
        found[nf++] = t->prof->h;
    if (k >= 0) {
        size_t from = nf;

        for (struct mod_object *o = first; o != NULL; o = o->ix_next[k])
            if (find_cb(t, o, (void *)a))
                found[nf++] = o->h;
        /* In handle order, as the scan returns them. */
        if (nf - from > 1)
            qsort(found + from, nf - from, sizeof(*found), handle_cmp);
    } else if (stream) {
        if (ns > 0)
            memcpy(found + nf, streamed, ns * sizeof(*found));
        nf += ns;
    } else {
        for (size_t i = 0; i < t->nobjs; i++)
            if (find_cb(t, t->objs[i], (void *)a))
                found[nf++] = t->objs[i]->h;
    }
    for (struct mod_object *o = t->sobjs; o != NULL; o = o->next)
        if (find_cb(t, o, (void *)a))
            found[nf++] = o->h;
    *out = found;
    *nout = nf;
    return CKR_OK;
}

CK_RV
mod_C_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    struct mod_token *t;
    CK_OBJECT_HANDLE *found = NULL, *streamed = NULL;
    const CK_ATTRIBUTE *by = NULL;
    CK_ATTRIBUTE *owned = NULL;
    struct find_args a = {tmpl, n, CK_FALSE};
    struct mod_object *first = NULL;
    size_t nf = 0, ns = 0;
    int k = -1, stream = 0;
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
            rv = rollover_strip(tmpl, n, CKA_EVERTOKEN_PENDING, &owned, &a.n, &a.pending);
            if (rv != CKR_OK)
                return rv;
            a.tmpl = owned;
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
     * those are all that can match; with none, a partial cache streams
     * the token instead (matched as read, not cached). */
    rv = find_plan_relock(t, &a, &k, &first, &stream, &by);
    if (rv == CKR_OK && stream)
        rv = cache_stream_relock(t, by, find_cb, &a, &streamed, &ns);
    if (rv == CKR_OK)
        rv = find_collect_inlock(t, &a, k, first, streamed, ns, stream, &found, &nf);
    if (rv != CKR_OK)
        goto out;
    s->found = found;
    s->nfound = nf;
    s->pos = 0;
    s->find_active = 1;
    s->find_dgen = t->dgen;
    s->find_login = t->login;
out:
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    free(streamed);
    free(owned);
    return rv;
}

/* A stored object of a partial cache that is not cached (streamed, or
 * evicted since the snapshot) is returned as the snapshot found it,
 * without reading it again, while nothing in this process removed a
 * stored object from the cache (destroy, another process's deletion
 * taken in, login or logout: t->dgen) and the login is the same. */
static int
find_trusted_inlock(const struct mod_session *s, CK_OBJECT_HANDLE oh)
{
    const struct mod_token *t = s->tok;
    int cached = 0;

    if (!t->partial || oh == MOD_HANDLE_PROFILE || oh >= MOD_HANDLE_SOBJ_FIRST ||
        t->dgen != s->find_dgen || t->login != s->find_login)
        return 0;
    (void)cache_objs_search(t, oh, &cached);
    return !cached;
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
        if (find_trusted_inlock(s, oh) || cache_lookup_inlock(s->tok, oh, &o) == CKR_OK)
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
