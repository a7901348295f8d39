/*
 * scepsrv.c — a small SCEP CA (RFC 8894) for the evertoken-enroll tests.
 * HTTP through libmicrohttpd, every CA operation through OpenSSL.
 *
 *   scepsrv --dir DIR [--port N | --port-file F] [--challenge-file F]
 *           [--pending N] [--wrong-key] [--no-post] [--no-renewal] [--no-aes]
 *           [--days D] [--renew-window D] [--ocsp-url URL] [--crl-url URL|self]
 *           [--cn-only]
 *           [--garbage cacert|racert|reply|truncated|ctype|signer|nonce]
 *
 * DIR holds ca.pem/ca.key (and optionally ra.pem/ra.key, then GetCACert
 * returns both). Issued certificates are written to DIR/issued/SERIAL.pem and
 * to DIR/index.txt in `openssl ca` format, so `openssl ca -revoke/-gencrl`
 * and `openssl ocsp -index` work on them; GET /crl serves DIR/ca.crl. Every
 * request is logged to DIR/requests.log as "METHOD operation type result".
 * The server's clock is DIR/now (epoch seconds) when that file exists, so
 * tests can move the CA in time together with the client.
 *
 * Policy: PKCSReq needs the challenge password (when --challenge-file);
 * RenewalReq must be signed by a currently valid, unrevoked certificate this
 * CA issued with the same subject as the request (and, with --renew-window
 * D, at most D days before its expiry); --pending N answers PENDING to the
 * first N polls of each transaction; --wrong-key issues certificates for a
 * freshly generated key instead of the requested one. --cn-only issues
 * certificates whose subject keeps only the request's CN (a CA that narrows
 * subjects by policy; a RenewalReq is then compared by that narrowed
 * subject). --crl-url may name a place nobody answers (an unreachable
 * distribution point).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <microhttpd.h>
#include <openssl/asn1t.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "testca.h"

#define OID_MESSAGE_TYPE    "2.16.840.1.113733.1.9.2"
#define OID_PKI_STATUS      "2.16.840.1.113733.1.9.3"
#define OID_FAIL_INFO       "2.16.840.1.113733.1.9.4"
#define OID_SENDER_NONCE    "2.16.840.1.113733.1.9.5"
#define OID_RECIPIENT_NONCE "2.16.840.1.113733.1.9.6"
#define OID_TRANSACTION_ID  "2.16.840.1.113733.1.9.7"

typedef struct srv_ias {
    X509_NAME *issuer;
    X509_NAME *subject;
} SRV_IAS;
DECLARE_ASN1_FUNCTIONS(SRV_IAS)
ASN1_SEQUENCE(SRV_IAS) =
    {
        ASN1_SIMPLE(SRV_IAS, issuer, X509_NAME),
        ASN1_SIMPLE(SRV_IAS, subject, X509_NAME),
} ASN1_SEQUENCE_END(SRV_IAS) IMPLEMENT_ASN1_FUNCTIONS(SRV_IAS)

        static struct {
    const char *dir;
    char *challenge;
    int pending, wrong_key, no_post, no_renewal, no_aes, days, renew_window, cn_only;
    const char *ocsp_url, *crl_url;
    const char
        *garbage; /* hostile answers: cacert, racert, reply, truncated, ctype, signer, nonce */
    X509 *ca, *ra;
    EVP_PKEY *ca_key, *ra_key;
} cfg = {.days = 90, .renew_window = -1};

/* The CA side (testca.c): issuing, index, serials, the server's clock. */
static tca tc;

/* Transactions held PENDING: txid, polls left, the request. */
typedef struct held {
    char txid[129];
    int left;
    X509_REQ *req;
} held;
static held held_v[64];
static int held_n;

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
    fprintf(stderr, "scepsrv: %s\n", line);
    snprintf(path, sizeof(path), "%s/requests.log", cfg.dir);
    fp = fopen(path, "a");
    if (fp != NULL) {
        fprintf(fp, "%s\n", line);
        fclose(fp);
    }
}

static X509 *
load_cert(const char *name)
{
    char path[512];
    FILE *fp;
    X509 *x;

    snprintf(path, sizeof(path), "%s/%s", cfg.dir, name);
    fp = fopen(path, "r");
    if (fp == NULL)
        return NULL;
    x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    return x;
}

