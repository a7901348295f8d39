/*
 * engine.c — one check of one profile, and the service loop.
 *
 * A check opens the token, finishes any interrupted rollover, destroys
 * retired keys past their grace period, then decides (docs/enrollment.md
 * "Conditions"): no certificate, a certificate without its key in this token,
 * an expired or revoked one → a fresh enrollment (PKCSReq); a valid one in
 * its renewal window that was not renewed already → a renewal (RenewalReq
 * signed by the old key). The issued certificate passes enr_check_issued()
 * before the token changes; a refusal leaves the token as it was.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "chain.h"
#include "drift.h"
#include "desktop.h"
#include "enr_int.h"
#include "expiry.h"
#include "mon.h"
#include "schedule.h"
#include "proto/proto.h"

static void
remember_cert(enr_pstate *ps, X509 *x)
{
    char *s = enr_serial_hex(x), name[256];

    /* Another certificate: its expiry warnings start afresh. */
    if (s != NULL && (ps->cert_serial == NULL || strcmp(ps->cert_serial, s) != 0))
        ps->warned_days = 0;
    enr_pstate_set(&ps->cert_serial, s);
    free(s);
    X509_NAME_oneline(X509_get_subject_name(x), name, sizeof(name));
    enr_pstate_set(&ps->cert_subject, name);
    ps->cert_not_before = enr_asn1_time(X509_get0_notBefore(x));
    ps->cert_not_after = enr_asn1_time(X509_get0_notAfter(x));
}

static char *
save_cert_pem(enr_state *st, const enr_profile *p, X509 *x)
{
    char *dir = enr_aprintf("%s/certs", enr_state_dir(st)), *path = NULL;
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;

    if (dir == NULL || b == NULL || enr_mkdir_private(dir) != 0 || !PEM_write_bio_X509(b, x))
        goto done;
    path = enr_aprintf("%s/%s.pem", dir, p->name);
    n = BIO_get_mem_data(b, &data);
    if (path != NULL && enr_write_file(path, data, (size_t)n) != 0) {
        free(path);
        path = NULL;
    }
done:
    BIO_free(b);
    free(dir);
    return path;
}

typedef struct job {
    enr_ctx *ctx;
    const enr_profile *p;
    enr_pstate *ps;
    enr_token *t;
    STACK_OF(X509) * anchors;
    time_t now;
    int followed; /* follow_profile replaced the certificate (or tried to) */
} job;

/* The key to request a certificate for: OLDKEY (renewal of OLD without
 * rekey), the pending pair of an earlier attempt, or a new pair with the
 * parameters KP in the token. *NEWKEY: a reference. */
static enr_rc
choose_key(job *j, X509 *old, EVP_PKEY *oldkey, const enr_profile *kp, EVP_PKEY **newkey)
{
    const enr_profile *p = j->p;
    enr_rc rc;

    *newkey = NULL;
    if (old != NULL && !p->rekey) {
        *newkey = oldkey;
        EVP_PKEY_up_ref(*newkey);
        return ENR_OK;
    }
    rc = enr_token_pending_key(j->t, p, newkey);
    if (rc != ENR_OK)
        return rc;
    if (*newkey != NULL) {
        enr_info("profile %s: reusing the new key pair of an earlier attempt", p->name);
        return ENR_OK;
    }
    return enr_token_generate(j->t, kp, newkey);
}

/* The new certificate is in the token: state, PEM file, notification,
 * history, instructions and post-processing script. */
