/*
 * evertoken.c — the admin CLI's entry point: option parsing, help, dispatch.
 *
 * Every command shares one option table; each command lists the options it
 * accepts, so a misplaced option is a usage error instead of being silently
 * ignored.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "et_int.h"

enum {
    O_MODULE = 256,
    O_TOKEN,
    O_SLOT,
    O_PIN,
    O_SO_PIN,
    O_NEW_PIN,
    O_PASS,
    O_LABEL,
    O_ID,
    O_CLASS,
    O_OUT,
    O_SO,
    O_LOGIN,
    O_DER,
    O_FORCE,
    O_CHAIN,
    O_WITH_STATE,
    O_ENROLL_STATE,
    O_HELP,
};

static const struct option et_long[] = {
    {"module", required_argument, NULL, O_MODULE},
    {"token", required_argument, NULL, O_TOKEN},
    {"slot", required_argument, NULL, O_SLOT},
    {"pin", required_argument, NULL, O_PIN},
    {"pin-source", required_argument, NULL, O_PIN},
    {"so-pin", required_argument, NULL, O_SO_PIN},
    {"so-pin-source", required_argument, NULL, O_SO_PIN},
    {"new-pin", required_argument, NULL, O_NEW_PIN},
    {"new-pin-source", required_argument, NULL, O_NEW_PIN},
    {"passphrase", required_argument, NULL, O_PASS},
    {"passphrase-source", required_argument, NULL, O_PASS},
    {"label", required_argument, NULL, O_LABEL},
    {"id", required_argument, NULL, O_ID},
    {"class", required_argument, NULL, O_CLASS},
    {"output", required_argument, NULL, O_OUT},
    {"so", no_argument, NULL, O_SO},
    {"login", no_argument, NULL, O_LOGIN},
    {"der", no_argument, NULL, O_DER},
    {"force", no_argument, NULL, O_FORCE},
    {"chain", no_argument, NULL, O_CHAIN},
    {"with-helper-state", no_argument, NULL, O_WITH_STATE},
    {"enroll-state", required_argument, NULL, O_ENROLL_STATE},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

typedef struct et_cmd {
    const char *name;
    int (*fn)(et_opts *o);
    const int *allowed; /* O_* codes, 0-terminated (O_MODULE and O_HELP always allowed) */
    const char *usage;
} et_cmd;

static const int a_init[] = {O_LABEL, O_SO_PIN, O_PIN, 0};
static const int a_pin[] = {O_TOKEN, O_SLOT, O_SO, O_PIN, O_SO_PIN, O_NEW_PIN, 0};
static const int a_list[] = {O_TOKEN, O_SLOT, O_LOGIN, O_PIN, 0};
static const int a_import[] = {O_TOKEN, O_SLOT, O_PIN, O_PASS, O_LABEL, O_ID, 0};
static const int a_delete[] = {O_TOKEN, O_SLOT, O_PIN, O_LABEL, O_ID, O_CLASS, 0};
static const int a_export[] = {O_TOKEN, O_SLOT, O_LABEL, O_ID, O_DER, O_CHAIN, O_OUT, O_FORCE, 0};
static const int a_backup[] = {O_TOKEN, O_SLOT, O_WITH_STATE, O_ENROLL_STATE, 0};
static const int a_restore[] = {O_TOKEN, O_SLOT, O_FORCE, O_ENROLL_STATE, 0};
static const int a_info[] = {O_TOKEN, O_SLOT, O_LOGIN, O_PIN, 0};
static const int a_settings[] = {O_TOKEN, O_SLOT, O_PIN, O_SO, O_SO_PIN, 0};
static const int a_unlock[] = {O_TOKEN, O_SLOT, O_PIN, 0};
static const int a_lock[] = {O_TOKEN, O_SLOT, 0};

#define PIN_SRC_HELP                                                                               \
    "PIN and passphrase sources (SRC): env:VAR, file:PATH, pass:VALUE (visible to other\n"         \
    "users in the process list), stdin (one line), prompt. Without one, evertoken\n"               \
    "prompts on the terminal.\n"

