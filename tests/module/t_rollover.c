/*
 * t_rollover.c — evertoken's credential rollover (docs/rollover.md), driven
 * through PKCS#11 only: a pending key pair (CKA_EVERTOKEN_PENDING) is not
 * found but signs through its handles; a certificate created with
 * CKA_EVERTOKEN_COMMIT_ROLLOVER swaps the credential atomically; a
 * certificate for another key is refused with nothing changed; the vendor
 * interface rolls back and purges (grace period driven by
 * EVERTOKEN_FAKE_TIME); another process sees the swap at its next lookup and
 * never a half state, and keeps signing with a retired key it held until
 * the purge. evertoken-only: every test skips on other modules.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "conf.h"
#include "evertoken_ext.h"

static const CK_BBOOL yes = CK_TRUE;
static const CK_BYTE CRED[] = "renew-me";
#define CRED_LEN (sizeof(CRED) - 1)
static const unsigned char p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};

struct der {
    unsigned char *p;
    int n;
};

struct pair {
    CK_OBJECT_HANDLE pub, priv;
};

static void
der_free(struct der *d)
{
    OPENSSL_free(d->p);
    d->p = NULL;
    d->n = 0;
}

static const ET_FUNCTION_LIST *
ext(void)
{
    CK_INTERFACE_PTR i = NULL;

    assert_non_null(conf_get_interface);
    assert_ok(conf_get_interface((CK_UTF8CHAR_PTR)ET_VENDOR_INTERFACE, NULL, &i, 0));
    assert_non_null(i);
    return i->pFunctionList;
}

static CK_RV
gen_pair(CK_SESSION_HANDLE h, int pending, const char *label, struct pair *out)
{
    CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pubt[] = {
        {CKA_TOKEN, (void *)&yes, sizeof(yes)},
        {CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid)},
        {CKA_VERIFY, (void *)&yes, sizeof(yes)},
        {CKA_ID, (void *)CRED, CRED_LEN},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_EVERTOKEN_PENDING, (void *)&yes, sizeof(yes)},
    };
    CK_ATTRIBUTE privt[] = {
        {CKA_TOKEN, (void *)&yes, sizeof(yes)},     {CKA_PRIVATE, (void *)&yes, sizeof(yes)},
        {CKA_SENSITIVE, (void *)&yes, sizeof(yes)}, {CKA_SIGN, (void *)&yes, sizeof(yes)},
        {CKA_ID, (void *)CRED, CRED_LEN},           {CKA_LABEL, (void *)label, strlen(label)},
    };

    return F->C_GenerateKeyPair(h, &m, pubt, pending ? 6 : 5, privt, 6, &out->pub, &out->priv);
}

/* The P-256 public key of public key object O. */
static EVP_PKEY *
pubkey_of(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o)
{
    unsigned char pt[80];
    CK_ATTRIBUTE a = {CKA_EC_POINT, pt, sizeof(pt)};
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *prm;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pk = NULL;

    assert_ok(F->C_GetAttributeValue(h, o, &a, 1));
    /* DER OCTET STRING (04 41) around the uncompressed point. */
    assert_int_equal(a.ulValueLen, 67);
    assert_int_equal(pt[0], 0x04);
    assert_non_null(b);
    assert_int_equal(
        OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pt + 2, 65), 1);
    prm = OSSL_PARAM_BLD_to_param(b);
    assert_non_null(prm);
    assert_int_equal(EVP_PKEY_fromdata_init(c), 1);
    assert_int_equal(EVP_PKEY_fromdata(c, &pk, EVP_PKEY_PUBLIC_KEY, prm), 1);
    OSSL_PARAM_free(prm);
    OSSL_PARAM_BLD_free(b);
    EVP_PKEY_CTX_free(c);
    return pk;
}

