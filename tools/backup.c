/*
 * backup.c — `backup`, `restore` and the keystore part of `info`.
 *
 * These work on the keystore file rather than through PKCS#11: a backup is
 * the encrypted keystore itself (it leaks nothing without the PIN), taken with
 * SQLite's online backup API so it is consistent while applications hold
 * sessions on the token. With the evertoken module, slot N is the file
 * token-N.db in the token directory.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "keystore.h"
#include "et_int.h"

static char *et_aprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
et_aprintf(const char *fmt, ...)
{
    va_list ap;
    char *p = NULL;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&p, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : p;
}

static char *
et_tokdir(void)
{
    const char *err = NULL;
    char *dir = ks_token_dir(&err);

    if (dir == NULL)
        et_err("cannot determine the token directory: %s", err ? err : "unknown error");
    return dir;
}

/* Path of the token file selected by --slot N or --token LABEL (found by
 * opening each keystore in the directory and comparing labels). */
static int
et_ks_find(const char *dir, const et_opts *o, char **path, uint32_t *slot_out)
{
    uint32_t *ids = NULL;
    size_t n = 0;
    int rc = ET_EXIT_NOTFOUND, found = 0;
    ks_rv kr;

    *path = NULL;
    if (o->slot >= 0) {
        *path = ks_token_path(dir, (uint32_t)o->slot);
        if (*path == NULL) {
            et_err("out of memory");
            return ET_EXIT_FAIL;
        }
        if (access(*path, F_OK) != 0) {
            et_err("slot %ld has no token file (%s)", o->slot, *path);
            free(*path);
            *path = NULL;
            return ET_EXIT_NOTFOUND;
        }
        *slot_out = (uint32_t)o->slot;
        return ET_EXIT_OK;
    }
    if (o->token == NULL) {
        et_err("select a token with --token LABEL or --slot N");
        return ET_EXIT_USAGE;
    }
    kr = ks_dir_scan(dir, &ids, &n);
    if (kr != KS_OK) {
        et_err("cannot read the token directory %s: %s", dir, ks_strerror(kr));
        return ET_EXIT_FAIL;
    }
    for (size_t i = 0; i < n; i++) {
        char *p = ks_token_path(dir, ids[i]);
        ks_token *tok = NULL;
        ks_info info;

        if (p == NULL)
            continue;
        if (ks_open(p, &tok) != KS_OK) {
            et_warn("skipping %s: %s", p, ks_open_error());
            free(p);
            continue;
        }
        if (ks_get_info(tok, &info) == KS_OK && strcmp(info.label, o->token) == 0) {
            if (found) {
                et_err("several tokens are labelled '%s' (slots %u and %u); select one with "
                       "--slot",
                       o->token, *slot_out, ids[i]);
                ks_close(tok);
                free(p);
                free(*path);
                *path = NULL;
                rc = ET_EXIT_USAGE;
                goto done;
            }
            found = 1;
            *path = p;
            p = NULL;
            *slot_out = ids[i];
        }
        ks_close(tok);
        free(p);
    }
    if (!found) {
        et_err("no token labelled '%s' in %s", o->token, dir);
        goto done;
    }
    rc = ET_EXIT_OK;
done:
    free(ids);
    return rc;
}

static int
et_ks_exit(ks_rv kr)
{
    switch (kr) {
    case KS_E_EXISTS:
        return ET_EXIT_EXISTS;
    case KS_E_CORRUPT:
    case KS_E_VERSION:
        return ET_EXIT_INPUT;
    case KS_E_NOT_FOUND:
        return ET_EXIT_NOTFOUND;
    default:
        return ET_EXIT_FAIL;
    }
}

/* A private temporary directory (0700) beside PATH, or in $TMPDIR when
 * PATH is NULL; malloc'd. */
static char *
et_tmpdir(const char *path)
{
    const char *t = getenv("TMPDIR");
    char *d = path != NULL ? et_aprintf("%s.tmp-XXXXXX", path)
                           : et_aprintf("%s/evertoken-XXXXXX", t && *t == '/' ? t : "/tmp");

    if (d != NULL && mkdtemp(d) == NULL) {
        et_err("cannot create a temporary directory %s: %s", d, strerror(errno));
        free(d);
        d = NULL;
    }
    return d;
}

