/*
 * token.c — the token side of enrollment, through standard PKCS#11 calls
 * only, so it works with any module (evertoken, SoftHSMv2, a smart card):
 * token access (load the module, find the token, session, login, close).
 * Objects and key generation: token_obj.c; the rollover: rollover.c
 * (standard calls) and rollover_native.c (evertoken's vendor interface);
 * what they share: token_int.h.
 *
 * libp11 loads the module and gives OpenSSL EVP_PKEYs whose private
 * operations (C_Sign, C_Decrypt) run inside the token; everything else
 * (finding the token by RFC 7512 URI, login, C_GenerateKeyPair,
 * C_CreateObject, C_SetAttributeValue, C_DestroyObject) uses the module's
 * function list directly, from the same loaded instance (login state is per
 * application, so libp11's sessions share our login).
 */
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libp11.h>
#include <p11-kit/uri.h>

#include "chain.h"
#include "token_int.h"

const char *
tok_ckr(CK_RV rv)
{
    switch (rv) {
    case CKR_OK:
        return "CKR_OK";
    case CKR_PIN_INCORRECT:
        return "wrong PIN (CKR_PIN_INCORRECT)";
    case CKR_PIN_LOCKED:
        return "PIN locked (CKR_PIN_LOCKED)";
    case CKR_USER_NOT_LOGGED_IN:
        return "not logged in (CKR_USER_NOT_LOGGED_IN)";
    case CKR_MECHANISM_INVALID:
        return "mechanism not supported by the token (CKR_MECHANISM_INVALID)";
    case CKR_FUNCTION_NOT_SUPPORTED:
        return "function not supported by the token (CKR_FUNCTION_NOT_SUPPORTED)";
    case CKR_TOKEN_NOT_PRESENT:
        return "token not present (CKR_TOKEN_NOT_PRESENT)";
    case CKR_DEVICE_REMOVED:
        return "token removed (CKR_DEVICE_REMOVED)";
    case CKR_ATTRIBUTE_READ_ONLY:
        return "attribute read-only (CKR_ATTRIBUTE_READ_ONLY)";
    case CKR_TEMPLATE_INCONSISTENT:
        return "template inconsistent (CKR_TEMPLATE_INCONSISTENT)";
    case CKR_ATTRIBUTE_VALUE_INVALID:
        return "attribute value invalid (CKR_ATTRIBUTE_VALUE_INVALID)";
    case CKR_KEY_SIZE_RANGE:
        return "key size not supported (CKR_KEY_SIZE_RANGE)";
    default:
        break;
    }
    static char buf[64];
    snprintf(buf, sizeof(buf), "CKR 0x%08lx", (unsigned long)rv);
    return buf;
}

/* Crash-test hook: EVERTOKEN_ENROLL_CRASH_AT=N kills the process (SIGKILL,
 * like a power cut) right after the Nth token mutation of this run. */
void
tok_step_done(enr_token *t, const char *what)
{
    t->steps++;
    enr_debug("token step %d: %s", t->steps, what);
    if (t->crash_at > 0 && t->steps == t->crash_at) {
        fprintf(stderr, "evertoken-enroll: crash test: killed after step %d (%s)\n", t->steps,
                what);
        raise(SIGKILL);
    }
}

