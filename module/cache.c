/*
 * cache.c — the per-token object cache.
 *
 * Stored objects are cached in memory (sorted by handle = keystore id), and
 * whenever ks_changed() says another connection wrote the file what it
 * changed is taken in (ks_load_changes), so a certificate written by another
 * process is seen at the next lookup. The cache is either complete (loaded:
 * a full load, here) or partial (cache_lazy.c: objects read as they are
 * searched for or named by handle), never both. Only
 * what the keystore hands out is cached: public objects always, private
 * ones while the token key is unwrapped (in secure memory, wiped on drop).
 * Session objects and the token's CKO_PROFILE object live here too.
 *
 * Stored objects are also indexed by CKA_ID and CKA_LABEL (chained hash
 * tables, t->ix), kept up to date on load, add, remove and attribute
 * changes, so that C_FindObjectsInit with one of them in its template looks
 * at the few candidates instead of every object.
 *
 * Locking (mod_int.h): the cache changes only with the token lock and the
 * global lock held; it is read with either. A full reload reads the
 * keystore with only the token lock held (cache_sync_relock).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "cache_int.h"
#include "mod_int.h"

/* Forget O's OpenSSL key. Operations may still hold references; the key
 * material is cleansed by OpenSSL when the last one goes (private parts of
 * RSA, EC and EdDSA keys are freed with BN_clear_free/OPENSSL_secure_clear_free). */
static void
object_forget_pkey(struct mod_object *o)
{
    EVP_PKEY_free(o->pkey);
    o->pkey = NULL;
    o->pkey_attrs = NULL;
}

void
cache_object_free(struct mod_object *o)
{
    if (o == NULL)
        return;
    object_forget_pkey(o);
    obj_free(o->attrs);
    if (!o->in_arena)
        free(o);
    else
        cache_arena_release(o->chunk);
}

/* ---- indexes ------------------------------------------------------------- */

static const CK_ATTRIBUTE_TYPE ix_types[MOD_IX_COUNT] = {CKA_ID, CKA_LABEL};

#define IX_MIN_BUCKETS 64

CK_ATTRIBUTE_TYPE
cache_ix_type(int k)
{
    return ix_types[k];
}

/* FNV-1a, 64 bits. Not keyed: values that collide on purpose cost search
 * time, never a wrong answer (every candidate is matched), and whoever can
 * write them into the token file can do worse to it. */
