/*
 * testca.c — issuing, index, revocation and CRL of the test CA servers
 * (testca.h). Every operation through OpenSSL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "testca.h"

X509 *
tca_load_cert(const char *dir, const char *name)
{
    char path[600];
    FILE *fp;
    X509 *x;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "r");
    if (fp == NULL)
        return NULL;
    x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    return x;
}

EVP_PKEY *
tca_load_key(const char *dir, const char *name)
{
    char path[600];
    FILE *fp;
    EVP_PKEY *k;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "r");
    if (fp == NULL)
        return NULL;
    k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    return k;
}

int
tca_init(tca *ca, const char *dir)
{
    char path[600];
    FILE *fp;

    ca->dir = dir;
    if (ca->days == 0)
        ca->days = 90;
    ca->ca = tca_load_cert(dir, "ca.pem");
    ca->ca_key = tca_load_key(dir, "ca.key");
    if (ca->ca == NULL || ca->ca_key == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/issued", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/index.txt.attr", dir);
    fp = fopen(path, "w");
    if (fp != NULL) {
        fputs("unique_subject = no\n", fp);
        fclose(fp);
    }
    snprintf(path, sizeof(path), "%s/index.txt", dir);
    fp = fopen(path, "a");
    if (fp != NULL)
        fclose(fp);
    return 0;
}

time_t
tca_now(const tca *ca)
{
    char path[600];
    long long v;
    FILE *fp;

    snprintf(path, sizeof(path), "%s/now", ca->dir);
    fp = fopen(path, "r");
    if (fp != NULL) {
        int ok = fscanf(fp, "%lld", &v) == 1;
        fclose(fp);
        if (ok)
            return (time_t)v;
    }
    return time(NULL);
}

static long
next_serial(const tca *ca)
{
    char path[600];
    long s = 0x2000;
    FILE *fp;

    snprintf(path, sizeof(path), "%s/serial.next", ca->dir);
    fp = fopen(path, "r");
    if (fp != NULL) {
        if (fscanf(fp, "%lx", &s) != 1)
            s = 0x2000;
        fclose(fp);
    }
    fp = fopen(path, "w");
    if (fp != NULL) {
        fprintf(fp, "%lx\n", s + 1);
        fclose(fp);
    }
    return s;
}

static int
add_ext(const tca *ca, X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *e;

    X509V3_set_ctx(&v3, ca->ca, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (e == NULL)
        return 0;
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return 1;
}

char *
tca_serial_hex(const ASN1_INTEGER *serial)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    char *h = bn ? BN_bn2hex(bn) : NULL;

    BN_free(bn);
    return h;
}

/* UTCTime text as in openssl ca's index (two-digit year). */
static void
index_time(time_t t, char *buf, size_t n)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    snprintf(buf, n, "%02d%02d%02d%02d%02d%02dZ", tm.tm_year % 100, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
}

X509 *
tca_issue(tca *ca, const X509_NAME *subject, EVP_PKEY *pub, const STACK_OF(X509_EXTENSION) * exts,
          int wrong_key)
{
    X509 *x = X509_new();
    EVP_PKEY *wrong = NULL;
    time_t now = tca_now(ca), na;
    char path[700], *ser = NULL, exp[32], subj[512];
    FILE *fp;

    if (x == NULL)
        return NULL;
    if (wrong_key) {
        wrong = EVP_RSA_gen(2048);
        pub = wrong;
    }
    ASN1_INTEGER_set(X509_get_serialNumber(x), next_serial(ca));
    X509_set_version(x, 2);
    X509_set_subject_name(x, subject);
    X509_set_issuer_name(x, X509_get_subject_name(ca->ca));
    X509_set_pubkey(x, pub);
    X509_time_adj_ex(X509_getm_notBefore(x), 0, -60, &now);
    X509_time_adj_ex(X509_getm_notAfter(x), ca->days, 0, &now);
    add_ext(ca, x, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(ca, x, NID_key_usage, "critical,digitalSignature,keyEncipherment");
    add_ext(ca, x, NID_ext_key_usage, "clientAuth,serverAuth");
    add_ext(ca, x, NID_subject_key_identifier, "hash");
    add_ext(ca, x, NID_authority_key_identifier, "keyid");
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name)
            X509_add_ext(x, e, -1);
    }
    if (ca->ocsp_url != NULL) {
        snprintf(path, sizeof(path), "OCSP;URI:%s", ca->ocsp_url);
        add_ext(ca, x, NID_info_access, path);
    }
    if (ca->crl_url != NULL) {
        snprintf(path, sizeof(path), "URI:%s", ca->crl_url);
        add_ext(ca, x, NID_crl_distribution_points, path);
    }
    if (!X509_sign(x, ca->ca_key, EVP_sha256())) {
        X509_free(x);
        x = NULL;
        goto done;
    }
    ser = tca_serial_hex(X509_get0_serialNumber(x));
    snprintf(path, sizeof(path), "%s/issued/%s.pem", ca->dir, ser);
    fp = fopen(path, "w");
    if (fp != NULL) {
        PEM_write_X509(fp, x);
        fclose(fp);
    }
    na = now + (time_t)ca->days * 86400;
    index_time(na, exp, sizeof(exp));
    X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
    snprintf(path, sizeof(path), "%s/index.txt", ca->dir);
    fp = fopen(path, "a");
    if (fp != NULL) {
        fprintf(fp, "V\t%s\t\t%s\tunknown\t%s\n", exp, ser, subj);
        fclose(fp);
    }
done:
    OPENSSL_free(ser);
    EVP_PKEY_free(wrong);
    return x;
}

