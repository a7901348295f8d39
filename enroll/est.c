/*
 * est.c — EST client (RFC 7030) on libcurl (OpenSSL backend) and OpenSSL.
 *
 * Every transaction starts with /cacerts, fetched over TLS authenticated by
 * the profile's anchors (the explicit trust anchors, section 4.1.1). The
 * certificates it returns become the implicit trust anchors of the
 * transaction (section 4.1.3) when they chain to the explicit ones; during a
 * CA key rollover the self-signed NewWithNew certificate is accepted because
 * NewWithOld, signed by the trusted old key, certifies the same name and key.
 * Then /simpleenroll (first enrollment: HTTP basic credentials, or a one-time
 * enrollment code sent as the CSR's challengePassword) or /simplereenroll
 * (renewal: TLS client authentication by the current certificate and its key
 * in the token; the CSR repeats the certificate's subject and SANs, section
 * 4.2.2). HTTP 202 is polled after Retry-After with the same request. The CSR
 * is signed in the token by the new key (or the kept key, rekey = false); the
 * TLS client signature runs in the token too: the private key never leaves it.
 */
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

typedef struct est {
    const enr_profile *p;
    char *base;    /* https://host[:port][/path]/.well-known/est[/label] */
    char *ca_blob; /* PEM of explicit + implicit anchors, for TLS server auth */
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
} est_resp;

static void
resp_clear(est_resp *r)
{
    free(r->body);
    free(r->ctype);
    memset(r, 0, sizeof(*r));
    r->retry_after = -1;
}