static const et_cmd et_cmds[] = {
    {"init", et_cmd_init, a_init,
     "usage: evertoken init --label LABEL [--so-pin SRC] [--pin SRC]\n"
     "Create a new token on the free slot, set its SO PIN and user PIN.\n" PIN_SRC_HELP},
    {"pin", et_cmd_pin, a_pin,
     "usage: evertoken pin change [--so] (--token LABEL | --slot N) [--pin SRC | --so-pin SRC]\n"
     "                            [--new-pin SRC]\n"
     "       evertoken pin unlock (--token LABEL | --slot N) [--so-pin SRC] [--new-pin SRC]\n"
     "change: change the user PIN (or with --so the SO PIN), knowing the old one.\n"
     "unlock: with the SO PIN, set a new user PIN; this also clears a lockout.\n" PIN_SRC_HELP},
    {"list", et_cmd_list, a_list,
     "usage: evertoken list\n"
     "       evertoken list (--token LABEL | --slot N) [--login [--pin SRC]]\n"
     "Without a token: list the slots and tokens. With one: list its objects\n"
     "(private objects only with --login).\n" PIN_SRC_HELP},
    {"import", et_cmd_import, a_import,
     "usage: evertoken import (--token LABEL | --slot N) [--pin SRC] [--passphrase SRC]\n"
     "                        [--label LABEL] [--id HEX] FILE...\n"
     "Import PEM (certificates, private keys, encrypted keys), PKCS#12, DER certificates\n"
     "and PKCS#7 bundles. The format is detected from the content. A key and its\n"
     "certificate get one CKA_ID and label. All or nothing: on error, nothing "
     "stays.\n" PIN_SRC_HELP},
    {"delete", et_cmd_delete, a_delete,
     "usage: evertoken delete (--token LABEL | --slot N) (--id HEX | --label LABEL)\n"
     "                        [--class cert|key|pubkey|privkey|data|all] [--pin SRC]\n"
     "Destroy the matching objects (default class: all).\n" PIN_SRC_HELP},
    {"export-cert", et_cmd_export_cert, a_export,
     "usage: evertoken export-cert (--token LABEL | --slot N) (--id HEX | --label LABEL)\n"
     "                             [--der | --chain] [-o FILE [--force]]\n"
     "Write a certificate (PEM, or DER with --der) to stdout or FILE (a new file;\n"
     "--force replaces an existing regular file; symbolic links are never followed).\n"
     "--chain: a PEM bundle of the certificate and the CA certificates of the token\n"
     "that issued it, up to and not including a self-signed root.\n"},
    {"backup", et_cmd_backup, a_backup,
     "usage: evertoken backup (--token LABEL | --slot N) [--with-helper-state\n"
     "                        [--enroll-state DIR]] OUT\n"
     "Write a consistent copy of the (still encrypted) keystore file to OUT; safe\n"
     "while other programs use the token. --with-helper-state: OUT is one bundle\n"
     "file of the keystore and the state of evertoken-enroll (profile states, check\n"
     "times, pending requests, learned CA anchors; from DIR, default the helper's\n"
     "state directory), so a restored machine resumes without re-enrolling.\n"},
    {"restore", et_cmd_restore, a_restore,
     "usage: evertoken restore BACKUP [--slot N | --token LABEL] [--force]\n"
     "                        [--enroll-state DIR]\n"
     "Restore a backup into a new slot (default), or over slot N / token LABEL\n"
     "(an existing token is only replaced with --force). A bundle made with\n"
     "--with-helper-state also restores the helper's state into DIR (default the\n"
     "helper's state directory); a state there that is newer than the bundle's is\n"
     "only replaced with --force. Every part is checked before anything changes.\n"},
    {"info", et_cmd_info, a_info,
     "usage: evertoken info [--token LABEL | --slot N] [--login [--pin SRC]]\n"
     "Module, token and keystore details (KDF parameters, schema version, file,\n"
     "failed-PIN counters); with --login, objects that failed their integrity check.\n"},
    {"settings", et_cmd_settings, a_settings,
     "usage: evertoken settings (--token LABEL | --slot N)\n"
     "       evertoken settings (--token LABEL | --slot N) [--pin SRC | --so --so-pin SRC]\n"
     "                          login_cache=none|process|user:SECONDS\n"
     "Show the token's settings, or change one (needs the user PIN, or with --so the\n"
     "SO PIN). login_cache: none = every login needs the PIN; process = one login per\n"
     "process (standard PKCS#11, the default); user:SECONDS = after `evertoken unlock`\n"
     "(or any login with the PIN) this user's programs log in without the PIN for\n"
     "SECONDS (1..2592000). Changing it empties the login cache.\n" PIN_SRC_HELP},
    {"unlock", et_cmd_unlock, a_unlock,
     "usage: evertoken unlock (--token LABEL | --slot N) [--pin SRC]\n"
     "Ask for the user PIN and fill the token's login cache (login_cache=user:SECONDS):\n"
     "until it expires, this user's programs log in without a PIN. Without --pin the\n"
     "PIN is asked on the terminal, or read as one line from standard input when that\n"
     "is not a terminal.\n" PIN_SRC_HELP},
    {"lock", et_cmd_lock, a_lock,
     "usage: evertoken lock (--token LABEL | --slot N)\n"
     "Empty the token's login cache: the next login needs the PIN again. Programs\n"
     "already logged in stay logged in until they log out or exit.\n"},
};

