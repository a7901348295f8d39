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
#include "p11bench.h"

/* ---- options ------------------------------------------------------------ */

struct options O;

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
        snprintf(key, sizeof(key), "rss@%lu", n);
        row_def(sec, key, "MiB", B_LOWER, "resident memory after that first find");
        snprintf(key, sizeof(key), "loginx@%lu", n);
        row_def(sec, key, "ms", B_LOWER, "then C_Login minus Argon2id (paired)");
        snprintf(key, sizeof(key), "privfind@%lu", n);
        row_def(sec, key, "ms", B_LOWER, "then first find of a private key by CKA_ID");
        snprintf(key, sizeof(key), "allcerts@%lu", n);
        row_def(sec, key, "ms", B_LOWER, "then first find of all certificates (CKA_CLASS)");
        snprintf(key, sizeof(key), "fullfind@%lu", n);
        row_def(sec, key, "ms", B_LOWER, "then find by CKA_TOKEN only (no indexed attr)");
        snprintf(key, sizeof(key), "rssall@%lu", n);
        row_def(sec, key, "MiB", B_LOWER, "resident memory after those two searches");
        snprintf(key, sizeof(key), "filesize@%lu", n);
        row_def(sec, key, "B", B_LOWER, "token file (with WAL) per object");
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
int
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
