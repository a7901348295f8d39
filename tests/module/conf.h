/*
 * conf.h — the PKCS#11 module conformance suite's harness (tests/module).
 *
 * The suite loads a module by path with dlopen() and talks to it only through
 * the CK_FUNCTION_LIST from C_GetFunctionList (and, when the module exports
 * them, the 3.0 C_GetInterfaceList/C_GetInterface). It never links module
 * internals, so the same binary runs against evertoken and SoftHSMv2; passing
 * on SoftHSMv2 is what shows a test expects the standard and not just what
 * evertoken happens to do.
 *
 * Every expectation that holds only for evertoken is guarded by
 * is_evertoken(); every SoftHSMv2 deviation from the standard is explained
 * where it is skipped (is_softhsm()).
 */
#ifndef EVERTOKEN_CONF_H
#define EVERTOKEN_CONF_H

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cmocka.h>

#include "p11.h"

#define CONF_SO_PIN   "12345678"
#define CONF_USER_PIN "1234"
#define CONF_LABEL    "conf"

/* NSS's vendor class for trust objects (CKO_NSS + 3); no module of ours
 * defines it, so a search for it must find nothing. */
#define CONF_CKO_NSS_TRUST 0xCE534353UL

enum conf_target { CONF_EVERTOKEN, CONF_SOFTHSM };

/* The loaded module. F is the 2.40 list from C_GetFunctionList; the two 3.0
 * entry points are NULL when the module does not export them. */
extern CK_FUNCTION_LIST_PTR F;
extern CK_C_GetInterfaceList conf_get_interface_list;
extern CK_C_GetInterface conf_get_interface;
extern enum conf_target conf_target;

static inline int
is_evertoken(void)
{
    return conf_target == CONF_EVERTOKEN;
}

static inline int
is_softhsm(void)
{
    return conf_target == CONF_SOFTHSM;
}

/* Per-test state: a fresh temporary directory holding the token directory
 * (and SoftHSMv2's configuration file), the token slot once created, and a
 * child process the teardown must reap if a test failed before it did. */
struct conf_env {
    char dir[PATH_MAX];
    CK_SLOT_ID slot;
    int have_token;
    pid_t child;
};
extern struct conf_env E;

/* ---- assertions --------------------------------------------------------- */

const char *conf_rv_name(CK_RV rv);
void conf_check_rv(CK_RV got, CK_RV want, const char *expr, const char *file, int line);
void conf_check_rv2(CK_RV got, CK_RV want1, CK_RV want2, const char *expr, const char *file,
                    int line);
