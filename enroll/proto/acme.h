/*
 * acme.h — the ACME client's internal interface (RFC 8555), split over:
 *   acme_conf.c   the profile's [acme] section
 *   jws.c         JWK, JWK thumbprint, JWS (flattened JSON) signed by a
 *                 token-backed EVP_PKEY, base64url; EAB's HMAC (HS256)
 *   acme_key.c    the account key pair in the token (found or generated)
 *   acme_json.c   the parsers of the CA's JSON answers (directory, problem
 *                 documents, account, order, authorization, challenge):
 *                 what tests/fuzz/fuzz_acme.c runs
 *   acme_account.c the account (found, created, EAB), key change, revocation
 *   acme_ari.c    ACME Renewal Information (RFC 9773)
 *   acme.c        the transport: nonces, signed POSTs (badNonce retried),
 *                 Retry-After, problem documents as messages
 *   acme_order.c  the protocol operations (account, order, authorization,
 *                 http-01, finalize, download) and enr_proto_acme
 *   acme_http01.c the http-01 responder (libmicrohttpd) and the webroot
 *   acme_tlsalpn.c the tls-alpn-01 responder (OpenSSL, RFC 8737)
 *   acme_hook.c   challenges by the user's program (dns-01 and others)
 * Not an interface for anything else: enr_int.h is the helper's.
 */
#ifndef EVERTOKEN_ENROLL_ACME_H
#define EVERTOKEN_ENROLL_ACME_H

#include <jansson.h>
#include <openssl/evp.h>

#include "enr_int.h"

/* ---- acme_conf.c -------------------------------------------------------- */

typedef struct enr_acme_conf {
    char *contact;        /* comma-separated URLs ("mailto:ops@example.org") */
    int agree_tos;        /* may create an account, agreeing to the terms of service */
    char *account_label;  /* the account key's CKA_LABEL (default "acme-account:" profile) */
    unsigned char id[32]; /* its CKA_ID (default: derived from the label) */
    size_t id_len;
    int account_rsa;       /* account key RSA 2048 (RS256) instead of EC P-256 (ES256) */
    char *eab_kid;         /* External Account Binding key id */
    char *eab_hmac_file;   /* its HMAC key (base64url, as the CA gives it), 0600 file */
    char *challenge;       /* the challenge type answered (default http-01) */
    char *challenge_hook;  /* program deploying and cleaning up a challenge */
    char *http_listen;     /* http-01 responder address:port (default 0.0.0.0:80) */
    char *tls_alpn_listen; /* tls-alpn-01 responder address:port (default 0.0.0.0:443) */
    char *webroot;         /* http-01 by writing into WEBROOT/.well-known/acme-challenge/ */
    char *server_anchors;  /* PEM anchors of the ACME server's TLS (default: the system's) */
    char *preferred_chain; /* the chain whose top certificate's issuer CN is this */
} enr_acme_conf;

/* enr_acme_conf_set, enr_acme_conf_free: enr_int.h (profile.c calls them). */

/* ---- jws.c -------------------------------------------------------------- */

/* base64url without padding (RFC 7515 section 2) of N bytes; malloc'd. */
char *enr_b64url(const unsigned char *b, size_t n);
/* Decode base64url (padding optional); *OUT malloc'd. -1 if malformed. */
int enr_b64url_decode(const char *s, unsigned char **out, size_t *n);
/* The same for a secret (EAB's HMAC key): every copy in locked memory
 * (OUT: sodium_malloc'd, enr_secret_free). */
int enr_b64url_decode_secret(const char *s, enr_secret *out);
/* The JWK of PUB's public key (EC P-256/P-384/P-521, RSA). */
json_t *enr_jwk(EVP_PKEY *pub);
/* RFC 7638 thumbprint (base64url of SHA-256 of the canonical JWK). */
char *enr_jwk_thumbprint(EVP_PKEY *pub);
/* The JWS algorithm of KEY: "ES256", "ES384", "ES512", "RS256"; NULL if none. */
const char *enr_jws_alg(EVP_PKEY *key);
/*
 * A flattened JWS (RFC 7515 section 7.2.2) of PAYLOAD ("" for POST-as-GET)
 * signed by KEY (token-backed: the signature is made in the token) with
 * protected header {alg, nonce, url} and kid = KID, or the JWK when KID is
 * NULL. NONCE NULL: no nonce (EAB, keyChange's inner JWS). Malloc'd JSON.
 */
char *enr_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                   const char *payload);
/* EAB (RFC 8555 section 7.3.4): a JWS over the account key's JWK, HS256
 * with the MAC key MAC (MACLEN bytes), kid KID, url URL. */
json_t *enr_jws_eab(EVP_PKEY *acct, const char *kid, const unsigned char *mac, size_t maclen,
                    const char *url);

/* ---- acme_key.c --------------------------------------------------------- */

