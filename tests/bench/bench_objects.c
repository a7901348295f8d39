/*
 * bench_objects.c — p11bench: object measurements (find, start-up, another process's write), two
 * tokens, one module's run, the child processes.
 */
#include "p11bench.h"

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
    double t0 = 0, el;

    /* One untimed search first: the row is the steady state. The first
     * search after another process's write (the start-up children log in,
     * which writes the PIN counter) takes in what changed, this process's
     * own writes since then included (docs/module.md). */
    {
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
    }
    t0 = now();
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

#define NINIT 8 /* figures of one --child-init */

static int
spawn_init(double r[NINIT], char *err, size_t errlen)
{
    char buf[256];
    char *argv[] = {(char *)"p11bench",  (char *)"--child-init", (char *)M.spec->path,
                    (char *)TOKEN_LABEL, (char *)TARGET_ID,      NULL};

    if (spawn_child(argv, buf, sizeof(buf)) != 0 ||
        sscanf(buf, "ok %lf %lf %lf %lf %lf %lf %lf %lf", &r[0], &r[1], &r[2], &r[3], &r[4], &r[5],
               &r[6], &r[7]) != NINIT) {
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

/* Bytes of the token file of module evertoken (with its WAL) per object. */
static double
file_per_object(unsigned long n)
{
    char path[PATH_MAX + 32];
    struct stat st;
    double total = 0;

    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/tokens/token-%lu.db%s", M.dir, (unsigned long)M.slot,
                 i ? "-wal" : "");
        if (stat(path, &st) == 0)
            total += (double)st.st_size;
    }
    return n > 0 ? total / (double)n : total;
}

/* Start-up rows of N: medians of REPS new processes (--child-init). */
static void
startup_rows(unsigned long n, int reps)
{
    static const char *const what[NINIT] = {"init",     "initfind", "rss",      "loginx",
                                            "privfind", "allcerts", "fullfind", "rssall"};
    char key[NINIT][48], err[160] = "";
    double v[NINIT][64], r[NINIT];
    int got = 0;

    for (int i = 0; i < NINIT; i++)
        snprintf(key[i], sizeof(key[i]), "%s@%lu", what[i], n);
    for (int i = 0; i < reps; i++) {
        if (spawn_init(r, err, sizeof(err)) != 0)
            break;
        for (int j = 0; j < NINIT; j++)
            v[j][got] = r[j];
        got++;
    }
    for (int j = 0; j < NINIT; j++) {
        /* C_Login minus Argon2id only means something for evertoken
         * (other modules: no figure, "-"). */
        if (j == 3 && M.spec->kind != K_EVERTOKEN)
            continue;
        if (got == reps)
            report_val(key[j], median(v[j], got));
        else
            report_err(key[j], "%s", err);
    }
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
    char key[48];
    CK_ATTRIBUTE by_id = {CKA_ID, (void *)TARGET_ID, strlen(TARGET_ID)};
    CK_ATTRIBUTE by_label = {CKA_LABEL, (void *)TARGET_LBL, strlen(TARGET_LBL)};
    double si, ga, v[64];
    int reps = O.reps > 64 ? 64 : O.reps, got = 0;
    char err[160] = "";

    if (n > max_objects(M.spec->name)) {
        static const char *const what[] = {"create",    "init",     "initfind", "findid",
                                           "findlabel", "refind",   "sessinfo", "getattr",
                                           "check",     "rss",      "loginx",   "privfind",
                                           "filesize",  "allcerts", "fullfind", "rssall"};
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

    snprintf(key, sizeof(key), "filesize@%lu", n);
    if (M.spec->kind == K_EVERTOKEN) /* other modules: "-" */
        report_val(key, file_per_object(n));
    startup_rows(n, reps);
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

void
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
    CK_SETUP(create_private());

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
/* The resident memory of this process, MiB (VmRSS). */
static double
rss_mib(void)
{
    char line[128];
    double kib = -1;
    FILE *f = fopen("/proc/self/status", "r");

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %lf kB", &kib) == 1)
            break;
    fclose(f);
    return kib / 1024.0;
}

/* Objects a search for TYPE = V finds (0 also on failure). V is a
 * CK_ULONG, or a CK_BBOOL for CKA_TOKEN. */
static unsigned long
count_found(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_ATTRIBUTE_TYPE type, CK_ULONG v)
{
    CK_BBOOL b = (CK_BBOOL)v;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};
    CK_OBJECT_HANDLE many[256];
    CK_ULONG got = 0;
    unsigned long total = 0;

    if (type == CKA_TOKEN) {
        a.pValue = &b;
        a.ulValueLen = sizeof(b);
    }
    if (f->C_FindObjectsInit(s, &a, 1) != CKR_OK)
        return 0;
    do {
        if (f->C_FindObjects(s, many, 256, &got) != CKR_OK) {
            total = 0;
            break;
        }
        total += got;
    } while (got > 0);
    f->C_FindObjectsFinal(s);
    return total;
}

int
child_init(int argc, char **argv)
{
    CK_FUNCTION_LIST_PTR f;
    CK_SESSION_HANDLE s;
    CK_ULONG got = 0;
    CK_OBJECT_HANDLE h[4];
    CK_ATTRIBUTE t;
    void *dl;
    double t0, t1, t2, t3, t4, t5, t6, t7, rss, rss2, kdf;
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
    rss = rss_mib();
    /* C_Login paired with a raw Argon2id at the token's cost (as the
     * parent's "loginextra" row), then the private object by CKA_ID. */
    kdf = argon2id_ms();
    t3 = now();
    STEP(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)USER_PIN, strlen(USER_PIN)));
    t4 = now();
    t.pValue = (void *)PRIV_ID;
    t.ulValueLen = strlen(PRIV_ID);
    STEP(f->C_FindObjectsInit(s, &t, 1));
    STEP(f->C_FindObjects(s, h, 4, &got));
    STEP(f->C_FindObjectsFinal(s));
    t5 = now();
    if (got != 1) {
        printf("find of the private key after login found %lu objects\n", (unsigned long)got);
        return 3;
    }
    /* Then the first search for every certificate (CKA_CLASS only), and
     * one with no indexed attribute (CKA_TOKEN only: evertoken streams
     * it), and the resident memory after both (evertoken's cache bound). */
    if (count_found(f, s, CKA_CLASS, CKO_CERTIFICATE) == 0) {
        printf("the search for all certificates found none\n");
        return 3;
    }
    t6 = now();
    if (count_found(f, s, CKA_TOKEN, CK_TRUE) == 0) {
        printf("the search for all token objects found none\n");
        return 3;
    }
    t7 = now();
    rss2 = rss_mib();
    printf("ok %.6f %.6f %.3f %.6f %.6f %.6f %.6f %.3f\n", (t1 - t0) * 1e3, (t2 - t0) * 1e3, rss,
           (t4 - t3) * 1e3 - kdf, (t5 - t4) * 1e3, (t6 - t5) * 1e3, (t7 - t6) * 1e3, rss2);
    fflush(stdout);
    f->C_CloseSession(s);
    f->C_Finalize(NULL);
    return 0;
}

/* --child-write PATH LABEL TAG: log in to the token labelled LABEL and
 * create one public data object labelled TAG, then end. */
int
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
