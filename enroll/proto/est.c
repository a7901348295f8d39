/*
 * est.c — EST client (RFC 7030) on the HTTP layer (http.c: libcurl, OpenSSL
 * backend) and OpenSSL.
 *
 * Every transaction starts with /cacerts, fetched over TLS authenticated by
 * the profile's anchors (the explicit trust anchors, section 4.1.1). The
 * certificates it returns become the implicit trust anchors of the
 * transaction (section 4.1.3) when they chain to the explicit ones; during a
 * CA key rollover the self-signed NewWithNew certificate is accepted because
 * NewWithOld, signed by the trusted old key, certifies the same name and key.
 * Then /csrattrs (section 4.5, with the clarifications of RFC 9908;
 * est_csrattrs.c): what the server asks of the CSR — key type, curve or RSA
 * size (chosen before the key is generated, unless the profile fixes
 * something else: then an error), signature hash, extensions — is honoured
 * where a client can, and the rest is logged as ignored. Then /simpleenroll (first enrollment: HTTP
 * basic credentials, or a one-time enrollment code sent as the CSR's challengePassword) or
 * /simplereenroll (renewal: TLS client authentication by the current certificate and its key in the
 * token; the CSR repeats the certificate's subject and SANs, section 4.2.2). A 401 with
 * WWW-Authenticate to a request sent with a client certificate and no HTTP credentials is sent once
 * more with the profile's basic credentials (section 3.2.3). Every answer body goes through the one
 * base64 decoding path (b64.c). HTTP 202 is polled after Retry-After with the
 * same request. The CSR
 * is signed in the token by the new key (or the kept key, rekey = false); the
 * TLS client signature runs in the token too: the private key never leaves it.
 */
#include <limits.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "enr_int.h"
#include "enr_parse.h"
#include "est_int.h"
#include "et_secret.h"
#include "proto.h"

typedef struct enr_est {
    const enr_profile *p;
    X509 *renew_cert;         /* the certificate being renewed, NULL: first enrollment */
    STACK_OF(X509) * anchors; /* explicit + implicit (the caller's stack) */
    STACK_OF(X509) * cacerts; /* what /cacerts returned */
    enr_est_attrs attrs;      /* what /csrattrs asked */
    enr_profile keyp;         /* the key parameters planned from it */
    char *base;               /* https://host[:port][/path]/.well-known/est[/label] */
    char *ca_blob;            /* PEM of explicit + implicit anchors, for TLS server auth */
    size_t ca_len;
    enr_secret password; /* basic password or enrollment code */
    X509 *ccert;         /* TLS client certificate (simplereenroll) */
    EVP_PKEY *ckey;      /* its token-backed key */
} est;

typedef struct est_resp {
    long code;
    unsigned char *body;
    size_t n;
    char *ctype;
    long retry_after; /* seconds; -1 when absent */
    int too_big;      /* the body passed ENR_EST_MAX_BODY: not read further */
    char *www_auth;   /* the first WWW-Authenticate header, NULL: none */
} est_resp;

static void
resp_clear(est_resp *r)
{
    free(r->body);
    free(r->ctype);
    free(r->www_auth);
    memset(r, 0, sizeof(*r));
    r->retry_after = -1;
}

int
enr_est_retry_after(const char *ptr, size_t n, long *seconds)
{
    char line[256];
    char *s, *end;
    long v;

    if (n >= sizeof(line) || n < 12 || strncasecmp(ptr, "Retry-After:", 12) != 0)
        return 0;
    memcpy(line, ptr + 12, n - 12);
    line[n - 12] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    s = line + strspn(line, " \t");
    v = strtol(s, &end, 10);
    if (end != s && *end == '\0' && v >= 0) {
        *seconds = v;
        return 1;
    } else {
        /* HTTP-date form (RFC 9110 section 10.2.3). */
        time_t t = curl_getdate(s, NULL);
        if (t > 0) {
            *seconds = t > enr_now() ? (long)(t - enr_now()) : 0;
            return 1;
        }
    }
    return 0;
}