static void
stored(job *j, X509 *cert, int renewed, const char *oldserial)
{
    const enr_profile *p = j->p;
    enr_pstate *ps = j->ps;
    char *uri, *pem, *msg, na[32];

    /* Stored: from here on the new credential is what applications see. */
    enr_pstate_set(&ps->pending_txid, NULL);
    enr_pstate_set(&ps->pending_kind, NULL);
    ps->pending_since = 0;
    if (oldserial != NULL)
        enr_pstate_set(&ps->renewed_serial, oldserial);
    remember_cert(ps, cert);
    ps->warned_days = 0;
    enr_pstate_set(&ps->state, "valid");
    enr_pstate_set(&ps->last_result, renewed ? "renewed" : "enrolled");
    uri = enr_token_cred_uri(j->t, p);
    pem = save_cert_pem(j->ctx->st, p, cert);
    msg = enr_aprintf("%s certificate serial %s for %s, valid until %s",
                      renewed ? "renewed" : "issued", ps->cert_serial, p->subject,
                      enr_fmt_time((time_t)ps->cert_not_after, na, sizeof(na)));
    enr_event ev = {renewed ? "renewed" : "enrolled",
                    msg ? msg : "certificate stored",
                    uri,
                    pem,
                    ps->cert_serial,
                    (time_t)ps->cert_not_after,
                    (int)((ps->cert_not_after - enr_now()) / ENR_DAY)};
    enr_notify(p, j->ctx->st, &ev);
    enr_state_event(j->ctx->st, p->name, renewed ? "renewed" : "enrolled", ps->cert_serial);
    if (p->instructions != NULL)
        enr_info("profile %s: instructions for this credential: %s", p->name, p->instructions);
    /* A failing script does not undo the certificate; it is reported and
     * can be re-run (hooks rerun). */
    enr_run_post_script(p, ps, j->ctx->st, uri, pem);
    free(uri);
    free(pem);
    free(msg);
}

/* Enroll (OLD == NULL) or renew OLD through the profile's protocol
 * (proto/proto.h); the common tail stores and notifies. */
static enr_rc
obtain(job *j, X509 *old, const char *why)
{
    const enr_profile *p = j->p;
    const enr_proto_ops *ops = enr_proto_get(p->proto);
    enr_pstate *ps = j->ps;
    EVP_PKEY *newkey = NULL, *oldkey = NULL, *bootkey = NULL;
    X509 *bootcert = NULL;
    enr_scep_result res;
    STACK_OF(X509) *chain = NULL;
    enr_proto_req req;
    void *state = NULL;
    enr_profile kp = *p; /* the new key's parameters: the protocol may choose them */
    const char *kind = old ? "renew" : "enroll";
    char *oldserial = NULL;
    enr_rc rc;

    memset(&res, 0, sizeof(res));
    memset(&req, 0, sizeof(req));
    enr_info("profile %s: %s (%s), %s rollover on token \"%s\"", p->name,
             old ? "renewing" : "enrolling", why,
             old != NULL && !p->rekey ? "standard (same key)" : enr_token_rollover(j->t),
             enr_token_label(j->t));
    if (old != NULL) {
        rc = enr_token_current_key(j->t, p, &oldkey);
        if (rc != ENR_OK)
            goto done;
        oldserial = enr_serial_hex(old);
    }
    if (ops->bootstrap && old == NULL && p->bootstrap != NULL) {
        rc = enr_token_bootstrap(j->t, p->bootstrap, &bootcert, &bootkey);
        if (rc != ENR_OK)
            goto done;
    }
    req.p = p;
    req.old = old;
    req.oldkey = oldkey;
    req.boot_cert = bootcert;
    req.boot_key = bootkey;
    req.anchors = j->anchors;
    req.chain = enr_chain_known(j->ctx->st, p);
    req.tok = j->t;
    req.txid =
        ps->pending_txid != NULL && ps->pending_kind != NULL && !strcmp(ps->pending_kind, kind)
            ? ps->pending_txid
            : NULL;
    if (ops->prepare != NULL) {
        rc = ops->prepare(&req, &kp, &state);
        if (rc != ENR_OK)
            goto refused;
    }
    rc = choose_key(j, old, oldkey, &kp, &newkey);
    if (rc != ENR_OK)
        goto done;
    rc = ops->request(&req, state, newkey, &res);
    if (rc == ENR_E_PENDING) {
        enr_pstate_set(&ps->pending_txid, res.txid);
        enr_pstate_set(&ps->pending_kind, kind);
        if (ps->pending_since == 0)
            ps->pending_since = enr_now();
        enr_pstate_set(&ps->state, "pending");
        goto done;
    }
    if (rc != ENR_OK)
        goto refused;
    rc = enr_check_issued(p, res.cert, newkey, res.chain, j->anchors, enr_now());
    if (rc == ENR_OK)
        rc = enr_chain_build(j->ctx->st, p, res.cert, res.chain, j->anchors, enr_now(), &chain);
    if (rc != ENR_OK)
        goto refused;
    rc = enr_chain_stage(j->ctx->st, p, chain);
    if (rc == ENR_OK)
        rc = enr_token_commit(j->t, p, res.cert, old == NULL || p->rekey, enr_now());
    if (rc != ENR_OK)
        goto done;
    /* The chain follows the leaf (staged: a crash here is healed by the next
     * check); trouble storing it is reported, the credential stays. */
    if (enr_chain_sync(j->t, j->ctx->st, p, res.cert) != ENR_OK)
        enr_warn("profile %s: the CA chain could not be stored; the next check tries again",
                 p->name);
    enr_anchors_learn(j->ctx->st, p, j->t, j->anchors);
    /* Stored: from here on the new credential is what applications see. */
    stored(j, res.cert, old != NULL, oldserial);
    rc = ENR_OK;
    goto done;
refused:
    /* Nothing stored: drop the new key pair unless the same attempt will be
     * retried (network trouble), so the token is as it was. */
    if (rc != ENR_E_NETWORK && (old == NULL || p->rekey))
        enr_token_discard_pending(j->t, p);
    if (rc != ENR_E_NETWORK) {
        enr_pstate_set(&ps->pending_txid, NULL);
        enr_pstate_set(&ps->pending_kind, NULL);
        ps->pending_since = 0;
    }
done:
    if (ops->release != NULL)
        ops->release(state);
    enr_scep_result_clear(&res);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(req.chain, X509_free);
    EVP_PKEY_free(newkey);
    EVP_PKEY_free(oldkey);
    EVP_PKEY_free(bootkey);
    X509_free(bootcert);
    free(oldserial);
    return rc;
}

