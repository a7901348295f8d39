/*
 * p11bench.c — performance of PKCS#11 modules side by side with raw OpenSSL
 * (issue 7).
 *
 *   p11bench [--evertoken PATH] [--softhsm PATH] [--module PATH]...
 *            [--seconds S] [--objects N,N,...] [--kdf SPEC] [--reps R]
 *            [--quick] [--strict] [--allow-missing NAME:MECH]...
 *            [--max-objects NAME:N]... [--json FILE]
 *
 * Every module is loaded by path (dlopen + C_GetFunctionList) in a process of
 * its own, forked before anything else is loaded: a module's global choices
 * (SoftHSMv2 installs an OpenSSL RAND engine, for instance) cannot change
 * another module's numbers or the reference ones. The parent runs the
 * reference measurements (OpenSSL EVP, libsodium Argon2id) itself, collects
 * the modules' results through a pipe and prints one table with ratios.
 *
 * Tokens live in a fresh temporary directory per module (EVERTOKEN_DIR,
 * SOFTHSM2_CONF; both are set for every module, each reads its own), created
 * with C_InitToken on the free slot and C_InitPIN; never the user's tokens.
 *
 * Every signature kind that is timed is verified with OpenSSL against the
 * public key read back from the token (CKA_MODULUS/CKA_PUBLIC_EXPONENT,
 * CKA_EC_PARAMS/CKA_EC_POINT, cross-checked with CKA_PUBLIC_KEY_INFO when the
 * module has it), and the module's C_Verify must reject a corrupted
 * signature: a failure is a hard error, exit status 1, no number posted.
 * Timings are reported, never judged; --strict only requires that every
 * measurement ran (the CTest smoke test uses it).
 */
#include <dlfcn.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "keystore.h"
#include "p11.h"

#define SO_PIN      "12345678"
#define USER_PIN    "1234"
#define TOKEN_LABEL "p11bench"
#define TARGET_ID   "p11bench-target"
#define TARGET_LBL  "p11bench target"

#define MAX_MODULES 4
#define NSRC        (MAX_MODULES + 1) /* modules, then the reference column */
#define MAX_N       8
#define NMSG        64  /* distinct messages signed in turn */
#define MSG_LEN     100 /* bytes per message */
#define SIG_MAX     512
#define SAMPLE_CAP  400 /* signatures kept per thread for verification */
#define NTHREADS    2
#define MAX_ROUNDS  15 /* --rounds */

#define PRINTF(a, b) __attribute__((format(printf, a, b)))

/* ---- options ------------------------------------------------------------ */

enum kind { K_GENERIC, K_EVERTOKEN, K_SOFTHSM };

struct modspec {
    char name[32];
    const char *path;
    enum kind kind;
};

static struct {
    struct modspec mods[MAX_MODULES];
    int nmods;
    double seconds;
    unsigned long objects[MAX_N];
    int nobjects;
    const char *kdf;
    int reps;
    int quick, strict;
    int objects_only; /* --objects-only: no key generation or signature rows */
    const char *json;
    char allow[16][64]; /* NAME:MECH pairs allowed to be unsupported */
    int nallow;
    char maxobj[MAX_MODULES][64]; /* NAME:N, --max-objects */
    int nmaxobj;
    int rounds;       /* --rounds: 1-thread/2-thread sign pairs per mechanism */
    unsigned mechsel; /* --mech: bit per enum alg; 0 = every mechanism */
} O;

/* ---- small helpers ------------------------------------------------------ */

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static PRINTF(1, 2) void die(const char *fmt, ...)
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
static PRINTF(1, 2) void verify_failed(const char *fmt, ...)
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

static void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL)
        die("out of memory");
    return p;
}

static const char *
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

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- results ------------------------------------------------------------ */

enum better { B_HIGHER, B_LOWER, B_NONE };

struct row {
    char key[48];
    char desc[112];
    const char *unit;
    const char *section;
    enum better better;
    int have[NSRC];
    double val[NSRC];
    char err[NSRC][192];
};

static struct row *rows;
static int nrows, caprows;
static int cur_src;                  /* whose results this process reports */
static int report_fd = -1;           /* module process: pipe to the parent */
static const char *cur_name = "ref"; /* for progress lines */
static unsigned long n_verified;     /* signatures checked with OpenSSL */
static char mod_info[MAX_MODULES][160];

static int
src_ref(void)
{
    return O.nmods;
}

static struct row *
row_find(const char *key)
{
    for (int i = 0; i < nrows; i++)
        if (strcmp(rows[i].key, key) == 0)
            return &rows[i];
    return NULL;
}

static PRINTF(5, 6) void row_def(const char *section, const char *key, const char *unit,
                                 enum better b, const char *fmt, ...)
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

static int src_ref(void);

/* The reference runs twice (before and after the modules); it keeps its
 * better result, so that load from elsewhere cannot flatter a ratio. */
static void
store_val(int src, const char *key, double v)
{
    struct row *r = row_get(key);

    if (src == src_ref() && r->have[src] &&
        (r->better == B_HIGHER ? v <= r->val[src] : v >= r->val[src]))
        return;
    r->have[src] = 1;
    r->val[src] = v;
}

static void
store_err(int src, const char *key, const char *text)
{
    struct row *r = row_get(key);

    snprintf(r->err[src], sizeof(r->err[src]), "%s", text);
}

static void
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

static void
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

static PRINTF(2, 3) void report_err(const char *key, const char *fmt, ...)
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

enum keytype { KT_RSA, KT_EC, KT_ED, KT_COUNT };
static const char *const kt_key[KT_COUNT] = {"rsa2048", "p256", "ed25519"};
static const char *const kt_name[KT_COUNT] = {"RSA-2048", "EC P-256", "Ed25519"};

enum alg { A_RSA_PKCS, A_RSA_PSS, A_ECDSA, A_ECDSA_SHA256, A_EDDSA, A_COUNT };

struct mechdef {
    enum alg alg;
    const char *key;
    const char *name;
    enum keytype kt;
    CK_MECHANISM_TYPE mech;
    int prehashed; /* the input is a SHA-256 digest */
};

static const struct mechdef MECHS[A_COUNT] = {
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
static int
mech_on(enum alg a)
{
    return O.mechsel == 0 || (O.mechsel & (1u << a)) != 0;
}

static CK_RSA_PKCS_PSS_PARAMS PSS_PARAMS = {CKM_SHA256, CKG_MGF1_SHA256, 32};

static unsigned char MSG[NMSG][MSG_LEN];
static unsigned char DIG[NMSG][32];

static void
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

static const unsigned char *
input_of(const struct mechdef *md, int i, size_t *len)
{
    *len = md->prehashed ? 32 : MSG_LEN;
    return md->prehashed ? DIG[i] : MSG[i];
}

static CK_MECHANISM
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
static int
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
static int
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
static int
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

static EVP_PKEY *
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

/* ---- throughput workers ------------------------------------------------- */

enum wkind { W_MOD_SIGN, W_MOD_VERIFY, W_SSL_SIGN, W_SSL_VERIFY };

/* One signature per message, in the signer's form. */
struct sigset {
    size_t len[NMSG];
    unsigned char sig[NMSG][SIG_MAX];
};

struct sample {
    int msg;
    size_t len;
    unsigned char sig[SIG_MAX];
};

struct worker {
    enum wkind kind;
    const struct mechdef *md;
    CK_FUNCTION_LIST_PTR f;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key;
    EVP_PKEY *pk;
    const struct sigset *sigs;
    double seconds;
    pthread_barrier_t *bar;
    /* results */
    unsigned long ops;
    double elapsed;
    double cpu; /* CPU time of the thread, seconds */
    CK_RV rv;
    const char *where;
    int failed;
    struct sample *smp;
    size_t nsmp;
};

static void
keep_sample(struct worker *w, int m, const unsigned char *sig, size_t n, unsigned long i)
{
    /* The first signatures of every message, then a spread of later ones. */
    if (w->nsmp >= SAMPLE_CAP || n > SIG_MAX || (i >= 2 * NMSG && i % 37 != 0))
        return;
    w->smp[w->nsmp].msg = m;
    w->smp[w->nsmp].len = n;
    memcpy(w->smp[w->nsmp].sig, sig, n);
    w->nsmp++;
}

static int
worker_fail(struct worker *w, CK_RV rv, const char *where)
{
    w->failed = 1;
    w->rv = rv;
    w->where = where;
    return 0;
}

static int
worker_op(struct worker *w, EVP_MD_CTX *mctx, unsigned long i)
{
    int m = (int)(i % NMSG);
    size_t inlen;
    const unsigned char *in = input_of(w->md, m, &inlen);
    unsigned char sig[SIG_MAX];
    CK_MECHANISM mech = mech_of(w->md);
    CK_ULONG n = sizeof(sig);
    size_t sn = sizeof(sig);
    CK_RV rv;

    switch (w->kind) {
    case W_MOD_SIGN:
        rv = w->f->C_SignInit(w->s, &mech, w->key);
        if (rv != CKR_OK)
            return worker_fail(w, rv, "C_SignInit");
        rv = w->f->C_Sign(w->s, (CK_BYTE_PTR)in, inlen, sig, &n);
        if (rv != CKR_OK)
            return worker_fail(w, rv, "C_Sign");
        keep_sample(w, m, sig, n, i);
        return 1;
    case W_MOD_VERIFY:
        rv = w->f->C_VerifyInit(w->s, &mech, w->key);
        if (rv != CKR_OK)
            return worker_fail(w, rv, "C_VerifyInit");
        rv = w->f->C_Verify(w->s, (CK_BYTE_PTR)in, inlen, (CK_BYTE_PTR)w->sigs->sig[m],
                            w->sigs->len[m]);
        if (rv != CKR_OK)
            return worker_fail(w, rv, "C_Verify");
        return 1;
    case W_SSL_SIGN:
        if (!ossl_sign(w->md, w->pk, mctx, in, inlen, sig, &sn))
            return worker_fail(w, CKR_FUNCTION_FAILED, "EVP sign");
        keep_sample(w, m, sig, sn, i);
        return 1;
    default:
        if (!ossl_verify(w->md, w->pk, mctx, in, inlen, w->sigs->sig[m], w->sigs->len[m]))
            return worker_fail(w, CKR_SIGNATURE_INVALID, "EVP verify");
        return 1;
    }
}

static double
thread_cpu(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    unsigned long i = 0;
    double t0, c0;

    if (mctx == NULL) {
        worker_fail(w, CKR_HOST_MEMORY, "EVP_MD_CTX_new");
        pthread_barrier_wait(w->bar);
        return NULL;
    }
    pthread_barrier_wait(w->bar);
    t0 = now();
    c0 = thread_cpu();
    for (;;) {
        if (!worker_op(w, mctx, i))
            break;
        i++;
        if (now() - t0 >= w->seconds)
            break;
    }
    w->elapsed = now() - t0;
    w->cpu = thread_cpu() - c0;
    w->ops = i;
    EVP_MD_CTX_free(mctx);
    return NULL;
}

/* Run NT configured workers started together; ops/s over the slowest one,
 * or -1 when one failed (its rv/where say why). *PER_CPU: operations per
 * second of the threads' own CPU time, which load from other processes on
 * the machine changes much less than the wall clock. */
static double
run_workers(struct worker *w, int nt, double *per_cpu)
{
    pthread_t th[NTHREADS];
    pthread_barrier_t bar;
    unsigned long ops = 0;
    double el = 0, cpu = 0;

    pthread_barrier_init(&bar, NULL, (unsigned)nt);
    for (int i = 0; i < nt; i++) {
        w[i].bar = &bar;
        w[i].smp = xmalloc(SAMPLE_CAP * sizeof(*w[i].smp));
        w[i].nsmp = 0;
        if (pthread_create(&th[i], NULL, worker_main, &w[i]) != 0)
            die("pthread_create failed");
    }
    for (int i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < nt; i++) {
        if (w[i].failed)
            return -1;
        ops += w[i].ops;
        cpu += w[i].cpu;
        if (w[i].elapsed > el)
            el = w[i].elapsed;
    }
    *per_cpu = cpu > 0 ? (double)ops / cpu : -1;
    return el > 0 ? (double)ops / el : -1;
}

/* Verify every kept signature of the workers (sign runs only). */
static void
verify_samples(struct worker *w, int nt, EVP_PKEY *pub, const char *who)
{
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();

    for (int t = 0; t < nt; t++) {
        for (size_t k = 0; k < w[t].nsmp; k++) {
            struct sample *s = &w[t].smp[k];
            size_t inlen;
            const unsigned char *in = input_of(w[t].md, s->msg, &inlen);
            int ok = w[t].kind == W_MOD_SIGN
                         ? verify_p11_sig(w[t].md, pub, mctx, s->msg, s->sig, s->len)
                         : ossl_verify(w[t].md, pub, mctx, in, inlen, s->sig, s->len);
            if (!ok)
                verify_failed("%s: %s: signature %zu of thread %d does not verify", who,
                              w[t].md->name, k, t);
            n_verified++;
        }
    }
    EVP_MD_CTX_free(mctx);
}

static void
free_workers(struct worker *w, int nt)
{
    for (int i = 0; i < nt; i++) {
        free(w[i].smp);
        w[i].smp = NULL;
    }
}

/* What a signature run needs: a module key (F != NULL) or an OpenSSL key,
 * and the public key that verifies it. */
struct signer {
    CK_FUNCTION_LIST_PTR f;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE s0;
    CK_OBJECT_HANDLE key, pubkey;
    EVP_PKEY *priv; /* OpenSSL signer */
    EVP_PKEY *pub;  /* verifies the signatures */
};

static void
rowkey(char *out, size_t n, const char *what, const char *mech)
{
    snprintf(out, n, "%s.%s", what, mech);
}

/* The same error for every row of mechanism MD. */
static PRINTF(2, 3) void report_mech_err(const struct mechdef *md, const char *fmt, ...)
{
    static const char *const what[] = {"sign1", "sign1cpu", "sign2",  "sign2cpu",
                                       "scale", "verify1",  "verify2"};
    char key[48], text[192];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < sizeof(what) / sizeof(what[0]); i++) {
        rowkey(key, sizeof(key), what[i], md->key);
        report_err(key, "%s", text);
    }
}

