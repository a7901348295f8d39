/*
 * wrap_migrate — key migration between two PKCS#11 tokens by wrapping, for
 * t_wrap_migrate.sh:
 *
 *   wrap_migrate SRC_MODULE SRC_LABEL SRC_PIN DST_MODULE DST_LABEL DST_PIN
 *
 * For an EC P-256 and an RSA-2048 key pair generated in the source token
 * (private key extractable and sensitive): a 128-bit AES key-encryption
 * key of the same random value is created in both tokens as a session
 * object (wrap/unwrap only); the private key is wrapped with
 * CKM_AES_KEY_WRAP_PAD (PKCS#8 inside) in the source and unwrapped into the
 * destination as a token key; the destination signs, and the source's
 * public key verifies the signature. Both modules may be the same library
 * (two tokens of one module). Exit status 0 and one "ok:" line per key type.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "p11.h"

#define N_(a) (sizeof(a) / sizeof((a)[0]))

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

static void
check(CK_RV rv, const char *what)
{
    if (rv != CKR_OK) {
        fprintf(stderr, "FAIL: %s: 0x%lx\n", what, (unsigned long)rv);
        exit(1);
    }
}

static CK_FUNCTION_LIST_PTR
load(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CK_C_GetFunctionList gfl;
    CK_FUNCTION_LIST_PTR f = NULL;

    if (h == NULL) {
        fprintf(stderr, "FAIL: dlopen %s: %s\n", path, dlerror());
        exit(1);
    }
    gfl = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
    if (gfl == NULL) {
        fprintf(stderr, "FAIL: no C_GetFunctionList in %s\n", path);
        exit(1);
    }
    check(gfl(&f), "C_GetFunctionList");
    return f;
}

/* A logged-in R/W session on the token labelled LABEL. */
static CK_SESSION_HANDLE
open_token(CK_FUNCTION_LIST_PTR f, const char *label, const char *pin)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = N_(slots);
    CK_SESSION_HANDLE s;

    check(f->C_GetSlotList(CK_TRUE, slots, &n), "C_GetSlotList");
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        size_t l = strlen(label);
        if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        if (memcmp(ti.label, label, l) != 0 || (l < 32 && ti.label[l] != ' '))
            continue;
        check(f->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
              "C_OpenSession");
        check(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), "C_Login");
        return s;
    }
    fprintf(stderr, "FAIL: no token labelled %s\n", label);
    exit(1);
}

static CK_OBJECT_HANDLE
kek(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, unsigned char *v)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &no, 1},
        {CKA_VALUE, v, 16},
        {CKA_WRAP, &yes, 1},
        {CKA_UNWRAP, &yes, 1},
        {CKA_ENCRYPT, &no, 1},
        {CKA_DECRYPT, &no, 1},
    };
    CK_OBJECT_HANDLE k;

    check(f->C_CreateObject(s, t, N_(t), &k), "C_CreateObject(KEK)");
    return k;
}

static void
migrate(CK_FUNCTION_LIST_PTR fs, CK_SESSION_HANDLE ss, CK_FUNCTION_LIST_PTR fd,
        CK_SESSION_HANDLE sd, int rsa)
{
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_MECHANISM gen = {rsa ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_MECHANISM kwp = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_MECHANISM sm = {rsa ? CKM_SHA256_RSA_PKCS : CKM_ECDSA, NULL, 0};
    CK_ULONG bits = 2048;
    CK_ATTRIBUTE pubt_ec[] = {{CKA_EC_PARAMS, (void *)p256, sizeof(p256)}, {CKA_VERIFY, &yes, 1}};
    CK_ATTRIBUTE pubt_rsa[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)}, {CKA_VERIFY, &yes, 1}};
    CK_ATTRIBUTE privt[] = {{CKA_SIGN, &yes, 1},
                            {CKA_EXTRACTABLE, &yes, 1},
                            {CKA_SENSITIVE, &yes, 1},
                            {CKA_TOKEN, &no, 1}};
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = rsa ? CKK_RSA : CKK_EC;
    CK_ATTRIBUTE ut[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &yes, 1},
        {CKA_PRIVATE, &yes, 1},
        {CKA_SIGN, &yes, 1},
        {CKA_LABEL, "migrated", 8},
    };
    unsigned char kv[16], wrapped[4096], sig[512], msg[32];
    CK_ULONG wlen = sizeof(wrapped), slen = sizeof(sig);
    CK_OBJECT_HANDLE pub, priv, ks, kd, moved;

    if (RAND_bytes(kv, sizeof(kv)) != 1 || RAND_bytes(msg, sizeof(msg)) != 1)
        exit(1);
    check(
        fs->C_GenerateKeyPair(ss, &gen, rsa ? pubt_rsa : pubt_ec, 2, privt, N_(privt), &pub, &priv),
        "C_GenerateKeyPair");
    ks = kek(fs, ss, kv);
    kd = kek(fd, sd, kv);
    check(fs->C_WrapKey(ss, &kwp, ks, priv, wrapped, &wlen), "C_WrapKey");
    check(fd->C_UnwrapKey(sd, &kwp, kd, wrapped, wlen, ut, N_(ut), &moved), "C_UnwrapKey");
    check(fd->C_SignInit(sd, &sm, moved), "C_SignInit (destination)");
    check(fd->C_Sign(sd, msg, sizeof(msg), sig, &slen), "C_Sign (destination)");
    check(fs->C_VerifyInit(ss, &sm, pub), "C_VerifyInit (source)");
    check(fs->C_Verify(ss, msg, sizeof(msg), sig, slen), "C_Verify (source public key)");
    printf("ok: %s private key wrapped with AES-KWP, unwrapped, signs verifiably\n",
           rsa ? "RSA-2048" : "EC P-256");
}

int
main(int argc, char **argv)
{
    CK_FUNCTION_LIST_PTR fs, fd;
    CK_C_INITIALIZE_ARGS args = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
    CK_SESSION_HANDLE ss, sd;

    if (argc != 7) {
        fprintf(stderr, "usage: wrap_migrate SRC_MODULE SRC_LABEL SRC_PIN DST_MODULE DST_LABEL "
                        "DST_PIN\n");
        return 2;
    }
    fs = load(argv[1]);
    fd = load(argv[4]);
    check(fs->C_Initialize(&args), "C_Initialize (source)");
    if (fd != fs)
        check(fd->C_Initialize(&args), "C_Initialize (destination)");
    ss = open_token(fs, argv[2], argv[3]);
    sd = open_token(fd, argv[5], argv[6]);
    migrate(fs, ss, fd, sd, 0);
    migrate(fs, ss, fd, sd, 1);
    fs->C_CloseSession(ss);
    fd->C_CloseSession(sd);
    fs->C_Finalize(NULL);
    if (fd != fs)
        fd->C_Finalize(NULL);
    return 0;
}