static size_t
on_body(char *ptr, size_t sz, size_t nm, void *u)
{
    est_resp *r = u;
    size_t n = sz * nm;
    unsigned char *nd;

    if (r->n + n > (4u << 20))
        return 0; /* no EST answer is that large */
    nd = realloc(r->body, r->n + n + 1);
    if (nd == NULL)
        return 0;
    r->body = nd;
    memcpy(r->body + r->n, ptr, n);
    r->n += n;
    r->body[r->n] = '\0';
    return n;
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

static size_t
on_header(char *ptr, size_t sz, size_t nm, void *u)
{
    est_resp *r = u;
    size_t n = sz * nm;

    (void)enr_est_retry_after(ptr, n, &r->retry_after);
    return n;
}

static CURLcode
on_ssl_ctx(CURL *c, void *sslctx, void *u)
{
    est *e = u;
    SSL_CTX *ctx = sslctx;

    (void)c;
    if (e->ccert == NULL)
        return CURLE_OK;
    /* The key is libp11's: the handshake signature runs in the token. For
     * RSA, libp11's key methods compute RSA-PSS (which TLS 1.3 requires) with
     * raw RSA (CKM_RSA_X_509), which tokens such as evertoken refuse on
     * purpose; TLS 1.2 with PKCS#1 v1.5 signatures (CKM_RSA_PKCS) works on
     * every token. */
    if (EVP_PKEY_get_base_id(e->ckey) == EVP_PKEY_RSA &&
        (SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) != 1 ||
         SSL_CTX_set1_client_sigalgs_list(ctx, "RSA+SHA256:RSA+SHA384:RSA+SHA512") != 1)) {
        enr_ssl_errors();
        return CURLE_SSL_CERTPROBLEM;
    }
    if (SSL_CTX_use_certificate(ctx, e->ccert) != 1 || SSL_CTX_use_PrivateKey(ctx, e->ckey) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        enr_ssl_errors();
        return CURLE_SSL_CERTPROBLEM;
    }
    return CURLE_OK;
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

/*
 * One HTTPS exchange with OP. 200 and 202 are returned with ENR_OK; every
 * other outcome is reported precisely: 401 and 403 (authentication), other
 * 4xx (refused), 5xx (server trouble, retried like the network), TLS failures.
 */
static enr_rc
est_call(est *e, const char *op, const unsigned char *body, size_t blen, int basic, est_resp *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char *url = enr_aprintf("%s/%s", e->base, op), *txt = NULL;
    struct curl_blob ca;
    char ebuf[CURL_ERROR_SIZE] = "";
    CURLcode cr;
    enr_rc rc = ENR_E_NETWORK;

    resp_clear(r);
    if (c == NULL || url == NULL) {
        rc = ENR_E_FAIL;
        goto done;
    }
    ca.data = e->ca_blob;
    ca.len = e->ca_len;
    ca.flags = CURL_BLOB_COPY;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca);
    curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
    curl_easy_setopt(c, CURLOPT_SSL_CTX_DATA, e);
    curl_easy_setopt(c, CURLOPT_SSL_SESSIONID_CACHE, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)e->p->http_timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT,
                     (long)(e->p->http_timeout < 10 ? e->p->http_timeout : 10));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "evertoken-enroll");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    if (basic && e->p->username != NULL) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, e->p->username);
        curl_easy_setopt(c, CURLOPT_PASSWORD, e->password.buf);
    }
    if (body != NULL) {
        h = curl_slist_append(NULL, "Content-Type: application/pkcs10");
        h = h ? curl_slist_append(h, "Content-Transfer-Encoding: base64") : NULL;
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)blen);
    }
    enr_debug("EST %s %s%s", body ? "POST" : "GET", url,
              e->ccert ? " (TLS client certificate from the token)" : "");
    cr = curl_easy_perform(c);
    if (cr != CURLE_OK) {
        if (cr == CURLE_PEER_FAILED_VERIFICATION)
            enr_err("EST server %s: its TLS certificate does not chain to the profile's anchors "
                    "or does not name the host: %s",
                    e->p->url, curl_easy_strerror(cr));
        else if (cr == CURLE_SSL_CERTPROBLEM)
            enr_err("EST %s: the token's key or certificate cannot authenticate the TLS "
                    "connection",
                    op);
        else
            enr_err("cannot reach EST server %s: %s", url, ebuf[0] ? ebuf : curl_easy_strerror(cr));
        enr_ssl_errors();
        rc = cr == CURLE_PEER_FAILED_VERIFICATION || cr == CURLE_SSL_CERTPROBLEM ? ENR_E_REJECTED
                                                                                 : ENR_E_NETWORK;
        goto done;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
    {
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        r->ctype = ct ? enr_strdup(ct) : NULL;
    }
    txt = body_text(r);
    if (r->code == 200 || r->code == 202) {
        rc = ENR_OK;
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
done:
    free(txt);
    free(url);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

/* Decode the base64 body of an application/pkcs7-mime certs-only answer. */
enr_rc
enr_est_parse_certs(const char *op, const char *ctype, const unsigned char *body, size_t n,
                    STACK_OF(X509) * *out)
{
    BIO *b64 = BIO_new(BIO_f_base64()), *mem = BIO_new_mem_buf(body, (int)n);
    unsigned char *der = NULL;
    const unsigned char *pp;
    int len = 0, k;
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
    if (b64 == NULL || mem == NULL || (der = malloc(n + 1)) == NULL) {
        rc = ENR_E_FAIL;
        goto done;
    }
    BIO_push(b64, mem);
    mem = NULL;
    while (len < (int)n && (k = BIO_read(b64, der + len, (int)n - len)) > 0)
        len += k;
    if (len <= 0) {
        enr_err("EST %s: the answer is not base64", op);
        goto done;
    }
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
    BIO_free(mem);
    BIO_free_all(b64);
    return rc;
}

/* CERT chains (UNTRUSTED helping) to ANCHORS at NOW; no message. */
static int
chains(X509 *cert, STACK_OF(X509) * untrusted, STACK_OF(X509) * anchors, time_t now)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = 0;

    if (store != NULL && ctx != NULL) {
        for (int i = 0; i < sk_X509_num(anchors); i++)
            X509_STORE_add_cert(store, sk_X509_value(anchors, i));
        if (X509_STORE_CTX_init(ctx, store, cert, untrusted)) {
            X509_STORE_CTX_set_time(ctx, 0, now);
            X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY);
            ok = X509_verify_cert(ctx) == 1;
        }
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return ok;
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
        if (chains(x, certs, anchors, now))
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

/* The re-enrollment CSR: subject and SANs of OLD, unchanged (section 4.2.2). */
static X509_REQ *
reenroll_csr(X509 *old, EVP_PKEY *key)
{
    X509_REQ *req = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = NULL;
    int i = X509_get_ext_by_NID(old, NID_subject_alt_name, -1);

    if (req == NULL || !X509_REQ_set_version(req, 0) ||
        !X509_REQ_set_subject_name(req, X509_get_subject_name(old)) ||
        !X509_REQ_set_pubkey(req, key))
        goto fail;
    if (i >= 0) {
        X509_EXTENSION *ext = X509_EXTENSION_dup(X509_get_ext(old, i));
        exts = sk_X509_EXTENSION_new_null();
        if (ext == NULL || exts == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
            X509_EXTENSION_free(ext);
            goto fail;
        }
        if (!X509_REQ_add_extensions(req, exts))
            goto fail;
    }
    if (X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
        enr_err("the token could not sign the certificate request");
        goto fail;
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return req;
fail:
    enr_ssl_errors();
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
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
            OPENSSL_cleanse(flat, cap);
        } else {
            free(out);
            out = NULL;
        }
        free(flat);
    }
    /* An enrollment code may be inside: wipe the encoding. */
    if (n > 0)
        OPENSSL_cleanse(der, (size_t)n);
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
enr_est_enroll(const enr_profile *p, EVP_PKEY *newkey, X509 *renew_cert, EVP_PKEY *renew_key,
               STACK_OF(X509) * anchors, enr_scep_result *res)
{
    est e;
    STACK_OF(X509) *cacerts = NULL;
    X509_REQ *req = NULL;
    char *body = NULL;
    size_t blen = 0;
    const char *op = renew_cert ? "simplereenroll" : "simpleenroll";
    est_resp r = {0};
    int polls = 0;
    enr_rc rc;

    memset(&e, 0, sizeof(e));
    memset(res, 0, sizeof(*res));
    e.p = p;
    e.base = make_base(p);
    if (e.base == NULL || set_ca_blob(&e, anchors) != ENR_OK) {
        rc = ENR_E_FAIL;
        goto done;
    }
    rc = get_cacerts(&e, anchors, &cacerts);
    if (rc != ENR_OK)
        goto done;
    if (p->secret_file != NULL &&
        enr_secret_read_file(p->secret_file, p->username ? "EST password" : "enrollment code",
                             &e.password) != 0) {
        rc = ENR_E_CONFIG;
        goto done;
    }
    if (renew_cert != NULL) {
        e.ccert = renew_cert;
        e.ckey = renew_key;
        req = reenroll_csr(renew_cert, newkey);
    } else {
        /* Without a user name the secret is a one-time enrollment code: it
         * travels as the CSR's challengePassword. */
        req = enr_make_csr(p, newkey, p->username == NULL ? &e.password : NULL);
    }
    if (req == NULL) {
        rc = ENR_E_TOKEN;
        goto done;
    }
    body = csr_base64(req, &blen);
    if (body == NULL) {
        rc = ENR_E_FAIL;
        goto done;
    }
    enr_info("profile %s: sending EST %s to %s", p->name, op, e.base);
    for (;;) {
        rc = est_call(&e, op, (unsigned char *)body, blen, renew_cert == NULL, &r);
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
    for (int i = 0; i < sk_X509_num(cacerts); i++)
        if (X509_up_ref(sk_X509_value(cacerts, i)))
            sk_X509_push(res->chain, sk_X509_value(cacerts, i));
    rc = ENR_OK;
done:
    ERR_clear_error();
    resp_clear(&r);
    if (body != NULL)
        OPENSSL_cleanse(body, blen);
    free(body);
    X509_REQ_free(req);
    sk_X509_pop_free(cacerts, X509_free);
    enr_secret_free(&e.password);
    free(e.base);
    free(e.ca_blob);
    return rc;
}
