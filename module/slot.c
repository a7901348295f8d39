/*
 * slot.c — slots and tokens: the token directory as a slot list, slot and
 * token information and C_InitToken (the mechanism queries are in mech.c).
 *
 * A slot is a token file DIR/token-<N>.db (slot id N), plus one free slot
 * (id = highest + 1) whose uninitialised token C_InitToken turns into a new
 * file. Token information is read from the file on every call so that
 * counters and labels changed by other processes show.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mod_int.h"

static struct mod_token *
tok_find(uint32_t slot)
{
    for (struct mod_token *t = mod_g.tokens; t != NULL; t = t->next)
        if (t->slot == slot)
            return t;
    return NULL;
}

static CK_RV
tok_new_inlock(uint32_t slot, struct mod_token **out)
{
    struct mod_token *t = calloc(1, sizeof(*t)), **pp;
    CK_RV rv;

    if (t == NULL)
        return CKR_HOST_MEMORY;
    t->slot = slot;
    t->state = TOK_FREE;
    login_leave_inlock(t, LOGOUT_RESET);
    rv = mod_mutex_new(&t->op_mutex);
    if (rv == CKR_OK) {
        rv = mod_mutex_new(&t->lock);
        if (rv != CKR_OK)
            mod_mutex_free(t->op_mutex);
    }
    if (rv != CKR_OK) {
        free(t);
        return rv;
    }
    for (pp = &mod_g.tokens; *pp != NULL && (*pp)->slot < slot; pp = &(*pp)->next)
        ;
    t->next = *pp;
    *pp = t;
    *out = t;
    return CKR_OK;
}

/* CHILD: after fork (see slot_free_all). */
static void
tok_free(struct mod_token *t, int child)
{
    cache_free_inlock(t);
    if (t->ks != NULL) {
        if (!child) {
            ks_close(t->ks);
        } else if (t->busy == 0) {
            /* Wipes the TMK in this copy of memory; no SQLite call. A busy
             * token's keystore mutex may be held by a thread that does not
             * exist in the child, so it is left alone. */
            ks_logout(t->ks);
        }
    }
    /* In a child the op mutex and the token lock may be held by a vanished
     * thread. */
    if (!child) {
        mod_mutex_free(t->op_mutex);
        mod_mutex_free(t->lock);
    }
    free(t);
}

