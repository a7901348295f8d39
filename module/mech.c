/*
 * mech.c — the mechanism table and the mechanism queries
 * (C_GetMechanismList, C_GetMechanismInfo), and the hash functions the
 * mechanisms use.
 *
 * The table lists exactly what the module does: every entry is served by
 * op_sign.c, op_cipher.c, op_digest.c or keygen.c, with the key sizes those
 * accept. docs/mechanisms.md is its description. CKM_RSA_X_509 is not
 * offered on purpose: raw RSA turns a private key into a decryption and
 * signing oracle for any padding an attacker likes, and no client the token
 * serves needs it.
 *
 * Hash functions are fetched from OpenSSL's default library context once per
 * process (md_get) and kept: an explicit fetch makes every later
 * EVP_DigestInit_ex2 skip OpenSSL's method-store lookup (and its lock), which
 * matters for per-operation cost and for threads signing in parallel.
 */
#include <pthread.h>
#include <stddef.h>

#include <openssl/evp.h>

#include "mod_int.h"

#define RSA_MIN 1024  /* what the object layer imports (obj_key.c) */
#define RSA_MAX 16384 /* OpenSSL's limit */
#define EC_F    (CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS)
#define SV      (CKF_SIGN | CKF_VERIFY)
#define ED      (CKF_ENCRYPT | CKF_DECRYPT)

/* Hash functions: PKCS#11 digest mechanism, MGF1 generator, OpenSSL name. */
static const struct mod_md md_table[MD_COUNT] = {
    [MD_SHA1] = {CKM_SHA_1, CKG_MGF1_SHA1, "SHA1", 20},
    [MD_SHA224] = {CKM_SHA224, CKG_MGF1_SHA224, "SHA2-224", 28},
    [MD_SHA256] = {CKM_SHA256, CKG_MGF1_SHA256, "SHA2-256", 32},
    [MD_SHA384] = {CKM_SHA384, CKG_MGF1_SHA384, "SHA2-384", 48},
    [MD_SHA512] = {CKM_SHA512, CKG_MGF1_SHA512, "SHA2-512", 64},
};

