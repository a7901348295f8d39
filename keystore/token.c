/*
 * token.c — token lifecycle, PINs and login, information, settings.
 *
 * PIN checks follow one pattern (pin_verify_relock): under the lock, count
 * the attempt and mark it in flight in its own committed transaction;
 * release the lock for Argon2id; re-take it to unwrap and record the outcome
 * (marker removed; on success the counter reset). A process killed during
 * the KDF leaves the attempt counted until a later check sees its process
 * gone and gives it back (in-flight markers, below).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ks_int.h"

/* What a successful PIN check hands to its caller (secrets in locked memory). */
struct gen_raw {
    int present; /* the row exists (absent: generation 0) */
    int has_mac;
    uint64_t value;
    unsigned char mac[KS_MAC_LEN];
};

struct pin_ok {
    struct ks_keys *keys;    /* the TMK and its derived keys */
    unsigned char *wrap_key; /* the PIN's Argon2id output */
    struct ks_pin_row row;   /* that PIN's salt and cost */
    struct ks_meta meta;
    struct gen_raw gen; /* user PIN generation, read with ROW (KS_USER only) */
};

static void
pin_ok_clear(struct pin_ok *ok)
{
    ks_keys_free(ok->keys);
    ks_secure_free(ok->wrap_key);
    sodium_memzero(ok, sizeof(*ok));
}

static ks_rv
pin_len_check(ks_token *tok, const unsigned char *pin, size_t len)
{
    if (pin == NULL && len > 0)
        return KS_ERR(tok, KS_E_ARGS, "NULL PIN");
    if (len < KS_PIN_MIN || len > KS_PIN_MAX)
        return KS_ERR(tok, KS_E_PIN_LEN, "PIN length %zu outside %d..%d", len, KS_PIN_MIN,
                      KS_PIN_MAX);
    return KS_OK;
}

/* Labels: at most KS_LABEL_MAX bytes of valid UTF-8 without control
 * characters (they end up in fixed-width, space-padded PKCS#11 fields). */
