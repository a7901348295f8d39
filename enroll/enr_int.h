/*
 * enr_int.h — internal interfaces of evertoken-enroll, the enrollment and
 * renewal helper.
 *
 * Layers, bottom up: util.c (log, clock, secrets, files), http.c (the one
 * HTTP layer, libcurl), profile.c (INI profiles), state.c (the helper's
 * SQLite state), sched.c (daily times, retry), schedule.c ([schedule]), the
 * token side (PKCS#11; token_int.h: token.c URI and login, token_obj.c
 * objects and key generation with libp11 for token-backed EVP_PKEYs,
 * rollover.c the rollover by standard calls, rollover_native.c evertoken's
 * own), certcheck.c (issued-certificate checks, OCSP/CRL), chain.c (the CA
 * chain: token, PEM files, learned anchors), expiry.c (expiry state and
 * warnings), drift.c (profile changes), adopt.c (adopt an imported
 * credential), proto/ (the
 * protocols behind one interface, proto/proto.h: scep.c RFC 8894, est.c RFC
 * 7030, cmp.c RFC 9810 on OpenSSL's CMP client, acme*.c RFC 8555 with jws.c),
 * hooks.c (post-processing
 * script, notifications), engine.c (the check/enroll/renew state machine,
 * protocol-blind), status.c and main.c (the CLI). docs/enrollment.md is the
 * user-facing description of everything here. The monitoring (metrics,
 * journald, mail, watch entries) has its own header, mon.h.
 */
#ifndef EVERTOKEN_ENROLL_ENR_INT_H
#define EVERTOKEN_ENROLL_ENR_INT_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include <openssl/x509.h>

/* Exit codes of the one-shot commands (docs/enrollment.md). */
enum {
    ENR_EXIT_OK = 0,
    ENR_EXIT_FAIL = 1,    /* the operation failed */
    ENR_EXIT_USAGE = 2,   /* bad command line */
    ENR_EXIT_CONFIG = 3,  /* a profile is invalid */
    ENR_EXIT_NETWORK = 4, /* the CA could not be reached (retried by the service) */
    ENR_EXIT_PENDING = 5, /* the CA holds the request (PENDING) */
    ENR_EXIT_TOKEN = 6,   /* token absent, PIN needed or wrong */
    ENR_EXIT_REJECTED = 7 /* the CA refused, or its answer failed the checks */
};

/* Result of one check; maps to the exit codes above. */
typedef enum {
    ENR_OK = 0,
    ENR_E_FAIL,
    ENR_E_CONFIG,
    ENR_E_NETWORK,
    ENR_E_PENDING,
    ENR_E_TOKEN,
    ENR_E_PIN,       /* PIN needed: no PIN source and the token is not unlocked */
    ENR_E_PIN_WRONG, /* the PIN was refused or is locked (never retried by itself) */
    ENR_E_REJECTED
} enr_rc;

int enr_rc_exit(enr_rc rc);
const char *enr_rc_name(enr_rc rc);

/* ---- util.c ------------------------------------------------------------- */

void enr_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void enr_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void enr_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void enr_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void enr_set_verbose(int v);
/* Last error message recorded by enr_err (for the state database). */
const char *enr_last_error(void);
void enr_clear_error(void);
/* Print OpenSSL's error queue as debug lines and clear it. */
void enr_ssl_errors(void);

/*
 * The injectable clock. Real time unless EVERTOKEN_ENROLL_FAKE_TIME
 * (epoch seconds or YYYY-MM-DDTHH:MM:SSZ) or --now set it; the service loop
 * in simulation (run --until) advances it instead of sleeping.
 */
time_t enr_now(void);
void enr_clock_set(time_t t);
int enr_clock_is_fake(void);
/* Parse epoch seconds, "@epoch" or "YYYY-MM-DD[THH:MM[:SS]][Z]" (UTC). */
int enr_parse_time(const char *s, time_t *out);
/* "YYYY-MM-DDTHH:MM:SSZ" into BUF (at least 21 bytes); "-" for 0. */
const char *enr_fmt_time(time_t t, char *buf, size_t n);
/* An ASN1_TIME (a certificate's notBefore/notAfter) as a time_t; 0 when
 * it cannot be read. */
