/*
 * r_fault.c — fault injection through the module API.
 *
 * Two kinds of fault, counted from the moment an operation starts:
 *   alloc  the Nth allocation fails: malloc/calloc/realloc/strdup and
 *          sodium_malloc called by the module and keystore (link-time
 *          --wrap), OpenSSL's allocations (CRYPTO_set_mem_functions) and
 *          SQLite's (SQLITE_CONFIG_MALLOC, lookaside off);
 *   step   the Nth sqlite3_step of the keystore fails with SQLITE_IOERR
 *          without running (--wrap=sqlite3_step).
 * For each operation — open (C_Initialize .. C_OpenSession), login, create
 * (a private and a public data object and an EC private key), destroy, PIN
 * change, sign — N runs from 1 until the operation succeeds without the
 * armed fault being reached. After every attempt the module is finalised
 * (faults off), initialised again and the token checked: every object
 * committed so far is there with its value, an operation that failed left
 * nothing behind and removed nothing, one that succeeded took effect, and
 * the PIN is the old or (after a successful change) the new one. A failed
 * attempt must return one of a few clean codes (never CKR_PIN_INCORRECT, never
 * CKR_OK with the effect missing). The sanitizer build also checks for leaks
 * over the whole run (LeakSanitizer at exit).
 *
 * R_FAULT_MAX (default 20000) bounds N per operation.
 */
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "rlib.h"

/* ---- the fault switch ---------------------------------------------------- */

enum fault_kind { F_ALLOC, F_STEP };
static enum fault_kind kind;
static long fail_at = -1; /* -1: disarmed */
static long counter;

/* Where the fault was injected (printed when the result is wrong). */
static void *fault_bt[24];
static int fault_nbt;

static int
should_fail(enum fault_kind k)
{
    if (fail_at >= 0 && k == kind && ++counter == fail_at) {
        fault_nbt = backtrace(fault_bt, 24);
        return 1;
    }
    return 0;
}

static void
print_fault_site(void)
{
    if (fault_nbt == 0)
        return;
    fprintf(stderr, "the fault was injected at:\n");
    backtrace_symbols_fd(fault_bt, fault_nbt, 2);
}

static void
arm(enum fault_kind k, long n)
{
    fault_nbt = 0;
    kind = k;
    counter = 0;
    fail_at = n;
}

/* Disarm; non-zero if the armed fault was reached. */
static int
disarm(void)
{
    int hit = fail_at >= 0 && counter >= fail_at;

    fail_at = -1;
    return hit;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__real_sodium_malloc(size_t n);
int __real_sqlite3_step(sqlite3_stmt *st);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
void *__wrap_sodium_malloc(size_t n);
int __wrap_sqlite3_step(sqlite3_stmt *st);

void *
__wrap_malloc(size_t n)
{
    return should_fail(F_ALLOC) ? NULL : __real_malloc(n);
}

void *
__wrap_calloc(size_t n, size_t m)
{
    return should_fail(F_ALLOC) ? NULL : __real_calloc(n, m);
}

void *
__wrap_realloc(void *p, size_t n)
{
    return should_fail(F_ALLOC) ? NULL : __real_realloc(p, n);
}

char *
__wrap_strdup(const char *s)
{
    return should_fail(F_ALLOC) ? NULL : __real_strdup(s);
}

void *
__wrap_sodium_malloc(size_t n)
{
    return should_fail(F_ALLOC) ? NULL : __real_sodium_malloc(n);
}

int
__wrap_sqlite3_step(sqlite3_stmt *st)
{
    return should_fail(F_STEP) ? SQLITE_IOERR : __real_sqlite3_step(st);
}

static void *
o_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return should_fail(F_ALLOC) ? NULL : __real_malloc(n);
}

static void *
o_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return should_fail(F_ALLOC) ? NULL : __real_realloc(p, n);
}

static void
o_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

static sqlite3_mem_methods sq_orig;

static void *
s_malloc(int n)
{
    return should_fail(F_ALLOC) ? NULL : sq_orig.xMalloc(n);
}

static void *
s_realloc(void *p, int n)
{
    return should_fail(F_ALLOC) ? NULL : sq_orig.xRealloc(p, n);
}

/* ---- the token model ----------------------------------------------------- */

