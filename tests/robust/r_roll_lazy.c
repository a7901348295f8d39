/*
 * r_roll_lazy.c — a credential rollover through PKCS#11 on a partial
 * object cache (module/rollover.c, keystore schema 7: the rollover reads
 * only the rows it may touch).
 *
 * A token with 120 data objects and a credential (an EC key pair with
 * CKA_ID "cred") is reopened by a fresh C_Initialize and logged in. A new
 * pending pair for the credential is generated. Committing the rollover
 * with a certificate for another key, or for a credential that has no
 * pending key, is refused (CKR_TEMPLATE_INCONSISTENT) and leaves the cache
 * partial: the module checked the pending keys through ks_find_pending,
 * without loading the token (checked through the module's own state,
 * module/mod_int.h). The commit with the pending key's certificate then
 * swaps the credential: searches by CKA_ID find the new pair and the
 * certificate, still without a full load, and the old pair is gone from
 * searches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "evertoken_ext.h"
#include "rmod.h"

#define NDATA 120

static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static CK_SLOT_ID slot;

static struct mod_token *
token(void)
{
    return r_mod_token(slot);
}

static void
assert_partial(const char *when)
{
    struct mod_token *t = token();

    R_ASSERT(t->partial && !t->loaded, "%s: partial %d loaded %d objects %zu", when, t->partial,
             t->loaded, t->nobjs);
}

/* An EC pair for credential ID, pending or not: handles into *PUB, *PRIV. */
static void
gen_pair(CK_SESSION_HANDLE s, const char *id, int pending, CK_OBJECT_HANDLE *pub,
         CK_OBJECT_HANDLE *priv)
{
    CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE pubt[] = {
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_ID, (void *)id, strlen(id)},
        {CKA_EC_PARAMS, (void *)p256, sizeof(p256)},
        {CKA_EVERTOKEN_PENDING, &yes, sizeof(yes)},
    };
    CK_ATTRIBUTE privt[] = {
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SIGN, &yes, sizeof(yes)},
        {CKA_ID, (void *)id, strlen(id)},
    };

    R_CK(R->C_GenerateKeyPair(s, &m, pubt, pending ? 5 : 4, privt, 4, pub, priv), CKR_OK);
}

/* The P-256 public key of public key object H. */
static EVP_PKEY *
pubkey_of(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    unsigned char pt[80];
    CK_ATTRIBUTE a = {CKA_EC_POINT, pt, sizeof(pt)};
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    OSSL_PARAM *prm = NULL;
    EVP_PKEY *pk = NULL;

    R_CK(R->C_GetAttributeValue(s, h, &a, 1), CKR_OK);
    /* DER OCTET STRING (04 41) around the uncompressed point. */
    R_ASSERT(a.ulValueLen == 67 && pt[0] == 0x04, "CKA_EC_POINT of %lu", (unsigned long)h);
    R_ASSERT(b != NULL && c != NULL, "OpenSSL contexts");
    R_ASSERT(OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
                 OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pt + 2, 65) == 1 &&
                 (prm = OSSL_PARAM_BLD_to_param(b)) != NULL && EVP_PKEY_fromdata_init(c) == 1 &&
                 EVP_PKEY_fromdata(c, &pk, EVP_PKEY_PUBLIC_KEY, prm) == 1,
             "public key from CKA_EC_POINT");
    OSSL_PARAM_free(prm);
    OSSL_PARAM_BLD_free(b);
    EVP_PKEY_CTX_free(c);
    return pk;
}

/* Create a token certificate for KEY with CKA_ID ID, committing the
 * rollover of ID (CKA_EVERTOKEN_COMMIT_ROLLOVER); the result. */
