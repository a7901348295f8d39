/*
 * r_crash.c — crash safety: a writer killed with SIGKILL at random points.
 *
 * Each iteration forks a writer that initialises the module, logs in and
 * loops creating data objects (private and public), destroying them and
 * changing the user PIN, and SIGKILLs it after a random delay (0 ..
 * R_CRASH_MAX_US microseconds; the writer's start-up is inside that window
 * too). The writer journals to a file, fsync'd line by line: its intent
 * before each call ("c LABEL PRIV HEX", "d LABEL", "p NEWPIN") and the
 * outcome once the call returned CKR_OK ("C LABEL", "D LABEL", "P").
 *
 * After every kill the parent checks:
 *   - PRAGMA integrity_check is "ok";
 *   - the keystore opens, the user PIN is the old one or — only if a change
 *     was under way or done — the new one, and every record authenticates
 *     (ks_load_objects after ks_login: no record half-written or sealed
 *     under a stale key);
 *   - through the module: every object whose creation was reported (and not
 *     destroyed) is there with its exact value; nothing is there that was
 *     never started; an object whose creation or destruction was cut short
 *     is either fully there or absent.
 * R_CRASH_ITERATIONS (default 300) iterations.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "keystore.h"
#include "rlib.h"

#define VLEN         32
#define R_CRASH_POP  128  /* population above which the writer destroys more than it creates */
#define R_CRASH_FIND 2048 /* the checker's find buffer: far above what the writer leaves */

enum st { LIVE, DEAD, MAYBE_CREATED, MAYBE_DESTROYED };
struct obj {
    char label[32];
    unsigned char val[VLEN];
    int priv;
    enum st st;
};
static struct obj *objs;
static size_t nobjs, capobjs;

static char pin[64] = R_USER_PIN, pending_pin[64];
static int pin_pending;
static CK_SLOT_ID slot;
static char logpath[400];

static struct obj *
find_obj(const char *label)
{
    for (size_t i = 0; i < nobjs; i++)
        if (strcmp(objs[i].label, label) == 0)
            return &objs[i];
    return NULL;
}

