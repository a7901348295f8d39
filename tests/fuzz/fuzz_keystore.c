/*
 * fuzz_keystore.c — opening a damaged keystore file.
 *
 * A valid token (SO and user PIN, two private and two public objects, a
 * setting, and a credential "cr" in the middle of a rollover: one retired
 * pair, the active key and certificate that replaced it, a pending key) is
 * built once in a temporary directory and read into memory, in the newest
 * schema; the lookup columns (schemas 5, 6) of one public and one private
 * object are left unfilled, as after a migration, so that ks_open and
 * ks_login fill them from the damaged file. The rows' rollover state
 * (state, retired_at, cred) fills schema 7's indexes objects_cred and
 * objects_inactive and objects_retired.
 * Each input is a list of damages applied to a copy of it:
 *   byte 0         flags: bit 0 truncate (length from bytes 1-2), bit 1 also
 *                  damage every page at the same page offset, bits 3-4 the
 *                  high part of every offset (+ 64 KiB each: the file is
 *                  larger than 64 KiB, and schema 7's indexes are on its
 *                  last pages)
 *   then records   u16 little-endian offset (plus the high part, modulo the
 *                  file size), XOR byte
 * The copy is written as the token file (no -wal), then ks_open, ks_get_info,
 * ks_login (user PIN), ks_load_objects, ks_object_get (also with
 * KS_GET_RETIRED), ks_get_setting, ks_find by CKA_ID, CKA_LABEL,
 * CKA_SUBJECT and CKA_CLASS, ks_find_count by CKA_CLASS and
 * ks_find_issuer_serial, ks_find_pending and ks_list_inactive (logged out
 * and in), ks_change_seq, the rollover of "cr" (commit, rollback, discard,
 * purge), ks_changed, a create and a destroy, ks_close: every result is acceptable
 * except a crash, a sanitizer report, or objects handed out with attributes
 * that are not sorted and unique (the keystore.h contract).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "keystore.h"

#define USER_PIN "fuzz-user-pin"
#define SO_PIN   "fuzz-so-pin"

static char dir[256], path[300];
static const unsigned char cred[] = "cr";
#define CRED_ARGS cred, sizeof(cred) - 1
static unsigned char *base;
static size_t base_len;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
rm_files(void)
{
    char p[320];

    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
}

static void
cleanup(void)
{
    rm_files();
    rmdir(dir);
}

static void
die(const char *what)
{
    fprintf(stderr, "fuzz_keystore: set-up failed: %s\n", what);
    exit(1);
}

/* Credential "cr": a pair (key private), a pending key, the commit that
 * retires the pair (retired_at 1000), then another pending key. */
static int
rollover_state(ks_token *tok)
{
    unsigned char priv[8] = {3}, pub[8] = {2}, crt[8] = {1};
    ks_attr k[3] = {
        {0, 8, priv}, {3, 3, (unsigned char *)"key"}, {0x102, 2, (unsigned char *)"cr"}};
    ks_attr p[3] = {{0, 8, pub}, {3, 3, (unsigned char *)"key"}, {0x102, 2, (unsigned char *)"cr"}};
    ks_attr c[2] = {{0, 8, crt}, {0x11, 4, (unsigned char *)"cert"}};
    int64_t id;

    return ks_object_create(tok, 1, k, 3, &id) != KS_OK ||
           ks_object_create(tok, 0, p, 3, &id) != KS_OK ||
           ks_object_create_pending(tok, 1, k, 3, CRED_ARGS, &id) != KS_OK ||
           ks_rollover_commit(tok, CRED_ARGS, c, 2, 1000, &id) != KS_OK ||
           ks_object_create_pending(tok, 1, k, 3, CRED_ARGS, &id) != KS_OK;
}

