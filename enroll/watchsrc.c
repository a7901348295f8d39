/*
 * watchsrc.c — where watched certificates come from (docs/monitoring.md
 * "Watch entries"): a PEM or DER file (the first certificate is the watched
 * one, the others its chain), the certificate files of a directory, the
 * certificates of a token (tokscan.c, no login), and the certificate a TLS
 * endpoint presents (OpenSSL, SNI, time-limited; the handshake only: the
 * checks are done on what it sent, by watch.c).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "mon.h"

static int
add(enr_wcert **v, size_t *n, const char *id, X509 *cert, STACK_OF(X509) * chain)
{
    enr_wcert *nv = realloc(*v, (*n + 1) * sizeof(*nv));

    if (nv == NULL) {
        X509_free(cert);
        sk_X509_pop_free(chain, X509_free);
        return -1;
    }
    *v = nv;
    nv[*n].id = enr_strdup(id);
    nv[*n].cert = cert;
    nv[*n].chain = chain ? chain : sk_X509_new_null();
    (*n)++;
    return 0;
}

/* Every certificate of a PEM file, or the one of a DER file. */
static STACK_OF(X509) * read_certs(const char *path)
{
    unsigned char *d = NULL;
    size_t len = 0;
    STACK_OF(X509) *sk = sk_X509_new_null();
    BIO *b;
    X509 *x;

    if (sk == NULL || enr_read_file(path, &d, &len) != 0) {
        sk_X509_free(sk);
        return NULL;
    }
    b = BIO_new_mem_buf(d, (int)len);
    while (b != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        sk_X509_push(sk, x);
    BIO_free(b);
    ERR_clear_error();
    if (sk_X509_num(sk) == 0) {
        const unsigned char *p = d;
        x = d2i_X509(NULL, &p, (long)len);
        if (x != NULL && p == d + len)
            sk_X509_push(sk, x);
        else
            X509_free(x);
    }
    free(d);
    if (sk_X509_num(sk) == 0) {
        enr_err("%s holds no certificate (PEM or DER)", path);
        sk_X509_free(sk);
        return NULL;
    }
    return sk;
}

static int
from_file(const char *id, const char *path, enr_wcert **v, size_t *n)
{
    STACK_OF(X509) *sk = read_certs(path);
    X509 *leaf;

    if (sk == NULL)
        return -1;
    leaf = sk_X509_shift(sk);
    return add(v, n, id, leaf, sk);
}

static int
cert_name(const char *name)
{
    size_t l = strlen(name);
    const char *ext[] = {".pem", ".crt", ".cer", ".der"};

    if (name[0] == '.')
        return 0;
    for (size_t i = 0; i < 4; i++)
        if (l > 4 && !strcasecmp(name + l - 4, ext[i]))
            return 1;
    return 0;
}

static int
by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int
from_dir(const enr_watch *w, enr_wcert **v, size_t *n)
{
    struct dirent **list = NULL;
    int k = scandir(w->source, &list, NULL, by_name), bad = 0;

    if (k < 0) {
        enr_err("cannot read the directory %s: %s", w->source, strerror(errno));
        return -1;
    }
    for (int i = 0; i < k; i++) {
        if (cert_name(list[i]->d_name)) {
            char *path = enr_aprintf("%s/%s", w->source, list[i]->d_name);
            char *id = enr_aprintf("%s/%s", w->name, list[i]->d_name);
            if (path == NULL || id == NULL || from_file(id, path, v, n) != 0)
                bad = 1;
            free(path);
            free(id);
        }
        free(list[i]);
    }
    free(list);
    return bad ? -1 : 0;
}

static int
from_token(const enr_watch *w, enr_wcert **v, size_t *n)
{
    enr_tokinfo ti;
    int k;

    if (enr_tokscan(w->module, w->source, 1, &ti) != ENR_OK)
        return -1;
    if (!ti.found) {
        enr_err("watch %s: no token matches %s", w->name, w->source);
        enr_tokinfo_clear(&ti);
        return -1;
    }
    k = sk_X509_num(ti.certs);
    for (int i = 0; i < k; i++) {
        X509 *x = sk_X509_value(ti.certs, i);
        char *id = ti.labels[i][0] ? enr_aprintf("%s/%s", w->name, ti.labels[i]) : NULL;
        STACK_OF(X509) *chain = sk_X509_new_null();
        /* The token's other certificates may be the chain. */
        for (int j = 0; chain != NULL && j < k; j++)
            if (j != i && X509_up_ref(sk_X509_value(ti.certs, j)))
                sk_X509_push(chain, sk_X509_value(ti.certs, j));
        if (id == NULL) {
            char *serial = enr_serial_hex(x);
            id = enr_aprintf("%s/%s", w->name, serial ? serial : "?");
            free(serial);
        }
        X509_up_ref(x);
        add(v, n, id ? id : w->name, x, chain);
        free(id);
    }
    enr_tokinfo_clear(&ti);
    return 0;
}

/* A TCP connection to HOST:PORT within TIMEOUT seconds (fd or -1). */
static int
connect_to(const char *host, const char *port, int timeout)
{
    struct addrinfo hints = {0}, *res = NULL;
    int fd = -1, r;

    hints.ai_socktype = SOCK_STREAM;
    r = getaddrinfo(host, port, &hints, &res);
    if (r != 0) {
        enr_err("cannot resolve %s: %s", host, gai_strerror(r));
        return -1;
    }
    for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
        struct pollfd pf;
        int err = 0;
        socklen_t el = sizeof(err);
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS)
            err = errno;
        else {
            pf.fd = fd;
            pf.events = POLLOUT;
            if (poll(&pf, 1, timeout * 1000) != 1)
                err = ETIMEDOUT;
            else
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        }
        if (err != 0) {
            enr_err("cannot connect to %s:%s: %s", host, port, strerror(err));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        struct timeval tv = {timeout, 0};
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    return fd;
}

static int
is_ip(const char *h)
{
    unsigned char b[16];

    return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

static int
from_tls(const enr_watch *w, enr_wcert **v, size_t *n)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    int fd = -1, rc = -1;
    const char *sni = w->sni ? w->sni : is_ip(w->host) ? NULL : w->host;

    if (ctx == NULL)
        return -1;
    /* Only the handshake: what the server presents is judged afterwards. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    fd = connect_to(w->host, w->port, w->timeout);
    if (fd < 0)
        goto done;
    ssl = SSL_new(ctx);
    if (ssl == NULL || !SSL_set_fd(ssl, fd) || (sni && !SSL_set_tlsext_host_name(ssl, sni)))
        goto done;
    if (SSL_connect(ssl) != 1) {
        unsigned long e = ERR_peek_last_error();
        enr_err("TLS handshake with %s:%s failed: %s", w->host, w->port,
                e ? ERR_reason_error_string(e) : "connection closed or timed out");
        ERR_clear_error();
        goto done;
    }
    X509 *peer = SSL_get1_peer_certificate(ssl);
    STACK_OF(X509) *sent = SSL_get_peer_cert_chain(ssl), *chain = sk_X509_new_null();
    if (peer == NULL) {
        enr_err("%s:%s presented no certificate", w->host, w->port);
        sk_X509_free(chain);
        goto done;
    }
    for (int i = 0; chain != NULL && i < sk_X509_num(sent); i++) {
        X509 *x = sk_X509_value(sent, i);
        if (X509_cmp(x, peer) != 0 && X509_up_ref(x))
            sk_X509_push(chain, x);
    }
    rc = add(v, n, w->name, peer, chain);
    SSL_shutdown(ssl);
done:
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    SSL_CTX_free(ctx);
    return rc;
}

enr_rc
enr_watch_collect(const enr_watch *w, enr_wcert **out, size_t *n)
{
    int r;

    *out = NULL;
    *n = 0;
    switch (w->kind) {
    case ENR_WATCH_FILE:
        r = from_file(w->name, w->source, out, n);
        break;
    case ENR_WATCH_DIR:
        r = from_dir(w, out, n);
        break;
    case ENR_WATCH_TOKEN:
        r = from_token(w, out, n);
        break;
    case ENR_WATCH_TLS:
        r = from_tls(w, out, n);
        break;
    default:
        r = -1;
    }
    return r == 0 ? ENR_OK : ENR_E_NETWORK;
}

void
enr_wcert_free(enr_wcert *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].id);
        X509_free(v[i].cert);
        sk_X509_pop_free(v[i].chain, X509_free);
    }
    free(v);
}
