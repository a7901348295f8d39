/*
 * estsrv.c — a small EST CA (RFC 7030) for the evertoken-enroll tests.
 * HTTPS through libmicrohttpd (GnuTLS underneath: client certificates are
 * requested because a trust list is given, and read from the GnuTLS
 * session); every CA operation and every check through OpenSSL.
 *
 *   estsrv --dir DIR [--port-file F] [--user U --password-file F]
 *          [--code-file F] [--label L] [--pending N] [--wrong-key] [--days D]
 *          [--rollover] [--garbage] [--hostile badchar|truncated|big]
 *          [--csrattrs FILE [--csrattrs-enforce]] [--bootstrap-ca FILE]
 *          [--b64 lines|unwrapped|crlf-ws|nul] [--reenroll-auth] [--cn-only]
 *          [--crl-url URL|hang]
 *
 * DIR holds ca.pem/ca.key (the CA), tls.pem/tls.key (the server's TLS
 * certificate) and, with --rollover, ca2.pem/ca2.key: the new CA key. Then
 * /cacerts returns OldWithOld, OldWithNew, NewWithOld and NewWithNew (RFC
 * 7030 section 4.1.3; the two link certificates are made here) and new
 * certificates are issued by the new key. Requests are logged to
 * DIR/requests.log as "operation result detail". Issued certificates start
 * at DIR/now (epoch seconds) when that file exists, as with scepsrv, so that
 * a client living at a simulated time gets certificates valid then.
 *
 * Policy, as RFC 7030 asks of a server:
 *  - /simpleenroll needs HTTP basic credentials (--user, --password-file) or
 *    the one-time enrollment code (--code-file) as the CSR's
 *    challengePassword, or (--bootstrap-ca FILE) a TLS client certificate
 *    issued by that bootstrap CA and valid now; nothing: 401 with a Basic
 *    challenge; a wrong password: 401; a wrong or used code: 403.
 *  - /simplereenroll needs a TLS client certificate this CA issued, valid
 *    now (none: 401; another: 403), whose subject and subjectAltName the CSR
 *    repeats (else 400, section 4.2.2).
 *  - the CSR's own signature must verify (proof of possession), else 400.
 *  - --pending N answers the first N enrollment requests with 202 and
 *    Retry-After: 2; --wrong-key issues for a freshly generated key;
 *    --garbage answers with base64 that is not PKCS#7.
 *  - --reenroll-auth: /simplereenroll, and /simpleenroll authenticated by a
 *    bootstrap certificate, need HTTP basic credentials (--user,
 *    --password-file) besides the client certificate, as RFC 7030 section
 *    3.2.3 allows: none is a 401 with a Basic challenge, wrong ones a 401.
 *    The log lines of these requests end in "conn=N": the number of the TCP
 *    (TLS) connection that carried them, counted from 1, so a test sees
 *    whether the retry with credentials came over the same connection.
 *  - --cn-only: issued certificates keep only the request's CN in their
 *    subject (a CA narrowing subjects by policy).
 *  - --crl-url URL: issued certificates name URL as CRL distribution point;
 *    "hang": a port on 127.0.0.1 that takes connections and never answers.
 *  - --b64: the form of the base64 bodies of /cacerts and /simple(re)enroll,
 *    as servers in the field send them: lines (64 characters, LF; the
 *    default), unwrapped (one line, no newline), crlf-ws (76-character CRLF
 *    lines, then spaces and a blank line), nul (one line, CRLF, a NUL byte).
 *    --hostile, for the /simple(re)enroll answers: badchar (a '*' inside the
 *    base64), truncated (the last three characters cut), big (9 MiB of
 *    base64).
 *  - /csrattrs: 404 (unknown operation) unless --csrattrs FILE: then FILE's
 *    bytes as they are (base64 of a DER CsrAttrs, or anything for the tests
 *    of malformed answers), 204 when FILE is empty. --csrattrs-enforce
 *    rejects (400) a CSR that does not meet them: signature algorithm, key
 *    type, curve or RSA size, and keyUsage/extKeyUsage values asked in an
 *    extensionRequest. The issued line of requests.log names the CSR's
 *    signature algorithm and key ("sig=... key=...").
 */
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <openssl/asn1t.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

static struct {
    const char *dir, *user, *label, *garbage, *b64, *hostile, *crl_url;
    int reenroll_auth, cn_only;
    char *password, *code;
    char *csrattrs; /* --csrattrs FILE's bytes, NUL-terminated */
    size_t csrattrs_len;
    int csrattrs_enforce;
    int code_used, pending, wrong_key, days, rollover;
    X509 *ca, *ca2, *old_with_new, *new_with_old;
    X509 *boot_ca; /* --bootstrap-ca: issuer of bootstrap certificates for /simpleenroll */
    EVP_PKEY *ca_key, *ca2_key;
} cfg = {.days = 90};

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
    fprintf(stderr, "estsrv: %s\n", line);
    snprintf(path, sizeof(path), "%s/requests.log", cfg.dir);
    fp = fopen(path, "a");
    if (fp != NULL) {
        fprintf(fp, "%s\n", line);
        fclose(fp);
    }
}