static void
est_header(const char *ptr, size_t n, void *u)
{
    est_resp *r = u;

    (void)enr_est_retry_after(ptr, n, &r->retry_after);
    if (r->www_auth == NULL && n > 17 && n < 1024 &&
        strncasecmp(ptr, "WWW-Authenticate:", 17) == 0) {
        const char *v = ptr + 17;
        size_t k = n - 17;
        while (k > 0 && (*v == ' ' || *v == '\t'))
            v++, k--;
        while (k > 0 && (v[k - 1] == '\r' || v[k - 1] == '\n' || v[k - 1] == ' '))
            k--;
        r->www_auth = malloc(k + 1);
        if (r->www_auth != NULL) {
            for (size_t i = 0; i < k; i++)
                r->www_auth[i] = (v[i] >= 0x20 && v[i] < 0x7f) ? v[i] : ' ';
            r->www_auth[k] = '\0';
        }
    }
}

static int
est_tls_client(void *sslctx, void *u)
{
    est *e = u;
    SSL_CTX *ctx = sslctx;

    if (e->ccert == NULL)
        return 0;
    /* The key is libp11's: the handshake signature runs in the token. For
     * RSA, libp11's key methods compute RSA-PSS (which TLS 1.3 requires) with
     * raw RSA (CKM_RSA_X_509), which tokens such as evertoken refuse on
     * purpose; TLS 1.2 with PKCS#1 v1.5 signatures (CKM_RSA_PKCS) works on
     * every token. */
    if (EVP_PKEY_get_base_id(e->ckey) == EVP_PKEY_RSA &&
        (SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) != 1 ||
         SSL_CTX_set1_client_sigalgs_list(ctx, "RSA+SHA256:RSA+SHA384:RSA+SHA512") != 1)) {
        enr_ssl_errors();
        return -1;
    }
    if (SSL_CTX_use_certificate(ctx, e->ccert) != 1 || SSL_CTX_use_PrivateKey(ctx, e->ckey) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        enr_ssl_errors();
        return -1;
    }
    return 0;
}

/* Body text of an error answer, printable and short, for messages. */
static char *
body_text(const est_resp *r)
{
    char *s;
    size_t n = r->n > 200 ? 200 : r->n, j = 0;

    if (r->body == NULL || n == 0)
        return enr_strdup("");
    s = malloc(n + 4);
    if (s == NULL)
        return NULL;
    s[j++] = ':';
    s[j++] = ' ';
    for (size_t i = 0; i < n; i++)
        s[j++] = (r->body[i] >= 0x20 && r->body[i] < 0x7f) ? (char)r->body[i] : ' ';
    while (j > 2 && s[j - 1] == ' ')
        j--;
    s[j] = '\0';
    if (j == 2)
        s[0] = '\0';
    return s;
}

/* The profile has HTTP basic credentials (username, password from secret_file). */
static int
has_basic(const est *e)
{
    return e->p->username != NULL && e->password.buf != NULL;
}

/* A failed exchange of OP with URL (libcurl's CR; TOO_BIG: the answer
 * passed the limit; ERR: the HTTP layer's text) reported: ENR_E_REJECTED
 * for what a retry cannot mend, else ENR_E_NETWORK. */
static enr_rc
transport_failed(const est *e, const char *op, const char *url, CURLcode cr, int too_big,
                 const char *err)
{
    if (cr == CURLE_WRITE_ERROR && too_big)
        enr_err("EST %s: the answer is larger than %u bytes; refused", op,
                (unsigned)ENR_EST_MAX_BODY);
    else if (cr == CURLE_PEER_FAILED_VERIFICATION)
        enr_err("EST server %s: its TLS certificate does not chain to the profile's anchors "
                "or does not name the host: %s",
                e->p->url, curl_easy_strerror(cr));
    else if (cr == CURLE_SSL_CERTPROBLEM)
        enr_err("EST %s: the token's key or certificate cannot authenticate the TLS "
                "connection",
                op);
    else
        enr_err("cannot reach EST server %s: %s", url, err);
    enr_ssl_errors();
    return (cr == CURLE_WRITE_ERROR && too_big) || cr == CURLE_PEER_FAILED_VERIFICATION ||
                   cr == CURLE_SSL_CERTPROBLEM
               ? ENR_E_REJECTED
               : ENR_E_NETWORK;
}

/* The HTTP status of R, the answer to OP (SENT_BASIC: with the profile's
 * credentials): ENR_OK for 200 and 202 (and csrattrs' "none"), else
 * reported precisely; 5xx is ENR_E_NETWORK (retried like the network). */
