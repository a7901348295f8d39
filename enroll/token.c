/*
 * token.c — the token side of enrollment, through standard PKCS#11 calls
 * only, so it works with any module (evertoken, SoftHSMv2, a smart card).
 *
 * libp11 loads the module and gives OpenSSL EVP_PKEYs whose private
 * operations (C_Sign, C_Decrypt) run inside the token; everything else
 * (finding the token by RFC 7512 URI, login, C_GenerateKeyPair,
 * C_CreateObject, C_SetAttributeValue, C_DestroyObject) uses the module's
 * function list directly, from the same loaded instance (login state is per
 * application, so libp11's sessions share our login).
 *
 * The rollover sequence (docs/enrollment.md "Rollover on a standard token"):
 * objects of a credential share CKA_ID = ID and CKA_LABEL = L. A renewal
 * creates its objects as pending (CKA_ID = ID||FF, label "L (pending)"),
 * then, once the pending certificate is stored, enr_token_repair() moves them
 * under ID, deletes the old certificate, retires (or deletes) the old pair
 * and finally relabels the new objects L, the certificate last. Every step
 * is one PKCS#11 call and the token contents alone say which steps are done,
 * so re-running repair after a crash anywhere finishes the job; at every
 * point the token holds at least one complete, working credential.
 *
 * On an evertoken token (vendor interface "Vendor evertoken" 1.1, found by
 * detect_native) the rollover is the module's own (docs/rollover.md): the
 * new pair is generated pending (CKA_EVERTOKEN_PENDING), found again after a
 * restart with a CKA_EVERTOKEN_PENDING search, discarded with
 * ET_RolloverDiscard, committed by storing the certificate with
 * CKA_EVERTOKEN_COMMIT_ROLLOVER (one transaction), and retired objects are
 * purged with ET_PurgeRetired after the profile's grace period has been
 * written into the token's rollover_grace setting. Pending keys are
 * invisible to libp11, so p11key.c backs their EVP_PKEY by handle.
 */
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libp11.h>
#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <p11-kit/uri.h>

#include "enr_int.h"
#include <evertoken/evertoken_ext.h>
#include "p11key.h"

#define PENDING_SUFFIX " (pending)"
#define RETIRED_FMT    "%s (retired %lld)"
#define TAG_PENDING    0xFF
#define TAG_RETIRED    0xFE

struct enr_token {
    PKCS11_CTX *ctx;
    PKCS11_SLOT *slots;
    unsigned int nslots;
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE sh;
    int have_session;
    char label[33];
    char serial[17];
    char model[17];
    char manufacturer[33];
    int steps; /* mutation steps done (crash-test hook) */
    int crash_at;
    /* evertoken's vendor interface (1.1 or later) when the token is one of
     * its slots: the native rollover is used (docs/rollover.md). */
    const ET_FUNCTION_LIST *et;
};

static const char *
ckr(CK_RV rv)
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
static void
step_done(enr_token *t, const char *what)
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
static void
sync_module_clock(const enr_token *t)
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
                                        : ckr(rv));
        return ENR_E_PIN;
    }
    enr_err("login to token \"%s\" failed: %s", t->label, ckr(rv));
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
    sync_module_clock(t);
    r = (int)t->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &t->sh);
    if (r != CKR_OK) {
        enr_err("cannot open a session on token \"%s\": %s", t->label, ckr((CK_RV)r));
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

/* ---- Objects ------------------------------------------------------------ */

typedef struct obj {
    CK_OBJECT_HANDLE h;
    CK_OBJECT_CLASS cls;
    unsigned char id[66];
    size_t id_len;
    char *label;
} obj;

typedef struct objlist {
    obj *v;
    size_t n;
} objlist;

static void
objlist_free(objlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].label);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int
get_attr(enr_token *t, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, unsigned char **val,
         CK_ULONG *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};

    *val = NULL;
    *len = 0;
    if (t->f->C_GetAttributeValue(t->sh, h, &a, 1) != CKR_OK ||
        a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
        return -1;
    a.pValue = malloc(a.ulValueLen + 1);
    if (a.pValue == NULL)
        return -1;
    if (t->f->C_GetAttributeValue(t->sh, h, &a, 1) != CKR_OK) {
        free(a.pValue);
        return -1;
    }
    ((unsigned char *)a.pValue)[a.ulValueLen] = '\0';
    *val = a.pValue;
    *len = a.ulValueLen;
    return 0;
}

