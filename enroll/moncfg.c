/*
 * moncfg.c — the monitor settings file (docs/monitoring.md): [metrics]
 * (the Prometheus textfile), [mail] (SMTP server, recipients, digest) and
 * one [watch NAME] section per monitored-only certificate source. Separate
 * from the profiles: it is about the machine, not one credential.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "mon.h"

static enr_moncfg *current;

void
enr_moncfg_set(enr_moncfg *c)
{
    current = c;
}

const enr_moncfg *
enr_moncfg_get(void)
{
    return current;
}

char *
enr_moncfg_default_path(void)
{
    const char *e = getenv("EVERTOKEN_ENROLL_CONFIG");

    if (e != NULL && *e != '\0')
        return enr_strdup(e);
    e = getenv("XDG_CONFIG_HOME");
    if (e != NULL && *e == '/')
        return enr_aprintf("%s/evertoken/monitor.conf", e);
    e = getenv("HOME");
    if (e != NULL && *e == '/')
        return enr_aprintf("%s/.config/evertoken/monitor.conf", e);
    return NULL;
}

typedef struct mparse {
    enr_moncfg *c;
    const char *path;
    int line;
    int failed;
} mparse;

static void merr(mparse *m, const char *section, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
merr(mparse *m, const char *section, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    enr_err("%s:%d: [%s] %s: %s", m->path, m->line, section, key, msg);
    m->failed = 1;
}

static int
int_in(const char *v, long lo, long hi, int *out)
{
    char *end;
    long n;

    errno = 0;
    n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < lo || n > hi)
        return -1;
    *out = (int)n;
    return 0;
}

static int
yes_no(const char *v, int *out)
{
    if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0"))
        *out = 0;
    else
        return -1;
    return 0;
}

static void
set_str(char **f, const char *v)
{
    free(*f);
    *f = enr_strdup(v);
}

static int
add_to(mparse *m, const char *v)
{
    char *dup = enr_strdup(v), *save = NULL;
    enr_moncfg *c = m->c;

    for (char *t = strtok_r(dup, ", ", &save); t != NULL; t = strtok_r(NULL, ", ", &save)) {
        const char *a = !strncasecmp(t, "mailto:", 7) ? t + 7 : t;
        char **nv;
        if (strchr(a, '@') == NULL || strpbrk(a, "<>\r\n") != NULL) {
            merr(m, "mail", "to", "'%s' is not a mail address (mailto:user@host)", t);
            break;
        }
        nv = realloc(c->mail_to, (c->n_mail_to + 1) * sizeof(*nv));
        if (nv == NULL)
            break;
        c->mail_to = nv;
        c->mail_to[c->n_mail_to++] = enr_strdup(a);
    }
    free(dup);
    return 1;
}

static int
mail_key(mparse *m, const char *name, const char *v)
{
    enr_moncfg *c = m->c;
    const char *section = "mail";

#define IS(s, k) (!strcmp(section, s) && !strcmp(name, k))
    if (IS("mail", "smtp_url")) {
        if (strncmp(v, "smtp://", 7) && strncmp(v, "smtps://", 8))
            merr(m, "mail", name, "'%s' is not smtp://HOST[:PORT] or smtps://HOST[:PORT]", v);
        set_str(&c->smtp_url, v);
    } else if (IS("mail", "from")) {
        if (strchr(v, '@') == NULL || strpbrk(v, "<>\r\n") != NULL)
            merr(m, "mail", name, "'%s' is not a mail address", v);
        set_str(&c->mail_from, v);
    } else if (IS("mail", "to")) {
        add_to(m, v);
    } else if (IS("mail", "user")) {
        set_str(&c->smtp_user, v);
    } else if (IS("mail", "password_file")) {
        set_str(&c->smtp_password_file, v);
    } else if (IS("mail", "anchors")) {
        set_str(&c->smtp_anchors, v);
    } else if (IS("mail", "starttls")) {
        if (yes_no(v, &c->smtp_starttls) != 0)
            merr(m, "mail", name, "'%s' is not yes or no", v);
    } else if (IS("mail", "events")) {
        if (!strcmp(v, "none"))
            c->mail_events = 0;
        else if (!strcmp(v, "problems"))
            c->mail_events = 1;
        else if (!strcmp(v, "all"))
            c->mail_events = 2;
        else
            merr(m, "mail", name, "'%s' is not none, problems or all", v);
    } else if (IS("mail", "digest")) {
        if (yes_no(v, &c->digest) != 0)
            merr(m, "mail", name, "'%s' is not yes or no", v);
    } else if (IS("mail", "digest_time")) {
        if (sscanf(v, "%d:%d", &c->digest_hour, &c->digest_min) != 2 || c->digest_hour < 0 ||
            c->digest_hour > 23 || c->digest_min < 0 || c->digest_min > 59)
            merr(m, "mail", name, "'%s' is not HH:MM (UTC)", v);
    } else if (IS("mail", "timeout")) {
        if (int_in(v, 1, 600, &c->mail_timeout) != 0)
            merr(m, "mail", name, "'%s' is not a number of seconds (1..600)", v);
    } else {
        merr(m, "mail", name, "%s", "unknown key");
    }
    return 1;
}

/* "host:port" or "[v6]:port" into W->host, W->port. */
static int
split_hostport(enr_watch *w, const char *v)
{
    const char *colon;

    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        w->host = strndup(v + 1, (size_t)(close - v - 1));
        colon = close + 1;
    } else {
        colon = strrchr(v, ':');
        if (colon == NULL || colon == v)
            return -1;
        w->host = strndup(v, (size_t)(colon - v));
    }
    w->port = enr_strdup(colon + 1);
    return w->port[0] != '\0' && strspn(w->port, "0123456789") == strlen(w->port) ? 0 : -1;
}