/* A certificate for KEY issued by a throw-away CA. */
static struct der
make_cert(EVP_PKEY *key, const char *cn)
{
    EVP_PKEY *ca = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *sub = X509_NAME_new(), *iss = X509_NAME_new();
    struct der d = {NULL, 0};

    assert_non_null(ca);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(rand() & 0x7fffffff)), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 30L * 86400);
    X509_NAME_add_entry_by_txt(sub, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_NAME_add_entry_by_txt(iss, "CN", MBSTRING_ASC, (const unsigned char *)"test CA", -1, -1,
                               0);
    assert_int_equal(X509_set_subject_name(x, sub), 1);
    assert_int_equal(X509_set_issuer_name(x, iss), 1);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    assert_true(X509_sign(x, ca, EVP_sha256()) > 0);
    d.n = i2d_X509(x, &d.p);
    assert_true(d.n > 0);
    X509_NAME_free(sub);
    X509_NAME_free(iss);
    X509_free(x);
    EVP_PKEY_free(ca);
    return d;
}

static CK_RV
store_cert(CK_SESSION_HANDLE h, const struct der *c, int commit, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    const unsigned char *p = c->p;
    X509 *x = d2i_X509(NULL, &p, c->n);
    unsigned char *subj = NULL;
    int sn;
    CK_RV rv;

    assert_non_null(x);
    sn = i2d_X509_NAME(X509_get_subject_name(x), &subj);
    assert_true(sn > 0);
    {
        CK_ATTRIBUTE t[] = {
            {CKA_CLASS, &cls, sizeof(cls)},
            {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
            {CKA_TOKEN, (void *)&yes, sizeof(yes)},
            {CKA_ID, (void *)CRED, CRED_LEN},
            {CKA_LABEL, "mycert", 6},
            {CKA_SUBJECT, subj, (CK_ULONG)sn},
            {CKA_VALUE, c->p, (CK_ULONG)c->n},
            {CKA_EVERTOKEN_COMMIT_ROLLOVER, (void *)&yes, sizeof(yes)},
        };
        rv = F->C_CreateObject(h, t, commit ? 8 : 7, out);
    }
    OPENSSL_free(subj);
    X509_free(x);
    return rv;
}

/* The objects of class CLS with CKA_ID = CRED (asserts at most MAX). */
static CK_ULONG
find_cred(CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *out)
{
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, (void *)CRED, CRED_LEN}};
    CK_OBJECT_HANDLE tmp[8];
    CK_ULONG n = conf_find(h, t, 2, tmp, 8, 8);

    if (out != NULL && n > 0)
        *out = tmp[0];
    return n;
}

/* Sign with PRIV (ECDSA over SHA-256) and verify with PUB in OpenSSL. */
static CK_RV
sign_verify(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE priv, EVP_PKEY *pub)
{
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    unsigned char msg[] = "renewal request", sig[64], *der = NULL;
    CK_ULONG sl = sizeof(sig);
    ECDSA_SIG *es;
    EVP_MD_CTX *md;
    int dl, ok;
    CK_RV rv;

    rv = F->C_SignInit(h, &m, priv);
    if (rv != CKR_OK)
        return rv;
    rv = F->C_Sign(h, msg, sizeof(msg), sig, &sl);
    if (rv != CKR_OK)
        return rv;
    if (sl != 64)
        return CKR_GENERAL_ERROR;
    es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
    dl = i2d_ECDSA_SIG(es, &der);
    md = EVP_MD_CTX_new();
    ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1 &&
         EVP_DigestVerify(md, der, (size_t)dl, msg, sizeof(msg)) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    return ok ? CKR_OK : CKR_SIGNATURE_INVALID;
}

/* CKA_VALUE of certificate O into BUF (size *N); CK_RV of the read. */
static CK_RV
cert_value(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, unsigned char *buf, CK_ULONG *n)
{
    CK_ATTRIBUTE a = {CKA_VALUE, buf, *n};
    CK_RV rv = F->C_GetAttributeValue(h, o, &a, 1);

    *n = a.ulValueLen;
    return rv;
}

static EVP_PKEY *
der_pubkey(const unsigned char *p, long n)
{
    X509 *x = d2i_X509(NULL, &p, n);
    EVP_PKEY *k = x != NULL ? X509_get_pubkey(x) : NULL;

    X509_free(x);
    return k;
}

/* The old credential: an active pair and its certificate. */
struct cred {
    struct pair kp;
    CK_OBJECT_HANDLE cert;
    struct der certder;
    EVP_PKEY *pub;
};

static void
setup_old(CK_SESSION_HANDLE h, struct cred *c)
{
    assert_ok(gen_pair(h, 0, "mykey", &c->kp));
    c->pub = pubkey_of(h, c->kp.pub);
    c->certder = make_cert(c->pub, "old");
    assert_ok(store_cert(h, &c->certder, 0, &c->cert));
}