static int
label_ok(const char *label)
{
    const unsigned char *s = (const unsigned char *)label;
    size_t n = strlen(label), i = 0;

    if (n > KS_LABEL_MAX)
        return 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned cp;

        if (c < 0x20 || c == 0x7f)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* Forget the keys the handle holds (and what its login proved). */
static void
keys_drop_inlock(ks_token *tok)
{
    ks_keys_free(tok->keys);
    tok->keys = NULL;
    tok->login_user = 0;
    tok->login_gen = 0;
}

/* Check the meta MAC with KEYS: proves KEYS belong to this token as it is
 * now (not re-initialised by another process) and the meta rows are intact. */
static ks_rv
meta_check_inlock(ks_token *tok, const struct ks_keys *keys, struct ks_meta *m)
{
    unsigned char mac[KS_MAC_LEN];
    ks_rv rv = ks_meta_read_inlock(tok, m);

    if (rv != KS_OK)
        return rv;
    ks_meta_mac(mac, keys->mac, m);
    if (!m->has_mac || sodium_memcmp(mac, m->mac, KS_MAC_LEN) != 0)
        return KS_ERR(tok, KS_E_TAMPERED,
                      "token metadata MAC mismatch (tampered, or re-initialised elsewhere)");
    return KS_OK;
}

ks_rv
ks_tmk_current_inlock(ks_token *tok)
{
    struct ks_meta m;
    ks_rv rv;

    if (tok->keys == NULL)
        return KS_ERR(tok, KS_E_NOT_LOGGED_IN, "not logged in");
    rv = meta_check_inlock(tok, tok->keys, &m);
    if (rv == KS_E_TAMPERED) {
        /* The key we hold no longer opens this token: forget it. */
        keys_drop_inlock(tok);
        return KS_ERR(tok, KS_E_NOT_LOGGED_IN,
                      "the token key held no longer matches the token (re-initialised by another "
                      "process, or metadata tampered); logged out");
    }
    return rv;
}

/* ---- user PIN generation (see ks_login_tmk in keystore.h) -------------- */

static void
gen_text(char buf[24], uint64_t v)
{
    snprintf(buf, 24, "%llu", (unsigned long long)v);
}

/* Read the generation row as stored (its MAC is checked by gen_check once
 * keys are at hand). */
static ks_rv
gen_read_inlock(ks_token *tok, struct gen_raw *g)
{
    sqlite3_stmt *st = ks_stmt_inlock(tok, ST_SET_GET);
    const unsigned char *v;
    char *end = NULL;
    ks_rv rv = KS_OK;
    int rc, n;

    memset(g, 0, sizeof(*g));
    sqlite3_bind_text(st, 1, KS_PIN_GEN_SETTING, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        goto out;
    if (rc != SQLITE_ROW) {
        rv = KS_SQLERR(tok, rc, "reading the PIN generation");
        goto out;
    }
    v = sqlite3_column_text(st, 0);
    n = sqlite3_column_bytes(st, 0);
    if (sqlite3_column_type(st, 0) != SQLITE_TEXT || v == NULL || n < 1 || n > 20 || v[0] < '0' ||
        v[0] > '9') {
        rv = KS_ERR(tok, KS_E_CORRUPT, "PIN generation malformed");
        goto out;
    }
    errno = 0;
    g->value = strtoull((const char *)v, &end, 10);
    if (errno != 0 || end != (const char *)v + n) {
        rv = KS_ERR(tok, KS_E_CORRUPT, "PIN generation malformed");
        goto out;
    }
    g->present = 1;
    if (sqlite3_column_type(st, 1) != SQLITE_NULL) {
        if (sqlite3_column_bytes(st, 1) != KS_MAC_LEN) {
            rv = KS_ERR(tok, KS_E_TAMPERED, "PIN generation MAC malformed");
            goto out;
        }
        memcpy(g->mac, sqlite3_column_blob(st, 1), KS_MAC_LEN);
        g->has_mac = 1;
    }
out:
    ks_stmt_done(st);
    return rv;
}

/* The generation G vouched for by KEYS: absent is 0; present without a MAC
 * or with a wrong one is tampering. */
static ks_rv
gen_check(ks_token *tok, const struct ks_keys *keys, const struct gen_raw *g, uint64_t *out)
{
    unsigned char mac[KS_MAC_LEN];
    char text[24];

    *out = 0;
    if (!g->present)
        return KS_OK;
    gen_text(text, g->value);
    ks_setting_mac(mac, keys->mac, tok->token_id, KS_PIN_GEN_SETTING, text);
    if (!g->has_mac || sodium_memcmp(mac, g->mac, KS_MAC_LEN) != 0)
        return KS_ERR(tok, KS_E_TAMPERED, "PIN generation failed its MAC check");
    *out = g->value;
    return KS_OK;
}

/* Inside the caller's write transaction: generation + 1, MAC'd by KEYS. */
static ks_rv
gen_bump_inlock(ks_token *tok, const struct ks_keys *keys)
{
    unsigned char mac[KS_MAC_LEN];
    struct gen_raw g;
    uint64_t cur = 0;
    sqlite3_stmt *st;
    char text[24];
    ks_rv rv;

    rv = gen_read_inlock(tok, &g);
    if (rv == KS_OK)
        rv = gen_check(tok, keys, &g, &cur);
    if (rv != KS_OK)
        return rv;
    gen_text(text, cur + 1);
    ks_setting_mac(mac, keys->mac, tok->token_id, KS_PIN_GEN_SETTING, text);
    st = ks_stmt_inlock(tok, ST_SET_PUT);
    sqlite3_bind_text(st, 1, KS_PIN_GEN_SETTING, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 3, mac, sizeof(mac), SQLITE_STATIC);
    return ks_step_done_inlock(tok, st, "writing the PIN generation");
}

/* ---- in-flight PIN attempts ---------------------------------------------
 *
 * An attempt is counted before Argon2id runs, and a meta row
 * pin_attempt:WHO:<random> = "<boot id> <pid namespace> <pid> <start time>"
 * marks it as in flight in the same transaction. Its outcome removes the
 * marker in the transaction that records it (a wrong PIN leaves the count, a
 * right one resets the counter). A marker whose process is gone (another
 * boot, no such pid, another process under that pid, or a zombie) belongs to
 * an attempt that was interrupted before anyone could learn its outcome: it
 * is reclaimed (marker deleted, count given back) at the next PIN check, so
 * killing a process during a login with the right PIN does not use up the
 * PIN's attempts for good, while every outcome that was reported stays
 * counted. A marker of a live process (a concurrent attempt) is never
 * touched; one from another PID namespace or unreadable /proc is treated as
 * alive (counted, as before markers existed). See docs/keystore-format.md.
 */

#define ATT_PREFIX "pin_attempt:"

static void
att_bounds(ks_who who, char lo[24], char hi[24])
{
    snprintf(lo, 24, ATT_PREFIX "%d:", (int)who);
    snprintf(hi, 24, ATT_PREFIX "%d;", (int)who); /* ';' follows ':' */
}

/* Read a small /proc file into BUF (NUL-terminated, trailing newline cut). */
static int
proc_read(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t k;

    if (fd < 0)
        return -1;
    k = read(fd, buf, n - 1);
    close(fd);
    if (k <= 0)
        return -1;
    buf[k] = '\0';
    while (k > 0 && (buf[k - 1] == '\n' || buf[k - 1] == ' '))
        buf[--k] = '\0';
    return 0;
}

/* State letter and start time (clock ticks after boot) of process PID from
 * /proc/PID/stat; -1 if there is no such process. */
static int
proc_stat(long pid, char *state, unsigned long long *start)
{
    char path[64], buf[1024];
    const char *p;
    int field;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if (proc_read(path, buf, sizeof(buf)) != 0)
        return -1;
    p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (p == NULL || p[1] != ' ')
        return -1;
    p += 2;
    *state = *p;
    /* field 3 is the state; the start time is field 22 */
    for (field = 3; field < 22 && p != NULL; field++) {
        p = strchr(p, ' ');
        if (p != NULL)
            p++;
    }
    if (p == NULL)
        return -1;
    *start = strtoull(p, NULL, 10);
    return 0;
}

/* Boot id and PID namespace of this system / process ("?" when unknown). */
static void
proc_ids(char boot[64], char ns[64])
{
    ssize_t k;

    if (proc_read("/proc/sys/kernel/random/boot_id", boot, 64) != 0 || strchr(boot, ' ') != NULL)
        snprintf(boot, 64, "?");
    k = readlink("/proc/self/ns/pid", ns, 63);
    if (k <= 0)
        snprintf(ns, 64, "?");
    else
        ns[k] = '\0';
    for (char *c = ns; *c != '\0'; c++)
        if (*c == ' ')
            *c = '_';
}

/* This process as an attempt's owner. */
static void
att_owner(char out[192])
{
    char boot[64], ns[64], state = 0;
    unsigned long long start = 0;

    proc_ids(boot, ns);
    if (proc_stat((long)getpid(), &state, &start) != 0)
        start = 0;
    snprintf(out, 192, "%s %s %ld %llu", boot, ns, (long)getpid(), start);
}

/* 1 if the process that wrote OWNER is certainly gone. */
static int
att_owner_dead(const char *owner)
{
    char boot[64], ns[64], oboot[64], ons[64], state = 0;
    unsigned long long ostart, start = 0;
    long opid;

    if (sscanf(owner, "%63s %63s %ld %llu", oboot, ons, &opid, &ostart) != 4 || opid <= 0)
        return 0; /* not ours to judge: stays counted */
    proc_ids(boot, ns);
    if (strcmp(boot, "?") == 0 || strcmp(ns, "?") == 0)
        return 0;
    if (strcmp(oboot, boot) != 0)
        return 1; /* written before this boot */
    if (strcmp(ons, ns) != 0)
        return 0; /* another PID namespace: its pids mean nothing here */
    if (proc_stat(opid, &state, &start) != 0)
        return 1; /* no such process */
    return start != ostart || state == 'Z' || state == 'X';
}

/* Markers of WHO whose process is gone: *N of them; with DEL, delete them
 * and give their counts back (inside the caller's write transaction). */
static ks_rv
att_reclaim_inlock(ks_token *tok, ks_who who, int del, unsigned *n)
{
    sqlite3_stmt *st = ks_stmt_inlock(tok, ST_ATT_LIST);
    char lo[24], hi[24];
    char **dead = NULL;
    size_t nd = 0, cap = 0;
    ks_rv rv = KS_OK;
    int rc;

    *n = 0;
    att_bounds(who, lo, hi);
    sqlite3_bind_text(st, 1, lo, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, hi, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        const char *v = (const char *)sqlite3_column_text(st, 1);

        if (k == NULL || v == NULL || !att_owner_dead(v))
            continue;
        if (nd == cap) {
            char **p = realloc(dead, (cap ? cap * 2 : 8) * sizeof(*p));

            if (p == NULL) {
                rv = KS_ERR(tok, KS_E_NOMEM, "out of memory");
                break;
            }
            dead = p;
            cap = cap ? cap * 2 : 8;
        }
        dead[nd] = strdup(k);
        if (dead[nd] == NULL) {
            rv = KS_ERR(tok, KS_E_NOMEM, "out of memory");
            break;
        }
        nd++;
    }
    if (rv == KS_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        rv = KS_SQLERR(tok, rc, "reading PIN attempt markers");
    ks_stmt_done(st);
    for (size_t i = 0; i < nd; i++) {
        if (rv == KS_OK && del) {
            st = ks_stmt_inlock(tok, ST_ATT_DEL);
            sqlite3_bind_text(st, 1, dead[i], -1, SQLITE_STATIC);
            rv = ks_step_done_inlock(tok, st, "removing a PIN attempt marker");
            if (rv == KS_OK) {
                st = ks_stmt_inlock(tok, ST_PIN_FAIL_DEC);
                sqlite3_bind_int(st, 1, (int)who);
                rv = ks_step_done_inlock(tok, st, "giving an interrupted PIN attempt back");
            }
        }
        free(dead[i]);
    }
    free(dead);
    if (rv == KS_OK)
        *n = (unsigned)nd;
    return rv;
}

/* Delete marker KEY (KEY NULL: every marker of WHO). */
static ks_rv
att_delete_inlock(ks_token *tok, ks_who who, const char *key)
{
    sqlite3_stmt *st;
    char lo[24], hi[24];

    if (key != NULL) {
        st = ks_stmt_inlock(tok, ST_ATT_DEL);
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    } else {
        att_bounds(who, lo, hi);
        st = ks_stmt_inlock(tok, ST_ATT_DEL_WHO);
        sqlite3_bind_text(st, 1, lo, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, hi, -1, SQLITE_TRANSIENT);
    }
    return ks_step_done_inlock(tok, st, "removing PIN attempt markers");
}

/* Record the outcome of the attempt marked KEY in one write transaction:
 * RESET the counter (right PIN: also drops every other marker of WHO,
 * whose counts the reset absorbed), GIVE_BACK the attempt (not a PIN
 * failure), or neither (wrong PIN: the count stays). */
static ks_rv
att_finish_inlock(ks_token *tok, ks_who who, const char *key, int reset, int give_back)
{
    sqlite3_stmt *st;
    ks_rv rv = ks_begin_inlock(tok, 1);

    if (rv != KS_OK)
        return rv;
    rv = att_delete_inlock(tok, who, reset ? NULL : key);
    if (rv == KS_OK && (reset || give_back)) {
        st = ks_stmt_inlock(tok, reset ? ST_PIN_FAIL_RESET : ST_PIN_FAIL_DEC);
        sqlite3_bind_int(st, 1, (int)who);
        rv = ks_step_done_inlock(
            tok, st, reset ? "resetting the PIN counter" : "uncounting the PIN attempt");
    }
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
    return rv;
}

/*
 * Verify PIN for WHO. Called unlocked; returns with the lock HELD whatever
 * the result. On KS_OK, OK holds the TMK, derived keys and wrap key.
 */
static ks_rv
pin_verify_relock(ks_token *tok, ks_who who, const unsigned char *pin, size_t len,
                  struct pin_ok *ok)
{
    const char *name = who == KS_SO ? "SO" : "user";
    char att_key[sizeof(ATT_PREFIX) + 8 + 32 + 1];
    unsigned reclaimed = 0;
    sqlite3_stmt *st;
    ks_rv rv;

    memset(ok, 0, sizeof(*ok));
    ks_lock(tok);
    rv = ks_begin_inlock(tok, 1);
    if (rv != KS_OK)
        return rv;
    rv = ks_meta_read_inlock(tok, &ok->meta);
    if (rv == KS_OK)
        rv = ks_pin_read_inlock(tok, who, &ok->row);
    /* The generation of the PIN record about to be verified: same snapshot. */
    if (rv == KS_OK && who == KS_USER)
        rv = gen_read_inlock(tok, &ok->gen);
    if (rv != KS_OK)
        goto fail_tx;
    if (!ok->row.initialized) {
        rv = KS_ERR(tok, KS_E_PIN_NOT_INITIALIZED, "the user PIN is not initialised");
        goto fail_tx;
    }
    /* Attempts interrupted before their outcome was known are given back. */
    rv = att_reclaim_inlock(tok, who, 1, &reclaimed);
    if (rv != KS_OK)
        goto fail_tx;
    ok->row.fail_count -= reclaimed < ok->row.fail_count ? reclaimed : ok->row.fail_count;
    if (ok->row.fail_count >= ok->meta.max_attempts) {
        rv = KS_ERR(tok, KS_E_PIN_LOCKED, "%s PIN locked after %u failed attempts", name,
                    ok->row.fail_count);
        if (reclaimed == 0)
            goto fail_tx;
        (void)ks_commit_inlock(tok); /* keep what was reclaimed */
        goto fail;
    }
    /* Count first, durably, marked as in flight: the outcome clears the
     * marker, success also resets the counter. */
    st = ks_stmt_inlock(tok, ST_PIN_FAIL_INC);
    sqlite3_bind_int(st, 1, (int)who);
    rv = ks_step_done_inlock(tok, st, "counting the PIN attempt");
    if (rv == KS_OK) {
        unsigned char rnd[16];
        char owner[192];

        randombytes_buf(rnd, sizeof(rnd));
        snprintf(att_key, sizeof(att_key), ATT_PREFIX "%d:", (int)who);
        sodium_bin2hex(att_key + strlen(att_key), sizeof(att_key) - strlen(att_key), rnd,
                       sizeof(rnd));
        att_owner(owner);
        rv = ks_meta_put_text_inlock(tok, att_key, owner);
    }
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    if (rv != KS_OK)
        goto fail_tx;
    ks_unlock(tok);

    ok->wrap_key = ks_secure_alloc(KS_KEY_LEN);
    ok->keys = ks_secure_alloc(sizeof(*ok->keys));
    if (ok->wrap_key == NULL || ok->keys == NULL)
        rv = KS_E_NOMEM;
    else
        rv = ks_pwhash(ok->wrap_key, pin, len, ok->row.salt, ok->row.kdf_ops, ok->row.kdf_mem);

    ks_lock(tok);
    if (rv != KS_OK) {
        /* Not a PIN failure: give the attempt back. */
        (void)att_finish_inlock(tok, who, att_key, 0, 1);
        rv = KS_ERR(tok, rv, "Argon2id failed (out of memory? memlimit %llu bytes)",
                    (unsigned long long)ok->row.kdf_mem);
        goto fail;
    }
    if (ks_unwrap_tmk(ok->keys->tmk, &ok->row, ok->wrap_key, tok->token_id, who) != 0) {
        /* The outcome is told only once it is recorded: if the marker
         * stayed, the attempt would later count as interrupted. */
        rv = att_finish_inlock(tok, who, att_key, 0, 0);
        if (rv == KS_OK)
            rv = KS_ERR(tok, KS_E_PIN_INCORRECT, "wrong %s PIN (%u of %u attempts used)", name,
                        ok->row.fail_count + 1, ok->meta.max_attempts);
        goto fail;
    }
    rv = ks_keys_derive(ok->keys);
    if (rv != KS_OK) {
        rv = KS_ERR(tok, rv, "key derivation failed");
        goto fail;
    }
    rv = att_finish_inlock(tok, who, att_key, 1, 0);
    if (rv != KS_OK)
        goto fail;
    return KS_OK;

fail_tx:
    ks_rollback_inlock(tok);
fail:
    pin_ok_clear(ok);
    return rv;
}

/* Write P as WHO's PIN row (inside the caller's transaction). */
static ks_rv
pin_write_inlock(ks_token *tok, ks_who who, const struct ks_pin_row *p)
{
    sqlite3_stmt *st = ks_stmt_inlock(tok, ST_PIN_SET);
    ks_rv rv;

    sqlite3_bind_int(st, 1, (int)who);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)p->kdf_ops);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)p->kdf_mem);
    sqlite3_bind_blob(st, 4, p->salt, sizeof(p->salt), SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, p->nonce, sizeof(p->nonce), SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, p->wrapped, sizeof(p->wrapped), SQLITE_STATIC);
    rv = ks_step_done_inlock(tok, st, "writing the PIN record");
    /* The counter starts over: so do the in-flight markers. */
    if (rv == KS_OK)
        rv = att_delete_inlock(tok, who, NULL);
    return rv;
}

