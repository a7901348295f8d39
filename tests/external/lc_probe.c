/*
 * lc_probe.c — a small PKCS#11 client for t_login_cache.sh: the calls that
 * pkcs11-tool cannot make on purpose (C_Login with a NULL PIN after
 * C_Logout, CKU_CONTEXT_SPECIFIC without a PIN), each result printed so the
 * script can check it.
 *
 *   lc_probe MODULE LABEL state          pap=0|1 session=user|public
 *   lc_probe MODULE LABEL login-null     C_Logout if restored, C_Login(USER, NULL)
 *   lc_probe MODULE LABEL login-empty    the same with an empty PIN
 *   lc_probe MODULE LABEL relogin        new session logged in; C_Logout; state;
 *                                        another new session logged in again
 *   lc_probe MODULE LABEL wait-unlock
 *       a session opened while the token is locked ("before=public" printed
 *       at once); waits up to 30 s for C_GetSessionInfo to show the user
 *       state once another process ran `evertoken unlock`, reads the
 *       private keys, C_Logout, and the session stays public
 *   lc_probe MODULE LABEL login-twice PIN WRONG
 *       C_Login(PIN), C_Login(PIN) again, C_Login(WRONG): results printed
 *       (login_cache=none verifies the PIN even when already logged in)
 *   lc_probe MODULE LABEL always-auth PIN
 *       with the CKA_ALWAYS_AUTHENTICATE key labelled "aa": the restored login
 *       signs nothing without CKU_CONTEXT_SPECIFIC + the PIN
 *
 * Exit 0 when every step matched what the command expects, 1 otherwise.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "p11.h"

static CK_FUNCTION_LIST_PTR f;
static int bad;

static void
expect(const char *what, CK_RV got, CK_RV want)
{
    printf("%s=0x%lx%s\n", what, (unsigned long)got, got == want ? "" : " (UNEXPECTED)");
    if (got != want)
        bad = 1;
}

static CK_SLOT_ID
find_slot(const char *label)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    char l[33];

    if (f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
        exit(2);
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        size_t k = 32;

        if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        memcpy(l, ti.label, 32);
        while (k > 0 && l[k - 1] == ' ')
            k--;
        l[k] = '\0';
        if (strcmp(l, label) == 0)
            return slots[i];
    }
    fprintf(stderr, "no token %s\n", label);
    exit(2);
}

static int
is_user(CK_SESSION_HANDLE sh)
{
    CK_SESSION_INFO si;

    return f->C_GetSessionInfo(sh, &si) == CKR_OK &&
           (si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS);
}

static CK_ULONG
count_private_keys(CK_SESSION_HANDLE sh)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t = {CKA_CLASS, &cls, sizeof(cls)};
    CK_OBJECT_HANDLE h[64];
    CK_ULONG n = 0;

    if (f->C_FindObjectsInit(sh, &t, 1) != CKR_OK)
        return 0;
    (void)f->C_FindObjects(sh, h, 64, &n);
    (void)f->C_FindObjectsFinal(sh);
    return n;
}

static CK_SESSION_HANDLE
open_session(CK_SLOT_ID slot)
{
    CK_SESSION_HANDLE sh;
    CK_RV rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &sh);

    if (rv != CKR_OK) {
        fprintf(stderr, "C_OpenSession: 0x%lx\n", (unsigned long)rv);
        exit(2);
    }
    return sh;
}

static void
login_from_cache(CK_SLOT_ID slot, int null_pin)
{
    CK_SESSION_HANDLE sh = open_session(slot);
    CK_UTF8CHAR empty[1] = {0};

    if (is_user(sh))
        expect("logout", f->C_Logout(sh), CKR_OK);
    printf("private_before=%lu\n", (unsigned long)count_private_keys(sh));
    expect("login", f->C_Login(sh, CKU_USER, null_pin ? NULL : empty, 0), CKR_OK);
    printf("session=%s\n", is_user(sh) ? "user" : "public");
    printf("private=%lu\n", (unsigned long)count_private_keys(sh));
}

static void
relogin(CK_SLOT_ID slot)
{
    CK_SESSION_HANDLE a = open_session(slot), b;
    int first, after, second;

    first = is_user(a);
    expect("logout", f->C_Logout(a), CKR_OK);
    after = is_user(a);
    /* Only this process logged out: a new session restores from the cache. */
    b = open_session(slot);
    second = is_user(b);
    printf("first=%s after_logout=%s second=%s\n", first ? "user" : "public",
           after ? "user" : "public", second ? "user" : "public");
    if (!first || after || !second)
        bad = 1;
}

/* A browser that loaded the module before the unlock: its session turns to
 * the user state when it next asks (C_GetSessionInfo), without C_Login. */
static void
wait_unlock(CK_SLOT_ID slot)
{
    CK_SESSION_HANDLE sh = open_session(slot);
    struct timespec ts = {0, 100 * 1000 * 1000};
    int user = is_user(sh), tries = 0;

    printf("before=%s\n", user ? "user" : "public");
    fflush(stdout);
    if (user) {
        bad = 1;
        return;
    }
    while (!(user = is_user(sh)) && tries++ < 300)
        nanosleep(&ts, NULL);
    printf("after_unlock=%s private=%lu\n", user ? "user" : "public",
           (unsigned long)count_private_keys(sh));
    expect("logout", f->C_Logout(sh), user ? CKR_OK : CKR_USER_NOT_LOGGED_IN);
    /* This process logged out: asking again does not log it back in. */
    printf("after_logout=%s again=%s\n", is_user(sh) ? "user" : "public",
           is_user(sh) ? "user" : "public");
    if (!user || is_user(sh) || count_private_keys(sh) != 0)
        bad = 1;
}