static int
watch_source(mparse *m, enr_watch *w, const char *v)
{
    struct stat sb;

    set_str(&w->source, v);
    if (!strncmp(v, "pkcs11:", 7)) {
        w->kind = ENR_WATCH_TOKEN;
    } else if (!strncmp(v, "tls://", 6)) {
        w->kind = ENR_WATCH_TLS;
        if (split_hostport(w, v + 6) != 0)
            merr(m, "watch", "source", "'%s' is not tls://HOST:PORT", v);
    } else if (v[0] == '/') {
        w->kind = stat(v, &sb) == 0 && S_ISDIR(sb.st_mode) ? ENR_WATCH_DIR : ENR_WATCH_FILE;
    } else {
        merr(m, "watch", "source",
             "'%s' is not a PKCS#11 URI, an absolute file or directory path or tls://HOST:PORT", v);
    }
    return 1;
}

static int
warn_days(mparse *m, enr_watch *w, const char *v)
{
    char *dup = enr_strdup(v), *save = NULL;

    w->n_warn = 0;
    for (char *t = strtok_r(dup, ", ", &save); t != NULL; t = strtok_r(NULL, ", ", &save)) {
        int d;
        if (int_in(t, 1, 3650, &d) != 0 || w->n_warn == 8) {
            merr(m, "watch", "warn_days", "'%s' is not a number of days (1..3650, at most 8)", t);
            break;
        }
        w->warn_days[w->n_warn++] = d;
    }
    free(dup);
    for (int i = 0; i < w->n_warn; i++)
        for (int j = i + 1; j < w->n_warn; j++)
            if (w->warn_days[j] > w->warn_days[i]) {
                int t = w->warn_days[i];
                w->warn_days[i] = w->warn_days[j];
                w->warn_days[j] = t;
            }
    return 1;
}

static enr_watch *
watch_entry(mparse *m, const char *name)
{
    enr_moncfg *c = m->c;
    enr_watch *nv;

    for (size_t i = 0; i < c->n_watch; i++)
        if (!strcmp(c->watch[i].name, name))
            return &c->watch[i];
    nv = realloc(c->watch, (c->n_watch + 1) * sizeof(*nv));
    if (nv == NULL)
        return NULL;
    c->watch = nv;
    nv = &c->watch[c->n_watch++];
    memset(nv, 0, sizeof(*nv));
    nv->name = enr_strdup(name);
    nv->warn_days[0] = 30;
    nv->warn_days[1] = 14;
    nv->warn_days[2] = 7;
    nv->warn_days[3] = 1;
    nv->n_warn = 4;
    nv->revocation = ENR_REVPOL_SOFT;
    nv->revocation_timeout = ENR_REVOCATION_TIMEOUT;
    nv->timeout = 10;
    return nv;
}

