/*
 * adopt.c — `evertoken-enroll adopt PROFILE (--id HEX | --label L)`: bring a
 * key and certificate that are already in the token (imported from a
 * PKCS#12, enrolled by another tool) under the profile's renewal.
 *
 * Nothing changes before every check passed: exactly one certificate (not a
 * CA certificate) matches; a private key with its CKA_ID is in the token and
 * really is the certificate's key (a signature made in the token verifies
 * with the certificate's public key); the certificate chains to the
 * profile's anchors (through the CA certificates of the token); the
 * profile's own CKA_ID holds no other credential. Then the certificate and
 * its key pair take the profile's CKA_ID and label (one C_SetAttributeValue
 * per object, keys first: an interrupted adopt is finished by running it
 * again), the chain is stored as after an enrollment, and the state records
 * the certificate, so the next check renews it in its window.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "adopt.h"
#include "chain.h"
#include "p11key.h"

#define MAXOBJ 16

typedef struct target {
    CK_OBJECT_HANDLE cert, priv, pub;
    int have_pub;
    X509 *x;
    unsigned char id[128];
    CK_ULONG id_len;
} target;

/* Objects of class CLS whose attribute TYPE is VAL (at most MAXOBJ). */
static CK_ULONG
find(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE sh, CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type,
     const void *val, size_t len, CK_OBJECT_HANDLE *out)
{
    CK_ATTRIBUTE tmpl[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {type, (void *)val, len}};
    CK_ULONG n = 0;

    if (f->C_FindObjectsInit(sh, tmpl, 2) != CKR_OK)
        return 0;
    if (f->C_FindObjects(sh, out, MAXOBJ, &n) != CKR_OK)
        n = 0;
    f->C_FindObjectsFinal(sh);
    return n;
}

static X509 *
cert_of(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE h, CK_ULONG *category)
{
    CK_ATTRIBUTE a = {CKA_VALUE, NULL, 0},
                 c = {CKA_CERTIFICATE_CATEGORY, category, sizeof(*category)};
    const unsigned char *q;
    X509 *x = NULL;

    *category = 0;
    if (f->C_GetAttributeValue(sh, h, &c, 1) != CKR_OK)
        *category = 0;
    if (f->C_GetAttributeValue(sh, h, &a, 1) != CKR_OK || a.ulValueLen == 0 ||
        a.ulValueLen > (1u << 20) || (a.pValue = malloc(a.ulValueLen)) == NULL)
        return NULL;
    q = a.pValue;
    if (f->C_GetAttributeValue(sh, h, &a, 1) == CKR_OK)
        x = d2i_X509(NULL, &q, (long)a.ulValueLen);
    free(a.pValue);
    ERR_clear_error();
    return x;
}

/* The one end-entity certificate selected by ID or LABEL, and its CKA_ID. */
static enr_rc
select_cert(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE sh, const unsigned char *id, size_t idlen,
            const char *label, target *tg)
{
    CK_OBJECT_HANDLE hs[MAXOBJ];
    CK_ULONG n = id != NULL ? find(f, sh, CKO_CERTIFICATE, CKA_ID, id, idlen, hs)
                            : find(f, sh, CKO_CERTIFICATE, CKA_LABEL, label, strlen(label), hs);
    const char *what = id != NULL ? "--id" : "--label";
    int found = 0;

    for (CK_ULONG i = 0; i < n; i++) {
        CK_ULONG cat;
        X509 *x = cert_of(f, sh, hs[i], &cat);
        if (x == NULL || cat == 2 || X509_check_ca(x) > 0) {
            X509_free(x); /* a CA certificate is no credential */
            continue;
        }
        if (found++ > 0) {
            X509_free(x);
            continue;
        }
        tg->cert = hs[i];
        tg->x = x;
    }
    ERR_clear_error();
    if (found != 1) {
        enr_err("adopt: %s selects %s end-entity certificate in the token%s", what,
                found == 0 ? "no" : "more than one", found == 0 ? "" : "; select it with --id");
        return ENR_E_FAIL;
    }
    {
        CK_ATTRIBUTE a = {CKA_ID, tg->id, sizeof(tg->id)};
        if (f->C_GetAttributeValue(sh, tg->cert, &a, 1) != CKR_OK || a.ulValueLen == 0) {
            enr_err("adopt: the certificate has no CKA_ID: its key cannot be found");
            return ENR_E_FAIL;
        }
        tg->id_len = a.ulValueLen;
    }
    return ENR_OK;
}