/* Sorted by type (C_GetMechanismList returns them in this order). */
static const struct mod_mech mech_table[] = {
    {CKM_RSA_PKCS_KEY_PAIR_GEN, {2048, 8192, CKF_GENERATE_KEY_PAIR}, CKK_RSA, MF_KEYGEN, MD_NONE},
    {CKM_RSA_PKCS,
     {RSA_MIN, RSA_MAX, SV | CKF_ENCRYPT | CKF_DECRYPT},
     CKK_RSA,
     MF_RSA_PKCS,
     MD_NONE},
    {CKM_SHA1_RSA_PKCS, {RSA_MIN, RSA_MAX, SV}, CKK_RSA, MF_RSA_PKCS, MD_SHA1},
    {CKM_RSA_PKCS_OAEP,
     {RSA_MIN, RSA_MAX, CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP},
     CKK_RSA,
     MF_RSA_OAEP,
     MD_NONE},
    {CKM_RSA_PKCS_PSS, {RSA_MIN, RSA_MAX, SV}, CKK_RSA, MF_RSA_PSS, MD_NONE},
    {CKM_SHA1_RSA_PKCS_PSS, {RSA_MIN, RSA_MAX, SV}, CKK_RSA, MF_RSA_PSS, MD_SHA1},
    {CKM_SHA256_RSA_PKCS, {RSA_MIN, RSA_MAX, SV}, CKK_RSA, MF_RSA_PKCS, MD_SHA256},
    {CKM_SHA384_RSA_PKCS, {RSA_MIN, RSA_MAX, SV}, CKK_RSA, MF_RSA_PKCS, MD_SHA384},
    {CKM_SHA512_RSA_PKCS, {RSA_MIN, RSA_MAX, SV}, CKK_RSA, MF_RSA_PKCS, MD_SHA512},
    {CKM_SHA256_RSA_PKCS_PSS, {RSA_MIN, RSA_MAX, SV}, CKK_RSA, MF_RSA_PSS, MD_SHA256},
    {CKM_SHA384_RSA_PKCS_PSS, {RSA_MIN, RSA_MAX, SV}, CKK_RSA, MF_RSA_PSS, MD_SHA384},
    {CKM_SHA512_RSA_PKCS_PSS, {RSA_MIN, RSA_MAX, SV}, CKK_RSA, MF_RSA_PSS, MD_SHA512},
    {CKM_SHA224_RSA_PKCS, {RSA_MIN, RSA_MAX, SV}, CKK_RSA, MF_RSA_PKCS, MD_SHA224},
    {CKM_SHA224_RSA_PKCS_PSS, {RSA_MIN, RSA_MAX, SV}, CKK_RSA, MF_RSA_PSS, MD_SHA224},
    {CKM_SHA_1, {0, 0, CKF_DIGEST}, CK_UNAVAILABLE_INFORMATION, MF_DIGEST, MD_SHA1},
    {CKM_SHA_1_HMAC, {1, MOD_SECRET_MAX, SV}, CKK_GENERIC_SECRET, MF_HMAC, MD_SHA1},
    {CKM_SHA_1_HMAC_GENERAL, {1, MOD_SECRET_MAX, SV}, CKK_GENERIC_SECRET, MF_HMAC, MD_SHA1},
    {CKM_SHA256, {0, 0, CKF_DIGEST}, CK_UNAVAILABLE_INFORMATION, MF_DIGEST, MD_SHA256},
    {CKM_SHA256_HMAC, {1, MOD_SECRET_MAX, SV}, CKK_GENERIC_SECRET, MF_HMAC, MD_SHA256},
    {CKM_SHA256_HMAC_GENERAL, {1, MOD_SECRET_MAX, SV}, CKK_GENERIC_SECRET, MF_HMAC, MD_SHA256},
    {CKM_SHA224, {0, 0, CKF_DIGEST}, CK_UNAVAILABLE_INFORMATION, MF_DIGEST, MD_SHA224},
    {CKM_SHA224_HMAC, {1, MOD_SECRET_MAX, SV}, CKK_GENERIC_SECRET, MF_HMAC, MD_SHA224},
    {CKM_SHA224_HMAC_GENERAL, {1, MOD_SECRET_MAX, SV}, CKK_GENERIC_SECRET, MF_HMAC, MD_SHA224},
    {CKM_SHA384, {0, 0, CKF_DIGEST}, CK_UNAVAILABLE_INFORMATION, MF_DIGEST, MD_SHA384},
    {CKM_SHA384_HMAC, {1, MOD_SECRET_MAX, SV}, CKK_GENERIC_SECRET, MF_HMAC, MD_SHA384},
    {CKM_SHA384_HMAC_GENERAL, {1, MOD_SECRET_MAX, SV}, CKK_GENERIC_SECRET, MF_HMAC, MD_SHA384},
    {CKM_SHA512, {0, 0, CKF_DIGEST}, CK_UNAVAILABLE_INFORMATION, MF_DIGEST, MD_SHA512},
    {CKM_SHA512_HMAC, {1, MOD_SECRET_MAX, SV}, CKK_GENERIC_SECRET, MF_HMAC, MD_SHA512},
    {CKM_SHA512_HMAC_GENERAL, {1, MOD_SECRET_MAX, SV}, CKK_GENERIC_SECRET, MF_HMAC, MD_SHA512},
    {CKM_GENERIC_SECRET_KEY_GEN,
     {8, MOD_SECRET_MAX * 8, CKF_GENERATE},
     CKK_GENERIC_SECRET,
     MF_SECGEN,
     MD_NONE},
    {CKM_EC_KEY_PAIR_GEN, {256, 521, CKF_GENERATE_KEY_PAIR | EC_F}, CKK_EC, MF_KEYGEN, MD_NONE},
    {CKM_ECDSA, {256, 521, SV | EC_F}, CKK_EC, MF_ECDSA, MD_NONE},
    {CKM_ECDSA_SHA1, {256, 521, SV | EC_F}, CKK_EC, MF_ECDSA, MD_SHA1},
    {CKM_ECDSA_SHA224, {256, 521, SV | EC_F}, CKK_EC, MF_ECDSA, MD_SHA224},
    {CKM_ECDSA_SHA256, {256, 521, SV | EC_F}, CKK_EC, MF_ECDSA, MD_SHA256},
    {CKM_ECDSA_SHA384, {256, 521, SV | EC_F}, CKK_EC, MF_ECDSA, MD_SHA384},
    {CKM_ECDSA_SHA512, {256, 521, SV | EC_F}, CKK_EC, MF_ECDSA, MD_SHA512},
    {CKM_ECDH1_DERIVE, {256, 521, CKF_DERIVE | EC_F}, CKK_EC, MF_DERIVE, MD_NONE},
    {CKM_EC_EDWARDS_KEY_PAIR_GEN,
     {255, 456, CKF_GENERATE_KEY_PAIR},
     CKK_EC_EDWARDS,
     MF_KEYGEN,
     MD_NONE},
    {CKM_EDDSA, {255, 456, SV}, CKK_EC_EDWARDS, MF_EDDSA, MD_NONE},
    {CKM_AES_KEY_GEN, {16, 32, CKF_GENERATE}, CKK_AES, MF_SECGEN, MD_NONE},
    {CKM_AES_ECB, {16, 32, ED}, CKK_AES, MF_AES_ECB, MD_NONE},
    {CKM_AES_CBC, {16, 32, ED}, CKK_AES, MF_AES_CBC, MD_NONE},
    {CKM_AES_CBC_PAD, {16, 32, ED}, CKK_AES, MF_AES_CBC_PAD, MD_NONE},
    {CKM_AES_CTR, {16, 32, ED}, CKK_AES, MF_AES_CTR, MD_NONE},
    {CKM_AES_GCM, {16, 32, ED}, CKK_AES, MF_AES_GCM, MD_NONE},
    {CKM_AES_CMAC, {16, 32, SV}, CKK_AES, MF_CMAC, MD_NONE},
    {CKM_AES_CMAC_GENERAL, {16, 32, SV}, CKK_AES, MF_CMAC, MD_NONE},
    {CKM_AES_KEY_WRAP, {16, 32, CKF_WRAP | CKF_UNWRAP}, CKK_AES, MF_WRAP, MD_NONE},
    {CKM_AES_KEY_WRAP_PAD, {16, 32, CKF_WRAP | CKF_UNWRAP}, CKK_AES, MF_WRAP, MD_NONE},
};

