/*
 * p11conf.c — the conformance suite's driver and harness.
 *
 *   p11conf --target evertoken|softhsm [--filter GLOB] MODULE_PATH
 *
 * Loads MODULE_PATH once (dlopen), runs every test family as a cmocka group.
 * Each test gets a fresh temporary directory; the module is initialised and
 * finalised per test on the same dlopen handle (modules must support
 * C_Finalize followed by C_Initialize).
 */
#include <dlfcn.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "conf.h"

CK_FUNCTION_LIST_PTR F;
CK_C_GetInterfaceList conf_get_interface_list;
CK_C_GetInterface conf_get_interface;
enum conf_target conf_target;
struct conf_env E;

/* ---- assertions --------------------------------------------------------- */

const char *
conf_rv_name(CK_RV rv)
{
    static const struct {
        CK_RV rv;
        const char *name;
    } names[] = {
#define N(x) {x, #x}
        N(CKR_OK),
        N(CKR_CANCEL),
        N(CKR_HOST_MEMORY),
        N(CKR_SLOT_ID_INVALID),
        N(CKR_GENERAL_ERROR),
        N(CKR_FUNCTION_FAILED),
        N(CKR_ARGUMENTS_BAD),
        N(CKR_NEED_TO_CREATE_THREADS),
        N(CKR_CANT_LOCK),
        N(CKR_ATTRIBUTE_READ_ONLY),
        N(CKR_ATTRIBUTE_SENSITIVE),
        N(CKR_ATTRIBUTE_TYPE_INVALID),
        N(CKR_ATTRIBUTE_VALUE_INVALID),
        N(CKR_ACTION_PROHIBITED),
        N(CKR_DATA_INVALID),
        N(CKR_DEVICE_ERROR),
        N(CKR_DEVICE_MEMORY),
        N(CKR_DEVICE_REMOVED),
        N(CKR_FUNCTION_CANCELED),
        N(CKR_FUNCTION_NOT_PARALLEL),
        N(CKR_FUNCTION_NOT_SUPPORTED),
        N(CKR_KEY_HANDLE_INVALID),
        N(CKR_MECHANISM_INVALID),
        N(CKR_OBJECT_HANDLE_INVALID),
        N(CKR_OPERATION_ACTIVE),
        N(CKR_OPERATION_NOT_INITIALIZED),
        N(CKR_PIN_INCORRECT),
        N(CKR_PIN_INVALID),
        N(CKR_PIN_LEN_RANGE),
        N(CKR_PIN_EXPIRED),
        N(CKR_PIN_LOCKED),
        N(CKR_SESSION_CLOSED),
        N(CKR_SESSION_COUNT),
        N(CKR_SESSION_HANDLE_INVALID),
        N(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
        N(CKR_SESSION_READ_ONLY),
        N(CKR_SESSION_EXISTS),
        N(CKR_SESSION_READ_ONLY_EXISTS),
        N(CKR_SESSION_READ_WRITE_SO_EXISTS),
        N(CKR_TEMPLATE_INCOMPLETE),
        N(CKR_TEMPLATE_INCONSISTENT),
        N(CKR_TOKEN_NOT_PRESENT),
        N(CKR_TOKEN_NOT_RECOGNIZED),
        N(CKR_TOKEN_WRITE_PROTECTED),
        N(CKR_USER_ALREADY_LOGGED_IN),
        N(CKR_USER_NOT_LOGGED_IN),
        N(CKR_USER_PIN_NOT_INITIALIZED),
        N(CKR_USER_TYPE_INVALID),
        N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
        N(CKR_USER_TOO_MANY_TYPES),
        N(CKR_RANDOM_SEED_NOT_SUPPORTED),
        N(CKR_RANDOM_NO_RNG),
        N(CKR_BUFFER_TOO_SMALL),
        N(CKR_CRYPTOKI_NOT_INITIALIZED),
        N(CKR_CRYPTOKI_ALREADY_INITIALIZED),
        N(CKR_MUTEX_BAD),
        N(CKR_MUTEX_NOT_LOCKED),
#undef N
    };
    static __thread char other[32];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].rv == rv)
            return names[i].name;
    snprintf(other, sizeof(other), "0x%08lx", (unsigned long)rv);
    return other;
}

