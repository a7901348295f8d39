/*
 * p11key.h — token-backed EVP_PKEY for one private key object handle
 * (p11key.c): used for the pending keys of evertoken's native rollover,
 * which libp11 cannot find.
 */
#ifndef EVERTOKEN_ENROLL_P11KEY_H
#define EVERTOKEN_ENROLL_P11KEY_H

#include <openssl/evp.h>

#include <evertoken/p11.h>

/* An EVP_PKEY with PUB's public key (RSA or EC) whose private operations
 * (PKCS#1 v1.5 signature and decryption, ECDSA) run as C_Sign/C_Decrypt on
 * PRIV in session SH of F. Free it before the session closes. */
EVP_PKEY *enr_p11key_new(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE priv,
                         EVP_PKEY *pub);

/* The PKCS#11 functions and logged-in session of an open token (token.c),
 * for key pairs other than the credential's (the ACME account key). */
struct enr_token;
CK_FUNCTION_LIST_PTR enr_token_p11(struct enr_token *t, CK_SESSION_HANDLE *sh);
/* The public key of key object H (RSA private or public, EC public). */
EVP_PKEY *enr_token_pubkey(struct enr_token *t, CK_OBJECT_HANDLE h);

#endif /* EVERTOKEN_ENROLL_P11KEY_H */