static void
tok_unlink_free_inlock(struct mod_token *t)
{
    for (struct mod_token **pp = &mod_g.tokens; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    tok_free(t, 0);
}

void
slot_free_all(int child)
{
    struct mod_token *t = mod_g.tokens, *next;

    for (; t != NULL; t = next) {
        next = t->next;
        tok_free(t, child);
    }
    mod_g.tokens = NULL;
}

static void
tok_open_inlock(struct mod_token *t)
{
    char *path = ks_token_path(mod_g.dir, t->slot);
    ks_token *ks = NULL;
    ks_rv kr;

    if (path == NULL) {
        t->state = TOK_BROKEN;
        t->open_err = KS_E_NOMEM;
        return;
    }
    kr = ks_open(path, &ks);
    if (kr == KS_OK) {
        t->ks = ks;
        t->state = TOK_OPEN;
        t->loaded = 0;
        t->partial = 0;
        login_leave_inlock(t, LOGOUT_RESET);
        t->have_id = 0;
    } else {
        t->state = TOK_BROKEN;
        t->open_err = kr;
        mod_log("slot %u: cannot open %s: %s (%s)", (unsigned)t->slot, path, ks_strerror(kr),
                ks_open_error());
    }
    free(path);
}

CK_RV
slot_scan_inlock(int prune)
{
    uint32_t *ids = NULL, max = 0, want;
    size_t n = 0;
    int any = 0;
    struct mod_token *t, *next;
    ks_rv kr;
    CK_RV rv = CKR_OK;

    kr = ks_dir_scan(mod_g.dir, &ids, &n);
    if (kr != KS_OK)
        return mod_ks_ckr(kr, NULL, "scanning the token directory");
    for (t = mod_g.tokens; t != NULL; t = t->next)
        t->present = 0;
    for (size_t i = 0; i < n; i++) {
        t = tok_find(ids[i]);
        if (t == NULL) {
            rv = tok_new_inlock(ids[i], &t);
            if (rv != CKR_OK)
                goto done;
        }
        t->present = 1;
        /* A free slot whose file another process created, or a file that
         * failed to open last time (busy, half-created): (re)try. A busy
         * token is being created by C_InitToken right now. */
        if (t->state != TOK_OPEN && t->busy == 0)
            tok_open_inlock(t);
    }
    for (t = mod_g.tokens; t != NULL; t = next) {
        next = t->next;
        /* Gone from the directory: drop it unless this process still has
         * sessions on it (or a thread works on it). */
        if (prune && t->state != TOK_FREE && !t->present && t->busy == 0 && t->nsess == 0)
            tok_unlink_free_inlock(t);
    }
    /* The free slot sits above every token (a free slot being turned into
     * a token by C_InitToken counts as a token). */
    for (t = mod_g.tokens; t != NULL; t = t->next) {
        if (t->state == TOK_FREE && t->busy == 0)
            continue;
        if (!any || t->slot > max)
            max = t->slot;
        any = 1;
    }
    if (any && max >= KS_SLOT_MAX)
        goto done; /* no id left for a new token */
    want = any ? max + 1 : 0;
    for (t = mod_g.tokens; t != NULL; t = next) {
        next = t->next;
        /* Older free slots are withdrawn only by a pruning scan, so slots a
         * caller was given stay valid until it asks for the list again. */
        if (prune && t->state == TOK_FREE && t->busy == 0 && t->slot != want)
            tok_unlink_free_inlock(t);
    }
    if (tok_find(want) == NULL)
        rv = tok_new_inlock(want, &t);
done:
    free(ids);
    return rv;
}

CK_RV
slot_lookup_inlock(CK_SLOT_ID id, struct mod_token **out)
{
    struct mod_token *t = NULL;
    CK_RV rv;

    if (id <= KS_SLOT_MAX + 1UL)
        t = tok_find((uint32_t)id);
    if (t == NULL && id <= KS_SLOT_MAX + 1UL) {
        /* Slot ids are file names: a program may name a slot created by
         * another process (or the CLI's --slot) before listing slots. */
        rv = slot_scan_inlock(0);
        if (rv != CKR_OK)
            return rv;
        t = tok_find((uint32_t)id);
    }
    if (t == NULL)
        return CKR_SLOT_ID_INVALID;
    *out = t;
    return CKR_OK;
}

CK_RV
tok_usable_inlock(struct mod_token *t)
{
    if (t->state == TOK_BROKEN && t->busy == 0)
        tok_open_inlock(t);
    return t->state == TOK_OPEN ? CKR_OK : CKR_TOKEN_NOT_RECOGNIZED;
}

/* ---- slot list and information ------------------------------------------ */

CK_RV
mod_C_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
    CK_ULONG n = 0;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (count == NULL)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    /* Every slot holds a token (the free slot an uninitialised one), so
     * PRESENT does not filter. */
    if (list == NULL) {
        rv = slot_scan_inlock(1);
        if (rv != CKR_OK)
            goto out;
    }
    for (struct mod_token *t = mod_g.tokens; t != NULL; t = t->next)
        n++;
    if (list == NULL) {
        *count = n;
        rv = CKR_OK;
        goto out;
    }
    if (*count < n) {
        *count = n;
        rv = CKR_BUFFER_TOO_SMALL;
        goto out;
    }
    n = 0;
    for (struct mod_token *t = mod_g.tokens; t != NULL; t = t->next)
        list[n++] = t->slot;
    *count = n;
    rv = CKR_OK;
out:
    mod_unlock();
    return rv;
}

CK_RV
mod_C_GetSlotInfo(CK_SLOT_ID id, CK_SLOT_INFO_PTR info)
{
    struct mod_token *t = NULL;
    char desc[64];
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == NULL)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = slot_lookup_inlock(id, &t);
    if (rv != CKR_OK)
        goto out;
    memset(info, 0, sizeof(*info));
    snprintf(desc, sizeof(desc), "evertoken slot %lu", (unsigned long)id);
    mod_pad(info->slotDescription, sizeof(info->slotDescription), desc);
    mod_pad(info->manufacturerID, sizeof(info->manufacturerID), MOD_MANUFACTURER);
    /* A software token is always present and not a removable device. */
    info->flags = CKF_TOKEN_PRESENT;
    info->hardwareVersion.major = MOD_VERSION_MAJOR;
    info->hardwareVersion.minor = MOD_VERSION_MINOR;
    info->firmwareVersion.major = MOD_VERSION_MAJOR;
    info->firmwareVersion.minor = MOD_VERSION_MINOR;
out:
    mod_unlock();
    return rv;
}

