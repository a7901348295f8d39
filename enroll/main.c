/*
 * main.c — the evertoken-enroll command line (docs/enrollment.md "Commands").
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <sodium.h>

#include "adopt.h"
#include "desktop.h"
#include "enr_int.h"
#include "mon.h"
#include "et_escape.h"

/* One entry per command: its name and its help (`help CMD`, `CMD --help`). */
static const struct enr_cmd_help {
    const char *name;
    const char *help;
} enr_cmds[] = {
    {"check", "usage: evertoken-enroll [OPTIONS] check [PROFILE...]\n"
              "Enrollment and renewal check of every profile (or of the PROFILEs named; a\n"
              "PROFILE may also be a path): enroll when the token has no valid certificate,\n"
              "renew inside the renewal window.\n"},
    {"enroll", "usage: evertoken-enroll [OPTIONS] enroll [PROFILE...]\n"
               "Enrollment check now: enroll when the token has no valid certificate.\n"},
    {"renew", "usage: evertoken-enroll [OPTIONS] renew [--force] [PROFILE...]\n"
              "Renewal check now. --force: renew even before the renewal window (or a\n"
              "certificate already renewed).\n"},
    {"retry", "usage: evertoken-enroll [OPTIONS] retry [PROFILE...]\n"
              "Run the retries that wait (after a network error or a PENDING answer) now; a\n"
              "full check where none waits.\n"},
    {"status", "usage: evertoken-enroll [OPTIONS] status [--json] [--format F]\n"
               "Every profile's certificate (subject, not-after, days left), state, last and\n"
               "next check and last error, and every watched certificate. Exit 0 all fine,\n"
               "1 warning, 2 critical. Reads the state database, so it works while the token\n"
               "is locked. --format table (default), json (= --json) or openmetrics: the\n"
               "Prometheus text format of the metrics file (docs/monitoring.md).\n"},
    {"run", "usage: evertoken-enroll [OPTIONS] run [--until TIME] [--unlock-poll S]\n"
            "The service (systemd user unit evertoken-enroll.service): checks every profile\n"
            "on its schedule until SIGTERM. --until TIME: simulate up to TIME with the fake\n"
            "clock, without sleeping (tests). --unlock-poll S: seconds between looks at a\n"
            "locked token (1..3600, default 5).\n"},
    {"revoke", "usage: evertoken-enroll [OPTIONS] revoke PROFILE [--reason R]\n"
               "       [--by-account [--cert FILE]]\n"
               "Ask the profile's CA to revoke its current certificate (CMP rr or ACME\n"
               "revokeCert, signed by the certificate's key in the token; ACME with\n"
               "--by-account: by the profile's account key in the token, so the certificate's\n"
               "own key is not needed: it may be lost; --cert FILE: the certificate (PEM or\n"
               "DER) from FILE, when the token lost it too). R: unspecified (default),\n"
               "keyCompromise, cACompromise, affiliationChanged, superseded,\n"
               "cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise.\n"
               "SCEP and EST have no revocation request: the command says what to do\n"
               "instead.\n"},
    {"adopt", "usage: evertoken-enroll [OPTIONS] adopt PROFILE (--id HEX | --label L)\n"
              "Bring a key and certificate already in the token (imported from a PKCS#12,\n"
              "enrolled by another tool) under PROFILE's renewal: the certificate with CKA_ID\n"
              "HEX or label L, after checking that its private key is in the token and\n"
              "matches, that it chains to the profile's anchors and that the profile has no\n"
              "credential yet. Its objects then take the profile's CKA_ID and label.\n"},
    {"acme-keychange",
     "usage: evertoken-enroll [OPTIONS] acme-keychange PROFILE\n"
     "ACME account key rollover (RFC 8555 section 7.3.5): a new account key is\n"
     "generated in the token, the CA is told (signed by the old and the new key),\n"
     "then the old key is deleted and the new one takes its label and CKA_ID.\n"},
    {"hooks", "usage: evertoken-enroll [OPTIONS] hooks rerun PROFILE\n"
              "Re-run the profile's post-processing script for its current certificate.\n"},
    {"history", "usage: evertoken-enroll [OPTIONS] history [PROFILE]\n"
                "The event history (of every profile, or of PROFILE).\n"},
    {"validate", "usage: evertoken-enroll [OPTIONS] validate [FILE...]\n"
                 "Parse the profiles (every *.conf of the profile directory, or the FILEs) and\n"
                 "report every error as FILE:LINE: [section] key: what is wrong.\n"},
    {"digest", "usage: evertoken-enroll [OPTIONS] digest [--send]\n"
               "The daily digest: what needs attention (due, failing or expiring) and the\n"
               "status table. Printed on stdout, or with --send mailed now to the [mail]\n"
               "recipients of the monitor settings (the service sends it daily at\n"
               "digest_time when digest = yes).\n"},
    {"watch", "usage: evertoken-enroll [OPTIONS] watch check [ENTRY...]\n"
              "       evertoken-enroll [OPTIONS] watch add NAME SOURCE [KEY=VALUE...]\n"
              "Check the watch entries of the monitor settings ([watch NAME]: token\n"
              "certificates, PEM/DER files and directories, TLS endpoints) now, or those\n"
              "named: expiry, chain, revocation, weak keys, the expected endpoint\n"
              "certificate. Prints their certificates; exit 0 all fine, 1 warning,\n"
              "2 critical (3: no such entry). The service checks them daily.\n"
              "add: append a [watch NAME] section (SOURCE: pkcs11:..., a file or directory\n"
              "path, tls://HOST:PORT; KEY=VALUE: anchors, expect, sni, ...) to the monitor\n"
              "settings; the file must still load, else nothing changes.\n"},
    {"help", "usage: evertoken-enroll help [COMMAND]\n"
             "The list of commands, or the help of COMMAND.\n"},
};

