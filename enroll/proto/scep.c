/*
 * scep.c — SCEP client (RFC 8894) on OpenSSL's CMS and the HTTP layer (http.c).
 *
 * GetCACaps decides the transport (POST when "POSTPKIOperation"), digest
 * (SHA-256 when offered) and content cipher (AES when offered); GetCACert
 * gives the CA/RA certificates, each validated against the profile's
 * anchors. A request is a CMS SignedData (signed by the requester: a
 * self-signed certificate of the new key for PKCSReq, the old certificate and
 * key for RenewalReq) around an EnvelopedData for the RA holding the PKCS#10
 * request; the answer is a SignedData from the RA whose pkiStatus says
 * SUCCESS (an EnvelopedData for our signing key holding the certificate),
 * FAILURE (failInfo) or PENDING (then CertPoll until it is decided). Every
 * private-key operation (CSR and CMS signatures, decrypting the answer) runs
 * in the token through the EVP_PKEY libp11 gives us.
 */
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/asn1t.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pkcs7.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "enr_int.h"
#include "enr_parse.h"
#include "proto.h"

/* SCEP attribute OIDs (RFC 8894 section 3.2.1.4). */
#define OID_MESSAGE_TYPE    "2.16.840.1.113733.1.9.2"
#define OID_PKI_STATUS      "2.16.840.1.113733.1.9.3"
#define OID_FAIL_INFO       "2.16.840.1.113733.1.9.4"
#define OID_SENDER_NONCE    "2.16.840.1.113733.1.9.5"
#define OID_RECIPIENT_NONCE "2.16.840.1.113733.1.9.6"
#define OID_TRANSACTION_ID  "2.16.840.1.113733.1.9.7"

#define MT_CERTREP    "3"
#define MT_RENEWALREQ "17"
#define MT_PKCSREQ    "19"
#define MT_CERTPOLL   "20"

/* IssuerAndSubject (RFC 8894 section 3.3.3), through OpenSSL's ASN.1 templates. */
typedef struct enr_ias {
    X509_NAME *issuer;
    X509_NAME *subject;
} ENR_IAS;
DECLARE_ASN1_FUNCTIONS(ENR_IAS)
ASN1_SEQUENCE(ENR_IAS) =
    {
        ASN1_SIMPLE(ENR_IAS, issuer, X509_NAME),
        ASN1_SIMPLE(ENR_IAS, subject, X509_NAME),
} ASN1_SEQUENCE_END(ENR_IAS) IMPLEMENT_ASN1_FUNCTIONS(ENR_IAS)

        typedef enr_scep scep;

void
enr_scep_result_clear(enr_scep_result *r)
{
    X509_free(r->cert);
    sk_X509_pop_free(r->chain, X509_free);
    free(r->txid);
    free(r->fail);
    memset(r, 0, sizeof(*r));
}

static char *
op_url(const enr_profile *p, const char *op)
{
    return enr_aprintf("%s%soperation=%s", p->url, strchr(p->url, '?') ? "&" : "?", op);
}

void
enr_scep_parse_caps(scep *s, unsigned char *body, size_t n)
{
    /* NUL-terminated by enr_http, but NULL when the answer is empty, which
     * RFC 8894 section 3.5.2 allows: no capability (strtok_r would crash). */
    for (char *save = NULL,
              *l = n > 0 && body != NULL ? strtok_r((char *)body, "\r\n", &save) : NULL;
         l != NULL; l = strtok_r(NULL, "\r\n", &save)) {
        if (!strcasecmp(l, "POSTPKIOperation"))
            s->c.post = 1;
        else if (!strcasecmp(l, "SHA-256"))
            s->c.sha256 = 1;
        else if (!strcasecmp(l, "AES"))
            s->c.aes = 1;
        else if (!strcasecmp(l, "Renewal"))
            s->c.renewal = 1;
        else if (!strcasecmp(l, "SCEPStandard"))
            s->c.post = s->c.sha256 = s->c.aes = 1; /* RFC 8894 section 3.5.2 */
    }
    s->md = s->c.sha256 ? EVP_sha256() : EVP_sha1();
    s->cipher = s->c.aes ? EVP_aes_128_cbc() : EVP_des_ede3_cbc();
    enr_debug("CA capabilities: POST %d, SHA-256 %d, AES %d, Renewal %d", s->c.post, s->c.sha256,
              s->c.aes, s->c.renewal);
}

