/*
 * logincache.c — the per-token login cache policy (login_cache = none |
 * process | user:N) and the cached token key in the Linux kernel user
 * keyring. The vendor functions that read and write the setting are in
 * ext.c.
 *
 * With user:N, a user login with the PIN puts the token master key (TMK) in
 * this uid's user keyring (keyutils add_key, type "user", description
 * "evertoken:<token id in hex>", permissions possessor + user only, timeout N
 * seconds). Another process of the same uid then logs in from it
 * (lc_login_inlock): the keystore checks the key against the token's MAC'd
 * metadata and the user PIN generation it was cached under (ks_login_tmk).
 * The entry's payload is
 *     "ETc1" | PIN generation (8 bytes, little endian) | TMK (32 bytes)
 * and is only ever read into sodium_malloc'd memory, wiped after use.
 *
 * Without a usable keyring (seccomp, ENOSYS, a container without keyrings)
 * the module behaves as with "process" and says so in the debug log.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keyutils.h>
#include <sodium.h>

#include "evertoken_ext.h" /* ET_SETTING_LOGIN_CACHE */
#include "mod_int.h"

#define LC_MAGIC       "ETc1"
#define LC_PAYLOAD_LEN (4 + 8 + KS_TMK_LEN)
#define LC_DESC_PREFIX "evertoken:"
/* Possessor and same uid: view, read, search, update, set timeout; the
 * possessor may also link it. Group and others: nothing. */
#define LC_PERM                                                                                    \
    (KEY_POS_VIEW | KEY_POS_READ | KEY_POS_WRITE | KEY_POS_SEARCH | KEY_POS_LINK |                 \
     KEY_POS_SETATTR | KEY_USR_VIEW | KEY_USR_READ | KEY_USR_WRITE | KEY_USR_SEARCH |              \
     KEY_USR_SETATTR)

/* Set once the kernel refused keyrings outright (process-wide, sticky). */
static int lc_no_keyring;

static int
lc_keyring_error(int err)
{
    return err == ENOSYS || err == EPERM || err == EOPNOTSUPP;
}

static void
lc_keyring_gone(const char *what, int err)
{
    if (!lc_no_keyring)
        mod_log("kernel keyring unavailable (%s: %s): login_cache=user:N behaves as "
                "login_cache=process",
                what, strerror(err));
    lc_no_keyring = 1;
}

/* ---- policy ------------------------------------------------------------- */

int
lc_parse(const char *s, struct lc_policy *out)
{
    unsigned long v;
    char *end = NULL;

    if (s == NULL || out == NULL)
        return -1;
    memset(out, 0, sizeof(*out));
    if (strcmp(s, "none") == 0) {
        out->kind = LC_NONE;
        return 0;
    }
    if (strcmp(s, "process") == 0) {
        out->kind = LC_PROCESS;
        return 0;
    }
    if (strncmp(s, "user:", 5) != 0 || s[5] < '1' || s[5] > '9')
        return -1;
    errno = 0;
    v = strtoul(s + 5, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > LC_SECS_MAX)
        return -1;
    out->kind = LC_USER;
    out->secs = (unsigned)v;
    return 0;
}

void
lc_format(const struct lc_policy *p, char *buf, size_t n)
{
    switch (p->kind) {
    case LC_NONE:
        snprintf(buf, n, "none");
        break;
    case LC_USER:
        snprintf(buf, n, "user:%u", p->secs);
        break;
    default:
        snprintf(buf, n, "process");
        break;
    }
}

void
lc_policy_inlock(struct mod_token *t, int need_auth, struct lc_policy *out)
{
    char *v = NULL;
    int auth = 0, has_mac = 0;
    ks_rv kr;

    memset(out, 0, sizeof(*out));
    out->kind = LC_PROCESS;
    if (t->ks == NULL)
        return;
    kr = ks_get_setting_ex(t->ks, ET_SETTING_LOGIN_CACHE, &v, &auth, &has_mac);
    if (kr == KS_E_NOT_FOUND)
        return;
    if (kr == KS_E_TAMPERED) {
        integrity_setting_refused_inlock(t, ET_SETTING_LOGIN_CACHE, "fails its MAC check");
        return;
    }
    if (kr != KS_OK) {
        mod_log("slot %u: reading login_cache: %s (%s); using process", (unsigned)t->slot,
                ks_strerror(kr), ks_last_error(t->ks));
        return;
    }
    if (!has_mac) {
        /* Settings are only ever written logged in, with a MAC. */
        integrity_setting_refused_inlock(t, ET_SETTING_LOGIN_CACHE, "has no MAC");
        free(v);
        return;
    }
    if (lc_parse(v, out) != 0) {
        mod_log("slot %u: login_cache value '%s' malformed; using process", (unsigned)t->slot, v);
        out->kind = LC_PROCESS;
    } else if (need_auth && out->kind == LC_USER && !auth) {
        /* Only the token's owner (with the TMK) can ask for a weaker
         * policy: a value planted in the file without the MAC is ignored. */
        mod_log("slot %u: login_cache=%s is not authenticated (written without a login); "
                "using process",
                (unsigned)t->slot, v);
        out->kind = LC_PROCESS;
        out->secs = 0;
    }
    free(v);
}

