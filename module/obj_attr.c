/*
 * obj_attr.c — the object layer's attribute rules: the attribute table
 * (every attribute type, its kind, the classes that have it, who may change
 * it), the defaults, the class of an attribute set, lookups, and the checks
 * of a caller's template. Building and storing attribute sets, and the
 * semantics of the object calls on them, are in object.c. docs/objects.md
 * lists every attribute, default and rule.
 */
#include <stdlib.h>
#include <string.h>

#include "et_escape.h"
#include "obj_int.h"

/* ---- The attribute table ------------------------------------------------ */

/*
 * Every attribute type this layer recognises. Types of the standard that no
 * supported class has (DSA/DH parts, OTP, hardware features, ...) are listed
 * with classes 0: giving one is CKR_TEMPLATE_INCONSISTENT on create (2.40
 * section 4.1.1 item 5: "an attribute which is appropriate for ... but not for
 * secret keys"), while a type not listed at all is CKR_ATTRIBUTE_TYPE_INVALID.
 */
static const struct obj_attr_info attr_table[] = {
    {CKA_CLASS, K_ULONG, 0, OC_STORE},
    {CKA_TOKEN, K_BOOL, F_COPY, OC_STORE},
    {CKA_PRIVATE, K_BOOL, F_COPY, OC_STORE},
    {CKA_LABEL, K_BYTES, F_MOD, OC_STORE},
    {CKA_UNIQUE_ID, K_BYTES, F_NOCREATE, 0},
    {CKA_APPLICATION, K_BYTES, 0, OC_DATA},
    {CKA_VALUE, K_BYTES, F_SECRET, OC_DATA | OC_CERT | OC_PRV_EC | OC_PRV_ED | OC_SEC},
    {CKA_OBJECT_ID, K_BYTES, 0, OC_DATA},
    {CKA_CERTIFICATE_TYPE, K_ULONG, 0, OC_CERT},
    {CKA_ISSUER, K_BYTES, 0, OC_CERT},
    {CKA_SERIAL_NUMBER, K_BYTES, 0, OC_CERT},
    {CKA_AC_ISSUER, K_BYTES, 0, 0},
    {CKA_OWNER, K_BYTES, 0, 0},
    {CKA_ATTR_TYPES, K_BYTES, 0, 0},
    {CKA_TRUSTED, K_BOOL, F_SO, OC_CERT | OC_PUB | OC_SEC},
    {CKA_CERTIFICATE_CATEGORY, K_ULONG, F_MOD, OC_CERT},
    {CKA_JAVA_MIDP_SECURITY_DOMAIN, K_ULONG, 0, OC_CERT},
    {CKA_URL, K_BYTES, 0, OC_CERT},
    {CKA_HASH_OF_SUBJECT_PUBLIC_KEY, K_BYTES, 0, OC_CERT},
    {CKA_HASH_OF_ISSUER_PUBLIC_KEY, K_BYTES, 0, OC_CERT},
    {CKA_NAME_HASH_ALGORITHM, K_ULONG, 0, OC_CERT},
    {CKA_CHECK_VALUE, K_BYTES, 0, OC_CERT | OC_SEC},
    {CKA_KEY_TYPE, K_ULONG, 0, OC_KEY},
    {CKA_SUBJECT, K_BYTES, F_MOD, OC_CERT | OC_PUB | OC_PRV},
    {CKA_ID, K_BYTES, F_MOD, OC_CERT | OC_KEY},
    {CKA_SENSITIVE, K_BOOL, F_UP, OC_PRV | OC_SEC},
    {CKA_ENCRYPT, K_BOOL, F_MOD, OC_PUB | OC_SEC},
    {CKA_DECRYPT, K_BOOL, F_MOD, OC_PRV | OC_SEC},
    {CKA_WRAP, K_BOOL, F_MOD, OC_PUB | OC_SEC},
    {CKA_UNWRAP, K_BOOL, F_MOD, OC_PRV | OC_SEC},
    {CKA_SIGN, K_BOOL, F_MOD, OC_PRV | OC_SEC},
    {CKA_SIGN_RECOVER, K_BOOL, F_MOD, OC_PRV},
    {CKA_VERIFY, K_BOOL, F_MOD, OC_PUB | OC_SEC},
    {CKA_VERIFY_RECOVER, K_BOOL, F_MOD, OC_PUB},
    {CKA_DERIVE, K_BOOL, F_MOD, OC_KEY},
    {CKA_START_DATE, K_DATE, F_MOD, OC_CERT | OC_KEY},
    {CKA_END_DATE, K_DATE, F_MOD, OC_CERT | OC_KEY},
    {CKA_MODULUS, K_BIGINT, 0, OC_RSA},
    {CKA_MODULUS_BITS, K_ULONG, 0, OC_PUB_RSA},
    {CKA_PUBLIC_EXPONENT, K_BIGINT, 0, OC_RSA},
    {CKA_PRIVATE_EXPONENT, K_BIGINT, F_SECRET, OC_PRV_RSA},
    {CKA_PRIME_1, K_BIGINT, F_SECRET, OC_PRV_RSA},
    {CKA_PRIME_2, K_BIGINT, F_SECRET, OC_PRV_RSA},
    {CKA_EXPONENT_1, K_BIGINT, F_SECRET, OC_PRV_RSA},
    {CKA_EXPONENT_2, K_BIGINT, F_SECRET, OC_PRV_RSA},
    {CKA_COEFFICIENT, K_BIGINT, F_SECRET, OC_PRV_RSA},
    {CKA_PUBLIC_KEY_INFO, K_BYTES, 0, OC_CERT | OC_PUB | OC_PRV},
    {CKA_PRIME, K_BYTES, 0, 0},
    {CKA_SUBPRIME, K_BYTES, 0, 0},
    {CKA_BASE, K_BYTES, 0, 0},
    {CKA_PRIME_BITS, K_ULONG, 0, 0},
    {CKA_SUB_PRIME_BITS, K_ULONG, 0, 0},
    {CKA_VALUE_BITS, K_ULONG, 0, 0},
    {CKA_VALUE_LEN, K_ULONG, 0, OC_SEC},
    {CKA_EXTRACTABLE, K_BOOL, F_DOWN, OC_PRV | OC_SEC},
    {CKA_LOCAL, K_BOOL, F_NOCREATE, OC_KEY},
    {CKA_NEVER_EXTRACTABLE, K_BOOL, F_NOCREATE, OC_PRV | OC_SEC},
    {CKA_ALWAYS_SENSITIVE, K_BOOL, F_NOCREATE, OC_PRV | OC_SEC},
    {CKA_KEY_GEN_MECHANISM, K_ULONG, F_NOCREATE, OC_KEY},
    {CKA_MODIFIABLE, K_BOOL, F_COPY, OC_STORE},
    {CKA_COPYABLE, K_BOOL, F_DOWN, OC_STORE},
    {CKA_DESTROYABLE, K_BOOL, F_DOWN | F_COPY, OC_STORE},
    {CKA_EC_PARAMS, K_BYTES, 0, OC_ECX},
    {CKA_EC_POINT, K_BYTES, 0, OC_PUB_EC | OC_PUB_ED},
    {CKA_SECONDARY_AUTH, K_BOOL, 0, 0},
    {CKA_AUTH_PIN_FLAGS, K_ULONG, 0, 0},
    {CKA_ALWAYS_AUTHENTICATE, K_BOOL, 0, OC_PRV},
    {CKA_WRAP_WITH_TRUSTED, K_BOOL, F_UP, OC_PRV | OC_SEC},
    {CKA_WRAP_TEMPLATE, K_ARRAY, 0, OC_PUB | OC_SEC},
    {CKA_UNWRAP_TEMPLATE, K_ARRAY, 0, OC_PRV | OC_SEC},
    {CKA_DERIVE_TEMPLATE, K_ARRAY, 0, OC_PRV | OC_SEC},
    {CKA_OTP_FORMAT, K_ULONG, 0, 0},
    {CKA_OTP_LENGTH, K_ULONG, 0, 0},
    {CKA_OTP_TIME_INTERVAL, K_ULONG, 0, 0},
    {CKA_OTP_USER_FRIENDLY_MODE, K_BOOL, 0, 0},
    {CKA_OTP_CHALLENGE_REQUIREMENT, K_ULONG, 0, 0},
    {CKA_OTP_TIME_REQUIREMENT, K_ULONG, 0, 0},
    {CKA_OTP_COUNTER_REQUIREMENT, K_ULONG, 0, 0},
    {CKA_OTP_PIN_REQUIREMENT, K_ULONG, 0, 0},
    {CKA_OTP_USER_IDENTIFIER, K_BYTES, 0, 0},
    {CKA_OTP_SERVICE_IDENTIFIER, K_BYTES, 0, 0},
    {CKA_OTP_SERVICE_LOGO, K_BYTES, 0, 0},
    {CKA_OTP_SERVICE_LOGO_TYPE, K_BYTES, 0, 0},
    {CKA_OTP_COUNTER, K_BYTES, 0, 0},
    {CKA_OTP_TIME, K_BYTES, 0, 0},
    {CKA_GOSTR3410_PARAMS, K_BYTES, 0, 0},
    {CKA_GOSTR3411_PARAMS, K_BYTES, 0, 0},
    {CKA_GOST28147_PARAMS, K_BYTES, 0, 0},
    {CKA_HW_FEATURE_TYPE, K_ULONG, 0, 0},
    {CKA_RESET_ON_INIT, K_BOOL, 0, 0},
    {CKA_HAS_RESET, K_BOOL, 0, 0},
    {CKA_MECHANISM_TYPE, K_ULONG, 0, 0},
    {CKA_REQUIRED_CMS_ATTRIBUTES, K_BYTES, 0, 0},
    {CKA_DEFAULT_CMS_ATTRIBUTES, K_BYTES, 0, 0},
    {CKA_SUPPORTED_CMS_ATTRIBUTES, K_BYTES, 0, 0},
    {CKA_ALLOWED_MECHANISMS, K_MECHS, 0, OC_KEY},
    {CKA_PROFILE_ID, K_ULONG, 0, OC_PROF},
};