static void
p11str(char *dst, size_t dsz, const CK_UTF8CHAR *src, size_t n)
{
    while (n > 0 && src[n - 1] == ' ')
        n--;
    if (n >= dsz)
        n = dsz - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

const char *
enr_token_label(const enr_token *t)
{
    return t->label;
}

CK_FUNCTION_LIST_PTR
enr_token_p11(enr_token *t, CK_SESSION_HANDLE *sh)
{
    *sh = t->sh;
    return t->f;
}

/* ---- Open / close ------------------------------------------------------- */

/*
 * Is the token an evertoken token with the native rollover? The loaded
 * module must offer the "Vendor evertoken" interface at version 1.1 or later
 * (C_GetInterface) and know the rollover_grace setting of the selected slot
 * (so the slot is one of its tokens, not a slot some proxy module added).
 * EVERTOKEN_ENROLL_ROLLOVER=standard forces the standard-call sequence.
 */
static void
detect_native(enr_token *t)
{
    CK_C_GetInterface gi;
    CK_INTERFACE_PTR ifc = NULL;
    const ET_FUNCTION_LIST *et;
    const char *force = getenv("EVERTOKEN_ENROLL_ROLLOVER");
    char val[32];
    CK_ULONG len = sizeof(val);

    if (force != NULL && !strcmp(force, "standard")) {
        enr_debug("token \"%s\": EVERTOKEN_ENROLL_ROLLOVER=standard: standard-call rollover",
                  t->label);
        return;
    }
    *(void **)&gi = dlsym(t->dl, "C_GetInterface");
    if (gi == NULL || gi((CK_UTF8CHAR_PTR)ET_VENDOR_INTERFACE, NULL, &ifc, 0) != CKR_OK ||
        ifc == NULL || ifc->pFunctionList == NULL)
        return;
    et = ifc->pFunctionList;
    if (et->version.major != ET_EXT_VERSION_MAJOR || et->version.minor < 1) {
        enr_debug("token \"%s\": vendor interface %u.%u has no rollover; standard calls", t->label,
                  et->version.major, et->version.minor);
        return;
    }
    if (et->ET_GetSetting(t->slot, ET_SETTING_ROLLOVER_GRACE, val, &len) != CKR_OK)
        return;
    t->et = et;
    enr_debug("token \"%s\": evertoken vendor interface %u.%u: native rollover", t->label,
              et->version.major, et->version.minor);
}

/* The module's rollover clock follows the helper's injectable one, so a
 * simulated renewal and grace period (--now, EVERTOKEN_ENROLL_FAKE_TIME)
 * stamp and purge retired objects at the simulated time. */
void
tok_sync_clock(const enr_token *t)
{
    char b[32];

    if (t->et == NULL || !enr_clock_is_fake())
        return;
    snprintf(b, sizeof(b), "%lld", (long long)enr_now());
    setenv("EVERTOKEN_FAKE_TIME", b, 1);
}

const char *
enr_token_rollover(const enr_token *t)
{
    return t->et != NULL ? "native" : "standard";
}

static enr_rc
login(enr_token *t, const enr_profile *p)
{
    enr_secret pin = {0};
    CK_RV rv;

    if (p->pin_file != NULL) {
        if (enr_secret_read_file(p->pin_file, "user PIN", &pin) != 0)
            return ENR_E_CONFIG;
        rv = t->f->C_Login(t->sh, CKU_USER, (CK_UTF8CHAR_PTR)pin.buf, pin.len);
        enr_secret_free(&pin);
    } else {
        /* No PIN source: a protected authentication path, or evertoken's
         * per-user PIN cache after the person unlocked the token. */
        rv = t->f->C_Login(t->sh, CKU_USER, NULL, 0);
    }
    if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
        return ENR_OK;
    if (p->pin_file == NULL) {
        /* evertoken answers a NULL PIN with CKR_PIN_INCORRECT when its
         * login cache is empty or expired: no PIN was wrong. */
        enr_err("PIN needed: token \"%s\" is locked and the profile has no pin_file (%s)", t->label,
                rv == CKR_PIN_INCORRECT ? "no login cached: unlock the token, e.g. evertoken unlock"
                                        : tok_ckr(rv));
        return ENR_E_PIN;
    }
    enr_err("login to token \"%s\" failed: %s", t->label, tok_ckr(rv));
    /* A refused PIN is not retried automatically: every retry would count
     * towards the token's lockout. */
    return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED
               ? ENR_E_PIN_WRONG
               : ENR_E_TOKEN;
}

/* Is the token in slot ID initialised and selected by URI? TI receives its info. */
static int
token_matches(CK_FUNCTION_LIST_PTR f, CK_SLOT_ID id, P11KitUri *uri, CK_TOKEN_INFO *ti)
{
    CK_SLOT_ID want_slot = p11_kit_uri_get_slot_id(uri);

    if (f->C_GetTokenInfo(id, ti) != CKR_OK || !(ti->flags & CKF_TOKEN_INITIALIZED))
        return 0;
    if (want_slot != (CK_SLOT_ID)-1 && want_slot != id)
        return 0;
    return p11_kit_uri_match_token_info(uri, ti) != 0;
}

int
enr_token_login_ready(const enr_profile *p)
{
    P11KitUri *uri = p11_kit_uri_new();
    void *dl = NULL;
    CK_C_GetFunctionList gfl;
    CK_C_GetInterface gi;
    CK_INTERFACE_PTR ifc = NULL;
    CK_FUNCTION_LIST_PTR f = NULL;
    CK_SLOT_ID slots[64], slot = 0;
    CK_ULONG ns = 64;
    CK_SESSION_HANDLE sh;
    CK_SESSION_INFO si;
    CK_BBOOL live = CK_FALSE;
    int matches = 0, ready = -1, inited = 0;

    if (uri == NULL || p11_kit_uri_parse(p->token_uri, P11_KIT_URI_FOR_ANY, uri) != 0)
        goto done;
    dl = dlopen(p->module, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL)
        goto done;
    *(void **)&gfl = dlsym(dl, "C_GetFunctionList");
    if (gfl == NULL || gfl(&f) != CKR_OK || f == NULL || f->C_Initialize(NULL) != CKR_OK)
        goto done;
    inited = 1;
    if (f->C_GetSlotList(CK_TRUE, slots, &ns) != CKR_OK)
        goto done;
    for (CK_ULONG i = 0; i < ns; i++) {
        CK_TOKEN_INFO ti;
        if (token_matches(f, slots[i], uri, &ti) && matches++ == 0)
            slot = slots[i];
    }
    if (matches != 1)
        goto done;
    *(void **)&gi = dlsym(dl, "C_GetInterface");
    if (gi != NULL && gi((CK_UTF8CHAR_PTR)ET_VENDOR_INTERFACE, NULL, &ifc, 0) == CKR_OK &&
        ifc != NULL && ifc->pFunctionList != NULL) {
        /* evertoken: the per-user login cache, without opening a session. */
        const ET_FUNCTION_LIST *et = ifc->pFunctionList;
        if (et->ET_LoginCacheStatus(slot, &live) == CKR_OK) {
            ready = live == CK_TRUE;
            goto done;
        }
    }
    if (f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &sh) != CKR_OK)
        goto done;
    ready = f->C_GetSessionInfo(sh, &si) == CKR_OK &&
            (si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS);
    f->C_CloseSession(sh);
done:
    if (inited)
        f->C_Finalize(NULL);
    if (dl != NULL)
        dlclose(dl);
    p11_kit_uri_free(uri);
    return ready;
}

