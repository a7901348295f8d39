/*
 * ext.c — the vendor interface "Vendor evertoken" (include/evertoken/
 * evertoken_ext.h, docs/module.md): settings, the login cache, credential
 * rollover. Each mod_ET_* is an entry point like mod_C_*: it checks its
 * arguments, takes the global lock once and hands the work to the room that
 * owns it (logincache.c, rollover.c).
 */
#include <stdio.h>
#include <string.h>

#include "evertoken_ext.h"
#include "mod_int.h"

/* SLOT's usable token with its token lock taken (settings and the login
 * cache read its keystore); *OUT is NULL unless it is to be released with
 * tok_unlock_inlock. */
static CK_RV
ext_token_relock(CK_SLOT_ID slot, struct mod_token **out)
{
    struct mod_token *t = NULL;
    CK_RV rv = slot_lookup_inlock(slot, &t);

    *out = NULL;
    if (rv == CKR_OK)
        rv = tok_usable_inlock(t);
    if (rv != CKR_OK)
        return rv;
    tok_lock_relock(t); /* T stays (busy) and open (only idle tokens close) */
    *out = t;
    return CKR_OK;
}

/* Write setting KEY (T's token lock held): the keystore transaction runs
 * with the global lock released. */
static CK_RV
setting_write_relock(struct mod_token *t, const char *key, const char *text)
{
    ks_rv kr;

    mod_unlock();
    kr = ks_set_setting(t->ks, key, text);
    mod_lock();
    return mod_ks_ckr(kr, t->ks, "ks_set_setting");
}

static CK_RV
mod_ET_GetSetting(CK_SLOT_ID slot, const char *key, char *value, CK_ULONG_PTR len)
{
    struct mod_token *t = NULL;
    struct lc_policy pol;
    char text[32];
    size_t need;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (key == NULL || len == NULL ||
        (strcmp(key, ET_SETTING_LOGIN_CACHE) != 0 && strcmp(key, ET_SETTING_ROLLOVER_GRACE) != 0))
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = ext_token_relock(slot, &t);
    if (rv != CKR_OK)
        goto out;
    if (strcmp(key, ET_SETTING_ROLLOVER_GRACE) == 0) {
        rollover_get_grace_inlock(t, text, sizeof(text));
    } else {
        /* What is stored, authenticated or not (the module honours user:N
         * only when authenticated; docs/module.md). */
        lc_policy_inlock(t, 0, &pol);
        lc_format(&pol, text, sizeof(text));
    }
    need = strlen(text) + 1;
    if (value == NULL) {
        *len = need;
    } else if (*len < need) {
        *len = need;
        rv = CKR_BUFFER_TOO_SMALL;
    } else {
        memcpy(value, text, need);
        *len = need;
    }
out:
    if (t != NULL)
        tok_unlock_inlock(t);
    mod_unlock();
    return rv;
}

