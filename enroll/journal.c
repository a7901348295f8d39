/*
 * journal.c — log lines and notifications as journald entries with
 * structured fields (sd_journal_send, libsystemd), so that
 * `journalctl --user -u evertoken-enroll PROFILE=vpn` finds a profile's
 * lines. Used when stderr is the journal (systemd sets $JOURNAL_STREAM to the
 * device and inode of that stream) or when EVERTOKEN_ENROLL_JOURNAL=1;
 * EVERTOKEN_ENROLL_JOURNAL=0 keeps plain stderr. When the journal does not
 * take an entry, the caller writes the stderr line as before. Fields:
 * PROFILE, EVENT, SERIAL, NOT_AFTER, DAYS_LEFT, PKCS11_URI, CERT_FILE (each
 * only when known), besides MESSAGE, PRIORITY and SYSLOG_IDENTIFIER.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>

#include <systemd/sd-journal.h>

#include "mon.h"

static int journal_state = -1; /* -1 unknown, 0 off, 1 on */

int
enr_journal_active(void)
{
    const char *force, *js;
    struct stat sb;
    unsigned long long dev, ino;

    if (journal_state >= 0)
        return journal_state;
    journal_state = 0;
    force = getenv("EVERTOKEN_ENROLL_JOURNAL");
    if (force != NULL && *force != '\0') {
        journal_state = !strcmp(force, "1");
        return journal_state;
    }
    /* systemd: JOURNAL_STREAM=DEV:INO of the journal stream it connected;
     * it is ours only if stderr still is that stream. */
    js = getenv("JOURNAL_STREAM");
    if (js != NULL && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &sb) == 0 &&
        (unsigned long long)sb.st_dev == dev && (unsigned long long)sb.st_ino == ino)
        journal_state = 1;
    return journal_state;
}

int
enr_journal_line(int prio, const char *msg)
{
    if (!enr_journal_active())
        return -1;
    return sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", prio,
                           "SYSLOG_IDENTIFIER=evertoken-enroll", NULL) == 0
               ? 0
               : -1;
}

/* Append "KEY=VALUE" to V (at most 12 fields) when VALUE is known. */
static void
field(struct iovec *v, int *n, char *bufs[], const char *key, const char *value)
{
    if (value == NULL || *value == '\0' || *n >= 12)
        return;
    bufs[*n] = enr_aprintf("%s=%s", key, value);
    if (bufs[*n] == NULL)
        return;
    v[*n].iov_base = bufs[*n];
    v[*n].iov_len = strlen(bufs[*n]);
    (*n)++;
}

int
enr_journal_event(int prio, const char *profile, const enr_event *ev)
{
    char na[32] = "", days[16] = "", pr[4], *msg, *bufs[12];
    struct iovec v[12];
    int n = 0, r;

    if (!enr_journal_active())
        return -1;
    if (ev->not_after > 0)
        enr_fmt_time(ev->not_after, na, sizeof(na));
    if (ev->days_left >= 0)
        snprintf(days, sizeof(days), "%d", ev->days_left);
    snprintf(pr, sizeof(pr), "%d", prio);
    msg = enr_aprintf("profile %s: %s: %s", profile, ev->event, ev->message);
    field(v, &n, bufs, "MESSAGE", msg);
    field(v, &n, bufs, "PRIORITY", pr);
    field(v, &n, bufs, "SYSLOG_IDENTIFIER", "evertoken-enroll");
    field(v, &n, bufs, "PROFILE", profile);
    field(v, &n, bufs, "EVENT", ev->event);
    field(v, &n, bufs, "SERIAL", ev->serial);
    field(v, &n, bufs, "NOT_AFTER", na);
    field(v, &n, bufs, "DAYS_LEFT", days);
    field(v, &n, bufs, "PKCS11_URI", ev->uri);
    field(v, &n, bufs, "CERT_FILE", ev->cert_file);
    r = msg != NULL && sd_journal_sendv(v, n) == 0 ? 0 : -1;
    for (int i = 0; i < n; i++)
        free(bufs[i]);
    free(msg);
    return r;
}
