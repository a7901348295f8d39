/*
 * p11util.c — loading a PKCS#11 module and the small helpers every command
 * needs: finding a token, opening a session, logging in, reading attributes,
 * turning CKR codes into messages and exit codes.
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/p11-kit.h>

#include "et_int.h"
#include "et_modpath.h"
#include "keystore.h"

int
et_p11_load(const et_opts *o, et_p11 *p)
{
    CK_C_GetFunctionList gfl;
    CK_C_INITIALIZE_ARGS args;
    CK_RV rv;
    const char *path = o->module;
    int chosen = 1; /* --module or EVERTOKEN_MODULE named it */

    memset(p, 0, sizeof(*p));
    if (path == NULL || *path == '\0')
        path = getenv("EVERTOKEN_MODULE");
    if (path == NULL || *path == '\0') {
        path = EVERTOKEN_DEFAULT_MODULE;
        chosen = 0;
    }
    /* A bare name is looked up in this program's own search path (its
     * RUNPATH finds the module built beside it, or the installed one):
     * et_modpath.h says why dlopen alone cannot be trusted with that. */
    p->resolved = et_module_resolve(path);
    if (p->resolved == NULL) {
        et_err("out of memory");
        return ET_EXIT_FAIL;
    }
    path = p->resolved;
    p->path = path;
    p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL) {
        et_err("cannot load the PKCS#11 module %s: %s", path, dlerror());
        if (!chosen)
            et_err("name the module with --module PATH or the environment variable "
                   "EVERTOKEN_MODULE (installed, it is %s/libevertoken.so)",
                   EVERTOKEN_MODULE_DIR);
        free(p->resolved);
        p->resolved = NULL;
        return ET_EXIT_FAIL;
    }
    /* Not found in the program's path, the loader chose one (ld.so.cache):
     * name the file. */
    if (strchr(path, '/') == NULL) {
        struct link_map *lm = NULL;

        if (dlinfo(p->dl, RTLD_DI_LINKMAP, &lm) == 0 && lm != NULL && lm->l_name != NULL &&
            lm->l_name[0] != '\0')
            p->path = lm->l_name;
    }
    *(void **)&gfl = dlsym(p->dl, "C_GetFunctionList");
    if (gfl == NULL) {
        et_err("%s is not a PKCS#11 module (no C_GetFunctionList)", path);
        goto fail;
    }
    rv = gfl(&p->f);
    if (rv != CKR_OK || p->f == NULL) {
        et_err("%s: C_GetFunctionList failed: %s", path, et_ckr_str(rv));
        goto fail;
    }
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    rv = p->f->C_Initialize(&args);
    if (rv != CKR_OK) {
        const char *why = NULL;
        char *dir = ks_token_dir(&why);

        /* The evertoken module cannot start without its token directory. */
        if (dir == NULL)
            et_err("%s: C_Initialize failed: %s (token directory: %s)", path, et_ckr_str(rv),
                   why ? why : "unknown error");
        else
            et_err("%s: C_Initialize failed: %s", path, et_ckr_str(rv));
        free(dir);
        goto fail;
    }
    p->initialized = 1;
    return ET_EXIT_OK;
fail:
    dlclose(p->dl);
    p->dl = NULL;
    p->f = NULL;
    free(p->resolved);
    p->resolved = NULL;
    return ET_EXIT_FAIL;
}

void
et_p11_unload(et_p11 *p)
{
    if (p->initialized)
        (void)p->f->C_Finalize(NULL);
    p->initialized = 0;
    p->path = NULL;
    free(p->resolved);
    p->resolved = NULL;
    /* The module is not dlclose'd: some modules (and sanitizer runtimes)
     * misbehave when unloaded, and the process ends right after anyway. */
}

const char *
et_ckr_str(CK_RV rv)
{
    switch (rv) {
    case CKR_PIN_INCORRECT:
        return "wrong PIN";
    case CKR_PIN_LOCKED:
        return "the PIN is locked after too many wrong attempts "
               "(a locked user PIN: the SO can set a new one with `evertoken pin unlock`)";
    case CKR_PIN_LEN_RANGE:
        return "the PIN is too short or too long for this token";
    case CKR_PIN_INVALID:
        return "the PIN contains characters this token does not accept";
    case CKR_USER_PIN_NOT_INITIALIZED:
        return "the user PIN of this token was never set (use `evertoken pin unlock`)";
    case CKR_TOKEN_NOT_RECOGNIZED:
        return "the token is not recognised (damaged or foreign file?)";
    case CKR_TOKEN_NOT_PRESENT:
        return "no token in this slot";
    case CKR_SLOT_ID_INVALID:
        return "no such slot";
    case CKR_TOKEN_WRITE_PROTECTED:
        return "the token is write-protected";
    case CKR_DEVICE_MEMORY:
        return "no space left for the token (the file system holding it is full); nothing was "
               "written";
    case CKR_SESSION_READ_ONLY_EXISTS:
        return "another read-only session of this program prevents SO login";
    default:
        return p11_kit_strerror(rv);
    }
}

