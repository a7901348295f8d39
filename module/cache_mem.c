/*
 * cache_mem.c — the memory of a token's object cache: the load arena
 * (public objects of large reads placed in mmap'd chunks) and the bound on
 * cached objects (eviction of the least recently used).
 *
 * Locking as in cache.c: the cache changes only with the token lock and the
 * global lock held.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cache_int.h"

/* ---- load arena ------------------------------------------------------------ */

/*
 * A full load copies every public object of the token (100 MB at 100,000
 * certificates): one malloc per object, and a page fault per fresh page,
 * were most of its cost. Public objects of a load (and of a partial
 * cache's search returning many, cache_lazy.c) are therefore placed in
 * large mmap'd chunks, populated by the kernel in one go; the chunks go
 * when the next load replaces the cache or it is dropped, or once every
 * object placed in one was evicted (cache_evict_inlock; an object destroyed
 * or changed meanwhile leaves its bytes there until then).
 * Objects in locked memory (private, keys) are never placed here.
 */
struct mod_arena {
    struct mod_arena *next;
    size_t size, used;
    size_t live; /* objects placed here not freed yet (cache_arena_sweep_inlock) */
};

#define ARENA_FIRST (64u << 10)
#define ARENA_CHUNK (4u << 20)
#define ARENA_HEAD  ((sizeof(struct mod_arena) + 15) & ~(size_t)15)

void *
cache_arena_alloc(struct mod_arena **list, size_t n)
{
    struct mod_arena *a = *list;
    void *p;

    n = (n + 15) & ~(size_t)15;
    if (a == NULL || a->size - a->used < n) {
        /* 64 KiB, doubling up to 4 MiB: a small token costs little. */
        size_t sz = a == NULL ? ARENA_FIRST : a->size * 2 > ARENA_CHUNK ? ARENA_CHUNK : a->size * 2;

        if (n > sz - ARENA_HEAD)
            sz = (ARENA_HEAD + n + 4095) & ~(size_t)4095;
        p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1,
                 0);
        if (p == MAP_FAILED)
            return NULL;
        a = p;
        a->size = sz;
        a->used = ARENA_HEAD;
        a->next = *list;
        *list = a;
    }
    p = (unsigned char *)a + a->used;
    a->used += n;
    return p;
}

void
cache_arena_free(struct mod_arena *a)
{
    while (a != NULL) {
        struct mod_arena *next = a->next;

        munmap(a, a->size);
        a = next;
    }
}

void
cache_arena_adopt_inlock(struct mod_token *t, struct mod_arena *list)
{
    struct mod_arena *a = list;

    if (a == NULL)
        return;
    while (a->next != NULL)
        a = a->next;
    a->next = t->arena;
    t->arena = list;
}

void
cache_arena_hold(struct mod_arena *a)
{
    a->live++;
}

void
cache_arena_release(struct mod_arena *a)
{
    if (a != NULL && a->live > 0)
        a->live--;
}

/* Unmap the chunks of T's cache whose objects are all gone (evicted). */
static void
arena_sweep_inlock(struct mod_token *t)
{
    struct mod_arena **pp = &t->arena, *a;

    while ((a = *pp) != NULL) {
        if (a->live == 0) {
            *pp = a->next;
            munmap(a, a->size);
        } else {
            pp = &a->next;
        }
    }
}

/* ---- bounded cache ------------------------------------------------------------ */

/*
 * A partial cache (cache_lazy.c) takes in the objects searches and handle
 * lookups ask for; without a bound, a process that looks at every object in
 * turn would end up holding the whole token. Beyond cache_max() stored
 * objects, cache_evict_inlock drops the least recently used (cache_lookup,
 * searches and reads stamp o->used) down to three quarters of the bound,
 * keeping every object a session holds: the rest of an active search's
 * snapshot. An evicted object keeps its handle (the keystore id): the next
 * lookup by handle reads it again by id (ks_object_get: checked, MAC or
 * AEAD, as any read) and caches it anew. Its memory is freed (secrets
 * wiped: obj_free), a chunk of the load arena once all its objects are
 * gone. Operations never point into the cache (they hold their own
 * reference to the OpenSSL key, or a copy of a secret key's value), so an
 * operation in progress does not hold its key object. The values that
 * searches resolved (cache_lazy.c) are forgotten, since an evicted object
 * may have been one of theirs; a full cache becomes partial.
 */