static EVP_PKEY *
load_key(const char *name)
{
    char path[512];
    FILE *fp;
    EVP_PKEY *k;

    snprintf(path, sizeof(path), "%s/%s", cfg.dir, name);
    fp = fopen(path, "r");
    if (fp == NULL)
        return NULL;
    k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    return k;
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
    const ASN1_STRING *s = o ? CMS_signed_get0_data_by_OBJ(si, o, -3, type) : NULL;
    ASN1_OBJECT_free(o);
    return s;
}

/* ---- Issuing ------------------------------------------------------------ */

/* The subject this CA issues for a request's NAME: NAME itself, or with
 * --cn-only its CN entries alone (a copy either way; NULL on failure). */
static X509_NAME *
issued_subject(const X509_NAME *name)
{
    X509_NAME *n;

    if (!cfg.cn_only)
        return X509_NAME_dup(name);
    n = X509_NAME_new();
    for (int i = -1; n != NULL && (i = X509_NAME_get_index_by_NID(name, NID_commonName, i)) >= 0;)
        if (!X509_NAME_add_entry(n, X509_NAME_get_entry(name, i), -1, 0)) {
            X509_NAME_free(n);
            n = NULL;
        }
    return n;
}

/* The certificate for REQ (testca.c issues it, records it in DIR/issued and
 * DIR/index.txt); NULL on failure. */
static X509 *
issue(X509_REQ *req)
{
    X509_NAME *issued_name = issued_subject(X509_REQ_get_subject_name(req));
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    X509 *x = NULL;
    char *ser, subj[512];

    tc.days = cfg.days;
    tc.ocsp_url = cfg.ocsp_url;
    tc.crl_url = cfg.crl_url;
    if (issued_name != NULL)
        x = tca_issue(&tc, issued_name, X509_REQ_get0_pubkey(req), exts, cfg.wrong_key);
    if (x != NULL) {
        ser = tca_serial_hex(X509_get0_serialNumber(x));
        X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
        logf_("issued serial %s for %s%s", ser ? ser : "?", subj,
              cfg.wrong_key ? " (WRONG KEY)" : "");
        OPENSSL_free(ser);
    }
    X509_NAME_free(issued_name);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return x;
}

/* ---- Replies ------------------------------------------------------------ */

static int
garbage(const char *what)
{
    return cfg.garbage != NULL && !strcmp(cfg.garbage, what);
}

