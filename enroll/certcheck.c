/*
 * certcheck.c — trust anchors, chain validation, the checks every issued
 * certificate passes before it is stored, revocation (OCSP, else CRL; fetched
 * through the HTTP layer, http.c).
 */
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "enr_int.h"

/* ---- Anchors and chains ------------------------------------------------- */

enr_rc
enr_load_anchors(const enr_profile *p, STACK_OF(X509) * *out)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    BIO *b = BIO_new_file(p->anchors, "r");
    X509 *x;

    *out = NULL;
    if (sk == NULL || b == NULL) {
        enr_err("%s: [ca] anchors: cannot read %s", p->path, p->anchors);
        goto fail;
    }
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        sk_X509_push(sk, x);
    ERR_clear_error();
    BIO_free(b);
    b = NULL;
    if (sk_X509_num(sk) == 0) {
        enr_err("%s: [ca] anchors: %s holds no PEM certificate", p->path, p->anchors);
        goto fail;
    }
    *out = sk;
    return ENR_OK;
fail:
    BIO_free(b);
    sk_X509_pop_free(sk, X509_free);
    return ENR_E_CONFIG;
}

enr_rc
enr_verify_chain(X509 *cert, STACK_OF(X509) * untrusted, STACK_OF(X509) * anchors, time_t now,
                 const char *what)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    enr_rc rc = ENR_E_REJECTED;

    if (store == NULL || ctx == NULL)
        goto done;
    for (int i = 0; i < sk_X509_num(anchors); i++)
        X509_STORE_add_cert(store, sk_X509_value(anchors, i));
    if (!X509_STORE_CTX_init(ctx, store, cert, untrusted))
        goto done;
    X509_STORE_CTX_set_time(ctx, 0, now);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY);
    if (X509_verify_cert(ctx) == 1) {
        rc = ENR_OK;
    } else if (what != NULL) {
        char name[256];
        X509_NAME_oneline(X509_get_subject_name(cert), name, sizeof(name));
        enr_err("%s (%s) does not chain to the profile's trust anchors: %s", what, name,
                X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    }
    ERR_clear_error();
done:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return rc;
}

/* ---- Issued-certificate checks ------------------------------------------ */

/* The profile's SANs as GENERAL_NAMES (NULL when none requested). */
static GENERAL_NAMES *
profile_sans(const enr_profile *p)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    GENERAL_NAMES *g;

    if (p->san == NULL)
        return NULL;
    X509V3_set_ctx(&v3, NULL, NULL, NULL, NULL, X509V3_CTX_TEST);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, p->san);
    if (ext == NULL)
        return NULL;
    g = X509V3_EXT_d2i(ext);
    X509_EXTENSION_free(ext);
    return g;
}

/* Entry I of A has an equal entry (type and UTF-8 value) in B not yet used. */
static int
entry_in(const X509_NAME *a, int i, const X509_NAME *b, unsigned char *used)
{
    const X509_NAME_ENTRY *ea = X509_NAME_get_entry(a, i);
    unsigned char *va = NULL;
    int la = ASN1_STRING_to_UTF8(&va, X509_NAME_ENTRY_get_data(ea)), found = 0;

    for (int j = 0; la >= 0 && j < X509_NAME_entry_count(b) && !found; j++) {
        const X509_NAME_ENTRY *eb = X509_NAME_get_entry(b, j);
        unsigned char *vb = NULL;
        int lb;
        if (used[j] || OBJ_cmp(X509_NAME_ENTRY_get_object(ea), X509_NAME_ENTRY_get_object(eb)))
            continue;
        lb = ASN1_STRING_to_UTF8(&vb, X509_NAME_ENTRY_get_data(eb));
        if (lb == la && memcmp(va, vb, (size_t)la) == 0)
            found = used[j] = 1;
        OPENSSL_free(vb);
    }
    OPENSSL_free(va);
    return found;
}

static int
same_name(const X509_NAME *a, const X509_NAME *b)
{
    unsigned char used[64] = {0};
    int n = X509_NAME_entry_count(a);

    if (X509_NAME_cmp(a, b) == 0)
        return 1;
    if (n != X509_NAME_entry_count(b) || n > 64)
        return 0;
    for (int i = 0; i < n; i++)
        if (!entry_in(a, i, b, used))
            return 0;
    return 1;
}

