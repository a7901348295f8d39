/*
 * fuzz_ca.c — what evertoken-enroll parses from a CA, through the very
 * functions the helper runs on an answer (enroll/enr_parse.h). The first
 * input byte selects the parser, the rest is the answer:
 *
 *   0 SCEP GetCACaps text (handed over NUL-terminated, NULL when empty, as
 *     enr_http does)
 *   1 SCEP GetCACert, application/x-x509-ca-cert (a DER certificate)
 *   2 SCEP GetCACert, application/x-x509-ca-ra-cert (certs-only PKCS#7)
 *   3 SCEP CertRep as received (DER CMS SignedData), checked against the
 *     transaction below: the CA certificate from GetCACert, transaction id
 *     TXID, sender nonce NONCE, request signer REQ_CERT/REQ_KEY
 *   4 SCEP CertRep built here from the input, so that the checks behind the
 *     signature are reached: a flags byte (bit 0: envelope the content for
 *     REQ_CERT, bit 1: with 3DES instead of AES, bit 2: signed by REQ_KEY, a
 *     stranger, instead of the CA), then messageType, pkiStatus,
 *     transactionID, recipientNonce and failInfo, each as a length byte and
 *     that many bytes (0xff: attribute absent, 0xfe: the expected value:
 *     "3", "0", TXID, NONCE, "2"), then the content (the degenerate PKCS#7
 *     with the certificates when enveloped) up to the end
 *   5 EST /cacerts: a content-type byte (0: application/pkcs7-mime;
 *     smime-type=certs-only, 1: application/pkcs7-mime, 2: text/plain,
 *     3: none), then the base64 body; its certificates chaining to the CA
 *     are taken as implicit anchors
 *   6 EST /simpleenroll: the same, the certificate for REQ_KEY taken
 *   7 an HTTP header line, as libcurl gives it (Retry-After)
 *   8 EST /csrattrs: a content-type byte (0 and 3: application/csrattrs,
 *     1: text/plain, 2: none), then the base64 body (CsrAttrs, RFC 7030
 *     section 4.5.2)
 *   9 the base64 decoder every EST answer goes through (enr_base64_decode):
 *     a byte choosing the size limit (its value times 64 bytes; 0: 1 MiB),
 *     then the text; what it accepts must come back unchanged from
 *     OpenSSL's encoder and the decoder again
 *  16 CMP: the helper's CMP client (enroll/proto/cmp.c, OpenSSL's
 *     OSSL_CMP_CTX) runs a MAC-protected ir whose answer is the rest of the
 *     input as it is (DER OSSL_CMP_MSG): decoding and OpenSSL's checks
 *  17 CMP built: the same ir answered by OpenSSL's CMP server in-process
 *     (so protection, transaction id and nonces are right and the checks
 *     behind them are reached: certConf, the helper's checks of the issued
 *     certificate), then damaged: a flags byte (bit 0: the certificate is for
 *     another key, bit 1: for another subject), the index of the answer to
 *     damage (0: ip, 1: pkiConf), then (offset high, offset low, xor) triples
 *     applied to that answer's DER (offsets modulo its length; counted from
 *     its end when the high byte's top bit is set)
 *  18 CMP general-message values (RFC 9483 section 4.3): the rest of the
 *     input as the DER of a rootCaKeyUpdate value (enr_cmp_root_update: a
 *     new root joins the anchors only through a NewWithOld chaining to them)
 *     and of a caCerts value (enr_cmp_take_cacerts)
 *
 * The CA and requester keys are fixed (below) so that the committed seeds,
 * real answers signed by the CA and encrypted for the requester, stay valid;
 * the clock is fixed inside the certificates' validity. FUZZ_CA_SEEDS=DIR
 * (re)writes the seed corpus into DIR and exits (tests/fuzz/corpus/ca/ was
 * made so). The helper's messages go to stderr as in the helper.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <openssl/cmp.h>
#include <sodium.h>

#include "enr_parse.h"
#include "proto/cmp_asn1.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Test keys of this target only (RSA 2048, made with `openssl req -x509`). */
static const char CA_KEY[] = "-----BEGIN PRIVATE KEY-----\n"
                             "MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQC8KJ5detXBOcix\n"
                             "qdZtG1lD/4Mbbb6TS9D3RzoHm+sOe8a4QWey0kWUhezs37eJR774NHgRNZCsVz8U\n"
                             "OYG//y8o4DKdjjbNk/qRaGdh62YQhb0jsKBou6LozE4475slVgIiVAPfFtZhWJjH\n"
                             "ksVgl6GJmw8K5oPP3Uv3ymBfQfLoyvHDucnCKUee67JnfAeRYu1D7W+pXk/5DJgR\n"
                             "SS15n03MdF3y8ahyx+Alh1Q3sOflnoM8mt/44KiSTbrNDiy6bjUhrkOvkJ718TzS\n"
                             "BEZIaU28PskfmYNxkdDCmaoQ7M9myGHT2RiODW6PBP72I/8dZX+5FmsV9gmRs0qs\n"
                             "AH2FILefAgMBAAECggEAMdmFE3ketqGrhT5c2+05+iTwxEyQCBA3HbxWKHvri5vJ\n"
                             "azmQ0rSY0J+mxJ8Ezi8e7j1gbhbF7JL02FPgB1EBWpADePCbnl2NLgb+FNg74za7\n"
                             "hIAgD39eytSOCNGaRgsCZ7vghrNTOtkxKPa+qjeiCYX2N0oZM/IKVWzdmX8sbvYY\n"
                             "YHMHe2bjnxie48sHtD4AjMwpjTPgUPjkLulrLA951cFmcJry3uBEYaDLMciZHt6G\n"
                             "EKZtdgAK/b4mCyngapiupEdR7hwBglSVzsRJv0xiqmV2LCbf8hX46/ZbHEE0dyWT\n"
                             "c0yTnUYZwsMmHIJc+pXfUF/eqzKn7pMasq7D4mRaoQKBgQD4wCcr95GBkbo4TQvS\n"
                             "MMq6i82mC/BuUtqGzgfUKdEUMtcnfar7DGCswYuq10gRWP87Bxxc73qPoLN6mzIH\n"
                             "IDhB8ZlNohTgjvG8yMmSFLpCgfGjqlPX73rj2M9ZD4OVWw5mprSfiPIInXHemucF\n"
                             "WcYg/m376OkuDAf5A9jzSQA2rwKBgQDBpGizQJVmRlZhowro8MA7K6XKZBknoF5e\n"
                             "7959OJbGPVe8c5MlvjsoGSPTrvBpGQUPkyBEQB8AhCBV95A4tCEVbIhnT0lp02jF\n"
                             "LiHSvihMi/73G9HTL1FmZ5yJBhDEUxY5vKj+OCtwbbw4Qu7el3swk6hJRKaMCKtJ\n"
                             "FDia7DnKEQKBgQDHh5KkQORVc2hVau/VfU/QjP27eI42YH1rbm53L8fHFPTid3ok\n"
                             "AAy35lQ7CI6FY8bvOUf2AB5mgTgWW9CoSJ73vm0DCcUHT4H2tXSCmd/CI2uJpcG1\n"
                             "TyJbC3le7gPVVQHbM1NlOLs0T96b+dLfxuAXbR8Z1vzb88idZQmsNF1YfwKBgQCy\n"
                             "jLNR3VIkjOSngJvVr+/AX32ugd/D7xY1Ob4P/nbf8b4NcRAUNDT9wziKvnrEnaJR\n"
                             "+xo8dFdhtXLPcccU0drTk1Cu2afaoWmwrtnXJSmpc0i0d31g2feXkh//JI2fSPFs\n"
                             "aW31grtjHnv38JeqvUiEwRHiBSAAbRnq928+QmUC0QKBgQDB2oWTkFn2Q/nBG9Fr\n"
                             "BBINnWqrKxCZ5XKNb/CN8Fs/b/R0PPaR0YjT0/J7LiXongU32yhdsyoYxK2yn6JZ\n"
                             "FP9SBND3tgOKebMp6xjFC1znvVM6ja7c1je3GrILV0Uukk8Dsb1DM8yyiSloiqrE\n"
                             "HsrAGJCKMbUd0qXaNd1MKPq22Q==\n"
                             "-----END PRIVATE KEY-----\n";

