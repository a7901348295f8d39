/*
 * import_parse.c — the parsers of `evertoken import` (see import_parse.h):
 * the format is detected from the content, not from the file name; every
 * private key is kept in OpenSSL objects (cleared when freed) and the raw
 * file in locked memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "import_parse.h"

static int
et_pass_get(et_pass *p)
{
    if (p->have)
        return ET_EXIT_OK;
    if (p->rc != 0)
        return p->rc;
    p->rc = et_secret_get(p->src, "passphrase of the file", 0, &p->s);
    if (p->rc != ET_EXIT_OK)
        return p->rc;
    p->have = 1;
    return ET_EXIT_OK;
}

/* pem_password_cb: hand OpenSSL the passphrase, fetching it on first use. */
static int
et_pem_cb(char *buf, int size, int rwflag, void *u)
{
    et_pass *p = u;

    (void)rwflag;
    if (et_pass_get(p) != ET_EXIT_OK)
        return -1;
    if (p->s.len > (size_t)size)
        return -1;
    memcpy(buf, p->s.buf, p->s.len);
    return (int)p->s.len;
}

static void
et_openssl_reason(char *buf, size_t sz)
{
    unsigned long e = ERR_peek_last_error();

    if (e == 0)
        snprintf(buf, sz, "no details");
    else
        ERR_error_string_n(e, buf, sz);
    ERR_clear_error();
}

static int
et_add_key(et_input *in, const char *file, EVP_PKEY *pk)
{
    int base = EVP_PKEY_get_base_id(pk);

    if (base != EVP_PKEY_RSA && base != EVP_PKEY_RSA_PSS && base != EVP_PKEY_EC &&
        base != EVP_PKEY_ED25519 && base != EVP_PKEY_ED448) {
        et_err("%s: unsupported private key type %s (RSA, EC, Ed25519 and Ed448 can be "
               "imported)",
               file, EVP_PKEY_get0_type_name(pk) ? EVP_PKEY_get0_type_name(pk) : "?");
        EVP_PKEY_free(pk);
        return ET_EXIT_INPUT;
    }
    if (in->nkeys >= ET_MAX_KEYS) {
        et_err("%s: too many private keys in one import (at most %d)", file, ET_MAX_KEYS);
        EVP_PKEY_free(pk);
        return ET_EXIT_INPUT;
    }
    in->keys[in->nkeys++] = pk;
    return ET_EXIT_OK;
}

static int
et_add_cert(et_input *in, X509 *x)
{
    for (int i = 0; i < sk_X509_num(in->certs); i++) {
        if (X509_cmp(sk_X509_value(in->certs, i), x) == 0) {
            /* The same certificate twice (a PKCS#12 and its PEM chain). */
            X509_free(x);
            return ET_EXIT_OK;
        }
    }
    if (!sk_X509_push(in->certs, x)) {
        X509_free(x);
        et_err("out of memory");
        return ET_EXIT_FAIL;
    }
    return ET_EXIT_OK;
}

static int
et_add_p7(et_input *in, const char *file, PKCS7 *p7)
{
    STACK_OF(X509) *sk = NULL;
    int rc = ET_EXIT_OK;

    if (PKCS7_type_is_signed(p7) && p7->d.sign != NULL)
        sk = p7->d.sign->cert;
    else if (PKCS7_type_is_signedAndEnveloped(p7) && p7->d.signed_and_enveloped != NULL)
        sk = p7->d.signed_and_enveloped->cert;
    if (sk == NULL || sk_X509_num(sk) == 0) {
        et_err("%s: the PKCS#7 structure holds no certificates", file);
        return ET_EXIT_INPUT;
    }
    for (int i = 0; i < sk_X509_num(sk) && rc == ET_EXIT_OK; i++) {
        X509 *x = sk_X509_value(sk, i);
        if (!X509_up_ref(x))
            return ET_EXIT_FAIL;
        rc = et_add_cert(in, x);
    }
    return rc;
}

