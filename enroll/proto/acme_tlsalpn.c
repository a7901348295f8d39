/*
 * acme_tlsalpn.c — the tls-alpn-01 challenge (RFC 8737): the CA opens a TLS
 * connection to the identifier's port 443 (in tests: the CA's configured
 * port) offering only the ALPN protocol "acme-tls/1" and naming the
 * identifier in SNI (for an IP address, RFC 8738 section 6: its reverse
 * name, "4.3.2.1.in-addr.arpa" / "...ip6.arpa"). The answer is a
 * self-signed certificate with that single identifier as subjectAltName
 * and the critical acmeIdentifier extension (id-pe-acmeIdentifier,
 * 1.3.6.1.5.5.7.1.31) holding the SHA-256 of the key authorization.
 *
 * The built-in responder listens on [acme] tls_alpn_listen (default
 * 0.0.0.0:443) in its own thread for the few seconds of the validation,
 * one connection at a time (10 s of inactivity ends one). It refuses a
 * ClientHello without ALPN, with any protocol but acme-tls/1, or naming an
 * identifier it does not validate. Each challenge's certificate has its
 * own throwaway EC P-256 key made in software (OpenSSL), never in the
 * token: it proves nothing but control of the name during the validation
 * and is freed with the responder.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "acme.h"

#define MAXCH       100
#define ACME_TLS_1  "acme-tls/1"
#define ACME_ID_OID "1.3.6.1.5.5.7.1.31"

struct enr_acme_tlsalpn {
    const enr_profile *p;
    SSL_CTX *ctx;
    int lfd, stop[2];
    pthread_t th;
    int running;
    pthread_mutex_t mu;
    char *sni[MAXCH]; /* the SNI each certificate answers (lower case) */
    X509 *cert[MAXCH];
    EVP_PKEY *key[MAXCH];
    int n;
};

/* The SNI the CA sends for IDENT ("dns:NAME" or "ip:ADDRESS"): the name,
 * or the address's reverse name (RFC 8738 section 6). Malloc'd. */
static char *
sni_of(const char *ident)
{
    unsigned char a[16];
    char buf[80], *o = buf;

    if (!strncmp(ident, "dns:", 4))
        return enr_strdup(ident + 4);
    if (strncmp(ident, "ip:", 3) != 0)
        return NULL;
    if (inet_pton(AF_INET, ident + 3, a) == 1)
        return enr_aprintf("%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
    if (inet_pton(AF_INET6, ident + 3, a) != 1)
        return NULL;
    for (int i = 15; i >= 0; i--)
        o += snprintf(o, 5, "%x.%x.", a[i] & 0xf, a[i] >> 4);
    snprintf(o, sizeof(buf) - (size_t)(o - buf), "ip6.arpa");
    return enr_strdup(buf);
}

/* The subjectAltName of IDENT: one dNSName or one iPAddress. */
static GENERAL_NAMES *
san_of(const char *ident)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *g = NULL;

    if (gens == NULL)
        return NULL;
    if (!strncmp(ident, "dns:", 4)) {
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (s != NULL && ASN1_STRING_set(s, ident + 4, -1) && (g = GENERAL_NAME_new()) != NULL)
            GENERAL_NAME_set0_value(g, GEN_DNS, s);
        else
            ASN1_IA5STRING_free(s);
    } else if (!strncmp(ident, "ip:", 3)) {
        ASN1_OCTET_STRING *s = a2i_IPADDRESS(ident + 3);
        if (s != NULL && (g = GENERAL_NAME_new()) != NULL)
            GENERAL_NAME_set0_value(g, GEN_IPADD, s);
        else
            ASN1_OCTET_STRING_free(s);
    }
    if (g == NULL || !sk_GENERAL_NAME_push(gens, g)) {
        GENERAL_NAME_free(g);
        GENERAL_NAMES_free(gens);
        return NULL;
    }
    return gens;
}

/* The critical acmeIdentifier extension: extnValue is the DER of an
 * OCTET STRING holding SHA-256(KEYAUTH) (RFC 8737 section 3). */
static int
add_acme_identifier(X509 *x, const char *keyauth)
{
    unsigned char md[32], *der = NULL;
    ASN1_OBJECT *oid = OBJ_txt2obj(ACME_ID_OID, 1);
    ASN1_OCTET_STRING *inner = ASN1_OCTET_STRING_new(), *outer = ASN1_OCTET_STRING_new();
    X509_EXTENSION *ext = NULL;
    int len = -1, ok = 0;

    if (oid != NULL && inner != NULL && outer != NULL &&
        EVP_Digest(keyauth, strlen(keyauth), md, NULL, EVP_sha256(), NULL) &&
        ASN1_OCTET_STRING_set(inner, md, sizeof(md)))
        len = i2d_ASN1_OCTET_STRING(inner, &der);
    if (len > 0 && ASN1_OCTET_STRING_set(outer, der, len) &&
        (ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 1, outer)) != NULL)
        ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    OPENSSL_free(der);
    ASN1_OCTET_STRING_free(inner);
    ASN1_OCTET_STRING_free(outer);
    ASN1_OBJECT_free(oid);
    return ok ? 0 : -1;
}