static const char CA_CERT[] = "-----BEGIN CERTIFICATE-----\n"
                              "MIIDUzCCAjugAwIBAgIUPBSrhqfzne4z8J6oYEbvIu8Jki4wDQYJKoZIhvcNAQEL\n"
                              "BQAwMDEXMBUGA1UECgwOZXZlcnRva2VuIGZ1enoxFTATBgNVBAMMDEZ1enogU0NF\n"
                              "UCBDQTAgFw0yNjExMjMxMDU2MDVaGA8yMTI2MTAzMDEwNTYwNVowMDEXMBUGA1UE\n"
                              "CgwOZXZlcnRva2VuIGZ1enoxFTATBgNVBAMMDEZ1enogU0NFUCBDQTCCASIwDQYJ\n"
                              "KoZIhvcNAQEBBQADggEPADCCAQoCggEBALwonl161cE5yLGp1m0bWUP/gxttvpNL\n"
                              "0PdHOgeb6w57xrhBZ7LSRZSF7Ozft4lHvvg0eBE1kKxXPxQ5gb//LyjgMp2ONs2T\n"
                              "+pFoZ2HrZhCFvSOwoGi7oujMTjjvmyVWAiJUA98W1mFYmMeSxWCXoYmbDwrmg8/d\n"
                              "S/fKYF9B8ujK8cO5ycIpR57rsmd8B5Fi7UPtb6leT/kMmBFJLXmfTcx0XfLxqHLH\n"
                              "4CWHVDew5+Wegzya3/jgqJJNus0OLLpuNSGuQ6+QnvXxPNIERkhpTbw+yR+Zg3GR\n"
                              "0MKZqhDsz2bIYdPZGI4Nbo8E/vYj/x1lf7kWaxX2CZGzSqwAfYUgt58CAwEAAaNj\n"
                              "MGEwHQYDVR0OBBYEFETvHET9vSe8od/5T6sqK8EMlglHMB8GA1UdIwQYMBaAFETv\n"
                              "HET9vSe8od/5T6sqK8EMlglHMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQD\n"
                              "AgGGMA0GCSqGSIb3DQEBCwUAA4IBAQBY6P8+D+Ofvu3oJA0ytyUBy28Y56dBiHeh\n"
                              "ngd+gtedeD342yBJbAef0c5/PqyZ38Ahn+6bEyQvXZduHUhjxy1i1loM1ebBW55w\n"
                              "Gy9pVbHm0b3KCajFyq7qt9AuDu68mi4zPEHSf7wDwPlRo9LNCcp6YtRkmV3JwZTz\n"
                              "V43Upn6QrKjfCh3H1tsmyJK4zpsXWfsrNlV+twugD0etg6tUxGVb0q5JSBsDOs5b\n"
                              "rUUpNyJZS+KSN34FAeMj0JsuSbPjEESAxGPf2jU6X5uILyCjlr8pxPazijNSRij8\n"
                              "DuO87KzCx3B/DCWyXhDKpnIT1pDe1bwsN6+75LsW8MsyzbMj9Z9y\n"
                              "-----END CERTIFICATE-----\n";

static const char REQ_KEY[] = "-----BEGIN PRIVATE KEY-----\n"
                              "MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDAOm81gJmvm6Zx\n"
                              "0Tm0cdScY51TYIULHGf1A0peSk5uCSwa0YAjGS3asWZv4iMfnPwLXLVkaY8xqlSn\n"
                              "nVIOPPa5leAkZ2p40bu8Sbm4yW3Lkq6O8N+iLOY92NjHcU3nDuLZKmD5T9gAQjiD\n"
                              "Z+jkb6MCsmcFBVqvXejSJu10zIRSd1ss8SvWTPf2oX4zgotvMJGfqi+OWvL4EXIH\n"
                              "u7+GjiaL5YIxvaF9rCuqnShRqsTn5LCYbQ+mi0bM9eeqwRe2R31FD3iWbnDjFFBY\n"
                              "fKpReDdg50KRBSFRdkqj7DRqnXVSbVbycsFUS45j7A45WeUMaMqJ+ri30UrTcJlL\n"
                              "RP4lShNVAgMBAAECggEALlNmzawKXanTOQbFM1ljdbUECz3tkjnsS73ZRFQABsCr\n"
                              "ImNu0AaXaGbsWvZSpKG+lDZpeKN/4OY9tI9TYR8MDrmx5NQPcsKIzd2upnvUvATD\n"
                              "kKs4GetcKXeC9r21moOZ4+A0sqCtW5KZ8AEwvSyySkoYTbt2mWC2ZT8AZu+KzByQ\n"
                              "JjDKIHBXYdDUiJ1Tf6GxEBGwauciNFnwSSvb0l+0vYO+wafkxnjLgmxXceba0mPr\n"
                              "sBwI6I4StoPcAz6ApderzYl8+qTVlRNbsMNGcRsVvkOggQKUjGC1/dw2nymJPyDl\n"
                              "fPnt/oHygX4ao3H8+/tY+/XGB4LuXgbjvah05EKzwQKBgQD1Fb4JF1N/rcyqRjJB\n"
                              "LzTFUu2+khlrN+RCI0974bV6cSAno15uFh+me5ttvdCX+NOkxF6Fi0lHiRE9Jx+4\n"
                              "kKJrVfMm9Np95a2tj9BQyz5QQh3C8ukYqPWPdm4xzYQZvWpsYmmjK7Qn816lcaau\n"
                              "6b31sZ4lanvnglbUcQ9Z57WCaQKBgQDIyhBIKwvixeTmtKZ8aqAkk320shehC2o3\n"
                              "+od6jiEjtHQtHd+AdGSlrbI+WaiAGL5Ii6xc+NCMVgmlTzxLyc0ce4WR2QwNSCPg\n"
                              "RxXZRmdvenD0RwTUg/sA5fGaTf+DtDoc8PkWgD+6JoBPgHgK9Ln8soStBUlc8o0d\n"
                              "HbMF5whUDQKBgHyOZz1BkJsUHi7va/z628vpIJC4uZhnGGeQgIXKKSwoMBpVCdnS\n"
                              "/pTivxRf4pJJ0G4tqogeSMjFXXCB4LoxL4pzbRcAW8aeIs1RiKJ3GJ07bNq2D0cM\n"
                              "H3igzNIcy6U1QdABmARoYq/nHNPiVb8RZgxnD6OeYYhAEpb3OsELZJD5AoGARISP\n"
                              "odDusWgOgJvM5FAObezWzL6pSY93o7qeWLf/nwuJSYwUJOWTIuZvGM/HrE7FQERJ\n"
                              "gUB3CiyiBgNP9BzdHYcZQXfroOypMXOQhSB9U5FY0kMZ5ttS4C+XjqxnMS5jVlT0\n"
                              "6zTAimlxB7AzRqnUfeL9W32eV1V9yh3EZZM9SFECgYBLwB2r5w3tVaKCxagsbtcC\n"
                              "sHjzvdlXPOfgqziv+dFYlY7nnK8zB0UFJffTadWE09ztVm8U2JNm9Qh0vN0SenMU\n"
                              "w0atJ1lTgca3j1GWvVO+EC8mC+JP8keCZNGlaj8Don0scjoSGTYmVHhOwfRwsh9D\n"
                              "Ln8CA5C5vIlnRegNqvAUFw==\n"
                              "-----END PRIVATE KEY-----\n";

