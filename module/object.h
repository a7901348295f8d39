/*
 * object.h — PKCS#11 object attribute rules (module/object.c).
 *
 * This layer knows what a valid object of each class looks like: required
 * and default attributes, which attributes are read-only, sensitive, or may
 * only change one way, and how key material and certificates are checked
 * (through OpenSSL). It knows nothing of sessions, login state, handles or
 * storage; module core (entry/slot/session) decides *whether* a caller may
 * touch an object, this layer decides *what* the object may become.
 *
 * Objects are attribute sets (mod_attrs): an array of ks_attr sorted by type
 * with owned copies of the values. Sets that may hold secret values (private
 * and secret keys) keep their values in sodium_malloc'd memory and are wiped
 * when freed.
 *
 * For every function returning a new set in *OUT: on failure *OUT is NULL and
 * nothing was allocated; a NULL policy means "no SO session". The rules per
 * class (defaults, read-only and one-way attributes, what is validated) are
 * in docs/objects.md. The layer's own files share module/obj_int.h.
 */
#ifndef EVERTOKEN_OBJECT_H
#define EVERTOKEN_OBJECT_H

#include "p11.h"
#include "keystore.h"

typedef struct mod_attrs {
    size_t n;
    ks_attr *a; /* sorted by type, unique */
    int secure; /* values live in locked memory and are wiped on free */
    int placed; /* obj_from_ks_in: the caller owns the memory; obj_free leaves it */
} mod_attrs;

/* What the caller is allowed to do, decided by module core. */
typedef struct obj_policy {
    CK_BBOOL so;   /* SO session: may set CKA_TRUSTED = TRUE */
    CK_BBOOL user; /* user logged in */
} obj_policy;

/* NULL template pointer with count > 0, or an attribute with pValue NULL and
 * ulValueLen > 0: CKR_ARGUMENTS_BAD. Used by every entry point taking a template. */
CK_RV obj_template_check(const CK_ATTRIBUTE *t, CK_ULONG n);

/*
 * C_CreateObject: build a complete object from a template. Supports CKO_DATA,
 * CKO_CERTIFICATE (CKC_X_509; CKA_VALUE parsed, CKA_SUBJECT/ISSUER/
 * SERIAL_NUMBER filled from it when absent and checked when present),
 * CKO_PUBLIC_KEY and CKO_PRIVATE_KEY for CKK_RSA, CKK_EC, CKK_EC_EDWARDS (key
 * material checked with OpenSSL; public attributes derived), and CKO_SECRET_KEY
 * (CKK_GENERIC_SECRET, CKK_AES). Fills defaults (CKA_TOKEN FALSE, CKA_PRIVATE
 * TRUE for private/secret keys and FALSE otherwise, CKA_MODIFIABLE/
 * CKA_COPYABLE/CKA_DESTROYABLE TRUE, CKA_SENSITIVE TRUE and CKA_EXTRACTABLE
 * FALSE for private/secret keys, CKA_LOCAL FALSE, CKA_ALWAYS_SENSITIVE/
 * CKA_NEVER_EXTRACTABLE FALSE for imported keys, usage flags, ...).
 * Errors: CKR_TEMPLATE_INCOMPLETE, CKR_TEMPLATE_INCONSISTENT,
 * CKR_ATTRIBUTE_TYPE_INVALID, CKR_ATTRIBUTE_VALUE_INVALID,
 * CKR_ATTRIBUTE_READ_ONLY (e.g. CKA_LOCAL given), CKR_HOST_MEMORY.
 * Also CKR_CURVE_NOT_SUPPORTED for well-formed CKA_EC_PARAMS naming a curve
 * other than P-256/P-384/P-521 (CKK_EC) or Ed25519/Ed448 (CKK_EC_EDWARDS).
 * Private and secret token keys must be CKA_PRIVATE TRUE
 * (TEMPLATE_INCONSISTENT otherwise): key material is only stored sealed.
 * Session keys (CKA_TOKEN FALSE) may be CKA_PRIVATE FALSE.
 */
CK_RV obj_from_template(const CK_ATTRIBUTE *t, CK_ULONG n, const obj_policy *p, mod_attrs **out);

/*
 * Keys made by a mechanism (C_GenerateKeyPair, C_DeriveKey). ORIGIN says
 * where the material came from: GEN_MECH is the key-generation mechanism
 * (CKA_LOCAL TRUE, CKA_KEY_GEN_MECHANISM = GEN_MECH) or
 * CK_UNAVAILABLE_INFORMATION for a derived key (CKA_LOCAL FALSE); a derived
 * key's CKA_ALWAYS_SENSITIVE / CKA_NEVER_EXTRACTABLE also need its base key's.
 */
typedef struct obj_origin {
    CK_MECHANISM_TYPE gen_mech;
    CK_BBOOL base_always_sensitive;
    CK_BBOOL base_never_extractable;
} obj_origin;

