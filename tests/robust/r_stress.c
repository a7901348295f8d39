/*
 * r_stress.c — several processes x threads on one token.
 *
 * Set-up: a token with an RSA-2048 and a P-256 key pair made by
 * C_GenerateKeyPair; their CKA_PUBLIC_KEY_INFO is read once for OpenSSL.
 * Then R_STRESS_PROCS worker processes (default 3) with R_STRESS_THREADS
 * threads each (default 3) run for R_STRESS_SECONDS (default 15), every
 * thread on its own session, mixing:
 *   create   a private or public token data object with a random value;
 *   destroy  one of the thread's own objects;
 *   find     each own object by label (exactly one, right value) and all
 *            data objects (at least the thread's own);
 *   sign     CKM_SHA256_RSA_PKCS or CKM_ECDSA_SHA256 over a random message,
 *            verified with OpenSSL against the public key.
 * One more process logs in and out in a loop (C_Initialize, C_Login,
 * C_FindObjects, C_Finalize): each login is two write transactions (the
 * failed-attempt counter) competing with the writers.
 * Every call must succeed: any other result is an error. At the end
 * PRAGMA integrity_check is ok, every record authenticates, and the number
 * of data objects equals what the workers created minus what they
 * destroyed.
 *
 * Then two tokens in one process (the per-token lock, module/mod_int.h):
 * a second token B gets its own key pairs, and for a third of
 * R_STRESS_SECONDS (at least 2 s) one thread writes token A in a loop
 * (create a data object, destroy every other one) while R_STRESS_THREADS
 * threads sign on token B, each on its own session, verifying every
 * signature. Every call must succeed, both sides must have made progress,
 * and token A ends with exactly the objects the writer left.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "keystore.h"
#include "rlib.h"

static CK_SLOT_ID slot;
static unsigned char spki[2][600];
static size_t spki_len[2];
static double deadline;
static const char *dir_path;

/* ---- set-up --------------------------------------------------------------- */

static void
genkey(CK_SESSION_HANDLE s, int ec)
{
    CK_MECHANISM m = {ec ? CKM_EC_KEY_PAIR_GEN : CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_ULONG bits = 2048;
    CK_BBOOL t = CK_TRUE;
    const char *label = ec ? "ec" : "rsa";
    CK_ATTRIBUTE pub[] = {
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_VERIFY, &t, sizeof(t)},
        {CKA_LABEL, (void *)label, strlen(label)},
        {ec ? CKA_EC_PARAMS : CKA_MODULUS_BITS, ec ? (void *)p256 : (void *)&bits,
         ec ? sizeof(p256) : sizeof(bits)},
    };
    CK_ATTRIBUTE priv[] = {
        {CKA_TOKEN, &t, sizeof(t)},
        {CKA_PRIVATE, &t, sizeof(t)},
        {CKA_SIGN, &t, sizeof(t)},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_OBJECT_HANDLE hpub, hpriv;
    CK_ATTRIBUTE a = {CKA_PUBLIC_KEY_INFO, spki[ec], sizeof(spki[ec])};

    R_CK(R->C_GenerateKeyPair(s, &m, pub, 4, priv, 4, &hpub, &hpriv), CKR_OK);
    R_CK(R->C_GetAttributeValue(s, hpub, &a, 1), CKR_OK);
    spki_len[ec] = a.ulValueLen;
}

/* ---- workers ---------------------------------------------------------------- */

struct worker {
    pthread_t th;
    int proc, id;
    uint64_t seed;
    long ops[4], errors, created, destroyed;
    double max_latency; /* seconds, slowest single operation */
    double last;
};

#define OWN_MAX 64
struct own {
    char label[40];
    unsigned char val[24];
};

static void
report(struct worker *w, const char *what, CK_RV rv)
{
    fprintf(stderr, "process %d thread %d: %s -> %s\n", w->proc, w->id, what, r_ckr(rv));
    w->errors++;
}

static int
verify(int ec, const unsigned char *msg, size_t len, const unsigned char *sig, size_t siglen)
{
    const unsigned char *p = spki[ec];
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)spki_len[ec]);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[160], *q = der;
    int ok = 0, dlen;

    if (pk == NULL || md == NULL)
        goto done;
    if (ec) {
        /* PKCS#11 ECDSA signatures are r || s; OpenSSL wants DER. */
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, (int)siglen / 2, NULL);
        BIGNUM *s = BN_bin2bn(sig + siglen / 2, (int)siglen / 2, NULL);

        if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
            ECDSA_SIG_free(es);
            BN_free(r);
            BN_free(s);
            goto done;
        }
        dlen = i2d_ECDSA_SIG(es, &q);
        ECDSA_SIG_free(es);
        if (dlen <= 0)
            goto done;
        sig = der;
        siglen = (size_t)dlen;
    }
    ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
         EVP_DigestVerify(md, sig, siglen, msg, len) == 1;
