/*
 * cmpsrv.c — a small CMP CA (RFC 9810, HTTP transfer RFC 9811) for the
 * evertoken-enroll tests, built on OpenSSL's CMP server (OSSL_CMP_SRV_CTX):
 * OpenSSL decodes, validates (protection, transaction id, nonces, proof of
 * possession) and answers every message; this file only decides and issues.
 * HTTP through libmicrohttpd; issuing, index and CRL in testca.c.
 *
 *   cmpsrv --dir DIR [--port N | --port-file F] [--secret-file F]
 *          [--bootstrap-ca FILE] [--pending N] [--implicit-confirm] [--days D]
 *          [--ocsp-url URL] [--crl-url URL|self] [--rollover]
 *          [--misbehave wrong-key|bad-protection|txid|untrusted|garbage|truncated|ctype|big|
 *                       root-impostor]
 *
 * DIR holds ca.pem/ca.key (the CA) and srv.pem/srv.key: the certificate
 * (issued by the CA, digitalSignature) with which the server signs its
 * answers to signature-protected requests. Answers to MAC-protected requests
 * are MAC-protected with the same shared secret (--secret-file). An optional
 * DIR/chain.pem (the CA's own chain up to its root) goes into the extraCerts
 * of every answer carrying a certificate.
 *
 * Policy:
 *  - ir/cr/p10cr: protected by the MAC of --secret-file, or signed by a
 *    certificate this CA issued or (--bootstrap-ca) that bootstrap CA
 *    issued. Unprotected requests are refused (OpenSSL's server).
 *  - kur: its oldCertID must name a certificate this CA issued and did not
 *    revoke, and the request's protection must verify against exactly that
 *    certificate (logged "kur protection verified against old certificate
 *    SERIAL"); the template's subject must be the old certificate's.
 *  - rr: revokes the named certificate this CA issued: index.txt gets the
 *    R line and DIR/ca.crl is rewritten (GET /crl serves it).
 *  - genm (RFC 9483 section 4.3): caCerts answers the issuing CA's
 *    certificate; rootCaCert answers rootCaKeyUpdate — absent, or with
 *    --rollover, when the request names the old root, NewWithNew (DIR/ca2.pem,
 *    a new self-signed CA with the key DIR/ca2.key), NewWithOld and
 *    OldWithNew (the two link certificates, made here). With --rollover the
 *    new key issues every certificate; kur and rr accept certificates of
 *    either key. --misbehave root-impostor signs NewWithOld with a key that
 *    is not the old root's.
 *  - --pending N: certificate requests are answered "waiting" while polls
 *    are left; each pollReq uses one (N in all, over every transaction).
 *    The held request's public key is written to DIR/held-pub.pem.
 *  - --misbehave: wrong-key issues for a fresh key; bad-protection damages
 *    the issued certificate inside the protected answer (protection no
 *    longer verifies); txid answers with another transaction id (properly
 *    re-protected); untrusted re-signs answers with a self-signed impostor
 *    certificate; garbage/truncated/ctype damage the HTTP answer; big
 *    answers with 9 MiB.
 * Every request is logged to DIR/requests.log.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <microhttpd.h>
#include <openssl/asn1t.h>
#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "testca.h"
#include "../../enroll/proto/cmp_asn1.h"

/*
 * OpenSSL 3.0 has no getters for a CRMF certificate template's public key
 * and extensions (3.2 adds OSSL_CRMF_CERTTEMPLATE_get0_publicKey and
 * _get0_extensions), so this test CA re-reads the template's DER with an
 * OpenSSL ASN.1 template of RFC 4211's CertTemplate. The helper itself never
 * decodes CMP: OpenSSL's client does.
 */
