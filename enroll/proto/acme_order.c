/*
 * acme_order.c — the ACME protocol operations (RFC 8555 section 7) behind
 * the helper's protocol interface (proto.h):
 *  - account: the account key in the token (acme_key.c); an existing
 *    account is found with onlyReturnExisting, else created (contact,
 *    termsOfServiceAgreed when the profile agrees, External Account Binding
 *    with the profile's key id and HMAC key file);
 *  - order for the profile's DNS and IP names ([certificate] san, RFC 8738
 *    for IP addresses), its authorizations answered by http-01
 *    (acme_http01.c), tls-alpn-01 (acme_tlsalpn.c) or the user's hook
 *    (acme_hook.c), polled with Retry-After;
 *  - finalize with a CSR signed by the new key in the token, poll, download
 *    the PEM chain (an alternate chain chosen by [acme] preferred_chain);
 *  - the certificate goes back to the engine, which checks and stores it
 *    through the common crash-safe rollover. An order still processing
 *    when the polls run out is PENDING with the order URL as transaction:
 *    the next check resumes it with the same key.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "acme.h"
#include "proto.h"

/* The order's identifiers from the profile's SAN: DNS and IP names. */
static json_t *
identifiers(const enr_profile *p)
{
    json_t *a = json_array();
    char *dup = p->san ? enr_strdup(p->san) : NULL, *save = NULL;

    for (char *t = dup ? strtok_r(dup, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save)) {
        t += strspn(t, " \t");
        if (!strncasecmp(t, "DNS:", 4))
            json_array_append_new(a, json_pack("{s:s, s:s}", "type", "dns", "value", t + 4));
        else if (!strncasecmp(t, "IP:", 3))
            json_array_append_new(a, json_pack("{s:s, s:s}", "type", "ip", "value", t + 3));
    }
    free(dup);
    return a;
}

static enr_rc
acme_check(const enr_profile *p, const char *path)
{
    json_t *ids = identifiers(p);
    size_t n = json_array_size(ids);

    json_decref(ids);
    if (n == 0) {
        enr_err("%s: ACME needs DNS: or IP: names in [certificate] san (the order's identifiers)",
                path);
        return ENR_E_CONFIG;
    }
    if (p->acme != NULL && (p->acme->eab_kid == NULL) != (p->acme->eab_hmac_file == NULL)) {
        enr_err("%s: [acme] eab_kid and eab_hmac_file go together (External Account Binding)",
                path);
        return ENR_E_CONFIG;
    }
    if (p->acme != NULL && p->acme->http_listen != NULL && p->acme->webroot != NULL) {
        enr_err("%s: [acme] http_listen and webroot: choose one way to answer http-01", path);
        return ENR_E_CONFIG;
    }
    if (p->acme != NULL && p->acme->challenge != NULL &&
        strcmp(p->acme->challenge, "http-01") != 0 &&
        strcmp(p->acme->challenge, "tls-alpn-01") != 0 && p->acme->challenge_hook == NULL) {
        enr_err("%s: [acme] challenge = %s needs a challenge_hook (only http-01 and tls-alpn-01 "
                "are answered by the helper itself)",
                path, p->acme->challenge);
        return ENR_E_CONFIG;
    }
    if (p->acme != NULL && p->acme->tls_alpn_listen != NULL &&
        (p->acme->challenge == NULL || strcmp(p->acme->challenge, "tls-alpn-01") != 0 ||
         p->acme->challenge_hook != NULL)) {
        enr_err("%s: [acme] tls_alpn_listen is for the built-in tls-alpn-01 responder: set "
                "challenge = tls-alpn-01 (without challenge_hook)",
                path);
        return ENR_E_CONFIG;
    }
    return ENR_OK;
}

/* Poll URL (POST-as-GET) until its status leaves one of WAITING (a
 * space-separated list); the JSON into *ANS. */