/* All objects of class CLS (or any class if CLS == -1). */
static enr_rc
list_objects(enr_token *t, long cls, objlist *out)
{
    CK_OBJECT_CLASS c = (CK_OBJECT_CLASS)cls;
    CK_ATTRIBUTE tmpl = {CKA_CLASS, &c, sizeof(c)};
    CK_OBJECT_HANDLE hs[64];
    CK_ULONG n;
    CK_RV rv;

    memset(out, 0, sizeof(*out));
    rv = t->f->C_FindObjectsInit(t->sh, cls < 0 ? NULL : &tmpl, cls < 0 ? 0 : 1);
    if (rv != CKR_OK) {
        enr_err("token \"%s\": C_FindObjectsInit: %s", t->label, ckr(rv));
        return ENR_E_TOKEN;
    }
    for (;;) {
        rv = t->f->C_FindObjects(t->sh, hs, 64, &n);
        if (rv != CKR_OK || n == 0)
            break;
        obj *nv = realloc(out->v, (out->n + n) * sizeof(*nv));
        if (nv == NULL)
            break;
        out->v = nv;
        for (CK_ULONG i = 0; i < n; i++) {
            obj *o = &out->v[out->n++];
            unsigned char *v;
            CK_ULONG l;
            memset(o, 0, sizeof(*o));
            o->h = hs[i];
            if (get_attr(t, hs[i], CKA_CLASS, &v, &l) == 0 && l == sizeof(CK_OBJECT_CLASS))
                memcpy(&o->cls, v, sizeof(o->cls));
            free(v);
            if (get_attr(t, hs[i], CKA_ID, &v, &l) == 0 && l <= sizeof(o->id)) {
                memcpy(o->id, v, l);
                o->id_len = l;
            }
            free(v);
            if (get_attr(t, hs[i], CKA_LABEL, &v, &l) == 0)
                o->label = (char *)v;
            else
                o->label = strdup("");
        }
    }
    t->f->C_FindObjectsFinal(t->sh);
    if (rv != CKR_OK) {
        enr_err("token \"%s\": C_FindObjects: %s", t->label, ckr(rv));
        objlist_free(out);
        return ENR_E_TOKEN;
    }
    return ENR_OK;
}

/* The credential's identifiers: ID, pending ID (ID||FF), retired ID (ID||FE). */
static int
id_is(const obj *o, const enr_profile *p, int tag)
{
    if (tag == 0)
        return o->id_len == p->id_len && memcmp(o->id, p->id, p->id_len) == 0;
    return o->id_len == p->id_len + 1 && memcmp(o->id, p->id, p->id_len) == 0 &&
           o->id[p->id_len] == tag;
}

static char *
pending_label(const enr_profile *p)
{
    return enr_aprintf("%s%s", p->label, PENDING_SUFFIX);
}

static enr_rc
set_id(enr_token *t, CK_OBJECT_HANDLE h, const unsigned char *id, size_t n, const char *what)
{
    CK_ATTRIBUTE a = {CKA_ID, (void *)id, n};
    CK_RV rv = t->f->C_SetAttributeValue(t->sh, h, &a, 1);

    if (rv != CKR_OK) {
        enr_err("token \"%s\": cannot change CKA_ID of %s: %s", t->label, what, ckr(rv));
        return ENR_E_TOKEN;
    }
    step_done(t, what);
    return ENR_OK;
}

static enr_rc
set_label(enr_token *t, CK_OBJECT_HANDLE h, const char *label, const char *what)
{
    CK_ATTRIBUTE a = {CKA_LABEL, (void *)label, strlen(label)};
    CK_RV rv = t->f->C_SetAttributeValue(t->sh, h, &a, 1);

    if (rv != CKR_OK) {
        enr_err("token \"%s\": cannot change CKA_LABEL of %s: %s", t->label, what, ckr(rv));
        return ENR_E_TOKEN;
    }
    step_done(t, what);
    return ENR_OK;
}

static enr_rc
destroy(enr_token *t, CK_OBJECT_HANDLE h, const char *what)
{
    CK_RV rv = t->f->C_DestroyObject(t->sh, h);

    if (rv != CKR_OK) {
        enr_err("token \"%s\": cannot delete %s: %s", t->label, what, ckr(rv));
        return ENR_E_TOKEN;
    }
    step_done(t, what);
    return ENR_OK;
}

static X509 *
read_cert(enr_token *t, CK_OBJECT_HANDLE h)
{
    unsigned char *v;
    const unsigned char *pv;
    CK_ULONG l;
    X509 *x;

    if (get_attr(t, h, CKA_VALUE, &v, &l) != 0)
        return NULL;
    pv = v;
    x = d2i_X509(NULL, &pv, (long)l);
    free(v);
    return x;
}

/* An EC public key object (CKA_EC_PARAMS: a named curve's OID; CKA_EC_POINT:
 * the point, DER OCTET STRING as PKCS#11 says, or raw as some tokens give it)
 * as an EVP_PKEY. */
static EVP_PKEY *
read_ec_pubkey(enr_token *t, CK_OBJECT_HANDLE h)
{
    unsigned char *par = NULL, *pt = NULL;
    CK_ULONG pl, ptl;
    const unsigned char *q;
    ASN1_OBJECT *oid = NULL;
    ASN1_OCTET_STRING *os = NULL;
    OSSL_PARAM_BLD *b = NULL;
    OSSL_PARAM *prm = NULL;
    EVP_PKEY_CTX *pc = NULL;
    EVP_PKEY *pk = NULL;
    const char *group;
    const unsigned char *point;
    size_t point_len;

    if (get_attr(t, h, CKA_EC_PARAMS, &par, &pl) != 0 ||
        get_attr(t, h, CKA_EC_POINT, &pt, &ptl) != 0)
        goto done;
    q = par;
    oid = d2i_ASN1_OBJECT(NULL, &q, (long)pl);
    group = oid ? OBJ_nid2sn(OBJ_obj2nid(oid)) : NULL;
    if (group == NULL || OBJ_obj2nid(oid) == NID_undef)
        goto done;
    q = pt;
    os = d2i_ASN1_OCTET_STRING(NULL, &q, (long)ptl);
    if (os != NULL && q == pt + ptl) {
        point = ASN1_STRING_get0_data(os);
        point_len = (size_t)ASN1_STRING_length(os);
    } else {
        point = pt;
        point_len = ptl;
    }
    b = OSSL_PARAM_BLD_new();
    if (b == NULL || !OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, point, point_len))
        goto done;
    prm = OSSL_PARAM_BLD_to_param(b);
    pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (prm == NULL || pc == NULL || EVP_PKEY_fromdata_init(pc) <= 0 ||
        EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, prm) <= 0)
        pk = NULL;