static const struct enr_cmd_help *
cmd_lookup(const char *name)
{
    for (size_t i = 0; i < sizeof(enr_cmds) / sizeof(enr_cmds[0]); i++)
        if (!strcmp(enr_cmds[i].name, name))
            return &enr_cmds[i];
    return NULL;
}

static void
usage(FILE *out)
{
    fputs("usage: evertoken-enroll [OPTIONS] COMMAND [ARGS]\n"
          "\n"
          "Commands:\n"
          "  check [PROFILE...]         enrollment and renewal check now\n"
          "  enroll [PROFILE...]        enrollment check now (enroll if no valid certificate)\n"
          "  renew [--force] [PROFILE...] renewal check now (--force: even outside the window)\n"
          "  retry [PROFILE...]         retry failed checks now\n"
          "  status [--json] [--format F] every profile's and watched certificate's state;\n"
          "                             exit 0/1/2 (F: table, json, openmetrics)\n"
          "  run [--until TIME] [--unlock-poll S]\n"
          "                             the service (--until: simulate up to TIME, no sleeping;\n"
          "                             --unlock-poll: seconds between looks at a locked token)\n"
          "  revoke PROFILE [--reason R] [--by-account [--cert FILE]]\n"
          "                             ask the CA to revoke the current certificate (CMP,\n"
          "                             ACME; R: keyCompromise, superseded, ...)\n"
          "  adopt PROFILE (--id HEX | --label L)\n"
          "                             bring an imported credential under PROFILE's renewal\n"
          "  acme-keychange PROFILE     ACME: a new account key in the token (key rollover)\n"
          "  hooks rerun PROFILE        re-run the post-processing script\n"
          "  history [PROFILE]          the event history\n"
          "  validate [FILE...]         parse profiles and report errors\n"
          "  digest [--send]            the daily digest (--send: mail it now)\n"
          "  watch check [ENTRY...]     check the watched certificates now\n"
          "  watch add NAME SOURCE [KEY=VALUE...] add a watch entry to the monitor settings\n"
          "  help [COMMAND]             this text, or a command's help\n"
          "\n"
          "Options:\n"
          "  --profiles DIR   profile directory (default $XDG_CONFIG_HOME/evertoken/profiles)\n"
          "  --state-dir DIR  state directory (default $XDG_STATE_HOME/evertoken)\n"
          "  --config FILE    monitor settings: metrics, mail, watch entries (default\n"
          "                   $XDG_CONFIG_HOME/evertoken/monitor.conf)\n"
          "  --now TIME       pretend the time is TIME (epoch or YYYY-MM-DDTHH:MM:SSZ; tests)\n"
          "  -v, --verbose    debug messages\n"
          "  -h, --help       this help\n"
          "  --version        the version\n"
          "\n"
          "See `evertoken-enroll COMMAND --help`, evertoken-enroll(1), evertoken-enroll.conf(5).\n",
          out);
}

