/*
 * pin.c — `init` (new token) and `pin change` / `pin unlock`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "et_int.h"

/* The uninitialised slot a module offers for C_InitToken (the evertoken
 * module always has exactly one; SoftHSMv2 too). */
static int
et_free_slot(et_p11 *p, const char *want_label, CK_SLOT_ID *free_slot)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    CK_RV rv;
    int rc = ET_EXIT_FAIL, have_free = 0;
    char label[33];

    rv = p->f->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK)
        return et_ckr_fail("C_GetSlotList", rv);
    slots = calloc(n ? n : 1, sizeof(*slots));
    if (slots == NULL) {
        et_err("out of memory");
        return ET_EXIT_FAIL;
    }
    rv = p->f->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) {
        rc = et_ckr_fail("C_GetSlotList", rv);
        goto done;
    }
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO t;
        if (p->f->C_GetTokenInfo(slots[i], &t) != CKR_OK)
            continue;
        if (!(t.flags & CKF_TOKEN_INITIALIZED)) {
            if (!have_free) {
                *free_slot = slots[i];
                have_free = 1;
            }
            continue;
        }
        et_p11_str(label, sizeof(label), t.label, sizeof(t.label));
        if (strcmp(label, want_label) == 0) {
            et_err("a token labelled '%s' already exists (slot %lu); choose another label",
                   want_label, (unsigned long)slots[i]);
            rc = ET_EXIT_EXISTS;
            goto done;
        }
    }
    if (!have_free) {
        et_err("the module offers no free slot for a new token");
        goto done;
    }
    rc = ET_EXIT_OK;
done:
    free(slots);
    return rc;
}

int
et_cmd_init(et_opts *o)
{
    et_p11 p = {0};
    et_secret so = {NULL, 0}, user = {NULL, 0};
    CK_UTF8CHAR label[32];
    CK_SLOT_ID slot = 0;
    CK_TOKEN_INFO ti;
    CK_SESSION_HANDLE sh = CK_INVALID_HANDLE;
    CK_RV rv;
    et_opts find;
    int rc;

    if (o->argc != 0) {
        et_err("init: unexpected argument '%s'", o->argv[0]);
        return ET_EXIT_USAGE;
    }
    if (o->label == NULL || *o->label == '\0') {
        et_err("init: --label LABEL is required");
        return ET_EXIT_USAGE;
    }
    if (strlen(o->label) > sizeof(label)) {
        et_err("init: the label is %zu bytes; at most 32 fit in a PKCS#11 token label",
               strlen(o->label));
        return ET_EXIT_USAGE;
    }
    if (o->label[strlen(o->label) - 1] == ' ') {
        et_err("init: a label cannot end with a blank (PKCS#11 pads labels with blanks)");
        return ET_EXIT_USAGE;
    }
    rc = et_p11_load(o, &p);
    if (rc != ET_EXIT_OK)
        return rc;
    rc = et_free_slot(&p, o->label, &slot);
    if (rc != ET_EXIT_OK)
        goto done;
    rc = et_secret_get(o->so_pin_src, "new SO PIN", 1, &so);
    if (rc != ET_EXIT_OK)
        goto done;
    rc = et_secret_get(o->pin_src, "new user PIN", 1, &user);
    if (rc != ET_EXIT_OK)
        goto done;

    memset(label, ' ', sizeof(label));
    memcpy(label, o->label, strlen(o->label));
    rv = p.f->C_InitToken(slot, so.buf, (CK_ULONG)so.len, label);
    if (rv != CKR_OK) {
        const char *why = et_slot_path_problem(&p, slot);

        if (why != NULL) {
            et_err("cannot create the token in slot %lu: %s", (unsigned long)slot, why);
            rc = ET_EXIT_FAIL;
        } else {
            rc = et_ckr_fail("cannot create the token (C_InitToken)", rv);
        }
        goto done;
    }
    /* Some modules (SoftHSMv2) move a token to a new slot id when it is
     * initialised, so look it up again by its label. */
    find = *o;
    find.token = o->label;
    find.slot = -1;
    rc = et_find_token(&p, &find, &slot, &ti);
    if (rc != ET_EXIT_OK)
        goto done;
    rv = p.f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &sh);
    if (rv != CKR_OK) {
        rc = et_ckr_fail("cannot open a session on the new token", rv);
        goto done;
    }
    rv = p.f->C_Login(sh, CKU_SO, so.buf, (CK_ULONG)so.len);
    if (rv != CKR_OK) {
        rc = et_ckr_fail("SO login on the new token failed", rv);
        goto done;
    }
    rv = p.f->C_InitPIN(sh, user.buf, (CK_ULONG)user.len);
    if (rv != CKR_OK) {
        rc = et_ckr_fail("cannot set the user PIN (C_InitPIN); the token exists, set the PIN "
                         "with `evertoken pin unlock`",
                         rv);
        goto done;
    }
    printf("created token '%s' in slot %lu\n", et_escs(o->label), (unsigned long)slot);
    rc = ET_EXIT_OK;