static enr_rc
get_caps(scep *s)
{
    char *url = op_url(s->p, "GetCACaps");
    unsigned char *body = NULL;
    size_t n;
    enr_rc rc;

    if (url == NULL)
        return ENR_E_FAIL;
    rc = enr_http(url, NULL, NULL, 0, s->p->http_timeout, &body, &n, NULL);
    free(url);
    if (rc != ENR_OK)
        return rc;
    enr_scep_parse_caps(s, body, n);
    free(body);
    return ENR_OK;
}

static int
is_ca(X509 *x)
{
    return X509_check_ca(x) > 0;
}

enr_rc
enr_scep_parse_cacert(scep *s, const unsigned char *body, size_t n, const char *ct,
                      STACK_OF(X509) * anchors)
{
    const unsigned char *pp = body;
    enr_rc rc = ENR_E_REJECTED;

    if (ct != NULL && !strncasecmp(ct, "application/x-x509-ca-ra-cert", 29)) {
        CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &pp, (long)n);
        if (cms != NULL)
            s->cacerts = CMS_get1_certs(cms);
        CMS_ContentInfo_free(cms);
    } else {
        X509 *x = d2i_X509(NULL, &pp, (long)n);
        if (x != NULL) {
            s->cacerts = sk_X509_new_null();
            sk_X509_push(s->cacerts, x);
        }
    }
    if (s->cacerts == NULL || sk_X509_num(s->cacerts) == 0) {
        enr_err("GetCACert from %s: no certificate in the answer (%s)", s->p->url,
                ct ? ct : "no content type");
        return rc;
    }
    /* RA: an end-entity certificate that can receive keys; else the CA itself. */
    for (int i = 0; i < sk_X509_num(s->cacerts); i++) {
        X509 *x = sk_X509_value(s->cacerts, i);
        if (!is_ca(x) && s->ra == NULL)
            s->ra = x;
        if (is_ca(x) && s->ca == NULL)
            s->ca = x;
    }
    if (s->ca == NULL)
        s->ca = sk_X509_value(s->cacerts, 0);
    if (s->ra == NULL)
        s->ra = s->ca;
    for (int i = 0; i < sk_X509_num(s->cacerts); i++) {
        rc = enr_verify_chain(sk_X509_value(s->cacerts, i), s->cacerts, anchors, enr_now(),
                              "a certificate from GetCACert");
        if (rc != ENR_OK)
            return rc;
    }
    return ENR_OK;
}

static enr_rc
get_cacert(scep *s, STACK_OF(X509) * anchors)
{
    char *url = op_url(s->p, "GetCACert"), *ct = NULL;
    unsigned char *body = NULL;
    size_t n;
    enr_rc rc;

    if (url == NULL)
        return ENR_E_FAIL;
    rc = enr_http(url, NULL, NULL, 0, s->p->http_timeout, &body, &n, &ct);
    free(url);
    if (rc == ENR_OK)
        rc = enr_scep_parse_cacert(s, body, n, ct, anchors);
    free(body);
    free(ct);
    return rc;
}

/* A throw-away self-signed certificate of the new key: the PKCSReq signer. */
static X509 *
self_signed(const enr_profile *p, EVP_PKEY *key, const EVP_MD *md)
{
    X509 *x = X509_new();
    unsigned char sn[16];
    BIGNUM *bn = NULL;
    time_t now = enr_now();

    if (x == NULL || RAND_bytes(sn, sizeof(sn)) != 1)
        goto fail;
    sn[0] &= 0x7f;
    bn = BN_bin2bn(sn, sizeof(sn), NULL);
    if (bn == NULL || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
        !X509_set_version(x, 2) || !X509_set_subject_name(x, p->subject_name) ||
        !X509_set_issuer_name(x, p->subject_name) || !X509_set_pubkey(x, key) ||
        X509_time_adj_ex(X509_getm_notBefore(x), 0, -300, &now) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), 1, 0, &now) == NULL)
        goto fail;
    if (X509_sign(x, key, md) <= 0) {
        enr_err("the token could not sign (self-signed request certificate)");
        goto fail;
    }
    BN_free(bn);
    return x;
fail:
    enr_ssl_errors();
    BN_free(bn);
    X509_free(x);
    return NULL;
}

