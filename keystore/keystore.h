/*
 * keystore.h — the evertoken keystore: one encrypted SQLite file per token.
 *
 * This header is the keystore's contract; docs/keystore-format.md describes
 * the bytes on disk. No PKCS#11 type appears here: attributes are plain
 * (type, bytes) pairs whose type numbers happen to be CKA_* values.
 *
 * Key hierarchy
 *   PIN --Argon2id(salt, opslimit, memlimit)--> wrap key --XChaCha20-Poly1305--> TMK
 *   The token master key (TMK, 32 random bytes) is stored twice, wrapped under
 *   the SO PIN and under the user PIN. From the TMK, libsodium's KDF derives
 *   the record key (seals private objects) and the MAC key (authenticates the
 *   public attributes of every object).
 *
 * Threads and processes
 *   Every function may be called from several threads on one ks_token: a
 *   mutex inside the handle serialises database access, and the Argon2id KDF
 *   runs with that mutex released. Several processes may open one file: every
 *   write is one SQLite transaction; a busy database is waited on for a bounded
 *   time (KS_BUSY_TIMEOUT_MS) and then reported as KS_E_BUSY, never as
 *   corruption.
 *
 * Secrets
 *   The TMK and the derived keys live only in sodium_malloc'd (locked,
 *   guarded) memory and are wiped by ks_logout()/ks_close(). Decrypted private
 *   attribute values handed to callbacks are wiped after the callback returns.
 *   PIN buffers are never copied except into locked memory that is wiped.
 *
 * Error reporting
 *   Functions return ks_rv. ks_last_error() gives a one-line human message
 *   for the most recent failure on a handle, prefixed with the source file and
 *   line where the error began (for debug logs; never contains secrets).
 */
#ifndef EVERTOKEN_KEYSTORE_H
#define EVERTOKEN_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Schema this code writes; older ones are migrated on open (1 -> 2 added the
 * settings table, 2 -> 3 the rollover state columns of objects, ..., 6 -> 7
 * the indexes of the rollover state; docs/keystore-format.md). */
#define KS_SCHEMA_VERSION  7
#define KS_LABEL_MAX       32  /* bytes, UTF-8, no padding */
#define KS_SERIAL_LEN      16  /* hex characters */
#define KS_TOKEN_ID_LEN    16  /* random bytes, fixed at creation */
#define KS_PIN_MIN         4   /* bytes */
#define KS_PIN_MAX         256 /* bytes */
#define KS_MAX_ATTEMPTS    10  /* default failed-PIN limit */
#define KS_BUSY_TIMEOUT_MS 10000

#if defined(__GNUC__)
#define KS_WUR __attribute__((warn_unused_result))
#else
#define KS_WUR
#endif

typedef enum ks_rv {
    KS_OK = 0,
    KS_E_ARGS,                /* caller bug: NULL, bad length, bad handle state */
    KS_E_NOMEM,               /* allocation (or locked allocation) failed */
    KS_E_IO,                  /* the file or its directory cannot be created/opened/read/written */
    KS_E_PERM,                /* file or directory is group/world writable or not ours */
    KS_E_CORRUPT,             /* not a keystore, or its structure is damaged */
    KS_E_VERSION,             /* schema is newer than this code understands */
    KS_E_TAMPERED,            /* an authenticated record failed its check */
    KS_E_PIN_INCORRECT,       /* wrong PIN; the failure was counted */
    KS_E_PIN_LOCKED,          /* failed-attempt limit reached */
    KS_E_PIN_LEN,             /* PIN shorter than KS_PIN_MIN or longer than KS_PIN_MAX */
    KS_E_PIN_NOT_INITIALIZED, /* the user PIN was never set (after create/reinit) */
    KS_E_NOT_LOGGED_IN,       /* the operation needs the TMK (ks_login first) */
    KS_E_NOT_FOUND,           /* no such object / setting */
    KS_E_BUSY,                /* another process held the database past the busy timeout */
    KS_E_EXISTS,              /* ks_create: a file is already there */
    KS_E_CRYPTO,              /* a primitive failed (should not happen) */
    KS_E_FULL,                /* the file system is full: nothing was written */
} ks_rv;

