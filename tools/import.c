/*
 * import.c — `import`: PEM, PKCS#12, DER and PKCS#7 files into a token.
 *
 * Every input is parsed first (the format is detected from the content, not
 * from the file name); only when all of it is understood does the CLI log in
 * and create objects, and if one creation fails the objects made earlier in
 * the same run are destroyed again, so an import is all or nothing.
 *
 * CKA_ID convention (docs/cli.md): a key pair and the certificates of its
 * public key share CKA_ID = SHA-1 over the BIT STRING contents of the DER
 * SubjectPublicKeyInfo (RFC 5280 section 4.2.1.2, method 1), the value most
 * CAs put in the subjectKeyIdentifier. Certificates without their key in the
 * input (CA certificates of a chain) get the same rule applied to their own
 * public key, so a certificate imported later still lands next to its key.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/provider.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "et_int.h"
#include "import_parse.h"

/* ---- Object templates --------------------------------------------------- */

#define ET_TMPL_MAX 24

typedef struct et_tmpl {
    CK_ATTRIBUTE a[ET_TMPL_MAX];
    unsigned char owned[ET_TMPL_MAX]; /* 0: borrowed, 1: malloc, 2: et_secure_alloc (secret) */
    CK_ULONG ulongs[ET_TMPL_MAX];
    CK_ULONG n;
    int err;
} et_tmpl;

static CK_BBOOL et_true = CK_TRUE, et_false = CK_FALSE;

static void
t_add(et_tmpl *t, CK_ATTRIBUTE_TYPE type, void *v, size_t len, unsigned char owned)
{
    if (t->n >= ET_TMPL_MAX || (v == NULL && len > 0)) {
        if (owned == 2)
            et_secure_free(v);
        else if (owned == 1)
            free(v);
        t->err = 1;
        return;
    }
    t->a[t->n].type = type;
    t->a[t->n].pValue = v;
    t->a[t->n].ulValueLen = (CK_ULONG)len;
    t->owned[t->n] = owned;
    t->n++;
}

static void
t_bool(et_tmpl *t, CK_ATTRIBUTE_TYPE type, int v)
{
    t_add(t, type, v ? &et_true : &et_false, sizeof(CK_BBOOL), 0);
}

static void
t_ulong(et_tmpl *t, CK_ATTRIBUTE_TYPE type, CK_ULONG v)
{
    if (t->n >= ET_TMPL_MAX) {
        t->err = 1;
        return;
    }
    t->ulongs[t->n] = v;
    t_add(t, type, &t->ulongs[t->n], sizeof(CK_ULONG), 0);
}

static void
t_free(et_tmpl *t)
{
    for (CK_ULONG i = 0; i < t->n; i++) {
        if (t->owned[i] == 2)
            et_secure_free(t->a[i].pValue);
        else if (t->owned[i] == 1)
            free(t->a[i].pValue);
    }
    t->n = 0;
}

/* A BIGNUM parameter of PK as big-endian bytes (PAD > 0: fixed length). */
static void
t_bn(et_tmpl *t, CK_ATTRIBUTE_TYPE type, const EVP_PKEY *pk, const char *param, int secret, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char *v;
    int n;

    if (!EVP_PKEY_get_bn_param(pk, param, &bn)) {
        t->err = 1;
        return;
    }
    n = pad > 0 ? pad : BN_num_bytes(bn);
    if (n <= 0)
        n = 1;
    v = secret ? et_secure_alloc((size_t)n) : malloc((size_t)n);
    if (v == NULL || BN_bn2binpad(bn, v, n) != n) {
        if (secret)
            et_secure_free(v);
        else
            free(v);
        t->err = 1;
    } else {
        t_add(t, type, v, (size_t)n, secret ? 2 : 1);
    }
    BN_clear_free(bn);
}

/* DER of the OBJECT IDENTIFIER of NID (CKA_EC_PARAMS). */
static void
t_oid(et_tmpl *t, CK_ATTRIBUTE_TYPE type, int nid)
{
    const ASN1_OBJECT *obj = OBJ_nid2obj(nid);
    unsigned char *der = NULL, *q;
    int n;

    if (obj == NULL || (n = i2d_ASN1_OBJECT(obj, NULL)) <= 0 || (der = malloc((size_t)n)) == NULL) {
        t->err = 1;
        return;
    }
    q = der;
    if (i2d_ASN1_OBJECT(obj, &q) != n) {
        free(der);
        t->err = 1;
        return;
    }
    t_add(t, type, der, (size_t)n, 1);
}