X509_REQ *
enr_make_csr(const enr_profile *p, EVP_PKEY *key, const enr_secret *chal)
{
    X509_REQ *req = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = NULL;

    if (req == NULL || !X509_REQ_set_version(req, 0) ||
        !X509_REQ_set_subject_name(req, p->subject_name) || !X509_REQ_set_pubkey(req, key))
        goto fail;
    if (p->san != NULL) {
        X509V3_CTX v3;
        X509_EXTENSION *ext;
        X509V3_set_ctx(&v3, NULL, NULL, req, NULL, 0);
        ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, p->san);
        exts = sk_X509_EXTENSION_new_null();
        if (ext == NULL || exts == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
            X509_EXTENSION_free(ext);
            goto fail;
        }
        if (!X509_REQ_add_extensions(req, exts))
            goto fail;
    }
    if (chal != NULL && chal->len > 0 &&
        !X509_REQ_add1_attr_by_NID(req, NID_pkcs9_challengePassword, MBSTRING_UTF8,
                                   (const unsigned char *)chal->buf, (int)chal->len))
        goto fail;
    if (X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
        enr_err("the token could not sign the certificate request");
        goto fail;
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return req;
fail:
    enr_ssl_errors();
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    return NULL;
}

static int
add_attr(CMS_SignerInfo *si, const char *oid, int type, const void *v, int len)
{
    ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
    int ok = o != NULL && CMS_signed_add1_attr_by_OBJ(si, o, type, v, len) > 0;

    ASN1_OBJECT_free(o);
    return ok;
}

static const ASN1_STRING *
get_attr(CMS_SignerInfo *si, const char *oid, int type)
{
    ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
    const ASN1_STRING *s = NULL;

    if (o != NULL)
        s = CMS_signed_get0_data_by_OBJ(si, o, -3, type);
    ASN1_OBJECT_free(o);
    return s;
}

/* Build pkiMessage: SignedData{ EnvelopedData{ INNER } } with SCEP attributes. */
static unsigned char *
build_message(scep *s, const unsigned char *inner, int ilen, const char *mtype, const char *txid,
              const unsigned char nonce[16], X509 *signer, EVP_PKEY *key, int *outlen)
{
    STACK_OF(X509) *rcpt = sk_X509_new_null();
    CMS_ContentInfo *env = NULL, *sd = NULL;
    CMS_SignerInfo *si;
    BIO *in = NULL, *envb = NULL;
    unsigned char *envder = NULL, *der = NULL;
    int envlen = 0;

    *outlen = 0;
    in = BIO_new_mem_buf(inner, ilen);
    if (rcpt == NULL || in == NULL || !sk_X509_push(rcpt, s->ra))
        goto done;
    env = CMS_encrypt(rcpt, in, s->cipher, CMS_BINARY);
    if (env == NULL)
        goto done;
    envlen = i2d_CMS_ContentInfo(env, &envder);
    if (envlen <= 0)
        goto done;
    sd = CMS_sign(NULL, NULL, NULL, NULL, CMS_PARTIAL | CMS_BINARY);
    if (sd == NULL)
        goto done;
    si = CMS_add1_signer(sd, signer, key, s->md, CMS_BINARY | CMS_NOSMIMECAP | CMS_PARTIAL);
    if (si == NULL ||
        !add_attr(si, OID_MESSAGE_TYPE, V_ASN1_PRINTABLESTRING, mtype, (int)strlen(mtype)) ||
        !add_attr(si, OID_TRANSACTION_ID, V_ASN1_PRINTABLESTRING, txid, (int)strlen(txid)) ||
        !add_attr(si, OID_SENDER_NONCE, V_ASN1_OCTET_STRING, nonce, 16))
        goto done;
    envb = BIO_new_mem_buf(envder, envlen);
    if (envb == NULL || CMS_final(sd, envb, NULL, CMS_BINARY) != 1) {
        enr_err("cannot sign the SCEP message with the token's key");
        goto done;
    }
    *outlen = i2d_CMS_ContentInfo(sd, &der);
    if (*outlen <= 0)
        der = NULL;
done:
    enr_ssl_errors();
    if (envder != NULL)
        OPENSSL_clear_free(envder, (size_t)(envlen > 0 ? envlen : 0));
    sk_X509_free(rcpt);
    BIO_free(in);
    BIO_free(envb);
    CMS_ContentInfo_free(env);
    CMS_ContentInfo_free(sd);
    return der;
}