static int
watch_key(mparse *m, const char *wname, const char *name, const char *v)
{
    const char *section = "watch";
    enr_watch *w = watch_entry(m, wname);

    if (w == NULL) {
        m->failed = 1;
        return 0;
    }
    if (IS("watch", "source"))
        return watch_source(m, w, v);
    if (IS("watch", "sni"))
        set_str(&w->sni, v);
    else if (IS("watch", "module"))
        set_str(&w->module, v);
    else if (IS("watch", "anchors"))
        set_str(&w->anchors, v);
    else if (IS("watch", "expect")) {
        if (strncmp(v, "sha256:", 7) && strncmp(v, "subject:", 8))
            merr(m, "watch", name, "'%s' is not sha256:HEX or subject:DN", v);
        set_str(&w->expect, v);
    } else if (IS("watch", "warn_days"))
        return warn_days(m, w, v);
    else if (IS("watch", "revocation")) {
        if (enr_parse_revpol(v, &w->revocation) != 0)
            merr(m, "watch", name, "'%s' is not hard, soft or off", v);
    } else if (IS("watch", "revocation_timeout")) {
        if (int_in(v, 1, 300, &w->revocation_timeout) != 0)
            merr(m, "watch", name, "'%s' is not a number of seconds (1..300)", v);
    } else if (IS("watch", "timeout")) {
        if (int_in(v, 1, 300, &w->timeout) != 0)
            merr(m, "watch", name, "'%s' is not a number of seconds (1..300)", v);
    } else
        merr(m, "watch", name, "%s", "unknown key");
    return 1;
}

static int
handler(void *user, const char *section, const char *name, const char *v)
{
    mparse *m = user;

    if (name == NULL) /* a section header alone */
        return 1;
    if (IS("metrics", "metrics_file")) {
        if (v[0] != '/')
            merr(m, "metrics", name, "'%s' is not an absolute path", v);
        set_str(&m->c->metrics_file, v);
        return 1;
    }
    if (!strcmp(section, "mail"))
        return mail_key(m, name, v);
    if (!strncmp(section, "watch ", 6) && section[6] != '\0')
        return watch_key(m, section + 6, name, v);
    merr(m, section, name, "%s",
         !strcmp(section, "watch") ? "a watch section needs a name: [watch NAME]"
                                   : "unknown section or key");
    return 1;
}
#undef IS

/* ini's line numbers: a reader that counts. */
typedef struct lreader {
    FILE *f;
    mparse *m;
} lreader;

static char *
reader(char *buf, int n, void *arg)
{
    lreader *r = arg;
    char *s = fgets(buf, n, r->f);

    if (s != NULL)
        r->m->line++;
    return s;
}

static enr_rc
validate(mparse *m)
{
    enr_moncfg *c = m->c;

    m->line = 0;
    if ((c->n_mail_to > 0) != (c->smtp_url != NULL) || (c->smtp_url && c->mail_from == NULL)) {
        enr_err("%s: [mail] needs smtp_url, from and to together", m->path);
        return ENR_E_CONFIG;
    }
    if (c->smtp_password_file != NULL && c->smtp_user == NULL) {
        enr_err("%s: [mail] password_file needs user", m->path);
        return ENR_E_CONFIG;
    }
    for (size_t i = 0; i < c->n_watch; i++)
        if (c->watch[i].kind == 0) {
            enr_err("%s: [watch %s] has no source", m->path, c->watch[i].name);
            return ENR_E_CONFIG;
        }
    return m->failed ? ENR_E_CONFIG : ENR_OK;
}

enr_rc
enr_moncfg_load(const char *path, int explicit_path, enr_moncfg **out)
{
    enr_moncfg *c = calloc(1, sizeof(*c));
    mparse m = {c, path, 0, 0};
    lreader r = {NULL, &m};
    enr_rc rc;

    *out = NULL;
    if (c == NULL)
        return ENR_E_FAIL;
    c->smtp_starttls = 1;
    c->mail_events = 1;
    c->digest_hour = 7;
    c->mail_timeout = 30;
    c->path = path ? enr_strdup(path) : NULL;
    r.f = path ? fopen(path, "re") : NULL;
    if (r.f == NULL) {
        if (path != NULL && (explicit_path || errno != ENOENT)) {
            enr_err("cannot read the monitor settings %s: %s", path, strerror(errno));
            enr_moncfg_free(c);
            return ENR_E_CONFIG;
        }
        *out = c;
        return ENR_OK;
    }
    if (ini_parse_stream(reader, &r, handler, &m) != 0)
        m.failed = 1;
    fclose(r.f);
    rc = validate(&m);
    if (rc != ENR_OK) {
        enr_moncfg_free(c);
        return rc;
    }
    *out = c;
    return ENR_OK;
}

