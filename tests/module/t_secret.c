/*
 * t_secret.c — secret keys (CKO_SECRET_KEY: CKK_AES, CKK_GENERIC_SECRET) and
 * their mechanisms: C_GenerateKey, AES ECB/CBC/CBC_PAD/CTR/GCM, AES CMAC,
 * HMAC.
 *
 * Known answers are the published vectors: NIST SP 800-38A appendix F
 * (ECB, CBC, CTR with AES-128 and AES-256), SP 800-38B appendix D.1 (CMAC
 * AES-128), the GCM specification's test cases 2 and 4 (the ones SP 800-38D
 * validation uses), RFC 4231 (HMAC-SHA-224/256/384/512, cases 1, 2 and the
 * truncated case 5) and RFC 2202 (HMAC-SHA-1 case 1). Every mechanism is
 * also run multi-part in uneven pieces, which must give exactly the
 * single-part result, and its error codes are checked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "conf.h"

#define N_(a) (sizeof(a) / sizeof((a)[0]))

static const CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

struct bin {
    unsigned char b[256];
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

static struct bin
text(const char *s)
{
    struct bin r;

    r.n = (CK_ULONG)strlen(s);
    memcpy(r.b, s, r.n);
    return r;
}

/* SP 800-38A appendix F: the four plaintext blocks and the keys. */
#define PT_38A                                                                                     \
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"                             \
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
#define K128_38A "2b7e151628aed2a6abf7158809cf4f3c"
#define K256_38A "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"

/* A session secret key with VALUE, usable for everything. */
static CK_OBJECT_HANDLE
secret_key(CK_SESSION_HANDLE h, CK_KEY_TYPE kt, const unsigned char *v, CK_ULONG len)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},    {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, (void *)&no, 1},       {CKA_PRIVATE, (void *)&yes, 1},
        {CKA_VALUE, (void *)v, len},       {CKA_ENCRYPT, (void *)&yes, 1},
        {CKA_DECRYPT, (void *)&yes, 1},    {CKA_SIGN, (void *)&yes, 1},
        {CKA_VERIFY, (void *)&yes, 1},     {CKA_SENSITIVE, (void *)&yes, 1},
        {CKA_EXTRACTABLE, (void *)&no, 1},
    };
    CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;

    assert_ok(F->C_CreateObject(h, t, N_(t), &k));
    return k;
}

static CK_ULONG
get_ulong(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
    CK_ULONG v = 0;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};

    assert_ok(F->C_GetAttributeValue(h, o, &a, 1));
    return v;
}

static CK_BBOOL
get_bool(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL v = 0xff;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};

    assert_ok(F->C_GetAttributeValue(h, o, &a, 1));
    return v;
}

/* Is mechanism TYPE offered? evertoken offers all of this file's; SoftHSMv2
 * lacks some (the HMAC _GENERAL forms, CMAC_GENERAL): those are skipped. */
static int
listed(CK_MECHANISM_TYPE type)
{
    CK_MECHANISM_INFO info;
    CK_RV rv = F->C_GetMechanismInfo(E.slot, type, &info);

    if (is_evertoken())
        assert_rv(rv, CKR_OK);
    return rv == CKR_OK;
}

/* A failed GCM tag check: CKR_ENCRYPTED_DATA_INVALID; SoftHSMv2 answers
 * CKR_GENERAL_ERROR (it still returns nothing). */
#define assert_tag_fails(expr)                                                                     \
    do {                                                                                           \
        CK_RV rv_ = (expr);                                                                        \
        if (is_softhsm() && rv_ == CKR_GENERAL_ERROR)                                              \
            break;                                                                                 \
        assert_rv(rv_, CKR_ENCRYPTED_DATA_INVALID);                                                \
    } while (0)

static CK_SESSION_HANDLE
user_session(void)
{
    CK_SESSION_HANDLE h = conf_open(CKF_RW_SESSION);

    conf_login_user(h);
    return h;
}

/* ---- single-part and multi-part helpers --------------------------------- */

/* C_Encrypt or C_Decrypt in one call (with the length query first). */
static CK_RV
crypt1(CK_SESSION_HANDLE h, int enc, CK_MECHANISM *m, CK_OBJECT_HANDLE k, const unsigned char *in,
       CK_ULONG inlen, unsigned char *out, CK_ULONG *outlen)
{
    CK_ULONG cap = *outlen, len = 0;
    CK_RV rv;

    rv = enc ? F->C_EncryptInit(h, m, k) : F->C_DecryptInit(h, m, k);
    if (rv != CKR_OK)
        return rv;
    rv = enc ? F->C_Encrypt(h, (CK_BYTE_PTR)in, inlen, NULL, &len)
             : F->C_Decrypt(h, (CK_BYTE_PTR)in, inlen, NULL, &len);
    if (rv != CKR_OK)
        return rv;
    assert_true(len <= cap);
    *outlen = cap;
    return enc ? F->C_Encrypt(h, (CK_BYTE_PTR)in, inlen, out, outlen)
               : F->C_Decrypt(h, (CK_BYTE_PTR)in, inlen, out, outlen);
}

