/*
 * entry.c — C_Initialize/C_Finalize, the global lock, fork handling, the
 * function lists (2.40 C_GetFunctionList; 3.0 C_GetInterfaceList and
 * C_GetInterface), the debug log and the keystore-to-CKR mapping.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "evertoken_ext.h"
#include "mod_int.h"

#define MOD_EXPORT __attribute__((visibility("default")))

struct mod_global mod_g;
CK_SESSION_HANDLE mod_next_session = 1;
CK_OBJECT_HANDLE mod_next_sobj = MOD_HANDLE_SOBJ_FIRST;

/*
 * Locking as C_Initialize chose it (PKCS#11 2.40 section 5.4, C_Initialize):
 * with CKF_OS_LOCKING_OK (or no mutex functions) the module uses pthread
 * mutexes; with the four mutex functions and no CKF_OS_LOCKING_OK it must
 * use the application's functions.
 */
static struct {
    CK_CREATEMUTEX create;
    CK_DESTROYMUTEX destroy;
    CK_LOCKMUTEX lock;
    CK_UNLOCKMUTEX unlock;
    int app; /* the application's functions are in use */
} mod_mx;
static void *mod_glock;
static int mod_debug;

/*
 * OpenSSL's secure heap: private key BIGNUMs (BN_secure_new: EC scalars,
 * RSA private parts) go to it only when one exists in the process, else to
 * the ordinary, dumpable heap. Unless the host already made one, the module
 * makes one of MOD_SECURE_HEAP bytes (mmap'd with guard pages, mlock'd when
 * RLIMIT_MEMLOCK allows, MADV_DONTDUMP, cleansed on free) at the first
 * C_Initialize. It is process-wide and stays until exit (OpenSSL cannot
 * drop a heap that may still hold the host's allocations).
 * EVERTOKEN_SECURE_HEAP=0 leaves OpenSSL as the host set it up
 * (docs/threat-model.md).
 */
#define MOD_SECURE_HEAP (4u << 20)

static void
secure_heap_init(void)
{
    const char *e = getenv("EVERTOKEN_SECURE_HEAP");
    int r;

    if ((e != NULL && strcmp(e, "0") == 0) || CRYPTO_secure_malloc_initialized())
        return;
    r = CRYPTO_secure_malloc_init(MOD_SECURE_HEAP, 16);
    if (r == 0)
        mod_log("no OpenSSL secure heap (CRYPTO_secure_malloc_init failed): private key "
                "numbers live in the ordinary heap");
    else if (r == 2)
        mod_log("OpenSSL secure heap made but not locked in memory (RLIMIT_MEMLOCK)");
}

/* mod_init_mutex (below) serialises C_Initialize and C_Finalize against each
 * other, which the global lock cannot do (it does not exist before
 * C_Initialize). */

static CK_RV
px_create(CK_VOID_PTR_PTR out)
{
    pthread_mutex_t *m = malloc(sizeof(*m));

    if (m == NULL)
        return CKR_HOST_MEMORY;
    if (pthread_mutex_init(m, NULL) != 0) {
        free(m);
        return CKR_CANT_LOCK;
    }
    *out = m;
    return CKR_OK;
}

static CK_RV
px_destroy(CK_VOID_PTR m)
{
    pthread_mutex_destroy(m);
    free(m);
    return CKR_OK;
}

static CK_RV
px_lock(CK_VOID_PTR m)
{
    return pthread_mutex_lock(m) == 0 ? CKR_OK : CKR_CANT_LOCK;
}

static CK_RV
px_unlock(CK_VOID_PTR m)
{
    return pthread_mutex_unlock(m) == 0 ? CKR_OK : CKR_MUTEX_NOT_LOCKED;
}

CK_RV
mod_mutex_new(void **out)
{
    *out = NULL;
    return mod_mx.create(out);
}

void
mod_mutex_free(void *m)
{
    if (m != NULL)
        (void)mod_mx.destroy(m);
}

void
mod_mutex_lock(void *m)
{
    /* A lock that fails is a broken application mutex or a corrupted
     * pthread mutex: nothing sensible can be done but log it. */
    if (mod_mx.lock(m) != CKR_OK)
        mod_log("mutex lock failed");
}

