/*
 * profile.c — enrollment profiles: one INI file per credential, parsed with
 * libinih. The reader wrapper counts lines so every error names FILE:LINE.
 * The format is documented in docs/enrollment.md ("Profiles").
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <ini.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <p11-kit/uri.h>

#include "et_modpath.h"
#include "enr_int.h"
#include "proto/proto.h"
#include "schedule.h"

#ifndef EVERTOKEN_DEFAULT_MODULE
#define EVERTOKEN_DEFAULT_MODULE "libevertoken.so"
#endif

#define PENDING_SUFFIX " (pending)"

typedef struct parse_ctx {
    FILE *fp;
    int line;
    const char *file;
    char *dir; /* directory of the profile, for relative paths */
    enr_profile *p;
    int failed;
    unsigned seen; /* bit per key, duplicate detection */
    int rev_set;   /* [renewal] revocation given */
} parse_ctx;

const char *
enr_revpol_name(int pol)
{
    return pol == ENR_REVPOL_HARD ? "hard" : pol == ENR_REVPOL_OFF ? "off" : "soft";
}

int
enr_parse_revpol(const char *v, int *out)
{
    if (!strcasecmp(v, "soft"))
        *out = ENR_REVPOL_SOFT;
    else if (!strcasecmp(v, "hard"))
        *out = ENR_REVPOL_HARD;
    else if (!strcasecmp(v, "off"))
        *out = ENR_REVPOL_OFF;
    else
        return -1;
    return 0;
}

static char *
reader(char *str, int num, void *stream)
{
    parse_ctx *c = stream;
    char *r = fgets(str, num, c->fp);

    if (r != NULL)
        c->line++;
    return r;
}

static void perr(parse_ctx *c, const char *section, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
perr(parse_ctx *c, const char *section, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (key != NULL)
        enr_err("%s:%d: [%s] %s: %s", c->file, c->line, section, key, msg);
    else
        enr_err("%s:%d: %s", c->file, c->line, msg);
    c->failed = 1;
}

static int
parse_bool(const char *v, int *out)
{
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") ||
        !strcmp(v, "1")) {
        *out = 1;
        return 0;
    }
    if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") ||
        !strcmp(v, "0")) {
        *out = 0;
        return 0;
    }
    return -1;
}