static const char REQ_CERT[] = "-----BEGIN CERTIFICATE-----\n"
                               "MIIDFTCCAf2gAwIBAgIUWL9VDHJ06oAhJ1Nno+o/Qrqib5AwDQYJKoZIhvcNAQEL\n"
                               "BQAwGTEXMBUGA1UEAwwOZnV6eiByZXF1ZXN0ZXIwIBcNMjYxMTIzMTA1NjA1WhgP\n"
                               "MjEyNjEwMzAxMDU2MDVaMBkxFzAVBgNVBAMMDmZ1enogcmVxdWVzdGVyMIIBIjAN\n"
                               "BgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwDpvNYCZr5umcdE5tHHUnGOdU2CF\n"
                               "Cxxn9QNKXkpObgksGtGAIxkt2rFmb+IjH5z8C1y1ZGmPMapUp51SDjz2uZXgJGdq\n"
                               "eNG7vEm5uMlty5KujvDfoizmPdjYx3FN5w7i2Spg+U/YAEI4g2fo5G+jArJnBQVa\n"
                               "r13o0ibtdMyEUndbLPEr1kz39qF+M4KLbzCRn6ovjlry+BFyB7u/ho4mi+WCMb2h\n"
                               "fawrqp0oUarE5+SwmG0PpotGzPXnqsEXtkd9RQ94lm5w4xRQWHyqUXg3YOdCkQUh\n"
                               "UXZKo+w0ap11Um1W8nLBVEuOY+wOOVnlDGjKifq4t9FK03CZS0T+JUoTVQIDAQAB\n"
                               "o1MwUTAdBgNVHQ4EFgQU6vhoHutCAK0cIq+NE85dhv10oeswHwYDVR0jBBgwFoAU\n"
                               "6vhoHutCAK0cIq+NE85dhv10oeswDwYDVR0TAQH/BAUwAwEB/zANBgkqhkiG9w0B\n"
                               "AQsFAAOCAQEAJOiwxc+wyvfF0CacMFYheQSLBZFKfTWd6nN26TKPuI7m0stNVRZy\n"
                               "i5awNQClkJHEgpbWPaqCugHIR4wN8gThqjwX/chIyI4o+aO0q3dLEj8FB+pVPyDJ\n"
                               "3jz/DXSX8WaPeWBsvOTrw/l3Q2EM1c5asuYKOVmgwvI5Vva/jFCuUqWt4Ul3LRGA\n"
                               "0eIz77UCS1Vcgg0kgjg5WMeMiZPtg7azdN4G7ajmxAukDVB16nveqENp7oi11IgQ\n"
                               "pRbvHobyPSDT+wrdgvtEBwKfhL2KnYFL5YZR+zhPY01iKphXx6Y56ht2OLdJPPTZ\n"
                               "eRALYzPYjjslnL8NRpJgbGB454PD1tZwsA==\n"
                               "-----END CERTIFICATE-----\n";

/* The transaction the CertRep answers (RFC 8894: hex SHA-256 of the key). */
static const char TXID[] = "5d1c0a57e2b4f3a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6";
static const unsigned char NONCE[16] = {0x4e, 0x6f, 0x6e, 0x63, 0x65, 0x20, 0x6f, 0x66,
                                        0x20, 0x74, 0x68, 0x65, 0x20, 0x72, 0x65, 0x71};
/* 2027-01-01T00:00:00Z: inside the test certificates' validity. */
#define FUZZ_NOW ((time_t)1798761600)

#define OID_MESSAGE_TYPE    "2.16.840.1.113733.1.9.2"
#define OID_PKI_STATUS      "2.16.840.1.113733.1.9.3"
#define OID_FAIL_INFO       "2.16.840.1.113733.1.9.4"
#define OID_SENDER_NONCE    "2.16.840.1.113733.1.9.5"
#define OID_RECIPIENT_NONCE "2.16.840.1.113733.1.9.6"
#define OID_TRANSACTION_ID  "2.16.840.1.113733.1.9.7"

enum {
    P_CAPS,
    P_CACERT,
    P_CACERT_RA,
    P_CERTREP,
    P_CERTREP_BUILT,
    P_EST_CACERTS,
    P_EST_ENROLL,
    P_HEADER,
    P_EST_CSRATTRS,
    P_B64,
    /* Fixed values: the selectors of other parsers may take 9..15. */
    P_CMP = 16,
    P_CMP_BUILT = 17,
    P_CMP_GENM = 18,
    P_COUNT
};

static const char *const est_ctypes[4] = {"application/pkcs7-mime; smime-type=certs-only",
                                          "application/pkcs7-mime", "text/plain", NULL};

static EVP_PKEY *ca_key, *req_key;
static X509 *ca_cert, *req_cert;
static enr_profile prof;

static void
die(const char *what)
{
    fprintf(stderr, "fuzz_ca: %s\n", what);
    ERR_print_errors_fp(stderr);
    abort();
}

static void *
pem_load(const char *pem, int key)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    void *v = NULL;

    if (b != NULL)
        v = key ? (void *)PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)
                : (void *)PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (v == NULL)
        die("cannot load a test key or certificate");
    return v;
}

static void
cleanup(void)
{
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(req_key);
    X509_free(ca_cert);
    X509_free(req_cert);
}

static STACK_OF(X509) * one_cert(X509 *x)
{
    STACK_OF(X509) *sk = sk_X509_new_null();

    if (sk == NULL || !X509_up_ref(x) || !sk_X509_push(sk, x))
        die("out of memory");
    return sk;
}

static int
add_attr(CMS_SignerInfo *si, const char *oid, int type, const void *v, int len)
{
    ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
    int ok = o != NULL && CMS_signed_add1_attr_by_OBJ(si, o, type, v, len) > 0;

    ASN1_OBJECT_free(o);
    return ok;
}

/* DER of a certs-only SignedData (degenerate PKCS#7) holding CERTS. */
static unsigned char *
certs_only(STACK_OF(X509) * certs, int *len)
{
    PKCS7 *p7 = PKCS7_new();
    unsigned char *der = NULL;

    *len = 0;
    if (p7 == NULL || !PKCS7_set_type(p7, NID_pkcs7_signed) ||
        !PKCS7_content_new(p7, NID_pkcs7_data))
        die("cannot build a PKCS#7");
    for (int i = 0; i < sk_X509_num(certs); i++)
        if (!PKCS7_add_certificate(p7, sk_X509_value(certs, i)))
            die("cannot build a PKCS#7");
    *len = i2d_PKCS7(p7, &der);
    PKCS7_free(p7);
    return *len > 0 ? der : NULL;
}

/* A CertRep as a SCEP CA makes it (tests/enroll/scepsrv.c, certrep()). A NULL
 * attribute is left out; LEN -1 means strlen. */