/* A short constant description of a code ("wrong PIN", ...). */
const char *ks_strerror(ks_rv rv);

typedef struct ks_token ks_token; /* opaque: an open keystore file */

/* Argon2id cost, stored per token. Zero fields (or a NULL pointer) mean the
 * default, libsodium's crypto_pwhash_OPSLIMIT_INTERACTIVE /
 * MEMLIMIT_INTERACTIVE. Explicit values down to crypto_pwhash_*_MIN are
 * accepted (test suites use them to stay fast); lower ones are KS_E_ARGS.
 * ks_kdf_from_env() reads EVERTOKEN_KDF ("fast" = the minimum, "moderate",
 * "sensitive", or "OPS:MEMBYTES") for programs that create tokens. */
typedef struct ks_kdf_params {
    uint64_t opslimit;
    uint64_t memlimit; /* bytes */
} ks_kdf_params;

/* Fill *OUT from EVERTOKEN_KDF; all zero (defaults) when unset. KS_E_ARGS for
 * a malformed value. */
KS_WUR ks_rv ks_kdf_from_env(ks_kdf_params *out);

typedef enum ks_who { KS_SO = 0, KS_USER = 1 } ks_who;

/* ---- Token lifecycle ---------------------------------------------------- */

/*
 * Create a new token file at PATH (which must not exist; its directory is
 * created 0700 if missing, the file 0600). Generates token id, serial and TMK;
 * wraps the TMK under SO_PIN. The user PIN is not initialised. KDF may be
 * NULL for defaults. On success *OUT is an open handle with nobody logged in.
 */
KS_WUR ks_rv ks_create(const char *path, const char *label, const unsigned char *so_pin,
                       size_t so_pin_len, const ks_kdf_params *kdf, ks_token **out);

/*
 * Open an existing token file. Refuses (KS_E_PERM) a file or directory that is
 * group/world writable or owned by another uid. Checks the schema version
 * (KS_E_VERSION if newer; older ones are migrated in one transaction) and the
 * structure (KS_E_CORRUPT, with ks_open_error() telling what was wrong).
 */
KS_WUR ks_rv ks_open(const char *path, ks_token **out);

/* Why the last ks_open/ks_create in this thread failed (no handle exists yet). */
const char *ks_open_error(void);

/* Close the handle, wiping every secret it held. NULL is a no-op. */
void ks_close(ks_token *tok);

/*
 * Re-initialise (PKCS#11 C_InitToken on an initialised token): verify SO_PIN
 * (a failure is counted like any PIN failure), then in one transaction destroy
 * every object, generate a new TMK wrapped under the same SO PIN, set LABEL,
 * and leave the user PIN uninitialised. Logs the handle out.
 */
KS_WUR ks_rv ks_reinit(ks_token *tok, const unsigned char *so_pin, size_t so_pin_len,
                       const char *label);

/* Path the handle was opened with (owned by the handle). */
const char *ks_path(const ks_token *tok);

/* ---- Token information -------------------------------------------------- */

typedef struct ks_info {
    char label[KS_LABEL_MAX + 1];   /* NUL-terminated, unpadded */
    char serial[KS_SERIAL_LEN + 1]; /* NUL-terminated hex */
    unsigned char token_id[KS_TOKEN_ID_LEN];
    int user_pin_initialized;
    unsigned user_fail_count; /* consecutive failed user PIN attempts */
    unsigned so_fail_count;
    unsigned max_attempts; /* a counter reaching this locks that PIN */
    ks_kdf_params kdf;
    uint32_t schema_version;
    uint64_t object_count; /* token objects stored, public and private */
} ks_info;

