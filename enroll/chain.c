/*
 * chain.c — the CA chain of a credential.
 *
 * Every protocol returns, besides the issued certificate, the certificates
 * the CA sent with it (SCEP: CertRep and GetCACert; EST: the PKCS#7 and
 * /cacerts; CMP: caPubs and extraCerts). enr_chain_build() keeps of them the
 * verified path from the leaf up to, not including, the profile's trust
 * anchor. The chain is staged (chain.next.pem) before the token changes and
 * applied after the leaf is stored by enr_chain_sync(), which every check
 * runs again, so a crash between the two is healed at the next check:
 *
 *   - each chain certificate is stored in the token as a CA certificate
 *     (CKA_CERTIFICATE_CATEGORY 2 = authority, CKA_LABEL its subject's CN,
 *     CKA_ID the SHA-1 of its public key, the rule `evertoken import` uses),
 *     unless the token holds it already (same CKA_VALUE);
 *   - STATE/certs/PROFILE/{cert,chain,fullchain}.pem are written (0600);
 *   - certificates of the previous chain.pem that are not in the new one are
 *     removed from the token once no other certificate there was issued by
 *     them (another credential may still need an old intermediate).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "chain.h"

#define CAT_AUTHORITY 2

/* One attempt: LEAF verified at NOW against ANCHORS, with EXTRA and POOL
 * as intermediates; *PATH the chain (leaf first), else *ERR the reason. */
static int
verify_path(X509 *leaf, STACK_OF(X509) * anchors, STACK_OF(X509) * extra, STACK_OF(X509) * pool,
            time_t now, STACK_OF(X509) * *path, int *err)
{
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = 0;

    *path = NULL;
    *err = X509_V_ERR_OUT_OF_MEM;
    if (untrusted == NULL || store == NULL || ctx == NULL)
        goto done;
    for (int i = 0; i < sk_X509_num(anchors); i++)
        X509_STORE_add_cert(store, sk_X509_value(anchors, i));
    for (int i = 0; i < sk_X509_num(extra); i++)
        sk_X509_push(untrusted, sk_X509_value(extra, i));
    for (int i = 0; i < sk_X509_num(pool); i++)
        sk_X509_push(untrusted, sk_X509_value(pool, i));
    if (!X509_STORE_CTX_init(ctx, store, leaf, untrusted))
        goto done;
    X509_STORE_CTX_set_time(ctx, 0, now);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY);
    if (X509_verify_cert(ctx) == 1)
        *path = X509_STORE_CTX_get1_chain(ctx);
    *err = X509_STORE_CTX_get_error(ctx);
    ok = *path != NULL;
done:
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_free(untrusted);
    return ok;
}

enr_rc
enr_chain_build(enr_state *st, const enr_profile *p, X509 *leaf, STACK_OF(X509) * extra,
                STACK_OF(X509) * pool, time_t now, STACK_OF(X509) * *out)
{
    STACK_OF(X509) *anchors = NULL, *path = NULL;
    int err = 0, n;
    enr_rc rc;

    *out = NULL;
    rc = enr_load_anchors(p, &anchors);
    if (rc != ENR_OK)
        return rc;
    n = sk_X509_num(anchors);
    if (st != NULL)
        enr_anchors_add_learned(st, p, anchors);
    /* With the learned anchors, then (when some were added: a learned one
     * may not be valid yet while the old path still is) the file's alone. */
    if (!verify_path(leaf, anchors, extra, pool, now, &path, &err) && sk_X509_num(anchors) > n) {
        int err2;
        while (sk_X509_num(anchors) > n)
            X509_free(sk_X509_pop(anchors));
        verify_path(leaf, anchors, extra, pool, now, &path, &err2);
    }
    sk_X509_pop_free(anchors, X509_free);
    if (path == NULL) {
        char name[256];
        X509_NAME_oneline(X509_get_subject_name(leaf), name, sizeof(name));
        enr_err("the CA chain of %s does not verify against the profile's anchors (%s): %s", name,
                p->anchors, X509_verify_cert_error_string(err));
        return ENR_E_REJECTED;
    }
    /* [0] is the leaf, the last one the anchor: keep what lies between. */
    X509_free(sk_X509_shift(path));
    if (sk_X509_num(path) > 0)
        X509_free(sk_X509_pop(path));
    *out = path;
    return ENR_OK;
}

/* ---- Files -------------------------------------------------------------- */