#define CACHE_MAX_DEFAULT 4096

size_t
cache_max(void)
{
    static long max = -1;

    if (max < 0) {
        const char *v = getenv("EVERTOKEN_CACHE_OBJECTS");
        char *end = NULL;
        long n = v != NULL && *v != '\0' ? strtol(v, &end, 10) : -1;

        max = n >= 0 && end != NULL && *end == '\0' ? n : CACHE_MAX_DEFAULT;
        if (max > 0 && max < 16)
            max = 16;
    }
    return (size_t)max;
}

/* Mark (ON) or unmark the cached objects that T's sessions hold. */
static void
mark_held(struct mod_token *t, int on)
{
    for (struct mod_session *s = mod_g.sessions; s != NULL; s = s->next) {
        if (s->tok != t || !s->find_active)
            continue;
        for (CK_ULONG i = s->pos; i < s->nfound; i++) {
            int found = 0;
            size_t j;

            if (s->found[i] > MOD_TOKEN_HANDLE_MAX)
                continue;
            j = cache_objs_search(t, s->found[i], &found);
            if (found)
                t->objs[j]->held = on;
        }
    }
}

/* After a large eviction (the end of a search for most of the token): the
 * handle array and the index buckets sized for what is left. */
static void
shrink_inlock(struct mod_token *t)
{
    if (t->capobjs <= 4 * t->nobjs + 64)
        return;
    if (t->nobjs > 0) {
        struct mod_object **p = realloc(t->objs, t->nobjs * sizeof(*p));

        if (p == NULL)
            return; /* keeps the larger one */
        t->objs = p;
        t->capobjs = t->nobjs;
    } else {
        free(t->objs);
        t->objs = NULL;
        t->capobjs = 0;
    }
    cache_ix_rebuild(t);
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

void
cache_evict_inlock(struct mod_token *t)
{
    size_t max = cache_max(), keep = max - max / 4, nfree = 0, w = 0, evicted = 0;
    uint64_t *stamps, cut;

    if (max == 0 || t->nobjs <= max || t->nobjs < t->evict_at)
        return;
    stamps = malloc(t->nobjs * sizeof(*stamps));
    if (stamps == NULL)
        return; /* no memory to choose: try again later */
    mark_held(t, 1);
    for (size_t i = 0; i < t->nobjs; i++)
        if (!t->objs[i]->held && !t->objs[i]->retired)
            stamps[nfree++] = t->objs[i]->used;
    if (nfree > max) {
        /* Stamps are distinct: exactly nfree - keep are older than cut. */
        qsort(stamps, nfree, sizeof(*stamps), cmp_u64);
        cut = stamps[nfree - keep];
        for (size_t i = 0; i < t->nobjs; i++) {
            struct mod_object *o = t->objs[i];

            if (!o->held && !o->retired && o->used < cut) {
                cache_ix_unlink(t, o);
                cache_object_free(o);
                evicted++;
            } else {
                o->held = 0;
                t->objs[w++] = o;
            }
        }
        t->nobjs = w;
    } else {
        mark_held(t, 0);
    }
    free(stamps);
    if (evicted > 0) {
        t->evicted += evicted;
        cache_rset_free_inlock(t);
        if (t->loaded) {
            t->loaded = 0;
            t->partial = 1;
        }
        arena_sweep_inlock(t);
        shrink_inlock(t);
    }
    /* Held ones stay until their search ends (find_end resets this). */
    t->evict_at = t->nobjs + max / 4;
}