static uint64_t
ix_hash(const void *v, size_t len)
{
    const unsigned char *p = v;
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static struct mod_object **
ix_bucket(const struct mod_index *ix, uint64_t h)
{
    return &ix->b[(size_t)(h ^ (h >> 29)) & (ix->nb - 1)];
}

static void
ix_link(struct mod_index *ix, int k, struct mod_object *o)
{
    struct mod_object **head = ix_bucket(ix, o->ix_hash[k]);

    o->ix_next[k] = *head;
    if (*head != NULL)
        (*head)->ix_pprev[k] = &o->ix_next[k];
    *head = o;
    o->ix_pprev[k] = head;
}

/* Rehash index K into NB buckets; -1 (nothing changed) without memory. */
static int
ix_resize(struct mod_index *ix, int k, size_t nb)
{
    struct mod_object **b = calloc(nb, sizeof(*b)), **old = ix->b;
    size_t onb = ix->nb;

    if (b == NULL)
        return -1;
    ix->b = b;
    ix->nb = nb;
    for (size_t i = 0; i < onb; i++) {
        struct mod_object *o = old[i], *next;

        for (; o != NULL; o = next) {
            next = o->ix_next[k];
            ix_link(ix, k, o);
        }
    }
    free(old);
    return 0;
}

/* Forget index K: searches scan until it is rebuilt (next reload). */
static void
ix_break(struct mod_token *t, int k)
{
    for (size_t i = 0; i < t->nobjs; i++) {
        t->objs[i]->ix_next[k] = NULL;
        t->objs[i]->ix_pprev[k] = NULL;
    }
    free(t->ix[k].b);
    t->ix[k].b = NULL;
    t->ix[k].nb = t->ix[k].n = 0;
    t->ix[k].broken = 1;
}

void
cache_ix_unlink(struct mod_token *t, struct mod_object *o)
{
    for (int k = 0; k < MOD_IX_COUNT; k++) {
        if (o->ix_pprev[k] == NULL)
            continue;
        *o->ix_pprev[k] = o->ix_next[k];
        if (o->ix_next[k] != NULL)
            o->ix_next[k]->ix_pprev[k] = o->ix_pprev[k];
        o->ix_next[k] = NULL;
        o->ix_pprev[k] = NULL;
        t->ix[k].n--;
    }
}

/* Add stored object O (already in t->objs) to every index. */
static void
ix_insert(struct mod_token *t, struct mod_object *o)
{
    for (int k = 0; k < MOD_IX_COUNT; k++) {
        struct mod_index *ix = &t->ix[k];
        const ks_attr *a = obj_find(o->attrs, ix_types[k]);

        o->ix_next[k] = NULL;
        o->ix_pprev[k] = NULL;
        if (a == NULL || ix->broken)
            continue;
        /* Load factor at most 1; a failed growth only lengthens chains. */
        if (ix->n >= ix->nb && ix_resize(ix, k, ix->nb ? ix->nb * 2 : IX_MIN_BUCKETS) != 0 &&
            ix->nb == 0) {
            ix_break(t, k);
            continue;
        }
        o->ix_hash[k] = ix_hash(a->value, a->len);
        ix_link(ix, k, o);
        ix->n++;
    }
}

static void
ix_clear(struct mod_token *t)
{
    for (int k = 0; k < MOD_IX_COUNT; k++) {
        free(t->ix[k].b);
        memset(&t->ix[k], 0, sizeof(t->ix[k]));
    }
}

/* Build the indexes of every object in t->objs. */
void
cache_ix_rebuild(struct mod_token *t)
{
    size_t nb = IX_MIN_BUCKETS;

    ix_clear(t);
    while (nb < t->nobjs)
        nb *= 2;
    for (int k = 0; k < MOD_IX_COUNT; k++)
        if (ix_resize(&t->ix[k], k, nb) != 0)
            ix_break(t, k);
    for (size_t i = 0; i < t->nobjs; i++)
        if (!t->objs[i]->retired)
            ix_insert(t, t->objs[i]);
}

int
cache_ix_lookup_inlock(const struct mod_token *t, int k, const void *value, size_t len,
                       struct mod_object **first)
{
    const struct mod_index *ix = &t->ix[k];
    uint64_t h;
    struct mod_object *o;

    *first = NULL;
    /* A partial cache holds every object with VALUE only once the keystore
     * was asked for them (cache_resolve_relock). */
    if (ix->broken || (!t->loaded && !cache_resolved_inlock(t, k, value, len)))
        return 0;
    if (ix->nb == 0)
        return 1; /* nothing indexed */
    h = ix_hash(value, len);
    for (o = *ix_bucket(ix, h); o != NULL && o->ix_hash[k] != h; o = o->ix_next[k])
        ;
    *first = o;
    return 1;
}

/* ---- objects -------------------------------------------------------------- */

CK_RV
cache_pkey_inlock(struct mod_object *o, EVP_PKEY **out)
{
    CK_RV rv;

    *out = NULL;
    /* Built from another attribute set (C_SetAttributeValue swapped it):
     * rebuild rather than trust that nothing relevant changed. */
    if (o->pkey != NULL && o->pkey_attrs != o->attrs)
        object_forget_pkey(o);
    if (o->pkey == NULL) {
        rv = obj_pkey(o->attrs, &o->pkey);
        if (rv != CKR_OK) {
            o->pkey = NULL;
            return rv;
        }
        o->pkey_attrs = o->attrs;
    }
    if (EVP_PKEY_up_ref(o->pkey) != 1) {
        ERR_clear_error();
        return CKR_HOST_MEMORY;
    }
    *out = o->pkey;
    return CKR_OK;
}

void
cache_set_attrs_inlock(struct mod_token *t, struct mod_object *o, mod_attrs *attrs)
{
    int stored = o->token && !o->profile;

    if (stored)
        cache_ix_unlink(t, o);
    object_forget_pkey(o);
    obj_free(o->attrs);
    o->attrs = attrs;
    if (stored)
        ix_insert(t, o);
}

static void
objs_free(struct mod_object **objs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cache_object_free(objs[i]);
    free(objs);
}

static CK_RV
objs_push(struct mod_object ***objs, size_t *n, size_t *cap, struct mod_object *o)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct mod_object **p = realloc(*objs, ncap * sizeof(*p));
        if (p == NULL)
            return CKR_HOST_MEMORY;
        *objs = p;
        *cap = ncap;
    }
    (*objs)[(*n)++] = o;
    return CKR_OK;
}

