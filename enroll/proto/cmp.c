/*
 * cmp.c — the CMP client (RFC 9810, formerly RFC 4210/9480; HTTP transfer
 * RFC 9811; the Lightweight CMP Profile RFC 9483) on OpenSSL's OSSL_CMP_CTX.
 *
 * OpenSSL builds, protects, sends (through transfer(): the helper's HTTP
 * layer, one kept connection per transaction), validates and confirms every message: protection
 * (MAC or signature chaining to the profile's anchors), transaction id, nonces, recipient, the new
 * certificate's public key. This file only chooses:
 *  - ir (first enrollment): MAC from reference + secret_file, or a signature
 *    by the bootstrap certificate and key in the token (profile bootstrap);
 *  - kur (renewal): signed by the old certificate's key in the token, the
 *    new key (or the same, rekey = false) proving possession by its own
 *    signature; the old certificate named in oldCertID;
 *  - certConf after the helper's own checks of the issued certificate
 *    (enr_check_issued: a refusal is told to the CA as incorrectData), or
 *    implicit confirmation when the profile asks and the CA grants it;
 *  - pollReq while the CA answers "waiting", poll_max times per check, then
 *    the transaction is abandoned (an error message tells the CA) and the
 *    check reports PENDING: CMP transactions cannot outlive the process, so
 *    the next check asks again with the same pending key;
 *  - rr for `evertoken-enroll revoke`, signed by the certificate's own key;
 *  - genm before a request (RFC 9483 section 4.3): rootCaKeyUpdate for each
 *    self-signed anchor — a new root is trusted for this check only when its
 *    NewWithOld link certificate chains to the current anchors and certifies
 *    the new root's name and key — and caCerts, whose certificates that
 *    chain to the anchors help verify the issued one. A CA that does not
 *    answer genm changes nothing.
 * All token signatures go through the token-backed EVP_PKEYs (libp11 or
 * p11key.c); no private key leaves the token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/cmp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "cmp_asn1.h"
#include "enr_int.h"
#include "enr_parse.h"
#include "proto.h"

enr_cmp_transport_fn enr_cmp_transport = NULL;

typedef struct cmp_call {
    const enr_profile *p;
    enr_http_conn *http; /* one connection for the whole transaction */
    const char *op;      /* "ir", "kur", "rr": for messages */
    enr_rc rc;           /* transport verdict (already reported), ENR_OK if none */
    STACK_OF(X509) * anchors;
    EVP_PKEY *newkey; /* the key the issued certificate must carry */
    enr_rc check_rc;  /* the helper's checks of the issued certificate */
    int checked;
} cmp_call;

/* What OpenSSL's CMP client logged about the last answer: it explains some
 * refusals only there (a sender other than the expected one), and it prints
 * (and clears) its error queue itself before it sends an error message to
 * the CA. One transaction at a time (the helper is single-threaded). */
static char logged[768];

static int
cmp_log(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg)
{
    size_t used = strlen(logged);
    const char *m;

    (void)func;
    (void)file;
    (void)line;
    enr_debug("CMP: %s", msg);
    if (msg == NULL || level > OSSL_CMP_LOG_INFO)
        return 1;
    m = msg + strspn(msg, " \t");
    if (!strncmp(m, "sending ", 8) || !strncmp(m, "received ", 9))
        return 1; /* progress, not a reason */
    snprintf(logged + used, sizeof(logged) - used, "%s%.*s", used ? "; " : "",
             (int)strcspn(m, "\r\n"), m);
    return 1;
}

