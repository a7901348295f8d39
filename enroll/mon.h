/*
 * mon.h — monitoring in evertoken-enroll (docs/monitoring.md): the monitor
 * settings file (moncfg.c), check counters and the Prometheus text format
 * (metrics.c), journald structured fields (journal.c), e-mail through
 * libcurl's SMTP (mail.c), monitored-only certificates (watch.c) and a
 * read-only look into a token (tokscan.c: token flags, login cache,
 * certificates). They sit beside engine.c and status.c: the engine records
 * each check (enr_monitor_record), the notifications go to journald and mail
 * too, and status lists watch entries.
 */
#ifndef EVERTOKEN_ENROLL_MON_H
#define EVERTOKEN_ENROLL_MON_H

#include <stdio.h>
#include <time.h>

#include <openssl/x509.h>

#include "enr_int.h"

/* ---- moncfg.c ----------------------------------------------------------- */

/* What a watch entry looks at. */
typedef enum { ENR_WATCH_FILE = 1, ENR_WATCH_DIR, ENR_WATCH_TLS, ENR_WATCH_TOKEN } enr_watch_kind;

typedef struct enr_watch {
    char *name;   /* [watch NAME] */
    int kind;     /* enr_watch_kind */
    char *source; /* path, "host:port" or a PKCS#11 URI */
    char *host;   /* TLS: host and port */
    char *port;
    char *sni;        /* TLS: server name sent (default: host unless an IP address) */
    char *module;     /* token: PKCS#11 module (default: evertoken's) */
    char *anchors;    /* PEM trust anchors; NULL: the chain is not checked */
    char *expect;     /* TLS: "sha256:HEX" or "subject:CN=..." the served certificate must match */
    int warn_days[8]; /* expiry notices, descending */
    int n_warn;
    int revocation; /* enr_revpol */
    int revocation_timeout;
    int timeout; /* TLS: seconds to connect and handshake */
} enr_watch;

typedef struct enr_moncfg {
    char *path;         /* the settings file (it may not exist) */
    char *metrics_file; /* [metrics] metrics_file */
    /* [mail] */
    char *smtp_url;  /* smtp://host:port or smtps://host:port */
    char *mail_from; /* envelope and From: address */
    char **mail_to;  /* addresses (mailto: stripped) */
    size_t n_mail_to;
    char *smtp_user;
    char *smtp_password_file;
    char *smtp_anchors; /* PEM anchors for the server's certificate (default: system store) */
    int smtp_starttls;  /* 0 never, 1 required (default for smtp://) */
    int mail_events;    /* 0 none, 1 problems only, 2 every event */
    int digest;         /* daily digest on */
    int digest_hour, digest_min;
    int mail_timeout;
    enr_watch *watch;
    size_t n_watch;
} enr_moncfg;

/* $EVERTOKEN_ENROLL_CONFIG, else $XDG_CONFIG_HOME/evertoken/monitor.conf
 * (malloc'd). */
char *enr_moncfg_default_path(void);
/* Load PATH (a missing file at the default path is an empty configuration;
 * a missing file named explicitly, or a bad line, is ENR_E_CONFIG reported
 * as FILE:LINE: message). */
enr_rc enr_moncfg_load(const char *path, int explicit_path, enr_moncfg **out);
void enr_moncfg_free(enr_moncfg *c);
/* `watch add`: append [watch NAME] with SOURCE and the KEY=VALUE lines KV
 * to the settings file PATH (created if absent); the new file must load
 * (else nothing changes, the errors say why). */
enr_rc enr_moncfg_add_watch(const char *path, const char *name, const char *source, int nkv,
                            char **kv);
/* The configuration of this process (set by main; NULL: none). */
void enr_moncfg_set(enr_moncfg *c);
const enr_moncfg *enr_moncfg_get(void);

/* ---- metrics.c ---------------------------------------------------------- */

/* Count one check of NAME (a profile, or "watch:NAME") with result RC at NOW
 * (checks, failures, consecutive failures, last success). */
void enr_monitor_record(enr_state *st, const char *name, enr_rc rc, time_t now);
typedef struct enr_counters {
    long long checks, failures, consecutive;
    long long last_check, last_success;
} enr_counters;
void enr_monitor_counters(enr_state *st, const char *name, enr_counters *c);
/* Every metric in the Prometheus text format (docs/monitoring.md). */
int enr_metrics_render(enr_ctx *ctx, FILE *out);
/* Rewrite the metrics file of the configuration, if any (tmp + rename). */
void enr_metrics_update(enr_ctx *ctx);