done:
    ERR_clear_error();
    free(par);
    free(pt);
    ASN1_OBJECT_free(oid);
    ASN1_OCTET_STRING_free(os);
    OSSL_PARAM_free(prm);
    OSSL_PARAM_BLD_free(b);
    EVP_PKEY_CTX_free(pc);
    return pk;
}

/* Public key of a key object (RSA: modulus/exponent, readable on private
 * keys too; EC: the public key object's point) as an EVP_PKEY. */
static EVP_PKEY *
read_pubkey(enr_token *t, CK_OBJECT_HANDLE h)
{
    unsigned char *n = NULL, *e = NULL;
    CK_ULONG nl, el;
    OSSL_PARAM_BLD *b = NULL;
    OSSL_PARAM *prm = NULL;
    EVP_PKEY_CTX *pc = NULL;
    EVP_PKEY *pk = NULL;
    BIGNUM *bn = NULL, *be = NULL;

    if (get_attr(t, h, CKA_MODULUS, &n, &nl) != 0 ||
        get_attr(t, h, CKA_PUBLIC_EXPONENT, &e, &el) != 0) {
        pk = read_ec_pubkey(t, h);
        goto done;
    }
    bn = BN_bin2bn(n, (int)nl, NULL);
    be = BN_bin2bn(e, (int)el, NULL);
    b = OSSL_PARAM_BLD_new();
    if (bn == NULL || be == NULL || b == NULL ||
        !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, bn) ||
        !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, be))
        goto done;
    prm = OSSL_PARAM_BLD_to_param(b);
    pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (prm == NULL || pc == NULL || EVP_PKEY_fromdata_init(pc) <= 0 ||
        EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, prm) <= 0)
        pk = NULL;
done:
    free(n);
    free(e);
    BN_free(bn);
    BN_free(be);
    OSSL_PARAM_free(prm);
    OSSL_PARAM_BLD_free(b);
    EVP_PKEY_CTX_free(pc);
    return pk;
}

/* Same public key? Compared as DER SubjectPublicKeyInfo, which works for
 * provider keys and libp11's method-backed keys alike. */
static int
same_pubkey(EVP_PKEY *a, EVP_PKEY *b)
{
    unsigned char *da = NULL, *db = NULL;
    int la, lb, eq;

    if (a == NULL || b == NULL)
        return 0;
    la = i2d_PUBKEY(a, &da);
    lb = i2d_PUBKEY(b, &db);
    eq = la > 0 && la == lb && memcmp(da, db, (size_t)la) == 0;
    OPENSSL_free(da);
    OPENSSL_free(db);
    return eq;
}

/* Token-backed EVP_PKEY of the private key whose public key is PUB. */
static EVP_PKEY *
libp11_key(enr_token *t, EVP_PKEY *pub)
{
    PKCS11_SLOT *s = NULL;
    PKCS11_KEY *keys = NULL;
    unsigned int nk = 0;

    for (unsigned int i = 0; i < t->nslots; i++)
        if (PKCS11_get_slotid_from_slot(&t->slots[i]) == t->slot)
            s = &t->slots[i];
    if (s == NULL || s->token == NULL || PKCS11_enumerate_keys(s->token, &keys, &nk) != 0)
        return NULL;
    for (unsigned int i = 0; i < nk; i++) {
        EVP_PKEY *pk;
        if (!keys[i].isPrivate)
            continue;
        pk = PKCS11_get_private_key(&keys[i]);
        if (pk != NULL && same_pubkey(pk, pub))
            return pk;
        EVP_PKEY_free(pk);
    }
    enr_ssl_errors();
    return NULL;
}

/* ---- Finding the credential --------------------------------------------- */

enr_rc
enr_token_bootstrap(enr_token *t, const char *label, X509 **cert, EVP_PKEY **key)
{
    objlist l;
    X509 *x = NULL;
    enr_rc rc;

    *cert = NULL;
    *key = NULL;
    rc = list_objects(t, CKO_CERTIFICATE, &l);
    if (rc != ENR_OK)
        return rc;
    for (size_t i = 0; i < l.n && x == NULL; i++)
        if (!strcmp(l.v[i].label, label))
            x = read_cert(t, l.v[i].h);
    objlist_free(&l);
    if (x == NULL) {
        enr_err("token \"%s\": no bootstrap certificate labelled \"%s\"", t->label, label);
        return ENR_E_TOKEN;
    }
    *key = libp11_key(t, X509_get0_pubkey(x));
    if (*key == NULL) {
        enr_err("token \"%s\": no private key for the bootstrap certificate \"%s\"", t->label,
                label);
        X509_free(x);
        return ENR_E_TOKEN;
    }
    *cert = x;
    return ENR_OK;
}

void
enr_cred_clear(enr_cred *c)
{
    X509_free(c->cert);
    memset(c, 0, sizeof(*c));
}