/* One throughput measurement with NT threads (each with its own session when
 * it is a module). Returns ops/s, or -1 with the row's error reported. */
static double
throughput(const struct signer *sg, const struct mechdef *md, enum wkind kind, int nt,
           const struct sigset *sigs, const char *key, const char *cpukey, double *cpu_rate)
{
    struct worker w[NTHREADS];
    double r, per_cpu = -1;

    memset(w, 0, sizeof(w));
    for (int i = 0; i < nt; i++) {
        w[i].kind = kind;
        w[i].md = md;
        w[i].f = sg->f;
        w[i].key = kind == W_MOD_VERIFY ? sg->pubkey : sg->key;
        w[i].pk = kind == W_SSL_VERIFY ? sg->pub : sg->priv;
        w[i].sigs = sigs;
        w[i].seconds = O.seconds;
        if (sg->f != NULL) {
            CK_RV rv = sg->f->C_OpenSession(sg->slot, CKF_SERIAL_SESSION, NULL, NULL, &w[i].s);
            if (rv != CKR_OK) {
                report_err(key, "failed: C_OpenSession %s", rvname(rv));
                for (int j = 0; j < i; j++)
                    sg->f->C_CloseSession(w[j].s);
                return -1;
            }
        }
    }
    r = run_workers(w, nt, &per_cpu);
    if (r < 0) {
        for (int i = 0; i < nt; i++)
            if (w[i].failed)
                report_err(key, "%s: %s (%s) after %lu ops",
                           w[i].ops == 0 && w[i].rv == CKR_MECHANISM_INVALID ? "unsupported"
                                                                             : "failed",
                           rvname(w[i].rv), w[i].where, w[i].ops);
    } else {
        if (kind == W_MOD_SIGN || kind == W_SSL_SIGN)
            verify_samples(w, nt, sg->pub, cur_name);
        /* KEY NULL: the caller reports (a median of several rounds). */
        if (cpu_rate != NULL)
            *cpu_rate = per_cpu;
        if (cpukey != NULL) {
            report_val(key, r);
            if (*cpukey != '\0' && per_cpu > 0)
                report_val(cpukey, per_cpu);
        }
    }
    free_workers(w, nt);
    if (sg->f != NULL)
        for (int i = 0; i < nt; i++)
            sg->f->C_CloseSession(w[i].s);
    return r;
}

/* Sign and verify one mechanism: a functional pass (every signature checked
 * with OpenSSL; a corrupted one must be refused), then 1 and 2 threads. */
static void
bench_mech(const struct signer *sg, const struct mechdef *md)
{
    struct sigset *sigs = xmalloc(sizeof(*sigs));
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    char key[48], k2[48];
    double s1, s2, v1, v2;
    int can_verify = 1;

    if (mctx == NULL)
        die("out of memory");
    for (int i = 0; i < NMSG; i++) {
        size_t inlen;
        const unsigned char *in = input_of(md, i, &inlen);
        if (sg->f != NULL) {
            CK_MECHANISM mech = mech_of(md);
            CK_ULONG n = SIG_MAX;
            CK_RV rv = sg->f->C_SignInit(sg->s0, &mech, sg->key);
            const char *where = "C_SignInit";
            if (rv == CKR_OK) {
                rv = sg->f->C_Sign(sg->s0, (CK_BYTE_PTR)in, inlen, sigs->sig[i], &n);
                where = "C_Sign";
            }
            if (rv != CKR_OK) {
                report_mech_err(
                    md, rv == CKR_MECHANISM_INVALID ? "unsupported: %s (%s)" : "failed: %s (%s)",
                    rvname(rv), where);
                goto out;
            }
            sigs->len[i] = n;
            if (!verify_p11_sig(md, sg->pub, mctx, i, sigs->sig[i], n))
                verify_failed("%s: %s: signature of message %d does not verify", cur_name, md->name,
                              i);
        } else {
            sigs->len[i] = SIG_MAX;
            if (!ossl_sign(md, sg->priv, mctx, in, inlen, sigs->sig[i], &sigs->len[i]) ||
                !ossl_verify(md, sg->pub, mctx, in, inlen, sigs->sig[i], sigs->len[i]))
                verify_failed("OpenSSL: %s: sign/verify of message %d failed", md->name, i);
        }
        n_verified++;
    }

    /* A verifier that accepts anything cannot post a number either. */
    if (sg->f != NULL) {
        unsigned char bad[SIG_MAX];
        size_t inlen;
        const unsigned char *in = input_of(md, 0, &inlen);
        CK_MECHANISM mech = mech_of(md);
        CK_RV rv = sg->f->C_VerifyInit(sg->s0, &mech, sg->pubkey);

        memcpy(bad, sigs->sig[0], sigs->len[0]);
        bad[sigs->len[0] / 2] ^= 0x01;
        if (rv == CKR_OK) {
            rv = sg->f->C_Verify(sg->s0, (CK_BYTE_PTR)in, inlen, bad, sigs->len[0]);
            if (rv == CKR_OK)
                verify_failed("%s: %s: C_Verify accepted a corrupted signature", cur_name,
                              md->name);
            if (rv != CKR_SIGNATURE_INVALID && rv != CKR_SIGNATURE_LEN_RANGE)
                verify_failed("%s: %s: C_Verify of a corrupted signature returned %s", cur_name,
                              md->name, rvname(rv));
        } else {
            can_verify = 0;
            rowkey(key, sizeof(key), "verify1", md->key);
            report_err(key, "%s: %s (C_VerifyInit)",
                       rv == CKR_MECHANISM_INVALID ? "unsupported" : "failed", rvname(rv));
            rowkey(key, sizeof(key), "verify2", md->key);
            report_err(key, "%s: %s (C_VerifyInit)",
                       rv == CKR_MECHANISM_INVALID ? "unsupported" : "failed", rvname(rv));
        }
    } else {
        unsigned char bad[SIG_MAX];
        size_t inlen;
        const unsigned char *in = input_of(md, 0, &inlen);

        memcpy(bad, sigs->sig[0], sigs->len[0]);
        bad[sigs->len[0] / 2] ^= 0x01;
        if (ossl_verify(md, sg->pub, mctx, in, inlen, bad, sigs->len[0]))
            verify_failed("OpenSSL accepted a corrupted %s signature", md->name);
    }

    /* Signing: ROUNDS pairs of a 1-thread and a 2-thread run, back to back.
     * The rows are medians over the rounds, the scaling row the median of
     * each round's own ratio: on a shared VM the speed of the cores moves by
     * +-10 % within seconds, and a ratio of two runs taken at different
     * moments measures that more than the module. */
    {
        double r1[MAX_ROUNDS], c1[MAX_ROUNDS], r2[MAX_ROUNDS], c2[MAX_ROUNDS], sc[MAX_ROUNDS];
        int nr = 0;
        rowkey(key, sizeof(key), "sign1", md->key);
        rowkey(k2, sizeof(k2), "sign2", md->key);
        for (int i = 0; i < O.rounds; i++) {
            s1 = throughput(sg, md, sg->f ? W_MOD_SIGN : W_SSL_SIGN, 1, NULL, key, NULL, &c1[nr]);
            if (s1 < 0)
                break;
            s2 = throughput(sg, md, sg->f ? W_MOD_SIGN : W_SSL_SIGN, NTHREADS, NULL, k2, NULL,
                            &c2[nr]);
            if (s2 < 0)
                break;
            r1[nr] = s1;
            r2[nr] = s2;
            sc[nr] = s2 / s1;
            nr++;
        }
        rowkey(k2, sizeof(k2), "scale", md->key);
        if (nr == O.rounds) {
            report_val(key, median(r1, nr));
            rowkey(key, sizeof(key), "sign1cpu", md->key);
            report_val(key, median(c1, nr));
            rowkey(key, sizeof(key), "sign2", md->key);
            report_val(key, median(r2, nr));
            rowkey(key, sizeof(key), "sign2cpu", md->key);
            report_val(key, median(c2, nr));
            report_val(k2, median(sc, nr));
        } else {
            report_err(k2, "failed: no sign throughput");
        }
    }
    if (can_verify) {
        rowkey(key, sizeof(key), "verify1", md->key);
        v1 = throughput(sg, md, sg->f ? W_MOD_VERIFY : W_SSL_VERIFY, 1, sigs, key, "", NULL);
        rowkey(key, sizeof(key), "verify2", md->key);
        v2 = throughput(sg, md, sg->f ? W_MOD_VERIFY : W_SSL_VERIFY, NTHREADS, sigs, key, "", NULL);
        (void)v1;
        (void)v2;
    }
out:
    EVP_MD_CTX_free(mctx);
    free(sigs);
}

/* Milliseconds of one Argon2id (libsodium) of the user PIN at the cost
 * EVERTOKEN_KDF gives the tokens (the keystore's own parser says which). */
static double
argon2id_ms(void)
{
    unsigned char out[32], salt[crypto_pwhash_SALTBYTES] = {0};
    ks_kdf_params kdf;
    double t0;

    if (ks_kdf_from_env(&kdf) != KS_OK || kdf.opslimit == 0)
        die("EVERTOKEN_KDF=%s: not a KDF cost (fast, interactive, moderate, sensitive, OPS:MEM)",
            O.kdf);
    t0 = now();
    if (crypto_pwhash(out, sizeof(out), USER_PIN, strlen(USER_PIN), salt, kdf.opslimit,
                      (size_t)kdf.memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0)
        die("crypto_pwhash: out of memory");
    return (now() - t0) * 1e3;
}

/* ---- the reference column (this process, no module loaded) -------------- */

/* ---- secret keys: AES-256-GCM and HMAC-SHA256 on 4 KiB messages --------- */

#define SYM_MSG 4096
static unsigned char SYM_KEY[32], SYM_HKEY[32], SYM_DATA[SYM_MSG];

static void
sym_init(void)
{
    /* Fixed values: the module's results are compared with OpenSSL's. */
    for (int i = 0; i < 32; i++) {
        SYM_KEY[i] = (unsigned char)(i * 7 + 1);
        SYM_HKEY[i] = (unsigned char)(i * 11 + 3);
    }
    for (int i = 0; i < SYM_MSG; i++)
        SYM_DATA[i] = (unsigned char)(i * 31);
}

/* The 12-byte GCM IV of message I (never repeated within a run). */
static void
sym_iv(unsigned long i, unsigned char iv[12])
{
    memset(iv, 0, 12);
    for (int b = 0; b < 8; b++)
        iv[11 - b] = (unsigned char)(i >> (8 * b));
}

/* OpenSSL, the way an application keeps a keyed context: per message an
 * IV, the data, the tag (GCM); a restart, the data, the MAC (HMAC). OUT
 * gets message 0's result (ciphertext || tag, or the MAC). */
static void
sym_reference(unsigned char *gcm0, unsigned char *mac0)
{
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_CIPHER_CTX *cctx = EVP_CIPHER_CTX_new();
    EVP_MAC_CTX *mctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM prm[2] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                         OSSL_PARAM_construct_end()};
    static unsigned char out[SYM_MSG + 16];
    unsigned char iv[12], m[32];
    unsigned long n = 0;
    double t0, t, c0;
    size_t ml;
    int l;

    if (c == NULL || cctx == NULL || mctx == NULL ||
        EVP_EncryptInit_ex2(cctx, c, SYM_KEY, NULL, NULL) != 1 ||
        EVP_MAC_init(mctx, SYM_HKEY, sizeof(SYM_HKEY), prm) != 1)
        die("OpenSSL: no AES-256-GCM or HMAC");
    t0 = now();
    c0 = thread_cpu();
    do {
        sym_iv(n, iv);
        if (EVP_EncryptInit_ex2(cctx, NULL, NULL, iv, NULL) != 1 ||
            EVP_EncryptUpdate(cctx, out, &l, SYM_DATA, SYM_MSG) != 1 ||
            EVP_EncryptFinal_ex(cctx, out + l, &l) != 1 ||
            EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_AEAD_GET_TAG, 16, out + SYM_MSG) != 1)
            die("OpenSSL GCM failed");
        if (n == 0)
            memcpy(gcm0, out, SYM_MSG + 16);
        n++;
    } while ((t = now() - t0) < O.seconds);
    report_val("sym.gcm", (double)n * SYM_MSG / t / 1e6);
    report_val("sym.gcmcpu", (double)n * SYM_MSG / (thread_cpu() - c0) / 1e6);
    n = 0;
    t0 = now();
    c0 = thread_cpu();
    do {
        if (EVP_MAC_init(mctx, NULL, 0, NULL) != 1 ||
            EVP_MAC_update(mctx, SYM_DATA, SYM_MSG) != 1 ||
            EVP_MAC_final(mctx, m, &ml, sizeof(m)) != 1)
            die("OpenSSL HMAC failed");
        if (n == 0)
            memcpy(mac0, m, 32);
        n++;
    } while ((t = now() - t0) < O.seconds);
    report_val("sym.hmac", (double)n * SYM_MSG / t / 1e6);
    report_val("sym.hmaccpu", (double)n * SYM_MSG / (thread_cpu() - c0) / 1e6);
    EVP_MAC_CTX_free(mctx);
    EVP_MAC_free(mac);
    EVP_CIPHER_CTX_free(cctx);
    EVP_CIPHER_free(c);
}

