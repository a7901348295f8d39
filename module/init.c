/*
 * init.c — C_Initialize/C_Finalize/C_GetInfo, the global lock and the
 * module's readiness (mod_ready), the mutexes C_Initialize chose, fork
 * handling, and the per-token PIN-operation helpers built on them.
 * Lock order and what each lock guards: mod_int.h.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "mod_int.h"

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

/* Lock order (mod_int.h): op mutex, token lock, global lock. */
void
tok_pin_begin_relock(struct mod_token *t)
{
    t->busy++;
    t->pin_ops++;
    mod_unlock();
    mod_mutex_lock(t->op_mutex);
    mod_mutex_lock(t->lock);
    mod_lock();
}

void
tok_pin_end_inlock(struct mod_token *t)
{
    mod_mutex_unlock(t->lock);
    mod_mutex_unlock(t->op_mutex);
    t->pin_ops--;
    t->busy--;
}

void
tok_kdf_unlock(struct mod_token *t)
{
    mod_unlock();
    mod_mutex_unlock(t->lock);
}

void
tok_kdf_relock(struct mod_token *t)
{
    mod_mutex_lock(t->lock);
    mod_lock();
}

void
tok_lock_relock(struct mod_token *t)
{
    t->busy++;
    /* Free token lock, pthread locking: taken at once without releasing the
     * global lock (a try never waits, so the lock order is kept). */
    if (!mod_mx.app && pthread_mutex_trylock(t->lock) == 0)
        return;
    mod_unlock();
    mod_mutex_lock(t->lock);
    mod_lock();
}

void
tok_unlock_inlock(struct mod_token *t)
{
    mod_mutex_unlock(t->lock);
    t->busy--;
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
    mod_log_setup();
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

/* Section 5.4 leaves C_Finalize during other calls undefined; waiting for
 * threads in a PIN operation's KDF or in a signature avoids freeing under
 * them. Drops and retakes the global lock while it waits. */
static void
wait_idle_relock(void)
{
    while (any_busy_inlock()) {
        mod_unlock();
        usleep(1000);
        mod_lock();
    }
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
    wait_idle_relock();
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
CK_RV
mod_C_GetInfo_240(CK_INFO_PTR info)
{
    return get_info(info, 2, 40);
}

CK_RV
mod_C_GetInfo_30(CK_INFO_PTR info)
{
    return get_info(info, 3, 0);
}