const struct obj_attr_info *
attr_info(CK_ATTRIBUTE_TYPE type)
{
    size_t i;

    for (i = 0; i < sizeof(attr_table) / sizeof(attr_table[0]); i++)
        if (attr_table[i].type == type)
            return &attr_table[i];
    return NULL;
}

/*
 * Defaults filled in after the class-specific checks (docs/objects.md).
 * Byte attributes default to empty. CKA_SENSITIVE TRUE / CKA_EXTRACTABLE
 * FALSE and the usage flags are this token's choices (the standard leaves
 * them to the token); CKA_ALWAYS_SENSITIVE / CKA_NEVER_EXTRACTABLE are FALSE
 * because an imported key has been outside a token.
 */
static const struct obj_default {
    unsigned classes;
    CK_ATTRIBUTE_TYPE type;
    unsigned char kind; /* K_BOOL, K_ULONG or K_BYTES (empty) */
    CK_ULONG v;
} defaults[] = {
    {OC_STORE, CKA_TOKEN, K_BOOL, CK_FALSE},
    {OC_PRV | OC_SEC, CKA_PRIVATE, K_BOOL, CK_TRUE},
    {OC_DATA | OC_CERT | OC_PUB, CKA_PRIVATE, K_BOOL, CK_FALSE},
    {OC_STORE, CKA_MODIFIABLE, K_BOOL, CK_TRUE},
    {OC_STORE, CKA_COPYABLE, K_BOOL, CK_TRUE},
    {OC_STORE, CKA_DESTROYABLE, K_BOOL, CK_TRUE},
    {OC_STORE, CKA_LABEL, K_BYTES, 0},
    {OC_DATA, CKA_APPLICATION, K_BYTES, 0},
    {OC_DATA, CKA_OBJECT_ID, K_BYTES, 0},
    {OC_DATA, CKA_VALUE, K_BYTES, 0},
    {OC_CERT | OC_PUB | OC_SEC, CKA_TRUSTED, K_BOOL, CK_FALSE},
    {OC_CERT, CKA_CERTIFICATE_CATEGORY, K_ULONG, 0 /* unspecified */},
    {OC_CERT, CKA_JAVA_MIDP_SECURITY_DOMAIN, K_ULONG, 0 /* unspecified */},
    {OC_CERT, CKA_NAME_HASH_ALGORITHM, K_ULONG, CKM_SHA_1},
    {OC_CERT, CKA_URL, K_BYTES, 0},
    {OC_CERT, CKA_HASH_OF_SUBJECT_PUBLIC_KEY, K_BYTES, 0},
    {OC_CERT, CKA_HASH_OF_ISSUER_PUBLIC_KEY, K_BYTES, 0},
    {OC_CERT | OC_KEY, CKA_ID, K_BYTES, 0},
    {OC_CERT | OC_KEY, CKA_START_DATE, K_BYTES, 0},
    {OC_CERT | OC_KEY, CKA_END_DATE, K_BYTES, 0},
    {OC_PUB | OC_PRV, CKA_SUBJECT, K_BYTES, 0},
    {OC_KEY, CKA_DERIVE, K_BOOL, CK_FALSE},
    {OC_KEY, CKA_LOCAL, K_BOOL, CK_FALSE},
    {OC_KEY, CKA_KEY_GEN_MECHANISM, K_ULONG, CK_UNAVAILABLE_INFORMATION},
    {OC_PUB | OC_SEC, CKA_ENCRYPT, K_BOOL, CK_TRUE},
    {OC_PUB | OC_SEC, CKA_VERIFY, K_BOOL, CK_TRUE},
    {OC_PUB | OC_SEC, CKA_WRAP, K_BOOL, CK_TRUE},
    {OC_PUB, CKA_VERIFY_RECOVER, K_BOOL, CK_TRUE},
    {OC_PRV | OC_SEC, CKA_DECRYPT, K_BOOL, CK_TRUE},
    {OC_PRV | OC_SEC, CKA_SIGN, K_BOOL, CK_TRUE},
    {OC_PRV | OC_SEC, CKA_UNWRAP, K_BOOL, CK_TRUE},
    {OC_PRV, CKA_SIGN_RECOVER, K_BOOL, CK_TRUE},
    {OC_PRV | OC_SEC, CKA_SENSITIVE, K_BOOL, CK_TRUE},
    {OC_PRV | OC_SEC, CKA_EXTRACTABLE, K_BOOL, CK_FALSE},
    {OC_PRV | OC_SEC, CKA_ALWAYS_SENSITIVE, K_BOOL, CK_FALSE},
    {OC_PRV | OC_SEC, CKA_NEVER_EXTRACTABLE, K_BOOL, CK_FALSE},
    {OC_PRV | OC_SEC, CKA_WRAP_WITH_TRUSTED, K_BOOL, CK_FALSE},
    {OC_PRV, CKA_ALWAYS_AUTHENTICATE, K_BOOL, CK_FALSE},
};

