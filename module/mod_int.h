/*
 * mod_int.h — internal interfaces of the evertoken PKCS#11 module core
 * (init.c, log.c, entry.c, ext.c, slot.c, session.c, login.c, logincache.c,
 * cache.c, store.c, objmgmt.c, find.c, keygen.c, wrap.c, rollover.c, crypto.c, op*.c).
 *
 * State model
 *   One process-wide state (mod_g: token list, session list, handle
 *   counters, busy marks) guarded by one global lock (mod_lock), and per
 *   token a token lock (tok->lock) for what is the token's own: its
 *   keystore handle, its object cache and its login state.
 *   Tokens are the files of the token directory, one per slot (slot id = the
 *   N of token-<N>.db), plus one "free" slot whose uninitialised token
 *   C_InitToken turns into a new file. Sessions point at their token. Login
 *   state lives on the token (PKCS#11: per token per application), and so does
 *   the object cache: the token's stored objects (handle = keystore id), the
 *   token's CKO_PROFILE object, and the session objects of every session on
 *   that token.
 *
 * Locking vocabulary
 *   *_inlock  needs the global lock held and never releases it.
 *   *_relock  needs the global lock held, may release and retake it (each
 *             says why at its definition); every pointer but a busy token
 *             must be looked up again after the call.
 *   Other functions are called without the global lock; an entry point
 *   (mod_C_*, mod_ET_*) takes it once and releases it once, on every path
 *   (goto done). No pointer to an object or session survives an unlock,
 *   except struct mod_token pointers protected by tok->busy (rescans and
 *   session closes never free a busy token). Argon2id (ks_login,
 *   ks_set_pin, ks_init_user_pin, ks_create, ks_reinit) runs without the
 *   global lock, serialised per token by tok->op_mutex, which is always
 *   taken BEFORE the global lock (tok_pin_begin_relock).
 *
 * Lock order (never take an earlier one while holding a later one)
 *   1. tok->op_mutex   PIN operations of one token (KDF)
 *   2. tok->lock       the token lock
 *   3. mod_lock        the global lock
 *   4. the keystore handle's own mutex (inside keystore/)
 *   A thread holding the global lock that needs a token lock marks the
 *   token busy, releases the global lock, takes the token lock and retakes
 *   the global lock (tok_lock_relock, session_enter_relock).
 *
 * The token lock
 *   Every use of tok->ks, every change of the token's cache and of its
 *   login state happens with the token lock held (and the global lock for
 *   the change itself). Holding it, a thread may release the global lock
 *   around slow keystore work — writes and their fsync (store.c, objmgmt.c,
 *   rollover.c, ext.c), a full cache reload (cache_sync_relock) — and find
 *   everything of that token as it left it. The one exception is a PIN's
 *   KDF (seconds of Argon2id): it runs with neither lock, serialised by the
 *   op mutex (tok_kdf_unlock/tok_kdf_relock), as before there were token
 *   locks, and the PIN operation checks the state again after it (login.c).
 *   So a slow write
 *   on token A holds A's lock only: signatures on token B, session lookups
 *   and every call on other tokens go on. Reads of the cache may hold
 *   either lock: the cryptographic C_xInit functions read a recently
 *   checked cache under the global lock alone (cache_recent_inlock), and
 *   see it before or after a change, never during one. Calls that touch no
 *   keystore (C_Sign, C_Digest*, C_GetSlotInfo, ...) take no token lock.
 *
 * Cryptographic operations (op.c, op_*.c)
 *   A session has at most one active operation (struct mod_op, s->op). Its
 *   OpenSSL key (a reference to the object's cached EVP_PKEY) and contexts
 *   are taken under the lock; the crypto itself runs with the lock released
 *   while the operation is marked busy (mod_g.inflight counts such threads,
 *   and C_Finalize waits for them). Nobody else touches a busy operation: a
 *   C_CloseSession meanwhile marks it orphaned (the computing thread frees
 *   it), a C_Logout marks it dead (the computing thread drops its key).
 */
#ifndef EVERTOKEN_MOD_INT_H
#define EVERTOKEN_MOD_INT_H

#include <stdint.h>
#include <sys/types.h>

#include "p11.h"
#include "keystore.h"
#include "object.h"

#define MOD_MANUFACTURER  "evertoken"
#define MOD_MODEL         "evertoken soft"
#define MOD_LIB_DESC      "evertoken software token"
#define MOD_VERSION_MAJOR EVERTOKEN_VERSION_MAJOR
#define MOD_VERSION_MINOR EVERTOKEN_VERSION_MINOR

/*
 * Object handles. Token objects use their keystore id (ids are never reused
 * in a file, so a handle never names two objects). The profile object and
 * session objects use the range from 0x80000000, which keystore ids never
 * reach in practice (ids above it are skipped and logged).
 */
#define MOD_HANDLE_PROFILE    0x80000000UL
#define MOD_HANDLE_SOBJ_FIRST 0x80000001UL
#define MOD_TOKEN_HANDLE_MAX  0x7fffffffUL

/* Not logged in (tok->login). CKU_SO = 0 and CKU_USER = 1 are taken. */
#define MOD_NOBODY ((CK_USER_TYPE)-1)

enum mod_tok_state {
    TOK_FREE = 0, /* the free slot: no file yet, C_InitToken creates it */
    TOK_OPEN,     /* file opened: tok->ks valid */
    TOK_BROKEN,   /* file exists but ks_open failed (retried on every rescan) */
};

