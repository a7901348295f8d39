/*
 * login.c — login state and the calls that change it: C_Login (PIN or the
 * login cache), C_Logout, C_LoginUser, CKU_CONTEXT_SPECIFIC, C_InitPIN,
 * C_SetPIN, and the cached login a session finds at C_OpenSession or
 * C_GetSessionInfo.
 *
 * Login state belongs to the token, shared by all of this process's sessions
 * on it (PKCS#11 2.40 section 6.7.1): t->login, login_cached,
 * login_implicit, logged_out. Only login_enter_inlock, login_confirm_inlock,
 * login_leave_inlock and login_restore_inlock below write them. PIN checks
 * run Argon2id, so they run with the global lock released, serialised per
 * token by the op mutex (tok_pin_begin_relock, init.c).
 *
 * The token's login_cache policy (logincache.c, docs/module.md) adds: with
 * user:N a user login with the PIN fills the cache, C_Login(CKU_USER) with a
 * NULL or empty PIN and C_OpenSession on a logged-out token log in from it;
 * with none every C_Login verifies its PIN, even when already logged in.
 * C_SetPIN of the user PIN, C_InitPIN and a lockout empty the cache.
 * CKU_CONTEXT_SPECIFIC never uses it.
 */
#include <string.h>
#include <time.h>

#include "mod_int.h"

/* ---- the login state ------------------------------------------------------ */

void
login_enter_inlock(struct mod_token *t, CK_USER_TYPE who, enum login_how how)
{
    t->login = who;
    t->login_cached = how != LOGIN_PIN;
    t->login_implicit = how == LOGIN_CACHE_IMPLICIT;
    if (how == LOGIN_PIN)
        t->logged_out = 0;
    /* Reload: private objects become visible, and the public ones are now
     * checked against their MAC. */
    cache_drop_inlock(t);
}

void
login_confirm_inlock(struct mod_token *t, int by_pin)
{
    t->login_implicit = 0;
    if (by_pin)
        t->login_cached = 0;
}

void
login_leave_inlock(struct mod_token *t, enum logout_why why)
{
    if (why != LOGOUT_RESET && t->ks != NULL)
        ks_logout(t->ks);
    t->login = MOD_NOBODY;
    t->login_cached = 0;
    t->login_implicit = 0;
    if (why == LOGOUT_CALL)
        t->logged_out = 1;
    if (why == LOGOUT_RESET)
        return;
    /* Operations on private keys end, and no session keeps a reference to
     * a private key's OpenSSL key beyond this point. */
    op_logout_inlock(t);
    /* Section 5.6, C_Logout: private session objects are destroyed; the
     * cached stored objects are dropped (private ones wiped) and reloaded
     * without the private ones at the next lookup. */
    cache_drop_inlock(t);
    cache_destroy_sobjs_inlock(t, 0, 1);
}

/* login_cache=user:N: a logged-out token whose cache entry (this user's
 * kernel keyring) holds the token key is logged in from it, as if the
 * application had logged in. Not while another thread is in a PIN operation
 * on the token (it holds the op mutex; its result decides the state).
 * Without AT_OPEN (C_GetSessionInfo, which applications call often): at
 * most one keyring search per LC_RETRY_NS while there is no entry, and not
 * after this process's own C_Logout. */
#define LC_RETRY_NS 200000000LL
static long long
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int
login_restore_due_inlock(const struct mod_token *t, int at_open)
{
    if (t->login != MOD_NOBODY || t->pin_ops != 0 || (!at_open && t->logged_out))
        return 0;
    return at_open || t->lc_tried == 0 || mono_ns() - t->lc_tried >= LC_RETRY_NS;
}

void
login_restore_inlock(struct mod_token *t, int at_open)
{
    long long now;
    CK_RV lr;

    if (at_open)
        t->logged_out = 0;
    if (!login_restore_due_inlock(t, at_open))
        return;
    now = mono_ns();
    lr = lc_login_inlock(t);
    t->lc_tried = lr == CKR_OK ? 0 : now;
    if (lr == CKR_OK)
        login_enter_inlock(t, CKU_USER, LOGIN_CACHE_IMPLICIT);
    else if (lr != CKR_USER_NOT_LOGGED_IN)
        mod_log("slot %u: cached login refused (CKR 0x%lx); sessions stay public",
                (unsigned)t->slot, (unsigned long)lr);
}

