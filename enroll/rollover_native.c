/*
 * rollover_native.c — the rollover on an evertoken token (vendor interface
 * "Vendor evertoken" 1.1, found by detect_native in token.c) is the
 * module's own (docs/rollover.md): the new pair is generated pending
 * (CKA_EVERTOKEN_PENDING, token_obj.c), found again after a restart with a
 * CKA_EVERTOKEN_PENDING search, discarded with ET_RolloverDiscard,
 * committed by storing the certificate with CKA_EVERTOKEN_COMMIT_ROLLOVER
 * (one transaction), and retired objects are purged with ET_PurgeRetired
 * after the profile's grace period has been written into the token's
 * rollover_grace setting. Pending keys are invisible to libp11, so
 * p11key.c backs their EVP_PKEY by handle.
 */
#include <stdio.h>
#include <string.h>

#include "p11key.h"
#include "token_int.h"

/* Native: handles of the credential's pending objects of class CLS (found
 * with CKA_EVERTOKEN_PENDING, the only way to see them). */
static enr_rc
find_pending(enr_token *t, const enr_profile *p, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *hs,
             CK_ULONG max, CK_ULONG *n)
{
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {{CKA_EVERTOKEN_PENDING, &yes, sizeof(yes)},
                           {CKA_CLASS, &cls, sizeof(cls)},
                           {CKA_ID, (void *)p->id, p->id_len}};
    CK_RV rv;

    *n = 0;
    rv = t->f->C_FindObjectsInit(t->sh, tmpl, 3);
    if (rv == CKR_OK) {
        rv = t->f->C_FindObjects(t->sh, hs, max, n);
        t->f->C_FindObjectsFinal(t->sh);
    }
    if (rv != CKR_OK) {
        enr_err("token \"%s\": cannot look for pending keys: %s", t->label, tok_ckr(rv));
        return ENR_E_TOKEN;
    }
    return ENR_OK;
}

enr_rc
tok_native_discard(enr_token *t, const enr_profile *p)
{
    CK_ULONG n = 0;
    CK_RV rv = t->et->ET_RolloverDiscard(t->sh, p->id, p->id_len, &n);

    if (rv != CKR_OK) {
        enr_err("token \"%s\": cannot discard the pending keys (ET_RolloverDiscard): %s", t->label,
                tok_ckr(rv));
        return ENR_E_TOKEN;
    }
    if (n > 0)
        tok_step_done(t, "discard the pending keys (native)");
    return ENR_OK;
}

/* Native: the pending pair of an earlier attempt (a CA that answered
 * PENDING, a check interrupted by the network or a crash). A pair that
 * cannot be used any more (a lone public key, an EC key whose public half
 * is missing) is discarded so the next generation starts clean: the commit
 * takes every pending key of the credential. */
enr_rc
tok_native_pending_key(enr_token *t, const enr_profile *p, EVP_PKEY **pkey)
{
    CK_OBJECT_HANDLE hk[4], hp[4];
    CK_ULONG nk, np;
    EVP_PKEY *pub = NULL;
    enr_rc rc;

    if ((rc = find_pending(t, p, CKO_PRIVATE_KEY, hk, 4, &nk)) != ENR_OK ||
        (rc = find_pending(t, p, CKO_PUBLIC_KEY, hp, 4, &np)) != ENR_OK)
        return rc;
    if (nk == 0 && np == 0)
        return ENR_OK;
    if (nk == 1 && np <= 1) {
        pub = tok_read_pubkey(t, hk[0]);
        if (pub == NULL && np == 1)
            pub = tok_read_pubkey(t, hp[0]);
        if (pub != NULL && np == 1) {
            /* Both halves present: they must be one pair. */
            EVP_PKEY *pp = tok_read_pubkey(t, hp[0]);
            if (!tok_same_pubkey(pub, pp)) {
                EVP_PKEY_free(pub);
                pub = NULL;
            }
            EVP_PKEY_free(pp);
        }
        if (pub != NULL)
            *pkey = enr_p11key_new(t->f, t->sh, hk[0], pub);
        EVP_PKEY_free(pub);
        if (*pkey != NULL)
            return ENR_OK;
    }
    enr_warn("profile %s: token \"%s\" holds %lu pending private and %lu pending public keys "
             "that do not form one usable pair; discarding them",
             p->name, t->label, (unsigned long)nk, (unsigned long)np);
    return tok_native_discard(t, p);
}