enr_rc
enr_token_find(enr_token *t, const enr_profile *p, enr_cred *c)
{
    objlist l;
    char *pl = pending_label(p);
    enr_rc rc;

    memset(c, 0, sizeof(*c));
    rc = list_objects(t, -1, &l);
    if (rc != ENR_OK || pl == NULL) {
        free(pl);
        return rc != ENR_OK ? rc : ENR_E_FAIL;
    }
    /* The visible certificate: under ID; the latest notAfter if several. */
    for (size_t i = 0; i < l.n; i++) {
        X509 *x;
        if (!strcmp(l.v[i].label, pl))
            c->rollover_open = 1;
        if (l.v[i].cls != CKO_CERTIFICATE || !id_is(&l.v[i], p, 0))
            continue;
        c->n_certs++;
        x = read_cert(t, l.v[i].h);
        if (x == NULL)
            continue;
        if (c->cert == NULL ||
            ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(c->cert)) > 0) {
            X509_free(c->cert);
            c->cert = x;
        } else {
            X509_free(x);
        }
    }
    if (c->cert != NULL) {
        EVP_PKEY *cpub = X509_get0_pubkey(c->cert);
        for (size_t i = 0; i < l.n && !c->have_key; i++) {
            EVP_PKEY *kp;
            if (l.v[i].cls != CKO_PRIVATE_KEY || !id_is(&l.v[i], p, 0))
                continue;
            kp = read_pubkey(t, l.v[i].h);
            if (kp == NULL) {
                /* No readable public part (EC): ask libp11, which pairs it. */
                EVP_PKEY *tk = libp11_key(t, cpub);
                c->have_key = tk != NULL;
                EVP_PKEY_free(tk);
            } else {
                c->have_key = same_pubkey(kp, cpub);
            }
            EVP_PKEY_free(kp);
        }
    }
    objlist_free(&l);
    free(pl);
    return ENR_OK;
}

enr_rc
enr_token_duplicate(enr_token *t, const enr_profile *p, time_t now, char **label)
{
    objlist l;
    enr_rc rc;

    *label = NULL;
    rc = list_objects(t, CKO_CERTIFICATE, &l);
    if (rc != ENR_OK)
        return rc;
    for (size_t i = 0; i < l.n && *label == NULL; i++) {
        obj *o = &l.v[i];
        X509 *x;
        if (id_is(o, p, 0) || id_is(o, p, TAG_PENDING) || id_is(o, p, TAG_RETIRED))
            continue;
        x = read_cert(t, o->h);
        if (x != NULL && X509_NAME_cmp(X509_get_subject_name(x), p->subject_name) == 0 &&
            X509_cmp_time(X509_get0_notBefore(x), &now) <= 0 &&
            X509_cmp_time(X509_get0_notAfter(x), &now) > 0)
            *label = enr_strdup(o->label);
        X509_free(x);
    }
    objlist_free(&l);
    return ENR_OK;
}

/* ---- Key generation ----------------------------------------------------- */

static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const unsigned char oid_p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};

