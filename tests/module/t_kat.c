/*
 * t_kat.c — known answers for the parameterised RSA and ECDSA mechanisms.
 *
 * The vectors in kat_vectors.h were made once, outside the module, with the
 * openssl command line on a fixed RSA-2048 and P-256 key:
 *
 *   openssl dgst -sha256 -sign rsa.pem                               (v1.5)
 *   openssl dgst -sha256 -sign rsa.pem -sigopt rsa_padding_mode:pss \
 *       -sigopt rsa_pss_saltlen:32 -sigopt rsa_mgf1_md:sha256        (PSS)
 *   openssl dgst -sha384 ... -sigopt rsa_pss_saltlen:0 \
 *       -sigopt rsa_mgf1_md:sha1                                     (PSS)
 *   openssl pkeyutl -encrypt -pkeyopt rsa_padding_mode:oaep \
 *       -pkeyopt rsa_oaep_md:.. -pkeyopt rsa_mgf1_md:.. [-pkeyopt rsa_oaep_label:..]
 *   openssl dgst -sha256 -sign ec.pem                                (ECDSA)
 *
 * over the message "abc" (OAEP: the plaintext "evertoken oaep", label
 * "label"). A module must verify exactly these signatures, reproduce the
 * deterministic PKCS#1 v1.5 one byte for byte, recover exactly the plaintext,
 * and reject each vector when one parameter (salt length, MGF hash, label)
 * differs from the one it was made with.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "kat_vectors.h"

#define N_(a) (sizeof(a) / sizeof((a)[0]))

static const CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static const unsigned char msg[] = "abc";
#define MSG_LEN 3
static const char plaintext[] = "evertoken oaep";
static const unsigned char p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};

struct bin {
    unsigned char b[512];
    CK_ULONG n;
};

static struct bin
unhex(const char *hex)
{
    struct bin r;
    size_t len = strlen(hex);

    assert_true(len % 2 == 0 && len / 2 <= sizeof(r.b));
    for (size_t i = 0; i < len / 2; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        r.b[i] = (unsigned char)v;
    }
    r.n = (CK_ULONG)(len / 2);
    return r;
}

static int
listed(CK_MECHANISM_TYPE type)
{
    CK_MECHANISM_INFO info;
    CK_RV rv = F->C_GetMechanismInfo(E.slot, type, &info);

    if (is_evertoken())
        assert_rv(rv, CKR_OK); /* evertoken offers every mechanism here */
    return rv == CKR_OK;
}

static CK_OBJECT_HANDLE
rsa_priv(CK_SESSION_HANDLE h)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    struct bin n = unhex(KAT_RSA_N), e = unhex(KAT_RSA_E), d = unhex(KAT_RSA_D);
    struct bin p = unhex(KAT_RSA_P), q = unhex(KAT_RSA_Q), dp = unhex(KAT_RSA_DP);
    struct bin dq = unhex(KAT_RSA_DQ), qi = unhex(KAT_RSA_QINV);
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},   {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, (void *)&no, 1},      {CKA_PRIVATE, (void *)&yes, 1},
        {CKA_SIGN, (void *)&yes, 1},      {CKA_DECRYPT, (void *)&yes, 1},
        {CKA_MODULUS, n.b, n.n},          {CKA_PUBLIC_EXPONENT, e.b, e.n},
        {CKA_PRIVATE_EXPONENT, d.b, d.n}, {CKA_PRIME_1, p.b, p.n},
        {CKA_PRIME_2, q.b, q.n},          {CKA_EXPONENT_1, dp.b, dp.n},
        {CKA_EXPONENT_2, dq.b, dq.n},     {CKA_COEFFICIENT, qi.b, qi.n},
    };
    CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;

    assert_ok(F->C_CreateObject(h, t, N_(t), &o));
    return o;
}

static CK_OBJECT_HANDLE
rsa_pub(CK_SESSION_HANDLE h)
{
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_RSA;
    struct bin n = unhex(KAT_RSA_N), e = unhex(KAT_RSA_E);
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, (void *)&no, 1},    {CKA_VERIFY, (void *)&yes, 1},
        {CKA_MODULUS, n.b, n.n},        {CKA_PUBLIC_EXPONENT, e.b, e.n},
    };
    CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;

    assert_ok(F->C_CreateObject(h, t, N_(t), &o));
    return o;
}

static CK_OBJECT_HANDLE
ec_pub(CK_SESSION_HANDLE h)
{
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    struct bin pt = unhex(KAT_EC_POINT), der;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, (void *)&no, 1},
        {CKA_VERIFY, (void *)&yes, 1},
        {CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid)},
        {CKA_EC_POINT, der.b, 0},
    };
    CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;

    /* CKA_EC_POINT: DER OCTET STRING of the 65-byte uncompressed point. */
    assert_int_equal(pt.n, 65);
    der.b[0] = 0x04;
    der.b[1] = (unsigned char)pt.n;
    memcpy(der.b + 2, pt.b, pt.n);
    t[5].ulValueLen = pt.n + 2;
    assert_ok(F->C_CreateObject(h, t, N_(t), &o));
    return o;
}