/* The certificate no longer follows the edited profile, or no longer chains
 * to changed anchors (drift.c): replaced now, whatever the window says. */
static enr_rc
follow_profile(job *j, X509 *cert)
{
    char why[600];
    int d = enr_drift(j->p, cert, why, sizeof(why));

    if (d == ENR_DRIFT_NONE && enr_anchors_changed(j->ctx->st, j->p)) {
        if (enr_cert_chains(j->ctx->st, j->t, j->p, cert, j->anchors, j->now)) {
            enr_info("profile %s: the anchors changed; the certificate still chains to them",
                     j->p->name);
        } else {
            d = ENR_DRIFT_ENROLL;
            snprintf(why, sizeof(why),
                     "the profile's anchors changed and the certificate no "
                     "longer chains to them");
        }
    }
    if (d == ENR_DRIFT_NONE)
        return ENR_OK;
    j->followed = 1;
    enr_info("profile %s: %s; %s", j->p->name, why,
             d == ENR_DRIFT_ENROLL ? "enrolling a new certificate" : "renewing");
    enr_state_event(j->ctx->st, j->p->name, "profile-changed", why);
    enr_pstate_set(&j->ps->state, "renewing");
    return obtain(j, d == ENR_DRIFT_ENROLL ? NULL : cert, why);
}

/* The revocation status of CERT (SERIAL) as the profile's policy asks, in
 * *REV; *NO_ANSWER when no source answered and soft went on without it. */
/* enr_revocation with the anchors and, when the certificate chains through
 * it to them, the kept chain (chain.pem): the issuer of a certificate from
 * an intermediate (ACME CAs, a CA under a root) is found there, and its
 * OCSP answers are trusted as signed by the certificate's own issuer. */
static enr_rc
revocation_with_chain(job *j, X509 *cert, enr_rev *rev)
{
    STACK_OF(X509) *kept = enr_chain_known(j->ctx->st, j->p), *known = NULL;
    enr_rc rc;

    if (sk_X509_num(kept) > 0 && enr_verify_chain(cert, kept, j->anchors, j->now, NULL) == ENR_OK &&
        (known = sk_X509_dup(j->anchors)) != NULL) {
        for (int i = 0; i < sk_X509_num(kept); i++)
            if (!sk_X509_push(known, sk_X509_value(kept, i))) {
                sk_X509_free(known);
                known = NULL;
                break;
            }
    }
    rc = enr_revocation(j->p, cert, known != NULL ? known : j->anchors, j->now, rev);
    sk_X509_free(known);
    sk_X509_pop_free(kept, X509_free);
    return rc;
}

