/*
 * bench_sign.c — p11bench: signature throughput (worker threads), one mechanism's rows, the
 * reference column, secret-key references.
 */
#include "p11bench.h"

/* ---- throughput workers ------------------------------------------------- */

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

double
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

void
rowkey(char *out, size_t n, const char *what, const char *mech)
{
    snprintf(out, n, "%s.%s", what, mech);
}

/* The same error for every row of mechanism MD. */
PRINTF(2, 3) void report_mech_err(const struct mechdef *md, const char *fmt, ...)
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
double
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

/* Signing: ROUNDS pairs of a 1-thread and a 2-thread run, back to back.
 * The rows are medians over the rounds, the scaling row the median of each
 * round's own ratio: on a shared VM the speed of the cores moves by +-10 %
 * within seconds, and a ratio of two runs taken at different moments
 * measures that more than the module. */
static void
sign_rounds(const struct signer *sg, const struct mechdef *md)
{
    double r1[MAX_ROUNDS], c1[MAX_ROUNDS], r2[MAX_ROUNDS], c2[MAX_ROUNDS], sc[MAX_ROUNDS];
    char key[48], k2[48];
    double s1, s2;
    int nr = 0;

    rowkey(key, sizeof(key), "sign1", md->key);
    rowkey(k2, sizeof(k2), "sign2", md->key);
    for (int i = 0; i < O.rounds; i++) {
        s1 = throughput(sg, md, sg->f ? W_MOD_SIGN : W_SSL_SIGN, 1, NULL, key, NULL, &c1[nr]);
        if (s1 < 0)
            break;
        s2 = throughput(sg, md, sg->f ? W_MOD_SIGN : W_SSL_SIGN, NTHREADS, NULL, k2, NULL, &c2[nr]);
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

/* Sign and verify one mechanism: a functional pass (every signature checked
 * with OpenSSL; a corrupted one must be refused), then 1 and 2 threads. */
void
bench_mech(const struct signer *sg, const struct mechdef *md)
{
    struct sigset *sigs = xmalloc(sizeof(*sigs));
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    char key[48];
    double v1, v2;
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

    sign_rounds(sg, md);
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
double
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

unsigned char SYM_KEY[32], SYM_HKEY[32], SYM_DATA[SYM_MSG];

void
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
void
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

void
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
