/*
 * token_obj.c — the token's objects as enrollment sees them: listing with
 * class, CKA_ID and label; attributes changed and objects destroyed (each
 * one counted mutation); certificates and public keys read back (RSA from
 * the key object, EC from its public key object); token-backed EVP_PKEYs
 * through libp11; finding the credential; generating the new pair.
 */
#include <stdlib.h>
#include <string.h>

#include <libp11.h>
#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "p11key.h"
#include "token_int.h"

void
tok_objlist_free(objlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].label);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int
get_attr(enr_token *t, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, unsigned char **val,
         CK_ULONG *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};

    *val = NULL;
    *len = 0;
    if (t->f->C_GetAttributeValue(t->sh, h, &a, 1) != CKR_OK ||
        a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
        return -1;
    a.pValue = malloc(a.ulValueLen + 1);
    if (a.pValue == NULL)
        return -1;
    if (t->f->C_GetAttributeValue(t->sh, h, &a, 1) != CKR_OK) {
        free(a.pValue);
        return -1;
    }
    ((unsigned char *)a.pValue)[a.ulValueLen] = '\0';
    *val = a.pValue;
    *len = a.ulValueLen;
    return 0;
}

/* All objects of class CLS (or any class if CLS == -1). */
enr_rc
tok_list_objects(enr_token *t, long cls, objlist *out)
{
    CK_OBJECT_CLASS c = (CK_OBJECT_CLASS)cls;
    CK_ATTRIBUTE tmpl = {CKA_CLASS, &c, sizeof(c)};
    CK_OBJECT_HANDLE hs[64];
    CK_ULONG n;
    CK_RV rv;

    memset(out, 0, sizeof(*out));
    rv = t->f->C_FindObjectsInit(t->sh, cls < 0 ? NULL : &tmpl, cls < 0 ? 0 : 1);
    if (rv != CKR_OK) {
        enr_err("token \"%s\": C_FindObjectsInit: %s", t->label, tok_ckr(rv));
        return ENR_E_TOKEN;
    }
    for (;;) {
        rv = t->f->C_FindObjects(t->sh, hs, 64, &n);
        if (rv != CKR_OK || n == 0)
            break;
        obj *nv = realloc(out->v, (out->n + n) * sizeof(*nv));
        if (nv == NULL)
            break;
        out->v = nv;
        for (CK_ULONG i = 0; i < n; i++) {
            obj *o = &out->v[out->n++];
            unsigned char *v;
            CK_ULONG l;
            memset(o, 0, sizeof(*o));
            o->h = hs[i];
            if (get_attr(t, hs[i], CKA_CLASS, &v, &l) == 0 && l == sizeof(CK_OBJECT_CLASS))
                memcpy(&o->cls, v, sizeof(o->cls));
            free(v);
            if (get_attr(t, hs[i], CKA_ID, &v, &l) == 0 && l <= sizeof(o->id)) {
                memcpy(o->id, v, l);
                o->id_len = l;
            }
            free(v);
            if (get_attr(t, hs[i], CKA_LABEL, &v, &l) == 0)
                o->label = (char *)v;
            else
                o->label = strdup("");
        }
    }
    t->f->C_FindObjectsFinal(t->sh);
    if (rv != CKR_OK) {
        enr_err("token \"%s\": C_FindObjects: %s", t->label, tok_ckr(rv));
        tok_objlist_free(out);
        return ENR_E_TOKEN;
    }
    return ENR_OK;
}

/* The credential's identifiers: ID, pending ID (ID||FF), retired ID (ID||FE). */
int
tok_id_is(const obj *o, const enr_profile *p, int tag)
{
    if (tag == 0)
        return o->id_len == p->id_len && memcmp(o->id, p->id, p->id_len) == 0;
    return o->id_len == p->id_len + 1 && memcmp(o->id, p->id, p->id_len) == 0 &&
           o->id[p->id_len] == tag;
}

