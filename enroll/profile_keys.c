/*
 * profile_keys.c — the keys of an enrollment profile: one table row per
 * [section] key ({section, key, parser, field offset, range, message}), the
 * value parsers, and the INI reading with libinih. The reader wrapper
 * counts lines so every error names FILE:LINE. The format is documented in
 * docs/enrollment.md ("Profiles") and evertoken-enroll.conf(5); the test
 * install.manpages reads the keys from the table's rows. Loading, defaults
 * and the checks across keys: profile.c.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>
#include <openssl/x509v3.h>

#include "enr_int.h"
#include "schedule.h"

typedef struct parse_ctx {
    FILE *fp;
    int line;
    const char *file;
    const char *dir; /* directory of the profile, for relative paths */
    enr_profile *p;
    int failed;
    unsigned seen; /* bit per key, duplicate detection */
    int rev_set;   /* [renewal] revocation given */
} parse_ctx;

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

/* ---- The keys: one row per [section] key -------------------------------- */

typedef struct key_rule key_rule;

/* A key's parser: V is its value; errors go through perr (c->failed). */
typedef void (*key_parser)(parse_ctx *c, const key_rule *k, const char *v);

struct key_rule {
    const char *section;
    const char *key;
    key_parser parse;
    size_t off;       /* the enr_profile field the value goes to (offsetof) */
    size_t off2;      /* a second field: a name's parsed X509_NAME */
    long lo, hi;      /* the range of a number or duration */
    const char *what; /* the error: "'VALUE' is not WHAT", or a refusal */
};

#define FIELD(c, k, type) ((type *)(void *)((char *)(c)->p + (k)->off))

/* Free text (set once, not empty). */
static void
p_str(parse_ctx *c, const key_rule *k, const char *v)
{
    set_str(c, k->section, k->key, FIELD(c, k, char *), v);
}

/* A file, relative to the profile's directory. */
static void
p_path(parse_ctx *c, const key_rule *k, const char *v)
{
    set_path(c, k->section, k->key, FIELD(c, k, char *), v);
}

/* A distinguished name: its text at OFF, the parsed name at OFF2. */
static void
p_name(parse_ctx *c, const key_rule *k, const char *v)
{
    parse_name(c, k->section, k->key, v, FIELD(c, k, char *),
               (X509_NAME **)(void *)((char *)c->p + k->off2));
}

static void
p_bool(parse_ctx *c, const key_rule *k, const char *v)
{
    int b;

    if (parse_bool(v, &b) != 0)
        perr(c, k->section, k->key, "'%s' is not %s", v, k->what);
    else
        *FIELD(c, k, int) = b;
}

/* N, parsed from V (PARSED 0: it was a number or duration), into the int
 * (AS_LONG: long) field of K when it is within K's range; else the error. */
static void
put_number(parse_ctx *c, const key_rule *k, const char *v, int parsed, long n, int as_long)
{
    if (parsed != 0 || n < k->lo || n > k->hi)
        perr(c, k->section, k->key, "'%s' is not %s", v, k->what);
    else if (as_long)
        *FIELD(c, k, long) = n;
    else
        *FIELD(c, k, int) = (int)n;
}

/* A number LO..HI into an int. */
static void
p_int(parse_ctx *c, const key_rule *k, const char *v)
{
    long n = 0;
    int r = parse_int(v, k->lo, k->hi, &n);

    put_number(c, k, v, r, n, 0);
}

/* A duration LO..HI seconds into an int. */
static void
p_dur(parse_ctx *c, const key_rule *k, const char *v)
{
    long n = 0;
    int r = parse_duration(v, &n);

    put_number(c, k, v, r, n, 0);
}

/* A duration LO..HI seconds into a long. */
static void
p_dur_long(parse_ctx *c, const key_rule *k, const char *v)
{
    long n = 0;
    int r = parse_duration(v, &n);

    put_number(c, k, v, r, n, 1);
}

