/*
 * acme_json.c — what the ACME client reads from the CA's JSON answers
 * (jansson does the parsing; this file checks the shape RFC 8555 gives each
 * object and refuses anything else with a reason). tests/fuzz/fuzz_acme.c
 * runs these functions on arbitrary input.
 */
#include <stdlib.h>
#include <string.h>

#include "acme.h"

#define WHY(...) (snprintf(why, whyn, __VA_ARGS__), -1)

json_t *
enr_acme_json(const unsigned char *body, size_t n, char *why, size_t whyn)
{
    json_error_t e;
    json_t *j;

    if (body == NULL || n == 0) {
        snprintf(why, whyn, "an empty answer where JSON was expected");
        return NULL;
    }
    j = json_loadb((const char *)body, n, JSON_REJECT_DUPLICATES, &e);
    if (j == NULL) {
        snprintf(why, whyn, "malformed JSON at byte %d: %s", e.position, e.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        snprintf(why, whyn, "the JSON answer is not an object");
        json_decref(j);
        return NULL;
    }
    return j;
}

const char *
enr_acme_str(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A copy of member KEY if a string, else NULL; *BAD set when present but
 * not a string. */
static char *
dup_str(json_t *j, const char *key, int *bad)
{
    json_t *v = json_object_get(j, key);

    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        *bad = 1;
        return NULL;
    }
    return enr_strdup(json_string_value(v));
}

/* An http(s) URL. */
static int
is_url(const char *s)
{
    return s != NULL && (!strncmp(s, "https://", 8) || !strncmp(s, "http://", 7));
}

int
enr_acme_parse_dir(json_t *j, enr_acme_dir *d, char *why, size_t whyn)
{
    json_t *meta = json_object_get(j, "meta");
    int bad = 0;

    memset(d, 0, sizeof(*d));
    d->new_nonce = dup_str(j, "newNonce", &bad);
    d->new_account = dup_str(j, "newAccount", &bad);
    d->new_order = dup_str(j, "newOrder", &bad);
    d->revoke_cert = dup_str(j, "revokeCert", &bad);
    d->key_change = dup_str(j, "keyChange", &bad);
    d->renewal_info = dup_str(j, "renewalInfo", &bad);
    if (json_is_object(meta)) {
        json_t *e = json_object_get(meta, "externalAccountRequired");
        d->tos = dup_str(meta, "termsOfService", &bad);
        d->eab_req = json_is_true(e);
    }
    if (bad)
        return WHY("the directory has a member that is not a string");
    if (!is_url(d->new_nonce) || !is_url(d->new_account) || !is_url(d->new_order))
        return WHY("the directory lacks newNonce, newAccount or newOrder URLs (is this an ACME "
                   "server?)");
    return 0;
}

void
enr_acme_dir_clear(enr_acme_dir *d)
{
    free(d->new_nonce);
    free(d->new_account);
    free(d->new_order);
    free(d->revoke_cert);
    free(d->key_change);
    free(d->renewal_info);
    free(d->tos);
    memset(d, 0, sizeof(*d));
}

char *
enr_acme_problem_text(json_t *j, char **short_type)
{
    const char *type = enr_acme_str(j, "type"), *detail = enr_acme_str(j, "detail");
    const char *st = type;
    json_t *subs = json_object_get(j, "subproblems");
    char *s, *t;
    size_t i;
    json_t *sp;

    if (st != NULL && !strncmp(st, "urn:ietf:params:acme:error:", 27))
        st += 27;
    if (short_type != NULL)
        *short_type = st ? enr_strdup(st) : NULL;
    s = enr_aprintf("%s (%s)", detail ? detail : "no detail given", type ? type : "no type");
    if (json_is_array(subs)) {
        json_array_foreach(subs, i, sp)
        {
            json_t *id = json_object_get(sp, "identifier");
            const char *v = json_is_object(id) ? enr_acme_str(id, "value") : NULL;
            const char *sd = enr_acme_str(sp, "detail"), *sty = enr_acme_str(sp, "type");
            if (i >= 8 || s == NULL)
                break;
            t = enr_aprintf("%s; %s: %s (%s)", s, v ? v : "?", sd ? sd : "no detail",
                            sty ? sty : "no type");
            free(s);
            s = t;
        }
    }
    return s;
}

int
enr_acme_parse_order(json_t *j, enr_acme_order *o, char *why, size_t whyn)
{
    json_t *az = json_object_get(j, "authorizations"), *err = json_object_get(j, "error");
    int bad = 0;
    size_t i;
    json_t *v;

    memset(o, 0, sizeof(*o));
    o->status = dup_str(j, "status", &bad);
    o->finalize = dup_str(j, "finalize", &bad);
    o->certificate = dup_str(j, "certificate", &bad);
    if (json_is_object(err))
        o->error = enr_acme_problem_text(err, NULL);
    if (bad || o->status == NULL)
        return WHY("the order has no status or a member of the wrong type");
    if (!is_url(o->finalize))
        return WHY("the order has no finalize URL");
    if (!json_is_array(az) || json_array_size(az) == 0 || json_array_size(az) > 100)
        return WHY("the order's authorizations are not a list of 1 to 100 URLs");
    o->authz = calloc(json_array_size(az), sizeof(char *));
    if (o->authz == NULL)
        return WHY("out of memory");
    json_array_foreach(az, i, v)
    {
        if (!json_is_string(v) || !is_url(json_string_value(v)))
            return WHY("authorization %zu of the order is not a URL", i + 1);
        o->authz[o->n_authz++] = enr_strdup(json_string_value(v));
    }
    return 0;
}

void
enr_acme_order_clear(enr_acme_order *o)
{
    for (size_t i = 0; i < o->n_authz; i++)
        free(o->authz[i]);
    free(o->authz);
    free(o->status);
    free(o->finalize);
    free(o->certificate);
    free(o->error);
    memset(o, 0, sizeof(*o));
}

int
enr_acme_parse_authz(json_t *j, const char *type, enr_acme_authz *a, char *why, size_t whyn)
{
    json_t *id = json_object_get(j, "identifier"), *chs = json_object_get(j, "challenges"), *c;
    const char *it, *iv;
    int bad = 0;
    size_t i, used = 0;
    char types[256] = "";

    memset(a, 0, sizeof(*a));
    a->status = dup_str(j, "status", &bad);
    if (bad || a->status == NULL)
        return WHY("the authorization has no status");
    it = json_is_object(id) ? enr_acme_str(id, "type") : NULL;
    iv = json_is_object(id) ? enr_acme_str(id, "value") : NULL;
    if (it == NULL || iv == NULL)
        return WHY("the authorization has no identifier");
    a->ident = enr_aprintf("%s:%s", it, iv);
    a->wildcard = json_is_true(json_object_get(j, "wildcard"));
    if (!json_is_array(chs))
        return WHY("the authorization for %s has no list of challenges", iv);
    json_array_foreach(chs, i, c)
    {
        const char *ty = json_is_object(c) ? enr_acme_str(c, "type") : NULL;
        if (ty == NULL)
            return WHY("challenge %zu for %s has no type", i + 1, iv);
        if (used < sizeof(types))
            used +=
                (size_t)snprintf(types + used, sizeof(types) - used, "%s%s", used ? ", " : "", ty);
        if (strcmp(ty, type) != 0 || a->ch_url != NULL)
            continue;
        a->ch_url = dup_str(c, "url", &bad);
        a->ch_token = dup_str(c, "token", &bad);
        a->ch_status = dup_str(c, "status", &bad);
        if (json_is_object(json_object_get(c, "error")))
            a->ch_error = enr_acme_problem_text(json_object_get(c, "error"), NULL);
        if (bad || !is_url(a->ch_url) || a->ch_token == NULL || a->ch_status == NULL)
            return WHY("the %s challenge for %s lacks url, token or status", type, iv);
        /* RFC 8555 section 8.1: base64url characters only (it becomes a
         * file name and a URL path). */
        if (strlen(a->ch_token) < 16 || strlen(a->ch_token) > 256 ||
            strspn(a->ch_token,
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
                strlen(a->ch_token))
            return WHY("the %s token for %s is not 16 to 256 base64url characters", type, iv);
    }
    a->types = enr_strdup(types);
    return 0;
}

void
enr_acme_authz_clear(enr_acme_authz *a)
{
    free(a->status);
    free(a->ident);
    free(a->ch_url);
    free(a->ch_token);
    free(a->ch_status);
    free(a->ch_error);
    free(a->types);
    memset(a, 0, sizeof(*a));
}