/*
 * The template checks of obj_from_generated alone, for a key of class CLS and
 * key type KT (so that a mechanism refuses a bad template before the costly
 * generation). Errors as obj_from_generated's template errors.
 */
CK_RV obj_gen_check(const CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt,
                    const obj_policy *p);

/*
 * A key object from the caller's template T plus the mechanism's MATERIAL
 * (which names CKA_CLASS and CKA_KEY_TYPE, and holds the key's values in the
 * C_CreateObject form: RSA n, e, d and CRT parts; EC/EdDSA CKA_EC_PARAMS with
 * CKA_EC_POINT or CKA_VALUE; secret CKA_VALUE and CKA_VALUE_LEN; optionally
 * CKA_ID). MATERIAL is only borrowed; secret values are copied once, into the
 * result's locked block. The template is checked as in obj_from_template,
 * plus:
 *  - token-assigned attributes (CKA_LOCAL, ...) and values the mechanism
 *    computes (CKA_MODULUS, CKA_PRIVATE_EXPONENT, CRT parts, CKA_VALUE,
 *    CKA_EC_POINT): CKR_ATTRIBUTE_READ_ONLY (footnotes 2 and 4);
 *  - CKA_CLASS, CKA_KEY_TYPE, CKA_MODULUS_BITS, CKA_PUBLIC_EXPONENT,
 *    CKA_EC_PARAMS, CKA_VALUE_LEN may be given, but must agree with the
 *    material (big integers as numbers): CKR_TEMPLATE_INCONSISTENT.
 * The material then goes through the class checks of C_CreateObject (RSA
 * pairwise check, points on the curve, CKA_PUBLIC_KEY_INFO derived, secret
 * check value), defaults are added, and the token sets CKA_LOCAL,
 * CKA_KEY_GEN_MECHANISM and, for private and secret keys,
 * CKA_ALWAYS_SENSITIVE = CKA_SENSITIVE and CKA_NEVER_EXTRACTABLE =
 * !CKA_EXTRACTABLE (derived keys: and-ed with the base key's).
 * CKR_ARGUMENTS_BAD if MATERIAL lacks the class or key type; CKR_GENERAL_ERROR
 * if it holds attributes the class does not have.
 */
CK_RV obj_from_generated(const CK_ATTRIBUTE *t, CK_ULONG n, const CK_ATTRIBUTE *mat, CK_ULONG nmat,
                         const obj_origin *origin, const obj_policy *p, mod_attrs **out);

/* The curve named by a DER CKA_EC_PARAMS value, as C_CreateObject accepts it:
 * EDWARDS 0 for CKK_EC (P-256/P-384/P-521 OIDs), 1 for CKK_EC_EDWARDS
 * (Ed25519/Ed448 OIDs or PrintableString names). *NID is OpenSSL's NID.
 * CKR_CURVE_NOT_SUPPORTED for another well-formed value,
 * CKR_ATTRIBUTE_VALUE_INVALID for bytes that are no DER value. */
CK_RV obj_ec_curve(const unsigned char *v, size_t len, int edwards, int *nid);

/* C_CopyObject: a copy of SRC with the template applied (only attributes that
 * C_SetAttributeValue could change, plus CKA_TOKEN and CKA_PRIVATE;
 * CKR_ACTION_PROHIBITED if CKA_COPYABLE is FALSE). */
CK_RV obj_copy(const mod_attrs *src, const CK_ATTRIBUTE *t, CK_ULONG n, const obj_policy *p,
               mod_attrs **out);

/* C_SetAttributeValue: a new set = CUR with the template applied. CUR is not
 * changed (the caller stores the new set, then swaps). CKR_ACTION_PROHIBITED
 * if CKA_MODIFIABLE is FALSE; CKR_ATTRIBUTE_READ_ONLY for attributes that
 * never change or only change one way (CKA_SENSITIVE FALSE->TRUE,
 * CKA_EXTRACTABLE TRUE->FALSE). */
CK_RV obj_set(const mod_attrs *cur, const CK_ATTRIBUTE *t, CK_ULONG n, const obj_policy *p,
              mod_attrs **out);

/*
 * C_GetAttributeValue on one object, with the full PKCS#11 2.40 section 5.7
 * rules: every attribute is processed; an unknown type gets
 * ulValueLen = CK_UNAVAILABLE_INFORMATION and CKR_ATTRIBUTE_TYPE_INVALID, a
 * sensitive one (private key material when CKA_SENSITIVE is TRUE or
 * CKA_EXTRACTABLE is FALSE) CKR_ATTRIBUTE_SENSITIVE, a too-small buffer
 * CKR_BUFFER_TOO_SMALL; pValue NULL asks for the length. When several apply,
 * any one of those codes may be returned; the other entries are still filled.
 * CKA_WRAP_TEMPLATE/UNWRAP_TEMPLATE/DERIVE_TEMPLATE follow 3.0 section
 * 5.7.5 item 5: pValue NULL gives count * sizeof(CK_ATTRIBUTE); with room,
 * each element of the caller's array gets its type and its value (or
 * length, or CK_UNAVAILABLE_INFORMATION and CKR_BUFFER_TOO_SMALL). A key
 * without one has the empty array.
 */