static void
bench_reference(void)
{
    EVP_PKEY *keys[KT_COUNT];
    double v[64];
    char key[48];
    int reps = O.reps > 64 ? 64 : O.reps;

    cur_src = src_ref();
    cur_name = "OpenSSL";
    fprintf(stderr, "p11bench: reference (OpenSSL %s, libsodium %s)\n",
            OpenSSL_version(OPENSSL_VERSION_STRING), sodium_version_string());

    for (int i = 0; i < reps; i++)
        v[i] = argon2id_ms();
    report_val("kdf", median(v, reps));

    for (int kt = 0; kt < KT_COUNT; kt++) {
        double total = 0;
        int n = 0, max = kt == KT_RSA ? 20 : 200;
        keys[kt] = NULL;
        for (;;) {
            double t0 = now();
            EVP_PKEY *pk = ossl_keygen((enum keytype)kt);
            if (pk == NULL)
                die("OpenSSL cannot generate %s keys", kt_name[kt]);
            total += now() - t0;
            n++;
            EVP_PKEY_free(keys[kt]);
            keys[kt] = pk;
            if (total >= O.seconds || n >= max)
                break;
        }
        snprintf(key, sizeof(key), "keygen.%s", kt_key[kt]);
        report_val(key, total * 1e3 / n);
    }
    for (int a = 0; a < A_COUNT; a++) {
        struct signer sg;
        if (!mech_on((enum alg)a))
            continue;
        memset(&sg, 0, sizeof(sg));
        sg.priv = sg.pub = keys[MECHS[a].kt];
        bench_mech(&sg, &MECHS[a]);
    }
    for (int kt = 0; kt < KT_COUNT; kt++)
        EVP_PKEY_free(keys[kt]);
    if (!O.objects_only) {
        static unsigned char gcm0[SYM_MSG + 16], mac0[32];
        sym_init();
        sym_reference(gcm0, mac0);
    }
}

/* ---- one module (in its own process) ------------------------------------ */

struct blob {
    unsigned char *p;
    CK_ULONG n;
};

static struct {
    const struct modspec *spec;
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    char dir[PATH_MAX];
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE s0; /* R/W, the user logged in */
    CK_OBJECT_HANDLE target;
    struct blob cert, subject, issuer, serial;
    unsigned long nobjs; /* certificates created so far (besides the target) */
} M;

#define CK_SETUP(expr)                                                                             \
    do {                                                                                           \
        CK_RV rv_ = (expr);                                                                        \
        if (rv_ != CKR_OK)                                                                         \
            die("%s: %s returned %s", M.spec->name, #expr, rvname(rv_));                           \
    } while (0)

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void
remove_dir(void)
{
    if (M.dir[0] != '\0' && getenv("P11BENCH_KEEP") == NULL)
        nftw(M.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory; both modules' variables point into it. */
static void
module_env(void)
{
    const char *tmp = getenv("TMPDIR");
    char path[PATH_MAX + 32];
    FILE *fp;

    snprintf(M.dir, sizeof(M.dir), "%s/p11bench.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(M.dir) == NULL)
        die("mkdtemp %s: %s", M.dir, strerror(errno));
    atexit(remove_dir);
    snprintf(path, sizeof(path), "%s/tokens", M.dir);
    if (mkdir(path, 0700) != 0)
        die("mkdir %s: %s", path, strerror(errno));
    setenv("EVERTOKEN_DIR", path, 1);
    unsetenv("EVERTOKEN_CONF");
    snprintf(path, sizeof(path), "%s/softhsm2.conf", M.dir);
    fp = fopen(path, "w");
    if (fp == NULL)
        die("fopen %s: %s", path, strerror(errno));
    fprintf(fp,
            "directories.tokendir = %s/tokens\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n",
            M.dir);
    fclose(fp);
    setenv("SOFTHSM2_CONF", path, 1);
}

static CK_FUNCTION_LIST_PTR
load_module(const char *path, void **dl)
{
    CK_C_GetFunctionList gfl;
    CK_FUNCTION_LIST_PTR f = NULL;

    *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (*dl == NULL)
        die("dlopen %s: %s", path, dlerror());
    *(void **)&gfl = dlsym(*dl, "C_GetFunctionList");
    if (gfl == NULL || gfl(&f) != CKR_OK || f == NULL)
        die("%s: no usable C_GetFunctionList", path);
    return f;
}

static CK_RV
initialize(CK_FUNCTION_LIST_PTR f)
{
    CK_C_INITIALIZE_ARGS args;

    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK; /* threads sign concurrently */
    return f->C_Initialize(&args);
}

static int
padded_eq(const CK_UTF8CHAR *field, size_t len, const char *s)
{
    size_t n = strlen(s);

    if (n > len || memcmp(field, s, n) != 0)
        return 0;
    for (size_t i = n; i < len; i++)
        if (field[i] != ' ')
            return 0;
    return 1;
}

/* Length of a blank-padded PKCS#11 string field without the padding. */
static size_t
padded_len(const CK_UTF8CHAR *field, size_t len)
{
    while (len > 0 && field[len - 1] == ' ')
        len--;
    return len;
}

/* The slot whose token is (not) initialised, with LABEL when initialised. */
static int
find_slot(int initialized, const char *label, CK_SLOT_ID *out)
{
    CK_ULONG n = 0;
    CK_SLOT_ID *list;
    CK_TOKEN_INFO ti;
    int found = 0;

    CK_SETUP(M.f->C_GetSlotList(CK_TRUE, NULL, &n));
    list = xmalloc((n + 1) * sizeof(*list));
    CK_SETUP(M.f->C_GetSlotList(CK_TRUE, list, &n));
    for (CK_ULONG i = 0; i < n && !found; i++) {
        if (M.f->C_GetTokenInfo(list[i], &ti) != CKR_OK)
            continue;
        if (!initialized && !(ti.flags & CKF_TOKEN_INITIALIZED))
            found = 1;
        if (initialized && (ti.flags & CKF_TOKEN_INITIALIZED) && padded_eq(ti.label, 32, label))
            found = 1;
        if (found)
            *out = list[i];
    }
    free(list);
    return found;
}

static void
create_token(void)
{
    CK_UTF8CHAR label[32];
    CK_SLOT_ID free_slot;
    CK_SESSION_HANDLE h;

    if (!find_slot(0, NULL, &free_slot))
        die("%s: no slot with an uninitialised token", M.spec->name);
    memset(label, ' ', sizeof(label));
    memcpy(label, TOKEN_LABEL, strlen(TOKEN_LABEL));
    CK_SETUP(M.f->C_InitToken(free_slot, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN), label));
    /* SoftHSMv2 moves an initialised token to a new slot: find it by label. */
    if (!find_slot(1, TOKEN_LABEL, &M.slot))
        die("%s: token %s not found after C_InitToken", M.spec->name, TOKEN_LABEL);
    CK_SETUP(M.f->C_OpenSession(M.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h));
    CK_SETUP(M.f->C_Login(h, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    CK_SETUP(M.f->C_InitPIN(h, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    CK_SETUP(M.f->C_Logout(h));
    M.s0 = h;
}

static void
blob_i2d_x509(struct blob *b, X509 *x)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);

    if (n <= 0)
        die("i2d_X509 failed");
    b->p = xmalloc((size_t)n);
    memcpy(b->p, der, (size_t)n);
    b->n = (CK_ULONG)n;
    OPENSSL_free(der);
}

static void
blob_i2d_name(struct blob *b, const X509_NAME *nm)
{
    unsigned char *der = NULL;
    int n = i2d_X509_NAME(nm, &der);

    if (n <= 0)
        die("i2d_X509_NAME failed");
    b->p = xmalloc((size_t)n);
    memcpy(b->p, der, (size_t)n);
    b->n = (CK_ULONG)n;
    OPENSSL_free(der);
}

/* One self-signed P-256 certificate that every populated object carries
 * (with its own CKA_ID and CKA_LABEL). */
static void
make_cert(void)
{
    EVP_PKEY *k = ossl_keygen(KT_EC);
    X509 *x = X509_new();
    X509_NAME *nm = X509_NAME_new();
    unsigned char *der = NULL;
    int n;

    if (k == NULL || x == NULL || nm == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
        ASN1_INTEGER_set(X509_get_serialNumber(x), 0x11be) != 1 ||
        X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"p11bench", -1,
                                   -1, 0) != 1 ||
        X509_set_subject_name(x, nm) != 1 || X509_set_issuer_name(x, nm) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(x), 0) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600) == NULL ||
        X509_set_pubkey(x, k) != 1 || X509_sign(x, k, EVP_sha256()) <= 0)
        die("cannot make the test certificate");
    blob_i2d_x509(&M.cert, x);
    blob_i2d_name(&M.subject, X509_get_subject_name(x));
    blob_i2d_name(&M.issuer, X509_get_issuer_name(x));
    n = i2d_ASN1_INTEGER(X509_get_serialNumber(x), &der);
    if (n <= 0)
        die("i2d_ASN1_INTEGER failed");
    M.serial.p = xmalloc((size_t)n);
    memcpy(M.serial.p, der, (size_t)n);
    M.serial.n = (CK_ULONG)n;
    OPENSSL_free(der);
    X509_NAME_free(nm);
    X509_free(x);
    EVP_PKEY_free(k);
}

static CK_RV
create_cert(const char *id, const char *label, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &no, sizeof(no)},
        {CKA_ID, (void *)id, strlen(id)},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_SUBJECT, M.subject.p, M.subject.n},
        {CKA_ISSUER, M.issuer.p, M.issuer.n},
        {CKA_SERIAL_NUMBER, M.serial.p, M.serial.n},
        {CKA_VALUE, M.cert.p, M.cert.n},
    };

    return M.f->C_CreateObject(M.s0, t, sizeof(t) / sizeof(t[0]), out);
}

/* ---- module keys -------------------------------------------------------- */

static const unsigned char OID_P256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char OID_ED25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
/* PKCS#11 3.0 also names the curve by a PrintableString. */
static const unsigned char STR_ED25519[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
                                            'd',  's',  '2', '5', '5', '1', '9'};

struct modkey {
    CK_OBJECT_HANDLE pub, priv;
    EVP_PKEY *pk; /* public key read back from the token */
    int ok;
};

static int ed_params_str; /* the module wants the PrintableString form */

static void
ec_params_of(enum keytype kt, CK_ATTRIBUTE *a)
{
    a->type = CKA_EC_PARAMS;
    if (kt == KT_EC) {
        a->pValue = (void *)OID_P256;
        a->ulValueLen = sizeof(OID_P256);
    } else if (ed_params_str) {
        a->pValue = (void *)STR_ED25519;
        a->ulValueLen = sizeof(STR_ED25519);
    } else {
        a->pValue = (void *)OID_ED25519;
        a->ulValueLen = sizeof(OID_ED25519);
    }
}