done:
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pk);
    return ok;
}

static CK_OBJECT_HANDLE
find_key(CK_SESSION_HANDLE s, int ec)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    const char *label = ec ? "ec" : "rsa";
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_ULONG n = 0;

    if (R->C_FindObjectsInit(s, t, 2) != CKR_OK)
        return CK_INVALID_HANDLE;
    if (R->C_FindObjects(s, &h, 1, &n) != CKR_OK || n != 1)
        h = CK_INVALID_HANDLE;
    (void)R->C_FindObjectsFinal(s);
    return h;
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct own own[OWN_MAX];
    size_t nown = 0;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key[2];
    CK_RV rv;
    unsigned k = 0;

    rv = R->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
        report(w, "C_OpenSession", rv);
        return NULL;
    }
    key[0] = find_key(s, 0);
    key[1] = find_key(s, 1);
    if (key[0] == CK_INVALID_HANDLE || key[1] == CK_INVALID_HANDLE) {
        report(w, "finding the keys", CKR_GENERAL_ERROR);
        return NULL;
    }
    for (double t0 = r_now(); t0 < deadline && w->errors == 0; t0 = r_now()) {
        unsigned r = (unsigned)(r_rand(&w->seed) % 100);

        if (k > 0 && t0 - w->last > w->max_latency)
            w->max_latency = t0 - w->last;
        w->last = t0;
        k++;
        if (r < 30 && nown < OWN_MAX) {
            struct own *o = &own[nown];
            CK_OBJECT_HANDLE h;

            snprintf(o->label, sizeof(o->label), "p%d-t%d-%u", w->proc, w->id, k);
            r_fill(&w->seed, o->val, sizeof(o->val));
            rv = r_create_data(s, o->label, o->val, sizeof(o->val), (int)(k & 1), &h);
            if (rv != CKR_OK) {
                report(w, "C_CreateObject", rv);
                break;
            }
            nown++;
            w->created++;
            w->ops[0]++;
        } else if (r < 50 && nown > 0) {
            size_t i = (size_t)(r_rand(&w->seed) % nown);
            CK_OBJECT_HANDLE one[2];
            long c = r_find_data(s, own[i].label, one, 2, &rv);

            if (c != 1) {
                report(w, r_fmt("find %s before destroy: %ld found", own[i].label, c), rv);
                break;
            }
            rv = R->C_DestroyObject(s, one[0]);
            if (rv != CKR_OK) {
                report(w, "C_DestroyObject", rv);
                break;
            }
            own[i] = own[--nown];
            w->destroyed++;
            w->ops[1]++;
        } else if (r < 70) {
            CK_OBJECT_HANDLE hs[512];
            long c = r_find_data(s, NULL, hs, 512, &rv);

            if (c < 0 || (size_t)c < nown) {
                report(w, r_fmt("find all: %ld found, %zu own", c, nown), rv);
                break;
            }
            for (size_t i = 0; i < nown; i++) {
                unsigned char v[64];
                size_t len = sizeof(v);

                c = r_find_data(s, own[i].label, hs, 2, &rv);
                if (c == 1)
                    rv = r_get_value(s, hs[0], v, &len);
                if (c != 1 || rv != CKR_OK || len != sizeof(own[i].val) ||
                    memcmp(v, own[i].val, len) != 0) {
                    report(w, r_fmt("own object %s: %ld found", own[i].label, c), rv);
                    break;
                }
            }
            w->ops[2]++;
        } else {
            int ec = (int)(r_rand(&w->seed) & 1);
            CK_MECHANISM m = {ec ? CKM_ECDSA_SHA256 : CKM_SHA256_RSA_PKCS, NULL, 0};
            unsigned char msg[64], sig[512];
            CK_ULONG siglen = sizeof(sig);

            r_fill(&w->seed, msg, sizeof(msg));
            rv = R->C_SignInit(s, &m, key[ec]);
            if (rv == CKR_OK)
                rv = R->C_Sign(s, msg, sizeof(msg), sig, &siglen);
            if (rv != CKR_OK) {
                report(w, ec ? "ECDSA sign" : "RSA sign", rv);
                break;
            }
            if (!verify(ec, msg, sizeof(msg), sig, siglen)) {
                report(w, ec ? "ECDSA signature does not verify" : "RSA signature does not verify",
                       CKR_SIGNATURE_INVALID);
                break;
            }
            w->ops[3]++;
        }
    }
    rv = R->C_CloseSession(s);
    if (rv != CKR_OK)
        report(w, "C_CloseSession", rv);
    return NULL;
}

