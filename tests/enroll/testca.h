/*
 * testca.h — the CA side shared by the test CA servers of tests/enroll
 * (testca.c): load the CA, issue a certificate into DIR/issued and
 * DIR/index.txt (`openssl ca` format, so `openssl ca -revoke/-gencrl` and
 * `openssl ocsp -index` work on it), look up and revoke by serial, write the
 * CRL DIR/ca.crl. Used by cmpsrv.c and scepsrv.c (estsrv.c keeps its own
 * issuing: it also makes CA and link certificates for its rollover).
 */
#ifndef EVERTOKEN_TESTS_ENROLL_TESTCA_H
#define EVERTOKEN_TESTS_ENROLL_TESTCA_H

#include <time.h>

#include <openssl/x509.h>

typedef struct tca {
    const char *dir;
    X509 *ca;
    EVP_PKEY *ca_key;
    int days;             /* validity of issued certificates */
    const char *ocsp_url; /* authorityInfoAccess OCSP URL, or NULL */
    const char *crl_url;  /* CRL distribution point, or NULL */
} tca;

/* DIR/NAME as a certificate / private key (PEM), or NULL. */
X509 *tca_load_cert(const char *dir, const char *name);
EVP_PKEY *tca_load_key(const char *dir, const char *name);
/* Load DIR/ca.pem and DIR/ca.key, create DIR/issued. 0 or -1. */
int tca_init(tca *ca, const char *dir);
/* The server's clock: DIR/now (epoch seconds) when it exists, else time(). */
time_t tca_now(const tca *ca);
/*
 * Issue a certificate for SUBJECT and PUB (a fresh RSA key instead when
 * WRONG_KEY) with the subjectAltName extension of EXTS if it has one; record
 * it in DIR/issued/SERIAL.pem and DIR/index.txt. NULL on failure.
 */
X509 *tca_issue(tca *ca, const X509_NAME *subject, EVP_PKEY *pub,
                const STACK_OF(X509_EXTENSION) * exts, int wrong_key);
/* Upper-case hex serial (OPENSSL_free). */
char *tca_serial_hex(const ASN1_INTEGER *serial);
/* Status of SERIAL_HEX in index.txt: 'V' valid, 'R' revoked, 0 unknown. */
int tca_status(const tca *ca, const char *serial_hex);
/* The certificate this CA issued with SERIAL_HEX (DIR/issued), or NULL. */
X509 *tca_issued(const tca *ca, const char *serial_hex);
/* Mark SERIAL_HEX revoked in index.txt (REASON: a CRL reason name or NULL)
 * and rewrite DIR/ca.crl. 0, or -1 when unknown or already revoked. */
int tca_revoke(tca *ca, const char *serial_hex, const char *reason);
/* Write DIR/ca.crl from index.txt, signed by the CA. 0 or -1. */
int tca_write_crl(tca *ca);

#endif /* EVERTOKEN_TESTS_ENROLL_TESTCA_H */
