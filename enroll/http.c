/*
 * http.c — the helper's HTTP layer (libcurl): one rule for every protocol
 * and for OCSP/CRL fetching. Answers are limited to ENR_HTTP_MAX bytes; the
 * whole exchange to the profile's http_timeout (connecting to at most 10 s
 * of it); proxies come from libcurl's usual environment variables
 * (http_proxy, https_proxy, no_proxy); only http and https. A connection
 * (enr_http_conn) keeps its TCP connection open between requests (HTTP
 * keep-alive), as a CMP transaction of several messages wants (RFC 9811).
 * A status of 5xx or no answer is network trouble (ENR_E_NETWORK: retried);
 * any other status but 200 is a refusal (ENR_E_REJECTED).
 */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "enr_int.h"

struct enr_http_conn {
    CURL *c;
};

static size_t
on_body(char *p, size_t sz, size_t nm, void *u)
{
    enr_http_ans *a = u;
    size_t n = sz * nm;
    unsigned char *nd;

    if (a->n + n > a->max) {
        a->too_big = 1;
        return 0;
    }
    nd = realloc(a->body, a->n + n + 1);
    if (nd == NULL)
        return 0;
    a->body = nd;
    memcpy(a->body + a->n, p, n);
    a->n += n;
    a->body[a->n] = '\0';
    return n;
}

static size_t
on_header(char *p, size_t sz, size_t nm, void *u)
{
    const enr_http_req *rq = u;

    rq->on_header(p, sz * nm, rq->header_arg);
    return sz * nm;
}

static CURLcode
on_ssl_ctx(CURL *c, void *sslctx, void *u)
{
    const enr_http_req *rq = u;

    (void)c;
    return rq->tls_client(sslctx, rq->tls_arg) == 0 ? CURLE_OK : CURLE_SSL_CERTPROBLEM;
}

void
enr_http_ans_clear(enr_http_ans *a)
{
    free(a->body);
    free(a->ctype);
    memset(a, 0, sizeof(*a));
}

enr_http_conn *
enr_http_conn_new(void)
{
    enr_http_conn *h = calloc(1, sizeof(*h));

    if (h != NULL && (h->c = curl_easy_init()) == NULL) {
        free(h);
        h = NULL;
    }
    return h;
}

void
enr_http_conn_free(enr_http_conn *h)
{
    if (h == NULL)
        return;
    curl_easy_cleanup(h->c);
    free(h);
}

enr_rc
enr_http_send(enr_http_conn *h, const enr_http_req *rq, enr_http_ans *a)
{
    struct curl_slist *hd = NULL;
    struct curl_blob ca;
    char ebuf[CURL_ERROR_SIZE] = "", *ctl = NULL, *ct = NULL;
    CURL *c = h->c;
    CURLcode cr;
    enr_rc rc = ENR_OK;

    memset(a, 0, sizeof(*a));
    a->max = rq->max ? rq->max : ENR_HTTP_MAX;
    curl_easy_reset(c); /* options only: the connection stays open */
    curl_easy_setopt(c, CURLOPT_URL, rq->url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)rq->timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)(rq->timeout < 10 ? rq->timeout : 10));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "evertoken-enroll");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    if (rq->ca_blob != NULL) {
        /* TLS 1.2 or later to a server verified against these anchors only. */
        ca.data = (void *)rq->ca_blob;
        ca.len = rq->ca_len;
        ca.flags = CURL_BLOB_COPY;
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
        curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca);
        curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
        curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
        curl_easy_setopt(c, CURLOPT_SSL_SESSIONID_CACHE, 0L);
    } else {
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    }
    if (rq->tls_client != NULL) {
        curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
        curl_easy_setopt(c, CURLOPT_SSL_CTX_DATA, (void *)rq);
    }
    if (rq->on_header != NULL) {
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, (void *)rq);
    }
    if (rq->user != NULL) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, rq->user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, rq->password);
    }
    if (rq->body != NULL) {
        ctl = enr_aprintf("Content-Type: %s", rq->ctype);
        hd = curl_slist_append(NULL, ctl);
        for (int i = 0; hd != NULL && rq->headers != NULL && rq->headers[i] != NULL; i++)
            hd = curl_slist_append(hd, rq->headers[i]);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)rq->blen);
    }
    cr = curl_easy_perform(c);
    a->curl_code = (int)cr;
    if (cr != CURLE_OK) {
        snprintf(a->error, sizeof(a->error), "%s", ebuf[0] ? ebuf : curl_easy_strerror(cr));
        free(a->body);
        a->body = NULL;
        a->n = 0;
        rc = a->too_big || cr == CURLE_PEER_FAILED_VERIFICATION || cr == CURLE_SSL_CERTPROBLEM
                 ? ENR_E_REJECTED
                 : ENR_E_NETWORK;
        goto done;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->code);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    a->ctype = ct ? enr_strdup(ct) : NULL;
done:
    free(ctl);
    curl_slist_free_all(hd);
    return rc;
}

enr_rc
enr_http_exchange(enr_http_conn *h, const char *url, const char *ctype, const unsigned char *body,
                  size_t blen, int timeout, unsigned char **resp, size_t *rlen, char **rctype)
{
    enr_http_req rq;
    enr_http_ans a;
    enr_rc rc;

    *resp = NULL;
    *rlen = 0;
    if (rctype != NULL)
        *rctype = NULL;
    memset(&rq, 0, sizeof(rq));
    rq.url = url;
    rq.ctype = ctype;
    rq.body = body;
    rq.blen = blen;
    rq.timeout = timeout;
    enr_debug("HTTP %s %s", body ? "POST" : "GET", url);
    rc = enr_http_send(h, &rq, &a);
    if (rc != ENR_OK) {
        if (a.too_big)
            enr_err("%s: the answer exceeds %u MiB", url, (unsigned)(ENR_HTTP_MAX >> 20));
        else
            enr_err("cannot reach %s: %s", url, a.error);
        goto done;
    }
    if (a.code >= 500) {
        enr_err("%s answered HTTP %ld", url, a.code);
        rc = ENR_E_NETWORK; /* server trouble: retried like the network */
        goto done;
    }
    if (a.code != 200) {
        enr_err("%s answered HTTP %ld", url, a.code);
        rc = ENR_E_REJECTED;
        goto done;
    }
    if (rctype != NULL) {
        *rctype = a.ctype;
        a.ctype = NULL;
    }
    *resp = a.body;
    *rlen = a.n;
    a.body = NULL;
done:
    enr_http_ans_clear(&a);
    return rc;
}

enr_rc
enr_http(const char *url, const char *ctype, const unsigned char *body, size_t blen, int timeout,
         unsigned char **resp, size_t *rlen, char **rctype)
{
    enr_http_conn *h = enr_http_conn_new();
    enr_rc rc;

    *resp = NULL;
    *rlen = 0;
    if (rctype != NULL)
        *rctype = NULL;
    if (h == NULL)
        return ENR_E_FAIL;
    rc = enr_http_exchange(h, url, ctype, body, blen, timeout, resp, rlen, rctype);
    enr_http_conn_free(h);
    return rc;
}