/* Child: THREADS workers; writes created - destroyed to FD. */
static void
worker_process(int proc, int threads, int fd)
{
    struct worker w[16];
    CK_SESSION_HANDLE s;
    long net = 0, errors = 0, ops[4] = {0};
    double lat = 0;

    r_init();
    s = r_session(slot, R_USER_PIN); /* the login is the process's */
    for (int i = 0; i < threads; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].proc = proc;
        w[i].id = i;
        w[i].seed = 0x1000u * (unsigned)proc + (unsigned)i + 1;
        R_ASSERT(pthread_create(&w[i].th, NULL, worker_main, &w[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].th, NULL);
        net += w[i].created - w[i].destroyed;
        errors += w[i].errors;
        if (w[i].max_latency > lat)
            lat = w[i].max_latency;
        for (int j = 0; j < 4; j++)
            ops[j] += w[i].ops[j];
    }
    R_CK(R->C_CloseSession(s), CKR_OK);
    R_CK(R->C_Finalize(NULL), CKR_OK);
    fprintf(stderr,
            "process %d: %ld creates, %ld destroys, %ld finds, %ld signatures verified, %ld "
            "errors, slowest operation %.3f s\n",
            proc, ops[0], ops[1], ops[2], ops[3], errors, lat);
    R_ASSERT(write(fd, &net, sizeof(net)) == sizeof(net), "write");
    _exit(errors == 0 ? 0 : 1);
}

/* Child: log in and out until the deadline. */
static void
login_process(void)
{
    long n = 0;

    while (r_now() < deadline) {
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE hs[4];
        CK_RV rv;

        r_init();
        s = r_session(slot, R_USER_PIN);
        if (r_find_data(s, NULL, hs, 4, &rv) < 0)
            r_fail("login process: find -> %s", r_ckr(rv));
        R_CK(R->C_Finalize(NULL), CKR_OK);
        n++;
    }
    fprintf(stderr, "login process: %ld logins\n", n);
    _exit(0);
}

/* ---- two tokens: one written, one signing --------------------------------- */

static CK_SLOT_ID slot_b;