/* One message line on stderr. Messages quote labels, file names and
 * library errors: the whole line is escaped (et_escape.h), so nothing in it
 * can start a new line or reach the terminal as a control sequence. */
static void
et_vmsg(const char *prefix, const char *fmt, va_list ap)
{
    char *msg = NULL, *esc = NULL;

    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    if (msg != NULL)
        esc = et_escape_alloc(msg, strlen(msg), ET_ESC_TEXT);
    fprintf(stderr, "%s%s\n", prefix, esc != NULL ? esc : "(out of memory formatting a message)");
    free(esc);
    free(msg);
}

void
et_err(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    et_vmsg("evertoken: ", fmt, ap);
    va_end(ap);
}

void
et_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    et_vmsg("evertoken: warning: ", fmt, ap);
    va_end(ap);
}

static void
et_usage_all(FILE *fp)
{
    fputs("usage: evertoken [--module PATH] COMMAND [OPTIONS]\n"
          "\n"
          "Commands:\n"
          "  init         create a token on the free slot\n"
          "  pin          change a PIN, or unlock the user PIN with the SO PIN\n"
          "  list         list tokens, or the objects of one token\n"
          "  import       import keys and certificates (PEM, PKCS#12, DER, PKCS#7)\n"
          "  delete       delete objects by CKA_ID or label\n"
          "  export-cert  write a certificate as PEM or DER\n"
          "  backup       copy a token's keystore file while in use\n"
          "  restore      restore a backup into a slot\n"
          "  info         module, token and keystore details\n"
          "  settings     show or change token settings (login_cache)\n"
          "  unlock       fill the login cache (login_cache=user:SECONDS)\n"
          "  lock         empty the login cache\n"
          "  help [CMD]   this text, or a command's help\n"
          "\n"
          "Options: --module PATH (the PKCS#11 module), --help, --version.\n"
          "Tokens are selected with --token LABEL or --slot N. The module is --module PATH,\n"
          "else $EVERTOKEN_MODULE, else " EVERTOKEN_DEFAULT_MODULE " (the one built beside\n"
          "this program in a build tree; installed, the one in " EVERTOKEN_MODULE_DIR ").\n"
          "See `evertoken CMD --help`, evertoken(1) and docs/cli.md.\n",
          fp);
}

static const et_cmd *
et_cmd_lookup(const char *name)
{
    for (size_t i = 0; i < sizeof(et_cmds) / sizeof(et_cmds[0]); i++)
        if (strcmp(et_cmds[i].name, name) == 0)
            return &et_cmds[i];
    return NULL;
}

static const char *
et_opt_name(int code)
{
    for (const struct option *lo = et_long; lo->name != NULL; lo++)
        if (lo->val == code)
            return lo->name;
    return "?";
}

static int
et_allowed(const et_cmd *c, int code)
{
    if (code == O_MODULE || code == O_HELP)
        return 1;
    for (const int *a = c->allowed; *a != 0; a++)
        if (*a == code)
            return 1;
    return 0;
}

/* Parse the command's options (getopt_long permutes, so options may follow
 * positional arguments). */