static CK_FLAGS
pin_flags(unsigned fails, unsigned max, CK_FLAGS low, CK_FLAGS final, CK_FLAGS locked)
{
    CK_FLAGS f = 0;

    if (fails > 0)
        f |= low;
    if (max > 0 && fails == max - 1)
        f |= final;
    if (max > 0 && fails >= max)
        f |= locked;
    return f;
}

static void
token_info_common(const struct mod_token *t, CK_TOKEN_INFO *info)
{
    memset(info, 0, sizeof(*info));
    mod_pad(info->label, sizeof(info->label), "");
    mod_pad(info->manufacturerID, sizeof(info->manufacturerID), MOD_MANUFACTURER);
    mod_pad(info->model, sizeof(info->model), MOD_MODEL);
    mod_pad(info->serialNumber, sizeof(info->serialNumber), "");
    info->flags = CKF_RNG | CKF_LOGIN_REQUIRED;
    info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
    info->ulSessionCount = t->nsess;
    info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
    info->ulRwSessionCount = t->nrw;
    info->ulMaxPinLen = KS_PIN_MAX;
    info->ulMinPinLen = KS_PIN_MIN;
    info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->hardwareVersion.major = MOD_VERSION_MAJOR;
    info->hardwareVersion.minor = MOD_VERSION_MINOR;
    info->firmwareVersion.major = MOD_VERSION_MAJOR;
    info->firmwareVersion.minor = MOD_VERSION_MINOR;
    /* No CKF_CLOCK_ON_TOKEN: utcTime is then meaningless; blanks. */
    memset(info->utcTime, ' ', sizeof(info->utcTime));
}

CK_RV
mod_C_GetTokenInfo(CK_SLOT_ID id, CK_TOKEN_INFO_PTR info)
{
    struct mod_token *t = NULL, *locked = NULL;
    ks_info ki;
    ks_rv kr;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == NULL)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = slot_lookup_inlock(id, &t);
    if (rv != CKR_OK)
        goto out;
    if (t->state == TOK_FREE) {
        /* The uninitialised token of the free slot. */
        token_info_common(t, info);
        goto out;
    }
    rv = tok_usable_inlock(t);
    if (rv != CKR_OK)
        goto out;
    /* Its keystore is read: the token lock (T stays busy and open). */
    tok_lock_relock(t);
    locked = t;
    memset(&ki, 0, sizeof(ki));
    kr = ks_get_info_ex(t->ks, &ki, 0);
    if (kr != KS_OK) {
        rv = mod_ks_ckr(kr, t->ks, "ks_get_info");
        goto out;
    }
    token_info_common(t, info);
    mod_pad(info->label, sizeof(info->label), ki.label);
    mod_pad(info->serialNumber, sizeof(info->serialNumber), ki.serial);
    info->flags |= CKF_TOKEN_INITIALIZED;
    if (ki.user_pin_initialized)
        info->flags |= CKF_USER_PIN_INITIALIZED;
    info->flags |= pin_flags(ki.user_fail_count, ki.max_attempts, CKF_USER_PIN_COUNT_LOW,
                             CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED);
    info->flags |= pin_flags(ki.so_fail_count, ki.max_attempts, CKF_SO_PIN_COUNT_LOW,
                             CKF_SO_PIN_FINAL_TRY, CKF_SO_PIN_LOCKED);
    /* login_cache=user:N: while this user's keyring holds the token key, no
     * PIN needs typing — C_Login(CKU_USER, NULL_PTR) logs in, as on a token
     * with a PIN pad. One keyctl search (the token id is known by now). */
    if (!t->have_id) {
        memcpy(t->token_id, ki.token_id, KS_TOKEN_ID_LEN);
        t->have_id = 1;
    }
    if (ki.user_pin_initialized && ki.user_fail_count < ki.max_attempts && lc_present_inlock(t)) {
        struct lc_policy pol;

        /* Only then is the setting read (an entry under another policy is
         * never used, and removed at the next login attempt). */
        lc_policy_inlock(t, 0, &pol);
        if (pol.kind == LC_USER)
            info->flags |= CKF_PROTECTED_AUTHENTICATION_PATH;
    }
out:
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

/* ---- C_InitToken -------------------------------------------------------- */

/* A PKCS#11 label (32 bytes, blank padded, not NUL-terminated) as stored:
 * trailing blanks removed; a NUL ends it early (some callers pad with NULs). */