enr_rc
enr_token_generate(enr_token *t, const enr_profile *p, EVP_PKEY **pkey)
{
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG bits = (CK_ULONG)p->key_bits;
    CK_BYTE e[] = {1, 0, 1};
    unsigned char pid[66];
    char *pl = pending_label(p);
    CK_OBJECT_HANDLE hpub, hpriv;
    CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pub[9], priv[10];
    CK_ULONG np = 0, nk = 0;
    EVP_PKEY *pubk = NULL;
    CK_RV rv;
    enr_rc rc = ENR_E_TOKEN;

    *pkey = NULL;
    if (pl == NULL)
        return ENR_E_FAIL;
    memcpy(pid, p->id, p->id_len);
    pid[p->id_len] = TAG_PENDING;
#define A(arr, n, t, v, l)                                                                         \
    (arr[n].type = (t), arr[n].pValue = (void *)(v), arr[n++].ulValueLen = (l))
    A(pub, np, CKA_TOKEN, &yes, sizeof(yes));
    A(pub, np, CKA_PRIVATE, &no, sizeof(no));
    A(pub, np, CKA_VERIFY, &yes, sizeof(yes));
    A(priv, nk, CKA_TOKEN, &yes, sizeof(yes));
    A(priv, nk, CKA_PRIVATE, &yes, sizeof(yes));
    A(priv, nk, CKA_SENSITIVE, &yes, sizeof(yes));
    A(priv, nk, CKA_EXTRACTABLE, &no, sizeof(no));
    A(priv, nk, CKA_SIGN, &yes, sizeof(yes));
    if (t->et != NULL) {
        /* Native: pending (invisible) under the credential's own ID and
         * label; the commit gives them the old objects' labels anyway. */
        A(pub, np, CKA_EVERTOKEN_PENDING, &yes, sizeof(yes));
        A(pub, np, CKA_ID, p->id, p->id_len);
        A(pub, np, CKA_LABEL, p->label, strlen(p->label));
        A(priv, nk, CKA_ID, p->id, p->id_len);
        A(priv, nk, CKA_LABEL, p->label, strlen(p->label));
    } else {
        A(pub, np, CKA_ID, pid, p->id_len + 1);
        A(pub, np, CKA_LABEL, pl, strlen(pl));
        A(priv, nk, CKA_ID, pid, p->id_len + 1);
        A(priv, nk, CKA_LABEL, pl, strlen(pl));
    }
    if (p->key_type == ENR_KEY_RSA) {
        A(pub, np, CKA_MODULUS_BITS, &bits, sizeof(bits));
        A(pub, np, CKA_PUBLIC_EXPONENT, e, sizeof(e));
        /* SCEP: the CA encrypts its answer to this key (RSA key transport). */
        A(pub, np, CKA_ENCRYPT, &yes, sizeof(yes));
        A(priv, nk, CKA_DECRYPT, &yes, sizeof(yes));
    } else {
        const unsigned char *oid = oid_p256;
        size_t ol = sizeof(oid_p256);
        if (!strcmp(p->curve, "P-384")) {
            oid = oid_p384;
            ol = sizeof(oid_p384);
        } else if (!strcmp(p->curve, "P-521")) {
            oid = oid_p521;
            ol = sizeof(oid_p521);
        }
        mech.mechanism = CKM_EC_KEY_PAIR_GEN;
        A(pub, np, CKA_EC_PARAMS, oid, ol);
    }
#undef A
    rv = t->f->C_GenerateKeyPair(t->sh, &mech, pub, np, priv, nk, &hpub, &hpriv);
    if (rv != CKR_OK) {
        enr_err("token \"%s\": cannot generate the new key pair (C_GenerateKeyPair): %s", t->label,
                ckr(rv));
        goto done;
    }
    step_done(t,
              t->et ? "generate the pending key pair (native)" : "generate the pending key pair");
    pubk = read_pubkey(t, hpub);
    if (pubk == NULL && (p->key_type == ENR_KEY_RSA || t->et != NULL)) {
        enr_err("token \"%s\": cannot read the new public key", t->label);
        goto done;
    }
    /* A native pending key cannot be found by libp11 (C_FindObjects skips
     * it): its handle backs the EVP_PKEY directly. */
    if (t->et != NULL)
        *pkey = enr_p11key_new(t->f, t->sh, hpriv, pubk);
    else
        *pkey = pubk ? libp11_key(t, pubk) : NULL;
    if (*pkey == NULL) {
        enr_err("token \"%s\": the new private key is not usable through libp11", t->label);
        goto done;
    }
    rc = ENR_OK;
done:
    EVP_PKEY_free(pubk);
    free(pl);
    return rc;
}

/* The public key of private key object PRIV read from its public key object
 * (same CKA_ID and label): an EC private key does not carry its point. */
static EVP_PKEY *
pair_pubkey(enr_token *t, const obj *priv)
{
    objlist l;
    EVP_PKEY *pub = NULL;

    if (list_objects(t, CKO_PUBLIC_KEY, &l) != ENR_OK)
        return NULL;
    for (size_t i = 0; i < l.n && pub == NULL; i++)
        if (l.v[i].id_len == priv->id_len && !memcmp(l.v[i].id, priv->id, priv->id_len) &&
            !strcmp(l.v[i].label, priv->label))
            pub = read_pubkey(t, l.v[i].h);
    objlist_free(&l);
    return pub;
}

/* The private key (class CKO_PRIVATE_KEY) matching TAG/label rule, as a
 * token-backed EVP_PKEY. */
static enr_rc
key_where(enr_token *t, const enr_profile *p, int pending, EVP_PKEY **pkey)
{
    objlist l;
    char *pl = pending_label(p);
    enr_rc rc;

    *pkey = NULL;
    rc = list_objects(t, CKO_PRIVATE_KEY, &l);
    if (rc != ENR_OK || pl == NULL) {
        free(pl);
        return rc != ENR_OK ? rc : ENR_E_FAIL;
    }
    for (size_t i = 0; i < l.n && *pkey == NULL; i++) {
        int match = pending ? (!strcmp(l.v[i].label, pl) &&
                               (id_is(&l.v[i], p, TAG_PENDING) || id_is(&l.v[i], p, 0)))
                            : (id_is(&l.v[i], p, 0) && strcmp(l.v[i].label, pl) != 0);
        EVP_PKEY *pub;
        if (!match)
            continue;
        pub = read_pubkey(t, l.v[i].h);
        if (pub == NULL)
            pub = pair_pubkey(t, &l.v[i]);
        if (pub != NULL)
            *pkey = libp11_key(t, pub);
        EVP_PKEY_free(pub);
    }
    objlist_free(&l);
    free(pl);
    return ENR_OK;
}

/* Native: handles of the credential's pending objects of class CLS (found
 * with CKA_EVERTOKEN_PENDING, the only way to see them). */
static enr_rc
find_pending(enr_token *t, const enr_profile *p, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *hs,
             CK_ULONG max, CK_ULONG *n)
{
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {{CKA_EVERTOKEN_PENDING, &yes, sizeof(yes)},
                           {CKA_CLASS, &cls, sizeof(cls)},
                           {CKA_ID, (void *)p->id, p->id_len}};
    CK_RV rv;

    *n = 0;
    rv = t->f->C_FindObjectsInit(t->sh, tmpl, 3);
    if (rv == CKR_OK) {
        rv = t->f->C_FindObjects(t->sh, hs, max, n);
        t->f->C_FindObjectsFinal(t->sh);
    }
    if (rv != CKR_OK) {
        enr_err("token \"%s\": cannot look for pending keys: %s", t->label, ckr(rv));
        return ENR_E_TOKEN;
    }
    return ENR_OK;
}