/* The profile directory must exist and hold at least one profile: otherwise
 * say where it was looked for and what to do (instead of an empty result). */
static int
profile_dir_ready(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int found = 0;

    if (d == NULL) {
        if (errno == ENOENT)
            enr_err("the profile directory %s does not exist: create it with a profile "
                    "NAME.conf in it (see evertoken-enroll.conf(5)), or name another "
                    "directory with --profiles DIR",
                    dir);
        else
            enr_err("cannot read the profile directory %s: %s", dir, strerror(errno));
        return 0;
    }
    while (!found && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        found = l > 5 && de->d_name[0] != '.' && !strcmp(de->d_name + l - 5, ".conf");
    }
    closedir(d);
    if (!found)
        enr_err("no profiles (*.conf) in %s: add one (see evertoken-enroll.conf(5) and "
                "`evertoken-enroll validate`), or name another directory with --profiles DIR",
                dir);
    return found;
}

/* Profiles named on the command line (by name or path), or all of them. */
static int
load_selected(enr_ctx *ctx, int argc, char **argv, enr_profile ***out, size_t *n)
{
    enr_profile **all = NULL;
    size_t na = 0, bad = 0;

    *out = NULL;
    *n = 0;
    if (enr_profile_load_dir(ctx->profile_dir, &all, &na, &bad) != ENR_OK)
        return ENR_EXIT_CONFIG;
    if (argc == 0) {
        *out = all;
        *n = na;
        if (na == 0 && bad == 0)
            enr_warn("no profiles in %s", ctx->profile_dir);
        return bad ? ENR_EXIT_CONFIG : ENR_EXIT_OK;
    }
    enr_profile **sel = calloc((size_t)argc, sizeof(*sel));
    int rc = ENR_EXIT_OK;
    for (int i = 0; i < argc && sel != NULL; i++) {
        enr_profile *p = NULL;
        if (strchr(argv[i], '/') != NULL) {
            if (enr_profile_load(argv[i], &p) != ENR_OK) {
                rc = ENR_EXIT_CONFIG;
                continue;
            }
        } else {
            for (size_t j = 0; j < na; j++)
                if (all[j] != NULL && !strcmp(all[j]->name, argv[i])) {
                    p = all[j];
                    all[j] = NULL;
                }
            if (p == NULL) {
                enr_err("no valid profile named %s in %s", argv[i], ctx->profile_dir);
                rc = ENR_EXIT_CONFIG;
                continue;
            }
        }
        sel[(*n)++] = p;
    }
    enr_profile_free_all(all, na);
    *out = sel;
    return rc;
}

static int
cmd_checks(enr_ctx *ctx, const char *kind, int argc, char **argv)
{
    enr_profile **v;
    size_t n;
    int rc = load_selected(ctx, argc, argv, &v, &n), worst = rc;

    for (size_t i = 0; i < n; i++) {
        const char *k = kind;
        if (!strcmp(kind, "retry")) {
            enr_pstate ps;
            int found = 0;
            /* Nothing waiting for a retry: a full check is what "retry now" means. */
            if (enr_state_get(ctx->st, v[i]->name, &ps, &found) == ENR_OK && found &&
                ps.retry_at == 0)
                k = "check";
            enr_pstate_clear(&ps);
        }
        int r = enr_rc_exit(enr_check_profile(ctx, v[i], k));
        if (r > worst)
            worst = r;
    }
    enr_profile_free_all(v, n);
    return worst;
}

static int
cmd_revoke(enr_ctx *ctx, int argc, char **argv, const char *reason, int by_account,
           const char *cert_file, int keychange)
{
    enr_profile **v = NULL;
    size_t n = 0;
    int rc;

    if (argc != 1) {
        enr_err("usage: evertoken-enroll %s", keychange
                                                  ? "acme-keychange PROFILE"
                                                  : "revoke PROFILE [--reason R] [--by-account "
                                                    "[--cert FILE]]");
        return ENR_EXIT_USAGE;
    }
    rc = load_selected(ctx, 1, argv, &v, &n);
    if (rc == ENR_EXIT_OK && n == 1)
        rc = enr_rc_exit(keychange ? enr_acme_keychange(ctx, v[0])
                                   : enr_revoke_profile(ctx, v[0], reason, by_account, cert_file));
    else if (rc == ENR_EXIT_OK)
        rc = ENR_EXIT_CONFIG;
    enr_profile_free_all(v, n);
    return rc;
}

