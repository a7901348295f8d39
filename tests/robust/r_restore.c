/*
 * r_restore.c — `restore --force` while another process has the token open.
 *
 * This process keeps one session logged in as the user for the whole run
 * (the "other process"). Each round (R_RESTORE_ROUNDS, default 50):
 *   1. a helper process (this program run again, "backup") backs the token
 *      up with ks_backup;
 *   2. this process adds objects after the backup: 3 small ones on even
 *      rounds, 40 of 4 KiB on odd rounds (the live file is then much larger
 *      than the backup: the case that used to leave a malformed file);
 *   3. a helper process ("restore") runs ks_restore over the token file while
 *      this process sits idle, logged in;
 *   4. this process, still in the same login, must see exactly the backed-up
 *      objects (no error, none of the objects of step 2), then creates two
 *      more (CKR_OK), which must be there: in its own view, in a fresh
 *      process's full load ("count", every record authenticated) and in
 *      PRAGMA integrity_check.
 * Before live restores (the file was renamed over the open one) step 4 saw
 * the objects of step 2, or a malformed database, or lost the new objects.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keystore.h"
#include "rlib.h"

#define MAXOBJ 400

static char *expect[MAXOBJ];
static size_t nexpect;

/* ---- helper modes (a separate process: its own SQLite state) ------------ */

static int
count_cb(void *ctx, const ks_object *obj)
{
    (void)obj;
    (*(unsigned *)ctx)++;
    return 0;
}

static int
helper(int argc, char **argv)
{
    ks_token *tok = NULL;
    ks_rv kr;

    if (argc == 4 && strcmp(argv[1], "backup") == 0) {
        kr = ks_open(argv[2], &tok);
        if (kr == KS_OK)
            kr = ks_backup(tok, argv[3]);
        if (kr != KS_OK)
            fprintf(stderr, "backup: %s: %s %s\n", ks_strerror(kr), ks_open_error(),
                    ks_last_error(tok));
        ks_close(tok);
        return kr == KS_OK ? 0 : 1;
    }
    if (argc == 4 && strcmp(argv[1], "restore") == 0) {
        kr = ks_restore(argv[2], argv[3]);
        if (kr != KS_OK)
            fprintf(stderr, "restore: %s: %s\n", ks_strerror(kr), ks_open_error());
        return kr == KS_OK ? 0 : 1;
    }
    if (argc >= 3 && strcmp(argv[1], "count") == 0) {
        unsigned n = 0, tampered = 0;

        kr = ks_open(argv[2], &tok);
        if (kr == KS_OK)
            kr = ks_login(tok, KS_USER, (const unsigned char *)R_USER_PIN, strlen(R_USER_PIN));
        if (kr == KS_OK)
            kr = ks_load_objects(tok, count_cb, &n, &tampered);
        if (kr != KS_OK || tampered != 0) {
            fprintf(stderr, "count: %s, %u tampered: %s %s\n", ks_strerror(kr), tampered,
                    ks_open_error(), ks_last_error(tok));
            ks_close(tok);
            return 1;
        }
        ks_close(tok);
        printf("%u\n", n);
        return 0;
    }
    fprintf(stderr, "usage: r_restore [backup SRC DEST | restore SRC DEST | count PATH]\n");
    return 2;
}

