/*
 * token_info.c — token information, settings and the login cache support.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ks_int.h"
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
        rv = ks_att_reclaim_inlock(tok, KS_SO, 0, &dead_so);
    if (rv == KS_OK)
        rv = ks_att_reclaim_inlock(tok, KS_USER, 0, &dead_user);
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
    struct ks_gen_raw g;
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
        rv = ks_gen_read_inlock(tok, &g);
    if (rv == KS_OK)
        rv = ks_gen_check(tok, tok->keys, &g, &cur);
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
    struct ks_gen_raw g;
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
        rv = ks_gen_read_inlock(tok, &g);
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
        rv = ks_meta_check_inlock(tok, keys, &m);
        if (rv == KS_E_TAMPERED)
            rv = KS_ERR(tok, KS_E_PIN_INCORRECT,
                        "the cached key does not open this token (wrong key, or the token was "
                        "re-initialised)");
        if (rv == KS_OK)
            rv = ks_gen_check(tok, keys, &g, &cur);
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
    ks_keys_drop_inlock(tok);
    tok->keys = keys;
    keys = NULL;
    tok->login_user = 1;
    tok->login_gen = pin_gen;
out:
    ks_unlock(tok);
    ks_keys_free(keys);
    sodium_memzero(&user, sizeof(user));
    /* Private rows from before schema 5: their lookup hashes, once
     * (lookup.c; a failure leaves them to be read by every search). */
    if (rv == KS_OK)
        (void)ks_lookup_fill(tok, 1);
    return rv;
}