static CK_RV
mod_generate(enum keytype kt, const char *id, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
    CK_BBOOL yes = CK_TRUE;
    CK_ULONG bits = 2048;
    static const unsigned char e65537[] = {0x01, 0x00, 0x01};
    CK_ATTRIBUTE pt[6] = {
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_ID, (void *)id, strlen(id)},
        {CKA_LABEL, (void *)id, strlen(id)},
    };
    CK_ATTRIBUTE vt[] = {
        {CKA_TOKEN, &yes, sizeof(yes)},     {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)}, {CKA_SIGN, &yes, sizeof(yes)},
        {CKA_ID, (void *)id, strlen(id)},   {CKA_LABEL, (void *)id, strlen(id)},
    };
    CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG npt = 4;
    CK_RV rv;

    if (kt == KT_RSA) {
        pt[npt++] = (CK_ATTRIBUTE){CKA_MODULUS_BITS, &bits, sizeof(bits)};
        pt[npt++] = (CK_ATTRIBUTE){CKA_PUBLIC_EXPONENT, (void *)e65537, sizeof(e65537)};
    } else {
        mech.mechanism = kt == KT_EC ? CKM_EC_KEY_PAIR_GEN : CKM_EC_EDWARDS_KEY_PAIR_GEN;
        ec_params_of(kt, &pt[npt++]);
    }
    rv = M.f->C_GenerateKeyPair(M.s0, &mech, pt, npt, vt, sizeof(vt) / sizeof(vt[0]), pub, priv);
    if (kt == KT_ED && !ed_params_str &&
        (rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_CURVE_NOT_SUPPORTED ||
         rv == CKR_TEMPLATE_INCONSISTENT || rv == CKR_DOMAIN_PARAMS_INVALID)) {
        ed_params_str = 1;
        rv = mod_generate(kt, id, pub, priv);
        if (rv != CKR_OK)
            ed_params_str = 0;
    }
    return rv;
}

static struct blob
bn_blob(EVP_PKEY *pk, const char *param, int pad)
{
    BIGNUM *bn = NULL;
    struct blob b;
    int n;

    if (EVP_PKEY_get_bn_param(pk, param, &bn) != 1)
        die("EVP_PKEY_get_bn_param %s failed", param);
    n = pad ? pad : BN_num_bytes(bn);
    b.p = xmalloc((size_t)n);
    if (BN_bn2binpad(bn, b.p, n) != n)
        die("BN_bn2binpad failed");
    b.n = (CK_ULONG)n;
    BN_clear_free(bn);
    return b;
}

/* Import an OpenSSL key as a token key pair (when the module cannot
 * generate one, signing can still be measured). */
static CK_RV
mod_import(enum keytype kt, EVP_PKEY *k, const char *id, CK_OBJECT_HANDLE *pub,
           CK_OBJECT_HANDLE *priv)
{
    CK_OBJECT_CLASS cpub = CKO_PUBLIC_KEY, cpriv = CKO_PRIVATE_KEY;
    CK_KEY_TYPE type = kt == KT_RSA ? CKK_RSA : kt == KT_EC ? CKK_EC : CKK_EC_EDWARDS;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE pt[8] = {
        {CKA_CLASS, &cpub, sizeof(cpub)}, {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_TOKEN, &yes, sizeof(yes)},   {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_ID, (void *)id, strlen(id)},
    };
    CK_ATTRIBUTE vt[16] = {
        {CKA_CLASS, &cpriv, sizeof(cpriv)}, {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_TOKEN, &yes, sizeof(yes)},     {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)}, {CKA_SIGN, &yes, sizeof(yes)},
        {CKA_ID, (void *)id, strlen(id)},
    };
    CK_ULONG np = 5, nv = 7;
    struct blob b[10];
    int nb = 0;
    unsigned char point[2 + 133], raw[64];
    size_t rl = 0;
    CK_RV rv;

    memset(b, 0, sizeof(b));
    if (kt == KT_RSA) {
        static const char *const pp[] = {
            OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
            OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
            OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
            OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
        static const CK_ATTRIBUTE_TYPE at[] = {
            CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT, CKA_PRIME_1,
            CKA_PRIME_2, CKA_EXPONENT_1,      CKA_EXPONENT_2,       CKA_COEFFICIENT};
        for (int i = 0; i < 8; i++) {
            b[nb] = bn_blob(k, pp[i], 0);
            vt[nv++] = (CK_ATTRIBUTE){at[i], b[nb].p, b[nb].n};
            if (i < 2)
                pt[np++] = (CK_ATTRIBUTE){at[i], b[nb].p, b[nb].n};
            nb++;
        }
    } else {
        ec_params_of(kt, &pt[np++]);
        ec_params_of(kt, &vt[nv++]);
        if (kt == KT_EC) {
            if (EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, point + 2,
                                                sizeof(point) - 2, &rl) != 1 ||
                rl != 65)
                die("cannot read the P-256 public point");
            b[nb] = bn_blob(k, OSSL_PKEY_PARAM_PRIV_KEY, 32);
            vt[nv++] = (CK_ATTRIBUTE){CKA_VALUE, b[nb].p, b[nb].n};
            nb++;
        } else {
            rl = 32;
            if (EVP_PKEY_get_raw_public_key(k, point + 2, &rl) != 1 || rl != 32)
                die("cannot read the Ed25519 public key");
            rl = 32;
            if (EVP_PKEY_get_raw_private_key(k, raw, &rl) != 1 || rl != 32)
                die("cannot read the Ed25519 private key");
            vt[nv++] = (CK_ATTRIBUTE){CKA_VALUE, raw, 32};
            rl = 32;
        }
        point[0] = 0x04; /* DER OCTET STRING */
        point[1] = (unsigned char)rl;
        pt[np++] = (CK_ATTRIBUTE){CKA_EC_POINT, point, rl + 2};
    }
    rv = M.f->C_CreateObject(M.s0, pt, np, pub);
    if (rv == CKR_OK) {
        rv = M.f->C_CreateObject(M.s0, vt, nv, priv);
        if (rv != CKR_OK)
            M.f->C_DestroyObject(M.s0, *pub);
    }
    for (int i = 0; i < nb; i++) {
        OPENSSL_cleanse(b[i].p, b[i].n);
        free(b[i].p);
    }
    OPENSSL_cleanse(raw, sizeof(raw));
    return rv;
}

static CK_RV
get_attr(CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, struct blob *out)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv = M.f->C_GetAttributeValue(M.s0, o, &a, 1);

    out->p = NULL;
    out->n = 0;
    if (rv != CKR_OK)
        return rv;
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
        return CKR_ATTRIBUTE_TYPE_INVALID;
    a.pValue = out->p = xmalloc(a.ulValueLen);
    rv = M.f->C_GetAttributeValue(M.s0, o, &a, 1);
    if (rv != CKR_OK) {
        free(out->p);
        out->p = NULL;
        return rv;
    }
    out->n = a.ulValueLen;
    return CKR_OK;
}

/* CKA_EC_POINT: a DER OCTET STRING of the point, or (some modules) the bare
 * point; RAWLEN is the bare length (65 for P-256, 32 for Ed25519). */
static const unsigned char *
ec_point_bytes(const struct blob *b, size_t rawlen)
{
    if (b->n == rawlen)
        return b->p;
    if (b->n == rawlen + 2 && b->p[0] == 0x04 && b->p[1] == rawlen)
        return b->p + 2;
    return NULL;
}

/* The public key of PUB as the token reports it, as an OpenSSL key; NULL
 * with an error reported under KEY. */
static EVP_PKEY *
read_public(enum keytype kt, CK_OBJECT_HANDLE pub, const char *key)
{
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    struct blob a = {0}, b = {0}, spki = {0};
    CK_RV rv;

    if (kt == KT_RSA) {
        rv = get_attr(pub, CKA_MODULUS, &a);
        if (rv == CKR_OK)
            rv = get_attr(pub, CKA_PUBLIC_EXPONENT, &b);
        if (rv == CKR_OK) {
            OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
            BIGNUM *n = BN_bin2bn(a.p, (int)a.n, NULL), *e = BN_bin2bn(b.p, (int)b.n, NULL);
            OSSL_PARAM *params = NULL;
            if (bld && n && e && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) == 1 &&
                OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) == 1)
                params = OSSL_PARAM_BLD_to_param(bld);
            ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
            if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1)
                EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params);
            OSSL_PARAM_free(params);
            OSSL_PARAM_BLD_free(bld);
            BN_free(n);
            BN_free(e);
        }
    } else {
        rv = get_attr(pub, CKA_EC_PARAMS, &a);
        if (rv == CKR_OK)
            rv = get_attr(pub, CKA_EC_POINT, &b);
        if (rv == CKR_OK && kt == KT_EC) {
            const unsigned char *pt = ec_point_bytes(&b, 65);
            OSSL_PARAM params[] = {
                OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
                OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, 65),
                OSSL_PARAM_END,
            };
            if (a.n != sizeof(OID_P256) || memcmp(a.p, OID_P256, a.n) != 0 || pt == NULL) {
                report_err(key, "failed: CKA_EC_PARAMS/CKA_EC_POINT not a P-256 public key");
                goto out;
            }
            ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
            if (ctx && EVP_PKEY_fromdata_init(ctx) == 1)
                EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params);
        } else if (rv == CKR_OK) {
            const unsigned char *pt = ec_point_bytes(&b, 32);
            if (pt == NULL) {
                report_err(key, "failed: CKA_EC_POINT is not an Ed25519 public key");
                goto out;
            }
            pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pt, 32);
        }
    }
    if (rv != CKR_OK) {
        report_err(key, "failed: public key not readable: %s (C_GetAttributeValue)", rvname(rv));
        goto out;
    }
    if (pk == NULL) {
        report_err(key, "failed: OpenSSL rejects the token's public key");
        goto out;
    }
    /* When the module has CKA_PUBLIC_KEY_INFO it must be the same key. */
    if (get_attr(pub, CKA_PUBLIC_KEY_INFO, &spki) == CKR_OK && spki.n > 0) {
        const unsigned char *p = spki.p;
        EVP_PKEY *other = d2i_PUBKEY(NULL, &p, (long)spki.n);
        int same = other != NULL && EVP_PKEY_eq(pk, other) == 1;
        EVP_PKEY_free(other);
        if (!same)
            verify_failed("%s: %s: CKA_PUBLIC_KEY_INFO is not the key of the other attributes",
                          cur_name, kt_name[kt]);
    }
out:
    EVP_PKEY_CTX_free(ctx);
    free(a.p);
    free(b.p);
    free(spki.p);
    return pk;
}

/* Key generation timing, then the key pair the signature runs use (the last
 * generated one, or an imported OpenSSL key if the module cannot generate). */
static void
module_key(enum keytype kt, struct modkey *k)
{
    char key[48], id[32];
    double total = 0;
    int n = 0, max = kt == KT_RSA ? 20 : 200;
    CK_RV rv = CKR_OK;

    memset(k, 0, sizeof(*k));
    snprintf(key, sizeof(key), "keygen.%s", kt_key[kt]);
    snprintf(id, sizeof(id), "p11bench-%s", kt_key[kt]);
    for (;;) {
        double t0 = now();
        rv = mod_generate(kt, id, &k->pub, &k->priv);
        if (rv != CKR_OK)
            break;
        total += now() - t0;
        n++;
        if (total >= O.seconds || n >= max)
            break;
        CK_SETUP(M.f->C_DestroyObject(M.s0, k->pub));
        CK_SETUP(M.f->C_DestroyObject(M.s0, k->priv));
    }
    if (n > 0) {
        report_val(key, total * 1e3 / n);
    } else {
        EVP_PKEY *ok = ossl_keygen(kt);
        CK_RV irv;
        if (ok == NULL)
            die("OpenSSL cannot generate %s keys", kt_name[kt]);
        irv = mod_import(kt, ok, id, &k->pub, &k->priv);
        EVP_PKEY_free(ok);
        report_err(key, "%s: %s (C_GenerateKeyPair); %s",
                   rv == CKR_MECHANISM_INVALID ? "unsupported" : "failed", rvname(rv),
                   irv == CKR_OK ? "signing key imported with C_CreateObject"
                                 : "key import failed too");
        if (irv != CKR_OK) {
            for (int a = 0; a < A_COUNT; a++)
                if (MECHS[a].kt == kt)
                    report_mech_err(&MECHS[a], "failed: no %s key (C_CreateObject: %s)",
                                    kt_name[kt], rvname(irv));
            return;
        }
    }
    k->pk = read_public(kt, k->pub, key);
    k->ok = k->pk != NULL;
    if (!k->ok)
        for (int a = 0; a < A_COUNT; a++)
            if (MECHS[a].kt == kt)
                report_mech_err(&MECHS[a], "failed: no public key to verify with");
}

/* ---- object measurements -------------------------------------------------- */

static double
budget(void)
{
    return O.seconds < 0.5 ? O.seconds : 0.5;
}

/* Microseconds per C_FindObjectsInit/C_FindObjects/C_FindObjectsFinal with
 * template T, which must find exactly one object; -1 with the error
 * reported under KEY. */
