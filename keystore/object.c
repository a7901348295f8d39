/*
 * object.c — stored objects: sealing, MACs, reading with integrity checks.
 *
 * Callbacks run with the handle's mutex held (the rows they see come from
 * a statement in progress): they must not call back into the same handle.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ks_int.h"

/* Columns of ST_OBJ_ALL / ST_OBJ_PUBLIC / ST_OBJ_ONE. */
enum { C_ID, C_PRIV, C_VERSION, C_NONCE, C_DATA, C_MAC };

/*
 * Decode the current row into OBJ (attribute values point into the row or
 * into tok->scratch; *WIPE is how many scratch bytes to wipe afterwards).
 * KS_E_TAMPERED means "skip this record" and names it in the last error.
 */
static ks_rv
row_decode_inlock(ks_token *tok, sqlite3_stmt *st, ks_object *obj, size_t *wipe)
{
    int64_t id = sqlite3_column_int64(st, C_ID);
    sqlite3_int64 ver = sqlite3_column_int64(st, C_VERSION);
    int dtype = sqlite3_column_type(st, C_DATA);
    const unsigned char *data = dtype == SQLITE_BLOB ? sqlite3_column_blob(st, C_DATA) : NULL;
    size_t len = dtype == SQLITE_BLOB ? (size_t)sqlite3_column_bytes(st, C_DATA) : 0;
    unsigned char ad[KS_OBJ_AD_LEN];
    size_t n = 0;
    int r;

    *wipe = 0;
    memset(obj, 0, sizeof(*obj));
    if (ver < 1 || ver > UINT32_MAX || dtype != SQLITE_BLOB)
        return KS_ERR(tok, KS_E_TAMPERED, "object %" PRId64 ": malformed record", id);
    obj->id = id;
    obj->is_private = sqlite3_column_int(st, C_PRIV) != 0;
    obj->version = (uint32_t)ver;
    if (obj->is_private) {
        unsigned long long plen;

        if (tok->keys == NULL) /* not selected when logged out; be safe */
            return KS_ERR(tok, KS_E_NOT_FOUND, "object %" PRId64 " is private", id);
        if (len < KS_TAG_LEN || sqlite3_column_bytes(st, C_NONCE) != KS_NONCE_LEN)
            return KS_ERR(tok, KS_E_TAMPERED, "object %" PRId64 ": malformed private record", id);
        if (ks_scratch_reserve_inlock(tok, len) != KS_OK)
            return KS_E_NOMEM;
        ks_object_ad(ad, tok->token_id, id, obj->version);
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(tok->scratch, &plen, NULL, data, len, ad,
                                                       sizeof(ad), sqlite3_column_blob(st, C_NONCE),
                                                       tok->keys->rec) != 0) {
            sodium_memzero(tok->scratch, len);
            return KS_ERR(tok, KS_E_TAMPERED,
                          "object %" PRId64 ": private record failed authentication", id);
        }
        *wipe = (size_t)plen;
        r = ks_attrs_parse_inlock(tok, tok->scratch, (size_t)plen, &n);
    } else {
        if (tok->keys != NULL) {
            unsigned char mac[KS_MAC_LEN];

            ks_object_mac(mac, tok->keys->mac, tok->token_id, id, obj->version, data, len);
            if (sqlite3_column_bytes(st, C_MAC) != KS_MAC_LEN ||
                sodium_memcmp(mac, sqlite3_column_blob(st, C_MAC), KS_MAC_LEN) != 0)
                return KS_ERR(tok, KS_E_TAMPERED, "object %" PRId64 ": MAC mismatch", id);
        }
        r = ks_attrs_parse_inlock(tok, data, len, &n);
    }
    if (r == -2) {
        if (*wipe)
            sodium_memzero(tok->scratch, *wipe);
        *wipe = 0;
        return KS_ERR(tok, KS_E_NOMEM, "out of memory");
    }
    if (r != 0) {
        if (*wipe)
            sodium_memzero(tok->scratch, *wipe);
        *wipe = 0;
        return KS_ERR(tok, KS_E_TAMPERED, "object %" PRId64 ": malformed attributes", id);
    }
    obj->nattrs = n;
    obj->attrs = tok->attrs;
    return KS_OK;
}

static void
wipe_after_cb(ks_token *tok, size_t wipe)
{
    if (wipe > 0)
        sodium_memzero(tok->scratch, wipe);
}