time_t enr_asn1_time(const ASN1_TIME *t);
/* A certificate's serial number in upper-case hex (malloc'd), NULL when out
 * of memory. */
char *enr_serial_hex(X509 *x);

/* A secret in locked memory (et_secure_alloc, common/et_secret.h),
 * NUL-terminated. */
typedef struct enr_secret {
    char *buf;
    size_t len;
} enr_secret;
/* The first line of the regular file PATH (common/et_secret.h: the line
 * ending dropped; empty, or longer than ET_SECRET_MAX, is an error); a file
 * group/world-readable is read with a warning. WHAT names it in messages. */
int enr_secret_read_file(const char *path, const char *what, enr_secret *out);
int enr_secret_copy(const char *s, size_t n, enr_secret *out);
void enr_secret_free(enr_secret *s);

/* mkdir -p with mode 0700 for every created component; checks the last one
 * is a directory not writable by others. */
int enr_mkdir_private(const char *path);
/* Write DATA atomically (tmp + rename) with mode 0600. */
int enr_write_file(const char *path, const void *data, size_t len);
/* Read a whole file (max 16 MiB) into malloc'd memory (NUL-terminated). */
int enr_read_file(const char *path, unsigned char **data, size_t *len);
char *enr_strdup(const char *s);
/* asprintf that aborts nothing: NULL on failure. */
char *enr_aprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Lower-case hex of N bytes into a malloc'd string. */
char *enr_hex(const unsigned char *b, size_t n);

/* ---- http.c ------------------------------------------------------------- */

/* The one limit on any HTTP answer (protocols, OCSP, CRL). */
#define ENR_HTTP_MAX (8u << 20)

/* A kept HTTP connection (libcurl handle; keep-alive between requests). */
typedef struct enr_http_conn enr_http_conn;
enr_http_conn *enr_http_conn_new(void);
void enr_http_conn_free(enr_http_conn *h);
/*
 * GET (BODY NULL) or POST BODY of type CTYPE to URL within TIMEOUT seconds.
 * 200: *RESP (malloc'd, NUL-terminated), *RLEN, *RCTYPE (malloc'd or NULL).
 * No answer or 5xx: ENR_E_NETWORK; another status or an answer above
 * ENR_HTTP_MAX: ENR_E_REJECTED. Each failure is reported.
 */
/* One request as the protocols describe it (enr_http_send). */
typedef struct enr_http_req {
    const char *url;
    const char *ctype;          /* Content-Type of BODY */
    const char *const *headers; /* further request headers of a POST, NULL-terminated, or NULL */
    const unsigned char *body;  /* POST BODY (BLEN bytes); NULL: GET */
    size_t blen;
    int timeout;         /* seconds for the whole exchange (connecting: at most 10) */
    size_t max;          /* answer limit; 0: ENR_HTTP_MAX */
    const char *ca_blob; /* https only, TLS 1.2+, server verified against these PEM anchors only */
    size_t ca_len;
    /* TLS client authentication (e.g. by a token key): called with the
     * OpenSSL SSL_CTX of the connection; 0 or -1. */
    int (*tls_client)(void *ssl_ctx, void *arg);
    void *tls_arg;
    const char *user, *password; /* HTTP basic authentication when USER */
    void (*on_header)(const char *line, size_t n, void *arg); /* each answer header line */
    void *header_arg;
} enr_http_req;

/* What came back; enr_http_ans_clear frees it. */
typedef struct enr_http_ans {
    long code;           /* HTTP status */
    unsigned char *body; /* NUL-terminated, N bytes (NULL when empty) */
    size_t n, max;
    char *ctype;
    int too_big;     /* the answer passed the limit (not read further) */
    int curl_code;   /* libcurl's result (CURLE_OK: an HTTP answer came) */
    char error[256]; /* libcurl's reason when no answer came */
} enr_http_ans;

/*
 * Send RQ on H and read the answer without judging its status (the caller
 * does). ENR_OK when an HTTP answer came; else ENR_E_REJECTED (answer above
 * the limit, TLS server or client authentication failed) or ENR_E_NETWORK,
 * with ANS->error and ANS->curl_code, nothing reported yet.
 */
