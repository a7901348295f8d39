/*
 * acme.c — the ACME transport (RFC 8555 sections 6 and 7.1): the
 * directory, nonces (Replay-Nonce; a badNonce answer is retried with the
 * fresh nonce it carries), requests as JWS signed in the token, answers
 * judged by status and content type, problem documents (RFC 7807) turned
 * into one precise message, Retry-After read. Everything goes through the
 * helper's HTTP layer (http.c) on one kept connection.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "acme.h"

/* The largest ACME answer read (a JSON object or a PEM chain). */
#define ACME_MAX       (1u << 20)
#define ACME_BAD_NONCE 10 /* badNonce retries of one request */

void
enr_acme_ans_clear(enr_acme_ans *a)
{
    json_decref(a->json);
    free(a->body);
    free(a->ctype);
    free(a->location);
    free(a->link_up);
    for (size_t i = 0; i < a->n_alt; i++)
        free(a->alternates[i]);
    free(a->alternates);
    memset(a, 0, sizeof(*a));
    a->retry_after = -1;
}

void
enr_acme_sleep(long seconds)
{
    if (seconds <= 0)
        return;
    if (enr_clock_is_fake())
        enr_clock_set(enr_now() + seconds);
    else
        sleep((unsigned)seconds);
}

typedef struct hdrs {
    enr_acme *a;
    enr_acme_ans *ans;
} hdrs;

/* VALUE of header line L (N bytes) if it is NAME, trimmed; malloc'd. */
static char *
header_value(const char *l, size_t n, const char *name)
{
    size_t k = strlen(name);

    if (n <= k || strncasecmp(l, name, k) != 0 || l[k] != ':')
        return NULL;
    l += k + 1;
    n -= k + 1;
    while (n > 0 && (*l == ' ' || *l == '\t'))
        l++, n--;
    while (n > 0 && isspace((unsigned char)l[n - 1]))
        n--;
    return strndup(l, n);
}

/* Link: <URL>;rel="alternate" (one link per header line, as ACME servers
 * send them; a comma-separated list is split too). */
static void
parse_link(enr_acme_ans *ans, const char *v)
{
    const char *q = v;

    while ((q = strchr(q, '<')) != NULL) {
        const char *e = strchr(q, '>');
        const char *next;
        char *url;
        if (e == NULL)
            return;
        next = strchr(e, ',');
        url = strndup(q + 1, (size_t)(e - q - 1));
        if (url == NULL)
            return;
        {
            size_t span = next ? (size_t)(next - e) : strlen(e);
            char *params = strndup(e, span);
            if (params != NULL && strstr(params, "rel=\"alternate\"") != NULL) {
                char **nv = realloc(ans->alternates, (ans->n_alt + 1) * sizeof(*nv));
                if (nv != NULL) {
                    ans->alternates = nv;
                    nv[ans->n_alt++] = url;
                    url = NULL;
                }
            } else if (params != NULL && strstr(params, "rel=\"up\"") != NULL &&
                       ans->link_up == NULL) {
                ans->link_up = url;
                url = NULL;
            }
            free(params);
        }
        free(url);
        q = e;
    }
}

static void
on_header(const char *l, size_t n, void *arg)
{
    hdrs *h = arg;

    enr_acme_parse_header(h->a, h->ans, l, n);
}

void
enr_acme_parse_header(enr_acme *a, enr_acme_ans *ans, const char *l, size_t n)
{
    hdrs hh = {a, ans}, *h = &hh;
    char *v;

    if ((v = header_value(l, n, "Replay-Nonce")) != NULL) {
        /* RFC 8555 section 6.5.1: base64url characters only. */
        if (*v && strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
                      strlen(v)) {
            free(h->a->nonce);
            h->a->nonce = v;
        } else {
            enr_debug("ACME: ignoring a malformed Replay-Nonce");
            free(v);
        }
    } else if ((v = header_value(l, n, "Location")) != NULL) {
        free(h->ans->location);
        h->ans->location = v;
    } else if ((v = header_value(l, n, "Retry-After")) != NULL) {
        char *e;
        long s = strtol(v, &e, 10);
        if (e != v && *e == '\0' && s >= 0)
            h->ans->retry_after = s > 86400 ? 86400 : s;
        else
            h->ans->retry_after = 60; /* an HTTP date: not worth parsing exactly */
        free(v);
    } else if ((v = header_value(l, n, "Link")) != NULL) {
        parse_link(h->ans, v);
        free(v);
    }
}