static int
et_load_p12(et_input *in, const char *file, PKCS12 *p12, et_pass *pass)
{
    EVP_PKEY *pk = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *ca = NULL;
    const char *pw = NULL;
    int rc = ET_EXIT_INPUT, pwlen = 0;
    char why[256];

    /* An empty or absent password is common for exported bundles; only ask
     * when neither opens it. */
    if (PKCS12_mac_present(p12)) {
        if (PKCS12_verify_mac(p12, NULL, 0)) {
            pw = NULL;
        } else if (PKCS12_verify_mac(p12, "", 0)) {
            pw = "";
        } else {
            rc = et_pass_get(pass);
            if (rc != ET_EXIT_OK)
                return rc;
            pw = (const char *)pass->s.buf;
            pwlen = (int)pass->s.len;
            if (!PKCS12_verify_mac(p12, pw, pwlen)) {
                ERR_clear_error();
                et_err("%s: wrong passphrase for this PKCS#12 file", file);
                return ET_EXIT_PIN;
            }
        }
        if (!PKCS12_parse(p12, pw, &pk, &cert, &ca)) {
            et_openssl_reason(why, sizeof(why));
            et_err("%s: cannot read the PKCS#12 contents: %s", file, why);
            return ET_EXIT_INPUT;
        }
    } else if (!PKCS12_parse(p12, "", &pk, &cert, &ca) &&
               !PKCS12_parse(p12, NULL, &pk, &cert, &ca)) {
        ERR_clear_error();
        rc = et_pass_get(pass);
        if (rc != ET_EXIT_OK)
            return rc;
        if (!PKCS12_parse(p12, (const char *)pass->s.buf, &pk, &cert, &ca)) {
            ERR_clear_error();
            et_err("%s: cannot open the PKCS#12 file: wrong passphrase or damaged file", file);
            return ET_EXIT_PIN;
        }
    }
    rc = ET_EXIT_OK;
    if (pk != NULL) {
        rc = et_add_key(in, file, pk);
        pk = NULL;
    }
    if (rc == ET_EXIT_OK && cert != NULL) {
        rc = et_add_cert(in, cert);
        cert = NULL;
    }
    while (rc == ET_EXIT_OK && ca != NULL && sk_X509_num(ca) > 0)
        rc = et_add_cert(in, sk_X509_shift(ca));
    if (rc == ET_EXIT_OK && in->nkeys == 0 && sk_X509_num(in->certs) == 0) {
        et_err("%s: the PKCS#12 file holds neither a key nor a certificate", file);
        rc = ET_EXIT_INPUT;
    }
    EVP_PKEY_free(pk);
    X509_free(cert);
    sk_X509_pop_free(ca, X509_free);
    return rc;
}

/* A private key from a PEM block (re-encoded so that OpenSSL's PEM reader
 * handles every variant: PKCS#8, encrypted PKCS#8, traditional with
 * Proc-Type/DEK-Info headers). */
static int
et_pem_key(et_input *in, const char *file, const char *name, const char *header,
           const unsigned char *data, long len, et_pass *pass)
{
    BIO *b = BIO_new(BIO_s_secmem());
    EVP_PKEY *pk = NULL;
    int rc = ET_EXIT_INPUT;
    char why[256];

    if (b == NULL)
        b = BIO_new(BIO_s_mem());
    if (b == NULL || PEM_write_bio(b, name, header, data, len) <= 0) {
        et_err("out of memory");
        rc = ET_EXIT_FAIL;
        goto done;
    }
    pk = PEM_read_bio_PrivateKey(b, NULL, et_pem_cb, pass);
    if (pk == NULL) {
        if (pass->rc != 0 && pass->rc != ET_EXIT_OK) {
            rc = pass->rc;
            ERR_clear_error();
            goto done;
        }
        et_openssl_reason(why, sizeof(why));
        if (pass->have) {
            et_err("%s: cannot decrypt the private key: wrong passphrase? (%s)", file, why);
            rc = ET_EXIT_PIN;
        } else {
            et_err("%s: malformed private key: %s", file, why);
        }
        goto done;
    }
    rc = et_add_key(in, file, pk);
done:
    BIO_free(b); /* secure-heap/memory BIO contents are cleared when freed */
    return rc;
}

static int
et_load_pem(et_input *in, const char *file, const unsigned char *buf, size_t len, et_pass *pass)
{
    BIO *b = BIO_new_mem_buf(buf, (int)len);
    int rc = ET_EXIT_OK, blocks = 0;

    if (b == NULL) {
        et_err("out of memory");
        return ET_EXIT_FAIL;
    }
    ERR_clear_error();
    while (rc == ET_EXIT_OK) {
        char *name = NULL, *header = NULL;
        unsigned char *data = NULL;
        long dlen = 0;
        const unsigned char *q;

        if (!PEM_read_bio(b, &name, &header, &data, &dlen)) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_REASON(e) == PEM_R_NO_START_LINE && blocks > 0) {
                ERR_clear_error();
                break;
            }
            ERR_clear_error();
            et_err("%s: malformed PEM (damaged base64 or missing END line)", file);
            rc = ET_EXIT_INPUT;
            break;
        }
        blocks++;
        q = data;
        if (strcmp(name, "CERTIFICATE") == 0 || strcmp(name, "X509 CERTIFICATE") == 0 ||
            strcmp(name, "TRUSTED CERTIFICATE") == 0) {
            X509 *x = strcmp(name, "TRUSTED CERTIFICATE") == 0 ? d2i_X509_AUX(NULL, &q, dlen)
                                                               : d2i_X509(NULL, &q, dlen);
            if (x == NULL) {
                ERR_clear_error();
                et_err("%s: PEM block %d (%s) is not a valid certificate", file, blocks, name);
                rc = ET_EXIT_INPUT;
            } else {
                rc = et_add_cert(in, x);
            }
        } else if (strcmp(name, "PKCS7") == 0 || strcmp(name, "CERTIFICATE CHAIN") == 0) {
            PKCS7 *p7 = d2i_PKCS7(NULL, &q, dlen);
            if (p7 == NULL) {
                ERR_clear_error();
                et_err("%s: PEM block %d (%s) is not valid PKCS#7", file, blocks, name);
                rc = ET_EXIT_INPUT;
            } else {
                rc = et_add_p7(in, file, p7);
                PKCS7_free(p7);
            }
        } else if (strstr(name, "PRIVATE KEY") != NULL) {
            rc = et_pem_key(in, file, name, header, data, dlen, pass);
        } else {
            et_err("%s: PEM block %d is a '%s', which cannot be imported (expected "
                   "CERTIFICATE, PRIVATE KEY or PKCS7)",
                   file, blocks, name);
            rc = ET_EXIT_INPUT;
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        if (data != NULL)
            OPENSSL_clear_free(data, (size_t)dlen);
    }
    BIO_free(b);
    return rc;
}