enr_rc enr_http_send(enr_http_conn *h, const enr_http_req *rq, enr_http_ans *ans);
void enr_http_ans_clear(enr_http_ans *a);
/* One request on a connection of its own (SCEP, OCSP, CRL). */
enr_rc enr_http(const char *url, const char *ctype, const unsigned char *body, size_t blen,
                int timeout, unsigned char **resp, size_t *rlen, char **rctype);
enr_rc enr_http_exchange(enr_http_conn *h, const char *url, const char *ctype,
                         const unsigned char *body, size_t blen, int timeout, unsigned char **resp,
                         size_t *rlen, char **rctype);

/* ---- profile.c, profile_keys.c ------------------------------------------ */

typedef enum { ENR_PROTO_SCEP = 1, ENR_PROTO_EST, ENR_PROTO_CMP, ENR_PROTO_ACME } enr_proto;
typedef enum { ENR_KEY_RSA = 1, ENR_KEY_EC } enr_keytype;
/* How closely an issued certificate's subject ([certificate] subject_match)
 * and SANs (san_match) must follow the request (docs/enrollment.md). */
typedef enum {
    ENR_MATCH_EXACT = 0, /* the same attributes and values (any order) / the same names */
    ENR_MATCH_CN,        /* subject: the requested CN; the CA chooses the rest */
    ENR_MATCH_SUBSET,    /* SANs: only requested names (the CA may drop some) */
    ENR_MATCH_ANY        /* not compared (key, chain and validity still are) */
} enr_match;
/* What an unreachable revocation source means ([renewal] revocation). */
typedef enum {
    ENR_REVPOL_SOFT = 0, /* "unknown": warned, never blocks (the default) */
    ENR_REVPOL_HARD,     /* a network failure: the check is retried */
    ENR_REVPOL_OFF       /* revocation is not checked */
} enr_revpol;
/* Default seconds for one OCSP or CRL fetch ([renewal] revocation_timeout). */
#define ENR_REVOCATION_TIMEOUT 10
/* Key parameters written in the profile (else defaults an EST server's
 * /csrattrs may choose). */
enum { ENR_KEYSET_TYPE = 1, ENR_KEYSET_SIZE = 2, ENR_KEYSET_CURVE = 4 };

typedef struct enr_profile {
    char *name; /* file name without ".conf" */
    char *path; /* the profile file */
    /* [ca] */
    char *url;
    enr_proto proto;
    char *anchors;     /* PEM file of trust anchors */
    char *secret_file; /* enrollment secret (SCEP challenge, EST password or code), never inline */
    char *est_label;   /* EST: optional label segment (/.well-known/est/<label>/...) */
    char *username;    /* EST: HTTP basic user name (password in secret_file) */
    char *bootstrap;   /* EST, CMP: label of a bootstrap credential in the token */
    char *reference;   /* CMP: reference (senderKID) of the MAC secret in secret_file */
    char *recipient;   /* CMP: the CA's name ("CN=...": recipient, expected sender) */
    X509_NAME *recipient_name;
    int implicit_confirm;       /* CMP: ask for implicit confirmation (no certConf) */
    int poll_interval;          /* seconds between polls while PENDING */
    int poll_max;               /* polls in one check before giving up for now */
    int http_timeout;           /* seconds */
    struct enr_acme_conf *acme; /* [acme] (proto/acme.h), NULL when absent */
    /* [certificate] */
    char *subject; /* "CN=alice,O=Example" */
    X509_NAME *subject_name;
    char *san;    /* "DNS:a.example,email:x@y,IP:10.0.0.1,URI:..." */
    int key_type; /* enr_keytype */
    int key_bits; /* RSA modulus bits */
    char *curve;  /* EC curve name (P-256, P-384, P-521) */
    int key_set;  /* ENR_KEYSET_*: what the profile file itself fixes */
    int allow_duplicate;
    int subject_match; /* enr_match: exact (default), cn, any */
    int san_match;     /* enr_match: exact (default), subset, any */
    /* [token] */
    char *token_uri;      /* RFC 7512 URI selecting token and credential */
    char *module;         /* PKCS#11 module path */
    char *pin_file;       /* user PIN; else the URI's pin-source; else none */
    char *label;          /* credential label (URI object=, default name) */
    unsigned char id[64]; /* credential CKA_ID (URI id=, default derived) */
    size_t id_len;
    /* [renewal] */
    int window_days;        /* renew when fewer days remain (-1 unset) */
    double window_fraction; /* renew when less than this part of the lifetime remains (<0 unset) */
    int rekey;              /* new key pair on renewal (default) */
    long grace_period;      /* seconds the old key stays (hidden) after renewal */
    int warn_days[8];       /* expiry warnings, descending */
    int n_warn;
    int revocation;         /* enr_revpol; default from $EVERTOKEN_ENROLL_REVOCATION, else soft */
    int revocation_timeout; /* seconds for one OCSP/CRL fetch */
    /* [schedule] (schedule.c) */
    int sched_start, sched_end; /* window: minutes of the local day; -1 unset */
    long sched_interval;        /* seconds between checks; 0: daily */
    /* [hooks] */
    char *post_script;
    char *notify_command;
    char *instructions;
} enr_profile;

