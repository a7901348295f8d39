/*
 * enr_probe.c — a PKCS#11 application for the enrollment tests
 * (tests/enroll/t_livepickup.sh, t_native.sh, t_renew.sh, …).
 *
 *   enr_probe watch   MODULE TOKEN ID_HEX PIN_FILE [INTERVAL_MS]
 *   enr_probe pending MODULE TOKEN ID_HEX PIN_FILE
 *   enr_probe rollback MODULE TOKEN ID_HEX PIN_FILE
 *
 * watch: a long-running signer. It loads the module once, logs in once and
 * then, round after round until SIGTERM/SIGINT, looks up the certificate and
 * the private key by the credential's CKA_ID (C_FindObjects, no cached
 * handles), signs fresh data with the key (CKM_SHA256_RSA_PKCS or CKM_ECDSA
 * over SHA-256) and verifies the signature with the certificate's public key
 * (OpenSSL). Each round prints one line:
 *   round N serial HEX ok
 *   round N ERROR what went wrong          (lookup failed, several objects,
 *                                           sign failed, signature does not
 *                                           verify: a half-finished rollover)
 *   round N raced WHAT; …                  (the round's certificate and key
 *                                           lookups straddled a commit: a
 *                                           fresh lookup finds another
 *                                           certificate than at the start;
 *                                           the next round repeats it)
 * and at exit "summary rounds=N errors=E raced=R serials=S" (S distinct
 * serials).
 * Exit 0 when no round failed, 1 otherwise.
 *
 * pending: prints how many pending objects of credential ID evertoken holds
 * (C_FindObjects with CKA_EVERTOKEN_PENDING = TRUE; they are invisible to
 * ordinary searches).
 *
 * rollback: ET_RolloverRollback on credential ID through the "Vendor
 * evertoken" interface; prints "rolled back" (exit 0) or "nothing to undo"
 * (exit 3, CKR_OBJECT_HANDLE_INVALID), else the CKR (exit 1).
 *
 * The PIN is read from PIN_FILE (first line), never from argv.
 */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "evertoken_ext.h"

static CK_FUNCTION_LIST_PTR f;
static volatile sig_atomic_t stop;

static void
on_sig(int s)
{
    (void)s;
    stop = 1;
}

static int
hexid(const char *hex, unsigned char *id, size_t *len)
{
    size_t n = strlen(hex);

    if (n == 0 || n % 2 != 0 || n / 2 > 255)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned int v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        id[i] = (unsigned char)v;
    }
    *len = n / 2;
    return 0;
}

static int
read_pin(const char *path, char *pin, size_t n)
{
    FILE *fp = fopen(path, "r");

    if (fp == NULL || fgets(pin, (int)n, fp) == NULL) {
        if (fp != NULL)
            fclose(fp);
        return -1;
    }
    fclose(fp);
    pin[strcspn(pin, "\r\n")] = '\0';
    return 0;
}

/* Load, initialise, find the token labelled LABEL, open a R/W session and
 * log in with the PIN from PIN_FILE. */
static int
open_token(const char *module, const char *label, const char *pin_file, CK_SLOT_ID *slot,
           CK_SESSION_HANDLE *sh, void **dl)
{
    CK_C_GetFunctionList gfl;
    CK_SLOT_ID slots[64];
    CK_ULONG ns = 64;
    char pin[256];
    CK_RV rv;
    int found = 0;

    *dl = dlopen(module, RTLD_NOW);
    if (*dl == NULL) {
        fprintf(stderr, "enr_probe: %s: %s\n", module, dlerror());
        return -1;
    }
    *(void **)&gfl = dlsym(*dl, "C_GetFunctionList");
    if (gfl == NULL || gfl(&f) != CKR_OK || f->C_Initialize(NULL) != CKR_OK ||
        f->C_GetSlotList(CK_TRUE, slots, &ns) != CKR_OK) {
        fprintf(stderr, "enr_probe: cannot initialise %s\n", module);
        return -1;
    }
    for (CK_ULONG i = 0; i < ns && !found; i++) {
        CK_TOKEN_INFO ti;
        size_t l = strlen(label);
        if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK || l > sizeof(ti.label))
            continue;
        if (memcmp(ti.label, label, l) == 0 && (l == sizeof(ti.label) || ti.label[l] == ' ')) {
            *slot = slots[i];
            found = 1;
        }
    }
    if (!found) {
        fprintf(stderr, "enr_probe: no token \"%s\"\n", label);
        return -1;
    }
    rv = f->C_OpenSession(*slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, sh);
    if (rv != CKR_OK) {
        fprintf(stderr, "enr_probe: C_OpenSession: 0x%lx\n", (unsigned long)rv);
        return -1;
    }
    if (read_pin(pin_file, pin, sizeof(pin)) != 0) {
        fprintf(stderr, "enr_probe: cannot read the PIN file\n");
        return -1;
    }
    rv = f->C_Login(*sh, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    OPENSSL_cleanse(pin, sizeof(pin));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        fprintf(stderr, "enr_probe: C_Login: 0x%lx\n", (unsigned long)rv);
        return -1;
    }
    return 0;
}