static CK_RV
mod_ET_SetSetting(CK_SESSION_HANDLE h, const char *key, const char *value)
{
    struct mod_session *s = NULL;
    struct mod_token *t, *locked = NULL;
    struct lc_policy pol;
    char text[32];
    int64_t grace = 0;
    int is_grace;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (key == NULL || value == NULL)
        return CKR_ARGUMENTS_BAD;
    is_grace = strcmp(key, ET_SETTING_ROLLOVER_GRACE) == 0;
    if (is_grace ? rollover_parse_grace(value, &grace) != 0
                 : (strcmp(key, ET_SETTING_LOGIN_CACHE) != 0 || lc_parse(value, &pol) != 0))
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = session_enter_relock(h, &s, &locked);
    if (rv != CKR_OK)
        goto out;
    t = s->tok;
    if (!(s->flags & CKF_RW_SESSION)) {
        rv = CKR_SESSION_READ_ONLY;
        goto out;
    }
    /* Written under the TMK (MAC'd), by someone who typed a PIN. */
    if (t->login == MOD_NOBODY || t->login_cached) {
        rv = CKR_USER_NOT_LOGGED_IN;
        goto out;
    }
    if (is_grace) {
        snprintf(text, sizeof(text), "%lld", (long long)grace);
        rv = setting_write_relock(t, ET_SETTING_ROLLOVER_GRACE, text);
        goto out;
    }
    lc_format(&pol, text, sizeof(text));
    rv = setting_write_relock(t, ET_SETTING_LOGIN_CACHE, text);
    if (rv == CKR_OK) {
        /* A cache filled under the old policy must not outlive it. */
        (void)lc_clear_inlock(t);
        mod_log("slot %u: login_cache=%s", (unsigned)t->slot, text);
    }
out:
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

static CK_RV
mod_ET_LoginCacheStatus(CK_SLOT_ID slot, CK_BBOOL *live)
{
    struct mod_token *t = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (live == NULL)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = ext_token_relock(slot, &t);
    if (rv == CKR_OK)
        *live = lc_present_inlock(t) ? CK_TRUE : CK_FALSE;
    if (t != NULL)
        tok_unlock_inlock(t);
    mod_unlock();
    return rv;
}

static CK_RV
mod_ET_LoginCacheClear(CK_SLOT_ID slot, CK_BBOOL *removed)
{
    struct mod_token *t = NULL;
    CK_RV rv;
    int r;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    mod_lock();
    rv = ext_token_relock(slot, &t);
    if (rv == CKR_OK) {
        r = lc_clear_inlock(t);
        if (removed != NULL)
            *removed = r ? CK_TRUE : CK_FALSE;
    }
    if (t != NULL)
        tok_unlock_inlock(t);
    mod_unlock();
    return rv;
}

/* ---- 1.1: credential rollover (rollover.c does the work) ----------------- */

/* A user-logged-in R/W session H, with its token lock (*LOCKED). */
static CK_RV
rw_user_session_relock(CK_SESSION_HANDLE h, struct mod_session **s, struct mod_token **locked)
{
    CK_RV rv = session_enter_relock(h, s, locked);

    if (rv != CKR_OK)
        return rv;
    if (!((*s)->flags & CKF_RW_SESSION))
        return CKR_SESSION_READ_ONLY;
    if ((*s)->tok->login != CKU_USER)
        return CKR_USER_NOT_LOGGED_IN;
    return CKR_OK;
}

static CK_RV
mod_ET_RolloverRollback(CK_SESSION_HANDLE h, const CK_BYTE *id, CK_ULONG len)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (id == NULL || len == 0 || len > KS_CRED_MAX)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = rw_user_session_relock(h, &s, &locked);
    if (rv == CKR_OK)
        rv = rollover_rollback_relock(s->tok, id, len);
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

static CK_RV
mod_ET_RolloverDiscard(CK_SESSION_HANDLE h, const CK_BYTE *id, CK_ULONG len, CK_ULONG *count)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (id == NULL || len == 0 || len > KS_CRED_MAX)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = rw_user_session_relock(h, &s, &locked);
    if (rv == CKR_OK)
        rv = rollover_discard_relock(s->tok, id, len, count);
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

static CK_RV
mod_ET_PurgeRetired(CK_SESSION_HANDLE h, CK_ULONG *count)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    mod_lock();
    rv = rw_user_session_relock(h, &s, &locked);
    if (rv == CKR_OK)
        rv = rollover_purge_count_relock(s->tok, count);
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

const ET_FUNCTION_LIST mod_ext_list = {
    {ET_EXT_VERSION_MAJOR, ET_EXT_VERSION_MINOR},
    mod_ET_GetSetting,
    mod_ET_SetSetting,
    mod_ET_LoginCacheStatus,
    mod_ET_LoginCacheClear,
    mod_ET_RolloverRollback,
    mod_ET_RolloverDiscard,
    mod_ET_PurgeRetired,
    ext_GetIntegrity,
};