static int
parse_int(const char *v, long lo, long hi, long *out)
{
    char *e;
    long x;

    errno = 0;
    x = strtol(v, &e, 10);
    if (errno != 0 || e == v || *e != '\0' || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

/* "90", "90s", "15m", "12h", "7d" → seconds. */
static int
parse_duration(const char *v, long *out)
{
    char *e;
    long x, mul = 1;

    errno = 0;
    x = strtol(v, &e, 10);
    if (errno != 0 || e == v || x < 0)
        return -1;
    if (*e != '\0') {
        switch (*e) {
        case 's':
            mul = 1;
            break;
        case 'm':
            mul = 60;
            break;
        case 'h':
            mul = 3600;
            break;
        case 'd':
            mul = ENR_DAY;
            break;
        default:
            return -1;
        }
        if (e[1] != '\0')
            return -1;
    }
    if (x > LONG_MAX / mul || x * mul > 3650L * ENR_DAY)
        return -1;
    *out = x * mul;
    return 0;
}

/* Paths in a profile are relative to the profile's directory. */
static char *
resolve_path(parse_ctx *c, const char *v)
{
    if (v[0] == '/' || c->dir == NULL)
        return enr_strdup(v);
    return enr_aprintf("%s/%s", c->dir, v);
}

static int
set_str(parse_ctx *c, const char *section, const char *key, char **field, const char *v)
{
    if (*field != NULL) {
        perr(c, section, key, "given twice");
        return 1;
    }
    if (*v == '\0') {
        perr(c, section, key, "empty value");
        return 1;
    }
    *field = enr_strdup(v);
    return 1;
}

static int
set_path(parse_ctx *c, const char *section, const char *key, char **field, const char *v)
{
    if (*field != NULL) {
        perr(c, section, key, "given twice");
        return 1;
    }
    if (*v == '\0') {
        perr(c, section, key, "empty path");
        return 1;
    }
    *field = resolve_path(c, v);
    return 1;
}

static int
parse_warn_days(parse_ctx *c, const char *v)
{
    enr_profile *p = c->p;
    char *dup = enr_strdup(v), *save = NULL;
    int rc = 0;

    p->n_warn = 0;
    for (char *t = strtok_r(dup, ", ", &save); t != NULL; t = strtok_r(NULL, ", ", &save)) {
        long d;
        if (parse_int(t, 1, 3650, &d) != 0) {
            perr(c, "renewal", "warn_days", "'%s' is not a number of days (1..3650)", t);
            rc = -1;
            break;
        }
        if (p->n_warn == (int)(sizeof(p->warn_days) / sizeof(p->warn_days[0]))) {
            perr(c, "renewal", "warn_days", "at most 8 values");
            rc = -1;
            break;
        }
        p->warn_days[p->n_warn++] = (int)d;
    }
    free(dup);
    /* Descending, so the first threshold crossed is the largest. */
    for (int i = 0; i < p->n_warn; i++)
        for (int j = i + 1; j < p->n_warn; j++)
            if (p->warn_days[j] > p->warn_days[i]) {
                int t = p->warn_days[i];
                p->warn_days[i] = p->warn_days[j];
                p->warn_days[j] = t;
            }
    return rc;
}

/* SANs: "DNS:x, email:y, IP:1.2.3.4, URI:z"; repeated keys append. */
static int
add_san(parse_ctx *c, const char *v)
{
    enr_profile *p = c->p;
    GENERAL_NAMES *gens;
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    char *joined;

    if (*v == '\0') {
        perr(c, "certificate", "san", "empty value");
        return 1;
    }
    joined = p->san ? enr_aprintf("%s,%s", p->san, v) : enr_strdup(v);
    if (joined == NULL) {
        c->failed = 1;
        return 1;
    }
    /* Validate with OpenSSL's own SAN syntax (the one the CSR uses). */
    X509V3_set_ctx(&v3, NULL, NULL, NULL, NULL, X509V3_CTX_TEST);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, v);
    if (ext == NULL) {
        perr(c, "certificate", "san",
             "'%s' is not a list of DNS:name, email:addr, IP:address or URI:uri", v);
        enr_ssl_errors();
        free(joined);
        return 1;
    }
    gens = X509V3_EXT_d2i(ext);
    if (gens == NULL || sk_GENERAL_NAME_num(gens) == 0)
        perr(c, "certificate", "san", "'%s' names nothing", v);
    GENERAL_NAMES_free(gens);
    X509_EXTENSION_free(ext);
    free(p->san);
    p->san = joined;
    return 1;
}

/* A distinguished name "CN=alice, O=Example Ltd" of [SECTION] KEY into *STR
 * (the text) and *OUT. */
static int
parse_name(parse_ctx *c, const char *section, const char *key, const char *v, char **str,
           X509_NAME **out)
{
    X509_NAME *n;
    char *dup, *save = NULL;

    if (*str != NULL) {
        perr(c, section, key, "given twice");
        return 1;
    }
    n = X509_NAME_new();
    dup = enr_strdup(v);
    if (n == NULL || dup == NULL) {
        c->failed = 1;
        goto done;
    }
    /* "CN=alice, O=Example Ltd" — RDNs separated by commas (or slashes). */
    for (char *t = strtok_r(dup, ",/", &save); t != NULL; t = strtok_r(NULL, ",/", &save)) {
        char *eq, *k, *val;
        while (*t == ' ')
            t++;
        if (*t == '\0')
            continue;
        eq = strchr(t, '=');
        if (eq == NULL) {
            perr(c, section, key, "'%s' is not TYPE=value", t);
            goto done;
        }
        *eq = '\0';
        k = t;
        val = eq + 1;
        for (char *e = eq - 1; e >= k && *e == ' '; e--)
            *e = '\0';
        while (*val == ' ')
            val++;
        if (*val == '\0') {
            perr(c, section, key, "empty value for %s", k);
            goto done;
        }
        if (OBJ_txt2nid(k) == NID_undef) {
            perr(c, section, key, "unknown attribute type '%s'", k);
            goto done;
        }
        if (!X509_NAME_add_entry_by_txt(n, k, MBSTRING_UTF8, (const unsigned char *)val, -1, -1,
                                        0)) {
            perr(c, section, key, "cannot use '%s=%s'", k, val);
            enr_ssl_errors();
            goto done;
        }
    }
    if (X509_NAME_entry_count(n) == 0) {
        perr(c, section, key, "empty subject");
        goto done;
    }
    *str = enr_strdup(v);
    *out = n;
    n = NULL;
done:
    X509_NAME_free(n);
    free(dup);
    return 1;
}

static int
handler(void *user, const char *section, const char *name, const char *value)
{
    parse_ctx *c = user;
    enr_profile *p = c->p;
    long n;
    int b;

#define IS(s, k) (!strcmp(section, s) && !strcmp(name, k))
    if (name == NULL) /* a section header alone */
        goto check_section;
    if (IS("ca", "url")) {
        if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0) {
            perr(c, section, name, "'%s' is not an http:// or https:// URL", value);
            return 1;
        }
        return set_str(c, section, name, &p->url, value);
    }
    if (IS("ca", "protocol")) {
        if (!strcasecmp(value, "scep"))
            p->proto = ENR_PROTO_SCEP;
        else if (!strcasecmp(value, "est"))
            p->proto = ENR_PROTO_EST;
        else if (!strcasecmp(value, "cmp"))
            p->proto = ENR_PROTO_CMP;
        else
            perr(c, section, name, "unknown protocol '%s' (scep, est, cmp)", value);
        return 1;
    }
    if (IS("ca", "est_label")) {
        for (const char *q = value; *q; q++)
            if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
                  (*q >= '0' && *q <= '9') || strchr("-._~", *q))) {
                perr(c, section, name, "'%s' is not a URL path segment (letters, digits, -._~)",
                     value);
                return 1;
            }
        return set_str(c, section, name, &p->est_label, value);
    }
    if (IS("ca", "username"))
        return set_str(c, section, name, &p->username, value);
    if (IS("ca", "bootstrap"))
        return set_str(c, section, name, &p->bootstrap, value);
    if (IS("ca", "reference"))
        return set_str(c, section, name, &p->reference, value);
    if (IS("ca", "recipient"))
        return parse_name(c, section, name, value, &p->recipient, &p->recipient_name);
    if (IS("ca", "implicit_confirm")) {
        if (parse_bool(value, &b) != 0)
            perr(c, section, name, "'%s' is not true or false", value);
        else
            p->implicit_confirm = b;
        return 1;
    }
    if (IS("ca", "anchors"))
        return set_path(c, section, name, &p->anchors, value);
    if (IS("ca", "secret_file"))
        return set_path(c, section, name, &p->secret_file, value);
    if (IS("ca", "secret") || IS("ca", "challenge") || IS("ca", "password")) {
        perr(c, section, name, "secrets are never written in a profile; use secret_file");
        return 1;
    }
    if (IS("ca", "poll_interval")) {
        if (parse_duration(value, &n) != 0 || n < 1 || n > ENR_DAY)
            perr(c, section, name, "'%s' is not a duration between 1s and 1d", value);
        else
            p->poll_interval = (int)n;
        return 1;
    }
    if (IS("ca", "poll_max")) {
        if (parse_int(value, 0, 1000, &n) != 0)
            perr(c, section, name, "'%s' is not a number 0..1000", value);
        else
            p->poll_max = (int)n;
        return 1;
    }
    if (IS("ca", "timeout")) {
        if (parse_duration(value, &n) != 0 || n < 1 || n > 3600)
            perr(c, section, name, "'%s' is not a duration between 1s and 1h", value);
        else
            p->http_timeout = (int)n;
        return 1;
    }
    if (IS("certificate", "subject"))
        return parse_name(c, section, name, value, &p->subject, &p->subject_name);
    if (IS("certificate", "san"))
        return add_san(c, value);
    if (IS("certificate", "key_type")) {
        if (!strcasecmp(value, "rsa"))
            p->key_type = ENR_KEY_RSA;
        else if (!strcasecmp(value, "ec"))
            p->key_type = ENR_KEY_EC;
        else
            perr(c, section, name, "unknown key type '%s' (rsa, ec)", value);
        p->key_set |= ENR_KEYSET_TYPE;
        return 1;
    }
    if (IS("certificate", "key_size")) {
        if (parse_int(value, 2048, 8192, &n) != 0 || n % 8 != 0)
            perr(c, section, name, "'%s' is not an RSA size (2048..8192, multiple of 8)", value);
        else
            p->key_bits = (int)n;
        p->key_set |= ENR_KEYSET_SIZE;
        return 1;
    }
    if (IS("certificate", "curve")) {
        if (strcmp(value, "P-256") && strcmp(value, "P-384") && strcmp(value, "P-521"))
            perr(c, section, name, "unknown curve '%s' (P-256, P-384, P-521)", value);
        else {
            p->key_set |= ENR_KEYSET_CURVE;
            return set_str(c, section, name, &p->curve, value);
        }
        return 1;
    }
    if (IS("certificate", "allow_duplicate")) {
        if (parse_bool(value, &b) != 0)
            perr(c, section, name, "'%s' is not true or false", value);
        else
            p->allow_duplicate = b;
        return 1;
    }
    if (IS("certificate", "subject_match")) {
        if (!strcasecmp(value, "exact"))
            p->subject_match = ENR_MATCH_EXACT;
        else if (!strcasecmp(value, "cn"))
            p->subject_match = ENR_MATCH_CN;
        else if (!strcasecmp(value, "any"))
            p->subject_match = ENR_MATCH_ANY;
        else
            perr(c, section, name, "'%s' is not exact, cn or any", value);
        return 1;
    }
    if (IS("certificate", "san_match")) {
        if (!strcasecmp(value, "exact"))
            p->san_match = ENR_MATCH_EXACT;
        else if (!strcasecmp(value, "subset"))
            p->san_match = ENR_MATCH_SUBSET;
        else if (!strcasecmp(value, "any"))
            p->san_match = ENR_MATCH_ANY;
        else
            perr(c, section, name, "'%s' is not exact, subset or any", value);
        return 1;
    }
    if (IS("token", "uri")) {
        if (strncmp(value, "pkcs11:", 7) != 0) {
            perr(c, section, name, "'%s' is not a pkcs11: URI (RFC 7512)", value);
            return 1;
        }
        return set_str(c, section, name, &p->token_uri, value);
    }
    if (IS("token", "module"))
        return set_path(c, section, name, &p->module, value);
    if (IS("token", "pin_file"))
        return set_path(c, section, name, &p->pin_file, value);
    if (IS("token", "pin")) {
        perr(c, section, name, "PINs are never written in a profile; use pin_file");
        return 1;
    }
    if (IS("renewal", "window_days")) {
        if (parse_int(value, 0, 3650, &n) != 0)
            perr(c, section, name, "'%s' is not a number of days (0..3650)", value);
        else
            p->window_days = (int)n;
        return 1;
    }
    if (IS("renewal", "window_fraction")) {
        char *e;
        double d;
        errno = 0;
        d = strtod(value, &e);
        if (errno != 0 || e == value || *e != '\0' || !(d > 0.0 && d < 1.0))
            perr(c, section, name, "'%s' is not a fraction between 0 and 1 (e.g. 0.33)", value);
        else
            p->window_fraction = d;
        return 1;
    }
    if (IS("renewal", "rekey")) {
        if (parse_bool(value, &b) != 0)
            perr(c, section, name, "'%s' is not true or false", value);
        else
            p->rekey = b;
        return 1;
    }
    if (IS("renewal", "grace_period")) {
        if (parse_duration(value, &n) != 0)
            perr(c, section, name, "'%s' is not a duration (e.g. 7d, 12h, 0)", value);
        else
            p->grace_period = n;
        return 1;
    }
    if (IS("renewal", "revocation")) {
        if (enr_parse_revpol(value, &b) != 0)
            perr(c, section, name, "'%s' is not hard, soft or off", value);
        else {
            p->revocation = b;
            c->rev_set = 1;
        }
        return 1;
    }
    if (IS("renewal", "revocation_timeout")) {
        if (parse_duration(value, &n) != 0 || n < 1 || n > 300)
            perr(c, section, name, "'%s' is not a duration between 1s and 5m", value);
        else
            p->revocation_timeout = (int)n;
        return 1;
    }
    if (IS("renewal", "warn_days")) {
        parse_warn_days(c, value);
        return 1;
    }
    if (IS("schedule", "window")) {
        char why[160];
        if (enr_parse_sched_window(value, &p->sched_start, &p->sched_end, why, sizeof(why)) != 0)
            perr(c, section, name, "%s", why);
        return 1;
    }
    if (IS("schedule", "interval")) {
        if (parse_duration(value, &n) != 0 || n < 300 || n > 7 * ENR_DAY)
            perr(c, section, name, "'%s' is not an interval between 5m and 7d", value);
        else
            p->sched_interval = n;
        return 1;
    }
    if (IS("hooks", "post_script"))
        return set_path(c, section, name, &p->post_script, value);
    if (IS("hooks", "notify_command"))
        return set_str(c, section, name, &p->notify_command, value);
    if (IS("hooks", "instructions"))
        return set_path(c, section, name, &p->instructions, value);