/*
 * Load and validate one profile file. Errors are reported as
 * "FILE:LINE: message" and return ENR_E_CONFIG. The profile name is the file
 * name without a ".conf" suffix.
 */
enr_rc enr_profile_load(const char *path, enr_profile **out);
/* profile_keys.c: read the keys of the file PATH into P (relative paths
 * against DIR, may be NULL), each error reported as "FILE:LINE: message";
 * *REV_SET: [renewal] revocation was given. 0, or -1 after an error. */
int enr_profile_parse(const char *path, const char *dir, enr_profile *p, int *rev_set);
void enr_profile_free(enr_profile *p);
/* "hard", "soft" or "off" into *OUT (enr_revpol); -1 for anything else. */
int enr_parse_revpol(const char *v, int *out);
/* The name of a revocation policy (enr_revpol), for messages. */
const char *enr_revpol_name(int pol);
/* Directory of profiles: --profiles, $EVERTOKEN_ENROLL_PROFILES,
 * $XDG_CONFIG_HOME/evertoken/profiles. Malloc'd. */
char *enr_profile_dir(const char *override);
/* All *.conf in DIR sorted by name; stops at nothing: bad profiles are
 * reported and counted in *BAD. */
enr_rc enr_profile_load_dir(const char *dir, enr_profile ***out, size_t *n, size_t *bad);
void enr_profile_free_all(enr_profile **v, size_t n);
/* Renewal window start for a certificate valid NB..NA. */
time_t enr_profile_window_start(const enr_profile *p, time_t nb, time_t na);

/* ---- state.c ------------------------------------------------------------ */

typedef struct enr_state enr_state;

/* Per-profile state row (strings malloc'd, freed by enr_pstate_clear). */
typedef struct enr_pstate {
    char *profile;
    long long first_start; /* when the profile was first seen */
    long long enroll_time; /* first scheduled enrollment check (its time of day repeats) */
    long long renew_time;  /* first scheduled renewal check */
    long long next_enroll, next_renew;
    long long last_check;
    char *last_result;  /* "ok", "enrolled", "renewed", "pending", "failed", ... */
    long long attempts; /* consecutive failed attempts */
    char *last_error;
    long long last_error_time;
    long long retry_at; /* 0: no retry due */
    char *retry_kind;   /* "enroll" / "renew" */
    int net_notified;   /* network failure notification sent for this streak */
    char *cert_serial;  /* current certificate (hex) */
    char *cert_subject;
    long long cert_not_before, cert_not_after;
    char *pending_txid; /* SCEP transaction awaiting the CA */
    char *pending_kind;
    long long pending_since;
    char *renewed_serial; /* serial of the certificate last renewed */
    int warned_days;      /* smallest expiry warning already sent for this certificate */
    char *hook_status;    /* "ok", "failed", "none" */
    int hook_exit;
    long long hook_time;
    char *hook_output;
    char *state;    /* "new", "valid", "renewing", "pending", "retry", "pin-needed", "failed",
                       "expired" */
    char *rollover; /* token's rollover path at the last check: "native" or "standard" */
} enr_pstate;

/* Open (create) the state database in DIR (0700; file 0600). DIR NULL:
 * $EVERTOKEN_ENROLL_STATE_DIR, else $XDG_STATE_HOME/evertoken (…/.local/state). */
