/*
 * rollover.c — the credential rollover of stored objects (states active /
 * pending / retired; docs/rollover.md).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ks_int.h"

/* ---- credential rollover -------------------------------------------------
 * Every function below is one write transaction: it reads every record it
 * may touch (authenticating it; records that fail are left alone), then
 * rewrites or deletes them, then commits. A failure anywhere rolls back.
 * What it reads is found through indexes (schema 7: the rows linked to the
 * credential, the retired ones; the CKA_ID lookup column; the unfilled
 * rows), never by reading every record: the columns only say where to
 * look, the authenticated records decide (the select functions). A forged
 * column can therefore hide a record from a rollover (it is left as it is),
 * never make one act on a record it should not touch. */

struct item {
    int64_t id;
    int is_private;
    uint32_t version;
    struct ks_rec_state rs; /* rs.cred points into credbuf */
    unsigned char credbuf[KS_CRED_MAX];
    unsigned char *ser; /* serialised attributes, locked memory */
    size_t ser_len;
};

struct items {
    struct item *v;
    size_t n, cap;
};

static void
items_free(struct items *it)
{
    for (size_t i = 0; i < it->n; i++)
        ks_secure_free(it->v[i].ser);
    free(it->v);
    memset(it, 0, sizeof(*it));
}

static const ks_attr *
attr_find(const ks_attr *attrs, size_t n, uint64_t type)
{
    for (size_t i = 0; i < n; i++)
        if (attrs[i].type == type)
            return &attrs[i];
    return NULL;
}

