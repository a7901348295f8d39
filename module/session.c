/*
 * session.c — sessions and login state.
 *
 * Login state belongs to the token, shared by all of this process's sessions
 * on it (PKCS#11 2.40 section 6.7.1). Closing the last session on a token
 * logs it out. PIN checks run Argon2id, so they run with the global lock
 * released, serialised per token by op_begin_inlock/op_end_inlock.
 *
 * The token's login_cache policy (logincache.c, docs/module.md) adds: with
 * user:N a user login with the PIN fills the cache, C_Login(CKU_USER) with a
 * NULL or empty PIN and C_OpenSession on a logged-out token log in from it;
 * with none every C_Login verifies its PIN, even when already logged in.
 * C_SetPIN of the user PIN, C_InitPIN and a lockout empty the cache.
 * CKU_CONTEXT_SPECIFIC never uses it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mod_int.h"

CK_RV
session_lookup_inlock(CK_SESSION_HANDLE h, struct mod_session **out)
{
    for (struct mod_session *s = mod_g.sessions; s != NULL; s = s->next) {
        if (s->h == h) {
            *out = s;
            return CKR_OK;
        }
    }
    return CKR_SESSION_HANDLE_INVALID;
}

void
tok_logout_inlock(struct mod_token *t)
{
    if (t->ks != NULL)
        ks_logout(t->ks);
    t->login = MOD_NOBODY;
    t->login_cached = 0;
    t->login_implicit = 0;
    /* Operations on private keys end, and no session keeps a reference to
     * a private key's OpenSSL key beyond this point. */
    op_logout_inlock(t);
    /* Section 5.6, C_Logout: private session objects are destroyed; the
     * cached stored objects are dropped (private ones wiped) and reloaded
     * without the private ones at the next lookup. */
    cache_drop_inlock(t);
    cache_destroy_sobjs_inlock(t, 0, 1);
}