/* ---- journal.c ---------------------------------------------------------- */

/* Running under systemd with stderr connected to the journal
 * ($JOURNAL_STREAM), or EVERTOKEN_ENROLL_JOURNAL=1. */
int enr_journal_active(void);
/* One log line (PRIO a syslog priority) to the journal; 0 sent, -1 not. */
int enr_journal_line(int prio, const char *msg);
/* A notification with its fields (PROFILE, EVENT, SERIAL, DAYS_LEFT, ...). */
int enr_journal_event(int prio, const char *profile, const enr_event *ev);

/* ---- mail.c ------------------------------------------------------------- */

/* The context whose status table mails carry (set by main). */
void enr_mail_set_ctx(enr_ctx *ctx);
/* A mail for one event, when [mail] asks for it; failures are logged only. */
void enr_mail_event(const char *profile, const enr_event *ev);
/* The daily digest: sent when due at NOW (once a day, after digest_time,
 * recorded as "mail:digest"; a failure waits for the next day) or FORCE;
 * PRINT non-NULL: written there instead of sent. 0 or -1 (logged). */
int enr_mail_digest(enr_ctx *ctx, time_t now, int force, FILE *print);
/* When the next digest is due (0: no digest configured). */
time_t enr_mail_digest_next(time_t now);
/* The service's monitoring round: the digest and the watch checks when due;
 * returns when the next is due (0: nothing configured). */
time_t enr_monitor_round(enr_ctx *ctx, time_t now);
/* Send SUBJECT/BODY to every [mail] to address; 0 sent, -1 failed (logged). */
int enr_mail_send(const enr_moncfg *c, const char *subject, const char *body);

/* ---- tokscan.c ---------------------------------------------------------- */

typedef struct enr_tokinfo {
    int found;              /* the token is present */
    int pin_locked;         /* CKF_USER_PIN_LOCKED */
    int pin_count_low;      /* CKF_USER_PIN_COUNT_LOW / FINAL_TRY */
    int login_cached;       /* 1 a login is usable, 0 not, -1 unknown */
    STACK_OF(X509) * certs; /* the token's certificates (public objects), when asked */
    char **labels;          /* their labels (same order) */
} enr_tokinfo;
/* Look into the token URI selects in MODULE without logging in. */
enr_rc enr_tokscan(const char *module, const char *uri, int want_certs, enr_tokinfo *ti);
void enr_tokinfo_clear(enr_tokinfo *ti);

/* ---- watch.c ------------------------------------------------------------ */

/* A certificate a watch entry yields: ID names it (entry, entry/label or
 * entry/file), CHAIN what the source gave besides it (intermediates). */
typedef struct enr_wcert {
    char *id;
    X509 *cert;
    STACK_OF(X509) * chain;
} enr_wcert;
/* watchsrc.c: the certificates of W (ENR_E_NETWORK when the source cannot
 * be read, reported). */
enr_rc enr_watch_collect(const enr_watch *w, enr_wcert **out, size_t *n);
void enr_wcert_free(enr_wcert *v, size_t n);
/* Check the watch entries named in ARGV (ARGC 0: all) now; notices, rows in
 * the state database, metrics file. Returns how many entries matched. */
int enr_watch_check(enr_ctx *ctx, int argc, char **argv, time_t now);
/* The service: every entry once a day; returns when the next check is due
 * (0: no entries). */
time_t enr_watch_run_due(enr_ctx *ctx, time_t now);
/* status: the watched certificates (of the entries named in ARGV; ARGC 0:
 * all) as a table after the profiles, or the ", "watched": [...]" member of
 * --json. Returns the worst level. */
int enr_watch_status(enr_ctx *ctx, int json, FILE *out, int argc, char **argv);
/* The watched certificates for status (table or JSON items) and metrics. */
typedef struct enr_wstate {
    char *entry;   /* watch entry name */
    char *id;      /* entry name, or entry/label or entry/file for several certificates */
    char *subject; /* subject of the certificate */
    char *serial;
    long long not_after, not_before;
    char *state;  /* valid, expiring, expired, revoked, untrusted, weak, unexpected, error */
    char *detail; /* why (a sentence) */
    int level;    /* 0 ok, 1 warning, 2 critical */
    long long last_check;
    int warned_days;
} enr_wstate;
/* Every watched certificate recorded in the state database. */
enr_rc enr_wstate_list(enr_state *st, enr_wstate **out, size_t *n);
void enr_wstate_free(enr_wstate *v, size_t n);

#endif /* EVERTOKEN_ENROLL_MON_H */