#undef IS
check_section:
    if (strcmp(section, "ca") && strcmp(section, "certificate") && strcmp(section, "token") &&
        strcmp(section, "renewal") && strcmp(section, "hooks") && strcmp(section, "schedule")) {
        if (*section == '\0')
            perr(c, NULL, NULL,
                 "'%s' outside a section ([ca], [certificate], [token], "
                 "[renewal], [schedule], [hooks])",
                 name ? name : "");
        else
            perr(c, NULL, NULL, "unknown section [%s]", section);
        return 1;
    }
    if (name != NULL)
        perr(c, NULL, NULL, "unknown key '%s' in [%s]", name, section);
    return 1;
}

static int
missing(const char *file, const char *key, const char *section)
{
    enr_err("%s: missing '%s' in [%s]", file, key, section);
    return 1;
}

/* Credential label and CKA_ID from the URI (object=, id=) or the name. */
static int
cred_from_uri(enr_profile *p)
{
    P11KitUri *uri = p11_kit_uri_new();
    CK_ATTRIBUTE *a;
    int r, rc = -1;

    if (uri == NULL)
        return -1;
    r = p11_kit_uri_parse(p->token_uri, P11_KIT_URI_FOR_ANY, uri);
    if (r != P11_KIT_URI_OK) {
        enr_err("%s: [token] uri: %s", p->path, p11_kit_uri_message(r));
        goto done;
    }
    if (p->module == NULL && p11_kit_uri_get_module_path(uri) != NULL)
        p->module = enr_strdup(p11_kit_uri_get_module_path(uri));
    if (p->pin_file == NULL && p11_kit_uri_get_pin_source(uri) != NULL) {
        const char *ps = p11_kit_uri_get_pin_source(uri);
        if (strncmp(ps, "file:", 5) == 0)
            ps += 5;
        p->pin_file = enr_strdup(ps);
    }
    if (p11_kit_uri_get_pin_value(uri) != NULL) {
        enr_err("%s: [token] uri: pin-value is not accepted; use pin-source or pin_file", p->path);
        goto done;
    }
    a = p11_kit_uri_get_attribute(uri, CKA_LABEL);
    if (a != NULL && a->ulValueLen > 0)
        p->label = strndup(a->pValue, a->ulValueLen);
    else
        p->label = enr_strdup(p->name);
    a = p11_kit_uri_get_attribute(uri, CKA_ID);
    if (a != NULL && a->ulValueLen > 0) {
        if (a->ulValueLen > sizeof(p->id) - 2) {
            enr_err("%s: [token] uri: id= is longer than %zu bytes", p->path, sizeof(p->id) - 2);
            goto done;
        }
        memcpy(p->id, a->pValue, a->ulValueLen);
        p->id_len = a->ulValueLen;
    } else {
        /* Stable per profile: the first 16 bytes of SHA-256("evertoken-enroll:" name). */
        unsigned char md[32];
        char *s = enr_aprintf("evertoken-enroll:%s", p->name);
        if (s == NULL || !EVP_Digest(s, strlen(s), md, NULL, EVP_sha256(), NULL)) {
            free(s);
            goto done;
        }
        free(s);
        memcpy(p->id, md, 16);
        p->id_len = 16;
    }
    if (p->label == NULL)
        goto done;
    if (strlen(p->label) >= strlen(PENDING_SUFFIX) &&
        !strcmp(p->label + strlen(p->label) - strlen(PENDING_SUFFIX), PENDING_SUFFIX)) {
        enr_err("%s: [token] uri: the object label may not end in \"%s\" (reserved for "
                "renewals in progress)",
                p->path, PENDING_SUFFIX);
        goto done;
    }
    rc = 0;
done:
    p11_kit_uri_free(uri);
    return rc;
}