/* The private key under the certificate's CKA_ID really is its key: a
 * signature made in the token verifies with the certificate. */
static enr_rc
check_key(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE sh, target *tg)
{
    static const unsigned char data[] = "evertoken-enroll adopt: key and certificate match";
    CK_OBJECT_HANDLE hs[MAXOBJ];
    CK_ULONG n = find(f, sh, CKO_PRIVATE_KEY, CKA_ID, tg->id, tg->id_len, hs);
    EVP_PKEY *pub = X509_get0_pubkey(tg->x), *pk = NULL;
    EVP_MD_CTX *md = NULL;
    unsigned char sig[1024];
    size_t slen = sizeof(sig);
    int ok = 0;

    if (n != 1) {
        enr_err("adopt: %s private key under the certificate's CKA_ID in the token",
                n == 0 ? "no" : "more than one");
        return ENR_E_FAIL;
    }
    tg->priv = hs[0];
    pk = pub != NULL ? enr_p11key_new(f, sh, tg->priv, pub) : NULL;
    md = EVP_MD_CTX_new();
    if (pk != NULL && md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
        EVP_DigestSign(md, sig, &slen, data, sizeof(data)) == 1) {
        EVP_MD_CTX_reset(md);
        ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1 &&
             EVP_DigestVerify(md, sig, slen, data, sizeof(data)) == 1;
    }
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pk);
    ERR_clear_error();
    if (!ok) {
        enr_err("adopt: the private key under the certificate's CKA_ID does not match the "
                "certificate (a signature made with it does not verify with the certificate's "
                "public key); nothing changed");
        return ENR_E_REJECTED;
    }
    n = find(f, sh, CKO_PUBLIC_KEY, CKA_ID, tg->id, tg->id_len, hs);
    if (n == 1) {
        tg->pub = hs[0];
        tg->have_pub = 1;
    }
    return ENR_OK;
}

/* The profile's CKA_ID is free, or already the target's. */
static enr_rc
check_free(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE sh, const enr_profile *p, const target *tg)
{
    static const CK_OBJECT_CLASS cls[] = {CKO_CERTIFICATE, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY};
    CK_OBJECT_HANDLE hs[MAXOBJ];

    if (tg->id_len == p->id_len && memcmp(tg->id, p->id, p->id_len) == 0)
        return ENR_OK;
    for (size_t i = 0; i < sizeof(cls) / sizeof(cls[0]); i++)
        if (find(f, sh, cls[i], CKA_ID, p->id, p->id_len, hs) > 0) {
            enr_err("adopt: profile %s already has a credential in the token (objects under its "
                    "CKA_ID); delete it first or adopt into another profile; nothing changed",
                    p->name);
            return ENR_E_FAIL;
        }
    return ENR_OK;
}

static enr_rc
take_over(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE sh, const enr_profile *p, const target *tg)
{
    CK_OBJECT_HANDLE hs[3] = {tg->priv, tg->pub, tg->cert};
    const char *what[3] = {"private key", "public key", "certificate"};

    for (int i = 0; i < 3; i++) {
        CK_ATTRIBUTE a[2] = {{CKA_ID, (void *)p->id, p->id_len},
                             {CKA_LABEL, p->label, strlen(p->label)}};
        CK_RV rv;
        if (i == 1 && !tg->have_pub)
            continue;
        rv = f->C_SetAttributeValue(sh, hs[i], a, 2);
        if (rv != CKR_OK) {
            enr_err("adopt: cannot give the %s the profile's CKA_ID and label (0x%08lx); run "
                    "adopt again to finish",
                    what[i], (unsigned long)rv);
            return ENR_E_TOKEN;
        }
    }
    return ENR_OK;
}

static void
record(enr_ctx *ctx, const enr_profile *p, X509 *x, time_t now)
{
    enr_pstate ps;
    int found;
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL, name[256], na[32], *msg;