void
mod_mutex_unlock(void *m)
{
    if (mod_mx.unlock(m) != CKR_OK)
        mod_log("mutex unlock failed");
}

/* Set in a forked child by the atfork handler; cleared by C_Initialize.
 * Saves a getpid() system call (glibc no longer caches it) in every entry
 * point; without the handler (pthread_atfork failed) getpid() is used. */
static volatile int mod_in_child;
static int mod_atfork_ok;

int
mod_ready(void)
{
    /* A forked child inherits initialized = 1 but a state it must not use
     * (PKCS#11 2.40 section 6.7.1: the child must call C_Initialize). */
    if (!mod_g.initialized || mod_in_child)
        return 0;
    return mod_atfork_ok || mod_g.pid == getpid();
}

void
mod_lock(void)
{
    mod_mutex_lock(mod_glock);
}

void
mod_unlock(void)
{
    mod_mutex_unlock(mod_glock);
}

/*
 * Fork: the prepare handler takes the init mutex and the global lock so that
 * no thread is in the middle of C_Initialize/C_Finalize, of module
 * bookkeeping, or of a keystore call made under the lock when the address
 * space is copied; the child then finds the state consistent and can wipe the
 * parent's secrets in its copy. The global lock only with pthread locking: an
 * application's mutex functions may not work in a fork handler.
 */
static pthread_mutex_t mod_init_mutex = PTHREAD_MUTEX_INITIALIZER;
static int mod_fork_held;

static void
fork_prepare(void)
{
    pthread_mutex_lock(&mod_init_mutex);
    if (mod_ready() && !mod_mx.app && mod_glock != NULL) {
        mod_lock();
        mod_fork_held = 1;
    }
}

static void
fork_release(void)
{
    if (mod_fork_held) {
        mod_fork_held = 0;
        mod_unlock();
    }
    pthread_mutex_unlock(&mod_init_mutex);
}

static void
fork_child(void)
{
    mod_in_child = 1;
    fork_release();
}

static pthread_once_t mod_atfork_once = PTHREAD_ONCE_INIT;

static void
atfork_register(void)
{
    if (pthread_atfork(fork_prepare, fork_release, fork_child) != 0)
        mod_log("pthread_atfork failed; fork safety relies on C_Initialize only");
    else
        mod_atfork_ok = 1;
}