char *
tok_pending_label(const enr_profile *p)
{
    return enr_aprintf("%s%s", p->label, PENDING_SUFFIX);
}

/* Set the attribute TYPE (NAME in messages) of object H to N bytes at V. */
static enr_rc
set_attr(enr_token *t, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, const char *name, const void *v,
         size_t n, const char *what)
{
    CK_ATTRIBUTE a = {type, (void *)v, n};
    CK_RV rv = t->f->C_SetAttributeValue(t->sh, h, &a, 1);

    if (rv != CKR_OK) {
        enr_err("token \"%s\": cannot change %s of %s: %s", t->label, name, what, tok_ckr(rv));
        return ENR_E_TOKEN;
    }
    tok_step_done(t, what);
    return ENR_OK;
}

enr_rc
tok_set_id(enr_token *t, CK_OBJECT_HANDLE h, const unsigned char *id, size_t n, const char *what)
{
    return set_attr(t, h, CKA_ID, "CKA_ID", id, n, what);
}

enr_rc
tok_set_label(enr_token *t, CK_OBJECT_HANDLE h, const char *label, const char *what)
{
    return set_attr(t, h, CKA_LABEL, "CKA_LABEL", label, strlen(label), what);
}

enr_rc
tok_destroy(enr_token *t, CK_OBJECT_HANDLE h, const char *what)
{
    CK_RV rv = t->f->C_DestroyObject(t->sh, h);

    if (rv != CKR_OK) {
        enr_err("token \"%s\": cannot delete %s: %s", t->label, what, tok_ckr(rv));
        return ENR_E_TOKEN;
    }
    tok_step_done(t, what);
    return ENR_OK;
}

static X509 *
read_cert(enr_token *t, CK_OBJECT_HANDLE h)
{
    unsigned char *v;
    const unsigned char *pv;
    CK_ULONG l;
    X509 *x;

    if (get_attr(t, h, CKA_VALUE, &v, &l) != 0)
        return NULL;
    pv = v;
    x = d2i_X509(NULL, &pv, (long)l);
    free(v);
    return x;
}

/* A public key of TYPE ("RSA", "EC") from the parameters in B. */
static EVP_PKEY *
pubkey_from(const char *type, OSSL_PARAM_BLD *b)
{
    OSSL_PARAM *prm = OSSL_PARAM_BLD_to_param(b);
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pk = NULL;

    if (prm == NULL || pc == NULL || EVP_PKEY_fromdata_init(pc) <= 0 ||
        EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, prm) <= 0)
        pk = NULL;
    OSSL_PARAM_free(prm);
    EVP_PKEY_CTX_free(pc);
    return pk;
}

/* An EC public key object (CKA_EC_PARAMS: a named curve's OID; CKA_EC_POINT:
 * the point, DER OCTET STRING as PKCS#11 says, or raw as some tokens give it)
 * as an EVP_PKEY. */
static EVP_PKEY *
read_ec_pubkey(enr_token *t, CK_OBJECT_HANDLE h)
{
    unsigned char *par = NULL, *pt = NULL;
    CK_ULONG pl, ptl;
    const unsigned char *q;
    ASN1_OBJECT *oid = NULL;
    ASN1_OCTET_STRING *os = NULL;
    OSSL_PARAM_BLD *b = NULL;
    EVP_PKEY *pk = NULL;
    const char *group;
    const unsigned char *point;
    size_t point_len;

    if (get_attr(t, h, CKA_EC_PARAMS, &par, &pl) != 0 ||
        get_attr(t, h, CKA_EC_POINT, &pt, &ptl) != 0)
        goto done;
    q = par;
    oid = d2i_ASN1_OBJECT(NULL, &q, (long)pl);
    group = oid ? OBJ_nid2sn(OBJ_obj2nid(oid)) : NULL;
    if (group == NULL || OBJ_obj2nid(oid) == NID_undef)
        goto done;
    q = pt;
    os = d2i_ASN1_OCTET_STRING(NULL, &q, (long)ptl);
    if (os != NULL && q == pt + ptl) {
        point = ASN1_STRING_get0_data(os);
        point_len = (size_t)ASN1_STRING_length(os);
    } else {
        point = pt;
        point_len = ptl;
    }
    b = OSSL_PARAM_BLD_new();
    if (b == NULL || !OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, point, point_len))
        goto done;
    pk = pubkey_from("EC", b);