/* ---- PIN operations --------------------------------------------------------- */

/*
 * Enter a PIN operation on session H's token: with the global lock held,
 * returns with the token's op mutex held too and the token marked busy
 * (tok_pin_begin_relock), so the caller may release the global lock around
 * the KDF. The session is looked up again after waiting; if it was closed
 * meanwhile the operation is CKR_SESSION_CLOSED (section 5.1: "the session
 * was closed during the execution of the function"). End with
 * tok_pin_end_inlock.
 */
static CK_RV
pin_session_begin_relock(CK_SESSION_HANDLE h, struct mod_session **out)
{
    struct mod_session *s = NULL;
    struct mod_token *t;
    CK_RV rv;

    rv = session_lookup_inlock(h, &s);
    if (rv != CKR_OK)
        return rv;
    t = s->tok;
    tok_pin_begin_relock(t);
    rv = session_lookup_inlock(h, &s);
    if (rv != CKR_OK) {
        tok_pin_end_inlock(t);
        return CKR_SESSION_CLOSED;
    }
    *out = s;
    return CKR_OK;
}

/*
 * C_Login(CKU_CONTEXT_SPECIFIC): the user proves the PIN again for the one
 * operation that needs it (a C_SignInit/C_DecryptInit with a key whose
 * CKA_ALWAYS_AUTHENTICATE is TRUE; PKCS#11 3.0 section 5.5). The PIN is
 * verified by the keystore with the KDF every time (a failure counts toward
 * the lockout like any login), never by a cached login. Without such an
 * operation: CKR_OPERATION_NOT_INITIALIZED. Drops and retakes the global
 * lock (the op mutex, then the KDF): the caller holds no pointer across it.
 */
static CK_RV
context_login_relock(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
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
    rv = pin_session_begin_relock(h, &s);
    if (rv != CKR_OK)
        return rv;
    t = s->tok;
    tok_kdf_unlock(t);
    kr = ks_login(t->ks, KS_USER, pin, pin_len);
    tok_kdf_relock(t);
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
    tok_pin_end_inlock(t);
    return rv;
}

/* The user PIN is locked now (after a failed attempt). */
static int
user_pin_locked_inlock(struct mod_token *t)
{
    ks_info ki;

    return ks_get_info_ex(t->ks, &ki, 0) == KS_OK && ki.user_fail_count >= ki.max_attempts;
}

/* ---- C_Login, in steps ------------------------------------------------------- */

/* Step 1: what the current state decides before any PIN is checked. *DONE
 * set: the call's result is the return value. */
static CK_RV
login_check_state_inlock(struct mod_token *t, CK_USER_TYPE type, CK_UTF8CHAR_PTR pin,
                         CK_ULONG pin_len, const struct lc_policy *pol, int *done)
{
    int implicit;

    *done = 1;
    /* The application never asked for a user login the module restored at
     * C_OpenSession: an SO login replaces it rather than failing with
     * CKR_USER_ANOTHER_ALREADY_LOGGED_IN (the cache entry stays). */
    if (type == CKU_SO && t->login == CKU_USER && t->login_implicit)
        login_leave_inlock(t, LOGOUT_REPLACED);
    if (t->login != MOD_NOBODY && t->login != type)
        return CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
    /* A login the module made itself at C_OpenSession (from the cache) is
     * invisible to the application, which may well call C_Login next:
     * that call succeeds — with a NULL or empty PIN at once, with a PIN
     * once the PIN is verified — instead of CKR_USER_ALREADY_LOGGED_IN. */
    implicit = t->login == CKU_USER && t->login_implicit;
    if (implicit && (pin == NULL || pin_len == 0)) {
        login_confirm_inlock(t, 0);
        return CKR_OK;
    }
    /* login_cache=none: "already logged in" is not given away without
     * the PIN; the PIN is verified (and a wrong one counted) first. */
    if (t->login == type && pol->kind != LC_NONE && !implicit)
        return CKR_USER_ALREADY_LOGGED_IN;
    /* Section 6.7.1: the SO cannot log in while R/O sessions exist. */
    if (t->login != type && type == CKU_SO && t->nsess > t->nrw)
        return CKR_SESSION_READ_ONLY_EXISTS;
    *done = 0;
    return CKR_OK;
}