/* Token A's writer: create, and destroy every other object again. */
static void *
writer_main(void *arg)
{
    struct worker *w = arg;
    CK_OBJECT_HANDLE mine[2];
    CK_SESSION_HANDLE s;
    unsigned char val[24];
    CK_RV rv;

    rv = R->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
        report(w, "writer C_OpenSession", rv);
        return NULL;
    }
    for (unsigned k = 0; r_now() < deadline && w->errors == 0; k++) {
        r_fill(&w->seed, val, sizeof(val));
        rv = r_create_data(s, r_fmt("writer-%u", k), val, sizeof(val), (int)(k & 1), &mine[k & 1]);
        if (rv != CKR_OK) {
            report(w, "writer C_CreateObject", rv);
            break;
        }
        w->created++;
        if (k & 1) {
            rv = R->C_DestroyObject(s, mine[0]);
            if (rv != CKR_OK) {
                report(w, "writer C_DestroyObject", rv);
                break;
            }
            w->destroyed++;
        }
    }
    rv = R->C_CloseSession(s);
    if (rv != CKR_OK)
        report(w, "writer C_CloseSession", rv);
    return NULL;
}

/* Token B's signers. */
static void *
signer_main(void *arg)
{
    struct worker *w = arg;
    CK_OBJECT_HANDLE key[2];
    CK_SESSION_HANDLE s;
    CK_RV rv;

    rv = R->C_OpenSession(slot_b, CKF_SERIAL_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
        report(w, "signer C_OpenSession", rv);
        return NULL;
    }
    key[0] = find_key(s, 0);
    key[1] = find_key(s, 1);
    if (key[0] == CK_INVALID_HANDLE || key[1] == CK_INVALID_HANDLE)
        report(w, "signer: finding the keys", CKR_GENERAL_ERROR);
    while (r_now() < deadline && w->errors == 0) {
        int ec = (int)(r_rand(&w->seed) & 1);
        CK_MECHANISM m = {ec ? CKM_ECDSA_SHA256 : CKM_SHA256_RSA_PKCS, NULL, 0};
        unsigned char msg[64], sig[512];
        CK_ULONG siglen = sizeof(sig);

        r_fill(&w->seed, msg, sizeof(msg));
        rv = R->C_SignInit(s, &m, key[ec]);
        if (rv == CKR_OK)
            rv = R->C_Sign(s, msg, sizeof(msg), sig, &siglen);
        if (rv != CKR_OK) {
            report(w, ec ? "token B ECDSA sign" : "token B RSA sign", rv);
            break;
        }
        if (!verify(ec, msg, sizeof(msg), sig, siglen)) {
            report(w, "token B signature does not verify", CKR_SIGNATURE_INVALID);
            break;
        }
        w->ops[3]++;
    }
    rv = R->C_CloseSession(s);
    if (rv != CKR_OK)
        report(w, "signer C_CloseSession", rv);
    return NULL;
}

/* Token A holds BEFORE data objects. */
static void
two_tokens(int threads, long secs, long before)
{
    struct worker w[17];
    CK_SESSION_HANDLE sa, sb;
    CK_OBJECT_HANDLE hs[4096];
    long sigs = 0, errors = 0, n;
    CK_RV rv;

    r_init();
    slot_b = r_make_token();
    R_ASSERT(slot_b != slot, "token B is a second token");
    sb = r_session(slot_b, R_USER_PIN);
    genkey(sb, 0); /* spki[] now holds token B's public keys */
    genkey(sb, 1);
    sa = r_session(slot, R_USER_PIN); /* the process's logins on A and B */
    deadline = r_now() + (double)(secs / 3 > 2 ? secs / 3 : 2);
    for (int i = 0; i <= threads; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].proc = 99;
        w[i].id = i;
        w[i].seed = 0x9000u + (unsigned)i;
        R_ASSERT(pthread_create(&w[i].th, NULL, i == 0 ? writer_main : signer_main, &w[i]) == 0,
                 "pthread_create");
    }
    for (int i = 0; i <= threads; i++) {
        pthread_join(w[i].th, NULL);
        errors += w[i].errors;
        sigs += w[i].ops[3];
    }
    R_ASSERT(errors == 0, "two tokens: %ld errors", errors);
    R_ASSERT(w[0].created > 0 && sigs > 0, "two tokens: %ld writes on A, %ld signatures on B",
             w[0].created, sigs);
    n = r_find_data(sa, NULL, hs, 4096, &rv);
    R_ASSERT(n == before + w[0].created - w[0].destroyed,
             "token A: %ld data objects, expected %ld (%s)", n,
             before + w[0].created - w[0].destroyed, r_ckr(rv));
    R_CK(R->C_CloseSession(sa), CKR_OK);
    R_CK(R->C_CloseSession(sb), CKR_OK);
    R_CK(R->C_Finalize(NULL), CKR_OK);
    fprintf(stderr,
            "r_stress: two tokens: %ld creates and %ld destroys on A while %d threads made %ld "
            "verified signatures on B\n",
            w[0].created, w[0].destroyed, threads, sigs);
}