static int
cmd_adopt(enr_ctx *ctx, int argc, char **argv, const char *id, const char *label)
{
    enr_profile **v = NULL;
    size_t n = 0;
    int rc;

    if (argc != 1) {
        enr_err("usage: evertoken-enroll adopt PROFILE (--id HEX | --label L)");
        return ENR_EXIT_USAGE;
    }
    rc = load_selected(ctx, 1, argv, &v, &n);
    if (rc == ENR_EXIT_OK && n == 1)
        rc = enr_rc_exit(enr_adopt_profile(ctx, v[0], id, label));
    else if (rc == ENR_EXIT_OK)
        rc = ENR_EXIT_CONFIG;
    enr_profile_free_all(v, n);
    return rc;
}

static int
cmd_hooks(enr_ctx *ctx, int argc, char **argv)
{
    enr_profile **v;
    size_t n;
    enr_pstate ps;
    int found, rc;
    char *pem, *uri = NULL;
    enr_token *t = NULL;

    if (argc != 2 || strcmp(argv[0], "rerun") != 0) {
        enr_err("usage: evertoken-enroll hooks rerun PROFILE");
        return ENR_EXIT_USAGE;
    }
    rc = load_selected(ctx, 1, argv + 1, &v, &n);
    if (rc != ENR_EXIT_OK || n != 1) {
        enr_profile_free_all(v, n);
        return rc ? rc : ENR_EXIT_CONFIG;
    }
    if (enr_state_get(ctx->st, v[0]->name, &ps, &found) != ENR_OK || !found ||
        ps.cert_serial == NULL) {
        enr_err("profile %s has no certificate yet; nothing to post-process", v[0]->name);
        enr_pstate_clear(&ps);
        enr_profile_free_all(v, n);
        return ENR_EXIT_FAIL;
    }
    pem = enr_aprintf("%s/certs/%s.pem", enr_state_dir(ctx->st), v[0]->name);
    if (enr_token_open(v[0], &t) == ENR_OK)
        uri = enr_token_cred_uri(t, v[0]);
    enr_token_close(t);
    if (ps.last_result == NULL)
        enr_pstate_set(&ps.last_result, "enrolled");
    rc = enr_run_post_script(v[0], &ps, ctx->st, uri, pem) == ENR_OK ? ENR_EXIT_OK : ENR_EXIT_FAIL;
    enr_state_event(ctx->st, v[0]->name, "hooks-rerun", ps.hook_status);
    enr_state_put(ctx->st, &ps);
    enr_pstate_clear(&ps);
    free(pem);
    free(uri);
    enr_profile_free_all(v, n);
    return rc;
}

static int
cmd_validate(enr_ctx *ctx, int argc, char **argv)
{
    enr_profile **v;
    size_t n;
    int rc = load_selected(ctx, argc, argv, &v, &n);

    for (size_t i = 0; i < n; i++)
        printf("%s: ok (%s, subject %s, token %s)\n", et_escs(v[i]->path), et_escs(v[i]->url),
               et_escs(v[i]->subject), et_escs(v[i]->token_uri));
    enr_profile_free_all(v, n);
    return rc;
}

/* ---- monitoring (mon.h, docs/monitoring.md) ------------------------------ */

/* The monitor settings: --config FILE, else the default path (absent there:
 * nothing configured). */
static int
load_monitor(const char *config, enr_moncfg **mon)
{
    char *mpath = config ? enr_strdup(config) : enr_moncfg_default_path();
    enr_rc rc = enr_moncfg_load(mpath, config != NULL, mon);

    free(mpath);
    if (rc != ENR_OK)
        return -1;
    enr_moncfg_set(*mon);
    return 0;
}

/* status --format F: 1 for json, 0 for table or openmetrics, -1 unknown. */
static int
status_format(const char *f)
{
    if (strcmp(f, "table") && strcmp(f, "json") && strcmp(f, "openmetrics")) {
        enr_err("--format %s: table, json or openmetrics", f);
        return -1;
    }
    return !strcmp(f, "json");
}