/* The new file: the old text, then the section. */
static char *
with_section(const char *path, const char *name, const char *source, int nkv, char **kv,
             size_t *len)
{
    unsigned char *old = NULL;
    size_t olen = 0;
    char *text = NULL;
    FILE *f;

    if (access(path, F_OK) == 0 && enr_read_file(path, &old, &olen) != 0)
        return NULL;
    f = open_memstream(&text, len);
    if (f == NULL) {
        free(old);
        return NULL;
    }
    if (olen > 0)
        fprintf(f, "%s%s\n", (char *)old, old[olen - 1] == '\n' ? "" : "\n");
    fprintf(f, "[watch %s]\nsource = %s\n", name, source);
    for (int i = 0; i < nkv; i++) {
        const char *eq = strchr(kv[i], '=');
        fprintf(f, "%.*s = %s\n", (int)(eq - kv[i]), kv[i], eq + 1);
    }
    fclose(f);
    free(old);
    return text;
}

enr_rc
enr_moncfg_add_watch(const char *path, const char *name, const char *source, int nkv, char **kv)
{
    enr_moncfg *c = NULL;
    char *text, *tmp;
    size_t len = 0;
    enr_rc rc;

    if (name[0] == '\0' || strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        "0123456789._-") != strlen(name)) {
        enr_err("watch add: the name '%s' may hold letters, digits, '.', '_' and '-' only", name);
        return ENR_E_CONFIG;
    }
    for (int i = -1; i < nkv; i++) {
        const char *v = i < 0 ? source : kv[i];
        if (strpbrk(v, "\r\n") != NULL || (i >= 0 && (strchr(v, '=') == NULL || v[0] == '='))) {
            enr_err("watch add: '%s' is not KEY=VALUE on one line", v);
            return ENR_E_CONFIG;
        }
    }
    const enr_moncfg *cur = enr_moncfg_get();
    for (size_t i = 0; cur != NULL && i < cur->n_watch; i++)
        if (!strcmp(cur->watch[i].name, name)) {
            enr_err("watch add: %s already has a [watch %s]", path, name);
            return ENR_E_CONFIG;
        }
    text = with_section(path, name, source, nkv, kv, &len);
    tmp = enr_aprintf("%s.new.%ld", path, (long)getpid());
    if (text == NULL || tmp == NULL || enr_write_file(tmp, text, len) != 0) {
        free(text);
        free(tmp);
        return ENR_E_FAIL;
    }
    /* The whole new file must load before it replaces the old one. */
    rc = enr_moncfg_load(tmp, 1, &c);
    if (rc == ENR_OK && rename(tmp, path) != 0) {
        enr_err("cannot rename %s to %s: %s", tmp, path, strerror(errno));
        rc = ENR_E_FAIL;
    }
    if (rc != ENR_OK)
        unlink(tmp);
    enr_moncfg_free(c);
    free(text);
    free(tmp);
    return rc;
}

void
enr_moncfg_free(enr_moncfg *c)
{
    if (c == NULL)
        return;
    free(c->path);
    free(c->metrics_file);
    free(c->smtp_url);
    free(c->mail_from);
    for (size_t i = 0; i < c->n_mail_to; i++)
        free(c->mail_to[i]);
    free(c->mail_to);
    free(c->smtp_user);
    free(c->smtp_password_file);
    free(c->smtp_anchors);
    for (size_t i = 0; i < c->n_watch; i++) {
        enr_watch *w = &c->watch[i];
        free(w->name);
        free(w->source);
        free(w->host);
        free(w->port);
        free(w->sni);
        free(w->module);
        free(w->anchors);
        free(w->expect);
    }
    free(c->watch);
    free(c);
}
