/*
 * tokscan.c — a read-only look into a token for monitoring: is it present,
 * is the user PIN locked or low on attempts, could a check log in without a
 * PIN (evertoken's login cache through the vendor interface, else a new
 * session's state), and its certificates (public objects, read without a
 * login) for watch entries. The module is loaded, used and finalised here,
 * so nothing stays open between checks.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>
#include <p11-kit/uri.h>

#include "et_modpath.h"
#include "mon.h"
#include <evertoken/evertoken_ext.h>

static void
login_state(void *dl, CK_FUNCTION_LIST_PTR f, CK_SLOT_ID slot, enr_tokinfo *ti)
{
    CK_C_GetInterface gi;
    CK_INTERFACE_PTR ifc = NULL;
    CK_BBOOL live = CK_FALSE;
    CK_SESSION_HANDLE sh;
    CK_SESSION_INFO si;

    ti->login_cached = -1;
    *(void **)&gi = dlsym(dl, "C_GetInterface");
    if (gi != NULL && gi((CK_UTF8CHAR_PTR)ET_VENDOR_INTERFACE, NULL, &ifc, 0) == CKR_OK &&
        ifc != NULL && ifc->pFunctionList != NULL) {
        const ET_FUNCTION_LIST *et = ifc->pFunctionList;
        if (et->ET_LoginCacheStatus(slot, &live) == CKR_OK) {
            ti->login_cached = live == CK_TRUE;
            return;
        }
    }
    if (f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &sh) != CKR_OK)
        return;
    if (f->C_GetSessionInfo(sh, &si) == CKR_OK)
        ti->login_cached = si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS;
    f->C_CloseSession(sh);
}

/* The value and label of certificate object O (malloc'd). */
static int
cert_of(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE o, X509 **x, char **lbl)
{
    CK_ATTRIBUTE a[2] = {{CKA_VALUE, NULL, 0}, {CKA_LABEL, NULL, 0}};
    const unsigned char *p;
    int ok = 0;

    *x = NULL;
    *lbl = NULL;
    if (f->C_GetAttributeValue(sh, o, a, 2) != CKR_OK || a[0].ulValueLen == 0 ||
        a[0].ulValueLen == CK_UNAVAILABLE_INFORMATION || a[0].ulValueLen > ENR_HTTP_MAX)
        return 0;
    if (a[1].ulValueLen == CK_UNAVAILABLE_INFORMATION)
        a[1].ulValueLen = 0;
    a[0].pValue = malloc(a[0].ulValueLen);
    a[1].pValue = calloc(1, a[1].ulValueLen + 1);
    if (a[0].pValue != NULL && a[1].pValue != NULL &&
        f->C_GetAttributeValue(sh, o, a, 2) == CKR_OK) {
        p = a[0].pValue;
        *x = d2i_X509(NULL, &p, (long)a[0].ulValueLen);
        if (*x != NULL) {
            ((char *)a[1].pValue)[a[1].ulValueLen] = '\0';
            *lbl = a[1].pValue;
            a[1].pValue = NULL;
            ok = 1;
        }
    }
    free(a[0].pValue);
    free(a[1].pValue);
    return ok;
}

static void
list_certs(CK_FUNCTION_LIST_PTR f, CK_SLOT_ID slot, P11KitUri *uri, enr_tokinfo *ti)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_ATTRIBUTE tmpl[3] = {{CKA_CLASS, &cls, sizeof(cls)}};
    CK_ULONG nt = 1, got = 0, na = 0;
    CK_ATTRIBUTE *ua = p11_kit_uri_get_attributes(uri, &na);
    CK_SESSION_HANDLE sh;
    CK_OBJECT_HANDLE objs[64];
    size_t n = 0;

    /* The URI's object= and id= narrow the search. */
    for (CK_ULONG i = 0; i < na && nt < 3; i++)
        if (ua[i].type == CKA_LABEL || ua[i].type == CKA_ID)
            tmpl[nt++] = ua[i];
    ti->certs = sk_X509_new_null();
    if (ti->certs == NULL || f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &sh) != CKR_OK)
        return;
    if (f->C_FindObjectsInit(sh, tmpl, nt) == CKR_OK) {
        while (f->C_FindObjects(sh, objs, 64, &got) == CKR_OK && got > 0) {
            for (CK_ULONG i = 0; i < got; i++) {
                X509 *x;
                char *l, **nl;
                if (!cert_of(f, sh, objs[i], &x, &l))
                    continue;
                nl = realloc(ti->labels, (n + 1) * sizeof(*nl));
                if (nl == NULL || !sk_X509_push(ti->certs, x)) {
                    ti->labels = nl ? nl : ti->labels;
                    X509_free(x);
                    free(l);
                    continue;
                }
                ti->labels = nl;
                ti->labels[n++] = l;
            }
        }
        f->C_FindObjectsFinal(sh);
    }
    f->C_CloseSession(sh);
}