typedef struct field {
    const unsigned char *v;
    int len;
} field;

static unsigned char *
certrep(int flags, const field f[5], const unsigned char *content, size_t clen, int *outlen)
{
    static const char *const oids[5] = {OID_MESSAGE_TYPE, OID_PKI_STATUS, OID_TRANSACTION_ID,
                                        OID_RECIPIENT_NONCE, OID_FAIL_INFO};
    static const int types[5] = {V_ASN1_PRINTABLESTRING, V_ASN1_PRINTABLESTRING,
                                 V_ASN1_PRINTABLESTRING, V_ASN1_OCTET_STRING,
                                 V_ASN1_PRINTABLESTRING};
    CMS_ContentInfo *env = NULL, *sd = NULL;
    CMS_SignerInfo *si;
    STACK_OF(X509) *rcpt = NULL;
    BIO *in = NULL, *cb = NULL;
    unsigned char *envder = NULL, *der = NULL, sn[16] = "sender nonce....";
    int envlen = 0;

    *outlen = 0;
    if (flags & 1) {
        rcpt = one_cert(req_cert);
        in = BIO_new_mem_buf(clen ? content : (const unsigned char *)"", (int)clen);
        env = in ? CMS_encrypt(rcpt, in, (flags & 2) ? EVP_des_ede3_cbc() : EVP_aes_128_cbc(),
                               CMS_BINARY)
                 : NULL;
        envlen = env ? i2d_CMS_ContentInfo(env, &envder) : 0;
        if (envlen <= 0)
            die("cannot envelope the content");
        content = envder;
        clen = (size_t)envlen;
    }
    cb = BIO_new_mem_buf(clen ? content : (const unsigned char *)"", (int)clen);
    sd = CMS_sign(NULL, NULL, NULL, NULL, CMS_PARTIAL | CMS_BINARY);
    si = sd && cb
             ? CMS_add1_signer(sd, (flags & 4) ? req_cert : ca_cert, (flags & 4) ? req_key : ca_key,
                               EVP_sha256(), CMS_BINARY | CMS_NOSMIMECAP | CMS_PARTIAL)
             : NULL;
    if (si == NULL)
        die("cannot sign the CertRep");
    for (int i = 0; i < 5; i++)
        if (f[i].v != NULL &&
            !add_attr(si, oids[i], types[i], f[i].v,
                      f[i].len < 0 ? (int)strlen((const char *)f[i].v) : f[i].len))
            die("cannot add a SCEP attribute");
    if (!add_attr(si, OID_SENDER_NONCE, V_ASN1_OCTET_STRING, sn, 16) ||
        CMS_final(sd, cb, NULL, CMS_BINARY) != 1)
        die("cannot sign the CertRep");
    *outlen = i2d_CMS_ContentInfo(sd, &der);
    if (*outlen <= 0)
        der = NULL;
    OPENSSL_free(envder);
    sk_X509_pop_free(rcpt, X509_free);
    BIO_free(in);
    BIO_free(cb);
    CMS_ContentInfo_free(env);
    CMS_ContentInfo_free(sd);
    return der;
}

/* ---- the parsers ---------------------------------------------------------- */

static void
scep_init(enr_scep *s)
{
    memset(s, 0, sizeof(*s));
    s->p = &prof;
    s->md = EVP_sha256();
    s->cipher = EVP_aes_128_cbc();
}

static void
run_caps(const uint8_t *d, size_t n)
{
    enr_scep s;
    unsigned char *body = NULL;

    scep_init(&s);
    /* enr_http: the body NUL-terminated, NULL when the answer is empty. */
    if (n > 0) {
        body = malloc(n + 1);
        if (body == NULL)
            return;
        memcpy(body, d, n);
        body[n] = '\0';
    }
    enr_scep_parse_caps(&s, body, n);
    free(body);
}

static void
run_cacert(const uint8_t *d, size_t n, const char *ct)
{
    enr_scep s;
    STACK_OF(X509) *anchors = one_cert(ca_cert);

    scep_init(&s);
    (void)enr_scep_parse_cacert(&s, d, n, ct, anchors);
    sk_X509_pop_free(s.cacerts, X509_free);
    sk_X509_pop_free(anchors, X509_free);
}

static void
run_certrep(const uint8_t *d, size_t n)
{
    enr_scep s;
    enr_scep_result res;

    scep_init(&s);
    memset(&res, 0, sizeof(res));
    s.cacerts = one_cert(ca_cert);
    s.ca = s.ra = ca_cert;
    (void)enr_scep_parse_reply(&s, d, n, TXID, NONCE, req_cert, req_key, req_key, &res);
    enr_scep_result_clear(&res);
    sk_X509_pop_free(s.cacerts, X509_free);
}

static void
run_certrep_built(const uint8_t *d, size_t n)
{
    static const field expected[5] = {{(const unsigned char *)"3", 1},
                                      {(const unsigned char *)"0", 1},
                                      {(const unsigned char *)TXID, -1},
                                      {NONCE, 16},
                                      {(const unsigned char *)"2", 1}};
    field f[5];
    unsigned char *der;
    int flags, len;

    if (n < 1)
        return;
    flags = d[0];
    d++, n--;
    for (int i = 0; i < 5; i++) {
        size_t l = n > 0 ? d[0] : 0xff;
        if (n > 0)
            d++, n--;
        if (l == 0xff) {
            f[i].v = NULL;
        } else if (l == 0xfe) {
            f[i] = expected[i];
        } else {
            if (l > n)
                l = n;
            f[i].v = l ? d : (const unsigned char *)"";
            f[i].len = (int)l;
            d += l, n -= l;
        }
    }
    der = certrep(flags, f, d, n, &len);
    run_certrep(der, (size_t)len);
    OPENSSL_free(der);
}

static void
run_est(const uint8_t *d, size_t n, int enroll)
{
    const char *ct;

    if (n < 1)
        return;
    ct = est_ctypes[d[0] & 3];
    d++, n--;
    if (enroll) {
        enr_scep_result res;
        memset(&res, 0, sizeof(res));
        (void)enr_est_parse_issued("simpleenroll", ct, d, n, req_key, &res);
        enr_scep_result_clear(&res);
    } else {
        STACK_OF(X509) *certs = NULL, *anchors = one_cert(ca_cert);
        if (enr_est_parse_certs("cacerts", ct, d, n, &certs) == ENR_OK)
            (void)enr_est_take_cacerts(prof.name, certs, anchors, enr_now());
        sk_X509_pop_free(certs, X509_free);
        sk_X509_pop_free(anchors, X509_free);
    }
}

static void
run_header(const uint8_t *d, size_t n)
{
    long secs = -1;

    if (enr_est_retry_after((const char *)d, n, &secs) && secs < 0)
        abort(); /* a delay is never negative */
}

static void
run_csrattrs(const uint8_t *d, size_t n)
{
    static const char *const ct[4] = {"application/csrattrs", "text/plain", NULL,
                                      "application/csrattrs; charset=binary"};
    enr_est_attrs a;

    if (n < 1)
        return;
    if (enr_est_parse_csrattrs(ct[d[0] & 3], d + 1, n - 1, &a) == ENR_OK) {
        /* What the helper acts on stays within what it can do. */
        if ((a.curve_nid != 0 && a.curve_nid != NID_X9_62_prime256v1 &&
             a.curve_nid != NID_secp384r1 && a.curve_nid != NID_secp521r1) ||
            (a.md != NULL && a.md != EVP_sha256() && a.md != EVP_sha384() &&
             a.md != EVP_sha512()) ||
            a.rsa_bits < 0)
            abort();
        for (int i = 0; i < sk_X509_EXTENSION_num(a.exts); i++) {
            int nid = OBJ_obj2nid(X509_EXTENSION_get_object(sk_X509_EXTENSION_value(a.exts, i)));
            if (nid != NID_key_usage && nid != NID_ext_key_usage)
                abort();
        }
    }
    enr_est_attrs_clear(&a);
}