static enr_rc
check_revocation(job *j, X509 *cert, const char *serial, int want_renew, enr_rev *rev,
                 int *no_answer)
{
    const enr_profile *p = j->p;
    enr_rc rc;

    if (p->revocation == ENR_REVPOL_OFF) {
        enr_debug("profile %s: revocation not checked (revocation = off)", p->name);
        return ENR_OK;
    }
    if (j->ctx->force && want_renew) {
        /* A forced renewal never waits on a revocation source. */
        enr_info("profile %s: renew --force: the revocation status of certificate %s is not "
                 "checked",
                 p->name, serial);
        return ENR_OK;
    }
    rc = revocation_with_chain(j, cert, rev);
    if (rc == ENR_E_NETWORK && p->revocation == ENR_REVPOL_SOFT) {
        /* No answer is no verdict: the renewal of this very certificate
         * must not wait for the source that would revoke it. */
        enr_warn("profile %s: the revocation status of certificate %s is unknown (no "
                 "revocation source answered usably); not blocking (revocation = soft)",
                 p->name, serial);
        enr_clear_error();
        enr_state_event(j->ctx->st, p->name, "revocation-unknown", serial);
        *rev = ENR_REV_UNKNOWN;
        *no_answer = 1;
        return ENR_OK;
    }
    if (rc == ENR_E_NETWORK)
        enr_err("profile %s: the revocation status of certificate %s cannot be checked; "
                "retrying (revocation = hard; soft would go on without it)",
                p->name, serial);
    return rc;
}

static enr_rc
decide(job *j, const char *kind)
{
    const enr_profile *p = j->p;
    enr_pstate *ps = j->ps;
    enr_cred c;
    enr_rev rev = ENR_REV_NONE;
    enr_rc rc;
    time_t nb, na, ws;
    char *serial = NULL;
    int want_renew = !strcmp(kind, "renew") || !strcmp(kind, "check");
    int no_answer = 0; /* no revocation source answered (soft: unknown) */

    rc = enr_token_repair(j->t, p, j->ctx->st, j->now);
    if (rc == ENR_OK)
        rc = enr_token_expire_retired(j->t, p, j->now);
    if (rc == ENR_OK)
        rc = enr_token_find(j->t, p, &c);
    if (rc != ENR_OK)
        return rc;
    if (c.cert == NULL) {
        char *dup = NULL;
        enr_pstate_set(&ps->state, "none");
        if (!p->allow_duplicate) {
            rc = enr_token_duplicate(j->t, p, j->now, &dup);
            if (rc == ENR_OK && dup != NULL) {
                enr_err("token \"%s\" already holds a valid certificate for %s (\"%s\"); not "
                        "enrolling a duplicate (set allow_duplicate = true in [certificate])",
                        enr_token_label(j->t), p->subject, dup);
                rc = ENR_E_REJECTED;
            }
            free(dup);
            if (rc != ENR_OK)
                goto done;
        }
        rc = obtain(j, NULL, "no certificate in the token");
        goto done;
    }
    remember_cert(ps, c.cert);
    serial = enr_serial_hex(c.cert);
    if (!c.have_key) {
        /* A certificate from elsewhere (another device's token): not ours
         * to renew; this device gets its own credential. */
        rc = obtain(j, NULL, "the certificate's private key is not in this token");
        goto done;
    }
    enr_chain_sync(j->t, j->ctx->st, p, c.cert); /* reports its own trouble */
    nb = enr_asn1_time(X509_get0_notBefore(c.cert));
    na = enr_asn1_time(X509_get0_notAfter(c.cert));
    if (j->now >= na) {
        enr_pstate_set(&ps->state, "expired");
        rc = obtain(j, NULL, "the certificate has expired");
        goto done;
    }
    rc = check_revocation(j, c.cert, serial, want_renew, &rev, &no_answer);
    if (rc != ENR_OK)
        goto done;
    if (rev == ENR_REV_REVOKED) {
        enr_pstate_set(&ps->state, "revoked");
        enr_state_event(j->ctx->st, p->name, "revoked", serial);
        rc = obtain(j, NULL, "the certificate is revoked");
        goto done;
    }
    if (rev == ENR_REV_UNKNOWN && !no_answer)
        enr_warn("profile %s: the OCSP responder does not know certificate %s", p->name, serial);
    if ((rc = follow_profile(j, c.cert)) != ENR_OK || j->followed)
        goto done;
    ws = enr_profile_window_start(p, nb, na);
    if (enr_proto_get(p->proto)->renew_at != NULL && !j->ctx->force)
        enr_proto_get(p->proto)->renew_at(p, c.cert, enr_state_dir(j->ctx->st), j->now, &ws);
    if (!want_renew || (j->now < ws && !j->ctx->force)) {
        char w[32];
        enr_pstate_set(&ps->state, j->now < ws ? "valid" : "renewal-due");
        enr_debug("profile %s: certificate %s valid; renewal window opens %s", p->name, serial,
                  enr_fmt_time(ws, w, sizeof(w)));
        rc = ENR_OK;
        goto done;
    }
    if (ps->renewed_serial != NULL && !strcmp(ps->renewed_serial, serial)) {
        /* Renewed already (e.g. this token was restored from a backup taken
         * before the renewal): a second renewal would only duplicate it. */
        enr_err("certificate %s was already renewed; not renewing it again (restore the "
                "renewed credential, or use 'renew --force')",
                serial);
        if (!j->ctx->force) {
            enr_pstate_set(&ps->state, "failed");
            rc = ENR_E_REJECTED;
            goto done;
        }
    }
    enr_pstate_set(&ps->state, "renewing");
    rc = obtain(j, c.cert, j->ctx->force && j->now < ws ? "forced" : "in the renewal window");
done:
    if (rc == ENR_OK) /* the anchors this certificate was checked against */
        enr_anchors_record(j->ctx->st, p);
    free(serial);
    enr_cred_clear(&c);
    return rc;
}