enr_rc
enr_token_open(const enr_profile *p, enr_token **out)
{
    enr_token *t;
    P11KitUri *uri = NULL;
    CK_C_GetFunctionList gfl;
    int matches = 0, r;
    enr_rc rc = ENR_E_TOKEN;
    const char *crash = getenv("EVERTOKEN_ENROLL_CRASH_AT");

    *out = NULL;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return ENR_E_FAIL;
    if (crash != NULL)
        t->crash_at = atoi(crash);
    uri = p11_kit_uri_new();
    if (uri == NULL || p11_kit_uri_parse(p->token_uri, P11_KIT_URI_FOR_ANY, uri) != 0) {
        enr_err("%s: cannot parse the token URI", p->path);
        rc = ENR_E_CONFIG;
        goto fail;
    }
    t->ctx = PKCS11_CTX_new();
    if (t->ctx == NULL)
        goto fail;
    if (PKCS11_CTX_load(t->ctx, p->module) != 0) {
        enr_err("cannot load the PKCS#11 module %s", p->module);
        enr_ssl_errors();
        PKCS11_CTX_free(t->ctx);
        t->ctx = NULL;
        rc = ENR_E_TOKEN;
        goto fail;
    }
    /* The same loaded instance libp11 initialised (RTLD_NOLOAD: no second copy). */
    t->dl = dlopen(p->module, RTLD_NOW | RTLD_NOLOAD);
    if (t->dl == NULL) {
        enr_err("cannot reach the loaded module %s: %s", p->module, dlerror());
        goto fail;
    }
    *(void **)&gfl = dlsym(t->dl, "C_GetFunctionList");
    if (gfl == NULL || gfl(&t->f) != CKR_OK || t->f == NULL) {
        enr_err("%s is not a PKCS#11 module", p->module);
        goto fail;
    }
    if (PKCS11_enumerate_slots(t->ctx, &t->slots, &t->nslots) != 0) {
        enr_err("cannot list the slots of %s", p->module);
        goto fail;
    }
    for (unsigned int i = 0; i < t->nslots; i++) {
        CK_TOKEN_INFO ti;
        CK_SLOT_ID id = PKCS11_get_slotid_from_slot(&t->slots[i]);
        if (t->slots[i].token == NULL || !token_matches(t->f, id, uri, &ti))
            continue;
        if (matches++ == 0) {
            t->slot = id;
            p11str(t->label, sizeof(t->label), ti.label, sizeof(ti.label));
            p11str(t->serial, sizeof(t->serial), ti.serialNumber, sizeof(ti.serialNumber));
            p11str(t->model, sizeof(t->model), ti.model, sizeof(ti.model));
            p11str(t->manufacturer, sizeof(t->manufacturer), ti.manufacturerID,
                   sizeof(ti.manufacturerID));
        }
    }
    if (matches == 0) {
        enr_err("token absent: no initialised token of %s matches %s", p->module, p->token_uri);
        rc = ENR_E_TOKEN;
        goto fail;
    }
    if (matches > 1) {
        enr_err("%d tokens match %s; add token= or serial= to the URI", matches, p->token_uri);
        rc = ENR_E_CONFIG;
        goto fail;
    }
    detect_native(t);
    tok_sync_clock(t);
    r = (int)t->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &t->sh);
    if (r != CKR_OK) {
        enr_err("cannot open a session on token \"%s\": %s", t->label, tok_ckr((CK_RV)r));
        goto fail;
    }
    t->have_session = 1;
    rc = login(t, p);
    if (rc != ENR_OK)
        goto fail;
    p11_kit_uri_free(uri);
    *out = t;
    return ENR_OK;
