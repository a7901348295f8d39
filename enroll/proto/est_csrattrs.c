/*
 * est_csrattrs.c — EST /csrattrs (RFC 7030 section 4.5, with the
 * clarifications of RFC 9908): the answer's CsrAttrs decoded with an
 * OpenSSL ASN.1 template, what it asks of the CSR (key type, curve or RSA
 * size, signature hash, keyUsage/extKeyUsage extensions, challengePassword)
 * taken where a client can honour it and the rest logged as ignored; and
 * the new key's parameters planned from it (est_int.h). The exchanges:
 * est.c.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/asn1t.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "enr_int.h"
#include "enr_parse.h"
#include "est_int.h"

/* CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID
 * AttrOrOID ::= CHOICE { oid OBJECT IDENTIFIER, attribute Attribute } */
typedef struct est_attr_or_oid {
    int type; /* 0: oid, 1: attribute */
    union {
        ASN1_OBJECT *oid;
        X509_ATTRIBUTE *attribute;
    } d;
} EST_ATTR_OR_OID;

/* clang-format off */
ASN1_CHOICE(EST_ATTR_OR_OID) = {
    ASN1_SIMPLE(EST_ATTR_OR_OID, d.oid, ASN1_OBJECT),
    ASN1_SIMPLE(EST_ATTR_OR_OID, d.attribute, X509_ATTRIBUTE),
} static_ASN1_CHOICE_END(EST_ATTR_OR_OID)

ASN1_ITEM_TEMPLATE(EST_CSRATTRS) =
    ASN1_EX_TEMPLATE_TYPE(ASN1_TFLG_SEQUENCE_OF, 0, CsrAttrs, EST_ATTR_OR_OID)
static_ASN1_ITEM_TEMPLATE_END(EST_CSRATTRS)

DEFINE_STACK_OF(EST_ATTR_OR_OID)
void enr_est_attrs_clear(enr_est_attrs *a);
/* clang-format on */

void
enr_est_attrs_clear(enr_est_attrs *a)
{
    sk_X509_EXTENSION_pop_free(a->exts, X509_EXTENSION_free);
    memset(a, 0, sizeof(*a));
}

static const char *
oid_name(const ASN1_OBJECT *o, char *buf, int n)
{
    if (OBJ_obj2txt(buf, n, o, 0) <= 0)
        snprintf(buf, (size_t)n, "(unreadable OID)");
    return buf;
}

static void
ignored(enr_est_attrs *a, const char *what, const char *name, const char *why)
{
    a->ignored++;
    enr_info("EST csrattrs: ignored: %s %s (%s)", what, name, why);
}

/* The curves this client generates (profile names). */
static const char *
curve_name(int nid)
{
    switch (nid) {
    case NID_X9_62_prime256v1:
        return "P-256";
    case NID_secp384r1:
        return "P-384";
    case NID_secp521r1:
        return "P-521";
    }
    return NULL;
}

/* A signature algorithm or hash OID: the CSR's signature. 0: not one. */
static int
take_sigalg(enr_est_attrs *a, int nid, const char *name)
{
    static const struct {
        int nid, key, bits;
    } algs[] = {
        {NID_ecdsa_with_SHA256, ENR_KEY_EC, 256},
        {NID_ecdsa_with_SHA384, ENR_KEY_EC, 384},
        {NID_ecdsa_with_SHA512, ENR_KEY_EC, 512},
        {NID_sha256WithRSAEncryption, ENR_KEY_RSA, 256},
        {NID_sha384WithRSAEncryption, ENR_KEY_RSA, 384},
        {NID_sha512WithRSAEncryption, ENR_KEY_RSA, 512},
        {NID_sha256, 0, 256},
        {NID_sha384, 0, 384},
        {NID_sha512, 0, 512},
    };

    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        if (algs[i].nid != nid)
            continue;
        if (a->md != NULL) {
            ignored(a, "signature algorithm", name, "another one came first");
            return 1;
        }
        a->md = algs[i].bits == 256   ? EVP_sha256()
                : algs[i].bits == 384 ? EVP_sha384()
                                      : EVP_sha512();
        if (algs[i].key != 0)
            a->sig_key = algs[i].key;
        return 1;
    }
    return 0;
}

static enr_rc
take_oid(enr_est_attrs *a, const ASN1_OBJECT *o)
{
    int nid = OBJ_obj2nid(o);
    char name[96];

    oid_name(o, name, sizeof(name));
    if (take_sigalg(a, nid, name))
        return ENR_OK;
    switch (nid) {
    case NID_pkcs9_challengePassword:
        a->linking = 1;
        break;
    case NID_X9_62_id_ecPublicKey:
        a->ec = 1;
        break;
    case NID_rsaEncryption:
        a->rsa = 1;
        break;
    default:
        ignored(a, "OID", name, "not an algorithm or attribute this client fills in");
    }
    return ENR_OK;
}