static void
t_octet(et_tmpl *t, CK_ATTRIBUTE_TYPE type, const unsigned char *raw, size_t len)
{
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    unsigned char *der = NULL, *c;
    int n;

    if (os == NULL || !ASN1_OCTET_STRING_set(os, raw, (int)len) ||
        (n = i2d_ASN1_OCTET_STRING(os, &der)) <= 0) {
        ASN1_OCTET_STRING_free(os);
        t->err = 1;
        return;
    }
    c = malloc((size_t)n);
    if (c != NULL)
        memcpy(c, der, (size_t)n);
    OPENSSL_free(der);
    ASN1_OCTET_STRING_free(os);
    t_add(t, type, c, (size_t)n, 1);
}

static void
t_copy(et_tmpl *t, CK_ATTRIBUTE_TYPE type, const void *v, size_t len)
{
    unsigned char *c = malloc(len ? len : 1);

    if (c != NULL && len > 0)
        memcpy(c, v, len);
    t_add(t, type, c, len, 1);
}

/* ---- Key pairs and certificates ---------------------------------------- */

typedef struct et_cred {
    unsigned char id[64];
    size_t idlen;
    char label[256];
} et_cred;

/* CKA_ID convention: SHA-1 of the SubjectPublicKeyInfo's BIT STRING. */
static int
et_key_id(EVP_PKEY *pk, unsigned char out[SHA_DIGEST_LENGTH])
{
    X509_PUBKEY *xpk = NULL;
    const unsigned char *bits = NULL;
    int bitslen = 0, ok = 0;

    if (X509_PUBKEY_set(&xpk, pk) && X509_PUBKEY_get0_param(NULL, &bits, &bitslen, NULL, xpk))
        ok = SHA1(bits, (size_t)bitslen, out) != NULL;
    X509_PUBKEY_free(xpk);
    return ok ? 0 : -1;
}

static void
et_cert_cn(X509 *x, char *buf, size_t sz)
{
    X509_NAME *nm = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(nm, NID_commonName, -1);
    unsigned char *utf8 = NULL;
    int n;

    buf[0] = '\0';
    if (i >= 0 && (n = ASN1_STRING_to_UTF8(
                       &utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i)))) > 0) {
        snprintf(buf, sz, "%.*s", n, (const char *)utf8);
        OPENSSL_free(utf8);
        return;
    }
    {
        char *s = X509_NAME_oneline(nm, NULL, 0);
        snprintf(buf, sz, "%s", s ? s : "certificate");
        OPENSSL_free(s);
    }
}

/* Label for an object whose certificate is X (NULL: none): the PKCS#12
 * friendly name, else the subject CN. */
static void
et_default_label(X509 *x, const unsigned char *id, size_t idlen, char *buf, size_t sz)
{
    int alen = 0;
    const unsigned char *alias = x ? X509_alias_get0(x, &alen) : NULL;
    char raw[300];

    /* From the file: object labels are UTF-8, so a byte that is not
     * becomes U+FFFD (control characters are kept: output escapes them). */
    if (alias != NULL && alen > 0) {
        et_utf8_fix(buf, sz, alias, (size_t)alen);
    } else if (x != NULL) {
        et_cert_cn(x, raw, sizeof(raw));
        et_utf8_fix(buf, sz, raw, strlen(raw));
    } else {
        snprintf(buf, sz, "key-%02x%02x%02x%02x", id[0], id[1], idlen > 2 ? id[2] : 0,
                 idlen > 3 ? id[3] : 0);
    }
}

/* Fill the type-specific parts of the private (PRIV) and public (PUB)
 * templates. Returns a short description or NULL if the type is unsupported. */