static char *
read_text(const char *name)
{
    char path[512];
    FILE *fp;
    char *buf;
    size_t n;

    snprintf(path, sizeof(path), "%s/%s", cfg.dir, name);
    fp = fopen(path, "r");
    if (fp == NULL)
        return NULL;
    buf = calloc(1, 1 << 16);
    n = buf ? fread(buf, 1, (1 << 16) - 1, fp) : 0;
    fclose(fp);
    if (buf != NULL && n == 0) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

static X509 *
load_cert(const char *name)
{
    char *t = read_text(name);
    BIO *b = t ? BIO_new_mem_buf(t, -1) : NULL;
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

    BIO_free(b);
    free(t);
    return x;
}

static EVP_PKEY *
load_key(const char *name)
{
    char *t = read_text(name);
    BIO *b = t ? BIO_new_mem_buf(t, -1) : NULL;
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;

    BIO_free(b);
    free(t);
    return k;
}

static char *
first_line(const char *path)
{
    FILE *fp = fopen(path, "r");
    char buf[256];

    if (fp == NULL || fgets(buf, sizeof(buf), fp) == NULL) {
        if (fp)
            fclose(fp);
        return NULL;
    }
    fclose(fp);
    buf[strcspn(buf, "\r\n")] = '\0';
    return strdup(buf);
}

static long
next_serial(void)
{
    char path[512];
    long s = 0x2000;
    FILE *fp;

    snprintf(path, sizeof(path), "%s/serial.next", cfg.dir);
    fp = fopen(path, "r");
    if (fp != NULL) {
        if (fscanf(fp, "%lx", &s) != 1)
            s = 0x2000;
        fclose(fp);
    }
    fp = fopen(path, "w");
    if (fp != NULL) {
        fprintf(fp, "%lx\n", s + 1);
        fclose(fp);
    }
    return s;
}

static int
add_ext(X509 *issuer, X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *e;

    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (e == NULL)
        return 0;
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return 1;
}

/* A certificate for SUBJECT's name and key, issued by ISSUER/IKEY. */
/* The issuing clock: DIR/now when it exists, else the real time. */
static time_t
issue_now(void)
{
    char path[512];
    FILE *fp;
    long long t;

    snprintf(path, sizeof(path), "%s/now", cfg.dir);
    fp = fopen(path, "r");
    if (fp != NULL) {
        int ok = fscanf(fp, "%lld", &t) == 1;
        fclose(fp);
        if (ok)
            return (time_t)t;
    }
    return time(NULL);
}

static X509 *
make_cert(X509 *issuer, EVP_PKEY *ikey, const X509_NAME *subject, EVP_PKEY *pub, int ca,
          const STACK_OF(X509_EXTENSION) * copy)
{
    X509 *x = X509_new();
    time_t now = ca ? time(NULL) : issue_now();

    ASN1_INTEGER_set(X509_get_serialNumber(x), next_serial());
    X509_set_version(x, 2);
    X509_set_subject_name(x, subject);
    X509_set_issuer_name(x, X509_get_subject_name(issuer));
    X509_set_pubkey(x, pub);
    X509_time_adj_ex(X509_getm_notBefore(x), 0, -60, &now);
    X509_time_adj_ex(X509_getm_notAfter(x), ca ? 3650 : cfg.days, 0, &now);
    if (ca) {
        add_ext(issuer, x, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(issuer, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(issuer, x, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(issuer, x, NID_key_usage, "critical,digitalSignature,keyEncipherment");
        add_ext(issuer, x, NID_ext_key_usage, "clientAuth");
    }
    add_ext(issuer, x, NID_subject_key_identifier, "hash");
    add_ext(issuer, x, NID_authority_key_identifier, "keyid");
    if (!ca && cfg.crl_url != NULL) {
        char dp[600];
        snprintf(dp, sizeof(dp), "URI:%s", cfg.crl_url);
        add_ext(issuer, x, NID_crl_distribution_points, dp);
    }
    for (int i = 0; i < sk_X509_EXTENSION_num(copy); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(copy, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name)
            X509_add_ext(x, e, -1);
    }
    if (!X509_sign(x, ikey, EVP_sha256())) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* ---- HTTP ---------------------------------------------------------------- */

typedef struct upload {
    char *d;
    size_t n;
} upload;

static enum MHD_Result
reply_len(struct MHD_Connection *c, int code, const char *ctype, const char *text, size_t len,
          long retry_after)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;
    char ra[32];

    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    if (!strncmp(ctype, "application/pkcs7-mime", 22))
        MHD_add_response_header(r, "Content-Transfer-Encoding", "base64");
    if (retry_after >= 0) {
        snprintf(ra, sizeof(ra), "%ld", retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    ret = MHD_queue_response(c, (unsigned)code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
reply(struct MHD_Connection *c, int code, const char *ctype, const char *text, long retry_after)
{
    return reply_len(c, code, ctype, text, strlen(text), retry_after);
}

static enum MHD_Result
text(struct MHD_Connection *c, int code, const char *op, const char *why)
{
    char buf[512];

    logf_("%s %d %s", op, code, why);
    snprintf(buf, sizeof(buf), "%s\n", why);
    return reply(c, code, "text/plain", buf, -1);
}

/* Base64 of DER (LEN bytes) in the form --b64 and --hostile ask for;
 * *N gets its length (it may hold a NUL). Malloc'd. */
static char *
body_b64(const unsigned char *der, int len, int hostile, size_t *n)
{
    const char *form = cfg.b64 ? cfg.b64 : "lines";
    const char *h = hostile ? cfg.hostile : NULL;
    size_t fl = 4 * (((size_t)len + 2) / 3), j = 0;
    char *flat = malloc(fl + 1), *out;

    if (h != NULL && !strcmp(h, "big")) {
        /* 5 MiB of well-formed base64, far beyond any EST answer. */
        size_t big = (size_t)9 << 20; /* above the helper's 8 MiB */
        out = malloc(big + 1);
        if (out != NULL) {
            memset(out, 'A', big);
            out[big] = '\0';
            *n = big;
        }
        free(flat);
        return out;
    }
    out = malloc(fl + fl / 64 * 2 + 16);
    if (flat == NULL || out == NULL) {
        free(flat);
        free(out);
        return NULL;
    }
    EVP_EncodeBlock((unsigned char *)flat, der, len);
    if (h != NULL && !strcmp(h, "badchar"))
        flat[fl / 2] = '*';
    if (h != NULL && !strcmp(h, "truncated"))
        fl -= 3;
    for (size_t k = 0; k < fl; k++) {
        out[j++] = flat[k];
        if (!strcmp(form, "lines") && ((k + 1) % 64 == 0 || k + 1 == fl))
            out[j++] = '\n';
        if (!strcmp(form, "crlf-ws") && ((k + 1) % 76 == 0 || k + 1 == fl)) {
            out[j++] = '\r';
            out[j++] = '\n';
        }
    }
    if (!strcmp(form, "crlf-ws")) {
        memcpy(out + j, "  \r\n", 4);
        j += 4;
    } else if (!strcmp(form, "nul")) {
        memcpy(out + j, "\r\n", 3); /* CR, LF and the NUL */
        j += 3;
    }
    out[j] = '\0';
    *n = j;
    free(flat);
    return out;
}

/* A certs-only PKCS#7 of CERTS, base64 (RFC 7030 4.1.3) as body_b64 makes it
 * (ISSUED: the answer of /simple(re)enroll, where --hostile applies). */
static enum MHD_Result
certs_only(struct MHD_Connection *c, STACK_OF(X509) * certs, int issued)
{
    PKCS7 *p7 = PKCS7_new();
    unsigned char *der = NULL;
    char *s;
    size_t n = 0;
    int len;
    enum MHD_Result r;

    PKCS7_set_type(p7, NID_pkcs7_signed);
    PKCS7_content_new(p7, NID_pkcs7_data);
    for (int i = 0; i < sk_X509_num(certs); i++)
        PKCS7_add_certificate(p7, sk_X509_value(certs, i));
    len = i2d_PKCS7(p7, &der);
    if (cfg.garbage != NULL) {
        RAND_bytes(der, len); /* valid base64 of something that is not PKCS#7 */
        der[0] = 0x30;
    }
    s = body_b64(der, len, issued, &n);
    r = s ? reply_len(c, 200, "application/pkcs7-mime; smime-type=certs-only", s, n, -1) : MHD_NO;
    free(s);
    OPENSSL_free(der);
    PKCS7_free(p7);
    return r;
}

/* The base64 body (any line breaks) as a PKCS#10 request. */
static X509_REQ *
parse_csr(const upload *u)
{
    char *clean = malloc(u->n + 1);
    unsigned char *der = malloc(u->n + 1);
    const unsigned char *p = der;
    size_t j = 0;
    int len;
    X509_REQ *req = NULL;

    if (clean == NULL || der == NULL || u->d == NULL)
        goto done;
    for (size_t i = 0; i < u->n; i++)
        if (u->d[i] != '\n' && u->d[i] != '\r' && u->d[i] != ' ')
            clean[j++] = u->d[i];
    if (j == 0 || j % 4 != 0)
        goto done;
    len = EVP_DecodeBlock(der, (unsigned char *)clean, (int)j);
    if (len <= 0)
        goto done;
    len -= (clean[j - 1] == '=') + (clean[j - 2] == '=');
    req = d2i_X509_REQ(NULL, &p, len);
done:
    free(clean);
    free(der);
    return req;
}

static int
csr_code_ok(X509_REQ *req)
{
    int i = X509_REQ_get_attr_by_NID(req, NID_pkcs9_challengePassword, -1);
    ASN1_TYPE *t = i >= 0 ? X509_ATTRIBUTE_get0_type(X509_REQ_get_attr(req, i), 0) : NULL;

    if (cfg.code == NULL || t == NULL ||
        (t->type != V_ASN1_UTF8STRING && t->type != V_ASN1_PRINTABLESTRING))
        return 0;
    return (size_t)ASN1_STRING_length(t->value.asn1_string) == strlen(cfg.code) &&
           !memcmp(ASN1_STRING_get0_data(t->value.asn1_string), cfg.code, strlen(cfg.code));
}

static int
has_code(X509_REQ *req)
{
    return X509_REQ_get_attr_by_NID(req, NID_pkcs9_challengePassword, -1) >= 0;
}

/* The TLS client certificate, through GnuTLS; NULL when none was sent. */
static X509 *
client_cert(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    const gnutls_datum_t *l;
    unsigned int n = 0;
    const unsigned char *p;

    if (ci == NULL || ci->tls_session == NULL)
        return NULL;
    l = gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session, &n);
    if (l == NULL || n == 0)
        return NULL;
    p = l[0].data;
    return d2i_X509(NULL, &p, (long)l[0].size);
}

/* Issued by this CA (either key in a rollover) and valid now. */
static const char *
client_refusal(X509 *x)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    const char *why = NULL;

    X509_STORE_add_cert(st, cfg.ca);
    if (cfg.ca2)
        X509_STORE_add_cert(st, cfg.ca2);
    /* Its own CA certificate is enough, also when it is an intermediate. */
    X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
    X509_STORE_CTX_init(ctx, st, x, NULL);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    if (X509_verify_cert(ctx) != 1)
        why = X509_STORE_CTX_get_error(ctx) == X509_V_ERR_CERT_HAS_EXPIRED
                  ? "client certificate expired"
                  : "client certificate not issued by this CA";
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    return why;
}

/* Issued by the bootstrap CA and valid now. */
static int
bootstrap_ok(X509 *x)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = st != NULL && ctx != NULL && X509_STORE_add_cert(st, cfg.boot_ca) == 1 &&
             X509_STORE_CTX_init(ctx, st, x, NULL) == 1 &&
             X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) == 1 &&
             X509_verify_cert(ctx) == 1;

    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    return ok;
}

static int
same_san(X509 *x, X509_REQ *req)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    ASN1_OCTET_STRING *a = NULL, *b = NULL;
    int i = X509_get_ext_by_NID(x, NID_subject_alt_name, -1), eq;

    if (i >= 0)
        a = X509_EXTENSION_get_data(X509_get_ext(x, i));
    for (int k = 0; k < sk_X509_EXTENSION_num(exts); k++)
        if (OBJ_obj2nid(X509_EXTENSION_get_object(sk_X509_EXTENSION_value(exts, k))) ==
            NID_subject_alt_name)
            b = X509_EXTENSION_get_data(sk_X509_EXTENSION_value(exts, k));
    eq = (a == NULL && b == NULL) || (a != NULL && b != NULL && !ASN1_OCTET_STRING_cmp(a, b));
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return eq;
}

/* ---- /csrattrs ------------------------------------------------------------ */

/* CsrAttrs ::= SEQUENCE OF AttrOrOID (RFC 7030 section 4.5.2), for --csrattrs-enforce. */
typedef struct srv_attr_or_oid {
    int type;
    union {
        ASN1_OBJECT *oid;
        X509_ATTRIBUTE *attribute;
    } d;
} SRV_ATTR_OR_OID;

ASN1_CHOICE(SRV_ATTR_OR_OID) =
    {
        ASN1_SIMPLE(SRV_ATTR_OR_OID, d.oid, ASN1_OBJECT),
        ASN1_SIMPLE(SRV_ATTR_OR_OID, d.attribute, X509_ATTRIBUTE),
} static_ASN1_CHOICE_END(SRV_ATTR_OR_OID)

        ASN1_ITEM_TEMPLATE(SRV_CSRATTRS) = ASN1_EX_TEMPLATE_TYPE(ASN1_TFLG_SEQUENCE_OF, 0, CsrAttrs,
                                                                 SRV_ATTR_OR_OID)
            static_ASN1_ITEM_TEMPLATE_END(SRV_CSRATTRS)

                DEFINE_STACK_OF(SRV_ATTR_OR_OID)

                    static int is_sigalg(int nid)
{
    return nid == NID_ecdsa_with_SHA256 || nid == NID_ecdsa_with_SHA384 ||
           nid == NID_ecdsa_with_SHA512 || nid == NID_sha256WithRSAEncryption ||
           nid == NID_sha384WithRSAEncryption || nid == NID_sha512WithRSAEncryption;
}

/* The CSR's extension of type NID, NULL when absent (in EXTS). */
static X509_EXTENSION *
find_ext(STACK_OF(X509_EXTENSION) * exts, int nid)
{
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++)
        if (OBJ_obj2nid(X509_EXTENSION_get_object(sk_X509_EXTENSION_value(exts, i))) == nid)
            return sk_X509_EXTENSION_value(exts, i);
    return NULL;
}

/* Why REQ does not meet --csrattrs (static text in WHY), NULL when it does. */
static const char *
csrattrs_refusal(X509_REQ *req, char *why, size_t wn)
{
    unsigned char *der = malloc(cfg.csrattrs_len + 1);
    const unsigned char *p = der;
    STACK_OF(SRV_ATTR_OR_OID) *sk = NULL;
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    const X509_ALGOR *sig = NULL;
    const ASN1_OBJECT *sigoid = NULL;
    char grp[64] = "";
    const char *res = NULL;
    int len;

    X509_REQ_get0_signature(req, NULL, &sig);
    X509_ALGOR_get0(&sigoid, NULL, NULL, sig);
    EVP_PKEY_get_group_name(pub, grp, sizeof(grp), NULL);
    {
        /* EVP_DecodeBlock wants one line: drop the line breaks first. */
        char *flat = malloc(cfg.csrattrs_len + 1);
        size_t j = 0;
        for (size_t i = 0; flat != NULL && i < cfg.csrattrs_len; i++)
            if (cfg.csrattrs[i] != '\n' && cfg.csrattrs[i] != '\r')
                flat[j++] = cfg.csrattrs[i];
        len = flat && der && j > 0 ? EVP_DecodeBlock(der, (unsigned char *)flat, (int)j) : -1;
        if (len > 0 && j >= 2)
            len -= (flat[j - 1] == '=') + (flat[j - 2] == '=');
        free(flat);
    }
    sk = len > 0 ? (STACK_OF(SRV_ATTR_OR_OID) *)ASN1_item_d2i(NULL, &p, len,
                                                              ASN1_ITEM_rptr(SRV_CSRATTRS))
                 : NULL;
    for (int i = 0; sk != NULL && res == NULL && i < sk_SRV_ATTR_OR_OID_num(sk); i++) {
        SRV_ATTR_OR_OID *e = sk_SRV_ATTR_OR_OID_value(sk, i);
        const ASN1_OBJECT *o = e->type == 0 ? e->d.oid : X509_ATTRIBUTE_get0_object(e->d.attribute);
        int nid = OBJ_obj2nid(o);
        if (e->type == 0 && is_sigalg(nid) && OBJ_cmp(o, sigoid) != 0)
            res = "CSR signature algorithm is not the one csrattrs asks for";
        else if (nid == NID_X9_62_id_ecPublicKey && EVP_PKEY_get_base_id(pub) != EVP_PKEY_EC)
            res = "CSR key is not an EC key as csrattrs asks";
        else if (nid == NID_rsaEncryption && EVP_PKEY_get_base_id(pub) != EVP_PKEY_RSA)
            res = "CSR key is not an RSA key as csrattrs asks";
        else if (e->type == 1 && nid == NID_X9_62_id_ecPublicKey) {
            ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(e->d.attribute, 0);
            if (t != NULL && t->type == V_ASN1_OBJECT &&
                OBJ_txt2nid(grp) != OBJ_obj2nid(t->value.object) &&
                EC_curve_nist2nid(grp) != OBJ_obj2nid(t->value.object))
                res = "CSR key is not on the curve csrattrs asks for";
        } else if (e->type == 1 && nid == NID_rsaEncryption) {
            ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(e->d.attribute, 0);
            if (t != NULL && t->type == V_ASN1_INTEGER &&
                ASN1_INTEGER_get(t->value.integer) != EVP_PKEY_get_bits(pub))
                res = "CSR RSA key is not of the size csrattrs asks for";
        } else if (e->type == 1 && nid == NID_ext_req) {
            for (int v = 0; res == NULL && v < X509_ATTRIBUTE_count(e->d.attribute); v++) {
                ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(e->d.attribute, v);
                STACK_OF(X509_EXTENSION) *want =
                    t->type == V_ASN1_SEQUENCE
                        ? ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(X509_EXTENSIONS), t)
                        : NULL;
                for (int k = 0; res == NULL && k < sk_X509_EXTENSION_num(want); k++) {
                    X509_EXTENSION *w = sk_X509_EXTENSION_value(want, k);
                    int wn_ = OBJ_obj2nid(X509_EXTENSION_get_object(w));
                    X509_EXTENSION *h = find_ext(exts, wn_);
                    if ((wn_ == NID_key_usage || wn_ == NID_ext_key_usage) &&
                        (h == NULL || ASN1_OCTET_STRING_cmp(X509_EXTENSION_get_data(h),
                                                            X509_EXTENSION_get_data(w)) != 0))
                        res = "CSR lacks an extension csrattrs asks for";
                }
                sk_X509_EXTENSION_pop_free(want, X509_EXTENSION_free);
            }
        }
    }
    if (res != NULL)
        snprintf(why, wn, "%s", res);
    ASN1_item_free((ASN1_VALUE *)sk, ASN1_ITEM_rptr(SRV_CSRATTRS));
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    free(der);
    return res ? why : NULL;
}

/* "sha384WithRSAEncryption" and "RSA-2048" / "EC-secp384r1" of REQ. */
static void
describe_csr(X509_REQ *req, char *sig, size_t sn, char *key, size_t kn)
{
    const X509_ALGOR *alg = NULL;
    const ASN1_OBJECT *o = NULL;
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    char grp[64] = "";

    X509_REQ_get0_signature(req, NULL, &alg);
    X509_ALGOR_get0(&o, NULL, NULL, alg);
    OBJ_obj2txt(sig, (int)sn, o, 0);
    if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_EC) {
        EVP_PKEY_get_group_name(pub, grp, sizeof(grp), NULL);
        snprintf(key, kn, "EC-%s", grp);
    } else {
        snprintf(key, kn, "RSA-%d", EVP_PKEY_get_bits(pub));
    }
}