static enr_rc
status_rc(const est *e, const char *op, const est_resp *r, int sent_basic)
{
    char *txt = body_text(r);
    enr_rc rc;

    if (r->code == 200 || r->code == 202) {
        rc = ENR_OK;
    } else if (!strcmp(op, "csrattrs") && (r->code == 204 || r->code == 404 || r->code == 501)) {
        rc = ENR_OK; /* no CSR attributes (RFC 7030 section 4.5.2) */
    } else if (r->code == 401 && sent_basic) {
        enr_err("EST %s: the server requires authentication (HTTP 401%s%s); the credentials were "
                "not accepted (username, secret_file)%s",
                op, r->www_auth ? ", WWW-Authenticate: " : "", r->www_auth ? r->www_auth : "",
                txt ? txt : "");
        rc = ENR_E_REJECTED;
    } else if (r->code == 401 && e->ccert != NULL && r->www_auth != NULL) {
        enr_err("EST %s: the server wants HTTP authentication besides the TLS client certificate "
                "(HTTP 401, WWW-Authenticate: %s)%s; the profile gives no HTTP credentials: set "
                "username and secret_file in [ca]",
                op, r->www_auth, txt ? txt : "");
        rc = ENR_E_REJECTED;
    } else if (r->code == 401 && e->ccert != NULL) {
        enr_err("EST %s: the server did not accept the TLS client certificate (HTTP 401)%s", op,
                txt ? txt : "");
        rc = ENR_E_REJECTED;
    } else if (r->code == 401) {
        enr_err("EST %s: the server requires authentication (HTTP 401)%s%s", op,
                e->p->username || e->p->secret_file ? "; the credentials were not accepted"
                                                    : "; the profile gives none (username, "
                                                      "secret_file)",
                txt ? txt : "");
        rc = ENR_E_REJECTED;
    } else if (r->code == 403) {
        enr_err("EST %s: the server refused the request (HTTP 403, forbidden)%s", op,
                txt ? txt : "");
        rc = ENR_E_REJECTED;
    } else if (r->code >= 400 && r->code < 500) {
        enr_err("EST %s: the server rejected the request (HTTP %ld)%s", op, r->code,
                txt ? txt : "");
        rc = ENR_E_REJECTED;
    } else if (r->code >= 500) {
        enr_err("EST %s: server error (HTTP %ld)%s", op, r->code, txt ? txt : "");
        rc = ENR_E_NETWORK; /* server trouble: retried like the network */
    } else {
        enr_err("EST %s: unexpected HTTP status %ld", op, r->code);
        rc = ENR_E_REJECTED;
    }
    free(txt);
    return rc;
}

/*
 * One HTTPS exchange with OP. 200 and 202 are returned with ENR_OK; every
 * other outcome is reported precisely: 401 and 403 (authentication), other
 * 4xx (refused), 5xx (server trouble, retried like the network), TLS failures.
 * BASIC: send the profile's HTTP basic credentials at once. A 401 with
 * WWW-Authenticate to a request sent without them is answered once more with
 * them when the profile has some (RFC 7030 section 3.2.3: a server may want
 * HTTP authentication besides the TLS client certificate), on the same
 * handle, so over the same TLS connection when the server keeps it open.
 */
