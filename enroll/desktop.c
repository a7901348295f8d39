/*
 * desktop.c — desktop notifications on the session bus
 * (org.freedesktop.Notifications, through libsystemd's sd-bus), with the
 * "Renew now" action where the notification server offers actions.
 *
 * One notice per profile at a time: a problem replaces the profile's
 * previous notice (replaces_id), a success (enrolled, renewed, recovered,
 * adopted) withdraws it (CloseNotification) before its own notice. The
 * notice ids are kept in the state database (table desktop_notice) with the
 * notification server's instance (bus id and unique name), so a success
 * seen by a later check — or another process — still withdraws the
 * failure, and an id of an earlier server (restarted: its ids start again)
 * is never closed nor replaced. Actions are offered only by the service
 * (`run`, which listens for ActionInvoked and NotificationClosed, heeded
 * only from the unique name owning org.freedesktop.Notifications); "Renew
 * now" starts `evertoken unlock --token LABEL` (in a terminal window when
 * the service has no terminal and x-terminal-emulator is installed) when
 * the token needs a login, without waiting for it, and runs the profile's
 * check when it ends (at once when no unlock is needed), as
 * `evertoken-enroll renew PROFILE` would (docs/enrollment.md "Desktop
 * notifications").
 */
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <p11-kit/uri.h>
#include <sqlite3.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-id128.h>

#include "desktop.h"
#include "enr_int.h"

#define N_DEST            "org.freedesktop.Notifications"
#define N_PATH            "/org/freedesktop/Notifications"
#define N_IFACE           "org.freedesktop.Notifications"
#define CALL_TIMEOUT_USEC (5ULL * 1000 * 1000)
#define MAX_QUEUED        16
#define INST_LEN          300 /* bus id (32) + ' ' + a unique bus name (<= 255) */

static sd_bus *g_bus;
static int g_failed; /* no session bus: not tried again in this process */
static int g_caps;   /* -1 unknown; else bit 1 actions, bit 2 body-markup */
static int g_listen; /* the service listens for actions */
typedef struct {
    uint32_t id;
    char inst[INST_LEN]; /* the instance of the server that sent the signal */
} heard;
static heard g_queue[MAX_QUEUED]; /* "Renew now" chosen */
static size_t g_nqueue;
static heard g_closed[MAX_QUEUED]; /* NotificationClosed: ids to forget */
static size_t g_nclosed;
/* The unique name owning org.freedesktop.Notifications, as the service last
 * heard it (GetNameOwner, then NameOwnerChanged); "" when none. */
static char g_owner[256];
/* "Renew now" unlocks under way (their terminal window open): the profile's
 * check runs when the unlock ends, the service meanwhile going on. */
typedef struct {
    pid_t pid;
    char *profile;
} unlocking;
static unlocking g_unlock[MAX_QUEUED];
static size_t g_nunlock;

extern char **environ;

static sd_bus *
bus_get(void)
{
    if (g_bus != NULL || g_failed)
        return g_bus;
    if (getenv("DBUS_SESSION_BUS_ADDRESS") == NULL && getenv("XDG_RUNTIME_DIR") == NULL) {
        g_failed = 1;
        return NULL;
    }
    if (sd_bus_open_user(&g_bus) < 0) {
        g_bus = NULL;
        g_failed = 1;
        enr_debug("no session bus: no desktop notifications");
        return NULL;
    }
    sd_bus_set_method_call_timeout(g_bus, CALL_TIMEOUT_USEC);
    g_caps = -1;
    return g_bus;
}

static void
bus_drop(void)
{
    if (g_bus != NULL)
        sd_bus_flush_close_unref(g_bus);
    g_bus = NULL;
    g_listen = 0;
    g_owner[0] = '\0';
    g_nqueue = g_nclosed = 0;
}

void
enr_desktop_close(void)
{
    bus_drop();
    /* Unlock windows still open stay (the person's); no check follows. */
    for (size_t i = 0; i < g_nunlock; i++)
        free(g_unlock[i].profile);
    g_nunlock = 0;
}