void
conf_check_rv(CK_RV got, CK_RV want, const char *expr, const char *file, int line)
{
    if (got == want)
        return;
    print_error("%s returned %s, expected %s\n", expr, conf_rv_name(got), conf_rv_name(want));
    _fail(file, line);
}

void
conf_check_rv2(CK_RV got, CK_RV want1, CK_RV want2, const char *expr, const char *file, int line)
{
    if (got == want1 || got == want2)
        return;
    print_error("%s returned %s, expected %s or %s\n", expr, conf_rv_name(got), conf_rv_name(want1),
                conf_rv_name(want2));
    _fail(file, line);
}

/* ---- environment and fixtures ------------------------------------------- */

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* A fresh directory per test: whatever a test leaves behind (or a failed
 * test's half-made token) can never leak into the next one. */
static int
env_new(void)
{
    const char *tmp = getenv("TMPDIR");
    char path[sizeof(E.dir) + 32];
    FILE *f;

    memset(&E, 0, sizeof(E));
    snprintf(E.dir, sizeof(E.dir), "%s/p11conf.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(E.dir) == NULL) {
        print_error("mkdtemp %s: %s\n", E.dir, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof(path), "%s/tokens", E.dir);
    if (is_evertoken()) {
        /* evertoken creates the directory itself (0700) at C_InitToken. */
        setenv("EVERTOKEN_DIR", path, 1);
        setenv("EVERTOKEN_KDF", "fast", 1);
        unsetenv("EVERTOKEN_CONF");
        return 0;
    }
    if (mkdir(path, 0700) != 0) {
        print_error("mkdir %s: %s\n", path, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof(path), "%s/softhsm2.conf", E.dir);
    f = fopen(path, "w");
    if (f == NULL) {
        print_error("fopen %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f,
            "directories.tokendir = %s/tokens\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n",
            E.dir);
    fclose(f);
    setenv("SOFTHSM2_CONF", path, 1);
    return 0;
}

int
conf_setup_bare(void **state)
{
    /* cmocka skips the teardown when a setup fails or a test crashes: clean
     * up what such a test left before starting the next one. */
    if (E.dir[0] != '\0')
        conf_teardown(state);
    return env_new();
}

CK_RV
conf_initialize(void)
{
    CK_C_INITIALIZE_ARGS args;

    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    return F->C_Initialize(&args);
}

int
conf_setup_init(void **state)
{
    CK_RV rv;

    if (conf_setup_bare(state) != 0)
        return -1;
    rv = conf_initialize();
    if (rv != CKR_OK) {
        print_error("C_Initialize: %s\n", conf_rv_name(rv));
        return -1;
    }
    return 0;
}

int
conf_setup_token(void **state)
{
    if (conf_setup_init(state) != 0)
        return -1;
    /* conf_create_token asserts; a failure there fails the setup. */
    conf_create_token(CONF_LABEL);
    return 0;
}

int
conf_teardown(void **state)
{
    (void)state;
    if (E.child > 0) {
        kill(E.child, SIGKILL);
        waitpid(E.child, NULL, 0);
        E.child = 0;
    }
    /* Not initialised is fine here: a test may have finalised itself. */
    F->C_Finalize(NULL);
    if (E.dir[0] != '\0' && getenv("P11CONF_KEEP") == NULL)
        nftw(E.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    E.dir[0] = '\0';
    return 0;
}

void
conf_reinit(void)
{
    assert_ok(F->C_Finalize(NULL));
    assert_ok(conf_initialize());
}

/* ---- slot and token helpers --------------------------------------------- */

void
conf_pad(CK_UTF8CHAR out[32], const char *s)
{
    size_t n = strlen(s);

    memset(out, ' ', 32);
    memcpy(out, s, n > 32 ? 32 : n);
}

int
conf_padded_eq(const CK_UTF8CHAR *field, size_t len, const char *s)
{
    size_t n = strlen(s);

    if (n > len || memcmp(field, s, n) != 0)
        return 0;
    for (size_t i = n; i < len; i++)
        if (field[i] != ' ')
            return 0;
    return 1;
}

CK_SLOT_ID *
conf_slots(CK_ULONG *n)
{
    CK_SLOT_ID *list;
    CK_ULONG count = 0;

    assert_ok(F->C_GetSlotList(CK_FALSE, NULL, &count));
    list = calloc(count + 1, sizeof(*list));
    assert_non_null(list);
    assert_ok(F->C_GetSlotList(CK_FALSE, list, &count));
    *n = count;
    return list;
}

CK_SLOT_ID
conf_free_slot(void)
{
    CK_ULONG n, found = 0;
    CK_SLOT_ID *list = conf_slots(&n), slot = 0;
    CK_TOKEN_INFO ti;

    for (CK_ULONG i = 0; i < n; i++) {
        if (F->C_GetTokenInfo(list[i], &ti) != CKR_OK)
            continue;
        if (!(ti.flags & CKF_TOKEN_INITIALIZED)) {
            slot = list[i];
            found++;
        }
    }
    free(list);
    assert_int_equal(found, 1);
    return slot;
}

CK_SLOT_ID
conf_slot_by_label(const char *label)
{
    CK_ULONG n, found = 0;
    CK_SLOT_ID *list = conf_slots(&n), slot = 0;
    CK_TOKEN_INFO ti;

    for (CK_ULONG i = 0; i < n; i++) {
        if (F->C_GetTokenInfo(list[i], &ti) != CKR_OK)
            continue;
        if ((ti.flags & CKF_TOKEN_INITIALIZED) && conf_padded_eq(ti.label, 32, label)) {
            slot = list[i];
            found++;
        }
    }
    free(list);
    if (found != 1)
        fail_msg("%lu tokens labelled \"%s\"", (unsigned long)found, label);
    return slot;
}

CK_SLOT_ID
conf_invalid_slot(void)
{
    CK_ULONG n;
    CK_SLOT_ID *list = conf_slots(&n), cand = 0x7ffff000UL;
    int clash;

    do {
        clash = 0;
        cand++;
        for (CK_ULONG i = 0; i < n; i++)
            clash |= list[i] == cand;
    } while (clash);
    free(list);
    return cand;
}

CK_SLOT_ID
conf_create_token(const char *label)
{
    CK_UTF8CHAR lab[32];
    CK_SLOT_ID free_slot = conf_free_slot(), slot;
    CK_SESSION_HANDLE h;

    conf_pad(lab, label);
    assert_ok(F->C_InitToken(free_slot, (CK_UTF8CHAR_PTR)CONF_SO_PIN, strlen(CONF_SO_PIN), lab));
    /* SoftHSMv2 moves an initialised token to a new slot id (derived from
     * its serial); evertoken keeps the id. Either way: find it by label. */
    slot = conf_slot_by_label(label);
    if (is_evertoken())
        assert_int_equal(slot, free_slot);
    E.slot = slot;
    E.have_token = 1;
    assert_ok(F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h));
    assert_ok(F->C_Login(h, CKU_SO, (CK_UTF8CHAR_PTR)CONF_SO_PIN, strlen(CONF_SO_PIN)));
    assert_ok(F->C_InitPIN(h, (CK_UTF8CHAR_PTR)CONF_USER_PIN, strlen(CONF_USER_PIN)));
    assert_ok(F->C_Logout(h));
    assert_ok(F->C_CloseSession(h));
    return slot;
}

CK_SESSION_HANDLE
conf_open(CK_FLAGS extra)
{
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;

    assert_ok(F->C_OpenSession(E.slot, CKF_SERIAL_SESSION | extra, NULL, NULL, &h));
    return h;
}

void
conf_login_user(CK_SESSION_HANDLE h)
{
    assert_ok(F->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)CONF_USER_PIN, strlen(CONF_USER_PIN)));
}

void
conf_login_so(CK_SESSION_HANDLE h)
{
    assert_ok(F->C_Login(h, CKU_SO, (CK_UTF8CHAR_PTR)CONF_SO_PIN, strlen(CONF_SO_PIN)));
}

CK_ULONG
conf_session_state(CK_SESSION_HANDLE h)
{
    CK_SESSION_INFO si;

    assert_ok(F->C_GetSessionInfo(h, &si));
    return si.state;
}

CK_FLAGS
conf_token_flags(void)
{
    CK_TOKEN_INFO ti;

    assert_ok(F->C_GetTokenInfo(E.slot, &ti));
    return ti.flags;
}

/* ---- object helpers ----------------------------------------------------- */

CK_RV
conf_create_data(CK_SESSION_HANDLE h, CK_BBOOL token, CK_BBOOL priv, const char *label,
                 CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},          {CKA_TOKEN, &token, sizeof(token)},
        {CKA_PRIVATE, &priv, sizeof(priv)},      {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_APPLICATION, (void *)"p11conf", 7}, {CKA_VALUE, (void *)label, strlen(label)},
    };

    *out = CK_INVALID_HANDLE;
    return F->C_CreateObject(h, t, sizeof(t) / sizeof(t[0]), out);
}