#define OBJ_HEAD ((sizeof(struct mod_object) + 15) & ~(size_t)15)

struct load_ctx {
    struct mod_object **objs;
    size_t n, cap;
    struct mod_arena *arena;
    int64_t seq; /* highest change sequence number seen */
    CK_RV rv;
};

/* The flags of stored object O that come from its keystore record KO. */
static void
obj_set_flags(struct mod_object *o, const ks_object *ko)
{
    o->pending = ko->state == KS_PENDING;
    /* Sealed records are private whatever their attributes say. */
    o->priv = ko->is_private || obj_bool(o->attrs, CKA_PRIVATE, CK_FALSE);
}

/* Stored object O takes record KO (its attribute set ATTRS made from it). */
static void
stored_init(struct mod_object *o, const ks_object *ko, mod_attrs *attrs)
{
    o->h = (CK_OBJECT_HANDLE)ko->id;
    o->attrs = attrs;
    o->token = CK_TRUE;
    obj_set_flags(o, ko);
}

/* A new heap-allocated stored object for record KO. */
CK_RV
cache_stored_from_ks(const ks_object *ko, struct mod_object **out)
{
    mod_attrs *attrs = NULL;
    CK_RV rv = obj_from_ks(ko, &attrs);

    *out = NULL;
    if (rv != CKR_OK)
        return rv;
    *out = calloc(1, sizeof(**out));
    if (*out == NULL) {
        obj_free(attrs);
        return CKR_HOST_MEMORY;
    }
    stored_init(*out, ko, attrs);
    return CKR_OK;
}

CK_RV
cache_stored_place(struct mod_arena **list, const ks_object *ko, struct mod_object **out)
{
    mod_attrs *attrs = NULL;
    size_t len = obj_from_ks_len(ko);
    /* The object, then its set at the next multiple of 16. */
    void *mem = len > 0 ? cache_arena_alloc(list, OBJ_HEAD + len) : NULL;
    struct mod_object *o = mem;
    CK_RV rv;

    *out = NULL;
    if (mem == NULL)
        return cache_stored_from_ks(ko, out);
    memset(o, 0, sizeof(*o));
    o->in_arena = 1;
    o->chunk = *list; /* where cache_arena_alloc placed it */
    cache_arena_hold(o->chunk);
    rv = obj_from_ks_in(ko, (unsigned char *)mem + OBJ_HEAD, &attrs);
    if (rv != CKR_OK)
        return rv;
    stored_init(o, ko, attrs);
    *out = o;
    return CKR_OK;
}

static int
load_cb(void *ctx, const ks_object *ko)
{
    struct load_ctx *c = ctx;
    struct mod_object *o;
    CK_RV rv;

    if (ko->id <= 0 || (uint64_t)ko->id > MOD_TOKEN_HANDLE_MAX) {
        mod_log("object id %lld has no handle; skipped", (long long)ko->id);
        return 0;
    }
    rv = cache_stored_place(&c->arena, ko, &o);
    if (rv != CKR_OK) {
        c->rv = rv;
        return 1;
    }
    if (ko->seq > c->seq)
        c->seq = ko->seq;
    rv = objs_push(&c->objs, &c->n, &c->cap, o);
    if (rv != CKR_OK) {
        cache_object_free(o);
        c->rv = rv;
        return 1;
    }
    return 0;
}

static CK_RV
profile_ensure_inlock(struct mod_token *t)
{
    mod_attrs *attrs = NULL;
    CK_RV rv;

    if (t->prof != NULL)
        return CKR_OK;
    rv = obj_profile(&attrs);
    if (rv != CKR_OK)
        return rv;
    t->prof = calloc(1, sizeof(*t->prof));
    if (t->prof == NULL) {
        obj_free(attrs);
        return CKR_HOST_MEMORY;
    }
    t->prof->h = MOD_HANDLE_PROFILE;
    t->prof->attrs = attrs;
    t->prof->token = CK_TRUE;
    t->prof->priv = CK_FALSE;
    t->prof->profile = 1;
    return CKR_OK;
}

