/*
 * rlib.c — see rlib.h.
 */
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "rlib.h"

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

CK_FUNCTION_LIST_PTR R;
void (*r_on_fail)(void);

#define R_MAX_CHILDREN 64
static pid_t children[R_MAX_CHILDREN];
static int nchildren;

void
r_fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "FAIL %s:%d (pid %d): ", file, line, (int)getpid());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (r_on_fail != NULL)
        r_on_fail();
    r_kill_children();
    exit(1);
}

const char *
r_fmt(const char *fmt, ...)
{
    static _Thread_local char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return buf;
}

const char *
r_ckr(CK_RV rv)
{
    static _Thread_local char buf[32];

    switch (rv) {
#define N(x)                                                                                       \
    case x:                                                                                        \
        return #x
        N(CKR_OK);
        N(CKR_HOST_MEMORY);
        N(CKR_GENERAL_ERROR);
        N(CKR_FUNCTION_FAILED);
        N(CKR_ARGUMENTS_BAD);
        N(CKR_ATTRIBUTE_READ_ONLY);
        N(CKR_ATTRIBUTE_TYPE_INVALID);
        N(CKR_ATTRIBUTE_VALUE_INVALID);
        N(CKR_DEVICE_ERROR);
        N(CKR_DEVICE_MEMORY);
        N(CKR_OBJECT_HANDLE_INVALID);
        N(CKR_PIN_INCORRECT);
        N(CKR_PIN_LOCKED);
        N(CKR_PIN_LEN_RANGE);
        N(CKR_SESSION_HANDLE_INVALID);
        N(CKR_SESSION_CLOSED);
        N(CKR_TEMPLATE_INCOMPLETE);
        N(CKR_TEMPLATE_INCONSISTENT);
        N(CKR_TOKEN_NOT_RECOGNIZED);
        N(CKR_TOKEN_NOT_PRESENT);
        N(CKR_USER_NOT_LOGGED_IN);
        N(CKR_USER_ALREADY_LOGGED_IN);
        N(CKR_USER_PIN_NOT_INITIALIZED);
        N(CKR_CRYPTOKI_NOT_INITIALIZED);
        N(CKR_SIGNATURE_INVALID);
        N(CKR_KEY_HANDLE_INVALID);
        N(CKR_OPERATION_ACTIVE);
        N(CKR_OPERATION_NOT_INITIALIZED);
        N(CKR_SLOT_ID_INVALID);
#undef N
    default:
        snprintf(buf, sizeof(buf), "CKR_0x%lx", (unsigned long)rv);
        return buf;
    }
}

void
r_setup(char dir[256], const char *name)
{
    const char *t = getenv("TMPDIR");
    char tokens[300];
    CK_RV rv;

    snprintf(dir, 256, "%s/et-%s.XXXXXX", t && *t ? t : "/tmp", name);
    if (mkdtemp(dir) == NULL)
        r_fail("mkdtemp %s: %s", dir, strerror(errno));
    snprintf(tokens, sizeof(tokens), "%s/tokens", dir);
    setenv("EVERTOKEN_DIR", tokens, 1);
    setenv("EVERTOKEN_KDF", "fast", 0);
    unsetenv("EVERTOKEN_CONF");
    rv = C_GetFunctionList(&R);
    if (rv != CKR_OK)
        r_fail("C_GetFunctionList -> %s", r_ckr(rv));
}

static int
rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void
r_rm_rf(const char *dir)
{
    if (getenv("R_KEEP") != NULL) {
        fprintf(stderr, "kept %s\n", dir);
        return;
    }
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

const char *
r_token_file(const char *dir, CK_SLOT_ID slot)
{
    static char buf[400];

    snprintf(buf, sizeof(buf), "%s/tokens/token-%lu.db", dir, (unsigned long)slot);
    return buf;
}

void
r_init(void)
{
    CK_C_INITIALIZE_ARGS a;

    memset(&a, 0, sizeof(a));
    a.flags = CKF_OS_LOCKING_OK;
    R_CK(R->C_Initialize(&a), CKR_OK);
}

CK_SLOT_ID
r_make_token(void)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    CK_TOKEN_INFO ti;
    CK_UTF8CHAR label[32];
    CK_SESSION_HANDLE s;

    /* The sizing call rescans the directory and offers the free slot. */
    R_CK(R->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
    R_ASSERT(n <= 64, "%lu slots", (unsigned long)n);
    R_CK(R->C_GetSlotList(CK_FALSE, slots, &n), CKR_OK);
    for (CK_ULONG i = 0; i < n; i++) {
        R_CK(R->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        if (ti.flags & CKF_TOKEN_INITIALIZED)
            continue;
        memset(label, ' ', sizeof(label));
        memcpy(label, R_LABEL, strlen(R_LABEL));
        R_CK(R->C_InitToken(slots[i], (CK_UTF8CHAR_PTR)R_SO_PIN, strlen(R_SO_PIN), label), CKR_OK);
        R_CK(R->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
             CKR_OK);
        R_CK(R->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)R_SO_PIN, strlen(R_SO_PIN)), CKR_OK);
        R_CK(R->C_InitPIN(s, (CK_UTF8CHAR_PTR)R_USER_PIN, strlen(R_USER_PIN)), CKR_OK);
        R_CK(R->C_Logout(s), CKR_OK);
        R_CK(R->C_CloseSession(s), CKR_OK);
        return slots[i];
    }
    r_fail("no free slot");
}