/* Objects matching TMPL (at most MAX handles); -1 on a CKR error. */
static long
find(CK_SESSION_HANDLE sh, CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *hs, CK_ULONG max)
{
    CK_ULONG got = 0;
    CK_RV rv = f->C_FindObjectsInit(sh, tmpl, n);

    if (rv != CKR_OK)
        return -1;
    rv = f->C_FindObjects(sh, hs, max, &got);
    f->C_FindObjectsFinal(sh);
    return rv == CKR_OK ? (long)got : -1;
}

static unsigned char *
get_value(CK_SESSION_HANDLE sh, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, CK_ULONG *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    unsigned char *v;

    if (f->C_GetAttributeValue(sh, h, &a, 1) != CKR_OK ||
        a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
        return NULL;
    v = malloc(a.ulValueLen + 1);
    a.pValue = v;
    if (v == NULL || f->C_GetAttributeValue(sh, h, &a, 1) != CKR_OK) {
        free(v);
        return NULL;
    }
    *len = a.ulValueLen;
    return v;
}

/* The DER of the one certificate under ID now (fresh lookup), or NULL. */
static unsigned char *
cert_now(CK_SESSION_HANDLE sh, const unsigned char *id, size_t idlen, CK_ULONG *len)
{
    CK_OBJECT_CLASS cc = CKO_CERTIFICATE;
    CK_ATTRIBUTE tc[] = {{CKA_CLASS, &cc, sizeof(cc)}, {CKA_ID, (void *)id, idlen}};
    CK_OBJECT_HANDLE hc[4];

    return find(sh, tc, 2, hc, 4) == 1 ? get_value(sh, hc[0], CKA_VALUE, len) : NULL;
}

/*
 * One round: 0 and *SERIAL (malloc'd hex) on success; -1 with WHY on an
 * error; 1 when the round straddled a commit by another process. Each
 * lookup sees one consistent state (exactly one certificate, exactly one
 * key, else an error), but the certificate and the key are two lookups: a
 * commit between them (or between a lookup and the use of its handle) gives
 * the old certificate with the new key. Such a round is recognised by a
 * fresh lookup at its end finding another certificate than at its start
 * and is repeated; with the certificate unchanged any failure is an error.
 */
static int
round_once(CK_SESSION_HANDLE sh, const unsigned char *id, size_t idlen, char **serial, char *why,
           size_t wn)
{
    CK_OBJECT_CLASS cc = CKO_CERTIFICATE, kc = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tc[] = {{CKA_CLASS, &cc, sizeof(cc)}, {CKA_ID, (void *)id, idlen}};
    CK_ATTRIBUTE tk[] = {{CKA_CLASS, &kc, sizeof(kc)}, {CKA_ID, (void *)id, idlen}};
    CK_OBJECT_HANDLE hc[4], hk[4];
    long nc, nk;
    unsigned char *der = NULL, *kt = NULL, data[64], sig[512], *dsig = NULL;
    const unsigned char *p;
    CK_ULONG dl = 0, ktl = 0, sl = sizeof(sig);
    CK_KEY_TYPE type;
    CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
    X509 *x = NULL;
    EVP_MD_CTX *vc = NULL;
    BIGNUM *bn = NULL;
    char *h = NULL;
    int rc = -1, dsl;

    nc = find(sh, tc, 2, hc, 4);
    nk = find(sh, tk, 2, hk, 4);
    if (nc != 1 || nk != 1) {
        snprintf(why, wn, "lookup by CKA_ID found %ld certificates and %ld private keys", nc, nk);
        goto done;
    }
    der = get_value(sh, hc[0], CKA_VALUE, &dl);
    if (der == NULL) {
        /* The handle went away: raced if the credential changed since. */
        CK_ULONG l2 = 0;
        unsigned char *d2 = cert_now(sh, id, idlen, &l2);
        CK_OBJECT_HANDLE h2[4];
        rc = d2 != NULL && find(sh, tc, 2, h2, 4) == 1 && h2[0] != hc[0] ? 1 : -1;
        free(d2);
        snprintf(why, wn, "cannot read the certificate found by CKA_ID");
        goto done;
    }
    p = der;
    x = der ? d2i_X509(NULL, &p, (long)dl) : NULL;
    kt = get_value(sh, hk[0], CKA_KEY_TYPE, &ktl);
    if (x == NULL || kt == NULL || ktl != sizeof(type)) {
        snprintf(why, wn, "cannot read the certificate or the key type");
        goto done;
    }
    memcpy(&type, kt, sizeof(type));
    if (type == CKK_EC) {
        m.mechanism = CKM_ECDSA;
    } else if (type != CKK_RSA) {
        snprintf(why, wn, "key type 0x%lx not supported", (unsigned long)type);
        goto done;
    }
    RAND_bytes(data, 32);
    {
        unsigned char md[32];
        const unsigned char *in = data;
        CK_ULONG inl = 32;
        if (type == CKK_EC) {
            /* CKM_ECDSA signs a digest. */
            EVP_Digest(data, 32, md, NULL, EVP_sha256(), NULL);
            in = md;
        }
        CK_RV rv = f->C_SignInit(sh, &m, hk[0]);
        if (rv == CKR_OK)
            rv = f->C_Sign(sh, (CK_BYTE_PTR)in, inl, sig, &sl);
        if (rv != CKR_OK) {
            snprintf(why, wn, "signing failed: 0x%lx", (unsigned long)rv);
            goto done;
        }
    }
    if (type == CKK_EC) {
        /* Raw r||s into DER for OpenSSL. */
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, (int)(sl / 2), NULL),
               *s = BN_bin2bn(sig + sl / 2, (int)(sl / 2), NULL);
        if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            snprintf(why, wn, "bad ECDSA signature length %lu", (unsigned long)sl);
            goto done;
        }
        dsl = i2d_ECDSA_SIG(es, &dsig);
        ECDSA_SIG_free(es);
    } else {
        dsig = OPENSSL_memdup(sig, sl);
        dsl = (int)sl;
    }
    vc = EVP_MD_CTX_new();
    if (dsig == NULL || dsl <= 0 || vc == NULL ||
        EVP_DigestVerifyInit(vc, NULL, EVP_sha256(), NULL, X509_get0_pubkey(x)) != 1 ||
        EVP_DigestVerify(vc, dsig, (size_t)dsl, data, 32) != 1) {
        snprintf(why, wn,
                 "the signature does not verify with the certificate's public key "
                 "(certificate and key of different credentials)");
        goto done;
    }
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    h = bn ? BN_bn2hex(bn) : NULL;
    *serial = h ? strdup(h) : NULL;
    rc = *serial ? 0 : -1;
