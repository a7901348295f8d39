#!/usr/bin/env bash
# Smoke test of the module core with real tools (pkcs11-tool, p11tool) and a
# small driver compiled here (threads, fork, a second process's write seen
# without re-initialising). The formal conformance suite is tests/module.
. "$(dirname "$0")/lib.sh"
need pkcs11-tool p11tool openssl cc pkg-config

P() { host pkcs11-tool --module "$MODULE" "$@"; }
SO=12345678
PIN=1234

# ---- an empty directory: one free slot holding an uninitialised token
out=$(P -L)
grep -q "Slot 0" <<<"$out" || die "no free slot 0: $out"
grep -qi "uninitialized" <<<"$out" || die "free slot token not uninitialised: $out"
ok "empty directory lists one free slot"

# ---- create the token in the free slot, then the user PIN
P --init-token --label smoke --so-pin "$SO" --slot 0 >/dev/null || die "init-token"
[ -f "$EVERTOKEN_DIR/token-0.db" ] || die "token file not created"
[ "$(stat -c %a "$EVERTOKEN_DIR")" = 700 ] || die "token dir not 0700"
[ "$(stat -c %a "$EVERTOKEN_DIR/token-0.db")" = 600 ] || die "token file not 0600"
out=$(P -L)
grep -q "smoke" <<<"$out" || die "label not listed: $out"
grep -q "Slot 1" <<<"$out" || die "no new free slot 1: $out"
ok "C_InitToken created token-0.db and a new free slot"

P --slot 0 --login --login-type so --so-pin "$SO" --init-pin --new-pin "$PIN" >/dev/null ||
    die "init-pin"
P -L | grep -qi "PIN initialized" || die "PIN initialized flag missing"
ok "C_InitPIN"

# ---- wrong PIN is counted and shows in the token flags
must_fail P --slot 0 --login --pin 0000 -O >/dev/null 2>&1
P -L | grep -qi "count low" || die "user PIN count low flag missing"
P --slot 0 --login --pin "$PIN" -O >/dev/null || die "login with the right PIN"
P -L | grep -qi "count low" && die "count low still set after a good login"
ok "PIN failure counter flags"

# ---- objects: a certificate written with login, listed without login
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/k.pem" \
    -out "$T/c.pem" -subj "/CN=smoke" -days 30 2>/dev/null
openssl x509 -in "$T/c.pem" -outform DER -out "$T/c.der"
# Deliberate deviation: token objects need a login even when public.
must_fail P --slot 0 --write-object "$T/c.der" --type cert --id 01 --label c1 >/dev/null 2>&1
P --slot 0 --login --pin "$PIN" --write-object "$T/c.der" --type cert --id 01 --label c1 \
    >/dev/null || die "write cert"
out=$(P --slot 0 -O)
grep -q "Certificate Object" <<<"$out" || die "cert not visible without login: $out"
grep -q "c1" <<<"$out" || die "cert label missing: $out"
ok "certificate written with login, visible without"

# ---- a private data object is invisible without login
P --slot 0 --login --pin "$PIN" --write-object "$T/c.der" --type data --label secret \
    --private >/dev/null || die "write private data object"
P --slot 0 -O | grep -q "secret" && die "private object visible without login"
P --slot 0 --login --pin "$PIN" -O | grep -q "secret" || die "private object not visible after login"
ok "private objects only after login"

# ---- p11tool sees the token and the certificate
export GNUTLS_PIN=$PIN
host p11tool --provider "$MODULE" --list-tokens | grep -q "smoke" || die "p11tool --list-tokens"
host p11tool --provider "$MODULE" --list-all-certs "pkcs11:token=smoke" | grep -q "c1" ||
    die "p11tool --list-all-certs"
ok "p11tool lists the token and its certificate"

# ---- delete
P --slot 0 --login --pin "$PIN" --delete-object --type cert --id 01 >/dev/null || die "delete cert"
P --slot 0 -O | grep -q "Certificate Object" && die "cert still listed after delete"
ok "C_DestroyObject"

# ---- C driver: threads, fork, cross-process change detection, error codes
cat >"$T/drv.c" <<'EOF'
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "p11.h"

static int fails;
#define EXPECT(call, want)                                                                   \
    do {                                                                                     \
        CK_RV r_ = (call);                                                                   \
        if (r_ != (CK_RV)(want)) {                                                           \
            printf("FAIL line %d: %s = 0x%lx, want 0x%lx\n", __LINE__, #call,              \
                   (unsigned long)r_, (unsigned long)(want));                                \
            fails++;                                                                         \
        }                                                                                    \
    } while (0)