static enr_rc
transport(scep *s, const unsigned char *msg, int mlen, unsigned char **resp, size_t *rlen)
{
    char *url = NULL, *b64 = NULL, *esc = NULL, *ct = NULL;
    enr_rc rc = ENR_E_FAIL;
    CURL *c = NULL;

    if (s->c.post) {
        url = op_url(s->p, "PKIOperation");
        if (url != NULL)
            rc = enr_http(url, "application/x-pki-message", msg, (size_t)mlen, s->p->http_timeout,
                          resp, rlen, &ct);
    } else {
        b64 = malloc((size_t)(4 * ((mlen + 2) / 3) + 1));
        c = curl_easy_init();
        if (b64 == NULL || c == NULL)
            goto done;
        EVP_EncodeBlock((unsigned char *)b64, msg, mlen);
        esc = curl_easy_escape(c, b64, 0);
        if (esc == NULL)
            goto done;
        url = enr_aprintf("%s%soperation=PKIOperation&message=%s", s->p->url,
                          strchr(s->p->url, '?') ? "&" : "?", esc);
        if (url != NULL)
            rc = enr_http(url, NULL, NULL, 0, s->p->http_timeout, resp, rlen, &ct);
    }
    if (rc == ENR_OK && (ct == NULL || strncasecmp(ct, "application/x-pki-message", 25))) {
        enr_err("the CA answered PKIOperation with %s, not application/x-pki-message",
                ct ? ct : "no content type");
        free(*resp);
        *resp = NULL;
        rc = ENR_E_REJECTED;
    }
done:
    free(url);
    free(b64);
    if (esc != NULL)
        curl_free(esc);
    if (c != NULL)
        curl_easy_cleanup(c);
    free(ct);
    return rc;
}

static const char *
fail_info(const char *v)
{
    if (v == NULL)
        return "no failInfo";
    switch (v[0]) {
    case '0':
        return "badAlg: unrecognized or unsupported algorithm";
    case '1':
        return "badMessageCheck: integrity check (signature) failed";
    case '2':
        return "badRequest: transaction not permitted or supported";
    case '3':
        return "badTime: the message time was not close to the CA's time";
    case '4':
        return "badCertId: no certificate could be identified";
    default:
        return v;
    }
}

/*
 * Some CAs (e.g. micromdm scepserver 2.1) encrypt the CertRep with single DES
 * whatever they advertise. OpenSSL 3 keeps DES in its legacy provider; the
 * answer holds only the (public) certificate, so decrypting it that way
 * exposes nothing, but it is worth a warning. One retry, after loading the
 * legacy provider beside the default one.
 */
static int
decrypt_legacy(const unsigned char *der, long len, EVP_PKEY *key, X509 *signer, BIO *dec)
{
    static OSSL_PROVIDER *legacy;
    const unsigned char *pp = der;
    CMS_ContentInfo *env;
    int ok;

    if (legacy != NULL)
        return 0;
    legacy = OSSL_PROVIDER_try_load(NULL, "legacy", 1);
    if (legacy == NULL)
        return 0;
    ERR_clear_error();
    env = d2i_CMS_ContentInfo(NULL, &pp, len);
    (void)BIO_reset(dec);
    ok = env != NULL && CMS_decrypt(env, key, signer, NULL, dec, CMS_BINARY) == 1;
    CMS_ContentInfo_free(env);
    if (ok)
        enr_warn("the CA encrypted its answer with a legacy cipher (single DES?); decrypted "
                 "through OpenSSL's legacy provider (the answer holds only the certificate)");
    return ok;
}