static void
cred_free(struct cred *c)
{
    der_free(&c->certder);
    EVP_PKEY_free(c->pub);
}

/* Pending pair + a certificate for it. */
static void
setup_new(CK_SESSION_HANDLE h, struct cred *c)
{
    assert_ok(gen_pair(h, 1, "tmp", &c->kp));
    c->pub = pubkey_of(h, c->kp.pub);
    c->certder = make_cert(c->pub, "new");
    c->cert = CK_INVALID_HANDLE;
}

static void
assert_current(CK_SESSION_HANDLE h, const struct cred *c)
{
    CK_OBJECT_HANDLE o;
    unsigned char v[2048], lab[32];
    CK_ULONG n = sizeof(v);
    CK_ATTRIBUTE a = {CKA_LABEL, lab, sizeof(lab)};

    assert_int_equal(find_cred(h, CKO_PRIVATE_KEY, &o), 1);
    assert_int_equal(o, c->kp.priv);
    assert_ok(F->C_GetAttributeValue(h, o, &a, 1));
    assert_int_equal(a.ulValueLen, 5);
    assert_memory_equal(lab, "mykey", 5); /* the credential's label */
    assert_ok(sign_verify(h, o, c->pub));
    assert_int_equal(find_cred(h, CKO_PUBLIC_KEY, &o), 1);
    assert_int_equal(o, c->kp.pub);
    assert_int_equal(find_cred(h, CKO_CERTIFICATE, &o), 1);
    assert_ok(cert_value(h, o, v, &n));
    assert_int_equal(n, (CK_ULONG)c->certder.n);
    assert_memory_equal(v, c->certder.p, n);
}

static CK_SESSION_HANDLE
user_session(void)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);

    conf_login_user(h);
    return h;
}

static void
t_rollover_pending(void **state)
{
    CK_SESSION_HANDLE h;
    struct cred old, nw;
    CK_OBJECT_HANDLE all[64];
    CK_ULONG n;

    (void)state;
    if (!is_evertoken())
        skip();
    h = user_session();
    setup_old(h, &old);
    setup_new(h, &nw);
    /* Not found, by id or by anything; the old credential is what is seen. */
    assert_current(h, &old);
    n = conf_find(h, NULL, 0, all, 64, 7);
    for (CK_ULONG i = 0; i < n; i++) {
        assert_int_not_equal(all[i], nw.kp.priv);
        assert_int_not_equal(all[i], nw.kp.pub);
    }
    /* But its handles work: it signs (a CSR or renewal request). */
    assert_ok(sign_verify(h, nw.kp.priv, nw.pub));
    /* A search asking for pending objects finds exactly the pending pair
     * (how a helper restarted during a renewal gets back to it). */
    {
        CK_ATTRIBUTE pt[] = {{CKA_EVERTOKEN_PENDING, (void *)&yes, sizeof(yes)},
                             {CKA_ID, (void *)CRED, CRED_LEN}};
        CK_ATTRIBUTE bad = {CKA_EVERTOKEN_PENDING, (void *)&yes, 4};

        n = conf_find(h, pt, 2, all, 64, 7);
        assert_int_equal(n, 2);
        assert_true((all[0] == nw.kp.priv && all[1] == nw.kp.pub) ||
                    (all[0] == nw.kp.pub && all[1] == nw.kp.priv));
        assert_rv(F->C_FindObjectsInit(h, &bad, 1), CKR_ATTRIBUTE_VALUE_INVALID);
    }
    /* The vendor flag was not stored. */
    {
        CK_BBOOL b;
        CK_ATTRIBUTE a = {CKA_EVERTOKEN_PENDING, &b, sizeof(b)};

        assert_rv(F->C_GetAttributeValue(h, nw.kp.pub, &a, 1), CKR_ATTRIBUTE_TYPE_INVALID);
    }
    /* A pending pair needs the credential's CKA_ID and token objects. */
    {
        CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
        CK_ATTRIBUTE pubt[] = {{CKA_TOKEN, (void *)&yes, sizeof(yes)},
                               {CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid)},
                               {CKA_EVERTOKEN_PENDING, (void *)&yes, sizeof(yes)}};
        CK_ATTRIBUTE privt[] = {{CKA_TOKEN, (void *)&yes, sizeof(yes)},
                                {CKA_SIGN, (void *)&yes, sizeof(yes)}};
        CK_OBJECT_HANDLE a, b;

        assert_rv(F->C_GenerateKeyPair(h, &m, pubt, 3, privt, 2, &a, &b), CKR_TEMPLATE_INCOMPLETE);
    }
    cred_free(&old);
    cred_free(&nw);
}