/* ---- keyring entry ------------------------------------------------------ */

/* "evertoken:<token id>" for T; -1 if the token id cannot be read. */
static int
lc_desc_inlock(struct mod_token *t, char desc[sizeof(LC_DESC_PREFIX) + 2 * KS_TOKEN_ID_LEN])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = sizeof(LC_DESC_PREFIX) - 1;

    if (!t->have_id) {
        ks_info ki;
        ks_rv kr;

        if (t->ks == NULL)
            return -1;
        kr = ks_get_info_ex(t->ks, &ki, 0);
        if (kr != KS_OK) {
            mod_log("slot %u: token id unreadable: %s", (unsigned)t->slot, ks_strerror(kr));
            return -1;
        }
        memcpy(t->token_id, ki.token_id, KS_TOKEN_ID_LEN);
        t->have_id = 1;
    }
    memcpy(desc, LC_DESC_PREFIX, o);
    for (size_t i = 0; i < KS_TOKEN_ID_LEN; i++) {
        desc[o++] = hex[t->token_id[i] >> 4];
        desc[o++] = hex[t->token_id[i] & 15];
    }
    desc[o] = '\0';
    return 0;
}

/* The entry's serial, or -1 (none, expired, no keyring). */
static key_serial_t
lc_find_inlock(struct mod_token *t)
{
    char desc[sizeof(LC_DESC_PREFIX) + 2 * KS_TOKEN_ID_LEN];
    long k;

    if (lc_no_keyring || lc_desc_inlock(t, desc) != 0)
        return -1;
    /* Searches this uid's user keyring only (not the session keyring): a
     * key someone linked elsewhere under our name is not ours to trust. */
    k = keyctl_search(KEY_SPEC_USER_KEYRING, "user", desc, 0);
    if (k < 0) {
        if (lc_keyring_error(errno))
            lc_keyring_gone("keyctl_search", errno);
        return -1;
    }
    return (key_serial_t)k;
}

int
lc_present_inlock(struct mod_token *t)
{
    return lc_find_inlock(t) >= 0;
}

int
lc_clear_inlock(struct mod_token *t)
{
    key_serial_t k;
    int removed = 0;

    /* Invalidation removes the key from every keyring at once (also links
     * to it a process may have made); unlink is the fallback. Loop: an
     * older entry could sit behind the one found. */
    for (int i = 0; i < 4 && (k = lc_find_inlock(t)) >= 0; i++) {
        if (keyctl_invalidate(k) != 0 && keyctl_unlink(k, KEY_SPEC_USER_KEYRING) != 0) {
            mod_log("slot %u: cannot remove the cached login (key %d): %s", (unsigned)t->slot,
                    (int)k, strerror(errno));
            break;
        }
        removed = 1;
    }
    if (removed)
        mod_log("slot %u: login cache emptied", (unsigned)t->slot);
    return removed;
}