static void
run_b64(const uint8_t *d, size_t n)
{
    unsigned char *out = NULL, *again = NULL, *enc = NULL;
    size_t max, len = 0, len2 = 0;

    if (n < 1)
        return;
    max = d[0] == 0 ? (size_t)1 << 20 : (size_t)d[0] * 64;
    if (enr_base64_decode("fuzz: the answer", d + 1, n - 1, max, &out, &len) == ENR_OK) {
        /* Accepted: within the limit, no more than the text can hold, and
         * OpenSSL's encoding of it decodes to the same bytes. */
        if (out == NULL || len == 0 || len > max || len > (n - 1) / 4 * 3)
            abort();
        enc = malloc(4 * ((len + 2) / 3) + 1);
        if (enc == NULL)
            abort();
        int el = EVP_EncodeBlock(enc, out, (int)len);
        if (enr_base64_decode("fuzz: the answer", enc, (size_t)el, max, &again, &len2) != ENR_OK ||
            len2 != len || memcmp(again, out, len) != 0)
            abort();
    } else if (out != NULL || len != 0) {
        abort(); /* a refusal hands nothing out */
    }
    free(out);
    free(again);
    free(enc);
}

/* ---- CMP general messages (selector 18) ------------------------------------ */

static void
run_cmp_genm(const uint8_t *d, size_t n)
{
    ASN1_STRING *seq = ASN1_STRING_type_new(V_ASN1_SEQUENCE);
    ASN1_TYPE *v = ASN1_TYPE_new();
    STACK_OF(X509) *anchors = one_cert(ca_cert);

    if (seq == NULL || v == NULL || anchors == NULL || n > 0x7fffffff ||
        !ASN1_STRING_set(seq, d, (int)n)) {
        ASN1_STRING_free(seq);
        goto done;
    }
    ASN1_TYPE_set(v, V_ASN1_SEQUENCE, seq);
    enr_cmp_root_update(&prof, anchors, ca_cert, v);
    enr_cmp_take_cacerts(&prof, anchors, v);
done:
    ASN1_TYPE_free(v);
    sk_X509_pop_free(anchors, X509_free);
}

/* ---- CMP (selectors 16, 17) ------------------------------------------------ */

static X509 *issue(EVP_PKEY *key, const char *cn);

static enr_profile cprof;
static char cmp_secret[64];
static OSSL_CMP_SRV_CTX *cmp_srv;
static X509 *cmp_good, *cmp_wrongkey, *cmp_stranger;
static EVP_PKEY *cmp_other;
static struct {
    int built, flags, target, answers;
    const uint8_t *d; /* raw answer, or the edit triples */
    size_t n;
    unsigned char *capture; /* seeds: the first built answer, undamaged */
    size_t capture_n;
} cf;

static OSSL_CMP_PKISI *
cmp_srv_cert(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int rid, const OSSL_CRMF_MSG *crm,
             const X509_REQ *p10, X509 **out, STACK_OF(X509) * *chain, STACK_OF(X509) * *capubs)
{
    (void)srv, (void)req, (void)rid, (void)crm, (void)p10, (void)chain, (void)capubs;
    *out = X509_dup((cf.flags & 1) ? cmp_wrongkey : (cf.flags & 2) ? cmp_stranger : cmp_good);
    return OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_accepted, 0, NULL);
}

static int
cmp_srv_conf(OSSL_CMP_SRV_CTX *srv, const OSSL_CMP_MSG *req, int rid, const ASN1_OCTET_STRING *h,
             const OSSL_CMP_PKISI *si)
{
    (void)srv, (void)req, (void)rid, (void)h, (void)si;
    return 1;
}

static int
cmp_quiet(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg)
{
    (void)func, (void)file, (void)line, (void)level;
    if (getenv("FUZZ_CA_DEBUG") != NULL)
        fprintf(stderr, "fuzz_ca: CMP server: %s\n", msg);
    return 1;
}

static void
cmp_setup(void)
{
    OSSL_CMP_CTX *c;
    FILE *f;

    if (cmp_srv != NULL)
        return;
    if (sodium_init() < 0) /* the helper keeps the MAC secret in sodium memory */
        die("cannot initialise libsodium");
    snprintf(cmp_secret, sizeof(cmp_secret), "/tmp/fuzz_ca_cmp_%ld", (long)getpid());
    f = fopen(cmp_secret, "w");
    if (f == NULL || fputs("fuzz-secret\n", f) < 0 || fclose(f) != 0 || chmod(cmp_secret, 0600))
        die("cannot write the CMP secret file");
    cprof.name = "fuzz";
    cprof.url = "http://ca.invalid/cmp";
    cprof.proto = ENR_PROTO_CMP;
    cprof.reference = "fuzz-ref";
    cprof.secret_file = cmp_secret;
    cprof.subject = "CN=fuzz requester";
    cprof.subject_name = X509_NAME_new();
    cprof.http_timeout = 5;
    cprof.rekey = 1;
    if (cprof.subject_name == NULL ||
        !X509_NAME_add_entry_by_txt(cprof.subject_name, "CN", MBSTRING_ASC,
                                    (const unsigned char *)"fuzz requester", -1, -1, 0))
        die("out of memory");
    cmp_other = EVP_RSA_gen(2048);
    cmp_good = issue(req_key, "fuzz requester");
    cmp_wrongkey = issue(cmp_other, "fuzz requester");
    cmp_stranger = issue(req_key, "stranger");
    cmp_srv = OSSL_CMP_SRV_CTX_new(NULL, NULL);
    c = cmp_srv ? OSSL_CMP_SRV_CTX_get0_cmp_ctx(cmp_srv) : NULL;
    if (c == NULL ||
        !OSSL_CMP_SRV_CTX_init(cmp_srv, NULL, cmp_srv_cert, NULL, NULL, NULL, cmp_srv_conf, NULL) ||
        !OSSL_CMP_CTX_set1_secretValue(c, (const unsigned char *)"fuzz-secret", 11) ||
        !OSSL_CMP_CTX_set1_referenceValue(c, (const unsigned char *)"fuzz-server", 11) ||
        !OSSL_CMP_CTX_set_log_cb(c, cmp_quiet))
        die("cannot set up the CMP server");
}

static void
cmp_cleanup(void)
{
    if (cmp_srv == NULL)
        return;
    remove(cmp_secret);
    OSSL_CMP_SRV_CTX_free(cmp_srv);
    X509_NAME_free(cprof.subject_name);
    X509_free(cmp_good);
    X509_free(cmp_wrongkey);
    X509_free(cmp_stranger);
    EVP_PKEY_free(cmp_other);
    free(cf.capture);
}