#define MAXOBJ 64 /* live data objects; trim() keeps fewer */
struct obj {
    char label[32];
    unsigned char val[40];
    int priv;
    int live;
};
static struct obj objs[MAXOBJ];
static int nobjs;
static int next_label;
static int nkeys; /* EC private keys committed (labels ec-0 ..) */
static const char *pin = R_USER_PIN;
static const char *other_pin = "other-pin-5678";
static CK_SLOT_ID slot;
static uint64_t seed = 42;
static long attempts, failures, wrong_codes;
static long by_rv[4]; /* HOST_MEMORY, DEVICE_ERROR, GENERAL_ERROR/FUNCTION_FAILED, other clean */

static const unsigned char p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};

static CK_RV
create_ec(CK_SESSION_HANDLE s, const char *label)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    CK_BBOOL t = CK_TRUE;
    unsigned char d[32];
    CK_OBJECT_HANDLE h;
    CK_ATTRIBUTE a[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_SIGN, &t, sizeof(t)},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid)},
        {CKA_VALUE, d, sizeof(d)},
    };

    r_fill(&seed, d, sizeof(d));
    d[0] = 0x11; /* below the group order */
    return R->C_CreateObject(s, a, sizeof(a) / sizeof(a[0]), &h);
}

static int
clean_error(CK_RV rv)
{
    switch (rv) {
    case CKR_HOST_MEMORY:
        by_rv[0]++;
        return 1;
    case CKR_DEVICE_ERROR:
        by_rv[1]++;
        return 1;
    case CKR_GENERAL_ERROR:
    case CKR_FUNCTION_FAILED:
        by_rv[2]++;
        return 1;
    case CKR_DEVICE_MEMORY:
    case CKR_TOKEN_NOT_RECOGNIZED: /* open: the file could not be opened */
        by_rv[3]++;
        return 1;
    default:
        return 0;
    }
}

/* Faults off: initialise, log in with the PIN in force, check every object. */
static CK_SESSION_HANDLE
check_token(const char *what, long n)
{
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h[MAXOBJ + 8];
    CK_RV rv;
    long found;
    int live = 0;

    r_init();
    R_CK(R->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);
    rv = R->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    if (rv != CKR_OK)
        r_fail("%s, fault %ld: the PIN in force no longer works: %s", what, n, r_ckr(rv));
    found = r_find_data(s, NULL, h, MAXOBJ + 8, &rv);
    R_ASSERT(found >= 0, "%s, fault %ld: find -> %s", what, n, r_ckr(rv));
    for (int i = 0; i < nobjs; i++)
        live += objs[i].live;
    R_ASSERT(found == live, "%s, fault %ld: %ld data objects on the token, %d committed", what, n,
             found, live);
    for (long j = 0; j < found; j++) {
        char label[32];
        unsigned char val[64];
        CK_ATTRIBUTE a[2] = {{CKA_LABEL, label, sizeof(label) - 1}, {CKA_VALUE, val, sizeof(val)}};
        int i;

        R_CK(R->C_GetAttributeValue(s, h[j], a, 2), CKR_OK);
        label[a[0].ulValueLen] = '\0';
        for (i = 0; i < nobjs; i++)
            if (objs[i].live && strcmp(objs[i].label, label) == 0)
                break;
        R_ASSERT(i < nobjs, "%s, fault %ld: object %s on the token was never committed", what, n,
                 label);
        R_ASSERT(a[1].ulValueLen == sizeof(objs[i].val) &&
                     memcmp(val, objs[i].val, sizeof(objs[i].val)) == 0,
                 "%s, fault %ld: object %s changed", what, n, label);
    }
    {
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_ATTRIBUTE t = {CKA_CLASS, &cls, sizeof(cls)};
        CK_ULONG c = 0;

        R_CK(R->C_FindObjectsInit(s, &t, 1), CKR_OK);
        R_CK(R->C_FindObjects(s, h, MAXOBJ, &c), CKR_OK);
        R_CK(R->C_FindObjectsFinal(s), CKR_OK);
        R_ASSERT((int)c == nkeys, "%s, fault %ld: %lu keys on the token, %d committed", what, n,
                 (unsigned long)c, nkeys);
    }
    return s;
}

static void
finalize(void)
{
    R_CK(R->C_Finalize(NULL), CKR_OK);
}