/* The CN entries of A and B are the same (count and values). */
static int
same_cn(const X509_NAME *a, const X509_NAME *b)
{
    unsigned char used[64] = {0};
    int n = 0;

    for (int i = -1; (i = X509_NAME_get_index_by_NID(a, NID_commonName, i)) >= 0;)
        n++;
    for (int i = -1; (i = X509_NAME_get_index_by_NID(b, NID_commonName, i)) >= 0;)
        n--;
    if (n != 0 || X509_NAME_entry_count(b) > 64)
        return 0;
    for (int i = -1; (i = X509_NAME_get_index_by_NID(a, NID_commonName, i)) >= 0;)
        if (!entry_in(a, i, b, used))
            return 0;
    return X509_NAME_get_index_by_NID(a, NID_commonName, -1) >= 0;
}

/* A general name as text ("DNS:a.example") into BUF. */
static const char *
gname(const GENERAL_NAME *g, char *out, size_t n)
{
    BIO *b = BIO_new(BIO_s_mem());
    int k = 0;

    out[0] = '\0';
    if (b != NULL && GENERAL_NAME_print(b, (GENERAL_NAME *)g) > 0) {
        k = BIO_read(b, out, (int)n - 1);
        out[k > 0 ? k : 0] = '\0';
    }
    BIO_free(b);
    for (char *q = out; *q; q++)
        if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f)
            *q = '?';
    return out;
}

static int
has_name(GENERAL_NAMES *set, const GENERAL_NAME *n)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(set); i++)
        if (GENERAL_NAME_cmp(sk_GENERAL_NAME_value(set, i), (GENERAL_NAME *)n) == 0)
            return 1;
    return 0;
}

/*
 * Steps 2 and 3 of enr_check_issued: CERT's subject and SANs are what P
 * asks for under its subject_match and san_match. REPORT: say why not
 * (enr_err); else silent (drift.c compares the current certificate).
 */
int
enr_names_match(const enr_profile *p, X509 *cert, int report)
{
    GENERAL_NAMES *want = NULL, *got = NULL;
    int ok = 0;

    /* 2. Subject as requested (subject_match): exact, the same attributes
     * and values (CAs such as scepserver re-order the RDNs, which is no
     * different request); cn, the requested CN (a CA that keeps only the RDNs
     * its policy allows); any, not compared. */
    if (p->subject_match != ENR_MATCH_ANY &&
        !(p->subject_match == ENR_MATCH_CN
              ? same_cn(X509_get_subject_name(cert), p->subject_name)
              : same_name(X509_get_subject_name(cert), p->subject_name))) {
        char got_s[256];
        X509_NAME_oneline(X509_get_subject_name(cert), got_s, sizeof(got_s));
        if (!report)
            goto done;
        if (p->subject_match == ENR_MATCH_CN)
            enr_err("the issued certificate's subject %s does not carry the requested CN of %s "
                    "(subject_match = cn); the CA changed the common name: check the profile's "
                    "subject, or set subject_match = any in [certificate] to accept any subject",
                    got_s, p->subject);
        else
            enr_err("the issued certificate's subject %s is not the requested %s (subject_match "
                    "= exact); if the CA keeps only some attributes by policy, set subject_match "
                    "= cn (the CN must match) or any in [certificate], or write the subject the "
                    "CA issues",
                    got_s, p->subject);
        goto done;
    }
    /* 3. SANs (san_match): exact, every requested name present and none
     * added; subset, none added (the CA may drop some); any, not compared. */
    want = profile_sans(p);
    got = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; p->san_match == ENR_MATCH_EXACT && i < sk_GENERAL_NAME_num(want); i++)
        if (got == NULL || !has_name(got, sk_GENERAL_NAME_value(want, i))) {
            char n[256];
            if (report)
                enr_err("the issued certificate lacks a requested subject alternative name (%s; "
                        "requested %s) (san_match = exact); if the CA drops names by policy, set "
                        "san_match = subset or any in [certificate]",
                        gname(sk_GENERAL_NAME_value(want, i), n, sizeof(n)), p->san);
            goto done;
        }
    for (int i = 0; p->san_match != ENR_MATCH_ANY && i < sk_GENERAL_NAME_num(got); i++)
        if (want == NULL || !has_name(want, sk_GENERAL_NAME_value(got, i))) {
            char n[256];
            if (report)
                enr_err("the issued certificate carries a subject alternative name that was not "
                        "requested (%s; requested %s) (san_match = %s); set san_match = any in "
                        "[certificate] to accept the names the CA chooses",
                        gname(sk_GENERAL_NAME_value(got, i), n, sizeof(n)),
                        p->san ? p->san : "none",
                        p->san_match == ENR_MATCH_SUBSET ? "subset" : "exact");
            goto done;
        }
    ok = 1;
done:
    GENERAL_NAMES_free(want);
    GENERAL_NAMES_free(got);
    return ok;
}

