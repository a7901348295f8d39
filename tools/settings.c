/*
 * settings.c — `settings` (per-token settings: login_cache), `unlock` (fill
 * the login cache) and `lock` (empty it).
 *
 * Everything goes through the module: the settings and the cache through its
 * vendor interface "Vendor evertoken" (module/evertoken_ext.h), the PIN
 * through an ordinary C_Login — with login_cache=user:N it is the module that
 * puts the token key in the kernel keyring after that login, exactly as it
 * does for any application.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "et_int.h"
#include <evertoken/evertoken_ext.h>

/* The vendor interface, or NULL (another module, or an older evertoken). */
static const ET_FUNCTION_LIST *
et_ext_quiet(et_p11 *p)
{
    CK_C_GetInterface gi;
    CK_INTERFACE_PTR iface = NULL;
    CK_VERSION v = {ET_EXT_VERSION_MAJOR, ET_EXT_VERSION_MINOR};

    *(void **)&gi = dlsym(p->dl, "C_GetInterface");
    if (gi == NULL || gi((CK_UTF8CHAR_PTR)ET_VENDOR_INTERFACE, &v, &iface, 0) != CKR_OK ||
        iface == NULL || iface->pFunctionList == NULL)
        return NULL;
    return iface->pFunctionList;
}

const ET_FUNCTION_LIST *
et_ext(et_p11 *p)
{
    const ET_FUNCTION_LIST *x = et_ext_quiet(p);

    if (x == NULL)
        et_err("%s has no \"" ET_VENDOR_INTERFACE "\" interface %d.%d (not the evertoken module, "
               "or an older one): token settings and the login cache need it",
               p->path, ET_EXT_VERSION_MAJOR, ET_EXT_VERSION_MINOR);
    return x;
}

int
et_integrity_report(et_p11 *p, CK_SLOT_ID slot, const char *indent, int *checked)
{
    const ET_FUNCTION_LIST *x = et_ext_quiet(p);
    CK_ULONG hidden = 0, refused = 0;
    CK_RV rv;

    if (checked != NULL)
        *checked = x != NULL;
    if (x == NULL)
        return ET_EXIT_OK; /* another module: nothing to ask */
    rv = x->ET_GetIntegrity(slot, &hidden, &refused);
    if (rv != CKR_OK)
        return et_ckr_fail("cannot read the token's integrity report", rv);
    if (hidden > 0)
        printf("%s%lu object%s failed %s integrity check and %s hidden (damaged or tampered "
               "records in the token file)\n",
               indent, (unsigned long)hidden, hidden == 1 ? "" : "s", hidden == 1 ? "its" : "their",
               hidden == 1 ? "is" : "are");
    if (refused > 0)
        printf("%s%lu setting%s stored without authentication (no valid MAC: not written "
               "by evertoken) %s ignored\n",
               indent, (unsigned long)refused, refused == 1 ? "" : "s",
               refused == 1 ? "is" : "are");
    return hidden > 0 || refused > 0 ? ET_EXIT_INTEGRITY : ET_EXIT_OK;
}

/* Read login_cache into BUF. */
static int
et_get_login_cache(const ET_FUNCTION_LIST *x, CK_SLOT_ID slot, char *buf, CK_ULONG n)
{
    CK_RV rv = x->ET_GetSetting(slot, ET_SETTING_LOGIN_CACHE, buf, &n);

    if (rv != CKR_OK)
        return et_ckr_fail("cannot read the token's settings", rv);
    return ET_EXIT_OK;
}

static const char *
et_token_name(const et_opts *o, char *buf, size_t n)
{
    if (o->token != NULL)
        snprintf(buf, n, "'%s'", o->token);
    else
        snprintf(buf, n, "in slot %ld", o->slot);
    return buf;
}