/* Parse and check a CertRep; on SUCCESS decrypt the certificates with KEY. */
enr_rc
enr_scep_parse_reply(scep *s, const unsigned char *der, size_t len, const char *txid,
                     const unsigned char nonce[16], X509 *signer, EVP_PKEY *key, EVP_PKEY *newkey,
                     enr_scep_result *res)
{
    const unsigned char *pp = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &pp, (long)len), *env = NULL, *deg = NULL;
    STACK_OF(CMS_SignerInfo) * sis;
    CMS_SignerInfo *si;
    const ASN1_STRING *mt, *st, *tid, *rn, *fi;
    BIO *out = BIO_new(BIO_s_mem()), *dec = BIO_new(BIO_s_mem());
    STACK_OF(X509) *certs = NULL;
    char status[8] = "", failv[8] = "";
    unsigned char *content = NULL;
    long clen;
    enr_rc rc = ENR_E_REJECTED;

    if (cms == NULL || out == NULL || dec == NULL) {
        enr_err("the CA's answer is not a CMS message");
        goto done;
    }
    /* Signed by the RA/CA from GetCACert, and by nobody else. */
    if (CMS_verify(cms, s->cacerts, NULL, NULL, out,
                   CMS_BINARY | CMS_NOINTERN | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
        enr_err("the CA's answer is not signed by the CA/RA certificate from GetCACert");
        goto done;
    }
    sis = CMS_get0_SignerInfos(cms);
    si = sk_CMS_SignerInfo_value(sis, 0);
    mt = get_attr(si, OID_MESSAGE_TYPE, V_ASN1_PRINTABLESTRING);
    st = get_attr(si, OID_PKI_STATUS, V_ASN1_PRINTABLESTRING);
    tid = get_attr(si, OID_TRANSACTION_ID, V_ASN1_PRINTABLESTRING);
    rn = get_attr(si, OID_RECIPIENT_NONCE, V_ASN1_OCTET_STRING);
    fi = get_attr(si, OID_FAIL_INFO, V_ASN1_PRINTABLESTRING);
    if (mt == NULL || ASN1_STRING_length(mt) != 1 || ASN1_STRING_get0_data(mt)[0] != '3') {
        enr_err("the CA's answer is not a CertRep");
        goto done;
    }
    if (tid == NULL || (size_t)ASN1_STRING_length(tid) != strlen(txid) ||
        memcmp(ASN1_STRING_get0_data(tid), txid, strlen(txid)) != 0) {
        enr_err("the CA's answer is for another transaction");
        goto done;
    }
    if (rn == NULL || ASN1_STRING_length(rn) != 16 ||
        memcmp(ASN1_STRING_get0_data(rn), nonce, 16) != 0) {
        enr_err("the CA's answer does not echo our nonce (replay?)");
        goto done;
    }
    if (st == NULL || ASN1_STRING_length(st) < 1 || ASN1_STRING_length(st) > 7) {
        enr_err("the CA's answer has no pkiStatus");
        goto done;
    }
    memcpy(status, ASN1_STRING_get0_data(st), (size_t)ASN1_STRING_length(st));
    if (fi != NULL && ASN1_STRING_length(fi) > 0 && ASN1_STRING_length(fi) < 8)
        memcpy(failv, ASN1_STRING_get0_data(fi), (size_t)ASN1_STRING_length(fi));
    if (!strcmp(status, "3")) {
        rc = ENR_E_PENDING;
        goto done;
    }
    if (!strcmp(status, "2")) {
        free(res->fail);
        res->fail = enr_strdup(fail_info(failv[0] ? failv : NULL));
        enr_err("the CA refused the request: %s", res->fail);
        goto done;
    }
    if (strcmp(status, "0") != 0) {
        enr_err("the CA's answer has an unknown pkiStatus '%s'", status);
        goto done;
    }
    clen = BIO_get_mem_data(out, &content);
    pp = content;
    env = d2i_CMS_ContentInfo(NULL, &pp, clen);
    if (env == NULL) {
        enr_err("the CA's SUCCESS answer carries no EnvelopedData");
        goto done;
    }
    if (CMS_decrypt(env, key, signer, NULL, dec, CMS_BINARY) != 1 &&
        !decrypt_legacy(content, clen, key, signer, dec)) {
        enr_err("cannot decrypt the CA's answer with the token's key");
        goto done;
    }
    clen = BIO_get_mem_data(dec, &content);
    pp = content;
    deg = d2i_CMS_ContentInfo(NULL, &pp, clen);
    certs = deg ? CMS_get1_certs(deg) : NULL;
    if (certs == NULL || sk_X509_num(certs) == 0) {
        enr_err("the CA's SUCCESS answer carries no certificate");
        goto done;
    }
    /* The issued certificate: the one for our key, else the first end-entity
     * certificate (which the checks will then refuse, precisely). */
    for (int i = 0; i < sk_X509_num(certs) && res->cert == NULL; i++)
        if (EVP_PKEY_eq(X509_get0_pubkey(sk_X509_value(certs, i)), newkey) == 1)
            res->cert = sk_X509_delete(certs, i);
    for (int i = 0; i < sk_X509_num(certs) && res->cert == NULL; i++)
        if (!is_ca(sk_X509_value(certs, i)))
            res->cert = sk_X509_delete(certs, i);
    if (res->cert == NULL)
        res->cert = sk_X509_shift(certs);
    res->chain = certs;
    certs = NULL;
    rc = ENR_OK;
done:
    enr_ssl_errors();
    sk_X509_pop_free(certs, X509_free);
    CMS_ContentInfo_free(cms);
    CMS_ContentInfo_free(env);
    CMS_ContentInfo_free(deg);
    BIO_free(out);
    BIO_free(dec);
    return rc;
}