static enr_rc
native_discard(enr_token *t, const enr_profile *p)
{
    CK_ULONG n = 0;
    CK_RV rv = t->et->ET_RolloverDiscard(t->sh, p->id, p->id_len, &n);

    if (rv != CKR_OK) {
        enr_err("token \"%s\": cannot discard the pending keys (ET_RolloverDiscard): %s", t->label,
                ckr(rv));
        return ENR_E_TOKEN;
    }
    if (n > 0)
        step_done(t, "discard the pending keys (native)");
    return ENR_OK;
}

/* Native: the pending pair of an earlier attempt (a CA that answered
 * PENDING, a check interrupted by the network or a crash). A pair that
 * cannot be used any more (a lone public key, an EC key whose public half
 * is missing) is discarded so the next generation starts clean: the commit
 * takes every pending key of the credential. */
static enr_rc
native_pending_key(enr_token *t, const enr_profile *p, EVP_PKEY **pkey)
{
    CK_OBJECT_HANDLE hk[4], hp[4];
    CK_ULONG nk, np;
    EVP_PKEY *pub = NULL;
    enr_rc rc;

    if ((rc = find_pending(t, p, CKO_PRIVATE_KEY, hk, 4, &nk)) != ENR_OK ||
        (rc = find_pending(t, p, CKO_PUBLIC_KEY, hp, 4, &np)) != ENR_OK)
        return rc;
    if (nk == 0 && np == 0)
        return ENR_OK;
    if (nk == 1 && np <= 1) {
        pub = read_pubkey(t, hk[0]);
        if (pub == NULL && np == 1)
            pub = read_pubkey(t, hp[0]);
        if (pub != NULL && np == 1) {
            /* Both halves present: they must be one pair. */
            EVP_PKEY *pp = read_pubkey(t, hp[0]);
            if (!same_pubkey(pub, pp)) {
                EVP_PKEY_free(pub);
                pub = NULL;
            }
            EVP_PKEY_free(pp);
        }
        if (pub != NULL)
            *pkey = enr_p11key_new(t->f, t->sh, hk[0], pub);
        EVP_PKEY_free(pub);
        if (*pkey != NULL)
            return ENR_OK;
    }
    enr_warn("profile %s: token \"%s\" holds %lu pending private and %lu pending public keys "
             "that do not form one usable pair; discarding them",
             p->name, t->label, (unsigned long)nk, (unsigned long)np);
    return native_discard(t, p);
}

enr_rc
enr_token_pending_key(enr_token *t, const enr_profile *p, EVP_PKEY **pkey)
{
    if (t->et != NULL) {
        *pkey = NULL;
        return native_pending_key(t, p, pkey);
    }
    return key_where(t, p, 1, pkey);
}

enr_rc
enr_token_current_key(enr_token *t, const enr_profile *p, EVP_PKEY **pkey)
{
    enr_rc rc = key_where(t, p, 0, pkey);

    if (rc == ENR_OK && *pkey == NULL) {
        enr_err("token \"%s\": no usable private key for credential \"%s\"", t->label, p->label);
        return ENR_E_TOKEN;
    }
    return rc;
}

enr_rc
enr_token_discard_pending(enr_token *t, const enr_profile *p)
{
    objlist l;
    char *pl = pending_label(p);
    enr_rc rc;

    if (t->et != NULL) {
        free(pl);
        return native_discard(t, p);
    }
    rc = list_objects(t, -1, &l);
    if (rc != ENR_OK || pl == NULL) {
        free(pl);
        return rc != ENR_OK ? rc : ENR_E_FAIL;
    }
    for (size_t i = 0; i < l.n && rc == ENR_OK; i++)
        if (!strcmp(l.v[i].label, pl) && id_is(&l.v[i], p, TAG_PENDING))
            rc = destroy(t, l.v[i].h, "a pending object");
    objlist_free(&l);
    free(pl);
    return rc;
}

/* ---- The rollover ------------------------------------------------------- */

/* "L (retired EPOCH)": an old key of this credential (WHEN: EPOCH). */
static int
parse_retired_label(const char *label, const enr_profile *p, long long *when)
{
    size_t ll = strlen(p->label);
    char tail;

    return strncmp(label, p->label, ll) == 0 &&
           sscanf(label + ll, " (retired %lld%c", when, &tail) == 2 && tail == ')';
}

static int
is_retired_label(const char *label, const enr_profile *p)
{
    long long w;

    return parse_retired_label(label, p, &w);
}

