/*
 * cache_int.h — what the two halves of a token's object cache share
 * (cache.c: loads, indexes, lookups; cache_lazy.c: the partial cache).
 * Nothing else includes it. Locking as in mod_int.h ("The token lock").
 */
#ifndef EVERTOKEN_CACHE_INT_H
#define EVERTOKEN_CACHE_INT_H

#include "mod_int.h"

/* cache.c */
void cache_object_free(struct mod_object *o);
/* A new heap-allocated stored object for record KO. */
CK_RV cache_stored_from_ks(const ks_object *ko, struct mod_object **out);
/* A stored object for record KO, placed in the load arena list *LIST
 * (public records; freed with the arena) or, where it cannot be, alone. */
CK_RV cache_stored_place(struct mod_arena **list, const ks_object *ko, struct mod_object **out);
/* T's cache takes the arena list LIST (freed when the cache is cleared). */
void cache_arena_adopt_inlock(struct mod_token *t, struct mod_arena *list);
/* Insert stored object O (not in t->objs yet) in handle order and in the
 * indexes; on failure O is freed. */
CK_RV cache_objs_insert_inlock(struct mod_token *t, struct mod_object *o);
/* Insert the NADD stored objects ADD (none in t->objs yet, handles
 * distinct) at once: sorted once, merged, indexed (the indexes rebuilt when
 * they are the most). On failure nothing changed and the caller still owns
 * them. */
CK_RV cache_objs_merge_inlock(struct mod_token *t, struct mod_object **add, size_t nadd);
/* Free every cached stored object, the indexes and the resolved values. */
void cache_objs_clear_inlock(struct mod_token *t);

/* Rebuild the indexes of t->objs, sized for them. */
void cache_ix_rebuild(struct mod_token *t);
/* Remove stored object O from the indexes (it stays in t->objs). */
void cache_ix_unlink(struct mod_token *t, struct mod_object *o);

/* cache_mem.c */
/* N bytes (16-aligned) in the arena list *LIST (a new chunk mapped when
 * the first is full); NULL without memory. */
void *cache_arena_alloc(struct mod_arena **list, size_t n);
/* Unmap every chunk of LIST. */
void cache_arena_free(struct mod_arena *list);
/* An object was placed in chunk A / freed from it. */
void cache_arena_hold(struct mod_arena *a);
void cache_arena_release(struct mod_arena *a);

/* cache_lazy.c */
/* Start a partial cache: empty, as of the keystore's change sequence now. */
CK_RV cache_partial_begin_inlock(struct mod_token *t);
/* Stored object H from the keystore into the partial cache; a retired one
 * (not purged yet) only when RETIRED_OK, cached as retired (mod_int.h). */
CK_RV cache_fetch_inlock(struct mod_token *t, CK_OBJECT_HANDLE h, int retired_ok,
                         struct mod_object **out);
/* Was VALUE of index K resolved (cache_resolve_relock) in this partial cache? */
int cache_resolved_inlock(const struct mod_token *t, int k, const void *value, size_t len);
void cache_rset_free_inlock(struct mod_token *t);

#endif /* EVERTOKEN_CACHE_INT_H */