static void
session_close_inlock(struct mod_session *s)
{
    struct mod_token *t = s->tok;

    for (struct mod_session **pp = &mod_g.sessions; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    find_end(s);
    op_session_close_inlock(s);
    cache_destroy_sobjs_inlock(t, s->h, 0);
    t->nsess--;
    if (s->flags & CKF_RW_SESSION)
        t->nrw--;
    if (t->nsess == 0 && t->login != MOD_NOBODY)
        tok_logout_inlock(t);
    free(s);
}

void
session_close_all_inlock(void)
{
    while (mod_g.sessions != NULL)
        session_close_inlock(mod_g.sessions);
}

void
session_forget_all(void)
{
    struct mod_session *s = mod_g.sessions, *next;

    for (; s != NULL; s = next) {
        next = s->next;
        /* Frees an idle operation (its key is wiped by OpenSSL); one a
         * parent thread was computing with is abandoned. */
        op_session_close_inlock(s);
        free(s->found);
        free(s);
    }
    mod_g.sessions = NULL;
}

/*
 * Enter a PIN operation on session H's token: with the global lock held,
 * returns with the token's op mutex held too and the token marked busy, so
 * the caller may release the global lock around the KDF. The session is
 * looked up again after waiting; if it was closed meanwhile the operation is
 * CKR_SESSION_CLOSED (section 5.1: "the session was closed during the
 * execution of the function").
 */
static CK_RV
op_begin_inlock(CK_SESSION_HANDLE h, struct mod_session **out)
{
    struct mod_session *s = NULL;
    struct mod_token *t;
    CK_RV rv;

    rv = session_lookup_inlock(h, &s);
    if (rv != CKR_OK)
        return rv;
    t = s->tok;
    t->busy++;
    mod_unlock();
    mod_mutex_lock(t->op_mutex);
    mod_lock();
    rv = session_lookup_inlock(h, &s);
    if (rv != CKR_OK) {
        mod_mutex_unlock(t->op_mutex);
        t->busy--;
        return CKR_SESSION_CLOSED;
    }
    *out = s;
    return CKR_OK;
}

static void
op_end_inlock(struct mod_token *t)
{
    mod_mutex_unlock(t->op_mutex);
    t->busy--;
}

/* ---- sessions ----------------------------------------------------------- */

/* login_cache=user:N: a logged-out token whose cache entry (this user's
 * kernel keyring) holds the token key is logged in from it, as if the
 * application had logged in. Not while another thread is in a PIN operation
 * on the token (it holds the op mutex; its result decides the state).
 * THROTTLE (C_GetSessionInfo, which applications call often): at most one
 * keyring search per LC_RETRY_NS while there is no entry. */
#define LC_RETRY_NS 200000000LL
static void
cached_login_inlock(struct mod_token *t, int throttle)
{
    struct timespec ts;
    long long now;
    CK_RV lr;

    if (t->login != MOD_NOBODY || t->busy != 0 || t->logged_out)
        return;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    now = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    if (throttle && t->lc_tried != 0 && now - t->lc_tried < LC_RETRY_NS)
        return;
    lr = lc_login_inlock(t);
    t->lc_tried = lr == CKR_OK ? 0 : now;
    if (lr == CKR_OK)
        t->login_implicit = 1;
    else if (lr != CKR_USER_NOT_LOGGED_IN)
        mod_log("slot %u: cached login refused (CKR 0x%lx); sessions stay public",
                (unsigned)t->slot, (unsigned long)lr);
}

CK_RV
mod_C_OpenSession(CK_SLOT_ID id, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                  CK_SESSION_HANDLE_PTR out)
{
    struct mod_token *t = NULL;
    struct mod_session *s;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (out == NULL)
        return CKR_ARGUMENTS_BAD;
    /* Section 5.6: "For legacy reasons, the CKF_SERIAL_SESSION bit MUST
     * always be set". */
    if (!(flags & CKF_SERIAL_SESSION))
        return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    mod_lock();
    rv = slot_lookup_inlock(id, &t);
    if (rv != CKR_OK)
        goto out;
    rv = tok_usable_inlock(t);
    if (rv != CKR_OK)
        goto out;
    /* Section 6.7.1: no R/O session while the SO is logged in. */
    if (!(flags & CKF_RW_SESSION) && t->login == CKU_SO) {
        rv = CKR_SESSION_READ_WRITE_SO_EXISTS;
        goto out;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    s->h = mod_next_session++;
    s->tok = t;
    s->flags = flags & (CKF_SERIAL_SESSION | CKF_RW_SESSION);
    s->next = mod_g.sessions;
    mod_g.sessions = s;
    t->nsess++;
    if (flags & CKF_RW_SESSION)
        t->nrw++;
    *out = s->h;
    /* login_cache=user:N: a new session on a logged-out token starts logged
     * in when this user's cache holds the token key, so applications do not
     * prompt. */
    t->logged_out = 0;
    cached_login_inlock(t, 0);
out:
    mod_unlock();
    return rv;
}

CK_RV
mod_C_CloseSession(CK_SESSION_HANDLE h)
{
    struct mod_session *s = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    mod_lock();
    rv = session_lookup_inlock(h, &s);
    if (rv == CKR_OK)
        session_close_inlock(s);
    mod_unlock();
    return rv;
}

CK_RV
mod_C_CloseAllSessions(CK_SLOT_ID id)
{
    struct mod_token *t = NULL;
    struct mod_session *s, *next;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    mod_lock();
    rv = slot_lookup_inlock(id, &t);
    if (rv != CKR_OK)
        goto out;
    for (s = mod_g.sessions; s != NULL; s = next) {
        next = s->next;
        if (s->tok == t)
            session_close_inlock(s);
    }
out:
    mod_unlock();
    return rv;
}

CK_RV
mod_C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
    struct mod_session *s = NULL;
    int rw;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == NULL)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = session_lookup_inlock(h, &s);
    if (rv != CKR_OK)
        goto out;
    /* A session opened before the token was unlocked (evertoken unlock)
     * becomes logged in when asked for its state: this is what NSS checks
     * before it prompts for the PIN, so a browser that loaded the module
     * earlier stops asking once the cache is filled. Not after this
     * process's own C_Logout (until its next session or login). */
    cached_login_inlock(s->tok, 1);
    rw = (s->flags & CKF_RW_SESSION) != 0;
    memset(info, 0, sizeof(*info));
    info->slotID = s->tok->slot;
    info->flags = s->flags;
    info->ulDeviceError = 0;
    switch (s->tok->login) {
    case CKU_SO:
        info->state = CKS_RW_SO_FUNCTIONS; /* SO sessions are always R/W */
        break;
    case CKU_USER:
        info->state = rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
        break;
    default:
        info->state = rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
        break;
    }
out:
    mod_unlock();
    return rv;
}