/* Current information, read from the file (so counters changed by another
 * process are seen). */
KS_WUR ks_rv ks_get_info(ks_token *tok, ks_info *out);

/* What ks_get_info_ex fills in beyond the metadata and PIN state. */
#define KS_INFO_OBJECT_COUNT 0x1u /* object_count: reads the whole objects table, O(N) */

/* ks_get_info with a choice: without KS_INFO_OBJECT_COUNT, object_count is
 * 0 and the call costs the same at any number of objects (the module's
 * C_GetTokenInfo, which every application calls at start). ks_get_info is
 * ks_get_info_ex(tok, out, KS_INFO_OBJECT_COUNT). */
KS_WUR ks_rv ks_get_info_ex(ks_token *tok, ks_info *out, unsigned flags);

/* ---- PINs and login ----------------------------------------------------- */

/*
 * Verify PIN for WHO and, on success, unwrap the TMK into locked memory held
 * by the handle (replacing any TMK already held). A failed attempt is counted
 * persistently *before* the KDF runs, so killing the process cannot erase it;
 * success resets that counter. The attempt is marked in flight until its
 * outcome is recorded; an attempt whose process died before that (its
 * outcome never told) is given back at the next check of that PIN
 * (docs/keystore-format.md, "PIN counters and lockout"). Returns
 * KS_E_PIN_LOCKED without trying once the counter reached max_attempts,
 * KS_E_PIN_NOT_INITIALIZED for KS_USER before ks_init_user_pin.
 */
KS_WUR ks_rv ks_login(ks_token *tok, ks_who who, const unsigned char *pin, size_t pin_len);

/* Forget the TMK and derived keys (wiped). Safe when not logged in. */
void ks_logout(ks_token *tok);

/* Non-zero while the handle holds the TMK. */
int ks_logged_in(const ks_token *tok);

/*
 * Set the user PIN (PKCS#11 C_InitPIN): needs the TMK (normally from an SO
 * login). Wraps the TMK under PIN and resets the user failure counter, which
 * also unlocks a locked user PIN.
 */
KS_WUR ks_rv ks_init_user_pin(ks_token *tok, const unsigned char *pin, size_t pin_len);

/*
 * Change WHO's PIN (PKCS#11 C_SetPIN): verify OLD (counted like a login),
 * then rewrap the TMK under NEW in one transaction. Objects are not touched.
 */
KS_WUR ks_rv ks_set_pin(ks_token *tok, ks_who who, const unsigned char *old_pin, size_t old_len,
                        const unsigned char *new_pin, size_t new_len);

/* Set the failed-attempt limit (1..100). Needs the TMK. */
KS_WUR ks_rv ks_set_max_attempts(ks_token *tok, unsigned max_attempts);

/* ---- Objects ------------------------------------------------------------ */

/* One attribute: TYPE is a CKA_* number, VALUE/LEN its bytes (LEN may be 0). */
typedef struct ks_attr {
    uint64_t type;
    size_t len;
    unsigned char *value;
} ks_attr;

/* Rollover state of an object (docs/rollover.md). Active objects are the
 * token's ordinary ones; a pending one is a key pair generated for a
 * credential renewal, not yet in use; a retired one was replaced by a
 * rollover and is kept for the grace period (never handed out by
 * ks_load_objects / ks_object_get). The state, retired_at and the
 * credential link are bound into the object's AEAD associated data / MAC. */
typedef enum ks_state { KS_ACTIVE = 0, KS_PENDING = 1, KS_RETIRED = 2 } ks_state;

#define KS_CRED_MAX 255 /* bytes of a credential link (the credential's CKA_ID) */

/* Attribute types the keystore reads (rollover, lookup columns; PKCS#11
 * numbers). */
