/*
 * enr_parse.h — the parsers of evertoken-enroll for what a CA sends back,
 * split from the HTTP exchanges of scep.c and est.c so that the fuzz target
 * tests/fuzz/fuzz_ca.c runs exactly the code the helper runs on an answer.
 * Not an interface for anything else: enr_int.h is the helper's.
 */
#ifndef EVERTOKEN_ENROLL_ENR_PARSE_H
#define EVERTOKEN_ENROLL_ENR_PARSE_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "enr_int.h"

/* ---- scep.c ------------------------------------------------------------- */

typedef struct enr_scep_caps {
    int post, sha256, aes, renewal;
} enr_scep_caps;

/* One SCEP transaction's view of the CA. */
typedef struct enr_scep {
    const enr_profile *p; /* url and name appear in messages */
    enr_scep_caps c;
    STACK_OF(X509) * cacerts; /* everything GetCACert returned, validated (owned) */
    X509 *ra;                 /* recipient of our EnvelopedData (in cacerts) */
    X509 *ca;                 /* issuer of our certificates (in cacerts) */
    const EVP_MD *md;
    const EVP_CIPHER *cipher;
} enr_scep;

/* GetCACaps answer: BODY as enr_http gives it (N bytes, NUL-terminated, NULL
 * when empty), split into lines in place; sets S->c, S->md, S->cipher. */
void enr_scep_parse_caps(enr_scep *s, unsigned char *body, size_t n);
/* GetCACert answer of content type CT (NULL: none): a DER certificate or,
 * for application/x-x509-ca-ra-cert, a certs-only PKCS#7; every certificate
 * must chain to ANCHORS at enr_now(). Sets S->cacerts, S->ra, S->ca. */
enr_rc enr_scep_parse_cacert(enr_scep *s, const unsigned char *body, size_t n, const char *ct,
                             STACK_OF(X509) * anchors);
/* A CertRep for the transaction TXID whose request carried NONCE and was
 * signed by SIGNER/KEY: signed by S->cacerts, CertRep, transaction id,
 * recipient nonce, pkiStatus (ENR_E_PENDING, failInfo into RES->fail on
 * FAILURE), and on SUCCESS the EnvelopedData decrypted with KEY and the
 * certificate for NEWKEY taken into RES->cert (the rest into RES->chain). */
enr_rc enr_scep_parse_reply(enr_scep *s, const unsigned char *der, size_t len, const char *txid,
                            const unsigned char nonce[16], X509 *signer, EVP_PKEY *key,
                            EVP_PKEY *newkey, enr_scep_result *res);

/* ---- b64.c -------------------------------------------------------------- */

/* Decode the base64 body IN (N bytes) of an answer (RFC 7030: RFC 2045
 * base64, with or without line breaks): LF or CRLF line ends, spaces and
 * tabs, whitespace and NUL bytes after the data are accepted; any other
 * character, data after the '=' padding, a length that is not whole groups
 * of four, no data at all or more than MAX decoded bytes are refused with a
 * precise message naming WHAT (ENR_E_REJECTED). *OUT (malloc'd) and *OUTLEN
 * get the bytes. OpenSSL's EVP_Decode* does the decoding. */
enr_rc enr_base64_decode(const char *what, const unsigned char *in, size_t n, size_t max,
                         unsigned char **out, size_t *outlen);

/* ---- cmp.c: general messages (RFC 9483 section 4.3) ---------------------- */

/* The CA's rootCaKeyUpdate value V (NULL: no update) for the anchor ROOT:
 * NewWithNew joins ANCHORS when NewWithOld chains to them and certifies its
 * name and key; anything else is reported and ignored. P: for messages. */
void enr_cmp_root_update(const enr_profile *p, STACK_OF(X509) * anchors, X509 *root,
                         const ASN1_TYPE *v);
/* The CA's caCerts value V: the CA certificates chaining to ANCHORS join them. */
void enr_cmp_take_cacerts(const enr_profile *p, STACK_OF(X509) * anchors, const ASN1_TYPE *v);

/* ---- est.c -------------------------------------------------------------- */

/* The largest EST answer body accepted (bytes as received). */
#define ENR_EST_MAX_BODY ENR_HTTP_MAX

/* An answer of OP ("cacerts", "simpleenroll", ...) with content type CTYPE
 * (NULL: none): base64 of a certs-only PKCS#7 SignedData. *OUT: its
 * certificates. */
enr_rc enr_est_parse_certs(const char *op, const char *ctype, const unsigned char *body, size_t n,
                           STACK_OF(X509) * *out);
/* /cacerts answered CERTS: those chaining to ANCHORS at NOW (and self-signed
 * ones vouched for by them) are added to ANCHORS; NAME is the profile's. */
enr_rc enr_est_take_cacerts(const char *name, STACK_OF(X509) * certs, STACK_OF(X509) * anchors,
                            time_t now);
/* A /simple(re)enroll answer: RES->cert the certificate for NEWKEY (else the
 * first one), RES->chain the others. */
enr_rc enr_est_parse_issued(const char *op, const char *ctype, const unsigned char *body, size_t n,
                            EVP_PKEY *newkey, enr_scep_result *res);
/* What a /csrattrs answer asks of the CSR (RFC 7030 section 4.5, RFC 9908),
 * as far as a client can honour it. */
typedef struct enr_est_attrs {
    int ec;           /* id-ecPublicKey asked (OID or attribute) */
    int curve_nid;    /* its curve (attribute value), 0: any */
    int rsa;          /* rsaEncryption asked (OID or attribute) */
    int rsa_bits;     /* its modulus size (attribute value, RFC 9908), 0: any */
    int sig_key;      /* key type of the signature algorithm asked (ENR_KEY_*), 0: none */
    const EVP_MD *md; /* hash of the signature asked, NULL: none (SHA-256) */
    int linking;      /* challengePassword asked: tls-unique linking (RFC 7030 3.5) */
    int ignored;      /* entries logged as ignored */
    STACK_OF(X509_EXTENSION) * exts; /* extensions from extensionRequest the CSR carries */
} enr_est_attrs;

/* A /csrattrs answer of content type CTYPE: base64 of a DER CsrAttrs
 * (SEQUENCE OF AttrOrOID). An empty body is no attribute. *OUT (cleared
 * first, enr_est_attrs_clear after) gets what is asked; what cannot be
 * honoured is logged as ignored. ENR_E_REJECTED with a precise message for a
 * malformed answer. */
enr_rc enr_est_parse_csrattrs(const char *ctype, const unsigned char *body, size_t n,
                              enr_est_attrs *out);
void enr_est_attrs_clear(enr_est_attrs *a);
/* One HTTP header line of N bytes (as libcurl gives it, with CRLF): when it
 * is a Retry-After with a delay in seconds or an HTTP-date, *SECONDS gets the
 * delay from enr_now() and 1 is returned; else 0. */
int enr_est_retry_after(const char *line, size_t n, long *seconds);

/* ---- proto/cmp.c -------------------------------------------------------- */

/* The HTTP exchange of the CMP client, replaceable by the fuzz target: REQ
 * (N bytes of DER) in, *RESP (malloc'd) and *CTYPE (malloc'd) out, as
 * enr_http_exchange. NULL (the default): enr_http_exchange on the profile's
 * url. Whatever comes back goes through the client's decoding and checks. */
typedef enr_rc (*enr_cmp_transport_fn)(const unsigned char *req, size_t n, unsigned char **resp,
                                       size_t *rlen, char **ctype);
extern enr_cmp_transport_fn enr_cmp_transport;

#endif /* EVERTOKEN_ENROLL_ENR_PARSE_H */