static void
report_failure(enr_ctx *ctx, const enr_profile *p, enr_pstate *ps, enr_rc rc)
{
    const char *ev = "failure";
    const char *msg = enr_last_error()[0] ? enr_last_error() : enr_rc_name(rc);
    int once = 0;

    switch (rc) {
    case ENR_E_NETWORK:
        ev = "network-failure";
        once = 1;
        break;
    case ENR_E_TOKEN:
        ev = "token-absent";
        once = 1;
        break;
    case ENR_E_PIN:
        ev = "pin-needed";
        once = 1;
        break;
    case ENR_E_PIN_WRONG:
        ev = "pin-needed";
        break;
    case ENR_E_PENDING:
        ev = "pending";
        once = 1;
        msg = "the CA holds the request for approval; polling every 300 s";
        break;
    default:
        break;
    }
    enr_pstate_set(&ps->last_error, msg);
    ps->last_error_time = enr_now();
    /* Transient trouble is reported once per streak, then retried silently. */
    if (once && ps->net_notified)
        return;
    if (once)
        ps->net_notified = 1;
    char *full = rc == ENR_E_NETWORK
                     ? enr_aprintf("%s; retrying every %d s", msg, ENR_RETRY_SECONDS)
                     : enr_strdup(msg);
    enr_event e = {ev, full ? full : msg, NULL, NULL, ps->cert_serial, (time_t)ps->cert_not_after,
                   -1};
    enr_notify(p, ctx->st, &e);
    free(full);
    if (!once)
        enr_show_instructions(p);
}