/* [schedule] window = HH:MM-HH:MM (schedule.c). */
static void
p_sched_window(parse_ctx *c, const key_rule *k, const char *v)
{
    char why[160];

    if (enr_parse_sched_window(v, &c->p->sched_start, &c->p->sched_end, why, sizeof(why)) != 0)
        perr(c, k->section, k->key, "%s", why);
}

/* A key that is never accepted (secrets in the profile): WHAT says why. */
static void
p_refuse(parse_ctx *c, const key_rule *k, const char *v)
{
    perr(c, k->section, k->key, "%s", k->what);
}

/* One of NAMES (case-insensitive): its value, or -1. */
static int
pick(const char *v, const char *const *names, const int *values)
{
    for (int i = 0; names[i] != NULL; i++)
        if (!strcasecmp(v, names[i]))
            return values[i];
    return -1;
}

static void
p_url(parse_ctx *c, const key_rule *k, const char *v)
{
    if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
        perr(c, k->section, k->key, "'%s' is not an http:// or https:// URL", v);
        return;
    }
    p_str(c, k, v);
}

static void
p_protocol(parse_ctx *c, const key_rule *k, const char *v)
{
    static const char *const names[] = {"scep", "est", "cmp", "acme", NULL};
    static const int values[] = {ENR_PROTO_SCEP, ENR_PROTO_EST, ENR_PROTO_CMP, ENR_PROTO_ACME};
    int x = pick(v, names, values);

    if (x < 0)
        perr(c, k->section, k->key, "unknown protocol '%s' (scep, est, cmp, acme)", v);
    else
        c->p->proto = x;
}

/* An EST label: one URL path segment. */
static void
p_est_label(parse_ctx *c, const key_rule *k, const char *v)
{
    for (const char *q = v; *q; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
              strchr("-._~", *q))) {
            perr(c, k->section, k->key, "'%s' is not a URL path segment (letters, digits, -._~)",
                 v);
            return;
        }
    p_str(c, k, v);
}

static void
p_san(parse_ctx *c, const key_rule *k, const char *v)
{
    add_san(c, v);
}

static void
p_key_type(parse_ctx *c, const key_rule *k, const char *v)
{
    static const char *const names[] = {"rsa", "ec", NULL};
    static const int values[] = {ENR_KEY_RSA, ENR_KEY_EC};
    int x = pick(v, names, values);

    if (x < 0)
        perr(c, k->section, k->key, "unknown key type '%s' (rsa, ec)", v);
    else
        c->p->key_type = x;
    c->p->key_set |= ENR_KEYSET_TYPE;
}

static void
p_key_size(parse_ctx *c, const key_rule *k, const char *v)
{
    long n;

    if (parse_int(v, 2048, 8192, &n) != 0 || n % 8 != 0)
        perr(c, k->section, k->key, "'%s' is not an RSA size (2048..8192, multiple of 8)", v);
    else
        c->p->key_bits = (int)n;
    c->p->key_set |= ENR_KEYSET_SIZE;
}

static void
p_curve(parse_ctx *c, const key_rule *k, const char *v)
{
    if (strcmp(v, "P-256") && strcmp(v, "P-384") && strcmp(v, "P-521")) {
        perr(c, k->section, k->key, "unknown curve '%s' (P-256, P-384, P-521)", v);
        return;
    }
    c->p->key_set |= ENR_KEYSET_CURVE;
    p_str(c, k, v);
}

static void
p_subject_match(parse_ctx *c, const key_rule *k, const char *v)
{
    static const char *const names[] = {"exact", "cn", "any", NULL};
    static const int values[] = {ENR_MATCH_EXACT, ENR_MATCH_CN, ENR_MATCH_ANY};
    int x = pick(v, names, values);

    if (x < 0)
        perr(c, k->section, k->key, "'%s' is not exact, cn or any", v);
    else
        c->p->subject_match = x;
}