CK_ULONG
conf_find(CK_SESSION_HANDLE h, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out, CK_ULONG max,
          CK_ULONG chunk)
{
    CK_OBJECT_HANDLE buf[64];
    CK_ULONG total = 0, got;

    assert_true(chunk > 0 && chunk <= 64);
    assert_ok(F->C_FindObjectsInit(h, t, n));
    for (;;) {
        got = 0;
        assert_ok(F->C_FindObjects(h, buf, chunk, &got));
        assert_true(got <= chunk);
        if (got == 0)
            break;
        for (CK_ULONG i = 0; i < got; i++, total++)
            if (out != NULL && total < max)
                out[total] = buf[i];
    }
    assert_ok(F->C_FindObjectsFinal(h));
    return total;
}

CK_ULONG
conf_find_label(CK_SESSION_HANDLE h, const char *label, CK_OBJECT_HANDLE *out)
{
    CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)}};

    return conf_find(h, t, 1, out, out ? 1 : 0, 16);
}

/* ---- key material ------------------------------------------------------- */

static struct conf_material M;
static int have_material;

static void
blob_set(struct conf_blob *b, const unsigned char *p, size_t n)
{
    b->p = malloc(n ? n : 1);
    assert_non_null(b->p);
    memcpy(b->p, p, n);
    b->n = n;
}