typedef struct t_validity {
    ASN1_TIME *notBefore, *notAfter;
} T_VALIDITY;
ASN1_SEQUENCE(T_VALIDITY) = {
    ASN1_EXP_OPT(T_VALIDITY, notBefore, ASN1_TIME, 0),
    ASN1_EXP_OPT(T_VALIDITY, notAfter, ASN1_TIME, 1),
} static_ASN1_SEQUENCE_END(T_VALIDITY) typedef struct t_tmpl {
    ASN1_INTEGER *version, *serialNumber;
    X509_ALGOR *signingAlg;
    X509_NAME *issuer;
    T_VALIDITY *validity;
    X509_NAME *subject;
    X509_PUBKEY *publicKey;
    ASN1_BIT_STRING *issuerUID, *subjectUID;
    STACK_OF(X509_EXTENSION) * extensions;
} T_TMPL;
DECLARE_ASN1_FUNCTIONS(T_TMPL)
ASN1_SEQUENCE(T_TMPL) =
    {
        ASN1_IMP_OPT(T_TMPL, version, ASN1_INTEGER, 0),
        ASN1_IMP_OPT(T_TMPL, serialNumber, ASN1_INTEGER, 1),
        ASN1_IMP_OPT(T_TMPL, signingAlg, X509_ALGOR, 2),
        ASN1_EXP_OPT(T_TMPL, issuer, X509_NAME, 3),
        ASN1_IMP_OPT(T_TMPL, validity, T_VALIDITY, 4),
        ASN1_EXP_OPT(T_TMPL, subject, X509_NAME, 5),
        ASN1_IMP_OPT(T_TMPL, publicKey, X509_PUBKEY, 6),
        ASN1_IMP_OPT(T_TMPL, issuerUID, ASN1_BIT_STRING, 7),
        ASN1_IMP_OPT(T_TMPL, subjectUID, ASN1_BIT_STRING, 8),
        ASN1_IMP_SEQUENCE_OF_OPT(T_TMPL, extensions, X509_EXTENSION, 9),
} ASN1_SEQUENCE_END(T_TMPL) IMPLEMENT_ASN1_FUNCTIONS(T_TMPL)

        static struct {
    tca ca;
    X509 *srv_cert, *impostor;
    EVP_PKEY *srv_key, *impostor_key;
    X509_STORE *trust;
    unsigned char secret[256];
    size_t secret_len;
    int pending, implicit, mac; /* mac: the current request is MAC-protected */
    const char *misbehave;
    OSSL_CMP_SRV_CTX *srv;
    OSSL_CMP_MSG *held; /* request answered "waiting", returned on the last poll */
    X509 *last_issued;
    int rollover;
    X509 *old_ca, *nwo, *own; /* --rollover: the old root, NewWithOld, OldWithNew */
    STACK_OF(X509) * chain;   /* DIR/chain.pem: the CA's chain, sent with every certificate */
} cfg;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void
logf_(const char *fmt, ...)
{
    char path[512], line[1024];
    va_list ap;
    FILE *fp;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "cmpsrv: %s\n", line);
    snprintf(path, sizeof(path), "%s/requests.log", cfg.ca.dir);
    fp = fopen(path, "a");
    if (fp != NULL) {
        fprintf(fp, "%s\n", line);
        fclose(fp);
    }
}

static int
misbehave(const char *what)
{
    return cfg.misbehave != NULL && !strcmp(cfg.misbehave, what);
}

static const char *
body_name(int t)
{
    static const char *n[] = {"ir",       "ip",      "cr",     "cp",     "p10cr", "popdecc",
                              "popdecr",  "kur",     "kup",    "krr",    "krp",   "rr",
                              "rp",       "ccr",     "ccp",    "ckuann", "cann",  "rann",
                              "crlann",   "pkiconf", "nested", "genm",   "genp",  "error",
                              "certConf", "pollReq", "pollRep"};
    return t >= 0 && t < (int)(sizeof(n) / sizeof(n[0])) ? n[t] : "?";
}

/* NAME is the issuing CA's, or with --rollover the old root's. */
static int
our_issuer(const X509_NAME *name)
{
    return X509_NAME_cmp(name, X509_get_subject_name(cfg.ca.ca)) == 0 ||
           (cfg.old_ca != NULL && X509_NAME_cmp(name, X509_get_subject_name(cfg.old_ca)) == 0);
}

static OSSL_CMP_PKISI *
reject(int fail, const char *text)
{
    logf_("refused: %s", text);
    return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_rejection, 1 << fail, text);
}