static void
p_san_match(parse_ctx *c, const key_rule *k, const char *v)
{
    static const char *const names[] = {"exact", "subset", "any", NULL};
    static const int values[] = {ENR_MATCH_EXACT, ENR_MATCH_SUBSET, ENR_MATCH_ANY};
    int x = pick(v, names, values);

    if (x < 0)
        perr(c, k->section, k->key, "'%s' is not exact, subset or any", v);
    else
        c->p->san_match = x;
}

static void
p_token_uri(parse_ctx *c, const key_rule *k, const char *v)
{
    if (strncmp(v, "pkcs11:", 7) != 0) {
        perr(c, k->section, k->key, "'%s' is not a pkcs11: URI (RFC 7512)", v);
        return;
    }
    p_str(c, k, v);
}

static void
p_window_fraction(parse_ctx *c, const key_rule *k, const char *v)
{
    char *e;
    double d;

    errno = 0;
    d = strtod(v, &e);
    if (errno != 0 || e == v || *e != '\0' || !(d > 0.0 && d < 1.0))
        perr(c, k->section, k->key, "'%s' is not a fraction between 0 and 1 (e.g. 0.33)", v);
    else
        c->p->window_fraction = d;
}

static void
p_revocation(parse_ctx *c, const key_rule *k, const char *v)
{
    int b;

    if (enr_parse_revpol(v, &b) != 0) {
        perr(c, k->section, k->key, "'%s' is not hard, soft or off", v);
        return;
    }
    c->p->revocation = b;
    c->rev_set = 1;
}

static void
p_warn_days(parse_ctx *c, const key_rule *k, const char *v)
{
    parse_warn_days(c, v);
}

#define F(f)   offsetof(enr_profile, f)
#define TF     "true or false"
#define SECRET "secrets are never written in a profile; use secret_file"
/* Every key a profile may hold (docs/man/evertoken-enroll.conf.5.scd; the
 * test install.manpages reads the keys from these rows). */
static const key_rule keys[] = {
    {"ca", "url", p_url, F(url), 0, 0, 0, NULL},
    {"ca", "protocol", p_protocol, 0, 0, 0, 0, NULL},
    {"ca", "est_label", p_est_label, F(est_label), 0, 0, 0, NULL},
    {"ca", "username", p_str, F(username), 0, 0, 0, NULL},
    {"ca", "bootstrap", p_str, F(bootstrap), 0, 0, 0, NULL},
    {"ca", "reference", p_str, F(reference), 0, 0, 0, NULL},
    {"ca", "recipient", p_name, F(recipient), F(recipient_name), 0, 0, NULL},
    {"ca", "implicit_confirm", p_bool, F(implicit_confirm), 0, 0, 0, TF},
    {"ca", "anchors", p_path, F(anchors), 0, 0, 0, NULL},
    {"ca", "secret_file", p_path, F(secret_file), 0, 0, 0, NULL},
    {"ca", "secret", p_refuse, 0, 0, 0, 0, SECRET},
    {"ca", "challenge", p_refuse, 0, 0, 0, 0, SECRET},
    {"ca", "password", p_refuse, 0, 0, 0, 0, SECRET},
    {"ca", "poll_interval", p_dur, F(poll_interval), 0, 1, ENR_DAY, "a duration between 1s and 1d"},
    {"ca", "poll_max", p_int, F(poll_max), 0, 0, 1000, "a number 0..1000"},
    {"ca", "timeout", p_dur, F(http_timeout), 0, 1, 3600, "a duration between 1s and 1h"},
    {"certificate", "subject", p_name, F(subject), F(subject_name), 0, 0, NULL},
    {"certificate", "san", p_san, 0, 0, 0, 0, NULL},
    {"certificate", "key_type", p_key_type, 0, 0, 0, 0, NULL},
    {"certificate", "key_size", p_key_size, 0, 0, 0, 0, NULL},
    {"certificate", "curve", p_curve, F(curve), 0, 0, 0, NULL},
    {"certificate", "allow_duplicate", p_bool, F(allow_duplicate), 0, 0, 0, TF},
    {"certificate", "subject_match", p_subject_match, 0, 0, 0, 0, NULL},
    {"certificate", "san_match", p_san_match, 0, 0, 0, 0, NULL},
    {"token", "uri", p_token_uri, F(token_uri), 0, 0, 0, NULL},
    {"token", "module", p_path, F(module), 0, 0, 0, NULL},
    {"token", "pin_file", p_path, F(pin_file), 0, 0, 0, NULL},
    {"token", "pin", p_refuse, 0, 0, 0, 0, "PINs are never written in a profile; use pin_file"},
    {"renewal", "window_days", p_int, F(window_days), 0, 0, 3650, "a number of days (0..3650)"},
    {"renewal", "window_fraction", p_window_fraction, 0, 0, 0, 0, NULL},
    {"renewal", "rekey", p_bool, F(rekey), 0, 0, 0, TF},
    {"renewal", "grace_period", p_dur_long, F(grace_period), 0, 0, LONG_MAX,
     "a duration (e.g. 7d, 12h, 0)"},
    {"renewal", "revocation", p_revocation, 0, 0, 0, 0, NULL},
    {"renewal", "revocation_timeout", p_dur, F(revocation_timeout), 0, 1, 300,
     "a duration between 1s and 5m"},
    {"renewal", "warn_days", p_warn_days, 0, 0, 0, 0, NULL},
    {"schedule", "window", p_sched_window, 0, 0, 0, 0, NULL},
    {"schedule", "interval", p_dur_long, F(sched_interval), 0, 300, 7 * ENR_DAY,
     "an interval between 5m and 7d"},
    {"hooks", "post_script", p_path, F(post_script), 0, 0, 0, NULL},
    {"hooks", "notify_command", p_str, F(notify_command), 0, 0, 0, NULL},
    {"hooks", "instructions", p_path, F(instructions), 0, 0, 0, NULL},
};
#undef SECRET
#undef TF
#undef F