/* Indexes of a token's stored objects (cache.c): by CKA_ID and CKA_LABEL. */
enum { MOD_IX_ID = 0, MOD_IX_LABEL, MOD_IX_COUNT };
/* The keystore's lookups (ks_find, docs/keystore-format.md) a partial cache
 * resolves values of (cache_lazy.c): the first two are the indexes above;
 * MOD_LK_ISN is CKA_ISSUER with CKA_SERIAL_NUMBER. */
enum {
    MOD_LK_ID = MOD_IX_ID,
    MOD_LK_LABEL = MOD_IX_LABEL,
    MOD_LK_CLASS = MOD_IX_COUNT,
    MOD_LK_KTYPE,
    MOD_LK_CTYPE,
    MOD_LK_SUBJ,
    MOD_LK_ISN,
    MOD_LK_COUNT
};

struct mod_object {
    CK_OBJECT_HANDLE h;
    mod_attrs *attrs;
    /* The OpenSSL key of a key object, built on first use (cache_pkey_inlock)
     * and shared by reference with operations; freed with the object (and so
     * on logout, reload and destroy). pkey_attrs: the set it was built from. */
    EVP_PKEY *pkey;
    const mod_attrs *pkey_attrs;
    CK_BBOOL token;          /* stored in the keystore (or the profile object) */
    CK_BBOOL priv;           /* CKA_PRIVATE */
    int profile;             /* the built-in CKO_PROFILE object: never stored */
    int pending;             /* a pending rollover key: never found, usable by handle */
    int in_arena;            /* allocated in the token's load arena (cache.c): not freed alone */
    int gone;                /* cache.c, during an incremental reload: no longer in the keystore */
    int held;                /* cache_mem.c, during an eviction: a session holds it */
    uint64_t used;           /* stored objects: last use (t->tick), for eviction */
    struct mod_arena *chunk; /* in_arena: the chunk it lives in */
    /* Retired by a rollover another process committed while this one held
     * the object: never found, in no index, refused by handle except as the
     * key of a cryptographic operation (cache_lookup_key_inlock), never
     * evicted (it could not be read again), until it is purged or the cache
     * is loaded in full. A server keeps signing with the key it loaded until
     * it reloads (docs/rollover.md). */
    int retired;
    CK_SESSION_HANDLE owner; /* session objects: the creating session */
    struct mod_object *next; /* session object list */
    /* Stored objects only: the chains of the token's indexes. ix_pprev[k]
     * is NULL when the object is not in index k (attribute absent). */
    struct mod_object *ix_next[MOD_IX_COUNT];
    struct mod_object **ix_pprev[MOD_IX_COUNT];
    uint64_t ix_hash[MOD_IX_COUNT];
};

struct mod_arena;
struct mod_rset;

/* A chained hash table of stored objects by one attribute's value. */
struct mod_index {
    struct mod_object **b; /* nb buckets (a power of two), or NULL */
    size_t nb, n;
    int broken; /* no memory for it: searches scan until the next reload */
};

struct mod_token {
    uint32_t slot;
    enum mod_tok_state state;
    ks_token *ks;
    ks_rv open_err;     /* why the file did not open (TOK_BROKEN) */
    CK_USER_TYPE login; /* CKU_SO, CKU_USER or MOD_NOBODY */
    int login_cached;   /* that user login came from the login cache, not a PIN */
    int login_implicit; /* ... made by C_OpenSession; no C_Login acknowledged it yet */
    int logged_out;     /* C_Logout called: only a new session or C_Login logs in again */
    long long lc_tried; /* CLOCK_MONOTONIC ns of the last cache login that found nothing */
    int have_id;        /* token_id below is known (read once, fixed at creation) */
    unsigned char token_id[KS_TOKEN_ID_LEN];
    unsigned busy;       /* threads working on it with the lock released */
    void *op_mutex;      /* serialises PIN operations (taken before lock and mod_lock) */
    void *lock;          /* the token lock: its keystore and cache (mod_int.h, Locking) */
    unsigned pin_ops;    /* PIN operations under way or waiting (tok_pin_begin_relock) */
    CK_ULONG nsess, nrw; /* open sessions of this process on it */
    int present;         /* seen in the last directory scan */
    unsigned hidden;     /* stored objects that failed their check at the last load */
    /* Object cache. */
    int loaded;                /* objs reflects the keystore as of ks_changed */
    int partial;               /* objs holds some stored objects, current (cache_lazy.c) */
    struct mod_rset *resolved; /* partial: index values whose objects are all in objs */
    int64_t seq;               /* keystore change sequence objs reflects (ks_load_changes) */
    double synced_at;          /* monotonic time of the last ks_changed check */
    struct mod_object **objs;  /* token objects, sorted by handle */
    size_t nobjs, capobjs;
    struct mod_index ix[MOD_IX_COUNT]; /* objs by CKA_ID, CKA_LABEL */
    struct mod_arena *arena;           /* memory of the last full load (cache.c) */
    unsigned long dgen;                /* counts removals of stored objects other than evictions */
    uint64_t tick;                     /* stamps for o->used */
    size_t evict_at;                   /* cache_evict_inlock's next look (cache_mem.c) */
    uint64_t evicted;         /* stored objects evicted so far (tests, docs/performance.md) */
    struct mod_object *prof;  /* CKO_PROFILE */
    struct mod_object *sobjs; /* session objects of all sessions on it */
    struct mod_token *next;   /* sorted by slot */
};