static void
always_auth(CK_SLOT_ID slot, const char *pin)
{
    CK_SESSION_HANDLE sh = open_session(slot);
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, "aa", 2}};
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    CK_BYTE hash[32] = {1, 2, 3}, sig[256];
    CK_ULONG n = 0, siglen = sizeof(sig);
    CK_OBJECT_HANDLE key;
    CK_UTF8CHAR empty[1] = {0};

    printf("session=%s\n", is_user(sh) ? "user" : "public");
    if (!is_user(sh))
        bad = 1;
    if (f->C_FindObjectsInit(sh, t, 2) != CKR_OK || f->C_FindObjects(sh, &key, 1, &n) != CKR_OK ||
        n != 1) {
        printf("no key labelled aa\n");
        exit(1);
    }
    (void)f->C_FindObjectsFinal(sh);
    expect("sign_init", f->C_SignInit(sh, &m, key), CKR_OK);
    /* The cache never answers a context-specific login. */
    expect("ctx_null", f->C_Login(sh, CKU_CONTEXT_SPECIFIC, NULL, 0), CKR_ARGUMENTS_BAD);
    expect("ctx_empty", f->C_Login(sh, CKU_CONTEXT_SPECIFIC, empty, 0), CKR_PIN_LEN_RANGE);
    expect("sign_no_pin", f->C_Sign(sh, hash, sizeof(hash), sig, &siglen), CKR_USER_NOT_LOGGED_IN);
    expect("sign_init2", f->C_SignInit(sh, &m, key), CKR_OK);
    expect("ctx_pin",
           f->C_Login(sh, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin)),
           CKR_OK);
    siglen = sizeof(sig);
    expect("sign", f->C_Sign(sh, hash, sizeof(hash), sig, &siglen), CKR_OK);
}

int
main(int argc, char **argv)
{
    CK_C_GetFunctionList gfl;
    CK_TOKEN_INFO ti;
    CK_SLOT_ID slot;
    void *dl;

    if (argc < 4) {
        fprintf(stderr, "usage: lc_probe MODULE LABEL COMMAND [PIN]\n");
        return 2;
    }
    dl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        fprintf(stderr, "%s\n", dlerror());
        return 2;
    }
    *(void **)&gfl = dlsym(dl, "C_GetFunctionList");
    if (gfl == NULL || gfl(&f) != CKR_OK || f->C_Initialize(NULL) != CKR_OK)
        return 2;
    slot = find_slot(argv[2]);
    if (strcmp(argv[3], "state") == 0) {
        CK_SESSION_HANDLE sh;

        if (f->C_GetTokenInfo(slot, &ti) != CKR_OK)
            return 2;
        printf("pap=%d\n", (ti.flags & CKF_PROTECTED_AUTHENTICATION_PATH) ? 1 : 0);
        sh = open_session(slot);
        printf("session=%s\n", is_user(sh) ? "user" : "public");
        printf("private=%lu\n", (unsigned long)count_private_keys(sh));
    } else if (strcmp(argv[3], "login-null") == 0) {
        login_from_cache(slot, 1);
    } else if (strcmp(argv[3], "login-empty") == 0) {
        login_from_cache(slot, 0);
    } else if (strcmp(argv[3], "relogin") == 0) {
        relogin(slot);
    } else if (strcmp(argv[3], "wait-unlock") == 0) {
        wait_unlock(slot);
    } else if (strcmp(argv[3], "login-twice") == 0 && argc == 6) {
        CK_SESSION_HANDLE sh = open_session(slot);
        CK_UTF8CHAR_PTR pin = (CK_UTF8CHAR_PTR)argv[4], wrong = (CK_UTF8CHAR_PTR)argv[5];

        if (is_user(sh))
            (void)f->C_Logout(sh);
        printf("first=0x%lx\n",
               (unsigned long)f->C_Login(sh, CKU_USER, pin, (CK_ULONG)strlen(argv[4])));
        printf("again=0x%lx\n",
               (unsigned long)f->C_Login(sh, CKU_USER, pin, (CK_ULONG)strlen(argv[4])));
        printf("wrong=0x%lx\n",
               (unsigned long)f->C_Login(sh, CKU_USER, wrong, (CK_ULONG)strlen(argv[5])));
        printf("session=%s\n", is_user(sh) ? "user" : "public");
    } else if (strcmp(argv[3], "login-twice") == 0 && argc == 6) {
        CK_SESSION_HANDLE sh = open_session(slot);
        CK_UTF8CHAR_PTR pin = (CK_UTF8CHAR_PTR)argv[4], wrong = (CK_UTF8CHAR_PTR)argv[5];

        if (is_user(sh))
            (void)f->C_Logout(sh);
        printf("first=0x%lx\n",
               (unsigned long)f->C_Login(sh, CKU_USER, pin, (CK_ULONG)strlen(argv[4])));
        printf("again=0x%lx\n",
               (unsigned long)f->C_Login(sh, CKU_USER, pin, (CK_ULONG)strlen(argv[4])));
        printf("wrong=0x%lx\n",
               (unsigned long)f->C_Login(sh, CKU_USER, wrong, (CK_ULONG)strlen(argv[5])));
        printf("session=%s\n", is_user(sh) ? "user" : "public");
    } else if (strcmp(argv[3], "always-auth") == 0 && argc == 5) {
        always_auth(slot, argv[4]);
    } else {
        fprintf(stderr, "unknown command %s\n", argv[3]);
        return 2;
    }
    (void)f->C_Finalize(NULL);
    return bad ? 1 : 0;
}
