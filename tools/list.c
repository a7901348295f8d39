/*
 * list.c — `list` (tokens, or one token's objects) and `info`.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "et_int.h"

static void
et_print_token_flags(FILE *fp, CK_FLAGS f)
{
    static const struct {
        CK_FLAGS bit;
        const char *name;
    } names[] = {
        {CKF_TOKEN_INITIALIZED, "initialized"},
        {CKF_USER_PIN_INITIALIZED, "user-pin-initialized"},
        {CKF_LOGIN_REQUIRED, "login-required"},
        {CKF_WRITE_PROTECTED, "write-protected"},
        {CKF_USER_PIN_COUNT_LOW, "user-pin-count-low"},
        {CKF_USER_PIN_FINAL_TRY, "user-pin-final-try"},
        {CKF_USER_PIN_LOCKED, "user-pin-locked"},
        {CKF_USER_PIN_TO_BE_CHANGED, "user-pin-to-be-changed"},
        {CKF_SO_PIN_COUNT_LOW, "so-pin-count-low"},
        {CKF_SO_PIN_FINAL_TRY, "so-pin-final-try"},
        {CKF_SO_PIN_LOCKED, "so-pin-locked"},
        {CKF_SO_PIN_TO_BE_CHANGED, "so-pin-to-be-changed"},
        {CKF_RNG, "rng"},
        {CKF_PROTECTED_AUTHENTICATION_PATH, "protected-auth-path"},
    };
    int first = 1;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (f & names[i].bit) {
            fprintf(fp, "%s%s", first ? "" : ",", names[i].name);
            first = 0;
        }
    }
    if (first)
        fputs("-", fp);
}

static int
et_list_tokens(et_p11 *p)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    CK_RV rv;
    int rc = ET_EXIT_FAIL;

    rv = p->f->C_GetSlotList(CK_FALSE, NULL, &n);
    if (rv != CKR_OK)
        return et_ckr_fail("C_GetSlotList", rv);
    slots = calloc(n ? n : 1, sizeof(*slots));
    if (slots == NULL) {
        et_err("out of memory");
        return ET_EXIT_FAIL;
    }
    rv = p->f->C_GetSlotList(CK_FALSE, slots, &n);
    if (rv != CKR_OK) {
        rc = et_ckr_fail("C_GetSlotList", rv);
        goto done;
    }
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO t;
        char label[33], serial[17];

        rv = p->f->C_GetTokenInfo(slots[i], &t);
        if (rv == CKR_TOKEN_NOT_PRESENT) {
            printf("slot %lu: (no token)\n", (unsigned long)slots[i]);
            continue;
        }
        if (rv != CKR_OK) {
            printf("slot %lu: (token unusable: %s)\n", (unsigned long)slots[i],
                   et_escs(et_slot_error(p, slots[i], rv)));
            continue;
        }
        if (!(t.flags & CKF_TOKEN_INITIALIZED)) {
            const char *why = et_slot_path_problem(p, slots[i]);

            if (why != NULL) {
                printf("slot %lu: (unusable: %s)\n", (unsigned long)slots[i], et_escs(why));
                continue;
            }
            printf("slot %lu: (free: no token yet; `evertoken init` creates one here)\n",
                   (unsigned long)slots[i]);
            continue;
        }
        et_p11_str(label, sizeof(label), t.label, sizeof(t.label));
        et_p11_str(serial, sizeof(serial), t.serialNumber, sizeof(t.serialNumber));
        printf("slot %lu: token '%s'\n", (unsigned long)slots[i], et_escs(label));
        printf("  serial: %s\n", et_escs(serial));
        printf("  flags:  ");
        et_print_token_flags(stdout, t.flags);
        putchar('\n');
    }
    rc = ET_EXIT_OK;
done:
    free(slots);
    return rc;
}

static const char *
et_class_name(CK_ULONG c)
{
    switch (c) {
    case CKO_CERTIFICATE:
        return "cert";
    case CKO_PRIVATE_KEY:
        return "privkey";
    case CKO_PUBLIC_KEY:
        return "pubkey";
    case CKO_SECRET_KEY:
        return "secretkey";
    case CKO_DATA:
        return "data";
    case CKO_PROFILE:
        return "profile";
    default:
        return "other";
    }
}

/* "RSA 2048", "EC prime256v1", "Ed25519", ... into BUF. */
static void
et_key_desc(et_p11 *p, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE h, char *buf, size_t bufsz)
{
    CK_ULONG kt = 0;
    unsigned char *v = NULL;
    CK_ULONG vlen = 0;

    if (et_get_ulong(p, sh, h, CKA_KEY_TYPE, &kt) != 0) {
        snprintf(buf, bufsz, "?");
        return;
    }
    switch (kt) {
    case CKK_RSA:
        if (et_get_attr(p, sh, h, CKA_MODULUS, &v, &vlen) == 0 && vlen > 0) {
            size_t bits = vlen * 8;
            for (unsigned char top = v[0]; top != 0 && !(top & 0x80); top <<= 1)
                bits--;
            if (v[0] == 0)
                bits -= 8;
            snprintf(buf, bufsz, "RSA-%zu", bits);
        } else {
            snprintf(buf, bufsz, "RSA");
        }
        break;
    case CKK_EC:
    case CKK_EC_EDWARDS: {
        const char *curve = NULL;
        if (et_get_attr(p, sh, h, CKA_EC_PARAMS, &v, &vlen) == 0) {
            const unsigned char *q = v;
            ASN1_OBJECT *obj = d2i_ASN1_OBJECT(NULL, &q, (long)vlen);
            if (obj != NULL && OBJ_obj2nid(obj) != NID_undef)
                curve = OBJ_nid2sn(OBJ_obj2nid(obj));
            ASN1_OBJECT_free(obj);
        }
        if (kt == CKK_EC_EDWARDS)
            snprintf(buf, bufsz, "%s", curve ? curve : "EdDSA");
        else
            snprintf(buf, bufsz, "EC-%s", curve ? curve : "?");
        break;
    }
    case CKK_GENERIC_SECRET:
    case CKK_AES: {
        /* The length in bits from CKA_VALUE_LEN (never the value). */
        CK_ULONG bytes = 0;
        const char *name = kt == CKK_AES ? "AES" : "generic";
        if (et_get_ulong(p, sh, h, CKA_VALUE_LEN, &bytes) == 0 && bytes > 0)
            snprintf(buf, bufsz, "%s-%lu", name, (unsigned long)bytes * 8);
        else
            snprintf(buf, bufsz, "%s", name);
        break;
    }
    default:
        snprintf(buf, bufsz, "type-0x%lx", (unsigned long)kt);
    }
    free(v);
}