done:
    ERR_clear_error();
    free(par);
    free(pt);
    ASN1_OBJECT_free(oid);
    ASN1_OCTET_STRING_free(os);
    OSSL_PARAM_BLD_free(b);
    return pk;
}

/* Public key of a key object (RSA: modulus/exponent, readable on private
 * keys too; EC: the public key object's point) as an EVP_PKEY. */
EVP_PKEY *
tok_read_pubkey(enr_token *t, CK_OBJECT_HANDLE h)
{
    unsigned char *n = NULL, *e = NULL;
    CK_ULONG nl, el;
    OSSL_PARAM_BLD *b = NULL;
    EVP_PKEY *pk = NULL;
    BIGNUM *bn = NULL, *be = NULL;

    if (get_attr(t, h, CKA_MODULUS, &n, &nl) != 0 ||
        get_attr(t, h, CKA_PUBLIC_EXPONENT, &e, &el) != 0) {
        pk = read_ec_pubkey(t, h);
        goto done;
    }
    bn = BN_bin2bn(n, (int)nl, NULL);
    be = BN_bin2bn(e, (int)el, NULL);
    b = OSSL_PARAM_BLD_new();
    if (bn == NULL || be == NULL || b == NULL ||
        !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, bn) ||
        !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, be))
        goto done;
    pk = pubkey_from("RSA", b);
done:
    free(n);
    free(e);
    BN_free(bn);
    BN_free(be);
    OSSL_PARAM_BLD_free(b);
    return pk;
}

/* Same public key? Compared as DER SubjectPublicKeyInfo, which works for
 * provider keys and libp11's method-backed keys alike. */
int
tok_same_pubkey(EVP_PKEY *a, EVP_PKEY *b)
{
    unsigned char *da = NULL, *db = NULL;
    int la, lb, eq;

    if (a == NULL || b == NULL)
        return 0;
    la = i2d_PUBKEY(a, &da);
    lb = i2d_PUBKEY(b, &db);
    eq = la > 0 && la == lb && memcmp(da, db, (size_t)la) == 0;
    OPENSSL_free(da);
    OPENSSL_free(db);
    return eq;
}

/* Token-backed EVP_PKEY of the private key whose public key is PUB. */
EVP_PKEY *
tok_libp11_key(enr_token *t, EVP_PKEY *pub)
{
    PKCS11_SLOT *s = NULL;
    PKCS11_KEY *keys = NULL;
    unsigned int nk = 0;

    for (unsigned int i = 0; i < t->nslots; i++)
        if (PKCS11_get_slotid_from_slot(&t->slots[i]) == t->slot)
            s = &t->slots[i];
    if (s == NULL || s->token == NULL || PKCS11_enumerate_keys(s->token, &keys, &nk) != 0)
        return NULL;
    for (unsigned int i = 0; i < nk; i++) {
        EVP_PKEY *pk;
        if (!keys[i].isPrivate)
            continue;
        pk = PKCS11_get_private_key(&keys[i]);
        if (pk != NULL && tok_same_pubkey(pk, pub))
            return pk;
        EVP_PKEY_free(pk);
    }
    enr_ssl_errors();
    return NULL;
}

/* ---- Finding the credential --------------------------------------------- */

