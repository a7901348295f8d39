/*
 * drift.c — profile changes that the current certificate no longer follows.
 *
 * Each check compares the credential's certificate with the profile as it is
 * now: the subject (under subject_match), the SANs (under san_match), and
 * the key type, RSA size and EC curve where the profile file fixes them. A
 * changed subject needs a new enrollment (SCEP RenewalReq, EST re-enrollment
 * and CMP kur keep the subject of the certificate they renew); changed SANs
 * or key parameters are asked for in a renewal with a new key (or a new
 * enrollment when rekey = no and the key must change). A change of the
 * anchors file (its SHA-256, kept in STATE/certs/PROFILE/anchors.sha256)
 * revalidates the certificate: one that no longer chains is replaced.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>

#include "chain.h"
#include "drift.h"

/* The key parameters the profile fixes differ from PK's: why into WHY. */
static int
key_differs(const enr_profile *p, EVP_PKEY *pk, char *why, size_t n)
{
    int is_rsa = EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA;
    int is_ec = EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC;
    char group[64] = "";

    if ((p->key_set & ENR_KEYSET_TYPE) &&
        ((p->key_type == ENR_KEY_RSA && !is_rsa) || (p->key_type == ENR_KEY_EC && !is_ec))) {
        snprintf(why, n, "the profile asks for an %s key, the certificate has %s",
                 p->key_type == ENR_KEY_RSA ? "RSA" : "EC",
                 EVP_PKEY_get0_type_name(pk) ? EVP_PKEY_get0_type_name(pk) : "another type");
        return 1;
    }
    if ((p->key_set & ENR_KEYSET_SIZE) && is_rsa && p->key_bits > 0 &&
        EVP_PKEY_get_bits(pk) != p->key_bits) {
        snprintf(why, n, "the profile asks for RSA-%d, the certificate has RSA-%d", p->key_bits,
                 EVP_PKEY_get_bits(pk));
        return 1;
    }
    if ((p->key_set & ENR_KEYSET_CURVE) && is_ec && p->curve != NULL &&
        EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       NULL) == 1) {
        int want = EC_curve_nist2nid(p->curve), got = OBJ_sn2nid(group);
        if (want == NID_undef)
            want = OBJ_sn2nid(p->curve);
        if (want != NID_undef && got != want) {
            snprintf(why, n, "the profile asks for curve %s, the certificate has %s", p->curve,
                     group);
            return 1;
        }
    }
    ERR_clear_error();
    return 0;
}

int
enr_drift(const enr_profile *p, X509 *cert, char *why, size_t n)
{
    int subject_ok;

    /* The subject alone first (a profile copy that ignores the SANs). */
    {
        enr_profile q = *p;
        q.san_match = ENR_MATCH_ANY;
        subject_ok = enr_names_match(&q, cert, 0);
    }
    if (!subject_ok) {
        char got[256];
        X509_NAME_oneline(X509_get_subject_name(cert), got, sizeof(got));
        snprintf(why, n, "the profile's subject changed (certificate %s, profile %s)", got,
                 p->subject);
        return ENR_DRIFT_ENROLL;
    }
    if (!enr_names_match(p, cert, 0)) {
        snprintf(why, n, "the profile's subject alternative names changed (now %s)",
                 p->san ? p->san : "none");
        return ENR_DRIFT_RENEW;
    }
    if (key_differs(p, X509_get0_pubkey(cert), why, n))
        return p->rekey ? ENR_DRIFT_RENEW : ENR_DRIFT_ENROLL;
    return ENR_DRIFT_NONE;
}

/* ---- Anchors -------------------------------------------------------------- */

int
enr_cert_chains(enr_state *st, enr_token *t, const enr_profile *p, X509 *cert,
                STACK_OF(X509) * anchors, time_t now)
{
    STACK_OF(X509) *pool = enr_chain_token_certs(t), *chain = NULL;
    int ok = enr_chain_build(st, p, cert, pool, anchors, now, &chain) == ENR_OK;

    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(pool, X509_free);
    return ok;
}

/* SHA-256 of the anchors file as hex into OUT (65 bytes); -1 if unreadable. */
static int
anchors_hash(const enr_profile *p, char *out)
{
    unsigned char *d = NULL, md[32];
    size_t len = 0;
    unsigned int mdlen = 0;

    if (enr_read_file(p->anchors, &d, &len) != 0)
        return -1;
    if (EVP_Digest(d, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        free(d);
        return -1;
    }
    free(d);
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int
enr_anchors_changed(enr_state *st, const enr_profile *p)
{
    char *path = enr_chain_path(st, p, "anchors.sha256"), now[65];
    unsigned char *kept = NULL;
    size_t len = 0;
    int changed = 0;

    if (path != NULL && anchors_hash(p, now) == 0 && enr_read_file(path, &kept, &len) == 0)
        changed = len < 64 || memcmp(kept, now, 64) != 0;
    free(kept);
    free(path);
    return changed;
}

void
enr_anchors_record(enr_state *st, const enr_profile *p)
{
    char *dir = enr_aprintf("%s/certs/%s", enr_state_dir(st), p->name);
    char *path = enr_chain_path(st, p, "anchors.sha256"), h[65];

    if (dir != NULL && path != NULL && anchors_hash(p, h) == 0 && enr_mkdir_private(dir) == 0 &&
        enr_write_file(path, h, 64) != 0)
        enr_warn("profile %s: cannot record the anchors' fingerprint in %s", p->name, path);
    free(dir);
    free(path);
}