done:
    if (rc == -1 && der != NULL) {
        CK_ULONG l2 = 0;
        unsigned char *d2 = cert_now(sh, id, idlen, &l2);
        if (d2 != NULL && (l2 != dl || memcmp(d2, der, dl) != 0))
            rc = 1; /* another certificate now: the round straddled a commit */
        free(d2);
    }
    OPENSSL_free(h);
    BN_free(bn);
    EVP_MD_CTX_free(vc);
    OPENSSL_free(dsig);
    X509_free(x);
    free(der);
    free(kt);
    return rc;
}

static int
watch(CK_SESSION_HANDLE sh, const unsigned char *id, size_t idlen, long interval_ms)
{
    char *seen[64];
    int nseen = 0;
    long rounds = 0, errors = 0, raced = 0;
    struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};

    while (!stop) {
        char why[256] = "", *serial = NULL;
        int r;
        rounds++;
        r = round_once(sh, id, idlen, &serial, why, sizeof(why));
        if (r == 1) {
            raced++;
            printf("round %ld raced %s; a commit happened during the round, repeated\n", rounds,
                   why);
        } else if (r != 0) {
            errors++;
            printf("round %ld ERROR %s\n", rounds, why);
        } else {
            int known = 0;
            for (int i = 0; i < nseen; i++)
                known |= !strcmp(seen[i], serial);
            if (!known && nseen < 64)
                seen[nseen++] = strdup(serial);
            printf("round %ld serial %s ok\n", rounds, serial);
            free(serial);
        }
        fflush(stdout);
        nanosleep(&ts, NULL);
    }
    printf("summary rounds=%ld errors=%ld raced=%ld serials=%d\n", rounds, errors, raced, nseen);
    for (int i = 0; i < nseen; i++)
        free(seen[i]);
    return errors ? 1 : 0;
}