/* One operation under a fault at N. Returns the first non-OK result (CKR_OK
 * if all succeeded) and applies the model when it succeeded. */
enum op { OP_OPEN, OP_LOGIN, OP_CREATE, OP_DESTROY, OP_PIN, OP_SIGN, OP_COUNT };
static const char *const op_name[OP_COUNT] = {"open",    "login",      "create",
                                              "destroy", "PIN change", "sign"};

static CK_RV
run_op(enum op op, enum fault_kind k, long n, int *hit)
{
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_RV rv = CKR_OK;
    int initialised = 0, victim = -1;
    struct obj a, b;
    char eclabel[32];

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    if (op != OP_OPEN) {
        /* The previous attempt's check verified the token. */
        r_init();
        s = r_session(slot, pin);
        initialised = 1;
        if (op == OP_LOGIN)
            R_CK(R->C_Logout(s), CKR_OK);
    }
    if (op == OP_DESTROY) {
        /* A fresh victim, committed before the fault is armed. */
        CK_OBJECT_HANDLE h;
        R_ASSERT(nobjs < MAXOBJ, "too many objects");
        victim = nobjs++;
        snprintf(objs[victim].label, sizeof(objs[victim].label), "obj-%d", next_label++);
        r_fill(&seed, objs[victim].val, sizeof(objs[victim].val));
        objs[victim].priv = victim & 1;
        R_CK(r_create_data(s, objs[victim].label, objs[victim].val, sizeof(objs[victim].val),
                           objs[victim].priv, &h),
             CKR_OK);
        objs[victim].live = 1;
    }
    if (op == OP_CREATE) {
        R_ASSERT(nobjs + 2 <= MAXOBJ, "too many objects");
        snprintf(a.label, sizeof(a.label), "obj-%d", next_label++);
        snprintf(b.label, sizeof(b.label), "obj-%d", next_label++);
        r_fill(&seed, a.val, sizeof(a.val));
        r_fill(&seed, b.val, sizeof(b.val));
        a.priv = 1;
        snprintf(eclabel, sizeof(eclabel), "ec-%d", nkeys);
    }

    arm(k, n);
    switch (op) {
    case OP_OPEN: {
        CK_SLOT_ID sl[16];
        CK_ULONG cnt = 0;
        CK_TOKEN_INFO ti;
        CK_C_INITIALIZE_ARGS ia;

        memset(&ia, 0, sizeof(ia));
        ia.flags = CKF_OS_LOCKING_OK;
        rv = R->C_Initialize(&ia);
        if (rv != CKR_OK)
            break;
        initialised = 1;
        rv = R->C_GetSlotList(CK_FALSE, NULL, &cnt);
        if (rv == CKR_OK) {
            cnt = 16;
            rv = R->C_GetSlotList(CK_FALSE, sl, &cnt);
        }
        if (rv == CKR_OK)
            rv = R->C_GetTokenInfo(slot, &ti);
        if (rv == CKR_OK)
            rv = R->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
        break;
    }
    case OP_LOGIN:
        rv = R->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
        break;
    case OP_CREATE: {
        CK_OBJECT_HANDLE h;
        int made = 0;

        rv = r_create_data(s, a.label, a.val, sizeof(a.val), a.priv, &h);
        if (rv == CKR_OK) {
            made = 1;
            rv = r_create_data(s, b.label, b.val, sizeof(b.val), b.priv, &h);
        }
        if (rv == CKR_OK) {
            made = 2;
            rv = create_ec(s, eclabel);
        }
        if (rv == CKR_OK)
            made = 3;
        /* What was created before the failure is committed. */
        if (made >= 1) {
            a.live = 1;
            objs[nobjs++] = a;
        }
        if (made >= 2) {
            b.live = 1;
            objs[nobjs++] = b;
        }
        if (made >= 3)
            nkeys++;
        break;
    }
    case OP_DESTROY: {
        CK_OBJECT_HANDLE one[2];
        long c = r_find_data(s, objs[victim].label, one, 2, &rv);

        if (c == 1)
            rv = R->C_DestroyObject(s, one[0]);
        else if (rv == CKR_OK)
            r_fail("destroy: victim not found before the fault");
        if (rv == CKR_OK)
            objs[victim].live = 0;
        break;
    }
    case OP_PIN:
        rv = R->C_SetPIN(s, (CK_UTF8CHAR_PTR)pin, strlen(pin), (CK_UTF8CHAR_PTR)other_pin,
                         strlen(other_pin));
        if (rv == CKR_OK) {
            const char *t = pin;
            pin = other_pin;
            other_pin = t;
        }
        break;
    case OP_SIGN: {
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_ATTRIBUTE t = {CKA_CLASS, &cls, sizeof(cls)};
        CK_OBJECT_HANDLE key;
        CK_ULONG c = 0, siglen = 128;
        CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
        unsigned char hash[32] = {1, 2, 3}, sig[128];

        rv = R->C_FindObjectsInit(s, &t, 1);
        if (rv == CKR_OK) {
            rv = R->C_FindObjects(s, &key, 1, &c);
            (void)R->C_FindObjectsFinal(s);
        }
        if (rv == CKR_OK && c != 1)
            r_fail("sign: no key");
        if (rv == CKR_OK)
            rv = R->C_SignInit(s, &m, key);
        if (rv == CKR_OK)
            rv = R->C_Sign(s, hash, sizeof(hash), sig, &siglen);
        break;
    }
    default:
        break;
    }
    *hit = disarm();
    if (initialised)
        finalize();
    return rv;
}