CK_RV
mod_C_SessionCancel(CK_SESSION_HANDLE h, CK_FLAGS flags)
{
    struct mod_session *s = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    mod_lock();
    rv = session_lookup_inlock(h, &s);
    /* Ends the find and/or the cryptographic operation the flags name;
     * flags naming operations that are not active are ignored. */
    if (rv == CKR_OK && (flags & CKF_FIND_OBJECTS))
        find_end(s);
    if (rv == CKR_OK)
        op_cancel_inlock(s, flags);
    mod_unlock();
    return rv;
}

/* ---- login -------------------------------------------------------------- */

/*
 * C_Login(CKU_CONTEXT_SPECIFIC): the user proves the PIN again for the one
 * operation that needs it (a C_SignInit/C_DecryptInit with a key whose
 * CKA_ALWAYS_AUTHENTICATE is TRUE; PKCS#11 3.0 section 5.5). The PIN is
 * verified by the keystore with the KDF every time (a failure counts toward
 * the lockout like any login), never by a cached login. Without such an
 * operation: CKR_OPERATION_NOT_INITIALIZED.
 */
static CK_RV
context_login_inlock(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
    struct mod_session *s = NULL;
    struct mod_token *t;
    struct mod_op *op;
    unsigned gen = 0;
    ks_rv kr;
    CK_RV rv;

    rv = session_lookup_inlock(h, &s);
    if (rv != CKR_OK)
        return rv;
    op = op_auth_pending_inlock(s, &gen);
    if (op == NULL)
        return CKR_OPERATION_NOT_INITIALIZED;
    if (pin == NULL)
        return CKR_ARGUMENTS_BAD;
    if (s->tok->login != CKU_USER)
        return CKR_USER_NOT_LOGGED_IN;
    rv = op_begin_inlock(h, &s);
    if (rv != CKR_OK)
        return rv;
    t = s->tok;
    mod_unlock();
    kr = ks_login(t->ks, KS_USER, pin, pin_len);
    mod_lock();
    if (t->login != CKU_USER) {
        /* Logged out during the KDF (a new login would have waited for the
         * op mutex we hold): the keystore must not stay logged in. */
        if (kr == KS_OK)
            ks_logout(t->ks);
        rv = CKR_USER_NOT_LOGGED_IN;
        goto release;
    }
    if (kr != KS_OK) {
        rv = mod_ks_ckr(kr, t->ks, "ks_login (context specific)");
        goto release;
    }
    rv = session_lookup_inlock(h, &s);
    if (rv != CKR_OK) {
        rv = CKR_SESSION_CLOSED;
        goto release;
    }
    rv = op_auth_done_inlock(s, op, gen);
release:
    op_end_inlock(t);
    return rv;
}

/* The user PIN is locked now (after a failed attempt). */
static int
user_pin_locked_inlock(struct mod_token *t)
{
    ks_info ki;

    return ks_get_info_ex(t->ks, &ki, 0) == KS_OK && ki.user_fail_count >= ki.max_attempts;
}