enr_rc
enr_check_profile(enr_ctx *ctx, const enr_profile *p, const char *kind)
{
    enr_pstate ps;
    job j;
    const char *what = kind;
    int found, was_failing;
    enr_rc rc;

    if (enr_state_lock(ctx->st) != 0)
        return ENR_E_FAIL;
    rc = enr_state_get(ctx->st, p->name, &ps, &found);
    if (rc != ENR_OK) {
        enr_state_unlock(ctx->st);
        return rc;
    }
    /* A success after failures is notified ("recovered"), superseding them. */
    was_failing = ps.last_result != NULL && ps.last_error != NULL &&
                  (!strcmp(ps.last_result, "failed") || !strcmp(ps.last_result, "pending"));
    memset(&j, 0, sizeof(j));
    j.ctx = ctx;
    j.p = p;
    j.ps = &ps;
    j.now = enr_now();
    if (!found)
        enr_sched_init(&ps, j.now);
    if (!strcmp(kind, "retry"))
        what = ps.retry_kind ? ps.retry_kind : "check";
    enr_clear_error();
    enr_debug("profile %s: %s check", p->name, what);
    rc = enr_load_anchors(p, &j.anchors);
    if (rc == ENR_OK) /* and those learned through a CA key rollover */
        enr_anchors_add_learned(ctx->st, p, j.anchors);
    if (rc == ENR_OK)
        rc = enr_token_open(p, &j.t);
    if (rc == ENR_OK) {
        enr_pstate_set(&ps.rollover, enr_token_rollover(j.t));
        rc = decide(&j, what);
    }
    enr_token_close(j.t);
    sk_X509_pop_free(j.anchors, X509_free);
    {
        long long ne = ps.next_enroll, nr = ps.next_renew;
        enr_sched_after(&ps, kind, j.now, rc);
        /* [schedule]: a window or an interval instead of the daily times. */
        enr_schedule_apply(p, &ps, j.now, ne != ps.next_enroll, nr != ps.next_renew);
    }
    if (rc == ENR_OK) {
        if (was_failing) {
            enr_event e = {"recovered",    "the last check succeeded again", NULL, NULL,
                           ps.cert_serial, (time_t)ps.cert_not_after,        -1};
            enr_notify(p, ctx->st, &e);
        }
        enr_pstate_set(&ps.last_error, NULL);
        if (ps.last_result == NULL || !strcmp(ps.last_result, "failed"))
            enr_pstate_set(&ps.last_result, "ok");
    } else {
        enr_pstate_set(&ps.last_result, rc == ENR_E_PENDING ? "pending" : "failed");
        /* PIN needed: the service watches the token and checks again as soon
         * as it is unlocked (enr_run_service). */
        if (rc == ENR_E_PIN)
            enr_pstate_set(&ps.state, "pin-needed");
        else if (rc != ENR_E_PENDING && (ps.state == NULL || strcmp(ps.state, "expired")))
            enr_pstate_set(&ps.state, ps.retry_at ? "retry" : "failed");
        report_failure(ctx, p, &ps, rc);
    }
    /* Whatever happened: the certificate's expiry, read without a PIN when
     * the check could not reach it (expiry.c). */
    if (rc == ENR_E_TOKEN || rc == ENR_E_PIN || rc == ENR_E_PIN_WRONG)
        enr_expiry_refresh(p, ctx->st, &ps);
    enr_expiry_notify(p, ctx->st, &ps, j.now, rc);
    enr_state_event(ctx->st, p->name, kind, enr_rc_name(rc));
    enr_state_put(ctx->st, &ps);
    enr_monitor_record(ctx->st, p->name, rc, j.now);
    enr_pstate_clear(&ps);
    enr_state_unlock(ctx->st);
    enr_metrics_update(ctx);
    return rc;
}

/* ---- Revocation by request ---------------------------------------------- */

/* revoke --cert FILE: the certificate to revoke (PEM or DER) into C->cert,
 * for a token that lost it too. */
static enr_rc
revoke_cert_file(const enr_profile *p, const char *file, enr_cred *c)
{
    BIO *b = BIO_new_file(file, "rb");

    if (b != NULL) {
        c->cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (c->cert == NULL && BIO_reset(b) == 0)
            c->cert = d2i_X509_bio(b, NULL);
        BIO_free(b);
    }
    ERR_clear_error();
    if (c->cert == NULL) {
        enr_err("profile %s: --cert %s: %s", p->name, file,
                b == NULL ? "cannot be read" : "not a certificate (PEM or DER)");
        return ENR_E_CONFIG;
    }
    return ENR_OK;
}