enr_rc enr_state_open(const char *dir, enr_state **out);
void enr_state_close(enr_state *st);
const char *enr_state_dir(const enr_state *st);
/* The SQLite handle (the monitoring tables of metrics.c and watch.c). */
struct sqlite3 *enr_state_db(enr_state *st);
/* Load a profile's row; a missing row gives a zeroed struct with the name
 * set and returns ENR_OK with *FOUND = 0. */
enr_rc enr_state_get(enr_state *st, const char *profile, enr_pstate *ps, int *found);
enr_rc enr_state_put(enr_state *st, const enr_pstate *ps);
void enr_pstate_clear(enr_pstate *ps);
/* Replace a string field (malloc'd copy; NULL clears). */
void enr_pstate_set(char **field, const char *value);
/* Append an event to the history (kept to the last 1000 per profile). */
enr_rc enr_state_event(enr_state *st, const char *profile, const char *kind, const char *detail);
/* Print the history of PROFILE (NULL: all) as "time profile kind detail". */
enr_rc enr_state_print_events(enr_state *st, const char *profile, FILE *out);
/* Exclusive lock of the state directory for one check (blocking). */
int enr_state_lock(enr_state *st);
void enr_state_unlock(enr_state *st);

/* ---- sched.c ------------------------------------------------------------ */

#define ENR_RETRY_SECONDS 300
#define ENR_DAY           86400

/* A CA asked not to come back before T (Retry-After of a 429 or 503): the
 * next retry of the failing check waits until then (enr_sched_after takes
 * and clears it). */
void enr_retry_hint(time_t t);
time_t enr_retry_hint_take(void);
/* First start: pick the two random times within the hour after NOW. */
void enr_sched_init(enr_pstate *ps, time_t now);
/* The next daily occurrence of FIRST strictly after AFTER (FIRST + k days). */
time_t enr_sched_next_daily(time_t first, time_t after);
/* The earliest due event for PS: *KIND is "enroll", "renew" or "retry". */
time_t enr_sched_next_due(const enr_pstate *ps, const char **kind);
/* After a check of KIND ran at NOW with result RC, update times and retry. */
void enr_sched_after(enr_pstate *ps, const char *kind, time_t now, enr_rc rc);

/* ---- token.c, token_obj.c, rollover.c, rollover_native.c --------------- */

typedef struct enr_token enr_token;

/* What the token holds for a profile's credential. */
typedef struct enr_cred {
    X509 *cert;        /* the visible certificate under the credential's CKA_ID, or NULL */
    int have_key;      /* a private key under that CKA_ID matches the certificate */
    int n_certs;       /* certificates under the CKA_ID */
    int rollover_open; /* pending objects of an interrupted rollover remain */
} enr_cred;

/*
 * Load the profile's module, find its token (URI), open a R/W session and log
 * in with the profile's PIN. ENR_E_TOKEN: token absent; ENR_E_PIN: no PIN
 * available or it was refused.
 */
enr_rc enr_token_open(const enr_profile *p, enr_token **out);
void enr_token_close(enr_token *t);
/* Token label/serial for messages and the URI of the credential. */
const char *enr_token_label(const enr_token *t);
char *enr_token_cred_uri(const enr_token *t, const enr_profile *p);
/* Finish or undo an interrupted rollover (idempotent; docs/enrollment.md). */
enr_rc enr_token_repair(enr_token *t, const enr_profile *p, enr_state *st, time_t now);
/* Destroy retired keys whose grace period is over. */
enr_rc enr_token_expire_retired(enr_token *t, const enr_profile *p, time_t now);
enr_rc enr_token_find(enr_token *t, const enr_profile *p, enr_cred *c);
/* The certificate labelled LABEL in the token and its private key (found by
 * the certificate's public key; token-backed): a bootstrap credential for
 * EST's TLS client authentication. ENR_E_TOKEN when either is missing. */
enr_rc enr_token_bootstrap(enr_token *t, const char *label, X509 **cert, EVP_PKEY **key);
/* Another valid certificate (not this credential's) with the profile's
 * subject at NOW: *LABEL (malloc'd) names it, else NULL. */
enr_rc enr_token_duplicate(enr_token *t, const enr_profile *p, time_t now, char **label);
void enr_cred_clear(enr_cred *c);

