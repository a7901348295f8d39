/*
 * obj_int.h — shared by the object layer's own files (object.c, obj_cert.c,
 * obj_key.c); nothing outside module/object*.c and module/obj_*.c includes it.
 *
 * While an object is being built (create, copy, set) its attributes live in an
 * obj_build: a small unsorted list whose values either point at memory that
 * outlives the build (the caller's template, the source object) or are owned
 * copies of values this layer computed. Only public values are ever computed
 * (DER encodings, booleans, lengths), so owned copies use plain malloc; secret
 * values are only ever borrowed and get copied exactly once, into the final
 * set's locked block (ob_finish).
 */
#ifndef EVERTOKEN_OBJ_INT_H
#define EVERTOKEN_OBJ_INT_H

#include <stddef.h>

#include "object.h"

/* One bit per kind of object this layer knows, so the attribute table can say
 * in one word where each attribute belongs. */
#define OC_DATA    0x0001u
#define OC_CERT    0x0002u /* CKC_X_509 */
#define OC_PUB_RSA 0x0004u
#define OC_PUB_EC  0x0008u
#define OC_PUB_ED  0x0010u
#define OC_PRV_RSA 0x0020u
#define OC_PRV_EC  0x0040u
#define OC_PRV_ED  0x0080u
#define OC_SEC_GEN 0x0100u
#define OC_SEC_AES 0x0200u
#define OC_PROF    0x0400u

#define OC_PUB   (OC_PUB_RSA | OC_PUB_EC | OC_PUB_ED)
#define OC_PRV   (OC_PRV_RSA | OC_PRV_EC | OC_PRV_ED)
#define OC_SEC   (OC_SEC_GEN | OC_SEC_AES)
#define OC_KEY   (OC_PUB | OC_PRV | OC_SEC)
#define OC_RSA   (OC_PUB_RSA | OC_PRV_RSA)
#define OC_ECX   (OC_PUB_EC | OC_PUB_ED | OC_PRV_EC | OC_PRV_ED)
#define OC_STORE (OC_DATA | OC_CERT | OC_KEY | OC_PROF)

/* Cap on one attribute value: far above any real certificate or key, low
 * enough that length arithmetic cannot overflow. */
#define OBJ_VALUE_MAX (64UL * 1024 * 1024)

typedef struct obj_bval {
    CK_ATTRIBUTE_TYPE type;
    size_t len;
    const unsigned char *v; /* borrowed, or == owned */
    unsigned char *owned;   /* malloc'd; never secret */
} obj_bval;

typedef struct obj_build {
    size_t n, cap;
    obj_bval *a;
} obj_build;

void ob_init(obj_build *b);
void ob_clear(obj_build *b);
obj_bval *ob_get(const obj_build *b, CK_ATTRIBUTE_TYPE type);
/* Set TYPE to borrowed bytes (replacing any earlier value). */
CK_RV ob_put_ref(obj_build *b, CK_ATTRIBUTE_TYPE type, const void *v, size_t len);
/* Set TYPE to a private copy of V (public values only). */
CK_RV ob_put_copy(obj_build *b, CK_ATTRIBUTE_TYPE type, const void *v, size_t len);
CK_RV ob_put_bool(obj_build *b, CK_ATTRIBUTE_TYPE type, CK_BBOOL v);
CK_RV ob_put_ulong(obj_build *b, CK_ATTRIBUTE_TYPE type, CK_ULONG v);
/* The value of a boolean / CK_ULONG attribute, or DFLT when absent or of the
 * wrong size. */
CK_BBOOL ob_bool(const obj_build *b, CK_ATTRIBUTE_TYPE type, CK_BBOOL dflt);
CK_ULONG ob_ulong(const obj_build *b, CK_ATTRIBUTE_TYPE type, CK_ULONG dflt);

/*
 * A value this layer derived (from a certificate or key) for TYPE: if the
 * template gave a non-empty value that differs, MISMATCH is returned;
 * otherwise the derived value is stored. V/LEN are copied.
 */
CK_RV ob_put_derived(obj_build *b, CK_ATTRIBUTE_TYPE type, const unsigned char *v, size_t len,
                     CK_RV mismatch);

/* Does the byte string hold exactly one DER value of this kind (OpenSSL
 * decoders, the whole string consumed)? */
int obj_der_is_name(const unsigned char *v, size_t len);
int obj_der_is_oid(const unsigned char *v, size_t len);

/* Class-specific construction, called by obj_from_template after the generic
 * checks. They check the class's own attributes and add derived ones;
 * defaults common to the class are added by object.c afterwards. */
CK_RV obj_cert_build(obj_build *b);                   /* obj_cert.c */
CK_RV obj_key_build(obj_build *b, unsigned classbit); /* obj_key.c */