CK_RV
mod_C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE type, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
    struct mod_session *s = NULL;
    struct mod_token *t = NULL;
    struct lc_policy pol;
    int relogin, implicit;
    ks_rv kr;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (type != CKU_SO && type != CKU_USER && type != CKU_CONTEXT_SPECIFIC)
        return CKR_USER_TYPE_INVALID;
    mod_lock();
    if (type == CKU_CONTEXT_SPECIFIC) {
        /* PIN only: never the login cache. */
        rv = context_login_inlock(h, pin, pin_len);
        goto out;
    }
    /* A NULL PIN asks for the protected authentication path; the SO has
     * none. */
    if (pin == NULL && type == CKU_SO) {
        rv = session_lookup_inlock(h, &s);
        if (rv == CKR_OK)
            rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    rv = op_begin_inlock(h, &s);
    if (rv != CKR_OK)
        goto out;
    t = s->tok;
    /* Not authenticated yet (no key): only used to be stricter (none). */
    lc_policy_inlock(t, 0, &pol);
    /* The application never asked for a user login the module restored at
     * C_OpenSession: an SO login replaces it rather than failing with
     * CKR_USER_ANOTHER_ALREADY_LOGGED_IN (the cache entry stays). */
    if (type == CKU_SO && t->login == CKU_USER && t->login_implicit)
        tok_logout_inlock(t);
    if (t->login != MOD_NOBODY && t->login != type) {
        rv = CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
        goto release;
    }
    /* A login the module made itself at C_OpenSession (from the cache) is
     * invisible to the application, which may well call C_Login next:
     * that call succeeds — with a NULL or empty PIN at once, with a PIN
     * once the PIN is verified — instead of CKR_USER_ALREADY_LOGGED_IN. */
    implicit = t->login == CKU_USER && t->login_implicit;
    if (implicit && (pin == NULL || pin_len == 0)) {
        t->login_implicit = 0;
        rv = CKR_OK;
        goto release;
    }
    /* login_cache=none: "already logged in" is not given away without
     * the PIN; the PIN is verified (and a wrong one counted) first. */
    if (t->login == type && pol.kind != LC_NONE && !implicit) {
        rv = CKR_USER_ALREADY_LOGGED_IN;
        goto release;
    }
    relogin = t->login == type;
    /* Section 6.7.1: the SO cannot log in while R/O sessions exist. */
    if (!relogin && type == CKU_SO && t->nsess > t->nrw) {
        rv = CKR_SESSION_READ_ONLY_EXISTS;
        goto release;
    }
    /* C_Login(CKU_USER) with a NULL or empty PIN: the login cache. */
    if (!relogin && type == CKU_USER && (pin == NULL || pin_len == 0) && pol.kind != LC_NONE) {
        rv = lc_login_inlock(t);
        if (rv != CKR_USER_NOT_LOGGED_IN)
            goto release; /* logged in, or an entry was refused (and removed) */
        /* No cache entry: a NULL PIN is a bad argument unless the policy
         * says a cache could have been there (it expired: ask for the
         * PIN); an empty PIN goes on to be too short. */
        if (pin == NULL) {
            rv = pol.kind == LC_USER ? CKR_PIN_INCORRECT : CKR_ARGUMENTS_BAD;
            goto release;
        }
    }
    if (pin == NULL) {
        rv = CKR_ARGUMENTS_BAD;
        goto release;
    }
    mod_unlock();
    kr = ks_login(t->ks, type == CKU_SO ? KS_SO : KS_USER, pin, pin_len);
    mod_lock();
    if (kr != KS_OK) {
        rv = mod_ks_ckr(kr, t->ks, "ks_login");
        /* A lockout ends the cache at once. */
        if (type == CKU_USER &&
            (kr == KS_E_PIN_LOCKED || (kr == KS_E_PIN_INCORRECT && user_pin_locked_inlock(t))))
            (void)lc_clear_inlock(t);
        goto release;
    }
    if (relogin && t->login == type && !t->login_implicit) {
        /* none: the PIN was right; the state is unchanged. */
        rv = CKR_USER_ALREADY_LOGGED_IN;
        goto release;
    }
    if (relogin && t->login == type) {
        /* The application's first C_Login after a login restored at
         * C_OpenSession: now proven by the PIN (refills the cache below). */
        t->login_implicit = 0;
        t->login_cached = 0;
        goto user_pin_ok;
    }
    if (t->nsess == 0) {
        /* Every session closed during the KDF: closing the last session
         * logs out, so this login must not outlive it. */
        ks_logout(t->ks);
        rv = CKR_SESSION_CLOSED;
        goto release;
    }
    if (type == CKU_SO && t->nsess > t->nrw) {
        /* An R/O session was opened during the KDF. */
        ks_logout(t->ks);
        rv = CKR_SESSION_READ_ONLY_EXISTS;
        goto release;
    }
    t->login = type;
    t->login_cached = 0;
    t->login_implicit = 0;
    t->logged_out = 0;
    /* Reload: private objects become visible, and the public ones are now
     * checked against their MAC. */
    cache_drop_inlock(t);
user_pin_ok:
    if (type == CKU_USER) {
        /* Retired rollover material past its grace period goes now. */
        rollover_purge_inlock(t);
        /* Logged in, the policy can be checked against its MAC. */
        lc_policy_inlock(t, 1, &pol);
        if (pol.kind == LC_USER)
            lc_store_inlock(t, &pol);
        else
            (void)lc_clear_inlock(t); /* left from before a policy change */
    }
    rv = CKR_OK;
release:
    op_end_inlock(t);
out:
    mod_unlock();
    return rv;
}