static const ET_FUNCTION_LIST *
vendor(void *dl)
{
    CK_C_GetInterface gi;
    CK_INTERFACE_PTR ifc = NULL;

    *(void **)&gi = dlsym(dl, "C_GetInterface");
    if (gi == NULL || gi((CK_UTF8CHAR_PTR)ET_VENDOR_INTERFACE, NULL, &ifc, 0) != CKR_OK ||
        ifc == NULL)
        return NULL;
    return ifc->pFunctionList;
}

int
main(int argc, char **argv)
{
    unsigned char id[255];
    size_t idlen;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE sh;
    void *dl;
    int rc;

    if (argc < 6 || hexid(argv[4], id, &idlen) != 0) {
        fprintf(stderr, "usage: enr_probe watch|pending|rollback MODULE TOKEN ID_HEX PIN_FILE "
                        "[INTERVAL_MS]\n");
        return 2;
    }
    signal(SIGTERM, on_sig);
    signal(SIGINT, on_sig);
    if (open_token(argv[2], argv[3], argv[5], &slot, &sh, &dl) != 0)
        return 1;
    if (!strcmp(argv[1], "watch")) {
        rc = watch(sh, id, idlen, argc > 6 ? atol(argv[6]) : 20);
    } else if (!strcmp(argv[1], "pending")) {
        CK_BBOOL yes = CK_TRUE;
        CK_ATTRIBUTE t[] = {{CKA_EVERTOKEN_PENDING, &yes, sizeof(yes)}, {CKA_ID, id, idlen}};
        CK_OBJECT_HANDLE hs[16];
        long n = find(sh, t, 2, hs, 16);
        rc = n < 0 ? 1 : 0;
        if (n >= 0)
            printf("%ld\n", n);
    } else if (!strcmp(argv[1], "rollback")) {
        const ET_FUNCTION_LIST *et = vendor(dl);
        CK_RV rv = et ? et->ET_RolloverRollback(sh, id, idlen) : CKR_FUNCTION_NOT_SUPPORTED;
        rc = rv == CKR_OK ? 0 : rv == CKR_OBJECT_HANDLE_INVALID ? 3 : 1;
        printf("%s\n", rv == CKR_OK                      ? "rolled back"
                       : rv == CKR_OBJECT_HANDLE_INVALID ? "nothing to undo"
                                                         : "error");
        if (rc == 1)
            fprintf(stderr, "enr_probe: ET_RolloverRollback: 0x%lx\n", (unsigned long)rv);
    } else {
        fprintf(stderr, "enr_probe: unknown command %s\n", argv[1]);
        rc = 2;
    }
    f->C_CloseSession(sh);
    f->C_Finalize(NULL);
    dlclose(dl);
    return rc;
}