const char *
et_slot_error(et_p11 *p, CK_SLOT_ID slot, CK_RV rv)
{
    static char buf[1024];
    CK_INFO info;
    char maker[sizeof(info.manufacturerID) + 1];
    const char *why;

    /* The slot-to-file rule holds for the evertoken module only. */
    if (rv != CKR_TOKEN_NOT_RECOGNIZED || p->f->C_GetInfo(&info) != CKR_OK)
        return et_ckr_str(rv);
    et_p11_str(maker, sizeof(maker), info.manufacturerID, sizeof(info.manufacturerID));
    if (strcmp(maker, "evertoken") != 0)
        return et_ckr_str(rv);
    why = et_keystore_open_error(slot, buf, sizeof(buf));
    return why != NULL ? why : et_ckr_str(rv);
}

const char *
et_slot_path_problem(et_p11 *p, CK_SLOT_ID slot)
{
    static char buf[1024];
    CK_INFO info;
    char maker[sizeof(info.manufacturerID) + 1];
    const char *err = NULL;
    char *dir, *path = NULL;
    const char *res = NULL;

    /* The slot-to-file rule holds for the evertoken module only. */
    if (p->f->C_GetInfo(&info) != CKR_OK || slot > KS_SLOT_MAX)
        return NULL;
    et_p11_str(maker, sizeof(maker), info.manufacturerID, sizeof(info.manufacturerID));
    if (strcmp(maker, "evertoken") != 0)
        return NULL;
    dir = ks_token_dir(&err);
    if (dir == NULL) {
        snprintf(buf, sizeof(buf), "no token directory: %s", err ? err : "unknown error");
        return buf;
    }
    path = ks_token_path(dir, (uint32_t)slot);
    if (path != NULL && ks_check_path(path) != KS_OK) {
        snprintf(buf, sizeof(buf), "%s", ks_open_error());
        res = buf;
    }
    free(path);
    free(dir);
    return res;
}

int
et_ckr_exit(CK_RV rv)
{
    switch (rv) {
    case CKR_OK:
        return ET_EXIT_OK;
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
        return ET_EXIT_PIN;
    case CKR_PIN_LOCKED:
        return ET_EXIT_LOCKED;
    case CKR_SLOT_ID_INVALID:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_OBJECT_HANDLE_INVALID:
        return ET_EXIT_NOTFOUND;
    default:
        return ET_EXIT_FAIL;
    }
}

int
et_login_fail(const char *what, CK_USER_TYPE who, CK_RV rv)
{
    /* A locked SO PIN cannot be unlocked by anything (not `pin unlock`,
     * which needs it): say what is left instead. */
    if (who == CKU_SO && rv == CKR_PIN_LOCKED) {
        et_err("%s: the SO PIN is locked after too many wrong attempts and can never be "
               "unlocked; nothing on this token can be administered or recovered any more. "
               "Re-initialising is the only way on: create a new token (`evertoken init`) and "
               "delete this one's file, or restore a backup made before the lock "
               "(`evertoken restore --force`) (CKR 0x%08lx)",
               what, (unsigned long)rv);
        return ET_EXIT_LOCKED;
    }
    return et_ckr_fail(what, rv);
}

int
et_ckr_fail(const char *what, CK_RV rv)
{
    et_err("%s: %s (CKR 0x%08lx)", what, et_ckr_str(rv), (unsigned long)rv);
    return et_ckr_exit(rv);
}