static void
blob_bn(struct conf_blob *b, EVP_PKEY *pk, const char *param, int pad)
{
    BIGNUM *bn = NULL;
    int n;

    assert_int_equal(EVP_PKEY_get_bn_param(pk, param, &bn), 1);
    n = pad ? pad : BN_num_bytes(bn);
    b->p = malloc(n);
    assert_non_null(b->p);
    assert_int_equal(BN_bn2binpad(bn, b->p, n), n);
    b->n = n;
    BN_free(bn);
}

/* DER-encode with an i2d function into a fresh blob. */
#define BLOB_I2D(b, fn, obj)                                                                       \
    do {                                                                                           \
        unsigned char *der_ = NULL;                                                                \
        int n_ = fn(obj, &der_);                                                                   \
        assert_true(n_ > 0);                                                                       \
        blob_set(b, der_, (size_t)n_);                                                             \
        OPENSSL_free(der_);                                                                        \
    } while (0)

static void
make_material(void)
{
    /* OID 1.2.840.10045.3.1.7 (prime256v1), DER. */
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
    unsigned char pub[133], pt[135];
    size_t publen = 0;
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();

    assert_non_null(rsa);
    assert_non_null(ec);
    assert_non_null(x);
    assert_non_null(name);

    blob_bn(&M.rsa_n, rsa, OSSL_PKEY_PARAM_RSA_N, 0);
    blob_bn(&M.rsa_e, rsa, OSSL_PKEY_PARAM_RSA_E, 0);
    blob_bn(&M.rsa_d, rsa, OSSL_PKEY_PARAM_RSA_D, 0);
    blob_bn(&M.rsa_p, rsa, OSSL_PKEY_PARAM_RSA_FACTOR1, 0);
    blob_bn(&M.rsa_q, rsa, OSSL_PKEY_PARAM_RSA_FACTOR2, 0);
    blob_bn(&M.rsa_dp, rsa, OSSL_PKEY_PARAM_RSA_EXPONENT1, 0);
    blob_bn(&M.rsa_dq, rsa, OSSL_PKEY_PARAM_RSA_EXPONENT2, 0);
    blob_bn(&M.rsa_qinv, rsa, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, 0);

    blob_set(&M.ec_params, p256, sizeof(p256));
    assert_int_equal(
        EVP_PKEY_get_octet_string_param(ec, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &publen), 1);
    assert_int_equal(publen, 65); /* uncompressed point */
    pt[0] = 0x04;                 /* CKA_EC_POINT is DER OCTET STRING (2.40 section 2.3.3) */
    pt[1] = (unsigned char)publen;
    memcpy(pt + 2, pub, publen);
    blob_set(&M.ec_point, pt, publen + 2);
    blob_bn(&M.ec_value, ec, OSSL_PKEY_PARAM_PRIV_KEY, 32);

    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 0x2a0c0f), 1);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                (const unsigned char *)"p11conf", -1, -1, 0),
                     1);
    assert_int_equal(X509_set_subject_name(x, name), 1);
    assert_int_equal(X509_set_issuer_name(x, name), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 30L * 24 * 3600));
    assert_int_equal(X509_set_pubkey(x, ec), 1);
    assert_true(X509_sign(x, ec, EVP_sha256()) > 0);
    BLOB_I2D(&M.cert, i2d_X509, x);
    BLOB_I2D(&M.cert_subject, i2d_X509_NAME, X509_get_subject_name(x));
    BLOB_I2D(&M.cert_issuer, i2d_X509_NAME, X509_get_issuer_name(x));
    BLOB_I2D(&M.cert_serial, i2d_ASN1_INTEGER, X509_get_serialNumber(x));

    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
    have_material = 1;
}

