/*
 * rlib.h — helpers shared by the robustness tests (tests/robust) and the
 * module fuzz target: the module linked in-process (et_module_objs), a
 * temporary token directory, a token made through the PKCS#11 API, data
 * objects, and failures reported as "file:line: message" with exit status 1.
 *
 * Child processes report failures through their exit status as well; the
 * parent waits for every child it started (r_spawn/r_wait) and kills them on
 * its own failure paths (r_kill_children).
 */
#ifndef EVERTOKEN_RLIB_H
#define EVERTOKEN_RLIB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "p11.h"

#define R_SO_PIN   "so-pin-1234"
#define R_USER_PIN "user-pin-1234"
#define R_LABEL    "robust"

/* The module's 2.40 function list (linked statically). */
extern CK_FUNCTION_LIST_PTR R;

/* Called by r_fail before exiting (a test's extra diagnostics), if set. */
extern void (*r_on_fail)(void);
void r_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
#define r_fail(...) r_fail_at(__FILE__, __LINE__, __VA_ARGS__)
#define R_ASSERT(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            r_fail_at(__FILE__, __LINE__, "assertion '%s' failed: %s", #cond, r_fmt(__VA_ARGS__)); \
    } while (0)
/* A call that must return EXPECT. */
#define R_CK(call, expect)                                                                         \
    do {                                                                                           \
        CK_RV r_rv_ = (call);                                                                      \
        if (r_rv_ != (CK_RV)(expect))                                                              \
            r_fail_at(__FILE__, __LINE__, "%s -> %s (expected %s)", #call, r_ckr(r_rv_),           \
                      r_ckr(expect));                                                              \
    } while (0)

/* printf into a static buffer (for R_ASSERT messages). */
const char *r_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Name of a CKR code ("CKR_PIN_INCORRECT", or hex). */
const char *r_ckr(CK_RV rv);

/* Make a private temporary directory, point EVERTOKEN_DIR at DIR/tokens and
 * EVERTOKEN_KDF at "fast" (unless set), and get R. DIR has room for 256. */
void r_setup(char dir[256], const char *name);
/* Remove a directory tree. */
void r_rm_rf(const char *dir);
/* The token file of slot SLOT under DIR/tokens (static buffer). */
const char *r_token_file(const char *dir, CK_SLOT_ID slot);

/* C_Initialize with CKF_OS_LOCKING_OK. */
void r_init(void);
/* Initialise a new token (label R_LABEL, SO R_SO_PIN, user R_USER_PIN) on the
 * free slot; returns its slot id. Needs r_init. */
CK_SLOT_ID r_make_token(void);
/* Open an R/W session on SLOT; log the user in with PIN (NULL: no login). */
CK_SESSION_HANDLE r_session(CK_SLOT_ID slot, const char *pin);

/* Create a data object: label LABEL, value VAL/LEN, token object, private
 * or not. Returns the C_CreateObject result; *H the handle. */
CK_RV r_create_data(CK_SESSION_HANDLE s, const char *label, const void *val, size_t len, int priv,
                    CK_OBJECT_HANDLE *h);
/* Find objects of class data with LABEL (NULL: all data objects). Up to MAX
 * handles into OUT; returns the count, or -1 with *RV set on an error. */
long r_find_data(CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *out, size_t max,
                 CK_RV *rv);
/* Read CKA_VALUE of H into BUF (size *LEN in, length out). */
CK_RV r_get_value(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, void *buf, size_t *len);

/* Deterministic pseudo-random bytes for values (xorshift, seeded). */
uint64_t r_rand(uint64_t *state);
void r_fill(uint64_t *state, unsigned char *buf, size_t n);

/* Children: fork and remember the pid; wait for all and return how many
 * failed (exit status != 0 or signal); kill every remembered child. */
pid_t r_spawn(void);
int r_wait_all(void);
void r_kill_children(void);

/* SQLite PRAGMA integrity_check on PATH: 1 if "ok" (otherwise prints it). */
int r_integrity_ok(const char *path);

/* Environment integer with a default. */
long r_env_long(const char *name, long dflt);
/* Monotonic seconds. */
double r_now(void);

#endif /* EVERTOKEN_RLIB_H */