static int
bytes_eq(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* Walk the candidate records of ST (bound; inside the caller's
 * transaction, logged in) and copy those SEL picks into OUT. Records
 * failing their check are skipped. ST is reset. */
static ks_rv
collect_inlock(ks_token *tok, sqlite3_stmt *st, ks_row_keep_fn sel, void *ctx, struct items *out)
{
    const unsigned char *ser;
    struct ks_rec_state rs;
    ks_object obj;
    size_t wipe, ser_len;
    ks_rv rv = KS_OK;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct item *it;

        rv = ks_row_decode_inlock(tok, st, &obj, &wipe, &ser, &ser_len, &rs);
        if (rv == KS_E_TAMPERED) {
            rv = KS_OK;
            continue;
        }
        if (rv != KS_OK)
            break;
        if (!sel(ctx, &obj, &rs)) {
            ks_wipe_scratch(tok, wipe);
            continue;
        }
        if (out->n == out->cap) {
            size_t cap = out->cap ? 2 * out->cap : 4;
            struct item *v = realloc(out->v, cap * sizeof(*v));

            if (v == NULL) {
                ks_wipe_scratch(tok, wipe);
                rv = KS_ERR(tok, KS_E_NOMEM, "out of memory");
                break;
            }
            out->v = v;
            out->cap = cap;
        }
        it = &out->v[out->n];
        memset(it, 0, sizeof(*it));
        it->ser = ks_secure_alloc(ser_len);
        if (it->ser == NULL) {
            ks_wipe_scratch(tok, wipe);
            rv = KS_ERR(tok, KS_E_NOMEM, "cannot allocate locked memory");
            break;
        }
        memcpy(it->ser, ser, ser_len);
        it->ser_len = ser_len;
        ks_wipe_scratch(tok, wipe);
        it->id = obj.id;
        it->is_private = obj.is_private;
        it->version = obj.version;
        it->rs = rs;
        if (rs.cred_len > 0)
            memcpy(it->credbuf, rs.cred, rs.cred_len);
        it->rs.cred = it->credbuf;
        out->n++;
    }
    if (rv == KS_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        rv = KS_SQLERR(tok, rc, "reading objects");
    ks_stmt_done(st);
    return rv;
}

/* Attribute TYPE of item IT (parsed into tok->attrs): pointer into IT->ser. */
static const ks_attr *
item_attr_inlock(ks_token *tok, const struct item *it, uint64_t type, size_t *nattrs)
{
    size_t n = 0;

    if (ks_attrs_parse_inlock(tok, it->ser, it->ser_len, &n) != 0)
        return NULL;
    if (nattrs != NULL)
        *nattrs = n;
    return attr_find(tok->attrs, n, type);
}

/* Copy ATTRS (N) into a new array with SET (NSET) replacing or adding
 * attributes of the same types; *OUT malloc'd, *OUT_N its length. */
static ks_rv
attrs_with(ks_token *tok, const ks_attr *attrs, size_t n, const ks_attr *set, size_t nset,
           ks_attr **out, size_t *out_n)
{
    ks_attr *v = malloc((n + nset) * sizeof(*v) + 1);
    size_t k = 0;

    if (v == NULL)
        return KS_ERR(tok, KS_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (attr_find(set, nset, attrs[i].type) == NULL)
            v[k++] = attrs[i];
    for (size_t i = 0; i < nset; i++)
        v[k++] = set[i];
    *out = v;
    *out_n = k;
    return KS_OK;
}

/* Write ATTRS as the next version of IT with state RS (in the transaction). */
static ks_rv
write_attrs_inlock(ks_token *tok, int64_t id, int is_private, uint32_t ver,
                   const struct ks_rec_state *rs, const ks_attr *attrs, size_t n)
{
    unsigned char *buf;
    size_t len;
    ks_rv rv;

    if (ks_attrs_check(attrs, n, &len) != KS_OK)
        return KS_ERR(tok, KS_E_ARGS, "bad attribute list");
    buf = ks_secure_alloc(len);
    if (buf == NULL)
        return KS_ERR(tok, KS_E_NOMEM, "cannot allocate locked memory");
    ks_attrs_serialise(attrs, n, buf, len);
    rv = ks_record_write_inlock(tok, id, is_private, ver, rs, buf, len);
    ks_secure_free(buf);
    return rv;
}

/* Rewrite item IT as its next version with state RS; ID and LABEL (either
 * may be NULL) replace those attributes. */
static ks_rv
item_rewrite_inlock(ks_token *tok, const struct item *it, const struct ks_rec_state *rs,
                    const ks_attr *id, const ks_attr *label)
{
    ks_attr set[2], *v = NULL;
    size_t nset = 0, n = 0, nv = 0;
    ks_rv rv;

    if (it->version >= UINT32_MAX)
        return KS_ERR(tok, KS_E_CORRUPT, "object %" PRId64 ": version out of range", it->id);
    if (id == NULL && label == NULL)
        return ks_record_write_inlock(tok, it->id, it->is_private, it->version + 1, rs, it->ser,
                                      it->ser_len);
    if (id != NULL)
        set[nset++] = *id;
    if (label != NULL)
        set[nset++] = *label;
    if (ks_attrs_parse_inlock(tok, it->ser, it->ser_len, &n) != 0)
        return KS_ERR(tok, KS_E_TAMPERED, "object %" PRId64 ": malformed attributes", it->id);
    rv = attrs_with(tok, tok->attrs, n, set, nset, &v, &nv);
    if (rv != KS_OK)
        return rv;
    rv = write_attrs_inlock(tok, it->id, it->is_private, it->version + 1, rs, v, nv);
    free(v);
    return rv;
}

/* Start a write transaction with a current TMK. */
static ks_rv
rollover_begin_inlock(ks_token *tok)
{
    ks_rv rv;

    if (tok->keys == NULL)
        return KS_ERR(tok, KS_E_NOT_LOGGED_IN, "rollover needs a login");
    rv = ks_begin_inlock(tok, 1);
    if (rv != KS_OK)
        return rv;
    rv = ks_tmk_current_inlock(tok);
    if (rv != KS_OK)
        ks_rollback_inlock(tok);
    return rv;
}

static ks_rv
rollover_end_inlock(ks_token *tok, ks_rv rv)
{
    if (rv == KS_OK)
        return ks_commit_inlock(tok);
    ks_rollback_inlock(tok);
    return rv;
}

struct cred_sel {
    const unsigned char *cred;
    size_t len;
};

static int
linked(const struct ks_rec_state *rs, const struct cred_sel *c)
{
    return bytes_eq(rs->cred, rs->cred_len, c->cred, c->len);
}

/* Commit: the credential's active objects (by CKA_ID) and its pending ones. */
static int
sel_commit(void *ctx, const ks_object *o, const struct ks_rec_state *rs)
{
    const struct cred_sel *c = ctx;
    const ks_attr *id;

    if (rs->state == KS_PENDING)
        return linked(rs, c);
    if (rs->state != KS_ACTIVE)
        return 0;
    id = attr_find(o->attrs, o->nattrs, KS_ATTR_ID);
    return id != NULL && bytes_eq(id->value, id->len, c->cred, c->len);
}

/* The label of an object about to be retired (ACTIVE in IT), copied into
 * *LABEL (value malloc'd; len 0 and value NULL if there is none): one of the
 * class CLS (CLS_LEN bytes; HAS_CLS 0 if the class is unknown) if any, else
 * any. A copy, since the next parse reuses tok->attrs. */
static ks_rv
retired_label_inlock(ks_token *tok, const struct items *it, int has_cls, const unsigned char *cls,
                     size_t cls_len, ks_attr *label)
{
    const ks_attr *lab = NULL;

    *label = (ks_attr){KS_ATTR_LABEL, 0, NULL};
    for (int pass = 0; pass < 2 && lab == NULL; pass++)
        for (size_t j = 0; j < it->n && lab == NULL; j++) {
            const ks_attr *oc;

            if (it->v[j].rs.state != KS_ACTIVE)
                continue;
            oc = item_attr_inlock(tok, &it->v[j], KS_ATTR_CLASS, NULL);
            if (pass == 0 &&
                (oc == NULL || !has_cls || !bytes_eq(oc->value, oc->len, cls, cls_len)))
                continue;
            lab = item_attr_inlock(tok, &it->v[j], KS_ATTR_LABEL, NULL);
        }
    if (lab == NULL)
        return KS_OK;
    label->value = malloc(lab->len + 1);
    if (label->value == NULL)
        return KS_ERR(tok, KS_E_NOMEM, "out of memory");
    memcpy(label->value, lab->value, lab->len);
    label->len = lab->len;
    return KS_OK;
}

/* Activate the pending objects of IT under the credential's id ID_ATTR and
 * the label of a retired object of the same class. */
static ks_rv
activate_pending_inlock(ks_token *tok, const struct items *it, const struct ks_rec_state *activated,
                        const ks_attr *id_attr)
{
    ks_rv rv = KS_OK;

    for (size_t i = 0; rv == KS_OK && i < it->n; i++) {
        const ks_attr *cls;
        unsigned char clsbuf[16];
        size_t clslen = 0;
        ks_attr label;

        if (it->v[i].rs.state != KS_PENDING)
            continue;
        cls = item_attr_inlock(tok, &it->v[i], KS_ATTR_CLASS, NULL);
        if (cls != NULL && cls->len <= sizeof(clsbuf)) {
            memcpy(clsbuf, cls->value, cls->len);
            clslen = cls->len;
        }
        rv = retired_label_inlock(tok, it, cls != NULL, clsbuf, clslen, &label);
        if (rv != KS_OK)
            break;
        rv = item_rewrite_inlock(tok, &it->v[i], activated, id_attr,
                                 label.value != NULL ? &label : NULL);
        free(label.value);
    }
    return rv;
}

/* Store the certificate CERT_ATTRS, active, under the credential's id and
 * the label of a retired certificate; its object id into *CERT_ID. */
static ks_rv
store_cert_inlock(ks_token *tok, const struct items *it, const struct ks_rec_state *activated,
                  const ks_attr *id_attr, const ks_attr *cert_attrs, size_t n_cert,
                  int64_t *cert_id)
{
    const ks_attr *cc = attr_find(cert_attrs, n_cert, KS_ATTR_CLASS);
    ks_attr set[2], label, *cv = NULL;
    size_t nset = 0, ncv = 0;
    sqlite3_stmt *st;
    ks_rv rv;

    rv = retired_label_inlock(tok, it, cc != NULL, cc != NULL ? cc->value : NULL,
                              cc != NULL ? cc->len : 0, &label);
    if (rv != KS_OK)
        return rv;
    set[nset++] = *id_attr;
    if (label.value != NULL)
        set[nset++] = label;
    rv = attrs_with(tok, cert_attrs, n_cert, set, nset, &cv, &ncv);
    if (rv == KS_OK) {
        st = ks_stmt_inlock(tok, ST_OBJ_INSERT);
        sqlite3_bind_int(st, 1, 0);
        rv = ks_step_done_inlock(tok, st, "creating an object");
    }
    if (rv == KS_OK) {
        *cert_id = sqlite3_last_insert_rowid(tok->db);
        rv = write_attrs_inlock(tok, *cert_id, 0, 1, activated, cv, ncv);
    }
    free(cv);
    free(label.value);
    return rv;
}

/* The statement reading a commit's candidates for credential CRED, bound
 * (H and HP hold the CKA_ID lookup hashes while it runs). */
static sqlite3_stmt *
commit_candidates_inlock(ks_token *tok, const unsigned char *cred, size_t cred_len,
                         unsigned char h[KS_LOOKUP_HASH_LEN], unsigned char hp[KS_LOOKUP_HASH_LEN])
{
    sqlite3_stmt *st = ks_stmt_inlock(tok, ST_OBJ_ROLL_COMMIT);

    sqlite3_bind_blob(st, 1, cred, (int)cred_len, SQLITE_STATIC);
    ks_lookup_bind_value_inlock(tok, st, 2, KS_LK_ID, cred, cred_len, h, hp);
    return st;
}

/* The statement reading the rows linked to credential CRED, bound. */
static sqlite3_stmt *
linked_rows_inlock(ks_token *tok, const unsigned char *cred, size_t cred_len)
{
    sqlite3_stmt *st = ks_stmt_inlock(tok, ST_OBJ_BY_CRED);

    sqlite3_bind_blob(st, 1, cred, (int)cred_len, SQLITE_STATIC);
    return st;
}

ks_rv
ks_rollover_commit(ks_token *tok, const unsigned char *cred, size_t cred_len,
                   const ks_attr *cert_attrs, size_t n_cert, int64_t now, int64_t *out_cert_id)
{
    struct cred_sel c = {cred, cred_len};
    struct items it = {0};
    struct ks_rec_state retired = {KS_RETIRED, now, cred, cred_len};
    struct ks_rec_state activated = {KS_ACTIVE, 0, cred, cred_len};
    ks_attr id_attr = {KS_ATTR_ID, cred_len, (unsigned char *)cred};
    unsigned char h[KS_LOOKUP_HASH_LEN], hp[KS_LOOKUP_HASH_LEN];
    size_t npending = 0, dummy;
    int64_t cert_id = 0;
    ks_rv rv;

    if (out_cert_id != NULL)
        *out_cert_id = 0;
    if (tok == NULL || cred == NULL || cred_len == 0 || cred_len > KS_CRED_MAX || now <= 0 ||
        (n_cert > 0 && cert_attrs == NULL) || n_cert == 0 ||
        ks_attrs_check(cert_attrs, n_cert, &dummy) != KS_OK)
        return KS_E_ARGS;
    ks_lock(tok);
    rv = rollover_begin_inlock(tok);
    if (rv != KS_OK)
        goto out;
    rv = collect_inlock(tok, commit_candidates_inlock(tok, cred, cred_len, h, hp), sel_commit, &c,
                        &it);
    sodium_memzero(hp, sizeof(hp));
    for (size_t i = 0; rv == KS_OK && i < it.n; i++)
        npending += it.v[i].rs.state == KS_PENDING;
    if (rv == KS_OK && npending == 0)
        rv = KS_ERR(tok, KS_E_NOT_FOUND, "no pending object for this credential");
    /* Retire the old objects first (their labels are read from their own
     * copies, which the rewrites below do not touch). */
    for (size_t i = 0; rv == KS_OK && i < it.n; i++)
        if (it.v[i].rs.state == KS_ACTIVE)
            rv = item_rewrite_inlock(tok, &it.v[i], &retired, NULL, NULL);
    if (rv == KS_OK)
        rv = activate_pending_inlock(tok, &it, &activated, &id_attr);
    if (rv == KS_OK)
        rv = store_cert_inlock(tok, &it, &activated, &id_attr, cert_attrs, n_cert, &cert_id);
    rv = rollover_end_inlock(tok, rv);
    if (rv == KS_OK && out_cert_id != NULL)
        *out_cert_id = cert_id;
out:
    items_free(&it);
    ks_unlock(tok);
    (void)dummy;
    return rv;
}

static int
sel_linked(void *ctx, const ks_object *o, const struct ks_rec_state *rs)
{
    (void)o;
    return rs->state != KS_PENDING && linked(rs, ctx);
}

ks_rv
ks_rollover_rollback(ks_token *tok, const unsigned char *cred, size_t cred_len)
{
    struct cred_sel c = {cred, cred_len};
    struct items it = {0};
    struct ks_rec_state restored = {KS_ACTIVE, 0, NULL, 0};
    int64_t latest = 0;
    size_t nactive = 0;
    ks_rv rv;

    if (tok == NULL || cred == NULL || cred_len == 0 || cred_len > KS_CRED_MAX)
        return KS_E_ARGS;
    ks_lock(tok);
    rv = rollover_begin_inlock(tok);
    if (rv != KS_OK)
        goto out;
    rv = collect_inlock(tok, linked_rows_inlock(tok, cred, cred_len), sel_linked, &c, &it);
    for (size_t i = 0; rv == KS_OK && i < it.n; i++) {
        if (it.v[i].rs.state == KS_ACTIVE)
            nactive++;
        else if (it.v[i].rs.retired_at > latest)
            latest = it.v[i].rs.retired_at;
    }
    if (rv == KS_OK && (nactive == 0 || latest == 0))
        rv = KS_ERR(tok, KS_E_NOT_FOUND,
                    "no committed rollover with retained old objects for this credential");
    for (size_t i = 0; rv == KS_OK && i < it.n; i++) {
        if (it.v[i].rs.state == KS_ACTIVE)
            rv = ks_obj_delete_inlock(tok, it.v[i].id);
        else if (it.v[i].rs.retired_at == latest)
            rv = item_rewrite_inlock(tok, &it.v[i], &restored, NULL, NULL);
    }
    rv = rollover_end_inlock(tok, rv);
out:
    items_free(&it);
    ks_unlock(tok);
    return rv;
}

static int
sel_pending(void *ctx, const ks_object *o, const struct ks_rec_state *rs)
{
    (void)o;
    return rs->state == KS_PENDING && linked(rs, ctx);
}

/* Delete, in one write transaction, every candidate of statement WHICH
 * (with ?1 = KEY, KEY_LEN bytes, or, when KEY is NULL, the integer NUM)
 * that SEL picks; how many in *N (may be NULL). Needs the handle's mutex.
 * secure_delete overwrites the freed cells and pages on commit. */
static ks_rv
delete_selected_inlock(ks_token *tok, enum ks_stmt which, const unsigned char *key, size_t key_len,
                       int64_t num, ks_row_keep_fn sel, void *ctx, unsigned *n)
{
    struct items it = {0};
    ks_rv rv = rollover_begin_inlock(tok);
    sqlite3_stmt *st;

    if (rv != KS_OK)
        return rv;
    st = ks_stmt_inlock(tok, which);
    if (key != NULL)
        sqlite3_bind_blob(st, 1, key, (int)key_len, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, num);
    rv = collect_inlock(tok, st, sel, ctx, &it);
    for (size_t i = 0; rv == KS_OK && i < it.n; i++)
        rv = ks_obj_delete_inlock(tok, it.v[i].id);
    rv = rollover_end_inlock(tok, rv);
    if (rv == KS_OK && n != NULL)
        *n = (unsigned)it.n;
    items_free(&it);
    return rv;
}

ks_rv
ks_rollover_discard(ks_token *tok, const unsigned char *cred, size_t cred_len, unsigned *n)
{
    struct cred_sel c = {cred, cred_len};
    ks_rv rv;

    if (n != NULL)
        *n = 0;
    if (tok == NULL || cred == NULL || cred_len == 0 || cred_len > KS_CRED_MAX)
        return KS_E_ARGS;
    ks_lock(tok);
    rv = delete_selected_inlock(tok, ST_OBJ_BY_CRED, cred, cred_len, 0, sel_pending, &c, n);
    ks_unlock(tok);
    return rv;
}

ks_rv
ks_find_pending(ks_token *tok, const unsigned char *cred, size_t cred_len, ks_object_cb cb,
                void *ctx, unsigned *tampered)
{
    struct cred_sel c = {cred, cred_len};
    sqlite3_stmt *st;
    unsigned bad = 0;
    ks_rv rv;

    if (tampered != NULL)
        *tampered = 0;
    if (tok == NULL || cb == NULL || cred == NULL || cred_len == 0 || cred_len > KS_CRED_MAX)
        return KS_E_ARGS;
    ks_lock(tok);
    st = linked_rows_inlock(tok, cred, cred_len); /* one statement: one read snapshot */
    rv = ks_rows_each_inlock(tok, st, sel_pending, &c, cb, ctx, &bad, "reading pending objects");
    ks_stmt_done(st);
    ks_unlock(tok);
    if (tampered != NULL)
        *tampered = bad;
    return rv;
}

struct purge_sel {
    int64_t limit; /* retired at or before this */
};

static int
sel_purge(void *ctx, const ks_object *o, const struct ks_rec_state *rs)
{
    const struct purge_sel *p = ctx;

    (void)o;
    return rs->state == KS_RETIRED && rs->retired_at <= p->limit;
}

/* Nothing to purge (the common case, checked at every login): one read of
 * the objects_retired index, no write transaction and no record decrypted.
 * The state columns only say where to look; what is purged is still
 * decided from authenticated records (collect_inlock). */
static int
nothing_to_purge_inlock(ks_token *tok, int64_t limit)
{
    sqlite3_stmt *st;
    int rc, none = 0;

    if (tok->keys == NULL || ks_begin_inlock(tok, 0) != KS_OK)
        return 0;
    if (ks_tmk_current_inlock(tok) == KS_OK) {
        st = ks_stmt_inlock(tok, ST_OBJ_ANY_PURGE);
        sqlite3_bind_int64(st, 1, limit);
        rc = sqlite3_step(st);
        none = rc == SQLITE_DONE;
        ks_stmt_done(st);
    }
    if (ks_commit_inlock(tok) != KS_OK)
        none = 0;
    return none;
}

ks_rv
ks_purge_retired(ks_token *tok, int64_t now, int64_t grace, unsigned *n)
{
    struct purge_sel p;
    ks_rv rv = KS_OK;

    if (n != NULL)
        *n = 0;
    if (tok == NULL || now < 0 || grace < 0)
        return KS_E_ARGS;
    p.limit = now - grace;
    ks_lock(tok);
    if (!nothing_to_purge_inlock(tok, p.limit))
        rv = delete_selected_inlock(tok, ST_OBJ_PURGE, NULL, 0, p.limit, sel_purge, &p, n);
    ks_unlock(tok);
    return rv;
}

ks_rv
ks_object_state(ks_token *tok, int64_t id, ks_state *state, int64_t *retired_at)
{
    sqlite3_stmt *st;
    struct ks_rec_state rs;
    ks_rv rv = KS_OK;
    int rc;

    if (tok == NULL || state == NULL)
        return KS_E_ARGS;
    ks_lock(tok);
    st = ks_stmt_inlock(tok, ST_OBJ_HEAD);
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        rv = KS_ERR(tok, KS_E_NOT_FOUND, "no object %" PRId64, id);
    else if (rc != SQLITE_ROW)
        rv = KS_SQLERR(tok, rc, "reading an object");
    else if (ks_row_state(st, 2, &rs) != 0)
        rv = KS_ERR(tok, KS_E_CORRUPT, "object %" PRId64 ": malformed state", id);
    else {
        *state = rs.state;
        if (retired_at != NULL)
            *retired_at = rs.retired_at;
    }
    ks_stmt_done(st);
    ks_unlock(tok);
    return rv;
}