static const char *
et_key_templates(EVP_PKEY *pk, et_tmpl *priv, et_tmpl *pub)
{
    int base = EVP_PKEY_get_base_id(pk);

    if (base == EVP_PKEY_RSA || base == EVP_PKEY_RSA_PSS) {
        BIGNUM *f3 = NULL;
        if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_FACTOR3, &f3)) {
            BN_clear_free(f3);
            return NULL; /* multi-prime RSA has no PKCS#11 representation */
        }
        ERR_clear_error();
        t_ulong(priv, CKA_KEY_TYPE, CKK_RSA);
        t_ulong(pub, CKA_KEY_TYPE, CKK_RSA);
        t_bool(priv, CKA_DECRYPT, 1);
        t_bool(pub, CKA_ENCRYPT, 1);
        t_bn(priv, CKA_MODULUS, pk, OSSL_PKEY_PARAM_RSA_N, 0, 0);
        t_bn(priv, CKA_PUBLIC_EXPONENT, pk, OSSL_PKEY_PARAM_RSA_E, 0, 0);
        t_bn(priv, CKA_PRIVATE_EXPONENT, pk, OSSL_PKEY_PARAM_RSA_D, 1, 0);
        t_bn(priv, CKA_PRIME_1, pk, OSSL_PKEY_PARAM_RSA_FACTOR1, 1, 0);
        t_bn(priv, CKA_PRIME_2, pk, OSSL_PKEY_PARAM_RSA_FACTOR2, 1, 0);
        t_bn(priv, CKA_EXPONENT_1, pk, OSSL_PKEY_PARAM_RSA_EXPONENT1, 1, 0);
        t_bn(priv, CKA_EXPONENT_2, pk, OSSL_PKEY_PARAM_RSA_EXPONENT2, 1, 0);
        t_bn(priv, CKA_COEFFICIENT, pk, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, 1, 0);
        t_bn(pub, CKA_MODULUS, pk, OSSL_PKEY_PARAM_RSA_N, 0, 0);
        t_bn(pub, CKA_PUBLIC_EXPONENT, pk, OSSL_PKEY_PARAM_RSA_E, 0, 0);
        return "RSA";
    }
    if (base == EVP_PKEY_EC) {
        char group[80];
        unsigned char *point = NULL;
        size_t plen = 0;
        int nid;

        char enc[32] = "";

        /* Explicit curve parameters are refused even when OpenSSL matches
         * them to a named curve: the file did not name one, and PKCS#11
         * keys here are stored with the curve's OID only. */
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_EC_ENCODING, enc, sizeof(enc),
                                           NULL) &&
            strcmp(enc, OSSL_PKEY_EC_ENCODING_EXPLICIT) == 0)
            return NULL;
        if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                            NULL))
            return NULL; /* explicit curve parameters: not importable */
        nid = OBJ_txt2nid(group);
        if (nid == NID_undef)
            nid = EC_curve_nist2nid(group);
        if (nid == NID_undef)
            return NULL;
        /* PKCS#11 wants the uncompressed point, whatever the file held. */
        (void)EVP_PKEY_set_utf8_string_param(pk, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                             OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_UNCOMPRESSED);
        plen = EVP_PKEY_get1_encoded_public_key(pk, &point);
        if (plen == 0) {
            OPENSSL_free(point);
            return NULL;
        }
        t_ulong(priv, CKA_KEY_TYPE, CKK_EC);
        t_ulong(pub, CKA_KEY_TYPE, CKK_EC);
        t_bool(priv, CKA_DERIVE, 1);
        t_bool(pub, CKA_DERIVE, 1);
        t_oid(priv, CKA_EC_PARAMS, nid);
        t_oid(pub, CKA_EC_PARAMS, nid);
        t_bn(priv, CKA_VALUE, pk, OSSL_PKEY_PARAM_PRIV_KEY, 1, (EVP_PKEY_get_bits(pk) + 7) / 8);
        t_octet(pub, CKA_EC_POINT, point, plen);
        OPENSSL_free(point);
        return "EC";
    }
    if (base == EVP_PKEY_ED25519 || base == EVP_PKEY_ED448) {
        int nid = base == EVP_PKEY_ED25519 ? NID_ED25519 : NID_ED448;
        unsigned char *sk = NULL, pkraw[64];
        size_t sklen = 0, pklen = sizeof(pkraw);

        if (!EVP_PKEY_get_raw_private_key(pk, NULL, &sklen) || sklen == 0 ||
            (sk = et_secure_alloc(sklen)) == NULL ||
            !EVP_PKEY_get_raw_private_key(pk, sk, &sklen) ||
            !EVP_PKEY_get_raw_public_key(pk, pkraw, &pklen)) {
            et_secure_free(sk);
            return NULL;
        }
        t_ulong(priv, CKA_KEY_TYPE, CKK_EC_EDWARDS);
        t_ulong(pub, CKA_KEY_TYPE, CKK_EC_EDWARDS);
        t_oid(priv, CKA_EC_PARAMS, nid);
        t_oid(pub, CKA_EC_PARAMS, nid);
        t_add(priv, CKA_VALUE, sk, sklen, 2);
        t_octet(pub, CKA_EC_POINT, pkraw, pklen);
        return base == EVP_PKEY_ED25519 ? "Ed25519" : "Ed448";
    }
    return NULL;
}

/*
 * All or nothing, even under kill -9 (docs/cli.md, "All or nothing"): every
 * object of a run is created under a temporary label
 *     "evertoken-import-in-progress BATCH FINAL-LABEL"
 * where BATCH is "PID-STARTTIME-RANDOM" of this process. Once all exist,
 * one C_CreateObject of a marker data object labelled
 *     "evertoken-import-commit BATCH"
 * is the commit point; then each object gets its final label and the marker
 * goes. A later import (et_import_recover) finishes what a dead process
 * left: with a marker, the labels are completed; without one, its objects
 * are destroyed. Imports of live processes are left alone.
 */