/* ---- lifecycle ---------------------------------------------------------- */

ks_rv
ks_create(const char *path, const char *label, const unsigned char *so_pin, size_t so_pin_len,
          const ks_kdf_params *kdf, ks_token **out)
{
    static const char hex[] = "0123456789ABCDEF";
    struct ks_keys *keys = NULL;
    unsigned char *wrap_key = NULL;
    struct ks_pin_row so;
    struct ks_meta m;
    ks_kdf_params k;
    unsigned char sb[KS_SERIAL_LEN / 2];
    char *dir = NULL, *tmp = NULL;
    struct stat sst;
    ks_rv rv;
    int fd;

    ks_open_err_clear();
    memset(&so, 0, sizeof(so));
    memset(&m, 0, sizeof(m));
    if (out != NULL)
        *out = NULL;
    if (path == NULL || *path == '\0' || label == NULL || out == NULL ||
        (so_pin == NULL && so_pin_len > 0))
        return KS_OPEN_ERR(KS_E_ARGS, "ks_create: NULL or empty argument");
    if (!label_ok(label))
        return KS_OPEN_ERR(KS_E_ARGS, "label must be at most %d bytes of printable UTF-8",
                           KS_LABEL_MAX);
    if (so_pin_len < KS_PIN_MIN || so_pin_len > KS_PIN_MAX)
        return KS_OPEN_ERR(KS_E_PIN_LEN, "SO PIN length %zu outside %d..%d", so_pin_len, KS_PIN_MIN,
                           KS_PIN_MAX);
    if (ks_kdf_check(kdf, &k) != KS_OK)
        return KS_OPEN_ERR(KS_E_ARGS, "KDF cost out of range (opslimit >= %llu, memlimit >= %llu)",
                           (unsigned long long)crypto_pwhash_OPSLIMIT_MIN,
                           (unsigned long long)crypto_pwhash_MEMLIMIT_MIN);
    if (sodium_init() < 0)
        return KS_OPEN_ERR(KS_E_CRYPTO, "libsodium initialisation failed");
    if (lstat(path, &sst) == 0)
        return KS_OPEN_ERR(KS_E_EXISTS, "%s already exists", path);
    dir = ks_dirname(path);
    if (dir == NULL) {
        rv = KS_OPEN_ERR(KS_E_NOMEM, "out of memory");
        goto done;
    }
    rv = ks_mkdir_p(dir);
    if (rv == KS_OK)
        rv = ks_check_dir_perms(dir);
    if (rv != KS_OK)
        goto done;

    /* Metadata and keys. */
    randombytes_buf(m.token_id, sizeof(m.token_id));
    randombytes_buf(sb, sizeof(sb));
    for (size_t i = 0; i < sizeof(sb); i++) {
        m.serial[2 * i] = hex[sb[i] >> 4];
        m.serial[2 * i + 1] = hex[sb[i] & 15];
    }
    memcpy(m.label, label, strlen(label));
    m.kdf_ops = k.opslimit;
    m.kdf_mem = k.memlimit;
    m.max_attempts = KS_MAX_ATTEMPTS;
    keys = ks_secure_alloc(sizeof(*keys));
    wrap_key = ks_secure_alloc(KS_KEY_LEN);
    if (keys == NULL || wrap_key == NULL) {
        rv = KS_OPEN_ERR(KS_E_NOMEM, "cannot allocate locked memory");
        goto done;
    }
    randombytes_buf(keys->tmk, sizeof(keys->tmk));
    if (ks_keys_derive(keys) != KS_OK) {
        rv = KS_OPEN_ERR(KS_E_CRYPTO, "key derivation failed");
        goto done;
    }
    so.kdf_ops = k.opslimit;
    so.kdf_mem = k.memlimit;
    randombytes_buf(so.salt, sizeof(so.salt));
    rv = ks_pwhash(wrap_key, so_pin, so_pin_len, so.salt, so.kdf_ops, so.kdf_mem);
    if (rv != KS_OK) {
        rv = KS_OPEN_ERR(rv, "Argon2id failed (out of memory?)");
        goto done;
    }
    ks_wrap_tmk(&so, wrap_key, keys->tmk, m.token_id, KS_SO);

    /* Build the file under a temporary name, then link it into place: the
     * token appears complete or not at all, and never over another file. */
    if (asprintf(&tmp, "%s/.token-XXXXXX", dir) < 0) {
        tmp = NULL;
        rv = KS_OPEN_ERR(KS_E_NOMEM, "out of memory");
        goto done;
    }
    fd = mkostemp(tmp, O_CLOEXEC); /* O_CREAT|O_EXCL, mode 0600 */
    if (fd < 0) {
        rv = KS_OPEN_ERR(KS_E_IO, "cannot create a file in %s: %s", dir, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto done;
    }
    close(fd);
    rv = ks_db_create_file(tmp, &m, &so, keys->mac);
    if (rv == KS_OK)
        rv = ks_fsync_path(tmp, 0);
    if (rv != KS_OK)
        goto done;
    if (link(tmp, path) != 0) {
        rv = KS_OPEN_ERR(errno == EEXIST ? KS_E_EXISTS : KS_E_IO, "cannot create %s: %s", path,
                         strerror(errno));
        goto done;
    }
    (void)ks_fsync_path(dir, 1);
    rv = ks_open(path, out);
done:
    if (tmp != NULL) {
        ks_unlink_db(tmp);
        free(tmp);
    }
    ks_keys_free(keys);
    ks_secure_free(wrap_key);
    sodium_memzero(&so, sizeof(so));
    free(dir);
    return rv;
}

ks_rv
ks_reinit(ks_token *tok, const unsigned char *so_pin, size_t so_pin_len, const char *label)
{
    struct ks_keys *nk = NULL;
    struct ks_pin_row so;
    struct pin_ok ok;
    struct ks_meta m;
    unsigned char mac[KS_MAC_LEN];
    sqlite3_stmt *st;
    ks_rv rv;

    if (tok == NULL)
        return KS_E_ARGS;
    if (label == NULL || !label_ok(label))
        return KS_ERR(tok, KS_E_ARGS, "label must be at most %d bytes of printable UTF-8",
                      KS_LABEL_MAX);
    rv = pin_len_check(tok, so_pin, so_pin_len);
    if (rv != KS_OK)
        return rv;
    memset(&so, 0, sizeof(so));
    rv = pin_verify_relock(tok, KS_SO, so_pin, so_pin_len, &ok);
    if (rv != KS_OK)
        goto out;
    nk = ks_secure_alloc(sizeof(*nk));
    if (nk == NULL) {
        rv = KS_ERR(tok, KS_E_NOMEM, "cannot allocate locked memory");
        goto out;
    }
    randombytes_buf(nk->tmk, sizeof(nk->tmk));
    if (ks_keys_derive(nk) != KS_OK) {
        rv = KS_ERR(tok, KS_E_CRYPTO, "key derivation failed");
        goto out;
    }
    /* The SO PIN is unchanged: reuse its salt and derived key, new nonce. */
    so = ok.row;
    ks_wrap_tmk(&so, ok.wrap_key, nk->tmk, tok->token_id, KS_SO);

    rv = ks_begin_inlock(tok, 1);
    if (rv != KS_OK)
        goto out;
    rv = ks_meta_read_inlock(tok, &m);
    /* Tombstones first: a process caching the old objects drops them. */
    if (rv == KS_OK)
        rv = ks_exec_inlock(tok, ST_GONE_ALL);
    if (rv == KS_OK)
        rv = ks_exec_inlock(tok, ST_OBJ_DELETE_ALL);
    if (rv == KS_OK)
        rv = ks_exec_inlock(tok, ST_GONE_PRUNE);
    if (rv == KS_OK)
        rv = ks_exec_inlock(tok, ST_SET_DELETE_ALL);
    if (rv == KS_OK)
        rv = pin_write_inlock(tok, KS_SO, &so);
    if (rv == KS_OK) {
        st = ks_stmt_inlock(tok, ST_PIN_CLEAR);
        sqlite3_bind_int(st, 1, KS_USER);
        rv = ks_step_done_inlock(tok, st, "clearing the user PIN");
    }
    if (rv == KS_OK)
        rv = att_delete_inlock(tok, KS_USER, NULL);
    if (rv == KS_OK) {
        memset(m.label, 0, sizeof(m.label));
        memcpy(m.label, label, strlen(label));
        rv = ks_meta_put_text_inlock(tok, "label", m.label);
    }
    if (rv == KS_OK) {
        ks_meta_mac(mac, nk->mac, &m);
        rv = ks_meta_put_blob_inlock(tok, "meta_mac", mac, sizeof(mac));
    }
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
    if (rv == KS_OK)
        keys_drop_inlock(tok);
out:
    ks_unlock(tok);
    ks_keys_free(nk);
    pin_ok_clear(&ok);
    sodium_memzero(&so, sizeof(so));
    return rv;
}

/* ---- login and PINs ----------------------------------------------------- */

ks_rv
ks_login(ks_token *tok, ks_who who, const unsigned char *pin, size_t pin_len)
{
    struct pin_ok ok;
    struct ks_meta m;
    uint64_t gen = 0;
    ks_rv rv;

    if (tok == NULL || (who != KS_SO && who != KS_USER))
        return KS_E_ARGS;
    rv = pin_len_check(tok, pin, pin_len);
    if (rv != KS_OK)
        return rv;
    rv = pin_verify_relock(tok, who, pin, pin_len, &ok);
    if (rv != KS_OK)
        goto out;
    rv = meta_check_inlock(tok, ok.keys, &m);
    if (rv == KS_OK && who == KS_USER)
        rv = gen_check(tok, ok.keys, &ok.gen, &gen);
    if (rv != KS_OK)
        goto out;
    keys_drop_inlock(tok);
    tok->keys = ok.keys;
    ok.keys = NULL;
    tok->login_user = who == KS_USER;
    tok->login_gen = gen;
out:
    ks_unlock(tok);
    pin_ok_clear(&ok);
    return rv;
}

void
ks_logout(ks_token *tok)
{
    if (tok == NULL)
        return;
    ks_lock(tok);
    keys_drop_inlock(tok);
    ks_unlock(tok);
}

int
ks_logged_in(const ks_token *tok)
{
    ks_token *t = (ks_token *)(uintptr_t)tok; /* the mutex is not part of the value */
    int r;

    if (t == NULL)
        return 0;
    ks_lock(t);
    r = t->keys != NULL;
    ks_unlock(t);
    return r;
}

ks_rv
ks_init_user_pin(ks_token *tok, const unsigned char *pin, size_t pin_len)
{
    unsigned char *tmk = NULL, *wrap_key = NULL;
    struct ks_pin_row p;
    struct ks_meta m;
    ks_rv rv;

    if (tok == NULL)
        return KS_E_ARGS;
    rv = pin_len_check(tok, pin, pin_len);
    if (rv != KS_OK)
        return rv;
    memset(&p, 0, sizeof(p));
    tmk = ks_secure_alloc(KS_KEY_LEN);
    wrap_key = ks_secure_alloc(KS_KEY_LEN);
    if (tmk == NULL || wrap_key == NULL) {
        ks_secure_free(tmk);
        ks_secure_free(wrap_key);
        return KS_ERR(tok, KS_E_NOMEM, "cannot allocate locked memory");
    }
    ks_lock(tok);
    if (tok->keys == NULL) {
        rv = KS_ERR(tok, KS_E_NOT_LOGGED_IN, "setting the user PIN needs a login");
        goto out;
    }
    rv = ks_meta_read_inlock(tok, &m);
    if (rv != KS_OK)
        goto out;
    memcpy(tmk, tok->keys->tmk, KS_KEY_LEN);
    ks_unlock(tok);

    p.kdf_ops = m.kdf_ops;
    p.kdf_mem = m.kdf_mem;
    randombytes_buf(p.salt, sizeof(p.salt));
    rv = ks_pwhash(wrap_key, pin, pin_len, p.salt, p.kdf_ops, p.kdf_mem);

    ks_lock(tok);
    if (rv != KS_OK) {
        rv = KS_ERR(tok, rv, "Argon2id failed (out of memory?)");
        goto out;
    }
    /* Another thread may have logged out or re-initialised meanwhile. */
    if (tok->keys == NULL || sodium_memcmp(tmk, tok->keys->tmk, KS_KEY_LEN) != 0) {
        rv = KS_ERR(tok, KS_E_NOT_LOGGED_IN, "logged out while the PIN was being set");
        goto out;
    }
    ks_wrap_tmk(&p, wrap_key, tmk, tok->token_id, KS_USER);
    rv = ks_begin_inlock(tok, 1);
    if (rv != KS_OK)
        goto out;
    rv = ks_tmk_current_inlock(tok);
    if (rv == KS_OK)
        rv = pin_write_inlock(tok, KS_USER, &p); /* also resets the counter: unlock */
    if (rv == KS_OK)
        rv = gen_bump_inlock(tok, tok->keys); /* a cached login of the old PIN dies */
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
out:
    ks_unlock(tok);
    ks_secure_free(tmk);
    ks_secure_free(wrap_key);
    sodium_memzero(&p, sizeof(p));
    return rv;
}

ks_rv
ks_set_pin(ks_token *tok, ks_who who, const unsigned char *old_pin, size_t old_len,
           const unsigned char *new_pin, size_t new_len)
{
    unsigned char *wrap_key = NULL;
    struct ks_pin_row p;
    struct pin_ok ok;
    struct ks_meta m;
    ks_rv rv;

    if (tok == NULL || (who != KS_SO && who != KS_USER))
        return KS_E_ARGS;
    rv = pin_len_check(tok, old_pin, old_len);
    if (rv == KS_OK)
        rv = pin_len_check(tok, new_pin, new_len);
    if (rv != KS_OK)
        return rv;
    memset(&p, 0, sizeof(p));
    wrap_key = ks_secure_alloc(KS_KEY_LEN);
    if (wrap_key == NULL)
        return KS_ERR(tok, KS_E_NOMEM, "cannot allocate locked memory");
    rv = pin_verify_relock(tok, who, old_pin, old_len, &ok);
    if (rv != KS_OK)
        goto out;
    ks_unlock(tok);

    p.kdf_ops = ok.meta.kdf_ops;
    p.kdf_mem = ok.meta.kdf_mem;
    randombytes_buf(p.salt, sizeof(p.salt));
    rv = ks_pwhash(wrap_key, new_pin, new_len, p.salt, p.kdf_ops, p.kdf_mem);

    ks_lock(tok);
    if (rv != KS_OK) {
        rv = KS_ERR(tok, rv, "Argon2id failed (out of memory?)");
        goto out;
    }
    ks_wrap_tmk(&p, wrap_key, ok.keys->tmk, tok->token_id, who);
    rv = ks_begin_inlock(tok, 1);
    if (rv != KS_OK)
        goto out;
    /* The TMK must still be the token's (no re-initialisation meanwhile). */
    rv = meta_check_inlock(tok, ok.keys, &m);
    if (rv == KS_OK)
        rv = pin_write_inlock(tok, who, &p);
    if (rv == KS_OK && who == KS_USER)
        rv = gen_bump_inlock(tok, ok.keys); /* a cached login of the old PIN dies */
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
out:
    ks_unlock(tok);
    pin_ok_clear(&ok);
    ks_secure_free(wrap_key);
    sodium_memzero(&p, sizeof(p));
    return rv;
}

ks_rv
ks_set_max_attempts(ks_token *tok, unsigned max_attempts)
{
    unsigned char mac[KS_MAC_LEN];
    struct ks_meta m;
    ks_rv rv;

    if (tok == NULL)
        return KS_E_ARGS;
    if (max_attempts < 1 || max_attempts > 100)
        return KS_ERR(tok, KS_E_ARGS, "max_attempts %u outside 1..100", max_attempts);
    ks_lock(tok);
    if (tok->keys == NULL) {
        rv = KS_ERR(tok, KS_E_NOT_LOGGED_IN, "changing the attempt limit needs a login");
        goto out;
    }
    rv = ks_begin_inlock(tok, 1);
    if (rv != KS_OK)
        goto out;
    rv = ks_tmk_current_inlock(tok);
    if (rv == KS_OK)
        rv = ks_meta_read_inlock(tok, &m);
    if (rv == KS_OK) {
        m.max_attempts = max_attempts;
        rv = ks_meta_put_int_inlock(tok, "max_attempts", max_attempts);
    }
    if (rv == KS_OK) {
        ks_meta_mac(mac, tok->keys->mac, &m);
        rv = ks_meta_put_blob_inlock(tok, "meta_mac", mac, sizeof(mac));
    }
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
out:
    ks_unlock(tok);
    return rv;
}

/* ---- information -------------------------------------------------------- */

ks_rv
ks_get_info(ks_token *tok, ks_info *out)
{
    return ks_get_info_ex(tok, out, KS_INFO_OBJECT_COUNT);
}

ks_rv
ks_get_info_ex(ks_token *tok, ks_info *out, unsigned flags)
{
    struct ks_pin_row so, user;
    unsigned dead_so = 0, dead_user = 0;
    struct ks_meta m;
    sqlite3_stmt *st;
    ks_rv rv;
    int rc;

    if (tok == NULL || out == NULL)
        return KS_E_ARGS;
    memset(out, 0, sizeof(*out));
    ks_lock(tok);
    rv = ks_begin_inlock(tok, 0); /* one snapshot for all the values */
    if (rv != KS_OK)
        goto out;
    rv = ks_meta_read_inlock(tok, &m);
    if (rv == KS_OK)
        rv = ks_pin_read_inlock(tok, KS_SO, &so);
    if (rv == KS_OK)
        rv = ks_pin_read_inlock(tok, KS_USER, &user);
    /* Interrupted attempts are not failures (the next check reclaims them). */
    if (rv == KS_OK)
        rv = att_reclaim_inlock(tok, KS_SO, 0, &dead_so);
    if (rv == KS_OK)
        rv = att_reclaim_inlock(tok, KS_USER, 0, &dead_user);
    if (rv == KS_OK && (flags & KS_INFO_OBJECT_COUNT)) {
        st = ks_stmt_inlock(tok, ST_OBJ_COUNT);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            out->object_count = (uint64_t)sqlite3_column_int64(st, 0);
        else
            rv = KS_SQLERR(tok, rc, "counting objects");
        ks_stmt_done(st);
    }
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
    if (rv != KS_OK)
        goto out;
    memcpy(out->label, m.label, sizeof(out->label));
    memcpy(out->serial, m.serial, sizeof(out->serial));
    memcpy(out->token_id, m.token_id, sizeof(out->token_id));
    out->user_pin_initialized = user.initialized;
    out->user_fail_count =
        user.fail_count - (dead_user < user.fail_count ? dead_user : user.fail_count);
    out->so_fail_count = so.fail_count - (dead_so < so.fail_count ? dead_so : so.fail_count);
    out->max_attempts = m.max_attempts;
    out->kdf.opslimit = m.kdf_ops;
    out->kdf.memlimit = m.kdf_mem;
    out->schema_version = KS_SCHEMA_VERSION; /* ks_open migrated older files */
out:
    ks_unlock(tok);
    sodium_memzero(&so, sizeof(so));
    sodium_memzero(&user, sizeof(user));
    return rv;
}

/* ---- settings ----------------------------------------------------------- */

static ks_rv
setting_args(ks_token *tok, const char *key)
{
    size_t n = key ? strlen(key) : 0;

    if (n == 0 || n > KS_SETTING_KEY_MAX)
        return KS_ERR(tok, KS_E_ARGS, "setting key must be 1..%d bytes", KS_SETTING_KEY_MAX);
    return KS_OK;
}

ks_rv
ks_get_setting(ks_token *tok, const char *key, char **out)
{
    int authenticated;

    return ks_get_setting_auth(tok, key, out, &authenticated);
}

ks_rv
ks_get_setting_auth(ks_token *tok, const char *key, char **out, int *authenticated)
{
    int has_mac;

    return ks_get_setting_ex(tok, key, out, authenticated, &has_mac);
}

ks_rv
ks_get_setting_ex(ks_token *tok, const char *key, char **out, int *authenticated, int *has_mac)
{
    unsigned char mac[KS_MAC_LEN];
    sqlite3_stmt *st;
    const char *v;
    ks_rv rv;
    int rc;

    if (tok == NULL || out == NULL || authenticated == NULL || has_mac == NULL)
        return KS_E_ARGS;
    *out = NULL;
    *authenticated = 0;
    *has_mac = 0;
    rv = setting_args(tok, key);
    if (rv != KS_OK)
        return rv;
    ks_lock(tok);
    st = ks_stmt_inlock(tok, ST_SET_GET);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        rv = KS_ERR(tok, KS_E_NOT_FOUND, "no setting %s", key);
        goto out;
    }
    if (rc != SQLITE_ROW) {
        rv = KS_SQLERR(tok, rc, "reading settings");
        goto out;
    }
    if (sqlite3_column_type(st, 0) != SQLITE_TEXT) {
        rv = KS_ERR(tok, KS_E_CORRUPT, "setting %s malformed", key);
        goto out;
    }
    v = (const char *)sqlite3_column_text(st, 0);
    if (v == NULL) {
        rv = ks_col_nomem(tok, "settings");
        goto out;
    }
    if (strlen(v) != (size_t)sqlite3_column_bytes(st, 0) ||
        sqlite3_column_bytes(st, 0) > KS_SETTING_VALUE_MAX) {
        rv = KS_ERR(tok, KS_E_CORRUPT, "setting %s malformed", key);
        goto out;
    }
    /* Logged in: a MAC'd value must verify. A value written while logged
     * out has no MAC and is returned as is (see docs/keystore-format.md). */
    *has_mac = sqlite3_column_type(st, 1) != SQLITE_NULL;
    if (tok->keys != NULL && sqlite3_column_type(st, 1) != SQLITE_NULL) {
        ks_setting_mac(mac, tok->keys->mac, tok->token_id, key, v);
        if (sqlite3_column_bytes(st, 1) != KS_MAC_LEN ||
            sodium_memcmp(mac, sqlite3_column_blob(st, 1), KS_MAC_LEN) != 0) {
            rv = KS_ERR(tok, KS_E_TAMPERED, "setting %s failed its MAC check", key);
            goto out;
        }
        *authenticated = 1;
    }
    *out = strdup(v);
    if (*out == NULL) {
        rv = KS_ERR(tok, KS_E_NOMEM, "out of memory");
        *authenticated = 0;
    }
out:
    ks_stmt_done(st);
    ks_unlock(tok);
    return rv;
}