static CK_RV
verify(CK_SESSION_HANDLE h, CK_MECHANISM *m, CK_OBJECT_HANDLE key, const unsigned char *data,
       CK_ULONG dlen, struct bin sig)
{
    assert_ok(F->C_VerifyInit(h, m, key));
    return F->C_Verify(h, (CK_BYTE_PTR)data, dlen, sig.b, sig.n);
}

/* CKM_SHA256_RSA_PKCS is deterministic: the token's signature is the vector. */
static void
t_kat_rsa_pkcs(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
    struct bin want = unhex(KAT_SHA256_RSA_PKCS);
    unsigned char sig[256];
    CK_ULONG len = sizeof(sig);
    CK_OBJECT_HANDLE priv, pub;

    (void)state;
    conf_login_user(h);
    priv = rsa_priv(h);
    pub = rsa_pub(h);
    assert_ok(F->C_SignInit(h, &m, priv));
    assert_ok(F->C_Sign(h, (CK_BYTE_PTR)msg, MSG_LEN, sig, &len));
    assert_int_equal(len, want.n);
    assert_memory_equal(sig, want.b, want.n);
    assert_ok(verify(h, &m, pub, msg, MSG_LEN, want));
    want.b[want.n - 1] ^= 1;
    assert_rv(verify(h, &m, pub, msg, MSG_LEN, want), CKR_SIGNATURE_INVALID);
}

static void
t_kat_pss(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_RSA_PKCS_PSS_PARAMS p = {CKM_SHA256, CKG_MGF1_SHA256, 32};
    CK_MECHANISM m = {CKM_SHA256_RSA_PKCS_PSS, &p, sizeof(p)};
    CK_MECHANISM raw = {CKM_RSA_PKCS_PSS, &p, sizeof(p)};
    struct bin s256 = unhex(KAT_PSS_SHA256_MGF256_S32), s384 = unhex(KAT_PSS_SHA384_MGF1_S0);
    unsigned char hash[32];
    CK_ULONG hlen = sizeof(hash);
    CK_MECHANISM dm = {CKM_SHA256, NULL, 0};
    CK_OBJECT_HANDLE pub;

    (void)state;
    pub = rsa_pub(h);
    if (!listed(CKM_SHA256_RSA_PKCS_PSS))
        return;
    /* SHA-256, MGF1-SHA-256, 32-byte salt: as made. */
    assert_ok(verify(h, &m, pub, msg, MSG_LEN, s256));
    /* The same over the precomputed hash. */
    assert_ok(F->C_DigestInit(h, &dm));
    assert_ok(F->C_Digest(h, (CK_BYTE_PTR)msg, MSG_LEN, hash, &hlen));
    assert_ok(verify(h, &raw, pub, hash, hlen, s256));
    /* One parameter off: salt length, then the MGF hash. */
    p.sLen = 20;
    assert_rv(verify(h, &m, pub, msg, MSG_LEN, s256), CKR_SIGNATURE_INVALID);
    p.sLen = 32;
    /* SoftHSMv2 2.6 refuses an MGF hash other than the message hash at
     * C_VerifyInit (CKR_ARGUMENTS_BAD), so the remaining vectors are
     * evertoken's alone. */
    if (is_evertoken()) {
        CK_RSA_PKCS_PSS_PARAMS p384 = {CKM_SHA384, CKG_MGF1_SHA1, 0};
        CK_MECHANISM m384 = {CKM_SHA384_RSA_PKCS_PSS, &p384, sizeof(p384)};

        p.mgf = CKG_MGF1_SHA1;
        assert_rv(verify(h, &m, pub, msg, MSG_LEN, s256), CKR_SIGNATURE_INVALID);
        /* SHA-384 with MGF1-SHA-1 and no salt. */
        assert_ok(verify(h, &m384, pub, msg, MSG_LEN, s384));
        p384.mgf = CKG_MGF1_SHA384;
        assert_rv(verify(h, &m384, pub, msg, MSG_LEN, s384), CKR_SIGNATURE_INVALID);
        /* The message changed. */
        p384.mgf = CKG_MGF1_SHA1;
        assert_rv(verify(h, &m384, pub, (const unsigned char *)"abd", 3, s384),
                  CKR_SIGNATURE_INVALID);
    }
}

