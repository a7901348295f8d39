/*
 * inactive.c — `evertoken info`: the token's pending and retired objects
 * (credential rollover, docs/rollover.md) by name. They are stored but
 * invisible to PKCS#11 applications, which is why the stored-object count
 * is higher than what `list` shows.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "keystore.h"
#include "et_int.h"

struct inactive_ctx {
    unsigned retired, pending, shown;
};

static const char *
class_name(const ks_inactive *o)
{
    for (size_t i = 0; i < o->nattrs; i++) {
        CK_OBJECT_CLASS c;

        if (o->attrs[i].type != KS_ATTR_CLASS || o->attrs[i].len != sizeof(c))
            continue;
        memcpy(&c, o->attrs[i].value, sizeof(c));
        switch (c) {
        case CKO_CERTIFICATE:
            return "cert";
        case CKO_PUBLIC_KEY:
            return "pubkey";
        case CKO_PRIVATE_KEY:
            return "privkey";
        case CKO_SECRET_KEY:
            return "secret";
        case CKO_DATA:
            return "data";
        default:
            return "object";
        }
    }
    return o->is_private ? "private" : "object";
}

/* The label, printable bytes as they are and the rest as \xNN. */
static void
print_label(const ks_inactive *o)
{
    for (size_t i = 0; i < o->nattrs; i++) {
        if (o->attrs[i].type != KS_ATTR_LABEL)
            continue;
        putchar('\'');
        for (size_t j = 0; j < o->attrs[i].len; j++) {
            unsigned char ch = o->attrs[i].value[j];
            if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '\'')
                putchar(ch);
            else
                printf("\\x%02x", ch);
        }
        putchar('\'');
        return;
    }
    fputs(o->attrs != NULL ? "(no label)" : "(label needs a login)", stdout);
}

static int
inactive_cb(void *ctx, const ks_inactive *o)
{
    struct inactive_ctx *c = ctx;

    if (o->state == KS_RETIRED)
        c->retired++;
    else
        c->pending++;
    if (c->shown++ == 0)
        printf("  not active (rollover; invisible to applications):\n");
    printf("    %-8s %-8s ", o->state == KS_RETIRED ? "retired" : "pending", class_name(o));
    print_label(o);
    if (o->cred_len > 0) {
        fputs(" credential ", stdout);
        et_hex_print(stdout, o->cred, o->cred_len);
    }
    if (o->state == KS_RETIRED) {
        char when[32] = "?";
        time_t t = (time_t)o->retired_at;
        struct tm tm;
        if (gmtime_r(&t, &tm) != NULL)
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf(" since %s", when);
    }
    putchar('\n');
    return 0;
}

void
et_print_inactive(ks_token *tok)
{
    struct inactive_ctx c = {0};
    unsigned bad = 0;
    ks_rv kr = ks_list_inactive(tok, inactive_cb, &c, &bad);

    if (kr != KS_OK) {
        printf("  not active:       (cannot read: %s)\n", ks_strerror(kr));
        return;
    }
    if (c.shown == 0)
        printf("  not active:       none (no pending or retired objects)\n");
    else
        printf("    (%u retired, %u pending; retired ones are purged after the token's "
               "rollover_grace)\n",
               c.retired, c.pending);
    if (bad > 0)
        printf("    (%u malformed record%s skipped)\n", bad, bad == 1 ? "" : "s");
}