static void
t_rollover_commit(void **state)
{
    CK_SESSION_HANDLE h;
    struct cred old, nw;
    CK_ATTRIBUTE a = {CKA_LABEL, NULL, 0};

    (void)state;
    if (!is_evertoken())
        skip();
    h = user_session();
    setup_old(h, &old);
    setup_new(h, &nw);
    assert_ok(store_cert(h, &nw.certder, 1, &nw.cert));
    assert_current(h, &nw);
    /* The old objects are gone for applications. */
    assert_rv(F->C_GetAttributeValue(h, old.kp.priv, &a, 1), CKR_OBJECT_HANDLE_INVALID);
    assert_rv(F->C_GetAttributeValue(h, old.cert, &a, 1), CKR_OBJECT_HANDLE_INVALID);
    /* A second commit without a new pending pair is refused. */
    {
        CK_OBJECT_HANDLE x;

        assert_rv(store_cert(h, &nw.certder, 1, &x), CKR_TEMPLATE_INCONSISTENT);
    }
    assert_current(h, &nw);
    cred_free(&old);
    cred_free(&nw);
}

static void
t_rollover_mismatch(void **state)
{
    CK_SESSION_HANDLE h;
    struct cred old, nw;
    EVP_PKEY *other = EVP_EC_gen("P-256");
    struct der wrong;
    CK_OBJECT_HANDLE x;

    (void)state;
    if (!is_evertoken())
        skip();
    h = user_session();
    setup_old(h, &old);
    setup_new(h, &nw);
    wrong = make_cert(other, "new");
    assert_rv(store_cert(h, &wrong, 1, &x), CKR_TEMPLATE_INCONSISTENT);
    assert_rv(store_cert(h, &old.certder, 1, &x), CKR_TEMPLATE_INCONSISTENT);
    /* Nothing changed: old credential current, pending pair still signs,
     * and the right certificate still commits. */
    assert_current(h, &old);
    assert_ok(sign_verify(h, nw.kp.priv, nw.pub));
    /* An R/O session cannot commit. */
    {
        CK_SESSION_HANDLE ro = conf_open(0);

        assert_rv(store_cert(ro, &nw.certder, 1, &x), CKR_SESSION_READ_ONLY);
        assert_ok(F->C_CloseSession(ro));
    }
    assert_ok(store_cert(h, &nw.certder, 1, &nw.cert));
    assert_current(h, &nw);
    der_free(&wrong);
    EVP_PKEY_free(other);
    cred_free(&old);
    cred_free(&nw);
}

static void
t_rollover_rollback(void **state)
{
    const ET_FUNCTION_LIST *et;
    CK_SESSION_HANDLE h;
    struct cred old, nw;
    CK_ULONG n = 99;

    (void)state;
    if (!is_evertoken())
        skip();
    et = ext();
    assert_true(et->version.major == 1 && et->version.minor >= 1);
    h = user_session();
    setup_old(h, &old);
    /* Nothing committed yet: nothing to roll back. */
    assert_rv(et->ET_RolloverRollback(h, CRED, CRED_LEN), CKR_OBJECT_HANDLE_INVALID);
    setup_new(h, &nw);
    assert_ok(store_cert(h, &nw.certder, 1, &nw.cert));
    assert_ok(et->ET_RolloverRollback(h, CRED, CRED_LEN));
    assert_current(h, &old);
    assert_rv(et->ET_RolloverRollback(h, CRED, CRED_LEN), CKR_OBJECT_HANDLE_INVALID);
    assert_current(h, &old);
    /* An abandoned renewal: the pending pair is discarded. */
    cred_free(&nw);
    setup_new(h, &nw);
    assert_ok(et->ET_RolloverDiscard(h, CRED, CRED_LEN, &n));
    assert_int_equal(n, 2);
    assert_rv(sign_verify(h, nw.kp.priv, nw.pub), CKR_KEY_HANDLE_INVALID);
    assert_current(h, &old);
    cred_free(&old);
    cred_free(&nw);
}