static int
handler(void *user, const char *section, const char *name, const char *value)
{
    parse_ctx *c = user;
    int known_section = 0;

    if (!strcmp(section, "acme")) {
        /* [acme]: its keys are ACME's own (proto/acme_conf.c) */
        char why[160];
        if (name != NULL && enr_acme_conf_set(c->p, c->dir, name, value, why, sizeof(why)) != 0)
            perr(c, section, name, "%s", why);
        return 1;
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (strcmp(section, keys[i].section) != 0)
            continue;
        known_section = 1;
        if (name != NULL && !strcmp(name, keys[i].key)) {
            keys[i].parse(c, &keys[i], value);
            return 1;
        }
    }
    if (!known_section) {
        if (*section == '\0')
            perr(c, NULL, NULL,
                 "'%s' outside a section ([ca], [certificate], [token], "
                 "[renewal], [schedule], [hooks])",
                 name ? name : "");
        else
            perr(c, NULL, NULL, "unknown section [%s]", section);
        return 1;
    }
    if (name != NULL) /* NULL: a section header alone */
        perr(c, NULL, NULL, "unknown key '%s' in [%s]", name, section);
    return 1;
}

int
enr_profile_parse(const char *path, const char *dir, enr_profile *p, int *rev_set)
{
    parse_ctx c;
    int r;

    memset(&c, 0, sizeof(c));
    c.file = path;
    c.dir = dir;
    c.p = p;
    c.fp = fopen(path, "r");
    if (c.fp == NULL) {
        enr_err("%s: %s", path, strerror(errno));
        return -1;
    }
    r = ini_parse_stream(reader, &c, handler, &c);
    fclose(c.fp);
    if (r > 0 && !c.failed) {
        /* inih's own syntax errors (no '=' or ']'). */
        c.line = r;
        perr(&c, NULL, NULL, "syntax error (expected [section] or key = value)");
    } else if (r < 0) {
        enr_err("%s: cannot parse (out of memory)", path);
        return -1;
    }
    *rev_set = c.rev_set;
    return c.failed ? -1 : 0;
}