#define KS_ATTR_CLASS     0x000 /* CKA_CLASS */
#define KS_ATTR_LABEL     0x003 /* CKA_LABEL */
#define KS_ATTR_CERT_TYPE 0x080 /* CKA_CERTIFICATE_TYPE */
#define KS_ATTR_ISSUER    0x081 /* CKA_ISSUER */
#define KS_ATTR_SERIAL    0x082 /* CKA_SERIAL_NUMBER */
#define KS_ATTR_KEY_TYPE  0x100 /* CKA_KEY_TYPE */
#define KS_ATTR_SUBJECT   0x101 /* CKA_SUBJECT */
#define KS_ATTR_ID        0x102 /* CKA_ID */

/* A stored object as handed to a caller. */
typedef struct ks_object {
    int64_t id;       /* stable, never reused within a file; > 0 */
    int is_private;   /* sealed under the TMK */
    uint32_t version; /* increases with every update */
    size_t nattrs;
    const ks_attr *attrs;      /* sorted by type, no duplicates */
    ks_state state;            /* KS_ACTIVE or KS_PENDING (KS_RETIRED only from ks_load_changes) */
    const unsigned char *cred; /* credential link (NULL if none), valid during the callback */
    size_t cred_len;
    int64_t seq; /* change sequence number of its last write (ks_load_changes) */
} ks_object;

/*
 * Called once per object by ks_load_objects. OBJ and its values are valid only
 * during the call (private values are wiped right after). Return 0 to go on,
 * non-zero to stop the walk (ks_load_objects then returns KS_OK).
 * The callback runs with the handle's mutex held: it must copy what it needs
 * and must not call any ks_* function on the same handle.
 */
typedef int (*ks_object_cb)(void *ctx, const ks_object *obj);

/*
 * Walk every object the caller may see: public objects always; private ones
 * only while logged in. While logged in, the MAC over each public object is
 * checked and every private record is decrypted and authenticated; a record
 * that fails is skipped (not passed to CB) and counted in *TAMPERED (may be
 * NULL), and ks_last_error() names it. Objects are visited in id order.
 */
KS_WUR ks_rv ks_load_objects(ks_token *tok, ks_object_cb cb, void *ctx, unsigned *tampered);

/*
 * Incremental reload. Every write of an object gives it a new change
 * sequence number, and every destroyed object leaves a tombstone with one;
 * numbers grow in commit order. ks_load_changes hands out, from one read
 * snapshot, what changed after SINCE: CB for each object now visible as
 * ks_load_objects would (same checks), and for each object a rollover
 * retired since (state KS_RETIRED: no longer to be found, but a caller that
 * already held it may keep it for work under way until it is purged, which
 * leaves a tombstone); GONE for each id that is no longer visible
 * (destroyed or purged, private while logged out, or failing its check:
 * counted in *TAMPERED). *UPTO gets the highest number seen (SINCE
 * if nothing changed): pass it as SINCE next time. A caller that loaded
 * everything starts from the highest ks_object.seq its ks_load_objects
 * walk saw (a lower bound is safe: changes are handed out again, never
 * missed). CB returning non-zero aborts with KS_E_ARGS (reload in full),
 * and so does a token restored (ks_restore) since this handle's last
 * ks_load_objects: the numbers of the restored file are not those of the
 * file it replaced.
 */
typedef void (*ks_gone_cb)(void *ctx, int64_t id);

KS_WUR ks_rv ks_load_changes(ks_token *tok, int64_t since, ks_object_cb cb, ks_gone_cb gone,
                             void *ctx, int64_t *upto, unsigned *tampered);

/*
 * Search (lookup columns, docs/keystore-format.md): hand to CB each object
 * whose attribute TYPE is exactly VALUE (LEN bytes), in id order, with the
 * visibility and checks of ks_load_objects. TYPE is one of the indexed
 * attributes: KS_ATTR_ID, KS_ATTR_LABEL, KS_ATTR_CLASS, KS_ATTR_KEY_TYPE,
 * KS_ATTR_CERT_TYPE, KS_ATTR_SUBJECT (anything else: KS_E_ARGS). Other
 * records are not read, except those whose lookup columns are not filled
 * yet (read, checked, handed out only if they match). Private objects are
 * found while logged in, through a keyed hash. CB returning non-zero stops
 * the search. *TAMPERED (may be NULL): records read that failed their
 * check (skipped).
 */