#define ET_IMP_TEMP   "evertoken-import-in-progress "
#define ET_IMP_COMMIT "evertoken-import-commit "

/* Objects created in this run, destroyed again if a later step fails. */
typedef struct et_created {
    CK_OBJECT_HANDLE h[3 * ET_MAX_KEYS + 256];
    char *final[3 * ET_MAX_KEYS + 256]; /* the label each gets at the commit */
    size_t n;
    char batch[64];
    int committed; /* the marker exists: never roll back */
} et_created;

static int
et_create(et_p11 *p, CK_SESSION_HANDLE sh, et_tmpl *t, et_created *made, const char *what)
{
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_ATTRIBUTE saved = {CKA_LABEL, NULL, 0}, *lab = NULL;
    char *temp = NULL, *final = NULL;
    CK_RV rv;
    char msg[160];

    if (t->err) {
        et_err("cannot build the attributes of the %s (out of memory or unusable key)", what);
        return ET_EXIT_FAIL;
    }
    if (made->n >= sizeof(made->h) / sizeof(made->h[0])) {
        et_err("too many objects in one import");
        return ET_EXIT_INPUT;
    }
    for (CK_ULONG i = 0; i < t->n; i++)
        if (t->a[i].type == CKA_LABEL)
            lab = &t->a[i];
    if (lab == NULL) {
        et_err("internal error: the %s has no label", what);
        return ET_EXIT_FAIL;
    }
    final = strndup(lab->pValue != NULL ? lab->pValue : "", lab->ulValueLen);
    if (final == NULL || asprintf(&temp, ET_IMP_TEMP "%s %s", made->batch, final) < 0) {
        free(final);
        et_err("out of memory");
        return ET_EXIT_FAIL;
    }
    saved = *lab;
    lab->pValue = temp;
    lab->ulValueLen = (CK_ULONG)strlen(temp);
    rv = p->f->C_CreateObject(sh, t->a, t->n, &h);
    *lab = saved;
    free(temp);
    if (rv != CKR_OK) {
        free(final);
        snprintf(msg, sizeof(msg), "cannot store the %s (C_CreateObject)", what);
        return et_ckr_fail(msg, rv);
    }
    made->final[made->n] = final;
    made->h[made->n++] = h;
    return ET_EXIT_OK;
}

static int
et_set_label(et_p11 *p, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE h, const char *label)
{
    CK_ATTRIBUTE a = {CKA_LABEL, (void *)label, (CK_ULONG)strlen(label)};

    return p->f->C_SetAttributeValue(sh, h, &a, 1) == CKR_OK ? 0 : -1;
}

/* The commit point, then the final labels. */
static int
et_import_commit(et_p11 *p, CK_SESSION_HANDLE sh, et_created *made)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    char label[sizeof(ET_IMP_COMMIT) + sizeof(made->batch)];
    CK_ATTRIBUTE a[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_PRIVATE, &f, sizeof(f)},
        {CKA_LABEL, label, 0},
    };
    CK_OBJECT_HANDLE marker = CK_INVALID_HANDLE;
    CK_RV rv;
    size_t bad = 0;

    if (made->n == 0)
        return ET_EXIT_OK;
    snprintf(label, sizeof(label), ET_IMP_COMMIT "%s", made->batch);
    a[3].ulValueLen = (CK_ULONG)strlen(label);
    rv = p->f->C_CreateObject(sh, a, 4, &marker);
    if (rv != CKR_OK)
        return et_ckr_fail("cannot commit the import (C_CreateObject of its marker)", rv);
    made->committed = 1;
    for (size_t i = 0; i < made->n; i++)
        if (et_set_label(p, sh, made->h[i], made->final[i]) != 0)
            bad++;
    if (bad > 0) {
        /* Committed: the next import completes the labels. */
        et_err("import committed, but %zu label%s could not be set yet; the next `evertoken "
               "import` on this token completes them",
               bad, bad == 1 ? "" : "s");
        return ET_EXIT_FAIL;
    }
    (void)p->f->C_DestroyObject(sh, marker);
    return ET_EXIT_OK;
}

/* This process as a batch owner: "PID-STARTTIME-RANDOM". */
static unsigned long long
et_proc_start(long pid, char *state)
{
    char path[64], buf[1024];
    const char *q;
    FILE *fp;
    size_t k;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    fp = fopen(path, "re");
    if (fp == NULL)
        return 0;
    k = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[k] = '\0';
    q = strrchr(buf, ')');
    if (q == NULL || q[1] != ' ')
        return 0;
    q += 2;
    *state = *q;
    for (int field = 3; field < 22 && q != NULL; field++) {
        q = strchr(q, ' ');
        if (q != NULL)
            q++;
    }
    return q != NULL ? strtoull(q, NULL, 10) : 0;
}