/* The whole file PATH into F (name NAME). */
static int
et_slurp(const char *path, const char *name, et_sfile *f)
{
    FILE *fp = fopen(path, "rbe");
    long n;

    memset(f, 0, sizeof(*f));
    if (fp == NULL || fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 ||
        fseek(fp, 0, SEEK_SET) != 0 || (f->data = malloc(n > 0 ? (size_t)n : 1)) == NULL ||
        fread(f->data, 1, (size_t)n, fp) != (size_t)n || (f->name = strdup(name)) == NULL) {
        et_err("cannot read %s: %s", path, strerror(errno));
        if (fp != NULL)
            fclose(fp);
        free(f->data);
        memset(f, 0, sizeof(*f));
        return -1;
    }
    f->len = (size_t)n;
    fclose(fp);
    return 0;
}

/* The helper's state directory: --enroll-state DIR, else its default. */
static char *
et_state_dir(const et_opts *o)
{
    char err[256] = "";
    char *d = o->state_dir != NULL ? strdup(o->state_dir) : et_enr_state_dir(err, sizeof(err));

    if (d == NULL)
        et_err("%s", err[0] ? err : "out of memory");
    return d;
}

static void
et_backup_waiting(const char *dir, int timeout)
{
    et_warn("evertoken-enroll is running a check on %s; waiting up to %d s for it to finish", dir,
            timeout);
}

/* backup --with-helper-state: the helper's lock on SDIR (enroll.lock, the
 * lock a check holds) taken before the token is copied, so that a renewal
 * cannot commit between the token copy and the state snapshot; -1 when it
 * cannot be had (a message said why), -2 when SDIR does not exist (the
 * snapshot then says so). */
static int
et_backup_lock(const char *sdir)
{
    char err[512] = "";
    int fd;

    if (access(sdir, F_OK) != 0)
        return -2;
    fd = et_enr_state_lock_wait(sdir, ET_ENRSTATE_LOCK_WAIT, et_backup_waiting, err, sizeof(err));
    if (fd < 0)
        et_err("backup: %s; no backup written", err);
    return fd;
}

/* backup --with-helper-state: the keystore copy KSCOPY and the helper's
 * state in SDIR into the bundle OUT. */
static int
et_backup_bundle(et_opts *o, const char *sdir, const char *kscopy, const char *label)
{
    char err[512] = "";
    et_sfiles st = {NULL, 0};
    et_sfile ks = {NULL, NULL, 0};
    long long latest = 0;
    int rc = ET_EXIT_FAIL;

    if (et_enr_state_snapshot(sdir, &st, &latest, err, sizeof(err)) != 0) {
        et_err("backup: the helper state: %s", err);
        rc = access(sdir, F_OK) == 0 ? ET_EXIT_FAIL : ET_EXIT_NOTFOUND;
        goto done;
    }
    if (et_slurp(kscopy, "keystore.db", &ks) != 0)
        goto done;
    rc = et_bundle_write(o->argv[0], &ks, label, &st, latest);
    if (rc == ET_EXIT_OK)
        printf("helper state of %s (%zu files) included\n", et_escs(sdir), st.n);
done:
    free(ks.name);
    free(ks.data);
    et_sfiles_free(&st);
    return rc;
}

