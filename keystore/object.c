/*
 * object.c — stored objects: sealing, MACs, reading with integrity checks.
 * The credential rollover: rollover.c.
 *
 * Callbacks run with the handle's mutex held (the rows they see come from
 * a statement in progress): they must not call back into the same handle.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ks_int.h"

/* Columns of ST_OBJ_ALL / ST_OBJ_PUBLIC / ST_OBJ_ONE. */
enum { C_ID, C_PRIV, C_VERSION, C_NONCE, C_DATA, C_MAC, C_STATE, C_RETIRED, C_CRED, C_SEQ };

static const struct ks_rec_state st_active = {KS_ACTIVE, 0, NULL, 0};

/* The state tail of the AD: absent for a plain active object (so records
 * written before schema 3 keep their AD), else
 *   u8 state || u64 retired_at || u32 cred_len || cred. */
#define KS_OBJ_AD_MAX (KS_OBJ_AD_LEN + 1 + 8 + 4 + KS_CRED_MAX)

static size_t
object_ad_ext(unsigned char ad[KS_OBJ_AD_MAX], const unsigned char token_id[KS_TOKEN_ID_LEN],
              int64_t id, uint32_t version, const struct ks_rec_state *rs)
{
    size_t off = KS_OBJ_AD_LEN, i;
    uint64_t t = (uint64_t)rs->retired_at;

    ks_object_ad(ad, token_id, id, version);
    if (rs->state == KS_ACTIVE && rs->cred_len == 0)
        return off;
    ad[off++] = (unsigned char)rs->state;
    for (i = 0; i < 8; i++)
        ad[off++] = (unsigned char)(t >> (8 * i));
    for (i = 0; i < 4; i++)
        ad[off++] = (unsigned char)((uint32_t)rs->cred_len >> (8 * i));
    if (rs->cred_len > 0)
        memcpy(ad + off, rs->cred, rs->cred_len);
    return off + rs->cred_len;
}

/* Keyed BLAKE2b over AD (with the state tail) || serialised attributes;
 * for a plain active object this is exactly ks_object_mac. */
static void
object_mac_ext(unsigned char out[KS_MAC_LEN], const unsigned char key[KS_KEY_LEN],
               const unsigned char token_id[KS_TOKEN_ID_LEN], int64_t id, uint32_t version,
               const struct ks_rec_state *rs, const unsigned char *data, size_t len)
{
    crypto_generichash_state h;
    unsigned char ad[KS_OBJ_AD_MAX];
    size_t adlen = object_ad_ext(ad, token_id, id, version, rs);

    crypto_generichash_init(&h, key, KS_KEY_LEN, KS_MAC_LEN);
    crypto_generichash_update(&h, ad, adlen);
    crypto_generichash_update(&h, data, len);
    crypto_generichash_final(&h, out, KS_MAC_LEN);
    sodium_memzero(&h, sizeof(h));
}

/* Read the state columns (starting at column FIRST) of ST's current row. */
int
ks_row_state(sqlite3_stmt *st, int first, struct ks_rec_state *rs)
{
    sqlite3_int64 s = sqlite3_column_int64(st, first);
    int ct = sqlite3_column_type(st, first + 2);

    memset(rs, 0, sizeof(*rs));
    if (s < KS_ACTIVE || s > KS_RETIRED)
        return -1;
    rs->state = (ks_state)s;
    rs->retired_at = sqlite3_column_int64(st, first + 1);
    if (ct == SQLITE_BLOB) {
        rs->cred_len = (size_t)sqlite3_column_bytes(st, first + 2);
        rs->cred = sqlite3_column_blob(st, first + 2);
        if (rs->cred_len == 0 || rs->cred_len > KS_CRED_MAX || rs->cred == NULL)
            return -1;
    } else if (ct != SQLITE_NULL) {
        return -1;
    }
    if ((rs->state == KS_RETIRED) != (rs->retired_at != 0) || rs->retired_at < 0)
        return -1;
    return 0;
}