struct mod_session {
    CK_SESSION_HANDLE h;
    struct mod_token *tok;
    CK_FLAGS flags; /* CKF_SERIAL_SESSION | CKF_RW_SESSION */
    int find_active;
    CK_OBJECT_HANDLE *found; /* snapshot taken at C_FindObjectsInit */
    CK_ULONG nfound, pos;
    unsigned long find_dgen; /* t->dgen at C_FindObjectsInit (find.c) */
    CK_USER_TYPE find_login; /* t->login then */
    struct mod_op *op;       /* the cryptographic operation (kept idle for reuse) */
    struct mod_session *next;
};

struct mod_global {
    int initialized;
    pid_t pid; /* process that called C_Initialize (fork detection) */
    char *dir; /* token directory */
    struct mod_token *tokens;
    struct mod_session *sessions;
    unsigned inflight; /* threads computing with the lock released (op.c) */
};

extern struct mod_global mod_g;

/* Handle counters: outside mod_g so that C_Finalize + C_Initialize does not
 * restart them (handles are never reused in a process lifetime). */
extern CK_SESSION_HANDLE mod_next_session;
extern CK_OBJECT_HANDLE mod_next_sobj;

/* ---- init.c: initialisation, readiness, the global lock, mutexes -------- */

/* Non-zero when C_Initialize succeeded in this process (not a forked child). */
int mod_ready(void);
void mod_lock(void);
void mod_unlock(void);

/* PIN operations on token T are serialised by its op mutex, taken BEFORE
 * the global lock: called with the global lock held, marks T busy (which
 * keeps it alive), drops the global lock, takes the op mutex, retakes the
 * global lock. Any other pointer must be looked up again afterwards. */
void tok_pin_begin_relock(struct mod_token *t);
/* Release T's op mutex and token lock, and its busy mark (global lock held). */
void tok_pin_end_inlock(struct mod_token *t);
/* Around a PIN operation's KDF (tok_pin_begin_relock held): release the
 * global lock and T's token lock, so that the token stays usable for
 * seconds of Argon2id (the op mutex still serialises PIN operations; the
 * keystore handle releases its own mutex during the KDF too); then take
 * both back, in the lock order. The token's cache and login state may have
 * changed meanwhile: the caller checks them again. */
void tok_kdf_unlock(struct mod_token *t);
void tok_kdf_relock(struct mod_token *t);
/* Take T's token lock (called with the global lock held): marks T busy,
 * drops the global lock while it waits (the token lock comes first in the
 * lock order), retakes it. Any pointer but T must be looked up again. */
void tok_lock_relock(struct mod_token *t);
/* Release T's token lock and its busy mark (global lock held). */
void tok_unlock_inlock(struct mod_token *t);

/* Mutexes made the way C_Initialize chose (pthread or the application's). */
CK_RV mod_mutex_new(void **out);
void mod_mutex_free(void *m);
void mod_mutex_lock(void *m);
void mod_mutex_unlock(void *m);

/* C_GetInfo of the 2.40 and the 3.0 function list (entry.c's tables). */
CK_RV mod_C_GetInfo_240(CK_INFO_PTR info);
CK_RV mod_C_GetInfo_30(CK_INFO_PTR info);

/* ---- log.c: debug log, error mapping ------------------------------------ */

/* Read EVERTOKEN_DEBUG (C_Initialize). */
void mod_log_setup(void);
/* Debug log to stderr when EVERTOKEN_DEBUG=1. Never pass secrets. */
void mod_log_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define mod_log(...) mod_log_at(__FILE__, __LINE__, __VA_ARGS__)

/* The one place keystore codes become CKR codes; logs ks_last_error(KS). */
CK_RV mod_ks_ckr_at(ks_rv rv, const ks_token *ks, const char *what, const char *file, int line);
#define mod_ks_ckr(rv, ks, what) mod_ks_ckr_at((rv), (ks), (what), __FILE__, __LINE__)

/* Copy S into a blank-padded PKCS#11 text field of LEN bytes. */
void mod_pad(CK_UTF8CHAR *dst, size_t len, const char *s);

/* ---- slot.c ------------------------------------------------------------- */

/* Rescan the token directory: open new files and add the free slot. With
 * PRUNE (only the sizing call of C_GetSlotList, PKCS#11 2.40 section 5.5:
 * the slot set changes only there) also drop vanished idle tokens and stale
 * free slots. */
CK_RV slot_scan_inlock(int prune);
/* Find slot ID (rescanning once if unknown); CKR_SLOT_ID_INVALID. */
CK_RV slot_lookup_inlock(CK_SLOT_ID id, struct mod_token **out);
/* The token is initialised and usable (retries a broken open);
 * CKR_TOKEN_NOT_RECOGNIZED otherwise. */
CK_RV tok_usable_inlock(struct mod_token *t);
/* Free every token. CHILD: after fork, abandon keystore handles (SQLite
 * connections must not be used across fork) but wipe what can be wiped. */
void slot_free_all(int child);

/* ---- session.c ---------------------------------------------------------- */

CK_RV session_lookup_inlock(CK_SESSION_HANDLE h, struct mod_session **out);
/* Session H with its token's lock taken (tok_lock_relock; the session is
 * looked up again after the wait). *LOCKED: the token to release with
 * tok_unlock_inlock, NULL when the call failed. */
CK_RV session_enter_relock(CK_SESSION_HANDLE h, struct mod_session **out,
                           struct mod_token **locked);
/* Close every session (C_Finalize). */
void session_close_all_inlock(void);
/* Abandon sessions after fork without touching their tokens' keystores. */
void session_forget_all(void);