static enr_rc
est_call(est *e, const char *op, const unsigned char *body, size_t blen, int basic, est_resp *r)
{
    static const char *const te[] = {"Content-Transfer-Encoding: base64", NULL};
    enr_http_conn *h = enr_http_conn_new();
    char *url = enr_aprintf("%s/%s", e->base, op);
    enr_http_req rq;
    enr_http_ans a;
    CURLcode cr = CURLE_OK;
    enr_rc rc = ENR_E_NETWORK;
    int sent_basic = 0;

    resp_clear(r);
    memset(&a, 0, sizeof(a));
    if (h == NULL || url == NULL) {
        rc = ENR_E_FAIL;
        goto done;
    }
    /* The HTTP layer (http.c): HTTPS to a server verified against the
     * anchors only, the token's key as TLS client credential. */
    memset(&rq, 0, sizeof(rq));
    rq.url = url;
    rq.ca_blob = e->ca_blob;
    rq.ca_len = e->ca_len;
    rq.tls_client = e->ccert != NULL ? est_tls_client : NULL;
    rq.tls_arg = e;
    rq.on_header = est_header;
    rq.header_arg = r;
    rq.timeout = e->p->http_timeout;
    rq.max = ENR_EST_MAX_BODY;
    if (body != NULL) {
        rq.ctype = "application/pkcs10";
        rq.headers = te;
        rq.body = body;
        rq.blen = blen;
    }
    for (int attempt = 0;; attempt++) {
        if ((basic || attempt > 0) && e->p->username != NULL) {
            rq.user = e->p->username;
            rq.password = e->password.buf;
            sent_basic = 1;
        }
        resp_clear(r);
        enr_http_ans_clear(&a);
        enr_debug("EST %s %s%s%s", body ? "POST" : "GET", url,
                  e->ccert ? " (TLS client certificate from the token)" : "",
                  sent_basic ? " (HTTP basic authentication)" : "");
        (void)enr_http_send(h, &rq, &a);
        cr = (CURLcode)a.curl_code;
        r->too_big = a.too_big;
        if (cr != CURLE_OK)
            break;
        r->code = a.code;
        if (attempt == 0 && r->code == 401 && !sent_basic && r->www_auth != NULL && has_basic(e)) {
            enr_info("profile %s: EST %s: the server wants HTTP authentication%s (HTTP 401, "
                     "WWW-Authenticate: %s); sending the profile's credentials",
                     e->p->name, op, e->ccert ? " besides the TLS client certificate" : "",
                     r->www_auth);
            continue;
        }
        break;
    }
    if (cr != CURLE_OK) {
        rc = transport_failed(e, op, url, cr, r->too_big, a.error);
        goto done;
    }
    r->body = a.body;
    r->n = a.n;
    r->ctype = a.ctype;
    a.body = NULL;
    a.ctype = NULL;
    rc = status_rc(e, op, r, sent_basic);
done:
    free(url);
    enr_http_ans_clear(&a);
    enr_http_conn_free(h);
    return rc;
}

/* The base64 body (N > 0 bytes) of an answer of OP: *DER (malloc'd), *LEN. */
enr_rc
est_unbase64(const char *op, const unsigned char *body, size_t n, unsigned char **der, int *len)
{
    char what[64];
    size_t dl = 0;
    enr_rc rc;

    snprintf(what, sizeof(what), "EST %s: the answer", op);
    *len = 0;
    rc = enr_base64_decode(what, body, n, ENR_EST_MAX_BODY, der, &dl);
    if (rc == ENR_OK)
        *len = (int)dl;
    return rc;
}

/* Decode the base64 body of an application/pkcs7-mime certs-only answer. */
enr_rc
enr_est_parse_certs(const char *op, const char *ctype, const unsigned char *body, size_t n,
                    STACK_OF(X509) * *out)
{
    unsigned char *der = NULL;
    const unsigned char *pp;
    int len = 0;
    PKCS7 *p7 = NULL;
    STACK_OF(X509) *certs = NULL;
    enr_rc rc = ENR_E_REJECTED;

    *out = NULL;
    if (ctype == NULL || strncasecmp(ctype, "application/pkcs7-mime", 22) != 0) {
        enr_err("EST %s: the answer is not application/pkcs7-mime (%s)", op,
                ctype ? ctype : "no content type");
        goto done;
    }
    if (n == 0) {
        enr_err("EST %s: the answer is empty", op);
        goto done;
    }
    rc = est_unbase64(op, body, n, &der, &len);
    if (rc != ENR_OK)
        goto done;
    rc = ENR_E_REJECTED;
    pp = der;
    p7 = d2i_PKCS7(NULL, &pp, len);
    if (p7 == NULL || pp != der + len) {
        enr_err("EST %s: the answer is not a PKCS#7 structure (%d bytes)", op, len);
        goto done;
    }
    if (!PKCS7_type_is_signed(p7) || p7->d.sign == NULL || p7->d.sign->cert == NULL ||
        sk_X509_num(p7->d.sign->cert) == 0) {
        enr_err("EST %s: the PKCS#7 answer holds no certificate (expected certs-only SignedData)",
                op);
        goto done;
    }
    certs = sk_X509_new_null();
    for (int i = 0; certs != NULL && i < sk_X509_num(p7->d.sign->cert); i++) {
        X509 *x = sk_X509_value(p7->d.sign->cert, i);
        if (!X509_up_ref(x) || !sk_X509_push(certs, x)) {
            sk_X509_pop_free(certs, X509_free);
            certs = NULL;
        }
    }
    if (certs == NULL) {
        rc = ENR_E_FAIL;
        goto done;
    }
    *out = certs;
    rc = ENR_OK;
done:
    enr_ssl_errors();
    PKCS7_free(p7);
    free(der);
    return rc;
}

