/*
 * cmp_asn1.h — the two general-message values of the Lightweight CMP Profile
 * (RFC 9483 section 4.3) that OpenSSL 3.0 does not know (3.2 adds them), as
 * OpenSSL ASN.1 templates, shared by the helper (cmp.c) and the test CA
 * (tests/enroll/cmpsrv.c). OpenSSL 3.0 carries an InfoTypeAndValue of an
 * unknown type as ASN1_TYPE (a SEQUENCE here); these templates read and
 * write its DER. Nothing is hand-encoded.
 *
 *   id-it-caCerts         1.3.6.1.5.5.7.4.17   CaCerts ::= SEQUENCE SIZE (1..MAX) OF CMPCertificate
 *   id-it-rootCaCert      1.3.6.1.5.5.7.4.20   the requester's current root: CMPCertificate
 *   id-it-rootCaKeyUpdate 1.3.6.1.5.5.7.4.18   RootCaKeyUpdateContent ::= SEQUENCE {
 *                                                newWithNew CMPCertificate,
 *                                                newWithOld [0] CMPCertificate OPTIONAL,
 *                                                oldWithNew [1] CMPCertificate OPTIONAL }
 * (the CMP ASN.1 module uses explicit tags).
 */
#ifndef EVERTOKEN_ENROLL_CMP_ASN1_H
#define EVERTOKEN_ENROLL_CMP_ASN1_H

#include <openssl/asn1t.h>
#include <openssl/x509.h>

#define ENR_OID_IT_CACERTS         "1.3.6.1.5.5.7.4.17"
#define ENR_OID_IT_ROOTCAKEYUPDATE "1.3.6.1.5.5.7.4.18"
#define ENR_OID_IT_ROOTCACERT      "1.3.6.1.5.5.7.4.20"

typedef struct enr_rootcakeyupdate {
    X509 *newWithNew, *newWithOld, *oldWithNew;
} ENR_ROOTCAKEYUPDATE;

/* clang-format off */
ASN1_SEQUENCE(ENR_ROOTCAKEYUPDATE) = {
    ASN1_SIMPLE(ENR_ROOTCAKEYUPDATE, newWithNew, X509),
    ASN1_EXP_OPT(ENR_ROOTCAKEYUPDATE, newWithOld, X509, 0),
    ASN1_EXP_OPT(ENR_ROOTCAKEYUPDATE, oldWithNew, X509, 1),
} static_ASN1_SEQUENCE_END(ENR_ROOTCAKEYUPDATE)

ASN1_ITEM_TEMPLATE(ENR_CACERTS) =
    ASN1_EX_TEMPLATE_TYPE(ASN1_TFLG_SEQUENCE_OF, 0, caCerts, X509)
static_ASN1_ITEM_TEMPLATE_END(ENR_CACERTS)
            /* clang-format on */

            /* The DER of a SEQUENCE value (an ASN1_TYPE of an unknown info type) read
             * with IT; NULL when it is absent, not a SEQUENCE or does not decode whole. */
            static inline void *
            enr_cmp_itav_value(const ASN1_TYPE *v, const ASN1_ITEM *it)
{
    const unsigned char *p, *end;
    void *out;

    if (v == NULL || v->type != V_ASN1_SEQUENCE || v->value.sequence == NULL)
        return NULL;
    p = v->value.sequence->data;
    end = p + v->value.sequence->length;
    out = ASN1_item_d2i(NULL, &p, v->value.sequence->length, it);
    if (out != NULL && p != end) {
        ASN1_item_free(out, it);
        return NULL;
    }
    return out;
}

/* VAL encoded with IT as an ASN1_TYPE SEQUENCE (for an InfoTypeAndValue). */
static inline ASN1_TYPE *
enr_cmp_itav_make(const void *val, const ASN1_ITEM *it)
{
    ASN1_STRING *s = ASN1_item_pack((void *)val, it, NULL);
    ASN1_TYPE *t = s ? ASN1_TYPE_new() : NULL;

    if (t == NULL) {
        ASN1_STRING_free(s);
        return NULL;
    }
    ASN1_TYPE_set(t, V_ASN1_SEQUENCE, s);
    return t;
}

#endif /* EVERTOKEN_ENROLL_CMP_ASN1_H */
