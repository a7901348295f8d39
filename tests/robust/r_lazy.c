/*
 * r_lazy.c — the partial object cache (module/cache_lazy.c) with another
 * process writing.
 *
 * A token with 80 public and 10 private data objects (more than cache_lazy.c places one by one) and
 * an EC key pair (CKA_ID "kid") is reopened by a fresh C_Initialize. Searches by label and by
 * CKA_ID must answer without loading the token (the cache holds only the candidates; checked
 * through the module's own state, module/mod_int.h), before and after a login. Then another process
 * (forked, its own C_Initialize) creates, destroys and renames objects, some of them cached here
 * and some not; every later search and handle lookup must see exactly the file's state. Searches by
 * class and key type (the keystore's schema-6 lookup columns) answer without loading the token
 * either, before and after the other process's writes. Handles stay the same whether an object was
 * read lazily, again after a logout dropped the cache, or by a stream (a template without an
 * indexed attribute: every record read, matched, none cached).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rmod.h"

#define NPUB  80
#define NPRIV 10

static CK_SLOT_ID slot;

static struct mod_token *
token(void)
{
    return r_mod_token(slot);
}

/* Exactly N data objects labelled LABEL; the first handle into *H. */
static void
expect_label(CK_SESSION_HANDLE s, const char *label, long n, CK_OBJECT_HANDLE *h)
{
    CK_OBJECT_HANDLE out[8];
    CK_RV rv;
    long got = r_find_data(s, label, out, 8, &rv);

    R_ASSERT(got == n, "label %s: found %ld, expected %ld (%s)", label, got, n, r_ckr(rv));
    if (h != NULL && n > 0)
        *h = out[0];
}

static long
find_id(CK_SESSION_HANDLE s, const char *id)
{
    CK_ATTRIBUTE a = {CKA_ID, (void *)id, strlen(id)};
    CK_OBJECT_HANDLE out[8];
    CK_ULONG n = 0;

    R_CK(R->C_FindObjectsInit(s, &a, 1), CKR_OK);
    R_CK(R->C_FindObjects(s, out, 8, &n), CKR_OK);
    R_CK(R->C_FindObjectsFinal(s), CKR_OK);
    return (long)n;
}

/* How many objects TYPE = V (a CK_ULONG) finds; *HAS: whether H is one. */
static long
find_ulong(CK_SESSION_HANDLE s, CK_ATTRIBUTE_TYPE type, CK_ULONG v, CK_OBJECT_HANDLE h, int *has)
{
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};
    CK_OBJECT_HANDLE out[NPUB + NPRIV + 8];
    CK_ULONG n = 0;

    R_CK(R->C_FindObjectsInit(s, &a, 1), CKR_OK);
    R_CK(R->C_FindObjects(s, out, NPUB + NPRIV + 8, &n), CKR_OK);
    R_CK(R->C_FindObjectsFinal(s), CKR_OK);
    if (has != NULL) {
        *has = 0;
        for (CK_ULONG i = 0; i < n; i++)
            *has |= out[i] == h;
    }
    return (long)n;
}

static void
set_label(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, const char *label)
{
    CK_ATTRIBUTE a = {CKA_LABEL, (void *)label, strlen(label)};

    R_CK(R->C_SetAttributeValue(s, h, &a, 1), CKR_OK);
}

static void
label_is(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, const char *label)
{
    char buf[64];
    CK_ATTRIBUTE a = {CKA_LABEL, buf, sizeof(buf)};

    R_CK(R->C_GetAttributeValue(s, h, &a, 1), CKR_OK);
    R_ASSERT(a.ulValueLen == strlen(label) && memcmp(buf, label, a.ulValueLen) == 0,
             "handle %lu: label %.*s, expected %s", (unsigned long)h, (int)a.ulValueLen, buf,
             label);
}

static void
make_objects(void)
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

    for (int i = 0; i < NPUB + NPRIV; i++) {
        snprintf(label, sizeof(label), "%s-%d", i < NPUB ? "pub" : "priv", i);
        R_CK(r_create_data(s, label, label, strlen(label), i >= NPUB, &h), CKR_OK);
    }
    R_CK(R->C_GenerateKeyPair(s, &m, pub, 4, priv, 4, &h, &h2), CKR_OK);
}

/* The other process: its own module instance on the same token. */
static void
writer(CK_OBJECT_HANDLE h8, CK_OBJECT_HANDLE h9)
{
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h;

    r_init();
    s = r_session(slot, R_USER_PIN);
    R_CK(r_create_data(s, "pub-7", "dup", 3, 0, &h), CKR_OK); /* a resolved value */
    R_CK(R->C_DestroyObject(s, h8), CKR_OK);                  /* cached there */
    expect_label(s, "pub-20", 1, &h);
    R_CK(R->C_DestroyObject(s, h), CKR_OK); /* never read there */
    expect_label(s, "pub-30", 1, &h);
    set_label(s, h, "moved-30"); /* never read there */
    set_label(s, h9, "moved-9"); /* cached there */
    R_CK(r_create_data(s, "fresh", "f", 1, 0, &h), CKR_OK);
    R_CK(R->C_Finalize(NULL), CKR_OK);
    _exit(0);
}