/* CertRep: status "0"/"2"/"3"; on success CERT enveloped for RCPT. */
static unsigned char *
certrep(const char *status, const char *fail, X509 *cert, X509 *rcpt, const ASN1_STRING *txid,
        const ASN1_STRING *nonce, int *outlen)
{
    unsigned char *envder = NULL, *degder = NULL, *der = NULL, sn[16];
    int envlen = 0, deglen;
    CMS_ContentInfo *env = NULL, *sd = NULL;
    CMS_SignerInfo *si;
    PKCS7 *deg = NULL;
    STACK_OF(X509) *rc = NULL;
    BIO *in = NULL, *content = NULL;
    X509 *signer = cfg.ra ? cfg.ra : cfg.ca;
    EVP_PKEY *skey = cfg.ra ? cfg.ra_key : cfg.ca_key;
    unsigned char bad_nonce[64];
    static X509 *foreign;
    static EVP_PKEY *foreign_key;

    if (garbage("signer")) {
        /* Signed by a stranger with the CA's name: must be refused. */
        if (foreign == NULL) {
            time_t now = time(NULL);
            foreign_key = EVP_RSA_gen(2048);
            foreign = X509_new();
            ASN1_INTEGER_set(X509_get_serialNumber(foreign), 666);
            X509_set_subject_name(foreign, X509_get_subject_name(cfg.ca));
            X509_set_issuer_name(foreign, X509_get_subject_name(cfg.ca));
            X509_set_pubkey(foreign, foreign_key);
            X509_time_adj_ex(X509_getm_notBefore(foreign), 0, -60, &now);
            X509_time_adj_ex(X509_getm_notAfter(foreign), 1, 0, &now);
            X509_sign(foreign, foreign_key, EVP_sha256());
        }
        signer = foreign;
        skey = foreign_key;
    }
    if (garbage("nonce") && ASN1_STRING_length(nonce) <= (int)sizeof(bad_nonce)) {
        memcpy(bad_nonce, ASN1_STRING_get0_data(nonce), (size_t)ASN1_STRING_length(nonce));
        bad_nonce[0] ^= 0xff;
    }

    *outlen = 0;
    if (cert != NULL) {
        deg = PKCS7_new();
        PKCS7_set_type(deg, NID_pkcs7_signed);
        PKCS7_content_new(deg, NID_pkcs7_data);
        PKCS7_add_certificate(deg, cert);
        deglen = i2d_PKCS7(deg, &degder);
        in = BIO_new_mem_buf(degder, deglen);
        rc = sk_X509_new_null();
        sk_X509_push(rc, rcpt);
        env = CMS_encrypt(rc, in, cfg.no_aes ? EVP_des_ede3_cbc() : EVP_aes_128_cbc(), CMS_BINARY);
        if (env == NULL)
            goto done;
        envlen = i2d_CMS_ContentInfo(env, &envder);
    }
    content = BIO_new_mem_buf(envder ? (void *)envder : (void *)"", envlen);
    sd = CMS_sign(NULL, NULL, NULL, NULL, CMS_PARTIAL | CMS_BINARY);
    si = CMS_add1_signer(sd, signer, skey, EVP_sha256(), CMS_BINARY | CMS_NOSMIMECAP | CMS_PARTIAL);
    RAND_bytes(sn, sizeof(sn));
    if (si == NULL || !add_attr(si, OID_MESSAGE_TYPE, V_ASN1_PRINTABLESTRING, "3", 1) ||
        !add_attr(si, OID_PKI_STATUS, V_ASN1_PRINTABLESTRING, status, (int)strlen(status)) ||
        !add_attr(si, OID_TRANSACTION_ID, V_ASN1_PRINTABLESTRING, ASN1_STRING_get0_data(txid),
                  ASN1_STRING_length(txid)) ||
        !add_attr(si, OID_RECIPIENT_NONCE, V_ASN1_OCTET_STRING,
                  garbage("nonce") ? bad_nonce : ASN1_STRING_get0_data(nonce),
                  ASN1_STRING_length(nonce)) ||
        !add_attr(si, OID_SENDER_NONCE, V_ASN1_OCTET_STRING, sn, 16))
        goto done;
    if (fail != NULL && !add_attr(si, OID_FAIL_INFO, V_ASN1_PRINTABLESTRING, fail, 1))
        goto done;
    if (CMS_final(sd, content, NULL, CMS_BINARY) != 1)
        goto done;
    *outlen = i2d_CMS_ContentInfo(sd, &der);
done:
    ERR_print_errors_fp(stderr);
    PKCS7_free(deg);
    OPENSSL_free(degder);
    OPENSSL_free(envder);
    sk_X509_free(rc);
    BIO_free(in);
    BIO_free(content);
    CMS_ContentInfo_free(env);
    CMS_ContentInfo_free(sd);
    return der;
}

static int
check_challenge(X509_REQ *req)
{
    int i = X509_REQ_get_attr_by_NID(req, NID_pkcs9_challengePassword, -1);
    X509_ATTRIBUTE *a;
    ASN1_TYPE *t;

    if (cfg.challenge == NULL)
        return 1;
    if (i < 0)
        return 0;
    a = X509_REQ_get_attr(req, i);
    t = X509_ATTRIBUTE_get0_type(a, 0);
    if (t == NULL || (t->type != V_ASN1_UTF8STRING && t->type != V_ASN1_PRINTABLESTRING &&
                      t->type != V_ASN1_IA5STRING))
        return 0;
    return (size_t)ASN1_STRING_length(t->value.asn1_string) == strlen(cfg.challenge) &&
           memcmp(ASN1_STRING_get0_data(t->value.asn1_string), cfg.challenge,
                  strlen(cfg.challenge)) == 0;
}

