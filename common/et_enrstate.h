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
 * they are; enroll.lock and SQLite's -wal/-shm files are not part of it.
 */
#ifndef EVERTOKEN_COMMON_ET_ENRSTATE_H
#define EVERTOKEN_COMMON_ET_ENRSTATE_H

#include <stddef.h>

/* Largest snapshot accepted (sum of the file sizes), and most files. */
#define ET_ENRSTATE_MAX_BYTES (256u * 1024 * 1024)
#define ET_ENRSTATE_MAX_FILES 100000

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
 * *STAGE gets its path. On error nothing is left behind. */
int et_enr_state_stage(const char *dir, const et_sfiles *files, char **stage, char *err,
                       size_t errn);

/* Put the staged directory STAGE in DIR's place (one atomic exchange when
 * DIR exists; the old state is then removed). -1 with ERR when the helper
 * holds its lock (a check is running) or the exchange fails; STAGE stays. */
int et_enr_state_commit(const char *dir, const char *stage, char *err, size_t errn);

/* Remove the staged directory STAGE and everything in it. */
void et_enr_state_discard(const char *stage);

void et_sfiles_free(et_sfiles *f);

#endif