static double
time_find(CK_ATTRIBUTE *t, CK_ULONG nt, const char *key)
{
    unsigned long ops = 0;
    double t0 = now(), el;

    do {
        CK_OBJECT_HANDLE h[4];
        CK_ULONG got = 0;
        CK_RV rv = M.f->C_FindObjectsInit(M.s0, t, nt);
        if (rv == CKR_OK) {
            rv = M.f->C_FindObjects(M.s0, h, 4, &got);
            CK_RV rv2 = M.f->C_FindObjectsFinal(M.s0);
            if (rv == CKR_OK)
                rv = rv2;
        }
        if (rv != CKR_OK) {
            report_err(key, "failed: %s (C_FindObjects*)", rvname(rv));
            return -1;
        }
        if (got != 1 || h[0] != M.target) {
            report_err(key, "failed: found %lu objects, not the one expected", (unsigned long)got);
            return -1;
        }
        ops++;
        el = now() - t0;
    } while (el < budget());
    return el * 1e6 / (double)ops;
}

/* Microseconds per call of a cheap function, over the budget. */
static double
time_cheap(int getattr, const char *key)
{
    unsigned long ops = 0;
    double t0 = now(), el;

    do {
        CK_RV rv;
        for (int i = 0; i < 100; i++) {
            if (getattr) {
                CK_OBJECT_CLASS c = 0;
                CK_ATTRIBUTE a = {CKA_CLASS, &c, sizeof(c)};
                rv = M.f->C_GetAttributeValue(M.s0, M.target, &a, 1);
                if (rv == CKR_OK && c != CKO_CERTIFICATE)
                    rv = CKR_GENERAL_ERROR;
            } else {
                CK_SESSION_INFO si;
                rv = M.f->C_GetSessionInfo(M.s0, &si);
            }
            if (rv != CKR_OK) {
                report_err(key, "failed: %s", rvname(rv));
                return -1;
            }
        }
        ops += 100;
        el = now() - t0;
    } while (el < budget());
    return el * 1e6 / (double)ops;
}

/* C_Initialize to first session (and to the first C_FindObjects answer) in
 * a fresh process: this program again, with --child-init. */
static int
spawn_child(char *const argv[], char *buf, size_t bufsz)
{
    posix_spawn_file_actions_t fa;
    int fds[2], status = 0;
    size_t len = 0;
    ssize_t r;
    pid_t pid;

    if (pipe(fds) != 0)
        die("pipe: %s", strerror(errno));
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    if (posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ) != 0)
        die("posix_spawn: %s", strerror(errno));
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    while (len < bufsz - 1 && (r = read(fds[0], buf + len, bufsz - 1 - len)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    close(fds[0]);
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int
spawn_init(double *init_ms, double *find_ms, char *err, size_t errlen)
{
    char buf[256];
    char *argv[] = {(char *)"p11bench",  (char *)"--child-init", (char *)M.spec->path,
                    (char *)TOKEN_LABEL, (char *)TARGET_ID,      NULL};

    if (spawn_child(argv, buf, sizeof(buf)) != 0 ||
        sscanf(buf, "ok %lf %lf", init_ms, find_ms) != 2) {
        buf[strcspn(buf, "\n")] = '\0';
        snprintf(err, errlen, "failed: %.120s", buf[0] ? buf : "child process died");
        return -1;
    }
    return 0;
}

/* Milliseconds of the first find by CKA_ID after another process (this
 * program again, --child-write) created one object in the token: what a
 * long-running application pays to see another's write. */
static int
refind_after_write(double *ms, char *err, size_t errlen)
{
    static unsigned seq;
    char buf[256], tag[32];
    char *argv[] = {(char *)"p11bench",
                    (char *)"--child-write",
                    (char *)M.spec->path,
                    (char *)TOKEN_LABEL,
                    tag,
                    NULL};
    CK_ATTRIBUTE by_id = {CKA_ID, (void *)TARGET_ID, strlen(TARGET_ID)};
    CK_OBJECT_HANDLE h[2];
    CK_ULONG got = 0;
    double t0;
    CK_RV rv;

    snprintf(tag, sizeof(tag), "p11bench-write-%u", seq++);
    if (spawn_child(argv, buf, sizeof(buf)) != 0 || strncmp(buf, "ok", 2) != 0) {
        buf[strcspn(buf, "\n")] = '\0';
        snprintf(err, errlen, "failed: %.120s", buf[0] ? buf : "child process died");
        return -1;
    }
    t0 = now();
    rv = M.f->C_FindObjectsInit(M.s0, &by_id, 1);
    if (rv == CKR_OK) {
        rv = M.f->C_FindObjects(M.s0, h, 2, &got);
        M.f->C_FindObjectsFinal(M.s0);
    }
    *ms = (now() - t0) * 1e3;
    if (rv != CKR_OK || got != 1 || h[0] != M.target) {
        snprintf(err, errlen, "failed: %s, found %lu objects", rvname(rv), (unsigned long)got);
        return -1;
    }
    M.nobjs++;
    return 0;
}

/* The largest token size measured for module NAME (--max-objects). */
static unsigned long
max_objects(const char *name)
{
    size_t nl = strlen(name);

    for (int i = 0; i < O.nmaxobj; i++)
        if (strncmp(O.maxobj[i], name, nl) == 0 && O.maxobj[i][nl] == ':')
            return strtoul(O.maxobj[i] + nl + 1, NULL, 10);
    return ULONG_MAX;
}

static void
objects_at(unsigned long n)
{
    char key[48], k2[48];
    CK_ATTRIBUTE by_id = {CKA_ID, (void *)TARGET_ID, strlen(TARGET_ID)};
    CK_ATTRIBUTE by_label = {CKA_LABEL, (void *)TARGET_LBL, strlen(TARGET_LBL)};
    double si, ga, v[64], w[64];
    int reps = O.reps > 64 ? 64 : O.reps, got = 0;
    char err[160] = "";

    if (n > max_objects(M.spec->name)) {
        static const char *const what[] = {"create", "init",     "initfind", "findid", "findlabel",
                                           "refind", "sessinfo", "getattr",  "check"};
        for (size_t i = 0; i < sizeof(what) / sizeof(what[0]); i++) {
            snprintf(key, sizeof(key), "%s@%lu", what[i], n);
            if (row_find(key) != NULL)
                report_err(key, "skipped: --max-objects %s:%lu", M.spec->name,
                           max_objects(M.spec->name));
        }
        return;
    }

    /* Populate up to N, batched in one session. */
    if (n > M.nobjs) {
        unsigned long from = M.nobjs;
        double t0 = now();
        snprintf(key, sizeof(key), "create@%lu", n);
        for (unsigned long i = from; i < n; i++) {
            char id[32], label[40];
            CK_OBJECT_HANDLE h;
            CK_RV rv;
            snprintf(id, sizeof(id), "p11bench-%08lu", i);
            snprintf(label, sizeof(label), "p11bench cert %08lu", i);
            rv = create_cert(id, label, &h);
            if (rv != CKR_OK) {
                report_err(key, "failed: %s (C_CreateObject) at object %lu", rvname(rv), i);
                die("%s: cannot populate the token", M.spec->name);
            }
            M.nobjs++;
            if ((i + 1) % 10000 == 0)
                fprintf(stderr, "  [%s] %lu objects (%.0f/s)\n", cur_name, i + 1,
                        (double)(i + 1 - from) / (now() - t0));
        }
        report_val(key, (double)(n - from) / (now() - t0));
    }

    snprintf(key, sizeof(key), "findid@%lu", n);
    if ((v[0] = time_find(&by_id, 1, key)) >= 0)
        report_val(key, v[0]);
    snprintf(key, sizeof(key), "findlabel@%lu", n);
    if ((v[0] = time_find(&by_label, 1, key)) >= 0)
        report_val(key, v[0]);

    snprintf(key, sizeof(key), "sessinfo@%lu", n);
    si = time_cheap(0, key);
    if (si >= 0)
        report_val(key, si);
    snprintf(key, sizeof(key), "getattr@%lu", n);
    ga = time_cheap(1, key);
    if (ga >= 0)
        report_val(key, ga);
    snprintf(key, sizeof(key), "check@%lu", n);
    if (si >= 0 && ga >= 0)
        report_val(key, ga - si);
    else
        report_err(key, "failed: see the two rows above");

    snprintf(key, sizeof(key), "refind@%lu", n);
    for (got = 0; got < reps; got++)
        if (refind_after_write(&v[got], err, sizeof(err)) != 0)
            break;
    if (got == reps)
        report_val(key, median(v, got));
    else
        report_err(key, "%s", err);

    got = 0;
    snprintf(key, sizeof(key), "init@%lu", n);
    snprintf(k2, sizeof(k2), "initfind@%lu", n);
    for (int i = 0; i < reps; i++) {
        if (spawn_init(&v[got], &w[got], err, sizeof(err)) != 0)
            break;
        got++;
    }
    if (got == reps) {
        report_val(key, median(v, got));
        report_val(k2, median(w, got));
    } else {
        report_err(key, "%s", err);
        report_err(k2, "%s", err);
    }
}

/* ---- two tokens: sign on one while the other is written ------------------ */

#define WRITE_LABEL "p11bench-written"

/* A second token WRITE_LABEL with a user session logged in (*S). */
static CK_SLOT_ID
second_token(CK_SESSION_HANDLE *s)
{
    CK_UTF8CHAR label[32];
    CK_SLOT_ID free_slot, slot;

    if (!find_slot(0, NULL, &free_slot))
        die("%s: no slot for a second token", M.spec->name);
    memset(label, ' ', sizeof(label));
    memcpy(label, WRITE_LABEL, strlen(WRITE_LABEL));
    CK_SETUP(M.f->C_InitToken(free_slot, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN), label));
    if (!find_slot(1, WRITE_LABEL, &slot))
        die("%s: token %s not found after C_InitToken", M.spec->name, WRITE_LABEL);
    CK_SETUP(M.f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, s));
    CK_SETUP(M.f->C_Login(*s, CKU_SO, (CK_UTF8CHAR_PTR)SO_PIN, strlen(SO_PIN)));
    CK_SETUP(M.f->C_InitPIN(*s, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    CK_SETUP(M.f->C_Logout(*s));
    CK_SETUP(M.f->C_Login(*s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    return slot;
}

struct writer {
    CK_SESSION_HANDLE s;
    volatile int stop;
    unsigned long writes; /* C_CreateObject + C_DestroyObject pairs */
    CK_RV rv;
};

/* Create a token data object and destroy it again, until told to stop:
 * each pair is two write transactions (the destruction with a full fsync). */
static void *
writer_main(void *arg)
{
    struct writer *w = arg;
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    unsigned char val[64] = {0};
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                        {CKA_TOKEN, &yes, sizeof(yes)},
                        {CKA_PRIVATE, &no, sizeof(no)},
                        {CKA_LABEL, (void *)"p11bench write", 14},
                        {CKA_VALUE, val, sizeof(val)}};
    CK_OBJECT_HANDLE h;

    while (!w->stop) {
        memcpy(val, &w->writes, sizeof(w->writes));
        w->rv = M.f->C_CreateObject(w->s, t, 5, &h);
        if (w->rv == CKR_OK)
            w->rv = M.f->C_DestroyObject(w->s, h);
        if (w->rv != CKR_OK)
            break;
        w->writes++;
    }
    return NULL;
}

/* Sign throughput on the benchmark token, 1 thread, idle and while another
 * token of the same module is written in a loop by a second thread: ROUNDS
 * pairs back to back; the rows are medians, the ratio the median of each
 * round's own busy/idle ratio (docs/performance.md). */
static void
bench_two_tokens(const struct signer *sg, const struct mechdef *md)
{
    double idle[MAX_ROUNDS], busy[MAX_ROUNDS], ratio[MAX_ROUNDS], wps[MAX_ROUNDS];
    double icpu[MAX_ROUNDS], bcpu[MAX_ROUNDS], rcpu[MAX_ROUNDS];
    struct writer w;
    pthread_t th;
    int nr = 0;

    memset(&w, 0, sizeof(w));
    (void)second_token(&w.s);
    for (int i = 0; i < O.rounds; i++) {
        double t0, a, b;

        a = throughput(sg, md, W_MOD_SIGN, 1, NULL, "twotok.idle", NULL, &icpu[nr]);
        if (a < 0)
            break;
        w.stop = 0;
        w.writes = 0;
        if (pthread_create(&th, NULL, writer_main, &w) != 0)
            die("pthread_create failed");
        t0 = now();
        b = throughput(sg, md, W_MOD_SIGN, 1, NULL, "twotok.busy", NULL, &bcpu[nr]);
        w.stop = 1;
        pthread_join(th, NULL);
        if (w.rv != CKR_OK) {
            report_err("twotok.writes", "failed: %s (writer)", rvname(w.rv));
            break;
        }
        if (b < 0)
            break;
        idle[nr] = a;
        busy[nr] = b;
        ratio[nr] = b / a;
        rcpu[nr] = bcpu[nr] / icpu[nr];
        wps[nr] = (double)w.writes / (now() - t0);
        nr++;
    }
    if (nr == O.rounds) {
        report_val("twotok.idle", median(idle, nr));
        report_val("twotok.busy", median(busy, nr));
        report_val("twotok.ratio", median(ratio, nr));
        report_val("twotok.idlecpu", median(icpu, nr));
        report_val("twotok.busycpu", median(bcpu, nr));
        report_val("twotok.ratiocpu", median(rcpu, nr));
        report_val("twotok.writes", median(wps, nr));
    } else {
        report_err("twotok.ratio", "failed: no paired run");
    }
    M.f->C_CloseSession(w.s);
}

static void sym_module(void);

static void
bench_module(int idx)
{
    struct modkey keys[KT_COUNT];
    CK_INFO info;
    CK_OBJECT_HANDLE h;
    double v[64], d[64];
    int reps = O.reps > 64 ? 64 : O.reps;
    char line[300];

    memset(&M, 0, sizeof(M));
    M.spec = &O.mods[idx];
    cur_src = idx;
    cur_name = M.spec->name;
    module_env();
    M.f = load_module(M.spec->path, &M.dl);
    CK_SETUP(initialize(M.f));
    if (M.f->C_GetInfo(&info) == CKR_OK) {
        snprintf(line, sizeof(line), "info\t%.*s, %.*s %u.%u\n",
                 (int)padded_len(info.manufacturerID, 32), info.manufacturerID,
                 (int)padded_len(info.libraryDescription, 32), info.libraryDescription,
                 info.libraryVersion.major, info.libraryVersion.minor);
        send_line(line);
    }
    fprintf(stderr, "p11bench: %s (%s), tokens in %s\n", M.spec->name, M.spec->path, M.dir);
    create_token();

    /* C_Login: user PIN, nobody logged in before; the median of REPS. For
     * evertoken each login follows a raw Argon2id at the token's cost, in
     * this process: the median difference is what the login adds to its KDF
     * (measured in pairs, so that load from elsewhere hits both alike). */
    for (int i = 0; i < reps; i++) {
        double t0;
        if (M.spec->kind == K_EVERTOKEN)
            d[i] = argon2id_ms();
        t0 = now();
        CK_SETUP(M.f->C_Login(M.s0, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
        v[i] = (now() - t0) * 1e3;
        d[i] = v[i] - d[i];
        if (i + 1 < reps)
            CK_SETUP(M.f->C_Logout(M.s0));
    }
    report_val("login", median(v, reps));
    if (M.spec->kind == K_EVERTOKEN)
        report_val("loginextra", median(d, reps));

    make_cert();
    CK_SETUP(create_cert(TARGET_ID, TARGET_LBL, &h));
    M.target = h;

    for (int kt = 0; kt < KT_COUNT; kt++)
        if (!O.objects_only)
            module_key((enum keytype)kt, &keys[kt]);
        else
            memset(&keys[kt], 0, sizeof(keys[kt]));
    for (int a = 0; a < A_COUNT && !O.objects_only; a++) {
        struct signer sg;
        struct modkey *k = &keys[MECHS[a].kt];
        if (!k->ok || !mech_on((enum alg)a))
            continue;
        memset(&sg, 0, sizeof(sg));
        sg.f = M.f;
        sg.slot = M.slot;
        sg.s0 = M.s0;
        sg.key = k->priv;
        sg.pubkey = k->pub;
        sg.pub = k->pk;
        bench_mech(&sg, &MECHS[a]);
    }
    if (!O.objects_only && keys[KT_EC].ok && mech_on(A_ECDSA)) {
        struct signer sg;

        memset(&sg, 0, sizeof(sg));
        sg.f = M.f;
        sg.slot = M.slot;
        sg.s0 = M.s0;
        sg.key = keys[KT_EC].priv;
        sg.pubkey = keys[KT_EC].pub;
        sg.pub = keys[KT_EC].pk;
        bench_two_tokens(&sg, &MECHS[A_ECDSA]);
    }
    for (int kt = 0; kt < KT_COUNT; kt++)
        EVP_PKEY_free(keys[kt].pk);
    if (!O.objects_only)
        sym_module();

    for (int i = 0; i < O.nobjects; i++)
        objects_at(O.objects[i]);

    snprintf(line, sizeof(line), "verified\t%lu\n", n_verified);
    send_line(line);
    M.f->C_CloseAllSessions(M.slot);
    M.f->C_Finalize(NULL);
    /* No dlclose: SoftHSMv2 and OpenSSL keep global state that does not
     * survive it in every version; the process ends here. */
}

/* The module's AES-256-GCM encryption and HMAC-SHA256 of 4 KiB messages
 * with session keys of the reference's values: C_xInit + C_x per message,
 * message 0 checked against OpenSSL's result. */
static void
sym_module(void)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE aes = CKK_AES, gen = CKK_GENERIC_SECRET;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_ATTRIBUTE at[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_KEY_TYPE, &aes, sizeof(aes)},
                         {CKA_TOKEN, &f, 1},
                         {CKA_VALUE, SYM_KEY, 32},
                         {CKA_ENCRYPT, &t, 1}};
    CK_ATTRIBUTE ht[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_KEY_TYPE, &gen, sizeof(gen)},
                         {CKA_TOKEN, &f, 1},
                         {CKA_VALUE, SYM_HKEY, 32},
                         {CKA_SIGN, &t, 1}};
    static unsigned char out[SYM_MSG + 16], gcm0[SYM_MSG + 16], mac0[32];
    unsigned char iv[12], m[32];
    CK_GCM_PARAMS g = {iv, 12, 96, NULL, 0, 128};
    CK_MECHANISM gm = {CKM_AES_GCM, &g, sizeof(g)}, hm = {CKM_SHA256_HMAC, NULL, 0};
    CK_OBJECT_HANDLE ka, kh;
    CK_ULONG len;
    unsigned long n = 0;
    double t0, el, c0;
    CK_RV rv;

    if (M.f->C_CreateObject(M.s0, at, 5, &ka) != CKR_OK ||
        M.f->C_CreateObject(M.s0, ht, 5, &kh) != CKR_OK) {
        report_err("sym.gcm", "failed: C_CreateObject of a secret key");
        report_err("sym.gcmcpu", "failed: C_CreateObject of a secret key");
        report_err("sym.hmac", "failed: C_CreateObject of a secret key");
        report_err("sym.hmaccpu", "failed: C_CreateObject of a secret key");
        return;
    }
    sym_init();
    {
        /* OpenSSL's message 0, for the check (not timed here). */
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int l;
        size_t ml = sizeof(mac0);
        sym_iv(0, iv);
        if (c == NULL || EVP_EncryptInit_ex2(c, EVP_aes_256_gcm(), SYM_KEY, iv, NULL) != 1 ||
            EVP_EncryptUpdate(c, gcm0, &l, SYM_DATA, SYM_MSG) != 1 ||
            EVP_EncryptFinal_ex(c, gcm0 + l, &l) != 1 ||
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, gcm0 + SYM_MSG) != 1 ||
            EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, SYM_HKEY, 32, SYM_DATA, SYM_MSG, mac0,
                      sizeof(mac0), &ml) == NULL)
            die("OpenSSL reference for the secret-key rows failed");
        EVP_CIPHER_CTX_free(c);
    }
    t0 = now();
    c0 = thread_cpu();
    do {
        sym_iv(n, iv);
        len = sizeof(out);
        rv = M.f->C_EncryptInit(M.s0, &gm, ka);
        if (rv == CKR_OK)
            rv = M.f->C_Encrypt(M.s0, SYM_DATA, SYM_MSG, out, &len);
        if (rv != CKR_OK) {
            report_err("sym.gcm", "failed: %s", rvname(rv));
            report_err("sym.gcmcpu", "failed: %s", rvname(rv));
            break;
        }
        if (n == 0 && (len != SYM_MSG + 16 || memcmp(out, gcm0, len) != 0))
            verify_failed("%s: AES-256-GCM result differs from OpenSSL's", M.spec->name);
        n++;
    } while ((el = now() - t0) < O.seconds);
    if (rv == CKR_OK) {
        report_val("sym.gcm", (double)n * SYM_MSG / el / 1e6);
        report_val("sym.gcmcpu", (double)n * SYM_MSG / (thread_cpu() - c0) / 1e6);
    }
    n = 0;
    t0 = now();
    c0 = thread_cpu();
    do {
        len = sizeof(m);
        rv = M.f->C_SignInit(M.s0, &hm, kh);
        if (rv == CKR_OK)
            rv = M.f->C_Sign(M.s0, SYM_DATA, SYM_MSG, m, &len);
        if (rv != CKR_OK) {
            report_err("sym.hmac", "failed: %s", rvname(rv));
            report_err("sym.hmaccpu", "failed: %s", rvname(rv));
            break;
        }
        if (n == 0 && (len != 32 || memcmp(m, mac0, 32) != 0))
            verify_failed("%s: HMAC-SHA256 differs from OpenSSL's", M.spec->name);
        n++;
    } while ((el = now() - t0) < O.seconds);
    if (rv == CKR_OK) {
        report_val("sym.hmac", (double)n * SYM_MSG / el / 1e6);
        report_val("sym.hmaccpu", (double)n * SYM_MSG / (thread_cpu() - c0) / 1e6);
    }
}