const struct conf_material *
conf_material(void)
{
    if (!have_material)
        make_material();
    return &M;
}

void
conf_material_free(void)
{
    struct conf_blob *all[] = {&M.rsa_n,        &M.rsa_e,       &M.rsa_d,      &M.rsa_p,
                               &M.rsa_q,        &M.rsa_dp,      &M.rsa_dq,     &M.rsa_qinv,
                               &M.ec_params,    &M.ec_point,    &M.ec_value,   &M.cert,
                               &M.cert_subject, &M.cert_issuer, &M.cert_serial};

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        /* Test key material, but still: no private bytes left in freed heap. */
        if (all[i]->p != NULL)
            OPENSSL_cleanse(all[i]->p, all[i]->n);
        free(all[i]->p);
        all[i]->p = NULL;
        all[i]->n = 0;
    }
    have_material = 0;
}

/* ---- driver ------------------------------------------------------------- */

static void
usage(void)
{
    fprintf(stderr, "usage: p11conf --target evertoken|softhsm [--filter GLOB] MODULE_PATH\n");
}

int
main(int argc, char **argv)
{
    const char *target = NULL, *filter = NULL, *path = NULL;
    CK_C_GetFunctionList gfl;
    void *dl;
    int failed = 0;
    struct conf_group (*groups[])(void) = {
        conf_init_tests,     conf_slot_tests,   conf_session_tests, conf_object_tests,
        conf_process_tests,  conf_mech_tests,   conf_keygen_tests,  conf_kat_tests,
        conf_rollover_tests, conf_secret_tests, conf_wrap_tests,    conf_tmpl_tests};

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--target") == 0 && i + 1 < argc)
            target = argv[++i];
        else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            filter = argv[++i];
        else if (argv[i][0] != '-' && path == NULL)
            path = argv[i];
        else {
            usage();
            return 2;
        }
    }
    if (target == NULL || path == NULL) {
        usage();
        return 2;
    }
    if (strcmp(target, "evertoken") == 0)
        conf_target = CONF_EVERTOKEN;
    else if (strcmp(target, "softhsm") == 0)
        conf_target = CONF_SOFTHSM;
    else {
        usage();
        return 2;
    }

    dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        fprintf(stderr, "p11conf: dlopen %s: %s\n", path, dlerror());
        return 1;
    }
    *(void **)&gfl = dlsym(dl, "C_GetFunctionList");
    *(void **)&conf_get_interface_list = dlsym(dl, "C_GetInterfaceList");
    *(void **)&conf_get_interface = dlsym(dl, "C_GetInterface");
    if (gfl == NULL || gfl(&F) != CKR_OK || F == NULL) {
        fprintf(stderr, "p11conf: %s: no usable C_GetFunctionList\n", path);
        dlclose(dl);
        return 1;
    }
    if (filter != NULL)
        cmocka_set_test_filter(filter);

    for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
        struct conf_group g = groups[i]();
        failed += _cmocka_run_group_tests(g.name, g.tests, g.n, NULL, NULL);
    }

    if (E.dir[0] != '\0')
        conf_teardown(NULL);
    conf_material_free();
    /* SoftHSMv2 and OpenSSL keep global state that does not survive
     * dlclose cleanly in every version; the process ends here anyway. */
    return failed == 0 ? 0 : 1;
}