/* ---- Lookups ------------------------------------------------------------ */

const ks_attr *
obj_find(const mod_attrs *o, CK_ATTRIBUTE_TYPE type)
{
    size_t lo = 0, hi;

    if (o == NULL)
        return NULL;
    hi = o->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (o->a[mid].type == type)
            return &o->a[mid];
        if (o->a[mid].type < type)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

CK_BBOOL
obj_bool(const mod_attrs *o, CK_ATTRIBUTE_TYPE type, CK_BBOOL dflt)
{
    const ks_attr *a = obj_find(o, type);

    if (a == NULL || a->len != sizeof(CK_BBOOL))
        return dflt;
    return a->value[0] ? CK_TRUE : CK_FALSE;
}

CK_ULONG
obj_ulong(const mod_attrs *o, CK_ATTRIBUTE_TYPE type, CK_ULONG dflt)
{
    const ks_attr *a = obj_find(o, type);
    CK_ULONG v;

    if (a == NULL || a->len != sizeof(CK_ULONG))
        return dflt;
    memcpy(&v, a->value, sizeof(v));
    return v;
}

/* The OC_* bit of an object of class CLS (and key / certificate type), or
 * the CKR code that makes such an object impossible to build. */
CK_RV
class_bit(CK_OBJECT_CLASS cls, int have_sub, CK_ULONG sub, unsigned *out)
{
    *out = 0;
    switch (cls) {
    case CKO_DATA:
        *out = OC_DATA;
        return CKR_OK;
    case CKO_CERTIFICATE:
        if (!have_sub)
            return CKR_TEMPLATE_INCOMPLETE;
        if (sub != CKC_X_509)
            return CKR_ATTRIBUTE_VALUE_INVALID;
        *out = OC_CERT;
        return CKR_OK;
    case CKO_PUBLIC_KEY:
    case CKO_PRIVATE_KEY: {
        int pub = cls == CKO_PUBLIC_KEY;
        if (!have_sub)
            return CKR_TEMPLATE_INCOMPLETE;
        if (sub == CKK_RSA)
            *out = pub ? OC_PUB_RSA : OC_PRV_RSA;
        else if (sub == CKK_EC)
            *out = pub ? OC_PUB_EC : OC_PRV_EC;
        else if (sub == CKK_EC_EDWARDS)
            *out = pub ? OC_PUB_ED : OC_PRV_ED;
        else
            return CKR_ATTRIBUTE_VALUE_INVALID;
        return CKR_OK;
    }
    case CKO_SECRET_KEY:
        if (!have_sub)
            return CKR_TEMPLATE_INCOMPLETE;
        if (sub == CKK_GENERIC_SECRET)
            *out = OC_SEC_GEN;
        else if (sub == CKK_AES)
            *out = OC_SEC_AES;
        else
            return CKR_ATTRIBUTE_VALUE_INVALID;
        return CKR_OK;
    case CKO_PROFILE:
        *out = OC_PROF;
        return CKR_OK;
    default:
        return CKR_ATTRIBUTE_VALUE_INVALID;
    }
}

CK_ATTRIBUTE_TYPE
sub_type_attr(CK_OBJECT_CLASS cls)
{
    return cls == CKO_CERTIFICATE ? CKA_CERTIFICATE_TYPE : CKA_KEY_TYPE;
}

/* OC_* bit of an existing object; 0 if it is of no kind this layer knows. */
unsigned
attrs_class_bit(const mod_attrs *o)
{
    CK_OBJECT_CLASS cls = obj_ulong(o, CKA_CLASS, CK_UNAVAILABLE_INFORMATION);
    CK_ATTRIBUTE_TYPE st = sub_type_attr(cls);
    unsigned cb = 0;

    if (class_bit(cls, obj_find(o, st) != NULL, obj_ulong(o, st, CK_UNAVAILABLE_INFORMATION),
                  &cb) != CKR_OK)
        return 0;
    return cb;
}

/* Is attribute A of O hidden from C_GetAttributeValue (and from matching)?
 * Footnote 7 of the attribute tables: private and secret key material when
 * the key is sensitive or not extractable. */
int
attr_hidden(const mod_attrs *o, CK_ATTRIBUTE_TYPE type)
{
    const struct obj_attr_info *ai = attr_info(type);
    CK_OBJECT_CLASS cls = obj_ulong(o, CKA_CLASS, CK_UNAVAILABLE_INFORMATION);

    if (ai == NULL || !(ai->flags & F_SECRET))
        return 0;
    if (cls != CKO_PRIVATE_KEY && cls != CKO_SECRET_KEY)
        return 0;
    /* Missing flags count as the safe value. */
    return obj_bool(o, CKA_SENSITIVE, CK_TRUE) || !obj_bool(o, CKA_EXTRACTABLE, CK_FALSE);
}

/* Sets that may hold secrets: private and secret keys (by class alone, so
 * that even a malformed stored key lands in locked memory), and anything
 * private. */
int
wants_secure(CK_OBJECT_CLASS cls, CK_BBOOL priv)
{
    return cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY || priv;
}

/* ---- Template checks ---------------------------------------------------- */

CK_RV
obj_template_check(const CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_ULONG i;

    if (n > 0 && t == NULL)
        return CKR_ARGUMENTS_BAD;
    for (i = 0; i < n; i++)
        if (t[i].pValue == NULL && t[i].ulValueLen > 0)
            return CKR_ARGUMENTS_BAD;
    return CKR_OK;
}

/* CK_DATE: "YYYYMMDD" in ASCII digits (2.40 section 3.3); empty = no date. */
static int
date_ok(const unsigned char *v, size_t len)
{
    int y = 0, m = 0, d = 0;
    size_t i;

    if (len == 0)
        return 1;
    if (len != sizeof(CK_DATE))
        return 0;
    for (i = 0; i < 8; i++)
        if (v[i] < '0' || v[i] > '9')
            return 0;
    for (i = 0; i < 4; i++)
        y = y * 10 + (v[i] - '0');
    m = (v[4] - '0') * 10 + (v[5] - '0');
    d = (v[6] - '0') * 10 + (v[7] - '0');
    return y >= 1900 && m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

/* Checks that need nothing but the value itself. */
CK_RV
attr_value_check(const struct obj_attr_info *ai, const unsigned char *v, size_t len)
{
    CK_ULONG u;

    switch (ai->kind) {
    case K_BOOL:
        if (len != sizeof(CK_BBOOL))
            return CKR_ATTRIBUTE_VALUE_INVALID;
        break;
    case K_ULONG:
        if (len != sizeof(CK_ULONG))
            return CKR_ATTRIBUTE_VALUE_INVALID;
        break;
    case K_DATE:
        if (!date_ok(v, len))
            return CKR_ATTRIBUTE_VALUE_INVALID;
        break;
    case K_MECHS:
        if (len % sizeof(CK_MECHANISM_TYPE) != 0)
            return CKR_ATTRIBUTE_VALUE_INVALID;
        break;
    case K_BIGINT:
        if (len == 0)
            return CKR_ATTRIBUTE_VALUE_INVALID;
        break;
    default:
        break;
    }
    switch (ai->type) {
    case CKA_CERTIFICATE_CATEGORY:      /* 0 unspecified .. 3 other entity */
    case CKA_JAVA_MIDP_SECURITY_DOMAIN: /* 0 unspecified .. 3 third party */
        memcpy(&u, v, sizeof(u));
        if (u > 3)
            return CKR_ATTRIBUTE_VALUE_INVALID;
        break;
    case CKA_SUBJECT:
    case CKA_ISSUER:
        if (len > 0 && !obj_der_is_name(v, len))
            return CKR_ATTRIBUTE_VALUE_INVALID;
        break;
    case CKA_OBJECT_ID:
        if (len > 0 && !obj_der_is_oid(v, len))
            return CKR_ATTRIBUTE_VALUE_INVALID;
        break;
    case CKA_LABEL: /* RFC 2279 (UTF-8) string, as token labels */
        if (!et_utf8_valid(v, len))
            return CKR_ATTRIBUTE_VALUE_INVALID;
        break;
    default:
        break;
    }
    return CKR_OK;
}

/* An attribute-array value into G, encoded (obj_tmpl.c). */
static CK_RV
collect_array(obj_build *g, CK_ATTRIBUTE_TYPE type, const void *v, size_t len)
{
    unsigned char *enc = NULL;
    size_t elen = 0;
    const obj_bval *prev;
    CK_RV rv;

    rv = tmpl_array_encode(v, (CK_ULONG)len, &enc, &elen);
    if (rv != CKR_OK)
        return rv;
    prev = ob_get(g, type);
    if (prev != NULL)
        rv = prev->len == elen && (elen == 0 || memcmp(prev->v, enc, elen) == 0)
                 ? CKR_OK
                 : CKR_TEMPLATE_INCONSISTENT;
    else
        rv = ob_put_copy(g, type, enc, elen);
    free(enc);
    return rv;
}

/*
 * Collect template T into G: unknown or unsupported types, malformed values
 * and conflicting duplicates are refused here; booleans are normalised to
 * CK_TRUE/CK_FALSE so stored bytes (and matching) do not depend on which
 * non-zero byte a caller used. A duplicate with the same value is harmless.
 */
CK_RV
tmpl_collect(const CK_ATTRIBUTE *t, CK_ULONG n, obj_build *g)
{
    CK_ULONG i;
    CK_RV rv;

    rv = obj_template_check(t, n);
    if (rv != CKR_OK)
        return rv;
    for (i = 0; i < n; i++) {
        const struct obj_attr_info *ai = attr_info(t[i].type);
        const unsigned char *v = t[i].pValue;
        size_t len = t[i].ulValueLen;
        obj_bval *prev;

        if (ai == NULL)
            return CKR_ATTRIBUTE_TYPE_INVALID;
        if (len > OBJ_VALUE_MAX)
            return CKR_ATTRIBUTE_VALUE_INVALID;
        if (ai->kind == K_ARRAY) {
            rv = collect_array(g, t[i].type, v, len);
            if (rv != CKR_OK)
                return rv;
            continue;
        }
        rv = attr_value_check(ai, v, len);
        if (rv != CKR_OK)
            return rv;
        prev = ob_get(g, t[i].type);
        if (prev != NULL) {
            int same = ai->kind == K_BOOL
                           ? (prev->v[0] != 0) == (v[0] != 0)
                           : prev->len == len && (len == 0 || memcmp(prev->v, v, len) == 0);
            if (!same)
                return CKR_TEMPLATE_INCONSISTENT;
            continue;
        }
        if (ai->kind == K_BOOL)
            rv = ob_put_bool(g, t[i].type, v[0]);
        else
            rv = ob_put_ref(g, t[i].type, v, len);
        if (rv != CKR_OK)
            return rv;
    }
    return CKR_OK;
}

CK_RV
add_defaults(obj_build *b, unsigned cb)
{
    size_t i;
    CK_RV rv = CKR_OK;

    for (i = 0; i < sizeof(defaults) / sizeof(defaults[0]) && rv == CKR_OK; i++) {
        const struct obj_default *d = &defaults[i];
        if (!(d->classes & cb) || ob_get(b, d->type) != NULL)
            continue;
        if (d->kind == K_BOOL)
            rv = ob_put_bool(b, d->type, (CK_BBOOL)d->v);
        else if (d->kind == K_ULONG)
            rv = ob_put_ulong(b, d->type, d->v);
        else
            rv = ob_put_ref(b, d->type, "", 0);
    }
    return rv;
}