/*
 * Generate a new pair in the token under the pending CKA_ID/label. *PKEY
 * receives an EVP_PKEY whose private operations run in the token.
 */
enr_rc enr_token_generate(enr_token *t, const enr_profile *p, EVP_PKEY **pkey);
/* The pending pair if one exists (resume), else NULL with ENR_OK. */
enr_rc enr_token_pending_key(enr_token *t, const enr_profile *p, EVP_PKEY **pkey);
/* The current credential's private key (token-backed) matching CERT. */
enr_rc enr_token_current_key(enr_token *t, const enr_profile *p, EVP_PKEY **pkey);
/* Delete pending objects (abandoned request). */
enr_rc enr_token_discard_pending(enr_token *t, const enr_profile *p);
/*
 * Store CERT and switch the credential over to it. NEW_KEY: CERT is for the
 * pending pair enr_token_generate/enr_token_pending_key gave (else for the
 * current key, rekey = false). On an evertoken token with a new key this is
 * the native commit (one C_CreateObject with CKA_EVERTOKEN_COMMIT_ROLLOVER,
 * then the grace period applied, docs/enrollment.md); otherwise CERT is
 * stored pending and the standard-call sequence runs: pending objects take
 * the credential's CKA_ID, the old certificate is deleted, the old pair
 * retired (grace period) or deleted, labels switched. The crash test
 * (EVERTOKEN_ENROLL_CRASH_AT=N) kills the process after the Nth mutation.
 */
enr_rc enr_token_commit(enr_token *t, const enr_profile *p, X509 *cert, int new_key, time_t now);
/*
 * Could a check log in now without a PIN? A cheap look for the service while
 * a profile waits for its token to be unlocked: the module is loaded, the
 * profile's token found, then evertoken's login cache state read through the
 * vendor interface (ET_LoginCacheStatus), or for other modules a new session
 * opened and its state read (C_GetSessionInfo: a user-functions state means
 * the session starts logged in); the module is finalised again, so the
 * service holds no login between checks. 1 usable, 0 not, -1 the token or
 * module could not be reached.
 */
int enr_token_login_ready(const enr_profile *p);
/* "native" (evertoken's vendor rollover) or "standard" (standard calls). */
const char *enr_token_rollover(const enr_token *t);

/* ---- certcheck.c -------------------------------------------------------- */

/* Load the anchors file of P (PEM, one or more certificates). */
enr_rc enr_load_anchors(const enr_profile *p, STACK_OF(X509) * *out);
/* Verify CERT chains to ANCHORS (UNTRUSTED: intermediates) at NOW; a
 * failure is reported as WHAT's, or silently when WHAT is NULL. */
enr_rc enr_verify_chain(X509 *cert, STACK_OF(X509) * untrusted, STACK_OF(X509) * anchors,
                        time_t now, const char *what);
/*
 * The checks every issued certificate passes before it is stored: public key
 * equal to PUB, chain to the anchors, subject and SANs as the profile asks,
 * validity sane (started, not expired, notAfter after notBefore, not absurdly
 * long). Each failure is reported precisely.
 */
enr_rc enr_check_issued(const enr_profile *p, X509 *cert, EVP_PKEY *pub, STACK_OF(X509) * chain,
                        STACK_OF(X509) * anchors, time_t now);

/* CERT's subject and SANs are what P asks for (subject_match, san_match);
 * REPORT: each difference reported as for an issued certificate. */
int enr_names_match(const enr_profile *p, X509 *cert, int report);

typedef enum { ENR_REV_GOOD = 0, ENR_REV_REVOKED, ENR_REV_UNKNOWN, ENR_REV_NONE } enr_rev;
/* OCSP when CERT names a responder, then (no verdict from it) its CRL
 * distribution points; each fetch time-limited (revocation_timeout).
 * ENR_REV_NONE when it names neither; no source answering usably is
 * ENR_E_NETWORK (the caller applies the profile's revocation policy). */
enr_rc enr_revocation(const enr_profile *p, X509 *cert, STACK_OF(X509) * anchors, time_t now,
                      enr_rev *out);

/* ---- proto/scep.c ------------------------------------------------------- */