/* One request/answer over HTTP POST (RFC 9811: application/pkixcmp). */
static OSSL_CMP_MSG *
transfer(OSSL_CMP_CTX *ctx, const OSSL_CMP_MSG *req)
{
    cmp_call *c = OSSL_CMP_CTX_get_transfer_cb_arg(ctx);
    unsigned char *der = NULL, *resp = NULL;
    const unsigned char *q;
    size_t rlen = 0;
    char *ct = NULL;
    OSSL_CMP_MSG *rsp = NULL;
    int n;
    enr_rc rc;

    if (OSSL_CMP_MSG_get_bodytype(req) != 23 /* error: the reason is logged already */)
        logged[0] = '\0';
    n = i2d_OSSL_CMP_MSG(req, &der);
    if (n <= 0) {
        enr_err("CMP %s: cannot encode the request", c->op);
        c->rc = ENR_E_FAIL;
        return NULL;
    }
    if (enr_cmp_transport != NULL) {
        rc = enr_cmp_transport(der, (size_t)n, &resp, &rlen, &ct);
    } else {
        if (c->http == NULL && (c->http = enr_http_conn_new()) == NULL) {
            OPENSSL_free(der);
            c->rc = ENR_E_FAIL;
            return NULL;
        }
        rc = enr_http_exchange(c->http, c->p->url, "application/pkixcmp", der, (size_t)n,
                               c->p->http_timeout, &resp, &rlen, &ct);
    }
    OPENSSL_free(der);
    if (rc != ENR_OK) {
        c->rc = rc;
        goto done;
    }
    if (ct == NULL || strncasecmp(ct, "application/pkixcmp", 19) != 0) {
        enr_err("CMP %s: the CA answered with %s, not application/pkixcmp", c->op,
                ct ? ct : "no content type");
        c->rc = ENR_E_REJECTED;
        goto done;
    }
    q = resp;
    rsp = rlen > 0 && rlen < 0x7fffffff ? d2i_OSSL_CMP_MSG(NULL, &q, (long)rlen) : NULL;
    if (rsp == NULL || q != resp + rlen) {
        enr_err("CMP %s: the CA's answer (%zu bytes) is not a CMP message", c->op, rlen);
        OSSL_CMP_MSG_free(rsp);
        rsp = NULL;
        c->rc = ENR_E_REJECTED;
    }
done:
    free(resp);
    free(ct);
    return rsp;
}

/*
 * The certificate the CA issued, before it is confirmed: OpenSSL has checked
 * the answer's protection and that the certificate carries the requested
 * key (FAIL_INFO set otherwise); the helper's checks follow. A non-zero
 * result is sent to the CA in certConf as a rejection.
 */
static int
cert_conf(OSSL_CMP_CTX *ctx, X509 *cert, int fail_info, const char **txt)
{
    cmp_call *c = OSSL_CMP_CTX_get_certConf_cb_arg(ctx);
    STACK_OF(X509) * chain;

    c->checked = 1;
    if (fail_info != 0) {
        enr_err("CMP %s: the issued certificate is refused: %s", c->op,
                *txt ? *txt : "it failed OpenSSL's checks");
        c->check_rc = ENR_E_REJECTED;
        return fail_info;
    }
    chain = OSSL_CMP_CTX_get1_extraCertsIn(ctx);
    c->check_rc = enr_check_issued(c->p, cert, c->newkey, chain, c->anchors, enr_now());
    sk_X509_pop_free(chain, X509_free);
    if (c->check_rc != ENR_OK) {
        *txt = "the certificate failed the client's checks";
        return 1 << OSSL_CMP_PKIFAILUREINFO_incorrectData;
    }
    return 0;
}

/* OpenSSL's error queue as one line (and cleared): the CMP library's
 * reasons (those of the libraries below only when it gave none), each with
 * the first line of its detail. */
