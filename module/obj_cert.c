/*
 * obj_cert.c — X.509 certificate objects, and the DER checks the attribute
 * table uses (names, object identifiers). All parsing is OpenSSL's.
 *
 * A certificate object is its CKA_VALUE: the subject, issuer, serial number,
 * SubjectPublicKeyInfo and check value are derived from it, and when a
 * template also gives them they must agree (CKR_TEMPLATE_INCONSISTENT; a
 * wrong CKA_CHECK_VALUE is CKR_ATTRIBUTE_VALUE_INVALID as 3.0 section 4.6.3
 * says). Derived attributes are stored, so C_FindObjects can match on them.
 *
 * The certificate is parsed with an ASN.1 template of its own (RFC 5280
 * section 4.1, every field and tag, DER) rather than d2i_X509: OpenSSL 3's
 * X509_PUBKEY decodes the subject's key through the provider decoders at
 * parse time, which was 57 % of the CPU of a certificate's C_CreateObject,
 * and nothing here uses that key (obj_pkey parses it when a key is needed).
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/asn1t.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "obj_int.h"

int
obj_der_is_name(const unsigned char *v, size_t len)
{
    const unsigned char *p = v;
    X509_NAME *nm;
    int ok;

    if (v == NULL || len == 0 || len > LONG_MAX)
        return 0;
    nm = d2i_X509_NAME(NULL, &p, (long)len);
    ok = nm != NULL && p == v + len;
    X509_NAME_free(nm);
    return ok;
}

int
obj_der_is_oid(const unsigned char *v, size_t len)
{
    const unsigned char *p = v;
    ASN1_OBJECT *obj;
    int ok;

    if (v == NULL || len == 0 || len > LONG_MAX)
        return 0;
    obj = d2i_ASN1_OBJECT(NULL, &p, (long)len);
    ok = obj != NULL && p == v + len;
    ASN1_OBJECT_free(obj);
    return ok;
}

/* SubjectPublicKeyInfo without decoding the key. */
typedef struct {
    X509_ALGOR *alg;
    ASN1_BIT_STRING *key;
} ET_SPKI;

typedef struct {
    ASN1_INTEGER *version;
    ASN1_INTEGER *serial;
    X509_ALGOR *sig_alg;
    X509_NAME *issuer;
    X509_VAL *validity;
    X509_NAME *subject;
    ET_SPKI *spki;
    ASN1_BIT_STRING *issuer_uid;
    ASN1_BIT_STRING *subject_uid;
    STACK_OF(X509_EXTENSION) * ext;
} ET_TBS;

typedef struct {
    ET_TBS *tbs;
    X509_ALGOR *sig_alg;
    ASN1_BIT_STRING *sig;
} ET_CERT;

DECLARE_ASN1_ITEM(ET_TBS)
DECLARE_ASN1_FUNCTIONS(ET_SPKI)
DECLARE_ASN1_FUNCTIONS(ET_CERT)