static void
et_print_name(const char *what, X509_NAME *n)
{
    char *s = X509_NAME_oneline(n, NULL, 0);

    printf("      %s %s\n", what, s ? et_escs(s) : "?");
    OPENSSL_free(s);
}

static void
et_print_cert_details(et_p11 *p, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE h)
{
    unsigned char *der = NULL;
    CK_ULONG len = 0;
    const unsigned char *q;
    X509 *x = NULL;

    if (et_get_attr(p, sh, h, CKA_VALUE, &der, &len) != 0)
        return;
    q = der;
    x = d2i_X509(NULL, &q, (long)len);
    if (x == NULL) {
        printf("      (CKA_VALUE is not a parseable X.509 certificate)\n");
        goto done;
    }
    et_print_name("subject:  ", X509_get_subject_name(x));
    et_print_name("issuer:   ", X509_get_issuer_name(x));
    {
        BIO *b = BIO_new(BIO_s_mem());
        char *s = NULL;
        long n;
        if (b != NULL && ASN1_TIME_print(b, X509_get0_notAfter(x)) == 1) {
            n = BIO_get_mem_data(b, &s);
            printf("      not after: %s\n", et_esc(s, (size_t)n));
        }
        BIO_free(b);
    }
done:
    X509_free(x);
    free(der);
}

/* A secret key's CKA_CHECK_VALUE (3 bytes identifying the value without
 * revealing it); the value itself is never read. */
static void
et_print_kcv(et_p11 *p, CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE h)
{
    unsigned char *kcv = NULL;
    CK_ULONG len = 0;

    if (et_get_attr(p, sh, h, CKA_CHECK_VALUE, &kcv, &len) == 0 && len > 0) {
        printf("      check value: ");
        et_hex_print(stdout, kcv, len);
        printf("\n");
    }
    free(kcv);
}

