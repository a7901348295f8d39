/*
 * acme_http01.c — the http-01 challenge (RFC 8555 section 8.3): the CA
 * fetches http://IDENTIFIER/.well-known/acme-challenge/TOKEN and expects
 * the key authorization (TOKEN "." thumbprint of the account key).
 *
 * Two ways, as the profile says: a built-in responder (libmicrohttpd, its
 * own thread, for the few seconds of the validation) on [acme] http_listen,
 * answering only those paths (404 for anything else); or, with [acme]
 * webroot, files written into WEBROOT/.well-known/acme-challenge/ for the
 * web server that already serves the name (mode 0644: the web server must
 * read them; a key authorization is not a secret), removed afterwards.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>

#include "acme.h"

#define PREFIX "/.well-known/acme-challenge/"
#define MAXTOK 100

struct enr_acme_http01 {
    const enr_profile *p;
    struct MHD_Daemon *d;
    pthread_mutex_t mu;
    char *tok[MAXTOK], *ka[MAXTOK];
    char *files[MAXTOK];
    int n;
};

static enum MHD_Result
answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
       const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    enr_acme_http01 *h = cls;
    struct MHD_Response *r;
    const char *body = NULL;
    unsigned int code = MHD_HTTP_NOT_FOUND;
    enum MHD_Result ret;

    (void)version;
    (void)upload;
    (void)upload_size;
    (void)con_cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return MHD_NO;
    pthread_mutex_lock(&h->mu);
    if (!strncmp(url, PREFIX, strlen(PREFIX)))
        for (int i = 0; i < h->n; i++)
            if (!strcmp(url + strlen(PREFIX), h->tok[i])) {
                body = h->ka[i];
                code = MHD_HTTP_OK;
            }
    r = MHD_create_response_from_buffer(body ? strlen(body) : 0, (void *)(body ? body : ""),
                                        MHD_RESPMEM_MUST_COPY);
    pthread_mutex_unlock(&h->mu);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/octet-stream");
    enr_debug("ACME http-01: %s %s: %u", method, url, code);
    ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

int
enr_acme_parse_listen(const char *v, struct sockaddr_storage *ss)
{
    const char *c = strrchr(v, ':');
    char host[64];
    size_t hl = c ? (size_t)(c - v) : 0;
    int port = c ? atoi(c + 1) : 0;
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    if (c == NULL || port <= 0 || port > 65535 || hl >= sizeof(host))
        return -1;
    memcpy(host, v, hl);
    host[hl] = '\0';
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        return inet_pton(AF_INET6, host + 1, &s6->sin6_addr) == 1 ? 0 : -1;
    }
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    if (hl == 0)
        return 0; /* any address */
    return inet_pton(AF_INET, host, &s4->sin_addr) == 1 ? 0 : -1;
}

enr_rc
enr_acme_http01_start(const enr_profile *p, enr_acme_http01 **out)
{
    enr_acme_http01 *h = calloc(1, sizeof(*h));
    const char *listen = p->acme && p->acme->http_listen ? p->acme->http_listen : "0.0.0.0:80";
    struct sockaddr_storage ss;

    *out = NULL;
    if (h == NULL)
        return ENR_E_FAIL;
    h->p = p;
    pthread_mutex_init(&h->mu, NULL);
    if (p->acme != NULL && p->acme->webroot != NULL) {
        char *dir = enr_aprintf("%s/.well-known/acme-challenge", p->acme->webroot);
        struct stat sb;
        if (dir == NULL || (stat(p->acme->webroot, &sb) != 0 || !S_ISDIR(sb.st_mode))) {
            enr_err("ACME http-01: the webroot %s is not a directory", p->acme->webroot);
            free(dir);
            enr_acme_http01_stop(h);
            return ENR_E_CONFIG;
        }
        {
            char *wk = enr_aprintf("%s/.well-known", p->acme->webroot);
            if (wk != NULL)
                mkdir(wk, 0755);
            free(wk);
        }
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            enr_err("ACME http-01: cannot create %s: %s", dir, strerror(errno));
            free(dir);
            enr_acme_http01_stop(h);
            return ENR_E_CONFIG;
        }
        free(dir);
        *out = h;
        return ENR_OK;
    }
    if (enr_acme_parse_listen(listen, &ss) != 0) {
        enr_err("ACME http-01: cannot use http_listen %s", listen);
        enr_acme_http01_stop(h);
        return ENR_E_CONFIG;
    }
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                                (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
                            0, NULL, NULL, answer, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned int)64, MHD_OPTION_END);
    if (h->d == NULL) {
        enr_err("ACME http-01: cannot listen on %s (in use, or a port below 1024 without the "
                "right to bind it; see [acme] http_listen and webroot)",
                listen);
        enr_acme_http01_stop(h);
        return ENR_E_CONFIG;
    }
    enr_info("profile %s: http-01 responder listening on %s", p->name, listen);
    *out = h;
    return ENR_OK;
}

enr_rc
enr_acme_http01_add(enr_acme_http01 *h, const char *token, const char *keyauth)
{
    enr_rc rc = ENR_OK;

    pthread_mutex_lock(&h->mu);
    if (h->n >= MAXTOK) {
        pthread_mutex_unlock(&h->mu);
        enr_err("ACME http-01: more than %d challenges in one order", MAXTOK);
        return ENR_E_REJECTED;
    }
    h->tok[h->n] = enr_strdup(token);
    h->ka[h->n] = enr_strdup(keyauth);
    if (h->p->acme != NULL && h->p->acme->webroot != NULL) {
        /* the token is base64url only (acme_json.c): a plain file name */
        char *f = enr_aprintf("%s/.well-known/acme-challenge/%s", h->p->acme->webroot, token);
        int fd = f ? open(f, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644) : -1;
        size_t l = strlen(keyauth);
        if (fd < 0 || write(fd, keyauth, l) != (ssize_t)l) {
            enr_err("ACME http-01: cannot write %s: %s", f ? f : "the challenge file",
                    strerror(errno));
            rc = ENR_E_CONFIG;
        }
        if (fd >= 0) {
            fchmod(fd, 0644);
            close(fd);
        }
        h->files[h->n] = f;
    }
    h->n++;
    pthread_mutex_unlock(&h->mu);
    return rc;
}

void
enr_acme_http01_stop(enr_acme_http01 *h)
{
    if (h == NULL)
        return;
    if (h->d != NULL)
        MHD_stop_daemon(h->d);
    for (int i = 0; i < h->n; i++) {
        if (h->files[i] != NULL)
            unlink(h->files[i]);
        free(h->files[i]);
        free(h->tok[i]);
        free(h->ka[i]);
    }
    pthread_mutex_destroy(&h->mu);
    free(h);
}