static int
et_load_der(et_input *in, const char *file, const unsigned char *buf, size_t len, et_pass *pass)
{
    const unsigned char *q;
    long l = (long)len;
    X509 *x;
    PKCS12 *p12;
    PKCS7 *p7;
    EVP_PKEY *pk;
    X509_SIG *p8;
    int rc;

    q = buf;
    x = d2i_X509(NULL, &q, l);
    if (x != NULL && q == buf + len)
        return et_add_cert(in, x);
    X509_free(x);

    q = buf;
    p12 = d2i_PKCS12(NULL, &q, l);
    if (p12 != NULL && q == buf + len) {
        ERR_clear_error();
        rc = et_load_p12(in, file, p12, pass);
        PKCS12_free(p12);
        return rc;
    }
    PKCS12_free(p12);

    q = buf;
    p7 = d2i_PKCS7(NULL, &q, l);
    if (p7 != NULL && q == buf + len) {
        ERR_clear_error();
        rc = et_add_p7(in, file, p7);
        PKCS7_free(p7);
        return rc;
    }
    PKCS7_free(p7);

    q = buf;
    pk = d2i_AutoPrivateKey(NULL, &q, l);
    if (pk != NULL && q == buf + len) {
        ERR_clear_error();
        return et_add_key(in, file, pk);
    }
    EVP_PKEY_free(pk);

    q = buf;
    p8 = d2i_X509_SIG(NULL, &q, l);
    if (p8 != NULL && q == buf + len) {
        PKCS8_PRIV_KEY_INFO *p8inf = NULL;
        ERR_clear_error();
        rc = et_pass_get(pass);
        if (rc == ET_EXIT_OK) {
            p8inf = PKCS8_decrypt(p8, (const char *)pass->s.buf, (int)pass->s.len);
            pk = p8inf ? EVP_PKCS82PKEY(p8inf) : NULL;
            PKCS8_PRIV_KEY_INFO_free(p8inf);
            if (pk == NULL) {
                et_err("%s: cannot decrypt the private key: wrong passphrase?", file);
                rc = ET_EXIT_PIN;
            } else {
                rc = et_add_key(in, file, pk);
            }
        }
        X509_SIG_free(p8);
        ERR_clear_error();
        return rc;
    }
    X509_SIG_free(p8);
    ERR_clear_error();
    et_err("%s: unrecognised content: not PEM, a DER certificate, PKCS#12, PKCS#7 or a DER "
           "private key",
           file);
    return ET_EXIT_INPUT;
}

int
et_load_buf(et_input *in, const char *file, const unsigned char *buf, size_t len, et_pass *pass)
{
    if (memmem(buf, len, "-----BEGIN ", 11) != NULL)
        return et_load_pem(in, file, buf, len, pass);
    return et_load_der(in, file, buf, len, pass);
}

int
et_load_file(et_input *in, const char *file, et_pass *pass)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    struct stat st;
    int fd, rc = ET_EXIT_INPUT;

    /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused
     * right below); reads of a regular file ignore the flag. */
    fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        et_err("cannot open %s: %s", file, strerror(errno));
        return ET_EXIT_INPUT;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        et_err("%s is not a regular file%s", file,
               S_ISFIFO(st.st_mode)  ? " (a FIFO)"
               : S_ISDIR(st.st_mode) ? " (a directory)"
                                     : "");
        goto done;
    }
    if (st.st_size == 0 || (unsigned long long)st.st_size > ET_IMPORT_MAX_FILE) {
        et_err("%s: %s", file, st.st_size == 0 ? "empty file" : "file too large to import");
        goto done;
    }
    /* The file may hold an unencrypted key: keep it in locked memory. */
    buf = et_secure_alloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        et_err("out of memory");
        rc = ET_EXIT_FAIL;
        goto done;
    }
    while (len < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + len, (size_t)st.st_size - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            et_err("reading %s: %s", file, r < 0 ? strerror(errno) : "file shrank");
            goto done;
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    rc = et_load_buf(in, file, buf, len, pass);
done:
    et_secure_free(buf);
    close(fd);
    return rc;
}