/* The CMP client's HTTP exchange, replaced (enr_cmp_transport). */
static enr_rc
cmp_transport(const unsigned char *req, size_t n, unsigned char **resp, size_t *rlen, char **ct)
{
    const unsigned char *q = req;
    OSSL_CMP_MSG *m, *r;
    unsigned char *der = NULL;
    int len;

    *resp = NULL;
    *rlen = 0;
    *ct = strdup("application/pkixcmp");
    if (!cf.built) {
        if (cf.answers++ > 0 || cf.n == 0)
            return ENR_E_NETWORK; /* one answer only */
        *resp = malloc(cf.n);
        if (*resp == NULL)
            return ENR_E_FAIL;
        memcpy(*resp, cf.d, cf.n);
        *rlen = cf.n;
        return ENR_OK;
    }
    m = d2i_OSSL_CMP_MSG(NULL, &q, (long)n);
    r = m ? OSSL_CMP_SRV_process_request(cmp_srv, m) : NULL;
    len = r ? i2d_OSSL_CMP_MSG(r, &der) : 0;
    OSSL_CMP_MSG_free(m);
    OSSL_CMP_MSG_free(r);
    if (len <= 0 || (*resp = malloc((size_t)len)) == NULL) {
        OPENSSL_free(der);
        return ENR_E_NETWORK;
    }
    memcpy(*resp, der, (size_t)len);
    OPENSSL_free(der);
    *rlen = (size_t)len;
    if (cf.answers == 0 && cf.capture == NULL && (cf.capture = malloc(*rlen)) != NULL) {
        memcpy(cf.capture, *resp, *rlen);
        cf.capture_n = *rlen;
    }
    if (cf.answers++ == cf.target)
        for (size_t i = 0; i + 3 <= cf.n; i += 3) {
            size_t off = ((size_t)(cf.d[i] & 0x7f) << 8 | cf.d[i + 1]) % *rlen;
            (*resp)[(cf.d[i] & 0x80) ? *rlen - 1 - off : off] ^= cf.d[i + 2];
        }
    return ENR_OK;
}

static void
run_cmp(const uint8_t *d, size_t n, int built)
{
    STACK_OF(X509) * anchors;
    enr_scep_result res;
    enr_rc rc;

    cmp_setup();
    cf.built = built;
    cf.flags = cf.target = cf.answers = 0;
    if (built) {
        if (n < 2)
            return;
        cf.flags = d[0];
        cf.target = d[1] & 1;
        d += 2, n -= 2;
    }
    cf.d = d;
    cf.n = n;
    anchors = one_cert(ca_cert);
    enr_cmp_transport = cmp_transport;
    rc = enr_cmp_enroll(&cprof, req_key, NULL, NULL, NULL, NULL, anchors, &res);
    /* Accepted only for the requested key and subject. */
    if (rc == ENR_OK &&
        (res.cert == NULL || X509_cmp(res.cert, cmp_good) != 0 || !built || (cf.flags & 3)))
        abort();
    enr_scep_result_clear(&res);
    sk_X509_pop_free(anchors, X509_free);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % P_COUNT) {
    case P_CAPS:
        run_caps(data + 1, size - 1);
        break;
    case P_CACERT:
        run_cacert(data + 1, size - 1, "application/x-x509-ca-cert");
        break;
    case P_CACERT_RA:
        run_cacert(data + 1, size - 1, "application/x-x509-ca-ra-cert");
        break;
    case P_CERTREP:
        run_certrep(data + 1, size - 1);
        break;
    case P_CERTREP_BUILT:
        run_certrep_built(data + 1, size - 1);
        break;
    case P_EST_CACERTS:
    case P_EST_ENROLL:
        run_est(data + 1, size - 1, data[0] % P_COUNT == P_EST_ENROLL);
        break;
    case P_HEADER:
        run_header(data + 1, size - 1);
        break;
    case P_EST_CSRATTRS:
        run_csrattrs(data + 1, size - 1);
        break;
    case P_B64:
        run_b64(data + 1, size - 1);
        break;
    case P_CMP:
    case P_CMP_BUILT:
        run_cmp(data + 1, size - 1, data[0] % P_COUNT == P_CMP_BUILT);
        break;
    case P_CMP_GENM:
        run_cmp_genm(data + 1, size - 1);
        break;
    }
    ERR_clear_error();
    return 0;
}

/* ---- seeds ------------------------------------------------------------------ */

static const char *seed_dir;

static void
seed(const char *name, int sel, const void *a, size_t alen, const void *b, size_t blen)
{
    char path[4096];
    FILE *f;
    unsigned char s = (unsigned char)sel;

    snprintf(path, sizeof(path), "%s/%s", seed_dir, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(&s, 1, 1, f) != 1 || (alen && fwrite(a, 1, alen, f) != alen) ||
        (blen && fwrite(b, 1, blen, f) != blen) || fclose(f) != 0)
        die("cannot write a seed");
}

/* Base64 with line breaks, as an EST server sends it. */
static char *
base64(const unsigned char *der, int len)
{
    BIO *mem = BIO_new(BIO_s_mem()), *b64 = BIO_new(BIO_f_base64());
    char *d, *s;
    long n;

    b64 = BIO_push(b64, mem);
    if (BIO_write(b64, der, len) != len || BIO_flush(b64) != 1)
        die("base64");
    n = BIO_get_mem_data(mem, &d);
    s = strndup(d, (size_t)n);
    BIO_free_all(b64);
    return s;
}

/* The requester's certificate as the CA issues it. */
static X509 *
issue(EVP_PKEY *key, const char *cn)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    time_t now = FUZZ_NOW;

    if (x == NULL || n == NULL || !ASN1_INTEGER_set(X509_get_serialNumber(x), 4242) ||
        !X509_set_version(x, 2) ||
        !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) ||
        !X509_set_subject_name(x, n) || !X509_set_issuer_name(x, X509_get_subject_name(ca_cert)) ||
        !X509_set_pubkey(x, key) || !X509_time_adj_ex(X509_getm_notBefore(x), 0, -60, &now) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), 90, 0, &now) ||
        !X509_sign(x, ca_key, EVP_sha256()))
        die("cannot issue a certificate");
    X509_NAME_free(n);
    return x;
}

static void
write_certrep(const char *name, int flags, const field f[5], const unsigned char *c, size_t clen)
{
    int len;
    unsigned char *der = certrep(flags, f, c, clen, &len);

    seed(name, P_CERTREP, der, (size_t)len, NULL, 0);
    OPENSSL_free(der);
}

/* Built CertRep (selector 4): FLAGS, five fields given as "\xfe" (expected),
 * "\xff" (absent) or length + bytes, then the content. */
static void
write_built(const char *name, int flags, const char *fields, size_t flen, const unsigned char *c,
            size_t clen)
{
    unsigned char head[256];

    head[0] = (unsigned char)flags;
    memcpy(head + 1, fields, flen);
    seed(name, P_CERTREP_BUILT, head, flen + 1, c, clen);
}