ASN1_SEQUENCE(ET_SPKI) =
    {
        ASN1_SIMPLE(ET_SPKI, alg, X509_ALGOR),
        ASN1_SIMPLE(ET_SPKI, key, ASN1_BIT_STRING),
} ASN1_SEQUENCE_END(ET_SPKI)

        ASN1_SEQUENCE(ET_TBS) =
            {
                ASN1_EXP_OPT(ET_TBS, version, ASN1_INTEGER, 0),
                ASN1_SIMPLE(ET_TBS, serial, ASN1_INTEGER),
                ASN1_SIMPLE(ET_TBS, sig_alg, X509_ALGOR),
                ASN1_SIMPLE(ET_TBS, issuer, X509_NAME),
                ASN1_SIMPLE(ET_TBS, validity, X509_VAL),
                ASN1_SIMPLE(ET_TBS, subject, X509_NAME),
                ASN1_SIMPLE(ET_TBS, spki, ET_SPKI),
                ASN1_IMP_OPT(ET_TBS, issuer_uid, ASN1_BIT_STRING, 1),
                ASN1_IMP_OPT(ET_TBS, subject_uid, ASN1_BIT_STRING, 2),
                ASN1_EXP_SEQUENCE_OF_OPT(ET_TBS, ext, X509_EXTENSION, 3),
} ASN1_SEQUENCE_END(ET_TBS)

                ASN1_SEQUENCE(ET_CERT) =
                    {
                        ASN1_SIMPLE(ET_CERT, tbs, ET_TBS),
                        ASN1_SIMPLE(ET_CERT, sig_alg, X509_ALGOR),
                        ASN1_SIMPLE(ET_CERT, sig, ASN1_BIT_STRING),
} ASN1_SEQUENCE_END(ET_CERT)

                        IMPLEMENT_ASN1_FUNCTIONS(ET_SPKI) IMPLEMENT_ASN1_FUNCTIONS(ET_CERT)

    /* Store DER (from an OpenSSL i2d_*(x, &der) call that returned LEN, freed
     * here) as the derived value of TYPE. */
    static CK_RV
    put_der(obj_build * b, CK_ATTRIBUTE_TYPE type, unsigned char *der, int len, CK_RV mismatch)
{
    CK_RV rv;

    if (der == NULL || len <= 0) {
        OPENSSL_free(der);
        /* Re-encoding a part of a certificate OpenSSL just parsed. */
        return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    rv = ob_put_derived(b, type, der, (size_t)len, mismatch);
    OPENSSL_free(der);
    return rv;
}

/* CKA_START_DATE / CKA_END_DATE from the validity period, unless given. */
static CK_RV
put_date(obj_build *b, CK_ATTRIBUTE_TYPE type, const ASN1_TIME *t)
{
    struct tm tm;
    char buf[32]; /* room for any int, though only 8 bytes are used */

    if (ob_get(b, type) != NULL)
        return CKR_OK; /* the caller's date stands (it is informational) */
    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if (tm.tm_year + 1900 < 1900 || tm.tm_year + 1900 > 9999)
        return ob_put_ref(b, type, "", 0);
    snprintf(buf, sizeof(buf), "%04d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    return ob_put_copy(b, type, buf, sizeof(CK_DATE));
}

CK_RV
obj_cert_build(obj_build *b)
{
    const obj_bval *val = ob_get(b, CKA_VALUE);
    const unsigned char *v, *p;
    unsigned char *der = NULL, md[SHA_DIGEST_LENGTH];
    size_t len;
    ET_CERT *x = NULL;
    int n;
    CK_RV rv;

    /* The standard allows an empty CKA_VALUE with a CKA_URL; this token
     * holds the certificates it presents. */
    if (val == NULL)
        return CKR_TEMPLATE_INCOMPLETE;
    v = val->v; /* borrowed from the template: stays valid across ob_put_* */
    len = val->len;
    if (len == 0 || len > LONG_MAX)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    p = v;
    x = d2i_ET_CERT(NULL, &p, (long)len);
    if (x == NULL || p != v + len) {
        rv = CKR_ATTRIBUTE_VALUE_INVALID; /* malformed, or trailing bytes */
        goto done;
    }
    der = NULL;
    n = i2d_X509_NAME(x->tbs->subject, &der);
    rv = put_der(b, CKA_SUBJECT, der, n, CKR_TEMPLATE_INCONSISTENT);
    if (rv != CKR_OK)
        goto done;
    der = NULL;
    n = i2d_X509_NAME(x->tbs->issuer, &der);
    rv = put_der(b, CKA_ISSUER, der, n, CKR_TEMPLATE_INCONSISTENT);
    if (rv != CKR_OK)
        goto done;
    der = NULL;
    n = i2d_ASN1_INTEGER(x->tbs->serial, &der); /* DER INTEGER, tag included */
    rv = put_der(b, CKA_SERIAL_NUMBER, der, n, CKR_TEMPLATE_INCONSISTENT);
    if (rv != CKR_OK)
        goto done;
    der = NULL;
    n = i2d_ET_SPKI(x->tbs->spki, &der);
    rv = put_der(b, CKA_PUBLIC_KEY_INFO, der, n, CKR_TEMPLATE_INCONSISTENT);
    if (rv != CKR_OK)
        goto done;
    /* 3.0 section 4.6.3: the first three bytes of the SHA-1 of CKA_VALUE. */
    if (SHA1(v, len, md) == NULL) {
        rv = CKR_GENERAL_ERROR;
        goto done;
    }
    rv = ob_put_derived(b, CKA_CHECK_VALUE, md, 3, CKR_ATTRIBUTE_VALUE_INVALID);
    if (rv != CKR_OK)
        goto done;
    rv = put_date(b, CKA_START_DATE, x->tbs->validity->notBefore);
    if (rv != CKR_OK)
        goto done;
    rv = put_date(b, CKA_END_DATE, x->tbs->validity->notAfter);
done:
    ET_CERT_free(x);
    ERR_clear_error(); /* leave no reasons on the host's error queue */
    return rv;
}