/* Faults off: keep the token small (destroy all but the 8 newest data
 * objects and compact the model). */
static void
trim(CK_SESSION_HANDLE s)
{
    int live = 0, j = 0;

    for (int i = 0; i < nobjs; i++)
        live += objs[i].live;
    for (int i = 0; i < nobjs && live > 8; i++) {
        CK_OBJECT_HANDLE one[2];
        CK_RV rv;

        if (!objs[i].live)
            continue;
        R_ASSERT(r_find_data(s, objs[i].label, one, 2, &rv) == 1, "trim: %s", objs[i].label);
        R_CK(R->C_DestroyObject(s, one[0]), CKR_OK);
        objs[i].live = 0;
        live--;
    }
    for (int i = 0; i < nobjs; i++)
        if (objs[i].live)
            objs[j++] = objs[i];
    nobjs = j;
    if (nkeys > 4) {
        /* Keys too: keep one (the sign operation uses the first found). */
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_ATTRIBUTE t = {CKA_CLASS, &cls, sizeof(cls)};
        CK_OBJECT_HANDLE h[MAXOBJ];
        CK_ULONG c = 0;

        R_CK(R->C_FindObjectsInit(s, &t, 1), CKR_OK);
        R_CK(R->C_FindObjects(s, h, MAXOBJ, &c), CKR_OK);
        R_CK(R->C_FindObjectsFinal(s), CKR_OK);
        for (CK_ULONG i = 1; i < c; i++)
            R_CK(R->C_DestroyObject(s, h[i]), CKR_OK);
        nkeys = 1;
    }
}

/*
 * Misleading codes found by this test in module/ and reported, not yet fixed
 * (docs/testing.md, "Findings"): counted and printed but not fatal unless
 * R_FAULT_STRICT=1. None at the moment: the EC import (obj_key.c) now tells
 * OpenSSL running out of memory from a refused key (CKR_HOST_MEMORY), and a
 * key OpenSSL imported without a size (obj_pkey.c) is CKR_HOST_MEMORY and not
 * cached, instead of CKR_KEY_SIZE_RANGE. Add (op, code) pairs here when a new
 * finding is reported.
 */
static int
known_wrong(enum op op, CK_RV rv)
{
    (void)op;
    (void)rv;
    return 0; /* with entries: 0 as well when R_FAULT_STRICT=1 */
}