enr_rc
enr_token_bootstrap(enr_token *t, const char *label, X509 **cert, EVP_PKEY **key)
{
    objlist l;
    X509 *x = NULL;
    enr_rc rc;

    *cert = NULL;
    *key = NULL;
    rc = tok_list_objects(t, CKO_CERTIFICATE, &l);
    if (rc != ENR_OK)
        return rc;
    for (size_t i = 0; i < l.n && x == NULL; i++)
        if (!strcmp(l.v[i].label, label))
            x = read_cert(t, l.v[i].h);
    tok_objlist_free(&l);
    if (x == NULL) {
        enr_err("token \"%s\": no bootstrap certificate labelled \"%s\"", t->label, label);
        return ENR_E_TOKEN;
    }
    *key = tok_libp11_key(t, X509_get0_pubkey(x));
    if (*key == NULL) {
        enr_err("token \"%s\": no private key for the bootstrap certificate \"%s\"", t->label,
                label);
        X509_free(x);
        return ENR_E_TOKEN;
    }
    *cert = x;
    return ENR_OK;
}

void
enr_cred_clear(enr_cred *c)
{
    X509_free(c->cert);
    memset(c, 0, sizeof(*c));
}

enr_rc
enr_token_find(enr_token *t, const enr_profile *p, enr_cred *c)
{
    objlist l;
    char *pl = tok_pending_label(p);
    enr_rc rc;

    memset(c, 0, sizeof(*c));
    rc = tok_list_objects(t, -1, &l);
    if (rc != ENR_OK || pl == NULL) {
        free(pl);
        return rc != ENR_OK ? rc : ENR_E_FAIL;
    }
    /* The visible certificate: under ID; the latest notAfter if several. */
    for (size_t i = 0; i < l.n; i++) {
        X509 *x;
        if (!strcmp(l.v[i].label, pl))
            c->rollover_open = 1;
        if (l.v[i].cls != CKO_CERTIFICATE || !tok_id_is(&l.v[i], p, 0))
            continue;
        c->n_certs++;
        x = read_cert(t, l.v[i].h);
        if (x == NULL)
            continue;
        if (c->cert == NULL ||
            ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(c->cert)) > 0) {
            X509_free(c->cert);
            c->cert = x;
        } else {
            X509_free(x);
        }
    }
    if (c->cert != NULL) {
        EVP_PKEY *cpub = X509_get0_pubkey(c->cert);
        for (size_t i = 0; i < l.n && !c->have_key; i++) {
            EVP_PKEY *kp;
            if (l.v[i].cls != CKO_PRIVATE_KEY || !tok_id_is(&l.v[i], p, 0))
                continue;
            kp = tok_read_pubkey(t, l.v[i].h);
            if (kp == NULL) {
                /* No readable public part (EC): ask libp11, which pairs it. */
                EVP_PKEY *tk = tok_libp11_key(t, cpub);
                c->have_key = tk != NULL;
                EVP_PKEY_free(tk);
            } else {
                c->have_key = tok_same_pubkey(kp, cpub);
            }
            EVP_PKEY_free(kp);
        }
    }
    tok_objlist_free(&l);
    free(pl);
    return ENR_OK;
}

enr_rc
enr_token_duplicate(enr_token *t, const enr_profile *p, time_t now, char **label)
{
    objlist l;
    enr_rc rc;

    *label = NULL;
    rc = tok_list_objects(t, CKO_CERTIFICATE, &l);
    if (rc != ENR_OK)
        return rc;
    for (size_t i = 0; i < l.n && *label == NULL; i++) {
        obj *o = &l.v[i];
        X509 *x;
        if (tok_id_is(o, p, 0) || tok_id_is(o, p, TAG_PENDING) || tok_id_is(o, p, TAG_RETIRED))
            continue;
        x = read_cert(t, o->h);
        if (x != NULL && X509_NAME_cmp(X509_get_subject_name(x), p->subject_name) == 0 &&
            X509_cmp_time(X509_get0_notBefore(x), &now) <= 0 &&
            X509_cmp_time(X509_get0_notAfter(x), &now) > 0)
            *label = enr_strdup(o->label);
        X509_free(x);
    }
    tok_objlist_free(&l);
    return ENR_OK;
}