/* The same in pieces of STEP bytes (sizes asked before every call). */
static CK_RV
cryptn(CK_SESSION_HANDLE h, int enc, CK_MECHANISM *m, CK_OBJECT_HANDLE k, const unsigned char *in,
       CK_ULONG inlen, CK_ULONG step, unsigned char *out, CK_ULONG *outlen)
{
    CK_ULONG done = 0, pos = 0, len;
    CK_RV rv;

    rv = enc ? F->C_EncryptInit(h, m, k) : F->C_DecryptInit(h, m, k);
    if (rv != CKR_OK)
        return rv;
    while (pos < inlen) {
        CK_ULONG n = inlen - pos < step ? inlen - pos : step;
        len = 0;
        rv = enc ? F->C_EncryptUpdate(h, (CK_BYTE_PTR)in + pos, n, NULL, &len)
                 : F->C_DecryptUpdate(h, (CK_BYTE_PTR)in + pos, n, NULL, &len);
        if (rv != CKR_OK)
            return rv;
        assert_true(done + len <= *outlen);
        len = *outlen - done;
        rv = enc ? F->C_EncryptUpdate(h, (CK_BYTE_PTR)in + pos, n, out + done, &len)
                 : F->C_DecryptUpdate(h, (CK_BYTE_PTR)in + pos, n, out + done, &len);
        if (rv != CKR_OK)
            return rv;
        done += len;
        pos += n;
    }
    len = 0;
    rv = enc ? F->C_EncryptFinal(h, NULL, &len) : F->C_DecryptFinal(h, NULL, &len);
    if (rv != CKR_OK)
        return rv;
    assert_true(done + len <= *outlen);
    len = *outlen - done;
    rv = enc ? F->C_EncryptFinal(h, out + done, &len) : F->C_DecryptFinal(h, out + done, &len);
    if (rv == CKR_OK)
        *outlen = done + len;
    return rv;
}

/* Encrypt IN single-part and in pieces of 1, 7, 16 and 33 bytes, expect
 * WANT (when not NULL) from each, and decrypt back the same ways. */
static void
roundtrip(CK_SESSION_HANDLE h, CK_MECHANISM *m, CK_OBJECT_HANDLE k, const unsigned char *in,
          CK_ULONG inlen, const unsigned char *want, CK_ULONG wantlen)
{
    static const CK_ULONG steps[] = {1, 7, 16, 33};
    unsigned char ct[512], ct2[512], pt[512];
    CK_ULONG ctlen = sizeof(ct), len;

    assert_ok(crypt1(h, 1, m, k, in, inlen, ct, &ctlen));
    if (want != NULL) {
        assert_int_equal(ctlen, wantlen);
        assert_memory_equal(ct, want, wantlen);
    }
    len = sizeof(pt);
    assert_ok(crypt1(h, 0, m, k, ct, ctlen, pt, &len));
    assert_int_equal(len, inlen);
    assert_memory_equal(pt, in, inlen);
    for (size_t i = 0; i < N_(steps); i++) {
        len = sizeof(ct2);
        assert_ok(cryptn(h, 1, m, k, in, inlen, steps[i], ct2, &len));
        assert_int_equal(len, ctlen);
        assert_memory_equal(ct2, ct, ctlen);
        len = sizeof(pt);
        assert_ok(cryptn(h, 0, m, k, ct, ctlen, steps[i], pt, &len));
        assert_int_equal(len, inlen);
        assert_memory_equal(pt, in, inlen);
    }
}

/* Sign IN single-part and in pieces; expect WANT; verify both ways.
 * SoftHSMv2 refuses HMAC keys shorter than the hash (CKR_KEY_SIZE_RANGE),
 * which RFC 4231's 20-byte keys are: those are skipped there. */
static void
mac_check(CK_SESSION_HANDLE h, CK_MECHANISM *m, CK_OBJECT_HANDLE k, const struct bin *in,
          const struct bin *want)
{
    unsigned char sig[64];
    CK_ULONG len = 0, pos;

    if (is_softhsm()) {
        CK_RV rv = F->C_SignInit(h, m, k);
        if (rv == CKR_KEY_SIZE_RANGE)
            return;
        assert_ok(rv);
        len = sizeof(sig);
        assert_ok(F->C_Sign(h, (CK_BYTE_PTR)in->b, in->n, sig, &len));
    }

    assert_ok(F->C_SignInit(h, m, k));
    assert_ok(F->C_Sign(h, (CK_BYTE_PTR)in->b, in->n, NULL, &len));
    assert_int_equal(len, want->n);
    len = sizeof(sig);
    assert_ok(F->C_Sign(h, (CK_BYTE_PTR)in->b, in->n, sig, &len));
    assert_int_equal(len, want->n);
    assert_memory_equal(sig, want->b, want->n);

    assert_ok(F->C_SignInit(h, m, k));
    for (pos = 0; pos < in->n; pos += 5)
        assert_ok(F->C_SignUpdate(h, (CK_BYTE_PTR)in->b + pos, in->n - pos < 5 ? in->n - pos : 5));
    len = sizeof(sig);
    assert_ok(F->C_SignFinal(h, sig, &len));
    assert_int_equal(len, want->n);
    assert_memory_equal(sig, want->b, want->n);

    assert_ok(F->C_VerifyInit(h, m, k));
    assert_ok(F->C_Verify(h, (CK_BYTE_PTR)in->b, in->n, (CK_BYTE_PTR)want->b, want->n));
    assert_ok(F->C_VerifyInit(h, m, k));
    for (pos = 0; pos < in->n; pos += 3)
        assert_ok(
            F->C_VerifyUpdate(h, (CK_BYTE_PTR)in->b + pos, in->n - pos < 3 ? in->n - pos : 3));
    assert_ok(F->C_VerifyFinal(h, (CK_BYTE_PTR)want->b, want->n));

    /* One bit off, and one byte short. */
    memcpy(sig, want->b, want->n);
    sig[want->n - 1] ^= 1;
    assert_ok(F->C_VerifyInit(h, m, k));
    assert_rv(F->C_Verify(h, (CK_BYTE_PTR)in->b, in->n, sig, want->n), CKR_SIGNATURE_INVALID);
    assert_ok(F->C_VerifyInit(h, m, k));
    assert_rv(F->C_Verify(h, (CK_BYTE_PTR)in->b, in->n, sig, want->n - 1), CKR_SIGNATURE_LEN_RANGE);
}

/* ---- key generation ----------------------------------------------------- */

