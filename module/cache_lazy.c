/*
 * cache_lazy.c — the partial cache: a token's stored objects read as they
 * are asked for, so that opening a token, logging in and the first search
 * cost the same at any number of objects (docs/performance.md).
 *
 * A cache that is not filled starts partial (cache_sync_relock): empty, with
 * the keystore's change sequence number of that moment (ks_change_seq), from
 * which other processes' changes keep arriving as for a full cache
 * (ks_load_changes, applied in cache.c: changed and new objects are taken
 * in, destroyed ones dropped). Objects come in
 *   - by search: a template with CKA_ID or CKA_LABEL makes one indexed
 *     keystore search for that value (ks_find), whose records (checked by
 *     the keystore, MAC or AEAD) join the cache; the value is then
 *     "resolved": every stored object with it is cached, and stays so (new
 *     ones arrive through the change sequence or this process's own
 *     writes), so the next search with it costs what it does on a full
 *     cache. A template with neither but with another attribute the
 *     keystore indexes (issuer and serial, subject, key or certificate
 *     type, class: the first of these, the most selective) resolves that
 *     one (cache_resolve_tmpl_relock), and the search scans the cache: it
 *     holds every object that can match. A template without any loads the
 *     token in full (cache_sync_full_relock), as before;
 *   - by handle: a handle not in the cache is read by id (ks_object_get).
 *     Handles are keystore ids, so they are the same whether an object was
 *     read lazily or at once, and stay valid for the life of the process.
 * A login or logout drops the cache as before; it starts partial again, so
 * neither reads every record.
 */
#include <stdlib.h>
#include <string.h>

#include "cache_int.h"

/* Resolved values: a chained hash set of copies. */
struct mod_rent {
    struct mod_rent *next;
    uint64_t h;
    int k;
    size_t len;
    unsigned char v[];
};

struct mod_rset {
    struct mod_rent **b;
    size_t nb, n;
};

#define RSET_BUCKETS 256
/* Beyond this many, they are all forgotten (searches ask the keystore
 * again): a process searching for ever new values holds no more. */
#define RSET_MAX 65536

static uint64_t
rset_hash(int k, const void *v, size_t len)
{
    const unsigned char *p = v;
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)k;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

void
cache_rset_free_inlock(struct mod_token *t)
{
    struct mod_rset *r = t->resolved;

    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nb; i++) {
        struct mod_rent *e = r->b[i], *next;

        for (; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(r->b);
    free(r);
    t->resolved = NULL;
}

int
cache_resolved_inlock(const struct mod_token *t, int k, const void *value, size_t len)
{
    const struct mod_rset *r = t->resolved;
    uint64_t h;

    if (!t->partial || r == NULL)
        return 0;
    h = rset_hash(k, value, len);
    for (const struct mod_rent *e = r->b[h & (r->nb - 1)]; e != NULL; e = e->next)
        if (e->h == h && e->k == k && e->len == len && (len == 0 || memcmp(e->v, value, len) == 0))
            return 1;
    return 0;
}

/* Note VALUE as resolved; without memory it is not (asked again later). */
static void
rset_add_inlock(struct mod_token *t, int k, const void *value, size_t len)
{
    struct mod_rset *r = t->resolved;
    struct mod_rent *e, **head;
    uint64_t h = rset_hash(k, value, len);

    if (r != NULL && r->n >= RSET_MAX) {
        cache_rset_free_inlock(t);
        r = NULL;
    }
    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        if (r == NULL)
            return;
        r->b = calloc(RSET_BUCKETS, sizeof(*r->b));
        if (r->b == NULL) {
            free(r);
            return;
        }
        r->nb = RSET_BUCKETS;
        t->resolved = r;
    }
    if (r->n >= r->nb) {
        struct mod_rent **b = calloc(r->nb * 2, sizeof(*b));

        if (b != NULL) {
            for (size_t i = 0; i < r->nb; i++) {
                struct mod_rent *x = r->b[i], *next;

                for (; x != NULL; x = next) {
                    next = x->next;
                    x->next = b[x->h & (r->nb * 2 - 1)];
                    b[x->h & (r->nb * 2 - 1)] = x;
                }
            }
            free(r->b);
            r->b = b;
            r->nb *= 2;
        }
    }
    e = malloc(sizeof(*e) + len + 1);
    if (e == NULL)
        return;
    e->h = h;
    e->k = k;
    e->len = len;
    if (len > 0)
        memcpy(e->v, value, len);
    head = &r->b[h & (r->nb - 1)];
    e->next = *head;
    *head = e;
    r->n++;
}