static void
label_from_p11(const CK_UTF8CHAR *p, char out[KS_LABEL_MAX + 1])
{
    size_t n = 0;

    while (n < 32 && n < KS_LABEL_MAX && p[n] != '\0')
        n++;
    while (n > 0 && p[n - 1] == ' ')
        n--;
    memcpy(out, p, n);
    out[n] = '\0';
}

/* C_InitToken on the free slot: create its file (Argon2id for the SO PIN)
 * with the global lock released; the caller holds T's op mutex. */
static CK_RV
tok_create_relock(struct mod_token *t, const char *label, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
    ks_kdf_params kdf;
    ks_token *ks = NULL;
    char *path;
    ks_rv kr;

    memset(&kdf, 0, sizeof(kdf));
    kr = ks_kdf_from_env(&kdf);
    if (kr != KS_OK) {
        mod_log("EVERTOKEN_KDF is malformed; using the default cost");
        memset(&kdf, 0, sizeof(kdf));
    }
    path = ks_token_path(mod_g.dir, t->slot);
    if (path == NULL)
        return CKR_HOST_MEMORY;
    tok_kdf_unlock(t);
    kr = ks_create(path, label, pin, pin_len, &kdf, &ks);
    tok_kdf_relock(t);
    free(path);
    if (kr == KS_E_EXISTS) {
        /* Another process created this slot's file since our last scan:
         * it is its token, not ours to overwrite. The caller lists the
         * slots again and finds the new free slot. */
        mod_log("slot %u: token file appeared meanwhile", (unsigned)t->slot);
        return CKR_FUNCTION_FAILED;
    }
    if (kr != KS_OK)
        return mod_ks_ckr(kr, NULL, "ks_create");
    t->ks = ks;
    t->state = TOK_OPEN;
    t->present = 1;
    t->loaded = 0;
    t->partial = 0;
    login_leave_inlock(t, LOGOUT_RESET);
    t->have_id = 0;
    mod_log("slot %u: token created", (unsigned)t->slot);
    return CKR_OK;
}

/* C_InitToken on an existing token: re-initialise it (every object goes)
 * with the global lock released; the caller holds T's op mutex. */
static CK_RV
tok_reinit_relock(struct mod_token *t, const char *label, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
    ks_rv kr;
    CK_RV rv;

    rv = tok_usable_inlock(t);
    if (rv != CKR_OK)
        return rv;
    /* Section 5.6, C_InitToken: "If the token has sessions open by the
     * application, C_InitToken fails with CKR_SESSION_EXISTS". */
    if (t->nsess > 0)
        return CKR_SESSION_EXISTS;
    tok_kdf_unlock(t);
    kr = ks_reinit(t->ks, pin, pin_len, label);
    tok_kdf_relock(t);
    if (kr != KS_OK)
        return mod_ks_ckr(kr, t->ks, "ks_reinit");
    /* Every object is gone and nobody is logged in; a cached login of the
     * old token key could not open it any more, and is removed. */
    login_leave_inlock(t, LOGOUT_RESET);
    (void)lc_clear_inlock(t);
    cache_drop_inlock(t);
    cache_destroy_sobjs_inlock(t, 0, 0);
    return CKR_OK;
}

CK_RV
mod_C_InitToken(CK_SLOT_ID id, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len, CK_UTF8CHAR_PTR p11label)
{
    struct mod_token *t = NULL;
    char label[KS_LABEL_MAX + 1];
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    /* A NULL PIN asks for a protected authentication path; the SO has none
     * (CKF_PROTECTED_AUTHENTICATION_PATH only ever means the user's login
     * cache). */
    if (pin == NULL || p11label == NULL)
        return CKR_ARGUMENTS_BAD;
    label_from_p11(p11label, label);
    mod_lock();
    rv = slot_lookup_inlock(id, &t);
    if (rv != CKR_OK)
        goto done;
    /* PIN operations on one token are serialised by its op mutex (taken
     * before the global lock); busy keeps T alive meanwhile. */
    tok_pin_begin_relock(t);
    if (t->state == TOK_FREE)
        rv = tok_create_relock(t, label, pin, pin_len);
    else
        rv = tok_reinit_relock(t, label, pin, pin_len);
    tok_pin_end_inlock(t);
done:
    mod_unlock();
    return rv;
}

CK_RV
mod_C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slot == NULL || reserved != NULL)
        return CKR_ARGUMENTS_BAD;
    /* Software tokens are never inserted or removed; a token file created
     * by another process shows at the next C_GetSlotList. */
    return CKR_FUNCTION_NOT_SUPPORTED;
}