/* ---- Key generation ----------------------------------------------------- */

static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const unsigned char oid_p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};

enr_rc
enr_token_generate(enr_token *t, const enr_profile *p, EVP_PKEY **pkey)
{
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG bits = (CK_ULONG)p->key_bits;
    CK_BYTE e[] = {1, 0, 1};
    unsigned char pid[66];
    char *pl = tok_pending_label(p);
    CK_OBJECT_HANDLE hpub, hpriv;
    CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pub[9], priv[10];
    CK_ULONG np = 0, nk = 0;
    EVP_PKEY *pubk = NULL;
    CK_RV rv;
    enr_rc rc = ENR_E_TOKEN;

    *pkey = NULL;
    if (pl == NULL)
        return ENR_E_FAIL;
    memcpy(pid, p->id, p->id_len);
    pid[p->id_len] = TAG_PENDING;
#define A(arr, n, t, v, l)                                                                         \
    (arr[n].type = (t), arr[n].pValue = (void *)(v), arr[n++].ulValueLen = (l))
    A(pub, np, CKA_TOKEN, &yes, sizeof(yes));
    A(pub, np, CKA_PRIVATE, &no, sizeof(no));
    A(pub, np, CKA_VERIFY, &yes, sizeof(yes));
    A(priv, nk, CKA_TOKEN, &yes, sizeof(yes));
    A(priv, nk, CKA_PRIVATE, &yes, sizeof(yes));
    A(priv, nk, CKA_SENSITIVE, &yes, sizeof(yes));
    A(priv, nk, CKA_EXTRACTABLE, &no, sizeof(no));
    A(priv, nk, CKA_SIGN, &yes, sizeof(yes));
    if (t->et != NULL) {
        /* Native: pending (invisible) under the credential's own ID and
         * label; the commit gives them the old objects' labels anyway. */
        A(pub, np, CKA_EVERTOKEN_PENDING, &yes, sizeof(yes));
        A(pub, np, CKA_ID, p->id, p->id_len);
        A(pub, np, CKA_LABEL, p->label, strlen(p->label));
        A(priv, nk, CKA_ID, p->id, p->id_len);
        A(priv, nk, CKA_LABEL, p->label, strlen(p->label));
    } else {
        A(pub, np, CKA_ID, pid, p->id_len + 1);
        A(pub, np, CKA_LABEL, pl, strlen(pl));
        A(priv, nk, CKA_ID, pid, p->id_len + 1);
        A(priv, nk, CKA_LABEL, pl, strlen(pl));
    }
    if (p->key_type == ENR_KEY_RSA) {
        A(pub, np, CKA_MODULUS_BITS, &bits, sizeof(bits));
        A(pub, np, CKA_PUBLIC_EXPONENT, e, sizeof(e));
        /* SCEP: the CA encrypts its answer to this key (RSA key transport). */
        A(pub, np, CKA_ENCRYPT, &yes, sizeof(yes));
        A(priv, nk, CKA_DECRYPT, &yes, sizeof(yes));
    } else {
        const unsigned char *oid = oid_p256;
        size_t ol = sizeof(oid_p256);
        if (!strcmp(p->curve, "P-384")) {
            oid = oid_p384;
            ol = sizeof(oid_p384);
        } else if (!strcmp(p->curve, "P-521")) {
            oid = oid_p521;
            ol = sizeof(oid_p521);
        }
        mech.mechanism = CKM_EC_KEY_PAIR_GEN;
        A(pub, np, CKA_EC_PARAMS, oid, ol);
    }
#undef A
    rv = t->f->C_GenerateKeyPair(t->sh, &mech, pub, np, priv, nk, &hpub, &hpriv);
    if (rv != CKR_OK) {
        enr_err("token \"%s\": cannot generate the new key pair (C_GenerateKeyPair): %s", t->label,
                tok_ckr(rv));
        goto done;
    }
    tok_step_done(t, t->et ? "generate the pending key pair (native)"
                           : "generate the pending key pair");
    pubk = tok_read_pubkey(t, hpub);
    if (pubk == NULL && (p->key_type == ENR_KEY_RSA || t->et != NULL)) {
        enr_err("token \"%s\": cannot read the new public key", t->label);
        goto done;
    }
    /* A native pending key cannot be found by libp11 (C_FindObjects skips
     * it): its handle backs the EVP_PKEY directly. */
    if (t->et != NULL)
        *pkey = enr_p11key_new(t->f, t->sh, hpriv, pubk);
    else
        *pkey = pubk ? tok_libp11_key(t, pubk) : NULL;
    if (*pkey == NULL) {
        enr_err("token \"%s\": the new private key is not usable through libp11", t->label);
        goto done;
    }
    rc = ENR_OK;
done:
    EVP_PKEY_free(pubk);
    free(pl);
    return rc;
}