/* status (FORMAT table, json, openmetrics), digest [--send], watch check. */
static int
cmd_monitor(enr_ctx *ctx, const char *cmd, const char *format, int send, int argc, char **argv)
{
    const enr_moncfg *mon = enr_moncfg_get();

    if (!strcmp(cmd, "status") && !strcmp(format, "openmetrics"))
        return enr_metrics_render(ctx, stdout) == 0 ? ENR_EXIT_OK : ENR_EXIT_FAIL;
    if (!strcmp(cmd, "status"))
        return enr_status(ctx, !strcmp(format, "json"), stdout);
    if (!strcmp(cmd, "digest")) {
        if (send && (mon == NULL || mon->smtp_url == NULL)) {
            enr_err("digest --send: no [mail] in the monitor settings");
            return ENR_EXIT_CONFIG;
        }
        return enr_mail_digest(ctx, enr_now(), 1, send ? NULL : stdout) == 0 ? ENR_EXIT_OK
                                                                             : ENR_EXIT_FAIL;
    }
    if (argc >= 1 && !strcmp(argv[0], "add")) {
        if (argc < 3 || mon == NULL || mon->path == NULL) {
            enr_err("usage: evertoken-enroll watch add NAME SOURCE [KEY=VALUE...]");
            return ENR_EXIT_USAGE;
        }
        if (enr_moncfg_add_watch(mon->path, argv[1], argv[2], argc - 3, argv + 3) != ENR_OK)
            return ENR_EXIT_CONFIG;
        printf("added [watch %s] to %s\n", argv[1], mon->path);
        return ENR_EXIT_OK;
    }
    if (argc < 1 || strcmp(argv[0], "check") != 0) {
        enr_err("usage: evertoken-enroll watch check [ENTRY...] | watch add NAME SOURCE "
                "[KEY=VALUE...]");
        return ENR_EXIT_USAGE;
    }
    if (enr_watch_check(ctx, argc - 1, argv + 1, enr_now()) < (argc > 1 ? argc - 1 : 1)) {
        enr_err("no such watch entry in the monitor settings %s",
                mon && mon->path ? mon->path : "(none)");
        return ENR_EXIT_CONFIG;
    }
    return enr_watch_status(ctx, 0, stdout, argc - 1, argv + 1);
}

/* What the command line gave besides the command and its arguments. */
typedef struct cmd_opts {
    const char *profiles, *state_dir, *config;
    const char *reason;                 /* revoke --reason */
    const char *cert_file;              /* revoke --cert */
    const char *adopt_id, *adopt_label; /* adopt --id, --label */
    const char *format;                 /* status --format, NULL: from --json */
    time_t until;                       /* run --until, 0: none */
    int json, force, unlock_poll, send;
    int by_account; /* revoke --by-account */
} cmd_opts;