enr_rc
enr_check_issued(const enr_profile *p, X509 *cert, EVP_PKEY *pub, STACK_OF(X509) * chain,
                 STACK_OF(X509) * anchors, time_t now)
{
    const ASN1_TIME *nb = X509_get0_notBefore(cert), *na = X509_get0_notAfter(cert);
    enr_rc rc = ENR_E_REJECTED;
    int day, sec;

    /* 1. The certificate is for the key we generated (or kept). */
    if (!EVP_PKEY_eq(X509_get0_pubkey(cert), pub)) {
        unsigned char *a = NULL, *b = NULL;
        int la = i2d_PUBKEY(X509_get0_pubkey(cert), &a), lb = i2d_PUBKEY(pub, &b);
        int eq = la > 0 && la == lb && memcmp(a, b, (size_t)la) == 0;
        OPENSSL_free(a);
        OPENSSL_free(b);
        if (!eq) {
            enr_err("the issued certificate is for a different public key than the one in "
                    "the token; refusing it");
            goto done;
        }
    }
    if (!enr_names_match(p, cert, 1))
        goto done;
    /* 4. Validity sane: ordered, already started (5 min skew), not over, not absurd. */
    if (ASN1_TIME_compare(nb, na) >= 0) {
        enr_err("the issued certificate's notAfter is not after its notBefore");
        goto done;
    }
    if (X509_cmp_time(nb, &(time_t){now + 300}) > 0) {
        enr_err("the issued certificate is not valid yet (notBefore in the future)");
        goto done;
    }
    if (X509_cmp_time(na, &(time_t){now}) <= 0) {
        enr_err("the issued certificate has already expired");
        goto done;
    }
    if (ASN1_TIME_diff(&day, &sec, nb, na) && day > 3660) {
        enr_err("the issued certificate's lifetime (%d days) is not plausible", day);
        goto done;
    }
    /* 5. Chains to the profile's anchors at NOW. */
    rc = enr_verify_chain(cert, chain, anchors, now, "the issued certificate");
done:
    return rc;
}

/* ---- Revocation --------------------------------------------------------- */

/* Seconds one OCSP or CRL fetch may take: revocation_timeout, at most the
 * profile's HTTP timeout. */
static int
rev_timeout(const enr_profile *p)
{
    int t = p->revocation_timeout > 0 ? p->revocation_timeout : ENR_REVOCATION_TIMEOUT;
    return p->http_timeout > 0 && p->http_timeout < t ? p->http_timeout : t;
}

static X509 *
find_issuer(X509 *cert, STACK_OF(X509) * anchors)
{
    for (int i = 0; i < sk_X509_num(anchors); i++)
        if (X509_check_issued(sk_X509_value(anchors, i), cert) == X509_V_OK)
            return sk_X509_value(anchors, i);
    return NULL;
}

static enr_rc
check_ocsp(const enr_profile *p, X509 *cert, X509 *issuer, STACK_OF(X509) * anchors,
           const char *url, time_t now, enr_rev *out)
{
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, cert, issuer);
    OCSP_RESPONSE *resp = NULL;
    OCSP_BASICRESP *bs = NULL;
    X509_STORE *store = X509_STORE_new();
    unsigned char *der = NULL, *rb = NULL;
    const unsigned char *pp;
    size_t rl;
    int dl, status, reason;
    ASN1_GENERALIZEDTIME *rev, *thisu, *nextu;
    enr_rc rc = ENR_E_FAIL;

    if (req == NULL || id == NULL || store == NULL || OCSP_request_add0_id(req, id) == NULL)
        goto done;
    id = NULL;
    OCSP_request_add1_nonce(req, NULL, -1);
    dl = i2d_OCSP_REQUEST(req, &der);
    if (dl <= 0)
        goto done;
    rc = enr_http(url, "application/ocsp-request", der, (size_t)dl, rev_timeout(p), &rb, &rl, NULL);
    if (rc != ENR_OK) {
        if (rc == ENR_E_REJECTED)
            rc = ENR_E_NETWORK; /* a broken responder is not a verdict */
        goto done;
    }
    rc = ENR_E_NETWORK;
    pp = rb;
    resp = d2i_OCSP_RESPONSE(NULL, &pp, (long)rl);
    if (resp == NULL || OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL ||
        (bs = OCSP_response_get1_basic(resp)) == NULL) {
        enr_err("OCSP responder %s gave no usable answer", url);
        goto done;
    }
    for (int i = 0; i < sk_X509_num(anchors); i++)
        X509_STORE_add_cert(store, sk_X509_value(anchors, i));
    if (OCSP_basic_verify(bs, anchors, store, OCSP_TRUSTOTHER) <= 0) {
        enr_err("the OCSP answer from %s is not signed by the CA or its responder", url);
        enr_ssl_errors();
        goto done;
    }
    if (OCSP_check_nonce(req, bs) == 0) {
        enr_err("the OCSP answer from %s does not echo our nonce", url);
        goto done;
    }
    id = OCSP_cert_to_id(NULL, cert, issuer);
    if (!OCSP_resp_find_status(bs, id, &status, &reason, &rev, &thisu, &nextu)) {
        enr_err("the OCSP answer from %s does not cover the certificate", url);
        goto done;
    }
    (void)now;
    *out = status == V_OCSP_CERTSTATUS_GOOD      ? ENR_REV_GOOD
           : status == V_OCSP_CERTSTATUS_REVOKED ? ENR_REV_REVOKED
                                                 : ENR_REV_UNKNOWN;
    rc = ENR_OK;