enr_rc
enr_revoke_profile(enr_ctx *ctx, const enr_profile *p, const char *reason, int by_account,
                   const char *cert_file)
{
    const enr_proto_ops *ops = enr_proto_get(p->proto);
    STACK_OF(X509) *anchors = NULL;
    enr_token *t = NULL;
    EVP_PKEY *key = NULL;
    enr_cred c;
    char *serial = NULL;
    int code = enr_revocation_reason(reason);
    enr_rc rc;

    memset(&c, 0, sizeof(c));
    if (code < 0) {
        enr_err("--reason %s: not a revocation reason (unspecified, keyCompromise, "
                "cACompromise, affiliationChanged, superseded, cessationOfOperation, "
                "certificateHold, privilegeWithdrawn, aACompromise)",
                reason);
        return ENR_E_CONFIG;
    }
    if (ops->revoke == NULL) {
        enr_err("profile %s: %s has no revocation request; ask the CA's operator to revoke the "
                "certificate (its serial is in 'evertoken-enroll status'), then run "
                "'evertoken-enroll enroll %s' for a new one",
                p->name, ops->title, p->name);
        return ENR_E_CONFIG;
    }
    if (by_account && p->proto != ENR_PROTO_ACME) {
        enr_err("profile %s: revoke --by-account needs an ACME account; %s revokes with the "
                "certificate's key (leave out --by-account)",
                p->name, ops->title);
        return ENR_E_CONFIG;
    }
    if (cert_file != NULL && !by_account) {
        enr_err("profile %s: revoke --cert FILE needs --by-account (otherwise the certificate's "
                "key in the token signs, and the certificate there is revoked)",
                p->name);
        return ENR_E_CONFIG;
    }
    if (enr_state_lock(ctx->st) != 0)
        return ENR_E_FAIL;
    rc = enr_load_anchors(p, &anchors);
    if (rc == ENR_OK)
        rc = enr_token_open(p, &t);
    if (rc == ENR_OK)
        rc = cert_file != NULL ? revoke_cert_file(p, cert_file, &c) : enr_token_find(t, p, &c);
    if (rc == ENR_OK && c.cert == NULL) {
        enr_err("profile %s: no certificate in token \"%s\" to revoke%s", p->name,
                enr_token_label(t),
                by_account ? " (a copy of it in a file: --by-account --cert FILE)" : "");
        rc = ENR_E_FAIL;
    } else if (rc == ENR_OK && !c.have_key && !by_account) {
        /* By the account key only the certificate is needed: the case of a
         * lost or damaged certificate key, which revocation exists for. */
        enr_err("profile %s: the certificate's private key is not in token \"%s\", so it cannot "
                "sign the revocation; %s",
                p->name, enr_token_label(t),
                p->proto == ENR_PROTO_ACME
                    ? "revoke with the ACME account key instead (--by-account)"
                    : "ask the CA's operator to revoke the certificate (its serial is in "
                      "'evertoken-enroll status')");
        rc = ENR_E_TOKEN;
    }
    if (rc == ENR_OK && !by_account)
        rc = enr_token_current_key(t, p, &key);
    if (rc == ENR_OK) {
        serial = enr_serial_hex(c.cert);
        rc = ops->revoke(p, t, c.cert, key, anchors, code, by_account);
    }
    if (rc == ENR_OK) {
        char *msg = enr_aprintf("certificate %s revoked at the CA's request by this helper (%s%s)",
                                serial, reason ? reason : "unspecified",
                                by_account ? ", signed by the ACME account key" : "");
        enr_info("profile %s: %s", p->name, msg ? msg : "revoked");
        enr_state_event(ctx->st, p->name, "revoked", msg ? msg : serial);
        enr_event ev = {"revoked", msg ? msg : "certificate revoked", NULL, NULL, serial, 0, -1};
        enr_notify(p, ctx->st, &ev);
        free(msg);
    }
    EVP_PKEY_free(key);
    enr_cred_clear(&c);
    enr_token_close(t);
    sk_X509_pop_free(anchors, X509_free);
    free(serial);
    enr_state_unlock(ctx->st);
    return rc;
}

/* ---- Service loop ------------------------------------------------------- */

static volatile sig_atomic_t stop_flag;

static void
on_term(int sig)
{
    (void)sig;
    stop_flag = 1;
}