static double
mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
cache_recent_inlock(const struct mod_token *t)
{
    return t->state == TOK_OPEN && t->loaded && t->prof != NULL &&
           mono_now() - t->synced_at < MOD_SYNC_RECENT;
}

/* ---- incremental reload -------------------------------------------------- */

/*
 * What another process changed since t->seq, applied to the loaded cache
 * (ks_load_changes): changed objects get their new attributes in place, new
 * ones are collected and merged into t->objs once at the end, and gone ones
 * are marked and swept out in one pass, so a change costs in proportion to
 * its size, not to the token's.
 */

struct delta_ctx {
    struct mod_token *t;
    struct mod_object **add; /* new objects, handle order not assumed */
    size_t nadd, capadd;
    size_t ngone;
    CK_RV rv;
};

static struct mod_object *
objs_find(const struct mod_token *t, CK_OBJECT_HANDLE h)
{
    int found = 0;
    size_t i = cache_objs_search(t, h, &found);

    return found ? t->objs[i] : NULL;
}

static int
delta_cb(void *ctx, const ks_object *ko)
{
    struct delta_ctx *c = ctx;
    struct mod_object *o;
    mod_attrs *attrs = NULL;
    CK_RV rv;

    if (ko->id <= 0 || (uint64_t)ko->id > MOD_TOKEN_HANDLE_MAX)
        return 0; /* as load_cb: no handle for it */
    o = objs_find(c->t, (CK_OBJECT_HANDLE)ko->id);
    if (ko->state == KS_RETIRED) {
        /* Retired by another process's rollover: kept for the handles this
         * process holds (struct mod_object.retired), never taken in anew. */
        if (o != NULL && !o->pending) {
            cache_ix_unlink(c->t, o);
            o->retired = 1;
            o->gone = 0;
        }
        return 0;
    }
    if (o != NULL) {
        rv = obj_from_ks(ko, &attrs);
        if (rv != CKR_OK) {
            c->rv = rv;
            return 1;
        }
        o->retired = 0; /* active again (a rollback): indexed below */
        cache_set_attrs_inlock(c->t, o, attrs);
        o->gone = 0;
        obj_set_flags(o, ko);
        return 0;
    }
    rv = cache_stored_from_ks(ko, &o);
    if (rv == CKR_OK)
        rv = objs_push(&c->add, &c->nadd, &c->capadd, o);
    if (rv != CKR_OK) {
        cache_object_free(o);
        c->rv = rv;
        return 1;
    }
    return 0;
}

static void
delta_gone(void *ctx, int64_t id)
{
    struct delta_ctx *c = ctx;
    struct mod_object *o;

    if (id <= 0 || (uint64_t)id > MOD_TOKEN_HANDLE_MAX)
        return;
    o = objs_find(c->t, (CK_OBJECT_HANDLE)id);
    if (o != NULL && !o->gone) {
        o->gone = 1;
        c->ngone++;
        return;
    }
    /* New in this same delta, then gone (a private one seen twice, say). */
    for (size_t i = 0; i < c->nadd; i++) {
        if (c->add[i]->h == (CK_OBJECT_HANDLE)id) {
            cache_object_free(c->add[i]);
            c->add[i] = c->add[--c->nadd];
            return;
        }
    }
}

static int
cmp_handle(const void *a, const void *b)
{
    CK_OBJECT_HANDLE x = (*(struct mod_object *const *)a)->h;
    CK_OBJECT_HANDLE y = (*(struct mod_object *const *)b)->h;

    return x < y ? -1 : x > y;
}