CK_SESSION_HANDLE
r_session(CK_SLOT_ID slot, const char *pin)
{
    CK_SESSION_HANDLE s;

    R_CK(R->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);
    if (pin != NULL) {
        CK_RV rv = R->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
            r_fail("C_Login -> %s", r_ckr(rv));
    }
    return s;
}

CK_RV
r_create_data(CK_SESSION_HANDLE s, const char *label, const void *val, size_t len, int priv,
              CK_OBJECT_HANDLE *h)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL t = CK_TRUE, p = priv ? CK_TRUE : CK_FALSE;
    CK_ATTRIBUTE a[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_TOKEN, &t, sizeof(t)},
        {CKA_PRIVATE, &p, sizeof(p)},   {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_VALUE, (void *)val, len},
    };

    return R->C_CreateObject(s, a, 5, h);
}

long
r_find_data(CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *out, size_t max, CK_RV *rv)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE a[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, (void *)label, label ? strlen(label) : 0},
    };
    CK_ULONG n = 0;
    CK_RV r;

    r = R->C_FindObjectsInit(s, a, label ? 2 : 1);
    if (r != CKR_OK) {
        *rv = r;
        return -1;
    }
    r = R->C_FindObjects(s, out, (CK_ULONG)max, &n);
    if (r != CKR_OK) {
        (void)R->C_FindObjectsFinal(s);
        *rv = r;
        return -1;
    }
    r = R->C_FindObjectsFinal(s);
    if (r != CKR_OK) {
        *rv = r;
        return -1;
    }
    *rv = CKR_OK;
    return (long)n;
}

CK_RV
r_get_value(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, void *buf, size_t *len)
{
    CK_ATTRIBUTE a = {CKA_VALUE, buf, (CK_ULONG)*len};
    CK_RV rv = R->C_GetAttributeValue(s, h, &a, 1);

    if (rv == CKR_OK)
        *len = a.ulValueLen;
    return rv;
}

uint64_t
r_rand(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ULL;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

void
r_fill(uint64_t *state, unsigned char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(r_rand(state) >> 24);
}

pid_t
r_spawn(void)
{
    pid_t p;

    fflush(NULL);
    p = fork();
    if (p < 0)
        r_fail("fork: %s", strerror(errno));
    if (p == 0) {
        nchildren = 0; /* a child does not own its siblings */
        return 0;
    }
    if (nchildren < R_MAX_CHILDREN)
        children[nchildren++] = p;
    return p;
}

int
r_wait_all(void)
{
    int failed = 0;

    for (int i = 0; i < nchildren; i++) {
        int st = 0;

        while (waitpid(children[i], &st, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "child %d: %s %d\n", (int)children[i],
                    WIFSIGNALED(st) ? "killed by signal" : "exit status",
                    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            failed++;
        }
    }
    nchildren = 0;
    return failed;
}

void
r_kill_children(void)
{
    for (int i = 0; i < nchildren; i++)
        kill(children[i], SIGKILL);
    for (int i = 0; i < nchildren; i++)
        while (waitpid(children[i], NULL, 0) < 0 && errno == EINTR)
            ;
    nchildren = 0;
}

static int
integrity_cb(void *ctx, int n, char **vals, char **cols)
{
    int *ok = ctx;

    (void)cols;
    if (n < 1 || vals[0] == NULL || strcmp(vals[0], "ok") != 0) {
        fprintf(stderr, "integrity_check: %s\n", n > 0 && vals[0] ? vals[0] : "(null)");
        *ok = 0;
    }
    return 0;
}

int
r_integrity_ok(const char *path)
{
    sqlite3 *db = NULL;
    int ok = 1, rc;
    char *msg = NULL;

    rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, 10000);
        rc = sqlite3_exec(db, "PRAGMA integrity_check", integrity_cb, &ok, &msg);
    }
    if (rc != SQLITE_OK) {
        fprintf(stderr, "integrity_check %s: %s\n", path, msg ? msg : sqlite3_errstr(rc));
        ok = 0;
    }
    sqlite3_free(msg);
    sqlite3_close(db);
    return ok;
}

long
r_env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    char *end;
    long n;

    if (v == NULL || *v == '\0')
        return dflt;
    n = strtol(v, &end, 10);
    return *end == '\0' ? n : dflt;
}

double
r_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
