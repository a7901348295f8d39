/*
 * r_brute.c — online PIN guessing through the module is bounded.
 *
 * 1. Restarts: wrong user PINs from several processes one after the other
 *    (each a fresh C_Initialize) add up; at the limit the *correct* PIN is
 *    refused with CKR_PIN_LOCKED, in yet another process.
 * 2. Concurrency: R_BRUTE_PROCS processes (default 6) start together and
 *    hammer wrong PINs until each sees CKR_PIN_LOCKED. The number of
 *    CKR_PIN_INCORRECT answers over all of them must be exactly the limit
 *    (10): a counter update lost under contention would give extra guesses.
 *    Nothing but CKR_PIN_INCORRECT / CKR_PIN_LOCKED may come back. Then the
 *    correct PIN is CKR_PIN_LOCKED, and the SO's C_InitPIN unlocks.
 * 3. KDF cost: on a token made with a real Argon2id cost (2 passes, 16 MiB),
 *    a wrong PIN takes at least 40% of one Argon2id run with that cost
 *    measured directly (best of 3 each; the margin absorbs a busy machine):
 *    the check is not short-circuited before the KDF.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "rlib.h"

#define LIMIT 10 /* KS_MAX_ATTEMPTS, the default */

static CK_RV
login_once(CK_SLOT_ID slot, const char *pin)
{
    CK_SESSION_HANDLE s;
    CK_RV rv;

    R_CK(R->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
    rv = R->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    if (rv == CKR_OK)
        R_CK(R->C_Logout(s), CKR_OK);
    R_CK(R->C_CloseSession(s), CKR_OK);
    return rv;
}

/* In a child: N wrong attempts, each must be CKR_PIN_INCORRECT. */
static void
child_wrong(CK_SLOT_ID slot, int n)
{
    if (r_spawn() != 0)
        return;
    r_init();
    for (int i = 0; i < n; i++)
        R_CK(login_once(slot, "wrong-pin-0000"), CKR_PIN_INCORRECT);
    R_CK(R->C_Finalize(NULL), CKR_OK);
    _exit(0);
}

/* In a child: LOGIN with PIN must give EXPECT. */
static void
child_expect(CK_SLOT_ID slot, const char *pin, CK_RV expect)
{
    if (r_spawn() != 0)
        return;
    r_init();
    R_CK(login_once(slot, pin), expect);
    R_CK(R->C_Finalize(NULL), CKR_OK);
    _exit(0);
}

static CK_FLAGS
token_flags(CK_SLOT_ID slot)
{
    CK_TOKEN_INFO ti;

    R_CK(R->C_GetTokenInfo(slot, &ti), CKR_OK);
    return ti.flags;
}

static void
test_restarts(CK_SLOT_ID slot)
{
    /* 4 + 4 + 1 wrong attempts in three processes: one left. */
    child_wrong(slot, 4);
    R_ASSERT(r_wait_all() == 0, "first process");
    child_wrong(slot, 4);
    R_ASSERT(r_wait_all() == 0, "second process");
    child_wrong(slot, 1);
    R_ASSERT(r_wait_all() == 0, "third process");
    R_ASSERT(token_flags(slot) & CKF_USER_PIN_FINAL_TRY, "one try left after 9 failures");
    child_wrong(slot, 1);
    R_ASSERT(r_wait_all() == 0, "fourth process");
    R_ASSERT(token_flags(slot) & CKF_USER_PIN_LOCKED, "locked after 10 failures");
    child_expect(slot, R_USER_PIN, CKR_PIN_LOCKED);
    R_ASSERT(r_wait_all() == 0, "correct PIN refused after the lockout, in a new process");
    R_CK(login_once(slot, R_USER_PIN), CKR_PIN_LOCKED);
    fprintf(stderr, "restarts: locked after %d failures in 4 processes\n", LIMIT);
}

static void
test_concurrent(CK_SLOT_ID slot, int nproc)
{
    int fds[2], go[2];
    long total = 0;

    R_ASSERT(pipe(fds) == 0 && pipe(go) == 0, "pipe");
    for (int i = 0; i < nproc; i++) {
        long incorrect = 0, locked = 0;
        char c;

        if (r_spawn() != 0)
            continue;
        close(fds[0]);
        close(go[1]);
        r_init();
        /* Start together: wait until the parent closes the go pipe. */
        while (read(go[0], &c, 1) < 0 && errno == EINTR)
            ;
        for (;;) {
            CK_RV rv = login_once(slot, "wrong-pin-0000");
            if (rv == CKR_PIN_INCORRECT) {
                incorrect++;
            } else if (rv == CKR_PIN_LOCKED) {
                if (++locked >= 3) /* more than once: it stays locked */
                    break;
            } else {
                r_fail("wrong PIN under contention -> %s", r_ckr(rv));
            }
        }
        R_CK(R->C_Finalize(NULL), CKR_OK);
        R_ASSERT(write(fds[1], &incorrect, sizeof(incorrect)) == sizeof(incorrect), "write");
        _exit(0);
    }
    close(fds[1]);
    close(go[0]);
    close(go[1]); /* go */
    for (;;) {
        long v;
        ssize_t n = read(fds[0], &v, sizeof(v));
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof(v))
            break;
        total += v;
    }
    close(fds[0]);
    R_ASSERT(r_wait_all() == 0, "a guessing process failed");
    fprintf(stderr, "concurrent: %d processes got %ld x CKR_PIN_INCORRECT in total (limit %d)\n",
            nproc, total, LIMIT);
    R_ASSERT(total <= LIMIT, "%ld wrong PINs were tried, more than the limit %d", total, LIMIT);
    R_ASSERT(total == LIMIT, "%ld wrong PINs counted, expected exactly %d", total, LIMIT);
    R_ASSERT(token_flags(slot) & CKF_USER_PIN_LOCKED, "token reports the lock");
    child_expect(slot, R_USER_PIN, CKR_PIN_LOCKED);
    R_ASSERT(r_wait_all() == 0, "correct PIN refused after the concurrent lockout");

    /* The SO unlocks by setting a new user PIN. */
    {
        CK_SESSION_HANDLE s = r_session(slot, NULL);
        R_CK(R->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)R_SO_PIN, strlen(R_SO_PIN)), CKR_OK);
        R_CK(R->C_InitPIN(s, (CK_UTF8CHAR_PTR)R_USER_PIN, strlen(R_USER_PIN)), CKR_OK);
        R_CK(R->C_Logout(s), CKR_OK);
        R_CK(R->C_CloseSession(s), CKR_OK);
    }
    R_CK(login_once(slot, R_USER_PIN), CKR_OK);
}