/* The validation certificate for IDENT and KEYAUTH, self-signed by a new
 * software key (*KEY). */
static X509 *
make_cert(const char *ident, const char *keyauth, EVP_PKEY **key)
{
    X509 *x = X509_new();
    GENERAL_NAMES *san = san_of(ident);
    X509_NAME *nm = X509_NAME_new();
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    int ok;

    *key = EVP_EC_gen("P-256");
    ok = x != NULL && san != NULL && nm != NULL && *key != NULL &&
         RAND_bytes(serial, sizeof(serial)) == 1;
    if (ok) {
        serial[0] &= 0x7f;
        bn = BN_bin2bn(serial, sizeof(serial), NULL);
        ok =
            bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL &&
            X509_set_version(x, X509_VERSION_3) &&
            X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8,
                                       (const unsigned char *)"evertoken tls-alpn-01", -1, -1, 0) &&
            X509_set_subject_name(x, nm) && X509_set_issuer_name(x, nm) &&
            X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
            X509_gmtime_adj(X509_getm_notAfter(x), 7 * 24 * 3600) && X509_set_pubkey(x, *key) &&
            X509_add1_ext_i2d(x, NID_subject_alt_name, san, 0, 0) == 1 &&
            add_acme_identifier(x, keyauth) == 0 && X509_sign(x, *key, EVP_sha256()) > 0;
    }
    BN_free(bn);
    X509_NAME_free(nm);
    GENERAL_NAMES_free(san);
    if (!ok) {
        X509_free(x);
        EVP_PKEY_free(*key);
        *key = NULL;
        return NULL;
    }
    return x;
}

/* No ALPN extension at all: refused (the CA always offers acme-tls/1). */
static int
on_hello(SSL *s, int *al, void *arg)
{
    const unsigned char *e;
    size_t n;

    (void)arg;
    if (SSL_client_hello_get0_ext(s, TLSEXT_TYPE_application_layer_protocol_negotiation, &e, &n))
        return SSL_CLIENT_HELLO_SUCCESS;
    enr_debug("ACME tls-alpn-01: a ClientHello without ALPN refused");
    *al = SSL_AD_NO_APPLICATION_PROTOCOL;
    return SSL_CLIENT_HELLO_ERROR;
}

/* SNI: the certificate of the identifier named. */
static int
on_sni(SSL *s, int *al, void *arg)
{
    enr_acme_tlsalpn *h = arg;
    const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    int found = 0;

    pthread_mutex_lock(&h->mu);
    for (int i = 0; name != NULL && i < h->n && !found; i++)
        if (!strcasecmp(name, h->sni[i]))
            found =
                SSL_use_certificate(s, h->cert[i]) == 1 && SSL_use_PrivateKey(s, h->key[i]) == 1;
    pthread_mutex_unlock(&h->mu);
    enr_debug("ACME tls-alpn-01: SNI %s: %s", name ? name : "(none)",
              found ? "answered" : "refused");
    if (found)
        return SSL_TLSEXT_ERR_OK;
    *al = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* ALPN: acme-tls/1 or nothing (RFC 8737 section 3). */
static int
on_alpn(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
        unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x0a" ACME_TLS_1;
    unsigned char *sel = NULL;
    unsigned char sellen = 0;

    (void)s;
    (void)arg;
    if (SSL_select_next_proto(&sel, &sellen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED) {
        enr_debug("ACME tls-alpn-01: a ClientHello without acme-tls/1 refused");
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = sel;
    *outlen = sellen;
    return SSL_TLSEXT_ERR_OK;
}

/* One connection: the handshake, then close (nothing else is exchanged). */
static void
serve_one(enr_acme_tlsalpn *h, int fd)
{
    struct timeval tv = {10, 0};
    SSL *s = SSL_new(h->ctx);

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (s != NULL && SSL_set_fd(s, fd) == 1) {
        if (SSL_accept(s) == 1) {
            enr_debug("ACME tls-alpn-01: handshake for %s done",
                      SSL_get_servername(s, TLSEXT_NAMETYPE_host_name));
            SSL_shutdown(s);
        }
    }
    SSL_free(s);
    ERR_clear_error();
    close(fd);
}

/* A CA closing the connection at once (as RFC 8737 tells it to) makes our
 * writes fail with EPIPE: SIGPIPE is blocked in this thread, and any
 * pending one dropped before the thread ends. */
static void *
loop(void *arg)
{
    enr_acme_tlsalpn *h = arg;
    sigset_t pipe_set;
    struct timespec zero = {0, 0};

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    for (;;) {
        struct pollfd pf[2] = {{h->lfd, POLLIN, 0}, {h->stop[0], POLLIN, 0}};
        int fd;
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pf[1].revents != 0)
            break;
        fd = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            serve_one(h, fd);
    }
    while (sigtimedwait(&pipe_set, NULL, &zero) == SIGPIPE)
        ;
    ERR_clear_error();
    OPENSSL_thread_stop();
    return NULL;
}

static SSL_CTX *
new_ctx(enr_acme_tlsalpn *h)
{
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());

    if (c == NULL || !SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION)) {
        SSL_CTX_free(c);
        return NULL;
    }
    SSL_CTX_set_client_hello_cb(c, on_hello, h);
    SSL_CTX_set_tlsext_servername_callback(c, on_sni);
    SSL_CTX_set_tlsext_servername_arg(c, h);
    SSL_CTX_set_alpn_select_cb(c, on_alpn, h);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
    return c;
}