static void
t_secret_generate(void **state)
{
    CK_SESSION_HANDLE h = user_session();
    CK_MECHANISM aes = {CKM_AES_KEY_GEN, NULL, 0}, gen = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
    static const CK_ULONG lens[] = {16, 24, 32};
    CK_OBJECT_HANDLE k;
    CK_ULONG len;

    (void)state;
    for (size_t i = 0; i < N_(lens); i++) {
        CK_ATTRIBUTE t[] = {
            {CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_ENCRYPT, (void *)&yes, 1},
            {CKA_DECRYPT, (void *)&yes, 1},     {CKA_SENSITIVE, (void *)&no, 1},
            {CKA_EXTRACTABLE, (void *)&yes, 1},
        };
        unsigned char v[32], kcv[3], want[16], zero[16] = {0};
        CK_ATTRIBUTE va = {CKA_VALUE, v, sizeof(v)}, ca = {CKA_CHECK_VALUE, kcv, sizeof(kcv)};
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int outl = 0;

        len = lens[i];
        assert_ok(F->C_GenerateKey(h, &aes, t, N_(t), &k));
        assert_int_equal(get_ulong(h, k, CKA_CLASS), CKO_SECRET_KEY);
        assert_int_equal(get_ulong(h, k, CKA_KEY_TYPE), CKK_AES);
        assert_int_equal(get_ulong(h, k, CKA_VALUE_LEN), lens[i]);
        assert_int_equal(get_ulong(h, k, CKA_KEY_GEN_MECHANISM), CKM_AES_KEY_GEN);
        assert_int_equal(get_bool(h, k, CKA_LOCAL), CK_TRUE);
        assert_int_equal(get_bool(h, k, CKA_ALWAYS_SENSITIVE), CK_FALSE);
        assert_int_equal(get_bool(h, k, CKA_NEVER_EXTRACTABLE), CK_FALSE);
        assert_ok(F->C_GetAttributeValue(h, k, &va, 1));
        assert_int_equal(va.ulValueLen, lens[i]);
        /* CKA_CHECK_VALUE: the first three bytes of E(K, 0^128). */
        assert_non_null(c);
        assert_int_equal(EVP_EncryptInit_ex(c,
                                            lens[i] == 16   ? EVP_aes_128_ecb()
                                            : lens[i] == 24 ? EVP_aes_192_ecb()
                                                            : EVP_aes_256_ecb(),
                                            NULL, v, NULL),
                         1);
        assert_int_equal(EVP_EncryptUpdate(c, want, &outl, zero, 16), 1);
        EVP_CIPHER_CTX_free(c);
        assert_ok(F->C_GetAttributeValue(h, k, &ca, 1));
        assert_int_equal(ca.ulValueLen, 3);
        assert_memory_equal(kcv, want, 3);
    }

    /* Sensitive and never extractable from birth. */
    {
        CK_ATTRIBUTE t[] = {
            {CKA_VALUE_LEN, &len, sizeof(len)},
            {CKA_SENSITIVE, (void *)&yes, 1},
            {CKA_EXTRACTABLE, (void *)&no, 1},
            {CKA_SIGN, (void *)&yes, 1},
        };
        unsigned char v[64];
        CK_ATTRIBUTE va = {CKA_VALUE, v, sizeof(v)};
        CK_ATTRIBUTE relax = {CKA_SENSITIVE, (void *)&no, 1};
        CK_ATTRIBUTE open_up = {CKA_EXTRACTABLE, (void *)&yes, 1};

        len = 64;
        assert_ok(F->C_GenerateKey(h, &gen, t, N_(t), &k));
        assert_int_equal(get_ulong(h, k, CKA_KEY_TYPE), CKK_GENERIC_SECRET);
        assert_int_equal(get_ulong(h, k, CKA_VALUE_LEN), 64);
        assert_int_equal(get_ulong(h, k, CKA_KEY_GEN_MECHANISM), CKM_GENERIC_SECRET_KEY_GEN);
        assert_int_equal(get_bool(h, k, CKA_ALWAYS_SENSITIVE), CK_TRUE);
        assert_int_equal(get_bool(h, k, CKA_NEVER_EXTRACTABLE), CK_TRUE);
        assert_rv(F->C_GetAttributeValue(h, k, &va, 1), CKR_ATTRIBUTE_SENSITIVE);
        assert_int_equal(va.ulValueLen, CK_UNAVAILABLE_INFORMATION);
        /* The latches: SENSITIVE only goes on, EXTRACTABLE only off. */
        assert_rv(F->C_SetAttributeValue(h, k, &relax, 1), CKR_ATTRIBUTE_READ_ONLY);
        assert_rv(F->C_SetAttributeValue(h, k, &open_up, 1), CKR_ATTRIBUTE_READ_ONLY);
        assert_int_equal(get_bool(h, k, CKA_SENSITIVE), CK_TRUE);
    }

    /* Template errors. */
    {
        CK_ATTRIBUTE none[] = {{CKA_ENCRYPT, (void *)&yes, 1}};
        CK_ATTRIBUTE bad[] = {{CKA_VALUE_LEN, &len, sizeof(len)}};
        CK_KEY_TYPE rsa = CKK_RSA;
        CK_ATTRIBUTE wrong_type[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                                     {CKA_KEY_TYPE, &rsa, sizeof(rsa)}};
        assert_rv(F->C_GenerateKey(h, &aes, none, N_(none), &k), CKR_TEMPLATE_INCOMPLETE);
        len = 15;
        assert_rv(F->C_GenerateKey(h, &aes, bad, N_(bad), &k), CKR_ATTRIBUTE_VALUE_INVALID);
        len = 16;
        assert_rv(F->C_GenerateKey(h, &aes, wrong_type, N_(wrong_type), &k),
                  CKR_TEMPLATE_INCONSISTENT);
        if (is_evertoken()) {
            unsigned char v[16] = {0};
            CK_ATTRIBUTE given[] = {{CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_VALUE, v, 16}};
            CK_MECHANISM des = {CKM_DES3_KEY_GEN, NULL, 0};
            assert_rv(F->C_GenerateKey(h, &aes, given, N_(given), &k), CKR_ATTRIBUTE_READ_ONLY);
            /* DES and 3DES are not offered (docs/mechanisms.md). */
            assert_rv(F->C_GenerateKey(h, &des, bad, N_(bad), &k), CKR_MECHANISM_INVALID);
        }
    }
    assert_ok(F->C_CloseSession(h));
}