enr_rc
enr_token_repair(enr_token *t, const enr_profile *p, enr_state *st, time_t now)
{
    objlist l;
    char *pl = pending_label(p), *rl = NULL;
    obj *pcert = NULL, *ppriv = NULL, *ppub = NULL;
    unsigned char rid[66];
    enr_rc rc;

    (void)st;
    rc = list_objects(t, -1, &l);
    if (rc != ENR_OK || pl == NULL) {
        free(pl);
        return rc != ENR_OK ? rc : ENR_E_FAIL;
    }
    for (size_t i = 0; i < l.n; i++) {
        obj *o = &l.v[i];
        if (strcmp(o->label, pl) != 0 || !(id_is(o, p, 0) || id_is(o, p, TAG_PENDING)))
            continue;
        if (o->cls == CKO_CERTIFICATE)
            pcert = o;
        else if (o->cls == CKO_PRIVATE_KEY)
            ppriv = o;
        else if (o->cls == CKO_PUBLIC_KEY)
            ppub = o;
    }
    /* Without a pending certificate nothing may move: pending keys wait for
     * the CA (PENDING) or for the next attempt, which reuses them. */
    if (pcert == NULL)
        goto done;
    enr_info("profile %s: completing the credential switch on token \"%s\"", p->name, t->label);
    /* 1. The new objects take the credential's CKA_ID (certificate last). */
    obj *order[3] = {ppriv, ppub, pcert};
    for (int i = 0; i < 3 && rc == ENR_OK; i++)
        if (order[i] != NULL && id_is(order[i], p, TAG_PENDING))
            rc = set_id(t, order[i]->h, p->id, p->id_len, "move a new object under the ID");
    /* 2. The old certificate goes first (applications stop pairing it)… */
    for (size_t i = 0; i < l.n && rc == ENR_OK; i++)
        if (l.v[i].cls == CKO_CERTIFICATE && id_is(&l.v[i], p, 0) && &l.v[i] != pcert &&
            !strcmp(l.v[i].label, p->label))
            rc = destroy(t, l.v[i].h, "delete the old certificate");
    /* 3. …then the old pair, only while the new pair is complete and still
     * pending: afterwards keys labelled L under ID are the new ones. */
    if (ppriv != NULL && ppub != NULL) {
        memcpy(rid, p->id, p->id_len);
        rid[p->id_len] = TAG_RETIRED;
        rl = enr_aprintf(RETIRED_FMT, p->label, (long long)now);
        for (int pass = 0; pass < 2 && rc == ENR_OK && rl != NULL; pass++) {
            CK_OBJECT_CLASS want = pass == 0 ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY;
            for (size_t i = 0; i < l.n && rc == ENR_OK; i++) {
                obj *o = &l.v[i];
                int labelled = is_retired_label(o->label, p);
                if (o->cls != want || !id_is(o, p, 0) ||
                    (strcmp(o->label, p->label) != 0 && !labelled))
                    continue;
                if (p->grace_period > 0) {
                    /* Retired: first labelled (so a crash in between still
                     * tells it from the new key), then moved out of the
                     * credential's ID; destroyed after the grace period. */
                    if (!labelled)
                        rc = set_label(t, o->h, rl, "label an old key retired");
                    if (rc == ENR_OK)
                        rc = set_id(t, o->h, rid, p->id_len + 1, "move an old key out of the ID");
                } else {
                    rc = destroy(t, o->h, "delete an old key");
                }
            }
        }
    }
    /* 4. Labels: private key, public key, certificate last. */
    for (int i = 0; i < 3 && rc == ENR_OK; i++)
        if (order[i] != NULL)
            rc = set_label(t, order[i]->h, p->label, "relabel a new object");
    if (rc == ENR_OK)
        enr_info("profile %s: token \"%s\" holds the new credential \"%s\"", p->name, t->label,
                 p->label);
done:
    objlist_free(&l);
    free(pl);
    free(rl);
    return rc;
}

/*
 * Native retired objects: the token keeps them for its rollover_grace
 * setting and destroys them at a user C_Login or ET_PurgeRetired. The
 * profile's grace_period is written into that setting when it differs (the
 * setting is per token: profiles sharing an evertoken token should agree on
 * it, the last one checked wins), then expired objects are purged now.
 * ET_SetSetting needs a login with the PIN (pin_file); after a login from
 * evertoken's login cache the module refuses it and the token's own setting
 * applies, which is said once per check with -v.
 */
static enr_rc
native_grace(enr_token *t, const enr_profile *p)
{
    char cur[32], want[32];
    CK_ULONG len = sizeof(cur), n = 0;
    long g = p->grace_period < 0 ? 0 : p->grace_period;
    CK_RV rv;

    if (g > 315360000L)
        g = 315360000L;
    snprintf(want, sizeof(want), "%ld", g);
    sync_module_clock(t);
    rv = t->et->ET_GetSetting(t->slot, ET_SETTING_ROLLOVER_GRACE, cur, &len);
    if (rv == CKR_OK && strcmp(cur, want) != 0) {
        rv = t->et->ET_SetSetting(t->sh, ET_SETTING_ROLLOVER_GRACE, want);
        if (rv == CKR_OK) {
            step_done(t, "set the token's rollover_grace (native)");
            enr_info("profile %s: token \"%s\": rollover_grace %s s (was %s s), the profile's "
                     "grace_period",
                     p->name, t->label, want, cur);
        } else {
            enr_debug("profile %s: token \"%s\" keeps rollover_grace %s s (the profile asks %s "
                      "s; changing it needs a login with the PIN: %s)",
                      p->name, t->label, cur, want, ckr(rv));
        }
    }
    rv = t->et->ET_PurgeRetired(t->sh, &n);
    if (rv != CKR_OK) {
        enr_err("token \"%s\": cannot purge retired objects (ET_PurgeRetired): %s", t->label,
                ckr(rv));
        return ENR_E_TOKEN;
    }
    if (n > 0) {
        step_done(t, "purge retired objects (native)");
        enr_info("profile %s: token \"%s\": %lu retired objects past the grace period destroyed",
                 p->name, t->label, (unsigned long)n);
    }
    return ENR_OK;
}