int
et_cmd_settings(et_opts *o)
{
    const ET_FUNCTION_LIST *x;
    et_p11 p = {0};
    et_secret pin = {NULL, 0};
    CK_SESSION_HANDLE sh = CK_INVALID_HANDLE;
    CK_SLOT_ID slot = 0;
    CK_TOKEN_INFO ti;
    char value[64], *key = NULL;
    const char *eq;
    CK_RV rv;
    int rc;

    if (o->argc > 1) {
        et_err("settings: one KEY=VALUE at a time");
        return ET_EXIT_USAGE;
    }
    if (o->argc == 1) {
        eq = strchr(o->argv[0], '=');
        if (eq == NULL || eq == o->argv[0]) {
            et_err("settings: expected KEY=VALUE, not '%s'", o->argv[0]);
            return ET_EXIT_USAGE;
        }
        if (strncmp(o->argv[0], ET_SETTING_LOGIN_CACHE "=", strlen(ET_SETTING_LOGIN_CACHE) + 1) !=
            0) {
            et_err("settings: unknown setting '%.*s' (known: " ET_SETTING_LOGIN_CACHE ")",
                   (int)(eq - o->argv[0]), o->argv[0]);
            return ET_EXIT_USAGE;
        }
    }
    if (o->so && o->pin_src != NULL) {
        et_err("settings --so: give the SO PIN with --so-pin, not --pin");
        return ET_EXIT_USAGE;
    }
    if (!o->so && o->so_pin_src != NULL) {
        et_err("settings: --so-pin only applies with --so");
        return ET_EXIT_USAGE;
    }
    rc = et_p11_load(o, &p);
    if (rc != ET_EXIT_OK)
        return rc;
    rc = et_find_token(&p, o, &slot, &ti);
    if (rc != ET_EXIT_OK)
        goto done;
    x = et_ext(&p);
    if (x == NULL) {
        rc = ET_EXIT_FAIL;
        goto done;
    }
    if (o->argc == 0) {
        rc = et_get_login_cache(x, slot, value, sizeof(value));
        if (rc == ET_EXIT_OK)
            printf(ET_SETTING_LOGIN_CACHE "=%s\n", et_escs(value));
        if (rc == ET_EXIT_OK)
            rc = et_integrity_report(&p, slot, "", NULL);
        goto done;
    }

    /* Setting: an R/W session logged in with a PIN (a login restored from
     * the cache does not count; the module refuses it). */
    key = o->argv[0];
    eq = strchr(key, '=');
    rv = p.f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &sh);
    if (rv != CKR_OK) {
        rc = et_ckr_fail("cannot open a session", rv);
        goto done;
    }
    if (et_session_user(&p, sh))
        (void)p.f->C_Logout(sh);
    rc = et_secret_get(o->so ? o->so_pin_src : o->pin_src, o->so ? "SO PIN" : "user PIN", 0, &pin);
    if (rc != ET_EXIT_OK)
        goto done;
    rv = p.f->C_Login(sh, o->so ? CKU_SO : CKU_USER, pin.buf, (CK_ULONG)pin.len);
    if (rv != CKR_OK) {
        rc = et_login_fail(o->so ? "SO login failed" : "login failed", o->so ? CKU_SO : CKU_USER,
                           rv);
        goto done;
    }
    rv = x->ET_SetSetting(sh, ET_SETTING_LOGIN_CACHE, eq + 1);
    if (rv == CKR_ARGUMENTS_BAD) {
        et_err("settings: login_cache must be none, process or user:SECONDS (1..2592000), not "
               "'%s'",
               eq + 1);
        rc = ET_EXIT_USAGE;
        goto done;
    }
    if (rv != CKR_OK) {
        rc = et_ckr_fail("cannot store the setting", rv);
        goto done;
    }
    rc = et_get_login_cache(x, slot, value, sizeof(value));
    if (rc == ET_EXIT_OK)
        printf(ET_SETTING_LOGIN_CACHE "=%s\n", et_escs(value));
done:
    et_close_session(&p, sh);
    et_secret_free(&pin);
    et_p11_unload(&p);
    return rc;
}

