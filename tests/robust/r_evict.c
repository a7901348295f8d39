/*
 * r_evict.c — the bounded object cache (module/cache_mem.c) and the
 * streamed search (module/cache_lazy.c).
 *
 * EVERTOKEN_CACHE_OBJECTS=16 on a token of 300 public and 20 private data
 * objects and an EC key pair. Checked through the module's own state
 * (module/mod_int.h):
 *   - a search holds its snapshot: while it is active every object it has
 *     still to return stays cached (a label shared by NGRP objects, more
 *     than the bound), whatever else is looked at; once it ends, the next
 *     call evicts down to the bound;
 *   - a class search with more candidates than half the bound streams
 *     them (nothing cached); with 320 candidates among 322 rows the
 *     keystore reads the table in id order for it (keystore/lookup.c,
 *     broad_scan_inlock);
 *   - every handle stays valid after its object was evicted, and reads the
 *     same attributes (read again by id, checked);
 *   - the number of cached stored objects never exceeds the bound (plus
 *     what one call takes in) outside an active search;
 *   - an operation in progress does not need its key object: C_SignInit,
 *     the key evicted, C_Sign still signs;
 *   - a logout wipes the private objects (none stays cached; their handles
 *     are invalid until the next login, then read again);
 *   - a template without an indexed attribute streams: every object found,
 *     in handle order, nothing taken into the cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmod.h"

#define NPUB  300
#define NPRIV 20
#define NALL  (NPUB + NPRIV)
#define BOUND 16
#define NGRP  40

static CK_SLOT_ID slot;

static struct mod_token *
token(void)
{
    return r_mod_token(slot);
}

static size_t
cached_private(void)
{
    struct mod_token *t = token();
    size_t n = 0;

    for (size_t i = 0; i < t->nobjs; i++)
        n += t->objs[i]->priv != 0;
    return n;
}

static void
make_objects(CK_OBJECT_HANDLE *priv_key)
{
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE pub[] = {
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_ID, (void *)"kid", 3},
        {CKA_EC_PARAMS, (void *)p256, sizeof(p256)},
    };
    CK_ATTRIBUTE priv[] = {
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SIGN, &yes, sizeof(yes)},
        {CKA_ID, (void *)"kid", 3},
    };
    CK_OBJECT_HANDLE h, h2;
    CK_SESSION_HANDLE s = r_session(slot, R_USER_PIN);
    char label[32];

    /* Values "pub-I"/"priv-I"; the first NGRP labelled "grp" (one label
     * search with more results than the bound), the others as the value. */
    for (int i = 0; i < NALL; i++) {
        snprintf(label, sizeof(label), "%s-%d", i < NPUB ? "pub" : "priv", i);
        R_CK(r_create_data(s, i < NGRP ? "grp" : label, label, strlen(label), i >= NPUB, &h),
             CKR_OK);
    }
    R_CK(R->C_GenerateKeyPair(s, &m, pub, 4, priv, 4, &h, &h2), CKR_OK);
    *priv_key = h2;
}

/* Every data object (by class), handles into ALL (NALL + 8 slots). */
static long
all_data(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE *all)
{
    CK_RV rv;
    long n = r_find_data(s, NULL, all, NALL + 8, &rv);

    R_ASSERT(n >= 0, "all data objects: %s", r_ckr(rv));
    return n;
}

/* H's CKA_VALUE is the label "pub-I" or "priv-I" it was made with. */
static void
value_is(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, int i)
{
    char want[32], buf[64];
    size_t len = sizeof(buf);

    snprintf(want, sizeof(want), "%s-%d", i < NPUB ? "pub" : "priv", i);
    R_CK(r_get_value(s, h, buf, &len), CKR_OK);
    R_ASSERT(len == strlen(want) && memcmp(buf, want, len) == 0, "handle %lu: %.*s, expected %s",
             (unsigned long)h, (int)len, buf, want);
}

/* While a search is active its snapshot stays cached; afterwards the
 * cache goes back to the bound. */
static void
held_by_search(CK_SESSION_HANDLE s, CK_SESSION_HANDLE s2, const CK_OBJECT_HANDLE *all)
{
    CK_ATTRIBUTE a = {CKA_LABEL, (void *)"grp", 3};
    CK_OBJECT_HANDLE got[8];
    CK_ULONG n = 0;
    struct mod_token *t;

    R_CK(R->C_FindObjectsInit(s2, &a, 1), CKR_OK);
    R_CK(R->C_FindObjects(s2, got, 4, &n), CKR_OK);
    R_ASSERT(n == 4, "first part of the search: %lu", (unsigned long)n);
    /* Other lookups meanwhile: each syncs (and may evict). */
    for (int i = 0; i < NALL; i += 7)
        value_is(s, all[i], i);
    t = token();
    R_ASSERT(t->nobjs >= NGRP - 4, "an active search's snapshot was evicted: %zu cached", t->nobjs);
    R_CK(R->C_FindObjects(s2, got, 8, &n), CKR_OK);
    R_ASSERT(n == 8 && got[0] == all[4], "the search goes on where it was");
    R_CK(R->C_FindObjectsFinal(s2), CKR_OK);
    value_is(s, all[0], 0);
    t = token();
    R_ASSERT(t->nobjs <= BOUND + 1, "after the search: %zu cached (bound %d)", t->nobjs, BOUND);
}