/*
 * Decode the current row into OBJ (attribute values point into the row or
 * into tok->scratch; *WIPE is how many scratch bytes to wipe afterwards).
 * *SER / *SER_LEN (may be NULL) get the serialised attributes and RS (may be
 * NULL) the authenticated state. KS_E_TAMPERED means "skip this record" and
 * names it in the last error.
 */
ks_rv
ks_row_decode_inlock(ks_token *tok, sqlite3_stmt *st, ks_object *obj, size_t *wipe,
                     const unsigned char **ser, size_t *ser_len, struct ks_rec_state *rs_out)
{
    int64_t id = sqlite3_column_int64(st, C_ID);
    sqlite3_int64 ver = sqlite3_column_int64(st, C_VERSION);
    int dtype = sqlite3_column_type(st, C_DATA);
    const unsigned char *data = dtype == SQLITE_BLOB ? sqlite3_column_blob(st, C_DATA) : NULL;
    size_t len = dtype == SQLITE_BLOB ? (size_t)sqlite3_column_bytes(st, C_DATA) : 0;
    unsigned char ad[KS_OBJ_AD_MAX];
    struct ks_rec_state rs;
    size_t n = 0, adlen;
    int r;

    *wipe = 0;
    memset(obj, 0, sizeof(*obj));
    if (ver < 1 || ver > UINT32_MAX || dtype != SQLITE_BLOB || ks_row_state(st, C_STATE, &rs) != 0)
        return KS_ERR(tok, KS_E_TAMPERED, "object %" PRId64 ": malformed record", id);
    obj->id = id;
    obj->seq = sqlite3_column_int64(st, C_SEQ);
    obj->is_private = sqlite3_column_int(st, C_PRIV) != 0;
    obj->version = (uint32_t)ver;
    obj->state = rs.state;
    obj->cred = rs.cred;
    obj->cred_len = rs.cred_len;
    if (obj->is_private) {
        unsigned long long plen;

        if (tok->keys == NULL) /* not selected when logged out; be safe */
            return KS_ERR(tok, KS_E_NOT_FOUND, "object %" PRId64 " is private", id);
        if (len < KS_TAG_LEN || sqlite3_column_bytes(st, C_NONCE) != KS_NONCE_LEN)
            return KS_ERR(tok, KS_E_TAMPERED, "object %" PRId64 ": malformed private record", id);
        if (ks_scratch_reserve_inlock(tok, len) != KS_OK)
            return KS_E_NOMEM;
        adlen = object_ad_ext(ad, tok->token_id, id, obj->version, &rs);
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(tok->scratch, &plen, NULL, data, len, ad,
                                                       adlen, sqlite3_column_blob(st, C_NONCE),
                                                       tok->keys->rec) != 0) {
            sodium_memzero(tok->scratch, len);
            return KS_ERR(tok, KS_E_TAMPERED,
                          "object %" PRId64 ": private record failed authentication", id);
        }
        *wipe = (size_t)plen;
        data = tok->scratch;
        len = (size_t)plen;
        r = ks_attrs_parse_inlock(tok, tok->scratch, (size_t)plen, &n);
    } else {
        if (tok->keys != NULL) {
            unsigned char mac[KS_MAC_LEN];

            object_mac_ext(mac, tok->keys->mac, tok->token_id, id, obj->version, &rs, data, len);
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
    if (ser != NULL) {
        *ser = data;
        *ser_len = len;
    }
    if (rs_out != NULL)
        *rs_out = rs;
    return KS_OK;
}

void
ks_wipe_scratch(ks_token *tok, size_t wipe)
{
    if (wipe > 0)
        sodium_memzero(tok->scratch, wipe);
}

ks_rv
ks_rows_each_inlock(ks_token *tok, sqlite3_stmt *st, ks_row_keep_fn keep, void *kctx,
                    ks_object_cb cb, void *ctx, unsigned *bad, const char *what)
{
    ks_rv rv = KS_OK;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct ks_rec_state rs;
        ks_object obj;
        size_t wipe;
        int stop = 0;

        if (sqlite3_column_int(st, C_PRIV) != 0 && tok->keys == NULL)
            continue; /* private, logged out */
        rv = ks_row_decode_inlock(tok, st, &obj, &wipe, NULL, NULL, &rs);
        if (rv == KS_E_TAMPERED) {
            (*bad)++;
            rv = KS_OK;
            continue;
        }
        if (rv != KS_OK)
            break;
        if (keep == NULL || keep(kctx, &obj, &rs))
            stop = cb(ctx, &obj);
        ks_wipe_scratch(tok, wipe);
        if (stop)
            break;
    }
    if (rv == KS_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        rv = KS_SQLERR(tok, rc, what);
    return rv;
}

/* Record that object ID was destroyed (inside the caller's transaction):
 * processes holding a cache learn it from ks_load_changes. */
static ks_rv
tombstone_inlock(ks_token *tok, int64_t id)
{
    sqlite3_stmt *st = ks_stmt_inlock(tok, ST_GONE_ONE);

    sqlite3_bind_int64(st, 1, id);
    return ks_step_done_inlock(tok, st, "recording a destroyed object");
}

/* Destroy object ID (inside the caller's transaction); sqlite3_changes()
 * tells whether there was one. The tombstone is numbered before the row
 * goes: were the row the one with the highest number, numbering after it
 * could hand out that same number again. */
ks_rv
ks_obj_delete_inlock(ks_token *tok, int64_t id)
{
    sqlite3_stmt *st;
    ks_rv rv = tombstone_inlock(tok, id);

    if (rv != KS_OK)
        return rv;
    st = ks_stmt_inlock(tok, ST_OBJ_DELETE);
    sqlite3_bind_int64(st, 1, id);
    return ks_step_done_inlock(tok, st, "destroying an object");
}

ks_rv
ks_load_changes(ks_token *tok, int64_t since, ks_object_cb cb, ks_gone_cb gone, void *ctx,
                int64_t *upto, unsigned *tampered)
{
    unsigned bad = 0;
    int64_t top = since;
    sqlite3_stmt *st;
    ks_object obj;
    size_t wipe;
    ks_rv rv = KS_OK;
    int rc;

    if (tampered != NULL)
        *tampered = 0;
    if (tok == NULL || cb == NULL || gone == NULL || upto == NULL || since < 0)
        return KS_E_ARGS;
    *upto = since;
    ks_lock(tok);
    /* One read transaction: the restore epoch and the changes from one
     * snapshot. Numbers from before a restore mean nothing after it. */
    rv = ks_begin_inlock(tok, 0);
    if (rv == KS_OK) {
        unsigned char epoch[KS_EPOCH_LEN];

        rv = ks_epoch_read_inlock(tok, epoch);
        if (rv == KS_OK && sodium_memcmp(epoch, tok->epoch, KS_EPOCH_LEN) != 0)
            rv = KS_ERR(tok, KS_E_ARGS,
                        "the token was restored from a backup since the last "
                        "full load: changes cannot be applied, load in full");
        if (rv != KS_OK) {
            ks_rollback_inlock(tok);
            ks_unlock(tok);
            return rv;
        }
    } else {
        ks_unlock(tok);
        return rv;
    }
    st = ks_stmt_inlock(tok, ST_OBJ_SINCE);
    sqlite3_bind_int64(st, 1, since);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, C_ID), seq = sqlite3_column_int64(st, C_SEQ);
        int stop = 0;

        if (seq > top)
            top = seq;
        if (sqlite3_column_type(st, C_PRIV) == SQLITE_NULL) {
            gone(ctx, id); /* a tombstone */
            continue;
        }
        if (sqlite3_column_int(st, C_PRIV) != 0 && tok->keys == NULL) {
            gone(ctx, id); /* private (perhaps newly): not visible logged out */
            continue;
        }
        rv = ks_row_decode_inlock(tok, st, &obj, &wipe, NULL, NULL, NULL);
        if (rv == KS_E_TAMPERED) {
            bad++;
            rv = KS_OK;
            gone(ctx, id);
            continue;
        }
        if (rv != KS_OK)
            break;
        /* A retired object goes to CB too (state KS_RETIRED): a caller that
         * holds it may keep using it until it is purged (keystore.h). */
        stop = cb(ctx, &obj);
        ks_wipe_scratch(tok, wipe);
        if (stop) {
            rv = KS_E_ARGS; /* the caller could not take it: its view is incomplete */
            break;
        }
    }
    if (rv == KS_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        rv = KS_SQLERR(tok, rc, "reading changed objects");
    ks_stmt_done(st);
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
    ks_unlock(tok);
    if (rv == KS_OK)
        *upto = top;
    if (tampered != NULL)
        *tampered = bad;
    return rv;
}

