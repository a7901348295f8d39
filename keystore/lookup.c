/*
 * lookup.c — the lookup columns of stored objects (schema 5) and the
 * searches they answer.
 *
 * Each row of table objects carries what applications search by, CKA_ID
 * (l_id) and CKA_LABEL (l_label): the value itself for a public object (its
 * attributes are in the clear in the same row anyway) and, for a private
 * one, a keyed BLAKE2b hash under a key derived from the token master key
 * (KS_SUBKEY_LK), so that the file does not reveal a private key's CKA_ID
 * or label while a search after login still finds it without decrypting
 * any record it does not return. lk = 1 marks filled columns: every write
 * fills them (ks_record_write_inlock); rows from before schema 5 are filled
 * in one pass, public ones at the next open, private ones at the next
 * login (ks_lookup_fill).
 *
 * The columns are hints, never trusted: ks_find reads the rows they point
 * at (and every row not yet filled), checks each record as every read does
 * (MAC or AEAD), and hands out only those whose attribute really has the
 * value searched for. A forged column can hide a record from a search
 * (a miss) or make one be read and dropped, never return a wrong object.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ks_int.h"

static const uint64_t lk_types[2] = {KS_ATTR_ID, KS_ATTR_LABEL};

/* Keyed BLAKE2b over u64 TYPE (little endian) || VALUE. */
static void
lookup_hash(unsigned char out[KS_LOOKUP_HASH_LEN], const unsigned char key[KS_KEY_LEN],
            uint64_t type, const unsigned char *v, size_t len)
{
    crypto_generichash_state h;
    unsigned char t[8];

    for (int i = 0; i < 8; i++)
        t[i] = (unsigned char)(type >> (8 * i));
    crypto_generichash_init(&h, key, KS_KEY_LEN, KS_LOOKUP_HASH_LEN);
    crypto_generichash_update(&h, t, sizeof(t));
    if (len > 0)
        crypto_generichash_update(&h, v, len);
    crypto_generichash_final(&h, out, KS_LOOKUP_HASH_LEN);
    sodium_memzero(&h, sizeof(h));
}

void
ks_lookup_of_inlock(ks_token *tok, int is_private, const unsigned char *ser, size_t ser_len,
                    struct ks_lookup *lk)
{
    for (int k = 0; k < 2; k++) {
        const unsigned char *v;
        size_t n;

        lk->v[k] = NULL;
        lk->len[k] = 0;
        if (ks_ser_find(ser, ser_len, lk_types[k], &v, &n) != 1)
            continue;
        if (is_private) {
            if (tok->keys == NULL)
                continue; /* no key: left empty (a search then misses it) */
            lookup_hash(lk->hbuf[k], tok->keys->lk, lk_types[k], v, n);
            lk->v[k] = lk->hbuf[k];
            lk->len[k] = KS_LOOKUP_HASH_LEN;
        } else {
            lk->v[k] = v;
            lk->len[k] = n;
        }
    }
}

/* Bind N bytes at V (NULL: SQL NULL; a zero-length value stays a blob). */
static void
bind_bytes(sqlite3_stmt *st, int col, const unsigned char *v, size_t n)
{
    if (v == NULL)
        sqlite3_bind_null(st, col);
    else if (n == 0)
        sqlite3_bind_zeroblob(st, col, 0);
    else
        sqlite3_bind_blob(st, col, v, (int)n, SQLITE_STATIC);
}

void
ks_lookup_bind(sqlite3_stmt *st, int col, const struct ks_lookup *lk)
{
    for (int k = 0; k < 2; k++)
        bind_bytes(st, col + k, lk->v[k], lk->len[k]);
}

/* ---- filling the columns of older rows ----------------------------------- */

/* Is any row of kind PRIV unfilled? (One read through a partial index.) */
static ks_rv
any_unfilled_inlock(ks_token *tok, int priv, int *any)
{
    sqlite3_stmt *st = ks_stmt_inlock(tok, ST_OBJ_ANY_UNFILLED);
    int rc;

    sqlite3_bind_int(st, 1, priv);
    rc = sqlite3_step(st);
    *any = rc == SQLITE_ROW;
    ks_stmt_done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return KS_SQLERR(tok, rc, "looking for unfilled lookup columns");
    return KS_OK;
}

/* One batch of unfilled rows above id *AFTER: read (and check) each, keep
 * its lookup values, then write them. *DONE when no row was left. */
static ks_rv
fill_batch_inlock(ks_token *tok, int priv, int64_t *after, int *done)
{
    sqlite3_stmt *st = ks_stmt_inlock(tok, ST_OBJ_UNFILLED), *up;
    struct {
        int64_t id;
        unsigned char *v[2];
        size_t len[2];
    } b[256];
    size_t nb = 0, nrows = 0;
    ks_rv rv = KS_OK;
    int rc;

    sqlite3_bind_int(st, 1, priv);
    sqlite3_bind_int64(st, 2, *after);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && nb < 256) {
        const unsigned char *ser;
        size_t ser_len, wipe;
        struct ks_lookup lk;
        ks_object obj;
        ks_rv r;

        nrows++;
        *after = sqlite3_column_int64(st, 0);
        r = ks_row_decode_inlock(tok, st, &obj, &wipe, &ser, &ser_len, NULL);
        if (r == KS_E_NOMEM) {
            rv = r;
            break;
        }
        if (r != KS_OK)
            continue; /* damaged: stays unfilled, every search reads (and drops) it */
        ks_lookup_of_inlock(tok, priv, ser, ser_len, &lk);
        b[nb].id = obj.id;
        for (int k = 0; k < 2; k++) {
            b[nb].len[k] = lk.len[k];
            b[nb].v[k] = NULL;
            if (lk.v[k] != NULL && (b[nb].v[k] = malloc(lk.len[k] + 1)) != NULL)
                memcpy(b[nb].v[k], lk.v[k], lk.len[k]);
            else if (lk.v[k] != NULL)
                rv = KS_E_NOMEM;
        }
        nb++;
        ks_wipe_scratch(tok, wipe);
        if (rv != KS_OK)
            break;
    }
    if (rv == KS_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        rv = KS_SQLERR(tok, rc, "reading unfilled rows");
    ks_stmt_done(st);
    *done = rv == KS_OK && nrows == 0;
    up = ks_stmt_inlock(tok, ST_OBJ_FILL);
    for (size_t i = 0; i < nb; i++) {
        if (rv == KS_OK) {
            sqlite3_bind_int64(up, 1, b[i].id);
            for (int k = 0; k < 2; k++)
                bind_bytes(up, 2 + k, b[i].v[k], b[i].len[k]);
            rv = ks_step_done_inlock(tok, up, "filling lookup columns");
        }
        free(b[i].v[0]);
        free(b[i].v[1]);
    }
    return rv;
}

