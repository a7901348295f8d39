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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keystore.h"
#include "et_int.h"

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

int
et_cmd_backup(et_opts *o)
{
    char *dir = NULL, *path = NULL;
    ks_token *tok = NULL;
    uint32_t slot = 0;
    ks_rv kr;
    int rc;

    if (o->argc != 1) {
        et_err("backup: expected one output file (evertoken backup --token LABEL OUT)");
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
    kr = ks_backup(tok, o->argv[0]);
    if (kr != KS_OK) {
        et_err("backup to %s failed: %s (%s)", o->argv[0], ks_strerror(kr), ks_last_error(tok));
        rc = et_ks_exit(kr);
        goto done;
    }
    printf("backed up slot %u (%s) to %s\n", slot, et_escs(path), et_escs(o->argv[0]));
    rc = ET_EXIT_OK;
done:
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

int
et_cmd_restore(et_opts *o)
{
    char *dir = NULL, *dest = NULL;
    uint32_t *ids = NULL, slot = 0;
    size_t n = 0;
    ks_rv kr;
    int rc;
    char label[KS_LABEL_MAX + 1];

    if (o->argc != 1) {
        et_err("restore: expected one backup file (evertoken restore BACKUP [--slot N])");
        return ET_EXIT_USAGE;
    }
    if (et_ks_label(o->argv[0], label, sizeof(label)) != 0) {
        et_err("restore: %s is not a readable evertoken keystore: %s", o->argv[0], ks_open_error());
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
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        et_err("cannot create the token directory %s: %s", dir, strerror(errno));
        rc = ET_EXIT_FAIL;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        char other[KS_LABEL_MAX + 1];
        char *p = ks_token_path(dir, ids[i]);
        if (p != NULL && ids[i] != slot && et_ks_label(p, other, sizeof(other)) == 0 &&
            strcmp(other, label) == 0)
            et_warn("slot %u has a token with the same label '%s'; select tokens with --slot",
                    ids[i], label);
        free(p);
    }
    kr = ks_restore(o->argv[0], dest);
    if (kr != KS_OK) {
        et_err("restore of %s to %s failed: %s (%s)", o->argv[0], dest, ks_strerror(kr),
               ks_open_error());
        rc = et_ks_exit(kr);
        goto done;
    }
    printf("restored token '%s' to slot %u (%s)\n", et_escs(label), slot, et_escs(dest));
    rc = ET_EXIT_OK;
done:
    free(ids);
    free(dest);
    free(dir);
    return rc;
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