static int
count_cb(void *ctx, const ks_object *o)
{
    (void)o;
    (*(long *)ctx)++;
    return 0;
}

int
main(void)
{
    char dir[256];
    int procs = (int)r_env_long("R_STRESS_PROCS", 3);
    int threads = (int)r_env_long("R_STRESS_THREADS", 3);
    long secs = r_env_long("R_STRESS_SECONDS", 15);
    int fds[2];
    long total = 0, records = 0;
    unsigned tampered = 99;
    ks_token *t = NULL;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE hs[4096];
    CK_RV rv;
    long n;

    R_ASSERT(procs >= 1 && procs <= 32 && threads >= 1 && threads <= 16,
             "R_STRESS_PROCS 1..32, R_STRESS_THREADS 1..16");
    r_setup(dir, "stress");
    dir_path = dir;
    r_init();
    slot = r_make_token();
    s = r_session(slot, R_USER_PIN);
    genkey(s, 0);
    genkey(s, 1);
    R_CK(R->C_Finalize(NULL), CKR_OK);

    R_ASSERT(pipe(fds) == 0, "pipe");
    deadline = r_now() + (double)secs;
    for (int p = 0; p < procs; p++)
        if (r_spawn() == 0) {
            close(fds[0]);
            worker_process(p, threads, fds[1]);
        }
    if (r_spawn() == 0)
        login_process();
    close(fds[1]);
    for (;;) {
        long v;
        ssize_t k = read(fds[0], &v, sizeof(v));
        if (k < 0 && errno == EINTR)
            continue;
        if (k != (ssize_t)sizeof(v))
            break;
        total += v;
    }
    close(fds[0]);
    R_ASSERT(r_wait_all() == 0, "a worker failed");

    R_ASSERT(r_integrity_ok(r_token_file(dir, slot)), "integrity_check");
    R_ASSERT(ks_open(r_token_file(dir, slot), &t) == KS_OK, "ks_open: %s", ks_open_error());
    R_ASSERT(ks_login(t, KS_USER, (const unsigned char *)R_USER_PIN, strlen(R_USER_PIN)) == KS_OK,
             "ks_login");
    R_ASSERT(ks_load_objects(t, count_cb, &records, &tampered) == KS_OK && tampered == 0,
             "%u records fail their check", tampered);
    ks_close(t);
    r_init();
    s = r_session(slot, R_USER_PIN);
    n = r_find_data(s, NULL, hs, 4096, &rv);
    R_ASSERT(n == total, "%ld data objects on the token, workers left %ld (%s)", n, total,
             r_ckr(rv));
    R_ASSERT(records == total + 4, "%ld records, expected %ld data objects and 4 keys", records,
             total);
    R_CK(R->C_Finalize(NULL), CKR_OK);
    fprintf(stderr, "r_stress: %d processes x %d threads for %ld s: no error, %ld objects left\n",
            procs, threads, secs, total);
    two_tokens(threads, secs, total);
    r_rm_rf(dir);
    return 0;
}