ks_rv
ks_lookup_fill(ks_token *tok, int priv)
{
    int64_t after = 0;
    int any = 0, done = 0;
    ks_rv rv;

    ks_lock(tok);
    if (priv && tok->keys == NULL) {
        ks_unlock(tok);
        return KS_OK;
    }
    rv = any_unfilled_inlock(tok, priv, &any);
    if (rv != KS_OK || !any) {
        ks_unlock(tok);
        return rv;
    }
    /* Not a change of any record: no sequence number, nothing for other
     * processes to reload. */
    rv = ks_begin_inlock(tok, 1);
    while (rv == KS_OK && !done)
        rv = fill_batch_inlock(tok, priv, &after, &done);
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else
        ks_rollback_inlock(tok);
    ks_unlock(tok);
    return rv;
}

/* ---- searches ---------------------------------------------------------------- */

/* Does OBJ's attribute TYPE hold exactly V (LEN bytes)? */
static int
has_value(const ks_object *obj, uint64_t type, const void *v, size_t len)
{
    for (size_t i = 0; i < obj->nattrs; i++)
        if (obj->attrs[i].type == type)
            return obj->attrs[i].len == len &&
                   (len == 0 || memcmp(obj->attrs[i].value, v, len) == 0);
    return 0;
}

ks_rv
ks_find(ks_token *tok, uint64_t type, const void *value, size_t len, ks_object_cb cb, void *ctx,
        unsigned *tampered)
{
    unsigned char h[KS_LOOKUP_HASH_LEN];
    unsigned bad = 0;
    sqlite3_stmt *st;
    ks_rv rv = KS_OK;
    int rc;

    if (tampered != NULL)
        *tampered = 0;
    if (tok == NULL || cb == NULL || (value == NULL && len > 0) ||
        (type != KS_ATTR_ID && type != KS_ATTR_LABEL) || len > KS_ATTR_LEN_MAX)
        return KS_E_ARGS;
    ks_lock(tok);
    st = ks_stmt_inlock(tok, type == KS_ATTR_ID ? ST_OBJ_FIND_ID : ST_OBJ_FIND_LABEL);
    bind_bytes(st, 1, value != NULL ? value : (const unsigned char *)"", len);
    if (tok->keys != NULL) {
        lookup_hash(h, tok->keys->lk, type, value, len);
        sqlite3_bind_blob(st, 2, h, sizeof(h), SQLITE_STATIC);
    } else {
        sqlite3_bind_null(st, 2);
    }
    sqlite3_bind_int(st, 3, tok->keys != NULL);
    /* One statement: one read snapshot. */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ks_object obj;
        size_t wipe;
        int stop = 0;

        rv = ks_row_decode_inlock(tok, st, &obj, &wipe, NULL, NULL, NULL);
        if (rv == KS_E_TAMPERED) {
            bad++;
            rv = KS_OK;
            continue;
        }
        if (rv != KS_OK)
            break;
        /* Retired ones are never handed out; a row the column misleads
         * about (a hint, not trusted) is read and dropped. */
        if (obj.state != KS_RETIRED && has_value(&obj, type, value, len))
            stop = cb(ctx, &obj);
        ks_wipe_scratch(tok, wipe);
        if (stop)
            break;
    }
    if (rv == KS_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        rv = KS_SQLERR(tok, rc, "searching objects");
    ks_stmt_done(st);
    ks_unlock(tok);
    if (tampered != NULL)
        *tampered = bad;
    return rv;
}

ks_rv
ks_change_seq(ks_token *tok, int64_t *seq)
{
    sqlite3_stmt *st;
    unsigned char epoch[KS_EPOCH_LEN];
    ks_rv rv;
    int rc;

    if (tok == NULL || seq == NULL)
        return KS_E_ARGS;
    *seq = 0;
    ks_lock(tok);
    /* The number and the restore epoch from one snapshot. */
    rv = ks_begin_inlock(tok, 0);
    if (rv == KS_OK)
        rv = ks_epoch_read_inlock(tok, epoch);
    if (rv == KS_OK) {
        st = ks_stmt_inlock(tok, ST_SEQ_NOW);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            *seq = sqlite3_column_int64(st, 0);
        else
            rv = KS_SQLERR(tok, rc, "reading the change sequence");
        ks_stmt_done(st);
    }
    if (rv == KS_OK)
        rv = ks_commit_inlock(tok);
    else if (!sqlite3_get_autocommit(tok->db))
        ks_rollback_inlock(tok);
    if (rv == KS_OK)
        memcpy(tok->epoch, epoch, KS_EPOCH_LEN);
    else
        *seq = 0;
    ks_unlock(tok);
    return rv;
}