void
mod_log_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    if (!mod_debug)
        return;
    va_start(ap, fmt);
    fprintf(stderr, "evertoken[%ld] %s:%d: ", (long)getpid(), file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/*
 * The one mapping from keystore codes to CKR codes (documented in
 * docs/module.md). Chosen so that applications react sensibly: a transient
 * lock-out by another process (KS_E_BUSY) is CKR_FUNCTION_FAILED, which
 * applications retry or report, not CKR_DEVICE_ERROR, which NSS treats as a
 * removed token; damage and tampering are CKR_DEVICE_ERROR.
 */
CK_RV
mod_ks_ckr_at(ks_rv rv, const ks_token *ks, const char *what, const char *file, int line)
{
    CK_RV ck;

    switch (rv) {
    case KS_OK:
        return CKR_OK;
    case KS_E_ARGS:
        ck = CKR_ARGUMENTS_BAD;
        break;
    case KS_E_NOMEM:
        ck = CKR_HOST_MEMORY;
        break;
    case KS_E_IO:
    case KS_E_PERM:
    case KS_E_CORRUPT:
    case KS_E_TAMPERED:
    case KS_E_CRYPTO:
        ck = CKR_DEVICE_ERROR;
        break;
    case KS_E_VERSION:
        ck = CKR_TOKEN_NOT_RECOGNIZED;
        break;
    case KS_E_PIN_INCORRECT:
        ck = CKR_PIN_INCORRECT;
        break;
    case KS_E_PIN_LOCKED:
        ck = CKR_PIN_LOCKED;
        break;
    case KS_E_PIN_LEN:
        ck = CKR_PIN_LEN_RANGE;
        break;
    case KS_E_PIN_NOT_INITIALIZED:
        ck = CKR_USER_PIN_NOT_INITIALIZED;
        break;
    case KS_E_NOT_LOGGED_IN:
        ck = CKR_USER_NOT_LOGGED_IN;
        break;
    case KS_E_NOT_FOUND:
        ck = CKR_OBJECT_HANDLE_INVALID;
        break;
    case KS_E_BUSY:
    case KS_E_EXISTS:
        ck = CKR_FUNCTION_FAILED;
        break;
    case KS_E_FULL: /* the spec's "insufficient memory on the token" */
        ck = CKR_DEVICE_MEMORY;
        break;
    default:
        ck = CKR_GENERAL_ERROR;
        break;
    }
    mod_log_at(file, line, "%s: %s (%s) -> CKR 0x%lx", what, ks_strerror(rv),
               ks != NULL ? ks_last_error(ks) : ks_open_error(), (unsigned long)ck);
    return ck;
}

void
mod_pad(CK_UTF8CHAR *dst, size_t len, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    memset(dst, ' ', len);
    memcpy(dst, s, n < len ? n : len);
}

/* ---- C_Initialize / C_Finalize ----------------------------------------- */

/*
 * In a forked child: drop the parent's state without using its SQLite
 * connections (SQLite forbids carrying a connection across fork, and closing
 * one could checkpoint or unlink the parent's WAL). Secrets in the child's
 * copy are wiped where that is safe; the rest is abandoned.
 */
static void
forget_parent_state(void)
{
    session_forget_all();
    slot_free_all(1);
    free(mod_g.dir);
    /* The parent's global lock is abandoned, not destroyed: without the
     * atfork handler (or with an application's mutex) it may be held by a
     * thread that does not exist here, and destroying a held mutex is
     * undefined. */
    mod_glock = NULL;
    memset(&mod_g, 0, sizeof(mod_g));
}

CK_RV
mod_C_Initialize(CK_VOID_PTR init_args)
{
    CK_C_INITIALIZE_ARGS *a = init_args;
    const char *err = NULL;
    int use_app = 0;
    CK_RV rv = CKR_OK;

    if (a != NULL) {
        int n = (a->CreateMutex != NULL) + (a->DestroyMutex != NULL) + (a->LockMutex != NULL) +
                (a->UnlockMutex != NULL);
        if (a->pReserved != NULL)
            return CKR_ARGUMENTS_BAD;
        /* Section 5.4: all four function pointers, or none. */
        if (n != 0 && n != 4)
            return CKR_ARGUMENTS_BAD;
        /* With CKF_OS_LOCKING_OK the module may pick native locking; only
         * without it must the application's functions be used. */
        use_app = n == 4 && !(a->flags & CKF_OS_LOCKING_OK);
    }
    pthread_once(&mod_atfork_once, atfork_register);
    pthread_mutex_lock(&mod_init_mutex);
    if (mod_g.initialized) {
        if (mod_g.pid == getpid()) {
            rv = CKR_CRYPTOKI_ALREADY_INITIALIZED;
            goto out;
        }
        forget_parent_state();
    }
    mod_debug = getenv("EVERTOKEN_DEBUG") != NULL && strcmp(getenv("EVERTOKEN_DEBUG"), "0") != 0;
    secure_heap_init();
    if (use_app) {
        mod_mx.create = a->CreateMutex;
        mod_mx.destroy = a->DestroyMutex;
        mod_mx.lock = a->LockMutex;
        mod_mx.unlock = a->UnlockMutex;
        mod_mx.app = 1;
    } else {
        mod_mx.create = px_create;
        mod_mx.destroy = px_destroy;
        mod_mx.lock = px_lock;
        mod_mx.unlock = px_unlock;
        mod_mx.app = 0;
    }
    rv = mod_mutex_new(&mod_glock);
    if (rv != CKR_OK) {
        mod_glock = NULL;
        goto out;
    }
    memset(&mod_g, 0, sizeof(mod_g));
    mod_g.dir = ks_token_dir(&err);
    if (mod_g.dir == NULL) {
        /* A malformed config file: refuse rather than silently serving
         * another directory's tokens. */
        mod_log("no token directory: %s", err != NULL ? err : "?");
        mod_mutex_free(mod_glock);
        mod_glock = NULL;
        rv = CKR_FUNCTION_FAILED;
        goto out;
    }
    mod_g.pid = getpid();
    mod_g.initialized = 1;
    mod_in_child = 0;
    mod_log("initialised (token directory %s, %s locking)", mod_g.dir,
            mod_mx.app ? "application" : "pthread");
    mod_lock();
    if (slot_scan_inlock(1) != CKR_OK)
        mod_log("initial token scan failed; retried at C_GetSlotList");
    mod_unlock();
out:
    pthread_mutex_unlock(&mod_init_mutex);
    return rv;
}

/* Any token in use by a thread that released the lock (a login's KDF), or
 * any thread computing a cryptographic operation? */
static int
any_busy_inlock(void)
{
    if (mod_g.inflight > 0)
        return 1;
    for (struct mod_token *t = mod_g.tokens; t != NULL; t = t->next)
        if (t->busy > 0)
            return 1;
    return 0;
}

CK_RV
mod_C_Finalize(CK_VOID_PTR reserved)
{
    if (reserved != NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&mod_init_mutex);
    if (!mod_ready()) {
        pthread_mutex_unlock(&mod_init_mutex);
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    }
    mod_lock();
    /* Section 5.4 leaves C_Finalize during other calls undefined; waiting
     * for threads in a PIN operation's KDF or in a signature avoids freeing
     * under them. */
    while (any_busy_inlock()) {
        mod_unlock();
        usleep(1000);
        mod_lock();
    }
    session_close_all_inlock();
    slot_free_all(0);
    free(mod_g.dir);
    memset(&mod_g, 0, sizeof(mod_g));
    mod_unlock();
    mod_mutex_free(mod_glock);
    mod_glock = NULL;
    pthread_mutex_unlock(&mod_init_mutex);
    return CKR_OK;
}

static CK_RV
get_info(CK_INFO_PTR info, CK_BYTE major, CK_BYTE minor)
{
    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == NULL)
        return CKR_ARGUMENTS_BAD;
    memset(info, 0, sizeof(*info));
    info->cryptokiVersion.major = major;
    info->cryptokiVersion.minor = minor;
    mod_pad(info->manufacturerID, sizeof(info->manufacturerID), MOD_MANUFACTURER);
    info->flags = 0;
    mod_pad(info->libraryDescription, sizeof(info->libraryDescription), MOD_LIB_DESC);
    info->libraryVersion.major = MOD_VERSION_MAJOR;
    info->libraryVersion.minor = MOD_VERSION_MINOR;
    return CKR_OK;
}

