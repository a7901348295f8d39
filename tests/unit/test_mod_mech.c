/*
 * test_mod_mech.c — the mechanism table (mech.c) and the pure helpers of the
 * operations: hash lookups and the PKCS#11 (r || s) <-> DER conversion of
 * ECDSA signatures (op_sign.c), checked against OpenSSL's own signatures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "op_int.h"

static void
t_table(void **state)
{
    const struct mod_mech *m;

    (void)state;
    m = mech_find(CKM_SHA256_RSA_PKCS_PSS);
    assert_non_null(m);
    assert_int_equal(m->fam, MF_RSA_PSS);
    assert_int_equal(m->md, MD_SHA256);
    assert_int_equal(m->key_type, CKK_RSA);
    assert_int_equal(m->info.flags, CKF_SIGN | CKF_VERIFY);
    m = mech_find(CKM_ECDSA);
    assert_non_null(m);
    assert_int_equal(m->md, MD_NONE);
    assert_int_equal(m->info.ulMinKeySize, 256);
    assert_int_equal(m->info.ulMaxKeySize, 521);
    m = mech_find(CKM_EC_EDWARDS_KEY_PAIR_GEN);
    assert_non_null(m);
    assert_int_equal(m->info.flags, CKF_GENERATE_KEY_PAIR);
    /* Never offered: raw RSA, MD5. */
    assert_null(mech_find(CKM_RSA_X_509));
    assert_null(mech_find(CKM_MD5));
}

static void
t_hashes(void **state)
{
    (void)state;
    assert_int_equal(md_by_mech(CKM_SHA_1), MD_SHA1);
    assert_int_equal(md_by_mech(CKM_SHA512), MD_SHA512);
    assert_int_equal(md_by_mech(CKM_MD5), MD_NONE);
    assert_int_equal(md_by_mgf(CKG_MGF1_SHA224), MD_SHA224);
    assert_int_equal(md_by_mgf(0x77), MD_NONE);
    for (int md = MD_NONE + 1; md < MD_COUNT; md++) {
        const EVP_MD *e = md_get(md);
        assert_non_null(e);
        assert_int_equal((size_t)EVP_MD_get_size(e), md_info(md)->len);
        assert_ptr_equal(md_get(md), e); /* fetched once */
    }
    assert_null(md_get(MD_NONE));
    assert_null(md_info(MD_COUNT));
}

/* OpenSSL's DER signatures for each curve become r || s of twice the order
 * length and back, byte for byte; the r || s verifies after the round
 * trip. Small r or s (leading zero bytes) are padded. */
static void
t_ecdsa_encoding(void **state)
{
    static const char *const curves[] = {"P-256", "P-384", "P-521"};
    static const size_t half[] = {32, 48, 66};

    (void)state;
    for (size_t c = 0; c < 3; c++) {
        EVP_PKEY *pk = EVP_EC_gen(curves[c]);
        assert_non_null(pk);
        for (int i = 0; i < 32; i++) {
            unsigned char h[32], der[160], rs[132], der2[160];
            size_t derlen = sizeof(der), der2len = sizeof(der2);
            EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
            memset(h, i, sizeof(h));
            assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
            assert_int_equal(EVP_PKEY_sign(ctx, der, &derlen, h, sizeof(h)), 1);
            assert_int_equal(ecdsa_der_to_rs(der, derlen, rs, 2 * half[c]), CKR_OK);
            assert_int_equal(ecdsa_rs_to_der(rs, 2 * half[c], der2, &der2len), CKR_OK);
            assert_int_equal(der2len, derlen);
            assert_memory_equal(der2, der, derlen);
            assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
            assert_int_equal(EVP_PKEY_verify(ctx, der2, der2len, h, sizeof(h)), 1);
            EVP_PKEY_CTX_free(ctx);
        }
        EVP_PKEY_free(pk);
    }
    {
        /* r = 1, s = 2: mostly padding. */
        unsigned char rs[64] = {0}, der[80], back[64];
        size_t derlen = sizeof(der);
        rs[31] = 1;
        rs[63] = 2;
        assert_int_equal(ecdsa_rs_to_der(rs, 64, der, &derlen), CKR_OK);
        assert_int_equal(derlen, 8); /* 30 06 02 01 01 02 01 02 */
        assert_int_equal(ecdsa_der_to_rs(der, derlen, back, 64), CKR_OK);
        assert_memory_equal(back, rs, 64);
        /* A DER buffer too small, garbage DER, and r too long for the half. */
        derlen = 4;
        assert_int_equal(ecdsa_rs_to_der(rs, 64, der, &derlen), CKR_SIGNATURE_INVALID);
        assert_int_not_equal(ecdsa_der_to_rs((const unsigned char *)"\x30\x01", 2, back, 64),
                             CKR_OK);
        memset(rs, 0xff, sizeof(rs));
        derlen = sizeof(der);
        assert_int_equal(ecdsa_rs_to_der(rs, 64, der, &derlen), CKR_OK);
        assert_int_not_equal(ecdsa_der_to_rs(der, derlen, back, 62), CKR_OK);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_table),
        cmocka_unit_test(t_hashes),
        cmocka_unit_test(t_ecdsa_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