char *
enr_chain_path(enr_state *st, const enr_profile *p, const char *name)
{
    return enr_aprintf("%s/certs/%s/%s", enr_state_dir(st), p->name, name);
}

/* Certificates of a PEM file; NULL when it does not exist or holds none. */
static STACK_OF(X509) * read_pem(const char *path)
{
    STACK_OF(X509) *sk = NULL;
    BIO *b = access(path, F_OK) == 0 ? BIO_new_file(path, "r") : NULL;
    X509 *x;

    if (b == NULL)
        return NULL;
    sk = sk_X509_new_null();
    while (sk != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        sk_X509_push(sk, x);
    ERR_clear_error();
    BIO_free(b);
    return sk;
}

/* LEAF (may be NULL) then CHAIN as PEM into NAME of the profile (0600). */
static enr_rc
write_pem(enr_state *st, const enr_profile *p, const char *name, X509 *leaf, STACK_OF(X509) * chain)
{
    char *dir = enr_aprintf("%s/certs/%s", enr_state_dir(st), p->name);
    char *path = enr_chain_path(st, p, name), *data;
    BIO *b = BIO_new(BIO_s_mem());
    enr_rc rc = ENR_E_FAIL;
    long n;

    if (dir == NULL || path == NULL || b == NULL || enr_mkdir_private(dir) != 0)
        goto done;
    if (leaf != NULL && !PEM_write_bio_X509(b, leaf))
        goto done;
    for (int i = 0; i < sk_X509_num(chain); i++)
        if (!PEM_write_bio_X509(b, sk_X509_value(chain, i)))
            goto done;
    n = BIO_get_mem_data(b, &data);
    if (enr_write_file(path, n > 0 ? data : "", (size_t)n) != 0)
        goto done;
    rc = ENR_OK;
done:
    if (rc != ENR_OK)
        enr_err("profile %s: cannot write %s", p->name, path ? path : name);
    BIO_free(b);
    free(dir);
    free(path);
    return rc;
}

STACK_OF(X509) * enr_chain_known(enr_state *st, const enr_profile *p)
{
    char *path = enr_chain_path(st, p, "chain.pem");
    STACK_OF(X509) *sk = path != NULL ? read_pem(path) : NULL;

    free(path);
    return sk;
}

enr_rc
enr_chain_stage(enr_state *st, const enr_profile *p, STACK_OF(X509) * chain)
{
    return write_pem(st, p, "chain.next.pem", NULL, chain);
}

/* ---- Token -------------------------------------------------------------- */

typedef struct tcert {
    CK_OBJECT_HANDLE h;
    X509 *x;
    unsigned long category;
} tcert;

typedef struct tcerts {
    tcert *v;
    size_t n;
} tcerts;

static void
tcerts_free(tcerts *l)
{
    for (size_t i = 0; i < l->n; i++)
        X509_free(l->v[i].x);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static X509 *
read_value(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE h, unsigned long *cat)
{
    CK_ULONG c = 0;
    CK_ATTRIBUTE a[2] = {{CKA_VALUE, NULL, 0}, {CKA_CERTIFICATE_CATEGORY, &c, sizeof(c)}};
    const unsigned char *q;
    unsigned char *der;
    X509 *x = NULL;

    if (f->C_GetAttributeValue(sh, h, a, 1) != CKR_OK || a[0].ulValueLen == 0 ||
        a[0].ulValueLen == CK_UNAVAILABLE_INFORMATION || a[0].ulValueLen > (1u << 20))
        return NULL;
    der = malloc(a[0].ulValueLen);
    a[0].pValue = der;
    if (der != NULL && f->C_GetAttributeValue(sh, h, a, 1) == CKR_OK) {
        q = der;
        x = d2i_X509(NULL, &q, (long)a[0].ulValueLen);
    }
    free(der);
    *cat = f->C_GetAttributeValue(sh, h, &a[1], 1) == CKR_OK ? c : 0;
    return x;
}

/* Every X.509 certificate object the session sees. */
static enr_rc
list_certs(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE sh, tcerts *out)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_ATTRIBUTE tmpl = {CKA_CLASS, &cls, sizeof(cls)};
    CK_OBJECT_HANDLE hs[32];
    CK_ULONG n = 0;
    CK_RV rv;

    memset(out, 0, sizeof(*out));
    rv = f->C_FindObjectsInit(sh, &tmpl, 1);
    if (rv != CKR_OK) {
        enr_err("cannot list the token's certificates (C_FindObjectsInit: 0x%08lx)",
                (unsigned long)rv);
        return ENR_E_TOKEN;
    }
    while ((rv = f->C_FindObjects(sh, hs, 32, &n)) == CKR_OK && n > 0) {
        tcert *nv = realloc(out->v, (out->n + n) * sizeof(*nv));
        if (nv == NULL)
            break;
        out->v = nv;
        for (CK_ULONG i = 0; i < n; i++) {
            tcert *c = &out->v[out->n];
            c->h = hs[i];
            c->x = read_value(f, sh, hs[i], &c->category);
            if (c->x != NULL)
                out->n++;
        }
    }
    f->C_FindObjectsFinal(sh);
    ERR_clear_error();
    return rv == CKR_OK ? ENR_OK : ENR_E_TOKEN;
}

STACK_OF(X509) * enr_chain_token_certs(enr_token *t)
{
    CK_SESSION_HANDLE sh;
    CK_FUNCTION_LIST_PTR f = enr_token_p11(t, &sh);
    STACK_OF(X509) *sk = NULL;
    tcerts l;

    if (list_certs(f, sh, &l) != ENR_OK)
        return NULL;
    sk = sk_X509_new_null();
    for (size_t i = 0; sk != NULL && i < l.n; i++)
        if (sk_X509_push(sk, l.v[i].x) > 0)
            l.v[i].x = NULL;
    tcerts_free(&l);
    return sk;
}

static int
find_cert(const tcerts *l, X509 *x)
{
    for (size_t i = 0; i < l->n; i++)
        if (X509_cmp(l->v[i].x, x) == 0)
            return (int)i;
    return -1;
}

/* The label naming a CA certificate: its subject's CN, else the whole name. */
static void
ca_label(X509 *x, char *buf, size_t n)
{
    X509_NAME *name = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    const ASN1_STRING *s = i >= 0 ? X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)) : NULL;
    unsigned char *u = NULL;
    int len = s != NULL ? ASN1_STRING_to_UTF8(&u, s) : -1;

    if (len > 0)
        snprintf(buf, n, "%.*s", len, (char *)u);
    else
        X509_NAME_oneline(name, buf, (int)n);
    OPENSSL_free(u);
}

