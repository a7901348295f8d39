/*
 * r_lockkill.c — logins with the right PIN killed during Argon2id must not
 * lock the PIN.
 *
 * A token with a KDF slow enough to be killed in (EVERTOKEN_KDF, default
 * "1:33554432": 32 MiB). Then, alternately for the SO and the user PIN, a
 * helper process (this program run again) opens the token and logs in with
 * the right PIN; this process watches the file's data_version and sends
 * SIGKILL as soon as the helper's first commit (the counted attempt) shows,
 * i.e. while it runs the KDF. A kill counts as an interrupted login only if
 * the helper died by it without having reported the end of its login; the
 * loop goes on until R_LOCKKILL_KILLS (default 110, at least 100) such
 * interruptions of each PIN, far beyond the limit of 10 attempts. Then both
 * PINs must log in, and the failure counters must be 0.
 * Also: completed wrong attempts still count after interrupted ones (3 wrong
 * SO PINs after 5 kills show as 3 failures), and a PIN locked by completed wrong attempts
 * stays locked whatever was interrupted.
 * Before in-flight attempt markers, the 11th kill locked the PIN for good.
 */
#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "keystore.h"
#include "rlib.h"

#define SO   "so-pin-1234"
#define USER "user-pin-1234"

static int
helper(const char *path, const char *who)
{
    ks_token *tok = NULL;
    int so = strcmp(who, "so") == 0;
    const char *pin = so ? SO : USER;
    ks_rv kr = ks_open(path, &tok);

    if (kr == KS_OK)
        kr = ks_login(tok, so ? KS_SO : KS_USER, (const unsigned char *)pin, strlen(pin));
    /* Reached only when the login ended: the parent tells the kills apart. */
    if (write(1, "x", 1) != 1)
        return 3;
    ks_close(tok);
    return kr == KS_OK ? 0 : 1;
}