/* The number of the connection C (NOTIFY_CONNECTION below), 0 if unknown. */
static unsigned
conn_no(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return ci != NULL ? (unsigned)(uintptr_t)ci->socket_context : 0;
}

static unsigned conn_count;

static void
conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
            enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    (void)c;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        *socket_context = (void *)(uintptr_t)++conn_count; /* one polling thread */
}

/* RFC 7030 3.2.3: HTTP basic credentials besides the client certificate
 * (--reenroll-auth). 1: none given, a 401 with a Basic challenge is queued
 * in *R; 0: given (wrong ones set *CODE and *WHY). */
static int
auth_besides_cert(struct MHD_Connection *c, const char *op, int *code, const char **why,
                  enum MHD_Result *r)
{
    char *pass = NULL, *user = MHD_basic_auth_get_username_password(c, &pass);
    int bad;

    if (user == NULL) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(
            strlen("HTTP authentication required\n"), (void *)"HTTP authentication required\n",
            MHD_RESPMEM_PERSISTENT);
        logf_("%s 401 client-cert without HTTP credentials conn=%u", op, conn_no(c));
        *r = MHD_queue_basic_auth_fail_response(c, "est", resp);
        MHD_destroy_response(resp);
        return 1;
    }
    bad = cfg.user == NULL || cfg.password == NULL || strcmp(user, cfg.user) || pass == NULL ||
          strcmp(pass, cfg.password);
    MHD_free(user);
    if (pass != NULL)
        MHD_free(pass);
    if (bad) {
        *code = 401;
        *why = "wrong user name or password";
    }
    return 0;
}

