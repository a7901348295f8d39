/*
 * dir.c — where token files live and how they are named, EVERTOKEN_KDF,
 * and the constant error strings.
 */
#include <dirent.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ks_int.h"

const char *
ks_strerror(ks_rv rv)
{
    switch (rv) {
    case KS_OK:
        return "success";
    case KS_E_ARGS:
        return "invalid arguments";
    case KS_E_NOMEM:
        return "out of memory";
    case KS_E_IO:
        return "input/output error";
    case KS_E_PERM:
        return "unsafe file or directory permissions";
    case KS_E_CORRUPT:
        return "keystore damaged or not a keystore";
    case KS_E_VERSION:
        return "keystore written by a newer version";
    case KS_E_TAMPERED:
        return "integrity check failed";
    case KS_E_PIN_INCORRECT:
        return "wrong PIN";
    case KS_E_PIN_LOCKED:
        return "PIN locked";
    case KS_E_PIN_LEN:
        return "PIN length out of range";
    case KS_E_PIN_NOT_INITIALIZED:
        return "user PIN not initialised";
    case KS_E_NOT_LOGGED_IN:
        return "not logged in";
    case KS_E_NOT_FOUND:
        return "not found";
    case KS_E_BUSY:
        return "keystore busy";
    case KS_E_EXISTS:
        return "file exists";
    case KS_E_CRYPTO:
        return "cryptographic failure";
    case KS_E_FULL:
        return "file system full";
    }
    return "unknown error";
}

/* ---- EVERTOKEN_KDF ------------------------------------------------------ */

static int
parse_u64(const char *s, const char *end, uint64_t *out)
{
    unsigned long long v;
    char *e;

    if (s == end || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &e, 10);
    if (errno != 0 || e != end)
        return -1;
    *out = v;
    return 0;
}

ks_rv
ks_kdf_from_env(ks_kdf_params *out)
{
    const char *v = getenv("EVERTOKEN_KDF");
    const char *colon;
    ks_kdf_params p = {0, 0}, chk;

    if (out == NULL)
        return KS_E_ARGS;
    memset(out, 0, sizeof(*out));
    if (v == NULL || *v == '\0')
        return KS_OK;
    if (strcmp(v, "fast") == 0) {
        p.opslimit = crypto_pwhash_OPSLIMIT_MIN;
        p.memlimit = crypto_pwhash_MEMLIMIT_MIN;
    } else if (strcmp(v, "interactive") == 0) {
        p.opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
        p.memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    } else if (strcmp(v, "moderate") == 0) {
        p.opslimit = crypto_pwhash_OPSLIMIT_MODERATE;
        p.memlimit = crypto_pwhash_MEMLIMIT_MODERATE;
    } else if (strcmp(v, "sensitive") == 0) {
        p.opslimit = crypto_pwhash_OPSLIMIT_SENSITIVE;
        p.memlimit = crypto_pwhash_MEMLIMIT_SENSITIVE;
    } else if ((colon = strchr(v, ':')) != NULL) {
        if (parse_u64(v, colon, &p.opslimit) != 0 ||
            parse_u64(colon + 1, colon + strlen(colon), &p.memlimit) != 0 || p.opslimit == 0 ||
            p.memlimit == 0)
            return KS_E_ARGS;
    } else {
        return KS_E_ARGS;
    }
    if (ks_kdf_check(&p, &chk) != KS_OK)
        return KS_E_ARGS;
    *out = p;
    return KS_OK;
}

/* ---- token directory ---------------------------------------------------- */

static _Thread_local char dir_err[512];

struct conf_ctx {
    char *token_dir;
    int bad; /* handler-detected problem */
};

static int
conf_handler(void *user, const char *section, const char *name, const char *value)
{
    struct conf_ctx *c = user;

    if (strcmp(section, "evertoken") != 0 || strcmp(name, "token_dir") != 0)
        return 1; /* other sections and keys belong to other components */
    if (value == NULL || *value == '\0' || c->token_dir != NULL) {
        c->bad = 1;
        return 0;
    }
    c->token_dir = strdup(value);
    if (c->token_dir == NULL) {
        c->bad = 2;
        return 0;
    }
    return 1;
}

/* Heap copy of "$A/B" if $A is set to an absolute path, else NULL. */
static char *
env_path(const char *var, const char *suffix)
{
    const char *e = getenv(var);
    char *s = NULL;

    if (e == NULL || e[0] != '/') /* XDG: relative values are ignored */
        return NULL;
    if (asprintf(&s, "%s/%s", e, suffix) < 0)
        return NULL;
    return s;
}

/* Expand a leading "~/" in a configured directory. */
static char *
expand_home(const char *v, const char **err)
{
    const char *home = getenv("HOME");
    char *s = NULL;

    if (v[0] == '~' && v[1] == '/') {
        if (home == NULL || home[0] != '/') {
            *err = "token_dir starts with ~/ but HOME is not set";
            return NULL;
        }
        if (asprintf(&s, "%s%s", home, v + 1) < 0)
            return NULL;
        return s;
    }
    if (v[0] != '/') {
        *err = "token_dir in the config file must be an absolute path";
        return NULL;
    }
    return strdup(v);
}

