/*
 * acme_account.c — the ACME account (RFC 8555 section 7.3) with its key in
 * the token: found (onlyReturnExisting) or created (contact, terms of
 * service, External Account Binding), the key changed (acme-keychange,
 * section 7.3.5), and revocation (section 7.6) by the certificate's own key.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "acme.h"
#include "proto.h"

/* The account key's label and CKA_ID for P (defaults: docs/enrollment.md). */
void
enr_acme_acct_ident(const enr_profile *p, char *label, size_t ln, unsigned char *id, size_t *idlen)
{
    unsigned char md[32];
    char *s;

    if (p->acme != NULL && p->acme->account_label != NULL)
        snprintf(label, ln, "%s", p->acme->account_label);
    else
        snprintf(label, ln, "acme-account:%s", p->name);
    if (p->acme != NULL && p->acme->id_len > 0) {
        memcpy(id, p->acme->id, p->acme->id_len);
        *idlen = p->acme->id_len;
        return;
    }
    s = enr_aprintf("evertoken-enroll-acme:%s", label);
    if (s != NULL && EVP_Digest(s, strlen(s), md, NULL, EVP_sha256(), NULL))
        memcpy(id, md, 16);
    free(s);
    *idlen = 16;
}

/* newAccount's payload for a new account: contact, terms, EAB. */
static json_t *
new_account_payload(enr_acme *a)
{
    const enr_acme_conf *c = a->p->acme;
    json_t *pl = json_object();

    if (c != NULL && c->contact != NULL) {
        json_t *arr = json_array();
        char *dup = enr_strdup(c->contact), *save = NULL;
        for (char *t = dup ? strtok_r(dup, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
            json_array_append_new(arr, json_string(t + strspn(t, " \t")));
        free(dup);
        json_object_set_new(pl, "contact", arr);
    }
    if (c != NULL && c->agree_tos)
        json_object_set_new(pl, "termsOfServiceAgreed", json_true());
    if (c != NULL && c->eab_kid != NULL) {
        enr_secret s = {NULL, 0}, mac = {NULL, 0};
        json_t *eab = NULL;
        if (enr_secret_read_file(c->eab_hmac_file, "EAB HMAC key", &s) != 0) {
            json_decref(pl);
            return NULL;
        }
        /* the key and its decoding only in locked memory */
        if (enr_b64url_decode_secret(s.buf, &mac) != 0 || mac.len == 0)
            enr_err("ACME: the EAB HMAC key in %s is not base64url", c->eab_hmac_file);
        else
            eab = enr_jws_eab(a->key, c->eab_kid, (const unsigned char *)mac.buf, mac.len,
                              a->dir.new_account);
        enr_secret_free(&mac);
        enr_secret_free(&s);
        if (eab == NULL) {
            json_decref(pl);
            return NULL;
        }
        json_object_set_new(pl, "externalAccountBinding", eab);
    }
    return pl;
}

/* POST J (consumed) as the payload. */
enr_rc
enr_acme_post_json(enr_acme *a, const char *what, const char *url, json_t *j, EVP_PKEY *key,
                   int jwk, enr_acme_ans *ans)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    enr_rc rc;

    json_decref(j);
    if (s == NULL)
        return ENR_E_FAIL;
    rc = enr_acme_post(a, what, url, s, key, jwk, 1, ans);
    free(s);
    return rc;
}

/* The key pair a key change makes: LABEL " (new)" under ID||FF. */
static void
new_ident(const char *label, const unsigned char *id, size_t idlen, char *nl, size_t nln,
          unsigned char *nid, size_t *nidlen)
{
    snprintf(nl, nln, "%s (new)", label);
    memcpy(nid, id, idlen);
    nid[idlen] = 0xff;
    *nidlen = idlen + 1;
}

/* The new key still there: a key change was interrupted. If the CA knows
 * the account by it, the change happened (the old key goes, the new one
 * takes its name); otherwise it did not (the new key goes). */
static enr_rc
finish_keychange(enr_acme *a, enr_token *t, const char *label, const unsigned char *id,
                 size_t idlen)
{
    char nl[160];
    unsigned char nid[40];
    size_t nidlen;
    EVP_PKEY *nk = NULL;
    enr_acme_ans ans = {.retry_after = -1};
    enr_rc rc;

    new_ident(label, id, idlen, nl, sizeof(nl), nid, &nidlen);
    rc = enr_acme_account_key(t, a->p, nl, nid, nidlen, 0, &nk);
    if (rc != ENR_OK || nk == NULL)
        return rc;
    a->quiet = "accountDoesNotExist";
    rc = enr_acme_post_json(a, "newAccount (find by the new key)", a->dir.new_account,
                            json_pack("{s:b}", "onlyReturnExisting", 1), nk, 1, &ans);
    a->quiet = NULL;
    EVP_PKEY_free(nk);
    if (rc == ENR_OK && ans.location != NULL) {
        enr_info("profile %s: completing an interrupted account key change (the CA knows the "
                 "account by the new key)",
                 a->p->name);
        rc = enr_acme_delete_key(t, label, id, idlen);
        if (rc == ENR_OK)
            rc = enr_acme_rename_key(t, nl, nid, nidlen, label, id, idlen);
    } else if (rc != ENR_OK && a->quiet_hit) {
        enr_info("profile %s: dropping the new key of an interrupted account key change (the CA "
                 "never took it)",
                 a->p->name);
        rc = enr_acme_delete_key(t, nl, nid, nidlen);
    }
    enr_acme_ans_clear(&ans);
    return rc;
}

/* The account for the key in the token: found, or created when allowed. */
enr_rc
enr_acme_account(enr_acme *a, enr_token *t, int create)
{
    const enr_profile *p = a->p;
    char label[128];
    unsigned char id[32];
    size_t idlen;
    enr_acme_ans ans = {.retry_after = -1};
    int existed;
    enr_rc rc;

    enr_acme_acct_ident(p, label, sizeof(label), id, &idlen);
    rc = finish_keychange(a, t, label, id, idlen);
    if (rc != ENR_OK)
        return rc;
    rc = enr_acme_account_key(t, p, label, id, idlen, 0, &a->key);
    if (rc != ENR_OK)
        return rc;
    existed = a->key != NULL;
    if (existed) {
        a->quiet = "accountDoesNotExist";
        rc = enr_acme_post_json(a, "newAccount (find)", a->dir.new_account,
                                json_pack("{s:b}", "onlyReturnExisting", 1), NULL, 1, &ans);
        a->quiet = NULL;
        if (rc == ENR_OK && ans.location != NULL) {
            a->kid = ans.location;
            ans.location = NULL;
            enr_info("profile %s: ACME account %s (key \"%s\" in the token)", p->name, a->kid,
                     label);
            goto done;
        }
        if (rc == ENR_OK) {
            enr_err("ACME newAccount: the CA found the account but sent no account URL "
                    "(Location)");
            rc = ENR_E_REJECTED;
        }
        if (!a->quiet_hit)
            goto done; /* reported */
        if (!create) {
            enr_err("profile %s: the CA knows no account for the key \"%s\" in the token", p->name,
                    label);
            rc = ENR_E_REJECTED;
            goto done;
        }
        enr_info("profile %s: the CA knows no account for the key \"%s\"; creating one", p->name,
                 label);
    } else if (!create) {
        enr_err("profile %s: no ACME account key \"%s\" in the token", p->name, label);
        rc = ENR_E_CONFIG;
        goto done;
    }
    if (a->dir.tos != NULL && (p->acme == NULL || !p->acme->agree_tos)) {
        enr_err("profile %s: creating an ACME account means agreeing to the CA's terms of "
                "service (%s); set agree_tos = true in [acme] after reading them",
                p->name, a->dir.tos);
        rc = ENR_E_CONFIG;
        goto done;
    }
    if (a->dir.eab_req && (p->acme == NULL || p->acme->eab_kid == NULL)) {
        enr_err("profile %s: the CA requires External Account Binding; set eab_kid and "
                "eab_hmac_file in [acme]",
                p->name);
        rc = ENR_E_CONFIG;
        goto done;
    }
    if (!existed && (rc = enr_acme_account_key(t, p, label, id, idlen, 1, &a->key)) != ENR_OK)
        goto done;
    {
        json_t *pl = new_account_payload(a);
        rc = pl ? enr_acme_post_json(a, "newAccount", a->dir.new_account, pl, NULL, 1, &ans)
                : ENR_E_CONFIG;
    }
    if (rc == ENR_OK && ans.location == NULL) {
        enr_err("ACME newAccount: the CA sent no account URL (Location)");
        rc = ENR_E_REJECTED;
    }
    if (rc == ENR_OK) {
        a->kid = ans.location;
        ans.location = NULL;
        enr_info("profile %s: ACME account %s %s (key \"%s\" in the token)", p->name, a->kid,
                 ans.code == 201 ? "created" : "found", label);
    }
done:
    enr_acme_ans_clear(&ans);
    return rc;
}

enr_rc
enr_acme_revoke(const enr_profile *p, enr_token *t, X509 *cert, EVP_PKEY *key,
                STACK_OF(X509) * anchors, int reason, int by_account)
{
    enr_acme a;
    enr_acme_ans ans = {.retry_after = -1};
    unsigned char *der = NULL;
    int l = i2d_X509(cert, &der);
    char *c64 = l > 0 ? enr_b64url(der, (size_t)l) : NULL;
    enr_rc rc;

    (void)anchors;
    OPENSSL_free(der);
    if (c64 == NULL)
        return ENR_E_FAIL;
    rc = enr_acme_open(&a, p);
    if (rc == ENR_OK && a.dir.revoke_cert == NULL) {
        enr_err("ACME: the CA's directory has no revokeCert");
        rc = ENR_E_REJECTED;
    }
    /* Signed by the certificate's own key (its JWK in the header): no
     * account needed (RFC 8555 section 7.6); or by the account key (its
     * kid), which the CA accepts from the account that ordered the
     * certificate or holds authorizations for all its names. The account
     * is only looked up, never created for this. */
    if (rc == ENR_OK && by_account)
        rc = enr_acme_account(&a, t, 0);
    if (rc == ENR_OK) {
        json_t *pl = json_pack("{s:s, s:i}", "certificate", c64, "reason", reason);
        char *pls = pl ? json_dumps(pl, JSON_COMPACT) : NULL;
        /* the answer has no body */
        rc = pls == NULL ? ENR_E_FAIL
             : by_account
                 ? enr_acme_post(&a, "revokeCert", a.dir.revoke_cert, pls, NULL, 0, 0, &ans)
                 : enr_acme_post(&a, "revokeCert", a.dir.revoke_cert, pls, key, 1, 0, &ans);
        json_decref(pl);
        free(pls);
    }
    free(c64);
    enr_acme_ans_clear(&ans);
    enr_acme_close(&a);
    return rc;
}

/* RFC 8555 section 7.3.5: the inner JWS (by the new key, its JWK, no
 * nonce) inside the outer one (by the old key, the account's kid). */
static enr_rc
keychange_post(enr_acme *a, EVP_PKEY *nk)
{
    json_t *old = enr_jwk(a->key);
    json_t *pl = old ? json_pack("{s:s, s:o}", "account", a->kid, "oldKey", old) : NULL;
    char *pls = pl ? json_dumps(pl, JSON_COMPACT) : NULL;
    char *inner = pls ? enr_jws_sign(nk, NULL, NULL, a->dir.key_change, pls) : NULL;
    enr_acme_ans ans = {.retry_after = -1};
    enr_rc rc = ENR_E_FAIL;

    if (inner != NULL)
        rc = enr_acme_post(a, "keyChange", a->dir.key_change, inner, NULL, 0, 0, &ans);
    json_decref(pl);
    free(pls);
    free(inner);
    enr_acme_ans_clear(&ans);
    return rc;
}

enr_rc
enr_acme_keychange(enr_ctx *ctx, const enr_profile *p)
{
    enr_token *t = NULL;
    enr_acme a;
    EVP_PKEY *nk = NULL;
    char label[128], nl[160];
    unsigned char id[32], nid[40];
    size_t idlen, nidlen;
    enr_rc rc;

    memset(&a, 0, sizeof(a));
    if (p->proto != ENR_PROTO_ACME) {
        enr_err("profile %s: acme-keychange is for protocol = acme profiles", p->name);
        return ENR_E_CONFIG;
    }
    if (enr_state_lock(ctx->st) != 0)
        return ENR_E_FAIL;
    enr_acme_acct_ident(p, label, sizeof(label), id, &idlen);
    new_ident(label, id, idlen, nl, sizeof(nl), nid, &nidlen);
    rc = enr_token_open(p, &t);
    if (rc == ENR_OK)
        rc = enr_acme_open(&a, p);
    if (rc == ENR_OK)
        rc = enr_acme_account(&a, t, 1);
    if (rc == ENR_OK && a.dir.key_change == NULL) {
        enr_err("ACME: the CA's directory has no keyChange");
        rc = ENR_E_REJECTED;
    }
    if (rc == ENR_OK)
        rc = enr_acme_account_key(t, p, nl, nid, nidlen, 1, &nk);
    if (rc == ENR_OK) {
        rc = keychange_post(&a, nk);
        EVP_PKEY_free(nk);
        EVP_PKEY_free(a.key);
        a.key = NULL;
        if (rc == ENR_OK) {
            /* The CA holds the new key: the old one goes, the new one takes
             * its name (an interruption here is finished by the next run). */
            rc = enr_acme_delete_key(t, label, id, idlen);
            if (rc == ENR_OK)
                rc = enr_acme_rename_key(t, nl, nid, nidlen, label, id, idlen);
            if (rc == ENR_OK) {
                enr_info("profile %s: the account %s now has a new key \"%s\" in the token",
                         p->name, a.kid, label);
                enr_state_event(ctx->st, p->name, "acme-keychange", a.kid);
            }
        } else {
            enr_acme_delete_key(t, nl, nid, nidlen);
        }
    }
    enr_acme_close(&a);
    enr_token_close(t);
    enr_state_unlock(ctx->st);
    return rc;
}