CK_RV
cache_partial_begin_inlock(struct mod_token *t)
{
    int64_t seq = 0;
    ks_rv kr = ks_change_seq(t->ks, &seq);

    if (kr != KS_OK)
        return mod_ks_ckr(kr, t->ks, "ks_change_seq");
    cache_objs_clear_inlock(t);
    t->seq = seq;
    t->loaded = 0;
    t->partial = 1;
    return CKR_OK;
}

/* ---- by search -------------------------------------------------------------- */

/* The attribute of each lookup (MOD_LK_*). */
static const CK_ATTRIBUTE_TYPE lk_types[MOD_LK_COUNT] = {
    [MOD_LK_ID] = CKA_ID,
    [MOD_LK_LABEL] = CKA_LABEL,
    [MOD_LK_CLASS] = CKA_CLASS,
    [MOD_LK_KTYPE] = CKA_KEY_TYPE,
    [MOD_LK_CTYPE] = CKA_CERTIFICATE_TYPE,
    [MOD_LK_SUBJ] = CKA_SUBJECT,
    [MOD_LK_ISN] = CKA_ISSUER,
};

struct found_ctx {
    struct mod_token *t;
    struct mod_object **add;
    size_t n, cap;
    struct mod_arena *arena; /* where a large result's public objects go */
    CK_RV rv;
};

/* A search returning more than this many objects places the rest in
 * mmap'd chunks as a full load does ("all certificates": one malloc each
 * was most of its cost); a small one does not map a chunk. */
#define FOUND_SMALL 64

/* Runs with the token lock held and the global lock released: reads the
 * cache (which only changes under both), never changes it. */
static int
found_cb(void *ctx, const ks_object *ko)
{
    struct found_ctx *c = ctx;
    struct mod_object *o = NULL, **p;
    int cached = 0;

    if (ko->id <= 0 || (uint64_t)ko->id > MOD_TOKEN_HANDLE_MAX)
        return 0; /* no handle for it (cache.c, load_cb) */
    (void)cache_objs_search(c->t, (CK_OBJECT_HANDLE)ko->id, &cached);
    if (cached)
        return 0; /* current: the change sequence keeps it so */
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;

        p = realloc(c->add, cap * sizeof(*p));
        if (p == NULL) {
            c->rv = CKR_HOST_MEMORY;
            return 1;
        }
        c->add = p;
        c->cap = cap;
    }
    c->rv =
        c->n < FOUND_SMALL ? cache_stored_from_ks(ko, &o) : cache_stored_place(&c->arena, ko, &o);
    if (c->rv != CKR_OK)
        return 1;
    c->add[c->n++] = o;
    return 0;
}

CK_RV
cache_resolve_relock(struct mod_token *t, int k, const void *value, size_t len)
{
    struct found_ctx c;
    unsigned tampered = 0;
    ks_rv kr;
    CK_RV rv = CKR_OK;

    if (!t->partial || cache_resolved_inlock(t, k, value, len))
        return CKR_OK;
    memset(&c, 0, sizeof(c));
    c.t = t;
    c.rv = CKR_OK;
    mod_unlock();
    if (k == MOD_LK_ISN) {
        const unsigned char *p = value;
        size_t ilen;

        memcpy(&ilen, p, sizeof(ilen)); /* cache_resolve_tmpl_relock built it */
        kr = ks_find_issuer_serial(t->ks, p + sizeof(ilen), ilen, p + sizeof(ilen) + ilen,
                                   len - sizeof(ilen) - ilen, found_cb, &c, &tampered);
    } else {
        kr = ks_find(t->ks, lk_types[k], value, len, found_cb, &c, &tampered);
    }
    mod_lock();
    if (kr != KS_OK)
        rv = mod_ks_ckr(kr, t->ks, "ks_find");
    else
        rv = c.rv;
    if (rv == CKR_OK)
        rv = cache_objs_merge_inlock(t, c.add, c.n);
    if (rv != CKR_OK)
        for (size_t i = 0; i < c.n; i++)
            cache_object_free(c.add[i]);
    free(c.add);
    cache_arena_adopt_inlock(t, c.arena); /* after the objects that live in it */
    if (tampered > 0)
        mod_log("slot %u: %u stored object(s) failed their integrity check and are hidden (%s)",
                (unsigned)t->slot, tampered, ks_last_error(t->ks));
    if (rv == CKR_OK)
        rset_add_inlock(t, k, value, len);
    return rv;
}