/* Each function list reports its own version, so a 2.40 caller (some check
 * cryptokiVersion.major == 2) is not surprised by 3.0. */
static CK_RV
mod_C_GetInfo_240(CK_INFO_PTR info)
{
    return get_info(info, 2, 40);
}

static CK_RV
mod_C_GetInfo_30(CK_INFO_PTR info)
{
    return get_info(info, 3, 0);
}

/* ---- function lists and interfaces -------------------------------------- */

MOD_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);
MOD_EXPORT CK_RV C_GetInterfaceList(CK_INTERFACE_PTR list, CK_ULONG_PTR count);
MOD_EXPORT CK_RV C_GetInterface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version,
                                CK_INTERFACE_PTR_PTR iface, CK_FLAGS flags);

static CK_FUNCTION_LIST mod_list_240 = {
    .version = {2, 40},
    .C_Initialize = mod_C_Initialize,
    .C_Finalize = mod_C_Finalize,
    .C_GetInfo = mod_C_GetInfo_240,
    .C_GetFunctionList = C_GetFunctionList,
    .C_GetSlotList = mod_C_GetSlotList,
    .C_GetSlotInfo = mod_C_GetSlotInfo,
    .C_GetTokenInfo = mod_C_GetTokenInfo,
    .C_GetMechanismList = mod_C_GetMechanismList,
    .C_GetMechanismInfo = mod_C_GetMechanismInfo,
    .C_InitToken = mod_C_InitToken,
    .C_InitPIN = mod_C_InitPIN,
    .C_SetPIN = mod_C_SetPIN,
    .C_OpenSession = mod_C_OpenSession,
    .C_CloseSession = mod_C_CloseSession,
    .C_CloseAllSessions = mod_C_CloseAllSessions,
    .C_GetSessionInfo = mod_C_GetSessionInfo,
    .C_GetOperationState = mod_C_GetOperationState,
    .C_SetOperationState = mod_C_SetOperationState,
    .C_Login = mod_C_Login,
    .C_Logout = mod_C_Logout,
    .C_CreateObject = mod_C_CreateObject,
    .C_CopyObject = mod_C_CopyObject,
    .C_DestroyObject = mod_C_DestroyObject,
    .C_GetObjectSize = mod_C_GetObjectSize,
    .C_GetAttributeValue = mod_C_GetAttributeValue,
    .C_SetAttributeValue = mod_C_SetAttributeValue,
    .C_FindObjectsInit = mod_C_FindObjectsInit,
    .C_FindObjects = mod_C_FindObjects,
    .C_FindObjectsFinal = mod_C_FindObjectsFinal,
    .C_EncryptInit = mod_C_EncryptInit,
    .C_Encrypt = mod_C_Encrypt,
    .C_EncryptUpdate = mod_C_EncryptUpdate,
    .C_EncryptFinal = mod_C_EncryptFinal,
    .C_DecryptInit = mod_C_DecryptInit,
    .C_Decrypt = mod_C_Decrypt,
    .C_DecryptUpdate = mod_C_DecryptUpdate,
    .C_DecryptFinal = mod_C_DecryptFinal,
    .C_DigestInit = mod_C_DigestInit,
    .C_Digest = mod_C_Digest,
    .C_DigestUpdate = mod_C_DigestUpdate,
    .C_DigestKey = mod_C_DigestKey,
    .C_DigestFinal = mod_C_DigestFinal,
    .C_SignInit = mod_C_SignInit,
    .C_Sign = mod_C_Sign,
    .C_SignUpdate = mod_C_SignUpdate,
    .C_SignFinal = mod_C_SignFinal,
    .C_SignRecoverInit = mod_C_SignRecoverInit,
    .C_SignRecover = mod_C_SignRecover,
    .C_VerifyInit = mod_C_VerifyInit,
    .C_Verify = mod_C_Verify,
    .C_VerifyUpdate = mod_C_VerifyUpdate,
    .C_VerifyFinal = mod_C_VerifyFinal,
    .C_VerifyRecoverInit = mod_C_VerifyRecoverInit,
    .C_VerifyRecover = mod_C_VerifyRecover,
    .C_DigestEncryptUpdate = mod_C_DigestEncryptUpdate,
    .C_DecryptDigestUpdate = mod_C_DecryptDigestUpdate,
    .C_SignEncryptUpdate = mod_C_SignEncryptUpdate,
    .C_DecryptVerifyUpdate = mod_C_DecryptVerifyUpdate,
    .C_GenerateKey = mod_C_GenerateKey,
    .C_GenerateKeyPair = mod_C_GenerateKeyPair,
    .C_WrapKey = mod_C_WrapKey,
    .C_UnwrapKey = mod_C_UnwrapKey,
    .C_DeriveKey = mod_C_DeriveKey,
    .C_SeedRandom = mod_C_SeedRandom,
    .C_GenerateRandom = mod_C_GenerateRandom,
    .C_GetFunctionStatus = mod_C_GetFunctionStatus,
    .C_CancelFunction = mod_C_CancelFunction,
    .C_WaitForSlotEvent = mod_C_WaitForSlotEvent,
};