CK_RV
cache_objs_merge_inlock(struct mod_token *t, struct mod_object **add, size_t nadd)
{
    size_t n = t->nobjs + nadd, old = t->nobjs;
    int sorted = 1;

    if (nadd == 0)
        return CKR_OK;
    for (size_t j = 1; j < nadd && sorted; j++)
        sorted = add[j - 1]->h < add[j]->h;
    if (!sorted)
        qsort(add, nadd, sizeof(*add), cmp_handle);
    if (n > t->capobjs) {
        struct mod_object **p = realloc(t->objs, n * sizeof(*p));
        if (p == NULL)
            return CKR_HOST_MEMORY;
        t->objs = p;
        t->capobjs = n;
    }
    /* Merge from the back; new handles are usually above all old ones. */
    for (size_t i = t->nobjs, j = nadd, k = n; j > 0;) {
        if (i > 0 && t->objs[i - 1]->h > add[j - 1]->h)
            t->objs[--k] = t->objs[--i];
        else
            t->objs[--k] = add[--j];
    }
    t->nobjs = n;
    for (size_t j = 0; j < nadd; j++)
        add[j]->used = ++t->tick;
    /* Many new ones: the indexes once, sized for all (as a full load). */
    if (nadd > old && nadd >= 64) {
        cache_ix_rebuild(t);
    } else {
        for (size_t j = 0; j < nadd; j++)
            ix_insert(t, add[j]);
    }
    return CKR_OK;
}

/* Sweep the gone objects out and merge the new ones in (both sorted). */
static CK_RV
delta_apply(struct mod_token *t, struct delta_ctx *c)
{
    size_t w = 0;
    CK_RV rv;

    if (c->ngone > 0) {
        for (size_t i = 0; i < t->nobjs; i++) {
            struct mod_object *o = t->objs[i];
            if (o->gone) {
                t->dgen++;
                cache_ix_unlink(t, o);
                cache_object_free(o);
            } else {
                t->objs[w++] = o;
            }
        }
        t->nobjs = w;
    }
    rv = cache_objs_merge_inlock(t, c->add, c->nadd);
    if (rv == CKR_OK)
        c->nadd = 0;
    return rv;
}

/* CKR_OK: the cache is up to date; anything else: reload in full. */
static CK_RV
cache_sync_delta_inlock(struct mod_token *t)
{
    struct delta_ctx c;
    unsigned tampered = 0;
    int64_t upto = t->seq;
    ks_rv kr;
    CK_RV rv;

    memset(&c, 0, sizeof(c));
    c.t = t;
    c.rv = CKR_OK;
    kr = ks_load_changes(t->ks, t->seq, delta_cb, delta_gone, &c, &upto, &tampered);
    rv = kr != KS_OK ? CKR_GENERAL_ERROR : c.rv;
    if (rv == CKR_OK)
        rv = delta_apply(t, &c);
    if (rv != CKR_OK) {
        /* Changed ones were updated in place, which a full load redoes. */
        for (size_t i = 0; i < t->nobjs; i++)
            t->objs[i]->gone = 0;
        objs_free(c.add, c.nadd);
        return rv;
    }
    free(c.add);
    if (tampered > 0)
        mod_log("slot %u: %u stored object(s) failed their integrity check and are hidden (%s)",
                (unsigned)t->slot, tampered, ks_last_error(t->ks));
    integrity_hidden_inlock(t, tampered, 0);
    t->seq = upto;
    return CKR_OK;
}

/* Read the whole token into the cache (the global lock released meanwhile,
 * see cache_sync_relock). */
static CK_RV
load_full_relock(struct mod_token *t)
{
    struct load_ctx c;
    unsigned tampered = 0;
    ks_rv kr;

    memset(&c, 0, sizeof(c));
    c.rv = CKR_OK;
    mod_unlock();
    kr = ks_load_objects(t->ks, load_cb, &c, &tampered);
    mod_lock();
    if (kr != KS_OK || c.rv != CKR_OK) {
        objs_free(c.objs, c.n);
        cache_arena_free(c.arena);
        return kr != KS_OK ? mod_ks_ckr(kr, t->ks, "ks_load_objects") : c.rv;
    }
    if (tampered > 0)
        mod_log("slot %u: %u stored object(s) failed their integrity check and are hidden (%s)",
                (unsigned)t->slot, tampered, ks_last_error(t->ks));
    integrity_hidden_inlock(t, tampered, 1);
    cache_objs_clear_inlock(t);
    t->objs = c.objs;
    t->nobjs = c.n;
    t->capobjs = c.cap;
    t->arena = c.arena;
    t->loaded = 1;
    t->partial = 0;
    t->seq = c.seq;
    for (size_t i = 0; i < t->nobjs; i++)
        t->objs[i]->used = ++t->tick;
    cache_ix_rebuild(t);
    return CKR_OK;
}