ks_rv
ks_set_setting(ks_token *tok, const char *key, const char *value)
{
    unsigned char mac[KS_MAC_LEN];
    sqlite3_stmt *st;
    int in_tx = 0;
    ks_rv rv;

    if (tok == NULL)
        return KS_E_ARGS;
    rv = setting_args(tok, key);
    if (rv != KS_OK)
        return rv;
    if (value == NULL || strlen(value) > KS_SETTING_VALUE_MAX)
        return KS_ERR(tok, KS_E_ARGS, "setting value must be 0..%d bytes", KS_SETTING_VALUE_MAX);
    if (strncmp(key, KS_INTERNAL_PREFIX, strlen(KS_INTERNAL_PREFIX)) == 0)
        return KS_ERR(tok, KS_E_ARGS, "setting %s is the keystore's own", key);
    ks_lock(tok);
    if (tok->keys != NULL) {
        rv = ks_begin_inlock(tok, 1);
        if (rv != KS_OK)
            goto out;
        in_tx = 1;
        rv = ks_tmk_current_inlock(tok);
        if (rv != KS_OK)
            goto out;
    }
    st = ks_stmt_inlock(tok, ST_SET_PUT);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    if (tok->keys != NULL) {
        ks_setting_mac(mac, tok->keys->mac, tok->token_id, key, value);
        sqlite3_bind_blob(st, 3, mac, sizeof(mac), SQLITE_STATIC);
    } else {
        sqlite3_bind_null(st, 3);
    }
    rv = ks_step_done_inlock(tok, st, "writing a setting");
    if (in_tx) {
        if (rv == KS_OK)
            rv = ks_commit_inlock(tok);
        in_tx = 0;
    }
out:
    if (in_tx)
        ks_rollback_inlock(tok);
    ks_unlock(tok);
    return rv;
}