/* RenewalReq policy: SIGNER is ours, valid now, unrevoked, same subject. */
static const char *
renewal_refusal(X509 *signer, X509_REQ *req)
{
    time_t now = tca_now(&tc);
    char *ser;
    int bad, days, secs;

    if (X509_check_issued(cfg.ca, signer) != X509_V_OK ||
        X509_verify(signer, X509_get0_pubkey(cfg.ca)) != 1)
        return "signer certificate not issued by this CA";
    if (X509_cmp_time(X509_get0_notBefore(signer), &now) > 0 ||
        X509_cmp_time(X509_get0_notAfter(signer), &now) < 0)
        return "signer certificate not valid now";
    {
        X509_NAME *want = issued_subject(X509_REQ_get_subject_name(req));
        int differ = want == NULL || X509_NAME_cmp(X509_get_subject_name(signer), want) != 0;
        X509_NAME_free(want);
        if (differ)
            return "request subject differs from the signer certificate";
    }
    ser = tca_serial_hex(X509_get0_serialNumber(signer));
    bad = ser == NULL || tca_status(&tc, ser) == 'R';
    OPENSSL_free(ser);
    if (bad)
        return "signer certificate revoked";
    if (cfg.renew_window >= 0) {
        ASN1_TIME *t = ASN1_TIME_adj(NULL, now, 0, 0);
        ASN1_TIME_diff(&days, &secs, t, X509_get0_notAfter(signer));
        ASN1_TIME_free(t);
        if (days > cfg.renew_window)
            return "too early to renew";
    }
    return NULL;
}