static enr_rc
poll_status(enr_acme *a, const char *what, const char *url, const char *waiting, enr_acme_ans *ans)
{
    int max = a->p->poll_max > 30 ? a->p->poll_max : 30;
    long delay = 1;

    for (int i = 0;; i++) {
        const char *st;
        char pad[40];
        enr_rc rc = enr_acme_post(a, what, url, NULL, NULL, 0, 1, ans);
        if (rc != ENR_OK)
            return rc;
        st = enr_acme_str(ans->json, "status");
        if (st == NULL) {
            enr_err("ACME %s: the answer has no status", what);
            return ENR_E_REJECTED;
        }
        snprintf(pad, sizeof(pad), " %s ", st);
        {
            char w[80];
            snprintf(w, sizeof(w), " %s ", waiting);
            if (strstr(w, pad) == NULL)
                return ENR_OK;
        }
        if (i >= max)
            return ENR_E_PENDING;
        {
            long d = ans->retry_after >= 0 ? ans->retry_after : delay;
            if (d > a->p->poll_interval)
                d = a->p->poll_interval;
            enr_debug("ACME %s: %s; asking again in %ld s", what, st, d);
            enr_acme_sleep(d);
        }
        delay = delay * 2 > a->p->poll_interval ? a->p->poll_interval : delay * 2;
    }
}

/* The challenge type the profile answers. */
static const char *
ch_type(const enr_profile *p)
{
    return p->acme != NULL && p->acme->challenge != NULL ? p->acme->challenge : "http-01";
}

static int
use_hook(const enr_profile *p)
{
    return p->acme != NULL && p->acme->challenge_hook != NULL;
}

/* The built-in responders, started on first use. */
typedef struct responders {
    enr_acme_http01 *http;
    enr_acme_tlsalpn *tls;
} responders;

/* Make challenge AZ answerable: the http-01 responder or webroot, the
 * tls-alpn-01 responder, or the hook's deploy (*DEPLOYED set). */
static enr_rc
deploy(enr_acme *a, enr_acme_authz *az, const char *thumb, responders *h, int *deployed)
{
    char *ka = enr_aprintf("%s.%s", az->ch_token, thumb);
    const char *value = strchr(az->ident, ':') ? strchr(az->ident, ':') + 1 : az->ident;
    enr_rc rc = ENR_OK;

    if (ka == NULL)
        return ENR_E_FAIL;
    if (use_hook(a->p)) {
        rc = enr_acme_hook(a->p, "deploy", ch_type(a->p), value, az->ch_token, ka);
        *deployed = 1; /* cleaned up in any case */
    } else if (!strcmp(ch_type(a->p), "tls-alpn-01")) {
        if (h->tls == NULL)
            rc = enr_acme_tlsalpn_start(a->p, &h->tls);
        if (rc == ENR_OK)
            rc = enr_acme_tlsalpn_add(h->tls, az->ident, ka);
    } else {
        if (h->http == NULL)
            rc = enr_acme_http01_start(a->p, &h->http);
        if (rc == ENR_OK)
            rc = enr_acme_http01_add(h->http, az->ch_token, ka);
    }
    free(ka);
    return rc;
}

/* The hook's cleanup of every deployed challenge. */
static void
cleanup(enr_acme *a, enr_acme_authz *az, const int *deployed, size_t n, const char *thumb)
{
    for (size_t i = 0; i < n; i++) {
        char *ka;
        const char *value;
        if (!deployed[i] || az[i].ident == NULL || az[i].ch_token == NULL)
            continue;
        ka = enr_aprintf("%s.%s", az[i].ch_token, thumb);
        value = strchr(az[i].ident, ':') ? strchr(az[i].ident, ':') + 1 : az[i].ident;
        if (ka != NULL)
            enr_acme_hook(a->p, "cleanup", ch_type(a->p), value, az[i].ch_token, ka);
        free(ka);
    }
}

/* Wait for the CA's verdict on the challenge of AZ (authorization URL). */
static enr_rc
verdict(enr_acme *a, const char *url, const enr_acme_authz *az, enr_acme_ans *ans)
{
    enr_acme_authz v;
    char why[200];
    enr_rc rc = poll_status(a, "authorization", url, "pending", ans);

    if (rc == ENR_E_PENDING) {
        enr_err("ACME: the CA has not validated %s yet; trying again at the next check", az->ident);
        return ENR_E_NETWORK;
    }
    if (rc != ENR_OK)
        return rc;
    if (enr_acme_parse_authz(ans->json, ch_type(a->p), &v, why, sizeof(why)) != 0) {
        enr_err("ACME authorization %s: %s", url, why);
        rc = ENR_E_REJECTED;
    } else if (strcmp(v.status, "valid") != 0) {
        enr_err("ACME: the CA refused the %s validation of %s (%s): %s", ch_type(a->p), az->ident,
                v.status, v.ch_error ? v.ch_error : "no reason given");
        rc = ENR_E_REJECTED;
    } else {
        enr_info("profile %s: %s validated by the CA (%s)", a->p->name, az->ident, ch_type(a->p));
    }
    enr_acme_authz_clear(&v);
    return rc;
}