static void
ssl_reasons(char *buf, size_t n)
{
    unsigned long e;
    const char *data;
    int flags, cmp_only = 0;
    size_t used = 0;

    buf[0] = '\0';
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        const char *r = ERR_reason_error_string(e);
        int w, dl = 0;
        if (r == NULL)
            continue;
        if (ERR_GET_LIB(e) == ERR_LIB_CMP && !cmp_only) {
            cmp_only = 1; /* the CMP library's view replaces the details below it */
            used = 0;
            buf[0] = '\0';
        } else if (cmp_only && ERR_GET_LIB(e) != ERR_LIB_CMP) {
            continue;
        }
        if ((flags & ERR_TXT_STRING) && data != NULL) {
            data += strspn(data, " \t");
            dl = (int)strcspn(data, "\r\n");
        }
        w = snprintf(buf + used, n - used, "%s%s%s%.*s", used ? "; " : "", r, dl ? ": " : "", dl,
                     dl ? data : "");
        if (w < 0 || (size_t)w >= n - used)
            break;
        used += (size_t)w;
    }
}

/* A failed exchange: the precise reason, and the verdict. */
static enr_rc
failed(OSSL_CMP_CTX *ctx, cmp_call *c)
{
    char why[1024], st[512];

    ssl_reasons(why, sizeof(why));
    if (why[0])
        enr_debug("CMP %s: OpenSSL: %s", c->op, why);
    if (c->rc != ENR_OK)
        return c->rc; /* transport trouble, reported by transfer() */
    if (c->checked && c->check_rc != ENR_OK)
        return c->check_rc; /* the issued certificate failed the checks (reported) */
    if (OSSL_CMP_CTX_get_status(ctx) == OSSL_CMP_PKISTATUS_rejection &&
        OSSL_CMP_CTX_snprint_PKIStatus(ctx, st, sizeof(st)) != NULL) {
        enr_err("CMP %s: the CA refused the request (%s)", c->op, st);
        return ENR_E_REJECTED;
    }
    enr_err("CMP %s: the CA's answer failed the checks: %s", c->op,
            why[0]      ? why
            : logged[0] ? logged
                        : "no reason given");
    return ENR_E_REJECTED;
}

/* A context for profile P: transport, trust (the anchors at the helper's
 * clock; UNTRUSTED: the CA chain known from earlier answers, for the CA's
 * signer and our own chain in extraCerts), recipient, logging. */
static OSSL_CMP_CTX *
cmp_new(const enr_profile *p, cmp_call *c, STACK_OF(X509) * anchors, STACK_OF(X509) * untrusted)
{
    OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);
    X509_STORE *ts = X509_STORE_new();

    logged[0] = '\0';
    if (ctx == NULL || ts == NULL)
        goto fail;
    for (int i = 0; i < sk_X509_num(anchors); i++)
        if (!X509_STORE_add_cert(ts, sk_X509_value(anchors, i)))
            goto fail;
    X509_VERIFY_PARAM_set_time(X509_STORE_get0_param(ts), enr_now());
    if (!OSSL_CMP_CTX_set0_trustedStore(ctx, ts))
        goto fail;
    ts = NULL;
    if (sk_X509_num(untrusted) > 0 && !OSSL_CMP_CTX_set1_untrusted(ctx, untrusted))
        goto fail;
    if (!OSSL_CMP_CTX_set_log_cb(ctx, cmp_log) ||
        !OSSL_CMP_CTX_set_log_verbosity(ctx, OSSL_CMP_LOG_INFO) ||
        !OSSL_CMP_CTX_set_transfer_cb(ctx, transfer) || !OSSL_CMP_CTX_set_transfer_cb_arg(ctx, c) ||
        !OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_TOTAL_TIMEOUT, 0))
        goto fail;
    if (p->recipient_name != NULL && (!OSSL_CMP_CTX_set1_recipient(ctx, p->recipient_name) ||
                                      !OSSL_CMP_CTX_set1_expected_sender(ctx, p->recipient_name)))
        goto fail;
    return ctx;
fail:
    enr_err("CMP: cannot set up OpenSSL's CMP client");
    enr_ssl_errors();
    X509_STORE_free(ts);
    OSSL_CMP_CTX_free(ctx);
    return NULL;
}

