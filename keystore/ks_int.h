/*
 * ks_int.h — the keystore's internal interface, shared by the keystore sources only.
 *
 * Layout: db.c (errors, statements, meta and pins rows, change detection),
 * db_open.c (files, pragmas, schema, migrations), db_backup.c (backup, restore),
 * seal.c (Argon2id, TMK wrap, attribute serialisation, record AEAD, MACs,
 * secure memory), token.c (lifecycle, PINs, login), token_pin.c (PIN check
 * internals), token_info.c (info, settings, login cache), object.c (objects),
 * rollover.c (credential rollover), dir.c (where tokens live, names, EVERTOKEN_KDF, strerror).
 *
 * Locking: every ks_token has one mutex. Helpers named *_inlock must be
 * called with it held; they never unlock it.
 */
#ifndef EVERTOKEN_KS_INT_H
#define EVERTOKEN_KS_INT_H

#include <pthread.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <sodium.h>

#include "keystore.h"

#define KS_KEY_LEN    32 /* TMK, record key, MAC key, wrap key */
#define KS_SALT_LEN   crypto_pwhash_SALTBYTES
#define KS_NONCE_LEN  crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define KS_TAG_LEN    crypto_aead_xchacha20poly1305_ietf_ABYTES
#define KS_MAC_LEN    32
#define KS_KDF_CTX    "evertokn" /* crypto_kdf context, 8 bytes */
#define KS_SUBKEY_REC 1
#define KS_SUBKEY_MAC 2
#define KS_SUBKEY_LK  3 /* keys the lookup hashes of private objects (lookup.c) */

/* Bytes of a private object's lookup hash (keyed BLAKE2b). */
#define KS_LOOKUP_HASH_LEN 16

/* Bytes of an error message (a handle's, the thread's open error). */
#define KS_ERR_MAX 320

/* Bytes of the restore epoch (meta key restore_epoch, random). */
#define KS_EPOCH_LEN 16

/* PRAGMA application_id of every keystore file: "EvTk". */
#define KS_APPLICATION_ID 0x4576546b

/* Sanity bounds for values read back from a file (beyond them: corrupt). */
#define KS_SETTING_KEY_MAX   64
#define KS_SETTING_VALUE_MAX 4096
#define KS_ATTR_LEN_MAX      (16u * 1024 * 1024)

/* Secrets held while logged in: one sodium_malloc'd block. */
struct ks_keys {
    unsigned char tmk[KS_KEY_LEN];
    unsigned char rec[KS_KEY_LEN]; /* seals private objects */
    unsigned char mac[KS_KEY_LEN]; /* authenticates public objects, meta, settings */
    unsigned char lk[KS_KEY_LEN];  /* keys the lookup hashes of private objects */
};

/* Bytes of SQLite's wal-index header (struct WalIndexHdr) at the start of
 * the -shm file: a commit always changes it (iChange, mxFrame, checksums). */
#define KS_WAL_HDR_LEN 48