static enr_rc
store_ca(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE sh, X509 *x)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_ULONG cat = CAT_AUTHORITY;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    unsigned char *der = NULL, *subj = NULL, *iss = NULL, *ser = NULL, id[EVP_MAX_MD_SIZE];
    unsigned int idlen = 0;
    int dl = i2d_X509(x, &der), sl = i2d_X509_NAME(X509_get_subject_name(x), &subj);
    int il = i2d_X509_NAME(X509_get_issuer_name(x), &iss);
    int rl = i2d_ASN1_INTEGER(X509_get_serialNumber(x), &ser);
    char label[256];
    CK_OBJECT_HANDLE h;
    CK_RV rv = CKR_GENERAL_ERROR;

    ca_label(x, label, sizeof(label));
    if (dl > 0 && sl > 0 && il > 0 && rl > 0 && X509_pubkey_digest(x, EVP_sha1(), id, &idlen)) {
        CK_ATTRIBUTE tmpl[] = {
            {CKA_CLASS, &cls, sizeof(cls)},
            {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
            {CKA_TOKEN, &yes, sizeof(yes)},
            {CKA_PRIVATE, &no, sizeof(no)},
            {CKA_ID, id, idlen},
            {CKA_LABEL, label, strlen(label)},
            {CKA_SUBJECT, subj, (CK_ULONG)sl},
            {CKA_ISSUER, iss, (CK_ULONG)il},
            {CKA_SERIAL_NUMBER, ser, (CK_ULONG)rl},
            {CKA_VALUE, der, (CK_ULONG)dl},
            {CKA_CERTIFICATE_CATEGORY, &cat, sizeof(cat)},
        };
        rv = f->C_CreateObject(sh, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &h);
    }
    OPENSSL_free(der);
    OPENSSL_free(subj);
    OPENSSL_free(iss);
    OPENSSL_free(ser);
    if (rv != CKR_OK) {
        enr_err("cannot store the CA certificate \"%s\" in the token (C_CreateObject: 0x%08lx)",
                label, (unsigned long)rv);
        return ENR_E_TOKEN;
    }
    enr_info("stored the CA certificate \"%s\" in the token", label);
    return ENR_OK;
}