/* kur: the old certificate is this CA's, unrevoked, and signed the request. */
static OSSL_CMP_PKISI *
check_kur(const OSSL_CMP_MSG *req, const OSSL_CRMF_MSG *crm, const X509_NAME *subject)
{
    const OSSL_CRMF_CERTID *cid = OSSL_CRMF_MSG_get0_regCtrl_oldCertID(crm);
    OSSL_CMP_CTX *v = NULL;
    OSSL_CMP_PKISI *si = NULL;
    char *ser = NULL;
    X509 *old = NULL;
    int st;

    if (cid == NULL)
        return reject(OSSL_CMP_PKIFAILUREINFO_badCertId, "kur without oldCertID");
    ser = tca_serial_hex(OSSL_CRMF_CERTID_get0_serialNumber(cid));
    if (ser == NULL || !our_issuer(OSSL_CRMF_CERTID_get0_issuer(cid)) ||
        (st = tca_status(&cfg.ca, ser)) == 0 || (old = tca_issued(&cfg.ca, ser)) == NULL) {
        si = reject(OSSL_CMP_PKIFAILUREINFO_badCertId,
                    "kur for a certificate this CA did not issue");
        goto done;
    }
    if (st == 'R') {
        logf_("kur refused: old certificate %s is revoked", ser);
        si = reject(OSSL_CMP_PKIFAILUREINFO_certRevoked, "the old certificate is revoked");
        goto done;
    }
    v = OSSL_CMP_CTX_new(NULL, NULL);
    if (v == NULL || !OSSL_CMP_CTX_set1_srvCert(v, old) || !OSSL_CMP_validate_msg(v, req)) {
        ERR_clear_error();
        si = reject(OSSL_CMP_PKIFAILUREINFO_badMessageCheck,
                    "kur protection does not verify against the old certificate");
        goto done;
    }
    logf_("kur protection verified against old certificate %s", ser);
    if (subject != NULL && X509_NAME_cmp(subject, X509_get_subject_name(old)) != 0)
        si = reject(OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                    "kur subject differs from the old certificate's");
done:
    OSSL_CMP_CTX_free(v);
    X509_free(old);
    OPENSSL_free(ser);
    return si;
}

static OSSL_CMP_PKISI *
on_cert_request(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int rid, const OSSL_CRMF_MSG *crm,
                const X509_REQ *p10cr, X509 **cert, STACK_OF(X509) * *chain,
                STACK_OF(X509) * *capubs)
{
    int type = OSSL_CMP_MSG_get_bodytype(req);
    const X509_NAME *subject = NULL;
    EVP_PKEY *pub = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    T_TMPL *t = NULL;
    OSSL_CMP_PKISI *si = NULL;
    char name[512], *ser;

    (void)srv;
    (void)rid;
    (void)capubs;
    *cert = NULL;
    /* As field CAs do: the chain up to the root in extraCerts. */
    if (cfg.chain != NULL)
        *chain = X509_chain_up_ref(cfg.chain);
    if (p10cr != NULL) {
        subject = X509_REQ_get_subject_name(p10cr);
        pub = X509_REQ_get0_pubkey((X509_REQ *)p10cr);
        exts = X509_REQ_get_extensions((X509_REQ *)p10cr);
    } else {
        unsigned char *der = NULL;
        const unsigned char *q;
        int n = i2d_OSSL_CRMF_CERTTEMPLATE(OSSL_CRMF_MSG_get0_tmpl(crm), &der);
        q = der;
        t = n > 0 ? d2i_T_TMPL(NULL, &q, n) : NULL;
        OPENSSL_free(der);
        if (t == NULL || t->publicKey == NULL || t->subject == NULL)
            return reject(OSSL_CMP_PKIFAILUREINFO_badCertTemplate,
                          "template without subject or public key");
        subject = t->subject;
        pub = X509_PUBKEY_get0(t->publicKey);
        exts = t->extensions;
        t->extensions = NULL;
    }
    if (pub == NULL) {
        si = reject(OSSL_CMP_PKIFAILUREINFO_badCertTemplate, "no usable public key");
        goto done;
    }
    if (cfg.held == NULL && cfg.pending > 0) {
        /* Held: its public key goes to DIR/held-pub.pem (the tests issue a
         * certificate for it elsewhere, e.g. for OpenSSL's mock server). */
        char path[600];
        FILE *fp;
        snprintf(path, sizeof(path), "%s/held-pub.pem", cfg.ca.dir);
        fp = fopen(path, "w");
        if (fp != NULL) {
            PEM_write_PUBKEY(fp, pub);
            fclose(fp);
        }
        cfg.held = OSSL_CMP_MSG_dup(req);
        logf_("%s held: answered waiting (%d polls left)", body_name(type), cfg.pending);
        si = OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_waiting, 0, NULL);
        goto done;
    }
    if (type == OSSL_CMP_KUR && (si = check_kur(req, crm, subject)) != NULL)
        goto done;
    *cert = tca_issue(&cfg.ca, subject, pub, exts, misbehave("wrong-key"));
    if (*cert == NULL) {
        si = reject(OSSL_CMP_PKIFAILUREINFO_systemFailure, "cannot issue");
        goto done;
    }
    X509_free(cfg.last_issued);
    cfg.last_issued = X509_dup(*cert);
    ser = tca_serial_hex(X509_get0_serialNumber(*cert));
    X509_NAME_oneline(subject, name, sizeof(name));
    logf_("%s issued serial %s for %s (%s)%s", body_name(type), ser ? ser : "?", name,
          cfg.mac ? "MAC" : "signature", misbehave("wrong-key") ? " (WRONG KEY)" : "");
    OPENSSL_free(ser);
    si = OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
done:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    T_TMPL_free(t);
    return si;
}

static OSSL_CMP_PKISI *
on_rr(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const X509_NAME *issuer,
      const ASN1_INTEGER *serial)
{
    char *ser = tca_serial_hex(serial);
    OSSL_CMP_PKISI *si;

    (void)srv;
    (void)req;
    if (ser == NULL || !our_issuer(issuer) || tca_status(&cfg.ca, ser) == 0)
        si =
            reject(OSSL_CMP_PKIFAILUREINFO_badCertId, "rr for a certificate this CA did not issue");
    else if (tca_revoke(&cfg.ca, ser, NULL) != 0)
        si = reject(OSSL_CMP_PKIFAILUREINFO_certRevoked, "already revoked");
    else {
        logf_("rr revoked serial %s (%s)", ser, cfg.mac ? "MAC" : "signature");
        si = OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
    }
    OPENSSL_free(ser);
    return si;
}

static void
on_error(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const OSSL_CMP_PKISI *si,
         const ASN1_INTEGER *code, const OSSL_CMP_PKIFREETEXT *details)
{
    char buf[512];

    (void)srv;
    (void)req;
    (void)code;
    (void)details;
    logf_("error from the client: %s",
          si ? OSSL_CMP_snprint_PKIStatusInfo(si, buf, sizeof(buf)) : "(no status)");
    OSSL_CMP_MSG_free(cfg.held);
    cfg.held = NULL;
}

static int
on_cert_conf(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int rid, const ASN1_OCTET_STRING *hash,
             const OSSL_CMP_PKISI *si)
{
    char buf[512];

    (void)srv;
    (void)req;
    (void)rid;
    (void)hash;
    logf_("certConf %s", si ? OSSL_CMP_snprint_PKIStatusInfo(si, buf, sizeof(buf)) : "accepted");
    return 1;
}

static int
on_poll(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int rid, OSSL_CMP_MSG **certreq,
        int64_t *check_after)
{
    (void)srv;
    (void)req;
    (void)rid;
    *certreq = NULL;
    if (cfg.held == NULL)
        return 0;
    if (cfg.pending > 0) {
        cfg.pending--;
        *check_after = 1;
        logf_("pollReq: still waiting");
        return 1;
    }
    logf_("pollReq: released");
    *certreq = cfg.held;
    cfg.held = NULL;
    return 1;
}

/* A context protecting like the server did (SECRET or signer), for re-protection. */
/* One InfoTypeAndValue of type OID with VAL (NULL: absent) encoded by IT. */
static int
push_itav(STACK_OF(OSSL_CMP_ITAV) * out, const char *oid, const void *val, const ASN1_ITEM *it)
{
    ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
    ASN1_TYPE *v = val != NULL ? enr_cmp_itav_make(val, it) : NULL;
    OSSL_CMP_ITAV *itav =
        o != NULL && (val == NULL || v != NULL) ? OSSL_CMP_ITAV_create(o, v) : NULL;

    if (itav == NULL || !sk_OSSL_CMP_ITAV_push(out, itav)) {
        OSSL_CMP_ITAV_free(itav);
        if (itav == NULL) {
            ASN1_OBJECT_free(o);
            ASN1_TYPE_free(v);
        }
        return 0;
    }
    return 1;
}

static int
on_genm(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, const STACK_OF(OSSL_CMP_ITAV) * in,
        STACK_OF(OSSL_CMP_ITAV) * *out)
{
    (void)srv;
    (void)req;
    *out = sk_OSSL_CMP_ITAV_new_null();
    if (*out == NULL)
        return 0;
    for (int i = 0; i < sk_OSSL_CMP_ITAV_num(in); i++) {
        const OSSL_CMP_ITAV *a = sk_OSSL_CMP_ITAV_value(in, i);
        char oid[80];

        OBJ_obj2txt(oid, sizeof(oid), OSSL_CMP_ITAV_get0_type(a), 1);
        if (!strcmp(oid, ENR_OID_IT_CACERTS)) {
            STACK_OF(X509) *cs = sk_X509_new_null();
            int ok = cs != NULL && sk_X509_push(cs, cfg.ca.ca) &&
                     push_itav(*out, ENR_OID_IT_CACERTS, cs, ASN1_ITEM_rptr(ENR_CACERTS));
            sk_X509_free(cs);
            if (!ok)
                return 0;
            logf_("genm caCerts: 1 certificate");
        } else if (!strcmp(oid, ENR_OID_IT_ROOTCACERT)) {
            X509 *theirs = enr_cmp_itav_value(OSSL_CMP_ITAV_get0_value(a), ASN1_ITEM_rptr(X509));
            int offer = cfg.rollover && theirs != NULL && X509_cmp(theirs, cfg.old_ca) == 0;
            ENR_ROOTCAKEYUPDATE upd = {cfg.ca.ca, cfg.nwo, cfg.own};

            X509_free(theirs);
            if (!push_itav(*out, ENR_OID_IT_ROOTCAKEYUPDATE, offer ? &upd : NULL,
                           ASN1_ITEM_rptr(ENR_ROOTCAKEYUPDATE)))
                return 0;
            logf_("genm rootCaCert: %s", !offer ? "no update"
                                         : misbehave("root-impostor")
                                             ? "update offered (NewWithOld by an impostor)"
                                             : "update offered (NewWithOld)");
        } else {
            logf_("genm %s: not offered", oid);
        }
    }
    return 1;
}