void
et_p11_str(char *dst, size_t dstsz, const CK_UTF8CHAR *src, size_t srclen)
{
    size_t n = srclen;

    while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\0'))
        n--;
    if (n >= dstsz)
        n = dstsz - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

int
et_find_token(et_p11 *p, const et_opts *o, CK_SLOT_ID *slot, CK_TOKEN_INFO *ti)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    CK_RV rv;
    int rc = ET_EXIT_NOTFOUND, found = 0;
    long unusable = -1; /* index of the first slot whose token is not recognised */
    char label[sizeof(ti->label) + 1];

    if (o->token == NULL && o->slot < 0) {
        et_err("select a token with --token LABEL or --slot N (`evertoken list` shows them)");
        return ET_EXIT_USAGE;
    }
    if (o->slot >= 0) {
        rv = p->f->C_GetTokenInfo((CK_SLOT_ID)o->slot, ti);
        if (rv != CKR_OK) {
            et_err("slot %ld: %s", o->slot, et_slot_error(p, (CK_SLOT_ID)o->slot, rv));
            return et_ckr_exit(rv);
        }
        if (!(ti->flags & CKF_TOKEN_INITIALIZED)) {
            et_err("slot %ld holds no initialised token (create one with `evertoken init`)",
                   o->slot);
            return ET_EXIT_NOTFOUND;
        }
        *slot = (CK_SLOT_ID)o->slot;
        return ET_EXIT_OK;
    }
    if (strlen(o->token) > sizeof(ti->label)) {
        et_err("no token labelled '%s' (labels are at most 32 bytes)", o->token);
        return ET_EXIT_NOTFOUND;
    }
    rv = p->f->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK)
        return et_ckr_fail("C_GetSlotList", rv);
    slots = calloc(n ? n : 1, sizeof(*slots));
    if (slots == NULL) {
        et_err("out of memory");
        return ET_EXIT_FAIL;
    }
    rv = p->f->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) {
        rc = et_ckr_fail("C_GetSlotList", rv);
        goto done;
    }
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO t;
        rv = p->f->C_GetTokenInfo(slots[i], &t);
        if (rv == CKR_TOKEN_NOT_RECOGNIZED && unusable < 0)
            unusable = (long)i;
        if (rv != CKR_OK)
            continue;
        if (!(t.flags & CKF_TOKEN_INITIALIZED))
            continue;
        et_p11_str(label, sizeof(label), t.label, sizeof(t.label));
        if (strcmp(label, o->token) != 0)
            continue;
        if (found) {
            et_err("several tokens are labelled '%s' (slots %lu and %lu); select one with --slot",
                   o->token, (unsigned long)*slot, (unsigned long)slots[i]);
            rc = ET_EXIT_USAGE;
            goto done;
        }
        found = 1;
        *slot = slots[i];
        *ti = t;
    }
    if (!found && unusable >= 0) {
        /* The token may be the one whose file the module refused. */
        et_err("no token labelled '%s'; slot %lu holds a token that cannot be read: %s", o->token,
               (unsigned long)slots[unusable],
               et_slot_error(p, slots[unusable], CKR_TOKEN_NOT_RECOGNIZED));
        rc = ET_EXIT_NOTFOUND;
        goto done;
    }
    if (!found) {
        et_err("no token labelled '%s' (`evertoken list` shows the tokens)", o->token);
        rc = ET_EXIT_NOTFOUND;
        goto done;
    }
    rc = ET_EXIT_OK;
done:
    free(slots);
    return rc;
}

int
et_session_user(et_p11 *p, CK_SESSION_HANDLE sh)
{
    CK_SESSION_INFO si;

    return p->f->C_GetSessionInfo(sh, &si) == CKR_OK &&
           (si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS);
}

int
et_open_session(et_p11 *p, const et_opts *o, CK_SLOT_ID slot, int rw, long who,
                CK_SESSION_HANDLE *sh)
{
    CK_FLAGS fl = CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0);
    et_secret pin = {NULL, 0};
    CK_RV rv;
    int rc;

    rv = p->f->C_OpenSession(slot, fl, NULL, NULL, sh);
    if (rv != CKR_OK)
        return et_ckr_fail("cannot open a session", rv);
    if (who < 0)
        return ET_EXIT_OK;
    /* With login_cache=user:N a new session may start logged in as the user
     * (docs/module.md): no PIN is needed for a user login then, and an SO
     * login first ends this process's user login (the cache stays). */
    if (et_session_user(p, *sh)) {
        if (who == CKU_USER)
            return ET_EXIT_OK;
        (void)p->f->C_Logout(*sh);
    }
    if (who == CKU_SO)
        rc = et_secret_get(o->so_pin_src, "SO PIN", 0, &pin);
    else
        rc = et_secret_get(o->pin_src, "user PIN", 0, &pin);
    if (rc != ET_EXIT_OK)
        goto done;
    rv = p->f->C_Login(*sh, (CK_USER_TYPE)who, pin.buf, (CK_ULONG)pin.len);
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        rc = et_login_fail(who == CKU_SO ? "SO login failed" : "login failed", (CK_USER_TYPE)who,
                           rv);
        goto done;
    }
    rc = ET_EXIT_OK;