static unsigned char *
pki_operation(const unsigned char *msg, size_t len, int *outlen, const char *method)
{
    const unsigned char *pp = msg;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &pp, (long)len), *env = NULL;
    STACK_OF(X509) *signers = NULL;
    CMS_SignerInfo *si;
    const ASN1_STRING *mt, *tid, *sn;
    BIO *out = BIO_new(BIO_s_mem()), *dec = BIO_new(BIO_s_mem());
    unsigned char *data, *reply = NULL;
    long dlen;
    X509 *signer, *cert = NULL;
    X509_REQ *req = NULL;
    SRV_IAS *ias = NULL;
    char type[8] = "", tx[129] = "";
    const char *why = NULL;
    held *h = NULL;

    *outlen = 0;
    if (cms == NULL ||
        CMS_verify(cms, NULL, NULL, NULL, out, CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
        logf_("%s PKIOperation: bad signed message", method);
        goto done;
    }
    signers = CMS_get0_signers(cms);
    signer = sk_X509_value(signers, 0);
    si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
    mt = get_attr(si, OID_MESSAGE_TYPE, V_ASN1_PRINTABLESTRING);
    tid = get_attr(si, OID_TRANSACTION_ID, V_ASN1_PRINTABLESTRING);
    sn = get_attr(si, OID_SENDER_NONCE, V_ASN1_OCTET_STRING);
    if (signer == NULL || mt == NULL || tid == NULL || sn == NULL || ASN1_STRING_length(mt) > 7 ||
        ASN1_STRING_length(tid) > 128) {
        logf_("%s PKIOperation: missing SCEP attributes", method);
        goto done;
    }
    memcpy(type, ASN1_STRING_get0_data(mt), (size_t)ASN1_STRING_length(mt));
    memcpy(tx, ASN1_STRING_get0_data(tid), (size_t)ASN1_STRING_length(tid));
    dlen = BIO_get_mem_data(out, &data);
    pp = data;
    env = d2i_CMS_ContentInfo(NULL, &pp, dlen);
    if (env == NULL || CMS_decrypt(env, cfg.ra ? cfg.ra_key : cfg.ca_key, cfg.ra ? cfg.ra : cfg.ca,
                                   NULL, dec, CMS_BINARY) != 1) {
        logf_("%s PKIOperation type %s: cannot decrypt", method, type);
        reply = certrep("2", "1", NULL, NULL, tid, sn, outlen);
        goto done;
    }
    dlen = BIO_get_mem_data(dec, &data);
    pp = data;
    for (int i = 0; i < held_n; i++)
        if (!strcmp(held_v[i].txid, tx))
            h = &held_v[i];
    if (!strcmp(type, "19") || !strcmp(type, "17")) {
        const char *name = type[1] == '9' ? "PKCSReq" : "RenewalReq";
        req = d2i_X509_REQ(NULL, &pp, dlen);
        if (req == NULL || X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) != 1) {
            logf_("%s %s: bad certificate request", method, name);
            reply = certrep("2", "1", NULL, NULL, tid, sn, outlen);
            goto done;
        }
        if (type[1] == '9') {
            if (!check_challenge(req))
                why = "wrong or missing challenge password";
            else if (X509_check_issued(signer, signer) == X509_V_OK &&
                     EVP_PKEY_eq(X509_get0_pubkey(signer), X509_REQ_get0_pubkey(req)) != 1)
                why = "self-signed signer is not the requested key";
        } else if (cfg.no_renewal) {
            why = "renewal not supported";
        } else {
            why = renewal_refusal(signer, req);
        }
        if (why != NULL) {
            logf_("%s %s %s FAILURE: %s", method, name, tx, why);
            reply = certrep("2", "2", NULL, NULL, tid, sn, outlen);
            goto done;
        }
        if (cfg.pending > 0) {
            if (h == NULL && held_n < 64) {
                h = &held_v[held_n++];
                snprintf(h->txid, sizeof(h->txid), "%s", tx);
                h->left = cfg.pending;
            } else if (h != NULL) {
                X509_REQ_free(h->req);
            }
            if (h != NULL) {
                h->req = req;
                req = NULL;
            }
            logf_("%s %s %s PENDING", method, name, tx);
            reply = certrep("3", NULL, NULL, NULL, tid, sn, outlen);
            goto done;
        }
        cert = issue(req);
        logf_("%s %s %s %s", method, name, tx, cert ? "SUCCESS" : "ERROR");
    } else if (!strcmp(type, "20")) {
        ias = d2i_SRV_IAS(NULL, &pp, dlen);
        if (ias == NULL || h == NULL || h->req == NULL ||
            X509_NAME_cmp(ias->subject, X509_REQ_get_subject_name(h->req)) != 0) {
            logf_("%s CertPoll %s FAILURE: unknown transaction", method, tx);
            reply = certrep("2", "4", NULL, NULL, tid, sn, outlen);
            goto done;
        }
        if (--h->left > 0) {
            logf_("%s CertPoll %s PENDING", method, tx);
            reply = certrep("3", NULL, NULL, NULL, tid, sn, outlen);
            goto done;
        }
        cert = issue(h->req);
        X509_REQ_free(h->req);
        h->req = NULL;
        h->txid[0] = '\0';
        logf_("%s CertPoll %s %s", method, tx, cert ? "SUCCESS" : "ERROR");
    } else {
        logf_("%s PKIOperation: unsupported message type %s", method, type);
        reply = certrep("2", "2", NULL, NULL, tid, sn, outlen);
        goto done;
    }
    if (cert == NULL) {
        reply = certrep("2", "2", NULL, NULL, tid, sn, outlen);
        goto done;
    }
    /* Encrypted to the key that signed the request (RFC 8894 3.3.2). */
    reply = certrep("0", NULL, cert, signer, tid, sn, outlen);
done:
    ERR_print_errors_fp(stderr);
    X509_free(cert);
    X509_REQ_free(req);
    SRV_IAS_free(ias);
    sk_X509_free(signers);
    CMS_ContentInfo_free(cms);
    CMS_ContentInfo_free(env);
    BIO_free(out);
    BIO_free(dec);
    return reply;
}

/* ---- HTTP --------------------------------------------------------------- */

typedef struct upload {
    unsigned char *d;
    size_t n;
} upload;

static enum MHD_Result
send_bytes(struct MHD_Connection *c, int code, const char *ctype, void *data, size_t n,
           enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(n, data, mode);
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
    return send_bytes(c, code, "text/plain", (void *)text, strlen(text), MHD_RESPMEM_MUST_COPY);
}

