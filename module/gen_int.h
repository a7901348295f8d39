/*
 * gen_int.h — shared by keygen.c (C_GenerateKeyPair, C_GenerateKey),
 * wrap.c (C_WrapKey, C_UnwrapKey) and derive.c (C_DeriveKey): the prepare (locked) -> compute
 * (unlocked) -> store (relocked) sequence around a computation that makes new key objects (gen.c),
 * the caller's template helpers, and the material (struct mat) a mechanism hands to
 * obj_from_generated.
 */
#ifndef EVERTOKEN_GEN_INT_H
#define EVERTOKEN_GEN_INT_H

#include <openssl/params.h>

#include "mod_int.h"
#include "store.h"

/* ---- gen.c: the sequence (described there) ------------------------------- */

struct gen {
    CK_SESSION_HANDLE hs;
    struct mod_token *busy; /* marked busy by the prepare step, until store/abandon */
};

/* Session HS exists (global lock taken and released); *POL what its login
 * allows the object layer. */
CK_RV session_policy(CK_SESSION_HANDLE hs, obj_policy *pol);
/* Prepare, called with the global lock held: mark S's token busy in G. */
void gen_mark_inlock(struct gen *g, struct mod_session *s);
/* Prepare (takes and releases the global lock): session G->hs may store
 * objects with these templates' CKA_TOKEN/CKA_PRIVATE (PRIV1/PRIV2 the
 * defaults; T2 may be NULL); marks its token busy. */
CK_RV gen_prepare(struct gen *g, const CK_ATTRIBUTE *t1, CK_ULONG n1, CK_BBOOL priv1,
                  const CK_ATTRIBUTE *t2, CK_ULONG n2, CK_BBOOL priv2);
/* Store (takes and releases the global lock): A, and B when not NULL (both
 * or neither), always taken; pending for credential CRED when not NULL. */
CK_RV gen_store(struct gen *g, mod_attrs *a, mod_attrs *b, const unsigned char *cred,
                size_t cred_len, CK_OBJECT_HANDLE *ha, CK_OBJECT_HANDLE *hb);
/* The computation failed: end the busy mark prepare set (if any). */
void gen_abandon(struct gen *g);

/* ---- gen.c: the caller's templates -------------------------------------- */

/* First entry of TYPE in a template, and its CK_BBOOL / CK_ULONG value
 * (DFLT when absent or of another length). */
const CK_ATTRIBUTE *tfind(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type);
CK_BBOOL tbool(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_BBOOL dflt);
CK_ULONG tulong(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_ULONG dflt);

/* Is MECH allowed by the key's CKA_ALLOWED_MECHANISMS (absent or empty:
 * any)? */
int mech_allowed(const mod_attrs *o, CK_MECHANISM_TYPE mech);

/* ---- gen.c: material --------------------------------------------------- */

#define MAT_MAX 16

struct mat {
    CK_ATTRIBUTE a[MAT_MAX];
    unsigned char *buf[MAT_MAX]; /* owned values */
    int secret[MAT_MAX];         /* sodium_malloc'd (else OPENSSL_malloc'd) */
    CK_ULONG n;
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE kt;
};

void mat_init(struct mat *m, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt);
/* Wipes and frees every owned value. */
void mat_free(struct mat *m);
/* A new value of LEN bytes for TYPE (SECRET: in locked memory); NULL
 * without memory. */
unsigned char *mat_add(struct mat *m, CK_ATTRIBUTE_TYPE type, size_t len, int secret);
CK_RV mat_copy(struct mat *m, CK_ATTRIBUTE_TYPE type, const void *v, size_t len, int secret);
const CK_ATTRIBUTE *mat_get(const struct mat *m, CK_ATTRIBUTE_TYPE type);
/* Big integer NAME of PARAMS (EVP_PKEY_todata) as TYPE: minimal big-endian
 * bytes, or left-padded to PAD bytes when PAD > 0 (SECRET: in locked
 * memory). */
CK_RV mat_bn(struct mat *m, CK_ATTRIBUTE_TYPE type, const OSSL_PARAM *params, const char *name,
             size_t pad, int secret);
/* TYPE as a DER OCTET STRING of RAW. */
CK_RV mat_octet_string(struct mat *m, CK_ATTRIBUTE_TYPE type, const unsigned char *raw, size_t len);

/* ---- keygen.c: shared with wrap.c --------------------------------------- */

/* RESULT if session HS exists, else the session lookup's code (global lock
 * taken and released). */
CK_RV gen_session_rv(CK_SESSION_HANDLE hs, CK_RV result);

/* What the public template asks the mechanism for. */
struct kp_req {
    CK_MECHANISM_TYPE mech;
    CK_KEY_TYPE kt;
    CK_ULONG bits;              /* RSA */
    int nid;                    /* EC / EdDSA curve */
    const CK_ATTRIBUTE *params; /* CKA_EC_PARAMS as given */
};

/* The material of both objects of key pair PK (R says its type and curve);
 * ID: the SHA-1 default CKA_ID (the hash of the public value clients use,
 * see docs/objects.md). */
CK_RV kp_material(const struct kp_req *r, EVP_PKEY *pk, struct mat *pub, struct mat *prv,
                  unsigned char id[20]);

#endif /* EVERTOKEN_GEN_INT_H */