/* One extension of an extensionRequest attribute. */
static enr_rc
take_ext(enr_est_attrs *a, X509_EXTENSION *x)
{
    const ASN1_OBJECT *o = X509_EXTENSION_get_object(x);
    int nid = OBJ_obj2nid(o);
    char name[96];
    void *dec;

    oid_name(o, name, sizeof(name));
    if (nid == NID_subject_alt_name) {
        ignored(a, "extension", name,
                "the CSR carries the profile's subjectAltName, on renewal the certificate's");
        return ENR_OK;
    }
    if (nid != NID_key_usage && nid != NID_ext_key_usage) {
        ignored(a, "extension", name, "only keyUsage and extKeyUsage are taken");
        return ENR_OK;
    }
    if (ASN1_STRING_length(X509_EXTENSION_get_data(x)) == 0) {
        ignored(a, "extension", name, "no value given, and the client has none to fill in");
        return ENR_OK;
    }
    dec = X509V3_EXT_d2i(x);
    if (dec == NULL) {
        enr_err("EST csrattrs: the %s extension in extensionRequest does not decode", name);
        return ENR_E_REJECTED;
    }
    if (nid == NID_key_usage)
        ASN1_BIT_STRING_free(dec);
    else
        EXTENDED_KEY_USAGE_free(dec);
    for (int i = 0; i < sk_X509_EXTENSION_num(a->exts); i++)
        if (OBJ_cmp(X509_EXTENSION_get_object(sk_X509_EXTENSION_value(a->exts, i)), o) == 0) {
            ignored(a, "extension", name, "given twice; the first is taken");
            return ENR_OK;
        }
    if (a->exts == NULL)
        a->exts = sk_X509_EXTENSION_new_null();
    dec = X509_EXTENSION_dup(x);
    if (a->exts == NULL || dec == NULL || !sk_X509_EXTENSION_push(a->exts, dec)) {
        X509_EXTENSION_free(dec);
        return ENR_E_FAIL;
    }
    enr_info("EST csrattrs: the CSR asks for the %s the server requests", name);
    return ENR_OK;
}

static enr_rc
take_attr(enr_est_attrs *a, X509_ATTRIBUTE *at)
{
    const ASN1_OBJECT *o = X509_ATTRIBUTE_get0_object(at);
    int nid = OBJ_obj2nid(o), n = X509_ATTRIBUTE_count(at);
    char name[96], v[96];
    enr_rc rc = ENR_OK;

    oid_name(o, name, sizeof(name));
    switch (nid) {
    case NID_X9_62_id_ecPublicKey:
        /* RFC 7030 section 4.5.2's example: the curve as the value. */
        a->ec = 1;
        for (int i = 0; i < n; i++) {
            ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(at, i);
            if (t->type != V_ASN1_OBJECT) {
                enr_err("EST csrattrs: the id-ecPublicKey attribute's value is not a curve OBJECT "
                        "IDENTIFIER (ASN.1 type %d)",
                        t->type);
                return ENR_E_REJECTED;
            }
            if (a->curve_nid == 0 && curve_name(OBJ_obj2nid(t->value.object)) != NULL)
                a->curve_nid = OBJ_obj2nid(t->value.object);
        }
        if (n > 0 && a->curve_nid == 0) {
            enr_err("EST csrattrs: the server requires the elliptic curve %s, which "
                    "evertoken-enroll does not generate (P-256, P-384, P-521)",
                    oid_name(X509_ATTRIBUTE_get0_type(at, 0)->value.object, v, sizeof(v)));
            return ENR_E_REJECTED;
        }
        return ENR_OK;
    case NID_rsaEncryption:
        /* RFC 9908: the modulus size as an INTEGER value. */
        a->rsa = 1;
        for (int i = 0; i < n && a->rsa_bits == 0; i++) {
            ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(at, i);
            long bits = t->type == V_ASN1_INTEGER ? ASN1_INTEGER_get(t->value.integer) : -1;
            if (bits <= 0 || bits > 65536) {
                enr_err("EST csrattrs: the rsaEncryption attribute's value is not a key size "
                        "(INTEGER)");
                return ENR_E_REJECTED;
            }
            a->rsa_bits = (int)bits;
        }
        return ENR_OK;
    case NID_ext_req:
        for (int i = 0; i < n && rc == ENR_OK; i++) {
            ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(at, i);
            STACK_OF(X509_EXTENSION) * exts;
            if (t->type == V_ASN1_OBJECT) {
                /* RFC 7030's example style (an extension type, no value). */
                ignored(a, "extensionRequest for", oid_name(t->value.object, v, sizeof(v)),
                        OBJ_obj2nid(t->value.object) == NID_subject_alt_name
                            ? "the CSR carries the profile's subjectAltName"
                            : "no value given, and the client has none to fill in");
                continue;
            }
            exts = t->type == V_ASN1_SEQUENCE
                       ? ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(X509_EXTENSIONS), t)
                       : NULL;
            if (exts == NULL) {
                enr_err("EST csrattrs: the extensionRequest attribute's value is not a SEQUENCE "
                        "OF Extension (RFC 9908)");
                return ENR_E_REJECTED;
            }
            for (int k = 0; k < sk_X509_EXTENSION_num(exts) && rc == ENR_OK; k++)
                rc = take_ext(a, sk_X509_EXTENSION_value(exts, k));
            sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
        }
        return rc;
    case NID_pkcs9_challengePassword:
        a->linking = 1;
        return ENR_OK;
    }
    ignored(a, "attribute", name, "not one this client fills in");
    return ENR_OK;
}

