/*
 * ksbench_rollover.c — what a credential rollover costs in the keystore as
 * the token grows (issue 17; docs/performance.md, "The rollover at
 * scale"). Builds a token of N objects (half private, each with its own
 * CKA_ID and label) plus a credential's private key, reopens it, logs in
 * and times, once each: ks_list_inactive (nothing inactive),
 * ks_rollover_discard (nothing pending), ks_rollover_commit (one pending
 * key, one active key, a new certificate) and ks_purge_retired (the retired
 * key due). No timing is asserted anywhere; the smoke test (CTest
 * bench.ksrollover) only checks that every step succeeds.
 *
 *   ksbench_rollover DIR N     DIR: an existing directory (a private
 *                              temporary directory is made inside it)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "keystore.h"

#define SO_PIN   "bench-so-pin"
#define USER_PIN "bench-user-pin"

static double
now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int
count_cb(void *ctx, const ks_inactive *o)
{
    (void)o;
    (*(unsigned *)ctx)++;
    return 0;
}

static int
fail(const char *what, ks_rv rv, const ks_token *t)
{
    fprintf(stderr, "ksbench_rollover: %s: %d (%s)\n", what, (int)rv, ks_last_error(t));
    return 1;
}

/* The token at PATH: N objects and the credential "cred"'s private key. */
static int
build(const char *path, long n)
{
    ks_kdf_params kdf = {crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN};
    unsigned char cls[8] = {3};
    ks_attr k[3] = {
        {0, 8, cls}, {3, 3, (unsigned char *)"key"}, {0x102, 4, (unsigned char *)"cred"}};
    ks_token *t = NULL;
    char lab[32];
    int64_t id;
    ks_rv rv;

    if ((rv = ks_create(path, "bench", (const unsigned char *)SO_PIN, strlen(SO_PIN), &kdf, &t)) !=
            KS_OK ||
        (rv = ks_login(t, KS_SO, (const unsigned char *)SO_PIN, strlen(SO_PIN))) != KS_OK ||
        (rv = ks_init_user_pin(t, (const unsigned char *)USER_PIN, strlen(USER_PIN))) != KS_OK)
        return fail("creating the token", rv, t);
    ks_logout(t);
    if ((rv = ks_login(t, KS_USER, (const unsigned char *)USER_PIN, strlen(USER_PIN))) != KS_OK)
        return fail("login", rv, t);
    for (long i = 0; i < n; i++) {
        ks_attr a[3] = {
            {0, 8, cls}, {3, 0, (unsigned char *)lab}, {0x102, 0, (unsigned char *)lab}};

        snprintf(lab, sizeof(lab), "obj-%ld", i);
        a[1].len = a[2].len = strlen(lab);
        if ((rv = ks_object_create(t, (int)(i % 2), a, 3, &id)) != KS_OK)
            return fail("creating objects", rv, t);
    }
    if ((rv = ks_object_create(t, 1, k, 3, &id)) != KS_OK)
        return fail("creating the credential", rv, t);
    ks_close(t);
    return 0;
}

static int
measure(const char *path, long n)
{
    static const unsigned char cred[] = "cred";
    unsigned char cls[8] = {3}, cc[8] = {1};
    ks_attr k[3] = {
        {0, 8, cls}, {3, 3, (unsigned char *)"key"}, {0x102, 4, (unsigned char *)"cred"}};
    ks_attr c[2] = {{0, 8, cc}, {0x11, 4, (unsigned char *)"cert"}};
    ks_token *t = NULL;
    unsigned cnt = 0, u = 0;
    int64_t id;
    double t0;
    ks_rv rv;

    if ((rv = ks_open(path, &t)) != KS_OK ||
        (rv = ks_login(t, KS_USER, (const unsigned char *)USER_PIN, strlen(USER_PIN))) != KS_OK)
        return fail("reopening", rv, t);
    t0 = now();
    if ((rv = ks_list_inactive(t, count_cb, &cnt, NULL)) != KS_OK)
        return fail("ks_list_inactive", rv, t);
    printf("%ld objects: ks_list_inactive (none)       %8.3f ms\n", n, (now() - t0) * 1e3);
    t0 = now();
    if ((rv = ks_rollover_discard(t, cred, 4, &u)) != KS_OK)
        return fail("ks_rollover_discard", rv, t);
    printf("%ld objects: ks_rollover_discard (none)    %8.3f ms\n", n, (now() - t0) * 1e3);
    if ((rv = ks_object_create_pending(t, 1, k, 3, cred, 4, &id)) != KS_OK)
        return fail("ks_object_create_pending", rv, t);
    t0 = now();
    if ((rv = ks_rollover_commit(t, cred, 4, c, 2, 1000, &id)) != KS_OK)
        return fail("ks_rollover_commit", rv, t);
    printf("%ld objects: ks_rollover_commit            %8.3f ms\n", n, (now() - t0) * 1e3);
    t0 = now();
    if ((rv = ks_purge_retired(t, 5000, 0, &u)) != KS_OK || u != 1)
        return fail("ks_purge_retired (one due)", rv, t);
    printf("%ld objects: ks_purge_retired (one due)    %8.3f ms\n", n, (now() - t0) * 1e3);
    ks_close(t);
    return 0;
}

int
main(int argc, char **argv)
{
    char dir[4096], path[4200];
    long n;
    int r;

    if (argc != 3 || (n = strtol(argv[2], NULL, 10)) < 0) {
        fprintf(stderr, "usage: ksbench_rollover DIR N\n");
        return 2;
    }
    if (sodium_init() < 0)
        return fail("sodium_init", KS_E_CRYPTO, NULL);
    snprintf(dir, sizeof(dir), "%s/ksbench.XXXXXX", argv[1]);
    if (mkdtemp(dir) == NULL) {
        perror("ksbench_rollover: mkdtemp");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/token-0.db", dir);
    r = build(path, n);
    if (r == 0)
        r = measure(path, n);
    unlink(path);
    snprintf(path, sizeof(path), "%s/token-0.db-wal", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/token-0.db-shm", dir);
    unlink(path);
    rmdir(dir);
    return r;
}