done:
    OCSP_CERTID_free(id);
    OCSP_REQUEST_free(req);
    OCSP_RESPONSE_free(resp);
    OCSP_BASICRESP_free(bs);
    X509_STORE_free(store);
    OPENSSL_free(der);
    free(rb);
    return rc;
}

static enr_rc
check_crl(const enr_profile *p, X509 *cert, X509 *issuer, const char *url, time_t now, enr_rev *out)
{
    unsigned char *rb = NULL;
    const unsigned char *pp;
    size_t rl;
    X509_CRL *crl = NULL;
    X509_REVOKED *r = NULL;
    enr_rc rc;

    rc = enr_http(url, NULL, NULL, 0, rev_timeout(p), &rb, &rl, NULL);
    if (rc != ENR_OK) {
        if (rc == ENR_E_REJECTED)
            rc = ENR_E_NETWORK;
        goto done;
    }
    rc = ENR_E_NETWORK;
    pp = rb;
    crl = d2i_X509_CRL(NULL, &pp, (long)rl);
    if (crl == NULL) {
        BIO *b = BIO_new_mem_buf(rb, (int)rl);
        crl = b ? PEM_read_bio_X509_CRL(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
    }
    if (crl == NULL) {
        enr_err("%s is not a CRL", url);
        goto done;
    }
    if (X509_CRL_verify(crl, X509_get0_pubkey(issuer)) != 1) {
        enr_err("the CRL from %s is not signed by the certificate's issuer", url);
        goto done;
    }
    if (X509_CRL_get0_nextUpdate(crl) != NULL &&
        X509_cmp_time(X509_CRL_get0_nextUpdate(crl), &now) < 0)
        enr_warn("the CRL from %s is past its nextUpdate", url);
    *out = X509_CRL_get0_by_cert(crl, &r, cert) == 1 ? ENR_REV_REVOKED : ENR_REV_GOOD;
    rc = ENR_OK;
done:
    X509_CRL_free(crl);
    free(rb);
    return rc;
}

enr_rc
enr_revocation(const enr_profile *p, X509 *cert, STACK_OF(X509) * anchors, time_t now, enr_rev *out)
{
    STACK_OF(OPENSSL_STRING) *ocsp = X509_get1_ocsp(cert);
    STACK_OF(DIST_POINT) *dps = X509_get_ext_d2i(cert, NID_crl_distribution_points, NULL, NULL);
    X509 *issuer = find_issuer(cert, anchors);
    enr_rc rc = ENR_OK;
    int tried = 0;

    *out = ENR_REV_NONE;
    if (issuer == NULL) {
        enr_warn("revocation: the certificate's issuer is not among the anchors; not checked");
        goto done;
    }
    /* OCSP first; when the responder gives no verdict, the CRL distribution
     * points in turn. At most four sources, each fetch time-limited. */
    if (sk_OPENSSL_STRING_num(ocsp) > 0) {
        tried++;
        rc = check_ocsp(p, cert, issuer, anchors, sk_OPENSSL_STRING_value(ocsp, 0), now, out);
        if (rc != ENR_E_NETWORK)
            goto done;
    }
    for (int i = 0; i < sk_DIST_POINT_num(dps) && tried < 4; i++) {
        DIST_POINT *dp = sk_DIST_POINT_value(dps, i);
        if (dp->distpoint == NULL || dp->distpoint->type != 0)
            continue;
        GENERAL_NAMES *gn = dp->distpoint->name.fullname;
        for (int j = 0; j < sk_GENERAL_NAME_num(gn) && tried < 4; j++) {
            GENERAL_NAME *g = sk_GENERAL_NAME_value(gn, j);
            if (g->type != GEN_URI)
                continue;
            const char *u = (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
            if (strncasecmp(u, "http://", 7) && strncasecmp(u, "https://", 8))
                continue;
            tried++;
            rc = check_crl(p, cert, issuer, u, now, out);
            if (rc != ENR_E_NETWORK)
                goto done;
        }
    }
done:
    X509_email_free(ocsp);
    sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
    return rc;
}
