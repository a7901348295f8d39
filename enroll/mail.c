/*
 * mail.c — e-mail through libcurl's SMTP (docs/monitoring.md "Mail"): a
 * message per notification ([mail] events) and a daily digest of what is
 * due, failing or expiring, both plain text with the status table. STARTTLS
 * (required unless starttls = no) or SMTPS, authentication with a password
 * from a file held in locked memory. A failure (server unreachable, login
 * refused) is logged and recorded, never retried in a loop, and never stops
 * what the helper does: mail goes out after the check's work is stored.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "mon.h"

static enr_ctx *mail_ctx;

void
enr_mail_set_ctx(enr_ctx *ctx)
{
    mail_ctx = ctx;
}

typedef struct upload {
    const char *p;
    size_t left;
} upload;

static size_t
read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
    upload *u = arg;
    size_t n = size * nitems;

    if (n > u->left)
        n = u->left;
    memcpy(buf, u->p, n);
    u->p += n;
    u->left -= n;
    return n;
}

/* TEXT with every line ending in CRLF (SMTP), appended to F. */
static void
crlf(FILE *f, const char *text)
{
    for (const char *c = text; *c; c++) {
        if (*c == '\n' && (c == text || c[-1] != '\r'))
            fputc('\r', f);
        fputc(*c, f);
    }
}

/* The whole message: headers, an empty line, the body. */
static char *
build(const enr_moncfg *c, const char *subject, const char *body, size_t *len)
{
    char date[64], host[256] = "localhost";
    time_t now = enr_now();
    struct tm tm;
    char *text = NULL;
    FILE *f = open_memstream(&text, len);

    if (f == NULL)
        return NULL;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    gethostname(host, sizeof(host) - 1);
    fprintf(f, "Date: %s\r\nFrom: evertoken-enroll <%s>\r\nTo: ", date, c->mail_from);
    for (size_t i = 0; i < c->n_mail_to; i++)
        fprintf(f, "%s<%s>", i ? ", " : "", c->mail_to[i]);
    fprintf(f,
            "\r\nSubject: %s\r\nMessage-ID: <%lld.%ld.evertoken-enroll@%s>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\nAuto-Submitted: auto-generated\r\n\r\n",
            subject, (long long)now, (long)getpid(), host);
    crlf(f, body);
    fclose(f);
    return text;
}

int
enr_mail_send(const enr_moncfg *c, const char *subject, const char *body)
{
    CURL *h;
    struct curl_slist *rcpt = NULL;
    enr_secret pw = {NULL, 0};
    char *msg, *from = NULL, err[CURL_ERROR_SIZE] = "";
    size_t len = 0;
    upload u;
    CURLcode r = CURLE_FAILED_INIT;

    if (c == NULL || c->smtp_url == NULL || c->n_mail_to == 0)
        return -1;
    if (c->smtp_password_file != NULL &&
        enr_secret_read_file(c->smtp_password_file, "SMTP password", &pw) != 0) {
        enr_warn("mail \"%s\" not sent: no SMTP password", subject);
        return -1;
    }
    msg = build(c, subject, body, &len);
    from = enr_aprintf("<%s>", c->mail_from);
    h = curl_easy_init();
    for (size_t i = 0; i < c->n_mail_to; i++) {
        char *a = enr_aprintf("<%s>", c->mail_to[i]);
        struct curl_slist *n = a ? curl_slist_append(rcpt, a) : NULL;
        free(a);
        if (n != NULL)
            rcpt = n;
    }
    if (h != NULL && msg != NULL && from != NULL && rcpt != NULL) {
        u.p = msg;
        u.left = len;
        curl_easy_setopt(h, CURLOPT_URL, c->smtp_url);
        curl_easy_setopt(h, CURLOPT_MAIL_FROM, from);
        curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(h, CURLOPT_READDATA, &u);
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)c->mail_timeout);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT,
                         (long)(c->mail_timeout < 10 ? c->mail_timeout : 10));
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
        /* smtps:// is TLS from the start; smtp:// upgrades with STARTTLS,
         * required unless the settings say starttls = no. */
        if (c->smtp_starttls)
            curl_easy_setopt(h, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
        curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
        if (c->smtp_anchors != NULL)
            curl_easy_setopt(h, CURLOPT_CAINFO, c->smtp_anchors);
        if (c->smtp_user != NULL) {
            curl_easy_setopt(h, CURLOPT_USERNAME, c->smtp_user);
            curl_easy_setopt(h, CURLOPT_PASSWORD, pw.buf ? pw.buf : "");
        }
        r = curl_easy_perform(h);
    }
    if (r != CURLE_OK) {
        long code = 0;
        if (h != NULL)
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        enr_warn("mail \"%s\" not sent through %s: %s (SMTP reply %ld)%s%s", subject, c->smtp_url,
                 curl_easy_strerror(r), code, err[0] ? ": " : "", err);
    } else {
        enr_debug("mail \"%s\" sent to %zu recipients", subject, c->n_mail_to);
    }
    curl_slist_free_all(rcpt);
    if (h != NULL)
        curl_easy_cleanup(h);
    enr_secret_free(&pw);
    free(from);
    free(msg);
    return r == CURLE_OK ? 0 : -1;
}

static int
is_problem(const char *event)
{
    return strcmp(event, "enrolled") && strcmp(event, "renewed") && strcmp(event, "hook-success") &&
           strcmp(event, "recovered");
}

/* The status table of every profile and watched certificate, into F. */
static void
status_table(FILE *f)
{
    if (mail_ctx == NULL || mail_ctx->st == NULL)
        return;
    fputs("\nStatus:\n\n", f);
    enr_status(mail_ctx, 0, f);
}