static int
check_file(const char *profile, const char *section, const char *key, const char *path)
{
    struct stat sb;

    if (path == NULL)
        return 0;
    if (stat(path, &sb) != 0) {
        enr_err("%s: [%s] %s: %s: %s", profile, section, key, path, strerror(errno));
        return 1;
    }
    if (!S_ISREG(sb.st_mode)) {
        enr_err("%s: [%s] %s: %s is not a regular file", profile, section, key, path);
        return 1;
    }
    return 0;
}

enr_rc
enr_profile_load(const char *path, enr_profile **out)
{
    parse_ctx c;
    enr_profile *p;
    const char *base, *slash;
    size_t blen;
    int r, bad = 0;

    *out = NULL;
    memset(&c, 0, sizeof(c));
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return ENR_E_FAIL;
    p->path = enr_strdup(path);
    slash = strrchr(path, '/');
    base = slash ? slash + 1 : path;
    blen = strlen(base);
    if (blen > 5 && !strcmp(base + blen - 5, ".conf"))
        blen -= 5;
    p->name = strndup(base, blen);
    c.dir = slash ? strndup(path, (size_t)(slash - path)) : NULL;
    p->poll_interval = 60;
    p->poll_max = 5;
    p->http_timeout = 30;
    p->key_type = ENR_KEY_RSA;
    p->window_days = -1;
    p->window_fraction = -1.0;
    p->sched_start = p->sched_end = -1;
    p->rekey = 1;
    p->grace_period = 7L * ENR_DAY;
    p->warn_days[0] = 30;
    p->warn_days[1] = 10;
    p->n_warn = 2;
    p->revocation_timeout = ENR_REVOCATION_TIMEOUT;
    c.file = path;
    c.p = p;
    c.fp = fopen(path, "r");
    if (c.fp == NULL) {
        enr_err("%s: %s", path, strerror(errno));
        goto fail;
    }
    r = ini_parse_stream(reader, &c, handler, &c);
    fclose(c.fp);
    if (r > 0 && !c.failed) {
        /* inih's own syntax errors (no '=' or ']'). */
        c.line = r;
        perr(&c, NULL, NULL, "syntax error (expected [section] or key = value)");
    } else if (r < 0) {
        enr_err("%s: cannot parse (out of memory)", path);
        goto fail;
    }
    if (c.failed)
        goto fail;
    /* Required keys and cross-checks. */
    if (p->url == NULL)
        bad |= missing(path, "url", "ca");
    if (p->proto == 0)
        p->proto = ENR_PROTO_SCEP;
    if (p->anchors == NULL)
        bad |= missing(path, "anchors", "ca");
    if (p->subject == NULL)
        bad |= missing(path, "subject", "certificate");
    if (p->token_uri == NULL)
        bad |= missing(path, "uri", "token");
    if (bad)
        goto fail;
    /* What the protocol itself needs (proto/ *.c). */
    if (enr_proto_get(p->proto)->check(p, path) != ENR_OK)
        goto fail;
    if (p->proto != ENR_PROTO_EST && (p->est_label != NULL || p->username != NULL)) {
        enr_err("%s: [ca] %s: only for protocol = est", path,
                p->est_label != NULL ? "est_label" : "username");
        goto fail;
    }
    if (!enr_proto_get(p->proto)->bootstrap && p->bootstrap != NULL) {
        enr_err("%s: [ca] bootstrap: only for protocol = est or cmp", path);
        goto fail;
    }
    if (p->proto != ENR_PROTO_CMP &&
        (p->reference != NULL || p->recipient != NULL || p->implicit_confirm)) {
        enr_err("%s: [ca] %s: only for protocol = cmp", path,
                p->reference != NULL   ? "reference"
                : p->recipient != NULL ? "recipient"
                                       : "implicit_confirm");
        goto fail;
    }
    if (p->username != NULL && p->secret_file == NULL) {
        enr_err("%s: [ca] username: the password is read from secret_file, which is missing", path);
        goto fail;
    }
    if (p->key_type == ENR_KEY_RSA && p->curve != NULL) {
        enr_err("%s: [certificate] curve: only for key_type = ec", path);
        goto fail;
    }
    if (p->key_type == ENR_KEY_EC && p->key_bits != 0) {
        enr_err("%s: [certificate] key_size: only for key_type = rsa (use curve)", path);
        goto fail;
    }
    if (!c.rev_set) {
        /* The global default: the service's environment, else soft. */
        const char *env = getenv("EVERTOKEN_ENROLL_REVOCATION");
        int v = ENR_REVPOL_SOFT;
        if (env != NULL && *env != '\0' && enr_parse_revpol(env, &v) != 0) {
            enr_err("%s: EVERTOKEN_ENROLL_REVOCATION='%s' is not hard, soft or off (the default "
                    "of [renewal] revocation)",
                    path, env);
            goto fail;
        }
        p->revocation = v;
    }
    if (p->subject_match == ENR_MATCH_CN &&
        X509_NAME_get_index_by_NID(p->subject_name, NID_commonName, -1) < 0) {
        enr_err("%s: [certificate] subject_match: cn needs a CN in the subject", path);
        goto fail;
    }
    if (p->key_bits == 0)
        p->key_bits = 2048;
    if (p->key_type == ENR_KEY_EC && p->curve == NULL)
        p->curve = enr_strdup("P-256");
    if (p->window_days < 0 && p->window_fraction < 0)
        p->window_fraction = 1.0 / 3.0;
    bad |= check_file(path, "ca", "anchors", p->anchors);
    bad |= check_file(path, "ca", "secret_file", p->secret_file);
    bad |= check_file(path, "hooks", "post_script", p->post_script);
    bad |= check_file(path, "hooks", "instructions", p->instructions);
    if (bad)
        goto fail;
    if (cred_from_uri(p) != 0)
        goto fail;
    if (p->module == NULL) {
        const char *env = getenv("EVERTOKEN_MODULE");
        /* The default's bare name, resolved against this program's own
         * library path (et_modpath.h): libp11 dlopens it from its own
         * library, whose RUNPATH is not ours. */
        p->module = et_module_resolve(env && *env ? env : EVERTOKEN_DEFAULT_MODULE);
        if (p->module == NULL) {
            enr_err("out of memory");
            goto fail;
        }
    }
    free(c.dir);
    *out = p;
    return ENR_OK;
fail:
    free(c.dir);
    enr_profile_free(p);
    return ENR_E_CONFIG;
}