int
et_cmd_backup(et_opts *o)
{
    char *dir = NULL, *path = NULL, *tmp = NULL, *copy = NULL, *sdir = NULL;
    ks_token *tok = NULL;
    uint32_t slot = 0;
    ks_info info;
    ks_rv kr;
    int rc, lockfd = -1;

    if (o->argc != 1) {
        et_err("backup: expected one output file (evertoken backup --token LABEL OUT)");
        return ET_EXIT_USAGE;
    }
    if (o->state_dir != NULL && !o->with_state) {
        et_err("backup: --enroll-state goes with --with-helper-state");
        return ET_EXIT_USAGE;
    }
    if (access(o->argv[0], F_OK) == 0) {
        et_err("backup: %s already exists; not overwriting it", o->argv[0]);
        return ET_EXIT_EXISTS;
    }
    dir = et_tokdir();
    if (dir == NULL)
        return ET_EXIT_FAIL;
    rc = et_ks_find(dir, o, &path, &slot);
    if (rc != ET_EXIT_OK)
        goto done;
    kr = ks_open(path, &tok);
    if (kr != KS_OK) {
        et_err("cannot open %s: %s", path, ks_open_error());
        rc = et_ks_exit(kr);
        goto done;
    }
    if (o->with_state) {
        rc = ET_EXIT_FAIL;
        if (ks_get_info(tok, &info) != KS_OK || (sdir = et_state_dir(o)) == NULL ||
            (lockfd = et_backup_lock(sdir)) == -1 || (tmp = et_tmpdir(o->argv[0])) == NULL ||
            (copy = et_aprintf("%s/keystore.db", tmp)) == NULL)
            goto done;
    }
    kr = ks_backup(tok, copy != NULL ? copy : o->argv[0]);
    if (kr != KS_OK) {
        et_err("backup to %s failed: %s (%s)", o->argv[0], ks_strerror(kr), ks_last_error(tok));
        rc = et_ks_exit(kr);
        goto done;
    }
    if (copy != NULL && (rc = et_backup_bundle(o, sdir, copy, info.label)) != ET_EXIT_OK)
        goto done;
    printf("backed up slot %u (%s) to %s\n", slot, et_escs(path), et_escs(o->argv[0]));
    rc = ET_EXIT_OK;
done:
    if (copy != NULL)
        unlink(copy);
    if (tmp != NULL)
        rmdir(tmp);
    if (lockfd >= 0)
        close(lockfd);
    free(sdir);
    free(copy);
    free(tmp);
    ks_close(tok);
    free(path);
    free(dir);
    return rc;
}

/* Label of the keystore at PATH into LABEL, or -1 if it cannot be read. */
static int
et_ks_label(const char *path, char *label, size_t labelsz)
{
    ks_token *tok = NULL;
    ks_info info;
    int rc = -1;

    if (ks_open(path, &tok) != KS_OK)
        return -1;
    if (ks_get_info(tok, &info) == KS_OK) {
        snprintf(label, labelsz, "%s", info.label);
        rc = 0;
    }
    ks_close(tok);
    return rc;
}

/* Restore planning and applying of a keystore file. */
typedef struct et_ksplan {
    char *dir;  /* the token directory */
    char *dest; /* the keystore file to write */
    uint32_t slot;
    char label[KS_LABEL_MAX + 1];
} et_ksplan;

static void
et_ksplan_free(et_ksplan *p)
{
    free(p->dir);
    free(p->dest);
    memset(p, 0, sizeof(*p));
}

/* Every check of `restore` for the keystore file SRC (shown as SHOWN),
 * nothing changed yet: where it goes into P. */