static const CK_ATTRIBUTE *
tmpl_get(const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
    for (CK_ULONG i = 0; i < n; i++)
        if (tmpl[i].type == type)
            return &tmpl[i];
    return NULL;
}

/* Is K a broad lookup (class, key or certificate type) whose VALUE has
 * more candidates than half the cache's bound? Such a result is streamed,
 * not cached: caching it would only evict it again after the search. */
static int
too_broad_relock(struct mod_token *t, int k, const CK_ATTRIBUTE *a)
{
    uint64_t count = 0;
    ks_rv kr;

    if ((k != MOD_LK_CLASS && k != MOD_LK_KTYPE && k != MOD_LK_CTYPE) || cache_max() == 0 ||
        cache_resolved_inlock(t, k, a->pValue, a->ulValueLen))
        return 0;
    mod_unlock();
    kr = ks_find_count(t->ks, a->type, a->pValue, a->ulValueLen, &count);
    mod_lock();
    return kr == KS_OK && count > cache_max() / 2;
}

CK_RV
cache_resolve_tmpl_relock(struct mod_token *t, const CK_ATTRIBUTE *tmpl, CK_ULONG n, int *done,
                          const CK_ATTRIBUTE **stream_by)
{
    /* Most selective first: one certificate, one subject's, then the
     * broad ones. */
    static const int order[] = {MOD_LK_SUBJ, MOD_LK_KTYPE, MOD_LK_CTYPE, MOD_LK_CLASS};
    const CK_ATTRIBUTE *iss = tmpl_get(tmpl, n, CKA_ISSUER);
    const CK_ATTRIBUTE *ser = tmpl_get(tmpl, n, CKA_SERIAL_NUMBER);
    CK_RV rv;

    *done = 0;
    *stream_by = NULL;
    if (!t->partial)
        return CKR_OK;
    if (iss != NULL && ser != NULL) {
        size_t ilen = iss->ulValueLen, len = sizeof(ilen) + ilen + ser->ulValueLen;
        unsigned char *b = malloc(len);

        if (b == NULL)
            return CKR_HOST_MEMORY;
        memcpy(b, &ilen, sizeof(ilen));
        if (ilen > 0)
            memcpy(b + sizeof(ilen), iss->pValue, ilen);
        if (ser->ulValueLen > 0)
            memcpy(b + sizeof(ilen) + ilen, ser->pValue, ser->ulValueLen);
        rv = cache_resolve_relock(t, MOD_LK_ISN, b, len);
        free(b);
        *done = rv == CKR_OK;
        return rv;
    }
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        const CK_ATTRIBUTE *a = tmpl_get(tmpl, n, lk_types[order[i]]);

        if (a != NULL) {
            if (too_broad_relock(t, order[i], a)) {
                *stream_by = a;
                return CKR_OK;
            }
            rv = cache_resolve_relock(t, order[i], a->pValue, a->ulValueLen);
            *done = rv == CKR_OK;
            return rv;
        }
    }
    return CKR_OK;
}

/* ---- by handle ----------------------------------------------------------------- */

struct get_ctx {
    struct mod_object *o;
    CK_RV rv;
    int retired; /* the record is retired (KS_GET_RETIRED) */
};

static int
get_cb(void *ctx, const ks_object *ko)
{
    struct get_ctx *c = ctx;

    c->rv = cache_stored_from_ks(ko, &c->o);
    c->retired = ko->state == KS_RETIRED;
    return 0;
}

CK_RV
cache_fetch_inlock(struct mod_token *t, CK_OBJECT_HANDLE h, int retired_ok, struct mod_object **out)
{
    struct get_ctx c = {NULL, CKR_OK, 0};
    ks_rv kr;
    CK_RV rv;

    *out = NULL;
    /* A key this process may hold was retired by another process's
     * rollover after the cache evicted it (or after a search streamed it):
     * read again as retired, as if it had stayed cached (cache.c, delta_cb). */
    kr = ks_object_get_flags(t->ks, (int64_t)h, retired_ok ? KS_GET_RETIRED : 0, get_cb, &c);
    if (kr == KS_E_NOT_FOUND)
        return CKR_OBJECT_HANDLE_INVALID;
    if (kr == KS_E_TAMPERED) {
        mod_log("slot %u: stored object %lu failed its integrity check and is hidden (%s)",
                (unsigned)t->slot, (unsigned long)h, ks_last_error(t->ks));
        return CKR_OBJECT_HANDLE_INVALID;
    }
    if (kr != KS_OK) {
        cache_object_free(c.o);
        return mod_ks_ckr(kr, t->ks, "ks_object_get");
    }
    if (c.rv != CKR_OK)
        return c.rv;
    c.o->retired = c.retired;
    rv = cache_objs_insert_inlock(t, c.o);
    if (rv == CKR_OK)
        *out = c.o;
    return rv;
}

