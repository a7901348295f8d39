/*
 * rollover.c — the rollover entry points (each takes evertoken's native
 * rollover, rollover_native.c, when the token offers it) and the rollover
 * by standard calls (docs/enrollment.md "Rollover on a standard token"):
 * objects of a credential share CKA_ID = ID and CKA_LABEL = L. A renewal
 * creates its objects as pending (CKA_ID = ID||FF, label "L (pending)"),
 * then, once the pending certificate is stored, enr_token_repair() moves them
 * under ID, deletes the old certificate, retires (or deletes) the old pair
 * and finally relabels the new objects L, the certificate last. Every step
 * is one PKCS#11 call and the token contents alone say which steps are done,
 * so re-running repair after a crash anywhere finishes the job; at every
 * point the token holds at least one complete, working credential.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/x509.h>

#include "token_int.h"

enr_rc
enr_token_pending_key(enr_token *t, const enr_profile *p, EVP_PKEY **pkey)
{
    if (t->et != NULL) {
        *pkey = NULL;
        return tok_native_pending_key(t, p, pkey);
    }
    return tok_key_where(t, p, 1, pkey);
}

enr_rc
enr_token_discard_pending(enr_token *t, const enr_profile *p)
{
    objlist l;
    char *pl = tok_pending_label(p);
    enr_rc rc;

    if (t->et != NULL) {
        free(pl);
        return tok_native_discard(t, p);
    }
    rc = tok_list_objects(t, -1, &l);
    if (rc != ENR_OK || pl == NULL) {
        free(pl);
        return rc != ENR_OK ? rc : ENR_E_FAIL;
    }
    for (size_t i = 0; i < l.n && rc == ENR_OK; i++)
        if (!strcmp(l.v[i].label, pl) && tok_id_is(&l.v[i], p, TAG_PENDING))
            rc = tok_destroy(t, l.v[i].h, "a pending object");
    tok_objlist_free(&l);
    free(pl);
    return rc;
}

/* ---- The rollover ------------------------------------------------------- */

/* "L (retired EPOCH)": an old key of this credential (WHEN: EPOCH). */
static int
parse_retired_label(const char *label, const enr_profile *p, long long *when)
{
    size_t ll = strlen(p->label);
    char tail;

    return strncmp(label, p->label, ll) == 0 &&
           sscanf(label + ll, " (retired %lld%c", when, &tail) == 2 && tail == ')';
}

static int
is_retired_label(const char *label, const enr_profile *p)
{
    long long w;

    return parse_retired_label(label, p, &w);
}

enr_rc
enr_token_repair(enr_token *t, const enr_profile *p, enr_state *st, time_t now)
{
    objlist l;
    char *pl = tok_pending_label(p), *rl = NULL;
    obj *pcert = NULL, *ppriv = NULL, *ppub = NULL;
    unsigned char rid[66];
    enr_rc rc;

    (void)st;
    rc = tok_list_objects(t, -1, &l);
    if (rc != ENR_OK || pl == NULL) {
        free(pl);
        return rc != ENR_OK ? rc : ENR_E_FAIL;
    }
    for (size_t i = 0; i < l.n; i++) {
        obj *o = &l.v[i];
        if (strcmp(o->label, pl) != 0 || !(tok_id_is(o, p, 0) || tok_id_is(o, p, TAG_PENDING)))
            continue;
        if (o->cls == CKO_CERTIFICATE)
            pcert = o;
        else if (o->cls == CKO_PRIVATE_KEY)
            ppriv = o;
        else if (o->cls == CKO_PUBLIC_KEY)
            ppub = o;
    }
    /* Without a pending certificate nothing may move: pending keys wait for
     * the CA (PENDING) or for the next attempt, which reuses them. */
    if (pcert == NULL)
        goto done;
    enr_info("profile %s: completing the credential switch on token \"%s\"", p->name, t->label);
    /* 1. The new objects take the credential's CKA_ID (certificate last). */
    obj *order[3] = {ppriv, ppub, pcert};
    for (int i = 0; i < 3 && rc == ENR_OK; i++)
        if (order[i] != NULL && tok_id_is(order[i], p, TAG_PENDING))
            rc = tok_set_id(t, order[i]->h, p->id, p->id_len, "move a new object under the ID");
    /* 2. The old certificate goes first (applications stop pairing it)… */
    for (size_t i = 0; i < l.n && rc == ENR_OK; i++)
        if (l.v[i].cls == CKO_CERTIFICATE && tok_id_is(&l.v[i], p, 0) && &l.v[i] != pcert &&
            !strcmp(l.v[i].label, p->label))
            rc = tok_destroy(t, l.v[i].h, "delete the old certificate");
    /* 3. …then the old pair, only while the new pair is complete and still
     * pending: afterwards keys labelled L under ID are the new ones. */
    if (ppriv != NULL && ppub != NULL) {
        memcpy(rid, p->id, p->id_len);
        rid[p->id_len] = TAG_RETIRED;
        rl = enr_aprintf(RETIRED_FMT, p->label, (long long)now);
        for (int pass = 0; pass < 2 && rc == ENR_OK && rl != NULL; pass++) {
            CK_OBJECT_CLASS want = pass == 0 ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY;
            for (size_t i = 0; i < l.n && rc == ENR_OK; i++) {
                obj *o = &l.v[i];
                int labelled = is_retired_label(o->label, p);
                if (o->cls != want || !tok_id_is(o, p, 0) ||
                    (strcmp(o->label, p->label) != 0 && !labelled))
                    continue;
                if (p->grace_period > 0) {
                    /* Retired: first labelled (so a crash in between still
                     * tells it from the new key), then moved out of the
                     * credential's ID; destroyed after the grace period. */
                    if (!labelled)
                        rc = tok_set_label(t, o->h, rl, "label an old key retired");
                    if (rc == ENR_OK)
                        rc = tok_set_id(t, o->h, rid, p->id_len + 1,
                                        "move an old key out of the ID");
                } else {
                    rc = tok_destroy(t, o->h, "delete an old key");
                }
            }
        }
    }
    /* 4. Labels: private key, public key, certificate last. */
    for (int i = 0; i < 3 && rc == ENR_OK; i++)
        if (order[i] != NULL)
            rc = tok_set_label(t, order[i]->h, p->label, "relabel a new object");
    if (rc == ENR_OK)
        enr_info("profile %s: token \"%s\" holds the new credential \"%s\"", p->name, t->label,
                 p->label);
done:
    tok_objlist_free(&l);
    free(pl);
    free(rl);
    return rc;
}