/* In the child processes: run EXPR, on failure say which call and end. */
#define STEP(expr)                                                                                 \
    do {                                                                                           \
        rv = (expr);                                                                               \
        if (rv != CKR_OK) {                                                                        \
            printf("%s: %s\n", #expr, rvname(rv));                                                 \
            return 3;                                                                              \
        }                                                                                          \
    } while (0)

/* In a child process: C_Initialize module F, find the token labelled LABEL
 * (slot ids are no key: SoftHSMv2 numbers its slots anew) and open a session
 * with FLAGS. Prints what failed and returns non-zero on failure. */
static int
child_session(CK_FUNCTION_LIST_PTR f, const char *label, CK_FLAGS flags, CK_SESSION_HANDLE *s)
{
    CK_SLOT_ID *list;
    CK_ULONG n = 0, i;
    CK_TOKEN_INFO ti;
    CK_RV rv;

    rv = initialize(f);
    if (rv == CKR_OK)
        rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK) {
        printf("C_Initialize/C_GetSlotList: %s\n", rvname(rv));
        return 3;
    }
    list = xmalloc((n + 1) * sizeof(*list));
    rv = f->C_GetSlotList(CK_TRUE, list, &n);
    for (i = 0; rv == CKR_OK && i < n; i++)
        if (f->C_GetTokenInfo(list[i], &ti) == CKR_OK && padded_eq(ti.label, 32, label))
            break;
    if (rv == CKR_OK && i == n) {
        printf("no token labelled %s\n", label);
        free(list);
        return 3;
    }
    if (rv == CKR_OK)
        rv = f->C_OpenSession(list[i], flags, NULL, NULL, s);
    free(list);
    if (rv != CKR_OK) {
        printf("C_GetSlotList/C_OpenSession: %s\n", rvname(rv));
        return 3;
    }
    return 0;
}

/* --child-init PATH LABEL ID: in this fresh process, time what an
 * application does to start: C_Initialize, C_GetSlotList, C_GetTokenInfo
 * until the token labelled LABEL, C_OpenSession; then the first find by
 * CKA_ID. (Slot ids are no key: SoftHSMv2 numbers its slots anew.) */
static int
child_init(int argc, char **argv)
{
    CK_FUNCTION_LIST_PTR f;
    CK_SESSION_HANDLE s;
    CK_ULONG got = 0;
    CK_OBJECT_HANDLE h[4];
    CK_ATTRIBUTE t;
    void *dl;
    double t0, t1, t2;
    CK_RV rv;

    if (argc != 5)
        return 2;
    t.type = CKA_ID;
    t.pValue = argv[4];
    t.ulValueLen = strlen(argv[4]);
    f = load_module(argv[2], &dl);
    t0 = now();
    if (child_session(f, argv[3], CKF_SERIAL_SESSION, &s) != 0)
        return 3;
    t1 = now();
    STEP(f->C_FindObjectsInit(s, &t, 1));
    STEP(f->C_FindObjects(s, h, 4, &got));
    STEP(f->C_FindObjectsFinal(s));
    t2 = now();
    if (got != 1) {
        printf("first find by CKA_ID found %lu objects\n", (unsigned long)got);
        return 3;
    }
    printf("ok %.6f %.6f\n", (t1 - t0) * 1e3, (t2 - t0) * 1e3);
    fflush(stdout);
    f->C_CloseSession(s);
    f->C_Finalize(NULL);
    return 0;
}

/* --child-write PATH LABEL TAG: log in to the token labelled LABEL and
 * create one public data object labelled TAG, then end. */
