/*
 * certchain.c — `export-cert --chain`: the certificate and the CA
 * certificates of the token that issued it (docs/cli.md). The issuers are
 * found among every certificate object the session sees, by name and key
 * identifier (X509_check_issued) and by signature, so a re-issued
 * intermediate with the same name and key is told apart from the old one by
 * the signature alone when both are present: the first that verifies wins.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "et_int.h"

#define CHAIN_MAX 10

/* Every certificate of the token as X509 (unparsable ones skipped). */
static STACK_OF(X509) * token_certs(et_p11 *p, CK_SESSION_HANDLE sh)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_ATTRIBUTE tmpl = {CKA_CLASS, &cls, sizeof(cls)};
    CK_OBJECT_HANDLE *objs = NULL;
    CK_ULONG n = 0;
    STACK_OF(X509) *sk = NULL;

    if (et_find_objects(p, sh, &tmpl, 1, &objs, &n) != ET_EXIT_OK)
        return NULL;
    sk = sk_X509_new_null();
    for (CK_ULONG i = 0; sk != NULL && i < n; i++) {
        unsigned char *der = NULL;
        const unsigned char *q;
        CK_ULONG len = 0;
        X509 *x;
        if (et_get_attr(p, sh, objs[i], CKA_VALUE, &der, &len) != 0 || len == 0) {
            free(der);
            continue;
        }
        q = der;
        x = d2i_X509(NULL, &q, (long)len);
        if (x != NULL && q == der + len)
            sk_X509_push(sk, x);
        else
            X509_free(x);
        free(der);
    }
    ERR_clear_error();
    free(objs);
    return sk;
}

/* The certificate of ALL that issued X (name, key identifier, signature). */
static X509 *
issuer_of(STACK_OF(X509) * all, X509 *x)
{
    for (int i = 0; i < sk_X509_num(all); i++) {
        X509 *c = sk_X509_value(all, i);
        if (X509_cmp(c, x) != 0 && X509_check_issued(c, x) == X509_V_OK &&
            X509_verify(x, X509_get0_pubkey(c)) == 1)
            return c;
    }
    ERR_clear_error();
    return NULL;
}

int
et_write_chain(et_p11 *p, CK_SESSION_HANDLE sh, X509 *leaf, FILE *fp)
{
    STACK_OF(X509) *all = token_certs(p, sh);
    X509 *cur = leaf;
    int rc = ET_EXIT_FAIL, depth = 0;

    if (all == NULL) {
        et_err("export-cert: cannot list the token's certificates");
        return ET_EXIT_FAIL;
    }
    if (PEM_write_X509(fp, leaf) != 1)
        goto done;
    while (depth++ < CHAIN_MAX && X509_check_issued(cur, cur) != X509_V_OK) {
        X509 *up = issuer_of(all, cur);
        if (up == NULL || X509_check_issued(up, up) == X509_V_OK)
            break; /* no issuer here, or the root: not part of the bundle */
        if (PEM_write_X509(fp, up) != 1)
            goto done;
        cur = up;
    }
    rc = ET_EXIT_OK;
done:
    if (rc != ET_EXIT_OK)
        et_err("export-cert: writing the chain failed");
    ERR_clear_error();
    sk_X509_pop_free(all, X509_free);
    return rc;
}