/* ---- streaming ------------------------------------------------------------------ */

struct stream_ctx {
    struct mod_token *t;
    cache_match_fn match;
    void *arg;
    CK_OBJECT_HANDLE *found;
    size_t n, cap;
    unsigned char *scratch; /* a public record's attributes, reused */
    size_t scratch_len;
    CK_RV rv;
};

/* Does record KO, not cached, match? Its attributes are placed in the
 * scratch buffer (public) or in locked memory, wiped at once (private). */
static int
stream_match(struct stream_ctx *c, const ks_object *ko)
{
    struct mod_object tmp;
    mod_attrs *attrs = NULL;
    size_t len = obj_from_ks_len(ko);
    int m;

    if (len > c->scratch_len) {
        unsigned char *p = realloc(c->scratch, len);

        if (p == NULL) {
            c->rv = CKR_HOST_MEMORY;
            return -1;
        }
        c->scratch = p;
        c->scratch_len = len;
    }
    c->rv = len > 0 ? obj_from_ks_in(ko, c->scratch, &attrs) : obj_from_ks(ko, &attrs);
    if (c->rv != CKR_OK)
        return -1;
    memset(&tmp, 0, sizeof(tmp));
    tmp.h = (CK_OBJECT_HANDLE)ko->id;
    tmp.attrs = attrs;
    tmp.token = CK_TRUE;
    tmp.pending = ko->state == KS_PENDING;
    tmp.priv = ko->is_private || obj_bool(attrs, CKA_PRIVATE, CK_FALSE);
    m = c->match(c->t, &tmp, c->arg);
    obj_free(attrs); /* placed: nothing; private: wiped */
    return m;
}

/* Runs with the token lock held and the global lock released (found_cb). */
static int
stream_cb(void *ctx, const ks_object *ko)
{
    struct stream_ctx *c = ctx;
    int cached = 0, m;
    size_t i;

    if (ko->id <= 0 || (uint64_t)ko->id > MOD_TOKEN_HANDLE_MAX)
        return 0; /* no handle for it (cache.c, load_cb) */
    i = cache_objs_search(c->t, (CK_OBJECT_HANDLE)ko->id, &cached);
    m = cached ? c->match(c->t, c->t->objs[i], c->arg) : stream_match(c, ko);
    if (m < 0)
        return 1;
    if (m == 0)
        return 0;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        CK_OBJECT_HANDLE *p = realloc(c->found, cap * sizeof(*p));

        if (p == NULL) {
            c->rv = CKR_HOST_MEMORY;
            return 1;
        }
        c->found = p;
        c->cap = cap;
    }
    c->found[c->n++] = (CK_OBJECT_HANDLE)ko->id;
    return 0;
}

CK_RV
cache_stream_relock(struct mod_token *t, const CK_ATTRIBUTE *by, cache_match_fn match, void *arg,
                    CK_OBJECT_HANDLE **found, size_t *nfound)
{
    struct stream_ctx c;
    unsigned tampered = 0;
    ks_rv kr;

    *found = NULL;
    *nfound = 0;
    memset(&c, 0, sizeof(c));
    c.t = t;
    c.match = match;
    c.arg = arg;
    c.rv = CKR_OK;
    mod_unlock();
    if (by != NULL)
        kr = ks_find(t->ks, by->type, by->pValue, by->ulValueLen, stream_cb, &c, &tampered);
    else
        kr = ks_load_objects(t->ks, stream_cb, &c, &tampered);
    mod_lock();
    free(c.scratch);
    if (kr != KS_OK || c.rv != CKR_OK) {
        free(c.found);
        return kr != KS_OK ? mod_ks_ckr(kr, t->ks, "ks_load_objects") : c.rv;
    }
    if (tampered > 0)
        mod_log("slot %u: %u stored object(s) failed their integrity check and are hidden (%s)",
                (unsigned)t->slot, tampered, ks_last_error(t->ks));
    integrity_hidden_inlock(t, tampered, by == NULL);
    *found = c.found;
    *nfound = c.n;
    return CKR_OK;
}