/* ---- login.c: the login state (only these four functions write t->login,
 * login_cached, login_implicit, logged_out) ----------------------------- */

enum login_how {
    LOGIN_PIN,            /* C_Login with a verified PIN */
    LOGIN_CACHE,          /* C_Login(CKU_USER) with a NULL/empty PIN, from the login cache */
    LOGIN_CACHE_IMPLICIT, /* restored by the module at C_OpenSession/C_GetSessionInfo */
};
enum logout_why {
    LOGOUT_CALL,         /* C_Logout: no cached login is restored until a new session */
    LOGOUT_LAST_SESSION, /* the token's last session closed */
    LOGOUT_REPLACED,     /* an SO login replaces an implicit user login */
    LOGOUT_RESET,        /* the token was opened, created or re-initialised: fields only */
};
/* T is logged in as WHO (its keystore already is); the cache reloads. */
void login_enter_inlock(struct mod_token *t, CK_USER_TYPE who, enum login_how how);
/* The application acknowledged an implicit login (C_Login); BY_PIN: with
 * the PIN, so it no longer counts as a cached one. */
void login_confirm_inlock(struct mod_token *t, int by_pin);
/* Log T out (keystore, operations on private keys, private session
 * objects, cached objects), except LOGOUT_RESET: the fields only. */
void login_leave_inlock(struct mod_token *t, enum logout_why why);
/* A logged-out T whose user keyring holds a cached login is logged in from
 * it (LOGIN_CACHE_IMPLICIT). AT_OPEN: C_OpenSession (also forgets an
 * earlier C_Logout); else throttled (C_GetSessionInfo). */
void login_restore_inlock(struct mod_token *t, int at_open);
/* Would login_restore_inlock try the keyring (and the keystore) now? */
int login_restore_due_inlock(const struct mod_token *t, int at_open);

/* ---- cache.c ------------------------------------------------------------ */

/* Bring the token's cache up to date (ks_changed; changes made by other
 * processes applied). A cache not filled yet starts partial: objects are
 * read as they are searched for (cache_resolve_relock) or named by handle
 * (cache_lookup_inlock). Needs T's token lock. */
CK_RV cache_sync_relock(struct mod_token *t);
/* Same, and the cache holds every stored object (a template without an
 * indexed attribute, the rollover's checks, the integrity count): reads the
 * whole token if it is partial, with the global lock released. */
CK_RV cache_sync_full_relock(struct mod_token *t);
/* After cache_sync_relock: every stored object whose lookup-K attribute
 * (MOD_LK_*; MOD_LK_ISN: VALUE is a size_t issuer length, the issuer, the
 * serial) is VALUE is in the cache (one indexed keystore search, ks_find,
 * unless it was asked already; the global lock released during it). Needs
 * T's token lock. */
CK_RV cache_resolve_relock(struct mod_token *t, int k, const void *value, size_t len);
/* For a template without CKA_ID or CKA_LABEL: if the cache is partial and
 * TMPL has CKA_ISSUER with CKA_SERIAL_NUMBER, CKA_SUBJECT, CKA_KEY_TYPE,
 * CKA_CERTIFICATE_TYPE or CKA_CLASS (the first of these), resolve that
 * value (cache_resolve_relock) and set *DONE: every stored object that can
 * match TMPL is then in the cache. *DONE = 0: none of them (or a full
 * cache). */
CK_RV cache_resolve_tmpl_relock(struct mod_token *t, const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                                int *done, const CK_ATTRIBUTE **stream_by);
/* Index of handle H in t->objs, or where it would be inserted; *FOUND
 * whether it is there. Needs either lock. */
size_t cache_objs_search(const struct mod_token *t, CK_OBJECT_HANDLE h, int *found);
/* The bound on cached stored objects of a token (EVERTOKEN_CACHE_OBJECTS,
 * default 4096; 0: none), not counting those sessions hold. */
size_t cache_max(void);
/* Evict the least recently used cached stored objects that no session holds
 * when more than cache_max() are cached (cache_mem.c). Called where no
 * caller holds a pointer into the cache (cache_sync_relock, before it
 * looks). Needs T's token lock and the global lock. */
void cache_evict_inlock(struct mod_token *t);
/* Does stored object O match a search (find.c)? 1 yes, 0 no. */
typedef int (*cache_match_fn)(const struct mod_token *t, const struct mod_object *o, void *arg);
/* A search of a partial cache with no indexed attribute (BY NULL: every
 * stored object), or by a broad one whose candidates would not fit the
 * cache (BY, from cache_resolve_tmpl_relock: its candidates, ks_find): the
 * records are read from the keystore in handle order (one snapshot, each
 * record checked) and matched, cached ones as cached, the others without
 * entering the cache (docs/module.md); *FOUND (malloc'd, *NFOUND) the
 * handles of those that MATCH, in handle order. Needs T's token lock; the
 * global lock is released meanwhile, the cache not changed. */
CK_RV cache_stream_relock(struct mod_token *t, const CK_ATTRIBUTE *by, cache_match_fn match,
                          void *arg, CK_OBJECT_HANDLE **found, size_t *nfound);
/* The cache was checked less than MOD_SYNC_RECENT seconds ago: the
 * cryptographic C_xInit functions, which look up one key by handle (handles
 * are never reused), then trust it without the token lock and without a
 * database round trip (a SQLite read transaction, two fcntl locks) per
 * signature. */