/* Does a kept CA certificate other than I also issue K (a re-issued
 * intermediate: same name and key, new certificate)? */
static int
other_issuer(const tcerts *l, const int *cand, size_t i, size_t k)
{
    for (size_t m = 0; m < l->n; m++)
        if (m != i && m != k && !cand[m] && l->v[m].category == CAT_AUTHORITY &&
            X509_check_issued(l->v[m].x, l->v[k].x) == X509_V_OK)
            return 1;
    return 0;
}

/*
 * Remove from the token the certificates of OLD that are not in NEW, as long
 * as no certificate left in the token was issued by them (checked until
 * nothing changes, so an old root goes only with its last intermediate).
 */
static void
prune(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE sh, STACK_OF(X509) * old, STACK_OF(X509) * new)
{
    tcerts l;
    size_t ncand = 0;
    int *cand, changed = 1;

    if (sk_X509_num(old) == 0 || list_certs(f, sh, &l) != ENR_OK)
        return;
    cand = calloc(l.n + 1, sizeof(*cand));
    for (size_t i = 0; cand != NULL && i < l.n; i++) {
        int in_old = 0, in_new = 0;
        for (int k = 0; k < sk_X509_num(old); k++)
            in_old |= X509_cmp(sk_X509_value(old, k), l.v[i].x) == 0;
        for (int k = 0; k < sk_X509_num(new); k++)
            in_new |= X509_cmp(sk_X509_value(new, k), l.v[i].x) == 0;
        cand[i] = in_old && !in_new && l.v[i].category == CAT_AUTHORITY;
        ncand += (size_t)cand[i];
    }
    /* A candidate still issuing a kept certificate is kept itself. */
    while (ncand > 0 && changed) {
        changed = 0;
        for (size_t i = 0; i < l.n; i++) {
            if (!cand[i])
                continue;
            for (size_t k = 0; k < l.n && cand[i]; k++)
                if (k != i && !cand[k] && X509_check_issued(l.v[k].x, l.v[k].x) != X509_V_OK &&
                    X509_check_issued(l.v[i].x, l.v[k].x) == X509_V_OK &&
                    !other_issuer(&l, cand, i, k)) { /* a self-signed K needs no issuer */
                    cand[i] = 0;
                    changed = 1;
                }
        }
    }
    for (size_t i = 0; cand != NULL && i < l.n; i++) {
        char label[256];
        if (!cand[i])
            continue;
        ca_label(l.v[i].x, label, sizeof(label));
        if (f->C_DestroyObject(sh, l.v[i].h) == CKR_OK)
            enr_info("removed the CA certificate \"%s\" of the previous chain from the token",
                     label);
        else
            enr_warn("cannot remove the old CA certificate \"%s\" from the token", label);
    }
    ERR_clear_error();
    free(cand);
    tcerts_free(&l);
}

/* Does CHAIN belong to LEAF (its first certificate issued LEAF)? An empty
 * chain belongs to any leaf (issued by the anchor itself). */
static int
chain_fits(STACK_OF(X509) * chain, X509 *leaf)
{
    return sk_X509_num(chain) == 0 || X509_check_issued(sk_X509_value(chain, 0), leaf) == X509_V_OK;
}

