/*
 * bench_util.c — p11bench: small helpers, the results table, messages and mechanisms, the OpenSSL
 * side.
 */
#include "p11bench.h"

/* ---- small helpers ------------------------------------------------------ */

double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

PRINTF(1, 2) void die(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fputs("p11bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* A signature that does not verify, or a module accepting a forged one. */
PRINTF(1, 2) void verify_failed(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fputs("p11bench: VERIFICATION FAILED: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL)
        die("out of memory");
    return p;
}

const char *
rvname(CK_RV rv)
{
    static _Thread_local char other[32];

    switch (rv) {
#define N(x)                                                                                       \
    case x:                                                                                        \
        return #x
        N(CKR_OK);
        N(CKR_HOST_MEMORY);
        N(CKR_SLOT_ID_INVALID);
        N(CKR_GENERAL_ERROR);
        N(CKR_FUNCTION_FAILED);
        N(CKR_ARGUMENTS_BAD);
        N(CKR_ATTRIBUTE_READ_ONLY);
        N(CKR_ATTRIBUTE_SENSITIVE);
        N(CKR_ATTRIBUTE_TYPE_INVALID);
        N(CKR_ATTRIBUTE_VALUE_INVALID);
        N(CKR_DATA_INVALID);
        N(CKR_DATA_LEN_RANGE);
        N(CKR_DEVICE_ERROR);
        N(CKR_DEVICE_MEMORY);
        N(CKR_FUNCTION_NOT_SUPPORTED);
        N(CKR_KEY_HANDLE_INVALID);
        N(CKR_KEY_SIZE_RANGE);
        N(CKR_KEY_TYPE_INCONSISTENT);
        N(CKR_KEY_FUNCTION_NOT_PERMITTED);
        N(CKR_MECHANISM_INVALID);
        N(CKR_MECHANISM_PARAM_INVALID);
        N(CKR_OBJECT_HANDLE_INVALID);
        N(CKR_OPERATION_ACTIVE);
        N(CKR_OPERATION_NOT_INITIALIZED);
        N(CKR_PIN_INCORRECT);
        N(CKR_PIN_LEN_RANGE);
        N(CKR_SESSION_HANDLE_INVALID);
        N(CKR_SESSION_READ_ONLY);
        N(CKR_SIGNATURE_INVALID);
        N(CKR_SIGNATURE_LEN_RANGE);
        N(CKR_TEMPLATE_INCOMPLETE);
        N(CKR_TEMPLATE_INCONSISTENT);
        N(CKR_TOKEN_NOT_RECOGNIZED);
        N(CKR_USER_NOT_LOGGED_IN);
        N(CKR_USER_ALREADY_LOGGED_IN);
        N(CKR_BUFFER_TOO_SMALL);
        N(CKR_CRYPTOKI_NOT_INITIALIZED);
        N(CKR_CURVE_NOT_SUPPORTED);
#undef N
    default:
        snprintf(other, sizeof(other), "CKR_0x%08lx", (unsigned long)rv);
        return other;
    }
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- results ------------------------------------------------------------ */

struct row *rows;
int nrows, caprows;
int cur_src;                  /* whose results this process reports */
int report_fd = -1;           /* module process: pipe to the parent */
const char *cur_name = "ref"; /* for progress lines */
unsigned long n_verified;     /* signatures checked with OpenSSL */
char mod_info[MAX_MODULES][160];

int
src_ref(void)
{
    return O.nmods;
}

struct row *
row_find(const char *key)
{
    for (int i = 0; i < nrows; i++)
        if (strcmp(rows[i].key, key) == 0)
            return &rows[i];
    return NULL;
}

PRINTF(5, 6)
void
row_def(const char *section, const char *key, const char *unit, enum better b, const char *fmt, ...)
{
    struct row *r;
    va_list ap;

    if (row_find(key) != NULL)
        return;
    if (nrows == caprows) {
        caprows = caprows ? caprows * 2 : 64;
        rows = realloc(rows, (size_t)caprows * sizeof(*rows));
        if (rows == NULL)
            die("out of memory");
    }
    r = &rows[nrows++];
    memset(r, 0, sizeof(*r));
    snprintf(r->key, sizeof(r->key), "%s", key);
    va_start(ap, fmt);
    vsnprintf(r->desc, sizeof(r->desc), fmt, ap);
    va_end(ap);
    r->unit = unit;
    r->section = section;
    r->better = b;
}

static struct row *
row_get(const char *key)
{
    struct row *r = row_find(key);

    if (r == NULL)
        die("internal: no row %s", key);
    return r;
}

/* The reference runs twice (before and after the modules); it keeps its
 * better result, so that load from elsewhere cannot flatter a ratio. */
void
store_val(int src, const char *key, double v)
{
    struct row *r = row_get(key);

    if (src == src_ref() && r->have[src] &&
        (r->better == B_HIGHER ? v <= r->val[src] : v >= r->val[src]))
        return;
    r->have[src] = 1;
    r->val[src] = v;
}

void
store_err(int src, const char *key, const char *text)
{
    struct row *r = row_get(key);

    snprintf(r->err[src], sizeof(r->err[src]), "%s", text);
}

void
send_line(const char *line)
{
    size_t n = strlen(line), off = 0;

    while (off < n) {
        ssize_t w = write(report_fd, line + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write to parent: %s", strerror(errno));
        off += (size_t)w;
    }
}

void
report_val(const char *key, double v)
{
    char line[256];

    fprintf(stderr, "  [%s] %-64s %12.3f %s\n", cur_name, row_get(key)->desc, v,
            row_get(key)->unit);
    if (report_fd < 0) {
        store_val(cur_src, key, v);
        return;
    }
    snprintf(line, sizeof(line), "val\t%s\t%.17g\n", key, v);
    send_line(line);
}

PRINTF(2, 3) void report_err(const char *key, const char *fmt, ...)
{
    char text[192], line[320];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    for (char *p = text; *p; p++)
        if (*p == '\t' || *p == '\n')
            *p = ' ';
    fprintf(stderr, "  [%s] %-64s %s\n", cur_name, row_get(key)->desc, text);
    if (report_fd < 0) {
        store_err(cur_src, key, text);
        return;
    }
    snprintf(line, sizeof(line), "err\t%s\t%s\n", key, text);
    send_line(line);
}

/* ---- messages and mechanisms -------------------------------------------- */

const char *const kt_key[KT_COUNT] = {"rsa2048", "p256", "ed25519"};
const char *const kt_name[KT_COUNT] = {"RSA-2048", "EC P-256", "Ed25519"};

const struct mechdef MECHS[A_COUNT] = {
    {A_RSA_PKCS, "rsa-pkcs", "RSA-2048 PKCS#1 v1.5 SHA-256 (CKM_SHA256_RSA_PKCS)", KT_RSA,
     CKM_SHA256_RSA_PKCS, 0},
    {A_RSA_PSS, "rsa-pss", "RSA-2048 PSS SHA-256 (CKM_SHA256_RSA_PKCS_PSS)", KT_RSA,
     CKM_SHA256_RSA_PKCS_PSS, 0},
    {A_ECDSA, "ecdsa", "ECDSA P-256 on a SHA-256 digest (CKM_ECDSA)", KT_EC, CKM_ECDSA, 1},
    {A_ECDSA_SHA256, "ecdsa-sha256", "ECDSA P-256 SHA-256 (CKM_ECDSA_SHA256)", KT_EC,
     CKM_ECDSA_SHA256, 0},
    {A_EDDSA, "eddsa", "Ed25519 (CKM_EDDSA)", KT_ED, CKM_EDDSA, 0},
};

/* Whether --mech selected mechanism A (every one without --mech). */
int
mech_on(enum alg a)
{
    return O.mechsel == 0 || (O.mechsel & (1u << a)) != 0;
}

static CK_RSA_PKCS_PSS_PARAMS PSS_PARAMS = {CKM_SHA256, CKG_MGF1_SHA256, 32};

static unsigned char MSG[NMSG][MSG_LEN];
static unsigned char DIG[NMSG][32];

void
messages_init(void)
{
    for (int i = 0; i < NMSG; i++) {
        unsigned int dl = 0;
        for (int j = 0; j < MSG_LEN; j++)
            MSG[i][j] = (unsigned char)(i * 131 + j * 7);
        snprintf((char *)MSG[i], MSG_LEN, "p11bench message %d", i);
        if (EVP_Digest(MSG[i], MSG_LEN, DIG[i], &dl, EVP_sha256(), NULL) != 1 || dl != 32)
            die("SHA-256 failed");
    }
}

const unsigned char *
input_of(const struct mechdef *md, int i, size_t *len)
{
    *len = md->prehashed ? 32 : MSG_LEN;
    return md->prehashed ? DIG[i] : MSG[i];
}

CK_MECHANISM
mech_of(const struct mechdef *md)
{
    CK_MECHANISM m = {md->mech, NULL, 0};

    if (md->alg == A_RSA_PSS) {
        m.pParameter = &PSS_PARAMS;
        m.ulParameterLen = sizeof(PSS_PARAMS);
    }
    return m;
}

/* ---- OpenSSL side ------------------------------------------------------- */

static int
pss_setup(EVP_PKEY_CTX *pctx)
{
    return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) > 0 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) > 0;
}

/*
 * One signature with OpenSSL, set up from scratch at every call (as a module
 * must at every C_SignInit): EVP_DigestSignInit on a reused EVP_MD_CTX, or a
 * new EVP_PKEY_CTX for the pre-hashed ECDSA. ECDSA signatures are DER.
 */
int
ossl_sign(const struct mechdef *md, EVP_PKEY *pk, EVP_MD_CTX *mctx, const unsigned char *in,
          size_t inlen, unsigned char *sig, size_t *siglen)
{
    EVP_PKEY_CTX *pctx = NULL;
    int ok;

    if (md->prehashed) {
        pctx = EVP_PKEY_CTX_new(pk, NULL);
        ok = pctx != NULL && EVP_PKEY_sign_init(pctx) == 1 &&
             EVP_PKEY_sign(pctx, sig, siglen, in, inlen) == 1;
        EVP_PKEY_CTX_free(pctx);
        return ok;
    }
    EVP_MD_CTX_reset(mctx);
    if (EVP_DigestSignInit(mctx, &pctx, md->kt == KT_ED ? NULL : EVP_sha256(), NULL, pk) != 1)
        return 0;
    if (md->alg == A_RSA_PSS && !pss_setup(pctx))
        return 0;
    return EVP_DigestSign(mctx, sig, siglen, in, inlen) == 1;
}

/* 1 if SIG (OpenSSL form: DER for ECDSA) is a valid signature of IN. */
int
ossl_verify(const struct mechdef *md, EVP_PKEY *pk, EVP_MD_CTX *mctx, const unsigned char *in,
            size_t inlen, const unsigned char *sig, size_t siglen)
{
    EVP_PKEY_CTX *pctx = NULL;
    int ok;

    if (md->prehashed) {
        pctx = EVP_PKEY_CTX_new(pk, NULL);
        ok = pctx != NULL && EVP_PKEY_verify_init(pctx) == 1 &&
             EVP_PKEY_verify(pctx, sig, siglen, in, inlen) == 1;
        EVP_PKEY_CTX_free(pctx);
        return ok;
    }
    EVP_MD_CTX_reset(mctx);
    if (EVP_DigestVerifyInit(mctx, &pctx, md->kt == KT_ED ? NULL : EVP_sha256(), NULL, pk) != 1)
        return 0;
    if (md->alg == A_RSA_PSS && !pss_setup(pctx))
        return 0;
    return EVP_DigestVerify(mctx, sig, siglen, in, inlen) == 1;
}

/* PKCS#11 ECDSA signatures are r || s; OpenSSL wants DER. */
static int
ecdsa_raw_to_der(const unsigned char *raw, size_t n, unsigned char *der, size_t *derlen)
{
    ECDSA_SIG *s;
    BIGNUM *r, *ss;
    unsigned char *p = der;
    int len;

    if (n != 64)
        return 0;
    s = ECDSA_SIG_new();
    r = BN_bin2bn(raw, 32, NULL);
    ss = BN_bin2bn(raw + 32, 32, NULL);
    if (s == NULL || r == NULL || ss == NULL || ECDSA_SIG_set0(s, r, ss) != 1) {
        BN_free(r);
        BN_free(ss);
        ECDSA_SIG_free(s);
        return 0;
    }
    len = i2d_ECDSA_SIG(s, NULL);
    if (len > 0 && (size_t)len <= *derlen)
        len = i2d_ECDSA_SIG(s, &p);
    else
        len = -1;
    ECDSA_SIG_free(s);
    if (len <= 0)
        return 0;
    *derlen = (size_t)len;
    return 1;
}

/* Verify a module's signature (PKCS#11 form) of message I with OpenSSL. */
int
verify_p11_sig(const struct mechdef *md, EVP_PKEY *pub, EVP_MD_CTX *mctx, int i,
               const unsigned char *sig, size_t siglen)
{
    unsigned char der[SIG_MAX];
    size_t derlen = sizeof(der), inlen;
    const unsigned char *in = input_of(md, i, &inlen);

    if (md->kt == KT_EC) {
        if (!ecdsa_raw_to_der(sig, siglen, der, &derlen))
            return 0;
        sig = der;
        siglen = derlen;
    }
    return ossl_verify(md, pub, mctx, in, inlen, sig, siglen);
}

EVP_PKEY *
ossl_keygen(enum keytype kt)
{
    switch (kt) {
    case KT_RSA:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    case KT_EC:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    default:
        return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    }
}