static void
hex(char *out, const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static int
unhex(unsigned char *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* ---- the writer (child) --------------------------------------------------- */

static void journal(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
journal(int fd, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (write(fd, line, (size_t)n) != n || fsync(fd) != 0)
        _exit(3);
}

static void
writer(unsigned iter)
{
    int fd = open(logpath, O_WRONLY | O_APPEND | O_CLOEXEC);
    uint64_t seed = 0x5eed0000ULL + iter;
    char labels[256][32];
    size_t nl = 0;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE hs[256];
    CK_RV rv;
    long n;

    if (fd < 0)
        _exit(3);
    r_init();
    s = r_session(slot, pin);
    n = r_find_data(s, NULL, hs, 256, &rv);
    R_ASSERT(n >= 0, "writer: find -> %s", r_ckr(rv));
    for (long i = 0; i < n && nl < 256; i++) {
        CK_ATTRIBUTE a = {CKA_LABEL, labels[nl], sizeof(labels[nl]) - 1};
        R_CK(R->C_GetAttributeValue(s, hs[i], &a, 1), CKR_OK);
        labels[nl++][a.ulValueLen] = '\0';
    }
    for (unsigned k = 0;; k++) {
        unsigned r = (unsigned)(r_rand(&seed) % 100);

        /* Creations outweigh destructions (50 : 38) while the token is
         * small; above R_CRASH_POP objects destructions win, so the count
         * stays bounded however many of the 300 kills come late. */
        if (r < (nl > R_CRASH_POP ? 30 : 50) || nl == 0) {
            unsigned char val[VLEN];
            char hx[2 * VLEN + 1], label[32];
            int priv = (int)(r_rand(&seed) & 1);
            CK_OBJECT_HANDLE h;

            r_fill(&seed, val, VLEN);
            hex(hx, val, VLEN);
            snprintf(label, sizeof(label), "w%u-%u", iter, k);
            journal(fd, "c %s %d %s\n", label, priv, hx);
            R_CK(r_create_data(s, label, val, VLEN, priv, &h), CKR_OK);
            journal(fd, "C %s\n", label);
            if (nl < 256)
                snprintf(labels[nl++], sizeof(labels[0]), "%s", label);
        } else if (r < 88) {
            size_t i = (size_t)(r_rand(&seed) % nl);
            CK_OBJECT_HANDLE one[2];

            R_ASSERT(r_find_data(s, labels[i], one, 2, &rv) == 1, "writer: %s: %s", labels[i],
                     r_ckr(rv));
            journal(fd, "d %s\n", labels[i]);
            R_CK(R->C_DestroyObject(s, one[0]), CKR_OK);
            journal(fd, "D %s\n", labels[i]);
            memmove(labels[i], labels[nl - 1], sizeof(labels[0]));
            nl--;
        } else {
            char np[64];

            snprintf(np, sizeof(np), "pin-%u-%u", iter, k);
            journal(fd, "p %s\n", np);
            R_CK(R->C_SetPIN(s, (CK_UTF8CHAR_PTR)pin, strlen(pin), (CK_UTF8CHAR_PTR)np, strlen(np)),
                 CKR_OK);
            journal(fd, "P\n");
            snprintf(pin, sizeof(pin), "%s", np);
        }
    }
}

/* ---- the checker (parent) -------------------------------------------------- */

static off_t log_off;

static void
apply_log(void)
{
    FILE *f = fopen(logpath, "r");
    char line[256];

    R_ASSERT(f != NULL, "open %s", logpath);
    R_ASSERT(fseeko(f, log_off, SEEK_SET) == 0, "seek");
    while (fgets(line, sizeof(line), f) != NULL) {
        char label[32], hx[2 * VLEN + 1];
        int priv;
        struct obj *o;

        if (strchr(line, '\n') == NULL)
            break; /* cut short by the kill */
        log_off = ftello(f);
        if (sscanf(line, "c %31s %d %64s", label, &priv, hx) == 3) {
            if (nobjs == capobjs) {
                capobjs = capobjs ? 2 * capobjs : 256;
                objs = realloc(objs, capobjs * sizeof(*objs));
                R_ASSERT(objs != NULL, "realloc");
            }
            o = &objs[nobjs++];
            memset(o, 0, sizeof(*o));
            snprintf(o->label, sizeof(o->label), "%s", label);
            R_ASSERT(unhex(o->val, hx, VLEN) == 0, "log: %s", line);
            o->priv = priv;
            o->st = MAYBE_CREATED;
        } else if (sscanf(line, "C %31s", label) == 1) {
            o = find_obj(label);
            R_ASSERT(o != NULL && o->st == MAYBE_CREATED, "log: %s", line);
            o->st = LIVE;
        } else if (sscanf(line, "d %31s", label) == 1) {
            o = find_obj(label);
            R_ASSERT(o != NULL && o->st == LIVE, "log: destroying %s, not live", label);
            o->st = MAYBE_DESTROYED;
        } else if (sscanf(line, "D %31s", label) == 1) {
            o = find_obj(label);
            R_ASSERT(o != NULL && o->st == MAYBE_DESTROYED, "log: %s", line);
            o->st = DEAD;
        } else if (sscanf(line, "p %63s", pending_pin) == 1) {
            pin_pending = 1;
        } else if (line[0] == 'P') {
            R_ASSERT(pin_pending, "log: P without p");
            snprintf(pin, sizeof(pin), "%s", pending_pin);
            pin_pending = 0;
        } else {
            r_fail("log: unexpected line %s", line);
        }
    }
    fclose(f);
}

static int
count_cb(void *ctx, const ks_object *o)
{
    (void)o;
    (*(unsigned long *)ctx)++;
    return 0;
}

static void
check(unsigned iter)
{
    const char *path = r_token_file(getenv("R_DIR"), slot);
    ks_token *t = NULL;
    ks_rv kr;
    unsigned tampered = 99;
    unsigned long nrec = 0, expect_min = 0, expect_max = 0;
    CK_SESSION_HANDLE s;
    static CK_OBJECT_HANDLE hs[R_CRASH_FIND];
    CK_RV rv;
    long n;

    apply_log();
    R_ASSERT(r_integrity_ok(path), "iteration %u: integrity_check failed", iter);

    /* Keystore level: the PIN and every record. */
    kr = ks_open(path, &t);
    R_ASSERT(kr == KS_OK, "iteration %u: ks_open: %s", iter, ks_open_error());
    kr = ks_login(t, KS_USER, (const unsigned char *)pin, strlen(pin));
    if (kr == KS_E_PIN_INCORRECT && pin_pending) {
        kr = ks_login(t, KS_USER, (const unsigned char *)pending_pin, strlen(pending_pin));
        if (kr == KS_OK)
            snprintf(pin, sizeof(pin), "%s", pending_pin);
    }
    R_ASSERT(kr == KS_OK, "iteration %u: login: %s (%s)", iter, ks_strerror(kr), ks_last_error(t));
    pin_pending = 0;
    kr = ks_load_objects(t, count_cb, &nrec, &tampered);
    R_ASSERT(kr == KS_OK && tampered == 0, "iteration %u: load: %s, %u records fail", iter,
             ks_strerror(kr), tampered);
    ks_close(t);

    /* Module level: the objects and their values. */
    r_init();
    s = r_session(slot, pin);
    n = r_find_data(s, NULL, hs, R_CRASH_FIND, &rv);
    R_ASSERT(n >= 0 && n < R_CRASH_FIND, "iteration %u: find -> %s (%ld objects)", iter, r_ckr(rv),
             n);
    R_ASSERT((unsigned long)n == nrec, "iteration %u: %ld objects, %lu records", iter, n, nrec);
    for (size_t i = 0; i < nobjs; i++)
        objs[i].priv |= 0x100; /* not seen yet */
    for (long j = 0; j < n; j++) {
        char label[32];
        unsigned char val[64];
        CK_ATTRIBUTE a[2] = {{CKA_LABEL, label, sizeof(label) - 1}, {CKA_VALUE, val, sizeof(val)}};
        struct obj *o;

        R_CK(R->C_GetAttributeValue(s, hs[j], a, 2), CKR_OK);
        label[a[0].ulValueLen] = '\0';
        o = find_obj(label);
        R_ASSERT(o != NULL && o->st != DEAD, "iteration %u: object %s should not exist", iter,
                 label);
        R_ASSERT(a[1].ulValueLen == VLEN && memcmp(val, o->val, VLEN) == 0,
                 "iteration %u: object %s has the wrong value", iter, label);
        o->priv &= ~0x100;
        o->st = LIVE; /* a creation cut short that did commit, or a destroy that did not */
    }
    for (size_t i = 0; i < nobjs; i++) {
        if (objs[i].priv & 0x100) {
            R_ASSERT(objs[i].st != LIVE, "iteration %u: committed object %s is lost", iter,
                     objs[i].label);
            objs[i].st = DEAD;
        }
        objs[i].priv &= ~0x100;
        if (objs[i].st == LIVE)
            expect_min++, expect_max++;
    }
    (void)expect_max;
    R_CK(R->C_Finalize(NULL), CKR_OK);
    /* Compact the model. */
    {
        size_t k = 0;
        for (size_t i = 0; i < nobjs; i++)
            if (objs[i].st != DEAD)
                objs[k++] = objs[i];
        nobjs = k;
    }
    R_ASSERT(nobjs == expect_min, "model");
}

int
main(void)
{
    char dir[256];
    long iters = r_env_long("R_CRASH_ITERATIONS", 300);
    long max_us = r_env_long("R_CRASH_MAX_US", 40000);
    uint64_t seed = (uint64_t)r_env_long("R_SEED", (long)time(NULL));
    unsigned long kills_in_op = 0;
    int fd;

    r_setup(dir, "crash");
    setenv("R_DIR", dir, 1);
    snprintf(logpath, sizeof(logpath), "%s/journal", dir);
    fd = open(logpath, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
    R_ASSERT(fd >= 0, "journal");
    close(fd);
    fprintf(stderr, "r_crash: R_SEED=%lu, %ld iterations, kill within %ld us\n",
            (unsigned long)seed, iters, max_us);
    r_init();
    slot = r_make_token();
    R_CK(R->C_Finalize(NULL), CKR_OK);

    for (long it = 0; it < iters; it++) {
        pid_t p = r_spawn();
        struct timespec ts;
        long us = (long)(r_rand(&seed) % (uint64_t)(max_us + 1));
        int st = 0;

        if (p == 0)
            writer((unsigned)it); /* never returns */
        ts.tv_sec = us / 1000000;
        ts.tv_nsec = (us % 1000000) * 1000;
        nanosleep(&ts, NULL);
        kill(p, SIGKILL);
        while (waitpid(p, &st, 0) < 0 && errno == EINTR)
            ;
        (void)r_wait_all(); /* forget it */
        R_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                 "iteration %ld: the writer ended by itself (status %d)", it, st);
        {
            off_t before = log_off;
            check((unsigned)it);
            if (log_off != before)
                kills_in_op++;
        }
    }
    fprintf(stderr,
            "r_crash: %ld kills (%lu after the writer had journalled), %zu objects "
            "left, all consistent\n",
            iters, kills_in_op, nobjs);
    free(objs);
    r_rm_rf(dir);
    return 0;
}
