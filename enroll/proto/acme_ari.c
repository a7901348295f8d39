/*
 * acme_ari.c — ACME Renewal Information (RFC 9773): the CA tells when to
 * renew.
 *
 * For the current certificate the helper GETs DIRECTORY.renewalInfo/CERTID
 * (CERTID = base64url(authorityKeyIdentifier) "." base64url(serial), the
 * serial's DER content octets) and reads suggestedWindow {start, end}. The
 * renewal time is a random point inside the window, drawn once per window
 * (a moved window draws again); a window already past (the CA pulled it
 * forward, e.g. after a mass revocation) means at once. The answer's
 * Retry-After says when to ask again; until then the stored answer is used.
 * The answer is kept in STATE_DIR/acme-ari-PROFILE.json (0600) so that
 * `status` can show it. Without an answer (no renewalInfo in the directory,
 * an error) the profile's own window applies. The new order names the
 * certificate it replaces (`replaces`, acme_order.c).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "acme.h"

#define ARI_DEFAULT_RETRY (6 * 3600) /* no Retry-After: ask again in 6 h */

char *
enr_acme_cert_id(X509 *cert)
{
    AUTHORITY_KEYID *ak = X509_get_ext_d2i(cert, NID_authority_key_identifier, NULL, NULL);
    BIGNUM *bn = ak ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL) : NULL;
    unsigned char sb[80];
    int n;
    char *a = NULL, *b = NULL, *id = NULL;

    if (ak == NULL || ak->keyid == NULL || bn == NULL || BN_is_negative(bn) ||
        BN_num_bytes(bn) > 70)
        goto done;
    /* DER content of a positive INTEGER: a leading zero when the top bit
     * is set. */
    n = BN_num_bytes(bn);
    sb[0] = 0;
    BN_bn2bin(bn, sb + 1);
    if (n == 0 || (sb[1] & 0x80))
        n++;
    a = enr_b64url(ASN1_STRING_get0_data(ak->keyid), (size_t)ASN1_STRING_length(ak->keyid));
    b = enr_b64url(sb + (n > BN_num_bytes(bn) ? 0 : 1), (size_t)n);
    if (a != NULL && b != NULL)
        id = enr_aprintf("%s.%s", a, b);
done:
    AUTHORITY_KEYID_free(ak);
    BN_free(bn);
    free(a);
    free(b);
    return id;
}

/* RFC 3339 date-time ("2025-06-01T12:00:00Z", fractions and offsets). */
static int
rfc3339(const char *s, time_t *out)
{
    struct tm tm;
    const char *q;
    long off = 0;

    memset(&tm, 0, sizeof(tm));
    q = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (q == NULL)
        return -1;
    if (*q == '.')
        for (q++; *q >= '0' && *q <= '9'; q++)
            ;
    if (*q == 'Z' || *q == 'z') {
        q++;
    } else if (*q == '+' || *q == '-') {
        int h, m;
        if (sscanf(q + 1, "%2d:%2d", &h, &m) != 2)
            return -1;
        off = (h * 3600L + m * 60L) * (*q == '+' ? 1 : -1);
        q += 6;
    } else {
        return -1;
    }
    if (*q != '\0')
        return -1;
    *out = timegm(&tm) - off;
    return 0;
}

int
enr_acme_parse_window(json_t *j, time_t *s, time_t *e)
{
    json_t *w = json_object_get(j, "suggestedWindow");

    if (!json_is_object(w) || rfc3339(enr_acme_str(w, "start"), s) != 0 ||
        rfc3339(enr_acme_str(w, "end"), e) != 0 || *e <= *s)
        return -1;
    return 0;
}

static char *
ari_path(const char *state_dir, const char *profile)
{
    return enr_aprintf("%s/acme-ari-%s.json", state_dir, profile);
}

int
enr_acme_ari_load(const char *state_dir, const char *profile, enr_acme_ari *r)
{
    char *path = ari_path(state_dir, profile);
    unsigned char *b = NULL;
    size_t n = 0;
    char why[100];
    json_t *j = NULL;
    int rc = -1;

    memset(r, 0, sizeof(*r));
    if (path != NULL && access(path, F_OK) == 0 && enr_read_file(path, &b, &n) == 0 &&
        (j = enr_acme_json(b, n, why, sizeof(why))) != NULL &&
        json_unpack(j, "{s:s, s:I, s:I, s:I, s:I}", "cert_id", &(const char *){NULL}, "start",
                    &r->start, "end", &r->end, "renew_at", &r->renew_at, "next_fetch",
                    &r->next_fetch) == 0) {
        snprintf(r->cert_id, sizeof(r->cert_id), "%s", enr_acme_str(j, "cert_id"));
        snprintf(r->explanation, sizeof(r->explanation), "%s",
                 enr_acme_str(j, "explanation") ? enr_acme_str(j, "explanation") : "");
        rc = 0;
    }
    json_decref(j);
    free(b);
    free(path);
    return rc;
}

