/*
 * expiry.c — expiry warnings that never go silent.
 *
 * A certificate is a public object: its expiry is known without a PIN, and
 * without the token at all once the helper has seen it (the state database
 * and STATE/certs/PROFILE/cert.pem keep it). So the warnings are computed
 * after every check and every retry from the certificate alone, whatever
 * else failed (token absent, PIN needed or refused, request pending, CA
 * unreachable), once per warn_days threshold and certificate, and a final
 * "expired" notice once; each says why renewal has not happened and what to
 * do. enr_expiry_of() is the one computation of a credential's expiry
 * state, used by the warnings and by `status`.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <p11-kit/uri.h>

#include <evertoken/p11.h>

#include "chain.h"
#include "expiry.h"

/* ps->warned_days once the "expired" notice went out. */
#define WARNED_EXPIRED (-1)

void
enr_expiry_of(const enr_profile *p, time_t not_after, time_t now, enr_expiry *e)
{
    memset(e, 0, sizeof(*e));
    if (not_after == 0)
        return;
    e->known = 1;
    e->not_after = not_after;
    e->days_left = (long)((not_after - now) / ENR_DAY);
    e->expired = now >= not_after;
    for (int i = 0; i < p->n_warn; i++)
        if (e->days_left <= p->warn_days[i])
            e->threshold = p->warn_days[i]; /* descending: the last one reached */
    if (e->expired || (p->n_warn > 0 && e->days_left <= p->warn_days[p->n_warn - 1]))
        e->level = 2;
    else if (e->threshold > 0)
        e->level = 1;
}

/* ---- The certificate without a PIN ---------------------------------------- */

/* The credential's certificate read from a session without login. */
static X509 *
peek_token(const enr_profile *p)
{
    P11KitUri *uri = p11_kit_uri_new();
    void *dl = NULL;
    CK_C_GetFunctionList gfl;
    CK_FUNCTION_LIST_PTR f = NULL;
    CK_SLOT_ID slots[64];
    CK_ULONG ns = 64, n = 0;
    CK_SESSION_HANDLE sh = CK_INVALID_HANDLE;
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_ATTRIBUTE tmpl[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, (void *)p->id, p->id_len}};
    CK_OBJECT_HANDLE h;
    X509 *x = NULL;
    int inited = 0;

    if (uri == NULL || p11_kit_uri_parse(p->token_uri, P11_KIT_URI_FOR_ANY, uri) != 0)
        goto done;
    dl = dlopen(p->module, RTLD_NOW | RTLD_LOCAL);
    *(void **)&gfl = dl != NULL ? dlsym(dl, "C_GetFunctionList") : NULL;
    if (gfl == NULL || gfl(&f) != CKR_OK || f == NULL || f->C_Initialize(NULL) != CKR_OK)
        goto done;
    inited = 1;
    if (f->C_GetSlotList(CK_TRUE, slots, &ns) != CKR_OK)
        goto done;
    for (CK_ULONG i = 0; i < ns && sh == CK_INVALID_HANDLE; i++) {
        CK_TOKEN_INFO ti;
        CK_SLOT_ID want = p11_kit_uri_get_slot_id(uri);
        if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
            (want != (CK_SLOT_ID)-1 && want != slots[i]) ||
            !p11_kit_uri_match_token_info(uri, &ti) ||
            f->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &sh) != CKR_OK)
            sh = CK_INVALID_HANDLE;
    }
    if (sh == CK_INVALID_HANDLE || f->C_FindObjectsInit(sh, tmpl, 2) != CKR_OK)
        goto done;
    if (f->C_FindObjects(sh, &h, 1, &n) == CKR_OK && n == 1) {
        CK_ATTRIBUTE a = {CKA_VALUE, NULL, 0};
        if (f->C_GetAttributeValue(sh, h, &a, 1) == CKR_OK && a.ulValueLen > 0 &&
            a.ulValueLen < (1u << 20) && (a.pValue = malloc(a.ulValueLen)) != NULL) {
            const unsigned char *q = a.pValue;
            if (f->C_GetAttributeValue(sh, h, &a, 1) == CKR_OK)
                x = d2i_X509(NULL, &q, (long)a.ulValueLen);
            free(a.pValue);
        }
    }
    f->C_FindObjectsFinal(sh);
done:
    if (sh != CK_INVALID_HANDLE)
        f->C_CloseSession(sh);
    if (inited)
        f->C_Finalize(NULL);
    if (dl != NULL)
        dlclose(dl);
    p11_kit_uri_free(uri);
    ERR_clear_error();
    return x;
}

/* The certificate the helper wrote last for P (cert.pem, else PROFILE.pem). */
static X509 *
peek_file(const enr_profile *p, enr_state *st)
{
    char *paths[2] = {enr_chain_path(st, p, "cert.pem"),
                      enr_aprintf("%s/certs/%s.pem", enr_state_dir(st), p->name)};
    X509 *x = NULL;

    for (int i = 0; i < 2; i++) {
        BIO *b = x == NULL && paths[i] != NULL ? BIO_new_file(paths[i], "r") : NULL;
        if (b != NULL)
            x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        BIO_free(b);
        free(paths[i]);
    }
    ERR_clear_error();
    return x;
}