static void
et_batch_id(char *out, size_t n)
{
    unsigned char r[4];
    char state = 0;

    randombytes_buf(r, sizeof(r));
    snprintf(out, n, "%ld-%llu-%02x%02x%02x%02x", (long)getpid(),
             et_proc_start((long)getpid(), &state), r[0], r[1], r[2], r[3]);
}

/* 1 if the process that owns BATCH is certainly gone. */
static int
et_batch_dead(const char *batch)
{
    long pid = 0;
    unsigned long long start = 0, now;
    char state = 0;

    if (sscanf(batch, "%ld-%llu-", &pid, &start) != 2 || pid <= 0)
        return 0;
    now = et_proc_start(pid, &state);
    return now == 0 || now != start || state == 'Z' || state == 'X';
}

/* Finish the imports dead processes left half done (see above). */
static int
et_import_recover(et_p11 *p, CK_SESSION_HANDLE sh)
{
    CK_OBJECT_HANDLE *objs = NULL;
    CK_ULONG n = 0;
    char **labels = NULL;
    size_t removed = 0, completed = 0;
    int rc = et_find_objects(p, sh, NULL, 0, &objs, &n);

    if (rc != ET_EXIT_OK)
        return rc;
    labels = calloc(n ? n : 1, sizeof(*labels));
    if (labels == NULL) {
        free(objs);
        et_err("out of memory");
        return ET_EXIT_FAIL;
    }
    for (CK_ULONG i = 0; i < n; i++) {
        unsigned char *v = NULL;
        CK_ULONG len = 0;

        if (et_get_attr(p, sh, objs[i], CKA_LABEL, &v, &len) == 0 && v != NULL)
            labels[i] = strndup((const char *)v, len);
        free(v);
    }
    for (CK_ULONG i = 0; i < n; i++) {
        const char *b, *sp;
        char batch[64], marker[sizeof(ET_IMP_COMMIT) + sizeof(batch)];
        int committed = 0;

        if (labels[i] == NULL || strncmp(labels[i], ET_IMP_TEMP, strlen(ET_IMP_TEMP)) != 0)
            continue;
        b = labels[i] + strlen(ET_IMP_TEMP);
        sp = strchr(b, ' ');
        if (sp == NULL || (size_t)(sp - b) >= sizeof(batch))
            continue;
        memcpy(batch, b, (size_t)(sp - b));
        batch[sp - b] = '\0';
        if (!et_batch_dead(batch))
            continue; /* an import in progress elsewhere */
        snprintf(marker, sizeof(marker), ET_IMP_COMMIT "%s", batch);
        for (CK_ULONG j = 0; j < n; j++)
            if (labels[j] != NULL && strcmp(labels[j], marker) == 0)
                committed = 1;
        if (committed ? et_set_label(p, sh, objs[i], sp + 1) == 0
                      : p->f->C_DestroyObject(sh, objs[i]) == CKR_OK) {
            if (committed)
                completed++;
            else
                removed++;
        }
    }
    /* Markers of dead processes whose objects are all settled. */
    for (CK_ULONG i = 0; i < n; i++) {
        const char *b;
        int pending = 0;

        if (labels[i] == NULL || strncmp(labels[i], ET_IMP_COMMIT, strlen(ET_IMP_COMMIT)) != 0)
            continue;
        b = labels[i] + strlen(ET_IMP_COMMIT);
        if (!et_batch_dead(b))
            continue;
        for (CK_ULONG j = 0; j < n; j++) {
            unsigned char *v = NULL;
            CK_ULONG len = 0;

            if (labels[j] == NULL || strncmp(labels[j], ET_IMP_TEMP, strlen(ET_IMP_TEMP)) != 0 ||
                strncmp(labels[j] + strlen(ET_IMP_TEMP), b, strlen(b)) != 0)
                continue;
            /* still temporary (its label could not be set)? */
            if (et_get_attr(p, sh, objs[j], CKA_LABEL, &v, &len) == 0 && v != NULL &&
                len >= strlen(ET_IMP_TEMP) && memcmp(v, ET_IMP_TEMP, strlen(ET_IMP_TEMP)) == 0)
                pending = 1;
            free(v);
        }
        if (!pending)
            (void)p->f->C_DestroyObject(sh, objs[i]);
    }
    if (removed > 0)
        et_warn("an import interrupted earlier was rolled back: %zu object%s removed", removed,
                removed == 1 ? "" : "s");
    if (completed > 0)
        et_warn("an import interrupted after its commit was completed: %zu object%s labelled",
                completed, completed == 1 ? "" : "s");
    for (CK_ULONG i = 0; i < n; i++)
        free(labels[i]);
    free(labels);
    free(objs);
    return ET_EXIT_OK;
}