    if (enr_state_get(ctx->st, p->name, &ps, &found) != ENR_OK)
        goto done;
    if (!found)
        enr_sched_init(&ps, now);
    enr_pstate_set(&ps.cert_serial, hex);
    X509_NAME_oneline(X509_get_subject_name(x), name, sizeof(name));
    enr_pstate_set(&ps.cert_subject, name);
    ps.cert_not_before = enr_asn1_time(X509_get0_notBefore(x));
    ps.cert_not_after = enr_asn1_time(X509_get0_notAfter(x));
    ps.warned_days = 0;
    enr_pstate_set(&ps.renewed_serial, NULL);
    enr_pstate_set(&ps.pending_txid, NULL);
    enr_pstate_set(&ps.pending_kind, NULL);
    enr_pstate_set(&ps.state, "valid");
    enr_pstate_set(&ps.last_result, "adopted");
    enr_pstate_set(&ps.last_error, NULL);
    enr_state_put(ctx->st, &ps);
    msg = enr_aprintf("certificate %s (%s, valid until %s) adopted: renewed by this profile from "
                      "now on",
                      hex ? hex : "?", name, enr_fmt_time((time_t)ps.cert_not_after, na, 32));
    enr_state_event(ctx->st, p->name, "adopted", msg ? msg : hex);
    enr_event ev = {"adopted",
                    msg ? msg : "certificate adopted",
                    NULL,
                    NULL,
                    hex,
                    (time_t)ps.cert_not_after,
                    (int)((ps.cert_not_after - now) / ENR_DAY)};
    enr_notify(p, ctx->st, &ev);
    free(msg);
    enr_pstate_clear(&ps);
done:
    OPENSSL_free(hex);
    BN_free(bn);
}

/* Every check on the opened token T, then the take-over. */
static enr_rc
adopt_in(enr_ctx *ctx, const enr_profile *p, enr_token *t, const unsigned char *id, size_t idlen,
         const char *label)
{
    CK_SESSION_HANDLE sh;
    CK_FUNCTION_LIST_PTR f = enr_token_p11(t, &sh);
    STACK_OF(X509) *pool = NULL, *chain = NULL;
    time_t now = enr_now();
    target tg;
    enr_rc rc;

    memset(&tg, 0, sizeof(tg));
    rc = select_cert(f, sh, id, idlen, label, &tg);
    if (rc == ENR_OK)
        rc = check_key(f, sh, &tg);
    if (rc == ENR_OK) {
        pool = enr_chain_token_certs(t);
        rc = enr_chain_build(ctx->st, p, tg.x, pool, NULL, now, &chain);
        if (rc != ENR_OK)
            enr_err("adopt: the certificate does not chain to the anchors of profile %s; nothing "
                    "changed",
                    p->name);
    }
    if (rc == ENR_OK && X509_cmp_time(X509_get0_notAfter(tg.x), &now) < 0) {
        enr_err("adopt: the certificate has expired; nothing changed (enroll instead)");
        rc = ENR_E_REJECTED;
    }
    if (rc == ENR_OK)
        rc = check_free(f, sh, p, &tg);
    if (rc == ENR_OK)
        rc = enr_chain_stage(ctx->st, p, chain);
    if (rc == ENR_OK)
        rc = take_over(f, sh, p, &tg);
    if (rc == ENR_OK)
        enr_chain_sync(t, ctx->st, p, tg.x); /* reports its own trouble */
    if (rc == ENR_OK) {
        enr_info("profile %s: adopted the credential (token \"%s\", now label \"%s\")", p->name,
                 enr_token_label(t), p->label);
        record(ctx, p, tg.x, now);
    }
    sk_X509_pop_free(pool, X509_free);
    sk_X509_pop_free(chain, X509_free);
    X509_free(tg.x);
    return rc;
}

enr_rc
enr_adopt_profile(enr_ctx *ctx, const enr_profile *p, const char *id_hex, const char *label)
{
    unsigned char *id = NULL;
    long idlen = 0;
    enr_token *t = NULL;
    enr_rc rc;

    if ((id_hex == NULL) == (label == NULL)) {
        enr_err("adopt: give exactly one of --id HEX and --label L");
        return ENR_E_CONFIG;
    }
    if (id_hex != NULL) {
        id = OPENSSL_hexstr2buf(id_hex, &idlen);
        if (id == NULL || idlen <= 0 || idlen > 64) {
            enr_err("adopt: --id %s: not a CKA_ID in hex (1 to 64 bytes)", id_hex);
            OPENSSL_free(id);
            ERR_clear_error();
            return ENR_E_CONFIG;
        }
    }
    if (enr_state_lock(ctx->st) != 0) {
        OPENSSL_free(id);
        return ENR_E_FAIL;
    }
    rc = enr_token_open(p, &t);
    if (rc == ENR_OK)
        rc = enr_token_repair(t, p, ctx->st, enr_now());
    if (rc == ENR_OK)
        rc = adopt_in(ctx, p, t, id, (size_t)idlen, label);
    enr_token_close(t);
    enr_state_unlock(ctx->st);
    OPENSSL_free(id);
    return rc;
}