typedef struct enr_scep_result {
    X509 *cert;             /* issued certificate */
    STACK_OF(X509) * chain; /* extra certificates the CA returned */
    char *txid;             /* transaction id (kept while PENDING) */
    char *fail;             /* CA's failInfo as text on FAILURE */
} enr_scep_result;

/*
 * One SCEP transaction: RENEW_KEY/RENEW_CERT NULL for PKCSReq (the new key
 * signs with a self-signed certificate), else RenewalReq signed with the old
 * certificate and key. NEWKEY is the token-backed new (or kept) key. TXID
 * non-NULL resumes polling of an earlier PENDING transaction. ENR_E_PENDING
 * when the CA still holds it after poll_max polls.
 */
enr_rc enr_scep_enroll(const enr_profile *p, EVP_PKEY *newkey, X509 *renew_cert,
                       EVP_PKEY *renew_key, STACK_OF(X509) * anchors, const char *txid,
                       enr_scep_result *res);
void enr_scep_result_clear(enr_scep_result *r);
/* Build the CSR for P signed by KEY (token-backed), with challenge CHAL (may be NULL). */
X509_REQ *enr_make_csr(const enr_profile *p, EVP_PKEY *key, const enr_secret *chal);

/* ---- proto/est.c, proto/est_csrattrs.c ------------------------------------ */

/*
 * One EST transaction (RFC 7030), in two steps around the key generation.
 * enr_est_begin: /cacerts (its certificates chaining to ANCHORS are added to
 * ANCHORS: the implicit trust anchors), then /csrattrs (section 4.5): KEYP, a
 * copy of P made by the caller, gets the key type, size and curve the new key
 * must have (ENR_E_CONFIG when the server requires what the profile fixes
 * otherwise; ENR_E_REJECTED for a malformed answer). RENEW_CERT/RENEW_KEY:
 * the TLS client credential of a renewal (NULL for a first enrollment).
 * BOOT_CERT/BOOT_KEY: for a first enrollment, a bootstrap credential from the
 * token (profile key bootstrap) presented as TLS client certificate (NULL:
 * none). enr_est_enroll: /simpleenroll (the bootstrap certificate, HTTP basic
 * credentials or the enrollment code of the profile) or /simplereenroll (TLS client authentication
 * by RENEW_CERT and its token-backed key). NEWKEY signs the CSR, which carries what /csrattrs asked
 * for. HTTP 202 is polled poll_max times, then ENR_E_PENDING. RES as for SCEP (txid "est").
 * enr_est_free(NULL) is a no-op.
 */
typedef struct enr_est enr_est;
enr_rc enr_est_begin(const enr_profile *p, X509 *renew_cert, EVP_PKEY *renew_key, X509 *boot_cert,
                     EVP_PKEY *boot_key, STACK_OF(X509) * anchors, enr_profile *keyp,
                     enr_est **out);
enr_rc enr_est_enroll(enr_est *e, EVP_PKEY *newkey, enr_scep_result *res);
void enr_est_free(enr_est *e);

/* ---- proto/cmp.c -------------------------------------------------------- */

/*
 * One CMP certificate request (OpenSSL's CMP client): OLD/OLDKEY NULL for
 * an ir protected by BOOT_CERT/BOOT_KEY (the bootstrap credential) or else
 * by the MAC of the profile's reference and secret_file; otherwise a kur
 * signed by OLDKEY naming OLD. NEWKEY (token-backed; OLDKEY itself for
 * rekey = false) proves possession. The issued certificate passes
 * enr_check_issued before it is confirmed. "waiting" is polled poll_max
 * times, then ENR_E_PENDING (txid "cmp"). RES as for SCEP.
 */
enr_rc enr_cmp_enroll(const enr_profile *p, EVP_PKEY *newkey, X509 *old, EVP_PKEY *oldkey,
                      X509 *boot_cert, EVP_PKEY *boot_key, STACK_OF(X509) * anchors,
                      enr_scep_result *res);
/* CMP rr for CERT, signed by its KEY; REASON a CRLReason code. */
enr_rc enr_cmp_revoke(const enr_profile *p, enr_token *t, X509 *cert, EVP_PKEY *key,
                      STACK_OF(X509) * anchors, int reason, int by_account);
/* CRLReason code of NAME (keyCompromise, superseded, ...; NULL: unspecified
 * 0), -1 if unknown. */