enr_rc
enr_token_expire_retired(enr_token *t, const enr_profile *p, time_t now)
{
    objlist l;
    enr_rc rc;

    if (t->et != NULL) {
        rc = tok_native_grace(t, p);
        if (rc != ENR_OK)
            return rc;
    }
    /* Objects an earlier rollover by standard calls retired (also on an
     * evertoken token renewed before the helper used its native path). */
    rc = tok_list_objects(t, -1, &l);
    if (rc != ENR_OK)
        return rc;
    for (size_t i = 0; i < l.n && rc == ENR_OK; i++) {
        obj *o = &l.v[i];
        long long when;
        if (!tok_id_is(o, p, TAG_RETIRED) || !parse_retired_label(o->label, p, &when))
            continue;
        if (now >= when + p->grace_period)
            rc = tok_destroy(t, o->h, "destroy a retired key after its grace period");
    }
    tok_objlist_free(&l);
    return rc;
}

enr_rc
enr_token_commit(enr_token *t, const enr_profile *p, X509 *cert, int new_key, time_t now)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    unsigned char pid[66], *der = NULL, *subj = NULL, *iss = NULL, *ser = NULL;
    int dl, sl, il, rl;
    char *pl = tok_pending_label(p);
    CK_OBJECT_HANDLE h;
    CK_RV rv;
    enr_rc rc = ENR_E_FAIL;

    memcpy(pid, p->id, p->id_len);
    pid[p->id_len] = TAG_PENDING;
    dl = i2d_X509(cert, &der);
    sl = i2d_X509_NAME(X509_get_subject_name(cert), &subj);
    il = i2d_X509_NAME(X509_get_issuer_name(cert), &iss);
    rl = i2d_ASN1_INTEGER(X509_get_serialNumber(cert), &ser);
    if (pl == NULL || dl <= 0 || sl <= 0 || il <= 0 || rl <= 0)
        goto done;
    {
        CK_ATTRIBUTE tmpl[] = {
            {CKA_CLASS, &cls, sizeof(cls)},         {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
            {CKA_TOKEN, &yes, sizeof(yes)},         {CKA_PRIVATE, &no, sizeof(no)},
            {CKA_ID, pid, p->id_len + 1},           {CKA_LABEL, pl, strlen(pl)},
            {CKA_SUBJECT, subj, (CK_ULONG)sl},      {CKA_ISSUER, iss, (CK_ULONG)il},
            {CKA_SERIAL_NUMBER, ser, (CK_ULONG)rl}, {CKA_VALUE, der, (CK_ULONG)dl},
        };
        if (t->et != NULL && new_key) {
            rc = tok_native_commit(t, p, tmpl, sizeof(tmpl) / sizeof(tmpl[0]));
            goto done;
        }
        rv = t->f->C_CreateObject(t->sh, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
        if (rv != CKR_OK) {
            enr_err("token \"%s\": cannot store the new certificate: %s", t->label, tok_ckr(rv));
            rc = ENR_E_TOKEN;
            goto done;
        }
    }
    tok_step_done(t, "store the new certificate (pending)");
    rc = enr_token_repair(t, p, NULL, now);
done:
    OPENSSL_free(der);
    OPENSSL_free(subj);
    OPENSSL_free(iss);
    OPENSSL_free(ser);
    free(pl);
    return rc;
}