/* ---- login cache support ------------------------------------------------ */

ks_rv
ks_export_tmk(ks_token *tok, unsigned char tmk[KS_TMK_LEN], uint64_t *pin_gen)
{
    struct gen_raw g;
    uint64_t cur = 0;
    ks_rv rv;

    if (tok == NULL || tmk == NULL || pin_gen == NULL)
        return KS_E_ARGS;
    *pin_gen = 0;
    ks_lock(tok);
    if (tok->keys == NULL || !tok->login_user) {
        rv = KS_ERR(tok, KS_E_NOT_LOGGED_IN, "exporting the token key needs a user login");
        goto out;
    }
    rv = ks_begin_inlock(tok, 0);
    if (rv != KS_OK)
        goto out;
    rv = ks_tmk_current_inlock(tok);
    if (rv == KS_OK)
        rv = gen_read_inlock(tok, &g);
    if (rv == KS_OK)
        rv = gen_check(tok, tok->keys, &g, &cur);
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
    if (rv != KS_OK)
        goto out;
    if (cur != tok->login_gen) {
        rv = KS_ERR(tok, KS_E_NOT_LOGGED_IN,
                    "the user PIN changed since this login (generation %llu, now %llu)",
                    (unsigned long long)tok->login_gen, (unsigned long long)cur);
        goto out;
    }
    memcpy(tmk, tok->keys->tmk, KS_TMK_LEN);
    *pin_gen = tok->login_gen;
out:
    ks_unlock(tok);
    return rv;
}