/* MAC protection from the profile's reference and secret_file. */
static enr_rc
use_mac(OSSL_CMP_CTX *ctx, const enr_profile *p)
{
    enr_secret s = {NULL, 0};
    int ok;

    if (p->secret_file == NULL || p->reference == NULL) {
        enr_err("CMP ir: no MAC secret (reference and secret_file) and no bootstrap "
                "certificate in the profile");
        return ENR_E_CONFIG;
    }
    if (enr_secret_read_file(p->secret_file, "CMP secret", &s) != 0)
        return ENR_E_CONFIG;
    ok = OSSL_CMP_CTX_set1_secretValue(ctx, (unsigned char *)s.buf, (int)s.len) &&
         OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *)p->reference,
                                          (int)strlen(p->reference));
    enr_secret_free(&s);
    return ok ? ENR_OK : ENR_E_FAIL;
}

static enr_rc
cmp_enroll(const enr_profile *p, EVP_PKEY *newkey, X509 *old, EVP_PKEY *oldkey, X509 *boot_cert,
           EVP_PKEY *boot_key, STACK_OF(X509) * anchors, STACK_OF(X509) * untrusted,
           enr_scep_result *res)
{
    cmp_call c = {p, NULL, old ? "kur" : "ir", ENR_OK, anchors, newkey, ENR_OK, 0};
    int type = old ? OSSL_CMP_KUR : OSSL_CMP_IR;
    OSSL_CMP_CTX *ctx = cmp_new(p, &c, anchors, untrusted);
    X509_EXTENSIONS *exts = NULL;
    int polls = 0, r;
    enr_rc rc = ENR_E_FAIL;

    memset(res, 0, sizeof(*res));
    if (ctx == NULL)
        return ENR_E_FAIL;
    if (old != NULL) {
        /* kur: protected by the old key in the token, naming the old certificate. */
        if (!OSSL_CMP_CTX_set1_cert(ctx, old) || !OSSL_CMP_CTX_set1_pkey(ctx, oldkey) ||
            !OSSL_CMP_CTX_set1_oldCert(ctx, old))
            goto setup;
        enr_info("profile %s: CMP kur signed by the current key in the token", p->name);
    } else if (boot_cert != NULL) {
        if (!OSSL_CMP_CTX_set1_cert(ctx, boot_cert) || !OSSL_CMP_CTX_set1_pkey(ctx, boot_key))
            goto setup;
        enr_info("profile %s: CMP ir signed by the bootstrap certificate \"%s\"", p->name,
                 p->bootstrap);
    } else {
        rc = use_mac(ctx, p);
        if (rc != ENR_OK)
            goto done;
        enr_info("profile %s: CMP ir protected by the MAC of reference \"%s\"", p->name,
                 p->reference);
    }
    EVP_PKEY_up_ref(newkey);
    if (!OSSL_CMP_CTX_set0_newPkey(ctx, 1, newkey)) {
        EVP_PKEY_free(newkey);
        goto setup;
    }
    if (!OSSL_CMP_CTX_set1_subjectName(ctx, p->subject_name) ||
        !OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_SUBJECTALTNAME_NODEFAULT, 1) ||
        !OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_IMPLICIT_CONFIRM, p->implicit_confirm) ||
        !OSSL_CMP_CTX_set_certConf_cb(ctx, cert_conf) || !OSSL_CMP_CTX_set_certConf_cb_arg(ctx, &c))
        goto setup;
    if (p->san != NULL) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, p->san);
        exts = sk_X509_EXTENSION_new_null();
        if (e == NULL || exts == NULL || !sk_X509_EXTENSION_push(exts, e)) {
            X509_EXTENSION_free(e);
            goto setup;
        }
        if (!OSSL_CMP_CTX_set0_reqExtensions(ctx, exts))
            goto setup;
        exts = NULL;
    }
    for (;;) {
        int after = 0;
        r = OSSL_CMP_try_certreq(ctx, type, NULL, &after);
        if (r != -1)
            break;
        if (polls >= p->poll_max) {
            enr_info("profile %s: the CA still holds the request after %d polls; abandoning "
                     "this transaction (the next check asks again with the same key)",
                     p->name, polls);
            OSSL_CMP_try_certreq(ctx, -1, NULL, &after);
            ERR_clear_error();
            res->txid = enr_strdup("cmp");
            rc = ENR_E_PENDING;
            goto done;
        }
        polls++;
        enr_info("profile %s: the CA holds the request (waiting); polling (%d)", p->name, polls);
        after = after > 0 && after < p->poll_interval ? after : p->poll_interval;
        if (enr_clock_is_fake())
            enr_clock_set(enr_now() + after);
        else
            sleep((unsigned)after);
    }
    if (r != 1 || OSSL_CMP_CTX_get0_newCert(ctx) == NULL) {
        rc = failed(ctx, &c);
        goto done;
    }
    res->cert = X509_dup(OSSL_CMP_CTX_get0_newCert(ctx));
    res->chain = OSSL_CMP_CTX_get1_extraCertsIn(ctx);
    rc = res->cert != NULL ? ENR_OK : ENR_E_FAIL;
    goto done;