static void
ari_save(const char *state_dir, const char *profile, const enr_acme_ari *r)
{
    char *path = ari_path(state_dir, profile);
    json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s}", "cert_id", r->cert_id, "start",
                          (json_int_t)r->start, "end", (json_int_t)r->end, "renew_at",
                          (json_int_t)r->renew_at, "next_fetch", (json_int_t)r->next_fetch,
                          "explanation", r->explanation);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

    if (path == NULL || s == NULL || enr_write_file(path, s, strlen(s)) != 0)
        enr_warn("cannot keep the ACME renewal information in %s", path ? path : "the state");
    free(s);
    json_decref(j);
    free(path);
}

/* A uniformly random time in [START, END). */
static time_t
random_in(time_t start, time_t end)
{
    unsigned long long r = 0;

    if (end <= start)
        return start;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (unsigned long long)start; /* still inside */
    return start + (time_t)(r % (unsigned long long)(end - start));
}

/* GET the window for ID; 0 with R filled (renew_at kept when the window
 * did not move), -1 reported. */
static int
fetch(const enr_profile *p, const char *id, time_t now, enr_acme_ari *r)
{
    enr_acme a;
    enr_acme_ans ans = {.retry_after = -1};
    char *url = NULL;
    time_t s, e;
    int rc = -1;

    if (enr_acme_open(&a, p) != ENR_OK)
        return -1;
    if (a.dir.renewal_info == NULL) {
        enr_debug("profile %s: the CA's directory has no renewalInfo (no ARI)", p->name);
        goto done;
    }
    url = enr_aprintf("%s%s%s", a.dir.renewal_info,
                      a.dir.renewal_info[strlen(a.dir.renewal_info) - 1] == '/' ? "" : "/", id);
    if (url == NULL || enr_acme_get(&a, "renewalInfo", url, &ans) != ENR_OK)
        goto done;
    if (enr_acme_parse_window(ans.json, &s, &e) != 0) {
        enr_err("ACME renewalInfo %s: no valid suggestedWindow (start before end, RFC 3339 "
                "times)",
                url);
        goto done;
    }
    if (strcmp(r->cert_id, id) != 0 || r->start != s || r->end != e) {
        r->renew_at = random_in(s, e);
        enr_info("profile %s: the CA suggests renewing between %s and %s (ARI)", p->name,
                 enr_fmt_time(s, (char[32]){0}, 32), enr_fmt_time(e, (char[32]){0}, 32));
    }
    snprintf(r->cert_id, sizeof(r->cert_id), "%s", id);
    r->start = s;
    r->end = e;
    r->next_fetch = now + (ans.retry_after >= 0 ? ans.retry_after : ARI_DEFAULT_RETRY);
    snprintf(r->explanation, sizeof(r->explanation), "%s",
             enr_acme_str(ans.json, "explanationURL") ? enr_acme_str(ans.json, "explanationURL")
                                                      : "");
    rc = 0;
done:
    free(url);
    enr_acme_ans_clear(&ans);
    enr_acme_close(&a);
    enr_clear_error(); /* ARI is advice: its failure never fails the check */
    return rc;
}

void
enr_acme_renew_at(const enr_profile *p, X509 *cert, const char *state_dir, time_t now, time_t *when)
{
    char *id = enr_acme_cert_id(cert);
    enr_acme_ari r;
    int have;

    if (id == NULL) {
        enr_debug("profile %s: the certificate has no authority key identifier (no ARI)", p->name);
        return;
    }
    have = enr_acme_ari_load(state_dir, p->name, &r) == 0 && !strcmp(r.cert_id, id);
    if (!have)
        memset(&r, 0, sizeof(r));
    if (!have || now >= (time_t)r.next_fetch) {
        if (fetch(p, id, now, &r) == 0) {
            have = 1;
            ari_save(state_dir, p->name, &r);
        }
    } else {
        enr_debug("profile %s: ARI window from the CA kept until %s (Retry-After)", p->name,
                  enr_fmt_time((time_t)r.next_fetch, (char[32]){0}, 32));
    }
    if (have) {
        /* A window already past: at once (renew_at is inside it). */
        *when = (time_t)r.end <= now ? now : (time_t)r.renew_at;
        enr_debug("profile %s: renewal at %s (ARI window %s .. %s)", p->name,
                  enr_fmt_time(*when, (char[32]){0}, 32),
                  enr_fmt_time((time_t)r.start, (char[32]){0}, 32),
                  enr_fmt_time((time_t)r.end, (char[32]){0}, 32));
    }
    free(id);
}

int
enr_acme_ari_window(const char *state_dir, const char *profile, long long *start, long long *end,
                    long long *renew_at)
{
    enr_acme_ari r;

    if (enr_acme_ari_load(state_dir, profile, &r) != 0)
        return 0;
    *start = r.start;
    *end = r.end;
    *renew_at = r.renew_at;
    return 1;
}
