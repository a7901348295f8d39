/*
 * et_int.h — internal interfaces of the `evertoken` admin CLI.
 *
 * The CLI is an ordinary PKCS#11 application: everything that touches token
 * contents goes through the module (dlopen + C_GetFunctionList), so what it
 * writes is exactly what any other application would see. Only backup,
 * restore and the keystore details of `info` use the keystore API directly,
 * because they are about the file, not about PKCS#11 objects.
 */
#ifndef EVERTOKEN_TOOLS_ET_INT_H
#define EVERTOKEN_TOOLS_ET_INT_H

#include <stddef.h>
#include <stdio.h>

#include <evertoken/p11.h>

#include "et_enrstate.h"
#include "et_escape.h"
#include "et_secret.h"

/* Exit codes (documented in docs/cli.md). */
enum {
    ET_EXIT_OK = 0,
    ET_EXIT_FAIL = 1,      /* the operation failed (PKCS#11, keystore or I/O error) */
    ET_EXIT_USAGE = 2,     /* bad command line */
    ET_EXIT_NOTFOUND = 3,  /* no such token or object */
    ET_EXIT_PIN = 4,       /* wrong PIN or passphrase */
    ET_EXIT_LOCKED = 5,    /* PIN locked */
    ET_EXIT_INPUT = 6,     /* an input file is malformed or of an unsupported kind */
    ET_EXIT_EXISTS = 7,    /* label/token already exists, or refusing to overwrite */
    ET_EXIT_NOSECRET = 8,  /* a PIN/passphrase was needed but no source and no terminal */
    ET_EXIT_INTEGRITY = 9, /* done, but stored objects or settings failed their check */
};

/* ---- Command line ------------------------------------------------------- */

/* Options shared by every command; each command accepts a subset. */
typedef struct et_opts {
    const char *module; /* --module, else $EVERTOKEN_MODULE, else the default */
    const char *token;  /* --token LABEL */
    long slot;          /* --slot N, -1 if not given */
    const char *pin_src, *so_pin_src, *new_pin_src, *pass_src;
    const char *label; /* --label */
    const char *id;    /* --id HEX */
    const char *cls;   /* --class */
    const char *out;   /* -o/--output */
    int so, login, der, force, help;
    int chain;             /* export-cert --chain */
    int with_state;        /* backup --with-helper-state */
    const char *state_dir; /* backup/restore --enroll-state DIR */
    int argc;              /* positional arguments left after the options */
    char **argv;
} et_opts;

/* Print to stderr prefixed with "evertoken: ". */
void et_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void et_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- Secrets (secret.c) ------------------------------------------------- */

/* A PIN or passphrase in locked memory (et_secure_alloc: guarded, mlock'd). */
typedef struct et_secret {
    unsigned char *buf; /* NUL-terminated, LEN bytes before the NUL */
    size_t len;
} et_secret;

/*
 * Obtain a secret from SRC ("env:VAR", "file:PATH", "pass:VALUE", "prompt",
 * "stdin": one line of standard input), or by prompting on /dev/tty when SRC
 * is NULL. WHAT names it in prompts and
 * errors ("user PIN"). CONFIRM asks twice when prompting (new PINs). Returns
 * an ET_EXIT_* code; on success OUT owns the secret (free with
 * et_secret_free).
 */
int et_secret_get(const char *src, const char *what, int confirm, et_secret *out);
void et_secret_free(et_secret *s);

/* Secret-holding heap buffers, wiping and the secret-file reader:
 * et_secure_alloc, et_secure_free, et_wipe, et_secret_read_file and
 * ET_SECRET_MAX come from common/et_secret.h (included above). */

/* ---- PKCS#11 plumbing (p11util.c) --------------------------------------- */

typedef struct et_p11 {
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    int initialized;
    const char *path; /* the file loaded (points into resolved or the options) */
    char *resolved;   /* the default's full path, et_module_resolve() */
} et_p11;

/* dlopen the module named by OPTS (or env/default) and C_Initialize it. */
int et_p11_load(const et_opts *o, et_p11 *p);
void et_p11_unload(et_p11 *p);

/* Human message for a CKR code (e.g. "wrong PIN"), and its exit code. */
const char *et_ckr_str(CK_RV rv);
/* Why SLOT's token is unusable, C_GetTokenInfo having returned RV: for a
 * token the evertoken module does not recognise, the keystore's reason for
 * refusing the file (permissions, owner, damage), else et_ckr_str(RV). The
 * text lives until the next call. */
const char *et_slot_error(et_p11 *p, CK_SLOT_ID slot, CK_RV rv);
int et_ckr_exit(CK_RV rv);
/* Report "WHAT: message (CKR_...)" and return the exit code. */
/* et_ckr_fail for a C_Login of WHO (a locked SO PIN gets its own message). */
/* With the evertoken module: why slot SLOT's token file cannot be used or
 * created (refused directory, a directory/FIFO/dangling link where the file
 * belongs, ...), or NULL when nothing is wrong or it is another module. */