/* Answer every pending authorization of order O by the profile's
 * challenge type. */
static enr_rc
authorize(enr_acme *a, const enr_acme_order *o)
{
    responders h = {NULL, NULL};
    enr_acme_authz *az = calloc(o->n_authz, sizeof(*az));
    int *deployed = calloc(o->n_authz, sizeof(int));
    enr_acme_ans ans = {.retry_after = -1};
    char *thumb = enr_jwk_thumbprint(a->key);
    char why[200];
    enr_rc rc = ENR_OK;

    if (az == NULL || deployed == NULL || thumb == NULL) {
        rc = ENR_E_FAIL;
        goto done;
    }
    for (size_t i = 0; i < o->n_authz && rc == ENR_OK; i++) {
        rc = enr_acme_post(a, "authorization", o->authz[i], NULL, NULL, 0, 1, &ans);
        if (rc != ENR_OK)
            break;
        if (enr_acme_parse_authz(ans.json, ch_type(a->p), &az[i], why, sizeof(why)) != 0) {
            enr_err("ACME authorization %s: %s", o->authz[i], why);
            rc = ENR_E_REJECTED;
        } else if (!strcmp(az[i].status, "valid")) {
            enr_debug("ACME: %s is authorized already", az[i].ident);
        } else if (strcmp(az[i].status, "pending") != 0) {
            enr_err("ACME: the authorization for %s is %s", az[i].ident, az[i].status);
            rc = ENR_E_REJECTED;
        } else if (az[i].ch_url == NULL) {
            enr_err("ACME: the CA offers no %s challenge for %s (offered: %s)", ch_type(a->p),
                    az[i].ident, az[i].types);
            rc = ENR_E_REJECTED;
        } else {
            rc = deploy(a, &az[i], thumb, &h, &deployed[i]);
        }
    }
    for (size_t i = 0; i < o->n_authz && rc == ENR_OK; i++) {
        if (az[i].ch_url == NULL || strcmp(az[i].status, "pending") != 0)
            continue;
        enr_info("profile %s: answering the %s challenge for %s", a->p->name, ch_type(a->p),
                 az[i].ident);
        rc = enr_acme_post(a, "challenge", az[i].ch_url, "{}", NULL, 0, 1, &ans);
    }
    for (size_t i = 0; i < o->n_authz && rc == ENR_OK; i++)
        if (az[i].ch_url != NULL && !strcmp(az[i].status, "pending"))
            rc = verdict(a, o->authz[i], &az[i], &ans);
done:
    enr_acme_http01_stop(h.http);
    enr_acme_tlsalpn_stop(h.tls);
    if (az != NULL && deployed != NULL && thumb != NULL)
        cleanup(a, az, deployed, o->n_authz, thumb);
    for (size_t i = 0; az != NULL && i < o->n_authz; i++)
        enr_acme_authz_clear(&az[i]);
    free(az);
    free(deployed);
    free(thumb);
    enr_acme_ans_clear(&ans);
    return rc;
}

/* A PEM chain: the first certificate into RES->cert, the rest RES->chain. */
enr_rc
enr_acme_parse_chain(const unsigned char *body, size_t n, enr_scep_result *res)
{
    BIO *b = n > 0 && n < (1u << 30) ? BIO_new_mem_buf(body, (int)n) : NULL;
    X509 *x;

    res->chain = sk_X509_new_null();
    if (b == NULL || res->chain == NULL) {
        BIO_free(b);
        return ENR_E_FAIL;
    }
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (res->cert == NULL)
            res->cert = x;
        else if (!sk_X509_push(res->chain, x))
            X509_free(x);
    }
    ERR_clear_error();
    BIO_free(b);
    if (res->cert == NULL) {
        enr_err("ACME certificate: the CA's answer (%zu bytes) holds no PEM certificate", n);
        return ENR_E_REJECTED;
    }
    return ENR_OK;
}

/* Does the chain's last certificate name an issuer whose CN is WANT? */
static int
chain_matches(const enr_scep_result *r, const char *want)
{
    X509 *top =
        sk_X509_num(r->chain) > 0 ? sk_X509_value(r->chain, sk_X509_num(r->chain) - 1) : r->cert;
    char cn[256];

    return X509_NAME_get_text_by_NID(X509_get_issuer_name(top), NID_commonName, cn, sizeof(cn)) >
               0 &&
           !strcmp(cn, want);
}