/*
 * Sleep up to WAIT seconds (real time), but every unlock_poll seconds look at
 * the profiles whose last check needed a PIN (state "pin-needed", also when a
 * check by hand found the token locked): once the token's login is usable —
 * the person ran `evertoken unlock`, or any program filled evertoken's login
 * cache — the waiting check runs at once instead of at the next 300 s retry.
 * The look is cheap (enr_token_login_ready: no login, no keystore
 * decryption on evertoken) and there is none while nothing waits. Returns
 * early after running a check, so the loop re-plans.
 */
static void
wait_or_unlock(enr_ctx *ctx, enr_profile **v, size_t n, long wait)
{
    const char *e = getenv("EVERTOKEN_ENROLL_UNLOCK_POLL");
    int poll = ctx->unlock_poll > 0 ? ctx->unlock_poll : e != NULL ? atoi(e) : 0;
    time_t end = time(NULL) + wait;

    if (poll <= 0)
        poll = ENR_UNLOCK_POLL;
    while (!stop_flag) {
        long left = (long)(end - time(NULL));
        int ran = 0;

        for (size_t i = 0; i < n && !stop_flag; i++) {
            enr_pstate ps;
            int found, waiting;
            if (enr_state_get(ctx->st, v[i]->name, &ps, &found) != ENR_OK)
                continue;
            waiting = found && ps.state != NULL && !strcmp(ps.state, "pin-needed");
            enr_pstate_clear(&ps);
            if (!waiting || enr_token_login_ready(v[i]) != 1)
                continue;
            enr_info("profile %s: the token is unlocked (a login is usable now); checking at once",
                     v[i]->name);
            enr_state_event(ctx->st, v[i]->name, "unlocked",
                            "login usable: the waiting check runs at once");
            enr_check_profile(ctx, v[i], "retry");
            ran = 1;
        }
        /* "Renew now" chosen in a desktop notification (desktop.c). */
        ran |= enr_desktop_actions(ctx, v, n);
        if (ran || left <= 0)
            return;
        enr_desktop_wait(left < poll ? left : poll);
    }
}

int
enr_run_service(enr_ctx *ctx, time_t until)
{
    enr_profile **v = NULL;
    size_t n = 0, bad = 0;
    int first = 1;
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (until > 0 && !enr_clock_is_fake())
        enr_clock_set(enr_now());
    enr_info("service started (%s)", until > 0 ? "simulated time" : "real time");
    if (until == 0)
        enr_desktop_listen(); /* the actions of its desktop notifications */
    while (!stop_flag) {
        time_t now = enr_now(), next = enr_monitor_round(ctx, now);
        int ran = 0;

        /* Profiles are re-read each round: new ones are picked up. */
        enr_profile_free_all(v, n);
        if (enr_profile_load_dir(ctx->profile_dir, &v, &n, &bad) != ENR_OK)
            n = 0;
        for (size_t i = 0; i < n; i++) {
            enr_pstate ps;
            const char *kind;
            int found;
            time_t due;

            if (enr_state_get(ctx->st, v[i]->name, &ps, &found) != ENR_OK)
                continue;
            if (!found || first) {
                /* Service start with a usable login: an enrollment check at
                 * once, so a certificate can be issued immediately. */
                if (!found) {
                    enr_sched_init(&ps, now);
                    enr_state_put(ctx->st, &ps);
                }
                enr_pstate_clear(&ps);
                enr_check_profile(ctx, v[i], "enroll");
                ran = 1;
                continue;
            }
            due = enr_sched_next_due(&ps, &kind);
            enr_pstate_clear(&ps);
            if (due <= now) {
                enr_check_profile(ctx, v[i], kind);
                ran = 1;
                continue;
            }
            if (next == 0 || due < next)
                next = due;
        }
        first = 0;
        if (ran)
            continue;
        if (until > 0) {
            if (next == 0 || next > until)
                break;
            enr_clock_set(next);
            continue;
        }
        /* Real time: wake at the next due time, at least once a minute to see
         * new profiles and 'evertoken-enroll retry' done by hand; meanwhile
         * watch the tokens of profiles that wait for a login. */
        long wait = next == 0 ? 60 : (long)(next - now);
        if (wait > 60)
            wait = 60;
        if (wait > 0)
            wait_or_unlock(ctx, v, n, wait);
    }
    enr_profile_free_all(v, n);
    enr_info("service stopped");
    return 0;
}