/* A token key survives the module's restart and still encrypts the same. */
static void
t_secret_token_key(void **state)
{
    CK_SESSION_HANDLE h = user_session();
    CK_MECHANISM aes = {CKM_AES_KEY_GEN, NULL, 0}, ecb = {CKM_AES_ECB, NULL, 0};
    CK_ULONG len = 32, n;
    CK_ATTRIBUTE t[] = {
        {CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_TOKEN, (void *)&yes, 1},
        {CKA_LABEL, "aes-token", 9},        {CKA_ENCRYPT, (void *)&yes, 1},
        {CKA_DECRYPT, (void *)&yes, 1},
    };
    CK_OBJECT_HANDLE k, found[2];
    unsigned char in[32] = "evertoken secret key at rest", c1[32], c2[32];

    (void)state;
    assert_ok(F->C_GenerateKey(h, &aes, t, N_(t), &k));
    n = sizeof(c1);
    assert_ok(crypt1(h, 1, &ecb, k, in, 32, c1, &n));
    conf_reinit();
    E.slot = conf_slot_by_label(CONF_LABEL);
    h = user_session();
    assert_int_equal(conf_find_label(h, "aes-token", found), 1);
    n = sizeof(c2);
    assert_ok(crypt1(h, 1, &ecb, found[0], in, 32, c2, &n));
    assert_memory_equal(c1, c2, 32);
    assert_ok(F->C_CloseSession(h));
}

/* ---- known answers ------------------------------------------------------ */

static void
t_secret_aes_kat(void **state)
{
    CK_SESSION_HANDLE h = user_session();
    struct bin k128 = unhex(K128_38A), k256 = unhex(K256_38A), pt = unhex(PT_38A);
    struct bin iv = unhex("000102030405060708090a0b0c0d0e0f");
    CK_AES_CTR_PARAMS ctr;
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0}, cbc = {CKM_AES_CBC, iv.b, 16},
                 pad = {CKM_AES_CBC_PAD, iv.b, 16}, ctrm = {CKM_AES_CTR, &ctr, sizeof(ctr)};
    CK_OBJECT_HANDLE a128, a256;
    struct bin want;
    unsigned char out[128];
    CK_ULONG n;

    (void)state;
    a128 = secret_key(h, CKK_AES, k128.b, k128.n);
    a256 = secret_key(h, CKK_AES, k256.b, k256.n);
    want = unhex("3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf"
                 "43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4");
    roundtrip(h, &ecb, a128, pt.b, pt.n, want.b, want.n);
    want = unhex("f3eed1bdb5d2a03c064b5a7e3db181f8591ccb10d410ed26dc5ba74a31362870"
                 "b6ed21b99ca6f4f9f153e7b1beafed1d23304b7a39f9f3ff067d8d8f9e24ecc7");
    roundtrip(h, &ecb, a256, pt.b, pt.n, want.b, want.n);
    want = unhex("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
                 "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7");
    roundtrip(h, &cbc, a128, pt.b, pt.n, want.b, want.n);
    /* CBC_PAD: the CBC blocks, then one block of padding. */
    n = sizeof(out);
    assert_ok(crypt1(h, 1, &pad, a128, pt.b, pt.n, out, &n));
    assert_int_equal(n, 80);
    assert_memory_equal(out, want.b, 64);
    roundtrip(h, &pad, a128, pt.b, pt.n, out, 80);
    roundtrip(h, &pad, a128, pt.b, 37, NULL, 0);
    roundtrip(h, &pad, a128, pt.b, 0, NULL, 0);
    ctr.ulCounterBits = 128;
    memcpy(ctr.cb, unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").b, 16);
    want = unhex("874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff"
                 "5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee");
    roundtrip(h, &ctrm, a128, pt.b, pt.n, want.b, want.n);
    roundtrip(h, &ctrm, a128, pt.b, 41, want.b, 41); /* a partial block */
    assert_ok(F->C_CloseSession(h));
}