int
et_cmd_unlock(et_opts *o)
{
    const ET_FUNCTION_LIST *x;
    et_p11 p = {0};
    et_secret pin = {NULL, 0};
    CK_SESSION_HANDLE sh = CK_INVALID_HANDLE;
    CK_SLOT_ID slot = 0;
    CK_TOKEN_INFO ti;
    CK_BBOOL live = CK_FALSE;
    char value[64], name[64];
    const char *src;
    CK_RV rv;
    int rc;

    if (o->argc != 0) {
        et_err("unlock: unexpected argument '%s'", o->argv[0]);
        return ET_EXIT_USAGE;
    }
    rc = et_p11_load(o, &p);
    if (rc != ET_EXIT_OK)
        return rc;
    rc = et_find_token(&p, o, &slot, &ti);
    if (rc != ET_EXIT_OK)
        goto done;
    x = et_ext(&p);
    if (x == NULL) {
        rc = ET_EXIT_FAIL;
        goto done;
    }
    rc = et_get_login_cache(x, slot, value, sizeof(value));
    if (rc != ET_EXIT_OK)
        goto done;
    if (strncmp(value, "user:", 5) != 0) {
        et_err("unlock: token %s has login_cache=%s; unlocking needs login_cache=user:SECONDS "
               "(`evertoken settings --token LABEL login_cache=user:SECONDS`)",
               et_token_name(o, name, sizeof(name)), value);
        rc = ET_EXIT_FAIL;
        goto done;
    }
    /* Without a source: the terminal if standard input is one, else one
     * line of standard input (scripts, `echo PIN | evertoken unlock`). */
    src = o->pin_src;
    if (src == NULL)
        src = isatty(STDIN_FILENO) ? "prompt" : "stdin";
    rc = et_secret_get(src, "user PIN", 0, &pin);
    if (rc != ET_EXIT_OK)
        goto done;
    rv = p.f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &sh);
    if (rv != CKR_OK) {
        rc = et_ckr_fail("cannot open a session", rv);
        goto done;
    }
    /* A session restored from an older cache entry: log in again with the
     * PIN so that the cache is refilled (with a fresh timeout). */
    if (et_session_user(&p, sh))
        (void)p.f->C_Logout(sh);
    rv = p.f->C_Login(sh, CKU_USER, pin.buf, (CK_ULONG)pin.len);
    if (rv != CKR_OK) {
        rc = et_ckr_fail("login failed", rv);
        goto done;
    }
    rv = x->ET_LoginCacheStatus(slot, &live);
    if (rv != CKR_OK || !live) {
        et_err("unlock: the PIN is right but the module did not cache the login (no kernel "
               "keyring here? run with EVERTOKEN_DEBUG=1 for the reason)");
        rc = ET_EXIT_FAIL;
        goto done;
    }
    printf("token %s unlocked for %s seconds for this user's processes\n",
           et_escs(et_token_name(o, name, sizeof(name))), et_escs(value + 5));
    rc = ET_EXIT_OK;
done:
    /* C_Logout ends this process's login only; the cache stays. */
    et_close_session(&p, sh);
    et_secret_free(&pin);
    et_p11_unload(&p);
    return rc;
}

int
et_cmd_lock(et_opts *o)
{
    const ET_FUNCTION_LIST *x;
    et_p11 p = {0};
    CK_SLOT_ID slot = 0;
    CK_TOKEN_INFO ti;
    CK_BBOOL removed = CK_FALSE;
    char name[64];
    CK_RV rv;
    int rc;

    if (o->argc != 0) {
        et_err("lock: unexpected argument '%s'", o->argv[0]);
        return ET_EXIT_USAGE;
    }
    rc = et_p11_load(o, &p);
    if (rc != ET_EXIT_OK)
        return rc;
    rc = et_find_token(&p, o, &slot, &ti);
    if (rc != ET_EXIT_OK)
        goto done;
    x = et_ext(&p);
    if (x == NULL) {
        rc = ET_EXIT_FAIL;
        goto done;
    }
    rv = x->ET_LoginCacheClear(slot, &removed);
    if (rv != CKR_OK) {
        rc = et_ckr_fail("cannot empty the login cache", rv);
        goto done;
    }
    printf(removed ? "token %s locked: cached login removed\n"
                   : "token %s: no cached login (nothing to remove)\n",
           et_escs(et_token_name(o, name, sizeof(name))));
    rc = ET_EXIT_OK;
done:
    et_p11_unload(&p);
    return rc;
}
