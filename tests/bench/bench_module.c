/*
 * bench_module.c — p11bench: one module in its own process: loading, the token, certificates,
 * module keys.
 */
#include "p11bench.h"

/* ---- one module (in its own process) ------------------------------------ */

struct module_state M;

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
void
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

CK_FUNCTION_LIST_PTR
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

CK_RV
initialize(CK_FUNCTION_LIST_PTR f)
{
    CK_C_INITIALIZE_ARGS args;

    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK; /* threads sign concurrently */
    return f->C_Initialize(&args);
}

int
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
size_t
padded_len(const CK_UTF8CHAR *field, size_t len)
{
    while (len > 0 && field[len - 1] == ' ')
        len--;
    return len;
}

/* The slot whose token is (not) initialised, with LABEL when initialised. */
int
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

void
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
void
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

CK_RV
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

CK_RV
create_private(void)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL yes = CK_TRUE;
    unsigned char value[32];
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_ID, (void *)PRIV_ID, strlen(PRIV_ID)},
        {CKA_LABEL, (void *)PRIV_ID, strlen(PRIV_ID)},
        {CKA_VALUE, value, sizeof(value)},
    };

    randombytes_buf(value, sizeof(value));
    CK_OBJECT_HANDLE h;

    return M.f->C_CreateObject(M.s0, t, sizeof(t) / sizeof(t[0]), &h);
}

/* ---- module keys -------------------------------------------------------- */

static const unsigned char OID_P256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char OID_ED25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
/* PKCS#11 3.0 also names the curve by a PrintableString. */
static const unsigned char STR_ED25519[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
                                            'd',  's',  '2', '5', '5', '1', '9'};

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
void
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