KS_WUR ks_rv ks_find(ks_token *tok, uint64_t type, const void *value, size_t len, ks_object_cb cb,
                     void *ctx, unsigned *tampered);

/* ks_find for the objects whose CKA_ISSUER is ISSUER and CKA_SERIAL_NUMBER
 * is SERIAL (both present), through one lookup column over the pair. */
/* How many objects a ks_find of TYPE = VALUE would read at most: the
 * candidates the lookup column's index holds (unverified hints; rows whose
 * columns are not filled yet not counted). For the broad columns only:
 * CKA_CLASS, CKA_KEY_TYPE, CKA_CERTIFICATE_TYPE (KS_E_ARGS otherwise).
 * Lets a caller choose between caching a result and streaming it. */
KS_WUR ks_rv ks_find_count(ks_token *tok, uint64_t type, const void *value, size_t len,
                           uint64_t *n);
KS_WUR ks_rv ks_find_issuer_serial(ks_token *tok, const void *issuer, size_t ilen,
                                   const void *serial, size_t slen, ks_object_cb cb, void *ctx,
                                   unsigned *tampered);

/* The pending objects of credential CRED (their credential link is CRED),
 * as a commit of its rollover would activate them: one indexed read of the
 * rows linked to CRED, each checked as every read is; private ones only
 * while logged in. CB and *TAMPERED as for ks_find. */
KS_WUR ks_rv ks_find_pending(ks_token *tok, const unsigned char *cred, size_t cred_len,
                             ks_object_cb cb, void *ctx, unsigned *tampered);

/* The highest change sequence number now: what a cache that starts empty
 * and reads objects one by one (ks_find, ks_object_get) passes to
 * ks_load_changes later to learn what others changed since. Also records
 * the restore epoch, as ks_load_objects does. */
KS_WUR ks_rv ks_change_seq(ks_token *tok, int64_t *seq);

/* Fetch one object by id (same visibility and checks as ks_load_objects);
 * KS_E_NOT_FOUND if absent or invisible, KS_E_TAMPERED if it fails its check. */
KS_WUR ks_rv ks_object_get(ks_token *tok, int64_t id, ks_object_cb cb, void *ctx);
/* The same; with KS_GET_RETIRED in FLAGS a retired object (not purged yet)
 * is handed out too, with state KS_RETIRED: for a caller that may still
 * use a key a rollover retired (the module's key of an operation). */
#define KS_GET_RETIRED 1u
KS_WUR ks_rv ks_object_get_flags(ks_token *tok, int64_t id, unsigned flags, ks_object_cb cb,
                                 void *ctx);

/*
 * Store a new object. Needs the TMK (so that every stored record is sealed or
 * MAC'd). ATTRS need not be sorted; duplicate types are KS_E_ARGS. A private
 * object is sealed with XChaCha20-Poly1305 under the record key, with token
 * id, object id and version as associated data. Returns its id in *OUT_ID.
 */
KS_WUR ks_rv ks_object_create(ks_token *tok, int is_private, const ks_attr *attrs, size_t n,
                              int64_t *out_id);

/* Replace an object's whole attribute set (its privacy stays). Needs the TMK.
 * The version increases and the record is resealed/re-MAC'd in one transaction. */
KS_WUR ks_rv ks_object_update(ks_token *tok, int64_t id, const ks_attr *attrs, size_t n);

/* Destroy an object; with secure_delete its bytes are overwritten in the file.
 * Needs the TMK. KS_E_NOT_FOUND if absent. */