static int
et_restore_plan(et_opts *o, const char *src, const char *shown, et_ksplan *p)
{
    char *dir = NULL, *dest = NULL;
    uint32_t *ids = NULL, slot = 0;
    size_t n = 0;
    ks_rv kr;
    int rc;
    char *label = p->label;

    memset(p, 0, sizeof(*p));
    if (et_ks_label(src, label, sizeof(p->label)) != 0) {
        et_err("restore: %s is not a readable evertoken keystore: %s", shown, ks_open_error());
        return ET_EXIT_INPUT;
    }
    dir = et_tokdir();
    if (dir == NULL)
        return ET_EXIT_FAIL;
    kr = ks_dir_scan(dir, &ids, &n);
    if (kr != KS_OK) {
        et_err("cannot read the token directory %s: %s", dir, ks_strerror(kr));
        rc = ET_EXIT_FAIL;
        goto done;
    }
    if (o->slot >= 0 || o->token != NULL) {
        if (o->slot >= 0) {
            slot = (uint32_t)o->slot;
            dest = ks_token_path(dir, slot);
            if (dest == NULL) {
                rc = ET_EXIT_FAIL;
                goto done;
            }
        } else {
            rc = et_ks_find(dir, o, &dest, &slot);
            if (rc != ET_EXIT_OK)
                goto done;
        }
        if (access(dest, F_OK) == 0 && !o->force) {
            et_err("restore: slot %u already holds a token (%s); add --force to replace it", slot,
                   dest);
            rc = ET_EXIT_EXISTS;
            goto done;
        }
    } else {
        /* A new slot after the highest one in use: slot ids are never
         * reused, so applications that remember a slot id never meet a
         * different token under it. */
        slot = n > 0 ? ids[n - 1] + 1 : 0;
        if (n > 0 && ids[n - 1] >= KS_SLOT_MAX) {
            et_err("restore: no slot number left; give --slot N");
            rc = ET_EXIT_FAIL;
            goto done;
        }
        dest = ks_token_path(dir, slot);
        if (dest == NULL) {
            rc = ET_EXIT_FAIL;
            goto done;
        }
    }
    for (size_t i = 0; i < n; i++) {
        char other[KS_LABEL_MAX + 1];
        char *q = ks_token_path(dir, ids[i]);
        if (q != NULL && ids[i] != slot && et_ks_label(q, other, sizeof(other)) == 0 &&
            strcmp(other, label) == 0)
            et_warn("slot %u has a token with the same label '%s'; select tokens with --slot",
                    ids[i], label);
        free(q);
    }
    p->dir = dir;
    p->dest = dest;
    p->slot = slot;
    dir = dest = NULL;
    rc = ET_EXIT_OK;
done:
    free(ids);
    free(dest);
    free(dir);
    return rc;
}

/* The restore planned in P, of the keystore file SRC (shown as SHOWN). */
static int
et_restore_apply(const et_ksplan *p, const char *src, const char *shown)
{
    ks_rv kr;

    if (mkdir(p->dir, 0700) != 0 && errno != EEXIST) {
        et_err("cannot create the token directory %s: %s", p->dir, strerror(errno));
        return ET_EXIT_FAIL;
    }
    kr = ks_restore(src, p->dest);
    if (kr != KS_OK) {
        et_err("restore of %s to %s failed: %s (%s)", shown, p->dest, ks_strerror(kr),
               ks_open_error());
        return et_ks_exit(kr);
    }
    printf("restored token '%s' to slot %u (%s)\n", et_escs(p->label), p->slot, et_escs(p->dest));
    return ET_EXIT_OK;
}

/* Restore the keystore file SRC (shown as SHOWN) as `restore` does. */
static int
et_restore_keystore(et_opts *o, const char *src, const char *shown)
{
    et_ksplan p;
    int rc = et_restore_plan(o, src, shown, &p);

    if (rc == ET_EXIT_OK)
        rc = et_restore_apply(&p, src, shown);
    et_ksplan_free(&p);
    return rc;
}

/* The state part of a bundle restore, before anything changes: the state
 * directory resolved (R->real), both helper locks taken (R->locks), the
 * backup's state staged (R->stage) and compared with the state in place. */
typedef struct et_rstate {
    char *sdir, *real, *stage;
    int created, locks[2];
} et_rstate;

static void
et_rstate_done(et_rstate *r, int failed)
{
    if (r->stage != NULL)
        et_enr_state_discard(r->stage);
    et_enr_state_unlock(r->locks);
    if (failed && r->created && r->real != NULL)
        et_enr_state_discard(r->real); /* made by us, empty but for the locks */
    free(r->stage);
    free(r->real);
    free(r->sdir);
}