CK_RV obj_get(const mod_attrs *o, CK_ATTRIBUTE *t, CK_ULONG n);

/* Does O match every attribute of the template (exact bytes; array
 * attributes as their encoding)? n == 0 matches. */
int obj_match(const mod_attrs *o, const CK_ATTRIBUTE *t, CK_ULONG n);

/* C_GetObjectSize: an approximation of the stored size in bytes. */
CK_ULONG obj_size(const mod_attrs *o);

/* Lookups. obj_find returns NULL when absent. */
const ks_attr *obj_find(const mod_attrs *o, CK_ATTRIBUTE_TYPE type);
CK_BBOOL obj_bool(const mod_attrs *o, CK_ATTRIBUTE_TYPE type, CK_BBOOL dflt);
CK_ULONG obj_ulong(const mod_attrs *o, CK_ATTRIBUTE_TYPE type, CK_ULONG dflt);

/* Copy a stored keystore object into a new set (secure memory when private). */
CK_RV obj_from_ks(const ks_object *ko, mod_attrs **out);
/* Bytes obj_from_ks_in needs for KO (a multiple of 16), or 0 when KO's set
 * belongs in locked memory (then use obj_from_ks). */
size_t obj_from_ks_len(const ks_object *ko);
/* obj_from_ks into MEM (obj_from_ks_len(KO) bytes, 16-byte aligned), which
 * the caller owns and frees (obj_free on the result frees nothing). */
CK_RV obj_from_ks_in(const ks_object *ko, void *mem, mod_attrs **out);

/* Deep copy. */
CK_RV obj_dup(const mod_attrs *src, mod_attrs **out);

/* The token's CKO_PROFILE object: CKA_CLASS=CKO_PROFILE,
 * CKA_PROFILE_ID=CKP_PUBLIC_CERTIFICATES_TOKEN, CKA_TOKEN=TRUE,
 * CKA_PRIVATE=FALSE, CKA_MODIFIABLE=FALSE, CKA_DESTROYABLE=FALSE. */
CK_RV obj_profile(mod_attrs **out);

/*
 * Key types for EVP_PKEY_CTX_new_from_name, named by their OIDs on purpose:
 * in a host process that made an ENGINE the default for RSA or EC (openssl
 * -engine, curl --engine: ENGINE_set_default(ALL)), OpenSSL 3.0 maps the
 * names "RSA"/"EC" to the legacy NID and hands the context to that engine,
 * which cannot build keys from parameters (EVP_PKEY_fromdata fails) and may
 * route our own operations back into a PKCS#11 module. An OID has no legacy
 * NID mapping, so the context always comes from the provider.
 */
#define OBJ_KT_RSA     "1.2.840.113549.1.1.1"
#define OBJ_KT_EC      "1.2.840.10045.2.1"
#define OBJ_KT_ED25519 "1.3.101.112"
#define OBJ_KT_ED448   "1.3.101.113"

/* The OpenSSL key of a public or private key object (RSA, EC, EdDSA),
 * built from its stored attributes (module/obj_pkey.c): a public key from
 * CKA_PUBLIC_KEY_INFO, a private key with its secret parts (RSA CRT when
 * stored). The caller owns *OUT (EVP_PKEY_free). CKR_KEY_TYPE_INCONSISTENT
 * for other classes; CKR_GENERAL_ERROR if stored material no longer decodes. */
typedef struct evp_pkey_st EVP_PKEY;
CK_RV obj_pkey(const mod_attrs *o, EVP_PKEY **out);

/* ---- Wrap, unwrap and derive templates (obj_tmpl.c) ---------------------- */

/* Does key O match the stored template TMPL (a CKA_WRAP_TEMPLATE value;
 * NULL or empty: any key)? Each attribute must be present on O with the
 * same bytes and not hidden (obj_match); a template that does not parse
 * matches nothing. */
int obj_tmpl_match(const mod_attrs *o, const ks_attr *tmpl);

/* The caller's template T merged with the stored template TV/TLEN (a
 * CKA_UNWRAP_TEMPLATE or CKA_DERIVE_TEMPLATE value): *OUT (malloc'd, free
 * it; its values point into T and TV) holds T and every attribute of TV
 * that T lacks. An attribute in both with different values:
 * CKR_TEMPLATE_INCONSISTENT (3.0 section 5.18.3/5.18.5). */
CK_RV obj_tmpl_merge(const CK_ATTRIBUTE *t, CK_ULONG n, const unsigned char *tv, size_t tlen,
                     CK_ATTRIBUTE **out, CK_ULONG *nout);

/* Free (wiping secure values). NULL is a no-op. */
void obj_free(mod_attrs *o);

#endif /* EVERTOKEN_OBJECT_H */