KS_WUR ks_rv ks_object_destroy(ks_token *tok, int64_t id);

/* ---- Credential rollover (docs/rollover.md) ----------------------------- */

/*
 * A credential is the set of active objects whose CKA_ID equals CRED
 * (key pair and certificate). Times are seconds since the epoch and always
 * passed in by the caller (injectable clock); nothing here reads the clock.
 */

/* Like ks_object_create, but the object is KS_PENDING for credential CRED
 * (1..KS_CRED_MAX bytes; the credential need not exist yet). */
KS_WUR ks_rv ks_object_create_pending(ks_token *tok, int is_private, const ks_attr *attrs, size_t n,
                                      const unsigned char *cred, size_t cred_len, int64_t *out_id);

/* State of object ID, any state (retired included); RETIRED_AT (may be
 * NULL) is 0 unless retired. No login needed (the state is not secret; it
 * is authenticated when the object is read while logged in). */
KS_WUR ks_rv ks_object_state(ks_token *tok, int64_t id, ks_state *state, int64_t *retired_at);

/* An object that is not active, as ks_list_inactive reports it. */
typedef struct ks_inactive {
    int64_t id;
    ks_state state;     /* KS_PENDING or KS_RETIRED */
    int64_t retired_at; /* 0 unless retired */
    int is_private;
    const unsigned char *cred; /* credential link (NULL if none) */
    size_t cred_len;
    size_t nattrs;        /* 0 and attrs NULL: a private record, not logged in */
    const ks_attr *attrs; /* public records while logged out: not MAC-checked */
} ks_inactive;
typedef int (*ks_inactive_cb)(void *ctx, const ks_inactive *obj);

/* Every pending and retired record (for `evertoken info`), in one read
 * snapshot, oldest first. Public records always come with their attributes;
 * private ones only when logged in (else attrs NULL: the state, retired_at
 * and credential link are stored in the clear). Records failing their check
 * are skipped and counted in *TAMPERED (may be NULL). CB as for
 * ks_load_objects (non-zero stops the walk; no ks_* calls inside). */
KS_WUR ks_rv ks_list_inactive(ks_token *tok, ks_inactive_cb cb, void *ctx, unsigned *tampered);

/*
 * Commit the rollover of credential CRED, in ONE transaction (needs the TMK):
 *   - every active object whose CKA_ID is CRED becomes KS_RETIRED with
 *     retired_at = NOW and link CRED;
 *   - every pending object linked to CRED becomes active, with CKA_ID = CRED
 *     and the CKA_LABEL of the retired object of the same CKA_CLASS (else of
 *     any retired object; unchanged if none had a label), linked to CRED;
 *   - a new active public object (the certificate) is created from
 *     CERT_ATTRS with CKA_ID and CKA_LABEL set the same way; its id in
 *     *OUT_CERT_ID (may be NULL).
 * KS_E_NOT_FOUND (nothing changes) if there is no pending object for CRED.
 * Any record that fails its check is KS_E_TAMPERED and nothing changes.
 * Checking that the certificate matches the pending key is the caller's job.
 */
KS_WUR ks_rv ks_rollover_commit(ks_token *tok, const unsigned char *cred, size_t cred_len,
                                const ks_attr *cert_attrs, size_t n_cert, int64_t now,
                                int64_t *out_cert_id);

/*
 * Undo the last committed rollover of CRED while its old objects are still
 * retained, in one transaction (needs the TMK): the active objects that
 * rollover activated (linked to CRED) are destroyed, and the objects it
 * retired (the retired ones linked to CRED with the latest retired_at)
 * become active again (link cleared). KS_E_NOT_FOUND (nothing changes) if
 * there is no such pair of sets (never committed, already rolled back, or
 * the old objects were purged).
 */
KS_WUR ks_rv ks_rollover_rollback(ks_token *tok, const unsigned char *cred, size_t cred_len);