static void
t_secret_gcm_kat(void **state)
{
    CK_SESSION_HANDLE h = user_session();
    struct bin k4 = unhex("feffe9928665731c6d6a8f9467308308");
    struct bin p4 = unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                          "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
    struct bin a4 = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    struct bin iv4 = unhex("cafebabefacedbaddecaf888");
    struct bin c4 = unhex("42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
                          "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
                          "5bc94fbc3221a5db94fae95ae7121a47");
    struct bin zero = unhex("00000000000000000000000000000000");
    struct bin c2 = unhex("0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf");
    CK_GCM_PARAMS g = {iv4.b, iv4.n, iv4.n * 8, a4.b, a4.n, 128};
    CK_MECHANISM m = {CKM_AES_GCM, &g, sizeof(g)};
    CK_OBJECT_HANDLE k, kz;
    unsigned char out[128], bad[128];
    CK_ULONG n;

    (void)state;
    k = secret_key(h, CKK_AES, k4.b, k4.n);
    roundtrip(h, &m, k, p4.b, p4.n, c4.b, c4.n);
    /* A wrong tag: nothing comes out, single- or multi-part. */
    memcpy(bad, c4.b, c4.n);
    bad[c4.n - 1] ^= 0x80;
    n = sizeof(out);
    assert_tag_fails(crypt1(h, 0, &m, k, bad, c4.n, out, &n));
    n = sizeof(out);
    assert_tag_fails(cryptn(h, 0, &m, k, bad, c4.n, 16, out, &n));
    /* Other AAD: the tag does not match either. */
    g.ulAADLen = a4.n - 1;
    n = sizeof(out);
    assert_tag_fails(crypt1(h, 0, &m, k, c4.b, c4.n, out, &n));
    /* A shorter tag is the prefix of the full one. */
    g.ulAADLen = a4.n;
    g.ulTagBits = 96;
    n = sizeof(out);
    assert_ok(crypt1(h, 1, &m, k, p4.b, p4.n, out, &n));
    assert_int_equal(n, p4.n + 12);
    assert_memory_equal(out, c4.b, p4.n + 12);
    /* Test case 2: zero key, zero IV, no AAD. */
    kz = secret_key(h, CKK_AES, zero.b, 16);
    g = (CK_GCM_PARAMS){zero.b, 12, 96, NULL, 0, 128};
    roundtrip(h, &m, kz, zero.b, 16, c2.b, c2.n);
    /* Parameter errors. */
    g.ulTagBits = 0; /* the standard's range starts at 0; SoftHSMv2 takes it */
    if (is_evertoken())
        assert_rv(F->C_EncryptInit(h, &m, kz), CKR_MECHANISM_PARAM_INVALID);
    g.ulTagBits = 136;
    if (is_evertoken()) /* SoftHSMv2: CKR_ARGUMENTS_BAD */
        assert_rv(F->C_EncryptInit(h, &m, kz), CKR_MECHANISM_PARAM_INVALID);
    else
        assert_true(F->C_EncryptInit(h, &m, kz) != CKR_OK);
    g.ulTagBits = 128;
    m.ulParameterLen = sizeof(g) - 1;
    if (is_evertoken()) /* SoftHSMv2: CKR_ARGUMENTS_BAD */
        assert_rv(F->C_EncryptInit(h, &m, kz), CKR_MECHANISM_PARAM_INVALID);
    else
        assert_true(F->C_EncryptInit(h, &m, kz) != CKR_OK);
    /* Shorter than a tag. */
    m.ulParameterLen = sizeof(g);
    assert_ok(F->C_DecryptInit(h, &m, kz));
    n = sizeof(out);
    if (is_evertoken()) /* SoftHSMv2: CKR_GENERAL_ERROR */
        assert_rv(F->C_Decrypt(h, c2.b, 15, out, &n), CKR_ENCRYPTED_DATA_LEN_RANGE);
    else
        assert_true(F->C_Decrypt(h, c2.b, 15, out, &n) != CKR_OK);
    assert_ok(F->C_CloseSession(h));
}

static void
t_secret_cmac_kat(void **state)
{
    CK_SESSION_HANDLE h = user_session();
    struct bin k128 = unhex(K128_38A), pt = unhex(PT_38A), in, want;
    CK_MECHANISM m = {CKM_AES_CMAC, NULL, 0};
    CK_ULONG glen = 8;
    CK_MECHANISM gm = {CKM_AES_CMAC_GENERAL, &glen, sizeof(glen)};
    static const struct {
        CK_ULONG len;
        const char *mac;
    } v[] = {{0, "bb1d6929e95937287fa37d129b756746"},
             {16, "070a16b46b4d4144f79bdd9dd04a287c"},
             {40, "dfa66747de9ae63030ca32611497c827"},
             {64, "51f0bebf7e3b9d92fc49741779363cfe"}};
    CK_OBJECT_HANDLE k;

    (void)state;
    k = secret_key(h, CKK_AES, k128.b, k128.n);
    for (size_t i = 0; i < N_(v); i++) {
        in = pt;
        in.n = v[i].len;
        want = unhex(v[i].mac);
        if (in.n > 0)
            mac_check(h, &m, k, &in, &want);
        else if (is_evertoken()) { /* SoftHSMv2: CKR_ARGUMENTS_BAD for no data */
            unsigned char sig[16];
            CK_ULONG n = sizeof(sig);
            assert_ok(F->C_SignInit(h, &m, k));
            assert_ok(F->C_Sign(h, NULL, 0, sig, &n));
            assert_int_equal(n, 16);
            assert_memory_equal(sig, want.b, 16);
        }
        want.n = 8; /* _GENERAL: the leftmost bytes */
        if (in.n > 0 && listed(CKM_AES_CMAC_GENERAL))
            mac_check(h, &gm, k, &in, &want);
    }
    glen = 17;
    if (listed(CKM_AES_CMAC_GENERAL))
        assert_rv(F->C_SignInit(h, &gm, k), CKR_MECHANISM_PARAM_INVALID);
    assert_ok(F->C_CloseSession(h));
}

static void
t_secret_hmac_kat(void **state)
{
    CK_SESSION_HANDLE h = user_session();
    struct bin k1 = unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"), hi = text("Hi There");
    struct bin jefe = text("Jefe"), what = text("what do ya want for nothing?");
    struct bin k5 = unhex("0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c");
    struct bin trunc = text("Test With Truncation"), want;
    static const struct {
        CK_MECHANISM_TYPE mech;
        const char *mac;
    } v[] = {
        {CKM_SHA_1_HMAC, "b617318655057264e28bc0b6fb378c8ef146be00"},
        {CKM_SHA224_HMAC, "896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22"},
        {CKM_SHA256_HMAC, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {CKM_SHA384_HMAC, "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec6"
                          "82aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6"},
        {CKM_SHA512_HMAC, "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
                          "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"},
    };
    CK_OBJECT_HANDLE k, kj, kt, aes;
    CK_ULONG glen = 16;
    CK_MECHANISM m = {0, NULL, 0}, gm = {CKM_SHA256_HMAC_GENERAL, &glen, sizeof(glen)};

    (void)state;
    k = secret_key(h, CKK_GENERIC_SECRET, k1.b, k1.n);
    for (size_t i = 0; i < N_(v); i++) {
        m.mechanism = v[i].mech;
        want = unhex(v[i].mac);
        mac_check(h, &m, k, &hi, &want);
        /* The _GENERAL mechanism (type + 1) with a 10-byte MAC. */
        if (listed(v[i].mech + 1)) {
            CK_ULONG ten = 10;
            CK_MECHANISM g = {v[i].mech + 1, &ten, sizeof(ten)};
            want.n = 10;
            mac_check(h, &g, k, &hi, &want);
        }
    }
    kj = secret_key(h, CKK_GENERIC_SECRET, jefe.b, jefe.n);
    m.mechanism = CKM_SHA256_HMAC;
    want = unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    mac_check(h, &m, kj, &what, &want);
    /* RFC 4231 case 5: truncated to 128 bits. */
    kt = secret_key(h, CKK_GENERIC_SECRET, k5.b, k5.n);
    want = unhex("a3b6167473100ee06e0c796c2955552b");
    if (listed(CKM_SHA256_HMAC_GENERAL)) {
        mac_check(h, &gm, kt, &trunc, &want);
        glen = 0;
        assert_rv(F->C_SignInit(h, &gm, kt), CKR_MECHANISM_PARAM_INVALID);
        glen = 33;
        assert_rv(F->C_SignInit(h, &gm, kt), CKR_MECHANISM_PARAM_INVALID);
    }
    /* An AES key is no HMAC key, nor a generic secret an AES key. */
    aes = secret_key(h, CKK_AES, k5.b, 16);
    assert_rv(F->C_SignInit(h, &m, aes), CKR_KEY_TYPE_INCONSISTENT);
    {
        CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0};
        assert_rv(F->C_EncryptInit(h, &ecb, kt), CKR_KEY_TYPE_INCONSISTENT);
    }
    assert_ok(F->C_CloseSession(h));
}