static void
set_fake_time(time_t t)
{
    char v[32];

    snprintf(v, sizeof(v), "%lld", (long long)t);
    assert_int_equal(setenv("EVERTOKEN_FAKE_TIME", v, 1), 0);
}

static void
t_rollover_purge(void **state)
{
    const ET_FUNCTION_LIST *et;
    CK_SESSION_HANDLE h;
    struct cred old, nw;
    char v[32];
    CK_ULONG n = 99, vl = sizeof(v);
    time_t now = time(NULL);

    (void)state;
    if (!is_evertoken())
        skip();
    et = ext();
    h = user_session();
    assert_ok(et->ET_GetSetting(E.slot, ET_SETTING_ROLLOVER_GRACE, v, &vl));
    assert_string_equal(v, "604800"); /* 7 days by default */
    setup_old(h, &old);
    setup_new(h, &nw);
    set_fake_time(now);
    assert_ok(store_cert(h, &nw.certder, 1, &nw.cert)); /* retired "now" */
    /* Within the grace period nothing goes, and a rollback stays possible. */
    set_fake_time(now + 6 * 86400);
    assert_ok(et->ET_PurgeRetired(h, &n));
    assert_int_equal(n, 0);
    assert_ok(et->ET_RolloverRollback(h, CRED, CRED_LEN));
    assert_current(h, &old);
    /* Roll over again; after the grace period C_Login purges. */
    cred_free(&nw);
    setup_new(h, &nw);
    set_fake_time(now);
    assert_ok(store_cert(h, &nw.certder, 1, &nw.cert));
    set_fake_time(now + 7 * 86400);
    assert_ok(F->C_Logout(h));
    conf_login_user(h);
    assert_ok(et->ET_PurgeRetired(h, &n));
    assert_int_equal(n, 0); /* already done by the login */
    assert_rv(et->ET_RolloverRollback(h, CRED, CRED_LEN), CKR_OBJECT_HANDLE_INVALID);
    assert_current(h, &nw);
    /* A shorter grace, set through the vendor interface. */
    assert_rv(et->ET_SetSetting(h, ET_SETTING_ROLLOVER_GRACE, "-1"), CKR_ARGUMENTS_BAD);
    assert_ok(et->ET_SetSetting(h, ET_SETTING_ROLLOVER_GRACE, "60"));
    vl = sizeof(v);
    assert_ok(et->ET_GetSetting(E.slot, ET_SETTING_ROLLOVER_GRACE, v, &vl));
    assert_string_equal(v, "60");
    cred_free(&old);
    old = nw;
    setup_new(h, &nw);
    set_fake_time(now);
    assert_ok(store_cert(h, &nw.certder, 1, &nw.cert));
    set_fake_time(now + 60);
    assert_ok(et->ET_PurgeRetired(h, &n));
    assert_int_equal(n, 3); /* old pair and old certificate */
    assert_current(h, &nw);
    unsetenv("EVERTOKEN_FAKE_TIME");
    cred_free(&old);
    cred_free(&nw);
}

/* ---- another process sees the swap, never a half state ----------------- */

static int
pipe_send(int fd)
{
    char c = 'x';
    return write(fd, &c, 1) == 1 ? 0 : -1;
}

static int
pipe_wait(int fd)
{
    char c;
    return read(fd, &c, 1) == 1 ? 0 : -1;
}

/* One snapshot of the credential: exactly one private key, one public key
 * and one certificate, the certificate's key being the public key. Returns
 * 0 and whether the certificate is INITIAL, 1 to retry (a handle went away
 * between the search and the read: a newer state exists), -1 on a half
 * state or error. */