static enr_rc
download(enr_acme *a, const char *url, enr_scep_result *res)
{
    enr_acme_ans ans = {.retry_after = -1};
    const char *want = a->p->acme ? a->p->acme->preferred_chain : NULL;
    enr_rc rc = enr_acme_post(a, "certificate", url, NULL, NULL, 0, 0, &ans);

    if (rc == ENR_OK && (ans.ctype == NULL ||
                         strncasecmp(ans.ctype, "application/pem-certificate-chain", 33) != 0)) {
        enr_err("ACME certificate: the CA answered with %s, not application/pem-certificate-chain",
                ans.ctype ? ans.ctype : "no content type");
        rc = ENR_E_REJECTED;
    }
    if (rc == ENR_OK)
        rc = enr_acme_parse_chain(ans.body, ans.n, res);
    if (rc == ENR_OK && want != NULL && !chain_matches(res, want)) {
        for (size_t i = 0; i < ans.n_alt; i++) {
            enr_acme_ans alt = {.retry_after = -1};
            enr_scep_result r2;
            memset(&r2, 0, sizeof(r2));
            if (enr_acme_post(a, "alternate chain", ans.alternates[i], NULL, NULL, 0, 0, &alt) ==
                    ENR_OK &&
                enr_acme_parse_chain(alt.body, alt.n, &r2) == ENR_OK && chain_matches(&r2, want)) {
                enr_info("profile %s: using the alternate chain up to \"%s\"", a->p->name, want);
                enr_scep_result_clear(res);
                *res = r2;
                enr_acme_ans_clear(&alt);
                goto done;
            }
            enr_scep_result_clear(&r2);
            enr_acme_ans_clear(&alt);
        }
        enr_warn("profile %s: no chain up to \"%s\" (preferred_chain); using the default chain",
                 a->p->name, want);
    }
done:
    enr_acme_ans_clear(&ans);
    return rc;
}

static int
known_status(const char *s)
{
    static const char *const k[] = {"pending", "ready", "processing", "valid", "invalid"};

    for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++)
        if (!strcmp(s, k[i]))
            return 1;
    return 0;
}

/* Finalize order URL (whose state is in ANS) with NEWKEY's CSR, wait,
 * download. */
static enr_rc
finalize(enr_acme *a, const char *url, enr_acme_ans *ans, EVP_PKEY *newkey, enr_scep_result *res)
{
    enr_acme_order o;
    char why[200];
    enr_rc rc;

    if (enr_acme_parse_order(ans->json, &o, why, sizeof(why)) != 0) {
        enr_err("ACME order %s: %s", url, why);
        enr_acme_order_clear(&o);
        return ENR_E_REJECTED;
    }
    if (!known_status(o.status)) {
        enr_err("ACME order %s: unknown status \"%s\" (RFC 8555: pending, ready, processing, "
                "valid, invalid)",
                url, o.status);
        enr_acme_order_clear(&o);
        return ENR_E_REJECTED;
    }
    if (!strcmp(o.status, "ready")) {
        X509_REQ *req = enr_make_csr(a->p, newkey, NULL);
        unsigned char *der = NULL;
        int l = req ? i2d_X509_REQ(req, &der) : -1;
        char *csr = l > 0 ? enr_b64url(der, (size_t)l) : NULL;
        X509_REQ_free(req);
        OPENSSL_free(der);
        if (csr == NULL) {
            enr_acme_order_clear(&o);
            return ENR_E_TOKEN;
        }
        enr_info("profile %s: finalizing the order with a CSR signed in the token", a->p->name);
        rc = enr_acme_post_json(a, "finalize", o.finalize, json_pack("{s:s}", "csr", csr), NULL, 0,
                                ans);
        free(csr);
        if (rc != ENR_OK) {
            enr_acme_order_clear(&o);
            return rc;
        }
    } else if (strcmp(o.status, "processing") != 0 && strcmp(o.status, "valid") != 0) {
        enr_err("ACME order %s is %s%s%s", url, o.status, o.error ? ": " : "",
                o.error ? o.error : "");
        enr_acme_order_clear(&o);
        return ENR_E_REJECTED;
    }
    enr_acme_order_clear(&o);
    rc = poll_status(a, "order", url, "processing ready", ans);
    if (rc != ENR_OK)
        return rc;
    if (enr_acme_parse_order(ans->json, &o, why, sizeof(why)) != 0) {
        enr_err("ACME order %s: %s", url, why);
        rc = ENR_E_REJECTED;
    } else if (!known_status(o.status)) {
        enr_err("ACME order %s: unknown status \"%s\" (RFC 8555: pending, ready, processing, "
                "valid, invalid)",
                url, o.status);
        rc = ENR_E_REJECTED;
    } else if (strcmp(o.status, "valid") != 0 || o.certificate == NULL) {
        enr_err("ACME order %s is %s%s%s", url, o.status, o.error ? ": " : "",
                o.error ? o.error
                        : (strcmp(o.status, "valid") ? "" : " without a certificate URL"));
        rc = ENR_E_REJECTED;
    } else {
        rc = download(a, o.certificate, res);
    }
    enr_acme_order_clear(&o);
    return rc;
}