enr_rc
enr_chain_sync(enr_token *t, enr_state *st, const enr_profile *p, X509 *leaf)
{
    CK_SESSION_HANDLE sh;
    CK_FUNCTION_LIST_PTR f = enr_token_p11(t, &sh);
    char *next_path = enr_chain_path(st, p, "chain.next.pem");
    char *kept_path = enr_chain_path(st, p, "chain.pem");
    STACK_OF(X509) *next = next_path ? read_pem(next_path) : NULL;
    STACK_OF(X509) *kept = kept_path ? read_pem(kept_path) : NULL;
    STACK_OF(X509) *use = NULL;
    tcerts l;
    enr_rc rc = ENR_OK;

    memset(&l, 0, sizeof(l));
    if (next_path != NULL && access(next_path, F_OK) == 0 && next == NULL)
        next = sk_X509_new_null(); /* staged empty chain */
    if (next != NULL && chain_fits(next, leaf)) {
        use = next;
    } else if (next != NULL) {
        /* Staged for a certificate that never became the credential. */
        unlink(next_path);
    }
    if (use == NULL && kept != NULL && chain_fits(kept, leaf))
        use = kept;
    if (use == NULL)
        goto done; /* nothing known about this leaf's chain */
    rc = list_certs(f, sh, &l);
    for (int i = 0; rc == ENR_OK && i < sk_X509_num(use); i++)
        if (find_cert(&l, sk_X509_value(use, i)) < 0)
            rc = store_ca(f, sh, sk_X509_value(use, i));
    if (rc != ENR_OK)
        goto done;
    if (use == next || access(kept_path, F_OK) != 0) {
        rc = write_pem(st, p, "cert.pem", leaf, NULL);
        if (rc == ENR_OK)
            rc = write_pem(st, p, "chain.pem", NULL, use);
        if (rc == ENR_OK)
            rc = write_pem(st, p, "fullchain.pem", leaf, use);
        if (rc != ENR_OK)
            goto done;
    }
    if (use == next) {
        prune(f, sh, kept, next);
        unlink(next_path);
        enr_debug("profile %s: CA chain of %d certificate(s) stored", p->name, sk_X509_num(next));
    }
done:
    if (rc != ENR_OK)
        enr_warn("profile %s: the CA chain could not be stored; the next check tries again",
                 p->name);
    tcerts_free(&l);
    sk_X509_pop_free(next, X509_free);
    sk_X509_pop_free(kept, X509_free);
    free(next_path);
    free(kept_path);
    return rc;
}

/* ---- Anchors learned through a CA key rollover ------------------------- */

static int
in_stack(STACK_OF(X509) * sk, X509 *x)
{
    for (int i = 0; i < sk_X509_num(sk); i++)
        if (X509_cmp(sk_X509_value(sk, i), x) == 0)
            return 1;
    return 0;
}

void
enr_anchors_add_learned(enr_state *st, const enr_profile *p, STACK_OF(X509) * anchors)
{
    char *path = enr_chain_path(st, p, "anchors.learned.pem");
    STACK_OF(X509) *learned = path != NULL ? read_pem(path) : NULL;
    X509 *x;

    while ((x = sk_X509_shift(learned)) != NULL) {
        if (!in_stack(anchors, x) && sk_X509_push(anchors, x) > 0)
            continue;
        X509_free(x);
    }
    sk_X509_free(learned);
    free(path);
}

void
enr_anchors_learn(enr_state *st, const enr_profile *p, enr_token *t, STACK_OF(X509) * anchors)
{
    STACK_OF(X509) *file = NULL, *known = sk_X509_new_null(), *fresh = sk_X509_new_null();
    CK_SESSION_HANDLE sh;
    CK_FUNCTION_LIST_PTR f = enr_token_p11(t, &sh);
    tcerts l;

    memset(&l, 0, sizeof(l));
    if (known == NULL || fresh == NULL || enr_load_anchors(p, &file) != ENR_OK)
        goto done;
    enr_anchors_add_learned(st, p, known);
    for (int i = 0; i < sk_X509_num(anchors); i++) {
        X509 *x = sk_X509_value(anchors, i);
        if (X509_check_issued(x, x) != X509_V_OK || in_stack(file, x) || in_stack(known, x))
            continue; /* only new self-signed CA certificates */
        if (X509_check_ca(x) <= 0)
            continue;
        X509_up_ref(x);
        sk_X509_push(known, x);
        sk_X509_push(fresh, x);
    }
    if (sk_X509_num(fresh) == 0)
        goto done;
    if (write_pem(st, p, "anchors.learned.pem", NULL, known) != ENR_OK)
        goto done;
    if (list_certs(f, sh, &l) == ENR_OK)
        for (int i = 0; i < sk_X509_num(fresh); i++) {
            char name[256];
            X509_NAME_oneline(X509_get_subject_name(sk_X509_value(fresh, i)), name, sizeof(name));
            enr_info("profile %s: the CA's new certificate %s (accepted through the current "
                     "anchors) is trusted from now on",
                     p->name, name);
            if (find_cert(&l, sk_X509_value(fresh, i)) < 0)
                store_ca(f, sh, sk_X509_value(fresh, i));
        }
done:
    ERR_clear_error();
    tcerts_free(&l);
    sk_X509_pop_free(file, X509_free);
    sk_X509_pop_free(known, X509_free);
    sk_X509_pop_free(fresh, X509_free);
}