static void
test_kdf_cost(void)
{
    unsigned char key[32], salt[crypto_pwhash_SALTBYTES] = {0};
    const unsigned long long ops = 2, mem = 16u << 20;
    double t0, direct, wrong = 1e9;
    CK_SLOT_ID slot;

    /* The same cost as the token, measured directly (best of 3: the machine
     * may be busy; the margin below allows for that). */
    direct = 1e9;
    for (int i = 0; i < 3; i++) {
        t0 = r_now();
        R_ASSERT(crypto_pwhash(key, sizeof(key), "x", 1, salt, ops, mem,
                               crypto_pwhash_ALG_ARGON2ID13) == 0,
                 "crypto_pwhash");
        if (r_now() - t0 < direct)
            direct = r_now() - t0;
    }
    setenv("EVERTOKEN_KDF", "2:16777216", 1);
    r_init();
    slot = r_make_token();
    for (int i = 0; i < 3; i++) {
        t0 = r_now();
        R_CK(login_once(slot, "wrong-pin-0000"), CKR_PIN_INCORRECT);
        if (r_now() - t0 < wrong)
            wrong = r_now() - t0;
    }
    R_CK(R->C_Finalize(NULL), CKR_OK);
    setenv("EVERTOKEN_KDF", "fast", 1);
    fprintf(stderr, "kdf cost: Argon2id(2, 16 MiB) %.3f s, fastest wrong PIN %.3f s\n", direct,
            wrong);
    R_ASSERT(wrong >= 0.4 * direct, "a wrong PIN costs %.3f s, Argon2id alone %.3f s", wrong,
             direct);
}

int
main(void)
{
    char dir[256];
    CK_SLOT_ID a, b;
    int nproc = (int)r_env_long("R_BRUTE_PROCS", 6);

    r_setup(dir, "brute");
    R_ASSERT(sodium_init() >= 0, "sodium_init");
    R_ASSERT(nproc >= 2 && nproc <= 60, "R_BRUTE_PROCS between 2 and 60");
    r_init();
    a = r_make_token();
    b = r_make_token();
    /* Children initialise the module themselves; the parent keeps it
     * initialised only for token information (the forked copy is never used
     * by a child: each child calls C_Initialize, which starts fresh). */
    test_restarts(a);
    test_concurrent(b, nproc);
    R_CK(R->C_Finalize(NULL), CKR_OK);
    test_kdf_cost();
    r_rm_rf(dir);
    fprintf(stderr, "r_brute: ok\n");
    return 0;
}