int enr_revocation_reason(const char *name);

/* ---- proto/acme*.c ----------------------------------------------------- */

/* One key = VALUE of a profile's [acme] section into P->acme (created on
 * first use); DIR resolves relative paths. 0, or -1 with a reason in WHY. */
int enr_acme_conf_set(enr_profile *p, const char *dir, const char *key, const char *value,
                      char *why, size_t whyn);
void enr_acme_conf_free(struct enr_acme_conf *a);
/* ARI (RFC 9773): *WHEN, the profile's renewal time for CERT, replaced by
 * the time drawn in the CA's suggested window (kept in STATE_DIR). */
void enr_acme_renew_at(const enr_profile *p, X509 *cert, const char *state_dir, time_t now,
                       time_t *when);
/* The kept ARI window of PROFILE (for status): 1 if there is one. */
int enr_acme_ari_window(const char *state_dir, const char *profile, long long *start,
                        long long *end, long long *renew_at);

/* ---- hooks.c ------------------------------------------------------------ */

/* Event names: docs/enrollment.md "Notifications". */
typedef struct enr_event {
    const char *event;   /* "enrolled", "renewed", "failure", "network-failure", ... */
    const char *message; /* one human sentence */
    const char *uri;     /* credential PKCS#11 URI or NULL */
    const char *cert_file;
    const char *serial;
    time_t not_after;
    int days_left; /* -1: not applicable */
} enr_event;

void enr_notify(const enr_profile *p, enr_state *st, const enr_event *ev);
/* Whether PROG is an executable in $PATH. */
int enr_in_path(const char *prog);
/* Run the post-processing script; records the result in PS. */
enr_rc enr_run_post_script(const enr_profile *p, enr_pstate *ps, enr_state *st, const char *uri,
                           const char *cert_file);
/* Run ARGV (no shell) with the "NAME=VALUE" strings of ENV (NULL-terminated,
 * at most 16) added to the environment, killed after 120 s; stdout and
 * stderr into *OUT (malloc'd) when OUT. Exit status, 128+signal, or -1. */
int enr_run_command(char *const argv[], const char *const *env, char **out);
/* Show the profile's instructions file (stderr). */
void enr_show_instructions(const enr_profile *p);

/* ---- engine.c ----------------------------------------------------------- */

/* Seconds between looks at a locked token while a profile waits for a login
 * (run --unlock-poll, EVERTOKEN_ENROLL_UNLOCK_POLL). */
#define ENR_UNLOCK_POLL 5

typedef struct enr_ctx {
    enr_state *st;
    const char *profile_dir;
    int force;       /* renew --force */
    int unlock_poll; /* run: seconds between looks at a locked token (0: default) */
} enr_ctx;

/* One check of KIND ("enroll", "renew", "check"=both) for profile P. */
enr_rc enr_check_profile(enr_ctx *ctx, const enr_profile *p, const char *kind);
/* evertoken-enroll revoke: ask P's CA to revoke the current certificate
 * (REASON a CRLReason name or NULL). BY_ACCOUNT (ACME): signed by the
 * account key, the certificate's own key not needed; CERT_FILE (with
 * BY_ACCOUNT only): the certificate from that file instead of the token.
 * Protocols without a revocation request get a precise error saying what
 * to do instead (ENR_E_CONFIG). */
enr_rc enr_revoke_profile(enr_ctx *ctx, const enr_profile *p, const char *reason, int by_account,
                          const char *cert_file);
/* evertoken-enroll acme-keychange: a new account key in the token, the CA
 * told (RFC 8555 section 7.3.5), the old key deleted (proto/acme_account.c). */
enr_rc enr_acme_keychange(enr_ctx *ctx, const enr_profile *p);
/* The service loop; UNTIL > 0 simulates (fake clock advanced, no sleep). */
int enr_run_service(enr_ctx *ctx, time_t until);

/* ---- status.c ----------------------------------------------------------- */

int enr_status(enr_ctx *ctx, int json, FILE *out);
/* A profile's level (0 ok, 1 warning, 2 critical), days left and why. */
int enr_status_level(const enr_profile *p, const enr_pstate *ps, time_t now, long *days,
                     const char **why);

#endif /* EVERTOKEN_ENROLL_ENR_INT_H */