/* ---- error codes and the buffer-size protocol --------------------------- */

static void
t_secret_errors(void **state)
{
    CK_SESSION_HANDLE h = user_session();
    struct bin k128 = unhex(K128_38A), pt = unhex(PT_38A);
    unsigned char iv[16] = {0}, out[128], blk[16];
    CK_MECHANISM ecb = {CKM_AES_ECB, NULL, 0}, cbc = {CKM_AES_CBC, iv, 16},
                 pad = {CKM_AES_CBC_PAD, iv, 16}, shortiv = {CKM_AES_CBC, iv, 8};
    CK_OBJECT_HANDLE k;
    CK_ULONG n;

    (void)state;
    k = secret_key(h, CKK_AES, k128.b, k128.n);
    /* Not a whole number of blocks. */
    assert_ok(F->C_EncryptInit(h, &ecb, k));
    n = sizeof(out);
    assert_rv(F->C_Encrypt(h, pt.b, 15, out, &n), CKR_DATA_LEN_RANGE);
    assert_ok(F->C_DecryptInit(h, &cbc, k));
    n = sizeof(out);
    assert_rv(F->C_Decrypt(h, pt.b, 17, out, &n), CKR_ENCRYPTED_DATA_LEN_RANGE);
    assert_ok(F->C_EncryptInit(h, &cbc, k));
    n = sizeof(out);
    assert_ok(F->C_EncryptUpdate(h, pt.b, 20, out, &n));
    assert_int_equal(n, 16);
    n = sizeof(out);
    assert_rv(F->C_EncryptFinal(h, out, &n), CKR_DATA_LEN_RANGE);
    /* A bad IV. */
    if (is_evertoken()) /* SoftHSMv2: CKR_MECHANISM_INVALID */
        assert_rv(F->C_EncryptInit(h, &shortiv, k), CKR_MECHANISM_PARAM_INVALID);
    else
        assert_true(F->C_EncryptInit(h, &shortiv, k) != CKR_OK);
    /* Padding that is no padding: a block ending in 0x00. */
    memset(blk, 0, sizeof(blk));
    n = sizeof(out);
    assert_ok(crypt1(h, 1, &cbc, k, blk, 16, out, &n));
    assert_ok(F->C_DecryptInit(h, &pad, k));
    n = sizeof(blk);
    assert_tag_fails(F->C_Decrypt(h, out, 16, blk, &n));
    /* Too small a buffer: the exact length, and the operation goes on. */
    assert_ok(F->C_EncryptInit(h, &pad, k));
    n = 16;
    assert_rv(F->C_Encrypt(h, pt.b, 20, out, &n), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(n, 32);
    assert_ok(F->C_Encrypt(h, pt.b, 20, out, &n));
    assert_int_equal(n, 32);
    if (is_evertoken()) {
        /* CBC_PAD decryption into a buffer of exactly the plaintext's
         * length, smaller than the ciphertext (SoftHSMv2 wants room for
         * the ciphertext's length). */
        unsigned char p2[20];
        assert_ok(F->C_DecryptInit(h, &pad, k));
        n = 5;
        assert_rv(F->C_Decrypt(h, out, 32, p2, &n), CKR_BUFFER_TOO_SMALL);
        assert_int_equal(n, 20); /* exact */
        n = 20;
        assert_ok(F->C_Decrypt(h, out, 32, p2, &n));
        assert_int_equal(n, 20);
        assert_memory_equal(p2, pt.b, 20);
    }
    /* Update with too small a buffer. */
    assert_ok(F->C_EncryptInit(h, &ecb, k));
    n = 15;
    assert_rv(F->C_EncryptUpdate(h, pt.b, 32, out, &n), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(n, 32);
    n = 32;
    assert_ok(F->C_EncryptUpdate(h, pt.b, 32, out, &n));
    n = sizeof(out);
    assert_ok(F->C_EncryptFinal(h, out + 32, &n));
    assert_int_equal(n, 0);
    /* A key not for encryption. */
    {
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE kt = CKK_AES;
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                            {CKA_KEY_TYPE, &kt, sizeof(kt)},
                            {CKA_VALUE, k128.b, 16},
                            {CKA_ENCRYPT, (void *)&no, 1}};
        CK_ATTRIBUTE off = {CKA_ENCRYPT, (void *)&no, 1};
        CK_OBJECT_HANDLE k2;
        assert_ok(F->C_CreateObject(h, t, N_(t), &k2));
        assert_rv(F->C_EncryptInit(h, &ecb, k2), CKR_KEY_FUNCTION_NOT_PERMITTED);
        /* evertoken: a secret key's encryption roles are fixed at creation
         * (wrap policy, docs/threat-model.md). */
        if (is_evertoken())
            assert_rv(F->C_SetAttributeValue(h, k, &off, 1), CKR_ATTRIBUTE_READ_ONLY);
    }
    if (is_evertoken()) {
        CK_MECHANISM des = {CKM_DES3_CBC, iv, 8};
        CK_MECHANISM_INFO info;
        assert_rv(F->C_EncryptInit(h, &des, k), CKR_MECHANISM_INVALID);
        assert_rv(F->C_GetMechanismInfo(E.slot, CKM_DES3_ECB, &info), CKR_MECHANISM_INVALID);
        assert_rv(F->C_GetMechanismInfo(E.slot, CKM_DES_KEY_GEN, &info), CKR_MECHANISM_INVALID);
    }
    assert_ok(F->C_CloseSession(h));
}

/* CTR: the counter may not run past its bits. */
static void
t_secret_ctr_limit(void **state)
{
    CK_SESSION_HANDLE h = user_session();
    struct bin k128 = unhex(K128_38A), pt = unhex(PT_38A);
    CK_AES_CTR_PARAMS ctr;
    CK_MECHANISM m = {CKM_AES_CTR, &ctr, sizeof(ctr)};
    unsigned char out[64];
    CK_OBJECT_HANDLE k;
    CK_ULONG n;

    (void)state;
    if (is_softhsm()) {
        /* SoftHSMv2 lets the counter carry into the nonce. */
        assert_ok(F->C_CloseSession(h));
        return;
    }
    k = secret_key(h, CKK_AES, k128.b, k128.n);
    memset(ctr.cb, 0, 16);
    ctr.cb[15] = 0xfe; /* 8 counter bits: two blocks left */
    ctr.ulCounterBits = 8;
    n = sizeof(out);
    assert_ok(crypt1(h, 1, &m, k, pt.b, 32, out, &n));
    n = sizeof(out);
    assert_ok(F->C_EncryptInit(h, &m, k));
    assert_rv(F->C_Encrypt(h, pt.b, 33, out, &n), CKR_DATA_LEN_RANGE);
    ctr.ulCounterBits = 0;
    assert_rv(F->C_EncryptInit(h, &m, k), CKR_MECHANISM_PARAM_INVALID);
    ctr.ulCounterBits = 129;
    assert_rv(F->C_EncryptInit(h, &m, k), CKR_MECHANISM_PARAM_INVALID);
    assert_ok(F->C_CloseSession(h));
}

/* C_GetMechanismInfo says what the mechanisms take. */
static void
t_secret_mech_info(void **state)
{
    static const struct {
        CK_MECHANISM_TYPE m;
        CK_FLAGS f;
    } v[] = {
        {CKM_AES_KEY_GEN, CKF_GENERATE},
        {CKM_GENERIC_SECRET_KEY_GEN, CKF_GENERATE},
        {CKM_AES_ECB, CKF_ENCRYPT | CKF_DECRYPT},
        {CKM_AES_CBC, CKF_ENCRYPT | CKF_DECRYPT},
        {CKM_AES_CBC_PAD, CKF_ENCRYPT | CKF_DECRYPT},
        {CKM_AES_CTR, CKF_ENCRYPT | CKF_DECRYPT},
        {CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT},
        {CKM_AES_CMAC, CKF_SIGN | CKF_VERIFY},
        {CKM_AES_CMAC_GENERAL, CKF_SIGN | CKF_VERIFY},
        {CKM_SHA_1_HMAC, CKF_SIGN | CKF_VERIFY},
        {CKM_SHA224_HMAC, CKF_SIGN | CKF_VERIFY},
        {CKM_SHA256_HMAC, CKF_SIGN | CKF_VERIFY},
        {CKM_SHA384_HMAC, CKF_SIGN | CKF_VERIFY},
        {CKM_SHA512_HMAC, CKF_SIGN | CKF_VERIFY},
        {CKM_SHA256_HMAC_GENERAL, CKF_SIGN | CKF_VERIFY},
    };
    CK_MECHANISM_INFO info;

    (void)state;
    for (size_t i = 0; i < N_(v); i++) {
        if (!listed(v[i].m))
            continue;
        assert_ok(F->C_GetMechanismInfo(E.slot, v[i].m, &info));
        assert_true((info.flags & v[i].f) == v[i].f);
        if (v[i].m != CKM_GENERIC_SECRET_KEY_GEN && v[i].m < CKM_AES_KEY_GEN)
            continue; /* HMAC key sizes: modules disagree on the unit */
        if (v[i].m >= CKM_AES_KEY_GEN) {
            assert_int_equal(info.ulMinKeySize, 16);
            assert_int_equal(info.ulMaxKeySize, 32);
        }
    }
    if (is_evertoken()) {
        assert_ok(F->C_GetMechanismInfo(E.slot, CKM_SHA256_HMAC, &info));
        assert_int_equal(info.ulMinKeySize, 1);
        assert_int_equal(info.ulMaxKeySize, 1024);
        assert_ok(F->C_GetMechanismInfo(E.slot, CKM_GENERIC_SECRET_KEY_GEN, &info));
        assert_int_equal(info.ulMinKeySize, 8);
        assert_int_equal(info.ulMaxKeySize, 8192);
    }
}

/* Random lengths: multi-part in random pieces equals single-part. */
static void
t_secret_random_parts(void **state)
{
    CK_SESSION_HANDLE h = user_session();
    unsigned char key[32], iv[16], data[300], ct1[400], ct2[400];
    CK_GCM_PARAMS g = {iv, 12, 96, data, 13, 128};
    CK_AES_CTR_PARAMS ctr;
    CK_MECHANISM ms[] = {
        {CKM_AES_CBC_PAD, iv, 16},
        {CKM_AES_CTR, &ctr, sizeof(ctr)},
        {CKM_AES_GCM, &g, sizeof(g)},
    };
    CK_OBJECT_HANDLE k;

    (void)state;
    assert_int_equal(RAND_bytes(key, sizeof(key)), 1);
    assert_int_equal(RAND_bytes(iv, sizeof(iv)), 1);
    assert_int_equal(RAND_bytes(data, sizeof(data)), 1);
    memcpy(ctr.cb, iv, 16);
    ctr.ulCounterBits = 128;
    k = secret_key(h, CKK_AES, key, 32);
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < N_(ms); i++) {
            unsigned char r[2];
            CK_ULONG len, n1 = sizeof(ct1), n2 = sizeof(ct2);
            assert_int_equal(RAND_bytes(r, 2), 1);
            len = r[0] % sizeof(data) + (round == 0 ? 0 : 1);
            assert_ok(crypt1(h, 1, &ms[i], k, data, len, ct1, &n1));
            assert_ok(cryptn(h, 1, &ms[i], k, data, len, r[1] % 40 + 1, ct2, &n2));
            assert_int_equal(n1, n2);
            assert_memory_equal(ct1, ct2, n1);
            n2 = sizeof(ct2);
            assert_ok(cryptn(h, 0, &ms[i], k, ct1, n1, r[1] % 23 + 1, ct2, &n2));
            assert_int_equal(n2, len);
            assert_memory_equal(ct2, data, len);
        }
    }
    assert_ok(F->C_CloseSession(h));
}