static void
write_seeds(void)
{
    static const field ok[5] = {{(const unsigned char *)"3", 1},
                                {(const unsigned char *)"0", 1},
                                {(const unsigned char *)TXID, -1},
                                {NONCE, 16},
                                {NULL, 0}};
    field f[5];
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *mine = issue(req_key, "fuzz requester");
    EVP_PKEY *other = EVP_RSA_gen(2048);
    X509 *wrong = other ? issue(other, "someone else") : NULL;
    unsigned char *der = NULL, *p7 = NULL;
    int len, p7len;
    char *b64;
    static const char *caps[][2] = {
        {"caps-scepsrv", "POSTPKIOperation\nRenewal\nAES\nSHA-256\nSHA-1\nDES3\n"},
        {"caps-scepstandard", "SCEPStandard\r\nRenewal\r\n"},
        {"caps-old", "GetNextCACert\nDES3\nSHA-1\n"},
        {"caps-empty", ""}};

    if (wrong == NULL || sk == NULL)
        die("cannot make the seeds");
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
        seed(caps[i][0], P_CAPS, caps[i][1], strlen(caps[i][1]), NULL, 0);

    /* GetCACert: the CA alone (DER), CA + RA-like end entity (PKCS#7), a
     * certificate that does not chain. */
    len = i2d_X509(ca_cert, &der);
    seed("cacert-der", P_CACERT, der, (size_t)len, NULL, 0);
    OPENSSL_free(der);
    der = NULL;
    len = i2d_X509(req_cert, &der);
    seed("cacert-der-foreign", P_CACERT, der, (size_t)len, NULL, 0);
    OPENSSL_free(der);
    der = NULL;
    sk_X509_push(sk, mine);
    sk_X509_push(sk, ca_cert);
    p7 = certs_only(sk, &p7len);
    seed("cacert-ra-p7", P_CACERT_RA, p7, (size_t)p7len, NULL, 0);

    /* CertRep: SUCCESS with the certificate and the CA enveloped (AES, 3DES),
     * PENDING, FAILURE, and the ones the checks refuse. */
    write_certrep("certrep-success", 1, ok, p7, (size_t)p7len);
    write_certrep("certrep-success-3des", 3, ok, p7, (size_t)p7len);
    write_certrep("certrep-stranger", 5, ok, p7, (size_t)p7len);
    write_certrep("certrep-not-enveloped", 0, ok, p7, (size_t)p7len);
    memcpy(f, ok, sizeof(f));
    f[1].v = (const unsigned char *)"3";
    write_certrep("certrep-pending", 0, f, NULL, 0);
    f[1].v = (const unsigned char *)"2";
    f[4].v = (const unsigned char *)"4";
    f[4].len = 1;
    write_certrep("certrep-failure-badcertid", 0, f, NULL, 0);
    f[4].v = NULL;
    write_certrep("certrep-failure-noinfo", 0, f, NULL, 0);
    memcpy(f, ok, sizeof(f));
    f[2].v = (const unsigned char *)"another-transaction";
    write_certrep("certrep-other-txid", 1, f, p7, (size_t)p7len);
    memcpy(f, ok, sizeof(f));
    f[3].v = (const unsigned char *)"0123456789abcdef";
    write_certrep("certrep-bad-nonce", 1, f, p7, (size_t)p7len);
    memcpy(f, ok, sizeof(f));
    f[0].v = (const unsigned char *)"19";
    f[0].len = 2;
    write_certrep("certrep-pkcsreq-type", 1, f, p7, (size_t)p7len);
    OPENSSL_free(p7);

    /* Built CertReps: the content is what gets enveloped. */
    sk_X509_zero(sk);
    sk_X509_push(sk, ca_cert);
    sk_X509_push(sk, wrong);
    sk_X509_push(sk, mine);
    p7 = certs_only(sk, &p7len);
    write_built("built-success", 1, "\xfe\xfe\xfe\xfe\xff", 5, p7, (size_t)p7len);
    write_built("built-success-3des", 3, "\xfe\xfe\xfe\xfe\xff", 5, p7, (size_t)p7len);
    write_built("built-garbage-inside", 1, "\xfe\xfe\xfe\xfe\xff", 5,
                (const unsigned char *)"\x30\x03\x02\x01\x00", 5);
    write_built("built-failure", 0,
                "\xfe\x01"
                "2\xfe\xfe\x01"
                "1",
                8, NULL, 0);
    write_built("built-status-long", 0,
                "\xfe\x08"
                "00000000\xfe\xfe\xff",
                13, NULL, 0);
    write_built("built-status-unknown", 0,
                "\xfe\x01"
                "7\xfe\xfe\xff",
                7, NULL, 0);
    OPENSSL_free(p7);
    sk_X509_zero(sk);
    sk_X509_push(sk, ca_cert);
    sk_X509_push(sk, wrong);
    p7 = certs_only(sk, &p7len);
    write_built("built-not-mine", 1, "\xfe\xfe\xfe\xfe\xff", 5, p7, (size_t)p7len);
    OPENSSL_free(p7);

    /* EST: /cacerts with the CA, with a stranger; /simpleenroll. */
    sk_X509_zero(sk);
    sk_X509_push(sk, ca_cert);
    p7 = certs_only(sk, &p7len);
    b64 = base64(p7, p7len);
    seed("est-cacerts", P_EST_CACERTS, "\0", 1, b64, strlen(b64));
    seed("est-cacerts-plain-type", P_EST_CACERTS, "\1", 1, b64, strlen(b64));
    seed("est-cacerts-text", P_EST_CACERTS, "\2", 1, b64, strlen(b64));
    free(b64);
    OPENSSL_free(p7);
    sk_X509_zero(sk);
    sk_X509_push(sk, req_cert);
    sk_X509_push(sk, ca_cert);
    p7 = certs_only(sk, &p7len);
    b64 = base64(p7, p7len);
    seed("est-cacerts-stranger", P_EST_CACERTS, "\0", 1, b64, strlen(b64));
    free(b64);
    OPENSSL_free(p7);
    sk_X509_zero(sk);
    sk_X509_push(sk, mine);
    p7 = certs_only(sk, &p7len);
    b64 = base64(p7, p7len);
    seed("est-enroll", P_EST_ENROLL, "\0", 1, b64, strlen(b64));
    free(b64);
    OPENSSL_free(p7);
    sk_X509_zero(sk);
    sk_X509_push(sk, wrong);
    sk_X509_push(sk, mine);
    sk_X509_push(sk, ca_cert);
    p7 = certs_only(sk, &p7len);
    b64 = base64(p7, p7len);
    seed("est-enroll-chain", P_EST_ENROLL, "\0", 1, b64, strlen(b64));
    free(b64);
    OPENSSL_free(p7);
    sk_X509_zero(sk);
    p7 = certs_only(sk, &p7len);
    b64 = base64(p7, p7len);
    seed("est-enroll-empty-p7", P_EST_ENROLL, "\0", 1, b64, strlen(b64));
    free(b64);
    OPENSSL_free(p7);
    seed("est-enroll-not-base64", P_EST_ENROLL, "\0", 1, "<html>busy</html>", 17);

    /* The forms of base64 servers send in the field (RFC 7030 bodies): one
     * line without a newline, CRLF lines with a trailing NUL, whitespace
     * after the data; and hostile ones: a truncated body, a character that
     * is not base64, a PEM boundary. */
    sk_X509_zero(sk);
    sk_X509_push(sk, mine);
    p7 = certs_only(sk, &p7len);
    {
        char *flat = malloc(4 * ((size_t)p7len + 2) / 3 + 8), *crlf;
        size_t fl = (size_t)EVP_EncodeBlock((unsigned char *)flat, p7, p7len), j = 0;
        seed("est-enroll-unwrapped", P_EST_ENROLL, "\0", 1, flat, fl);
        crlf = malloc(fl + fl / 76 * 2 + 8);
        for (size_t k = 0; k < fl; k++) {
            crlf[j++] = flat[k];
            if ((k + 1) % 76 == 0 || k + 1 == fl) {
                crlf[j++] = '\r';
                crlf[j++] = '\n';
            }
        }
        crlf[j++] = '\0';
        seed("est-enroll-crlf-nul", P_EST_ENROLL, "\0", 1, crlf, j);
        memcpy(flat + fl, " \t\r\n", 4);
        seed("est-enroll-trailing-ws", P_EST_ENROLL, "\0", 1, flat, fl + 4);
        seed("est-enroll-truncated", P_EST_ENROLL, "\0", 1, flat, fl - 5);
        seed("b64-unwrapped", P_B64, "\0", 1, flat, fl);
        seed("b64-crlf-nul", P_B64, "\0", 1, crlf, j);
        seed("b64-too-large", P_B64, "\1", 1, flat, fl);
        flat[fl / 2] = '!';
        seed("est-enroll-bad-char", P_EST_ENROLL, "\0", 1, flat, fl);
        free(crlf);
        free(flat);
    }
    OPENSSL_free(p7);
    seed("b64-pem-boundary", P_B64, "\0", 1, "QUJD\n-----END CERTIFICATE-----\n", 31);
    seed("b64-after-padding", P_B64, "\0", 1, "QQ==QUJD\r\n", 10);
    seed("b64-nul-inside", P_B64, "\0", 1, "QUJD\0REVG\0", 10);
    seed("b64-spaces", P_B64, "\0", 1, "QUJD REVG\tR0g=\r\n\r\n", 18);

    /* Retry-After headers. */
    seed("header-retry-seconds", P_HEADER, "Retry-After: 2\r\n", 16, NULL, 0);
    seed("header-retry-date", P_HEADER, "retry-after:\tFri, 01 Jan 2027 00:10:00 GMT\r\n", 44, NULL,
         0);
    seed("header-other", P_HEADER, "Content-Type: application/pkcs7-mime\r\n", 38, NULL, 0);

    /* /csrattrs: RFC 7030 section 4.5.2's example (challengePassword, EC
     * P-384, extensionRequest for macAddress, ecdsa-with-SHA384); RFC 9908
     * style (RSA 3072, sha384WithRSAEncryption, extKeyUsage and an empty
     * subjectAltName to fill in); empty; malformed. */
    {
        static const char rfc7030[] = "MEEGCSqGSIb3DQEJBzASBgcqhkjOPQIBMQcGBSuBBAAiMBYGCSqGSIb3DQEJ"
                                      "DjEJBgcrBgEBAQEWBggqhkjOPQQDAw==\n";
        static const char rsa[] =
            "ME0wEQYJKoZIhvcNAQEBMQQCAgwABgkqhkiG9w0BAQwwLQYJKoZIhvcNAQkOMSAw\n"
            "HjATBgNVHSUEDDAKBggrBgEFBQcDAjAHBgNVHREEAA==\n";
        seed("est-csrattrs-rfc7030", P_EST_CSRATTRS, "\0", 1, rfc7030, strlen(rfc7030));
        seed("est-csrattrs-rsa-eku", P_EST_CSRATTRS, "\0", 1, rsa, strlen(rsa));
        seed("est-csrattrs-empty-seq", P_EST_CSRATTRS, "\0", 1, "MAA=\n", 5);
        seed("est-csrattrs-malformed", P_EST_CSRATTRS, "\0", 1, "MAMCAQE=\n", 9);
    }

    sk_X509_free(sk);
    X509_free(mine);
    X509_free(wrong);
    EVP_PKEY_free(other);
}