ks_rv
ks_load_objects(ks_token *tok, ks_object_cb cb, void *ctx, unsigned *tampered)
{
    unsigned bad = 0;
    sqlite3_stmt *st;
    ks_object obj;
    size_t wipe;
    ks_rv rv = KS_OK;
    int rc;

    if (tampered != NULL)
        *tampered = 0;
    if (tok == NULL || cb == NULL)
        return KS_E_ARGS;
    ks_lock(tok);
    /* One statement: one read snapshot, even while others write. */
    st = ks_stmt_inlock(tok, tok->keys != NULL ? ST_OBJ_ALL : ST_OBJ_PUBLIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int stop;

        rv = row_decode_inlock(tok, st, &obj, &wipe);
        if (rv == KS_E_TAMPERED) {
            bad++;
            rv = KS_OK;
            continue;
        }
        if (rv != KS_OK)
            break;
        stop = cb(ctx, &obj);
        wipe_after_cb(tok, wipe);
        if (stop)
            break;
    }
    if (rv == KS_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        rv = KS_SQLERR(tok, rc, "reading objects");
    ks_stmt_done(st);
    ks_unlock(tok);
    if (tampered != NULL)
        *tampered = bad;
    return rv;
}

ks_rv
ks_object_get(ks_token *tok, int64_t id, ks_object_cb cb, void *ctx)
{
    sqlite3_stmt *st;
    ks_object obj;
    size_t wipe = 0;
    ks_rv rv = KS_OK;
    int rc;

    if (tok == NULL || cb == NULL)
        return KS_E_ARGS;
    ks_lock(tok);
    st = ks_stmt_inlock(tok, ST_OBJ_ONE);
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE ||
        (rc == SQLITE_ROW && tok->keys == NULL && sqlite3_column_int(st, C_PRIV) != 0)) {
        rv = KS_ERR(tok, KS_E_NOT_FOUND, "no object %" PRId64, id);
        goto out;
    }
    if (rc != SQLITE_ROW) {
        rv = KS_SQLERR(tok, rc, "reading an object");
        goto out;
    }
    rv = row_decode_inlock(tok, st, &obj, &wipe);
    if (rv != KS_OK)
        goto out;
    (void)cb(ctx, &obj);
    wipe_after_cb(tok, wipe);
out:
    ks_stmt_done(st);
    ks_unlock(tok);
    return rv;
}

/* Seal (private) or MAC (public) the serialised attributes SER and write
 * them as version VER of object ID; inside the caller's transaction. */
static ks_rv
record_write_inlock(ks_token *tok, int64_t id, int is_private, uint32_t ver,
                    const unsigned char *ser, size_t ser_len)
{
    sqlite3_stmt *st = ks_stmt_inlock(tok, ST_OBJ_WRITE);
    unsigned char nonce[KS_NONCE_LEN], mac[KS_MAC_LEN], ad[KS_OBJ_AD_LEN];
    unsigned char *ct = NULL;
    ks_rv rv;

    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, ver);
    if (is_private) {
        ct = malloc(ser_len + KS_TAG_LEN); /* ciphertext: not secret */
        if (ct == NULL) {
            ks_stmt_done(st);
            return KS_ERR(tok, KS_E_NOMEM, "out of memory");
        }
        randombytes_buf(nonce, sizeof(nonce));
        ks_object_ad(ad, tok->token_id, id, ver);
        crypto_aead_xchacha20poly1305_ietf_encrypt(ct, NULL, ser, ser_len, ad, sizeof(ad), NULL,
                                                   nonce, tok->keys->rec);
        sqlite3_bind_blob(st, 3, nonce, sizeof(nonce), SQLITE_STATIC);
        sqlite3_bind_blob(st, 4, ct, (int)(ser_len + KS_TAG_LEN), SQLITE_STATIC);
        sqlite3_bind_null(st, 5);
    } else {
        ks_object_mac(mac, tok->keys->mac, tok->token_id, id, ver, ser, ser_len);
        sqlite3_bind_null(st, 3);
        sqlite3_bind_blob(st, 4, ser, (int)ser_len, SQLITE_STATIC);
        sqlite3_bind_blob(st, 5, mac, sizeof(mac), SQLITE_STATIC);
    }
    rv = ks_step_done_inlock(tok, st, "writing an object");
    free(ct);
    return rv;
}

/* Common front of create/update: check ATTRS, serialise them into the
 * locked scratch buffer, start a write transaction with a current TMK. */
static ks_rv
write_begin_inlock(ks_token *tok, const ks_attr *attrs, size_t n, size_t *ser_len)
{
    ks_rv rv;

    if (tok->keys == NULL)
        return KS_ERR(tok, KS_E_NOT_LOGGED_IN, "writing objects needs a login");
    rv = ks_scratch_reserve_inlock(tok, *ser_len);
    if (rv != KS_OK)
        return rv;
    ks_attrs_serialise(attrs, n, tok->scratch, *ser_len);
    rv = ks_begin_inlock(tok, 1);
    if (rv != KS_OK)
        goto fail;
    rv = ks_tmk_current_inlock(tok);
    if (rv != KS_OK) {
        ks_rollback_inlock(tok);
        goto fail;
    }
    return KS_OK;
fail:
    sodium_memzero(tok->scratch, *ser_len);
    return rv;
}