/*
 * Native retired objects: the token keeps them for its rollover_grace
 * setting and destroys them at a user C_Login or ET_PurgeRetired. The
 * profile's grace_period is written into that setting when it differs (the
 * setting is per token: profiles sharing an evertoken token should agree on
 * it, the last one checked wins), then expired objects are purged now.
 * ET_SetSetting needs a login with the PIN (pin_file); after a login from
 * evertoken's login cache the module refuses it and the token's own setting
 * applies, which is said once per check with -v.
 */
enr_rc
tok_native_grace(enr_token *t, const enr_profile *p)
{
    char cur[32], want[32];
    CK_ULONG len = sizeof(cur), n = 0;
    long g = p->grace_period < 0 ? 0 : p->grace_period;
    CK_RV rv;

    if (g > 315360000L)
        g = 315360000L;
    snprintf(want, sizeof(want), "%ld", g);
    tok_sync_clock(t);
    rv = t->et->ET_GetSetting(t->slot, ET_SETTING_ROLLOVER_GRACE, cur, &len);
    if (rv == CKR_OK && strcmp(cur, want) != 0) {
        rv = t->et->ET_SetSetting(t->sh, ET_SETTING_ROLLOVER_GRACE, want);
        if (rv == CKR_OK) {
            tok_step_done(t, "set the token's rollover_grace (native)");
            enr_info("profile %s: token \"%s\": rollover_grace %s s (was %s s), the profile's "
                     "grace_period",
                     p->name, t->label, want, cur);
        } else {
            enr_debug("profile %s: token \"%s\" keeps rollover_grace %s s (the profile asks %s "
                      "s; changing it needs a login with the PIN: %s)",
                      p->name, t->label, cur, want, tok_ckr(rv));
        }
    }
    rv = t->et->ET_PurgeRetired(t->sh, &n);
    if (rv != CKR_OK) {
        enr_err("token \"%s\": cannot purge retired objects (ET_PurgeRetired): %s", t->label,
                tok_ckr(rv));
        return ENR_E_TOKEN;
    }
    if (n > 0) {
        tok_step_done(t, "purge retired objects (native)");
        enr_info("profile %s: token \"%s\": %lu retired objects past the grace period destroyed",
                 p->name, t->label, (unsigned long)n);
    }
    return ENR_OK;
}

/* Native commit: one C_CreateObject with CKA_EVERTOKEN_COMMIT_ROLLOVER. The
 * module checks the certificate's key against the pending keys, retires the
 * old pair and certificate and activates the new ones in one transaction. */
enr_rc
tok_native_commit(enr_token *t, const enr_profile *p, CK_ATTRIBUTE *tmpl, CK_ULONG n)
{
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE full[12];
    CK_OBJECT_HANDLE h;
    CK_RV rv;

    for (CK_ULONG i = 0; i < n; i++) {
        full[i] = tmpl[i];
        if (full[i].type == CKA_ID) {
            full[i].pValue = (void *)p->id;
            full[i].ulValueLen = p->id_len;
        } else if (full[i].type == CKA_LABEL) {
            full[i].pValue = p->label;
            full[i].ulValueLen = strlen(p->label);
        }
    }
    full[n].type = CKA_EVERTOKEN_COMMIT_ROLLOVER;
    full[n].pValue = &yes;
    full[n].ulValueLen = sizeof(yes);
    tok_sync_clock(t);
    rv = t->f->C_CreateObject(t->sh, full, n + 1, &h);
    if (rv != CKR_OK) {
        enr_err("token \"%s\": the rollover commit was refused: %s%s", t->label, tok_ckr(rv),
                rv == CKR_TEMPLATE_INCONSISTENT
                    ? " (the certificate's key is not the pending key, or no key is pending)"
                    : "");
        return ENR_E_TOKEN;
    }
    tok_step_done(t, "commit the rollover (native)");
    enr_info("profile %s: token \"%s\" holds the new credential \"%s\" (native rollover)", p->name,
             t->label, p->label);
    return tok_native_grace(t, p);
}