#define MOD_SYNC_RECENT 0.5
int cache_recent_inlock(const struct mod_token *t);
/* Drop the cached stored objects (wiping them); reloaded on next sync. */
void cache_drop_inlock(struct mod_token *t);
/* Free the whole cache including session objects and the profile object. */
void cache_free_inlock(struct mod_token *t);
/* Destroy session objects of session OWNER (0: all), or only private ones. */
void cache_destroy_sobjs_inlock(struct mod_token *t, CK_SESSION_HANDLE owner, int only_private);
/* An object the current login state may see; CKR_OBJECT_HANDLE_INVALID.
 * A partial cache reads a stored object it lacks from the keystore: then
 * the caller holds T's token lock (a partial cache is never "recent", so
 * the C_xInit functions take it too). */
CK_RV cache_lookup_inlock(struct mod_token *t, CK_OBJECT_HANDLE h, struct mod_object **out);
/* The same for the key of a cryptographic operation: a retired key this
 * process held is still given (struct mod_object.retired). */
CK_RV cache_lookup_key_inlock(struct mod_token *t, CK_OBJECT_HANDLE h, struct mod_object **out);
int cache_visible(const struct mod_token *t, const struct mod_object *o);
/* Insert a stored object (takes ATTRS). */
CK_RV cache_add_token_inlock(struct mod_token *t, CK_OBJECT_HANDLE h, mod_attrs *attrs);
/* Insert a session object (takes ATTRS); returns its handle in *OUT. */
CK_RV cache_add_session_inlock(struct mod_token *t, CK_SESSION_HANDLE owner, mod_attrs *attrs,
                               CK_OBJECT_HANDLE *out);
void cache_remove_inlock(struct mod_token *t, struct mod_object *o);
/* A new reference to key object O's OpenSSL key (built once, obj_pkey);
 * the caller frees it with EVP_PKEY_free. */
CK_RV cache_pkey_inlock(struct mod_object *o, EVP_PKEY **out);
/* Replace O's attributes (taking ATTRS), forget its cached key, and keep
 * T's indexes up to date. */
void cache_set_attrs_inlock(struct mod_token *t, struct mod_object *o, mod_attrs *attrs);
/* The attribute type index K is built on (CKA_ID, CKA_LABEL). */
CK_ATTRIBUTE_TYPE cache_ix_type(int k);
/* Look VALUE (LEN bytes) up in index K: *FIRST = the first stored object
 * whose value may be VALUE (NULL if none); the next ones follow
 * o->ix_next[K]. Candidates only (hash collisions): the caller still matches
 * each. Returns 0 when the index cannot be used (scan instead). */
int cache_ix_lookup_inlock(const struct mod_token *t, int k, const void *value, size_t len,
                           struct mod_object **first);

/* ---- logincache.c: login cache policy and the kernel user keyring ------- */

/* The token's login_cache setting (docs/module.md). */
enum lc_kind {
    LC_PROCESS = 0, /* standard PKCS#11 (the default) */
    LC_NONE,        /* every C_Login verifies its PIN; nothing cached anywhere */
    LC_USER,        /* TMK cached in the user keyring for SECS seconds */
};
#define LC_SECS_MAX (30U * 24 * 3600) /* user:N accepts 1..30 days */
struct lc_policy {
    enum lc_kind kind;
    unsigned secs; /* LC_USER only */
};
/* Parse "none", "process" or "user:N"; -1 if malformed. */
int lc_parse(const char *s, struct lc_policy *out);
/* Canonical text of P (at least 24 bytes). */
void lc_format(const struct lc_policy *p, char *buf, size_t n);
/* T's policy. With NEED_AUTH a user:N value counts only when the keystore
 * vouches for it (written and read while logged in, MAC verified); an
 * unauthenticated one is then taken as "process". Missing: "process". */
void lc_policy_inlock(struct mod_token *t, int need_auth, struct lc_policy *out);
/* A cache entry exists for T (one keyctl search, no keystore access). */
int lc_present_inlock(struct mod_token *t);
/* After a user login with the PIN under policy P (LC_USER): put the TMK in
 * the user keyring with P's timeout (replacing an older entry). */
void lc_store_inlock(struct mod_token *t, const struct lc_policy *p);
/* Log T's keystore in as the user from its cache entry. CKR_OK: the
 * keystore is logged in and the caller records it (login_enter_inlock with
 * LOGIN_CACHE or LOGIN_CACHE_IMPLICIT); CKR_USER_NOT_LOGGED_IN: no entry (or
 * no keyring); another CKR: an entry existed but was refused (and has been
 * removed). */
CK_RV lc_login_inlock(struct mod_token *t);
/* Remove T's entry; returns 1 if one was removed. */
int lc_clear_inlock(struct mod_token *t);

/* ---- rollover.c: credential rollover (docs/rollover.md) ------------------ */

/* Seconds since the epoch: EVERTOKEN_FAKE_TIME (decimal) if set, for tests
 * of the grace period only; else time(NULL). */
int64_t mod_now(void);
/* Copy of template T (N) without attribute TYPE into *OUT (malloc'd; free()),
 * *OUTN its length; *VAL = the CK_BBOOL value given (CK_FALSE if absent).
 * CKR_ATTRIBUTE_VALUE_INVALID if TYPE is there with a length other than 1. */
CK_RV rollover_strip(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_ATTRIBUTE **out,
                     CK_ULONG *outn, CK_BBOOL *val);
/* C_CreateObject with CKA_EVERTOKEN_COMMIT_ROLLOVER: ATTRS is the built
 * certificate (always consumed). Needs the session's token lock; the
 * keystore transaction runs with the global lock released. */