static CK_RV
decrypt(CK_SESSION_HANDLE h, CK_RSA_PKCS_OAEP_PARAMS *p, CK_OBJECT_HANDLE key, struct bin ct,
        unsigned char *out, CK_ULONG *outlen)
{
    CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, p, sizeof(*p)};

    assert_ok(F->C_DecryptInit(h, &m, key));
    return F->C_Decrypt(h, ct.b, ct.n, out, outlen);
}

static void
t_kat_oaep(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_RSA_PKCS_OAEP_PARAMS p = {CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0};
    unsigned char out[256];
    CK_ULONG len = sizeof(out);
    char label[] = "label", wrong[] = "lab3l";
    CK_OBJECT_HANDLE priv;

    (void)state;
    conf_login_user(h);
    priv = rsa_priv(h);
    if (!listed(CKM_RSA_PKCS_OAEP))
        return;
    assert_ok(decrypt(h, &p, priv, unhex(KAT_OAEP_SHA1), out, &len));
    assert_int_equal(len, strlen(plaintext));
    assert_memory_equal(out, plaintext, len);
    /* SoftHSMv2 2.6 offers OAEP with SHA-1 only. */
    if (!is_evertoken())
        return;
    /* SHA-256 and a label. */
    p.hashAlg = CKM_SHA256;
    p.mgf = CKG_MGF1_SHA256;
    p.pSourceData = label;
    p.ulSourceDataLen = 5;
    len = sizeof(out);
    assert_ok(decrypt(h, &p, priv, unhex(KAT_OAEP_SHA256_LABEL), out, &len));
    assert_int_equal(len, strlen(plaintext));
    assert_memory_equal(out, plaintext, len);
    /* Another label, or none: the padding check fails. */
    p.pSourceData = wrong;
    len = sizeof(out);
    assert_rv(decrypt(h, &p, priv, unhex(KAT_OAEP_SHA256_LABEL), out, &len),
              CKR_ENCRYPTED_DATA_INVALID);
    p.pSourceData = NULL;
    p.ulSourceDataLen = 0;
    len = sizeof(out);
    assert_rv(decrypt(h, &p, priv, unhex(KAT_OAEP_SHA256_LABEL), out, &len),
              CKR_ENCRYPTED_DATA_INVALID);
    /* SHA-256 with MGF1-SHA-1: right only with exactly that pair. */
    p.mgf = CKG_MGF1_SHA1;
    len = sizeof(out);
    assert_ok(decrypt(h, &p, priv, unhex(KAT_OAEP_SHA256_MGF1), out, &len));
    assert_memory_equal(out, plaintext, strlen(plaintext));
    p.mgf = CKG_MGF1_SHA256;
    len = sizeof(out);
    assert_rv(decrypt(h, &p, priv, unhex(KAT_OAEP_SHA256_MGF1), out, &len),
              CKR_ENCRYPTED_DATA_INVALID);
}

static void
t_kat_ecdsa(void **state)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);
    CK_MECHANISM raw = {CKM_ECDSA, NULL, 0}, hashed = {CKM_ECDSA_SHA256, NULL, 0};
    CK_MECHANISM dm = {CKM_SHA256, NULL, 0};
    struct bin rs = unhex(KAT_ECDSA_SHA256_RS);
    unsigned char hash[32];
    CK_ULONG hlen = sizeof(hash);
    CK_OBJECT_HANDLE pub;

    (void)state;
    pub = ec_pub(h);
    assert_int_equal(rs.n, 64); /* r || s, 32 bytes each */
    assert_ok(F->C_DigestInit(h, &dm));
    assert_ok(F->C_Digest(h, (CK_BYTE_PTR)msg, MSG_LEN, hash, &hlen));
    assert_ok(verify(h, &raw, pub, hash, hlen, rs));
    if (listed(CKM_ECDSA_SHA256))
        assert_ok(verify(h, &hashed, pub, msg, MSG_LEN, rs));
    rs.b[40] ^= 0x80;
    assert_rv(verify(h, &raw, pub, hash, hlen, rs), CKR_SIGNATURE_INVALID);
    /* A DER signature is not what PKCS#11 ECDSA takes. */
    rs.n = 63;
    assert_rv2(verify(h, &raw, pub, hash, hlen, rs), CKR_SIGNATURE_LEN_RANGE,
               CKR_SIGNATURE_INVALID);
}

struct conf_group
conf_kat_tests(void)
{
    static const struct CMUnitTest tests[] = {
        CONF_TEST_TOKEN(t_kat_rsa_pkcs),
        CONF_TEST_TOKEN(t_kat_pss),
        CONF_TEST_TOKEN(t_kat_oaep),
        CONF_TEST_TOKEN(t_kat_ecdsa),
    };
    struct conf_group g = {"kat", tests, sizeof(tests) / sizeof(tests[0])};
    return g;
}
