/*
 * token_int.h — what the token files of evertoken-enroll share (private to
 * them; the rest of the helper sees enr_int.h's enr_token_* functions only).
 *
 * token.c          token access: load the module, find the token (RFC 7512
 *                  URI), open a session, log in, close; the vendor
 *                  interface check that chooses the rollover strategy
 * token_obj.c      objects: listing, attributes, certificates and public
 *                  keys read back, token-backed EVP_PKEYs (libp11), finding
 *                  the credential, key generation
 * rollover.c       the rollover entry points and the standard-call strategy
 *                  (docs/enrollment.md "Rollover on a standard token")
 * rollover_native.c evertoken's native rollover through its vendor
 *                  interface (docs/rollover.md)
 */
#ifndef EVERTOKEN_ENROLL_TOKEN_INT_H
#define EVERTOKEN_ENROLL_TOKEN_INT_H

#include <libp11.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "enr_int.h"
#include <evertoken/evertoken_ext.h>

/* A credential's objects: ID and label L; pending: ID||FF and "L (pending)";
 * retired: ID||FE and "L (retired EPOCH)". */
#define PENDING_SUFFIX " (pending)"
#define RETIRED_FMT    "%s (retired %lld)"
#define TAG_PENDING    0xFF
#define TAG_RETIRED    0xFE

struct enr_token {
    PKCS11_CTX *ctx;
    PKCS11_SLOT *slots;
    unsigned int nslots;
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE sh;
    int have_session;
    char label[33];
    char serial[17];
    char model[17];
    char manufacturer[33];
    int steps; /* mutation steps done (crash-test hook) */
    int crash_at;
    /* evertoken's vendor interface (1.1 or later) when the token is one of
     * its slots: the native rollover is used (docs/rollover.md). */
    const ET_FUNCTION_LIST *et;
};

/* One object as listed: handle, class, CKA_ID, CKA_LABEL (never NULL). */
typedef struct obj {
    CK_OBJECT_HANDLE h;
    CK_OBJECT_CLASS cls;
    unsigned char id[66];
    size_t id_len;
    char *label;
} obj;

typedef struct objlist {
    obj *v;
    size_t n;
} objlist;

/* ---- token.c ------------------------------------------------------------ */

/* A CKR code as text for messages (a static buffer for unknown codes). */
const char *tok_ckr(CK_RV rv);
/* Count one token mutation; the crash test (EVERTOKEN_ENROLL_CRASH_AT=N)
 * kills the process right after the Nth. */
void tok_step_done(enr_token *t, const char *what);
/* Native: the module's rollover clock follows the helper's (fake) clock. */
void tok_sync_clock(const enr_token *t);

/* ---- token_obj.c -------------------------------------------------------- */

void tok_objlist_free(objlist *l);
/* All objects of class CLS (or any class if CLS == -1). */
enr_rc tok_list_objects(enr_token *t, long cls, objlist *out);
/* Is O under the credential's ID (TAG 0) or its pending/retired ID (TAG_*)? */
int tok_id_is(const obj *o, const enr_profile *p, int tag);
/* "L (pending)", malloc'd; NULL when out of memory. */
char *tok_pending_label(const enr_profile *p);
/* One mutation each (counted by tok_step_done); WHAT names it in messages. */
enr_rc tok_set_id(enr_token *t, CK_OBJECT_HANDLE h, const unsigned char *id, size_t n,
                  const char *what);
enr_rc tok_set_label(enr_token *t, CK_OBJECT_HANDLE h, const char *label, const char *what);
enr_rc tok_destroy(enr_token *t, CK_OBJECT_HANDLE h, const char *what);
/* The public key of key object H as an EVP_PKEY (NULL if unreadable). */
EVP_PKEY *tok_read_pubkey(enr_token *t, CK_OBJECT_HANDLE h);
/* Same public key (DER SubjectPublicKeyInfo)? */
int tok_same_pubkey(EVP_PKEY *a, EVP_PKEY *b);
/* Token-backed EVP_PKEY (libp11) of the private key whose public key is PUB. */
EVP_PKEY *tok_libp11_key(enr_token *t, EVP_PKEY *pub);
/* The credential's private key, pending (PENDING) or current, as a
 * token-backed EVP_PKEY; *PKEY NULL with ENR_OK when there is none. */
enr_rc tok_key_where(enr_token *t, const enr_profile *p, int pending, EVP_PKEY **pkey);

/* ---- rollover_native.c -------------------------------------------------- */

enr_rc tok_native_discard(enr_token *t, const enr_profile *p);
enr_rc tok_native_pending_key(enr_token *t, const enr_profile *p, EVP_PKEY **pkey);
enr_rc tok_native_grace(enr_token *t, const enr_profile *p);
enr_rc tok_native_commit(enr_token *t, const enr_profile *p, CK_ATTRIBUTE *tmpl, CK_ULONG n);

#endif