void
enr_mail_event(const char *profile, const enr_event *ev)
{
    const enr_moncfg *c = enr_moncfg_get();
    char host[256] = "localhost", na[32], *subject, *body = NULL;
    size_t blen = 0;
    FILE *f;

    if (c == NULL || c->smtp_url == NULL || c->mail_events == 0 ||
        (c->mail_events == 1 && !is_problem(ev->event)))
        return;
    gethostname(host, sizeof(host) - 1);
    subject = enr_aprintf("evertoken: %s (%s) on %s", ev->event, profile, host);
    f = open_memstream(&body, &blen);
    if (subject == NULL || f == NULL) {
        free(subject);
        if (f != NULL)
            fclose(f);
        free(body);
        return;
    }
    fprintf(f, "Host:     %s\nProfile:  %s\nEvent:    %s\nMessage:  %s\n", host, profile, ev->event,
            ev->message);
    if (ev->serial != NULL)
        fprintf(f, "Serial:   %s\n", ev->serial);
    if (ev->not_after > 0)
        fprintf(f, "Expires:  %s\n", enr_fmt_time(ev->not_after, na, sizeof(na)));
    if (ev->days_left >= 0)
        fprintf(f, "Days left: %d\n", ev->days_left);
    if (ev->uri != NULL)
        fprintf(f, "Token:    %s\n", ev->uri);
    status_table(f);
    fclose(f);
    enr_mail_send(c, subject, body);
    free(subject);
    free(body);
}

/* ---- the daily digest --------------------------------------------------- */

/* Today's digest time (UTC) for NOW. */
static time_t
digest_today(const enr_moncfg *c, time_t now)
{
    return now - now % ENR_DAY + (time_t)c->digest_hour * 3600 + (time_t)c->digest_min * 60;
}

time_t
enr_mail_digest_next(time_t now)
{
    const enr_moncfg *c = enr_moncfg_get();
    enr_counters k;
    time_t t;

    if (c == NULL || !c->digest || c->smtp_url == NULL || mail_ctx == NULL)
        return 0;
    enr_monitor_counters(mail_ctx->st, "mail:digest", &k);
    t = digest_today(c, now);
    if (k.last_check >= t)
        t += ENR_DAY;
    return t;
}

/* What needs attention: one line per profile or watched certificate whose
 * level is not fine. Returns how many. */
static int
attention(enr_ctx *ctx, FILE *f, time_t now)
{
    enr_profile **v = NULL;
    size_t n = 0, bad = 0, nw = 0;
    enr_wstate *w = NULL;
    int count = 0;

    if (enr_profile_load_dir(ctx->profile_dir, &v, &n, &bad) == ENR_OK)
        for (size_t i = 0; i < n; i++) {
            enr_pstate ps;
            int found;
            long days;
            const char *why;
            if (enr_state_get(ctx->st, v[i]->name, &ps, &found) != ENR_OK)
                continue;
            if (enr_status_level(v[i], &ps, now, &days, &why) > 0) {
                fprintf(f, "  profile %s: %s", v[i]->name, why);
                if (ps.cert_not_after)
                    fprintf(f, " (%ld days left)", days);
                if (ps.last_error)
                    fprintf(f, "; last error: %s", ps.last_error);
                fputc('\n', f);
                count++;
            }
            enr_pstate_clear(&ps);
        }
    if (bad > 0) {
        fprintf(f, "  %zu invalid profiles (evertoken-enroll validate)\n", bad);
        count++;
    }
    enr_profile_free_all(v, n);
    if (enr_wstate_list(ctx->st, &w, &nw) == ENR_OK)
        for (size_t i = 0; i < nw; i++)
            if (w[i].level > 0) {
                fprintf(f, "  watched %s: %s: %s\n", w[i].id, w[i].state,
                        w[i].detail ? w[i].detail : "");
                count++;
            }
    enr_wstate_free(w, nw);
    return count;
}

int
enr_mail_digest(enr_ctx *ctx, time_t now, int force, FILE *print)
{
    const enr_moncfg *c = enr_moncfg_get();
    char host[256] = "localhost", *subject, *body = NULL;
    size_t blen = 0;
    FILE *f;
    int n, r = 0;

    if (!force && (enr_mail_digest_next(now) == 0 || enr_mail_digest_next(now) > now))
        return 0;
    gethostname(host, sizeof(host) - 1);
    f = open_memstream(&body, &blen);
    if (f == NULL)
        return -1;
    fprintf(f, "Daily summary of evertoken-enroll on %s, %s.\n\n", host,
            enr_fmt_time(now, (char[32]){0}, 32));
    mail_ctx = ctx;
    n = attention(ctx, f, now);
    if (n == 0)
        fputs("Nothing needs attention: every certificate is valid and every check succeeds.\n", f);
    else
        fputs("\nThese need attention (due, failing or expiring).\n", f);
    status_table(f);
    fclose(f);
    subject = enr_aprintf("evertoken daily digest on %s: %d need%s attention", host, n,
                          n == 1 ? "s" : "");
    if (print != NULL)
        fprintf(print, "Subject: %s\n\n%s", subject ? subject : "", body ? body : "");
    else if (subject != NULL && body != NULL) {
        r = enr_mail_send(c, subject, body);
        enr_monitor_record(ctx->st, "mail:digest", r == 0 ? ENR_OK : ENR_E_NETWORK, now);
    }
    free(subject);
    free(body);
    return r;
}