/* The account key pair of P in token T (CKA_ID/label of [acme]); generated
 * (EC P-256, or RSA 2048 with account_key = rsa) when CREATE and absent.
 * *KEY: token-backed, free before the token closes; NULL with ENR_OK when
 * absent and not CREATE. LABEL/ID: another key (acme-keychange's new key). */
enr_rc enr_acme_account_key(enr_token *t, const enr_profile *p, const char *label,
                            const unsigned char *id, size_t idlen, int create, EVP_PKEY **key);
/* Delete the key pair LABEL/ID (after a key change, the old one). */
enr_rc enr_acme_delete_key(enr_token *t, const char *label, const unsigned char *id, size_t idlen);
/* Rename key pair FROM_LABEL/FROM_ID to TO_LABEL/TO_ID. */
enr_rc enr_acme_rename_key(enr_token *t, const char *from_label, const unsigned char *from_id,
                           size_t from_idlen, const char *to_label, const unsigned char *to_id,
                           size_t to_idlen);

/* ---- acme_json.c -------------------------------------------------------- */

typedef struct enr_acme_dir {
    char *new_nonce, *new_account, *new_order, *revoke_cert, *key_change, *renewal_info;
    char *tos;   /* meta.termsOfService */
    int eab_req; /* meta.externalAccountRequired */
} enr_acme_dir;

/* Parse a JSON object of N bytes; NULL with a reason in WHY. */
json_t *enr_acme_json(const unsigned char *body, size_t n, char *why, size_t whyn);
/* The directory (RFC 8555 section 7.1.1). -1 with WHY. */
int enr_acme_parse_dir(json_t *j, enr_acme_dir *d, char *why, size_t whyn);
void enr_acme_dir_clear(enr_acme_dir *d);
/* A problem document (RFC 7807 / RFC 8555 section 6.7) as one sentence:
 * "detail (type)" with the subproblems; TYPE (short name after
 * "urn:ietf:params:acme:error:") into *SHORT (malloc'd) when asked. */
char *enr_acme_problem_text(json_t *j, char **short_type);
/* A string member, or NULL. */
const char *enr_acme_str(json_t *j, const char *key);

typedef struct enr_acme_order {
    char *status; /* pending, ready, processing, valid, invalid */
    char **authz; /* authorization URLs */
    size_t n_authz;
    char *finalize, *certificate;
    char *error; /* the order's problem as text */
} enr_acme_order;
int enr_acme_parse_order(json_t *j, enr_acme_order *o, char *why, size_t whyn);
void enr_acme_order_clear(enr_acme_order *o);

typedef struct enr_acme_authz {
    char *status; /* pending, valid, invalid, deactivated, expired, revoked */
    char *ident;  /* "dns:www.example.org" */
    int wildcard;
    /* the challenge of the wanted type */
    char *ch_url, *ch_token, *ch_status, *ch_error;
    char *types; /* challenge types offered, for messages */
} enr_acme_authz;
/* An authorization; the challenge of type TYPE (http-01, dns-01, ...). */
int enr_acme_parse_authz(json_t *j, const char *type, enr_acme_authz *a, char *why, size_t whyn);
void enr_acme_authz_clear(enr_acme_authz *a);

/* ---- acme_http01.c ------------------------------------------------------ */

typedef struct enr_acme_http01 enr_acme_http01;
/* Serve TOKEN -> KEYAUTH under /.well-known/acme-challenge/ on the
 * profile's http_listen, or write the file under webroot. */
enr_rc enr_acme_http01_start(const enr_profile *p, enr_acme_http01 **out);
enr_rc enr_acme_http01_add(enr_acme_http01 *h, const char *token, const char *keyauth);
/* Stop the responder, remove the webroot files. */
void enr_acme_http01_stop(enr_acme_http01 *h);
/* "addr:port", "[v6]:port", ":port" (any IPv4 address) into SS; -1 if not. */
struct sockaddr_storage;
int enr_acme_parse_listen(const char *v, struct sockaddr_storage *ss);

/* ---- acme_tlsalpn.c ----------------------------------------------------- */

typedef struct enr_acme_tlsalpn enr_acme_tlsalpn;
/* Listen on the profile's tls_alpn_listen (TLS, ALPN acme-tls/1 only). */
enr_rc enr_acme_tlsalpn_start(const enr_profile *p, enr_acme_tlsalpn **out);
/* Answer IDENT ("dns:NAME", "ip:ADDRESS") with a new self-signed
 * certificate (software key) carrying SHA-256(KEYAUTH). */
enr_rc enr_acme_tlsalpn_add(enr_acme_tlsalpn *h, const char *ident, const char *keyauth);
/* Stop the responder, free the certificates and their keys. */
void enr_acme_tlsalpn_stop(enr_acme_tlsalpn *h);

/* ---- acme_hook.c -------------------------------------------------------- */