done:
    et_secret_free(&pin);
    if (rc != ET_EXIT_OK) {
        (void)p->f->C_CloseSession(*sh);
        *sh = CK_INVALID_HANDLE;
    }
    return rc;
}

void
et_close_session(et_p11 *p, CK_SESSION_HANDLE sh)
{
    if (sh == CK_INVALID_HANDLE)
        return;
    /* Logging out first wipes the module's copy of the key material now
     * rather than when the last session of the process closes. */
    (void)p->f->C_Logout(sh);
    (void)p->f->C_CloseSession(sh);
}

int
et_get_attr(et_p11 *p, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
            unsigned char **val, CK_ULONG *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv;

    *val = NULL;
    *len = 0;
    rv = p->f->C_GetAttributeValue(sh, h, &a, 1);
    if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
        return -1;
    a.pValue = malloc(a.ulValueLen ? a.ulValueLen : 1);
    if (a.pValue == NULL)
        return -1;
    rv = p->f->C_GetAttributeValue(sh, h, &a, 1);
    if (rv != CKR_OK) {
        free(a.pValue);
        return -1;
    }
    *val = a.pValue;
    *len = a.ulValueLen;
    return 0;
}

int
et_get_ulong(et_p11 *p, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
             CK_ULONG *v)
{
    CK_ATTRIBUTE a = {type, v, sizeof(*v)};

    if (p->f->C_GetAttributeValue(sh, h, &a, 1) != CKR_OK || a.ulValueLen != sizeof(*v))
        return -1;
    return 0;
}

static int
et_tmpl_has(const CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
    for (CK_ULONG i = 0; i < n; i++)
        if (tmpl[i].type == type)
            return 1;
    return 0;
}

int
et_find_objects(et_p11 *p, CK_SESSION_HANDLE sh, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                CK_OBJECT_HANDLE **out, CK_ULONG *count)
{
    CK_OBJECT_HANDLE *all = NULL, *grown;
    CK_ULONG cap = 0, total = 0, got = 0;
    CK_RV rv;

    *out = NULL;
    *count = 0;
    rv = p->f->C_FindObjectsInit(sh, tmpl, n);
    if (rv != CKR_OK)
        return et_ckr_fail("C_FindObjectsInit", rv);
    for (;;) {
        if (total + 64 > cap) {
            cap = cap ? cap * 2 : 128;
            grown = realloc(all, cap * sizeof(*all));
            if (grown == NULL) {
                free(all);
                (void)p->f->C_FindObjectsFinal(sh);
                et_err("out of memory");
                return ET_EXIT_FAIL;
            }
            all = grown;
        }
        rv = p->f->C_FindObjects(sh, all + total, 64, &got);
        if (rv != CKR_OK) {
            free(all);
            (void)p->f->C_FindObjectsFinal(sh);
            return et_ckr_fail("C_FindObjects", rv);
        }
        if (got == 0)
            break;
        total += got;
    }
    (void)p->f->C_FindObjectsFinal(sh);
    /* A search that does not name a class would also return the token's
     * profile object (CKO_PROFILE); it describes the token, not something a
     * user stored, so the CLI leaves it out of listings and counts. */
    if (!et_tmpl_has(tmpl, n, CKA_CLASS)) {
        CK_ULONG kept = 0;

        for (CK_ULONG i = 0; i < total; i++) {
            CK_ULONG cls = (CK_ULONG)-1;

            if (et_get_ulong(p, sh, all[i], CKA_CLASS, &cls) == 0 && cls == CKO_PROFILE)
                continue;
            all[kept++] = all[i];
        }
        total = kept;
    }
    *out = all;
    *count = total;
    return ET_EXIT_OK;
}

void
et_hex_print(FILE *fp, const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(fp, "%02x", b[i]);
}

unsigned char *
et_hex_decode(const char *hex, size_t *len)
{
    size_t n = strlen(hex), i;
    unsigned char *out;

    if (n == 0 || n % 2 != 0)
        return NULL;
    out = malloc(n / 2);
    if (out == NULL)
        return NULL;
    for (i = 0; i < n / 2; i++) {
        int hi, lo;
        char c1 = hex[2 * i], c2 = hex[2 * i + 1];
#define HEXV(c)                                                                                    \
    ((c) >= '0' && (c) <= '9'   ? (c) - '0'                                                        \
     : (c) >= 'a' && (c) <= 'f' ? (c) - 'a' + 10                                                   \
     : (c) >= 'A' && (c) <= 'F' ? (c) - 'A' + 10                                                   \
                                : -1)
        hi = HEXV(c1);
        lo = HEXV(c2);
#undef HEXV
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    *len = n / 2;
    return out;
}