setup:
    enr_err("CMP %s: cannot prepare the request", c.op);
    enr_ssl_errors();
    rc = ENR_E_FAIL;
done:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    OSSL_CMP_CTX_free(ctx);
    enr_http_conn_free(c.http);
    return rc;
}

int
enr_revocation_reason(const char *name)
{
    static const char *names[] = {
        "unspecified",   "keyCompromise",        "cACompromise",    "affiliationChanged",
        "superseded",    "cessationOfOperation", "certificateHold", NULL,
        "removeFromCRL", "privilegeWithdrawn",   "aACompromise"};

    if (name == NULL)
        return 0;
    for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
        if (names[i] != NULL && !strcasecmp(names[i], name))
            return i;
    return -1;
}

enr_rc
enr_cmp_revoke(const enr_profile *p, enr_token *t, X509 *cert, EVP_PKEY *key,
               STACK_OF(X509) * anchors, int reason, int by_account)
{
    cmp_call c = {p, NULL, "rr", ENR_OK, anchors, NULL, ENR_OK, 0};
    OSSL_CMP_CTX *ctx = cmp_new(p, &c, anchors, NULL);
    enr_rc rc;

    (void)t; /* CMP has no account: the engine refuses by_account */
    (void)by_account;

    if (ctx == NULL)
        return ENR_E_FAIL;
    if (!OSSL_CMP_CTX_set1_cert(ctx, cert) || !OSSL_CMP_CTX_set1_pkey(ctx, key) ||
        !OSSL_CMP_CTX_set1_oldCert(ctx, cert) ||
        !OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_REVOCATION_REASON, reason)) {
        enr_err("CMP rr: cannot prepare the request");
        enr_ssl_errors();
        OSSL_CMP_CTX_free(ctx);
        return ENR_E_FAIL;
    }
    rc = OSSL_CMP_exec_RR_ses(ctx) == 1 ? ENR_OK : failed(ctx, &c);
    OSSL_CMP_CTX_free(ctx);
    enr_http_conn_free(c.http);
    return rc;
}

enr_rc
enr_cmp_enroll(const enr_profile *p, EVP_PKEY *newkey, X509 *old, EVP_PKEY *oldkey, X509 *boot_cert,
               EVP_PKEY *boot_key, STACK_OF(X509) * anchors, enr_scep_result *res)
{
    return cmp_enroll(p, newkey, old, oldkey, boot_cert, boot_key, anchors, NULL, res);
}

/* ---- CA certificates by general message (RFC 9483 section 4.3) ---------- */

static int
has_cert(STACK_OF(X509) * s, X509 *x)
{
    for (int i = 0; i < sk_X509_num(s); i++)
        if (X509_cmp(sk_X509_value(s, i), x) == 0)
            return 1;
    return 0;
}