/* Cached prepared statements (db.c has the SQL, same order). */
enum ks_stmt {
    ST_DATA_VERSION,
    ST_BEGIN,
    ST_BEGIN_IMMEDIATE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_META_ALL,
    ST_META_PUT,
    ST_PIN_GET,
    ST_PIN_FAIL_INC,
    ST_PIN_FAIL_DEC,
    ST_PIN_FAIL_RESET,
    ST_PIN_SET,
    ST_PIN_CLEAR,
    ST_OBJ_ALL,
    ST_OBJ_PUBLIC,
    ST_OBJ_ONE,
    ST_OBJ_HEAD,
    ST_OBJ_INSERT,
    ST_OBJ_WRITE,
    ST_OBJ_DELETE,
    ST_OBJ_DELETE_ALL,
    ST_OBJ_COUNT,
    ST_OBJ_SINCE,  /* changed rows and tombstones after a sequence number */
    ST_GONE_ONE,   /* tombstone of one destroyed object */
    ST_GONE_ALL,   /* tombstones of every object (before ST_OBJ_DELETE_ALL) */
    ST_GONE_PRUNE, /* keep only the newest tombstone (after ST_GONE_ALL) */
    ST_SET_GET,
    ST_SET_PUT,
    ST_SET_DELETE_ALL,
    ST_ATT_LIST,    /* in-flight PIN attempt markers of one PIN (meta pin_attempt:WHO:*) */
    ST_ATT_DEL,     /* one marker */
    ST_ATT_DEL_WHO, /* every marker of one PIN */
    ST_EPOCH_GET,   /* the restore epoch (meta key restore_epoch; absent before any restore) */
    ST_SEQ_NOW,     /* the highest change sequence number */
    /* Candidates by one lookup column (lookup.c), in the order of its
     * lk_cols[] (KS_LK_*). */
    ST_OBJ_FIND_ID,
    ST_OBJ_FIND_LABEL,
    ST_OBJ_FIND_CLASS,
    ST_OBJ_FIND_KTYPE,
    ST_OBJ_FIND_CTYPE,
    ST_OBJ_FIND_SUBJ,
    ST_OBJ_FIND_ISN,
    ST_OBJ_UNFILLED, /* rows whose lookup columns are not filled yet, a batch */
    ST_OBJ_ANY_UNFILLED,
    ST_OBJ_FILL,      /* fill one row's lookup columns */
    ST_OBJ_ANY_PURGE, /* is any row retired at or before ?1 (rollover.c) */
    /* The rollover's candidates (rollover.c, schema 7's indexes): */
    ST_OBJ_ROLL_COMMIT, /* linked to ?1, or CKA_ID lookup value ?2/?3, or unfilled */
    ST_OBJ_BY_CRED,     /* linked to ?1 */
    ST_OBJ_PURGE,       /* retired at or before ?1 */
    ST_OBJ_INACTIVE,    /* pending or retired (ks_list_inactive) */
    ST_COUNT
};

struct ks_token {
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    char *path;
    unsigned char token_id[KS_TOKEN_ID_LEN]; /* fixed at creation */
    struct ks_keys *keys;                    /* non-NULL while logged in */
    int login_user;                          /* keys came from a user login (PIN or ks_login_tmk) */
    uint64_t login_gen;     /* the user PIN generation that login proved (login cache) */
    unsigned char *scratch; /* sodium_malloc'd plaintext buffer */
    size_t scratch_cap;
    ks_attr *attrs; /* parse buffer for one object (pointers only) */
    size_t attrs_cap;
    int64_t data_version;
    /* Change detection without a system call (ks_changed): the wal-index
     * header in SQLite's shared memory (-shm), as seen when data_version
     * was last read. shm is NULL when it could not be mapped (then every
     * check runs PRAGMA data_version). */
    const volatile unsigned char *shm;
    unsigned char shm_hdr[KS_WAL_HDR_LEN];
    int shm_hdr_ok;
    int sync_normal; /* the connection is at synchronous=NORMAL (else FULL) */
    /* Restore epoch as of the last full load (ks_load_objects) or open:
     * ks_restore gives the restored file a new one, and ks_load_changes
     * refuses to hand out changes across it (the change numbers of the
     * restored file are not those of the file it replaced). */
    unsigned char epoch[KS_EPOCH_LEN];
    char err[KS_ERR_MAX];
};

/* The token's metadata rows (table meta), validated. */
struct ks_meta {
    unsigned char token_id[KS_TOKEN_ID_LEN];
    char serial[KS_SERIAL_LEN + 1];
    char label[KS_LABEL_MAX + 1];
    uint64_t kdf_ops;
    uint64_t kdf_mem;
    unsigned max_attempts;
    int has_mac;
    unsigned char mac[KS_MAC_LEN];
};