/* Sign with the key evicted between C_SignInit and C_Sign. */
static void
sign_evicted(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, const CK_OBJECT_HANDLE *all)
{
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    unsigned char dgst[32] = {1, 2, 3}, sig[128];
    CK_ULONG slen = sizeof(sig);
    struct mod_token *t;
    int found = 0;

    R_CK(R->C_SignInit(s, &m, key), CKR_OK);
    for (int i = 0; i < NALL; i++)
        value_is(s, all[i], i);
    t = token();
    (void)cache_objs_search(t, key, &found);
    R_ASSERT(!found, "the key should have been evicted (%zu cached)", t->nobjs);
    R_CK(R->C_Sign(s, dgst, sizeof(dgst), sig, &slen), CKR_OK);
    R_ASSERT(slen == 64, "ECDSA P-256 signature of %lu bytes", (unsigned long)slen);
    /* And again through the handle, read anew. */
    slen = sizeof(sig);
    R_CK(R->C_SignInit(s, &m, key), CKR_OK);
    R_CK(R->C_Sign(s, dgst, sizeof(dgst), sig, &slen), CKR_OK);
}

/* A template without an indexed attribute streams the token. */
static void
streamed(CK_SESSION_HANDLE s, const CK_OBJECT_HANDLE *all)
{
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE a = {CKA_TOKEN, &yes, sizeof(yes)};
    CK_OBJECT_HANDLE got[NALL + 8];
    CK_ULONG n = 0, m = 0;
    struct mod_token *t = token();
    size_t before = t->nobjs;
    long j = 0;

    R_CK(R->C_FindObjectsInit(s, &a, 1), CKR_OK);
    while (R->C_FindObjects(s, got + n, 3, &m) == CKR_OK && m > 0)
        n += m;
    R_CK(R->C_FindObjectsFinal(s), CKR_OK);
    /* The data objects, the key pair, the profile object. */
    R_ASSERT(n == NALL + 3, "streamed search found %lu", (unsigned long)n);
    /* The profile object first (as any search), then in handle order. */
    R_ASSERT(got[0] == MOD_HANDLE_PROFILE, "profile object first");
    for (CK_ULONG i = 2; i < n; i++)
        R_ASSERT(got[i - 1] < got[i], "streamed search out of handle order at %lu",
                 (unsigned long)i);
    for (CK_ULONG i = 0; i < n && j < NALL; i++)
        j += got[i] == all[j];
    R_ASSERT(j == NALL, "streamed search missed data object %ld", j);
    t = token();
    R_ASSERT(t->partial && !t->loaded && t->nobjs <= before,
             "streaming cached objects: %zu, %zu before", t->nobjs, before);
}

int
main(void)
{
    char dir[256];
    CK_SESSION_HANDLE s, s2;
    CK_OBJECT_HANDLE all[NALL + 8], again[NALL + 8], key;
    struct mod_token *t;
    long n;

    setenv("EVERTOKEN_CACHE_OBJECTS", "16", 1);
    r_setup(dir, "evict");
    r_init();
    slot = r_make_token();
    make_objects(&key);
    R_CK(R->C_Finalize(NULL), CKR_OK);

    r_init();
    R_ASSERT(cache_max() == BOUND, "bound %zu", cache_max());
    s = r_session(slot, R_USER_PIN);
    s2 = r_session(slot, NULL);
    /* Every data object: more than half the bound, so streamed. */
    n = all_data(s, all);
    R_ASSERT(n == NALL, "all data objects: %ld", n);
    t = token();
    R_ASSERT(t->nobjs <= 2, "a search by class too broad to cache cached %zu", t->nobjs);
    /* Every object, some twice: the cache stays bounded, values right. */
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < NALL; i++) {
            value_is(s, all[i], i);
            t = token();
            R_ASSERT(t->nobjs <= BOUND + 1, "%zu cached (bound %d)", t->nobjs, BOUND);
        }
    t = token();
    R_ASSERT(t->evicted >= NALL, "only %llu evicted", (unsigned long long)t->evicted);
    /* The same handles by a new search after the evictions. */
    R_ASSERT(all_data(s, again) == NALL && memcmp(all, again, sizeof(all[0]) * NALL) == 0,
             "handles changed after eviction");
    held_by_search(s, s2, all);
    sign_evicted(s, key, all);
    streamed(s, all);

    /* A logout wipes the private objects; their handles read again after
     * the next login. */
    value_is(s, all[NPUB + 3], NPUB + 3);
    R_ASSERT(cached_private() > 0, "a private object should be cached");
    R_CK(R->C_Logout(s), CKR_OK);
    value_is(s, all[5], 5);
    R_ASSERT(cached_private() == 0, "%zu private objects cached after logout", cached_private());
    {
        char buf[64];
        size_t len = sizeof(buf);

        R_CK(r_get_value(s, all[NPUB + 3], buf, &len), CKR_OBJECT_HANDLE_INVALID);
    }
    R_CK(R->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)R_USER_PIN, strlen(R_USER_PIN)), CKR_OK);
    for (int i = NPUB; i < NALL; i++)
        value_is(s, all[i], i);
    R_CK(R->C_Finalize(NULL), CKR_OK);
    r_rm_rf(dir);
    printf("r_evict: ok\n");
    return 0;
}