/* Transaction ID: hex SHA-256 of the new public key (RFC 8894 section
 * 3.2.1.1 suggests a hash of the key), so a resumed request keeps it. */
static char *
make_txid(EVP_PKEY *key)
{
    unsigned char *der = NULL, md[32];
    int l = i2d_PUBKEY(key, &der);
    char *s = NULL;

    if (l > 0 && EVP_Digest(der, (size_t)l, md, NULL, EVP_sha256(), NULL))
        s = enr_hex(md, sizeof(md));
    OPENSSL_free(der);
    return s;
}

static enr_rc
exchange(scep *s, const unsigned char *inner, int ilen, const char *mtype, const char *txid,
         X509 *signer, EVP_PKEY *key, EVP_PKEY *newkey, enr_scep_result *res)
{
    unsigned char nonce[16], *msg = NULL, *resp = NULL;
    int mlen;
    size_t rlen;
    enr_rc rc;

    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
        return ENR_E_FAIL;
    msg = build_message(s, inner, ilen, mtype, txid, nonce, signer, key, &mlen);
    if (msg == NULL)
        return ENR_E_TOKEN;
    rc = transport(s, msg, mlen, &resp, &rlen);
    OPENSSL_free(msg);
    if (rc != ENR_OK)
        return rc;
    rc = enr_scep_parse_reply(s, resp, rlen, txid, nonce, signer, key, newkey, res);
    free(resp);
    return rc;
}

/* PENDING: CertPoll (GetCertInitial) for transaction TXID until the CA
 * decides or poll_max polls (RESUME: one more, the first at once). */
static enr_rc
poll_pending(scep *s, const char *txid, int resume, X509 *signer, EVP_PKEY *skey, EVP_PKEY *newkey,
             enr_scep_result *res)
{
    const enr_profile *p = s->p;
    unsigned char *inner = NULL;
    ENR_IAS *ias;
    int ilen, polls = 0;
    enr_rc rc = ENR_E_PENDING;

    while (rc == ENR_E_PENDING && polls < p->poll_max + resume) {
        if (!(resume && polls == 0)) {
            if (enr_clock_is_fake())
                enr_clock_set(enr_now() + p->poll_interval);
            else
                sleep((unsigned)p->poll_interval);
        }
        polls++;
        ias = ENR_IAS_new();
        if (ias == NULL) {
            rc = ENR_E_FAIL;
            break;
        }
        X509_NAME_free(ias->issuer);
        X509_NAME_free(ias->subject);
        ias->issuer = X509_NAME_dup(X509_get_subject_name(s->ca));
        ias->subject = X509_NAME_dup(p->subject_name);
        ilen = i2d_ENR_IAS(ias, &inner);
        ENR_IAS_free(ias);
        if (ilen <= 0) {
            rc = ENR_E_FAIL;
            break;
        }
        enr_info("profile %s: the CA holds the request (PENDING); polling (%d)", p->name, polls);
        rc = exchange(s, inner, ilen, MT_CERTPOLL, txid, signer, skey, newkey, res);
        OPENSSL_free(inner);
        inner = NULL;
    }
    return rc;
}