/* CMP seeds: answers the in-process server built (taken undamaged from a
 * clean run), damaged at chosen places, and for other keys and subjects. */
static void
write_cmp_seeds(void)
{
    static const unsigned char clean[2] = {0, 0}, other_key[2] = {1, 0}, other_subject[2] = {2, 0};
    /* ip: a byte early in the header, one in the middle (body), the last
     * byte (protection); pkiConf: its protection. */
    static const unsigned char hdr[5] = {0, 0, 0, 20, 0x01}, mid[5] = {0, 0, 0x02, 0x00, 0x40},
                               tail[5] = {0, 0, 0x80, 0, 0x01}, conf[5] = {0, 1, 0x80, 0, 0x80};

    run_cmp(clean, sizeof(clean), 1);
    if (cf.capture == NULL)
        die("no CMP answer captured");
    seed("cmp-raw-ip-other-transaction", P_CMP, cf.capture, cf.capture_n, NULL, 0);
    seed("cmp-raw-truncated", P_CMP, cf.capture, cf.capture_n / 2, NULL, 0);
    seed("cmp-raw-not-der", P_CMP, "<html>busy</html>", 17, NULL, 0);
    seed("cmp-built-clean", P_CMP_BUILT, clean, sizeof(clean), NULL, 0);
    seed("cmp-built-other-key", P_CMP_BUILT, other_key, sizeof(other_key), NULL, 0);
    seed("cmp-built-other-subject", P_CMP_BUILT, other_subject, sizeof(other_subject), NULL, 0);
    seed("cmp-built-ip-header", P_CMP_BUILT, hdr, sizeof(hdr), NULL, 0);
    seed("cmp-built-ip-body", P_CMP_BUILT, mid, sizeof(mid), NULL, 0);
    seed("cmp-built-ip-protection", P_CMP_BUILT, tail, sizeof(tail), NULL, 0);
    seed("cmp-built-pkiconf-protection", P_CMP_BUILT, conf, sizeof(conf), NULL, 0);

    /* genm values: caCerts with the CA, rootCaKeyUpdate without and with a
     * NewWithOld (which does not certify NewWithNew's name and key). */
    {
        STACK_OF(X509) *cs = one_cert(ca_cert);
        ENR_ROOTCAKEYUPDATE bare = {req_cert, NULL, NULL}, linked = {req_cert, ca_cert, ca_cert};
        unsigned char *der = NULL;
        int n;

        n = ASN1_item_i2d((ASN1_VALUE *)cs, &der, ASN1_ITEM_rptr(ENR_CACERTS));
        if (n <= 0)
            die("cannot encode caCerts");
        seed("cmp-genm-cacerts", P_CMP_GENM, der, (size_t)n, NULL, 0);
        OPENSSL_free(der);
        der = NULL;
        n = ASN1_item_i2d((ASN1_VALUE *)&bare, &der, ASN1_ITEM_rptr(ENR_ROOTCAKEYUPDATE));
        if (n <= 0)
            die("cannot encode rootCaKeyUpdate");
        seed("cmp-genm-rootupdate-bare", P_CMP_GENM, der, (size_t)n, NULL, 0);
        OPENSSL_free(der);
        der = NULL;
        n = ASN1_item_i2d((ASN1_VALUE *)&linked, &der, ASN1_ITEM_rptr(ENR_ROOTCAKEYUPDATE));
        if (n <= 0)
            die("cannot encode rootCaKeyUpdate");
        seed("cmp-genm-rootupdate-linked", P_CMP_GENM, der, (size_t)n, NULL, 0);
        OPENSSL_free(der);
        sk_X509_pop_free(cs, X509_free);
    }
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    ca_key = pem_load(CA_KEY, 1);
    ca_cert = pem_load(CA_CERT, 0);
    req_key = pem_load(REQ_KEY, 1);
    req_cert = pem_load(REQ_CERT, 0);
    atexit(cleanup);
    atexit(cmp_cleanup);
    (void)enr_now(); /* reads EVERTOKEN_ENROLL_FAKE_TIME first: ours wins */
    enr_clock_set(FUZZ_NOW);
    prof.name = "fuzz";
    prof.url = "http://ca.invalid/scep";
    seed_dir = getenv("FUZZ_CA_SEEDS");
    if (seed_dir != NULL) {
        write_seeds();
        write_cmp_seeds();
        exit(0);
    }
    return 0;
}