static int
et_list_objects(et_p11 *p, et_opts *o)
{
    CK_SLOT_ID slot;
    CK_TOKEN_INFO ti;
    CK_SESSION_HANDLE sh = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE *objs = NULL;
    CK_ULONG n = 0;
    int rc;
    char label[33];

    rc = et_find_token(p, o, &slot, &ti);
    if (rc != ET_EXIT_OK)
        return rc;
    rc = et_open_session(p, o, slot, 0, o->login ? (long)CKU_USER : -1, &sh);
    if (rc != ET_EXIT_OK)
        return rc;
    rc = et_find_objects(p, sh, NULL, 0, &objs, &n);
    if (rc != ET_EXIT_OK)
        goto done;
    et_p11_str(label, sizeof(label), ti.label, sizeof(ti.label));
    printf("token '%s' (slot %lu): %lu object%s%s\n", et_escs(label), (unsigned long)slot,
           (unsigned long)n, n == 1 ? "" : "s", o->login ? "" : " (public only; --login for all)");
    if (n > 0)
        printf("%-8s %-8s %-16s %-40s %s\n", "handle", "class", "type", "id", "label");
    for (CK_ULONG i = 0; i < n; i++) {
        CK_ULONG cls = (CK_ULONG)-1;
        unsigned char *id = NULL, *lab = NULL;
        CK_ULONG idlen = 0, lablen = 0;
        char type[48] = "-";

        (void)et_get_ulong(p, sh, objs[i], CKA_CLASS, &cls);
        (void)et_get_attr(p, sh, objs[i], CKA_ID, &id, &idlen);
        (void)et_get_attr(p, sh, objs[i], CKA_LABEL, &lab, &lablen);
        if (cls == CKO_PRIVATE_KEY || cls == CKO_PUBLIC_KEY || cls == CKO_SECRET_KEY) {
            et_key_desc(p, sh, objs[i], type, sizeof(type));
        } else if (cls == CKO_CERTIFICATE) {
            CK_ULONG ct = 0, cat = 0;
            (void)et_get_ulong(p, sh, objs[i], CKA_CERTIFICATE_TYPE, &ct);
            if (et_get_ulong(p, sh, objs[i], CKA_CERTIFICATE_CATEGORY, &cat) != 0)
                cat = 0;
            snprintf(type, sizeof(type), "%s%s", ct == CKC_X_509 ? "X.509" : "other",
                     cat == 2   ? "/CA"
                     : cat == 1 ? "/user"
                     : cat == 3 ? "/other"
                                : "");
        }
        printf("%-8lu %-8s %-16s ", (unsigned long)objs[i], et_class_name(cls), type);
        if (idlen > 0) {
            et_hex_print(stdout, id, idlen);
            for (CK_ULONG k = idlen * 2; k < 40; k++)
                putchar(' ');
        } else {
            printf("%-40s", "-");
        }
        printf(" %s\n", et_esc(lab, lab != NULL ? (size_t)lablen : 0));
        if (cls == CKO_CERTIFICATE)
            et_print_cert_details(p, sh, objs[i]);
        if (cls == CKO_SECRET_KEY)
            et_print_kcv(p, sh, objs[i]);
        free(id);
        free(lab);
    }
    /* Objects are checked only after a login: then say what is hidden. */
    if (o->login)
        rc = et_integrity_report(p, slot, "", NULL);
done:
    free(objs);
    et_close_session(p, sh);
    return rc;
}

int
et_cmd_list(et_opts *o)
{
    et_p11 p = {0};
    int rc;

    if (o->argc != 0) {
        et_err("list: unexpected argument '%s'", o->argv[0]);
        return ET_EXIT_USAGE;
    }
    if ((o->login || o->pin_src != NULL) && o->token == NULL && o->slot < 0) {
        et_err("list: --login needs a token (--token LABEL or --slot N)");
        return ET_EXIT_USAGE;
    }
    if (o->pin_src != NULL && !o->login) {
        et_err("list: --pin only applies with --login");
        return ET_EXIT_USAGE;
    }
    rc = et_p11_load(o, &p);
    if (rc != ET_EXIT_OK)
        return rc;
    if (o->token == NULL && o->slot < 0)
        rc = et_list_tokens(&p);
    else
        rc = et_list_objects(&p, o);
    et_p11_unload(&p);
    return rc;
}

static void
et_print_token_info(et_p11 *p, CK_SLOT_ID slot, const CK_TOKEN_INFO *t)
{
    char label[33], manuf[33], model[17], serial[17];

    et_p11_str(label, sizeof(label), t->label, sizeof(t->label));
    et_p11_str(manuf, sizeof(manuf), t->manufacturerID, sizeof(t->manufacturerID));
    et_p11_str(model, sizeof(model), t->model, sizeof(t->model));
    et_p11_str(serial, sizeof(serial), t->serialNumber, sizeof(t->serialNumber));
    printf("slot %lu: token '%s'\n", (unsigned long)slot, et_escs(label));
    printf("  manufacturer:     %s\n", et_escs(manuf));
    printf("  model:            %s\n", et_escs(model));
    printf("  serial:           %s\n", et_escs(serial));
    printf("  flags:            ");
    et_print_token_flags(stdout, t->flags);
    putchar('\n');
    printf("  PIN length:       %lu..%lu\n", (unsigned long)t->ulMinPinLen,
           (unsigned long)t->ulMaxPinLen);
    printf("  hardware/firmware: %u.%u / %u.%u\n", t->hardwareVersion.major,
           t->hardwareVersion.minor, t->firmwareVersion.major, t->firmwareVersion.minor);
    et_print_keystore_info(slot, label, serial);
    (void)p;
}

/* The interfaces the module offers (PKCS#11 3.0 C_GetInterfaceList): a 3.0
 * caller such as NSS uses "PKCS 11" 3.0, C_GetFunctionList gives 2.40. */