/* Fields of one index.txt line (tab-separated; the revocation date may be
 * empty). LINE is modified. */
static int
split(char *line, char *f[6])
{
    int n = 0;
    char *p = line;

    line[strcspn(line, "\n")] = '\0';
    while (n < 6 && (f[n] = strsep(&p, "\t")) != NULL)
        n++;
    return n;
}

int
tca_status(const tca *ca, const char *serial_hex)
{
    char path[600], line[2048];
    FILE *fp;
    int r = 0;

    snprintf(path, sizeof(path), "%s/index.txt", ca->dir);
    fp = fopen(path, "r");
    if (fp == NULL)
        return 0;
    while (fgets(line, sizeof(line), fp) != NULL) {
        char *f[6] = {0};
        if (split(line, f) >= 4 && !strcasecmp(f[3], serial_hex))
            r = f[0][0];
    }
    fclose(fp);
    return r;
}

X509 *
tca_issued(const tca *ca, const char *serial_hex)
{
    char name[300];

    if (strspn(serial_hex, "0123456789ABCDEFabcdef") != strlen(serial_hex))
        return NULL;
    snprintf(name, sizeof(name), "issued/%s.pem", serial_hex);
    return tca_load_cert(ca->dir, name);
}

int
tca_revoke(tca *ca, const char *serial_hex, const char *reason)
{
    char path[600], tmp[620], line[2048], when[32];
    FILE *in, *out;
    int found = 0;

    snprintf(path, sizeof(path), "%s/index.txt", ca->dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    in = fopen(path, "r");
    out = fopen(tmp, "w");
    if (in == NULL || out == NULL) {
        if (in)
            fclose(in);
        if (out)
            fclose(out);
        return -1;
    }
    index_time(tca_now(ca), when, sizeof(when));
    while (fgets(line, sizeof(line), in) != NULL) {
        char copy[2048], *f[6] = {0};
        memcpy(copy, line, sizeof(copy));
        if (split(copy, f) >= 6 && !strcasecmp(f[3], serial_hex) && f[0][0] == 'V') {
            fprintf(out, "R\t%s\t%s%s%s\t%s\t%s\t%s\n", f[1], when, reason ? "," : "",
                    reason ? reason : "", f[3], f[4], f[5]);
            found = 1;
        } else {
            fputs(line, out);
        }
    }
    fclose(in);
    fclose(out);
    if (!found) {
        remove(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0)
        return -1;
    return tca_write_crl(ca);
}

static int
reason_code(const char *r)
{
    static const char *names[] = {
        "unspecified",   "keyCompromise",        "CACompromise",    "affiliationChanged",
        "superseded",    "cessationOfOperation", "certificateHold", NULL,
        "removeFromCRL", "privilegeWithdrawn",   "AACompromise"};
    for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
        if (names[i] != NULL && !strcasecmp(names[i], r))
            return i;
    return -1;
}

int
tca_write_crl(tca *ca)
{
    char path[600], line[2048];
    X509_CRL *crl = X509_CRL_new();
    time_t now = tca_now(ca);
    ASN1_TIME *t = NULL;
    FILE *fp;
    int rc = -1;

    if (crl == NULL)
        return -1;
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->ca));
    t = X509_time_adj_ex(NULL, 0, -60, &now);
    X509_CRL_set1_lastUpdate(crl, t);
    ASN1_TIME_free(t);
    t = X509_time_adj_ex(NULL, 30, 0, &now);
    X509_CRL_set1_nextUpdate(crl, t);
    ASN1_TIME_free(t);
    snprintf(path, sizeof(path), "%s/index.txt", ca->dir);
    fp = fopen(path, "r");
    while (fp != NULL && fgets(line, sizeof(line), fp) != NULL) {
        char *f[6] = {0}, *reason;
        X509_REVOKED *r;
        BIGNUM *bn = NULL;
        ASN1_INTEGER *ser;
        ASN1_TIME *rt;
        if (split(line, f) < 4 || f[0][0] != 'R')
            continue;
        reason = strchr(f[2], ',');
        if (reason != NULL)
            *reason++ = '\0';
        r = X509_REVOKED_new();
        rt = ASN1_UTCTIME_new();
        if (r == NULL || rt == NULL || !BN_hex2bn(&bn, f[3]) ||
            (ser = BN_to_ASN1_INTEGER(bn, NULL)) == NULL) {
            X509_REVOKED_free(r);
            ASN1_TIME_free(rt);
            BN_free(bn);
            continue;
        }
        X509_REVOKED_set_serialNumber(r, ser);
        ASN1_INTEGER_free(ser);
        BN_free(bn);
        if (ASN1_UTCTIME_set_string(rt, f[2]))
            X509_REVOKED_set_revocationDate(r, rt);
        ASN1_TIME_free(rt);
        if (reason != NULL && reason_code(reason) > 0) {
            ASN1_ENUMERATED *e = ASN1_ENUMERATED_new();
            ASN1_ENUMERATED_set(e, reason_code(reason));
            X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, e, 0, 0);
            ASN1_ENUMERATED_free(e);
        }
        X509_CRL_add0_revoked(crl, r);
    }
    if (fp != NULL)
        fclose(fp);
    X509_CRL_sort(crl);
    if (!X509_CRL_sign(crl, ca->ca_key, EVP_sha256()))
        goto done;
    snprintf(path, sizeof(path), "%s/ca.crl", ca->dir);
    fp = fopen(path, "wb");
    if (fp == NULL)
        goto done;
    rc = i2d_X509_CRL_fp(fp, crl) ? 0 : -1;
    fclose(fp);
done:
    X509_CRL_free(crl);
    return rc;
}