static int
same_pub(EVP_PKEY *a, EVP_PKEY *b)
{
    unsigned char *da = NULL, *db = NULL;
    int la = i2d_PUBKEY(a, &da), lb = i2d_PUBKEY(b, &db);
    int eq = la > 0 && la == lb && memcmp(da, db, (size_t)la) == 0;

    OPENSSL_free(da);
    OPENSSL_free(db);
    return eq;
}

static int
in_stack(STACK_OF(X509) * s, X509 *x)
{
    for (int i = 0; i < sk_X509_num(s); i++)
        if (X509_cmp(sk_X509_value(s, i), x) == 0)
            return 1;
    return 0;
}

/* PEM of the anchors, for CURLOPT_CAINFO_BLOB. */
static enr_rc
set_ca_blob(est *e, STACK_OF(X509) * anchors)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *d;
    long n;

    for (int i = 0; b != NULL && i < sk_X509_num(anchors); i++)
        if (!PEM_write_bio_X509(b, sk_X509_value(anchors, i))) {
            BIO_free(b);
            b = NULL;
        }
    if (b == NULL)
        return ENR_E_FAIL;
    n = BIO_get_mem_data(b, &d);
    free(e->ca_blob);
    e->ca_blob = malloc((size_t)n + 1);
    if (e->ca_blob != NULL) {
        memcpy(e->ca_blob, d, (size_t)n);
        e->ca_blob[n] = '\0';
        e->ca_len = (size_t)n;
    }
    BIO_free(b);
    return e->ca_blob ? ENR_OK : ENR_E_FAIL;
}

/*
 * /cacerts: the implicit trust anchors (RFC 7030 section 4.1.3). Each returned
 * certificate that chains to the explicit anchors is added to ANCHORS for the
 * rest of the transaction; a self-signed one is added when another returned
 * certificate with the same subject and key chains (NewWithOld vouching for
 * NewWithNew in a rollover). The rest is ignored. *CERTS receives them all.
 */
enr_rc
enr_est_take_cacerts(const char *name, STACK_OF(X509) * certs, STACK_OF(X509) * anchors, time_t now)
{
    STACK_OF(X509) *trusted = sk_X509_new_null();

    if (trusted == NULL)
        return ENR_E_FAIL;
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        if (enr_verify_chain(x, certs, anchors, now, NULL) == ENR_OK) /* silent */
            sk_X509_push(trusted, x);
    }
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        if (in_stack(trusted, x) || !(X509_get_extension_flags(x) & EXFLAG_SS))
            continue;
        for (int j = 0; j < sk_X509_num(trusted); j++) {
            X509 *t = sk_X509_value(trusted, j);
            if (X509_NAME_cmp(X509_get_subject_name(t), X509_get_subject_name(x)) == 0 &&
                same_pub(X509_get0_pubkey(t), X509_get0_pubkey(x))) {
                sk_X509_push(trusted, x);
                break;
            }
        }
    }
    if (sk_X509_num(trusted) == 0) {
        enr_err("EST cacerts: none of the %d certificates returned chains to the profile's "
                "anchors",
                sk_X509_num(certs));
        sk_X509_free(trusted);
        return ENR_E_REJECTED;
    }
    for (int i = 0; i < sk_X509_num(trusted); i++) {
        X509 *x = sk_X509_value(trusted, i);
        char xname[256];
        if (in_stack(anchors, x) || !X509_up_ref(x))
            continue;
        if (!sk_X509_push(anchors, x)) {
            X509_free(x);
            continue;
        }
        X509_NAME_oneline(X509_get_subject_name(x), xname, sizeof(xname));
        enr_info("profile %s: implicit trust anchor from /cacerts: %s", name, xname);
    }
    for (int i = 0; i < sk_X509_num(certs); i++)
        if (!in_stack(trusted, sk_X509_value(certs, i)))
            enr_debug("EST cacerts: certificate %d does not chain to the anchors; ignored", i);
    sk_X509_free(trusted);
    return ENR_OK;
}

static enr_rc
get_cacerts(est *e, STACK_OF(X509) * anchors, STACK_OF(X509) * *certs)
{
    est_resp r = {0};
    enr_rc rc;

    rc = est_call(e, "cacerts", NULL, 0, 0, &r);
    if (rc == ENR_OK && r.code != 200) {
        enr_err("EST cacerts: unexpected HTTP status %ld", r.code);
        rc = ENR_E_REJECTED;
    }
    if (rc == ENR_OK)
        rc = enr_est_parse_certs("cacerts", r.ctype, r.body, r.n, certs);
    resp_clear(&r);
    if (rc == ENR_OK)
        rc = enr_est_take_cacerts(e->p->name, *certs, anchors, enr_now());
    if (rc != ENR_OK)
        return rc;
    return set_ca_blob(e, anchors);
}