/* Step 2: C_Login(CKU_USER) with a NULL or empty PIN tries the login cache.
 * *DONE set: logged in, or an entry was refused (and removed), or no entry
 * and a NULL PIN (a bad argument unless the policy says a cache could have
 * been there: it expired, ask for the PIN). An empty PIN without an entry
 * goes on to be too short. */
static CK_RV
login_from_cache_inlock(struct mod_token *t, CK_UTF8CHAR_PTR pin, const struct lc_policy *pol,
                        int *done)
{
    CK_RV rv = lc_login_inlock(t);

    *done = 1;
    if (rv == CKR_OK)
        login_enter_inlock(t, CKU_USER, LOGIN_CACHE);
    if (rv != CKR_USER_NOT_LOGGED_IN)
        return rv;
    if (pin == NULL)
        return pol->kind == LC_USER ? CKR_PIN_INCORRECT : CKR_ARGUMENTS_BAD;
    *done = 0;
    return CKR_OK;
}

/* Step 3: the keystore verifies the PIN (Argon2id) with the global lock
 * released; the caller holds the op mutex and keeps T busy. A lockout ends
 * the login cache at once. */
static CK_RV
login_with_pin_relock(struct mod_token *t, CK_USER_TYPE type, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
    ks_rv kr;
    CK_RV rv;

    tok_kdf_unlock(t);
    kr = ks_login(t->ks, type == CKU_SO ? KS_SO : KS_USER, pin, pin_len);
    tok_kdf_relock(t);
    if (kr == KS_OK)
        return CKR_OK;
    rv = mod_ks_ckr(kr, t->ks, "ks_login");
    if (type == CKU_USER &&
        (kr == KS_E_PIN_LOCKED || (kr == KS_E_PIN_INCORRECT && user_pin_locked_inlock(t))))
        (void)lc_clear_inlock(t);
    return rv;
}

/* Step 4: record the login the PIN proved, unless the state moved during
 * the KDF; a user login then refills (or empties) the login cache. */
static CK_RV
login_commit_inlock(struct mod_token *t, CK_USER_TYPE type, int relogin)
{
    struct lc_policy pol;

    if (relogin && t->login == type) {
        /* none: the PIN was right; the state is unchanged. */
        if (!t->login_implicit)
            return CKR_USER_ALREADY_LOGGED_IN;
        /* The application's first C_Login after a login restored at
         * C_OpenSession: now proven by the PIN. */
        login_confirm_inlock(t, 1);
    } else if (t->nsess == 0) {
        /* Every session closed during the KDF: closing the last session
         * logs out, so this login must not outlive it. */
        ks_logout(t->ks);
        return CKR_SESSION_CLOSED;
    } else if (type == CKU_SO && t->nsess > t->nrw) {
        /* An R/O session was opened during the KDF. */
        ks_logout(t->ks);
        return CKR_SESSION_READ_ONLY_EXISTS;
    } else {
        login_enter_inlock(t, type, LOGIN_PIN);
    }
    if (type == CKU_USER) {
        /* Logged in, the policy can be checked against its MAC. */
        lc_policy_inlock(t, 1, &pol);
        if (pol.kind == LC_USER)
            lc_store_inlock(t, &pol);
        else
            (void)lc_clear_inlock(t); /* left from before a policy change */
    }
    return CKR_OK;
}