/*
 * Needs the token lock (and the global lock). The check (ks_changed, a
 * shared-memory comparison) and an incremental reload (a few changed rows,
 * applied in place) keep the global lock. A cache not yet filled starts
 * partial (cache_lazy.c): it only notes the keystore's change sequence
 * number, and objects come in as they are searched for or named by handle.
 * A full load (cache_sync_full_relock) reads the whole token with the
 * global lock released — into a separate list, swapped in once the lock is
 * back. The token lock keeps the cache and the login state as they were
 * meanwhile (both change only under it), and readers that hold only the
 * global lock see the old cache or the new one, never a mix.
 */
CK_RV
cache_sync_relock(struct mod_token *t)
{
    int changed = 0;
    ks_rv kr;
    CK_RV rv;

    if (t->state != TOK_OPEN)
        return CKR_TOKEN_NOT_RECOGNIZED;
    cache_evict_inlock(t);
    rv = profile_ensure_inlock(t);
    if (rv != CKR_OK)
        return rv;
    kr = ks_changed(t->ks, &changed);
    if (kr != KS_OK)
        return mod_ks_ckr(kr, t->ks, "ks_changed");
    t->synced_at = mono_now();
    if ((t->loaded || t->partial) && !changed)
        return CKR_OK;
    if ((t->loaded || t->partial) && getenv("EVERTOKEN_FULL_RELOAD") == NULL &&
        cache_sync_delta_inlock(t) == CKR_OK) {
        /* A long batch of changes (this process's own writes read back
         * included) may have grown a partial cache: bounded again now, not
         * at the next call. */
        cache_evict_inlock(t);
        return CKR_OK;
    }
    if (t->loaded)
        return load_full_relock(t);
    return cache_partial_begin_inlock(t);
}

CK_RV
cache_sync_full_relock(struct mod_token *t)
{
    CK_RV rv = cache_sync_relock(t);

    if (rv != CKR_OK || t->loaded)
        return rv;
    return load_full_relock(t);
}

void
cache_objs_clear_inlock(struct mod_token *t)
{
    t->dgen++;
    t->evict_at = 0;
    ix_clear(t);
    objs_free(t->objs, t->nobjs);
    cache_arena_free(t->arena); /* after the objects that lived in it */
    t->arena = NULL;
    t->objs = NULL;
    t->nobjs = t->capobjs = 0;
    cache_rset_free_inlock(t);
}

void
cache_drop_inlock(struct mod_token *t)
{
    cache_objs_clear_inlock(t);
    t->loaded = 0;
    t->partial = 0;
}

void
cache_destroy_sobjs_inlock(struct mod_token *t, CK_SESSION_HANDLE owner, int only_private)
{
    struct mod_object **pp = &t->sobjs, *o;

    while ((o = *pp) != NULL) {
        if ((owner == 0 || o->owner == owner) && (!only_private || o->priv)) {
            *pp = o->next;
            cache_object_free(o);
        } else {
            pp = &o->next;
        }
    }
}

void
cache_free_inlock(struct mod_token *t)
{
    cache_drop_inlock(t);
    cache_destroy_sobjs_inlock(t, 0, 0);
    cache_object_free(t->prof);
    t->prof = NULL;
}

int
cache_visible(const struct mod_token *t, const struct mod_object *o)
{
    /* Private objects only for the logged-in user; the SO sees none. */
    return !o->priv || t->login == CKU_USER;
}

/* Index of handle H in t->objs, or where it would be inserted. */
size_t
cache_objs_search(const struct mod_token *t, CK_OBJECT_HANDLE h, int *found)
{
    size_t lo = 0, hi = t->nobjs;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->objs[mid]->h < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < t->nobjs && t->objs[lo]->h == h;
    return lo;
}