void
enr_profile_free(enr_profile *p)
{
    if (p == NULL)
        return;
    free(p->name);
    free(p->path);
    free(p->url);
    free(p->anchors);
    free(p->secret_file);
    free(p->est_label);
    free(p->username);
    free(p->bootstrap);
    free(p->reference);
    free(p->recipient);
    X509_NAME_free(p->recipient_name);
    free(p->subject);
    X509_NAME_free(p->subject_name);
    free(p->san);
    free(p->curve);
    free(p->token_uri);
    free(p->module);
    free(p->pin_file);
    free(p->label);
    free(p->post_script);
    free(p->notify_command);
    free(p->instructions);
    free(p);
}

char *
enr_profile_dir(const char *override)
{
    const char *e;

    if (override != NULL)
        return enr_strdup(override);
    e = getenv("EVERTOKEN_ENROLL_PROFILES");
    if (e != NULL && *e != '\0')
        return enr_strdup(e);
    e = getenv("XDG_CONFIG_HOME");
    if (e != NULL && *e == '/')
        return enr_aprintf("%s/evertoken/profiles", e);
    e = getenv("HOME");
    if (e == NULL || *e != '/') {
        enr_err("cannot find the profile directory: neither XDG_CONFIG_HOME nor HOME is set");
        return NULL;
    }
    return enr_aprintf("%s/.config/evertoken/profiles", e);
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

enr_rc
enr_profile_load_dir(const char *dir, enr_profile ***out, size_t *n, size_t *bad)
{
    DIR *d;
    struct dirent *de;
    char **names = NULL;
    size_t nn = 0;
    enr_profile **v = NULL;

    *out = NULL;
    *n = 0;
    *bad = 0;
    d = opendir(dir);
    if (d == NULL) {
        if (errno == ENOENT)
            return ENR_OK; /* no profiles yet */
        enr_err("cannot read the profile directory %s: %s", dir, strerror(errno));
        return ENR_E_CONFIG;
    }
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        char **nv;
        if (l <= 5 || strcmp(de->d_name + l - 5, ".conf") != 0 || de->d_name[0] == '.')
            continue;
        nv = realloc(names, (nn + 1) * sizeof(*names));
        if (nv == NULL)
            break;
        names = nv;
        names[nn] = enr_aprintf("%s/%s", dir, de->d_name);
        if (names[nn] != NULL)
            nn++;
    }
    closedir(d);
    if (nn > 0)
        qsort(names, nn, sizeof(*names), cmp_str);
    v = calloc(nn + 1, sizeof(*v));
    for (size_t i = 0; i < nn; i++) {
        enr_profile *p = NULL;
        if (v != NULL && enr_profile_load(names[i], &p) == ENR_OK)
            v[(*n)++] = p;
        else
            (*bad)++;
        free(names[i]);
    }
    free(names);
    *out = v;
    return v != NULL ? ENR_OK : ENR_E_FAIL;
}

void
enr_profile_free_all(enr_profile **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        enr_profile_free(v[i]);
    free(v);
}

time_t
enr_profile_window_start(const enr_profile *p, time_t nb, time_t na)
{
    time_t start = na, t;

    if (p->window_days >= 0) {
        t = na - (time_t)p->window_days * ENR_DAY;
        if (t < start)
            start = t;
    }
    if (p->window_fraction > 0) {
        double life = difftime(na, nb);
        t = na - (time_t)llround(life * p->window_fraction);
        if (t < start)
            start = t;
    }
    return start;
}
