/*
 * token_pin.c — what PIN checks share: the user PIN generation (login cache
 * binding) and in-flight PIN attempt markers; the check itself
 * (ks_pin_verify_relock) and the PIN row write.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ks_int.h"
/* ---- user PIN generation (see ks_login_tmk in keystore.h) -------------- */

static void
gen_text(char buf[24], uint64_t v)
{
    snprintf(buf, 24, "%llu", (unsigned long long)v);
}

/* Read the generation row as stored (its MAC is checked by ks_gen_check once
 * keys are at hand). */
ks_rv
ks_gen_read_inlock(ks_token *tok, struct ks_gen_raw *g)
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
ks_rv
ks_gen_check(ks_token *tok, const struct ks_keys *keys, const struct ks_gen_raw *g, uint64_t *out)
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
ks_rv
ks_gen_bump_inlock(ks_token *tok, const struct ks_keys *keys)
{
    unsigned char mac[KS_MAC_LEN];
    struct ks_gen_raw g;
    uint64_t cur = 0;
    sqlite3_stmt *st;
    char text[24];
    ks_rv rv;

    rv = ks_gen_read_inlock(tok, &g);
    if (rv == KS_OK)
        rv = ks_gen_check(tok, keys, &g, &cur);
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
ks_rv
ks_att_reclaim_inlock(ks_token *tok, ks_who who, int del, unsigned *n)
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
ks_rv
ks_att_delete_inlock(ks_token *tok, ks_who who, const char *key)
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
 * failure), or neither (wrong PIN: the count stays).
 *
 * Only the wrong PIN's outcome needs synchronous=FULL: if it were lost in a
 * crash, its marker would be reclaimed as an interrupted attempt and the
 * failure given back. A lost reset or give-back leaves the marker, which
 * the next verification reclaims: the attempt is given back (what the
 * give-back meant), and the failures counted before a right PIN stay
 * counted until the next success resets them — never fewer than happened.
 * WAL commits are durable in order, so a later FULL commit carries it. This
 * saves one fsync per successful login (docs/performance.md). */
static ks_rv
att_finish_inlock(ks_token *tok, ks_who who, const char *key, int reset, int give_back)
{
    sqlite3_stmt *st;
    ks_rv rv = reset || give_back ? ks_begin_normal_inlock(tok) : ks_begin_inlock(tok, 1);

    if (rv != KS_OK)
        return rv;
    rv = ks_att_delete_inlock(tok, who, reset ? NULL : key);
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
ks_rv
ks_pin_verify_relock(ks_token *tok, ks_who who, const unsigned char *pin, size_t len,
                     struct ks_pin_ok *ok)
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
        rv = ks_gen_read_inlock(tok, &ok->gen);
    if (rv != KS_OK)
        goto fail_tx;
    if (!ok->row.initialized) {
        rv = KS_ERR(tok, KS_E_PIN_NOT_INITIALIZED, "the user PIN is not initialised");
        goto fail_tx;
    }
    /* Attempts interrupted before their outcome was known are given back. */
    rv = ks_att_reclaim_inlock(tok, who, 1, &reclaimed);
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
    ks_pin_ok_clear(ok);
    return rv;
}

/* Write P as WHO's PIN row (inside the caller's transaction). */
ks_rv
ks_pin_write_inlock(ks_token *tok, ks_who who, const struct ks_pin_row *p)
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
        rv = ks_att_delete_inlock(tok, who, NULL);
    return rv;
}