/* One genm transaction asking for TYPE (VALUE: its infoValue, or NULL;
 * consumed), protected as the request that follows will be. 1 and *GOT: the
 * genp's InfoTypeAndValue of type WANT (its value, in *OUT: the stack to
 * free); 0 when the CA gave none or did not answer (said at info level: a CA
 * need not offer it), *NET set when the CA could not be reached at all. */
static int
genm(const enr_proto_req *r, const char *op, const char *type, ASN1_TYPE *value, const char *want,
     STACK_OF(OSSL_CMP_ITAV) * *out, const ASN1_TYPE **got, int *net)
{
    cmp_call c = {r->p, NULL, op, ENR_OK, r->anchors, NULL, ENR_OK, 0};
    OSSL_CMP_CTX *ctx = cmp_new(r->p, &c, r->anchors, r->chain);
    X509 *cert = r->old != NULL ? r->old : r->boot_cert;
    EVP_PKEY *key = r->old != NULL ? r->oldkey : r->boot_key;
    ASN1_OBJECT *obj = OBJ_txt2obj(type, 1), *wobj = OBJ_txt2obj(want, 1);
    OSSL_CMP_ITAV *itav = NULL;
    int found = 0;

    *out = NULL;
    *got = NULL;
    if (ctx == NULL || obj == NULL || wobj == NULL)
        goto done;
    if (cert != NULL ? !OSSL_CMP_CTX_set1_cert(ctx, cert) || !OSSL_CMP_CTX_set1_pkey(ctx, key)
                     : use_mac(ctx, r->p) != ENR_OK)
        goto done;
    itav = OSSL_CMP_ITAV_create(obj, value);
    if (itav == NULL)
        goto done;
    obj = NULL; /* the ITAV's now */
    value = NULL;
    if (!OSSL_CMP_CTX_push0_genm_ITAV(ctx, itav)) {
        OSSL_CMP_ITAV_free(itav);
        goto done;
    }
    *out = OSSL_CMP_exec_GENM_ses(ctx);
    if (*out == NULL) {
        char why[1024];

        ssl_reasons(why, sizeof(why));
        if (c.rc == ENR_E_NETWORK)
            *net = 1;
        if (c.rc == ENR_OK) /* else transfer() said it */
            enr_info("profile %s: CMP %s: no answer from the CA (%s); the anchors stay as they are",
                     r->p->name, op,
                     why[0]      ? why
                     : logged[0] ? logged
                                 : "no reason given");
        goto done;
    }
    for (int i = 0; i < sk_OSSL_CMP_ITAV_num(*out); i++) {
        const OSSL_CMP_ITAV *a = sk_OSSL_CMP_ITAV_value(*out, i);
        if (OBJ_cmp(OSSL_CMP_ITAV_get0_type(a), wobj) == 0) {
            *got = OSSL_CMP_ITAV_get0_value(a);
            found = 1;
            break;
        }
    }
    if (!found)
        enr_info("profile %s: CMP %s: the CA's answer has no %s; the anchors stay as they are",
                 r->p->name, op, want);
done:
    if (ctx == NULL || obj != NULL || value != NULL)
        ERR_clear_error();
    ASN1_OBJECT_free(obj);
    ASN1_OBJECT_free(wobj);
    ASN1_TYPE_free(value);
    OSSL_CMP_CTX_free(ctx);
    enr_http_conn_free(c.http);
    return found;
}

/* The CA answered ROOT's rootCaKeyUpdate with UPD: trust UPD->newWithNew
 * from now on (this check) when NewWithOld, chaining to the anchors,
 * certifies its name and key. */