static ks_rv
attrs_args(ks_token *tok, const ks_attr *attrs, size_t n, size_t *ser_len)
{
    if (ks_attrs_check(attrs, n, ser_len) != KS_OK)
        return KS_ERR(tok, KS_E_ARGS,
                      "bad attribute list (NULL value, duplicate type, or too large)");
    return KS_OK;
}

ks_rv
ks_object_create(ks_token *tok, int is_private, const ks_attr *attrs, size_t n, int64_t *out_id)
{
    size_t ser_len = 0;
    sqlite3_stmt *st;
    int64_t id = 0;
    ks_rv rv;

    if (tok == NULL || out_id == NULL)
        return KS_E_ARGS;
    *out_id = 0;
    is_private = is_private != 0;
    rv = attrs_args(tok, attrs, n, &ser_len);
    if (rv != KS_OK)
        return rv;
    ks_lock(tok);
    rv = write_begin_inlock(tok, attrs, n, &ser_len);
    if (rv != KS_OK)
        goto out;
    /* The id is part of the AD, so insert first to learn it (AUTOINCREMENT:
     * never a reused id), then write the sealed record, in one transaction. */
    st = ks_stmt_inlock(tok, ST_OBJ_INSERT);
    sqlite3_bind_int(st, 1, is_private);
    rv = ks_step_done_inlock(tok, st, "creating an object");
    if (rv == KS_OK) {
        id = sqlite3_last_insert_rowid(tok->db);
        rv = record_write_inlock(tok, id, is_private, 1, tok->scratch, ser_len);
    }
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
    sodium_memzero(tok->scratch, ser_len);
    if (rv == KS_OK)
        *out_id = id;
out:
    ks_unlock(tok);
    return rv;
}

ks_rv
ks_object_update(ks_token *tok, int64_t id, const ks_attr *attrs, size_t n)
{
    size_t ser_len = 0;
    sqlite3_stmt *st;
    sqlite3_int64 ver = 0;
    int is_private = 0, rc;
    ks_rv rv;

    if (tok == NULL)
        return KS_E_ARGS;
    rv = attrs_args(tok, attrs, n, &ser_len);
    if (rv != KS_OK)
        return rv;
    ks_lock(tok);
    rv = write_begin_inlock(tok, attrs, n, &ser_len);
    if (rv != KS_OK)
        goto out;
    st = ks_stmt_inlock(tok, ST_OBJ_HEAD);
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        is_private = sqlite3_column_int(st, 0) != 0;
        ver = sqlite3_column_int64(st, 1);
    } else if (rc == SQLITE_DONE) {
        rv = KS_ERR(tok, KS_E_NOT_FOUND, "no object %" PRId64, id);
    } else {
        rv = KS_SQLERR(tok, rc, "reading an object");
    }
    ks_stmt_done(st);
    if (rv == KS_OK && (ver < 1 || ver >= UINT32_MAX))
        rv = KS_ERR(tok, KS_E_CORRUPT, "object %" PRId64 ": version out of range", id);
    if (rv == KS_OK)
        rv = record_write_inlock(tok, id, is_private, (uint32_t)ver + 1, tok->scratch, ser_len);
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
    sodium_memzero(tok->scratch, ser_len);
out:
    ks_unlock(tok);
    return rv;
}

ks_rv
ks_object_destroy(ks_token *tok, int64_t id)
{
    sqlite3_stmt *st;
    ks_rv rv;

    if (tok == NULL)
        return KS_E_ARGS;
    ks_lock(tok);
    if (tok->keys == NULL) {
        rv = KS_ERR(tok, KS_E_NOT_LOGGED_IN, "destroying objects needs a login");
        goto out;
    }
    rv = ks_begin_inlock(tok, 1);
    if (rv != KS_OK)
        goto out;
    rv = ks_tmk_current_inlock(tok);
    if (rv == KS_OK) {
        st = ks_stmt_inlock(tok, ST_OBJ_DELETE);
        sqlite3_bind_int64(st, 1, id);
        rv = ks_step_done_inlock(tok, st, "destroying an object");
        if (rv == KS_OK && sqlite3_changes(tok->db) == 0)
            rv = KS_ERR(tok, KS_E_NOT_FOUND, "no object %" PRId64, id);
    }
    /* secure_delete overwrites the freed cells and pages on commit. */
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
out:
    ks_unlock(tok);
    return rv;
}
