/*
 * obj_cert.c — X.509 certificate objects, and the DER checks the attribute
 * table uses (names, object identifiers). All parsing is OpenSSL's.
 *
 * A certificate object is its CKA_VALUE: the subject, issuer, serial number,
 * SubjectPublicKeyInfo and check value are derived from it, and when a
 * template also gives them they must agree (CKR_TEMPLATE_INCONSISTENT; a
 * wrong CKA_CHECK_VALUE is CKR_ATTRIBUTE_VALUE_INVALID as 3.0 section 4.6.3
 * says). Derived attributes are stored, so C_FindObjects can match on them.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
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

/* Store DER (from an OpenSSL i2d_*(x, &der) call that returned LEN, freed
 * here) as the derived value of TYPE. */
static CK_RV
put_der(obj_build *b, CK_ATTRIBUTE_TYPE type, unsigned char *der, int len, CK_RV mismatch)
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
    X509 *x = NULL;
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
    x = d2i_X509(NULL, &p, (long)len);
    if (x == NULL || p != v + len) {
        rv = CKR_ATTRIBUTE_VALUE_INVALID; /* malformed, or trailing bytes */
        goto done;
    }
    der = NULL;
    n = i2d_X509_NAME(X509_get_subject_name(x), &der);
    rv = put_der(b, CKA_SUBJECT, der, n, CKR_TEMPLATE_INCONSISTENT);
    if (rv != CKR_OK)
        goto done;
    der = NULL;
    n = i2d_X509_NAME(X509_get_issuer_name(x), &der);
    rv = put_der(b, CKA_ISSUER, der, n, CKR_TEMPLATE_INCONSISTENT);
    if (rv != CKR_OK)
        goto done;
    der = NULL;
    n = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &der); /* DER INTEGER, tag included */
    rv = put_der(b, CKA_SERIAL_NUMBER, der, n, CKR_TEMPLATE_INCONSISTENT);
    if (rv != CKR_OK)
        goto done;
    der = NULL;
    n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
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
    rv = put_date(b, CKA_START_DATE, X509_get0_notBefore(x));
    if (rv != CKR_OK)
        goto done;
    rv = put_date(b, CKA_END_DATE, X509_get0_notAfter(x));
done:
    X509_free(x);
    ERR_clear_error(); /* leave no reasons on the host's error queue */
    return rv;
}