static void
take_root(const enr_profile *p, STACK_OF(X509) * anchors, X509 *root,
          const ENR_ROOTCAKEYUPDATE *upd)
{
    X509 *nwn = upd->newWithNew, *nwo = upd->newWithOld;
    char nname[256], oname[256];
    const char *bad = NULL;

    X509_NAME_oneline(X509_get_subject_name(nwn), nname, sizeof(nname));
    X509_NAME_oneline(X509_get_subject_name(root), oname, sizeof(oname));
    if (X509_cmp(nwn, root) == 0 || has_cert(anchors, nwn)) {
        enr_debug("profile %s: CMP rootCaKeyUpdate: %s is already trusted", p->name, nname);
        return;
    }
    if (nwo == NULL)
        bad = "no NewWithOld link certificate comes with it";
    else if (!(X509_get_extension_flags(nwn) & EXFLAG_SS) ||
             X509_verify(nwn, X509_get0_pubkey(nwn)) != 1 || X509_check_ca(nwn) == 0)
        bad = "NewWithNew is not a self-signed CA certificate";
    else if (X509_NAME_cmp(X509_get_subject_name(nwo), X509_get_subject_name(nwn)) != 0 ||
             EVP_PKEY_eq(X509_get0_pubkey(nwo), X509_get0_pubkey(nwn)) != 1)
        bad = "NewWithOld does not certify the new root's name and key";
    else if (enr_verify_chain(nwo, NULL, anchors, enr_now(), NULL) != ENR_OK)
        bad = "NewWithOld does not chain to the profile's anchors";
    ERR_clear_error();
    if (bad != NULL) {
        enr_warn("profile %s: CMP rootCaKeyUpdate: the CA offers the new root certificate %s "
                 "to replace %s, but %s: not trusted (if it is genuine, add it to the "
                 "profile's anchors file by hand)",
                 p->name, nname, oname, bad);
        return;
    }
    /* NewWithOld first: a chain from the new root's certificates to the old
     * root goes through it (a relying party that still trusts only the old
     * root needs it, and it is what the stored chain holds). */
    if (!X509_up_ref(nwo))
        return;
    if (!sk_X509_push(anchors, nwo)) {
        X509_free(nwo);
        return;
    }
    if (!X509_up_ref(nwn))
        return;
    if (!sk_X509_push(anchors, nwn)) {
        X509_free(nwn);
        return;
    }
    enr_info("profile %s: new trust anchor from CMP genm (rootCaKeyUpdate): %s, vouched for by "
             "the current anchor %s (NewWithOld)",
             p->name, nname, oname);
}

void
enr_cmp_root_update(const enr_profile *p, STACK_OF(X509) * anchors, X509 *root, const ASN1_TYPE *v)
{
    ENR_ROOTCAKEYUPDATE *upd;

    if (v == NULL) {
        enr_debug("profile %s: CMP rootCaKeyUpdate: no update of the root", p->name);
    } else if ((upd = enr_cmp_itav_value(v, ASN1_ITEM_rptr(ENR_ROOTCAKEYUPDATE))) == NULL) {
        enr_warn("profile %s: CMP rootCaKeyUpdate: the CA's value is not a "
                 "RootCaKeyUpdateContent; ignored",
                 p->name);
    } else {
        take_root(p, anchors, root, upd);
        ASN1_item_free((ASN1_VALUE *)upd, ASN1_ITEM_rptr(ENR_ROOTCAKEYUPDATE));
    }
    ERR_clear_error();
}

static void
root_updates(const enr_proto_req *r, int *net)
{
    int n = sk_X509_num(r->anchors);

    for (int i = 0; i < n; i++) {
        X509 *root = sk_X509_value(r->anchors, i);
        STACK_OF(OSSL_CMP_ITAV) *out = NULL;
        const ASN1_TYPE *v = NULL;

        if (*net || !(X509_get_extension_flags(root) & EXFLAG_SS))
            continue;
        if (genm(r, "genm rootCaCert", ENR_OID_IT_ROOTCACERT,
                 enr_cmp_itav_make(root, ASN1_ITEM_rptr(X509)), ENR_OID_IT_ROOTCAKEYUPDATE, &out,
                 &v, net)) {
            enr_cmp_root_update(r->p, r->anchors, root, v);
        }
        sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
    }
}