static int
observe(CK_SESSION_HANDLE h, const unsigned char *initial, CK_ULONG ilen, int *changed,
        CK_OBJECT_HANDLE *priv, EVP_PKEY **certkey)
{
    CK_ATTRIBUTE t = {CKA_ID, (void *)CRED, CRED_LEN};
    CK_OBJECT_HANDLE o[8], pub = 0, cert = 0;
    CK_ULONG n = 0, np = 0, nq = 0, nc = 0;
    unsigned char v[2048];
    CK_ULONG vl = sizeof(v);
    EVP_PKEY *pk = NULL, *ck;
    int r = -1;

    if (F->C_FindObjectsInit(h, &t, 1) != CKR_OK || F->C_FindObjects(h, o, 8, &n) != CKR_OK ||
        F->C_FindObjectsFinal(h) != CKR_OK)
        return -1;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_OBJECT_CLASS cls;
        CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};
        CK_RV rv = F->C_GetAttributeValue(h, o[i], &a, 1);

        if (rv == CKR_OBJECT_HANDLE_INVALID)
            return 1;
        if (rv != CKR_OK)
            return -1;
        if (cls == CKO_PRIVATE_KEY) {
            np++;
            *priv = o[i];
        } else if (cls == CKO_PUBLIC_KEY) {
            nq++;
            pub = o[i];
        } else if (cls == CKO_CERTIFICATE) {
            nc++;
            cert = o[i];
        }
    }
    if (np != 1 || nq != 1 || nc != 1) {
        fprintf(stderr, "child: half state: %lu private, %lu public, %lu certificates\n",
                (unsigned long)np, (unsigned long)nq, (unsigned long)nc);
        return -1;
    }
    {
        CK_RV rv = cert_value(h, cert, v, &vl);
        if (rv == CKR_OBJECT_HANDLE_INVALID)
            return 1;
        if (rv != CKR_OK)
            return -1;
    }
    {
        unsigned char pt[80];
        CK_ATTRIBUTE a = {CKA_EC_POINT, pt, sizeof(pt)};
        CK_RV rv = F->C_GetAttributeValue(h, pub, &a, 1);
        OSSL_PARAM_BLD *b;
        OSSL_PARAM *prm;
        EVP_PKEY_CTX *c;

        if (rv == CKR_OBJECT_HANDLE_INVALID)
            return 1;
        if (rv != CKR_OK || a.ulValueLen != 67)
            return -1;
        b = OSSL_PARAM_BLD_new();
        OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
        OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pt + 2, 65);
        prm = OSSL_PARAM_BLD_to_param(b);
        c = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        if (EVP_PKEY_fromdata_init(c) != 1 ||
            EVP_PKEY_fromdata(c, &pk, EVP_PKEY_PUBLIC_KEY, prm) != 1)
            pk = NULL;
        OSSL_PARAM_free(prm);
        OSSL_PARAM_BLD_free(b);
        EVP_PKEY_CTX_free(c);
    }
    ck = der_pubkey(v, (long)vl);
    if (pk != NULL && ck != NULL && EVP_PKEY_eq(pk, ck) == 1) {
        r = 0;
        *changed = !(vl == ilen && memcmp(v, initial, vl) == 0);
        *certkey = ck;
        ck = NULL;
    } else {
        fprintf(stderr, "child: half state: certificate and public key differ\n");
    }
    EVP_PKEY_free(pk);
    EVP_PKEY_free(ck);
    return r;
}

static int
observer_child(int ready, int go)
{
    CK_SESSION_HANDLE h;
    unsigned char initial[2048];
    CK_ULONG ilen = 0;
    time_t deadline;
    int first = 1;

    if (conf_initialize() != CKR_OK)
        return 2;
    if (F->C_OpenSession(E.slot, CKF_SERIAL_SESSION, NULL, NULL, &h) != CKR_OK)
        return 3;
    if (F->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)CONF_USER_PIN, strlen(CONF_USER_PIN)) != CKR_OK)
        return 4;
    deadline = time(NULL) + 60;
    while (time(NULL) < deadline) {
        CK_OBJECT_HANDLE priv = 0;
        EVP_PKEY *ck = NULL;
        int changed = 0, r;

        r = observe(h, initial, ilen, &changed, &priv, &ck);
        if (r < 0)
            return 5;
        if (r > 0)
            continue;
        if (first) {
            /* Remember the old certificate, then let the parent commit. */
            CK_OBJECT_HANDLE c;
            CK_ATTRIBUTE t[] = {{CKA_ID, (void *)CRED, CRED_LEN}};
            CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
            CK_ATTRIBUTE tc[] = {t[0], {CKA_CLASS, &cls, sizeof(cls)}};
            CK_ULONG n = 0;

            ilen = sizeof(initial);
            if (F->C_FindObjectsInit(h, tc, 2) != CKR_OK ||
                F->C_FindObjects(h, &c, 1, &n) != CKR_OK || F->C_FindObjectsFinal(h) != CKR_OK ||
                n != 1 || cert_value(h, c, initial, &ilen) != CKR_OK)
                return 6;
            first = 0;
            EVP_PKEY_free(ck);
            if (pipe_send(ready) != 0)
                return 7;
            continue;
        }
        if (changed) {
            /* The new credential, and it works: no restart, no error. */
            CK_RV rv = sign_verify(h, priv, ck);

            EVP_PKEY_free(ck);
            if (rv != CKR_OK) {
                fprintf(stderr, "child: new key does not sign: %s\n", conf_rv_name(rv));
                return 8;
            }
            (void)pipe_wait(go);
            return F->C_Finalize(NULL) == CKR_OK ? 0 : 9;
        }
        EVP_PKEY_free(ck);
    }
    return 10;
}

