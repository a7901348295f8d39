/*
 * token.c — token lifecycle, PINs and login. Information, settings and the
 * login cache support: token_info.c; PIN check internals: token_pin.c.
 *
 * PIN checks follow one pattern (ks_pin_verify_relock): under the lock, count
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

void
ks_pin_ok_clear(struct ks_pin_ok *ok)
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
void
ks_keys_drop_inlock(ks_token *tok)
{
    ks_keys_free(tok->keys);
    tok->keys = NULL;
    tok->login_user = 0;
    tok->login_gen = 0;
}

/* Check the meta MAC with KEYS: proves KEYS belong to this token as it is
 * now (not re-initialised by another process) and the meta rows are intact. */
ks_rv
ks_meta_check_inlock(ks_token *tok, const struct ks_keys *keys, struct ks_meta *m)
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
    rv = ks_meta_check_inlock(tok, tok->keys, &m);
    if (rv == KS_E_TAMPERED) {
        /* The key we hold no longer opens this token: forget it. */
        ks_keys_drop_inlock(tok);
        return KS_ERR(tok, KS_E_NOT_LOGGED_IN,
                      "the token key held no longer matches the token (re-initialised by another "
                      "process, or metadata tampered); logged out");
    }
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
    struct ks_pin_ok ok;
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
    rv = ks_pin_verify_relock(tok, KS_SO, so_pin, so_pin_len, &ok);
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
        rv = ks_pin_write_inlock(tok, KS_SO, &so);
    if (rv == KS_OK) {
        st = ks_stmt_inlock(tok, ST_PIN_CLEAR);
        sqlite3_bind_int(st, 1, KS_USER);
        rv = ks_step_done_inlock(tok, st, "clearing the user PIN");
    }
    if (rv == KS_OK)
        rv = ks_att_delete_inlock(tok, KS_USER, NULL);
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
        ks_keys_drop_inlock(tok);
out:
    ks_unlock(tok);
    ks_keys_free(nk);
    ks_pin_ok_clear(&ok);
    sodium_memzero(&so, sizeof(so));
    return rv;
}

/* ---- login and PINs ----------------------------------------------------- */

ks_rv
ks_login(ks_token *tok, ks_who who, const unsigned char *pin, size_t pin_len)
{
    struct ks_pin_ok ok;
    struct ks_meta m;
    uint64_t gen = 0;
    ks_rv rv;

    if (tok == NULL || (who != KS_SO && who != KS_USER))
        return KS_E_ARGS;
    rv = pin_len_check(tok, pin, pin_len);
    if (rv != KS_OK)
        return rv;
    rv = ks_pin_verify_relock(tok, who, pin, pin_len, &ok);
    if (rv != KS_OK)
        goto out;
    rv = ks_meta_check_inlock(tok, ok.keys, &m);
    if (rv == KS_OK && who == KS_USER)
        rv = ks_gen_check(tok, ok.keys, &ok.gen, &gen);
    if (rv != KS_OK)
        goto out;
    ks_keys_drop_inlock(tok);
    tok->keys = ok.keys;
    ok.keys = NULL;
    tok->login_user = who == KS_USER;
    tok->login_gen = gen;
out:
    ks_unlock(tok);
    ks_pin_ok_clear(&ok);
    /* Private rows from before schema 5: their lookup hashes, once
     * (lookup.c; a failure leaves them to be read by every search). */
    if (rv == KS_OK)
        (void)ks_lookup_fill(tok, 1);
    return rv;
}

void
ks_logout(ks_token *tok)
{
    if (tok == NULL)
        return;
    ks_lock(tok);
    ks_keys_drop_inlock(tok);
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
        rv = ks_pin_write_inlock(tok, KS_USER, &p); /* also resets the counter: unlock */
    if (rv == KS_OK)
        rv = ks_gen_bump_inlock(tok, tok->keys); /* a cached login of the old PIN dies */
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
    struct ks_pin_ok ok;
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
    rv = ks_pin_verify_relock(tok, who, old_pin, old_len, &ok);
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
    rv = ks_meta_check_inlock(tok, ok.keys, &m);
    if (rv == KS_OK)
        rv = ks_pin_write_inlock(tok, who, &p);
    if (rv == KS_OK && who == KS_USER)
        rv = ks_gen_bump_inlock(tok, ok.keys); /* a cached login of the old PIN dies */
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
out:
    ks_unlock(tok);
    ks_pin_ok_clear(&ok);
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
