/*
 * acme_key.c — the ACME account key pair in the token.
 *
 * The account key is an ordinary key pair (not a rollover credential): a
 * private key and its public key under one CKA_ID and CKA_LABEL ([acme]
 * account_id / account_label; by default the label "acme-account:" plus the
 * profile name and the first 16 bytes of SHA-256("evertoken-enroll-acme:"
 * label) as CKA_ID). Generated in the token (C_GenerateKeyPair: sensitive,
 * never extractable), used through p11key.c's token-backed EVP_PKEY: every
 * JWS signature is a C_Sign in the token.
 */
#include <stdlib.h>
#include <string.h>

#include "acme.h"
#include "p11key.h"

/* The first private/public key object with LABEL and ID: *H, 0 if found. */
static int
find(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE sh, CK_OBJECT_CLASS cls, const char *label,
     const unsigned char *id, size_t idlen, CK_OBJECT_HANDLE *h)
{
    CK_ATTRIBUTE t[3] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_ID, (void *)id, idlen},
                         {CKA_LABEL, (void *)label, strlen(label)}};
    CK_ULONG n = 0;

    if (f->C_FindObjectsInit(sh, t, 3) != CKR_OK)
        return -1;
    if (f->C_FindObjects(sh, h, 1, &n) != CKR_OK)
        n = 0;
    f->C_FindObjectsFinal(sh);
    return n == 1 ? 0 : -1;
}

static enr_rc
generate(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE sh, int rsa, const char *label,
         const unsigned char *id, size_t idlen, CK_OBJECT_HANDLE *hpub, CK_OBJECT_HANDLE *hpriv)
{
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG bits = 2048;
    CK_BYTE e[] = {1, 0, 1};
    CK_MECHANISM mech = {rsa ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &yes, sizeof(yes)},
                          {CKA_PRIVATE, &no, sizeof(no)},
                          {CKA_VERIFY, &yes, sizeof(yes)},
                          {CKA_ID, (void *)id, idlen},
                          {CKA_LABEL, (void *)label, strlen(label)},
                          {CKA_EC_PARAMS, (void *)p256, sizeof(p256)},
                          {CKA_PUBLIC_EXPONENT, e, sizeof(e)}};
    CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &yes, sizeof(yes)},
                           {CKA_PRIVATE, &yes, sizeof(yes)},
                           {CKA_SENSITIVE, &yes, sizeof(yes)},
                           {CKA_EXTRACTABLE, &no, sizeof(no)},
                           {CKA_SIGN, &yes, sizeof(yes)},
                           {CKA_ID, (void *)id, idlen},
                           {CKA_LABEL, (void *)label, strlen(label)}};
    CK_RV rv;

    if (rsa) {
        pub[5].type = CKA_MODULUS_BITS;
        pub[5].pValue = &bits;
        pub[5].ulValueLen = sizeof(bits);
    }
    rv = f->C_GenerateKeyPair(sh, &mech, pub, rsa ? 7 : 6, priv, 7, hpub, hpriv);
    if (rv != CKR_OK) {
        enr_err("cannot generate the ACME account key \"%s\" in the token: CKR 0x%08lx", label,
                (unsigned long)rv);
        return ENR_E_TOKEN;
    }
    enr_info("generated the ACME account key \"%s\" (%s) in the token", label,
             rsa ? "RSA 2048, RS256" : "EC P-256, ES256");
    return ENR_OK;
}

enr_rc
enr_acme_account_key(enr_token *t, const enr_profile *p, const char *label, const unsigned char *id,
                     size_t idlen, int create, EVP_PKEY **key)
{
    CK_FUNCTION_LIST_PTR f;
    CK_SESSION_HANDLE sh;
    CK_OBJECT_HANDLE hpriv, hpub;
    EVP_PKEY *pub = NULL;
    enr_rc rc;

    *key = NULL;
    f = enr_token_p11(t, &sh);
    if (find(f, sh, CKO_PRIVATE_KEY, label, id, idlen, &hpriv) != 0) {
        if (!create)
            return ENR_OK;
        rc = generate(f, sh, p->acme != NULL && p->acme->account_rsa, label, id, idlen, &hpub,
                      &hpriv);
        if (rc != ENR_OK)
            return rc;
        pub = enr_token_pubkey(t, hpub);
    } else {
        pub = enr_token_pubkey(t, hpriv); /* RSA: the private key object has it */
        if (pub == NULL && find(f, sh, CKO_PUBLIC_KEY, label, id, idlen, &hpub) == 0)
            pub = enr_token_pubkey(t, hpub);
    }
    if (pub == NULL) {
        enr_err("the ACME account key \"%s\" has no readable public key in the token", label);
        return ENR_E_TOKEN;
    }
    *key = enr_p11key_new(f, sh, hpriv, pub);
    EVP_PKEY_free(pub);
    if (*key == NULL) {
        enr_err("the ACME account key \"%s\" is not usable (RSA or EC only)", label);
        return ENR_E_TOKEN;
    }
    return ENR_OK;
}

enr_rc
enr_acme_delete_key(enr_token *t, const char *label, const unsigned char *id, size_t idlen)
{
    CK_FUNCTION_LIST_PTR f;
    CK_SESSION_HANDLE sh;
    CK_OBJECT_HANDLE h;
    CK_OBJECT_CLASS cls[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY};

    f = enr_token_p11(t, &sh);
    for (int i = 0; i < 2; i++)
        while (find(f, sh, cls[i], label, id, idlen, &h) == 0)
            if (f->C_DestroyObject(sh, h) != CKR_OK) {
                enr_err("cannot delete the old ACME account key \"%s\"", label);
                return ENR_E_TOKEN;
            }
    return ENR_OK;
}

enr_rc
enr_acme_rename_key(enr_token *t, const char *from_label, const unsigned char *from_id,
                    size_t from_idlen, const char *to_label, const unsigned char *to_id,
                    size_t to_idlen)
{
    CK_FUNCTION_LIST_PTR f;
    CK_SESSION_HANDLE sh;
    CK_OBJECT_HANDLE h;
    CK_OBJECT_CLASS cls[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY};
    CK_ATTRIBUTE a[2] = {{CKA_ID, (void *)to_id, to_idlen},
                         {CKA_LABEL, (void *)to_label, strlen(to_label)}};

    f = enr_token_p11(t, &sh);
    for (int i = 0; i < 2; i++)
        while (find(f, sh, cls[i], from_label, from_id, from_idlen, &h) == 0)
            if (f->C_SetAttributeValue(sh, h, a, 2) != CKR_OK) {
                enr_err("cannot rename the ACME account key \"%s\" to \"%s\"", from_label,
                        to_label);
                return ENR_E_TOKEN;
            }
    return ENR_OK;
}