CK_RV
mod_C_LoginUser(CK_SESSION_HANDLE h, CK_USER_TYPE type, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len,
                CK_UTF8CHAR_PTR user, CK_ULONG user_len)
{
    struct mod_session *s = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    mod_lock();
    rv = session_lookup_inlock(h, &s);
    mod_unlock();
    /* evertoken has no user names: one user PIN, one SO PIN (C_Login). */
    return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV
mod_C_Logout(CK_SESSION_HANDLE h)
{
    struct mod_session *s = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    mod_lock();
    rv = session_lookup_inlock(h, &s);
    if (rv != CKR_OK)
        goto out;
    if (s->tok->login == MOD_NOBODY) {
        rv = CKR_USER_NOT_LOGGED_IN;
        goto out;
    }
    tok_logout_inlock(s->tok);
    s->tok->logged_out = 1;
out:
    mod_unlock();
    return rv;
}

/* ---- PINs --------------------------------------------------------------- */

CK_RV
mod_C_InitPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
    struct mod_session *s = NULL;
    struct mod_token *t = NULL;
    ks_rv kr;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (pin == NULL)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = op_begin_inlock(h, &s);
    if (rv != CKR_OK)
        goto out;
    t = s->tok;
    /* Section 5.6, C_InitPIN: "can only be called in the 'R/W SO Functions'
     * state ... other states fail with CKR_USER_NOT_LOGGED_IN". */
    if (t->login != CKU_SO || !(s->flags & CKF_RW_SESSION)) {
        rv = CKR_USER_NOT_LOGGED_IN;
        goto release;
    }
    mod_unlock();
    kr = ks_init_user_pin(t->ks, pin, pin_len);
    mod_lock();
    rv = mod_ks_ckr(kr, t->ks, "ks_init_user_pin");
    /* The SO reset the user PIN: a cached login of the old one goes (the
     * keystore's PIN generation moved on too, for other processes). */
    if (rv == CKR_OK)
        (void)lc_clear_inlock(t);
release:
    op_end_inlock(t);
out:
    mod_unlock();
    return rv;
}

CK_RV
mod_C_SetPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len,
             CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len)
{
    struct mod_session *s = NULL;
    struct mod_token *t = NULL;
    ks_who who;
    ks_rv kr;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (old_pin == NULL || new_pin == NULL)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = op_begin_inlock(h, &s);
    if (rv != CKR_OK)
        goto out;
    t = s->tok;
    /* Section 5.6, C_SetPIN: only in R/W sessions; the SO's session
     * changes the SO PIN, a public or user session the user PIN. */
    if (!(s->flags & CKF_RW_SESSION)) {
        rv = CKR_SESSION_READ_ONLY;
        goto release;
    }
    who = t->login == CKU_SO ? KS_SO : KS_USER;
    mod_unlock();
    kr = ks_set_pin(t->ks, who, old_pin, old_len, new_pin, new_len);
    mod_lock();
    rv = mod_ks_ckr(kr, t->ks, "ks_set_pin");
    if (rv == CKR_OK && who == KS_USER)
        (void)lc_clear_inlock(t); /* see C_InitPIN */
    else if (who == KS_USER &&
             (kr == KS_E_PIN_LOCKED || (kr == KS_E_PIN_INCORRECT && user_pin_locked_inlock(t))))
        (void)lc_clear_inlock(t);
release:
    op_end_inlock(t);
out:
    mod_unlock();
    return rv;
}
