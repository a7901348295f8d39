/*
 * acme_hook.c — challenges answered by a program of the user's
 * ([acme] challenge_hook), as certbot's manual hooks work: dns-01 (a TXT
 * record at _acme-challenge.NAME), or any type the CA offers. The program
 * runs without a shell, first as
 *   HOOK deploy TYPE IDENTIFIER TOKEN KEY-AUTHORIZATION
 * before the helper tells the CA to validate, then as
 *   HOOK cleanup TYPE IDENTIFIER TOKEN KEY-AUTHORIZATION
 * after the validation (whatever its outcome), with the same values in
 * EVERTOKEN_ACME_ACTION, _TYPE, _IDENTIFIER, _TOKEN, _KEYAUTH and
 * EVERTOKEN_ACME_VALUE: what to publish (dns-01: the TXT record's value,
 * base64url(SHA-256(key authorization)); otherwise the key authorization),
 * and EVERTOKEN_PROFILE. A deploy that fails (exit status not 0) fails the
 * order with the program's output in the message.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "acme.h"

enr_rc
enr_acme_hook(const enr_profile *p, const char *action, const char *type, const char *ident,
              const char *token, const char *keyauth)
{
    unsigned char md[32];
    char *value = NULL, *out = NULL;
    char *env[8] = {NULL};
    int r;

    if (!strcmp(type, "dns-01")) {
        if (EVP_Digest(keyauth, strlen(keyauth), md, NULL, EVP_sha256(), NULL))
            value = enr_b64url(md, sizeof(md));
    } else {
        value = enr_strdup(keyauth);
    }
    env[0] = enr_aprintf("EVERTOKEN_ACME_ACTION=%s", action);
    env[1] = enr_aprintf("EVERTOKEN_ACME_TYPE=%s", type);
    env[2] = enr_aprintf("EVERTOKEN_ACME_IDENTIFIER=%s", ident);
    env[3] = enr_aprintf("EVERTOKEN_ACME_TOKEN=%s", token);
    env[4] = enr_aprintf("EVERTOKEN_ACME_KEYAUTH=%s", keyauth);
    env[5] = enr_aprintf("EVERTOKEN_ACME_VALUE=%s", value ? value : "");
    env[6] = enr_aprintf("EVERTOKEN_PROFILE=%s", p->name);
    {
        char *argv[] = {p->acme->challenge_hook, (char *)action,  (char *)type, (char *)ident,
                        (char *)token,           (char *)keyauth, NULL};
        r = value && env[6] ? enr_run_command(argv, (const char *const *)env, &out) : -1;
    }
    if (r != 0) {
        size_t l = out ? strlen(out) : 0;
        while (l > 0 && (out[l - 1] == '\n' || out[l - 1] == '\r'))
            out[--l] = '\0';
        if (!strcmp(action, "deploy"))
            enr_err("ACME: challenge_hook %s deploy %s %s failed (%d)%s%s", p->acme->challenge_hook,
                    type, ident, r, l ? ": " : "", l ? out : "");
        else
            enr_warn("ACME: challenge_hook %s cleanup %s %s failed (%d)%s%s",
                     p->acme->challenge_hook, type, ident, r, l ? ": " : "", l ? out : "");
    }
    for (int i = 0; i < 7; i++)
        free(env[i]);
    free(value);
    free(out);
    return r == 0 ? ENR_OK : ENR_E_REJECTED;
}
