/*
 * r_tokenlock.c — the per-token lock (module/mod_int.h): a keystore write
 * stalled on token A delays nothing on token B, nor a session lookup on A.
 *
 * The program wraps sqlite3_step (link-time --wrap). Two tokens, A and B,
 * each with a logged-in session; B has an EC key pair. Then a thread
 * creates a token object on A, and the wrapper holds that write's INSERT on
 * A's file until the test releases it: the writer is inside A's keystore
 * transaction, holding A's token lock. While it is held, the main thread
 * signs on B (C_SignInit after the cache check window, so B's keystore is
 * consulted), finds B's objects, opens and closes a session on B, reads
 * B's token and session information and A's session information: every
 * call must return CKR_OK while the write is still held (the wrapper
 * counts the calls made in that state). Then the write is released and
 * must succeed, and the object is on A.
 *
 * With one process-wide lock held across the write, the first of those
 * calls would wait for the stalled write forever: a watchdog
 * (R_TOKENLOCK_WATCHDOG seconds, default 120) then fails the test instead
 * of letting it hang.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "rlib.h"

int __real_sqlite3_step(sqlite3_stmt *st);
int __wrap_sqlite3_step(sqlite3_stmt *st);

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static char file_a[512]; /* token A's file: only its INSERTs are held */
static int armed, held, released;

int
__wrap_sqlite3_step(sqlite3_stmt *st)
{
    int hold = 0;

    pthread_mutex_lock(&mu);
    if (armed) {
        const char *sql = sqlite3_sql(st);
        const char *file = sqlite3_db_filename(sqlite3_db_handle(st), "main");

        hold = sql != NULL && file != NULL && strncmp(sql, "INSERT INTO objects", 19) == 0 &&
               strcmp(file, file_a) == 0;
        if (hold) {
            armed = 0;
            held = 1;
            pthread_cond_broadcast(&cv);
            while (!released)
                pthread_cond_wait(&cv, &mu);
        }
    }
    pthread_mutex_unlock(&mu);
    return __real_sqlite3_step(st);
}

static void
watchdog(int sig)
{
    static const char msg[] = "r_tokenlock: FAIL: a call waited for the stalled write on "
                              "token A (no per-token lock?)\n";
    (void)sig;
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(1);
}

struct writer {
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h;
    CK_RV rv;
};

static void *
writer_main(void *arg)
{
    struct writer *w = arg;
    static const unsigned char val[] = "written while B signs";

    w->rv = r_create_data(w->s, "stalled", val, sizeof(val), 1, &w->h);
    return NULL;
}

static CK_OBJECT_HANDLE
ec_key(CK_SESSION_HANDLE s)
{
    CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_BBOOL t = CK_TRUE;
    CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &t, sizeof(t)},
                          {CKA_VERIFY, &t, sizeof(t)},
                          {CKA_EC_PARAMS, (void *)p256, sizeof(p256)}};
    CK_ATTRIBUTE priv[] = {
        {CKA_TOKEN, &t, sizeof(t)}, {CKA_PRIVATE, &t, sizeof(t)}, {CKA_SIGN, &t, sizeof(t)}};
    CK_OBJECT_HANDLE hpub, hpriv;

    R_CK(R->C_GenerateKeyPair(s, &m, pub, 3, priv, 3, &hpub, &hpriv), CKR_OK);
    return hpriv;
}

/* One of the calls that must not wait for token A: CKR_OK, made while A's
 * write is still held. */
static void
check(const char *what, CK_RV rv)
{
    int still;

    pthread_mutex_lock(&mu);
    still = held && !released;
    pthread_mutex_unlock(&mu);
    R_ASSERT(rv == CKR_OK, "%s during the stalled write -> %s", what, r_ckr(rv));
    R_ASSERT(still, "%s: the write was no longer held", what);
    fprintf(stderr, "r_tokenlock: %s while token A's write is held: ok\n", what);
}

int
main(void)
{
    char dir[256];
    CK_SLOT_ID a, b;
    CK_SESSION_HANDLE sa, sb, s2;
    CK_OBJECT_HANDLE key, hs[8];
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    CK_SESSION_INFO si;
    CK_TOKEN_INFO ti;
    unsigned char msg[32] = {1, 2, 3}, sig[128];
    CK_ULONG siglen = sizeof(sig);
    struct writer w;
    pthread_t th;
    long n;
    CK_RV rv;

    signal(SIGALRM, watchdog);
    r_setup(dir, "tokenlock");
    r_init();
    a = r_make_token();
    b = r_make_token();
    R_ASSERT(realpath(r_token_file(dir, a), file_a) != NULL, "realpath %s", r_token_file(dir, a));
    sa = r_session(a, R_USER_PIN);
    sb = r_session(b, R_USER_PIN);
    key = ec_key(sb);

    /* Past the window in which C_SignInit trusts B's cache unchecked. */
    usleep(600000);
    memset(&w, 0, sizeof(w));
    w.s = sa;
    pthread_mutex_lock(&mu);
    armed = 1;
    pthread_mutex_unlock(&mu);
    R_ASSERT(pthread_create(&th, NULL, writer_main, &w) == 0, "pthread_create");
    pthread_mutex_lock(&mu);
    while (!held)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);

    alarm((unsigned)r_env_long("R_TOKENLOCK_WATCHDOG", 120));
    rv = R->C_SignInit(sb, &m, key);
    if (rv == CKR_OK)
        rv = R->C_Sign(sb, msg, sizeof(msg), sig, &siglen);
    check("C_SignInit + C_Sign on token B", rv);
    n = r_find_data(sb, NULL, hs, 8, &rv);
    check("C_FindObjects on token B", n == 0 ? rv : CKR_GENERAL_ERROR);
    rv = R->C_OpenSession(b, CKF_SERIAL_SESSION, NULL, NULL, &s2);
    if (rv == CKR_OK)
        rv = R->C_CloseSession(s2);
    check("C_OpenSession + C_CloseSession on token B", rv);
    check("C_GetTokenInfo of token B", R->C_GetTokenInfo(b, &ti));
    check("C_GetSessionInfo on token B", R->C_GetSessionInfo(sb, &si));
    check("C_GetSessionInfo on token A", R->C_GetSessionInfo(sa, &si));
    alarm(0);

    pthread_mutex_lock(&mu);
    released = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    R_ASSERT(pthread_join(th, NULL) == 0, "pthread_join");
    R_ASSERT(w.rv == CKR_OK, "the held write on token A -> %s", r_ckr(w.rv));
    n = r_find_data(sa, "stalled", hs, 8, &rv);
    R_ASSERT(n == 1 && hs[0] == w.h, "token A: %ld objects 'stalled' (%s)", n, r_ckr(rv));
    R_CK(R->C_Finalize(NULL), CKR_OK);
    r_rm_rf(dir);
    fprintf(stderr, "r_tokenlock: ok\n");
    return 0;
}