/* Handles of objects of class CLS whose ATTR equals VAL. */
static int
et_exists(et_p11 *p, CK_SESSION_HANDLE sh, CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE attr,
          const void *val, size_t len, int *found)
{
    CK_ATTRIBUTE tmpl[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {attr, (void *)val, (CK_ULONG)len}};
    CK_OBJECT_HANDLE *objs = NULL;
    CK_ULONG n = 0;
    int rc = et_find_objects(p, sh, tmpl, 2, &objs, &n);

    free(objs);
    *found = n > 0;
    return rc;
}

static int
et_store_cert(et_p11 *p, CK_SESSION_HANDLE sh, X509 *x, const et_cred *cred, CK_ULONG category,
              et_created *made)
{
    et_tmpl t = {0};
    unsigned char *der = NULL, *subj = NULL, *iss = NULL, *ser = NULL;
    int derlen, subjlen, isslen, serlen, rc, found = 0;
    char desc[300];

    derlen = i2d_X509(x, &der);
    subjlen = i2d_X509_NAME(X509_get_subject_name(x), &subj);
    isslen = i2d_X509_NAME(X509_get_issuer_name(x), &iss);
    serlen = i2d_ASN1_INTEGER(X509_get0_serialNumber(x), &ser);
    if (derlen <= 0 || subjlen <= 0 || isslen <= 0 || serlen <= 0) {
        et_err("cannot encode a certificate");
        rc = ET_EXIT_FAIL;
        goto done;
    }
    rc = et_exists(p, sh, CKO_CERTIFICATE, CKA_VALUE, der, (size_t)derlen, &found);
    if (rc != ET_EXIT_OK)
        goto done;
    et_cert_cn(x, desc, sizeof(desc));
    if (found) {
        printf("certificate '%s' is already on the token; skipped\n", et_escs(desc));
        goto done;
    }
    t_ulong(&t, CKA_CLASS, CKO_CERTIFICATE);
    t_ulong(&t, CKA_CERTIFICATE_TYPE, CKC_X_509);
    t_bool(&t, CKA_TOKEN, 1);
    t_bool(&t, CKA_PRIVATE, 0);
    t_copy(&t, CKA_VALUE, der, (size_t)derlen);
    t_copy(&t, CKA_SUBJECT, subj, (size_t)subjlen);
    t_copy(&t, CKA_ISSUER, iss, (size_t)isslen);
    t_copy(&t, CKA_SERIAL_NUMBER, ser, (size_t)serlen);
    t_copy(&t, CKA_ID, cred->id, cred->idlen);
    t_copy(&t, CKA_LABEL, cred->label, strlen(cred->label));
    t_ulong(&t, CKA_CERTIFICATE_CATEGORY, category);
    rc = et_create(p, sh, &t, made, "certificate");
    if (rc == ET_EXIT_OK) {
        printf("imported certificate '%s'%s, label '%s', id ", et_escs(desc),
               category == 2 ? " (CA)" : "", et_escs(cred->label));
        et_hex_print(stdout, cred->id, cred->idlen);
        putchar('\n');
    }
done:
    t_free(&t);
    OPENSSL_free(der);
    OPENSSL_free(subj);
    OPENSSL_free(iss);
    OPENSSL_free(ser);
    return rc;
}