char *
ks_token_dir(const char **err)
{
    static const char *dummy;
    struct conf_ctx c = {NULL, 0};
    const char *e;
    char *conf = NULL, *out = NULL;
    int rc;

    if (err == NULL)
        err = &dummy;
    *err = NULL;
    e = getenv("EVERTOKEN_DIR");
    if (e != NULL && *e != '\0') {
        if (e[0] != '/') {
            *err = "EVERTOKEN_DIR must be an absolute path";
            return NULL;
        }
        out = strdup(e);
        if (out == NULL)
            *err = "out of memory";
        return out;
    }
    e = getenv("EVERTOKEN_CONF");
    if (e != NULL && *e != '\0')
        conf = strdup(e);
    else if ((conf = env_path("XDG_CONFIG_HOME", "evertoken/evertoken.conf")) == NULL)
        conf = env_path("HOME", ".config/evertoken/evertoken.conf");
    if (conf != NULL) {
        FILE *f = fopen(conf, "r");

        if (f == NULL && errno != ENOENT) {
            snprintf(dir_err, sizeof(dir_err), "cannot read config file %s: %s", conf,
                     strerror(errno));
            *err = dir_err;
            goto done;
        }
        if (f != NULL) {
            struct stat st;

            if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
                fclose(f);
                snprintf(dir_err, sizeof(dir_err), "config file %s is not a regular file", conf);
                *err = dir_err;
                goto done;
            }
            rc = ini_parse_file(f, conf_handler, &c);
            fclose(f);
            if (rc != 0 || c.bad) {
                if (c.bad == 2)
                    snprintf(dir_err, sizeof(dir_err), "out of memory");
                else if (c.bad)
                    snprintf(dir_err, sizeof(dir_err),
                             "config file %s: [evertoken] token_dir is empty or repeated", conf);
                else if (rc > 0)
                    snprintf(dir_err, sizeof(dir_err), "config file %s: malformed at line %d", conf,
                             rc);
                else
                    snprintf(dir_err, sizeof(dir_err), "config file %s: cannot be parsed", conf);
                *err = dir_err;
                goto done;
            }
            if (c.token_dir != NULL) {
                out = expand_home(c.token_dir, err);
                if (out == NULL && *err == NULL)
                    *err = "out of memory";
                goto done;
            }
        }
    }
    out = env_path("XDG_DATA_HOME", "evertoken");
    if (out == NULL)
        out = env_path("HOME", ".local/share/evertoken");
    if (out == NULL)
        *err = "neither XDG_DATA_HOME nor HOME is set to an absolute path";
done:
    free(c.token_dir);
    free(conf);
    return out;
}

char *
ks_token_path(const char *dir, uint32_t slot)
{
    char *s = NULL;

    if (dir == NULL || *dir == '\0' || slot > KS_SLOT_MAX)
        return NULL;
    if (asprintf(&s, "%s/token-%u.db", dir, (unsigned)slot) < 0)
        return NULL;
    return s;
}

/* "token-<N>.db": N decimal without sign, leading zeros or spaces (so one
 * slot has exactly one file name), at most KS_SLOT_MAX. */
static int
parse_token_name(const char *name, uint32_t *slot)
{
    static const char pre[] = "token-", suf[] = ".db";
    const char *d = name + sizeof(pre) - 1;
    unsigned long v;
    char *end;

    if (strncmp(name, pre, sizeof(pre) - 1) != 0)
        return -1;
    if (*d < '0' || *d > '9' || (*d == '0' && d[1] != '.'))
        return -1;
    errno = 0;
    v = strtoul(d, &end, 10);
    if (errno != 0 || end == d || strcmp(end, suf) != 0 || v > KS_SLOT_MAX)
        return -1;
    *slot = (uint32_t)v;
    return 0;
}

int
ks_is_token_file(const char *path)
{
    const char *base = strrchr(path, '/');
    uint32_t slot;

    return parse_token_name(base != NULL ? base + 1 : path, &slot) == 0;
}

static int
u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

ks_rv
ks_dir_scan(const char *dir, uint32_t **ids, size_t *n)
{
    uint32_t *v = NULL, *nv, slot;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    DIR *d;

    if (dir == NULL || ids == NULL || n == NULL)
        return KS_E_ARGS;
    *ids = NULL;
    *n = 0;
    d = opendir(dir);
    if (d == NULL)
        return (errno == ENOENT || errno == ENOTDIR) ? KS_OK : KS_E_IO;
    while ((de = readdir(d)) != NULL) {
        if (parse_token_name(de->d_name, &slot) != 0)
            continue;
        if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 8;
            nv = realloc(v, cap * sizeof(*v));
            if (nv == NULL) {
                free(v);
                closedir(d);
                return KS_E_NOMEM;
            }
            v = nv;
        }
        v[cnt++] = slot;
    }
    closedir(d);
    if (cnt > 1)
        qsort(v, cnt, sizeof(*v), u32_cmp);
    *ids = v;
    *n = cnt;
    return KS_OK;
}