enr_rc
enr_tokscan(const char *module, const char *uristr, int want_certs, enr_tokinfo *ti)
{
    P11KitUri *uri = p11_kit_uri_new();
    char *mod = NULL;
    void *dl = NULL;
    CK_C_GetFunctionList gfl;
    CK_FUNCTION_LIST_PTR f = NULL;
    CK_SLOT_ID slots[64], slot = 0;
    CK_ULONG ns = 64;
    int matches = 0, inited = 0;
    enr_rc rc = ENR_E_TOKEN;

    memset(ti, 0, sizeof(*ti));
    ti->login_cached = -1;
    if (uri == NULL || p11_kit_uri_parse(uristr, P11_KIT_URI_FOR_ANY, uri) != 0) {
        enr_err("%s: not a PKCS#11 URI", uristr);
        rc = ENR_E_CONFIG;
        goto done;
    }
    if (module == NULL) {
        const char *env = getenv("EVERTOKEN_MODULE");
        mod = et_module_resolve(env && *env ? env : EVERTOKEN_DEFAULT_MODULE);
        module = mod;
    }
    dl = module ? dlopen(module, RTLD_NOW | RTLD_LOCAL) : NULL;
    if (dl == NULL) {
        enr_err("cannot load the PKCS#11 module %s: %s", module ? module : "?", dlerror());
        goto done;
    }
    *(void **)&gfl = dlsym(dl, "C_GetFunctionList");
    if (gfl == NULL || gfl(&f) != CKR_OK || f == NULL || f->C_Initialize(NULL) != CKR_OK) {
        enr_err("the PKCS#11 module %s did not initialise", module);
        goto done;
    }
    inited = 1;
    rc = ENR_OK;
    if (f->C_GetSlotList(CK_TRUE, slots, &ns) != CKR_OK)
        goto done;
    for (CK_ULONG i = 0; i < ns; i++) {
        CK_TOKEN_INFO t;
        CK_SLOT_ID want = p11_kit_uri_get_slot_id(uri);
        if (f->C_GetTokenInfo(slots[i], &t) != CKR_OK || !(t.flags & CKF_TOKEN_INITIALIZED) ||
            (want != (CK_SLOT_ID)-1 && want != slots[i]) || !p11_kit_uri_match_token_info(uri, &t))
            continue;
        if (matches++ == 0) {
            slot = slots[i];
            ti->pin_locked = (t.flags & CKF_USER_PIN_LOCKED) != 0;
            ti->pin_count_low = (t.flags & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY)) != 0;
        }
    }
    if (matches != 1)
        goto done;
    ti->found = 1;
    login_state(dl, f, slot, ti);
    if (want_certs)
        list_certs(f, slot, uri, ti);
done:
    if (inited)
        f->C_Finalize(NULL);
    if (dl != NULL)
        dlclose(dl);
    p11_kit_uri_free(uri);
    free(mod);
    return rc;
}

void
enr_tokinfo_clear(enr_tokinfo *ti)
{
    int n = ti->certs ? sk_X509_num(ti->certs) : 0;

    for (int i = 0; i < n && ti->labels != NULL; i++)
        free(ti->labels[i]);
    free(ti->labels);
    sk_X509_pop_free(ti->certs, X509_free);
    memset(ti, 0, sizeof(ti[0]));
}