static CK_RV
lookup_inlock(struct mod_token *t, CK_OBJECT_HANDLE h, int retired_ok, struct mod_object **out)
{
    struct mod_object *o = NULL;
    int found = 0;

    if (h == MOD_HANDLE_PROFILE) {
        o = t->prof;
    } else if (h >= MOD_HANDLE_SOBJ_FIRST) {
        for (o = t->sobjs; o != NULL && o->h != h; o = o->next)
            ;
    } else {
        size_t i = cache_objs_search(t, h, &found);
        if (found) {
            o = t->objs[i];
            o->used = ++t->tick;
        } else if (t->partial && h <= MOD_TOKEN_HANDLE_MAX) {
            /* Not read yet: from the keystore (cache_lazy.c). */
            CK_RV rv = cache_fetch_inlock(t, h, retired_ok, &o);

            if (rv != CKR_OK)
                return rv;
        }
    }
    if (o == NULL || !cache_visible(t, o) || (o->retired && !retired_ok))
        return CKR_OBJECT_HANDLE_INVALID;
    *out = o;
    return CKR_OK;
}

CK_RV
cache_lookup_inlock(struct mod_token *t, CK_OBJECT_HANDLE h, struct mod_object **out)
{
    return lookup_inlock(t, h, 0, out);
}

CK_RV
cache_lookup_key_inlock(struct mod_token *t, CK_OBJECT_HANDLE h, struct mod_object **out)
{
    return lookup_inlock(t, h, 1, out);
}

CK_RV
cache_add_token_inlock(struct mod_token *t, CK_OBJECT_HANDLE h, mod_attrs *attrs)
{
    struct mod_object *o;
    int found = 0;
    size_t i;

    i = cache_objs_search(t, h, &found);
    if (found) {
        /* Already loaded by a reload since the write: keep ours. */
        cache_set_attrs_inlock(t, t->objs[i], attrs);
        return CKR_OK;
    }
    o = calloc(1, sizeof(*o));
    if (o == NULL) {
        obj_free(attrs);
        return CKR_HOST_MEMORY;
    }
    o->h = h;
    o->attrs = attrs;
    o->token = CK_TRUE;
    o->priv = obj_bool(attrs, CKA_PRIVATE, CK_FALSE);
    return cache_objs_insert_inlock(t, o);
}

CK_RV
cache_objs_insert_inlock(struct mod_token *t, struct mod_object *o)
{
    int found = 0;
    size_t i = cache_objs_search(t, o->h, &found);
    CK_RV rv;

    if (found) {
        cache_object_free(o);
        return CKR_GENERAL_ERROR; /* callers look first */
    }
    rv = objs_push(&t->objs, &t->nobjs, &t->capobjs, o);
    if (rv != CKR_OK) {
        cache_object_free(o);
        return rv;
    }
    memmove(&t->objs[i + 1], &t->objs[i], (t->nobjs - 1 - i) * sizeof(*t->objs));
    t->objs[i] = o;
    o->used = ++t->tick;
    if (!o->retired)
        ix_insert(t, o);
    return CKR_OK;
}

CK_RV
cache_add_session_inlock(struct mod_token *t, CK_SESSION_HANDLE owner, mod_attrs *attrs,
                         CK_OBJECT_HANDLE *out)
{
    struct mod_object *o = calloc(1, sizeof(*o));

    if (o == NULL) {
        obj_free(attrs);
        return CKR_HOST_MEMORY;
    }
    o->h = mod_next_sobj++;
    o->attrs = attrs;
    o->token = CK_FALSE;
    o->priv = obj_bool(attrs, CKA_PRIVATE, CK_FALSE);
    o->owner = owner;
    o->next = t->sobjs;
    t->sobjs = o;
    *out = o->h;
    return CKR_OK;
}

void
cache_remove_inlock(struct mod_token *t, struct mod_object *o)
{
    int found = 0;
    size_t i;

    if (o->profile)
        return;
    if (!o->token) {
        for (struct mod_object **pp = &t->sobjs; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == o) {
                *pp = o->next;
                break;
            }
        }
        cache_object_free(o);
        return;
    }
    t->dgen++;
    cache_ix_unlink(t, o);
    i = cache_objs_search(t, o->h, &found);
    if (found && t->objs[i] == o) {
        memmove(&t->objs[i], &t->objs[i + 1], (t->nobjs - 1 - i) * sizeof(*t->objs));
        t->nobjs--;
    }
    cache_object_free(o);
}
