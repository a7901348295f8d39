/*
 * token.c — token lifecycle, PINs and login, information, settings.
 *
 * PIN checks follow one pattern (pin_verify_relock): under the lock, count
 * the attempt in its own committed transaction; release the lock for
 * Argon2id; re-take it to unwrap and, on success, reset the counter. A
 * process killed during the KDF therefore leaves the attempt counted.
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

/*
 * Verify PIN for WHO. Called unlocked; returns with the lock HELD whatever
 * the result. On KS_OK, OK holds the TMK, derived keys and wrap key.
 */
static ks_rv
pin_verify_relock(ks_token *tok, ks_who who, const unsigned char *pin, size_t len,
                  struct pin_ok *ok)
{
    const char *name = who == KS_SO ? "SO" : "user";
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
    if (ok->row.fail_count >= ok->meta.max_attempts) {
        rv = KS_ERR(tok, KS_E_PIN_LOCKED, "%s PIN locked after %u failed attempts", name,
                    ok->row.fail_count);
        goto fail_tx;
    }
    /* Count first, durably: success will reset it. */
    st = ks_stmt_inlock(tok, ST_PIN_FAIL_INC);
    sqlite3_bind_int(st, 1, (int)who);
    rv = ks_step_done_inlock(tok, st, "counting the PIN attempt");
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
        st = ks_stmt_inlock(tok, ST_PIN_FAIL_DEC);
        sqlite3_bind_int(st, 1, (int)who);
        (void)ks_step_done_inlock(tok, st, "uncounting the PIN attempt");
        rv = KS_ERR(tok, rv, "Argon2id failed (out of memory? memlimit %llu bytes)",
                    (unsigned long long)ok->row.kdf_mem);
        goto fail;
    }
    if (ks_unwrap_tmk(ok->keys->tmk, &ok->row, ok->wrap_key, tok->token_id, who) != 0) {
        rv = KS_ERR(tok, KS_E_PIN_INCORRECT, "wrong %s PIN (%u of %u attempts used)", name,
                    ok->row.fail_count + 1, ok->meta.max_attempts);
        goto fail;
    }
    rv = ks_keys_derive(ok->keys);
    if (rv != KS_OK) {
        rv = KS_ERR(tok, rv, "key derivation failed");
        goto fail;
    }
    st = ks_stmt_inlock(tok, ST_PIN_FAIL_RESET);
    sqlite3_bind_int(st, 1, (int)who);
    rv = ks_step_done_inlock(tok, st, "resetting the PIN counter");
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

    sqlite3_bind_int(st, 1, (int)who);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)p->kdf_ops);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)p->kdf_mem);
    sqlite3_bind_blob(st, 4, p->salt, sizeof(p->salt), SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, p->nonce, sizeof(p->nonce), SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, p->wrapped, sizeof(p->wrapped), SQLITE_STATIC);
    return ks_step_done_inlock(tok, st, "writing the PIN record");
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
    out->user_fail_count = user.fail_count;
    out->so_fail_count = so.fail_count;
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
    unsigned char mac[KS_MAC_LEN];
    sqlite3_stmt *st;
    const char *v;
    ks_rv rv;
    int rc;

    if (tok == NULL || out == NULL || authenticated == NULL)
        return KS_E_ARGS;
    *out = NULL;
    *authenticated = 0;
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
