/*
 * hooks.c — what the helper tells the world: the log (stderr, which systemd
 * sends to the journal), a desktop notification on the session bus
 * (desktop.c), the profile's notification command, the post-processing
 * script and the instructions file. Children get environment variables that
 * describe the event (docs/enrollment.md "Hooks"), never a secret.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "chain.h"
#include "desktop.h"
#include "enr_int.h"
#include "mon.h"

#define HOOK_TIMEOUT 120 /* seconds before a hanging hook is killed */
#define OUTPUT_MAX   4000

typedef struct kv {
    const char *k;
    const char *v;
} kv;

/* Run ARGV with the extra environment ENV; capture stdout+stderr (up to
 * OUTPUT_MAX) into *OUT if OUT is given. Returns the exit status, 128+signal,
 * or -1 when it could not start. */
static int
run(char *const argv[], const kv *env, size_t nenv, char **out)
{
    int pfd[2] = {-1, -1}, status = 0;
    char buf[OUTPUT_MAX + 1];
    size_t n = 0;
    time_t start = time(NULL);
    pid_t pid;

    if (out != NULL)
        *out = NULL;
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return -1;
    pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        for (size_t i = 0; i < nenv; i++)
            if (env[i].v != NULL)
                setenv(env[i].k, env[i].v, 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(pfd[1]);
    for (;;) {
        struct pollfd pf = {pfd[0], POLLIN, 0};
        int r = poll(&pf, 1, 1000);
        if (r > 0) {
            char tmp[1024];
            ssize_t got = read(pfd[0], tmp, sizeof(tmp));
            if (got <= 0)
                break;
            size_t take = (size_t)got;
            if (take > OUTPUT_MAX - n)
                take = OUTPUT_MAX - n;
            memcpy(buf + n, tmp, take);
            n += take;
        } else if (r < 0 && errno != EINTR) {
            break;
        }
        if (time(NULL) - start > HOOK_TIMEOUT) {
            enr_warn("%s did not finish within %d s; killed", argv[0], HOOK_TIMEOUT);
            kill(pid, SIGKILL);
            break;
        }
    }
    close(pfd[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    buf[n] = '\0';
    if (out != NULL)
        *out = strdup(buf);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

int
enr_in_path(const char *prog)
{
    const char *path = getenv("PATH");
    char *dup, *save = NULL;
    int found = 0;

    if (path == NULL)
        return 0;
    dup = strdup(path);
    for (char *d = strtok_r(dup, ":", &save); d != NULL && !found; d = strtok_r(NULL, ":", &save)) {
        char *f = enr_aprintf("%s/%s", d, prog);
        found = f != NULL && access(f, X_OK) == 0;
        free(f);
    }
    free(dup);
    return found;
}

static int
is_problem(const char *event)
{
    return strcmp(event, "enrolled") && strcmp(event, "renewed") && strcmp(event, "hook-success") &&
           strcmp(event, "recovered") && strcmp(event, "adopted");
}

void
enr_notify(const enr_profile *p, enr_state *st, const enr_event *ev)
{
    char na[32] = "", days[16] = "";

    /* Under systemd a journal entry with the event's fields (journal.c). */
    if (enr_journal_event(is_problem(ev->event) ? LOG_WARNING : LOG_INFO, p->name, ev) != 0) {
        if (is_problem(ev->event))
            enr_warn("profile %s: %s: %s", p->name, ev->event, ev->message);
        else
            enr_info("profile %s: %s: %s", p->name, ev->event, ev->message);
    }
    if (st != NULL) {
        char *d = enr_aprintf("%s: %s", ev->event, ev->message);
        enr_state_event(st, p->name, "notify", d);
        free(d);
    }
    if (ev->not_after > 0)
        enr_fmt_time(ev->not_after, na, sizeof(na));
    if (ev->days_left >= 0)
        snprintf(days, sizeof(days), "%d", ev->days_left);
    kv env[] = {
        {"EVERTOKEN_EVENT", ev->event},
        {"EVERTOKEN_PROFILE", p->name},
        {"EVERTOKEN_MESSAGE", ev->message},
        {"EVERTOKEN_SUBJECT", p->subject},
        {"EVERTOKEN_PKCS11_URI", ev->uri},
        {"EVERTOKEN_CERT_FILE", ev->cert_file},
        {"EVERTOKEN_SERIAL", ev->serial},
        {"EVERTOKEN_NOT_AFTER", na[0] ? na : NULL},
        {"EVERTOKEN_DAYS_LEFT", days[0] ? days : NULL},
        {"EVERTOKEN_INSTRUCTIONS", p->instructions},
    };
    enr_desktop_notify(p, st, ev, is_problem(ev->event)); /* desktop.c */
    if (p->notify_command != NULL) {
        char *argv[] = {"/bin/sh", "-c", p->notify_command, NULL};
        int r = run(argv, env, sizeof(env) / sizeof(env[0]), NULL);
        if (r != 0)
            enr_warn("profile %s: the notification command exited with %d", p->name, r);
    }
    enr_mail_event(p->name, ev); /* [mail] of the monitor settings (mail.c) */
}

enr_rc
enr_run_post_script(const enr_profile *p, enr_pstate *ps, enr_state *st, const char *uri,
                    const char *cert_file)
{
    char na[32];
    char *out = NULL, *msg;
    char *chain, *full;
    int r;

    if (p->post_script == NULL) {
        enr_pstate_set(&ps->hook_status, "none");
        return ENR_OK;
    }
    enr_fmt_time((time_t)ps->cert_not_after, na, sizeof(na));
    chain = enr_chain_path(st, p, "chain.pem");
    full = enr_chain_path(st, p, "fullchain.pem");
    kv env[] = {
        {"EVERTOKEN_EVENT", ps->last_result},
        {"EVERTOKEN_PROFILE", p->name},
        {"EVERTOKEN_SUBJECT", p->subject},
        {"EVERTOKEN_PKCS11_URI", uri},
        {"EVERTOKEN_CERT_FILE", cert_file},
        {"EVERTOKEN_SERIAL", ps->cert_serial},
        {"EVERTOKEN_NOT_AFTER", na},
        {"EVERTOKEN_CHAIN_FILE", chain != NULL && access(chain, R_OK) == 0 ? chain : NULL},
        {"EVERTOKEN_FULLCHAIN_FILE", full != NULL && access(full, R_OK) == 0 ? full : NULL},
    };
    char *argv[] = {p->post_script, NULL};
    r = run(argv, env, sizeof(env) / sizeof(env[0]), &out);
    free(chain);
    free(full);
    ps->hook_exit = r;
    ps->hook_time = enr_now();
    enr_pstate_set(&ps->hook_status, r == 0 ? "ok" : "failed");
    enr_pstate_set(&ps->hook_output, out);
    free(out);
    if (r == 0) {
        msg = enr_aprintf("post-processing script %s succeeded", p->post_script);
    } else if (r == 127 || r < 0) {
        msg = enr_aprintf("post-processing script %s could not be run (%d); re-run with "
                          "'evertoken-enroll hooks rerun %s'",
                          p->post_script, r, p->name);
    } else {
        msg = enr_aprintf("post-processing script %s failed with exit code %d; re-run with "
                          "'evertoken-enroll hooks rerun %s'",
                          p->post_script, r, p->name);
    }
    enr_event ev = {r == 0 ? "hook-success" : "hook-failure",
                    msg ? msg : "post-processing script",
                    uri,
                    cert_file,
                    ps->cert_serial,
                    (time_t)ps->cert_not_after,
                    -1};
    enr_notify(p, st, &ev);
    free(msg);
    return r == 0 ? ENR_OK : ENR_E_FAIL;
}

void
enr_show_instructions(const enr_profile *p)
{
    unsigned char *d;
    size_t n;

    if (p->instructions == NULL)
        return;
    if (enr_read_file(p->instructions, &d, &n) != 0)
        return;
    fprintf(stderr, "---- instructions for profile %s (%s) ----\n%s%s---- end ----\n", p->name,
            p->instructions, (char *)d, n > 0 && d[n - 1] != '\n' ? "\n" : "");
    free(d);
}

int
enr_run_command(char *const argv[], const char *const *env, char **out)
{
    kv e[16] = {{NULL, NULL}};
    size_t n = 0;
    char *copy[16];
    int r;

    for (size_t i = 0; env != NULL && env[i] != NULL && n < 16; i++) {
        const char *eq = strchr(env[i], '=');
        if (eq == NULL || (copy[n] = strndup(env[i], (size_t)(eq - env[i]))) == NULL)
            continue;
        e[n].k = copy[n];
        e[n].v = eq + 1;
        n++;
    }
    r = run(argv, e, n, out);
    for (size_t i = 0; i < n; i++)
        free(copy[i]);
    return r;
}