static unsigned char *
b64_decode(const char *s, size_t *n)
{
    size_t len = strlen(s);
    BIO *b = BIO_new_mem_buf(s, (int)len), *f = BIO_new(BIO_f_base64());
    unsigned char *out = malloc(len + 1);
    int r;

    *n = 0;
    if (b == NULL || f == NULL || out == NULL) {
        free(out);
        out = NULL;
        goto done;
    }
    BIO_set_flags(f, BIO_FLAGS_BASE64_NO_NL);
    b = BIO_push(f, b);
    f = NULL;
    r = BIO_read(b, out, (int)len);
    if (r <= 0) {
        free(out);
        out = NULL;
    } else {
        *n = (size_t)r;
    }
done:
    BIO_free_all(b);
    BIO_free(f);
    return out;
}

static enum MHD_Result
handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
        const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
    upload *u = *con_cls;
    const char *op;

    (void)cls;
    (void)version;
    if (u == NULL) {
        u = calloc(1, sizeof(*u));
        *con_cls = u;
        return MHD_YES;
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
    if (!strcmp(url, "/crl")) {
        char path[512];
        FILE *fp;
        unsigned char *buf = malloc(1 << 20);
        size_t n = 0;
        snprintf(path, sizeof(path), "%s/ca.crl", cfg.dir);
        fp = fopen(path, "rb");
        if (fp == NULL || buf == NULL) {
            if (fp)
                fclose(fp);
            free(buf);
            return send_text(c, 404, "no CRL\n");
        }
        n = fread(buf, 1, 1 << 20, fp);
        fclose(fp);
        logf_("GET crl");
        return send_bytes(c, 200, "application/pkix-crl", buf, n, MHD_RESPMEM_MUST_FREE);
    }
    op = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "operation");
    if (op == NULL)
        return send_text(c, 400, "operation missing\n");
    if (!strcmp(op, "GetCACaps")) {
        char caps[256];
        snprintf(caps, sizeof(caps), "%s%s%sSHA-256\nSHA-1\nDES3\n",
                 cfg.no_post ? "" : "POSTPKIOperation\n", cfg.no_renewal ? "" : "Renewal\n",
                 cfg.no_aes ? "" : "AES\n");
        logf_("%s GetCACaps", method);
        return send_text(c, 200, caps);
    }
    if (!strcmp(op, "GetCACert")) {
        unsigned char *der = NULL;
        int n;
        logf_("%s GetCACert", method);
        if (garbage("cacert") || garbage("racert")) {
            unsigned char junk[300];
            RAND_bytes(junk, sizeof(junk));
            junk[0] = 0x30; /* looks like DER for a moment */
            return send_bytes(c, 200,
                              garbage("cacert") ? "application/x-x509-ca-cert"
                                                : "application/x-x509-ca-ra-cert",
                              junk, sizeof(junk), MHD_RESPMEM_MUST_COPY);
        }
        if (cfg.ra != NULL) {
            PKCS7 *p7 = PKCS7_new();
            PKCS7_set_type(p7, NID_pkcs7_signed);
            PKCS7_content_new(p7, NID_pkcs7_data);
            PKCS7_add_certificate(p7, cfg.ra);
            PKCS7_add_certificate(p7, cfg.ca);
            n = i2d_PKCS7(p7, &der);
            PKCS7_free(p7);
            enum MHD_Result r = send_bytes(c, 200, "application/x-x509-ca-ra-cert", der, (size_t)n,
                                           MHD_RESPMEM_MUST_COPY);
            OPENSSL_free(der);
            return r;
        }
        n = i2d_X509(cfg.ca, &der);
        enum MHD_Result r =
            send_bytes(c, 200, "application/x-x509-ca-cert", der, (size_t)n, MHD_RESPMEM_MUST_COPY);
        OPENSSL_free(der);
        return r;
    }
    if (!strcmp(op, "PKIOperation")) {
        unsigned char *msg = NULL, *reply;
        size_t n = 0;
        int rl;
        if (!strcmp(method, "POST")) {
            if (cfg.no_post)
                return send_text(c, 405, "POST not supported\n");
            msg = u->d;
            n = u->n;
            u->d = NULL;
        } else {
            const char *m = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "message");
            if (m == NULL)
                return send_text(c, 400, "message missing\n");
            msg = b64_decode(m, &n);
            if (msg == NULL)
                return send_text(c, 400, "message is not base64\n");
        }
        reply = pki_operation(msg, n, &rl, method);
        free(msg);
        if (reply == NULL)
            return send_text(c, 400, "bad PKIOperation\n");
        if (garbage("reply"))
            RAND_bytes(reply, rl);
        if (garbage("truncated"))
            rl /= 2;
        enum MHD_Result r =
            send_bytes(c, 200, garbage("ctype") ? "text/html" : "application/x-pki-message", reply,
                       (size_t)rl, MHD_RESPMEM_MUST_COPY);
        OPENSSL_free(reply);
        return r;
    }
    return send_text(c, 400, "unknown operation\n");
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