done:
    et_close_session(&p, sh);
    et_secret_free(&so);
    et_secret_free(&user);
    et_p11_unload(&p);
    return rc;
}

static int
et_pin_change(et_p11 *p, et_opts *o, CK_SLOT_ID slot)
{
    et_secret oldp = {NULL, 0}, newp = {NULL, 0};
    CK_SESSION_HANDLE sh = CK_INVALID_HANDLE;
    CK_RV rv;
    int rc;

    if (o->so && o->pin_src != NULL) {
        et_err("pin change --so: give the old SO PIN with --so-pin, not --pin");
        return ET_EXIT_USAGE;
    }
    if (!o->so && o->so_pin_src != NULL) {
        et_err("pin change: --so-pin only applies with --so");
        return ET_EXIT_USAGE;
    }
    /* Logging in first (rather than C_SetPIN in a public session) works the
     * same on every module and reports a wrong or locked PIN precisely. */
    rc = et_open_session(p, o, slot, 1, -1, &sh);
    if (rc != ET_EXIT_OK)
        return rc;
    rc = et_secret_get(o->so ? o->so_pin_src : o->pin_src, o->so ? "SO PIN" : "user PIN", 0, &oldp);
    if (rc != ET_EXIT_OK)
        goto done;
    /* A session restored from the login cache is already logged in: the
     * old PIN must still be proven, so end that login first. */
    if (et_session_user(p, sh))
        (void)p->f->C_Logout(sh);
    rv = p->f->C_Login(sh, o->so ? CKU_SO : CKU_USER, oldp.buf, (CK_ULONG)oldp.len);
    if (rv != CKR_OK) {
        rc = et_login_fail(o->so ? "SO login failed" : "login failed", o->so ? CKU_SO : CKU_USER,
                           rv);
        goto done;
    }
    rc = et_secret_get(o->new_pin_src, o->so ? "new SO PIN" : "new user PIN", 1, &newp);
    if (rc != ET_EXIT_OK)
        goto done;
    rv = p->f->C_SetPIN(sh, oldp.buf, (CK_ULONG)oldp.len, newp.buf, (CK_ULONG)newp.len);
    if (rv != CKR_OK) {
        rc = et_ckr_fail("cannot change the PIN (C_SetPIN)", rv);
        goto done;
    }
    printf("%s PIN changed\n", o->so ? "SO" : "user");
    rc = ET_EXIT_OK;
done:
    et_close_session(p, sh);
    et_secret_free(&oldp);
    et_secret_free(&newp);
    return rc;
}

static int
et_pin_unlock(et_p11 *p, et_opts *o, CK_SLOT_ID slot)
{
    et_secret newp = {NULL, 0};
    CK_SESSION_HANDLE sh = CK_INVALID_HANDLE;
    CK_RV rv;
    int rc;

    if (o->pin_src != NULL) {
        et_err("pin unlock: the new user PIN is given with --new-pin, the SO PIN with --so-pin");
        return ET_EXIT_USAGE;
    }
    rc = et_open_session(p, o, slot, 1, (long)CKU_SO, &sh);
    if (rc != ET_EXIT_OK)
        return rc;
    rc = et_secret_get(o->new_pin_src, "new user PIN", 1, &newp);
    if (rc != ET_EXIT_OK)
        goto done;
    rv = p->f->C_InitPIN(sh, newp.buf, (CK_ULONG)newp.len);
    if (rv != CKR_OK) {
        rc = et_ckr_fail("cannot set the user PIN (C_InitPIN)", rv);
        goto done;
    }
    printf("new user PIN set; the user PIN is unlocked\n");
    rc = ET_EXIT_OK;
done:
    et_close_session(p, sh);
    et_secret_free(&newp);
    return rc;
}

int
et_cmd_pin(et_opts *o)
{
    et_p11 p = {0};
    CK_SLOT_ID slot = 0;
    CK_TOKEN_INFO ti;
    int rc, change;

    if (o->argc != 1 || (strcmp(o->argv[0], "change") != 0 && strcmp(o->argv[0], "unlock") != 0)) {
        et_err("pin: expected `pin change` or `pin unlock` (see `evertoken pin --help`)");
        return ET_EXIT_USAGE;
    }
    change = strcmp(o->argv[0], "change") == 0;
    if (!change && o->so) {
        et_err("pin unlock: --so does not apply (unlock always uses the SO PIN)");
        return ET_EXIT_USAGE;
    }
    rc = et_p11_load(o, &p);
    if (rc != ET_EXIT_OK)
        return rc;
    rc = et_find_token(&p, o, &slot, &ti);
    if (rc == ET_EXIT_OK)
        rc = change ? et_pin_change(&p, o, slot) : et_pin_unlock(&p, o, slot);
    et_p11_unload(&p);
    return rc;
}