CK_RV rollover_commit_relock(struct mod_session *s, mod_attrs *attrs, CK_OBJECT_HANDLE *out);
/* Destroy T's retired objects older than the grace period (after a user
 * login; failures are logged). Needs T's token lock; the keystore
 * transaction runs with the global lock released. */
void rollover_purge_relock(struct mod_token *t);
/* The setting "rollover_grace" (ET_SETTING_ROLLOVER_GRACE). */
CK_RV rollover_get_grace_inlock(struct mod_token *t, char *text, size_t n);
int rollover_parse_grace(const char *v, int64_t *out);
/* ET_RolloverRollback / ET_RolloverDiscard / ET_PurgeRetired on token T
 * (a user-logged-in R/W session's, its token lock held): the keystore
 * transaction with the global lock released, then the cache is dropped for
 * reload. */
CK_RV rollover_rollback_relock(struct mod_token *t, const CK_BYTE *id, CK_ULONG len);
CK_RV rollover_discard_relock(struct mod_token *t, const CK_BYTE *id, CK_ULONG len, CK_ULONG *n);
CK_RV rollover_purge_count_relock(struct mod_token *t, CK_ULONG *n);

/* ---- ext.c: the vendor interface "Vendor evertoken" --------------------- */

extern const struct ET_FUNCTION_LIST mod_ext_list;

/* integrity.c: what a process's view leaves out, reported without debug
 * mode (syslog, once per process and kind; ET_GetIntegrity). */
void integrity_hidden_inlock(struct mod_token *t, unsigned tampered, int full_load);
void integrity_setting_refused_inlock(struct mod_token *t, const char *key, const char *why);
CK_RV ext_GetIntegrity(CK_SLOT_ID slot, CK_ULONG *hidden, CK_ULONG *refused);

/* ---- mech.c: the mechanism table ----------------------------------------- */

/* What serves a mechanism. */
enum mod_mech_family {
    MF_RSA_PKCS, /* CKM_RSA_PKCS and CKM_SHAx_RSA_PKCS */
    MF_RSA_PSS,  /* CKM_RSA_PKCS_PSS and CKM_SHAx_RSA_PKCS_PSS */
    MF_RSA_OAEP,
    MF_ECDSA, /* CKM_ECDSA and CKM_ECDSA_SHAx */
    MF_EDDSA,
    MF_DIGEST,
    MF_KEYGEN, /* keygen.c: C_GenerateKeyPair */
    MF_DERIVE, /* derive.c: C_DeriveKey */
    /* secret keys (op_sym.c) */
    MF_SECGEN,      /* keygen.c: C_GenerateKey (AES, generic secret) */
    MF_AES_ECB,     /* CKM_AES_ECB */
    MF_AES_CBC,     /* CKM_AES_CBC */
    MF_AES_CBC_PAD, /* CKM_AES_CBC_PAD */
    MF_AES_CTR,     /* CKM_AES_CTR */
    MF_AES_GCM,     /* CKM_AES_GCM */
    MF_CMAC,        /* CKM_AES_CMAC and _GENERAL */
    MF_HMAC,        /* CKM_SHAx_HMAC and _GENERAL */
    MF_WRAP,        /* wrap.c: C_WrapKey/C_UnwrapKey (AES key wrap, with padding) */
};

/* Longest secret key value (bytes) the mechanisms take: HMAC keys and
 * CKM_GENERIC_SECRET_KEY_GEN. */
#define MOD_SECRET_MAX 1024

/* Families computed with a secret key's value rather than an EVP_PKEY. */
#define MF_IS_SYM(f) ((f) >= MF_AES_ECB && (f) <= MF_HMAC)

/* Hash functions (md field): MD_NONE for mechanisms that hash nothing. */
enum { MD_NONE = 0, MD_SHA1, MD_SHA224, MD_SHA256, MD_SHA384, MD_SHA512, MD_COUNT };

struct mod_mech {
    CK_MECHANISM_TYPE type;
    CK_MECHANISM_INFO info; /* key sizes in bits, CKF_* flags */
    CK_KEY_TYPE key_type;   /* CK_UNAVAILABLE_INFORMATION for digests */
    enum mod_mech_family fam;
    int md; /* the hash a hashing mechanism applies (MD_*) */
};

struct mod_md {
    CK_MECHANISM_TYPE mech; /* CKM_SHA_1, CKM_SHA256, ... */
    CK_ULONG mgf;           /* CKG_MGF1_* */
    const char *ossl;       /* OpenSSL fetch name */
    size_t len;             /* output bytes */
};

/* The table entry of TYPE, NULL when the module does not offer it. */
const struct mod_mech *mech_find(CK_MECHANISM_TYPE type);
const struct mod_md *md_info(int md);
/* MD_* of a digest mechanism / an MGF1 generator; MD_NONE if unknown. */
int md_by_mech(CK_MECHANISM_TYPE type);
int md_by_mgf(CK_ULONG mgf);
/* The fetched OpenSSL digest (fetched once per process). */
typedef struct evp_md_st EVP_MD;
const EVP_MD *md_get(int md);

/* ---- op.c: operation bookkeeping for session.c -------------------------- */

struct mod_op;
/* Session S closes: end its operation (an orphaned busy one is freed by the
 * thread computing it). */
void op_session_close_inlock(struct mod_session *s);
/* Token T logs out: end operations on private keys and drop every key
 * reference to a private object held by T's sessions. */