#define CHECK(c)                                                                             \
    do {                                                                                     \
        if (!(c)) {                                                                          \
            printf("FAIL line %d: %s\n", __LINE__, #c);                                      \
            fails++;                                                                         \
        }                                                                                    \
    } while (0)

static CK_FUNCTION_LIST_PTR f;

static CK_ULONG count(CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls)
{
    CK_ATTRIBUTE t = {CKA_CLASS, &cls, sizeof(cls)};
    CK_OBJECT_HANDLE o[64];
    CK_ULONG n = 0;
    EXPECT(f->C_FindObjectsInit(h, &t, 1), CKR_OK);
    EXPECT(f->C_FindObjects(h, o, 64, &n), CKR_OK);
    EXPECT(f->C_FindObjectsFinal(h), CKR_OK);
    return n;
}

static void *worker(void *arg)
{
    CK_SESSION_HANDLE h;
    CK_BYTE b[16];
    CK_TOKEN_INFO ti;
    for (int i = 0; i < 100; i++) {
        if (f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h) != CKR_OK) {
            fails++;
            return NULL;
        }
        if (f->C_GenerateRandom(h, b, sizeof(b)) != CKR_OK || f->C_GetTokenInfo(0, &ti) != CKR_OK)
            fails++;
        count(h, CKO_CERTIFICATE);
        if (f->C_CloseSession(h) != CKR_OK)
            fails++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    void *dl = dlopen(argv[1], RTLD_NOW);
    CK_C_GetFunctionList gfl;
    CK_C_GetInterface gi;
    CK_INTERFACE_PTR iface;
    CK_VERSION v240 = {2, 40};
    CK_C_INITIALIZE_ARGS a;
    CK_SESSION_HANDLE h, ro;
    CK_SESSION_INFO si;
    CK_TOKEN_INFO ti;
    pthread_t th[4];
    int st;

    if (dl == NULL) {
        printf("dlopen: %s\n", dlerror());
        return 1;
    }
    *(void **)&gfl = dlsym(dl, "C_GetFunctionList");
    *(void **)&gi = dlsym(dl, "C_GetInterface");
    EXPECT(gfl(&f), CKR_OK);
    CHECK(f->version.major == 2 && f->version.minor == 40);
    /* The default interface is PKCS#11 3.0. */
    EXPECT(gi(NULL, NULL, &iface, 0), CKR_OK);
    CHECK(strcmp((char *)iface->pInterfaceName, "PKCS 11") == 0);
    CHECK(((CK_VERSION *)iface->pFunctionList)->major == 3);
    EXPECT(gi((CK_UTF8CHAR_PTR) "PKCS 11", &v240, &iface, 0), CKR_OK);
    CHECK(iface->pFunctionList == (void *)f);
    memset(&a, 0, sizeof(a));
    a.flags = CKF_OS_LOCKING_OK;
    EXPECT(f->C_Initialize(&a), CKR_OK);
    EXPECT(f->C_Initialize(&a), CKR_CRYPTOKI_ALREADY_INITIALIZED);
    EXPECT(f->C_GetTokenInfo(0, &ti), CKR_OK);
    CHECK(ti.flags & CKF_TOKEN_INITIALIZED);
    CHECK(memcmp(ti.model, "evertoken soft  ", 16) == 0);

    /* Another process writes a certificate; this one sees it at its next
     * search without re-initialising. */
    EXPECT(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &ro), CKR_OK);
    CHECK(count(ro, CKO_CERTIFICATE) == 0);
    CHECK(count(ro, CKO_PROFILE) == 1);
    CHECK(system(argv[2]) == 0);
    CHECK(count(ro, CKO_CERTIFICATE) == 1);

    /* Login rules. */
    EXPECT(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
    EXPECT(f->C_Login(h, CKU_SO, (CK_UTF8CHAR_PTR) "12345678", 8), CKR_SESSION_READ_ONLY_EXISTS);
    EXPECT(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_OK);
    EXPECT(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_USER_ALREADY_LOGGED_IN);
    EXPECT(f->C_GetSessionInfo(ro, &si), CKR_OK);
    CHECK(si.state == CKS_RO_USER_FUNCTIONS);
    CHECK(count(ro, CKO_DATA) == 1);
    EXPECT(f->C_Logout(h), CKR_OK);
    CHECK(count(ro, CKO_DATA) == 0);
    EXPECT(f->C_Logout(h), CKR_USER_NOT_LOGGED_IN);
    EXPECT(f->C_InitToken(0, (CK_UTF8CHAR_PTR) "12345678", 8, (CK_UTF8CHAR_PTR) "x"),
           CKR_SESSION_EXISTS);

    /* Threads. */
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, worker, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);

    /* Fork: the child must re-initialise and then works on its own state. */
    pid_t pid = fork();
    if (pid == 0) {
        int bad = 0;
        CK_SESSION_HANDLE c;
        bad += f->C_GetSessionInfo(h, &si) != CKR_CRYPTOKI_NOT_INITIALIZED;
        bad += f->C_Initialize(NULL) != CKR_OK;
        bad += f->C_GetSessionInfo(h, &si) != CKR_SESSION_HANDLE_INVALID;
        bad += f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &c) != CKR_OK;
        bad += count(c, CKO_CERTIFICATE) != 1;
        bad += f->C_Finalize(NULL) != CKR_OK;
        _exit(bad + fails);
    }
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT(f->C_GetSessionInfo(h, &si), CKR_OK);
    CHECK(count(ro, CKO_CERTIFICATE) == 1);
    EXPECT(f->C_Finalize(NULL), CKR_OK);
    EXPECT(f->C_GetSessionInfo(h, &si), CKR_CRYPTOKI_NOT_INITIALIZED);
    printf("driver: %d failure(s)\n", fails);
    return fails != 0;
}
EOF
cc -std=c11 -D_GNU_SOURCE -I"$EVERTOKEN_SOURCE_DIR/include/evertoken" $(pkg-config --cflags p11-kit-1) \
    -o "$T/drv" "$T/drv.c" -ldl -lpthread || die "driver does not compile"
writer="pkcs11-tool --module '$MODULE' --slot 0 --login --pin $PIN --write-object '$T/c.der'"
writer="$writer --type cert --id 02 --label c2 >/dev/null"
host "$T/drv" "$MODULE" "$writer" || die "driver"
ok "threads, fork, cross-process change detection, login rules"