static int64_t
data_version(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;

    if (sqlite3_prepare_v2(db, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* One login of WHO killed as soon as it counted its attempt. 1 if the kill
 * interrupted it. */
static int
killed_login(const char *path, sqlite3 *db, const char *who)
{
    int fds[2], st, ended = 0;
    int64_t v0 = data_version(db);
    struct timespec ts = {0, 200000};
    char c;
    pid_t pid;

    R_ASSERT(pipe(fds) == 0, "pipe: %s", strerror(errno));
    pid = fork();
    R_ASSERT(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl("/proc/self/exe", "r_lockkill", path, who, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    /* Wait for its first commit (or its end). */
    for (;;) {
        int64_t v = data_version(db);

        if (v != v0)
            break;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            close(fds[0]);
            R_ASSERT(WIFEXITED(st), "helper died by itself: 0x%x", st);
            return 0;
        }
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    R_ASSERT(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
    if (read(fds[0], &c, 1) == 1)
        ended = 1;
    close(fds[0]);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && !ended;
}

static void
fail_counts(const char *path, unsigned *so, unsigned *user)
{
    ks_token *tok = NULL;
    ks_info info;

    R_ASSERT(ks_open(path, &tok) == KS_OK, "open: %s", ks_open_error());
    R_ASSERT(ks_get_info(tok, &info) == KS_OK, "info: %s", ks_last_error(tok));
    *so = info.so_fail_count;
    *user = info.user_fail_count;
    ks_close(tok);
}

int
main(int argc, char **argv)
{
    char dir[256], path[400];
    long want = r_env_long("R_LOCKKILL_KILLS", 110);
    long done[2] = {0, 0}, tries = 0;
    ks_kdf_params kdf;
    ks_token *tok = NULL;
    sqlite3 *db = NULL;
    unsigned so_f, user_f;
    ks_rv kr;

    if (argc == 3)
        return helper(argv[1], argv[2]);
    setenv("EVERTOKEN_KDF", "1:33554432", 0);
    r_setup(dir, "lockkill");
    snprintf(path, sizeof(path), "%s/tokens/token-0.db", dir);
    R_ASSERT(ks_kdf_from_env(&kdf) == KS_OK, "EVERTOKEN_KDF malformed");
    R_ASSERT(ks_create(path, "lockkill", (const unsigned char *)SO, strlen(SO), &kdf, &tok) ==
                 KS_OK,
             "create: %s", ks_open_error());
    R_ASSERT(ks_login(tok, KS_SO, (const unsigned char *)SO, strlen(SO)) == KS_OK, "SO login");
    R_ASSERT(ks_init_user_pin(tok, (const unsigned char *)USER, strlen(USER)) == KS_OK,
             "init user PIN: %s", ks_last_error(tok));
    ks_close(tok);
    R_ASSERT(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK, "sqlite open");
    sqlite3_busy_timeout(db, 10000);

    while ((done[0] < want || done[1] < want) && tries < want * 8) {
        int so = done[0] < want && (done[1] >= want || tries % 2 == 0);

        tries++;
        done[so ? 0 : 1] += killed_login(path, db, so ? "so" : "user");
    }
    R_ASSERT(done[0] >= want && done[1] >= want,
             "only %ld SO and %ld user logins interrupted in %ld tries (KDF too fast?)", done[0],
             done[1], tries);

    /* Both PINs still work. */
    R_ASSERT(ks_open(path, &tok) == KS_OK, "open: %s", ks_open_error());
    kr = ks_login(tok, KS_SO, (const unsigned char *)SO, strlen(SO));
    R_ASSERT(kr == KS_OK, "SO login after %ld interrupted ones: %s (%s)", done[0], ks_strerror(kr),
             ks_last_error(tok));
    kr = ks_login(tok, KS_USER, (const unsigned char *)USER, strlen(USER));
    R_ASSERT(kr == KS_OK, "user login after %ld interrupted ones: %s (%s)", done[1],
             ks_strerror(kr), ks_last_error(tok));
    ks_close(tok);
    fail_counts(path, &so_f, &user_f);
    R_ASSERT(so_f == 0 && user_f == 0, "counters %u/%u after successful logins", so_f, user_f);

    /* Completed wrong attempts count, after interrupted ones too. (A kill
     * that comes too late lets a right PIN log in, which resets the
     * counter: so the wrong ones come after the kills.) */
    for (int i = 0; i < 5; i++)
        (void)killed_login(path, db, "so");
    R_ASSERT(ks_open(path, &tok) == KS_OK, "open: %s", ks_open_error());
    for (int i = 0; i < 3; i++)
        R_ASSERT(ks_login(tok, KS_SO, (const unsigned char *)"wrong-pin", 9) == KS_E_PIN_INCORRECT,
                 "wrong SO PIN %d", i);
    ks_close(tok);
    fail_counts(path, &so_f, &user_f);
    R_ASSERT(so_f == 3, "SO counter %u after interrupted attempts and 3 wrong ones", so_f);
    R_ASSERT(ks_open(path, &tok) == KS_OK, "open: %s", ks_open_error());
    for (int i = 0; i < 7; i++)
        R_ASSERT(ks_login(tok, KS_SO, (const unsigned char *)"wrong-pin", 9) == KS_E_PIN_INCORRECT,
                 "wrong SO PIN %d", i + 3);
    kr = ks_login(tok, KS_SO, (const unsigned char *)SO, strlen(SO));
    R_ASSERT(kr == KS_E_PIN_LOCKED, "SO PIN after 10 wrong: %s", ks_strerror(kr));
    ks_close(tok);
    for (int i = 0; i < 3; i++)
        (void)killed_login(path, db, "so");
    R_ASSERT(ks_open(path, &tok) == KS_OK, "open: %s", ks_open_error());
    kr = ks_login(tok, KS_SO, (const unsigned char *)SO, strlen(SO));
    R_ASSERT(kr == KS_E_PIN_LOCKED, "SO PIN locked by wrong attempts came back: %s",
             ks_strerror(kr));
    ks_close(tok);
    sqlite3_close(db);
    printf("r_lockkill: %ld SO and %ld user logins interrupted in %ld tries\n", done[0], done[1],
           tries);
    r_rm_rf(dir);
    return 0;
}
