/*
 * integrity.c — what a process's view of a token leaves out, reported
 * without debug mode (docs/module.md, "Integrity reports").
 *
 * Stored objects that fail their integrity check (a MAC or AEAD that does
 * not verify, checked while logged in) are hidden from the view, and
 * settings stored without a MAC (or with one that does not verify) are
 * ignored. Both used to show only in the EVERTOKEN_DEBUG log. Now:
 *   - the count is kept per token (hidden objects at the last load) and
 *     handed out by ET_GetIntegrity of the vendor interface, which the CLI
 *     prints (`evertoken list`, `info`, `settings`);
 *   - the first occurrence of each kind in a process goes to syslog
 *     (LOG_USER, warning), once per process: an application that never asks
 *     still leaves a trace in the journal.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <syslog.h>

#include "evertoken_ext.h"
#include "mod_int.h"

/* Reported to syslog already in this process (under the module lock). */
static int said_hidden, said_setting;

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
report(const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* No openlog: the application's identity and facility stay its own. */
    syslog(LOG_USER | LOG_WARNING, "evertoken: %s (further reports in this process are omitted)",
           msg);
    mod_log("%s", msg);
}

void
integrity_hidden_inlock(struct mod_token *t, unsigned tampered, int full_load)
{
    if (full_load)
        t->hidden = tampered;
    else
        t->hidden += tampered;
    if (tampered > 0 && !said_hidden) {
        said_hidden = 1;
        report("slot %u (%s): %u stored object(s) failed their integrity check and are hidden",
               (unsigned)t->slot, t->ks != NULL ? ks_path(t->ks) : "?", tampered);
    }
}

void
integrity_setting_refused_inlock(struct mod_token *t, const char *key, const char *why)
{
    if (said_setting)
        return;
    said_setting = 1;
    report("slot %u (%s): setting %s %s: not authenticated, ignored", (unsigned)t->slot,
           t->ks != NULL ? ks_path(t->ks) : "?", key, why);
}

/* 1 if setting KEY is stored but refused (no MAC, or a MAC that fails). */
static int
setting_refused_inlock(struct mod_token *t, const char *key)
{
    char *v = NULL;
    int auth = 0, has_mac = 0;
    ks_rv kr = ks_get_setting_ex(t->ks, key, &v, &auth, &has_mac);

    free(v);
    return kr == KS_E_TAMPERED || (kr == KS_OK && !has_mac);
}

CK_RV
ext_GetIntegrity(CK_SLOT_ID slot, CK_ULONG *hidden, CK_ULONG *refused)
{
    static const char *const keys[] = {ET_SETTING_LOGIN_CACHE, ET_SETTING_ROLLOVER_GRACE};
    struct mod_token *t = NULL;
    CK_ULONG n = 0;
    CK_RV rv;

    if (!mod_ready())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    mod_lock();
    rv = slot_lookup_inlock(slot, &t);
    if (rv == CKR_OK)
        rv = tok_usable_inlock(t);
    if (rv != CKR_OK) {
        mod_unlock();
        return rv;
    }
    tok_lock_relock(t); /* T stays (busy) and open (only idle tokens close) */
    /* A full load counts exactly what fails now (an incremental one only
     * sees the records that changed). */
    cache_drop_inlock(t);
    rv = cache_sync_full_relock(t);
    if (rv == CKR_OK) {
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            n += (CK_ULONG)setting_refused_inlock(t, keys[i]);
        if (hidden != NULL)
            *hidden = t->hidden;
        if (refused != NULL)
            *refused = n;
    }
    tok_unlock_inlock(t);
    mod_unlock();
    return rv;
}