static int
et_restore_prepare(et_opts *o, const et_bundle *b, et_rstate *r)
{
    char err[512] = "", tb[2][32];
    long long have = 0, latest = 0;

    if ((r->sdir = et_state_dir(o)) == NULL)
        return ET_EXIT_FAIL;
    if (et_enr_state_resolve(r->sdir, &r->real, &r->created, err, sizeof(err)) != 0) {
        et_err("restore: the helper state directory: %s", err);
        return ET_EXIT_FAIL;
    }
    if (et_enr_state_lock_restore(r->real, r->locks, err, sizeof(err)) != 0) {
        et_err("restore: %s; nothing changed", err);
        return ET_EXIT_FAIL;
    }
    if (et_enr_state_latest(r->real, &have, err, sizeof(err)) != 0 && !o->force) {
        et_err("restore: the helper state in %s cannot be read (%s); add --force to replace it",
               r->sdir, err);
        return ET_EXIT_FAIL;
    }
    if (et_enr_state_stage(r->real, &b->state, &r->stage, &latest, err, sizeof(err)) != 0) {
        et_err("restore: the backup's helper state: %s", err);
        return strstr(err, "damaged") || strstr(err, "not a state database") ||
                       strstr(err, "unacceptable") || strstr(err, "no state database")
                   ? ET_EXIT_INPUT
                   : ET_EXIT_FAIL;
    }
    /* The backup's time is the one its state database records, not what
     * the bundle's description claims. */
    if (have > latest && !o->force) {
        time_t t[2] = {(time_t)have, (time_t)latest};
        for (int i = 0; i < 2; i++)
            strftime(tb[i], sizeof(tb[i]), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t[i]));
        et_err("restore: the helper state in %s is newer (last activity %s) than the "
               "backup's (%s); add --force to replace it",
               r->sdir, tb[0], tb[1]);
        return ET_EXIT_EXISTS;
    }
    return ET_EXIT_OK;
}

/* The bundle's keystore into a private temporary file (*TMP, *COPY). */
static int
et_restore_ks_copy(const et_bundle *b, char **tmp, char **copy)
{
    int fd;

    if ((*tmp = et_tmpdir(NULL)) == NULL || (*copy = et_aprintf("%s/keystore.db", *tmp)) == NULL)
        return ET_EXIT_FAIL;
    fd = open(*copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, b->token.v[0].data, b->token.v[0].len) != (ssize_t)b->token.v[0].len) {
        et_err("cannot write %s: %s", *copy, strerror(errno));
        if (fd >= 0)
            close(fd);
        return ET_EXIT_FAIL;
    }
    close(fd);
    return ET_EXIT_OK;
}

/* restore of a bundle: every part checked, the keystore's place chosen,
 * the helper's locks taken and its state staged (nothing changed so far;
 * a refusal ends here), then the keystore restored and the state put in
 * place, then the locks released. */
static int
et_restore_bundle(et_opts *o)
{
    char err[512] = "";
    char *tmp = NULL, *copy = NULL;
    et_rstate r = {NULL, NULL, NULL, 0, {-1, -1}};
    et_ksplan plan;
    et_bundle b;
    int rc = et_bundle_read(o->argv[0], &b);

    memset(&plan, 0, sizeof(plan));
    if (rc != ET_EXIT_OK)
        return rc;
    rc = et_restore_ks_copy(&b, &tmp, &copy);
    if (rc == ET_EXIT_OK)
        rc = et_restore_plan(o, copy, o->argv[0], &plan);
    if (rc == ET_EXIT_OK && b.state.n > 0)
        rc = et_restore_prepare(o, &b, &r);
    if (rc == ET_EXIT_OK)
        rc = et_restore_apply(&plan, copy, o->argv[0]);
    if (rc != ET_EXIT_OK || r.stage == NULL)
        goto done;
    if (et_enr_state_commit(r.real, r.stage, err, sizeof(err)) != 0) {
        et_err("restore: the token is restored but the helper state is not: %s (the restored "
               "state waits in %s)",
               err, r.stage);
        free(r.stage);
        r.stage = NULL;
        rc = ET_EXIT_FAIL;
        goto done;
    }
    free(r.stage);
    r.stage = NULL;
    printf("restored the helper state (%zu files) to %s\n", b.state.n, et_escs(r.sdir));
done:
    et_rstate_done(&r, rc != ET_EXIT_OK);
    et_ksplan_free(&plan);
    if (copy != NULL)
        unlink(copy);
    if (tmp != NULL)
        rmdir(tmp);
    free(copy);
    free(tmp);
    et_bundle_free(&b);
    return rc;
}