static int
et_parse(const et_cmd *c, int argc, char **argv, et_opts *o)
{
    int ch;

    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "ho:", et_long, NULL)) != -1) {
        if (ch == 'h')
            ch = O_HELP;
        else if (ch == 'o')
            ch = O_OUT;
        if (ch == '?' || ch == ':') {
            if (optopt != 0)
                et_err("%s: unknown option or missing argument: -%c", c->name, optopt);
            else
                et_err("%s: unknown option or missing argument: %s", c->name, argv[optind - 1]);
            fputs(c->usage, stderr);
            return ET_EXIT_USAGE;
        }
        if (!et_allowed(c, ch)) {
            et_err("%s: option --%s does not apply to this command", c->name, et_opt_name(ch));
            fputs(c->usage, stderr);
            return ET_EXIT_USAGE;
        }
        switch (ch) {
        case O_MODULE:
            o->module = optarg;
            break;
        case O_TOKEN:
            o->token = optarg;
            break;
        case O_SLOT: {
            char *end = NULL;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || v < 0 || v > 0x7ffffffe) {
                et_err("%s: --slot needs a slot number, not '%s'", c->name, optarg);
                return ET_EXIT_USAGE;
            }
            o->slot = v;
            break;
        }
        case O_PIN:
            o->pin_src = optarg;
            break;
        case O_SO_PIN:
            o->so_pin_src = optarg;
            break;
        case O_NEW_PIN:
            o->new_pin_src = optarg;
            break;
        case O_PASS:
            o->pass_src = optarg;
            break;
        case O_LABEL:
            o->label = optarg;
            break;
        case O_ID:
            o->id = optarg;
            break;
        case O_CLASS:
            o->cls = optarg;
            break;
        case O_OUT:
            o->out = optarg;
            break;
        case O_SO:
            o->so = 1;
            break;
        case O_LOGIN:
            o->login = 1;
            break;
        case O_DER:
            o->der = 1;
            break;
        case O_FORCE:
            o->force = 1;
            break;
        case O_CHAIN:
            o->chain = 1;
            break;
        case O_WITH_STATE:
            o->with_state = 1;
            break;
        case O_ENROLL_STATE:
            o->state_dir = optarg;
            break;
        case O_HELP:
            o->help = 1;
            break;
        default:
            return ET_EXIT_USAGE;
        }
    }
    if (o->token != NULL && o->slot >= 0) {
        et_err("%s: give either --token or --slot, not both", c->name);
        return ET_EXIT_USAGE;
    }
    o->argc = argc - optind;
    o->argv = argv + optind;
    return ET_EXIT_OK;
}

int
main(int argc, char **argv)
{
    et_opts o;
    const et_cmd *c;
    int rc;
    int i = 1;

    if (sodium_init() < 0) {
        et_err("libsodium failed to initialise");
        return ET_EXIT_FAIL;
    }
    memset(&o, 0, sizeof(o));
    o.slot = -1;

    /* A global --module may precede the command. */
    while (i < argc && strncmp(argv[i], "--module", 8) == 0) {
        if (argv[i][8] == '=') {
            o.module = argv[i] + 9;
            i++;
        } else if (argv[i][8] == '\0' && i + 1 < argc) {
            o.module = argv[i + 1];
            i += 2;
        } else {
            et_err("--module needs a path");
            return ET_EXIT_USAGE;
        }
    }
    if (i >= argc) {
        et_usage_all(stderr);
        return ET_EXIT_USAGE;
    }
    if (strcmp(argv[i], "--version") == 0) {
        printf("evertoken %s\n", EVERTOKEN_VERSION);
        return ET_EXIT_OK;
    }
    if (strcmp(argv[i], "help") == 0 || strcmp(argv[i], "--help") == 0 ||
        strcmp(argv[i], "-h") == 0) {
        if (i + 1 < argc && strcmp(argv[i + 1], "--help") != 0 && strcmp(argv[i + 1], "-h") != 0) {
            c = et_cmd_lookup(argv[i + 1]);
            if (c == NULL) {
                et_err("unknown command '%s'", argv[i + 1]);
                et_usage_all(stderr);
                return ET_EXIT_USAGE;
            }
            fputs(c->usage, stdout);
            return ET_EXIT_OK;
        }
        et_usage_all(stdout);
        return ET_EXIT_OK;
    }
    c = et_cmd_lookup(argv[i]);
    if (c == NULL) {
        et_err("unknown command '%s'", argv[i]);
        et_usage_all(stderr);
        return ET_EXIT_USAGE;
    }
    rc = et_parse(c, argc - i, argv + i, &o);
    if (rc != ET_EXIT_OK)
        return rc;
    if (o.help) {
        fputs(c->usage, stdout);
        return ET_EXIT_OK;
    }
    rc = c->fn(&o);
    if (fflush(stdout) != 0 && rc == ET_EXIT_OK) {
        et_err("writing output: %s", strerror(errno));
        rc = ET_EXIT_FAIL;
    }
    return rc;
}