void
lc_store_inlock(struct mod_token *t, const struct lc_policy *p)
{
    char desc[sizeof(LC_DESC_PREFIX) + 2 * KS_TOKEN_ID_LEN];
    unsigned char *buf;
    uint64_t gen = 0;
    key_serial_t k;
    ks_rv kr;

    if (p->kind != LC_USER || lc_no_keyring || lc_desc_inlock(t, desc) != 0)
        return;
    buf = sodium_malloc(LC_PAYLOAD_LEN);
    if (buf == NULL) {
        mod_log("slot %u: no locked memory for the login cache", (unsigned)t->slot);
        return;
    }
    kr = ks_export_tmk(t->ks, buf + 12, &gen);
    if (kr != KS_OK) {
        mod_log("slot %u: not cached: %s (%s)", (unsigned)t->slot, ks_strerror(kr),
                ks_last_error(t->ks));
        goto out;
    }
    memcpy(buf, LC_MAGIC, 4);
    for (int i = 0; i < 8; i++)
        buf[4 + i] = (unsigned char)(gen >> (8 * i));
    /* An existing entry of this description is updated in place (its
     * payload replaced); the timeout is set afresh below. */
    k = add_key("user", desc, buf, LC_PAYLOAD_LEN, KEY_SPEC_USER_KEYRING);
    if (k < 0) {
        if (lc_keyring_error(errno))
            lc_keyring_gone("add_key", errno);
        else
            mod_log("slot %u: add_key failed: %s; not cached", (unsigned)t->slot, strerror(errno));
        goto out;
    }
    /* The default permissions already exclude group and others; narrow
     * them to the documented set, then bound the lifetime. Without either
     * the entry must not stay. */
    if (keyctl_setperm(k, LC_PERM) != 0 || keyctl_set_timeout(k, p->secs) != 0) {
        mod_log("slot %u: cannot set the cached login's permissions/timeout: %s; removed",
                (unsigned)t->slot, strerror(errno));
        if (keyctl_invalidate(k) != 0)
            (void)keyctl_unlink(k, KEY_SPEC_USER_KEYRING);
        goto out;
    }
    mod_log("slot %u: login cached for %u s (key %d, PIN generation %llu)", (unsigned)t->slot,
            p->secs, (int)k, (unsigned long long)gen);
out:
    sodium_free(buf);
}

CK_RV
lc_login_inlock(struct mod_token *t)
{
    struct lc_policy pol;
    unsigned char *buf = NULL;
    uint64_t gen = 0;
    key_serial_t k;
    long n;
    ks_rv kr;
    CK_RV rv;

    k = lc_find_inlock(t);
    if (k < 0)
        return CKR_USER_NOT_LOGGED_IN;
    /* Cheap pre-check (not yet authenticated): an entry left from before
     * the policy changed away from user:N is removed unused. */
    lc_policy_inlock(t, 0, &pol);
    if (pol.kind != LC_USER) {
        mod_log("slot %u: cached login found but login_cache is not user:N", (unsigned)t->slot);
        rv = CKR_USER_NOT_LOGGED_IN;
        goto refuse;
    }
    buf = sodium_malloc(LC_PAYLOAD_LEN + 1);
    if (buf == NULL)
        return CKR_HOST_MEMORY;
    n = keyctl_read(k, (char *)buf, LC_PAYLOAD_LEN + 1);
    if (n < 0) {
        /* Expired or removed between search and read: no entry. */
        mod_log("slot %u: reading the cached login: %s", (unsigned)t->slot, strerror(errno));
        sodium_free(buf);
        return CKR_USER_NOT_LOGGED_IN;
    }
    if (n != LC_PAYLOAD_LEN || memcmp(buf, LC_MAGIC, 4) != 0) {
        mod_log("slot %u: cached login malformed (%ld bytes)", (unsigned)t->slot, n);
        rv = CKR_PIN_INCORRECT;
        goto refuse;
    }
    for (int i = 0; i < 8; i++)
        gen |= (uint64_t)buf[4 + i] << (8 * i);
    kr = ks_login_tmk(t->ks, buf + 12, KS_TMK_LEN, gen);
    sodium_free(buf); /* wipes */
    buf = NULL;
    if (kr != KS_OK) {
        rv = mod_ks_ckr(kr, t->ks, "ks_login_tmk");
        if (kr == KS_E_BUSY || kr == KS_E_NOMEM || kr == KS_E_IO)
            return rv; /* transient: the entry may be fine */
        goto refuse;
    }
    /* Now the policy can be checked against its MAC. */
    lc_policy_inlock(t, 1, &pol);
    if (pol.kind != LC_USER) {
        ks_logout(t->ks);
        rv = CKR_USER_NOT_LOGGED_IN;
        goto refuse;
    }
    /* The caller records the login (login_enter_inlock, login.c). */
    mod_log("slot %u: logged in from the login cache", (unsigned)t->slot);
    return CKR_OK;
refuse:
    if (buf != NULL)
        sodium_free(buf);
    (void)lc_clear_inlock(t);
    return rv;
}