CK_RV
mod_C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE type, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
    struct mod_session *s = NULL;
    struct mod_token *t = NULL;
    struct lc_policy pol;
    int relogin, done = 0;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (type != CKU_SO && type != CKU_USER && type != CKU_CONTEXT_SPECIFIC)
        return CKR_USER_TYPE_INVALID;
    mod_lock();
    if (type == CKU_CONTEXT_SPECIFIC) {
        /* PIN only: never the login cache. */
        rv = context_login_relock(h, pin, pin_len);
        goto done;
    }
    /* A NULL PIN asks for the protected authentication path; the SO has
     * none. */
    if (pin == NULL && type == CKU_SO) {
        rv = session_lookup_inlock(h, &s);
        if (rv == CKR_OK)
            rv = CKR_ARGUMENTS_BAD;
        goto done;
    }
    rv = pin_session_begin_relock(h, &s);
    if (rv != CKR_OK)
        goto done;
    t = s->tok;
    /* Not authenticated yet (no key): only used to be stricter (none). */
    lc_policy_inlock(t, 0, &pol);
    rv = login_check_state_inlock(t, type, pin, pin_len, &pol, &done);
    if (done)
        goto done;
    relogin = t->login == type;
    if (!relogin && type == CKU_USER && (pin == NULL || pin_len == 0) && pol.kind != LC_NONE) {
        rv = login_from_cache_inlock(t, pin, &pol, &done);
        if (done)
            goto done;
    }
    if (pin == NULL) {
        rv = CKR_ARGUMENTS_BAD;
        goto done;
    }
    rv = login_with_pin_relock(t, type, pin, pin_len);
    if (rv == CKR_OK)
        rv = login_commit_inlock(t, type, relogin);
    /* Triggered by a user login with the PIN, done by rollover.c: retired
     * rollover material past its grace period goes. */
    if (rv == CKR_OK && type == CKU_USER)
        rollover_purge_relock(t);
done:
    if (t != NULL)
        tok_pin_end_inlock(t);
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
    struct mod_token *locked = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    mod_lock();
    /* Logging out touches the keystore and the cache: the token lock. */
    rv = session_enter_relock(h, &s, &locked);
    if (rv != CKR_OK)
        goto out;
    if (s->tok->login == MOD_NOBODY) {
        rv = CKR_USER_NOT_LOGGED_IN;
        goto out;
    }
    login_leave_inlock(s->tok, LOGOUT_CALL);
out:
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

/* ---- PINs --------------------------------------------------------------- */

/* Set a PIN in the keystore (Argon2id) with the global lock released; the
 * caller holds T's op mutex and keeps it busy. WHO = KS_SO with no OLD PIN:
 * the SO initialises the user PIN (C_InitPIN); else C_SetPIN of WHO's PIN.
 * *KR the keystore's code. */
static CK_RV
keystore_pin_relock(struct mod_token *t, ks_who who, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len,
                    CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len, ks_rv *kr)
{
    tok_kdf_unlock(t);
    if (old_pin == NULL)
        *kr = ks_init_user_pin(t->ks, new_pin, new_len);
    else
        *kr = ks_set_pin(t->ks, who, old_pin, old_len, new_pin, new_len);
    tok_kdf_relock(t);
    return mod_ks_ckr(*kr, t->ks, old_pin == NULL ? "ks_init_user_pin" : "ks_set_pin");
}

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
    rv = pin_session_begin_relock(h, &s);
    if (rv != CKR_OK)
        goto out;
    t = s->tok;
    /* Section 5.6, C_InitPIN: "can only be called in the 'R/W SO Functions'
     * state ... other states fail with CKR_USER_NOT_LOGGED_IN". */
    if (t->login != CKU_SO || !(s->flags & CKF_RW_SESSION)) {
        rv = CKR_USER_NOT_LOGGED_IN;
        goto release;
    }
    rv = keystore_pin_relock(t, KS_SO, NULL, 0, pin, pin_len, &kr);
    /* The SO reset the user PIN: a cached login of the old one goes (the
     * keystore's PIN generation moved on too, for other processes). */
    if (rv == CKR_OK)
        (void)lc_clear_inlock(t);
release:
    tok_pin_end_inlock(t);
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
    rv = pin_session_begin_relock(h, &s);
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
    rv = keystore_pin_relock(t, who, old_pin, old_len, new_pin, new_len, &kr);
    if (rv == CKR_OK && who == KS_USER)
        (void)lc_clear_inlock(t); /* see C_InitPIN */
    else if (who == KS_USER &&
             (kr == KS_E_PIN_LOCKED || (kr == KS_E_PIN_INCORRECT && user_pin_locked_inlock(t))))
        (void)lc_clear_inlock(t);
release:
    tok_pin_end_inlock(t);
out:
    mod_unlock();
    return rv;
}
