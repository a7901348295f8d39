/*
 * session.c — sessions: open, close, info, cancel. Login state and the
 * calls that change it are in login.c; closing the last session on a token
 * logs it out (login_leave_inlock), and a new session or C_GetSessionInfo
 * may find a cached login (login_restore_inlock).
 */
#include <stdlib.h>
#include <string.h>

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
        login_leave_inlock(t, LOGOUT_LAST_SESSION);
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

CK_RV
session_enter_relock(CK_SESSION_HANDLE h, struct mod_session **out, struct mod_token **locked)
{
    struct mod_session *s = NULL;
    struct mod_token *t;
    CK_RV rv;

    *locked = NULL;
    rv = session_lookup_inlock(h, &s);
    if (rv != CKR_OK)
        return rv;
    t = s->tok;
    tok_lock_relock(t);
    /* Closed while we waited: as if the call had come a moment later. */
    rv = session_lookup_inlock(h, &s);
    if (rv != CKR_OK) {
        tok_unlock_inlock(t);
        return rv;
    }
    *locked = t;
    *out = s;
    return CKR_OK;
}

/* ---- sessions ----------------------------------------------------------- */

CK_RV
mod_C_OpenSession(CK_SLOT_ID id, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                  CK_SESSION_HANDLE_PTR out)
{
    struct mod_token *t = NULL, *locked = NULL;
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
    /* The cached login below reads the keystore: the token lock. T stays
     * (busy) and usable (an open token only closes when idle). */
    tok_lock_relock(t);
    locked = t;
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
    login_restore_inlock(t, 1);
out:
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

CK_RV
mod_C_CloseSession(CK_SESSION_HANDLE h)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    mod_lock();
    /* Closing the last session logs the token out: the token lock. */
    rv = session_enter_relock(h, &s, &locked);
    if (rv == CKR_OK) {
        session_close_inlock(s);
        tok_unlock_inlock(locked);
    }
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
    tok_lock_relock(t);
    for (s = mod_g.sessions; s != NULL; s = next) {
        next = s->next;
        if (s->tok == t)
            session_close_inlock(s);
    }
    tok_unlock_inlock(t);
out:
    mod_unlock();
    return rv;
}

CK_RV
mod_C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    int rw;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == NULL)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = session_lookup_inlock(h, &s);
    /* Only a restore attempt reads the keystore (and needs the token
     * lock); the common call (logged in, or throttled) takes none. */
    if (rv == CKR_OK && login_restore_due_inlock(s->tok, 0))
        rv = session_enter_relock(h, &s, &locked);
    if (rv != CKR_OK)
        goto out;
    /* A session opened before the token was unlocked (evertoken unlock)
     * becomes logged in when asked for its state: this is what NSS checks
     * before it prompts for the PIN, so a browser that loaded the module
     * earlier stops asking once the cache is filled. Not after this
     * process's own C_Logout (until its next session or login). */
    login_restore_inlock(s->tok, 0);
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
    if (locked != NULL)
        tok_unlock_inlock(locked);
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