/*
 * The CSR: SUBJECT, the subjectAltName extension SAN (NULL: none), the
 * extensions /csrattrs asked for, CHAL as challengePassword (NULL: none),
 * signed in the token by KEY with the hash /csrattrs asked for (SHA-256 else).
 */
static X509_REQ *
make_csr(const X509_NAME *subject, X509_EXTENSION *san, EVP_PKEY *key, const enr_secret *chal,
         const enr_est_attrs *a)
{
    X509_REQ *req = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    const EVP_MD *md = a->md != NULL ? a->md : EVP_sha256();

    if (req == NULL || exts == NULL || !X509_REQ_set_version(req, 0) ||
        !X509_REQ_set_subject_name(req, subject) || !X509_REQ_set_pubkey(req, key))
        goto fail;
    if (san != NULL && !sk_X509_EXTENSION_push(exts, san))
        goto fail;
    for (int i = 0; i < sk_X509_EXTENSION_num(a->exts); i++)
        if (!sk_X509_EXTENSION_push(exts, sk_X509_EXTENSION_value(a->exts, i)))
            goto fail;
    if (sk_X509_EXTENSION_num(exts) > 0 && !X509_REQ_add_extensions(req, exts))
        goto fail;
    if (chal != NULL && chal->len > 0 &&
        !X509_REQ_add1_attr_by_NID(req, NID_pkcs9_challengePassword, MBSTRING_UTF8,
                                   (const unsigned char *)chal->buf, (int)chal->len))
        goto fail;
    if (X509_REQ_sign(req, key, md) <= 0) {
        enr_err("the token could not sign the certificate request (%s)", EVP_MD_get0_name(md));
        goto fail;
    }
    sk_X509_EXTENSION_free(exts); /* the extensions are not ours */
    return req;
fail:
    enr_ssl_errors();
    sk_X509_EXTENSION_free(exts);
    X509_REQ_free(req);
    return NULL;
}

/* Base64 of the DER CSR in 64-character lines (the body of simple(re)enroll). */
static char *
csr_base64(X509_REQ *req, size_t *len)
{
    unsigned char *der = NULL;
    int n = i2d_X509_REQ(req, &der);
    char *out = NULL;

    if (n > 0) {
        size_t cap = (size_t)(4 * ((n + 2) / 3)), k = 0, j = 0;
        unsigned char *flat = malloc(cap + 1);
        out = malloc(cap + cap / 64 + 2);
        if (flat != NULL && out != NULL) {
            int m = EVP_EncodeBlock(flat, der, n);
            for (k = 0; k < (size_t)m; k++) {
                out[j++] = (char)flat[k];
                if ((k + 1) % 64 == 0 || k + 1 == (size_t)m)
                    out[j++] = '\n';
            }
            out[j] = '\0';
            *len = j;
            et_wipe(flat, cap);
        } else {
            free(out);
            out = NULL;
        }
        free(flat);
    }
    /* An enrollment code may be inside: wipe the encoding. */
    if (n > 0)
        et_wipe(der, (size_t)n);
    OPENSSL_free(der);
    return out;
}

enr_rc
enr_est_parse_issued(const char *op, const char *ctype, const unsigned char *body, size_t n,
                     EVP_PKEY *newkey, enr_scep_result *res)
{
    STACK_OF(X509) *got = NULL;
    enr_rc rc = enr_est_parse_certs(op, ctype, body, n, &got);

    if (rc != ENR_OK)
        return rc;
    /* The certificate for our key when several came back; the checks that
     * follow (enr_check_issued) refuse anything else. */
    for (int i = 0; i < sk_X509_num(got) && res->cert == NULL; i++)
        if (same_pub(X509_get0_pubkey(sk_X509_value(got, i)), newkey))
            res->cert = sk_X509_delete(got, i);
    if (res->cert == NULL)
        res->cert = sk_X509_shift(got);
    res->chain = got;
    return ENR_OK;
}