int
main(void)
{
    char dir[256];
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h7, h8, h9, hx, hf;
    struct mod_token *t;
    int has = 0;
    pid_t pid;

    r_setup(dir, "lazy");
    r_init();
    slot = r_make_token();
    make_objects();
    R_CK(R->C_Finalize(NULL), CKR_OK);

    /* A fresh start: searches read only their candidates. */
    r_init();
    s = r_session(slot, NULL);
    expect_label(s, "pub-7", 1, &h7);
    expect_label(s, "pub-8", 1, &h8);
    expect_label(s, "pub-9", 1, &h9);
    expect_label(s, "priv-85", 0, NULL); /* private: not before login */
    R_ASSERT(find_id(s, "kid") == 1, "CKA_ID kid before login");
    t = token();
    R_ASSERT(t->partial && !t->loaded && t->nobjs <= 5, "partial %d loaded %d objects %zu",
             t->partial, t->loaded, t->nobjs);
    R_CK(R->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)R_USER_PIN, strlen(R_USER_PIN)), CKR_OK);
    expect_label(s, "priv-85", 1, NULL);
    R_ASSERT(find_id(s, "kid") == 2, "CKA_ID kid after login");
    expect_label(s, "pub-7", 1, NULL);
    expect_label(s, "pub-8", 1, NULL);
    expect_label(s, "pub-9", 1, NULL);
    t = token();
    R_ASSERT(t->partial && !t->loaded && t->nobjs <= 6, "after login: partial %d objects %zu",
             t->partial, t->nobjs);

    /* "All data objects", "all private keys", "all EC keys": answered by
     * the keystore's class and key type columns, not a full load. */
    R_ASSERT(find_ulong(s, CKA_CLASS, CKO_DATA, h8, &has) == NPUB + NPRIV && has,
             "all data objects before the writes");
    R_ASSERT(find_ulong(s, CKA_CLASS, CKO_PRIVATE_KEY, 0, NULL) == 1, "all private keys");
    t = token();
    R_ASSERT(t->partial && !t->loaded, "class search: partial %d loaded %d", t->partial, t->loaded);

    /* Another process writes, to cached objects and to others. */
    pid = r_spawn();
    if (pid == 0)
        writer(h8, h9);
    R_ASSERT(r_wait_all() == 0, "the writing process failed");
    expect_label(s, "pub-7", 2, NULL);
    expect_label(s, "pub-8", 0, NULL);
    {
        CK_ATTRIBUTE a = {CKA_LABEL, NULL, 0};

        R_CK(R->C_GetAttributeValue(s, h8, &a, 1), CKR_OBJECT_HANDLE_INVALID);
    }
    expect_label(s, "pub-20", 0, NULL);
    expect_label(s, "pub-30", 0, NULL);
    expect_label(s, "moved-30", 1, NULL);
    expect_label(s, "pub-9", 0, NULL);
    expect_label(s, "moved-9", 1, &hx);
    R_ASSERT(hx == h9, "renamed object: handle %lu, was %lu", (unsigned long)hx, (unsigned long)h9);
    expect_label(s, "fresh", 1, &hf);
    /* The class resolved before the writes: 2 destroyed, 2 created. */
    R_ASSERT(find_ulong(s, CKA_CLASS, CKO_DATA, h8, &has) == NPUB + NPRIV && !has,
             "all data objects after the writes still hold a destroyed one");
    R_ASSERT(find_ulong(s, CKA_CLASS, CKO_DATA, hf, &has) == NPUB + NPRIV && has,
             "all data objects after the writes miss the new one");
    R_ASSERT(find_ulong(s, CKA_KEY_TYPE, CKK_EC, 0, NULL) == 2, "all EC keys");
    t = token();
    R_ASSERT(t->partial && !t->loaded, "still partial after the other process's writes");

    /* Handles outlive the cache: a logout drops it, the handle reads again. */
    R_CK(R->C_Logout(s), CKR_OK);
    label_is(s, h7, "pub-7");
    label_is(s, h9, "moved-9");
    expect_label(s, "priv-85", 0, NULL);

    /* All public data objects (the class column, logged out), then a
     * template without an indexed attribute, which streams the token
     * (nothing more cached): the same objects and handles. */
    {
        CK_OBJECT_HANDLE all[NPUB + 8];
        CK_RV rv;
        long n = r_find_data(s, NULL, all, NPUB + 8, &rv);
        int seen7 = 0;
        CK_BBOOL yes = CK_TRUE;
        CK_ATTRIBUTE tok = {CKA_TOKEN, &yes, sizeof(yes)};
        CK_ULONG m = 0;
        size_t cached;

        /* 80 - 2 destroyed + 2 created. */
        R_ASSERT(n == NPUB, "all public data objects: %ld (%s)", n, r_ckr(rv));
        for (long i = 0; i < n; i++)
            seen7 += all[i] == h7;
        R_ASSERT(seen7 == 1, "handle of pub-7 in the list by class");
        t = token();
        R_ASSERT(t->partial && !t->loaded, "class template: no full load");
        cached = t->nobjs;
        R_CK(R->C_FindObjectsInit(s, &tok, 1), CKR_OK);
        R_CK(R->C_FindObjects(s, all, NPUB + 8, &m), CKR_OK);
        R_CK(R->C_FindObjectsFinal(s), CKR_OK);
        /* The public data objects, the EC public key, the profile object. */
        R_ASSERT(m == NPUB + 2, "all token objects: %lu", (unsigned long)m);
        seen7 = 0;
        for (CK_ULONG i = 0; i < m; i++)
            seen7 += all[i] == h7;
        R_ASSERT(seen7 == 1, "handle of pub-7 in the full list");
        t = token();
        R_ASSERT(t->partial && !t->loaded && t->nobjs == cached,
                 "an unindexed template streams: %zu cached, %zu before", t->nobjs, cached);
    }
    R_CK(R->C_Finalize(NULL), CKR_OK);
    r_rm_rf(dir);
    printf("r_lazy: ok\n");
    return 0;
}