static CK_FUNCTION_LIST_3_0 mod_list_30 = {
    .version = {3, 0},
    .C_Initialize = mod_C_Initialize,
    .C_Finalize = mod_C_Finalize,
    .C_GetInfo = mod_C_GetInfo_30,
    .C_GetFunctionList = C_GetFunctionList,
    .C_GetSlotList = mod_C_GetSlotList,
    .C_GetSlotInfo = mod_C_GetSlotInfo,
    .C_GetTokenInfo = mod_C_GetTokenInfo,
    .C_GetMechanismList = mod_C_GetMechanismList,
    .C_GetMechanismInfo = mod_C_GetMechanismInfo,
    .C_InitToken = mod_C_InitToken,
    .C_InitPIN = mod_C_InitPIN,
    .C_SetPIN = mod_C_SetPIN,
    .C_OpenSession = mod_C_OpenSession,
    .C_CloseSession = mod_C_CloseSession,
    .C_CloseAllSessions = mod_C_CloseAllSessions,
    .C_GetSessionInfo = mod_C_GetSessionInfo,
    .C_GetOperationState = mod_C_GetOperationState,
    .C_SetOperationState = mod_C_SetOperationState,
    .C_Login = mod_C_Login,
    .C_Logout = mod_C_Logout,
    .C_CreateObject = mod_C_CreateObject,
    .C_CopyObject = mod_C_CopyObject,
    .C_DestroyObject = mod_C_DestroyObject,
    .C_GetObjectSize = mod_C_GetObjectSize,
    .C_GetAttributeValue = mod_C_GetAttributeValue,
    .C_SetAttributeValue = mod_C_SetAttributeValue,
    .C_FindObjectsInit = mod_C_FindObjectsInit,
    .C_FindObjects = mod_C_FindObjects,
    .C_FindObjectsFinal = mod_C_FindObjectsFinal,
    .C_EncryptInit = mod_C_EncryptInit,
    .C_Encrypt = mod_C_Encrypt,
    .C_EncryptUpdate = mod_C_EncryptUpdate,
    .C_EncryptFinal = mod_C_EncryptFinal,
    .C_DecryptInit = mod_C_DecryptInit,
    .C_Decrypt = mod_C_Decrypt,
    .C_DecryptUpdate = mod_C_DecryptUpdate,
    .C_DecryptFinal = mod_C_DecryptFinal,
    .C_DigestInit = mod_C_DigestInit,
    .C_Digest = mod_C_Digest,
    .C_DigestUpdate = mod_C_DigestUpdate,
    .C_DigestKey = mod_C_DigestKey,
    .C_DigestFinal = mod_C_DigestFinal,
    .C_SignInit = mod_C_SignInit,
    .C_Sign = mod_C_Sign,
    .C_SignUpdate = mod_C_SignUpdate,
    .C_SignFinal = mod_C_SignFinal,
    .C_SignRecoverInit = mod_C_SignRecoverInit,
    .C_SignRecover = mod_C_SignRecover,
    .C_VerifyInit = mod_C_VerifyInit,
    .C_Verify = mod_C_Verify,
    .C_VerifyUpdate = mod_C_VerifyUpdate,
    .C_VerifyFinal = mod_C_VerifyFinal,
    .C_VerifyRecoverInit = mod_C_VerifyRecoverInit,
    .C_VerifyRecover = mod_C_VerifyRecover,
    .C_DigestEncryptUpdate = mod_C_DigestEncryptUpdate,
    .C_DecryptDigestUpdate = mod_C_DecryptDigestUpdate,
    .C_SignEncryptUpdate = mod_C_SignEncryptUpdate,
    .C_DecryptVerifyUpdate = mod_C_DecryptVerifyUpdate,
    .C_GenerateKey = mod_C_GenerateKey,
    .C_GenerateKeyPair = mod_C_GenerateKeyPair,
    .C_WrapKey = mod_C_WrapKey,
    .C_UnwrapKey = mod_C_UnwrapKey,
    .C_DeriveKey = mod_C_DeriveKey,
    .C_MessageEncryptInit = mod_C_MessageEncryptInit,
    .C_EncryptMessage = mod_C_EncryptMessage,
    .C_EncryptMessageBegin = mod_C_EncryptMessageBegin,
    .C_EncryptMessageNext = mod_C_EncryptMessageNext,
    .C_MessageEncryptFinal = mod_C_MessageEncryptFinal,
    .C_MessageDecryptInit = mod_C_MessageDecryptInit,
    .C_DecryptMessage = mod_C_DecryptMessage,
    .C_DecryptMessageBegin = mod_C_DecryptMessageBegin,
    .C_DecryptMessageNext = mod_C_DecryptMessageNext,
    .C_MessageDecryptFinal = mod_C_MessageDecryptFinal,
    .C_MessageSignInit = mod_C_MessageSignInit,
    .C_SignMessage = mod_C_SignMessage,
    .C_SignMessageBegin = mod_C_SignMessageBegin,
    .C_SignMessageNext = mod_C_SignMessageNext,
    .C_MessageSignFinal = mod_C_MessageSignFinal,
    .C_MessageVerifyInit = mod_C_MessageVerifyInit,
    .C_VerifyMessage = mod_C_VerifyMessage,
    .C_VerifyMessageBegin = mod_C_VerifyMessageBegin,
    .C_VerifyMessageNext = mod_C_VerifyMessageNext,
    .C_MessageVerifyFinal = mod_C_MessageVerifyFinal,
    .C_SeedRandom = mod_C_SeedRandom,
    .C_GenerateRandom = mod_C_GenerateRandom,
    .C_GetFunctionStatus = mod_C_GetFunctionStatus,
    .C_CancelFunction = mod_C_CancelFunction,
    .C_WaitForSlotEvent = mod_C_WaitForSlotEvent,
    .C_GetInterfaceList = C_GetInterfaceList,
    .C_GetInterface = C_GetInterface,
    .C_LoginUser = mod_C_LoginUser,
    .C_SessionCancel = mod_C_SessionCancel,
};