/* KEEP of a walk that hands out every object but the retired ones. */
static int
keep_unretired(void *kctx, const ks_object *obj, const struct ks_rec_state *rs)
{
    (void)kctx;
    (void)rs;
    return obj->state != KS_RETIRED;
}

ks_rv
ks_load_objects(ks_token *tok, ks_object_cb cb, void *ctx, unsigned *tampered)
{
    unsigned char epoch[KS_EPOCH_LEN];
    unsigned bad = 0;
    sqlite3_stmt *st;
    ks_rv rv = KS_OK;

    if (tampered != NULL)
        *tampered = 0;
    if (tok == NULL || cb == NULL)
        return KS_E_ARGS;
    ks_lock(tok);
    /* One read transaction: one snapshot, even while others write, for the
     * objects and the restore epoch they belong to (ks_load_changes). */
    rv = ks_begin_inlock(tok, 0);
    if (rv == KS_OK) {
        rv = ks_epoch_read_inlock(tok, epoch);
        if (rv != KS_OK)
            ks_rollback_inlock(tok);
    }
    if (rv != KS_OK) {
        ks_unlock(tok);
        return rv;
    }
    st = ks_stmt_inlock(tok, tok->keys != NULL ? ST_OBJ_ALL : ST_OBJ_PUBLIC);
    /* Retired ones are kept only for rollback and purge. */
    rv = ks_rows_each_inlock(tok, st, keep_unretired, NULL, cb, ctx, &bad, "reading objects");
    ks_stmt_done(st);
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
    if (rv == KS_OK)
        memcpy(tok->epoch, epoch, KS_EPOCH_LEN);
    ks_unlock(tok);
    if (tampered != NULL)
        *tampered = bad;
    return rv;
}

