/*
 * lookup.c — the lookup columns of stored objects (schemas 5 and 6) and
 * the searches they answer (the rollover's, through the same columns and
 * schema 7's indexes of the rollover state: rollover.c).
 *
 * Each row of table objects carries what applications search by: CKA_ID
 * (l_id), CKA_LABEL (l_label), CKA_CLASS (l_class), CKA_KEY_TYPE (l_ktype),
 * CKA_CERTIFICATE_TYPE (l_ctype), CKA_SUBJECT (l_subj) and CKA_ISSUER with
 * CKA_SERIAL_NUMBER (l_isn): for a public object the value itself (its
 * attributes are in the clear in the same row anyway; an unkeyed hash for
 * the long subject and issuer/serial) and, for a private one, a keyed
 * BLAKE2b hash under a key derived from the token master key
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

/* The lookup columns, in KS_LK_* order. A hashed column holds a hash for
 * public objects too (an unkeyed one: long values, e.g. a subject, make a
 * small index); the others hold a public object's value as is. l_isn is
 * over two attributes: CKA_ISSUER, then CKA_SERIAL_NUMBER. */
static const struct {
    uint64_t type, type2;
    int hashed;
} lk_cols[KS_LK_N] = {
    [KS_LK_ID] = {KS_ATTR_ID, 0, 0},
    [KS_LK_LABEL] = {KS_ATTR_LABEL, 0, 0},
    [KS_LK_CLASS] = {KS_ATTR_CLASS, 0, 0},
    [KS_LK_KTYPE] = {KS_ATTR_KEY_TYPE, 0, 0},
    [KS_LK_CTYPE] = {KS_ATTR_CERT_TYPE, 0, 0},
    [KS_LK_SUBJ] = {KS_ATTR_SUBJECT, 0, 1},
    [KS_LK_ISN] = {KS_ATTR_ISSUER, KS_ATTR_SERIAL, 1},
};

static void
hash_u64(crypto_generichash_state *h, uint64_t x)
{
    unsigned char t[8];

    for (int i = 0; i < 8; i++)
        t[i] = (unsigned char)(x >> (8 * i));
    crypto_generichash_update(h, t, sizeof(t));
}

/* BLAKE2b (keyed with KEY, or unkeyed when KEY is NULL) over u64 TYPE
 * (little endian) || VALUE; for a pair (V2 not NULL) over u64 TYPE || u64
 * LEN || VALUE || V2, so that no two pairs hash alike. */
static void
lookup_hash(unsigned char out[KS_LOOKUP_HASH_LEN], const unsigned char *key, uint64_t type,
            const unsigned char *v, size_t len, const unsigned char *v2, size_t len2)
{
    crypto_generichash_state h;

    crypto_generichash_init(&h, key, key != NULL ? KS_KEY_LEN : 0, KS_LOOKUP_HASH_LEN);
    hash_u64(&h, type);
    if (v2 != NULL)
        hash_u64(&h, len);
    if (len > 0)
        crypto_generichash_update(&h, v, len);
    if (v2 != NULL && len2 > 0)
        crypto_generichash_update(&h, v2, len2);
    crypto_generichash_final(&h, out, KS_LOOKUP_HASH_LEN);
    sodium_memzero(&h, sizeof(h));
}

/* Column K's value for a record holding V (and V2 for a pair): points to
 * V itself or to the hash in BUF; NULL when it cannot be computed (a
 * private record without the keys). */
static const unsigned char *
lookup_value(ks_token *tok, int k, int is_private, const unsigned char *v, size_t len,
             const unsigned char *v2, size_t len2, unsigned char buf[KS_LOOKUP_HASH_LEN],
             size_t *out_len)
{
    if (is_private && tok->keys == NULL)
        return NULL;
    if (!is_private && !lk_cols[k].hashed) {
        *out_len = len;
        return v;
    }
    lookup_hash(buf, is_private ? tok->keys->lk : NULL, lk_cols[k].type, v, len, v2, len2);
    *out_len = KS_LOOKUP_HASH_LEN;
    return buf;
}