/* Run [acme] challenge_hook: ACTION "deploy" or "cleanup", challenge TYPE
 * for identifier IDENT (the value: "www.example.org"). Deploy failures are
 * errors (ENR_E_REJECTED), cleanup failures warnings. */
enr_rc enr_acme_hook(const enr_profile *p, const char *action, const char *type, const char *ident,
                     const char *token, const char *keyauth);

/* ---- acme.c ------------------------------------------------------------- */

typedef struct enr_acme {
    const enr_profile *p;
    enr_http_conn *http;
    char *ca_blob; /* server_anchors, PEM */
    size_t ca_len;
    enr_acme_dir dir;
    char *nonce;
    EVP_PKEY *key;     /* the account key (token-backed) */
    char *kid;         /* the account URL */
    int nonce_retries; /* badNonce retries so far (for messages and tests) */
    const char *quiet; /* a problem type the caller handles: not reported */
    int quiet_hit;     /* the last refusal was of that type */
} enr_acme;

/* The answer to one request. */
typedef struct enr_acme_ans {
    long code;
    json_t *json; /* a JSON answer (NULL otherwise) */
    unsigned char *body;
    size_t n;
    char *ctype, *location;
    char *link_up;
    char **alternates; /* Link rel="alternate" */
    size_t n_alt;
    long retry_after; /* seconds, -1 when absent */
} enr_acme_ans;
void enr_acme_ans_clear(enr_acme_ans *a);

/* Connect, read the directory. */
enr_rc enr_acme_open(enr_acme *a, const enr_profile *p);
void enr_acme_close(enr_acme *a);
/*
 * POST PAYLOAD (NULL: POST-as-GET) to URL signed by the account key (kid, or
 * the JWK when JWK is set: newAccount, revocation by the certificate key
 * KEY). A badNonce is retried with the fresh nonce (up to 10 times). Any
 * answer but 2xx is reported as a precise error (problem document, status)
 * and mapped: 429/5xx/timeouts ENR_E_NETWORK, others ENR_E_REJECTED. WHAT
 * names the request in messages. ACCEPT_JSON: the answer must be JSON.
 */
enr_rc enr_acme_post(enr_acme *a, const char *what, const char *url, const char *payload,
                     EVP_PKEY *key, int jwk, int accept_json, enr_acme_ans *ans);
/* POST J (consumed) as the JSON payload (enr_acme_post, answer JSON). */
enr_rc enr_acme_post_json(enr_acme *a, const char *what, const char *url, json_t *j, EVP_PKEY *key,
                          int jwk, enr_acme_ans *ans);

/* ---- acme_account.c ----------------------------------------------------- */

/* The account key's CKA_LABEL and CKA_ID for P. */
void enr_acme_acct_ident(const enr_profile *p, char *label, size_t ln, unsigned char *id,
                         size_t *idlen);
/* The account of the key in token T (A->key, A->kid): found, else created
 * when CREATE and the profile allows it. */
enr_rc enr_acme_account(enr_acme *a, enr_token *t, int create);
/* revokeCert signed by the certificate's KEY, or with BY_ACCOUNT by the
 * profile's account key in T (proto.h's revoke). */
enr_rc enr_acme_revoke(const enr_profile *p, enr_token *t, X509 *cert, EVP_PKEY *key,
                       STACK_OF(X509) * anchors, int reason, int by_account);

/* One answer header line (N bytes, as libcurl gives it): Replay-Nonce
 * into A->nonce; Location, Retry-After, Link rel="up"/"alternate" into ANS. */
void enr_acme_parse_header(enr_acme *a, enr_acme_ans *ans, const char *line, size_t n);
/* A PEM chain (application/pem-certificate-chain): the first certificate
 * into RES->cert, the others RES->chain. */
enr_rc enr_acme_parse_chain(const unsigned char *body, size_t n, enr_scep_result *res);
/* GET URL (unsigned: the directory, renewalInfo); 200 and JSON required. */
enr_rc enr_acme_get(enr_acme *a, const char *what, const char *url, enr_acme_ans *ans);

/* ---- acme_ari.c --------------------------------------------------------- */

/* What the CA said about one certificate (kept in the state directory). */
typedef struct enr_acme_ari {
    char cert_id[256];
    json_int_t start, end; /* suggestedWindow */
    json_int_t renew_at;   /* the random point drawn in it */
    json_int_t next_fetch; /* Retry-After */
    char explanation[256];
} enr_acme_ari;
/* RFC 9773 certificate identifier: base64url(AKI) "." base64url(serial). */
char *enr_acme_cert_id(X509 *cert);
int enr_acme_ari_load(const char *state_dir, const char *profile, enr_acme_ari *r);
/* A renewalInfo answer's suggestedWindow (RFC 3339 start before end). */
int enr_acme_parse_window(json_t *j, time_t *start, time_t *end);

/* Wait SECONDS (the fake clock advances instead). */
void enr_acme_sleep(long seconds);

#endif /* EVERTOKEN_ENROLL_ACME_H */