static enum MHD_Result
enroll(struct MHD_Connection *c, const char *op, const upload *u)
{
    int re = !strcmp(op, "simplereenroll");
    X509_REQ *req = parse_csr(u);
    X509 *cc = NULL, *x = NULL;
    EVP_PKEY *pub, *wrong = NULL;
    STACK_OF(X509) *out = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    const char *why = NULL, *how = NULL;
    char *user = NULL, *pass = NULL, *ser = NULL;
    char sig[80] = "", kdesc[80] = "", cwhy[160];
    X509_NAME *subj = NULL;
    enum MHD_Result r;
    int code = 0;

    if (req == NULL || X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) != 1) {
        code = 400;
        why = req ? "CSR signature does not verify" : "body is not a base64 PKCS#10 request";
        goto done;
    }
    describe_csr(req, sig, sizeof(sig), kdesc, sizeof(kdesc));
    if (cfg.csrattrs_enforce && (why = csrattrs_refusal(req, cwhy, sizeof(cwhy))) != NULL) {
        code = 400;
        goto done;
    }
    if (re) {
        cc = client_cert(c);
        if (cc == NULL) {
            code = 401;
            why = "re-enrollment needs a TLS client certificate";
        } else if ((why = client_refusal(cc)) != NULL) {
            code = 403;
        } else if (X509_NAME_cmp(X509_get_subject_name(cc), X509_REQ_get_subject_name(req))) {
            code = 400;
            why = "CSR subject differs from the client certificate";
        } else if (!same_san(cc, req)) {
            code = 400;
            why = "CSR subjectAltName differs from the client certificate";
        }
        how = "client-cert";
        if (code == 0 && cfg.reenroll_auth) {
            if (auth_besides_cert(c, op, &code, &why, &r)) {
                X509_REQ_free(req);
                X509_free(cc);
                return r;
            }
            how = "client-cert+basic";
        }
        if (code != 0)
            goto done;
    } else {
        if (cfg.boot_ca != NULL)
            cc = client_cert(c);
        user = MHD_basic_auth_get_username_password(c, &pass);
        if (cc != NULL && bootstrap_ok(cc)) {
            how = "bootstrap-cert"; /* authenticated by the device's bootstrap credential */
            if (cfg.reenroll_auth) {
                if (user != NULL)
                    MHD_free(user);
                if (pass != NULL)
                    MHD_free(pass);
                user = pass = NULL;
                if (auth_besides_cert(c, op, &code, &why, &r)) {
                    X509_REQ_free(req);
                    X509_free(cc);
                    return r;
                }
                how = "bootstrap-cert+basic";
            }
        } else if (user != NULL) {
            if (cfg.user == NULL || cfg.password == NULL || strcmp(user, cfg.user) ||
                pass == NULL || strcmp(pass, cfg.password)) {
                code = 401;
                why = "wrong user name or password";
            }
            how = "basic";
        } else if (has_code(req)) {
            if (!csr_code_ok(req) || cfg.code_used) {
                code = 403;
                why = cfg.code_used && csr_code_ok(req) ? "enrollment code already used"
                                                        : "wrong enrollment code";
            }
            how = "code";
        } else {
            logf_("%s 401 no credentials", op);
            struct MHD_Response *resp = MHD_create_response_from_buffer(
                strlen("authentication required\n"), (void *)"authentication required\n",
                MHD_RESPMEM_PERSISTENT);
            r = MHD_queue_basic_auth_fail_response(c, "est", resp);
            MHD_destroy_response(resp);
            X509_REQ_free(req);
            return r;
        }
        if (code != 0)
            goto done;
    }
    if (cfg.pending > 0) {
        cfg.pending--;
        logf_("%s 202 %s pending (%d more)", op, how, cfg.pending);
        X509_REQ_free(req);
        X509_free(cc);
        if (pass)
            MHD_free(pass);
        if (user)
            MHD_free(user);
        return reply(c, 202, "text/plain", "request held for approval\n", 2);
    }
    if (!strcmp(how, "code"))
        cfg.code_used = 1;
    pub = X509_REQ_get0_pubkey(req);
    if (cfg.wrong_key)
        pub = wrong = EVP_RSA_gen(2048);
    exts = X509_REQ_get_extensions(req);
    subj = X509_NAME_new();
    for (int i = 0; subj != NULL && i < X509_NAME_entry_count(X509_REQ_get_subject_name(req));
         i++) {
        const X509_NAME_ENTRY *ne = X509_NAME_get_entry(X509_REQ_get_subject_name(req), i);
        if (!cfg.cn_only || OBJ_obj2nid(X509_NAME_ENTRY_get_object(ne)) == NID_commonName)
            X509_NAME_add_entry(subj, ne, -1, 0);
    }
    x = subj == NULL   ? NULL
        : cfg.rollover ? make_cert(cfg.ca2, cfg.ca2_key, subj, pub, 0, exts)
                       : make_cert(cfg.ca, cfg.ca_key, subj, pub, 0, exts);
    if (x == NULL) {
        code = 500;
        why = "cannot sign";
        goto done;
    }
    {
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        ser = bn ? BN_bn2hex(bn) : NULL;
        BN_free(bn);
    }
    logf_("%s 200 %s issued %s%s%s%s sig=%s key=%s conn=%u", op, how, ser ? ser : "?",
          cfg.wrong_key ? " WRONG-KEY" : "", cfg.rollover ? " by new CA key" : "",
          cfg.cn_only ? " CN-only" : "", sig, kdesc, conn_no(c));
    out = sk_X509_new_null();
    sk_X509_push(out, x);
    r = certs_only(c, out, 1);
    goto free;