const char *et_slot_path_problem(et_p11 *p, CK_SLOT_ID slot);
/* With the evertoken module: print (each line after INDENT) how many of
 * SLOT's stored objects failed their integrity check and are hidden, and
 * how many settings are refused; ET_EXIT_INTEGRITY if any, else
 * ET_EXIT_OK (also with other modules). *CHECKED (may be NULL): whether
 * the module could tell (only the evertoken module can). */
int et_integrity_report(et_p11 *p, CK_SLOT_ID slot, const char *indent, int *checked);
int et_login_fail(const char *what, CK_USER_TYPE who, CK_RV rv);
int et_ckr_fail(const char *what, CK_RV rv);

/* A blank-padded PKCS#11 text field as a C string (trailing blanks removed). */
void et_p11_str(char *dst, size_t dstsz, const CK_UTF8CHAR *src, size_t srclen);

/*
 * Find the initialised token selected by --token/--slot. Errors (none given,
 * no match, label ambiguous) are reported; returns an ET_EXIT_* code.
 */
int et_find_token(et_p11 *p, const et_opts *o, CK_SLOT_ID *slot, CK_TOKEN_INFO *ti);

/* Open a session on SLOT (RW if RW) and, when WHO is CKU_USER or CKU_SO, log
 * in with the PIN from the matching source of O. */
int et_open_session(et_p11 *p, const et_opts *o, CK_SLOT_ID slot, int rw, long who,
                    CK_SESSION_HANDLE *sh);
void et_close_session(et_p11 *p, CK_SESSION_HANDLE sh);
/* Session SH is in a user state (e.g. restored from the login cache). */
int et_session_user(et_p11 *p, CK_SESSION_HANDLE sh);

/* The module's vendor interface (evertoken_ext.h), or NULL with an error
 * reported when the module has none (not evertoken, or too old). */
struct ET_FUNCTION_LIST;
const struct ET_FUNCTION_LIST *et_ext(et_p11 *p);

/* Read one attribute into a malloc'd buffer (NULL/0 if absent or not
 * readable). */
int et_get_attr(et_p11 *p, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                unsigned char **val, CK_ULONG *len);
int et_get_ulong(et_p11 *p, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                 CK_ULONG *v);

/* All objects matching TMPL (malloc'd array). */
int et_find_objects(et_p11 *p, CK_SESSION_HANDLE sh, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                    CK_OBJECT_HANDLE **out, CK_ULONG *count);

/* export-cert --chain (certchain.c): LEAF then the CA certificates of the
 * token that issued it, issuer by issuer, up to and not including a
 * self-signed root, as PEM to FP. */
struct x509_st;
int et_write_chain(et_p11 *p, CK_SESSION_HANDLE sh, struct x509_st *leaf, FILE *fp);

/* Hex helpers. et_hex_decode returns malloc'd bytes or NULL for bad input. */
void et_hex_print(FILE *fp, const unsigned char *b, size_t n);
unsigned char *et_hex_decode(const char *hex, size_t *len);

/* ---- Commands ----------------------------------------------------------- */

int et_cmd_init(et_opts *o);
int et_cmd_pin(et_opts *o);
int et_cmd_list(et_opts *o);
int et_cmd_info(et_opts *o);
int et_cmd_import(et_opts *o);
int et_cmd_delete(et_opts *o);
int et_cmd_export_cert(et_opts *o);
int et_cmd_backup(et_opts *o);
/* The single-file backup of a token with the helper's state (bundle.c). */
typedef struct et_bundle {
    char label[256];        /* the token's label when it was backed up */
    long long state_latest; /* as the bundle claims it (restore recomputes it) */
    et_sfiles token, state; /* the keystore copy ("keystore.db"); the state's files */
} et_bundle;
int et_bundle_write(const char *out, const et_sfile *keystore, const char *label,
                    const et_sfiles *state, long long latest);
/* 1 when PATH starts like a bundle (SQLite with the bundle's application id). */
int et_bundle_is(const char *path);
/* Read and check every part of the bundle PATH (ET_EXIT_INPUT with a
 * message when anything is damaged or unexpected). */
int et_bundle_read(const char *path, et_bundle *b);
void et_bundle_free(et_bundle *b);
int et_cmd_restore(et_opts *o);
int et_cmd_settings(et_opts *o);
int et_cmd_unlock(et_opts *o);
int et_cmd_lock(et_opts *o);

/* Keystore side of `info` (backup.c): print file details for a token whose
 * PKCS#11 slot is SLOT, if it is an evertoken keystore with that label. */
void et_print_keystore_info(CK_SLOT_ID slot, const char *label, const char *serial);
/* Pending and retired objects by name (inactive.c); TOK is a ks_token *. */
struct ks_token;
void et_print_inactive(struct ks_token *tok);
/* Why the keystore file of SLOT cannot be opened ("cannot open FILE: ..."),
 * into BUF; NULL when it opens or there is no such file. */
const char *et_keystore_open_error(CK_SLOT_ID slot, char *buf, size_t n);

#endif /* EVERTOKEN_TOOLS_ET_INT_H */