/* Run this program as a helper; its standard output into OUT (may be NULL). */
static void
run_helper(const char *mode, const char *a, const char *b, char *out, size_t outlen)
{
    int fds[2];
    pid_t pid;
    int st;

    R_ASSERT(pipe(fds) == 0, "pipe: %s", strerror(errno));
    pid = fork();
    R_ASSERT(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl("/proc/self/exe", "r_restore", mode, a, b, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    if (out != NULL) {
        size_t n = 0;
        ssize_t k;

        while (n + 1 < outlen && (k = read(fds[0], out + n, outlen - 1 - n)) > 0)
            n += (size_t)k;
        out[n] = '\0';
    }
    close(fds[0]);
    R_ASSERT(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
    R_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "helper %s failed (status 0x%x)", mode, st);
}

/* ---- the live process ---------------------------------------------------- */

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
add_obj(CK_SESSION_HANDLE s, const char *label, size_t len, int keep)
{
    static unsigned char val[4096];
    CK_OBJECT_HANDLE h;

    memset(val, label[0], sizeof(val));
    R_CK(r_create_data(s, label, val, len, 1, &h), CKR_OK);
    if (keep) {
        R_ASSERT(nexpect < MAXOBJ, "too many objects");
        expect[nexpect++] = strdup(label);
    }
}

/* The session's view must be exactly the expected labels. */
static void
check_view(CK_SESSION_HANDLE s, int round, const char *when)
{
    static CK_OBJECT_HANDLE h[MAXOBJ + 64];
    char *got[MAXOBJ + 64];
    CK_RV rv;
    long n = r_find_data(s, NULL, h, MAXOBJ + 64, &rv);

    R_ASSERT(n >= 0, "round %d %s: find -> %s", round, when, r_ckr(rv));
    for (long i = 0; i < n; i++) {
        char lab[64];
        CK_ATTRIBUTE a = {CKA_LABEL, lab, sizeof(lab) - 1};

        R_CK(R->C_GetAttributeValue(s, h[i], &a, 1), CKR_OK);
        lab[a.ulValueLen] = '\0';
        got[i] = strdup(lab);
    }
    qsort(got, (size_t)n, sizeof(got[0]), cmp_str);
    qsort(expect, nexpect, sizeof(expect[0]), cmp_str);
    R_ASSERT((size_t)n == nexpect, "round %d %s: %ld objects seen, %zu expected (first seen: %s)",
             round, when, n, nexpect, n > 0 ? got[0] : "-");
    for (long i = 0; i < n; i++) {
        R_ASSERT(strcmp(got[i], expect[i]) == 0, "round %d %s: saw %s, expected %s", round, when,
                 got[i], expect[i]);
        free(got[i]);
    }
}

int
main(int argc, char **argv)
{
    char dir[256], path[400], bk[400], out[64], label[64];
    long rounds = r_env_long("R_RESTORE_ROUNDS", 50);
    CK_SESSION_HANDLE s;
    CK_SLOT_ID slot;

    if (argc > 1)
        return helper(argc, argv);
    r_setup(dir, "restore");
    r_init();
    slot = r_make_token();
    snprintf(path, sizeof(path), "%s", r_token_file(dir, slot));
    snprintf(bk, sizeof(bk), "%s/bk.db", dir);
    s = r_session(slot, R_USER_PIN);
    add_obj(s, "base-1", 100, 1);
    add_obj(s, "base-2", 100, 1);
    for (int round = 0; round < rounds; round++) {
        int large = round % 2;

        unlink(bk);
        run_helper("backup", path, bk, NULL, 0);
        for (int j = 0; j < (large ? 40 : 3); j++) {
            snprintf(label, sizeof(label), "lost-%d-%d", round, j);
            add_obj(s, label, large ? 4096 : 64, 0);
        }
        /* Only the objects of the backup count from here. */
        run_helper("restore", bk, path, NULL, 0);
        check_view(s, round, "after the restore");
        for (int j = 0; j < 2; j++) {
            snprintf(label, sizeof(label), "kept-%d-%d", round, j);
            add_obj(s, label, large ? 2000 : 50, 1);
        }
        check_view(s, round, "after writing");
        R_ASSERT(r_integrity_ok(path), "round %d: integrity_check failed", round);
        run_helper("count", path, "", out, sizeof(out));
        R_ASSERT((size_t)atol(out) == nexpect,
                 "round %d: a fresh process loads %s objects, %zu expected", round, out, nexpect);
    }
    R_CK(R->C_CloseSession(s), CKR_OK);
    R_CK(R->C_Finalize(NULL), CKR_OK);
    for (size_t i = 0; i < nexpect; i++)
        free(expect[i]);
    printf("r_restore: %ld rounds, %zu objects at the end\n", rounds, nexpect);
    r_rm_rf(dir);
    return 0;
}