/* Destroy every pending object linked to CRED (an abandoned renewal), in
 * one transaction; *N (may be NULL) gets how many. Needs the TMK. */
KS_WUR ks_rv ks_rollover_discard(ks_token *tok, const unsigned char *cred, size_t cred_len,
                                 unsigned *n);

/* Destroy (secure_delete) every retired object with retired_at + GRACE <=
 * NOW, in one transaction; *N (may be NULL) gets how many. Needs the TMK;
 * only records whose state authenticates are destroyed (a forged "retired"
 * flag cannot make it delete an active key). GRACE >= 0 seconds. */
KS_WUR ks_rv ks_purge_retired(ks_token *tok, int64_t now, int64_t grace, unsigned *n);

/* ---- Change detection --------------------------------------------------- */

/*
 * Set *CHANGED to non-zero if another connection (another process, or another
 * handle in this one) committed a write since the previous call on this handle
 * (or since open). Writes through this handle do not count. On an unchanged
 * token a comparison of SQLite's wal-index header in shared memory (no
 * system call); after any commit one PRAGMA data_version query, which is the
 * authority (docs/keystore-format.md, "Change detection"). Cheap enough to
 * call before every lookup.
 */
KS_WUR ks_rv ks_changed(ks_token *tok, int *changed);

/* ---- Settings ------------------------------------------------------------ */

/* Small per-token settings (e.g. "login_cache"), stored in clear but covered
 * by the token MAC when written while logged in. Values are NUL-terminated
 * text. ks_get_setting returns a malloc'd copy in *OUT (free() it) or
 * KS_E_NOT_FOUND. */
KS_WUR ks_rv ks_get_setting(ks_token *tok, const char *key, char **out);
/* Keys starting with "ks." are the keystore's own (KS_E_ARGS here). */
KS_WUR ks_rv ks_set_setting(ks_token *tok, const char *key, const char *value);
/* ks_get_setting, also telling in *AUTHENTICATED whether the value is
 * vouched for: non-zero only when the handle is logged in and the value
 * carries a MAC that verified. A value written without a login, or read
 * before one, is returned with *AUTHENTICATED = 0 (a bad MAC is still
 * KS_E_TAMPERED). Policies that weaken PIN protection trust only
 * authenticated values. */
KS_WUR ks_rv ks_get_setting_auth(ks_token *tok, const char *key, char **out, int *authenticated);
/* ks_get_setting_auth, also telling in *HAS_MAC whether the row carries a
 * MAC at all (checked while logged in; logged out it cannot be). A row
 * without one was written without the TMK (or planted in the file): a
 * consumer that only ever writes settings while logged in refuses it. */
KS_WUR ks_rv ks_get_setting_ex(ks_token *tok, const char *key, char **out, int *authenticated,
                               int *has_mac);

/* ---- Login cache support (the module's login_cache=user:N) -------------- */

/*
 * The user PIN generation: a counter kept in the token (internal setting
 * "ks.user_pin_generation", MAC'd under the TMK; absent means 0) and
 * incremented in the same transaction as every change of the user PIN
 * (ks_set_pin for KS_USER, ks_init_user_pin). A user login records the
 * generation it proved (read in the same transaction as the PIN record it
 * verified), so a TMK cached with that number is refused by ks_login_tmk
 * once the PIN changed — whichever process changed it.
 */
#define KS_TMK_LEN 32

/*
 * Copy the TMK held by a handle logged in as the user (by PIN or by
 * ks_login_tmk) into TMK (caller's locked memory) and the PIN generation that
 * login proved into *PIN_GEN. KS_E_NOT_LOGGED_IN without a user login, or if
 * the user PIN changed since (the generation moved on) or the token was
 * re-initialised.
 */
KS_WUR ks_rv ks_export_tmk(ks_token *tok, unsigned char tmk[KS_TMK_LEN], uint64_t *pin_gen);