/* The default (first) interface is 3.0; the 2.40 list is offered too, and
 * the vendor interface "Vendor evertoken". The
 * flags are 0: not CKF_INTERFACE_FORK_SAFE, a child must call C_Initialize. */
static CK_INTERFACE mod_ifaces[] = {
    {(CK_UTF8CHAR_PTR) "PKCS 11", &mod_list_30, 0},
    {(CK_UTF8CHAR_PTR) "PKCS 11", &mod_list_240, 0},
    /* Settings and the login cache (evertoken_ext.h, docs/module.md). The
     * list is never written through this pointer. */
    {(CK_UTF8CHAR_PTR)ET_VENDOR_INTERFACE, (CK_VOID_PTR)(uintptr_t)&mod_ext_list, 0},
};
#define MOD_NIFACES (sizeof(mod_ifaces) / sizeof(mod_ifaces[0]))

MOD_EXPORT CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    if (list == NULL)
        return CKR_ARGUMENTS_BAD;
    *list = &mod_list_240;
    return CKR_OK;
}

/* PKCS#11 3.0 section 5.4.3; usable before C_Initialize. */
MOD_EXPORT CK_RV
C_GetInterfaceList(CK_INTERFACE_PTR list, CK_ULONG_PTR count)
{
    if (count == NULL)
        return CKR_ARGUMENTS_BAD;
    if (list == NULL) {
        *count = MOD_NIFACES;
        return CKR_OK;
    }
    if (*count < MOD_NIFACES) {
        *count = MOD_NIFACES;
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(list, mod_ifaces, sizeof(mod_ifaces));
    *count = MOD_NIFACES;
    return CKR_OK;
}

/* PKCS#11 3.0 section 5.4.4: NULL name means the default interface; a
 * version or flags that no interface has is CKR_ARGUMENTS_BAD. */
MOD_EXPORT CK_RV
C_GetInterface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version, CK_INTERFACE_PTR_PTR iface,
               CK_FLAGS flags)
{
    if (iface == NULL)
        return CKR_ARGUMENTS_BAD;
    for (size_t i = 0; i < MOD_NIFACES; i++) {
        const CK_VERSION *v = mod_ifaces[i].pFunctionList; /* version is first */
        if (name != NULL &&
            strcmp((const char *)name, (const char *)mod_ifaces[i].pInterfaceName) != 0)
            continue;
        if (version != NULL && (version->major != v->major || version->minor != v->minor))
            continue;
        if ((flags & mod_ifaces[i].flags) != flags)
            continue;
        *iface = &mod_ifaces[i];
        return CKR_OK;
    }
    return CKR_ARGUMENTS_BAD;
}