int
et_cmd_restore(et_opts *o)
{
    if (o->argc != 1) {
        et_err("restore: expected one backup file (evertoken restore BACKUP [--slot N])");
        return ET_EXIT_USAGE;
    }
    if (access(o->argv[0], R_OK) != 0) {
        et_err("restore: cannot read %s: %s", o->argv[0], strerror(errno));
        return errno == ENOENT ? ET_EXIT_NOTFOUND : ET_EXIT_FAIL;
    }
    if (et_bundle_is(o->argv[0]))
        return et_restore_bundle(o);
    if (o->state_dir != NULL) {
        et_err("restore: %s is a keystore backup without helper state; --enroll-state does not "
               "apply",
               o->argv[0]);
        return ET_EXIT_USAGE;
    }
    return et_restore_keystore(o, o->argv[0], o->argv[0]);
}

const char *
et_keystore_open_error(CK_SLOT_ID slot, char *buf, size_t n)
{
    char *dir, *path = NULL;
    ks_token *tok = NULL;
    const char *res = NULL;

    if (slot > KS_SLOT_MAX)
        return NULL;
    dir = ks_token_dir(&res);
    res = NULL;
    if (dir != NULL)
        path = ks_token_path(dir, (uint32_t)slot);
    if (path != NULL && access(path, F_OK) == 0) {
        if (ks_open(path, &tok) != KS_OK) {
            snprintf(buf, n, "cannot open %s: %s", path, ks_open_error());
            res = buf;
        } else {
            ks_close(tok);
        }
    }
    free(path);
    free(dir);
    return res;
}

void
et_print_keystore_info(CK_SLOT_ID slot, const char *label, const char *serial)
{
    char *dir = NULL, *path = NULL;
    ks_token *tok = NULL;
    ks_info info;
    ks_rv kr;

    if (slot > KS_SLOT_MAX)
        return;
    dir = et_tokdir();
    if (dir == NULL)
        return;
    path = ks_token_path(dir, (uint32_t)slot);
    if (path == NULL || access(path, F_OK) != 0) {
        printf("  keystore:         (no evertoken keystore file for this slot)\n");
        goto done;
    }
    kr = ks_open(path, &tok);
    if (kr != KS_OK) {
        printf("  keystore:         %s (cannot open: %s)\n", et_escs(path),
               et_escs(ks_open_error()));
        goto done;
    }
    kr = ks_get_info(tok, &info);
    if (kr != KS_OK) {
        printf("  keystore:         %s (cannot read: %s)\n", et_escs(path), ks_strerror(kr));
        goto done;
    }
    /* The slot-to-file rule holds only for the evertoken module; if another
     * module is loaded, a file of the same number is a different token. */
    if (strcmp(info.label, label) != 0 || strcmp(info.serial, serial) != 0) {
        printf("  keystore:         (this token is not %s)\n", et_escs(path));
        goto done;
    }
    printf("  keystore file:    %s\n", et_escs(path));
    printf("  schema version:   %u\n", (unsigned)info.schema_version);
    printf("  token id:         ");
    et_hex_print(stdout, info.token_id, sizeof(info.token_id));
    putchar('\n');
    printf("  KDF:              Argon2id opslimit=%llu memlimit=%llu bytes%s\n",
           (unsigned long long)info.kdf.opslimit, (unsigned long long)info.kdf.memlimit,
           info.kdf.opslimit == 0 ? " (defaults)" : "");
    printf("  user PIN:         %s, %u failed attempt%s (locks at %u)\n",
           info.user_pin_initialized ? "set" : "not set", info.user_fail_count,
           info.user_fail_count == 1 ? "" : "s", info.max_attempts);
    printf("  SO PIN:           %u failed attempt%s (locks at %u)\n", info.so_fail_count,
           info.so_fail_count == 1 ? "" : "s", info.max_attempts);
    printf("  objects stored:   %llu\n", (unsigned long long)info.object_count);
    et_print_inactive(tok);
done:
    ks_close(tok);
    free(path);
    free(dir);
}