static int
inactive_cb(void *ctx, const ks_inactive *o)
{
    size_t sum = 0;

    (void)ctx;
    for (size_t i = 0; i < o->cred_len; i++)
        sum += o->cred[i];
    for (size_t i = 0; i < o->nattrs; i++)
        for (size_t j = 0; j < o->attrs[i].len; j++)
            sum += o->attrs[i].value[j]; /* every byte readable */
    return sum == (size_t)-1;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *t = getenv("TMPDIR");
    ks_kdf_params kdf = {crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN};
    ks_token *tok = NULL;
    ks_attr a[6] = {
        {3, 5, (unsigned char *)"label"},    {0x11, 16, (unsigned char *)"0123456789abcdef"},
        {0x81, 5, (unsigned char *)"CN=ca"}, {0x82, 1, (unsigned char *)"\x01"},
        {0x101, 4, (unsigned char *)"CN=s"}, {0x102, 2, (unsigned char *)"id"}};
    int64_t id;
    FILE *f;
    long n = 0;

    (void)argc;
    (void)argv;
    if (sodium_init() < 0)
        die("sodium_init");
    /* Every input writes the file: tmpfs keeps fsync cheap (FUZZ_TMP overrides). */
    if (getenv("FUZZ_TMP") != NULL)
        t = getenv("FUZZ_TMP");
    else if (access("/dev/shm", W_OK) == 0)
        t = "/dev/shm";
    snprintf(dir, sizeof(dir), "%s/et-fuzz-ks.XXXXXX", t && *t ? t : "/tmp");
    if (mkdtemp(dir) == NULL)
        die("mkdtemp");
    snprintf(path, sizeof(path), "%s/token-0.db", dir);
    atexit(cleanup);
    if (ks_create(path, "fuzz", (const unsigned char *)SO_PIN, strlen(SO_PIN), &kdf, &tok) !=
            KS_OK ||
        ks_login(tok, KS_SO, (const unsigned char *)SO_PIN, strlen(SO_PIN)) != KS_OK ||
        ks_init_user_pin(tok, (const unsigned char *)USER_PIN, strlen(USER_PIN)) != KS_OK)
        die("token");
    ks_logout(tok);
    if (ks_login(tok, KS_USER, (const unsigned char *)USER_PIN, strlen(USER_PIN)) != KS_OK)
        die("login");
    for (int i = 0; i < 4; i++)
        if (ks_object_create(tok, i & 1, a, 6, &id) != KS_OK)
            die("objects");
    if (ks_set_setting(tok, "login_cache", "process") != KS_OK)
        die("setting");
    if (rollover_state(tok) != 0)
        die("rollover state");
    ks_close(tok); /* the last connection: the WAL is checkpointed and removed */
    {
        sqlite3 *db = NULL;

        if (sqlite3_open(path, &db) != SQLITE_OK ||
            sqlite3_exec(db,
                         "UPDATE objects SET lk = 0, l_id = NULL, l_label = NULL, l_class = NULL,"
                         " l_ktype = NULL, l_ctype = NULL, l_subj = NULL, l_isn = NULL "
                         "WHERE id IN (3, 4);",
                         NULL, NULL, NULL) != SQLITE_OK)
            die("unfilled lookup columns");
        sqlite3_close(db);
    }
    f = fopen(path, "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) <= 0 ||
        fseek(f, 0, SEEK_SET) != 0)
        die("reading the token");
    base_len = (size_t)n;
    base = malloc(base_len);
    if (base == NULL || fread(base, 1, base_len, f) != base_len)
        die("reading the token");
    fclose(f);
    return 0;
}

static int
check_cb(void *ctx, const ks_object *o)
{
    size_t sum = 0;

    (void)ctx;
    for (size_t i = 0; i < o->nattrs; i++) {
        if (i > 0 && o->attrs[i].type <= o->attrs[i - 1].type)
            abort(); /* contract: sorted, no duplicates */
        for (size_t j = 0; j < o->attrs[i].len; j++)
            sum += o->attrs[i].value[j]; /* every byte readable */
    }
    return sum == (size_t)-1;
}

/* The rollover of "cr" on the damaged file: commit the pending key, roll
 * back, discard, purge (each reads its candidates through the indexes). */