/* One exchange: GET (BODY NULL) or POST of a JWS. ENR_OK when an answer
 * came (status not judged). */
static enr_rc
send1(enr_acme *a, const char *url, const char *body, enr_acme_ans *ans)
{
    static const char *const accept[] = {"Accept: application/json, application/problem+json, "
                                         "application/pem-certificate-chain",
                                         NULL};
    enr_http_req rq;
    enr_http_ans ha;
    hdrs h = {a, ans};
    enr_rc rc;

    enr_acme_ans_clear(ans);
    memset(&rq, 0, sizeof(rq));
    rq.url = url;
    rq.ctype = "application/jose+json";
    rq.headers = accept;
    rq.body = (const unsigned char *)body;
    rq.blen = body ? strlen(body) : 0;
    rq.timeout = a->p->http_timeout;
    rq.max = ACME_MAX;
    rq.ca_blob = a->ca_blob;
    rq.ca_len = a->ca_len;
    rq.on_header = on_header;
    rq.header_arg = &h;
    enr_debug("ACME: %s %s", body ? "POST" : "GET", url);
    rc = enr_http_send(a->http, &rq, &ha);
    if (rc != ENR_OK) {
        if (ha.too_big)
            enr_err("ACME: %s: the answer exceeds %u KiB", url, ACME_MAX >> 10);
        else
            enr_err("ACME: cannot reach %s: %s", url, ha.error);
        enr_http_ans_clear(&ha);
        return rc;
    }
    ans->code = ha.code;
    ans->body = ha.body;
    ans->n = ha.n;
    ans->ctype = ha.ctype;
    ha.body = NULL;
    ha.ctype = NULL;
    enr_http_ans_clear(&ha);
    return ENR_OK;
}

static int
ctype_is(const char *ct, const char *want)
{
    size_t l = strlen(want);

    return ct != NULL && strncasecmp(ct, want, l) == 0 && (ct[l] == '\0' || ct[l] == ';');
}

/* A refusal: the problem document as a sentence, or the status. *SHORT the
 * problem's type. */
static enr_rc
refusal(enr_acme *a, const char *what, enr_acme_ans *ans, char **short_type)
{
    char why[160];
    json_t *j = NULL;
    char *text = NULL;
    enr_rc rc = ans->code == 429 || ans->code >= 500 ? ENR_E_NETWORK : ENR_E_REJECTED;

    *short_type = NULL;
    a->quiet_hit = 0;
    if (ctype_is(ans->ctype, "application/problem+json") &&
        (j = enr_acme_json(ans->body, ans->n, why, sizeof(why))) != NULL)
        text = enr_acme_problem_text(j, short_type);
    a->quiet_hit = a->quiet != NULL && *short_type != NULL && !strcmp(*short_type, a->quiet);
    if (a->quiet_hit) {
        free(text);
        json_decref(j);
        return rc;
    }
    if (text != NULL && *short_type != NULL && !strcmp(*short_type, "rateLimited"))
        rc = ENR_E_NETWORK; /* retried later, like the network */
    if (text != NULL)
        enr_err("ACME %s: the CA answered HTTP %ld: %s", what, ans->code, text);
    else
        enr_err("ACME %s: the CA answered HTTP %ld (%s%s)", what, ans->code,
                ans->ctype ? ans->ctype : "no content type",
                ctype_is(ans->ctype, "application/problem+json") ? ", a malformed problem document"
                                                                 : "");
    if (ans->retry_after >= 0) {
        enr_err("ACME %s: the CA asks to retry after %ld s", what, ans->retry_after);
        if (rc == ENR_E_NETWORK)
            enr_retry_hint(enr_now() + ans->retry_after); /* the next retry waits */
    }
    free(text);
    json_decref(j);
    return rc;
}

static enr_rc
get_nonce(enr_acme *a)
{
    enr_acme_ans ans = {.retry_after = -1};
    enr_rc rc;

    free(a->nonce);
    a->nonce = NULL;
    rc = send1(a, a->dir.new_nonce, NULL, &ans);
    if (rc == ENR_OK && ans.code != 200 && ans.code != 204) {
        char *st;
        rc = refusal(a, "newNonce", &ans, &st);
        free(st);
    } else if (rc == ENR_OK && a->nonce == NULL) {
        enr_err("ACME newNonce: the CA sent no Replay-Nonce");
        rc = ENR_E_REJECTED;
    }
    enr_acme_ans_clear(&ans);
    return rc;
}

