/*
 * objmgmt.c — the object management entry points (PKCS#11 section 5.7):
 * C_CreateObject, C_CopyObject, C_DestroyObject, C_GetObjectSize,
 * C_GetAttributeValue, C_SetAttributeValue. C_FindObjects* are in find.c.
 *
 * Module core decides whether the caller may touch an object (session kind,
 * login state, visibility; store.c); the object layer (object.h) decides
 * what the object may become. Every lookup first syncs the token's cache so
 * changes made by other processes are seen.
 */
#include <stdlib.h>
#include <string.h>

#include "mod_int.h"
#include "store.h"

CK_RV
mod_C_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    mod_attrs *attrs = NULL;
    CK_ATTRIBUTE *t2 = NULL;
    CK_ULONG n2 = 0;
    CK_BBOOL commit = CK_FALSE;
    obj_policy pol;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (out == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = obj_template_check(tmpl, n);
    if (rv != CKR_OK)
        return rv;
    /* The rollover commit is a certificate template with a vendor flag. */
    rv = rollover_strip(tmpl, n, CKA_EVERTOKEN_COMMIT_ROLLOVER, &t2, &n2, &commit);
    if (rv != CKR_OK)
        return rv;
    mod_lock();
    rv = session_enter_relock(h, &s, &locked);
    if (rv != CKR_OK)
        goto out;
    pol = store_policy_inlock(s);
    rv = obj_from_template(t2, n2, &pol, &attrs);
    if (rv != CKR_OK)
        goto out;
    if (commit)
        rv = rollover_commit_relock(s, attrs, out);
    else
        rv = store_object_relock(s, attrs, NULL, 0, out);
out:
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    free(t2);
    return rv;
}

CK_RV
mod_C_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,
                 CK_OBJECT_HANDLE_PTR out)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    struct mod_object *o = NULL;
    mod_attrs *attrs = NULL;
    obj_policy pol;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (out == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = obj_template_check(tmpl, n);
    if (rv != CKR_OK)
        return rv;
    mod_lock();
    rv = store_lookup_relock(h, oh, &s, &o, &locked);
    if (rv != CKR_OK)
        goto out;
    if (o->profile) {
        /* The token has exactly one profile object. */
        rv = CKR_ACTION_PROHIBITED;
        goto out;
    }
    pol = store_policy_inlock(s);
    rv = obj_copy(o->attrs, tmpl, n, &pol, &attrs);
    if (rv != CKR_OK)
        goto out;
    rv = store_object_relock(s, attrs, NULL, 0, out);
out:
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

CK_RV
mod_C_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    struct mod_object *o = NULL;
    ks_rv kr;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    mod_lock();
    rv = store_lookup_relock(h, oh, &s, &o, &locked);
    if (rv != CKR_OK)
        goto out;
    if (o->profile) {
        rv = CKR_ACTION_PROHIBITED;
        goto out;
    }
    rv = store_write_check_inlock(s, o->token, o->priv);
    if (rv != CKR_OK)
        goto out;
    if (!obj_bool(o->attrs, CKA_DESTROYABLE, CK_TRUE)) {
        rv = CKR_ACTION_PROHIBITED;
        goto out;
    }
    if (o->token) {
        kr = store_ks_destroy_relock(s->tok, o->h);
        /* Already destroyed by another process: gone either way. */
        if (kr != KS_OK && kr != KS_E_NOT_FOUND) {
            rv = mod_ks_ckr(kr, s->tok->ks, "ks_object_destroy");
            goto out;
        }
        if (kr == KS_E_NOT_FOUND)
            rv = CKR_OBJECT_HANDLE_INVALID;
    }
    cache_remove_inlock(s->tok, o);
out:
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

CK_RV
mod_C_GetObjectSize(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ULONG_PTR size)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    struct mod_object *o = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (size == NULL)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = store_lookup_relock(h, oh, &s, &o, &locked);
    if (rv == CKR_OK)
        *size = obj_size(o->attrs);
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

CK_RV
mod_C_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    struct mod_object *o = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    /* pValue NULL is a length query here, so obj_template_check does not
     * apply; only the array itself must exist. */
    if (tmpl == NULL && n > 0)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = store_lookup_relock(h, oh, &s, &o, &locked);
    if (rv == CKR_OK)
        rv = obj_get(o->attrs, tmpl, n);
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}

CK_RV
mod_C_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
    struct mod_session *s = NULL;
    struct mod_token *locked = NULL;
    struct mod_object *o = NULL;
    mod_attrs *attrs = NULL;
    obj_policy pol;
    ks_rv kr;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    rv = obj_template_check(tmpl, n);
    if (rv != CKR_OK)
        return rv;
    mod_lock();
    rv = store_lookup_relock(h, oh, &s, &o, &locked);
    if (rv != CKR_OK)
        goto out;
    if (o->profile) {
        rv = CKR_ACTION_PROHIBITED; /* CKA_MODIFIABLE is FALSE */
        goto out;
    }
    rv = store_write_check_inlock(s, o->token, o->priv);
    if (rv != CKR_OK)
        goto out;
    pol = store_policy_inlock(s);
    rv = obj_set(o->attrs, tmpl, n, &pol, &attrs);
    if (rv != CKR_OK)
        goto out;
    /* Where an object lives and whether it is sealed cannot change in
     * place (copy it instead). */
    if (obj_bool(attrs, CKA_TOKEN, CK_FALSE) != obj_bool(o->attrs, CKA_TOKEN, CK_FALSE) ||
        obj_bool(attrs, CKA_PRIVATE, CK_FALSE) != obj_bool(o->attrs, CKA_PRIVATE, CK_FALSE)) {
        rv = CKR_ATTRIBUTE_READ_ONLY;
        goto out;
    }
    if (o->token) {
        kr = store_ks_update_relock(s->tok, o->h, attrs);
        if (kr != KS_OK) {
            rv = mod_ks_ckr(kr, s->tok->ks, "ks_object_update");
            goto out;
        }
    }
    /* Also drops the OpenSSL key built from the old set (a new set may
     * later reuse the old one's address). */
    cache_set_attrs_inlock(s->tok, o, attrs);
    attrs = NULL;
out:
    obj_free(attrs);
    if (locked != NULL)
        tok_unlock_inlock(locked);
    mod_unlock();
    return rv;
}