#define assert_rv(expr, want) conf_check_rv((expr), (want), #expr, __FILE__, __LINE__)
#define assert_rv2(expr, want1, want2)                                                             \
    conf_check_rv2((expr), (want1), (want2), #expr, __FILE__, __LINE__)
#define assert_ok(expr) assert_rv((expr), CKR_OK)

/* A session count in CK_TOKEN_INFO: evertoken reports the real count; the
 * standard also allows CK_UNAVAILABLE_INFORMATION, which SoftHSMv2 gives. */
#define assert_session_count(got, want)                                                            \
    do {                                                                                           \
        CK_ULONG got_ = (got);                                                                     \
        if (is_evertoken() || got_ != CK_UNAVAILABLE_INFORMATION)                                  \
            assert_int_equal(got_, (want));                                                        \
    } while (0)

/* C_Logout with nobody logged in: CKR_USER_NOT_LOGGED_IN (2.40 section 5.6).
 * SoftHSMv2 returns CKR_OK there; the state checks around each use still
 * prove nobody is logged in. */
#define assert_logout_not_logged_in(h)                                                             \
    do {                                                                                           \
        CK_RV rv_ = F->C_Logout(h);                                                                \
        if (!is_softhsm())                                                                         \
            assert_rv(rv_, CKR_USER_NOT_LOGGED_IN);                                                \
    } while (0)

/* ---- fixtures (cmocka setup/teardown) ----------------------------------- */

/* Fresh directory and environment; module not initialised. */
int conf_setup_bare(void **state);
/* Fresh directory, C_Initialize done; no token yet. */
int conf_setup_init(void **state);
/* Fresh directory, C_Initialize, token "conf" with SO and user PIN (E.slot). */
int conf_setup_token(void **state);
/* C_Finalize (whatever the state), reap a child, remove the directory. */
int conf_teardown(void **state);

#define CONF_TEST_BARE(f)  cmocka_unit_test_setup_teardown(f, conf_setup_bare, conf_teardown)
#define CONF_TEST_INIT(f)  cmocka_unit_test_setup_teardown(f, conf_setup_init, conf_teardown)
#define CONF_TEST_TOKEN(f) cmocka_unit_test_setup_teardown(f, conf_setup_token, conf_teardown)

/* ---- module helpers (assert on failure) --------------------------------- */

/* C_Initialize with CKF_OS_LOCKING_OK: several tests use threads, and with
 * NULL arguments a module may assume it is never called concurrently. */
CK_RV conf_initialize(void);
/* C_Finalize + conf_initialize, asserting both succeed. */
void conf_reinit(void);

/* 32-byte blank-padded copy of S (PKCS#11 label fields). */
void conf_pad(CK_UTF8CHAR out[32], const char *s);
/* Does the blank-padded FIELD of LEN bytes hold exactly S? */
int conf_padded_eq(const CK_UTF8CHAR *field, size_t len, const char *s);

/* All slots (C_GetSlotList(FALSE) with the sizing call first). Caller frees. */
CK_SLOT_ID *conf_slots(CK_ULONG *n);
/* The one slot whose token is not initialised (asserts exactly one). */
CK_SLOT_ID conf_free_slot(void);
/* The slot whose token label is LABEL; asserts it exists. */
CK_SLOT_ID conf_slot_by_label(const char *label);
/* A slot id no slot has. */
CK_SLOT_ID conf_invalid_slot(void);
/* C_InitToken on the free slot with LABEL and the SO PIN, C_InitPIN with the
 * user PIN; returns (and stores in E.slot) the token's slot found by label. */
CK_SLOT_ID conf_create_token(const char *label);

CK_SESSION_HANDLE conf_open(CK_FLAGS extra); /* on E.slot, CKF_SERIAL_SESSION | extra */
void conf_login_user(CK_SESSION_HANDLE h);
void conf_login_so(CK_SESSION_HANDLE h);
CK_ULONG conf_session_state(CK_SESSION_HANDLE h);
CK_FLAGS conf_token_flags(void);

/* Data object: CKA_TOKEN/CKA_PRIVATE as given, CKA_LABEL=label,
 * CKA_APPLICATION "p11conf", CKA_VALUE=label. Returns C_CreateObject's rv. */
CK_RV conf_create_data(CK_SESSION_HANDLE h, CK_BBOOL token, CK_BBOOL priv, const char *label,
                       CK_OBJECT_HANDLE *out);
/* C_FindObjectsInit/C_FindObjects (chunks of CHUNK)/C_FindObjectsFinal with
 * asserts; returns the count, stores up to MAX handles. */
CK_ULONG conf_find(CK_SESSION_HANDLE h, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out,
                   CK_ULONG max, CK_ULONG chunk);
CK_ULONG conf_find_label(CK_SESSION_HANDLE h, const char *label, CK_OBJECT_HANDLE *out);

/* ---- key material (OpenSSL, generated once per run) --------------------- */

struct conf_blob {
    unsigned char *p;
    CK_ULONG n;
};
struct conf_material {
    struct conf_blob rsa_n, rsa_e, rsa_d, rsa_p, rsa_q, rsa_dp, rsa_dq, rsa_qinv;
    struct conf_blob ec_params, ec_point, ec_value; /* P-256; point as DER OCTET STRING */
    struct conf_blob cert, cert_subject, cert_issuer, cert_serial; /* self-signed, EC key */
};
const struct conf_material *conf_material(void);
void conf_material_free(void);

/* ---- test families (one file each) -------------------------------------- */

struct conf_group {
    const char *name;
    const struct CMUnitTest *tests;
    size_t n;
};
struct conf_group conf_init_tests(void);
struct conf_group conf_slot_tests(void);
struct conf_group conf_session_tests(void);
struct conf_group conf_object_tests(void);
struct conf_group conf_process_tests(void);
struct conf_group conf_mech_tests(void);   /* t_mech.c */
struct conf_group conf_keygen_tests(void); /* t_keygen.c */
struct conf_group conf_kat_tests(void);    /* t_kat.c */
struct conf_group conf_secret_tests(void); /* t_secret.c */
struct conf_group conf_wrap_tests(void);   /* t_wrap.c */
struct conf_group conf_tmpl_tests(void);   /* t_tmpl.c */
struct conf_group conf_rollover_tests(void);

#endif /* EVERTOKEN_CONF_H */