static CK_RV
commit_cert(CK_SESSION_HANDLE s, const char *id, EVP_PKEY *key)
{
    EVP_PKEY *ca = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    unsigned char *der = NULL, *subj = NULL;
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_BBOOL yes = CK_TRUE;
    CK_OBJECT_HANDLE h = 0;
    int n, sn;
    CK_RV rv;

    R_ASSERT(ca != NULL && x != NULL && name != NULL, "OpenSSL objects");
    R_ASSERT(X509_set_version(x, X509_VERSION_3) == 1 &&
                 ASN1_INTEGER_set(X509_get_serialNumber(x), 7) == 1 &&
                 X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL &&
                 X509_gmtime_adj(X509_getm_notAfter(x), 86400) != NULL &&
                 X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)id, -1,
                                            -1, 0) == 1 &&
                 X509_set_subject_name(x, name) == 1 && X509_set_issuer_name(x, name) == 1 &&
                 X509_set_pubkey(x, key) == 1 && X509_sign(x, ca, EVP_sha256()) > 0,
             "certificate");
    n = i2d_X509(x, &der);
    sn = i2d_X509_NAME(name, &subj);
    R_ASSERT(n > 0 && sn > 0, "DER");
    {
        CK_ATTRIBUTE t[] = {
            {CKA_CLASS, &cls, sizeof(cls)},
            {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
            {CKA_TOKEN, &yes, sizeof(yes)},
            {CKA_ID, (void *)id, strlen(id)},
            {CKA_SUBJECT, subj, (CK_ULONG)sn},
            {CKA_VALUE, der, (CK_ULONG)n},
            {CKA_EVERTOKEN_COMMIT_ROLLOVER, &yes, sizeof(yes)},
        };

        rv = R->C_CreateObject(s, t, 7, &h);
    }
    OPENSSL_free(der);
    OPENSSL_free(subj);
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(ca);
    return rv;
}

/* The objects with CKA_ID ID and class CLS (up to 4) into OUT; the count. */
static long
find_cred(CK_SESSION_HANDLE s, const char *id, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE out[4])
{
    CK_ATTRIBUTE a[2] = {{CKA_ID, (void *)id, strlen(id)}, {CKA_CLASS, &cls, sizeof(cls)}};
    CK_ULONG n = 0;

    R_CK(R->C_FindObjectsInit(s, a, 2), CKR_OK);
    R_CK(R->C_FindObjects(s, out, 4, &n), CKR_OK);
    R_CK(R->C_FindObjectsFinal(s), CKR_OK);
    return (long)n;
}

int
main(void)
{
    char dir[256], label[32];
    CK_OBJECT_HANDLE old_pub, old_priv, new_pub, new_priv, h, hs[4];
    CK_SESSION_HANDLE s;
    EVP_PKEY *pending, *other;

    r_setup(dir, "roll_lazy");
    r_init();
    slot = r_make_token();
    s = r_session(slot, R_USER_PIN);
    for (int i = 0; i < NDATA; i++) {
        snprintf(label, sizeof(label), "data-%d", i);
        R_CK(r_create_data(s, label, label, strlen(label), i % 4 == 0, &h), CKR_OK);
    }
    gen_pair(s, "cred", 0, &old_pub, &old_priv);
    R_CK(R->C_Finalize(NULL), CKR_OK);

    /* A fresh start and a login: nothing loaded in full. */
    r_init();
    s = r_session(slot, R_USER_PIN);
    R_ASSERT(find_cred(s, "cred", CKO_PRIVATE_KEY, hs) == 1 && hs[0] == old_priv, "old key");
    assert_partial("after login");
    gen_pair(s, "cred", 1, &new_pub, &new_priv);
    pending = pubkey_of(s, new_pub);
    other = EVP_EC_gen("P-256");
    R_ASSERT(pending != NULL && other != NULL, "keys");

    /* Refused commits: another key's certificate, a credential without a
     * pending key. The check reads the pending keys only. */
    R_CK(commit_cert(s, "cred", other), CKR_TEMPLATE_INCONSISTENT);
    assert_partial("refused commit (another key)");
    R_CK(commit_cert(s, "nocred", pending), CKR_TEMPLATE_INCONSISTENT);
    assert_partial("refused commit (no pending key)");
    R_ASSERT(find_cred(s, "cred", CKO_PRIVATE_KEY, hs) == 1 && hs[0] == old_priv,
             "old key still active");

    /* The commit: the pending pair becomes the credential. */
    R_CK(commit_cert(s, "cred", pending), CKR_OK);
    R_ASSERT(find_cred(s, "cred", CKO_PRIVATE_KEY, hs) == 1 && hs[0] == new_priv,
             "new private key active");
    R_ASSERT(find_cred(s, "cred", CKO_PUBLIC_KEY, hs) == 1 && hs[0] == new_pub,
             "new public key active");
    R_ASSERT(find_cred(s, "cred", CKO_CERTIFICATE, hs) == 1, "one certificate");
    assert_partial("after the commit");
    {
        CK_OBJECT_HANDLE out[8];
        CK_RV rv;

        R_ASSERT(r_find_data(s, "data-7", out, 8, &rv) == 1, "data objects untouched");
    }
    EVP_PKEY_free(pending);
    EVP_PKEY_free(other);
    R_CK(R->C_Finalize(NULL), CKR_OK);
    r_rm_rf(dir);
    printf("r_roll_lazy: ok\n");
    return 0;
}
