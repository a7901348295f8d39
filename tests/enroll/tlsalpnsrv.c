/*
 * tlsalpnsrv.c — evertoken-enroll's tls-alpn-01 responder
 * (enroll/proto/acme_tlsalpn.c) on its own, for tests/enroll/acme_tlsalpn.sh
 * to knock at with `openssl s_client` outside a CA's validation:
 *
 *   tlsalpnsrv LISTEN IDENTIFIER KEYAUTH
 *
 * LISTEN as [acme] tls_alpn_listen ("127.0.0.1:5001"), IDENTIFIER as in an
 * authorization ("dns:www.example.org", "ip:127.0.0.1"). Prints "ready"
 * once listening, serves until its standard input closes, exits 0; exit 1
 * when the responder does not start.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "proto/acme.h"

int
main(int argc, char **argv)
{
    enr_acme_conf conf;
    enr_profile p;
    enr_acme_tlsalpn *h = NULL;
    char buf[64];

    if (argc != 4) {
        fprintf(stderr, "usage: tlsalpnsrv LISTEN IDENTIFIER KEYAUTH\n");
        return 2;
    }
    memset(&conf, 0, sizeof(conf));
    memset(&p, 0, sizeof(p));
    conf.tls_alpn_listen = argv[1];
    p.name = "tlsalpnsrv";
    p.acme = &conf;
    enr_set_verbose(2);
    if (enr_acme_tlsalpn_start(&p, &h) != ENR_OK ||
        enr_acme_tlsalpn_add(h, argv[2], argv[3]) != ENR_OK) {
        enr_acme_tlsalpn_stop(h);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    while (read(0, buf, sizeof(buf)) > 0)
        ;
    enr_acme_tlsalpn_stop(h);
    return 0;
}