static int
caps(sd_bus *bus)
{
    sd_bus_message *r = NULL;
    const char *c;

    if (g_caps >= 0)
        return g_caps;
    g_caps = 0;
    if (sd_bus_call_method(bus, N_DEST, N_PATH, N_IFACE, "GetCapabilities", NULL, &r, "") < 0)
        return g_caps;
    if (sd_bus_message_enter_container(r, 'a', "s") > 0) {
        while (sd_bus_message_read(r, "s", &c) > 0) {
            if (!strcmp(c, "actions"))
                g_caps |= 1;
            else if (!strcmp(c, "body-markup"))
                g_caps |= 2;
        }
    }
    sd_bus_message_unref(r);
    return g_caps;
}

/* ---- The notice ids (state database) ----------------------------------- */

/* A notice id means something only to the notification server that gave
 * it: each row keeps that server's instance ("BUSID UNIQUE-NAME": the bus's
 * id and the server's unique name, never reused on that bus), and an id is
 * closed or replaced only while that very server still owns the name. */
static int
table(enr_state *st)
{
    sqlite3 *db = enr_state_db(st);
    sqlite3_stmt *s = NULL;

    if (sqlite3_exec(db,
                     "CREATE TABLE IF NOT EXISTS desktop_notice(profile TEXT PRIMARY KEY,"
                     " id INTEGER, event TEXT, time INTEGER, server TEXT)",
                     NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    /* A table of an earlier version: no server column (its ids: unknown server). */
    if (sqlite3_prepare_v2(db, "SELECT server FROM desktop_notice LIMIT 0", -1, &s, NULL) ==
        SQLITE_OK) {
        sqlite3_finalize(s);
        return 0;
    }
    return sqlite3_exec(db, "ALTER TABLE desktop_notice ADD COLUMN server TEXT", NULL, NULL,
                        NULL) == SQLITE_OK
               ? 0
               : -1;
}

/* PROFILE's notice id, its server instance into INST (empty when unknown). */
static uint32_t
notice_get(enr_state *st, const char *profile, char inst[INST_LEN])
{
    sqlite3_stmt *s = NULL;
    uint32_t id = 0;

    inst[0] = '\0';
    if (table(st) != 0 ||
        sqlite3_prepare_v2(enr_state_db(st),
                           "SELECT id, server FROM desktop_notice WHERE profile = ?", -1, &s,
                           NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(s, 1, profile, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) {
        id = (uint32_t)sqlite3_column_int64(s, 0);
        if (sqlite3_column_text(s, 1) != NULL)
            snprintf(inst, INST_LEN, "%s", (const char *)sqlite3_column_text(s, 1));
    }
    sqlite3_finalize(s);
    return id;
}

/* Record ID of server INST for PROFILE (0: forget the profile's notice). */
static void
notice_put(enr_state *st, const char *profile, uint32_t id, const char *event, const char *inst)
{
    sqlite3_stmt *s = NULL;
    const char *sql = id ? "INSERT OR REPLACE INTO desktop_notice(profile, id, event, time, server)"
                           " VALUES (?, ?, ?, ?, ?)"
                         : "DELETE FROM desktop_notice WHERE profile = ?";

    if (table(st) != 0 || sqlite3_prepare_v2(enr_state_db(st), sql, -1, &s, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(s, 1, profile, -1, SQLITE_STATIC);
    if (id) {
        sqlite3_bind_int64(s, 2, id);
        sqlite3_bind_text(s, 3, event, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, (sqlite3_int64)enr_now());
        sqlite3_bind_text(s, 5, inst, -1, SQLITE_STATIC);
    }
    sqlite3_step(s);
    sqlite3_finalize(s);
}

/* Forget notice ID of server INST (closed by the server). */
static void
notice_forget(enr_state *st, uint32_t id, const char *inst)
{
    sqlite3_stmt *s = NULL;

    if (table(st) != 0 ||
        sqlite3_prepare_v2(enr_state_db(st),
                           "DELETE FROM desktop_notice WHERE id = ? AND server = ?", -1, &s,
                           NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, inst, -1, SQLITE_STATIC);
    sqlite3_step(s);
    sqlite3_finalize(s);
}

/* The profile whose notice is ID of server INST (malloc'd), or NULL. */
static char *
notice_profile(enr_state *st, uint32_t id, const char *inst)
{
    sqlite3_stmt *s = NULL;
    char *name = NULL;

    if (table(st) != 0 ||
        sqlite3_prepare_v2(enr_state_db(st),
                           "SELECT profile FROM desktop_notice WHERE id = ? AND server = ?", -1, &s,
                           NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, inst, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0) != NULL)
        name = strdup((const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return name;
}

/* ---- The notification server's instance -------------------------------- */

/* "BUSID NAME" into INST for the unique name NAME on BUS ("" on failure). */
static void
instance_of(sd_bus *bus, const char *name, char inst[INST_LEN])
{
    sd_id128_t id;
    char hex[SD_ID128_STRING_MAX];

    inst[0] = '\0';
    if (name == NULL || name[0] != ':' || sd_bus_get_bus_id(bus, &id) < 0)
        return;
    snprintf(inst, INST_LEN, "%s %s", sd_id128_to_string(id, hex), name);
}

/* The instance of the server that owns org.freedesktop.Notifications now. */
static void
current_instance(sd_bus *bus, char inst[INST_LEN])
{
    sd_bus_message *r = NULL;
    const char *owner = NULL;

    inst[0] = '\0';
    if (sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                           "org.freedesktop.DBus", "GetNameOwner", NULL, &r, "s", N_DEST) >= 0 &&
        sd_bus_message_read(r, "s", &owner) >= 0)
        instance_of(bus, owner, inst);
    sd_bus_message_unref(r);
}

/* ---- Showing and withdrawing ------------------------------------------- */

/* MSG with &, < and > escaped (servers with body-markup parse the body). */
static char *
markup_escape(const char *msg)
{
    size_t n = 0;
    char *o, *q;

    for (const char *s = msg; *s; s++)
        n += *s == '&' ? 5 : (*s == '<' || *s == '>') ? 4 : 1;
    o = q = malloc(n + 1);
    if (o == NULL)
        return NULL;
    for (const char *s = msg; *s; s++) {
        const char *r = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : NULL;
        if (r != NULL) {
            memcpy(q, r, strlen(r));
            q += strlen(r);
        } else {
            *q++ = *s;
        }
    }
    *q = '\0';
    return o;
}

/* Events a renewal by hand may cure: their notices offer "Renew now". */
static int
renewable(const char *event)
{
    static const char *const ev[] = {"pin-needed", "expiry-warning",  "expired",
                                     "failure",    "network-failure", "token-absent"};

    for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++)
        if (!strcmp(event, ev[i]))
            return 1;
    return 0;
}

/* Notify; *ID and the answering server's instance into INST. */
static int
notify_call(sd_bus *bus, uint32_t replaces, const char *summary, const char *body, int action,
            int critical, uint32_t *id, char inst[INST_LEN])
{
    sd_bus_message *m = NULL, *r = NULL;
    sd_bus_error e = SD_BUS_ERROR_NULL;
    int rc;

    rc = sd_bus_message_new_method_call(bus, &m, N_DEST, N_PATH, N_IFACE, "Notify");
    if (rc >= 0)
        rc = sd_bus_message_append(m, "susss", "evertoken-enroll", replaces, "", summary, body);
    if (rc >= 0)
        rc = action ? sd_bus_message_append(m, "as", 2, "renew", "Renew now")
                    : sd_bus_message_append(m, "as", 0);
    if (rc >= 0)
        rc = sd_bus_message_append(m, "a{sv}", 2, "urgency", "y", (uint8_t)(critical ? 2 : 1),
                                   "desktop-entry", "s", "evertoken-enroll");
    if (rc >= 0)
        rc = sd_bus_message_append(m, "i", (int32_t)(critical ? 0 : -1));
    if (rc >= 0)
        rc = sd_bus_call(bus, m, 0, &e, &r);
    if (rc >= 0)
        rc = sd_bus_message_read(r, "u", id);
    if (rc >= 0)
        instance_of(bus, sd_bus_message_get_sender(r), inst);
    if (rc < 0)
        enr_debug("desktop notification not shown: %s", e.message ? e.message : strerror(-rc));
    sd_bus_error_free(&e);
    sd_bus_message_unref(m);
    sd_bus_message_unref(r);
    return rc < 0 ? -1 : 0;
}

void
enr_desktop_notify(const enr_profile *p, enr_state *st, const enr_event *ev, int problem)
{
    sd_bus *bus = bus_get();
    uint32_t prev, id = 0;
    char *title, *body, pinst[INST_LEN], cur[INST_LEN], inst[INST_LEN] = "";
    int c, action;

    if (bus == NULL)
        return;
    prev = st != NULL ? notice_get(st, p->name, pinst) : 0;
    c = caps(bus);
    if (prev != 0) {
        /* An id of another server (restarted, a new session) may now be
         * another program's notice: never closed nor replaced. */
        current_instance(bus, cur);
        if (pinst[0] == '\0' || strcmp(pinst, cur) != 0) {
            enr_debug("desktop notice %u of profile %s: from another notification server; "
                      "forgotten",
                      prev, p->name);
            notice_put(st, p->name, 0, NULL, NULL);
            prev = 0;
        }
    }
    if (!problem && prev != 0) {
        /* Solved: the problem's notice is withdrawn. */
        sd_bus_call_method(bus, N_DEST, N_PATH, N_IFACE, "CloseNotification", NULL, NULL, "u",
                           prev);
        notice_put(st, p->name, 0, NULL, NULL);
        prev = 0;
    }
    action = problem && g_listen && (c & 1) && renewable(ev->event);
    title = enr_aprintf("evertoken: %s (%s)", ev->event, p->name);
    body = (c & 2) ? markup_escape(ev->message) : strdup(ev->message);
    if (title != NULL && body != NULL &&
        notify_call(bus, problem ? prev : 0, title, body, action, problem, &id, inst) == 0 &&
        problem && st != NULL && inst[0] != '\0')
        notice_put(st, p->name, id, ev->event, inst);
    free(title);
    free(body);
}

/* ---- The service: actions ---------------------------------------------- */

/* A signal of the notification server: only from the unique name that owns
 * org.freedesktop.Notifications now, never from any other client of the
 * session bus (it could forge ActionInvoked with a guessed id). */
static int
from_server(sd_bus_message *m)
{
    const char *snd = sd_bus_message_get_sender(m);

    if (snd == NULL || g_owner[0] == '\0' || strcmp(snd, g_owner) != 0) {
        enr_debug("desktop: %s from %s ignored: not the notification server (%s)",
                  sd_bus_message_get_member(m), snd ? snd : "?", g_owner[0] ? g_owner : "none");
        return 0;
    }
    return 1;
}

static void
hear(sd_bus_message *m, heard *q, size_t *n, uint32_t id)
{
    if (*n >= MAX_QUEUED)
        return;
    q[*n].id = id;
    instance_of(sd_bus_message_get_bus(m), sd_bus_message_get_sender(m), q[*n].inst);
    if (q[*n].inst[0] != '\0')
        (*n)++;
}

static int
on_action(sd_bus_message *m, void *ud, sd_bus_error *e)
{
    uint32_t id;
    const char *key;

    (void)ud;
    (void)e;
    if (!from_server(m) || sd_bus_message_read(m, "us", &id, &key) < 0 || strcmp(key, "renew"))
        return 0;
    hear(m, g_queue, &g_nqueue, id);
    return 0;
}

static int
on_closed(sd_bus_message *m, void *ud, sd_bus_error *e)
{
    uint32_t id, reason;

    (void)ud;
    (void)e;
    if (from_server(m) && sd_bus_message_read(m, "uu", &id, &reason) >= 0)
        hear(m, g_closed, &g_nclosed, id);
    return 0;
}

/* NameOwnerChanged(org.freedesktop.Notifications, old, new) from the bus. */
static int
on_owner(sd_bus_message *m, void *ud, sd_bus_error *e)
{
    const char *name, *old, *new;
    const char *snd = sd_bus_message_get_sender(m);

    (void)ud;
    (void)e;
    if (snd == NULL || strcmp(snd, "org.freedesktop.DBus") != 0 ||
        sd_bus_message_read(m, "sss", &name, &old, &new) < 0 || strcmp(name, N_DEST) != 0)
        return 0;
    snprintf(g_owner, sizeof(g_owner), "%s", new);
    enr_debug("desktop: the notification server is now %s", new[0] ? new : "gone");
    return 0;
}

int
enr_desktop_listen(void)
{
    sd_bus *bus = bus_get();
    sd_bus_message *r = NULL;
    const char *owner = NULL;

    if (bus == NULL)
        return -1;
    if (sd_bus_add_match(bus, NULL,
                         "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                         "interface='org.freedesktop.DBus',member='NameOwnerChanged',"
                         "arg0='" N_DEST "'",
                         on_owner, NULL) < 0 ||
        sd_bus_match_signal(bus, NULL, NULL, N_PATH, N_IFACE, "ActionInvoked", on_action, NULL) <
            0 ||
        sd_bus_match_signal(bus, NULL, NULL, N_PATH, N_IFACE, "NotificationClosed", on_closed,
                            NULL) < 0)
        return -1;
    g_owner[0] = '\0';
    if (sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                           "org.freedesktop.DBus", "GetNameOwner", NULL, &r, "s", N_DEST) >= 0 &&
        sd_bus_message_read(r, "s", &owner) >= 0)
        snprintf(g_owner, sizeof(g_owner), "%s", owner);
    sd_bus_message_unref(r);
    g_listen = 1;
    enr_debug("desktop notifications: listening for actions (server %s)",
              g_owner[0] ? g_owner : "not running");
    return 0;
}

void
enr_desktop_wait(long seconds)
{
    uint64_t end;
    struct timespec ts;

    if (g_nunlock > 0 && seconds > 1)
        seconds = 1; /* an unlock under way: its end is looked for every second */
    if (!g_listen || g_bus == NULL) {
        sleep((unsigned)seconds);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    end = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000 + (uint64_t)seconds * 1000000;
    while (g_nqueue == 0 && g_nclosed == 0) {
        int r;
        uint64_t now;
        while ((r = sd_bus_process(g_bus, NULL)) > 0)
            ;
        if (r < 0) {
            enr_warn("session bus: %s; desktop actions are no longer heard", strerror(-r));
            bus_drop(); /* unlocks under way still get their check */
            return;
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
        if (g_nqueue > 0 || g_nclosed > 0 || now >= end)
            break;
        if (sd_bus_wait(g_bus, end - now) < 0)
            break; /* a signal (SIGTERM: the caller stops) or an error */
    }
}

/* The token label of P's URI into LABEL (empty when it names none). */
static void
uri_label(const enr_profile *p, char *label, size_t n)
{
    P11KitUri *u = p11_kit_uri_new();
    CK_TOKEN_INFO *ti;
    size_t len;

    label[0] = '\0';
    if (u == NULL)
        return;
    if (p11_kit_uri_parse(p->token_uri, P11_KIT_URI_FOR_TOKEN, u) == P11_KIT_URI_OK &&
        (ti = p11_kit_uri_get_token_info(u)) != NULL) {
        len = sizeof(ti->label);
        while (len > 0 && (ti->label[len - 1] == ' ' || ti->label[len - 1] == '\0'))
            len--;
        if (len >= n)
            len = n - 1;
        memcpy(label, ti->label, len);
        label[len] = '\0';
    }
    p11_kit_uri_free(u);
}

/* Start `evertoken unlock --token LABEL` for P (in a terminal window when
 * the service has none): 0, or -1 when it could not start. Not waited for:
 * the person may take their time; the check runs when it ends. */
static int
unlock_start(const enr_profile *p, const char *label)
{
    char *direct[] = {"evertoken", "unlock", "--token", (char *)label, NULL};
    char *term[] = {"x-terminal-emulator", "-e", "evertoken", "unlock", "--token",
                    (char *)label,         NULL};
    char *const *argv = !isatty(STDIN_FILENO) && enr_in_path("x-terminal-emulator") ? term : direct;
    char *name;
    pid_t pid;
    int e;

    if (g_nunlock >= MAX_QUEUED || (name = enr_strdup(p->name)) == NULL)
        return -1;
    e = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
    if (e != 0) {
        enr_warn("profile %s: cannot run %s: %s", p->name, argv[0], strerror(e));
        free(name);
        return -1;
    }
    g_unlock[g_nunlock].pid = pid;
    g_unlock[g_nunlock++].profile = name;
    return 0;
}

/* "Renew now" for P: the unlock (when the token needs a login; the check
 * follows when it ends, see reap_unlocks), else the check at once. */
static int
renew_now(enr_ctx *ctx, const enr_profile *p)
{
    char label[64];

    for (size_t i = 0; i < g_nunlock; i++)
        if (!strcmp(g_unlock[i].profile, p->name)) {
            enr_info("profile %s: \"Renew now\" chosen again; its unlock is still under way",
                     p->name);
            return 0;
        }
    enr_info("profile %s: \"Renew now\" chosen in the desktop notification", p->name);
    enr_state_event(ctx->st, p->name, "action", "Renew now (desktop notification)");
    uri_label(p, label, sizeof(label));
    if (p->pin_file == NULL && label[0] != '\0' && enr_token_login_ready(p) != 1 &&
        unlock_start(p, label) == 0)
        return 0;
    enr_check_profile(ctx, p, "check");
    return 1;
}

/* The unlocks that ended: their profiles' checks. 1 when a check ran. */
static int
reap_unlocks(enr_ctx *ctx, enr_profile **v, size_t n)
{
    int ran = 0;

    for (size_t k = 0; k < g_nunlock;) {
        int status;
        pid_t r = waitpid(g_unlock[k].pid, &status, WNOHANG);
        char *name = g_unlock[k].profile;
        if (r == 0 || (r < 0 && errno == EINTR)) {
            k++;
            continue;
        }
        g_unlock[k] = g_unlock[--g_nunlock];
        if (r > 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            enr_warn("profile %s: evertoken unlock ended with %d", name,
                     WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        for (size_t i = 0; i < n; i++)
            if (!strcmp(v[i]->name, name)) {
                enr_check_profile(ctx, v[i], "check");
                ran = 1;
                break;
            }
        free(name);
    }
    return ran;
}

int
enr_desktop_actions(enr_ctx *ctx, enr_profile **v, size_t n)
{
    int ran = reap_unlocks(ctx, v, n);

    while (g_nqueue > 0) {
        heard h = g_queue[0];
        uint32_t id = h.id;
        char *name;
        memmove(g_queue, g_queue + 1, (--g_nqueue) * sizeof(g_queue[0]));
        name = notice_profile(ctx->st, id, h.inst);
        for (size_t i = 0; name != NULL && i < n; i++)
            if (!strcmp(v[i]->name, name)) {
                ran |= renew_now(ctx, v[i]);
                break;
            }
        if (name == NULL)
            enr_debug("desktop action on notice %u: not one of this helper's notices", id);
        free(name);
    }
    /* After the actions (a chosen action closes its notice too): the
     * notices the server closed are forgotten. */
    for (size_t i = 0; i < g_nclosed; i++)
        notice_forget(ctx->st, g_closed[i].id, g_closed[i].inst);
    g_nclosed = 0;
    return ran;
}