static int
et_store_key(et_p11 *p, CK_SESSION_HANDLE sh, EVP_PKEY *pk, const et_cred *cred, int own_id,
             et_created *made)
{
    et_tmpl priv = {0}, pub = {0};
    const char *type;
    int rc, found = 0;

    rc = et_exists(p, sh, CKO_PRIVATE_KEY, CKA_ID, cred->id, cred->idlen, &found);
    if (rc != ET_EXIT_OK)
        return rc;
    if (found) {
        if (own_id) {
            /* The id is the hash of this very public key: same key pair. */
            printf("private key '%s' is already on the token; skipped\n", et_escs(cred->label));
            return ET_EXIT_OK;
        }
        et_err("a different private key already uses CKA_ID %s on this token; choose another --id",
               "(given with --id)");
        return ET_EXIT_EXISTS;
    }
    t_ulong(&priv, CKA_CLASS, CKO_PRIVATE_KEY);
    t_bool(&priv, CKA_TOKEN, 1);
    t_bool(&priv, CKA_PRIVATE, 1);
    t_bool(&priv, CKA_SENSITIVE, 1);
    t_bool(&priv, CKA_EXTRACTABLE, 0);
    t_bool(&priv, CKA_SIGN, 1);
    t_copy(&priv, CKA_ID, cred->id, cred->idlen);
    t_copy(&priv, CKA_LABEL, cred->label, strlen(cred->label));
    t_ulong(&pub, CKA_CLASS, CKO_PUBLIC_KEY);
    t_bool(&pub, CKA_TOKEN, 1);
    t_bool(&pub, CKA_PRIVATE, 0);
    t_bool(&pub, CKA_VERIFY, 1);
    t_copy(&pub, CKA_ID, cred->id, cred->idlen);
    t_copy(&pub, CKA_LABEL, cred->label, strlen(cred->label));
    type = et_key_templates(pk, &priv, &pub);
    if (type == NULL) {
        ERR_clear_error();
        et_err("private key '%s' (%s) has no PKCS#11 form (multi-prime RSA, or EC with explicit "
               "curve parameters)",
               cred->label, EVP_PKEY_get0_type_name(pk) ? EVP_PKEY_get0_type_name(pk) : "?");
        rc = ET_EXIT_INPUT;
        goto done;
    }
    rc = et_create(p, sh, &priv, made, "private key");
    if (rc == ET_EXIT_OK)
        rc = et_create(p, sh, &pub, made, "public key");
    if (rc == ET_EXIT_OK) {
        printf("imported %s key pair, label '%s', id ", type, et_escs(cred->label));
        et_hex_print(stdout, cred->id, cred->idlen);
        putchar('\n');
    }
done:
    t_free(&priv); /* wipes the private components (et_secure_alloc'd) */
    t_free(&pub);
    return rc;
}

static int
et_import_all(et_p11 *p, CK_SESSION_HANDLE sh, et_opts *o, et_input *in, const unsigned char *uid,
              size_t uidlen, et_created *made)
{
    int ncerts = sk_X509_num(in->certs), rc = ET_EXIT_OK;
    unsigned char *used = calloc((size_t)(ncerts > 0 ? ncerts : 1), 1);

    if (used == NULL) {
        et_err("out of memory");
        return ET_EXIT_FAIL;
    }
    /* Key pairs, each followed by the certificates of its public key. */
    for (size_t k = 0; k < in->nkeys && rc == ET_EXIT_OK; k++) {
        et_cred cred;
        X509 *first = NULL;
        int own_id = 1;

        memset(&cred, 0, sizeof(cred));
        if (et_key_id(in->keys[k], cred.id) != 0) {
            et_err("cannot compute the key identifier of a private key");
            rc = ET_EXIT_INPUT;
            break;
        }
        cred.idlen = SHA_DIGEST_LENGTH;
        if (uid != NULL) {
            memcpy(cred.id, uid, uidlen);
            cred.idlen = uidlen;
            own_id = 0;
        }
        for (int c = 0; c < ncerts && first == NULL; c++)
            if (EVP_PKEY_eq(X509_get0_pubkey(sk_X509_value(in->certs, c)), in->keys[k]) == 1)
                first = sk_X509_value(in->certs, c);
        ERR_clear_error();
        if (o->label != NULL)
            snprintf(cred.label, sizeof(cred.label), "%s", o->label);
        else
            et_default_label(first, cred.id, cred.idlen, cred.label, sizeof(cred.label));
        rc = et_store_key(p, sh, in->keys[k], &cred, own_id, made);
        for (int c = 0; c < ncerts && rc == ET_EXIT_OK; c++) {
            X509 *x = sk_X509_value(in->certs, c);
            if (used[c] || EVP_PKEY_eq(X509_get0_pubkey(x), in->keys[k]) != 1)
                continue;
            used[c] = 1;
            rc = et_store_cert(p, sh, x, &cred, 1, made);
        }
        ERR_clear_error();
    }
    /* Certificates without their key here: CA certificates of a chain, or a
     * certificate for a key already on the token. */
    for (int c = 0; c < ncerts && rc == ET_EXIT_OK; c++) {
        X509 *x = sk_X509_value(in->certs, c);
        et_cred cred;
        int is_ca = X509_check_ca(x) > 0;
        int primary = in->nkeys == 0 && ncerts == 1;

        if (used[c])
            continue;
        memset(&cred, 0, sizeof(cred));
        if (primary && uid != NULL) {
            memcpy(cred.id, uid, uidlen);
            cred.idlen = uidlen;
        } else {
            unsigned int mdlen = 0;
            if (!X509_pubkey_digest(x, EVP_sha1(), cred.id, &mdlen)) {
                et_err("cannot compute the key identifier of a certificate");
                rc = ET_EXIT_INPUT;
                break;
            }
            cred.idlen = mdlen;
        }
        if (primary && o->label != NULL)
            snprintf(cred.label, sizeof(cred.label), "%s", o->label);
        else
            et_default_label(x, cred.id, cred.idlen, cred.label, sizeof(cred.label));
        rc = et_store_cert(p, sh, x, &cred, is_ca ? 2 : 0, made);
    }
    free(used);
    return rc;
}