static char *
make_base(const enr_profile *p)
{
    const char *wk = "/.well-known/est";
    size_t n = strlen(p->url);

    while (n > 0 && p->url[n - 1] == '/')
        n--;
    if (n >= strlen(wk) && !strncmp(p->url + n - strlen(wk), wk, strlen(wk)))
        return enr_aprintf("%.*s%s%s", (int)n, p->url, p->est_label ? "/" : "",
                           p->est_label ? p->est_label : "");
    return enr_aprintf("%.*s%s%s%s", (int)n, p->url, wk, p->est_label ? "/" : "",
                       p->est_label ? p->est_label : "");
}

enr_rc
enr_est_begin(const enr_profile *p, X509 *renew_cert, EVP_PKEY *renew_key, X509 *boot_cert,
              EVP_PKEY *boot_key, STACK_OF(X509) * anchors, enr_profile *keyp, enr_est **out)
{
    est *e = calloc(1, sizeof(*e));
    est_resp r = {0};
    enr_rc rc;

    *out = NULL;
    if (e == NULL)
        return ENR_E_FAIL;
    e->p = p;
    e->anchors = anchors;
    e->renew_cert = renew_cert;
    e->base = make_base(p);
    if (e->base == NULL || set_ca_blob(e, anchors) != ENR_OK) {
        rc = ENR_E_FAIL;
        goto done;
    }
    rc = get_cacerts(e, anchors, &e->cacerts);
    if (rc != ENR_OK)
        goto done;
    if (p->secret_file != NULL &&
        enr_secret_read_file(p->secret_file, p->username ? "EST password" : "enrollment code",
                             &e->password) != 0) {
        rc = ENR_E_CONFIG;
        goto done;
    }
    /* A renewal asks with the client certificate (a first enrollment with
     * the bootstrap certificate, if any): the server may answer what it
     * wants of this client. */
    e->ccert = renew_cert != NULL ? renew_cert : boot_cert;
    e->ckey = renew_cert != NULL ? renew_key : boot_key;
    rc = est_call(e, "csrattrs", NULL, 0, 0, &r);
    if (rc == ENR_OK && r.code == 200) {
        rc = enr_est_parse_csrattrs(r.ctype, r.body, r.n, &e->attrs);
    } else if (rc == ENR_OK && r.code == 202) {
        enr_err("EST csrattrs: unexpected HTTP status 202");
        rc = ENR_E_REJECTED;
    } else if (rc == ENR_OK) {
        enr_debug("EST csrattrs: the server asks for nothing (HTTP %ld)", r.code);
    }
    if (rc != ENR_OK)
        goto done;
    rc = est_key_plan(p, &e->attrs, keyp);
    if (rc != ENR_OK)
        goto done;
    e->keyp = *keyp;
    if (e->attrs.linking && (p->username != NULL || p->secret_file == NULL))
        enr_warn("profile %s: the EST server asks for the challengePassword attribute "
                 "(/csrattrs): tls-unique linking of the CSR to the TLS session (RFC 7030 "
                 "section 3.5) is not supported by evertoken-enroll; the request goes without "
                 "it and the server may refuse it",
                 p->name);
    /* The kept key of a renewal (rekey = false) is checked now: the token
     * stays as it is when it cannot do. */
    if (renew_cert != NULL && !p->rekey &&
        !est_key_meets(p, &e->attrs, &e->keyp, renew_key, "kept"))
        rc = ENR_E_CONFIG;
done:
    resp_clear(&r);
    if (rc != ENR_OK) {
        enr_est_free(e);
        e = NULL;
    }
    ERR_clear_error();
    *out = e;
    return rc;
}

void
enr_est_free(enr_est *e)
{
    if (e == NULL)
        return;
    sk_X509_pop_free(e->cacerts, X509_free);
    enr_est_attrs_clear(&e->attrs);
    enr_secret_free(&e->password);
    free(e->base);
    free(e->ca_blob);
    free(e);
}