static int
child_write(int argc, char **argv)
{
    CK_FUNCTION_LIST_PTR f;
    CK_SESSION_HANDLE s;
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_OBJECT_HANDLE h;
    void *dl;
    CK_RV rv;

    if (argc != 5)
        return 2;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &no, sizeof(no)},        {CKA_LABEL, argv[4], strlen(argv[4])},
        {CKA_VALUE, argv[4], strlen(argv[4])},
    };
    f = load_module(argv[2], &dl);
    if (child_session(f, argv[3], CKF_SERIAL_SESSION | CKF_RW_SESSION, &s) != 0)
        return 3;
    STEP(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    STEP(f->C_CreateObject(s, t, sizeof(t) / sizeof(t[0]), &h));
    printf("ok\n");
    fflush(stdout);
    f->C_CloseSession(s);
    f->C_Finalize(NULL);
    return 0;
}

/* ---- driver ------------------------------------------------------------- */

static void
define_rows(void)
{
    const char *sec = "Login and key generation";

    row_def(sec, "login", "ms", B_LOWER, "C_Login (user PIN)");
    row_def(sec, "kdf", "ms", B_LOWER, "Argon2id (libsodium) at EVERTOKEN_KDF=%s", O.kdf);
    row_def(sec, "loginextra", "ms", B_LOWER, "C_Login minus Argon2id (evertoken, paired runs)");
    for (int kt = 0; kt < KT_COUNT; kt++) {
        char key[48];
        snprintf(key, sizeof(key), "keygen.%s", kt_key[kt]);
        row_def(sec, key, "ms", B_LOWER, "generate a %s key pair (token objects)", kt_name[kt]);
    }
    for (int a = 0; a < A_COUNT; a++) {
        const struct mechdef *md = &MECHS[a];
        char key[48];
        sec = md->name;
        rowkey(key, sizeof(key), "sign1", md->key);
        row_def(sec, key, "ops/s", B_HIGHER, "sign, 1 thread");
        rowkey(key, sizeof(key), "sign1cpu", md->key);
        row_def(sec, key, "op/cs", B_HIGHER, "sign, 1 thread, per CPU-second of the thread");
        rowkey(key, sizeof(key), "sign2", md->key);
        row_def(sec, key, "ops/s", B_HIGHER, "sign, 2 threads (own sessions, same key)");
        rowkey(key, sizeof(key), "sign2cpu", md->key);
        row_def(sec, key, "op/cs", B_HIGHER, "sign, 2 threads, per CPU-second of the threads");
        rowkey(key, sizeof(key), "scale", md->key);
        row_def(sec, key, "x", B_HIGHER, "sign scaling, 2 threads / 1 thread");
        rowkey(key, sizeof(key), "verify1", md->key);
        row_def(sec, key, "ops/s", B_HIGHER, "verify, 1 thread");
        rowkey(key, sizeof(key), "verify2", md->key);
        row_def(sec, key, "ops/s", B_HIGHER, "verify, 2 threads");
    }
    if (!O.objects_only && mech_on(A_ECDSA)) {
        sec = "Two tokens: ECDSA P-256 (CKM_ECDSA) on one while another is written";
        row_def(sec, "twotok.idle", "ops/s", B_HIGHER, "sign, 1 thread, the other token idle");
        row_def(sec, "twotok.busy", "ops/s", B_HIGHER,
                "sign, 1 thread, while a thread writes the other token");
        row_def(sec, "twotok.ratio", "x", B_HIGHER, "sign while written / idle (paired rounds)");
        row_def(sec, "twotok.idlecpu", "op/cs", B_HIGHER, "idle, per CPU-second of the thread");
        row_def(sec, "twotok.busycpu", "op/cs", B_HIGHER, "written, per CPU-second of the thread");
        row_def(sec, "twotok.ratiocpu", "x", B_HIGHER, "written / idle per CPU-second (paired)");
        row_def(sec, "twotok.writes", "pair/s", B_HIGHER,
                "create+destroy pairs on the written token meanwhile");
    }
    if (!O.objects_only) {
        sec = "Secret keys: 4 KiB messages, 1 thread, keyed once, Init + single call per message";
        row_def(sec, "sym.gcm", "MB/s", B_HIGHER, "AES-256-GCM encrypt (12-byte IV per message)");
        row_def(sec, "sym.gcmcpu", "MB/cs", B_HIGHER, "AES-256-GCM, per CPU-second of the thread");
        row_def(sec, "sym.hmac", "MB/s", B_HIGHER, "HMAC-SHA256 sign");
        row_def(sec, "sym.hmaccpu", "MB/cs", B_HIGHER, "HMAC-SHA256, per CPU-second of the thread");
    }
    for (int i = 0; i < O.nobjects; i++) {
        unsigned long n = O.objects[i];
        static char secs[MAX_N][64];
        char key[48];
        snprintf(secs[i], sizeof(secs[i]), "Token with N = %lu certificates", n);
        sec = secs[i];
        if (n > 0) {
            snprintf(key, sizeof(key), "create@%lu", n);
            row_def(sec, key, "obj/s", B_HIGHER, "C_CreateObject certificate, batched (%lu..%lu)",
                    i > 0 ? O.objects[i - 1] : 0, n);
        }
        snprintf(key, sizeof(key), "init@%lu", n);
        row_def(sec, key, "ms", B_LOWER, "C_Initialize -> first session (new process)");
        snprintf(key, sizeof(key), "initfind@%lu", n);
        row_def(sec, key, "ms", B_LOWER, "C_Initialize -> first find by CKA_ID answered");
        snprintf(key, sizeof(key), "findid@%lu", n);
        row_def(sec, key, "us", B_LOWER, "find by CKA_ID (Init+FindObjects+Final)");
        snprintf(key, sizeof(key), "findlabel@%lu", n);
        row_def(sec, key, "us", B_LOWER, "find by CKA_LABEL (Init+FindObjects+Final)");
        snprintf(key, sizeof(key), "refind@%lu", n);
        row_def(sec, key, "ms", B_LOWER, "find by CKA_ID after another process created one");
        snprintf(key, sizeof(key), "sessinfo@%lu", n);
        row_def(sec, key, "us", B_LOWER, "C_GetSessionInfo (no token access)");
        snprintf(key, sizeof(key), "getattr@%lu", n);
        row_def(sec, key, "us", B_LOWER, "C_GetAttributeValue(CKA_CLASS), unchanged token");
        snprintf(key, sizeof(key), "check@%lu", n);
        row_def(sec, key, "us", B_LOWER, "change check = GetAttributeValue - GetSessionInfo");
    }
}

/* Read the module process's report lines until it exits. */
static int
collect(int fd, int src)
{
    FILE *in = fdopen(fd, "r");
    char line[512];

    if (in == NULL)
        die("fdopen: %s", strerror(errno));
    while (fgets(line, sizeof(line), in) != NULL) {
        char *f1, *f2, *save = NULL;
        line[strcspn(line, "\n")] = '\0';
        f1 = strtok_r(line, "\t", &save);
        f2 = strtok_r(NULL, "\t", &save);
        if (f1 == NULL || f2 == NULL)
            continue;
        if (strcmp(f1, "info") == 0) {
            snprintf(mod_info[src], sizeof(mod_info[src]), "%s", f2);
        } else if (strcmp(f1, "verified") == 0) {
            n_verified += strtoul(f2, NULL, 10);
        } else {
            char *f3 = strtok_r(NULL, "", &save);
            if (f3 == NULL || row_find(f2) == NULL)
                continue;
            if (strcmp(f1, "val") == 0)
                store_val(src, f2, strtod(f3, NULL));
            else if (strcmp(f1, "err") == 0)
                store_err(src, f2, f3);
        }
    }
    fclose(in);
    return 0;
}

static int
run_module(int idx)
{
    int fds[2], status = 0;
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    if (pipe(fds) != 0)
        die("pipe: %s", strerror(errno));
    pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        report_fd = fds[1];
        bench_module(idx);
        exit(0);
    }
    close(fds[1]);
    collect(fds[0], idx);
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFSIGNALED(status))
        fprintf(stderr, "p11bench: %s: the module's process died (signal %d)\n", O.mods[idx].name,
                WTERMSIG(status));
    else
        fprintf(stderr, "p11bench: %s: the module's process failed (status %d)\n", O.mods[idx].name,
                WEXITSTATUS(status));
    return -1;
}

static char load_start[64] = "?", load_end[64] = "?";

/* The 1, 5 and 15 minute load averages (/proc/loadavg). */
static void
loadavg(char *out, size_t n)
{
    FILE *fp = fopen("/proc/loadavg", "r");
    double a, b, c;

    if (fp != NULL && fscanf(fp, "%lf %lf %lf", &a, &b, &c) == 3)
        snprintf(out, n, "%.2f %.2f %.2f", a, b, c);
    if (fp != NULL)
        fclose(fp);
}

static const char *
cpu_model(void)
{
    static char model[128] = "unknown";
    FILE *fp = fopen("/proc/cpuinfo", "r");
    char line[256];

    if (fp == NULL)
        return model;
    while (fgets(line, sizeof(line), fp) != NULL) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
            colon++;
            while (*colon == ' ' || *colon == '\t')
                colon++;
            colon[strcspn(colon, "\n")] = '\0';
            snprintf(model, sizeof(model), "%s", colon);
            break;
        }
    }
    fclose(fp);
    return model;
}

static void
fmt_val(char *out, size_t n, double v)
{
    double a = v < 0 ? -v : v;

    if (a >= 1000)
        snprintf(out, n, "%.0f", v);
    else if (a >= 100)
        snprintf(out, n, "%.1f", v);
    else if (a >= 1)
        snprintf(out, n, "%.2f", v);
    else
        snprintf(out, n, "%.3f", v);
}

/* How much better source A is than source B on row R (>1 = A better). */
static int
ratio(const struct row *r, int a, int b, double *out)
{
    if (!r->have[a] || !r->have[b] || r->better == B_NONE || r->val[a] <= 0 || r->val[b] <= 0)
        return 0;
    *out = r->better == B_HIGHER ? r->val[a] / r->val[b] : r->val[b] / r->val[a];
    return 1;
}

static void
print_table(FILE *out)
{
    const char *last = NULL;
    int ref = src_ref();
    char cell[64];

    fprintf(out, "\np11bench: %.2f s per throughput measurement, objects", O.seconds);
    for (int i = 0; i < O.nobjects; i++)
        fprintf(out, "%s%lu", i ? "," : " ", O.objects[i]);
    fprintf(out, ", EVERTOKEN_KDF=%s\n", O.kdf);
    fprintf(out, "machine: %ld CPUs, %s; %s; libsodium %s\n", sysconf(_SC_NPROCESSORS_ONLN),
            cpu_model(), OpenSSL_version(OPENSSL_VERSION), sodium_version_string());
    fprintf(out, "load average: %s at the start, %s at the end\n", load_start, load_end);
    for (int m = 0; m < O.nmods; m++)
        fprintf(out, "module %s: %s (%s)\n", O.mods[m].name, O.mods[m].path,
                mod_info[m][0] ? mod_info[m] : "no C_GetInfo");
    fprintf(out, "ratios: how many times better (faster) the first is than the second; "
                 "ref = OpenSSL EVP / libsodium\n"
                 "(no module loaded; best of a run before and one after the modules)\n\n");

    fprintf(out, "%-52s %-5s", "measurement", "unit");
    for (int m = 0; m < O.nmods; m++)
        fprintf(out, " %12.12s", O.mods[m].name);
    fprintf(out, " %12s", "ref");
    for (int m = 0; m < O.nmods; m++) {
        snprintf(cell, sizeof(cell), "%.6s/ref", O.mods[m].name);
        fprintf(out, " %10s", cell);
    }
    if (O.nmods >= 2) {
        snprintf(cell, sizeof(cell), "%.5s/%.5s", O.mods[0].name, O.mods[1].name);
        fprintf(out, " %11s", cell);
    }
    fputc('\n', out);

    for (int i = 0; i < nrows; i++) {
        struct row *r = &rows[i];
        int any = 0;
        double x;
        for (int s = 0; s <= ref; s++)
            any |= r->have[s] || r->err[s][0];
        if (!any)
            continue;
        if (last == NULL || strcmp(last, r->section) != 0) {
            fprintf(out, "-- %s\n", r->section);
            last = r->section;
        }
        fprintf(out, "%-52.52s %-5s", r->desc, r->unit);
        for (int s = 0; s <= ref; s++) {
            if (r->have[s])
                fmt_val(cell, sizeof(cell), r->val[s]);
            else if (r->err[s][0])
                snprintf(cell, sizeof(cell), "%s",
                         strncmp(r->err[s], "unsupported", 11) == 0 ? "unsupported"
                         : strncmp(r->err[s], "skipped", 7) == 0    ? "skipped"
                                                                    : "FAILED");
            else
                snprintf(cell, sizeof(cell), "-");
            fprintf(out, " %12s", cell);
        }
        for (int m = 0; m < O.nmods; m++) {
            if (ratio(r, m, ref, &x))
                snprintf(cell, sizeof(cell), x < 0.1 ? "%.3fx" : "%.2fx", x);
            else
                snprintf(cell, sizeof(cell), "-");
            fprintf(out, " %10s", cell);
        }
        if (O.nmods >= 2) {
            if (ratio(r, 0, 1, &x))
                snprintf(cell, sizeof(cell), x < 0.1 ? "%.3fx" : "%.2fx", x);
            else
                snprintf(cell, sizeof(cell), "-");
            fprintf(out, " %11s", cell);
        }
        fputc('\n', out);
    }

    last = NULL;
    for (int s = 0; s <= ref; s++)
        for (int i = 0; i < nrows; i++)
            if (rows[i].err[s][0]) {
                if (last == NULL)
                    fprintf(out, "\nnot measured:\n");
                last = "";
                fprintf(out, "  %-10s %-22s %s\n", s == ref ? "ref" : O.mods[s].name, rows[i].key,
                        rows[i].err[s]);
            }
    fprintf(out, "\nverified %lu signatures with OpenSSL, all valid\n", n_verified);
}