fail:
    p11_kit_uri_free(uri);
    enr_token_close(t);
    return rc;
}

void
enr_token_close(enr_token *t)
{
    if (t == NULL)
        return;
    if (t->have_session)
        t->f->C_CloseSession(t->sh);
    if (t->slots != NULL)
        PKCS11_release_all_slots(t->ctx, t->slots, t->nslots);
    if (t->ctx != NULL) {
        PKCS11_CTX_unload(t->ctx);
        PKCS11_CTX_free(t->ctx);
    }
    if (t->dl != NULL)
        dlclose(t->dl);
    free(t);
}

char *
enr_token_cred_uri(const enr_token *t, const enr_profile *p)
{
    P11KitUri *uri = p11_kit_uri_new();
    CK_TOKEN_INFO *ti;
    CK_ATTRIBUTE a;
    char *s = NULL;

    if (uri == NULL)
        return NULL;
    ti = p11_kit_uri_get_token_info(uri);
    memset(ti->label, ' ', sizeof(ti->label));
    memcpy(ti->label, t->label, strlen(t->label));
    memset(ti->serialNumber, ' ', sizeof(ti->serialNumber));
    memcpy(ti->serialNumber, t->serial, strlen(t->serial));
    memset(ti->model, ' ', sizeof(ti->model));
    memcpy(ti->model, t->model, strlen(t->model));
    memset(ti->manufacturerID, ' ', sizeof(ti->manufacturerID));
    memcpy(ti->manufacturerID, t->manufacturer, strlen(t->manufacturer));
    a.type = CKA_LABEL;
    a.pValue = p->label;
    a.ulValueLen = strlen(p->label);
    p11_kit_uri_set_attribute(uri, &a);
    a.type = CKA_ID;
    a.pValue = (void *)p->id;
    a.ulValueLen = p->id_len;
    p11_kit_uri_set_attribute(uri, &a);
    if (p11_kit_uri_format(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &s) != P11_KIT_URI_OK)
        s = NULL;
    p11_kit_uri_free(uri);
    return s;
}