/* One row of table pins. */
struct ks_pin_row {
    unsigned fail_count;
    int initialized;
    uint64_t kdf_ops;
    uint64_t kdf_mem;
    unsigned char salt[KS_SALT_LEN];
    unsigned char nonce[KS_NONCE_LEN];
    unsigned char wrapped[KS_KEY_LEN + KS_TAG_LEN];
};

/* ---- errors (db.c) ---- */

/* Record "file:line: message" in TOK's last-error buffer and return RV.
 * Like SQLite's *_BKPT macros, the line is where the error began. */
#define KS_ERR(tok, rv, ...) ks_err_at((tok), (rv), __FILE__, __LINE__, __VA_ARGS__)
/* Same, for the thread's open error (no handle yet). */
#define KS_OPEN_ERR(rv, ...) ks_open_err_at((rv), __FILE__, __LINE__, __VA_ARGS__)
/* Map an SQLite result code to a ks_rv and record it. */
#define KS_SQLERR(tok, rc, what) ks_sqlerr_at((tok), (rc), (what), __FILE__, __LINE__)

ks_rv ks_err_at(ks_token *tok, ks_rv rv, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
ks_rv ks_open_err_at(ks_rv rv, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
ks_rv ks_sqlerr_at(ks_token *tok, int rc, const char *what, const char *file, int line);
ks_rv ks_sqlite_rv(int rc);
/* A column accessor returned NULL: out of memory (KS_E_NOMEM) or damage. */
ks_rv ks_col_nomem(ks_token *tok, const char *what);
void ks_open_err_clear(void);
/* The thread's open error from a handle's message MSG, naming the file PATH. */
void ks_open_err_from(const char *msg, const char *path);

/* ---- database (db.c, db_open.c, db_backup.c) ---- */

/* Prepare / finalize the cached statements (db.c). */
ks_rv ks_stmts_prepare(ks_token *tok);
void ks_stmts_finalize(ks_token *tok);
/* KS_OK if PATH starts with SQLite's header (db_open.c). */
ks_rv ks_check_header(const char *path);

void ks_lock(ks_token *tok);
void ks_unlock(ks_token *tok);
sqlite3_stmt *ks_stmt_inlock(ks_token *tok, enum ks_stmt which);
void ks_stmt_done(sqlite3_stmt *st);
ks_rv ks_exec_inlock(ks_token *tok, enum ks_stmt which);
/* BEGIN (IMMEDIATE: a write transaction, committed with synchronous=FULL). */
ks_rv ks_begin_inlock(ks_token *tok, int immediate);
/* BEGIN IMMEDIATE of a write committed with synchronous=NORMAL: durable
 * against process crashes, atomic, may be lost (never half-applied) on power
 * loss unless a later FULL commit or checkpoint follows. The creation of
 * public, active objects only (docs/keystore-format.md, "Durability"). */
ks_rv ks_begin_normal_inlock(ks_token *tok);
ks_rv ks_commit_inlock(ks_token *tok);
void ks_rollback_inlock(ks_token *tok);
ks_rv ks_meta_read_inlock(ks_token *tok, struct ks_meta *m);
ks_rv ks_meta_put_blob_inlock(ks_token *tok, const char *key, const void *v, size_t n);
ks_rv ks_meta_put_text_inlock(ks_token *tok, const char *key, const char *v);
ks_rv ks_meta_put_int_inlock(ks_token *tok, const char *key, int64_t v);
ks_rv ks_pin_read_inlock(ks_token *tok, ks_who who, struct ks_pin_row *p);
ks_rv ks_step_done_inlock(ks_token *tok, sqlite3_stmt *st, const char *what);

/* Read the restore epoch (all zero when the file was never restored) into
 * OUT, inside the caller's read transaction or statement snapshot. */
ks_rv ks_epoch_read_inlock(ks_token *tok, unsigned char out[KS_EPOCH_LEN]);

/* At open: map the wal-index header and read data_version (ks_changed). */
ks_rv ks_changed_init_inlock(ks_token *tok);

/* Create the database in the (new, empty) file PATH. Used by ks_create. */
ks_rv ks_db_create_file(const char *path, const struct ks_meta *m, const struct ks_pin_row *so,
                        const unsigned char mac_key[KS_KEY_LEN]);
ks_rv ks_check_dir_perms(const char *dir);
/* 1 if PATH's last component is a token file name ("token-<N>.db"). */
int ks_is_token_file(const char *path);
ks_rv ks_mkdir_p(const char *dir);
char *ks_dirname(const char *path);
ks_rv ks_fsync_path(const char *path, int is_dir);
/* Remove PATH and its -wal and -shm files. */
void ks_unlink_db(const char *path);

/* ---- crypto (seal.c) ---- */

void *ks_secure_alloc(size_t n);
void ks_secure_free(void *p);
ks_rv ks_scratch_reserve_inlock(ks_token *tok, size_t n);
void ks_keys_free(struct ks_keys *k);
ks_rv ks_keys_derive(struct ks_keys *k);
ks_rv ks_kdf_check(const ks_kdf_params *in, ks_kdf_params *out);
ks_rv ks_pwhash(unsigned char key[KS_KEY_LEN], const unsigned char *pin, size_t pin_len,
                const unsigned char salt[KS_SALT_LEN], uint64_t ops, uint64_t mem);
void ks_wrap_tmk(struct ks_pin_row *p, const unsigned char wrap_key[KS_KEY_LEN],
                 const unsigned char tmk[KS_KEY_LEN], const unsigned char token_id[KS_TOKEN_ID_LEN],
                 ks_who who);
int ks_unwrap_tmk(unsigned char tmk[KS_KEY_LEN], const struct ks_pin_row *p,
                  const unsigned char wrap_key[KS_KEY_LEN],
                  const unsigned char token_id[KS_TOKEN_ID_LEN], ks_who who);
void ks_meta_mac(unsigned char out[KS_MAC_LEN], const unsigned char key[KS_KEY_LEN],
                 const struct ks_meta *m);
void ks_setting_mac(unsigned char out[KS_MAC_LEN], const unsigned char key[KS_KEY_LEN],
                    const unsigned char token_id[KS_TOKEN_ID_LEN], const char *k, const char *v);
void ks_object_mac(unsigned char out[KS_MAC_LEN], const unsigned char key[KS_KEY_LEN],
                   const unsigned char token_id[KS_TOKEN_ID_LEN], int64_t id, uint32_t version,
                   const unsigned char *data, size_t len);
/* Associated data of a sealed private object. */
#define KS_OBJ_AD_LEN (20 + KS_TOKEN_ID_LEN + 8 + 4)
void ks_object_ad(unsigned char ad[KS_OBJ_AD_LEN], const unsigned char token_id[KS_TOKEN_ID_LEN],
                  int64_t id, uint32_t version);

/* Attribute serialisation (see docs/keystore-format.md). */
ks_rv ks_attrs_check(const ks_attr *attrs, size_t n, size_t *ser_len);
void ks_attrs_serialise(const ks_attr *attrs, size_t n, unsigned char *out, size_t out_len);
/* The value of attribute TYPE in the serialised attributes BUF (pointing
 * into BUF): 1 found, 0 absent, -1 malformed. Touches no handle state. */
int ks_ser_find(const unsigned char *buf, size_t len, uint64_t type, const unsigned char **v,
                size_t *vlen);
/* Parse BUF into tok->attrs (values point into BUF). -1 if malformed. */
int ks_attrs_parse_inlock(ks_token *tok, const unsigned char *buf, size_t len, size_t *nattrs);

/* The rollover state of one record, as stored in its row and bound into
 * its AD / MAC. */
struct ks_rec_state {
    ks_state state;
    int64_t retired_at; /* 0 unless retired */
    const unsigned char *cred;
    size_t cred_len;
};

/* ---- objects (object.c), used by the rollover (rollover.c) ---- */

/* Read the state columns (starting at column FIRST) of ST's current row;
 * -1 if malformed. */
int ks_row_state(sqlite3_stmt *st, int first, struct ks_rec_state *rs);
/* Decode the current row of an object statement into OBJ (object.c says how). */
ks_rv ks_row_decode_inlock(ks_token *tok, sqlite3_stmt *st, ks_object *obj, size_t *wipe,
                           const unsigned char **ser, size_t *ser_len, struct ks_rec_state *rs_out);
/* Wipe the first WIPE bytes of the handle's scratch buffer. */
void ks_wipe_scratch(ks_token *tok, size_t wipe);
/* Which decoded rows a walk hands out (ks_rows_each_inlock). */
typedef int (*ks_row_keep_fn)(void *kctx, const ks_object *obj, const struct ks_rec_state *rs);
/* Step the rows left in ST (an object statement): a private one is
 * skipped while logged out, the others decoded and checked; one failing
 * its check is counted in *BAD and skipped. KEEP (NULL: all) chooses the
 * rows CB gets; the walk ends when CB returns nonzero. WHAT names the read
 * in an SQL error. The caller resets or finalizes ST. */
ks_rv ks_rows_each_inlock(ks_token *tok, sqlite3_stmt *st, ks_row_keep_fn keep, void *kctx,
                          ks_object_cb cb, void *ctx, unsigned *bad, const char *what);
/* Destroy object ID, with its tombstone (inside the caller's transaction). */
ks_rv ks_obj_delete_inlock(ks_token *tok, int64_t id);
/* Seal or MAC serialised attributes and write them as object ID's record. */
ks_rv ks_record_write_inlock(ks_token *tok, int64_t id, int is_private, uint32_t ver,
                             const struct ks_rec_state *rs, const unsigned char *ser,
                             size_t ser_len);

/* ---- lookup columns (lookup.c) ---- */

/* Lookup column values of one record, ready to bind: clear values point
 * into the serialised attributes, hashes into hbuf. */
enum {
    KS_LK_ID,    /* l_id: CKA_ID */
    KS_LK_LABEL, /* l_label: CKA_LABEL */
    KS_LK_CLASS, /* l_class: CKA_CLASS */
    KS_LK_KTYPE, /* l_ktype: CKA_KEY_TYPE */
    KS_LK_CTYPE, /* l_ctype: CKA_CERTIFICATE_TYPE */
    KS_LK_SUBJ,  /* l_subj: hash of CKA_SUBJECT */
    KS_LK_ISN,   /* l_isn: hash of CKA_ISSUER and CKA_SERIAL_NUMBER */
    KS_LK_N
};
struct ks_lookup {
    const unsigned char *v[KS_LK_N]; /* NULL: the attribute is absent */
    size_t len[KS_LK_N];
    unsigned char hbuf[KS_LK_N][KS_LOOKUP_HASH_LEN];
};
/* The lookup values of the serialised attributes SER of a public or
 * private record (private: needs tok->keys). */
void ks_lookup_of_inlock(ks_token *tok, int is_private, const unsigned char *ser, size_t ser_len,
                         struct ks_lookup *lk);
/* Bind the lookup values of VALUE (LEN bytes) in column K to parameters
 * COL (public rows: clear value or unkeyed hash) and COL + 1 (private
 * rows: keyed hash; NULL, matching nothing, when logged out) of ST. H and
 * HP hold the hashes until ST is reset; wipe HP after. */
void ks_lookup_bind_value_inlock(ks_token *tok, sqlite3_stmt *st, int col, int k, const void *value,
                                 size_t len, unsigned char h[KS_LOOKUP_HASH_LEN],
                                 unsigned char hp[KS_LOOKUP_HASH_LEN]);
/* Bind LK's KS_LK_N values to parameters COL .. COL + KS_LK_N - 1 of ST. */
void ks_lookup_bind(sqlite3_stmt *st, int col, const struct ks_lookup *lk);
/* Fill the lookup columns of the rows that lack them: the public ones
 * (PRIV 0; at open) or the private ones (PRIV 1; needs the keys). A write
 * transaction only when there is something to fill; errors leave the rows
 * as they are (a search still reads them: ST_OBJ_FIND_*). Locks itself. */
ks_rv ks_lookup_fill(ks_token *tok, int priv);

/* ---- token.c, token_pin.c, token_info.c ---- */

/* The user PIN generation row as stored. */
struct ks_gen_raw {
    int present; /* the row exists (absent: generation 0) */
    int has_mac;
    uint64_t value;
    unsigned char mac[KS_MAC_LEN];
};

/* What a successful PIN check hands to its caller (secrets in locked memory). */
struct ks_pin_ok {
    struct ks_keys *keys;    /* the TMK and its derived keys */
    unsigned char *wrap_key; /* the PIN's Argon2id output */
    struct ks_pin_row row;   /* that PIN's salt and cost */
    struct ks_meta meta;
    struct ks_gen_raw gen; /* user PIN generation, read with ROW (KS_USER only) */
};

void ks_pin_ok_clear(struct ks_pin_ok *ok);
/* Forget the keys the handle holds (and what its login proved). */
void ks_keys_drop_inlock(ks_token *tok);
/* Check the meta MAC with KEYS: proves KEYS belong to this token as it is
 * now (not re-initialised by another process) and the meta rows are intact. */
ks_rv ks_meta_check_inlock(ks_token *tok, const struct ks_keys *keys, struct ks_meta *m);
/* Read the generation row as stored (its MAC is checked by ks_gen_check once
 * keys are at hand). */
ks_rv ks_gen_read_inlock(ks_token *tok, struct ks_gen_raw *g);
/* The generation G vouched for by KEYS: absent is 0; present without a MAC
 * or with a wrong one is tampering. */
ks_rv ks_gen_check(ks_token *tok, const struct ks_keys *keys, const struct ks_gen_raw *g,
                   uint64_t *out);
/* Inside the caller's write transaction: generation + 1, MAC'd by KEYS. */
ks_rv ks_gen_bump_inlock(ks_token *tok, const struct ks_keys *keys);
/* Markers of WHO whose process is gone: *N of them; with DEL, delete them
 * and give their counts back (inside the caller's write transaction). */
ks_rv ks_att_reclaim_inlock(ks_token *tok, ks_who who, int del, unsigned *n);
/* Delete marker KEY (KEY NULL: every marker of WHO). */
ks_rv ks_att_delete_inlock(ks_token *tok, ks_who who, const char *key);
/*
 * Verify PIN for WHO. Called unlocked; returns with the lock HELD whatever
 * the result. On KS_OK, OK holds the TMK, derived keys and wrap key.
 */
ks_rv ks_pin_verify_relock(ks_token *tok, ks_who who, const unsigned char *pin, size_t len,
                           struct ks_pin_ok *ok);
/* Write P as WHO's PIN row (inside the caller's transaction). */
ks_rv ks_pin_write_inlock(ks_token *tok, ks_who who, const struct ks_pin_row *p);

/* Internal setting holding the user PIN generation (login cache binding);
 * keys starting with KS_INTERNAL_PREFIX are refused by ks_set_setting. */
#define KS_INTERNAL_PREFIX "ks."
#define KS_PIN_GEN_SETTING "ks.user_pin_generation"

/* Verify the stored meta MAC with the handle's keys: the TMK is still this
 * token's (another process may have re-initialised it). */
ks_rv ks_tmk_current_inlock(ks_token *tok);

#endif /* EVERTOKEN_KS_INT_H */