int
main(int argc, char **argv)
{
    const char *port_file = NULL, *chal_file = NULL;
    int port = 0;
    struct MHD_Daemon *d;
    struct sockaddr_in sa;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--dir") && v)
            cfg.dir = argv[++i];
        else if (!strcmp(a, "--port") && v)
            port = atoi(argv[++i]);
        else if (!strcmp(a, "--port-file") && v)
            port_file = argv[++i];
        else if (!strcmp(a, "--challenge-file") && v)
            chal_file = argv[++i];
        else if (!strcmp(a, "--pending") && v)
            cfg.pending = atoi(argv[++i]);
        else if (!strcmp(a, "--days") && v)
            cfg.days = atoi(argv[++i]);
        else if (!strcmp(a, "--renew-window") && v)
            cfg.renew_window = atoi(argv[++i]);
        else if (!strcmp(a, "--ocsp-url") && v)
            cfg.ocsp_url = argv[++i];
        else if (!strcmp(a, "--crl-url") && v)
            cfg.crl_url = argv[++i];
        else if (!strcmp(a, "--wrong-key"))
            cfg.wrong_key = 1;
        else if (!strcmp(a, "--no-post"))
            cfg.no_post = 1;
        else if (!strcmp(a, "--no-renewal"))
            cfg.no_renewal = 1;
        else if (!strcmp(a, "--garbage") && v)
            cfg.garbage = argv[++i];
        else if (!strcmp(a, "--no-aes"))
            cfg.no_aes = 1;
        else if (!strcmp(a, "--cn-only"))
            cfg.cn_only = 1;
        else {
            fprintf(stderr, "scepsrv: unknown argument %s\n", a);
            return 2;
        }
    }
    if (cfg.dir == NULL) {
        fprintf(stderr, "scepsrv: --dir DIR is required\n");
        return 2;
    }
    if (tca_init(&tc, cfg.dir) != 0) {
        fprintf(stderr, "scepsrv: cannot load %s/ca.pem and ca.key\n", cfg.dir);
        return 1;
    }
    cfg.ca = tc.ca;
    cfg.ca_key = tc.ca_key;
    cfg.ra = load_cert("ra.pem");
    cfg.ra_key = cfg.ra ? load_key("ra.key") : NULL;
    if (cfg.ca == NULL || cfg.ca_key == NULL || (cfg.ra != NULL && cfg.ra_key == NULL)) {
        fprintf(stderr, "scepsrv: cannot load %s/ca.pem and ca.key (or ra.pem/ra.key)\n", cfg.dir);
        return 1;
    }
    if (chal_file != NULL) {
        FILE *fp = fopen(chal_file, "r");
        char buf[256];
        if (fp == NULL || fgets(buf, sizeof(buf), fp) == NULL) {
            fprintf(stderr, "scepsrv: cannot read %s\n", chal_file);
            return 1;
        }
        fclose(fp);
        buf[strcspn(buf, "\r\n")] = '\0';
        cfg.challenge = strdup(buf);
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)port, NULL, NULL, handler, NULL,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED,
                         completed, NULL, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "scepsrv: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
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
    if (cfg.crl_url != NULL && !strcmp(cfg.crl_url, "self")) {
        /* The CRL this server serves itself, at its own (possibly chosen) port. */
        static char self[64];
        snprintf(self, sizeof(self), "http://127.0.0.1:%d/crl", port);
        cfg.crl_url = self;
    }
    fprintf(stderr, "scepsrv: listening on 127.0.0.1:%d\n", port);
    signal(SIGTERM, on_sig);
    signal(SIGINT, on_sig);
    while (!stop)
        pause();
    MHD_stop_daemon(d);
    return 0;
}