/* CKA_PRIVATE FALSE: accepted for session keys (they never touch the
 * disk), refused by evertoken for token keys (stored sealed only). */
static void
t_secret_public_session_keys(void **state)
{
    CK_SESSION_HANDLE h = user_session();
    CK_MECHANISM aes = {CKM_AES_KEY_GEN, NULL, 0}, ecb = {CKM_AES_ECB, NULL, 0};
    CK_MECHANISM ec = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG len = 16, n;
    unsigned char v[16] = {1, 2, 3}, in[16] = {0}, out[16];
    CK_ATTRIBUTE gen[] = {{CKA_VALUE_LEN, &len, sizeof(len)}, {CKA_PRIVATE, (void *)&no, 1}};
    CK_ATTRIBUTE gen_tok[] = {{CKA_VALUE_LEN, &len, sizeof(len)},
                              {CKA_PRIVATE, (void *)&no, 1},
                              {CKA_TOKEN, (void *)&yes, 1}};
    CK_ATTRIBUTE mk[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_KEY_TYPE, &kt, sizeof(kt)},
                         {CKA_VALUE, v, sizeof(v)},
                         {CKA_PRIVATE, (void *)&no, 1}};
    CK_ATTRIBUTE pubt[] = {{CKA_EC_PARAMS, (void *)p256, sizeof(p256)}};
    CK_ATTRIBUTE privt[] = {{CKA_PRIVATE, (void *)&no, 1}, {CKA_SIGN, (void *)&yes, 1}};
    CK_OBJECT_HANDLE k, k2, pub, priv;

    (void)state;
    assert_ok(F->C_GenerateKey(h, &aes, gen, N_(gen), &k));
    assert_int_equal(get_bool(h, k, CKA_PRIVATE), CK_FALSE);
    assert_ok(F->C_CreateObject(h, mk, N_(mk), &k2));
    assert_int_equal(get_bool(h, k2, CKA_PRIVATE), CK_FALSE);
    assert_ok(F->C_GenerateKeyPair(h, &ec, pubt, N_(pubt), privt, N_(privt), &pub, &priv));
    assert_int_equal(get_bool(h, priv, CKA_PRIVATE), CK_FALSE);
    /* Public objects: usable and visible after the logout. */
    assert_ok(F->C_Logout(h));
    n = sizeof(out);
    assert_ok(crypt1(h, 1, &ecb, k2, in, 16, out, &n));
    if (is_evertoken()) {
        assert_ok(F->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)CONF_USER_PIN, strlen(CONF_USER_PIN)));
        assert_rv(F->C_GenerateKey(h, &aes, gen_tok, N_(gen_tok), &k), CKR_TEMPLATE_INCONSISTENT);
    }
    assert_ok(F->C_CloseSession(h));
}