/* A certificate for SUBJ's name and PUB's key, issued by ISSUER with KEY, CA:TRUE. */
static X509 *
link_cert(X509 *subj, X509 *issuer, EVP_PKEY *key, long serial)
{
    X509 *x = X509_new();
    time_t now = time(NULL);
    X509V3_CTX v3;
    X509_EXTENSION *e;

    if (x == NULL)
        return NULL;
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_set_version(x, 2);
    X509_set_subject_name(x, X509_get_subject_name(subj));
    X509_set_issuer_name(x, X509_get_subject_name(issuer));
    X509_set_pubkey(x, X509_get0_pubkey(subj));
    X509_time_adj_ex(X509_getm_notBefore(x), 0, -3600, &now);
    X509_time_adj_ex(X509_getm_notAfter(x), 3650, 0, &now);
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    if (e != NULL) {
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    if (!X509_sign(x, key, EVP_sha256())) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* --rollover: issue with DIR/ca2.pem's key from now on, make the links. */
static int
start_rollover(const char *dir)
{
    X509 *nw = tca_load_cert(dir, "ca2.pem");
    EVP_PKEY *nk = tca_load_key(dir, "ca2.key");

    if (nw == NULL || nk == NULL)
        return -1;
    cfg.old_ca = cfg.ca.ca;
    cfg.nwo = link_cert(nw, cfg.old_ca,
                        misbehave("root-impostor") ? cfg.impostor_key : cfg.ca.ca_key, 0x4e574f);
    cfg.own = link_cert(cfg.old_ca, nw, nk, 0x4f574e);
    cfg.ca.ca = nw;
    cfg.ca.ca_key = nk;
    return cfg.nwo != NULL && cfg.own != NULL ? 0 : -1;
}

static OSSL_CMP_CTX *
reprotect_ctx(const OSSL_CMP_MSG *rsp, X509 *cert, EVP_PKEY *key, int keep_txid)
{
    OSSL_CMP_CTX *c = OSSL_CMP_CTX_new(NULL, NULL);

    if (c == NULL)
        return NULL;
    if (cfg.mac && cert == NULL)
        OSSL_CMP_CTX_set1_secretValue(c, cfg.secret, (int)cfg.secret_len);
    else {
        OSSL_CMP_CTX_set1_cert(c, cert ? cert : cfg.srv_cert);
        OSSL_CMP_CTX_set1_pkey(c, key ? key : cfg.srv_key);
    }
    if (keep_txid)
        OSSL_CMP_CTX_set1_transactionID(
            c, OSSL_CMP_HDR_get0_transactionID(OSSL_CMP_MSG_get0_header(rsp)));
    return c;
}

/* One CMP exchange; DER answer in *OUT. */
static int
cmp_exchange(const unsigned char *in, size_t n, unsigned char **out, int *outlen)
{
    const unsigned char *q = in;
    OSSL_CMP_MSG *req = d2i_OSSL_CMP_MSG(NULL, &q, (long)n), *rsp = NULL;
    OSSL_CMP_CTX *cmp = OSSL_CMP_SRV_CTX_get0_cmp_ctx(cfg.srv), *v = NULL;
    int rt;

    *out = NULL;
    if (req == NULL) {
        logf_("POST: not a CMP message");
        return -1;
    }
    /* MAC-protected with our secret? Then answer with the MAC too. */
    cfg.mac = 0;
    if (cfg.secret_len > 0 && (v = OSSL_CMP_CTX_new(NULL, NULL)) != NULL &&
        OSSL_CMP_CTX_set1_secretValue(v, cfg.secret, (int)cfg.secret_len) &&
        OSSL_CMP_validate_msg(v, req))
        cfg.mac = 1;
    OSSL_CMP_CTX_free(v);
    ERR_clear_error();
    OSSL_CMP_CTX_set1_secretValue(cmp, cfg.mac ? cfg.secret : NULL,
                                  cfg.mac ? (int)cfg.secret_len : 0);
    logf_("request %s (%s)", body_name(OSSL_CMP_MSG_get_bodytype(req)),
          cfg.mac ? "MAC" : "signature");
    X509_free(cfg.last_issued);
    cfg.last_issued = NULL;
    rsp = OSSL_CMP_SRV_process_request(cfg.srv, req);
    OSSL_CMP_MSG_free(req);
    if (rsp == NULL) {
        logf_("no answer: %s", ERR_reason_error_string(ERR_peek_last_error()));
        ERR_clear_error();
        return -1;
    }
    rt = OSSL_CMP_MSG_get_bodytype(rsp);
    logf_("answer %s", body_name(rt));
    if (ERR_peek_error() != 0) {
        char e[256];
        ERR_error_string_n(ERR_peek_last_error(), e, sizeof(e));
        logf_("server errors: %s", e);
        ERR_clear_error();
    }
    if (misbehave("txid") || misbehave("untrusted")) {
        OSSL_CMP_CTX *c = misbehave("txid") ? reprotect_ctx(rsp, NULL, NULL, 0)
                                            : reprotect_ctx(rsp, cfg.impostor, cfg.impostor_key, 1);
        if (c == NULL || !OSSL_CMP_MSG_update_transactionID(c, rsp))
            logf_("cannot re-protect the answer");
        OSSL_CMP_CTX_free(c);
    }
    *outlen = i2d_OSSL_CMP_MSG(rsp, out);
    OSSL_CMP_MSG_free(rsp);
    if (*outlen <= 0)
        return -1;
    if (misbehave("bad-protection") && cfg.last_issued != NULL) {
        /* Flip a bit of the issued certificate's signature inside the
         * protected body: still DER, but the protection no longer verifies. */
        unsigned char *cd = NULL;
        int cl = i2d_X509(cfg.last_issued, &cd);
        if (cl > 16)
            for (int i = 0; i + cl <= *outlen; i++)
                if (!memcmp(*out + i, cd, (size_t)cl)) {
                    (*out)[i + cl - 3] ^= 0x01;
                    logf_("answer damaged (bad protection)");
                    break;
                }
        OPENSSL_free(cd);
    }
    return 0;
}

/* ---- HTTP --------------------------------------------------------------- */

typedef struct upload {
    unsigned char *d;
    size_t n;
} upload;

static enum MHD_Result
send_bytes(struct MHD_Connection *c, int code, const char *ctype, void *data, size_t n)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(n, data, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;

    if (r == NULL)
        return MHD_NO;
    if (ctype != NULL)
        MHD_add_response_header(r, "Content-Type", ctype);
    ret = MHD_queue_response(c, (unsigned)code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
send_text(struct MHD_Connection *c, int code, const char *text)
{
    return send_bytes(c, code, "text/plain", (void *)text, strlen(text));
}

static enum MHD_Result
handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
        const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
    upload *u = *con_cls;
    unsigned char *out = NULL;
    int outlen = 0;
    enum MHD_Result r;

    (void)cls;
    (void)version;
    if (u == NULL) {
        u = calloc(1, sizeof(*u));
        *con_cls = u;
        return u ? MHD_YES : MHD_NO;
    }
    if (*upload_size > 0) {
        unsigned char *nd = realloc(u->d, u->n + *upload_size);
        if (nd == NULL || u->n + *upload_size > (1u << 20))
            return MHD_NO;
        u->d = nd;
        memcpy(u->d + u->n, upload_data, *upload_size);
        u->n += *upload_size;
        *upload_size = 0;
        return MHD_YES;
    }
    if (!strcmp(method, "GET") && !strcmp(url, "/crl")) {
        char path[600];
        unsigned char buf[1 << 16];
        size_t n;
        FILE *fp;
        snprintf(path, sizeof(path), "%s/ca.crl", cfg.ca.dir);
        fp = fopen(path, "rb");
        if (fp == NULL)
            return send_text(c, 404, "no CRL\n");
        n = fread(buf, 1, sizeof(buf), fp);
        fclose(fp);
        logf_("GET crl");
        return send_bytes(c, 200, "application/pkix-crl", buf, n);
    }
    if (strcmp(method, "POST") != 0)
        return send_text(c, 405, "POST a CMP message\n");
    logf_("POST %s", url); /* an absolute URL when it came through as a proxy */
    if (cmp_exchange(u->d, u->n, &out, &outlen) != 0)
        return send_text(c, 400, "bad CMP request\n");
    if (misbehave("big")) {
        /* 9 MiB: above the helper's limit for any HTTP answer. */
        unsigned char *big = calloc(1, 9u << 20);
        if (big == NULL)
            return MHD_NO;
        OPENSSL_free(out);
        r = send_bytes(c, 200, "application/pkixcmp", big, 9u << 20);
        free(big);
        return r;
    }
    if (misbehave("garbage"))
        RAND_bytes(out, outlen);
    if (misbehave("truncated"))
        outlen /= 2;
    r = send_bytes(c, 200, misbehave("ctype") ? "text/html" : "application/pkixcmp", out,
                   (size_t)outlen);
    OPENSSL_free(out);
    return r;
}

static void
completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
    upload *u = *con_cls;
    (void)cls;
    (void)c;
    (void)t;
    if (u != NULL) {
        free(u->d);
        free(u);
        *con_cls = NULL;
    }
}

static volatile sig_atomic_t stop;
static void
on_sig(int s)
{
    (void)s;
    stop = 1;
}

/* A self-signed certificate with the server's subject and a key of its own. */
static int
make_impostor(void)
{
    time_t now = time(NULL);
    X509V3_CTX v3;
    X509_EXTENSION *e;

    cfg.impostor_key = EVP_RSA_gen(2048);
    cfg.impostor = X509_new();
    if (cfg.impostor_key == NULL || cfg.impostor == NULL)
        return -1;
    ASN1_INTEGER_set(X509_get_serialNumber(cfg.impostor), 7);
    X509_set_version(cfg.impostor, 2);
    X509_set_subject_name(cfg.impostor, X509_get_subject_name(cfg.srv_cert));
    X509_set_issuer_name(cfg.impostor, X509_get_subject_name(cfg.srv_cert));
    X509_set_pubkey(cfg.impostor, cfg.impostor_key);
    X509_time_adj_ex(X509_getm_notBefore(cfg.impostor), 0, -60, &now);
    X509_time_adj_ex(X509_getm_notAfter(cfg.impostor), 30, 0, &now);
    X509V3_set_ctx(&v3, cfg.impostor, cfg.impostor, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_key_identifier, "hash");
    if (e != NULL) {
        X509_add_ext(cfg.impostor, e, -1);
        X509_EXTENSION_free(e);
    }
    return X509_sign(cfg.impostor, cfg.impostor_key, EVP_sha256()) ? 0 : -1;
}

int
main(int argc, char **argv)
{
    const char *port_file = NULL, *secret_file = NULL, *boot = NULL, *dir = NULL;
    int port = 0;
    struct MHD_Daemon *d;
    struct sockaddr_in sa;
    OSSL_CMP_CTX *cmp;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--dir") && v)
            dir = argv[++i];
        else if (!strcmp(a, "--port") && v)
            port = atoi(argv[++i]);
        else if (!strcmp(a, "--port-file") && v)
            port_file = argv[++i];
        else if (!strcmp(a, "--secret-file") && v)
            secret_file = argv[++i];
        else if (!strcmp(a, "--bootstrap-ca") && v)
            boot = argv[++i];
        else if (!strcmp(a, "--pending") && v)
            cfg.pending = atoi(argv[++i]);
        else if (!strcmp(a, "--implicit-confirm"))
            cfg.implicit = 1;
        else if (!strcmp(a, "--days") && v)
            cfg.ca.days = atoi(argv[++i]);
        else if (!strcmp(a, "--ocsp-url") && v)
            cfg.ca.ocsp_url = argv[++i];
        else if (!strcmp(a, "--crl-url") && v)
            cfg.ca.crl_url = argv[++i];
        else if (!strcmp(a, "--misbehave") && v)
            cfg.misbehave = argv[++i];
        else if (!strcmp(a, "--rollover"))
            cfg.rollover = 1;
        else {
            fprintf(stderr, "cmpsrv: unknown argument %s\n", a);
            return 2;
        }
    }
    if (dir == NULL || tca_init(&cfg.ca, dir) != 0) {
        fprintf(stderr, "cmpsrv: --dir DIR with ca.pem and ca.key is required\n");
        return 2;
    }
    cfg.srv_cert = tca_load_cert(dir, "srv.pem");
    {
        char path[4096];
        FILE *fp;
        X509 *x;
        snprintf(path, sizeof(path), "%s/chain.pem", dir);
        fp = fopen(path, "r");
        while (fp != NULL && (x = PEM_read_X509(fp, NULL, NULL, NULL)) != NULL) {
            if (cfg.chain == NULL)
                cfg.chain = sk_X509_new_null();
            sk_X509_push(cfg.chain, x);
        }
        if (fp != NULL)
            fclose(fp);
        ERR_clear_error();
    }
    cfg.srv_key = tca_load_key(dir, "srv.key");
    if (cfg.srv_cert == NULL || cfg.srv_key == NULL || make_impostor() != 0) {
        fprintf(stderr, "cmpsrv: cannot load %s/srv.pem and srv.key\n", dir);
        return 1;
    }
    if (cfg.rollover && start_rollover(dir) != 0) {
        fprintf(stderr, "cmpsrv: --rollover needs %s/ca2.pem and ca2.key\n", dir);
        return 1;
    }
    if (secret_file != NULL) {
        FILE *fp = fopen(secret_file, "r");
        char buf[256];
        if (fp == NULL || fgets(buf, sizeof(buf), fp) == NULL) {
            fprintf(stderr, "cmpsrv: cannot read %s\n", secret_file);
            return 1;
        }
        fclose(fp);
        buf[strcspn(buf, "\r\n")] = '\0';
        cfg.secret_len = strlen(buf);
        memcpy(cfg.secret, buf, cfg.secret_len);
    }
    cfg.trust = X509_STORE_new();
    /* Its own CA certificate is enough, also when it is an intermediate. */
    if (cfg.trust != NULL)
        X509_STORE_set_flags(cfg.trust, X509_V_FLAG_PARTIAL_CHAIN);
    X509_STORE_add_cert(cfg.trust, cfg.ca.ca);
    if (cfg.old_ca != NULL)
        X509_STORE_add_cert(cfg.trust, cfg.old_ca);
    if (boot != NULL) {
        FILE *fp = fopen(boot, "r");
        X509 *b = fp ? PEM_read_X509(fp, NULL, NULL, NULL) : NULL;
        if (fp)
            fclose(fp);
        if (b == NULL) {
            fprintf(stderr, "cmpsrv: cannot read %s\n", boot);
            return 1;
        }
        X509_STORE_add_cert(cfg.trust, b);
        X509_free(b);
    }
    cfg.srv = OSSL_CMP_SRV_CTX_new(NULL, NULL);
    cmp = cfg.srv ? OSSL_CMP_SRV_CTX_get0_cmp_ctx(cfg.srv) : NULL;
    if (cmp == NULL ||
        !OSSL_CMP_SRV_CTX_init(cfg.srv, NULL, on_cert_request, on_rr, on_genm, on_error,
                               on_cert_conf, on_poll) ||
        !OSSL_CMP_SRV_CTX_set_grant_implicit_confirm(cfg.srv, cfg.implicit) ||
        !OSSL_CMP_SRV_CTX_set_accept_unprotected(cfg.srv, 0) ||
        !OSSL_CMP_CTX_set1_cert(cmp, cfg.srv_cert) || !OSSL_CMP_CTX_set1_pkey(cmp, cfg.srv_key) ||
        !OSSL_CMP_CTX_set0_trustedStore(cmp, cfg.trust)) {
        fprintf(stderr, "cmpsrv: cannot set up the CMP server\n");
        return 1;
    }
    OSSL_CMP_CTX_set_log_verbosity(cmp, OSSL_CMP_LOG_WARNING);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)port, NULL, NULL, handler, NULL,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED,
                         completed, NULL, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "cmpsrv: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    if (cfg.ca.crl_url != NULL && !strcmp(cfg.ca.crl_url, "self")) {
        static char self[64];
        snprintf(self, sizeof(self), "http://127.0.0.1:%d/crl", port);
        cfg.ca.crl_url = self;
    }
    if (cfg.ca.crl_url != NULL)
        tca_write_crl(&cfg.ca);
    if (port_file != NULL) {
        char tmp[600];
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        FILE *fp = fopen(tmp, "w");
        if (fp != NULL) {
            fprintf(fp, "%d\n", port);
            fclose(fp);
            rename(tmp, port_file);
        }
    }
    fprintf(stderr, "cmpsrv: listening on 127.0.0.1:%d\n", port);
    signal(SIGTERM, on_sig);
    signal(SIGINT, on_sig);
    while (!stop)
        pause();
    MHD_stop_daemon(d);
    OSSL_CMP_SRV_CTX_free(cfg.srv);
    return 0;
}