/* The options before the command; -1 to go on, else an exit code. */
static int
global_options(int argc, char **argv, cmd_opts *o)
{
    static const struct option opts[] = {{"profiles", required_argument, NULL, 'P'},
                                         {"state-dir", required_argument, NULL, 'S'},
                                         {"now", required_argument, NULL, 'N'},
                                         {"verbose", no_argument, NULL, 'v'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"force", no_argument, NULL, 'f'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"until", required_argument, NULL, 'U'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"config", required_argument, NULL, 'C'},
                                         {NULL, 0, NULL, 0}};
    time_t t;
    int c;

    while ((c = getopt_long(argc, argv, "+vh", opts, NULL)) != -1) {
        switch (c) {
        case 'P':
            o->profiles = optarg;
            break;
        case 'S':
            o->state_dir = optarg;
            break;
        case 'C':
            o->config = optarg;
            break;
        case 'N':
            if (enr_parse_time(optarg, &t) != 0) {
                enr_err("--now %s: not a time (epoch seconds or YYYY-MM-DDTHH:MM:SSZ)", optarg);
                return ENR_EXIT_USAGE;
            }
            enr_clock_set(t);
            break;
        case 'v':
            enr_set_verbose(1);
            break;
        case 'h':
            usage(stdout);
            return ENR_EXIT_OK;
        case 'V':
            printf("evertoken-enroll %s\n", EVERTOKEN_VERSION);
            return ENR_EXIT_OK;
        default:
            usage(stderr);
            return ENR_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return ENR_EXIT_USAGE;
    }
    return -1;
}

/* "help [CMD]" or CMD's --help anywhere among its arguments (ARGV[FIRST]
 * is the command): an exit code, or -1 when no help was asked. */
static int
help_asked(const struct enr_cmd_help *ch, int first, int argc, char **argv)
{
    if (!strcmp(argv[first], "help")) {
        if (first + 1 >= argc || !strcmp(argv[first + 1], "--help") ||
            !strcmp(argv[first + 1], "-h")) {
            usage(stdout);
            return ENR_EXIT_OK;
        }
        ch = cmd_lookup(argv[first + 1]);
        if (ch == NULL) {
            enr_err("unknown command '%s'", argv[first + 1]);
            usage(stderr);
            return ENR_EXIT_USAGE;
        }
        fputs(ch->help, stdout);
        return ENR_EXIT_OK;
    }
    for (int i = first + 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(ch->help, stdout);
            return ENR_EXIT_OK;
        }
    return -1;
}

/* run's options --unlock-poll S and --until T at ARGV[*I]; -1 to go on,
 * else an exit code. */
static int
run_option(int argc, char **argv, int *i, cmd_opts *o)
{
    if (!strcmp(argv[*i], "--unlock-poll") && *i + 1 < argc) {
        char *end;
        long v = strtol(argv[++*i], &end, 10);
        if (*end != '\0' || v < 1 || v > 3600) {
            enr_err("--unlock-poll %s: seconds between 1 and 3600", argv[*i]);
            return ENR_EXIT_USAGE;
        }
        o->unlock_poll = (int)v;
        return -1;
    }
    if (enr_parse_time(argv[++*i], &o->until) != 0) { /* --until */
        enr_err("--until %s: not a time", argv[*i]);
        return ENR_EXIT_USAGE;
    }
    return -1;
}

/* The options of CMD among ARGV[FIRST..] into O; the other arguments into
 * CARGV (*CARGC of them). -1 to go on, else an exit code. */
static int
command_options(const char *cmd, int first, int argc, char **argv, cmd_opts *o, char **cargv,
                int *cargc)
{
    for (int i = first; i < argc; i++) {
        int more = i + 1 < argc, rc;

        if (!strcmp(argv[i], "--force") && !strcmp(cmd, "renew"))
            o->force = 1;
        else if (!strcmp(argv[i], "--send") && !strcmp(cmd, "digest"))
            o->send = 1;
        else if (!strcmp(argv[i], "--json") && !strcmp(cmd, "status"))
            o->json = 1;
        else if (!strcmp(argv[i], "--format") && !strcmp(cmd, "status") && more) {
            if ((o->json = status_format(o->format = argv[++i])) < 0)
                return ENR_EXIT_USAGE;
        } else if (!strcmp(argv[i], "--reason") && !strcmp(cmd, "revoke") && more)
            o->reason = argv[++i];
        else if (!strcmp(argv[i], "--by-account") && !strcmp(cmd, "revoke"))
            o->by_account = 1;
        else if (!strcmp(argv[i], "--cert") && !strcmp(cmd, "revoke") && more)
            o->cert_file = argv[++i];
        else if (!strcmp(argv[i], "--id") && !strcmp(cmd, "adopt") && more)
            o->adopt_id = argv[++i];
        else if (!strcmp(argv[i], "--label") && !strcmp(cmd, "adopt") && more)
            o->adopt_label = argv[++i];
        else if ((!strcmp(argv[i], "--unlock-poll") || !strcmp(argv[i], "--until")) &&
                 !strcmp(cmd, "run") && more) {
            if ((rc = run_option(argc, argv, &i, o)) >= 0)
                return rc;
        } else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v"))
            enr_set_verbose(1);
        else if (argv[i][0] == '-' && argv[i][1] == '-') {
            enr_err("%s: unknown option %s", cmd, argv[i]);
            return ENR_EXIT_USAGE;
        } else
            cargv[(*cargc)++] = argv[i];
    }
    return -1;
}

/* Run CMD with its arguments CARGV: the profile directory and the monitor
 * settings (MON) checked, the state database opened. */
static int
run_command(enr_ctx *ctx, const char *cmd, int cargc, char **cargv, const cmd_opts *o,
            const enr_moncfg *mon)
{
    /* Every command but history reads the profile directory, unless it was
     * given only profile paths; a machine may only watch certificates: then
     * no profile is needed. */
    int only_paths = cargc > 0;
    for (int i = 0; i < cargc; i++)
        if (strchr(cargv[i], '/') == NULL)
            only_paths = 0;
    if (strcmp(cmd, "history") != 0 && strcmp(cmd, "watch") != 0 && !only_paths &&
        (mon == NULL || mon->n_watch == 0) && !profile_dir_ready(ctx->profile_dir))
        return ENR_EXIT_CONFIG;
    ctx->force = o->force;
    ctx->unlock_poll = o->unlock_poll;
    if (!strcmp(cmd, "validate"))
        return cmd_validate(ctx, cargc, cargv);
    if (enr_state_open(o->state_dir, &ctx->st) != ENR_OK)
        return ENR_EXIT_FAIL;
    enr_mail_set_ctx(ctx);
    if (!strcmp(cmd, "check") || !strcmp(cmd, "enroll") || !strcmp(cmd, "renew") ||
        !strcmp(cmd, "retry"))
        return cmd_checks(ctx, cmd, cargc, cargv);
    if (!strcmp(cmd, "status") || !strcmp(cmd, "digest") || !strcmp(cmd, "watch"))
        return cmd_monitor(ctx, cmd,
                           o->format ? o->format
                           : o->json ? "json"
                                     : "table",
                           o->send, cargc, cargv);
    if (!strcmp(cmd, "run"))
        return enr_run_service(ctx, o->until);
    if (!strcmp(cmd, "hooks"))
        return cmd_hooks(ctx, cargc, cargv);
    if (!strcmp(cmd, "revoke"))
        return cmd_revoke(ctx, cargc, cargv, o->reason, o->by_account, o->cert_file, 0);
    if (!strcmp(cmd, "adopt"))
        return cmd_adopt(ctx, cargc, cargv, o->adopt_id, o->adopt_label);
    if (!strcmp(cmd, "acme-keychange"))
        return cmd_revoke(ctx, cargc, cargv, NULL, 0, NULL, 1);
    if (!strcmp(cmd, "history"))
        return enr_state_print_events(ctx->st, cargc ? cargv[0] : NULL, stdout) == ENR_OK
                   ? ENR_EXIT_OK
                   : ENR_EXIT_FAIL;
    enr_err("unknown command '%s'", cmd);
    usage(stderr);
    return ENR_EXIT_USAGE;
}

int
main(int argc, char **argv)
{
    cmd_opts o;
    enr_ctx ctx;
    enr_moncfg *mon = NULL;
    const struct enr_cmd_help *ch;
    const char *cmd;
    char **cargv, *pdir;
    int cargc = 0, rc;

    memset(&o, 0, sizeof(o));
    memset(&ctx, 0, sizeof(ctx));
    rc = global_options(argc, argv, &o);
    if (rc >= 0)
        return rc;
    cmd = argv[optind];
    ch = cmd_lookup(cmd);
    if (ch == NULL) {
        enr_err("unknown command '%s'", cmd);
        usage(stderr);
        return ENR_EXIT_USAGE;
    }
    rc = help_asked(ch, optind, argc, argv);
    if (rc >= 0)
        return rc;
    cargv = calloc((size_t)argc + 1, sizeof(char *));
    if (cargv == NULL)
        return ENR_EXIT_FAIL;
    rc = command_options(cmd, optind + 1, argc, argv, &o, cargv, &cargc);
    if (rc >= 0) {
        free(cargv);
        return rc;
    }
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        enr_err("cannot initialise libsodium/libcurl");
        free(cargv);
        return ENR_EXIT_FAIL;
    }
    pdir = enr_profile_dir(o.profiles);
    if (pdir == NULL) {
        free(cargv);
        return ENR_EXIT_CONFIG;
    }
    ctx.profile_dir = pdir;
    rc = load_monitor(o.config, &mon) != 0 ? ENR_EXIT_CONFIG
                                           : run_command(&ctx, cmd, cargc, cargv, &o, mon);
    enr_desktop_close();
    enr_state_close(ctx.st);
    enr_moncfg_set(NULL);
    enr_moncfg_free(mon);
    free(pdir);
    free(cargv);
    curl_global_cleanup();
    return rc;
}