void op_logout_inlock(struct mod_token *t);
/* C_SessionCancel: end S's operation if its kind is among FLAGS (CKF_SIGN,
 * CKF_VERIFY, CKF_ENCRYPT, CKF_DECRYPT, CKF_DIGEST). */
void op_cancel_inlock(struct mod_session *s, CK_FLAGS flags);
/* CKU_CONTEXT_SPECIFIC: the operation waiting for a context login, and its
 * generation (*GEN) to recognise it after the KDF; NULL if there is none. */
struct mod_op *op_auth_pending_inlock(struct mod_session *s, unsigned *gen);
/* The context login succeeded: mark S's operation authenticated if it is
 * still operation OP generation GEN (CKR_OPERATION_NOT_INITIALIZED if not). */
CK_RV op_auth_done_inlock(struct mod_session *s, const struct mod_op *op, unsigned gen);

/* ---- entry points (mod_C_*), defined across the files ------------------- */

CK_RV mod_C_Initialize(CK_VOID_PTR);
CK_RV mod_C_Finalize(CK_VOID_PTR);
CK_RV mod_C_GetSlotList(CK_BBOOL, CK_SLOT_ID_PTR, CK_ULONG_PTR);
CK_RV mod_C_GetSlotInfo(CK_SLOT_ID, CK_SLOT_INFO_PTR);
CK_RV mod_C_GetTokenInfo(CK_SLOT_ID, CK_TOKEN_INFO_PTR);
CK_RV mod_C_GetMechanismList(CK_SLOT_ID, CK_MECHANISM_TYPE_PTR, CK_ULONG_PTR);
CK_RV mod_C_GetMechanismInfo(CK_SLOT_ID, CK_MECHANISM_TYPE, CK_MECHANISM_INFO_PTR);
CK_RV mod_C_InitToken(CK_SLOT_ID, CK_UTF8CHAR_PTR, CK_ULONG, CK_UTF8CHAR_PTR);
CK_RV mod_C_WaitForSlotEvent(CK_FLAGS, CK_SLOT_ID_PTR, CK_VOID_PTR);

CK_RV mod_C_InitPIN(CK_SESSION_HANDLE, CK_UTF8CHAR_PTR, CK_ULONG);
CK_RV mod_C_SetPIN(CK_SESSION_HANDLE, CK_UTF8CHAR_PTR, CK_ULONG, CK_UTF8CHAR_PTR, CK_ULONG);
CK_RV mod_C_OpenSession(CK_SLOT_ID, CK_FLAGS, CK_VOID_PTR, CK_NOTIFY, CK_SESSION_HANDLE_PTR);
CK_RV mod_C_CloseSession(CK_SESSION_HANDLE);
CK_RV mod_C_CloseAllSessions(CK_SLOT_ID);
CK_RV mod_C_GetSessionInfo(CK_SESSION_HANDLE, CK_SESSION_INFO_PTR);
CK_RV mod_C_Login(CK_SESSION_HANDLE, CK_USER_TYPE, CK_UTF8CHAR_PTR, CK_ULONG);
CK_RV mod_C_Logout(CK_SESSION_HANDLE);
CK_RV mod_C_LoginUser(CK_SESSION_HANDLE, CK_USER_TYPE, CK_UTF8CHAR_PTR, CK_ULONG, CK_UTF8CHAR_PTR,
                      CK_ULONG);
CK_RV mod_C_SessionCancel(CK_SESSION_HANDLE, CK_FLAGS);
CK_RV mod_C_CreateObject(CK_SESSION_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG, CK_OBJECT_HANDLE_PTR);
CK_RV mod_C_CopyObject(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG,
                       CK_OBJECT_HANDLE_PTR);
CK_RV mod_C_DestroyObject(CK_SESSION_HANDLE, CK_OBJECT_HANDLE);
CK_RV mod_C_GetObjectSize(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ULONG_PTR);
CK_RV mod_C_GetAttributeValue(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG);
CK_RV mod_C_SetAttributeValue(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG);
CK_RV mod_C_FindObjectsInit(CK_SESSION_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG);
CK_RV mod_C_FindObjects(CK_SESSION_HANDLE, CK_OBJECT_HANDLE_PTR, CK_ULONG, CK_ULONG_PTR);
CK_RV mod_C_FindObjectsFinal(CK_SESSION_HANDLE);
/* End the session's find operation (C_FindObjectsFinal, close, cancel). */
void find_end(struct mod_session *s);

/* crypto.c: random, and the cryptographic functions (no mechanisms yet). */
CK_RV mod_C_SeedRandom(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG);
CK_RV mod_C_GenerateRandom(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG);
CK_RV mod_C_GetFunctionStatus(CK_SESSION_HANDLE);
CK_RV mod_C_CancelFunction(CK_SESSION_HANDLE);
CK_RV mod_C_GetOperationState(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR);
CK_RV mod_C_SetOperationState(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_OBJECT_HANDLE,
                              CK_OBJECT_HANDLE);