int
et_cmd_import(et_opts *o)
{
    et_input in;
    et_pass pass;
    et_p11 p = {0};
    et_created *made = NULL;
    CK_SLOT_ID slot;
    CK_TOKEN_INFO ti;
    CK_SESSION_HANDLE sh = CK_INVALID_HANDLE;
    unsigned char *uid = NULL;
    size_t uidlen = 0;
    int rc;

    memset(&in, 0, sizeof(in));
    memset(&pass, 0, sizeof(pass));
    pass.src = o->pass_src;
    if (o->argc == 0) {
        et_err("import: no files given (evertoken import --token LABEL FILE...)");
        return ET_EXIT_USAGE;
    }
    if (o->id != NULL) {
        uid = et_hex_decode(o->id, &uidlen);
        if (uid == NULL || uidlen > sizeof(((et_cred *)0)->id)) {
            et_err("import: --id must be 1 to 64 bytes of hex, not '%s'", o->id);
            free(uid);
            return ET_EXIT_USAGE;
        }
    }
    if (o->label != NULL && strlen(o->label) >= sizeof(((et_cred *)0)->label)) {
        et_err("import: --label is too long");
        free(uid);
        return ET_EXIT_USAGE;
    }
    if (o->label != NULL && !et_utf8_valid(o->label, strlen(o->label))) {
        et_err("import: --label must be valid UTF-8 (object labels are UTF-8 strings)");
        free(uid);
        return ET_EXIT_USAGE;
    }
    in.certs = sk_X509_new_null();
    made = calloc(1, sizeof(*made));
    if (in.certs == NULL || made == NULL) {
        et_err("out of memory");
        rc = ET_EXIT_FAIL;
        goto done;
    }
    /* PKCS#12 files exported by older software (Windows, OpenSSL 1.x)
     * encrypt their certificates with RC2-40, which only OpenSSL's legacy
     * provider implements; keep the default provider as the fallback. */
    (void)OSSL_PROVIDER_try_load(NULL, "legacy", 1);
    ERR_clear_error();
    /* Parse everything before touching the token. */
    for (int i = 0; i < o->argc; i++) {
        rc = et_load_file(&in, o->argv[i], &pass);
        if (rc != ET_EXIT_OK) {
            et_err("nothing was imported");
            goto done;
        }
    }
    if ((o->id != NULL || o->label != NULL) &&
        !(in.nkeys == 1 || (in.nkeys == 0 && sk_X509_num(in.certs) == 1))) {
        et_err("import: --id and --label need the input to hold exactly one private key (or "
               "exactly one certificate); it holds %zu keys and %d certificates",
               in.nkeys, sk_X509_num(in.certs));
        rc = ET_EXIT_USAGE;
        goto done;
    }
    rc = et_p11_load(o, &p);
    if (rc != ET_EXIT_OK)
        goto done;
    rc = et_find_token(&p, o, &slot, &ti);
    if (rc != ET_EXIT_OK)
        goto done;
    rc = et_open_session(&p, o, slot, 1, (long)CKU_USER, &sh);
    if (rc != ET_EXIT_OK)
        goto done;
    rc = et_import_recover(&p, sh);
    if (rc != ET_EXIT_OK)
        goto done;
    et_batch_id(made->batch, sizeof(made->batch));
    rc = et_import_all(&p, sh, o, &in, uid, uidlen, made);
    if (rc == ET_EXIT_OK)
        rc = et_import_commit(&p, sh, made);
    if (rc != ET_EXIT_OK && !made->committed) {
        size_t undone = 0;
        while (made->n > 0) {
            if (p.f->C_DestroyObject(sh, made->h[--made->n]) == CKR_OK)
                undone++;
            else
                et_err("could not remove object %lu created by this import; delete it by hand",
                       (unsigned long)made->h[made->n]);
        }
        et_err("import failed; %zu object%s created by this run %s removed again", undone,
               undone == 1 ? "" : "s", undone == 1 ? "was" : "were");
    }
done:
    if (p.initialized)
        et_close_session(&p, sh);
    et_p11_unload(&p);
    for (size_t k = 0; k < in.nkeys; k++)
        EVP_PKEY_free(in.keys[k]); /* OpenSSL clears key material when freeing */
    sk_X509_pop_free(in.certs, X509_free);
    et_secret_free(&pass.s);
    for (size_t k = 0; made != NULL && k < sizeof(made->final) / sizeof(made->final[0]); k++)
        free(made->final[k]);
    free(made);
    free(uid);
    return rc;
}