/* A 2xx answer's body: JSON when asked (and when the type says so). */
static enr_rc
take_body(const char *what, enr_acme_ans *ans, int accept_json)
{
    char why[160];

    if (!accept_json)
        return ENR_OK;
    if (!ctype_is(ans->ctype, "application/json")) {
        enr_err("ACME %s: the CA answered with %s, not application/json", what,
                ans->ctype ? ans->ctype : "no content type");
        return ENR_E_REJECTED;
    }
    ans->json = enr_acme_json(ans->body, ans->n, why, sizeof(why));
    if (ans->json == NULL) {
        enr_err("ACME %s: %s", what, why);
        return ENR_E_REJECTED;
    }
    return ENR_OK;
}

enr_rc
enr_acme_post(enr_acme *a, const char *what, const char *url, const char *payload, EVP_PKEY *key,
              int jwk, int accept_json, enr_acme_ans *ans)
{
    enr_rc rc = ENR_E_FAIL;

    for (int attempt = 0;; attempt++) {
        char *jws, *st = NULL;
        if (a->nonce == NULL && (rc = get_nonce(a)) != ENR_OK)
            return rc;
        jws = enr_jws_sign(key ? key : a->key, jwk ? NULL : a->kid, a->nonce, url,
                           payload ? payload : "");
        free(a->nonce);
        a->nonce = NULL; /* used; the answer brings the next */
        if (jws == NULL)
            return ENR_E_TOKEN;
        rc = send1(a, url, jws, ans);
        free(jws);
        if (rc != ENR_OK)
            return rc;
        if (ans->code >= 200 && ans->code < 300)
            return take_body(what, ans, accept_json);
        if (ans->code == 400 && ctype_is(ans->ctype, "application/problem+json")) {
            char why[160];
            json_t *j = enr_acme_json(ans->body, ans->n, why, sizeof(why));
            const char *t = j ? enr_acme_str(j, "type") : NULL;
            int bad_nonce = t != NULL && !strcmp(t, "urn:ietf:params:acme:error:badNonce");
            json_decref(j);
            if (bad_nonce && attempt < ACME_BAD_NONCE) {
                a->nonce_retries++;
                enr_debug("ACME %s: badNonce; retrying with the fresh nonce", what);
                continue;
            }
            if (bad_nonce) {
                enr_err("ACME %s: the CA refused %d nonces in a row (badNonce); giving up for now",
                        what, attempt + 1);
                return ENR_E_NETWORK;
            }
        }
        rc = refusal(a, what, ans, &st);
        free(st);
        return rc;
    }
}

enr_rc
enr_acme_get(enr_acme *a, const char *what, const char *url, enr_acme_ans *ans)
{
    enr_rc rc = send1(a, url, NULL, ans);

    if (rc == ENR_OK && ans->code != 200) {
        char *st;
        rc = refusal(a, what, ans, &st);
        free(st);
    }
    return rc == ENR_OK ? take_body(what, ans, 1) : rc;
}

enr_rc
enr_acme_open(enr_acme *a, const enr_profile *p)
{
    enr_acme_ans ans = {.retry_after = -1};
    char why[200];
    enr_rc rc;

    memset(a, 0, sizeof(*a));
    a->p = p;
    if (p->acme != NULL && p->acme->server_anchors != NULL) {
        unsigned char *b;
        if (enr_read_file(p->acme->server_anchors, &b, &a->ca_len) != 0) {
            enr_err("ACME: cannot read server_anchors %s", p->acme->server_anchors);
            return ENR_E_CONFIG;
        }
        a->ca_blob = (char *)b;
    }
    a->http = enr_http_conn_new();
    if (a->http == NULL)
        return ENR_E_FAIL;
    rc = send1(a, p->url, NULL, &ans);
    if (rc != ENR_OK)
        goto done;
    if (ans.code != 200) {
        char *st;
        rc = refusal(a, "directory", &ans, &st);
        free(st);
        goto done;
    }
    rc = take_body("directory", &ans, 1);
    if (rc != ENR_OK)
        goto done;
    if (enr_acme_parse_dir(ans.json, &a->dir, why, sizeof(why)) != 0) {
        enr_err("ACME directory %s: %s", p->url, why);
        rc = ENR_E_REJECTED;
    }
done:
    enr_acme_ans_clear(&ans);
    return rc;
}

void
enr_acme_close(enr_acme *a)
{
    enr_http_conn_free(a->http);
    enr_acme_dir_clear(&a->dir);
    free(a->nonce);
    free(a->kid);
    free(a->ca_blob);
    EVP_PKEY_free(a->key);
    memset(a, 0, sizeof(*a));
}