static void
loop_op(enum op op, enum fault_kind k, long max)
{
    long n, known = 0;
    int hit = 1;
    long before = failures;

    for (n = 1; n <= max; n++) {
        CK_RV rv = run_op(op, k, n, &hit);

        attempts++;
        if (rv != CKR_OK) {
            failures++;
            if (!hit)
                r_fail("%s: %s without a fault injected", op_name[op], r_ckr(rv));
            if (!clean_error(rv) && known_wrong(op, rv)) {
                known++;
            } else if (!clean_error(rv)) {
                fprintf(stderr, "WRONG CODE: %s, %s fault %ld: returned %s\n", op_name[op],
                        k == F_ALLOC ? "allocation" : "step", n, r_ckr(rv));
                print_fault_site();
                wrong_codes++;
            }
        }
        /* The state must be what the model says, whatever happened. */
        trim(check_token(op_name[op], n));
        finalize();
        if (!hit && rv == CKR_OK)
            break;
    }
    R_ASSERT(n <= max, "%s: still failing after %ld faults", op_name[op], max);
    fprintf(stderr, "%-10s %-5s: %ld faults injected, %ld failed cleanly", op_name[op],
            k == F_ALLOC ? "alloc" : "step", n - 1, failures - before - known);
    if (known > 0)
        fprintf(stderr, ", %ld with a known misleading code", known);
    fputc('\n', stderr);
    R_ASSERT(n > 1, "%s: no fault was ever reached", op_name[op]);
}

static void
usage(void)
{
    fprintf(stderr, "usage: r_fault alloc|step open|login|create|destroy|pin|sign|all\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    char dir[256];
    sqlite3_mem_methods m;
    long max = r_env_long("R_FAULT_MAX", 20000);
    int k0 = F_ALLOC, k1 = F_STEP, op0 = 0, op1 = OP_COUNT - 1;
    static const char *const op_arg[OP_COUNT] = {"open",    "login", "create",
                                                 "destroy", "pin",   "sign"};

    if (argc == 3) {
        if (strcmp(argv[1], "alloc") == 0)
            k0 = k1 = F_ALLOC;
        else if (strcmp(argv[1], "step") == 0)
            k0 = k1 = F_STEP;
        else
            usage();
        if (strcmp(argv[2], "all") != 0) {
            for (op0 = 0; op0 < OP_COUNT && strcmp(argv[2], op_arg[op0]) != 0; op0++)
                ;
            if (op0 == OP_COUNT)
                usage();
            op1 = op0;
        }
    } else if (argc != 1) {
        usage();
    }
    /* backtrace() loads libgcc on first use: not under a fault. */
    fault_nbt = backtrace(fault_bt, 24);
    fault_nbt = 0;
    r_on_fail = print_fault_site;
    /* Before any OpenSSL or SQLite allocation. */
    if (!CRYPTO_set_mem_functions(o_malloc, o_realloc, o_free))
        r_fail("CRYPTO_set_mem_functions");
    if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &sq_orig) != SQLITE_OK)
        r_fail("SQLITE_CONFIG_GETMALLOC");
    m = sq_orig;
    m.xMalloc = s_malloc;
    m.xRealloc = s_realloc;
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &m) != SQLITE_OK ||
        sqlite3_config(SQLITE_CONFIG_LOOKASIDE, 0, 0) != SQLITE_OK)
        r_fail("SQLITE_CONFIG_MALLOC");

    /* Durability is not what is tested here: tmpfs makes the many commits
     * (fsync) cheap. R_FAULT_TMP overrides. */
    if (getenv("R_FAULT_TMP") != NULL)
        setenv("TMPDIR", getenv("R_FAULT_TMP"), 1);
    else if (access("/dev/shm", W_OK) == 0)
        setenv("TMPDIR", "/dev/shm", 1);
    r_setup(dir, "fault");
    r_init();
    slot = r_make_token();
    {
        /* Something to sign with and to keep intact from the start. */
        CK_SESSION_HANDLE s = r_session(slot, R_USER_PIN);
        R_CK(create_ec(s, "ec-0"), CKR_OK);
        nkeys = 1;
    }
    finalize();

    for (int k = k0; k <= k1; k++)
        for (int op = op0; op <= op1; op++)
            loop_op((enum op)op, (enum fault_kind)k, max);
    fprintf(stderr,
            "r_fault: %ld attempts, %ld clean failures (HOST_MEMORY %ld, DEVICE_ERROR %ld, "
            "GENERAL_ERROR/FUNCTION_FAILED %ld, other %ld)\n",
            attempts, failures, by_rv[0], by_rv[1], by_rv[2], by_rv[3]);
    r_rm_rf(dir);
    R_ASSERT(wrong_codes == 0, "%ld injected faults were reported with a misleading code",
             wrong_codes);
    return 0;
}