ks_rv
ks_list_inactive(ks_token *tok, ks_inactive_cb cb, void *ctx, unsigned *tampered)
{
    unsigned bad = 0;
    sqlite3_stmt *st;
    ks_rv rv = KS_OK;
    int rc;

    if (tampered != NULL)
        *tampered = 0;
    if (tok == NULL || cb == NULL)
        return KS_E_ARGS;
    ks_lock(tok);
    /* One statement, one read snapshot, through the index of the inactive
     * rows (schema 7). */
    st = ks_stmt_inlock(tok, ST_OBJ_INACTIVE);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct ks_rec_state rs;
        ks_inactive io;
        ks_object obj;
        size_t wipe = 0;
        int stop;

        if (ks_row_state(st, C_STATE, &rs) != 0) {
            bad++;
            continue;
        }
        if (rs.state == KS_ACTIVE)
            continue;
        memset(&io, 0, sizeof(io));
        io.id = sqlite3_column_int64(st, C_ID);
        io.is_private = sqlite3_column_int(st, C_PRIV) != 0;
        if (!io.is_private || tok->keys != NULL) {
            rv = ks_row_decode_inlock(tok, st, &obj, &wipe, NULL, NULL, &rs);
            if (rv == KS_E_TAMPERED) {
                bad++;
                rv = KS_OK;
                continue;
            }
            if (rv != KS_OK)
                break;
            io.nattrs = obj.nattrs;
            io.attrs = obj.attrs;
        }
        io.state = rs.state;
        io.retired_at = rs.retired_at;
        io.cred = rs.cred;
        io.cred_len = rs.cred_len;
        stop = cb(ctx, &io);
        ks_wipe_scratch(tok, wipe);
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
    return ks_object_get_flags(tok, id, 0, cb, ctx);
}