static void
json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(out, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(out, "\\u%04x", (unsigned char)*s);
        else
            fputc(*s, out);
    }
    fputc('"', out);
}

static void
print_json(FILE *out)
{
    int ref = src_ref();

    fprintf(out, "{\n  \"machine\": {\"nproc\": %ld, \"cpu\": ", sysconf(_SC_NPROCESSORS_ONLN));
    json_str(out, cpu_model());
    fprintf(out, ", \"openssl\": ");
    json_str(out, OpenSSL_version(OPENSSL_VERSION));
    fprintf(out, ", \"libsodium\": ");
    json_str(out, sodium_version_string());
    fprintf(out, ", \"loadavg_start\": ");
    json_str(out, load_start);
    fprintf(out, ", \"loadavg_end\": ");
    json_str(out, load_end);
    fprintf(out, "},\n  \"seconds\": %g,\n  \"kdf\": ", O.seconds);
    json_str(out, O.kdf);
    fprintf(out, ",\n  \"objects\": [");
    for (int i = 0; i < O.nobjects; i++)
        fprintf(out, "%s%lu", i ? ", " : "", O.objects[i]);
    fprintf(out, "],\n  \"verified_signatures\": %lu,\n  \"modules\": [", n_verified);
    for (int m = 0; m < O.nmods; m++) {
        fprintf(out, "%s{\"name\": ", m ? ", " : "");
        json_str(out, O.mods[m].name);
        fprintf(out, ", \"path\": ");
        json_str(out, O.mods[m].path);
        fprintf(out, ", \"info\": ");
        json_str(out, mod_info[m]);
        fputc('}', out);
    }
    fprintf(out, "],\n  \"results\": [\n");
    for (int i = 0; i < nrows; i++) {
        struct row *r = &rows[i];
        fprintf(out, "    {\"key\": ");
        json_str(out, r->key);
        fprintf(out, ", \"section\": ");
        json_str(out, r->section);
        fprintf(out, ", \"description\": ");
        json_str(out, r->desc);
        fprintf(out, ", \"unit\": ");
        json_str(out, r->unit);
        fprintf(out, ", \"better\": \"%s\", \"values\": {",
                r->better == B_HIGHER ? "higher" : "lower");
        for (int s = 0; s <= ref; s++) {
            fprintf(out, "%s", s ? ", " : "");
            json_str(out, s == ref ? "ref" : O.mods[s].name);
            if (r->have[s])
                fprintf(out, ": %.6g", r->val[s]);
            else if (r->err[s][0]) {
                fprintf(out, ": {\"error\": ");
                json_str(out, r->err[s]);
                fputc('}', out);
            } else
                fprintf(out, ": null");
        }
        fprintf(out, "}}%s\n", i + 1 < nrows ? "," : "");
    }
    fprintf(out, "  ]\n}\n");
}

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: p11bench [--evertoken PATH] [--softhsm PATH] [--module PATH]...\n"
            "                [--seconds S] [--objects N,N,...] [--kdf SPEC] [--reps R]\n"
            "                [--quick] [--strict] [--allow-missing NAME:MECH]...\n"
            "                [--max-objects NAME:N]... [--objects-only] [--mech LIST]\n"
            "                [--rounds R] [--json FILE]\n"
            "  --seconds S     time per throughput measurement (default 1; --quick 0.05)\n"
            "  --objects LIST  token sizes measured (default 0,10000; e.g. 0,10000,100000)\n"
            "  --kdf SPEC      EVERTOKEN_KDF for the tokens: fast, interactive, moderate,\n"
            "                  sensitive, OPS:MEMBYTES (default $EVERTOKEN_KDF, else interactive)\n"
            "  --reps R        repetitions of C_Login, Argon2id and process start-up (default 5)\n"
            "  --quick         tiny counts (smoke test): --seconds 0.05 --objects 0,50 --reps 1\n"
            "  --strict        exit 1 unless every measurement of every module ran\n"
            "  --allow-missing NAME:MECH  in --strict mode, module NAME may lack mechanism\n"
            "                  MECH (rsa-pkcs, rsa-pss, ecdsa, ecdsa-sha256, eddsa)\n"
            "  --max-objects NAME:N  measure module NAME only on tokens of at most N objects\n"
            "                  (SoftHSMv2 needs many minutes to create 100,000)\n"
            "  --objects-only  only the token-size rows (start-up, find, create, change\n"
            "                  check): no key generation, signatures or reference run\n"
            "  --rounds R      sign measurements per mechanism, each a 1-thread run and a\n"
            "                  2-thread run back to back; rows give medians (default 3)\n"
            "  --mech LIST     only these signature mechanisms (comma-separated: rsa-pkcs,\n"
            "                  rsa-pss, ecdsa, ecdsa-sha256, eddsa; default all)\n"
            "  --json FILE     also write the results as JSON (- = standard output)\n");
}

static void
parse_mechs(const char *list)
{
    char buf[256], *save = NULL;

    snprintf(buf, sizeof(buf), "%s", list);
    for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        int a;
        for (a = 0; a < A_COUNT; a++)
            if (strcmp(t, MECHS[a].key) == 0)
                break;
        if (a == A_COUNT)
            die("--mech: unknown mechanism '%s' (rsa-pkcs, rsa-pss, ecdsa, ecdsa-sha256, eddsa)",
                t);
        O.mechsel |= 1u << a;
    }
    if (O.mechsel == 0)
        die("--mech: empty list");
}

static void
add_module(const char *path, enum kind kind)
{
    struct modspec *m;
    const char *base = strrchr(path, '/');

    if (O.nmods == MAX_MODULES)
        die("at most %d modules", MAX_MODULES);
    m = &O.mods[O.nmods++];
    m->path = path;
    base = base ? base + 1 : path;
    if (kind == K_GENERIC) {
        if (strstr(base, "evertoken") != NULL)
            kind = K_EVERTOKEN;
        else if (strstr(base, "softhsm") != NULL)
            kind = K_SOFTHSM;
    }
    m->kind = kind;
    if (kind == K_EVERTOKEN)
        snprintf(m->name, sizeof(m->name), "evertoken");
    else if (kind == K_SOFTHSM)
        snprintf(m->name, sizeof(m->name), "softhsm");
    else {
        if (strncmp(base, "lib", 3) == 0)
            base += 3;
        snprintf(m->name, sizeof(m->name), "%.*s", (int)strcspn(base, "."), base);
    }
    for (int i = 0; i < O.nmods - 1; i++)
        if (strcmp(O.mods[i].name, m->name) == 0) {
            char tail[8];
            snprintf(tail, sizeof(tail), "-%d", O.nmods % 10);
            memcpy(m->name + strlen(m->name) / 2, tail, strlen(tail) + 1);
        }
}

static void
parse_objects(const char *s)
{
    char *end;

    O.nobjects = 0;
    while (*s) {
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || (*end != ',' && *end != '\0') || O.nobjects == MAX_N)
            die("--objects: a comma-separated list of at most %d counts", MAX_N);
        if (O.nobjects > 0 && v <= O.objects[O.nobjects - 1])
            die("--objects: counts must increase");
        O.objects[O.nobjects++] = v;
        s = *end ? end + 1 : end;
    }
    if (O.nobjects == 0)
        die("--objects: empty list");
}

static int
allowed_missing(int src, const char *key)
{
    const char *mech = strchr(key, '.');

    if (mech == NULL || src >= O.nmods)
        return 0;
    for (int i = 0; i < O.nallow; i++) {
        const char *colon = strchr(O.allow[i], ':');
        size_t nl = colon ? (size_t)(colon - O.allow[i]) : 0;
        if (colon && strlen(O.mods[src].name) == nl &&
            strncmp(O.allow[i], O.mods[src].name, nl) == 0 && strcmp(colon + 1, mech + 1) == 0)
            return 1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    const char *objects = NULL;
    double seconds = -1;
    int reps = -1, failed = 0, missing = 0;

    if (argc > 1 && strcmp(argv[1], "--child-init") == 0)
        return child_init(argc, argv);
    if (argc > 1 && strcmp(argv[1], "--child-write") == 0)
        return child_write(argc, argv);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--quick") == 0) {
            O.quick = 1;
        } else if (strcmp(a, "--strict") == 0) {
            O.strict = 1;
        } else if (strcmp(a, "--objects-only") == 0) {
            O.objects_only = 1;
        } else if (v == NULL) {
            usage(stderr);
            return 2;
        } else if (strcmp(a, "--module") == 0) {
            add_module(v, K_GENERIC), i++;
        } else if (strcmp(a, "--evertoken") == 0) {
            add_module(v, K_EVERTOKEN), i++;
        } else if (strcmp(a, "--softhsm") == 0) {
            add_module(v, K_SOFTHSM), i++;
        } else if (strcmp(a, "--seconds") == 0) {
            seconds = strtod(v, NULL), i++;
        } else if (strcmp(a, "--objects") == 0) {
            objects = v, i++;
        } else if (strcmp(a, "--kdf") == 0) {
            O.kdf = v, i++;
        } else if (strcmp(a, "--reps") == 0) {
            reps = atoi(v), i++;
        } else if (strcmp(a, "--rounds") == 0) {
            O.rounds = atoi(v), i++;
            if (O.rounds < 1 || O.rounds > MAX_ROUNDS)
                die("--rounds: 1 to %d", MAX_ROUNDS);
        } else if (strcmp(a, "--mech") == 0) {
            parse_mechs(v), i++;
        } else if (strcmp(a, "--json") == 0) {
            O.json = v, i++;
        } else if (strcmp(a, "--allow-missing") == 0 && O.nallow < 16) {
            snprintf(O.allow[O.nallow++], sizeof(O.allow[0]), "%s", v), i++;
        } else if (strcmp(a, "--max-objects") == 0 && O.nmaxobj < MAX_MODULES) {
            snprintf(O.maxobj[O.nmaxobj++], sizeof(O.maxobj[0]), "%s", v), i++;
        } else {
            usage(stderr);
            return 2;
        }
    }
    O.seconds = seconds > 0 ? seconds : O.quick ? 0.05 : 1.0;
    O.reps = reps > 0 ? reps : O.quick ? 1 : 5;
    if (O.rounds == 0)
        O.rounds = O.quick ? 1 : 3;
    parse_objects(objects ? objects : O.quick ? "0,50" : "0,10000");
    if (O.kdf == NULL)
        O.kdf = O.quick                   ? "fast"
                : getenv("EVERTOKEN_KDF") ? getenv("EVERTOKEN_KDF")
                                          : "interactive";
    setenv("EVERTOKEN_KDF", O.kdf, 1);
    if (sodium_init() < 0)
        die("sodium_init failed");

    messages_init();
    define_rows();
    loadavg(load_start, sizeof(load_start));
    if (!O.objects_only)
        bench_reference();
    for (int m = 0; m < O.nmods; m++)
        if (run_module(m) != 0)
            failed = 1;
    if (!O.objects_only)
        bench_reference();
    loadavg(load_end, sizeof(load_end));

    if (O.json != NULL && strcmp(O.json, "-") == 0) {
        print_json(stdout);
    } else {
        print_table(stdout);
        if (O.json != NULL) {
            FILE *fp = fopen(O.json, "w");
            if (fp == NULL)
                die("%s: %s", O.json, strerror(errno));
            print_json(fp);
            fclose(fp);
        }
    }
    for (int i = 0; i < nrows; i++)
        for (int s = 0; s <= src_ref(); s++)
            if (rows[i].err[s][0] && !allowed_missing(s, rows[i].key))
                missing++;
    if (failed) {
        fprintf(stderr, "p11bench: a module's run failed (see above)\n");
        return 1;
    }
    if (O.strict && missing > 0) {
        fprintf(stderr, "p11bench: --strict: %d measurement(s) not made (listed above)\n", missing);
        return 1;
    }
    return 0;
}