void
enr_expiry_refresh(const enr_profile *p, enr_state *st, enr_pstate *ps)
{
    X509 *x = peek_token(p);
    BIGNUM *bn;
    char *hex, name[256];

    if (x == NULL && ps->cert_not_after != 0)
        return; /* the token is out of reach: what the state knows stands */
    if (x == NULL)
        x = peek_file(p, st);
    if (x == NULL)
        return;
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    if (hex != NULL && (ps->cert_serial == NULL || strcmp(ps->cert_serial, hex) != 0)) {
        enr_debug("profile %s: certificate %s read without a login", p->name, hex);
        enr_pstate_set(&ps->cert_serial, hex);
        X509_NAME_oneline(X509_get_subject_name(x), name, sizeof(name));
        enr_pstate_set(&ps->cert_subject, name);
        ps->cert_not_before = enr_asn1_time(X509_get0_notBefore(x));
        ps->cert_not_after = enr_asn1_time(X509_get0_notAfter(x));
        ps->warned_days = 0;
    }
    OPENSSL_free(hex);
    BN_free(bn);
    X509_free(x);
}

/* ---- Warnings ------------------------------------------------------------ */

const char *
enr_expiry_advice(const enr_profile *p, const enr_pstate *ps, enr_rc rc, time_t now, char *buf,
                  size_t n)
{
    const char *err = enr_last_error()[0] ? enr_last_error() : enr_rc_name(rc);
    char w[32];
    time_t ws;

    switch (rc) {
    case ENR_OK:
        ws = enr_profile_window_start(p, (time_t)ps->cert_not_before, (time_t)ps->cert_not_after);
        if (now < ws)
            snprintf(buf, n, "renewal starts when the renewal window opens (%s)",
                     enr_fmt_time(ws, w, sizeof(w)));
        else
            snprintf(buf, n,
                     "renewal is due at the next renewal check; to renew now: "
                     "evertoken-enroll renew %s",
                     p->name);
        break;
    case ENR_E_TOKEN:
        snprintf(buf, n, "the token is not present: connect it (checked again every %d s)",
                 ENR_RETRY_SECONDS);
        break;
    case ENR_E_PIN:
        snprintf(buf, n,
                 "the token is locked and no PIN is configured: unlock the token: "
                 "evertoken unlock (the renewal then runs at once)");
        break;
    case ENR_E_PIN_WRONG:
        snprintf(buf, n,
                 "the token refused the PIN: correct pin_file, or unlock the token "
                 "(evertoken unlock) and run evertoken-enroll renew %s",
                 p->name);
        break;
    case ENR_E_PENDING:
        snprintf(buf, n,
                 "the CA holds the renewal request for approval: ask the CA's operator "
                 "to approve it (polled every %d s)",
                 p->poll_interval);
        break;
    case ENR_E_NETWORK:
        snprintf(buf, n, "the CA cannot be reached (%s): check the network (retried every %d s)",
                 err, ENR_RETRY_SECONDS);
        break;
    default:
        snprintf(buf, n,
                 "renewal failed (%s): see evertoken-enroll status %s, fix the cause, "
                 "then run evertoken-enroll renew %s",
                 err, p->name, p->name);
        break;
    }
    return buf;
}

static void
notify_expiry(const enr_profile *p, enr_state *st, enr_pstate *ps, const enr_expiry *e,
              const char *event, const char *advice)
{
    char na[32];
    char *msg = e->expired ? enr_aprintf("the certificate %s expired on %s and was not renewed: %s",
                                         ps->cert_serial ? ps->cert_serial : "?",
                                         enr_fmt_time(e->not_after, na, sizeof(na)), advice)
                           : enr_aprintf("the certificate %s expires in %ld days (%s) and has not "
                                         "been renewed: %s",
                                         ps->cert_serial ? ps->cert_serial : "?", e->days_left,
                                         enr_fmt_time(e->not_after, na, sizeof(na)), advice);
    enr_event ev = {
        event,        msg ? msg : "the certificate expires soon", NULL, NULL, ps->cert_serial,
        e->not_after, e->days_left < 0 ? 0 : (int)e->days_left};

    enr_notify(p, st, &ev);
    free(msg);
}

void
enr_expiry_notify(const enr_profile *p, enr_state *st, enr_pstate *ps, time_t now, enr_rc rc)
{
    enr_expiry e;
    char advice[512];

    enr_expiry_of(p, (time_t)ps->cert_not_after, now, &e);
    if (!e.known)
        return;
    if (e.expired) {
        if (ps->warned_days != WARNED_EXPIRED) {
            notify_expiry(p, st, ps, &e, "expired",
                          enr_expiry_advice(p, ps, rc, now, advice, sizeof(advice)));
            ps->warned_days = WARNED_EXPIRED;
        }
        return;
    }
    /* Once per threshold and certificate: each smaller threshold again. */
    if (e.threshold > 0 && (ps->warned_days <= 0 || ps->warned_days > e.threshold)) {
        notify_expiry(p, st, ps, &e, "expiry-warning",
                      enr_expiry_advice(p, ps, rc, now, advice, sizeof(advice)));
        ps->warned_days = e.threshold;
    }
}