static void
t_rollover_other_process(void **state)
{
    int ready[2], go[2], st = 0;
    CK_SESSION_HANDLE h;
    struct cred old, nw;
    pid_t pid;

    (void)state;
    if (!is_evertoken())
        skip();
    h = user_session();
    setup_old(h, &old);
    /* The child starts from a process that never initialised the module. */
    assert_ok(F->C_Finalize(NULL));
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        _exit(observer_child(ready[1], go[0]));
    }
    E.child = pid;
    close(ready[1]);
    close(go[0]);
    assert_ok(conf_initialize());
    h = user_session();
    /* The child is looking at the old credential in a tight loop. */
    assert_int_equal(pipe_wait(ready[0]), 0);
    setup_new(h, &nw);
    assert_ok(store_cert(h, &nw.certder, 1, &nw.cert));
    assert_int_equal(pipe_send(go[1]), 0);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    E.child = 0;
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    close(ready[0]);
    close(go[1]);
    assert_current(h, &nw);
    cred_free(&old);
    cred_free(&nw);
}

/* ---- a key held across another process's rollover ----------------------- */

/* The private keys under CRED (at most 8) into O; -1 on error. */
static int
child_find_keys(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *o)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, (void *)CRED, CRED_LEN}};
    CK_ULONG n = 0;

    if (F->C_FindObjectsInit(h, t, 2) != CKR_OK || F->C_FindObjects(h, o, 8, &n) != CKR_OK ||
        F->C_FindObjectsFinal(h) != CKR_OK)
        return -1;
    return (int)n;
}

/* The holder also reads many other objects: with the cache bounded
 * (module.evertoken_cache16) its key is evicted before another process's
 * rollover retires it, and the next use reads it again by id, as retired
 * (cache_fetch_inlock); under the default bound the key stays cached and
 * the outcome must be the same. */

#define NDATA 60

static void
make_data(CK_SESSION_HANDLE h)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    for (int i = 0; i < NDATA; i++) {
        char lab[16];
        CK_OBJECT_HANDLE o;
        snprintf(lab, sizeof(lab), "d%d", i);
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                            {CKA_TOKEN, (void *)&yes, sizeof(yes)},
                            {CKA_LABEL, lab, strlen(lab)},
                            {CKA_VALUE, "x", 1}};
        assert_ok(F->C_CreateObject(h, t, 4, &o));
    }
}

/* Touch every data object: the key becomes the least recently used. */
static int
touch_data(CK_SESSION_HANDLE h)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}};
    CK_OBJECT_HANDLE o[NDATA + 8];
    CK_ULONG n = 0;

    if (F->C_FindObjectsInit(h, t, 1) != CKR_OK ||
        F->C_FindObjects(h, o, NDATA + 8, &n) != CKR_OK || F->C_FindObjectsFinal(h) != CKR_OK)
        return -1;
    for (CK_ULONG i = 0; i < n; i++) {
        unsigned char v[8];
        CK_ATTRIBUTE a = {CKA_VALUE, v, sizeof(v)};
        if (F->C_GetAttributeValue(h, o[i], &a, 1) != CKR_OK)
            return -1;
    }
    return (int)n;
}

