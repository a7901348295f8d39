/*
 * acme_conf.c — the [acme] section of a profile (docs/enrollment.md "ACME",
 * evertoken-enroll.conf(5)). profile.c hands every key of [acme] here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "acme.h"

static int __attribute__((format(printf, 3, 4))) fail(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return -1;
}

static int
set(char **field, const char *v, char *why, size_t n)
{
    if (*field != NULL)
        return fail(why, n, "given twice");
    if (*v == '\0')
        return fail(why, n, "empty value");
    *field = enr_strdup(v);
    return *field ? 0 : -1;
}

static int
set_path(char **field, const char *dir, const char *v, char *why, size_t n)
{
    if (*v == '\0' || *field != NULL)
        return set(field, v, why, n);
    *field = v[0] == '/' || dir == NULL ? enr_strdup(v) : enr_aprintf("%s/%s", dir, v);
    return *field ? 0 : -1;
}

static int
parse_bool(const char *v, int *b)
{
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcmp(v, "1") || !strcasecmp(v, "on"))
        *b = 1;
    else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcmp(v, "0") ||
             !strcasecmp(v, "off"))
        *b = 0;
    else
        return -1;
    return 0;
}

/* "address:port" or "[v6]:port" or ":port". */
static int
check_listen(const char *v)
{
    const char *c = strrchr(v, ':');
    char *e;
    long port;

    if (c == NULL || c[1] == '\0')
        return -1;
    port = strtol(c + 1, &e, 10);
    return *e == '\0' && port > 0 && port < 65536 ? 0 : -1;
}

static int
parse_id(enr_acme_conf *a, const char *v)
{
    size_t l = strlen(v);

    if (l == 0 || l % 2 != 0 || l / 2 > sizeof(a->id))
        return -1;
    for (size_t i = 0; i < l / 2; i++) {
        unsigned int b;
        if (sscanf(v + 2 * i, "%2x", &b) != 1 || !strchr("0123456789abcdefABCDEF", v[2 * i]) ||
            !strchr("0123456789abcdefABCDEF", v[2 * i + 1]))
            return -1;
        a->id[i] = (unsigned char)b;
    }
    a->id_len = l / 2;
    return 0;
}

int
enr_acme_conf_set(enr_profile *p, const char *dir, const char *name, const char *value, char *why,
                  size_t n)
{
    enr_acme_conf *a = p->acme;
    int b;

    if (a == NULL && (a = p->acme = calloc(1, sizeof(*a))) == NULL)
        return fail(why, n, "out of memory");
#define IS(s, k) (!strcmp("acme", s) && !strcmp(name, k))
    if (IS("acme", "contact")) {
        if (strncmp(value, "mailto:", 7) != 0 && strchr(value, '@') != NULL) {
            /* a bare address: mailto: URL */
            char *m = enr_aprintf("mailto:%s", value);
            int r = m ? set(&a->contact, m, why, n) : -1;
            free(m);
            return r;
        }
        return set(&a->contact, value, why, n);
    }
    if (IS("acme", "agree_tos")) {
        if (parse_bool(value, &b) != 0)
            return fail(why, n, "'%s' is not true or false", value);
        a->agree_tos = b;
        return 0;
    }
    if (IS("acme", "account_label"))
        return set(&a->account_label, value, why, n);
    if (IS("acme", "account_id")) {
        if (parse_id(a, value) != 0)
            return fail(why, n, "'%s' is not 1 to 32 bytes in hex", value);
        return 0;
    }
    if (IS("acme", "account_key")) {
        if (!strcasecmp(value, "ec") || !strcasecmp(value, "es256"))
            a->account_rsa = 0;
        else if (!strcasecmp(value, "rsa") || !strcasecmp(value, "rs256"))
            a->account_rsa = 1;
        else
            return fail(why, n, "'%s' is not ec (ES256) or rsa (RS256)", value);
        return 0;
    }
    if (IS("acme", "eab_kid"))
        return set(&a->eab_kid, value, why, n);
    if (IS("acme", "eab_hmac_file"))
        return set_path(&a->eab_hmac_file, dir, value, why, n);
    if (IS("acme", "http_listen")) {
        if (check_listen(value) != 0)
            return fail(why, n, "'%s' is not address:port (e.g. 0.0.0.0:80, [::]:80)", value);
        return set(&a->http_listen, value, why, n);
    }
    if (IS("acme", "tls_alpn_listen")) {
        if (check_listen(value) != 0)
            return fail(why, n, "'%s' is not address:port (e.g. 0.0.0.0:443, [::]:443)", value);
        return set(&a->tls_alpn_listen, value, why, n);
    }
    if (IS("acme", "challenge")) {
        if (strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(value))
            return fail(why, n, "'%s' is not a challenge type (http-01, tls-alpn-01, dns-01, ...)",
                        value);
        return set(&a->challenge, value, why, n);
    }
    if (IS("acme", "challenge_hook"))
        return set_path(&a->challenge_hook, dir, value, why, n);
    if (IS("acme", "webroot"))
        return set_path(&a->webroot, dir, value, why, n);
    if (IS("acme", "server_anchors"))
        return set_path(&a->server_anchors, dir, value, why, n);
    if (IS("acme", "preferred_chain"))
        return set(&a->preferred_chain, value, why, n);
#undef IS
    return fail(why, n, "unknown key in [acme]");
}

void
enr_acme_conf_free(enr_acme_conf *a)
{
    if (a == NULL)
        return;
    free(a->contact);
    free(a->account_label);
    free(a->eab_kid);
    free(a->eab_hmac_file);
    free(a->http_listen);
    free(a->tls_alpn_listen);
    free(a->challenge);
    free(a->challenge_hook);
    free(a->webroot);
    free(a->server_anchors);
    free(a->preferred_chain);
    free(a);
}