/* caCerts: the CA certificates that chain to the anchors join them for this
 * check (they help verify the issued certificate); the others are ignored. */
void
enr_cmp_take_cacerts(const enr_profile *p, STACK_OF(X509) * anchors, const ASN1_TYPE *v)
{
    STACK_OF(X509) *certs = enr_cmp_itav_value(v, ASN1_ITEM_rptr(ENR_CACERTS));

    if (certs == NULL)
        enr_warn("profile %s: CMP caCerts: the CA's value is not a SEQUENCE OF certificates; "
                 "ignored",
                 p->name);
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        char name[256];

        if (has_cert(anchors, x))
            continue;
        X509_NAME_oneline(X509_get_subject_name(x), name, sizeof(name));
        if (X509_check_ca(x) == 0 ||
            enr_verify_chain(x, certs, anchors, enr_now(), NULL) != ENR_OK) {
            enr_debug("profile %s: CMP caCerts: %s does not chain to the anchors; ignored", p->name,
                      name);
            continue;
        }
        if (!X509_up_ref(x))
            continue;
        if (!sk_X509_push(anchors, x)) {
            X509_free(x);
            continue;
        }
        enr_info("profile %s: CA certificate from CMP genm (caCerts): %s", p->name, name);
    }
    sk_X509_pop_free(certs, X509_free);
    ERR_clear_error();
}

static void
ca_certs(const enr_proto_req *r, int *net)
{
    STACK_OF(OSSL_CMP_ITAV) *out = NULL;
    const ASN1_TYPE *v = NULL;

    if (!*net &&
        genm(r, "genm caCerts", ENR_OID_IT_CACERTS, NULL, ENR_OID_IT_CACERTS, &out, &v, net) &&
        v != NULL)
        enr_cmp_take_cacerts(r->p, r->anchors, v);
    sk_OSSL_CMP_ITAV_pop_free(out, OSSL_CMP_ITAV_free);
}

/* prepare (proto.h): the CA's certificate updates before the request, when
 * the request can be protected (a certificate or the MAC secret). A CA that
 * cannot be reached is a network failure before any new key is made. */
static enr_rc
cmp_prepare(const enr_proto_req *r, enr_profile *keyp, void **state)
{
    int net = 0;

    (void)keyp;
    *state = NULL;
    if (r->old == NULL && r->boot_cert == NULL && r->p->secret_file == NULL)
        return ENR_OK;
    root_updates(r, &net);
    ca_certs(r, &net);
    return net ? ENR_E_NETWORK : ENR_OK;
}

/* ---- The protocol interface (proto.h) -------------------------------------- */

static enr_rc
cmp_check(const enr_profile *p, const char *path)
{
    if ((p->reference != NULL) != (p->secret_file != NULL)) {
        enr_err("%s: [ca] %s: CMP's MAC protection needs both reference and secret_file", path,
                p->reference != NULL ? "secret_file missing" : "reference missing");
        return ENR_E_CONFIG;
    }
    if (p->secret_file == NULL && p->bootstrap == NULL) {
        enr_err("%s: [ca] protocol = cmp: a first enrollment needs reference and secret_file "
                "(MAC) or bootstrap (a certificate in the token)",
                path);
        return ENR_E_CONFIG;
    }
    return ENR_OK;
}

static enr_rc
cmp_request(const enr_proto_req *r, void *state, EVP_PKEY *newkey, enr_scep_result *res)
{
    (void)state;
    return cmp_enroll(r->p, newkey, r->old, r->oldkey, r->boot_cert, r->boot_key, r->anchors,
                      r->chain, res);
}

const enr_proto_ops enr_proto_cmp = {
    "cmp", "CMP (RFC 9810)", 1, cmp_check, cmp_prepare, cmp_request, enr_cmp_revoke, NULL, NULL,
};