static enr_rc
acme_request(const enr_proto_req *r, void *state, EVP_PKEY *newkey, enr_scep_result *res)
{
    enr_acme a;
    enr_acme_ans ans = {.retry_after = -1};
    enr_acme_order o;
    char why[200], *url = NULL;
    enr_rc rc;

    (void)state;
    memset(res, 0, sizeof(*res));
    memset(&o, 0, sizeof(o));
    rc = enr_acme_open(&a, r->p);
    if (rc == ENR_OK)
        rc = enr_acme_account(&a, r->tok, 1);
    if (rc != ENR_OK)
        goto done;
    if (r->txid != NULL && !strncmp(r->txid, "http", 4)) {
        /* An order an earlier check left processing (same key). */
        enr_info("profile %s: resuming the ACME order %s", r->p->name, r->txid);
        url = enr_strdup(r->txid);
        rc = enr_acme_post(&a, "order", url, NULL, NULL, 0, 1, &ans);
        if (rc == ENR_OK)
            goto fin;
        enr_info("profile %s: the earlier order is gone; ordering anew", r->p->name);
        free(url);
        url = NULL;
    }
    {
        json_t *pl = json_pack("{s:o}", "identifiers", identifiers(r->p));
        char *id = r->old != NULL && a.dir.renewal_info != NULL ? enr_acme_cert_id(r->old) : NULL;
        if (pl != NULL && id != NULL) {
            /* RFC 9773 section 5: the certificate this order replaces */
            json_object_set_new(pl, "replaces", json_string(id));
            enr_info("profile %s: the new order replaces certificate %s (ARI)", r->p->name, id);
        }
        free(id);
        rc = enr_acme_post_json(&a, "newOrder", a.dir.new_order, pl, NULL, 0, &ans);
    }
    if (rc == ENR_OK && ans.location == NULL) {
        enr_err("ACME newOrder: the CA sent no order URL (Location)");
        rc = ENR_E_REJECTED;
    }
    if (rc != ENR_OK)
        goto done;
    url = ans.location;
    ans.location = NULL;
    enr_info("profile %s: ACME order %s", r->p->name, url);
    if (enr_acme_parse_order(ans.json, &o, why, sizeof(why)) != 0) {
        enr_err("ACME newOrder: %s", why);
        rc = ENR_E_REJECTED;
        goto done;
    }
    if (!strcmp(o.status, "pending")) {
        rc = authorize(&a, &o);
        if (rc == ENR_OK)
            rc = poll_status(&a, "order", url, "pending", &ans);
        if (rc == ENR_E_PENDING)
            rc = ENR_E_NETWORK;
        if (rc != ENR_OK)
            goto done;
    }
fin:
    rc = finalize(&a, url, &ans, newkey, res);
    if (rc == ENR_E_PENDING) {
        enr_info("profile %s: the CA is still processing order %s; the next check asks again",
                 r->p->name, url);
        res->txid = url;
        url = NULL;
    }
done:
    enr_acme_order_clear(&o);
    enr_acme_ans_clear(&ans);
    enr_acme_close(&a);
    free(url);
    return rc;
}

const enr_proto_ops enr_proto_acme = {
    "acme",       "ACME (RFC 8555)", 0,    acme_check,        NULL,
    acme_request, enr_acme_revoke,   NULL, enr_acme_renew_at,
};