static void
et_print_interfaces(const et_p11 *p)
{
    CK_RV (*gil)(CK_INTERFACE_PTR, CK_ULONG_PTR);
    CK_INTERFACE *v = NULL;
    CK_ULONG n = 0;

    *(void **)&gil = dlsym(p->dl, "C_GetInterfaceList");
    if (gil == NULL || gil(NULL, &n) != CKR_OK || n == 0 || (v = calloc(n, sizeof(*v))) == NULL ||
        gil(v, &n) != CKR_OK) {
        printf("  interfaces:       (no C_GetInterfaceList: PKCS#11 2.x only)\n");
        free(v);
        return;
    }
    printf("  interfaces:       ");
    for (CK_ULONG i = 0; i < n; i++) {
        const CK_VERSION *ver = v[i].pFunctionList; /* every function list starts with it */
        printf("%s%s %u.%u", i ? ", " : "", (const char *)v[i].pInterfaceName,
               ver != NULL ? ver->major : 0, ver != NULL ? ver->minor : 0);
    }
    putchar('\n');
    free(v);
}

/* `info --login`: log in (objects are verified only then) and report what
 * failed its check. */
static int
et_info_integrity(et_p11 *p, et_opts *o, CK_SLOT_ID slot)
{
    CK_SESSION_HANDLE sh = CK_INVALID_HANDLE;
    int rc, checked = 0;

    if (!o->login) {
        printf("  integrity:        not checked (objects are verified after a login: "
               "add --login)\n");
        return ET_EXIT_OK;
    }
    rc = et_open_session(p, o, slot, 0, (long)CKU_USER, &sh);
    if (rc != ET_EXIT_OK)
        return rc;
    rc = et_integrity_report(p, slot, "  integrity:        ", &checked);
    if (rc == ET_EXIT_OK)
        printf(checked ? "  integrity:        every stored object and setting verified\n"
                       : "  integrity:        not reported by this module\n");
    et_close_session(p, sh);
    return rc;
}

int
et_cmd_info(et_opts *o)
{
    et_p11 p = {0};
    CK_INFO mi;
    CK_RV rv;
    int rc;
    char manuf[33], desc[33];

    if (o->argc != 0) {
        et_err("info: unexpected argument '%s'", o->argv[0]);
        return ET_EXIT_USAGE;
    }
    rc = et_p11_load(o, &p);
    if (rc != ET_EXIT_OK)
        return rc;
    rv = p.f->C_GetInfo(&mi);
    if (rv != CKR_OK) {
        rc = et_ckr_fail("C_GetInfo", rv);
        goto done;
    }
    et_p11_str(manuf, sizeof(manuf), mi.manufacturerID, sizeof(mi.manufacturerID));
    et_p11_str(desc, sizeof(desc), mi.libraryDescription, sizeof(mi.libraryDescription));
    printf("module: %s\n", p.path);
    printf("  PKCS#11 version:  %u.%u (C_GetFunctionList)\n", mi.cryptokiVersion.major,
           mi.cryptokiVersion.minor);
    et_print_interfaces(&p);
    printf("  manufacturer:     %s\n", manuf);
    printf("  library:          %s %u.%u\n", desc, mi.libraryVersion.major,
           mi.libraryVersion.minor);

    if (o->token != NULL || o->slot >= 0) {
        CK_SLOT_ID slot;
        CK_TOKEN_INFO ti;
        rc = et_find_token(&p, o, &slot, &ti);
        if (rc == ET_EXIT_OK)
            et_print_token_info(&p, slot, &ti);
        if (rc == ET_EXIT_OK)
            rc = et_info_integrity(&p, o, slot);
    } else {
        CK_SLOT_ID *slots = NULL;
        CK_ULONG n = 0;
        rv = p.f->C_GetSlotList(CK_TRUE, NULL, &n);
        if (rv == CKR_OK) {
            slots = calloc(n ? n : 1, sizeof(*slots));
            if (slots == NULL)
                rv = CKR_HOST_MEMORY;
            else
                rv = p.f->C_GetSlotList(CK_TRUE, slots, &n);
        }
        if (rv != CKR_OK) {
            free(slots);
            rc = et_ckr_fail("C_GetSlotList", rv);
            goto done;
        }
        for (CK_ULONG i = 0; i < n; i++) {
            CK_TOKEN_INFO ti;
            if (p.f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
                continue;
            if (!(ti.flags & CKF_TOKEN_INITIALIZED)) {
                printf("slot %lu: (free)\n", (unsigned long)slots[i]);
                continue;
            }
            et_print_token_info(&p, slots[i], &ti);
        }
        free(slots);
    }
done:
    et_p11_unload(&p);
    return rc;
}