ks_rv
ks_login_tmk(ks_token *tok, const unsigned char *tmk, size_t tmk_len, uint64_t pin_gen)
{
    struct ks_keys *keys = NULL;
    struct ks_pin_row user;
    struct ks_meta m;
    struct gen_raw g;
    uint64_t cur = 0;
    ks_rv rv;

    if (tok == NULL)
        return KS_E_ARGS;
    if (tmk == NULL || tmk_len != KS_TMK_LEN)
        return KS_ERR(tok, KS_E_ARGS, "a cached token key is %d bytes", KS_TMK_LEN);
    memset(&user, 0, sizeof(user));
    keys = ks_secure_alloc(sizeof(*keys));
    if (keys == NULL)
        return KS_ERR(tok, KS_E_NOMEM, "cannot allocate locked memory");
    memcpy(keys->tmk, tmk, KS_TMK_LEN);
    rv = ks_keys_derive(keys);
    if (rv != KS_OK) {
        ks_keys_free(keys);
        return KS_ERR(tok, rv, "key derivation failed");
    }
    ks_lock(tok);
    /* One snapshot: the PIN state, the metadata and the generation. */
    rv = ks_begin_inlock(tok, 0);
    if (rv != KS_OK)
        goto out;
    rv = ks_meta_read_inlock(tok, &m);
    if (rv == KS_OK)
        rv = ks_pin_read_inlock(tok, KS_USER, &user);
    if (rv == KS_OK)
        rv = gen_read_inlock(tok, &g);
    if (rv != KS_OK) {
        ks_rollback_inlock(tok);
        goto out;
    }
    if (!user.initialized) {
        rv = KS_ERR(tok, KS_E_PIN_NOT_INITIALIZED, "the user PIN is not initialised");
    } else if (user.fail_count >= m.max_attempts) {
        rv = KS_ERR(tok, KS_E_PIN_LOCKED,
                    "user PIN locked after %u failed attempts: a cached login is refused",
                    user.fail_count);
    } else {
        rv = meta_check_inlock(tok, keys, &m);
        if (rv == KS_E_TAMPERED)
            rv = KS_ERR(tok, KS_E_PIN_INCORRECT,
                        "the cached key does not open this token (wrong key, or the token was "
                        "re-initialised)");
        if (rv == KS_OK)
            rv = gen_check(tok, keys, &g, &cur);
        if (rv == KS_OK && cur != pin_gen)
            rv = KS_ERR(tok, KS_E_PIN_INCORRECT,
                        "stale cached key: the user PIN changed since it was cached (generation "
                        "%llu, now %llu)",
                        (unsigned long long)pin_gen, (unsigned long long)cur);
    }
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
    if (rv != KS_OK)
        goto out;
    keys_drop_inlock(tok);
    tok->keys = keys;
    keys = NULL;
    tok->login_user = 1;
    tok->login_gen = pin_gen;
out:
    ks_unlock(tok);
    ks_keys_free(keys);
    sodium_memzero(&user, sizeof(user));
    return rv;
}