/*
 * Log in as the user with a TMK from a login cache instead of a PIN. The TMK
 * must open this token as it is now (the metadata MAC verifies with its MAC
 * key) and PIN_GEN must equal the token's current user PIN generation; a
 * wrong key or a stale generation is KS_E_PIN_INCORRECT (not counted: a
 * 256-bit key cannot be guessed), a locked user PIN KS_E_PIN_LOCKED, an
 * uninitialised one KS_E_PIN_NOT_INITIALIZED. On success the handle holds the
 * keys exactly as after ks_login(KS_USER). TMK_LEN must be KS_TMK_LEN.
 */
KS_WUR ks_rv ks_login_tmk(ks_token *tok, const unsigned char *tmk, size_t tmk_len,
                          uint64_t pin_gen);

/* ---- Backup ------------------------------------------------------------- */

/*
 * Write a consistent copy of the open token to DEST (created 0600; must not
 * exist) with SQLite's online backup API, safe while other processes use the
 * token. The copy is as encrypted as the original: it is the keystore.
 */
KS_WUR ks_rv ks_backup(ks_token *tok, const char *dest);

/*
 * Restore: copy SRC into a temporary file in DEST's directory and check the
 * copy is a readable keystore (ks_open succeeds on it), give it a new
 * restore epoch, then put it in place. If DEST is a keystore, the copy is
 * written INTO it with SQLite's online backup API, one write transaction:
 * processes holding DEST open see the restored token at their next read,
 * and their ks_load_changes fails (KS_E_ARGS: load in full) instead of
 * mixing change numbers of two files. Otherwise (no DEST, or damaged) the
 * copy is renamed over it. Never leaves DEST half-written.
 */
KS_WUR ks_rv ks_restore(const char *src, const char *dest);

/* ---- Where tokens live ------------------------------------------------- */

/*
 * The directory holding this user's token files, malloc'd (free() it), or
 * NULL with *ERR set to a static message. Order: $EVERTOKEN_DIR; else the
 * `token_dir` key of section [evertoken] in the config file ($EVERTOKEN_CONF,
 * else $XDG_CONFIG_HOME/evertoken/evertoken.conf, else
 * ~/.config/evertoken/evertoken.conf; parsed with libinih; a missing file is
 * fine, a malformed one is an error); else $XDG_DATA_HOME/evertoken, else
 * ~/.local/share/evertoken. The directory is not created here.
 */
char *ks_token_dir(const char **err);

/* Token files are DIR/token-<N>.db, N the slot id (0..KS_SLOT_MAX, decimal).
 * The slot id is the file's name so it stays stable across restarts. */
#define KS_SLOT_MAX 0x7ffffffeU
char *ks_token_path(const char *dir, uint32_t slot); /* malloc'd */

/* Slot ids of the token files in DIR, ascending, malloc'd in *IDS (free()).
 * A missing directory gives *N = 0 and KS_OK. Other names are ignored. */
KS_WUR ks_rv ks_dir_scan(const char *dir, uint32_t **ids, size_t *n);

/*
 * Why no token can be opened or created at PATH, without opening anything
 * (never blocks, even on a FIFO): its directory exists but is refused (not
 * a directory, another owner, group/world writable), or something that is
 * not a regular file is at PATH (a directory, FIFO, socket, device, or a
 * symbolic link to one or to nothing), or the file there is refused (owner,
 * mode). KS_OK when none of these applies (nothing there, or a file ks_open
 * may try); otherwise ks_open_error() gives the reason and the fix.
 */
KS_WUR ks_rv ks_check_path(const char *path);

/* ---- Diagnostics -------------------------------------------------------- */

/* Message for the most recent failure on TOK ("file.c:123: ..."), or "". */
const char *ks_last_error(const ks_token *tok);

#ifdef __cplusplus
}
#endif
#endif /* EVERTOKEN_KEYSTORE_H */