/* A logout ends an operation on a private secret key and drops the key's
 * copy (evertoken; SoftHSMv2 keeps operations across C_Logout). */
static void
t_secret_logout(void **state)
{
    CK_SESSION_HANDLE h = user_session();
    struct bin k1 = unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"), hi = text("Hi There");
    CK_MECHANISM m = {CKM_SHA256_HMAC, NULL, 0};
    CK_OBJECT_HANDLE k;
    unsigned char mac[32];
    CK_ULONG len = sizeof(mac);

    (void)state;
    k = secret_key(h, CKK_GENERIC_SECRET, k1.b, k1.n);
    if (is_evertoken()) {
        assert_ok(F->C_SignInit(h, &m, k));
        assert_ok(F->C_SignUpdate(h, hi.b, hi.n));
        assert_ok(F->C_Logout(h));
        assert_rv(F->C_SignFinal(h, mac, &len), CKR_OPERATION_NOT_INITIALIZED);
        /* The private key is gone with the login. */
        assert_rv(F->C_SignInit(h, &m, k), CKR_KEY_HANDLE_INVALID);
    }
    assert_ok(F->C_CloseSession(h));
}

struct conf_group
conf_secret_tests(void)
{
    static const struct CMUnitTest tests[] = {
        CONF_TEST_TOKEN(t_secret_generate),
        CONF_TEST_TOKEN(t_secret_token_key),
        CONF_TEST_TOKEN(t_secret_aes_kat),
        CONF_TEST_TOKEN(t_secret_gcm_kat),
        CONF_TEST_TOKEN(t_secret_cmac_kat),
        CONF_TEST_TOKEN(t_secret_hmac_kat),
        CONF_TEST_TOKEN(t_secret_errors),
        CONF_TEST_TOKEN(t_secret_ctr_limit),
        CONF_TEST_TOKEN(t_secret_mech_info),
        CONF_TEST_TOKEN(t_secret_random_parts),
        CONF_TEST_TOKEN(t_secret_public_session_keys),
        CONF_TEST_TOKEN(t_secret_logout),
    };
    struct conf_group g = {"secret", tests, N_(tests)};
    return g;
}
