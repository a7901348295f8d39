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

typedef struct hbuf {
    unsigned char *d;
    size_t n;
    int over; /* the answer exceeded ENR_HTTP_MAX */
} hbuf;

static size_t
on_body(char *p, size_t sz, size_t nm, void *u)
{
    hbuf *b = u;
    size_t n = sz * nm;
    unsigned char *nd;

    if (b->n + n > ENR_HTTP_MAX) {
        b->over = 1;
        return 0;
    }
    nd = realloc(b->d, b->n + n + 1);
    if (nd == NULL)
        return 0;
    b->d = nd;
    memcpy(b->d + b->n, p, n);
    b->n += n;
    b->d[b->n] = '\0';
    return n;
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
enr_http_exchange(enr_http_conn *h, const char *url, const char *ctype, const unsigned char *body,
                  size_t blen, int timeout, unsigned char **resp, size_t *rlen, char **rctype)
{
    struct curl_slist *hd = NULL;
    hbuf b = {NULL, 0, 0};
    long code = 0;
    char *ct = NULL, *hdr = NULL;
    CURL *c = h->c;
    CURLcode cr;
    enr_rc rc = ENR_E_NETWORK;

    *resp = NULL;
    *rlen = 0;
    if (rctype != NULL)
        *rctype = NULL;
    curl_easy_reset(c); /* options only: the connection stays open */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)(timeout < 10 ? timeout : 10));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "evertoken-enroll");
    if (body != NULL) {
        hdr = enr_aprintf("Content-Type: %s", ctype);
        hd = curl_slist_append(NULL, hdr);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)blen);
    }
    enr_debug("HTTP %s %s", body ? "POST" : "GET", url);
    cr = curl_easy_perform(c);
    if (cr != CURLE_OK) {
        if (b.over)
            enr_err("%s: the answer exceeds %u MiB", url, (unsigned)(ENR_HTTP_MAX >> 20));
        else
            enr_err("cannot reach %s: %s", url, curl_easy_strerror(cr));
        if (b.over)
            rc = ENR_E_REJECTED;
        goto done;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    if (code >= 500) {
        enr_err("%s answered HTTP %ld", url, code);
        goto done; /* server trouble: retried like the network */
    }
    if (code != 200) {
        enr_err("%s answered HTTP %ld", url, code);
        rc = ENR_E_REJECTED;
        goto done;
    }
    if (rctype != NULL && ct != NULL)
        *rctype = enr_strdup(ct);
    *resp = b.d;
    *rlen = b.n;
    b.d = NULL;
    rc = ENR_OK;
done:
    free(b.d);
    free(hdr);
    curl_slist_free_all(hd);
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