static void
rollover(ks_token *tok)
{
    unsigned char crt[8] = {1};
    ks_attr c[2] = {{0, 8, crt}, {0x11, 5, (unsigned char *)"cert2"}};
    int64_t id = 0;
    unsigned n = 0;

    (void)!ks_rollover_commit(tok, CRED_ARGS, c, 2, 2000, &id);
    (void)!ks_rollover_rollback(tok, CRED_ARGS);
    (void)!ks_rollover_discard(tok, CRED_ARGS, &n);
    (void)!ks_purge_retired(tok, 3000, 0, &n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *copy;
    size_t len = base_len, page = 4096;
    ks_token *tok = NULL;
    ks_info info;
    unsigned tampered = 0;
    int changed, fd;
    char *val = NULL;

    if (size > 4096 || base == NULL)
        return 0;
    copy = malloc(base_len);
    if (copy == NULL)
        return 0;
    memcpy(copy, base, base_len);
    if (size >= 3 && (data[0] & 1))
        len = (size_t)(data[1] | data[2] << 8) % base_len;
    for (size_t i = 1 + ((size >= 3 && (data[0] & 1)) ? 2 : 0); i + 3 <= size; i += 3) {
        size_t off =
            ((size_t)(data[i] | data[i + 1] << 8) + ((size_t)(data[0] >> 3 & 3) << 16)) % base_len;

        copy[off] ^= data[i + 2];
        if (data[0] & 2)
            for (size_t p = off % page; p < base_len; p += page)
                if (p != off)
                    copy[p] ^= data[i + 2];
    }
    rm_files();
    fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, copy, len) != (ssize_t)len) {
        if (fd >= 0)
            close(fd);
        free(copy);
        return 0;
    }
    close(fd);
    free(copy);

    if (ks_open(path, &tok) != KS_OK)
        return 0;
    (void)!ks_get_info(tok, &info);
    (void)!ks_load_objects(tok, check_cb, NULL, &tampered); /* logged out: public only */
    (void)!ks_find(tok, 0x102, "id", 2, check_cb, NULL, &tampered);
    (void)!ks_find(tok, 3, "label", 5, check_cb, NULL, &tampered);
    (void)!ks_find(tok, 0x101, "CN=s", 4, check_cb, NULL, &tampered);
    (void)!ks_find_issuer_serial(tok, "CN=ca", 5, "\x01", 1, check_cb, NULL, &tampered);
    (void)!ks_find_pending(tok, CRED_ARGS, check_cb, NULL, &tampered);
    (void)!ks_list_inactive(tok, inactive_cb, NULL, &tampered);
    if (ks_login(tok, KS_USER, (const unsigned char *)USER_PIN, strlen(USER_PIN)) == KS_OK) {
        static const unsigned char cls[8] = {3};
        ks_attr a = {3, 4, (unsigned char *)"fuzz"};
        int64_t id = 0;
        uint64_t count = 0;

        (void)!ks_load_objects(tok, check_cb, NULL, &tampered);
        (void)!ks_object_get(tok, 1, check_cb, NULL);
        (void)!ks_object_get(tok, 2, check_cb, NULL);
        (void)!ks_find(tok, 0x102, "id", 2, check_cb, NULL, &tampered);
        (void)!ks_find(tok, 3, "label", 5, check_cb, NULL, &tampered);
        (void)!ks_find(tok, 0x101, "CN=s", 4, check_cb, NULL, &tampered);
        (void)!ks_find_issuer_serial(tok, "CN=ca", 5, "\x01", 1, check_cb, NULL, &tampered);
        (void)!ks_find(tok, 0, cls, sizeof(cls), check_cb, NULL, &tampered);
        (void)!ks_find_count(tok, 0, cls, sizeof(cls), &count);
        (void)!ks_object_get_flags(tok, 1, KS_GET_RETIRED, check_cb, NULL);
        (void)!ks_object_get_flags(tok, 3, KS_GET_RETIRED, check_cb, NULL);
        (void)!ks_find_pending(tok, CRED_ARGS, check_cb, NULL, &tampered);
        (void)!ks_list_inactive(tok, inactive_cb, NULL, &tampered);
        (void)!ks_change_seq(tok, &id);
        rollover(tok);
        if (ks_get_setting(tok, "login_cache", &val) == KS_OK)
            free(val);
        if (ks_object_create(tok, 1, &a, 1, &id) == KS_OK)
            (void)!ks_object_destroy(tok, id);
    }
    (void)!ks_changed(tok, &changed);
    ks_close(tok);
    return 0;
}