done:
    r = text(c, code, op, why);
free:
    OPENSSL_free(ser);
    X509_NAME_free(subj);
    sk_X509_free(out);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_free(x);
    EVP_PKEY_free(wrong);
    X509_free(cc);
    X509_REQ_free(req);
    if (pass)
        MHD_free(pass);
    if (user)
        MHD_free(user);
    return r;
}

static enum MHD_Result
handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
        const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
    upload *u = *con_cls;
    const char *prefix = "/.well-known/est/", *op;
    char want[128];

    (void)cls;
    (void)version;
    if (u == NULL) {
        u = calloc(1, sizeof(*u));
        *con_cls = u;
        return u ? MHD_YES : MHD_NO;
    }
    if (*upload_size > 0) {
        char *nd = realloc(u->d, u->n + *upload_size + 1);
        if (nd == NULL || u->n + *upload_size > (1u << 20))
            return MHD_NO;
        u->d = nd;
        memcpy(u->d + u->n, upload_data, *upload_size);
        u->n += *upload_size;
        u->d[u->n] = '\0';
        *upload_size = 0;
        return MHD_YES;
    }
    if (strncmp(url, prefix, strlen(prefix)) != 0)
        return text(c, 404, url, "not an EST path");
    op = url + strlen(prefix);
    if (cfg.label != NULL) {
        snprintf(want, sizeof(want), "%s/", cfg.label);
        if (strncmp(op, want, strlen(want)) != 0)
            return text(c, 404, url, "unknown EST label");
        op += strlen(want);
    }
    if (!strcmp(op, "cacerts") && !strcmp(method, "GET")) {
        STACK_OF(X509) *s = sk_X509_new_null();
        enum MHD_Result r;
        sk_X509_push(s, cfg.ca);
        if (cfg.rollover) {
            sk_X509_push(s, cfg.old_with_new);
            sk_X509_push(s, cfg.new_with_old);
            sk_X509_push(s, cfg.ca2);
        }
        logf_("cacerts 200 %d certificates", sk_X509_num(s));
        r = certs_only(c, s, 0);
        sk_X509_free(s);
        return r;
    }
    if (!strcmp(op, "csrattrs") && !strcmp(method, "GET") && cfg.csrattrs != NULL) {
        struct MHD_Response *resp;
        enum MHD_Result r;
        if (cfg.csrattrs_len == 0) {
            logf_("csrattrs 204 none");
            resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
            r = MHD_queue_response(c, 204, resp);
            MHD_destroy_response(resp);
            return r;
        }
        logf_("csrattrs 200 %zu bytes", cfg.csrattrs_len);
        resp =
            MHD_create_response_from_buffer(cfg.csrattrs_len, cfg.csrattrs, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "Content-Type", "application/csrattrs");
        MHD_add_response_header(resp, "Content-Transfer-Encoding", "base64");
        r = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return r;
    }
    if ((!strcmp(op, "simpleenroll") || !strcmp(op, "simplereenroll")) && !strcmp(method, "POST")) {
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
        if (ct == NULL || strncasecmp(ct, "application/pkcs10", 18) != 0)
            return text(c, 415, op, "Content-Type must be application/pkcs10");
        return enroll(c, op, u);
    }
    return text(c, 404, op, "unknown EST operation");
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
    const char *port_file = NULL, *pw_file = NULL, *code_file = NULL, *boot_file = NULL;
    struct MHD_Daemon *d;
    struct sockaddr_in sa;
    char *tls_key, *tls_cert, *trust;
    int port;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--dir") && v)
            cfg.dir = argv[++i];
        else if (!strcmp(a, "--port-file") && v)
            port_file = argv[++i];
        else if (!strcmp(a, "--user") && v)
            cfg.user = argv[++i];
        else if (!strcmp(a, "--password-file") && v)
            pw_file = argv[++i];
        else if (!strcmp(a, "--code-file") && v)
            code_file = argv[++i];
        else if (!strcmp(a, "--label") && v)
            cfg.label = argv[++i];
        else if (!strcmp(a, "--pending") && v)
            cfg.pending = atoi(argv[++i]);
        else if (!strcmp(a, "--days") && v)
            cfg.days = atoi(argv[++i]);
        else if (!strcmp(a, "--garbage"))
            cfg.garbage = "p7";
        else if (!strcmp(a, "--wrong-key"))
            cfg.wrong_key = 1;
        else if (!strcmp(a, "--hostile") && v)
            cfg.hostile = argv[++i];
        else if (!strcmp(a, "--b64") && v)
            cfg.b64 = argv[++i];
        else if (!strcmp(a, "--reenroll-auth"))
            cfg.reenroll_auth = 1;
        else if (!strcmp(a, "--cn-only"))
            cfg.cn_only = 1;
        else if (!strcmp(a, "--crl-url") && v)
            cfg.crl_url = argv[++i];
        else if (!strcmp(a, "--rollover"))
            cfg.rollover = 1;
        else if (!strcmp(a, "--bootstrap-ca") && v)
            boot_file = argv[++i];
        else if (!strcmp(a, "--csrattrs") && v) {
            FILE *fp = fopen(argv[++i], "rb");
            cfg.csrattrs = calloc(1, 1 << 16);
            if (fp == NULL || cfg.csrattrs == NULL) {
                fprintf(stderr, "estsrv: cannot read %s\n", argv[i]);
                return 1;
            }
            cfg.csrattrs_len = fread(cfg.csrattrs, 1, (1 << 16) - 1, fp);
            fclose(fp);
        } else if (!strcmp(a, "--csrattrs-enforce"))
            cfg.csrattrs_enforce = 1;
        else {
            fprintf(stderr, "estsrv: unknown argument %s\n", a);
            return 2;
        }
    }
    if (cfg.dir == NULL) {
        fprintf(stderr, "estsrv: --dir DIR is required\n");
        return 2;
    }
    if ((cfg.b64 != NULL && strcmp(cfg.b64, "lines") && strcmp(cfg.b64, "unwrapped") &&
         strcmp(cfg.b64, "crlf-ws") && strcmp(cfg.b64, "nul")) ||
        (cfg.hostile != NULL && strcmp(cfg.hostile, "badchar") &&
         strcmp(cfg.hostile, "truncated") && strcmp(cfg.hostile, "big"))) {
        fprintf(stderr, "estsrv: unknown --b64 or --hostile form\n");
        return 2;
    }
    if (cfg.crl_url != NULL && !strcmp(cfg.crl_url, "hang")) {
        /* Connections complete (the kernel's backlog) and are never served. */
        static char hang[64];
        struct sockaddr_in ha;
        socklen_t hl = sizeof(ha);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        memset(&ha, 0, sizeof(ha));
        ha.sin_family = AF_INET;
        ha.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || bind(fd, (struct sockaddr *)&ha, sizeof(ha)) != 0 || listen(fd, 16) != 0 ||
            getsockname(fd, (struct sockaddr *)&ha, &hl) != 0) {
            fprintf(stderr, "estsrv: cannot open the hanging CRL port\n");
            return 1;
        }
        snprintf(hang, sizeof(hang), "http://127.0.0.1:%d/ca.crl", ntohs(ha.sin_port));
        cfg.crl_url = hang;
    }
    cfg.ca = load_cert("ca.pem");
    cfg.ca_key = load_key("ca.key");
    tls_key = read_text("tls.key");
    tls_cert = read_text("tls.pem");
    trust = read_text("ca.pem");
    if (cfg.ca == NULL || cfg.ca_key == NULL || tls_key == NULL || tls_cert == NULL) {
        fprintf(stderr, "estsrv: cannot load ca.pem, ca.key, tls.pem, tls.key in %s\n", cfg.dir);
        return 1;
    }
    if (cfg.rollover) {
        char *t2 = read_text("ca2.pem");
        cfg.ca2 = load_cert("ca2.pem");
        cfg.ca2_key = load_key("ca2.key");
        if (cfg.ca2 == NULL || cfg.ca2_key == NULL || t2 == NULL) {
            fprintf(stderr, "estsrv: --rollover needs ca2.pem and ca2.key\n");
            return 1;
        }
        /* The link certificates of RFC 7030 section 4.1.3. */
        cfg.new_with_old =
            make_cert(cfg.ca, cfg.ca_key, X509_get_subject_name(cfg.ca2), cfg.ca2_key, 1, NULL);
        cfg.old_with_new =
            make_cert(cfg.ca2, cfg.ca2_key, X509_get_subject_name(cfg.ca), cfg.ca_key, 1, NULL);
        char *both = malloc(strlen(trust) + strlen(t2) + 1);
        if (both == NULL || cfg.new_with_old == NULL || cfg.old_with_new == NULL)
            return 1;
        strcpy(both, trust);
        strcat(both, t2);
        free(trust);
        free(t2);
        trust = both;
    }
    if (boot_file != NULL) {
        /* Trusted too, so that GnuTLS asks for and accepts its certificates. */
        FILE *fp = fopen(boot_file, "r");
        char *t2 = NULL, *both;
        long n;

        cfg.boot_ca = fp ? PEM_read_X509(fp, NULL, NULL, NULL) : NULL;
        if (fp != NULL && fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) > 0 &&
            fseek(fp, 0, SEEK_SET) == 0 && (t2 = calloc(1, (size_t)n + 1)) != NULL &&
            fread(t2, 1, (size_t)n, fp) != (size_t)n) {
            free(t2);
            t2 = NULL;
        }
        if (fp != NULL)
            fclose(fp);
        both = t2 ? malloc(strlen(trust) + strlen(t2) + 1) : NULL;
        if (cfg.boot_ca == NULL || both == NULL) {
            fprintf(stderr, "estsrv: cannot read the bootstrap CA %s\n", boot_file);
            return 1;
        }
        strcpy(both, trust);
        strcat(both, t2);
        free(trust);
        free(t2);
        trust = both;
    }
    if (pw_file != NULL && (cfg.password = first_line(pw_file)) == NULL) {
        fprintf(stderr, "estsrv: cannot read %s\n", pw_file);
        return 1;
    }
    if (code_file != NULL && (cfg.code = first_line(code_file)) == NULL) {
        fprintf(stderr, "estsrv: cannot read %s\n", code_file);
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* A trust list makes libmicrohttpd request (not require) client certificates. */
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS, 0, NULL, NULL, handler,
                         NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                         MHD_OPTION_HTTPS_MEM_KEY, tls_key, MHD_OPTION_HTTPS_MEM_CERT, tls_cert,
                         MHD_OPTION_HTTPS_MEM_TRUST, trust, MHD_OPTION_NOTIFY_COMPLETED, completed,
                         NULL, MHD_OPTION_NOTIFY_CONNECTION, conn_notify, NULL, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "estsrv: cannot start the HTTPS server\n");
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
    fprintf(stderr, "estsrv: listening on https://127.0.0.1:%d\n", port);
    signal(SIGTERM, on_sig);
    signal(SIGINT, on_sig);
    while (!stop)
        pause();
    MHD_stop_daemon(d);
    return 0;
}