static int
open_listener(const struct sockaddr_storage *ss)
{
    int one = 1;
    socklen_t l =
        ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, l) != 0 || listen(fd, 16) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

enr_rc
enr_acme_tlsalpn_start(const enr_profile *p, enr_acme_tlsalpn **out)
{
    enr_acme_tlsalpn *h = calloc(1, sizeof(*h));
    const char *listen =
        p->acme && p->acme->tls_alpn_listen ? p->acme->tls_alpn_listen : "0.0.0.0:443";
    struct sockaddr_storage ss;

    *out = NULL;
    if (h == NULL)
        return ENR_E_FAIL;
    h->p = p;
    h->lfd = h->stop[0] = h->stop[1] = -1;
    pthread_mutex_init(&h->mu, NULL);
    if (enr_acme_parse_listen(listen, &ss) != 0) {
        enr_err("ACME tls-alpn-01: cannot use tls_alpn_listen %s", listen);
        enr_acme_tlsalpn_stop(h);
        return ENR_E_CONFIG;
    }
    if ((h->ctx = new_ctx(h)) == NULL || pipe2(h->stop, O_CLOEXEC) != 0) {
        enr_err("ACME tls-alpn-01: cannot set up the responder");
        enr_acme_tlsalpn_stop(h);
        return ENR_E_FAIL;
    }
    if ((h->lfd = open_listener(&ss)) < 0) {
        enr_err("ACME tls-alpn-01: cannot listen on %s: %s (in use, or a port below 1024 without "
                "the right to bind it; see [acme] tls_alpn_listen)",
                listen, strerror(errno));
        enr_acme_tlsalpn_stop(h);
        return ENR_E_CONFIG;
    }
    if (pthread_create(&h->th, NULL, loop, h) != 0) {
        enr_err("ACME tls-alpn-01: cannot start the responder's thread");
        enr_acme_tlsalpn_stop(h);
        return ENR_E_FAIL;
    }
    h->running = 1;
    enr_info("profile %s: tls-alpn-01 responder listening on %s", p->name, listen);
    *out = h;
    return ENR_OK;
}

enr_rc
enr_acme_tlsalpn_add(enr_acme_tlsalpn *h, const char *ident, const char *keyauth)
{
    EVP_PKEY *key = NULL;
    char *sni = sni_of(ident);
    X509 *x = sni ? make_cert(ident, keyauth, &key) : NULL;

    if (x == NULL) {
        enr_err("ACME tls-alpn-01: cannot make the validation certificate for %s", ident);
        free(sni);
        return sni ? ENR_E_FAIL : ENR_E_REJECTED;
    }
    pthread_mutex_lock(&h->mu);
    if (h->n >= MAXCH) {
        pthread_mutex_unlock(&h->mu);
        enr_err("ACME tls-alpn-01: more than %d challenges in one order", MAXCH);
        X509_free(x);
        EVP_PKEY_free(key);
        free(sni);
        return ENR_E_REJECTED;
    }
    h->sni[h->n] = sni;
    h->cert[h->n] = x;
    h->key[h->n] = key;
    h->n++;
    pthread_mutex_unlock(&h->mu);
    return ENR_OK;
}

void
enr_acme_tlsalpn_stop(enr_acme_tlsalpn *h)
{
    if (h == NULL)
        return;
    if (h->running) {
        ssize_t w = write(h->stop[1], "x", 1);
        (void)w;
        pthread_join(h->th, NULL);
    }
    if (h->lfd >= 0)
        close(h->lfd);
    for (int i = 0; i < 2; i++)
        if (h->stop[i] >= 0)
            close(h->stop[i]);
    for (int i = 0; i < h->n; i++) {
        free(h->sni[i]);
        X509_free(h->cert[i]);
        EVP_PKEY_free(h->key[i]);
    }
    SSL_CTX_free(h->ctx);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