/* A server's view: it found the key and signs with it. After the parent's
 * rollover it no longer finds that key, and the handle gives nothing but
 * signatures; after the purge the handle is gone. */
static int
holder_child(int ready, int go, EVP_PKEY *oldpub)
{
    CK_SESSION_HANDLE h;
    CK_OBJECT_HANDLE o[8], key;
    CK_ATTRIBUTE a = {CKA_LABEL, NULL, 0};
    CK_RV rv;

    if (conf_initialize() != CKR_OK ||
        F->C_OpenSession(E.slot, CKF_SERIAL_SESSION, NULL, NULL, &h) != CKR_OK ||
        F->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)CONF_USER_PIN, strlen(CONF_USER_PIN)) != CKR_OK)
        return 2;
    if (child_find_keys(h, o) != 1 || sign_verify(h, o[0], oldpub) != CKR_OK)
        return 3;
    key = o[0];
    /* Other work: the key becomes the least recently used object. */
    if (touch_data(h) != NDATA || touch_data(h) != NDATA)
        return 11;
    if (pipe_send(ready) != 0 || pipe_wait(go) != 0)
        return 4;
    /* Committed by the parent: the search (a sync) finds only the new key. */
    if (child_find_keys(h, o) != 1 || o[0] == key)
        return 5;
    rv = sign_verify(h, key, oldpub);
    if (rv != CKR_OK) {
        fprintf(stderr, "child: the retired key held does not sign: %s\n", conf_rv_name(rv));
        return 6;
    }
    if (F->C_GetAttributeValue(h, key, &a, 1) != CKR_OBJECT_HANDLE_INVALID)
        return 7;
    if (pipe_send(ready) != 0 || pipe_wait(go) != 0)
        return 8;
    /* Purged by the parent: the handle is gone. */
    (void)child_find_keys(h, o);
    rv = sign_verify(h, key, oldpub);
    if (rv != CKR_KEY_HANDLE_INVALID) {
        fprintf(stderr, "child: the purged key: %s\n", conf_rv_name(rv));
        return 9;
    }
    return F->C_Finalize(NULL) == CKR_OK ? 0 : 10;
}

static void
t_rollover_held_key(void **state)
{
    int ready[2], go[2], st = 0;
    CK_SESSION_HANDLE h;
    struct cred old, nw;
    CK_ULONG n = 0;
    pid_t pid;

    (void)state;
    if (!is_evertoken())
        skip();
    h = user_session();
    setup_old(h, &old);
    make_data(h);
    assert_ok(F->C_Finalize(NULL));
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        _exit(holder_child(ready[1], go[0], old.pub));
    }
    E.child = pid;
    close(ready[1]);
    close(go[0]);
    assert_ok(conf_initialize());
    h = user_session();
    assert_int_equal(pipe_wait(ready[0]), 0);
    setup_new(h, &nw);
    set_fake_time(time(NULL));
    assert_ok(store_cert(h, &nw.certder, 1, &nw.cert));
    assert_int_equal(pipe_send(go[1]), 0);
    assert_int_equal(pipe_wait(ready[0]), 0);
    set_fake_time(time(NULL) + 8 * 86400); /* past the default grace period */
    assert_ok(ext()->ET_PurgeRetired(h, &n));
    unsetenv("EVERTOKEN_FAKE_TIME");
    assert_int_equal(n, 3);
    assert_int_equal(pipe_send(go[1]), 0);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    E.child = 0;
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    close(ready[0]);
    close(go[1]);
    assert_current(h, &nw);
    cred_free(&old);
    cred_free(&nw);
}

struct conf_group
conf_rollover_tests(void)
{
    static const struct CMUnitTest tests[] = {
        CONF_TEST_TOKEN(t_rollover_pending),  CONF_TEST_TOKEN(t_rollover_commit),
        CONF_TEST_TOKEN(t_rollover_mismatch), CONF_TEST_TOKEN(t_rollover_rollback),
        CONF_TEST_TOKEN(t_rollover_purge),    CONF_TEST_TOKEN(t_rollover_other_process),
        CONF_TEST_TOKEN(t_rollover_held_key),
    };
    struct conf_group g = {"rollover", tests, sizeof(tests) / sizeof(tests[0])};
    return g;
}