/* The public key of private key object PRIV read from its public key object
 * (same CKA_ID and label): an EC private key does not carry its point. */
static EVP_PKEY *
pair_pubkey(enr_token *t, const obj *priv)
{
    objlist l;
    EVP_PKEY *pub = NULL;

    if (tok_list_objects(t, CKO_PUBLIC_KEY, &l) != ENR_OK)
        return NULL;
    for (size_t i = 0; i < l.n && pub == NULL; i++)
        if (l.v[i].id_len == priv->id_len && !memcmp(l.v[i].id, priv->id, priv->id_len) &&
            !strcmp(l.v[i].label, priv->label))
            pub = tok_read_pubkey(t, l.v[i].h);
    tok_objlist_free(&l);
    return pub;
}

/* The private key (class CKO_PRIVATE_KEY) matching TAG/label rule, as a
 * token-backed EVP_PKEY. */
enr_rc
tok_key_where(enr_token *t, const enr_profile *p, int pending, EVP_PKEY **pkey)
{
    objlist l;
    char *pl = tok_pending_label(p);
    enr_rc rc;

    *pkey = NULL;
    rc = tok_list_objects(t, CKO_PRIVATE_KEY, &l);
    if (rc != ENR_OK || pl == NULL) {
        free(pl);
        return rc != ENR_OK ? rc : ENR_E_FAIL;
    }
    for (size_t i = 0; i < l.n && *pkey == NULL; i++) {
        int match = pending ? (!strcmp(l.v[i].label, pl) &&
                               (tok_id_is(&l.v[i], p, TAG_PENDING) || tok_id_is(&l.v[i], p, 0)))
                            : (tok_id_is(&l.v[i], p, 0) && strcmp(l.v[i].label, pl) != 0);
        EVP_PKEY *pub;
        if (!match)
            continue;
        pub = tok_read_pubkey(t, l.v[i].h);
        if (pub == NULL)
            pub = pair_pubkey(t, &l.v[i]);
        if (pub != NULL)
            *pkey = tok_libp11_key(t, pub);
        EVP_PKEY_free(pub);
    }
    tok_objlist_free(&l);
    free(pl);
    return ENR_OK;
}

enr_rc
enr_token_current_key(enr_token *t, const enr_profile *p, EVP_PKEY **pkey)
{
    enr_rc rc = tok_key_where(t, p, 0, pkey);

    if (rc == ENR_OK && *pkey == NULL) {
        enr_err("token \"%s\": no usable private key for credential \"%s\"", t->label, p->label);
        return ENR_E_TOKEN;
    }
    return rc;
}

/* ---- For other key pairs (the ACME account key, proto/acme_key.c) ------- */

EVP_PKEY *
enr_token_pubkey(enr_token *t, CK_OBJECT_HANDLE h)
{
    return tok_read_pubkey(t, h);
}
