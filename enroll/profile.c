/*
 * profile.c — enrollment profiles: one INI file per credential. Loading a
 * profile: its defaults, its keys read (profile_keys.c: the key table and
 * the INI reading), the required keys and the checks across keys, the
 * credential's label and CKA_ID from the token URI; the profile directory.
 * The format is documented in docs/enrollment.md ("Profiles").
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <p11-kit/uri.h>

#include "et_modpath.h"
#include "enr_int.h"
#include "proto/proto.h"
#include "schedule.h"

#ifndef EVERTOKEN_DEFAULT_MODULE
#define EVERTOKEN_DEFAULT_MODULE "libevertoken.so"
#endif

#define PENDING_SUFFIX " (pending)"

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

/* A new profile for the file PATH: its name, the defaults of every key. */
static enr_profile *
profile_new(const char *path)
{
    enr_profile *p = calloc(1, sizeof(*p));
    const char *base, *slash;
    size_t blen;

    if (p == NULL)
        return NULL;
    p->path = enr_strdup(path);
    slash = strrchr(path, '/');
    base = slash ? slash + 1 : path;
    blen = strlen(base);
    if (blen > 5 && !strcmp(base + blen - 5, ".conf"))
        blen -= 5;
    p->name = strndup(base, blen);
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
    return p;
}

/* Required keys, and keys that only go with a protocol or key type. */
static int
check_keys(enr_profile *p, const char *path)
{
    int bad = 0;

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
        return -1;
    /* What the protocol itself needs (proto/ *.c). */
    if (enr_proto_get(p->proto)->check(p, path) != ENR_OK)
        return -1;
    if (p->proto != ENR_PROTO_ACME && p->acme != NULL) {
        enr_err("%s: [acme]: only for protocol = acme", path);
        return -1;
    }
    if (p->proto != ENR_PROTO_EST && (p->est_label != NULL || p->username != NULL)) {
        enr_err("%s: [ca] %s: only for protocol = est", path,
                p->est_label != NULL ? "est_label" : "username");
        return -1;
    }
    if (!enr_proto_get(p->proto)->bootstrap && p->bootstrap != NULL) {
        enr_err("%s: [ca] bootstrap: only for protocol = est or cmp", path);
        return -1;
    }
    if (p->proto != ENR_PROTO_CMP &&
        (p->reference != NULL || p->recipient != NULL || p->implicit_confirm)) {
        enr_err("%s: [ca] %s: only for protocol = cmp", path,
                p->reference != NULL   ? "reference"
                : p->recipient != NULL ? "recipient"
                                       : "implicit_confirm");
        return -1;
    }
    if (p->username != NULL && p->secret_file == NULL) {
        enr_err("%s: [ca] username: the password is read from secret_file, which is missing", path);
        return -1;
    }
    if (p->key_type == ENR_KEY_RSA && p->curve != NULL) {
        enr_err("%s: [certificate] curve: only for key_type = ec", path);
        return -1;
    }
    if (p->key_type == ENR_KEY_EC && p->key_bits != 0) {
        enr_err("%s: [certificate] key_size: only for key_type = rsa (use curve)", path);
        return -1;
    }
    return 0;
}

/* Defaults that depend on other keys or the environment, the files the
 * profile names, the credential's label and ID, the module. */
static int
complete(enr_profile *p, const char *path, int rev_set)
{
    int bad = 0;

    if (!rev_set) {
        /* The global default: the service's environment, else soft. */
        const char *env = getenv("EVERTOKEN_ENROLL_REVOCATION");
        int v = ENR_REVPOL_SOFT;
        if (env != NULL && *env != '\0' && enr_parse_revpol(env, &v) != 0) {
            enr_err("%s: EVERTOKEN_ENROLL_REVOCATION='%s' is not hard, soft or off (the default "
                    "of [renewal] revocation)",
                    path, env);
            return -1;
        }
        p->revocation = v;
    }
    if (p->subject_match == ENR_MATCH_CN &&
        X509_NAME_get_index_by_NID(p->subject_name, NID_commonName, -1) < 0) {
        enr_err("%s: [certificate] subject_match: cn needs a CN in the subject", path);
        return -1;
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
    if (bad || cred_from_uri(p) != 0)
        return -1;
    if (p->module == NULL) {
        const char *env = getenv("EVERTOKEN_MODULE");
        /* The default's bare name, resolved against this program's own
         * library path (et_modpath.h): libp11 dlopens it from its own
         * library, whose RUNPATH is not ours. */
        p->module = et_module_resolve(env && *env ? env : EVERTOKEN_DEFAULT_MODULE);
        if (p->module == NULL) {
            enr_err("out of memory");
            return -1;
        }
    }
    return 0;
}

enr_rc
enr_profile_load(const char *path, enr_profile **out)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path)) : NULL;
    enr_profile *p = profile_new(path);
    int rev_set = 0;

    *out = NULL;
    if (p == NULL) {
        free(dir);
        return ENR_E_FAIL;
    }
    if (enr_profile_parse(path, dir, p, &rev_set) != 0 || check_keys(p, path) != 0 ||
        complete(p, path, rev_set) != 0) {
        free(dir);
        enr_profile_free(p);
        return ENR_E_CONFIG;
    }
    free(dir);
    *out = p;
    return ENR_OK;
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
    enr_acme_conf_free(p->acme);
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