ks_rv
ks_object_get_flags(ks_token *tok, int64_t id, unsigned flags, ks_object_cb cb, void *ctx)
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
    rv = ks_row_decode_inlock(tok, st, &obj, &wipe, NULL, NULL, NULL);
    if (rv != KS_OK)
        goto out;
    if (obj.state == KS_RETIRED && !(flags & KS_GET_RETIRED)) {
        ks_wipe_scratch(tok, wipe);
        rv = KS_ERR(tok, KS_E_NOT_FOUND, "object %" PRId64 " is retired", id);
        goto out;
    }
    (void)cb(ctx, &obj);
    ks_wipe_scratch(tok, wipe);
out:
    ks_stmt_done(st);
    ks_unlock(tok);
    return rv;
}

/* Seal (private) or MAC (public) the serialised attributes SER and write
 * them as version VER of object ID; inside the caller's transaction. */
ks_rv
ks_record_write_inlock(ks_token *tok, int64_t id, int is_private, uint32_t ver,
                       const struct ks_rec_state *rs, const unsigned char *ser, size_t ser_len)
{
    sqlite3_stmt *st = ks_stmt_inlock(tok, ST_OBJ_WRITE);
    unsigned char nonce[KS_NONCE_LEN], mac[KS_MAC_LEN], ad[KS_OBJ_AD_MAX];
    unsigned char *ct = NULL;
    struct ks_lookup lk;
    size_t adlen;
    ks_rv rv;

    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, ver);
    /* The lookup columns from the plaintext (lookup.c). */
    ks_lookup_of_inlock(tok, is_private, ser, ser_len, &lk);
    ks_lookup_bind(st, 9, &lk);
    sqlite3_bind_int(st, 6, (int)rs->state);
    if (rs->state == KS_RETIRED)
        sqlite3_bind_int64(st, 7, rs->retired_at);
    else
        sqlite3_bind_null(st, 7);
    if (rs->cred_len > 0)
        sqlite3_bind_blob(st, 8, rs->cred, (int)rs->cred_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 8);
    if (is_private) {
        ct = malloc(ser_len + KS_TAG_LEN); /* ciphertext: not secret */
        if (ct == NULL) {
            ks_stmt_done(st);
            return KS_ERR(tok, KS_E_NOMEM, "out of memory");
        }
        randombytes_buf(nonce, sizeof(nonce));
        adlen = object_ad_ext(ad, tok->token_id, id, ver, rs);
        crypto_aead_xchacha20poly1305_ietf_encrypt(ct, NULL, ser, ser_len, ad, adlen, NULL, nonce,
                                                   tok->keys->rec);
        sqlite3_bind_blob(st, 3, nonce, sizeof(nonce), SQLITE_STATIC);
        sqlite3_bind_blob(st, 4, ct, (int)(ser_len + KS_TAG_LEN), SQLITE_STATIC);
        sqlite3_bind_null(st, 5);
    } else {
        object_mac_ext(mac, tok->keys->mac, tok->token_id, id, ver, rs, ser, ser_len);
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
write_begin_inlock(ks_token *tok, const ks_attr *attrs, size_t n, size_t *ser_len, int normal)
{
    ks_rv rv;

    if (tok->keys == NULL)
        return KS_ERR(tok, KS_E_NOT_LOGGED_IN, "writing objects needs a login");
    rv = ks_scratch_reserve_inlock(tok, *ser_len);
    if (rv != KS_OK)
        return rv;
    ks_attrs_serialise(attrs, n, tok->scratch, *ser_len);
    /* synchronous=NORMAL or FULL: docs/keystore-format.md, "Durability". */
    rv = normal ? ks_begin_normal_inlock(tok) : ks_begin_inlock(tok, 1);
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

static ks_rv
object_create(ks_token *tok, int is_private, const ks_attr *attrs, size_t n,
              const struct ks_rec_state *rs, int64_t *out_id)
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
    /* Public objects (certificates, public keys, public data) commit with
     * synchronous=NORMAL; private ones (keys: a CA may already have been
     * asked to certify one) and pending ones (a rollover in progress) with
     * FULL. */
    rv = write_begin_inlock(tok, attrs, n, &ser_len, !is_private && rs->state == KS_ACTIVE);
    if (rv != KS_OK)
        goto out;
    /* The id is part of the AD, so insert first to learn it (AUTOINCREMENT:
     * never a reused id), then write the sealed record, in one transaction. */
    st = ks_stmt_inlock(tok, ST_OBJ_INSERT);
    sqlite3_bind_int(st, 1, is_private);
    rv = ks_step_done_inlock(tok, st, "creating an object");
    if (rv == KS_OK) {
        id = sqlite3_last_insert_rowid(tok->db);
        rv = ks_record_write_inlock(tok, id, is_private, 1, rs, tok->scratch, ser_len);
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
ks_object_create(ks_token *tok, int is_private, const ks_attr *attrs, size_t n, int64_t *out_id)
{
    return object_create(tok, is_private, attrs, n, &st_active, out_id);
}

ks_rv
ks_object_create_pending(ks_token *tok, int is_private, const ks_attr *attrs, size_t n,
                         const unsigned char *cred, size_t cred_len, int64_t *out_id)
{
    struct ks_rec_state rs = {KS_PENDING, 0, cred, cred_len};

    if (out_id != NULL)
        *out_id = 0;
    if (cred == NULL || cred_len == 0 || cred_len > KS_CRED_MAX)
        return KS_E_ARGS;
    return object_create(tok, is_private, attrs, n, &rs, out_id);
}

ks_rv
ks_object_update(ks_token *tok, int64_t id, const ks_attr *attrs, size_t n)
{
    size_t ser_len = 0;
    sqlite3_stmt *st;
    sqlite3_int64 ver = 0;
    int is_private = 0, rc;
    unsigned char cred[KS_CRED_MAX];
    struct ks_rec_state rs = st_active;
    ks_rv rv;

    if (tok == NULL)
        return KS_E_ARGS;
    rv = attrs_args(tok, attrs, n, &ser_len);
    if (rv != KS_OK)
        return rv;
    ks_lock(tok);
    /* Updates are rare: FULL (the object's privacy is only known inside
     * the transaction). */
    rv = write_begin_inlock(tok, attrs, n, &ser_len, 0);
    if (rv != KS_OK)
        goto out;
    st = ks_stmt_inlock(tok, ST_OBJ_HEAD);
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        is_private = sqlite3_column_int(st, 0) != 0;
        ver = sqlite3_column_int64(st, 1);
        /* The state stays as it is (a pending key may be updated). */
        if (ks_row_state(st, 2, &rs) != 0) {
            rv = KS_ERR(tok, KS_E_CORRUPT, "object %" PRId64 ": malformed state", id);
        } else {
            if (rs.cred_len > 0)
                memcpy(cred, rs.cred, rs.cred_len);
            rs.cred = cred;
        }
    } else if (rc == SQLITE_DONE) {
        rv = KS_ERR(tok, KS_E_NOT_FOUND, "no object %" PRId64, id);
    } else {
        rv = KS_SQLERR(tok, rc, "reading an object");
    }
    ks_stmt_done(st);
    if (rv == KS_OK && (ver < 1 || ver >= UINT32_MAX))
        rv = KS_ERR(tok, KS_E_CORRUPT, "object %" PRId64 ": version out of range", id);
    if (rv == KS_OK)
        rv = ks_record_write_inlock(tok, id, is_private, (uint32_t)ver + 1, &rs, tok->scratch,
                                    ser_len);
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
        rv = ks_obj_delete_inlock(tok, id);
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
