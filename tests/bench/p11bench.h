/*
 * p11bench.h — what the parts of p11bench share (p11bench.c: options and the
 * driver; bench_util.c, bench_sign.c, bench_module.c, bench_objects.c).
 */
#ifndef P11BENCH_H
#define P11BENCH_H

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
#define PRIV_ID     "p11bench-private" /* a private secret key, found after login */

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

#define SYM_MSG 4096 /* bytes of a secret-key benchmark message */

enum kind { K_GENERIC, K_EVERTOKEN, K_SOFTHSM };

struct modspec {
    char name[32];
    const char *path;
    enum kind kind;
};

struct options {
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
};
extern struct options O;

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

enum keytype { KT_RSA, KT_EC, KT_ED, KT_COUNT };

enum alg { A_RSA_PKCS, A_RSA_PSS, A_ECDSA, A_ECDSA_SHA256, A_EDDSA, A_COUNT };

struct mechdef {
    enum alg alg;
    const char *key;
    const char *name;
    enum keytype kt;
    CK_MECHANISM_TYPE mech;
    int prehashed; /* the input is a SHA-256 digest */
};

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

struct blob {
    unsigned char *p;
    CK_ULONG n;
};

struct module_state {
    const struct modspec *spec;
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    char dir[PATH_MAX];
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE s0; /* R/W, the user logged in */
    CK_OBJECT_HANDLE target;
    struct blob cert, subject, issuer, serial;
    unsigned long nobjs; /* certificates created so far (besides the target) */
};
extern struct module_state M;

struct modkey {
    CK_OBJECT_HANDLE pub, priv;
    EVP_PKEY *pk; /* public key read back from the token */
    int ok;
};

#define CK_SETUP(expr)                                                                             \
    do {                                                                                           \
        CK_RV rv_ = (expr);                                                                        \
        if (rv_ != CKR_OK)                                                                         \
            die("%s: %s returned %s", M.spec->name, #expr, rvname(rv_));                           \
    } while (0)

extern struct row *rows;
extern int nrows, caprows;
extern int cur_src;
extern int report_fd;
extern const char *cur_name;
extern unsigned long n_verified;
extern char mod_info[MAX_MODULES][160];
extern const char *const kt_key[KT_COUNT];
extern const char *const kt_name[KT_COUNT];
extern const struct mechdef MECHS[A_COUNT];
extern unsigned char SYM_KEY[32], SYM_HKEY[32], SYM_DATA[SYM_MSG];

int ratio(const struct row *r, int a, int b, double *out);
double now(void);
PRINTF(1, 2) void die(const char *fmt, ...);
PRINTF(1, 2) void verify_failed(const char *fmt, ...);
void *xmalloc(size_t n);
const char *rvname(CK_RV rv);
double median(double *v, int n);
int src_ref(void);
struct row *row_find(const char *key);
PRINTF(5, 6)
void row_def(const char *section, const char *key, const char *unit, enum better b, const char *fmt,
             ...);
void store_val(int src, const char *key, double v);
void store_err(int src, const char *key, const char *text);
void send_line(const char *line);
void report_val(const char *key, double v);
PRINTF(2, 3) void report_err(const char *key, const char *fmt, ...);
int mech_on(enum alg a);
void messages_init(void);
const unsigned char *input_of(const struct mechdef *md, int i, size_t *len);
CK_MECHANISM mech_of(const struct mechdef *md);
int ossl_sign(const struct mechdef *md, EVP_PKEY *pk, EVP_MD_CTX *mctx, const unsigned char *in,
              size_t inlen, unsigned char *sig, size_t *siglen);
int ossl_verify(const struct mechdef *md, EVP_PKEY *pk, EVP_MD_CTX *mctx, const unsigned char *in,
                size_t inlen, const unsigned char *sig, size_t siglen);
int verify_p11_sig(const struct mechdef *md, EVP_PKEY *pub, EVP_MD_CTX *mctx, int i,
                   const unsigned char *sig, size_t siglen);
EVP_PKEY *ossl_keygen(enum keytype kt);
double thread_cpu(void);
void rowkey(char *out, size_t n, const char *what, const char *mech);
PRINTF(2, 3) void report_mech_err(const struct mechdef *md, const char *fmt, ...);
double throughput(const struct signer *sg, const struct mechdef *md, enum wkind kind, int nt,
                  const struct sigset *sigs, const char *key, const char *cpukey, double *cpu_rate);
void bench_mech(const struct signer *sg, const struct mechdef *md);
double argon2id_ms(void);
void sym_init(void);
void sym_iv(unsigned long i, unsigned char iv[12]);
void bench_reference(void);
void module_env(void);
CK_FUNCTION_LIST_PTR load_module(const char *path, void **dl);
CK_RV initialize(CK_FUNCTION_LIST_PTR f);
int padded_eq(const CK_UTF8CHAR *field, size_t len, const char *s);
size_t padded_len(const CK_UTF8CHAR *field, size_t len);
int find_slot(int initialized, const char *label, CK_SLOT_ID *out);
void create_token(void);
void make_cert(void);
CK_RV create_cert(const char *id, const char *label, CK_OBJECT_HANDLE *out);
/* The private secret key PRIV_ID (AES-256, sealed like every private key). */
CK_RV create_private(void);
void module_key(enum keytype kt, struct modkey *k);
void bench_module(int idx);
int child_init(int argc, char **argv);
int child_write(int argc, char **argv);

#endif /* P11BENCH_H */