#define MECH_COUNT (sizeof(mech_table) / sizeof(mech_table[0]))

const struct mod_mech *
mech_find(CK_MECHANISM_TYPE type)
{
    for (size_t i = 0; i < MECH_COUNT; i++)
        if (mech_table[i].type == type)
            return &mech_table[i];
    return NULL;
}

const struct mod_md *
md_info(int md)
{
    return md > MD_NONE && md < MD_COUNT ? &md_table[md] : NULL;
}

int
md_by_mech(CK_MECHANISM_TYPE type)
{
    for (int i = MD_NONE + 1; i < MD_COUNT; i++)
        if (md_table[i].mech == type)
            return i;
    return MD_NONE;
}

int
md_by_mgf(CK_ULONG mgf)
{
    for (int i = MD_NONE + 1; i < MD_COUNT; i++)
        if (md_table[i].mgf == mgf)
            return i;
    return MD_NONE;
}

static EVP_MD *md_fetched[MD_COUNT];
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void
md_fetch_all(void)
{
    for (int i = MD_NONE + 1; i < MD_COUNT; i++)
        md_fetched[i] = EVP_MD_fetch(NULL, md_table[i].ossl, NULL);
}

/* Kept for the life of the process (also across C_Finalize/C_Initialize and
 * in forked children, where they stay valid). NULL if OpenSSL lacks it. */
const EVP_MD *
md_get(int md)
{
    if (md <= MD_NONE || md >= MD_COUNT)
        return NULL;
    pthread_once(&md_once, md_fetch_all);
    return md_fetched[md];
}

CK_RV
mod_C_GetMechanismList(CK_SLOT_ID id, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
    struct mod_token *t = NULL;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (count == NULL)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = slot_lookup_inlock(id, &t);
    if (rv != CKR_OK)
        goto out;
    if (list == NULL) {
        *count = MECH_COUNT;
        goto out;
    }
    if (*count < MECH_COUNT) {
        *count = MECH_COUNT;
        rv = CKR_BUFFER_TOO_SMALL;
        goto out;
    }
    for (size_t i = 0; i < MECH_COUNT; i++)
        list[i] = mech_table[i].type;
    *count = MECH_COUNT;
out:
    mod_unlock();
    return rv;
}

CK_RV
mod_C_GetMechanismInfo(CK_SLOT_ID id, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
    struct mod_token *t = NULL;
    const struct mod_mech *m;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (info == NULL)
        return CKR_ARGUMENTS_BAD;
    mod_lock();
    rv = slot_lookup_inlock(id, &t);
    if (rv != CKR_OK)
        goto out;
    m = mech_find(type);
    if (m == NULL) {
        rv = CKR_MECHANISM_INVALID;
        goto out;
    }
    *info = m->info;
out:
    mod_unlock();
    return rv;
}