enr_rc
enr_scep_enroll(const enr_profile *p, EVP_PKEY *newkey, X509 *renew_cert, EVP_PKEY *renew_key,
                STACK_OF(X509) * anchors, const char *txid_in, enr_scep_result *res)
{
    scep s;
    enr_secret chal = {0};
    X509 *signer = NULL, *own = NULL;
    EVP_PKEY *skey;
    X509_REQ *req = NULL;
    unsigned char *inner = NULL;
    int ilen = 0, resume;
    const char *mtype;
    char *txid = NULL;
    enr_rc rc;

    memset(&s, 0, sizeof(s));
    memset(res, 0, sizeof(*res));
    s.p = p;
    rc = get_caps(&s);
    if (rc == ENR_OK)
        rc = get_cacert(&s, anchors);
    if (rc != ENR_OK)
        goto done;
    /* The challenge goes into PKCSReq and, when configured, RenewalReq too:
     * RFC 8894 lets a renewal carry it, and some CAs (micromdm scepserver)
     * insist on it. */
    if (p->secret_file != NULL &&
        enr_secret_read_file(p->secret_file, "enrollment secret", &chal) != 0) {
        rc = ENR_E_CONFIG;
        goto done;
    }
    txid = make_txid(newkey);
    if (txid == NULL) {
        rc = ENR_E_FAIL;
        goto done;
    }
    if (renew_cert != NULL) {
        /* RenewalReq, proof of possession by the old key (RFC 8894 3.3.1.2);
         * a CA without "Renewal" takes the same request as PKCSReq. */
        signer = renew_cert;
        skey = renew_key;
        mtype = s.c.renewal ? MT_RENEWALREQ : MT_PKCSREQ;
        if (!s.c.renewal)
            enr_info("the CA does not advertise Renewal; sending PKCSReq signed by the old key");
    } else {
        own = self_signed(p, newkey, s.md);
        if (own == NULL) {
            rc = ENR_E_TOKEN;
            goto done;
        }
        signer = own;
        skey = newkey;
        mtype = MT_PKCSREQ;
    }
    if (txid_in == NULL || strcmp(txid_in, txid) != 0) {
        req = enr_make_csr(p, newkey, &chal);
        if (req == NULL) {
            rc = ENR_E_TOKEN;
            goto done;
        }
        ilen = i2d_X509_REQ(req, &inner);
        if (ilen <= 0) {
            rc = ENR_E_FAIL;
            goto done;
        }
        enr_info("profile %s: sending %s to %s", p->name,
                 !strcmp(mtype, MT_RENEWALREQ) ? "RenewalReq" : "PKCSReq", p->url);
        rc = exchange(&s, inner, ilen, mtype, txid, signer, skey, newkey, res);
        /* The CSR holds the challenge: wipe its encoding. */
        OPENSSL_clear_free(inner, (size_t)ilen);
        inner = NULL;
    } else {
        rc = ENR_E_PENDING; /* resume: poll the transaction the CA holds */
    }
    /* A resumed transaction is polled at once, then as many times again. */
    resume = txid_in != NULL && !strcmp(txid_in, txid);
    if (rc == ENR_E_PENDING)
        rc = poll_pending(&s, txid, resume, signer, skey, newkey, res);
    if (rc == ENR_E_PENDING) {
        res->txid = txid;
        txid = NULL;
        enr_info("profile %s: the CA still holds the request; will poll again", p->name);
    }
    if (rc == ENR_OK && res->chain != NULL)
        for (int i = 0; i < sk_X509_num(s.cacerts); i++)
            if (X509_up_ref(sk_X509_value(s.cacerts, i)))
                sk_X509_push(res->chain, sk_X509_value(s.cacerts, i));
done:
    enr_secret_free(&chal);
    X509_REQ_free(req);
    X509_free(own);
    free(txid);
    sk_X509_pop_free(s.cacerts, X509_free);
    return rc;
}

/* ---- The protocol interface (proto.h) -------------------------------------- */

static enr_rc
scep_check(const enr_profile *p, const char *path)
{
    if (p->key_type != ENR_KEY_RSA) {
        enr_err("%s: [certificate] key_type: SCEP needs an RSA key (the CA encrypts its "
                "answer to it, RFC 8894 section 3.5.2)",
                path);
        return ENR_E_CONFIG;
    }
    return ENR_OK;
}

static enr_rc
scep_request(const enr_proto_req *r, void *state, EVP_PKEY *newkey, enr_scep_result *res)
{
    (void)state;
    return enr_scep_enroll(r->p, newkey, r->old, r->oldkey, r->anchors, r->txid, res);
}

const enr_proto_ops enr_proto_scep = {
    "scep", "SCEP (RFC 8894)", 0, scep_check, NULL, scep_request, NULL, NULL, NULL,
};