CK_RV mod_C_EncryptInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV mod_C_Encrypt(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                    CK_ULONG_PTR outlen);
CK_RV mod_C_EncryptUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                          CK_ULONG_PTR outlen);
CK_RV mod_C_EncryptFinal(CK_SESSION_HANDLE hs, CK_BYTE_PTR out, CK_ULONG_PTR outlen);
CK_RV mod_C_DecryptInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV mod_C_Decrypt(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                    CK_ULONG_PTR outlen);
CK_RV mod_C_DecryptUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                          CK_ULONG_PTR outlen);
CK_RV mod_C_DecryptFinal(CK_SESSION_HANDLE hs, CK_BYTE_PTR out, CK_ULONG_PTR outlen);
CK_RV mod_C_DigestInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech);
CK_RV mod_C_Digest(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                   CK_ULONG_PTR outlen);
CK_RV mod_C_DigestUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen);
CK_RV mod_C_DigestKey(CK_SESSION_HANDLE hs, CK_OBJECT_HANDLE key);
CK_RV mod_C_DigestFinal(CK_SESSION_HANDLE hs, CK_BYTE_PTR out, CK_ULONG_PTR outlen);
CK_RV mod_C_SignInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV mod_C_Sign(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                 CK_ULONG_PTR outlen);
CK_RV mod_C_SignUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen);
CK_RV mod_C_SignFinal(CK_SESSION_HANDLE hs, CK_BYTE_PTR out, CK_ULONG_PTR outlen);
CK_RV mod_C_SignRecoverInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV mod_C_SignRecover(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                        CK_ULONG_PTR outlen);
CK_RV mod_C_VerifyInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV mod_C_Verify(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR sig,
                   CK_ULONG siglen);
CK_RV mod_C_VerifyUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen);
CK_RV mod_C_VerifyFinal(CK_SESSION_HANDLE hs, CK_BYTE_PTR sig, CK_ULONG siglen);
CK_RV mod_C_VerifyRecoverInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV mod_C_VerifyRecover(CK_SESSION_HANDLE hs, CK_BYTE_PTR sig, CK_ULONG siglen, CK_BYTE_PTR out,
                          CK_ULONG_PTR outlen);
CK_RV mod_C_DigestEncryptUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen,
                                CK_BYTE_PTR out, CK_ULONG_PTR outlen);
CK_RV mod_C_DecryptDigestUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen,
                                CK_BYTE_PTR out, CK_ULONG_PTR outlen);
CK_RV mod_C_SignEncryptUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                              CK_ULONG_PTR outlen);
CK_RV mod_C_DecryptVerifyUpdate(CK_SESSION_HANDLE hs, CK_BYTE_PTR in, CK_ULONG inlen,
                                CK_BYTE_PTR out, CK_ULONG_PTR outlen);
CK_RV mod_C_GenerateKey(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                        CK_OBJECT_HANDLE_PTR key);
CK_RV mod_C_GenerateKeyPair(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pubt,
                            CK_ULONG pubn, CK_ATTRIBUTE_PTR privt, CK_ULONG privn,
                            CK_OBJECT_HANDLE_PTR pub, CK_OBJECT_HANDLE_PTR priv);
CK_RV mod_C_WrapKey(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wkey,
                    CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR outlen);
CK_RV mod_C_UnwrapKey(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE ukey,
                      CK_BYTE_PTR in, CK_ULONG inlen, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                      CK_OBJECT_HANDLE_PTR key);
CK_RV mod_C_DeriveKey(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE base,
                      CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR key);
CK_RV mod_C_MessageEncryptInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV mod_C_EncryptMessage(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen,
                           CK_BYTE_PTR ad, CK_ULONG adlen, CK_BYTE_PTR in, CK_ULONG inlen,
                           CK_BYTE_PTR out, CK_ULONG_PTR outlen);
CK_RV mod_C_EncryptMessageBegin(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen,
                                CK_BYTE_PTR ad, CK_ULONG adlen);
CK_RV mod_C_EncryptMessageNext(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen,
                               CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out, CK_ULONG_PTR outlen,
                               CK_FLAGS flags);
CK_RV mod_C_MessageEncryptFinal(CK_SESSION_HANDLE hs);
CK_RV mod_C_MessageDecryptInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV mod_C_DecryptMessage(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen,
                           CK_BYTE_PTR ad, CK_ULONG adlen, CK_BYTE_PTR in, CK_ULONG inlen,
                           CK_BYTE_PTR out, CK_ULONG_PTR outlen);
CK_RV mod_C_DecryptMessageBegin(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen,
                                CK_BYTE_PTR ad, CK_ULONG adlen);
CK_RV mod_C_DecryptMessageNext(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen,
                               CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out, CK_ULONG_PTR outlen,
                               CK_FLAGS flags);
CK_RV mod_C_MessageDecryptFinal(CK_SESSION_HANDLE hs);
CK_RV mod_C_MessageSignInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV mod_C_SignMessage(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen, CK_BYTE_PTR in,
                        CK_ULONG inlen, CK_BYTE_PTR sig, CK_ULONG_PTR siglen);
CK_RV mod_C_SignMessageBegin(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen);
CK_RV mod_C_SignMessageNext(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen,
                            CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR sig, CK_ULONG_PTR siglen);
CK_RV mod_C_MessageSignFinal(CK_SESSION_HANDLE hs);
CK_RV mod_C_MessageVerifyInit(CK_SESSION_HANDLE hs, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV mod_C_VerifyMessage(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen,
                          CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR sig, CK_ULONG siglen);
CK_RV mod_C_VerifyMessageBegin(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen);
CK_RV mod_C_VerifyMessageNext(CK_SESSION_HANDLE hs, CK_VOID_PTR param, CK_ULONG paramlen,
                              CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR sig, CK_ULONG siglen);
CK_RV mod_C_MessageVerifyFinal(CK_SESSION_HANDLE hs);

#endif /* EVERTOKEN_MOD_INT_H */