/* ---- obj_attr.c: the attribute table and template checks ---------------- */

enum obj_kind {
    K_BOOL,   /* CK_BBOOL */
    K_ULONG,  /* CK_ULONG */
    K_BYTES,  /* any bytes, may be empty */
    K_DATE,   /* CK_DATE or empty */
    K_MECHS,  /* array of CK_MECHANISM_TYPE */
    K_BIGINT, /* big-endian integer, not empty */
    K_ARRAY,  /* attribute array (CKA_WRAP_TEMPLATE, ...): obj_tmpl.c */
};

#define F_MOD      0x01u /* C_SetAttributeValue may change it */
#define F_UP       0x02u /* may only change FALSE -> TRUE */
#define F_DOWN     0x04u /* may only change TRUE -> FALSE */
#define F_SO       0x08u /* only the SO may set it TRUE (footnote 10) */
#define F_COPY     0x10u /* C_CopyObject may change it */
#define F_NOCREATE 0x20u /* set by the token only: never in a template */
#define F_SECRET   0x40u /* key material: hidden unless extractable and not sensitive */

struct obj_attr_info {
    CK_ATTRIBUTE_TYPE type;
    unsigned char kind;
    unsigned char flags;
    unsigned short classes; /* OC_* bits of the objects that have it */
};

#ifndef CKA_UNIQUE_ID
#define CKA_UNIQUE_ID 0x00000004UL /* PKCS#11 3.0; token-assigned */
#endif

/* The table entry of TYPE; NULL when this layer does not know it. */
const struct obj_attr_info *attr_info(CK_ATTRIBUTE_TYPE type);
/* The OC_* bit of class CLS with certificate/key type SUB (HAVE_SUB: given),
 * or the CKR code that makes such an object impossible. */
CK_RV class_bit(CK_OBJECT_CLASS cls, int have_sub, CK_ULONG sub, unsigned *out);
/* The type attribute of class CLS: CKA_CERTIFICATE_TYPE or CKA_KEY_TYPE. */
CK_ATTRIBUTE_TYPE sub_type_attr(CK_OBJECT_CLASS cls);
/* The OC_* bit of an attribute set; 0 if of no kind this layer knows. */
unsigned attrs_class_bit(const mod_attrs *o);
/* C_GetAttributeValue must not reveal TYPE of O (key material). */
int attr_hidden(const mod_attrs *o, CK_ATTRIBUTE_TYPE type);
/* Sets of class CLS with CKA_PRIVATE PRIV may hold secrets: locked memory. */
int wants_secure(CK_OBJECT_CLASS cls, CK_BBOOL priv);
/* The checks of a value of attribute AI that need nothing but the value
 * (length of booleans and numbers, dates, DER names and OIDs, UTF-8
 * labels). Not for K_ARRAY. */
CK_RV attr_value_check(const struct obj_attr_info *ai, const unsigned char *v, size_t len);
/* A caller's template into G, each value checked against the table. */
CK_RV tmpl_collect(const CK_ATTRIBUTE *t, CK_ULONG n, obj_build *g);
/* The defaults of class bit CB that B lacks. */
CK_RV add_defaults(obj_build *b, unsigned cb);

/* ---- obj_tmpl.c: attribute-array values (encoding described there) ------ */

/* At most this many attributes, and this many encoded bytes, in one
 * template (far above any real use; far below the keystore's 16 MiB per
 * value). */
#define TMPL_ARRAY_MAX   64
#define TMPL_ARRAY_BYTES (64UL * 1024)

/* A caller's array value (PV, LEN bytes: LEN / sizeof(CK_ATTRIBUTE)
 * entries) checked and encoded into *OUT (malloc'd, *OUTLEN bytes; empty
 * array: *OUTLEN 0). CKR_ATTRIBUTE_VALUE_INVALID for a length that is no
 * whole number of entries, too many, an entry of unknown type, an array, key
 * material, a malformed value, or one type twice with two values. */
CK_RV tmpl_array_encode(const void *pv, CK_ULONG len, unsigned char **out, size_t *outlen);
/* The next entry of encoded V from *OFF (values point into V); 0 at the end
 * or on malformed bytes. */
int tmpl_array_next(const unsigned char *v, size_t len, size_t *off, CK_ATTRIBUTE *a);
/* Entries of encoded V; 0 when empty or malformed. */
size_t tmpl_array_count(const unsigned char *v, size_t len);
/* C_GetAttributeValue of array attribute A (NULL: empty) into T. */
CK_RV tmpl_array_get(const ks_attr *a, CK_ATTRIBUTE *t);
/* Is A (NULL: empty) the encoding of the caller's array PV/LEN? */
int tmpl_array_eq(const ks_attr *a, const void *pv, CK_ULONG len);

#endif /* EVERTOKEN_OBJ_INT_H */