enr_rc
enr_est_parse_csrattrs(const char *ctype, const unsigned char *body, size_t n, enr_est_attrs *out)
{
    unsigned char *der = NULL;
    const unsigned char *pp;
    int len = 0;
    size_t blank = 0;
    STACK_OF(EST_ATTR_OR_OID) *sk = NULL;
    enr_rc rc;

    memset(out, 0, sizeof(*out));
    while (blank < n && (body[blank] == '\0' || strchr(" \t\r\n", body[blank]) != NULL))
        blank++;
    if (blank == n)
        return ENR_OK; /* an empty answer: no attribute */
    if (ctype == NULL || strncasecmp(ctype, "application/csrattrs", 20) != 0) {
        enr_err("EST csrattrs: the answer is not application/csrattrs (%s)",
                ctype ? ctype : "no content type");
        return ENR_E_REJECTED;
    }
    rc = est_unbase64("csrattrs", body, n, &der, &len);
    if (rc != ENR_OK)
        return rc;
    pp = der;
    sk = (STACK_OF(EST_ATTR_OR_OID) *)ASN1_item_d2i(NULL, &pp, len, ASN1_ITEM_rptr(EST_CSRATTRS));
    if (sk == NULL || pp != der + len) {
        enr_err("EST csrattrs: the answer is not a DER CsrAttrs (a SEQUENCE OF OBJECT IDENTIFIER "
                "or Attribute, RFC 7030 section 4.5.2): %d bytes%s",
                len, sk != NULL ? " with data after it" : " that do not decode as one");
        rc = ENR_E_REJECTED;
        goto done;
    }
    for (int i = 0; i < sk_EST_ATTR_OR_OID_num(sk) && rc == ENR_OK; i++) {
        EST_ATTR_OR_OID *e = sk_EST_ATTR_OR_OID_value(sk, i);
        rc = e->type == 0 ? take_oid(out, e->d.oid) : take_attr(out, e->d.attribute);
    }
done:
    ERR_clear_error();
    if (rc != ENR_OK)
        enr_est_attrs_clear(out);
    ASN1_item_free((ASN1_VALUE *)sk, ASN1_ITEM_rptr(EST_CSRATTRS));
    free(der);
    return rc;
}

/* The named curve of an EC key (NID), NID_undef else. */
static int
key_curve(EVP_PKEY *k)
{
    X509_PUBKEY *xp = NULL;
    X509_ALGOR *alg = NULL;
    const ASN1_OBJECT *ao;
    const void *pv = NULL;
    int ptype = 0, nid = NID_undef;

    if (X509_PUBKEY_set(&xp, k) == 1 && X509_PUBKEY_get0_param(NULL, NULL, NULL, &alg, xp) == 1) {
        X509_ALGOR_get0(&ao, &ptype, &pv, alg);
        if (ptype == V_ASN1_OBJECT)
            nid = OBJ_obj2nid(pv);
    }
    X509_PUBKEY_free(xp);
    ERR_clear_error();
    return nid;
}

/* "RSA 2048" or "EC P-384" into BUF. */
static const char *
key_text(int type, int bits, const char *curve, char *buf, size_t n)
{
    if (type == ENR_KEY_EC)
        snprintf(buf, n, "EC %s", curve ? curve : "(any curve)");
    else if (bits > 0)
        snprintf(buf, n, "RSA %d-bit", bits);
    else
        snprintf(buf, n, "RSA");
    return buf;
}

/* The key type the answer asks for (ENR_KEY_*), 0: none; the profile's type
 * when the server accepts either. */
static int
asked_type(const enr_profile *p, const enr_est_attrs *a)
{
    if (a->ec && a->rsa)
        return p->key_type;
    if (a->ec)
        return ENR_KEY_EC;
    if (a->rsa)
        return ENR_KEY_RSA;
    return a->sig_key;
}