void
ks_lookup_of_inlock(ks_token *tok, int is_private, const unsigned char *ser, size_t ser_len,
                    struct ks_lookup *lk)
{
    for (int k = 0; k < KS_LK_N; k++) {
        const unsigned char *v, *v2 = NULL;
        size_t n, n2 = 0;

        lk->v[k] = NULL;
        lk->len[k] = 0;
        if (ks_ser_find(ser, ser_len, lk_cols[k].type, &v, &n) != 1)
            continue;
        if (lk_cols[k].type2 != 0 && ks_ser_find(ser, ser_len, lk_cols[k].type2, &v2, &n2) != 1)
            continue;
        /* No key: left empty (a search then misses it). */
        lk->v[k] = lookup_value(tok, k, is_private, v, n, v2, n2, lk->hbuf[k], &lk->len[k]);
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
    for (int k = 0; k < KS_LK_N; k++)
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
        unsigned char *v[KS_LK_N];
        size_t len[KS_LK_N];
    } b[256];
    size_t nb = 0, nrows = 0;
    int64_t start = *after;
    ks_rv rv = KS_OK;
    int rc;

    sqlite3_bind_int(st, 1, priv);
    sqlite3_bind_int64(st, 2, *after);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && nb < 256) {
        const unsigned char *ser;
        size_t ser_len, wipe;
        struct ks_lookup lk;
        ks_object obj;
        int64_t id = sqlite3_column_int64(st, 0);
        ks_rv r;

        /* Ids only grow, batch after batch; a damaged index that answers
         * otherwise ends the filling (what is left stays unfilled, which
         * searches read and check anyway) instead of looping forever. */
        if (id <= start)
            break;
        nrows++;
        if (id > *after)
            *after = id;
        r = ks_row_decode_inlock(tok, st, &obj, &wipe, &ser, &ser_len, NULL);
        if (r == KS_E_NOMEM) {
            rv = r;
            break;
        }
        if (r != KS_OK)
            continue; /* damaged: stays unfilled, every search reads (and drops) it */
        ks_lookup_of_inlock(tok, priv, ser, ser_len, &lk);
        b[nb].id = obj.id;
        for (int k = 0; k < KS_LK_N; k++) {
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
            for (int k = 0; k < KS_LK_N; k++)
                bind_bytes(up, 2 + k, b[i].v[k], b[i].len[k]);
            rv = ks_step_done_inlock(tok, up, "filling lookup columns");
        }
        for (int k = 0; k < KS_LK_N; k++)
            free(b[i].v[k]);
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

/* Bind column K's value for V (and V2 for a pair) to parameter COL
 * (public rows) and COL + 1 (private rows; logged out: NULL, which matches
 * nothing). H and HP hold the hashes while ST runs. */
static void
bind_pair(ks_token *tok, sqlite3_stmt *st, int col, int k, const void *v, size_t len,
          const void *v2, size_t len2, unsigned char h[KS_LOOKUP_HASH_LEN],
          unsigned char hp[KS_LOOKUP_HASH_LEN])
{
    const unsigned char *cv, *pv;
    size_t cl = 0, pl = 0;

    cv = lookup_value(tok, k, 0, v, len, v2, len2, h, &cl);
    bind_bytes(st, col, cv, cl);
    pv = lookup_value(tok, k, 1, v, len, v2, len2, hp, &pl);
    bind_bytes(st, col + 1, pv, pl);
}

void
ks_lookup_bind_value_inlock(ks_token *tok, sqlite3_stmt *st, int col, int k, const void *value,
                            size_t len, unsigned char h[KS_LOOKUP_HASH_LEN],
                            unsigned char hp[KS_LOOKUP_HASH_LEN])
{
    static const unsigned char empty[1];

    bind_pair(tok, st, col, k, value != NULL ? value : empty, len,
              lk_cols[k].type2 != 0 ? empty : NULL, 0, h, hp);
}

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

/*
 * A broad search (class, key type, certificate type) may return most of
 * the token ("all certificates" of a CA bundle). Reading its candidates by
 * id (OBJ_FIND, db.c) then costs one b-tree descent per row, where reading
 * the table in id order costs what a full load does (docs/performance.md,
 * issue 17). When the column's index counts more than half as many
 * candidates as the table has ids (and at least BROAD_MIN), this statement
 * (same rows, same order, same conditions as OBJ_FIND) scans instead; NULL:
 * use the indexed one. Prepared per search: a broad one is long anyway.
 */
#define BROAD_MIN 256

static const char *const broad_col[KS_LK_N] = {
    [KS_LK_CLASS] = "l_class", [KS_LK_KTYPE] = "l_ktype", [KS_LK_CTYPE] = "l_ctype"};

/* The candidates of broad column K for the clear (CV) and hashed (PV)
 * value, counted in its index, and the highest id in the table. */
static void
broad_count_inlock(ks_token *tok, int k, const unsigned char *cv, size_t cl,
                   const unsigned char *pv, size_t pl, uint64_t *n, uint64_t *top)
{
    char sql[256];
    sqlite3_stmt *st = NULL;

    *n = *top = 0;
    snprintf(sql, sizeof(sql),
             "SELECT (SELECT count(*) FROM objects WHERE %s IN (?1, ?2)),"
             " (SELECT max(id) FROM objects)",
             broad_col[k]);
    if (sqlite3_prepare_v2(tok->db, sql, -1, &st, NULL) == SQLITE_OK) {
        bind_bytes(st, 1, cv, cl);
        bind_bytes(st, 2, pv, pl);
        if (sqlite3_step(st) == SQLITE_ROW) {
            *n = (uint64_t)sqlite3_column_int64(st, 0);
            *top = (uint64_t)sqlite3_column_int64(st, 1);
        }
    }
    sqlite3_finalize(st);
}

static sqlite3_stmt *
broad_scan_inlock(ks_token *tok, int k, const unsigned char *cv, size_t cl, const unsigned char *pv,
                  size_t pl)
{
    char sql[512];
    sqlite3_stmt *st = NULL;
    uint64_t n, top;
    int rc;

    if (broad_col[k] == NULL)
        return NULL;
    broad_count_inlock(tok, k, cv, cl, pv, pl, &n, &top);
    if (n < BROAD_MIN || n * 2 < top)
        return NULL;
    snprintf(sql, sizeof(sql),
             "SELECT id, is_private, version, nonce, data, mac, state, retired_at, cred, seq"
             " FROM objects NOT INDEXED WHERE (%s IN (?1, ?2) AND lk = 1 AND"
             " (is_private = 0 OR ?3)) OR (lk = 0 AND (is_private = 0 OR ?3)) ORDER BY id",
             broad_col[k]);
    rc = sqlite3_prepare_v2(tok->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        return st;
    sqlite3_finalize(st);
    return NULL;
}

/* What a search of a lookup column matches in full (find_col). */
struct col_match {
    int k;
    const void *value, *v2;
    size_t len, len2;
};

/* Retired ones are never handed out; a row the column misleads about (a
 * hint, not trusted) is read and dropped. */
static int
keep_match(void *kctx, const ks_object *obj, const struct ks_rec_state *rs)
{
    const struct col_match *m = kctx;

    (void)rs;
    return obj->state != KS_RETIRED && has_value(obj, lk_cols[m->k].type, m->value, m->len) &&
           (lk_cols[m->k].type2 == 0 || has_value(obj, lk_cols[m->k].type2, m->v2, m->len2));
}

/* The search of lookup column K for V (and V2 for a pair): one statement,
 * one read snapshot; every candidate checked and matched in full. */
static ks_rv
find_col(ks_token *tok, int k, const void *value, size_t len, const void *v2, size_t len2,
         ks_object_cb cb, void *ctx, unsigned *tampered)
{
    static const unsigned char empty[1];
    unsigned char h[KS_LOOKUP_HASH_LEN], hp[KS_LOOKUP_HASH_LEN];
    const unsigned char *cv, *pv;
    size_t cl = 0, pl = 0;
    unsigned bad = 0;
    sqlite3_stmt *st, *scan;
    struct col_match m;
    ks_rv rv;

    if (value == NULL)
        value = empty;
    if (lk_cols[k].type2 != 0 && v2 == NULL)
        v2 = empty;
    m = (struct col_match){k, value, v2, len, len2};
    ks_lock(tok);
    cv = lookup_value(tok, k, 0, value, len, v2, len2, h, &cl);
    pv = lookup_value(tok, k, 1, value, len, v2, len2, hp, &pl);
    scan = broad_scan_inlock(tok, k, cv, cl, pv, pl);
    st = scan != NULL ? scan : ks_stmt_inlock(tok, ST_OBJ_FIND_ID + k);
    bind_bytes(st, 1, cv, cl);
    bind_bytes(st, 2, pv, pl); /* logged out: NULL, matches nothing */
    sqlite3_bind_int(st, 3, tok->keys != NULL);
    rv = ks_rows_each_inlock(tok, st, keep_match, &m, cb, ctx, &bad, "searching objects");
    if (scan != NULL)
        sqlite3_finalize(scan);
    else
        ks_stmt_done(st);
    ks_unlock(tok);
    sodium_memzero(hp, sizeof(hp));
    if (tampered != NULL)
        *tampered = bad;
    return rv;
}

ks_rv
ks_find(ks_token *tok, uint64_t type, const void *value, size_t len, ks_object_cb cb, void *ctx,
        unsigned *tampered)
{
    int k;

    if (tampered != NULL)
        *tampered = 0;
    if (tok == NULL || cb == NULL || (value == NULL && len > 0) || len > KS_ATTR_LEN_MAX)
        return KS_E_ARGS;
    for (k = 0; k < KS_LK_N; k++)
        if (lk_cols[k].type == type && lk_cols[k].type2 == 0)
            break;
    if (k == KS_LK_N)
        return KS_E_ARGS;
    return find_col(tok, k, value, len, NULL, 0, cb, ctx, tampered);
}

ks_rv
ks_find_count(ks_token *tok, uint64_t type, const void *value, size_t len, uint64_t *n)
{
    static const unsigned char empty[1];
    unsigned char h[KS_LOOKUP_HASH_LEN], hp[KS_LOOKUP_HASH_LEN];
    const unsigned char *cv, *pv;
    size_t cl = 0, pl = 0;
    uint64_t top = 0;
    int k;

    if (n != NULL)
        *n = 0;
    if (tok == NULL || n == NULL || (value == NULL && len > 0) || len > KS_ATTR_LEN_MAX)
        return KS_E_ARGS;
    for (k = 0; k < KS_LK_N; k++)
        if (lk_cols[k].type == type && broad_col[k] != NULL)
            break;
    if (k == KS_LK_N)
        return KS_E_ARGS;
    if (value == NULL)
        value = empty;
    ks_lock(tok);
    cv = lookup_value(tok, k, 0, value, len, NULL, 0, h, &cl);
    pv = lookup_value(tok, k, 1, value, len, NULL, 0, hp, &pl);
    broad_count_inlock(tok, k, cv, cl, pv, pl, n, &top);
    ks_unlock(tok);
    sodium_memzero(hp, sizeof(hp));
    return KS_OK;
}

ks_rv
ks_find_issuer_serial(ks_token *tok, const void *issuer, size_t ilen, const void *serial,
                      size_t slen, ks_object_cb cb, void *ctx, unsigned *tampered)
{
    if (tampered != NULL)
        *tampered = 0;
    if (tok == NULL || cb == NULL || (issuer == NULL && ilen > 0) || (serial == NULL && slen > 0) ||
        ilen > KS_ATTR_LEN_MAX || slen > KS_ATTR_LEN_MAX)
        return KS_E_ARGS;
    return find_col(tok, KS_LK_ISN, issuer, ilen, serial, slen, cb, ctx, tampered);
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