enr_rc
enr_est_enroll(enr_est *e, EVP_PKEY *newkey, enr_scep_result *res)
{
    const enr_profile *p = e->p;
    X509 *renew_cert = e->renew_cert;
    X509_REQ *req = NULL;
    X509_EXTENSION *san = NULL;
    char *body = NULL;
    size_t blen = 0;
    const char *op = renew_cert ? "simplereenroll" : "simpleenroll";
    est_resp r = {0};
    int polls = 0;
    enr_rc rc;

    memset(res, 0, sizeof(*res));
    /* A pending key of an earlier attempt may predate the server's wishes. */
    if (!est_key_meets(p, &e->attrs, &e->keyp, newkey,
                       renew_cert != NULL && !p->rekey ? "kept" : "new")) {
        rc = ENR_E_REJECTED;
        goto done;
    }
    if (renew_cert != NULL) {
        /* The re-enrollment CSR: subject and SANs of the certificate,
         * unchanged (section 4.2.2). */
        int i = X509_get_ext_by_NID(renew_cert, NID_subject_alt_name, -1);
        req = make_csr(X509_get_subject_name(renew_cert),
                       i >= 0 ? X509_get_ext(renew_cert, i) : NULL, newkey, NULL, &e->attrs);
    } else {
        if (p->san != NULL) {
            X509V3_CTX v3;
            X509V3_set_ctx(&v3, NULL, NULL, NULL, NULL, 0);
            san = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, p->san);
            if (san == NULL) {
                enr_ssl_errors();
                rc = ENR_E_FAIL;
                goto done;
            }
        }
        /* Without a user name the secret is a one-time enrollment code: it
         * travels as the CSR's challengePassword. */
        req = make_csr(p->subject_name, san, newkey, p->username == NULL ? &e->password : NULL,
                       &e->attrs);
    }
    if (req == NULL) {
        rc = ENR_E_TOKEN;
        goto done;
    }
    if (e->attrs.md != NULL)
        enr_info("profile %s: the CSR is signed with %s, as the EST server asks", p->name,
                 EVP_MD_get0_name(e->attrs.md));
    body = csr_base64(req, &blen);
    if (body == NULL) {
        rc = ENR_E_FAIL;
        goto done;
    }
    enr_info("profile %s: sending EST %s to %s", p->name, op, e->base);
    for (;;) {
        rc = est_call(e, op, (unsigned char *)body, blen, e->ccert == NULL, &r);
        if (rc != ENR_OK || r.code != 202)
            break;
        if (polls >= p->poll_max) {
            rc = ENR_E_PENDING;
            res->txid = enr_strdup("est");
            enr_info("profile %s: the EST server still holds the request; will ask again", p->name);
            goto done;
        }
        {
            long wait = r.retry_after >= 0 ? r.retry_after : p->poll_interval;
            if (wait > ENR_DAY)
                wait = ENR_DAY;
            polls++;
            enr_info("profile %s: the EST server accepted the request for later (HTTP 202); "
                     "asking again in %ld s (%d)",
                     p->name, wait, polls);
            if (enr_clock_is_fake())
                enr_clock_set(enr_now() + wait);
            else if (wait > 0)
                sleep((unsigned)wait);
        }
    }
    if (rc != ENR_OK)
        goto done;
    rc = enr_est_parse_issued(op, r.ctype, r.body, r.n, newkey, res);
    if (rc != ENR_OK)
        goto done;
    for (int i = 0; i < sk_X509_num(e->cacerts); i++)
        if (X509_up_ref(sk_X509_value(e->cacerts, i)))
            sk_X509_push(res->chain, sk_X509_value(e->cacerts, i));
    rc = ENR_OK;
done:
    ERR_clear_error();
    resp_clear(&r);
    if (body != NULL)
        et_wipe(body, blen);
    free(body);
    X509_EXTENSION_free(san);
    X509_REQ_free(req);
    return rc;
}

/* ---- The protocol interface (proto.h) -------------------------------------- */

static enr_rc
est_check(const enr_profile *p, const char *path)
{
    if (strncmp(p->url, "https://", 8) != 0) {
        enr_err("%s: [ca] url: EST runs over TLS only (RFC 7030 section 3.3); use https://", path);
        return ENR_E_CONFIG;
    }
    return ENR_OK;
}

static enr_rc
est_prepare(const enr_proto_req *r, enr_profile *keyp, void **state)
{
    if (r->boot_cert != NULL)
        enr_info("profile %s: TLS client authentication by the bootstrap certificate \"%s\"",
                 r->p->name, r->p->bootstrap);
    return enr_est_begin(r->p, r->old, r->oldkey, r->boot_cert, r->boot_key, r->anchors, keyp,
                         (enr_est **)state);
}

static enr_rc
est_request(const enr_proto_req *r, void *state, EVP_PKEY *newkey, enr_scep_result *res)
{
    (void)r;
    return enr_est_enroll(state, newkey, res);
}

static void
est_release(void *state)
{
    enr_est_free(state);
}

const enr_proto_ops enr_proto_est = {
    "est", "EST (RFC 7030)", 1, est_check, est_prepare, est_request, NULL, est_release, NULL,
};
