/*
 * et_enrstate.h — the enrollment helper's state directory as files, shared
 * by the helper (enroll/state.c: where the directory is) and the CLI
 * (tools/backup.c: `backup --with-helper-state`, `restore`).
 *
 * The state directory (docs/enrollment.md "State") holds the state database
 * enroll.db (profile states, chosen check times, pending transaction ids,
 * the event history), certs/ (the certificates and chains the helper wrote,
 * anchors learned by a CA rollover) and the ACME renewal information. A
 * snapshot is every regular file of it: enroll.db copied with SQLite's
 * online backup API (consistent while the helper writes), the others as
 * they are; the lock files enroll.lock and enroll.inuse and SQLite's
 * -wal/-shm files are not part of it.
 *
 * Locks (flock, on distinct files, so that no process ever holds two locks
 * on one file): enroll.lock is held exclusively by the helper while it runs
 * a check (and by backup while it copies the token and the state);
 * enroll.inuse is held shared by every helper process for as long as it has
 * the state open (the service for its whole life) and exclusively by a
 * restore. The helper takes enroll.inuse before enroll.lock; a restore
 * takes both without waiting.
 */
#ifndef EVERTOKEN_COMMON_ET_ENRSTATE_H
#define EVERTOKEN_COMMON_ET_ENRSTATE_H

#include <stddef.h>

/* Largest snapshot accepted (sum of the file sizes), and most files. */
#define ET_ENRSTATE_MAX_BYTES (256u * 1024 * 1024)
#define ET_ENRSTATE_MAX_FILES 100000

/* How long a backup waits for a running check (seconds). */
#define ET_ENRSTATE_LOCK_WAIT 60

typedef struct et_sfile {
    char *name;          /* relative to the state directory, '/'-separated */
    unsigned char *data; /* malloc'd */
    size_t len;
} et_sfile;

typedef struct et_sfiles {
    et_sfile *v;
    size_t n;
} et_sfiles;

/* The helper's state directory: $EVERTOKEN_ENROLL_STATE_DIR, else
 * $XDG_STATE_HOME/evertoken, else ~/.local/state/evertoken (malloc'd); NULL
 * with a message in ERR when none can be found. */
char *et_enr_state_dir(char *err, size_t errn);

/* Whether NAME is an acceptable relative file name in a snapshot: no
 * absolute path, no "." or ".." component, no empty component. */
int et_enr_state_name_ok(const char *name);

/* The newest time (Unix seconds, the helper's clock) recorded in the state
 * database of DIR: profile checks, enrollments, renewals and events; 0 when
 * DIR holds no state database or no profile. -1 with ERR when it cannot be
 * read. */
int et_enr_state_latest(const char *dir, long long *latest, char *err, size_t errn);

/* Snapshot of DIR into OUT (and its newest time into LATEST); -1 with ERR
 * when DIR holds no state database or a file cannot be read. */
int et_enr_state_snapshot(const char *dir, et_sfiles *out, long long *latest, char *err,
                          size_t errn);

/* Write FILES into a new private directory beside DIR (dirs 0700, files
 * 0600, fsync'd) and check that its enroll.db opens as a state database;
 * *STAGE gets its path, *LATEST the newest time recorded in that database
 * (as et_enr_state_latest). On error nothing is left behind; ERR says
 * "damaged" or "unacceptable" when the files themselves are at fault. */
int et_enr_state_stage(const char *dir, const et_sfiles *files, char **stage, long long *latest,
                       char *err, size_t errn);

/* The directory a restore replaces for the state directory DIR: DIR
 * itself, or the directory the symbolic link DIR leads to (the link stays);
 * when DIR does not exist it is created (0700) and *CREATED set. -1 with
 * ERR when DIR is not a directory or a link to one. */
int et_enr_state_resolve(const char *dir, char **real, int *created, char *err, size_t errn);

/* For a restore: enroll.lock and enroll.inuse of DIR taken exclusively
 * without waiting (created 0600 when absent) into FDS; -1 with ERR (and
 * nothing held) when a check runs or a helper process has the state open. */
int et_enr_state_lock_restore(const char *dir, int fds[2], char *err, size_t errn);

/* For a backup: enroll.lock of DIR taken exclusively, waiting up to
 * TIMEOUT seconds for a running check (WAITING is called once when it has
 * to wait); the descriptor, or -1 with ERR. */
int et_enr_state_lock_wait(const char *dir, int timeout, void (*waiting)(const char *, int),
                           char *err, size_t errn);

/* Release what et_enr_state_lock_restore took (FDS become -1). */
void et_enr_state_unlock(int fds[2]);

/* For the helper: enroll.inuse of DIR held shared (waiting while a restore
 * runs); the descriptor to keep open while the state is open, or -1. */
int et_enr_state_hold(const char *dir, char *err, size_t errn);

/* Put the staged directory STAGE in DIR's place (one atomic exchange; the
 * old state is then removed). DIR must exist (et_enr_state_resolve) and the
 * caller hold its locks (et_enr_state_lock_restore). -1 with ERR when the
 * exchange fails; STAGE stays. */
int et_enr_state_commit(const char *dir, const char *stage, char *err, size_t errn);

/* Remove the staged directory STAGE and everything in it. */
void et_enr_state_discard(const char *stage);

void et_sfiles_free(et_sfiles *f);

#endif