enr_rc
enr_token_expire_retired(enr_token *t, const enr_profile *p, time_t now)
{
    objlist l;
    enr_rc rc;

    if (t->et != NULL) {
        rc = native_grace(t, p);
        if (rc != ENR_OK)
            return rc;
    }
    /* Objects an earlier rollover by standard calls retired (also on an
     * evertoken token renewed before the helper used its native path). */
    rc = list_objects(t, -1, &l);
    if (rc != ENR_OK)
        return rc;
    for (size_t i = 0; i < l.n && rc == ENR_OK; i++) {
        obj *o = &l.v[i];
        long long when;
        if (!id_is(o, p, TAG_RETIRED) || !parse_retired_label(o->label, p, &when))
            continue;
        if (now >= when + p->grace_period)
            rc = destroy(t, o->h, "destroy a retired key after its grace period");
    }
    objlist_free(&l);
    return rc;
}

/* Native commit: one C_CreateObject with CKA_EVERTOKEN_COMMIT_ROLLOVER. The
 * module checks the certificate's key against the pending keys, retires the
 * old pair and certificate and activates the new ones in one transaction. */
static enr_rc
native_commit(enr_token *t, const enr_profile *p, CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE full[12];
    CK_OBJECT_HANDLE h;
    CK_RV rv;

    for (CK_ULONG i = 0; i < n; i++) {
        full[i] = tmpl[i];
        if (full[i].type == CKA_ID) {
            full[i].pValue = (void *)p->id;
            full[i].ulValueLen = p->id_len;
        } else if (full[i].type == CKA_LABEL) {
            full[i].pValue = p->label;
            full[i].ulValueLen = strlen(p->label);
        }
    }
    full[n].type = CKA_EVERTOKEN_COMMIT_ROLLOVER;
    full[n].pValue = &yes;
    full[n].ulValueLen = sizeof(yes);
    sync_module_clock(t);
    rv = t->f->C_CreateObject(t->sh, full, n + 1, &h);
    if (rv != CKR_OK) {
        enr_err("token \"%s\": the rollover commit was refused: %s%s", t->label, ckr(rv),
                rv == CKR_TEMPLATE_INCONSISTENT
                    ? " (the certificate's key is not the pending key, or no key is pending)"
                    : "");
        return ENR_E_TOKEN;
    }
    step_done(t, "commit the rollover (native)");
    enr_info("profile %s: token \"%s\" holds the new credential \"%s\" (native rollover)", p->name,
             t->label, p->label);
    return native_grace(t, p);
}

enr_rc
enr_token_commit(enr_token *t, const enr_profile *p, X509 *cert, int new_key, time_t now)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    unsigned char pid[66], *der = NULL, *subj = NULL, *iss = NULL, *ser = NULL;
    int dl, sl, il, rl;
    char *pl = pending_label(p);
    CK_OBJECT_HANDLE h;
    CK_RV rv;
    enr_rc rc = ENR_E_FAIL;

    memcpy(pid, p->id, p->id_len);
    pid[p->id_len] = TAG_PENDING;
    dl = i2d_X509(cert, &der);
    sl = i2d_X509_NAME(X509_get_subject_name(cert), &subj);
    il = i2d_X509_NAME(X509_get_issuer_name(cert), &iss);
    rl = i2d_ASN1_INTEGER(X509_get_serialNumber(cert), &ser);
    if (pl == NULL || dl <= 0 || sl <= 0 || il <= 0 || rl <= 0)
        goto done;
    {
        CK_ATTRIBUTE tmpl[] = {
            {CKA_CLASS, &cls, sizeof(cls)},         {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
            {CKA_TOKEN, &yes, sizeof(yes)},         {CKA_PRIVATE, &no, sizeof(no)},
            {CKA_ID, pid, p->id_len + 1},           {CKA_LABEL, pl, strlen(pl)},
            {CKA_SUBJECT, subj, (CK_ULONG)sl},      {CKA_ISSUER, iss, (CK_ULONG)il},
            {CKA_SERIAL_NUMBER, ser, (CK_ULONG)rl}, {CKA_VALUE, der, (CK_ULONG)dl},
        };
        if (t->et != NULL && new_key) {
            rc = native_commit(t, p, tmpl, sizeof(tmpl) / sizeof(tmpl[0]));
            goto done;
        }
        rv = t->f->C_CreateObject(t->sh, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
        if (rv != CKR_OK) {
            enr_err("token \"%s\": cannot store the new certificate: %s", t->label, ckr(rv));
            rc = ENR_E_TOKEN;
            goto done;
        }
    }
    step_done(t, "store the new certificate (pending)");
    rc = enr_token_repair(t, p, NULL, now);
done:
    OPENSSL_free(der);
    OPENSSL_free(subj);
    OPENSSL_free(iss);
    OPENSSL_free(ser);
    free(pl);
    return rc;
}

/* ---- For other key pairs (the ACME account key, proto/acme_key.c) ------- */

void
enr_token_p11(const enr_token *t, CK_FUNCTION_LIST_PTR *f, CK_SESSION_HANDLE *sh)
{
    *f = t->f;
    *sh = t->sh;
}

EVP_PKEY *
enr_token_pubkey(enr_token *t, CK_OBJECT_HANDLE h)
{
    return read_pubkey(t, h);
}