/* KP (a copy of P): the new key's parameters, as /csrattrs asks when the
 * profile leaves them open; ENR_E_CONFIG when the profile fixes others. */
enr_rc
est_key_plan(const enr_profile *p, const enr_est_attrs *a, enr_profile *kp)
{
    static char p256[] = "P-256", p384[] = "P-384", p521[] = "P-521";
    int type = asked_type(p, a);
    char want[64], have[64];
    const char *cn;

    if (type == 0)
        return ENR_OK;
    key_text(type, type == ENR_KEY_RSA ? a->rsa_bits : 0,
             type == ENR_KEY_EC ? curve_name(a->curve_nid) : NULL, want, sizeof(want));
    if (type != p->key_type) {
        if (p->key_set != 0) {
            enr_err("profile %s: the EST server requires an %s key (/csrattrs) but the profile "
                    "fixes an %s key; change the profile's key_type, key_size or curve (or remove "
                    "them to let the server choose)",
                    p->name, want,
                    key_text(p->key_type, (p->key_set & ENR_KEYSET_SIZE) ? p->key_bits : 0,
                             p->curve, have, sizeof(have)));
            return ENR_E_CONFIG;
        }
        kp->key_type = type;
        kp->curve = type == ENR_KEY_EC ? p256 : NULL;
        kp->key_bits = 2048;
    }
    if (type == ENR_KEY_EC && (cn = curve_name(a->curve_nid)) != NULL && strcmp(kp->curve, cn)) {
        if (p->key_set & ENR_KEYSET_CURVE) {
            enr_err("profile %s: the EST server requires an %s key (/csrattrs) but the profile "
                    "sets curve = %s; change or remove the profile's curve",
                    p->name, want, p->curve);
            return ENR_E_CONFIG;
        }
        kp->curve = !strcmp(cn, "P-384") ? p384 : !strcmp(cn, "P-521") ? p521 : p256;
    }
    if (type == ENR_KEY_RSA && a->rsa_bits != 0 && a->rsa_bits != kp->key_bits) {
        if (a->rsa_bits < 2048 || a->rsa_bits > 8192 || a->rsa_bits % 8 != 0) {
            enr_err("profile %s: the EST server requires a %d-bit RSA key (/csrattrs), which "
                    "evertoken-enroll does not generate (2048..8192, a multiple of 8)",
                    p->name, a->rsa_bits);
            return ENR_E_REJECTED;
        }
        if (p->key_set & ENR_KEYSET_SIZE) {
            enr_err("profile %s: the EST server requires an %s key (/csrattrs) but the profile "
                    "sets key_size = %d; change or remove the profile's key_size",
                    p->name, want, p->key_bits);
            return ENR_E_CONFIG;
        }
        kp->key_bits = a->rsa_bits;
    }
    if (kp->key_type != p->key_type || kp->key_bits != p->key_bits ||
        (kp->curve != p->curve &&
         (kp->curve == NULL || p->curve == NULL || strcmp(kp->curve, p->curve))))
        enr_info("profile %s: the EST server asks for an %s key (/csrattrs); a new key will be %s",
                 p->name, want,
                 key_text(kp->key_type, kp->key_bits, kp->curve, have, sizeof(have)));
    return ENR_OK;
}

/* KEY is what /csrattrs asks (as planned in KP); else a message. */
int
est_key_meets(const enr_profile *p, const enr_est_attrs *a, const enr_profile *kp, EVP_PKEY *key,
              const char *which)
{
    int type = asked_type(p, a);
    int kt = EVP_PKEY_get_base_id(key) == EVP_PKEY_EC ? ENR_KEY_EC : ENR_KEY_RSA;
    const char *cn = kt == ENR_KEY_EC ? curve_name(key_curve(key)) : NULL;
    char want[64], have[64];
    int ok;

    if (type == 0)
        return 1;
    ok = kt == type;
    if (ok && type == ENR_KEY_EC && a->curve_nid != 0)
        ok = cn != NULL && !strcmp(cn, kp->curve);
    if (ok && type == ENR_KEY_RSA && a->rsa_bits != 0)
        ok = EVP_PKEY_get_bits(key) == a->rsa_bits;
    if (!ok)
        enr_err("profile %s: the %s key is %s, but the EST server requires an %s key (/csrattrs)%s",
                p->name, which,
                key_text(kt, EVP_PKEY_get_bits(key), cn ? cn : "(other curve)", have, sizeof(have)),
                key_text(type, type == ENR_KEY_RSA ? a->rsa_bits : 0,
                         type == ENR_KEY_EC ? curve_name(a->curve_nid) : NULL, want, sizeof(want)),
                !strcmp(which, "kept") ? "; set rekey = true to renew with a new key" : "");
    return ok;
}
