/*
 * t_process.c — several processes and threads on one token: a second
 * process's writes seen without re-initialising, fork() after C_Initialize
 * (PKCS#11 2.40 section 6.7.1), and concurrent sessions in threads
 * (section 6.7.2, CKF_OS_LOCKING_OK).
 *
 * Children never use cmocka: they report the step that failed as their exit
 * status, which the parent asserts is 0.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conf.h"

/* Child side: return STEP from the child's function if RV is not OK. */
#define CHILD_OK(step, expr)                                                                       \
    do {                                                                                           \
        CK_RV rv_ = (expr);                                                                        \
        if (rv_ != CKR_OK) {                                                                       \
            fprintf(stderr, "child step %d: %s -> %s\n", (step), #expr, conf_rv_name(rv_));        \
            return (step);                                                                         \
        }                                                                                          \
    } while (0)

static int
pipe_send(int fd)
{
    char c = 'x';
    return write(fd, &c, 1) == 1 ? 0 : -1;
}

static int
pipe_wait(int fd)
{
    char c;
    return read(fd, &c, 1) == 1 ? 0 : -1;
}

/* The child's slot lookup without cmocka: the initialised token "conf". */
static CK_RV
child_slot(CK_SLOT_ID *out)
{
    CK_SLOT_ID list[16];
    CK_ULONG n = 16;
    CK_TOKEN_INFO ti;
    CK_RV rv = F->C_GetSlotList(CK_FALSE, NULL, &n);

    if (rv != CKR_OK)
        return rv;
    n = 16;
    rv = F->C_GetSlotList(CK_FALSE, list, &n);
    if (rv != CKR_OK)
        return rv;
    for (CK_ULONG i = 0; i < n; i++) {
        if (F->C_GetTokenInfo(list[i], &ti) == CKR_OK && (ti.flags & CKF_TOKEN_INITIALIZED) &&
            conf_padded_eq(ti.label, 32, CONF_LABEL)) {
            *out = list[i];
            return CKR_OK;
        }
    }
    return CKR_SLOT_ID_INVALID;
}

static CK_RV
child_find_label(CK_SESSION_HANDLE h, const char *label, CK_ULONG *count)
{
    CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};
    CK_OBJECT_HANDLE o[8];
    CK_RV rv = F->C_FindObjectsInit(h, &t, 1);

    if (rv != CKR_OK)
        return rv;
    rv = F->C_FindObjects(h, o, 8, count);
    F->C_FindObjectsFinal(h);
    return rv;
}

static int
reap(pid_t pid)
{
    int st = 0;

    if (waitpid(pid, &st, 0) != pid)
        return -1;
    E.child = 0;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* ---- a second process writes, this one sees it -------------------------- */

static int
writer_child(int go, int done)
{
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE h;
    CK_OBJECT_HANDLE o;

    if (pipe_wait(go) != 0)
        return 1;
    CHILD_OK(2, conf_initialize());
    CHILD_OK(3, child_slot(&slot));
    CHILD_OK(4, F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h));
    CHILD_OK(5, F->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)CONF_USER_PIN, strlen(CONF_USER_PIN)));
    CHILD_OK(6, conf_create_data(h, CK_TRUE, CK_FALSE, "from-child", &o));
    if (pipe_send(done) != 0)
        return 7;
    /* Second round: rename it. */
    if (pipe_wait(go) != 0)
        return 12;
    CK_ATTRIBUTE lab = {CKA_LABEL, (CK_VOID_PTR) "renamed-by-child", 16};
    CHILD_OK(13, F->C_SetAttributeValue(h, o, &lab, 1));
    if (pipe_send(done) != 0)
        return 14;
    /* Third round: destroy it. */
    if (pipe_wait(go) != 0)
        return 8;
    CHILD_OK(9, F->C_DestroyObject(h, o));
    CHILD_OK(10, F->C_Finalize(NULL));
    if (pipe_send(done) != 0)
        return 11;
    return 0;
}

static void
t_second_process(void **state)
{
    int go[2], done[2];
    pid_t pid;
    CK_SESSION_HANDLE h;
    CK_OBJECT_HANDLE o, first;
    CK_ULONG n;

    (void)state;
    /* The child must start from a process that never initialised the module. */
    assert_ok(F->C_Finalize(NULL));
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(done), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(go[1]);
        close(done[0]);
        _exit(writer_child(go[0], done[1]));
    }
    E.child = pid;
    close(go[0]);
    close(done[1]);

    assert_ok(conf_initialize());
    E.slot = conf_slot_by_label(CONF_LABEL);
    h = conf_open(0);
    /* A find before the child writes: nothing with that label, and a find
     * over everything left open across the other process's write. */
    assert_int_equal(conf_find_label(h, "from-child", NULL), 0);
    assert_ok(F->C_FindObjectsInit(h, NULL, 0));
    assert_ok(F->C_FindObjects(h, &first, 1, &n));

    assert_int_equal(pipe_send(go[1]), 0);
    assert_int_equal(pipe_wait(done[0]), 0);

    /* No re-initialisation: the next find sees the new object. */
    assert_ok(F->C_FindObjectsFinal(h));
    assert_int_equal(conf_find_label(h, "from-child", &o), 1);
    CK_BYTE v[32];
    CK_ATTRIBUTE a = {CKA_VALUE, v, sizeof(v)};
    assert_ok(F->C_GetAttributeValue(h, o, &a, 1));
    assert_int_equal(a.ulValueLen, 10);
    assert_memory_equal(v, "from-child", 10);

    /* A change of its label: found by the new one only (the cache's label
     * index follows), same handle. */
    CK_OBJECT_HANDLE o2;
    assert_int_equal(pipe_send(go[1]), 0);
    assert_int_equal(pipe_wait(done[0]), 0);
    assert_int_equal(conf_find_label(h, "from-child", NULL), 0);
    assert_int_equal(conf_find_label(h, "renamed-by-child", &o2), 1);
    assert_int_equal(o2, o);

    /* And its destruction. */
    assert_int_equal(pipe_send(go[1]), 0);
    assert_int_equal(pipe_wait(done[0]), 0);
    assert_int_equal(conf_find_label(h, "from-child", NULL), 0);
    a.ulValueLen = sizeof(v);
    assert_rv(F->C_GetAttributeValue(h, o, &a, 1), CKR_OBJECT_HANDLE_INVALID);

    close(go[1]);
    close(done[0]);
    assert_int_equal(reap(pid), 0);
    assert_ok(F->C_CloseSession(h));
}

/* ---- fork after C_Initialize -------------------------------------------- */

static int
forked_child(void)
{
    CK_INFO info;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE h;
    CK_OBJECT_HANDLE o;
    CK_ULONG n = 0;
    CK_RV rv;

    if (is_evertoken()) {
        /* evertoken is not fork safe by design: the child must initialise
         * (2.40 section 6.7.1) and is told so. */
        rv = F->C_GetInfo(&info);
        if (rv != CKR_CRYPTOKI_NOT_INITIALIZED) {
            fprintf(stderr, "child C_GetInfo: %s\n", conf_rv_name(rv));
            return 1;
        }
        if (F->C_Finalize(NULL) != CKR_CRYPTOKI_NOT_INITIALIZED)
            return 2;
    } else {
        /* SoftHSMv2 has no fork detection: the child inherits an
         * "initialised" library whose state belongs to the parent. Finalise
         * that copy first, as applications using SoftHSMv2 must. */
        F->C_Finalize(NULL);
    }
    CHILD_OK(3, conf_initialize());
    CHILD_OK(4, F->C_GetInfo(&info));
    CHILD_OK(5, child_slot(&slot));
    CHILD_OK(6, F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h));
    /* A fresh state: not logged in although the parent is. */
    CK_SESSION_INFO si;
    CHILD_OK(7, F->C_GetSessionInfo(h, &si));
    if (si.state != CKS_RW_PUBLIC_SESSION)
        return 8;
    CHILD_OK(9, F->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)CONF_USER_PIN, strlen(CONF_USER_PIN)));
    CHILD_OK(10, child_find_label(h, "parent-private", &n));
    if (n != 1)
        return 11;
    CHILD_OK(12, conf_create_data(h, CK_FALSE, CK_TRUE, "child-session", &o));
    CHILD_OK(13, child_find_label(h, "child-session", &n));
    if (n != 1)
        return 14;
    CHILD_OK(15, F->C_Finalize(NULL));
    return 0;
}

static void
t_fork(void **state)
{
    CK_SESSION_HANDLE h;
    CK_OBJECT_HANDLE o;
    pid_t pid;

    (void)state;
    h = conf_open(CKF_RW_SESSION);
    conf_login_user(h);
    assert_ok(conf_create_data(h, CK_TRUE, CK_TRUE, "parent-private", &o));
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(forked_child());
    E.child = pid;
    assert_int_equal(reap(pid), 0);

    /* The parent is untouched by whatever the child did. */
    assert_int_equal(conf_session_state(h), CKS_RW_USER_FUNCTIONS);
    assert_int_equal(conf_find_label(h, "parent-private", NULL), 1);
    assert_int_equal(conf_find_label(h, "child-session", NULL), 0);
    assert_ok(conf_create_data(h, CK_TRUE, CK_FALSE, "after-fork", &o));
    assert_ok(F->C_CloseSession(h));
}

/* ---- threads ------------------------------------------------------------ */

#define CONF_THREADS 8
#define CONF_ROUNDS  25

struct worker {
    int id;
    CK_SLOT_ID slot;
    CK_RV rv;
    int step;
};

#define WORKER_OK(n, expr)                                                                         \
    do {                                                                                           \
        CK_RV rv_ = (expr);                                                                        \
        if (rv_ != CKR_OK) {                                                                       \
            w->rv = rv_;                                                                           \
            w->step = (n);                                                                         \
            return NULL;                                                                           \
        }                                                                                          \
    } while (0)

/*
 * SoftHSMv2 2.6: C_FindObjectsInit sometimes fails with CKR_GENERAL_ERROR
 * while another thread's session objects are being destroyed (C_DestroyObject
 * or C_CloseSession): its find walks every session object of the slot
 * without holding them. A race in SoftHSMv2, not in the test (other threads'
 * objects are no business of this find), and the failed init leaves the
 * operation active. Ended and retried for SoftHSMv2 only, so the rest of
 * this test still runs against it.
 */
static CK_RV
find_init(CK_SESSION_HANDLE h, CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_RV rv = F->C_FindObjectsInit(h, t, n);

    for (int i = 0; i < 100 && rv == CKR_GENERAL_ERROR && is_softhsm(); i++) {
        /* The failed init also leaves its find operation active. */
        F->C_FindObjectsFinal(h);
        rv = F->C_FindObjectsInit(h, t, n);
    }
    return rv;
}

static void *
worker(void *arg)
{
    struct worker *w = arg;
    char label[32];
    CK_SESSION_HANDLE h;
    CK_OBJECT_HANDLE o, found[4];
    CK_ULONG n;
    CK_TOKEN_INFO ti;
    CK_BYTE v[32];

    for (int r = 0; r < CONF_ROUNDS; r++) {
        snprintf(label, sizeof(label), "thr-%d-%d", w->id, r);
        CK_ATTRIBUTE t = {CKA_LABEL, label, strlen(label)};
        CK_ATTRIBUTE a = {CKA_VALUE, v, sizeof(v)};

        WORKER_OK(1, F->C_OpenSession(w->slot, CKF_SERIAL_SESSION | (r % 2 ? CKF_RW_SESSION : 0),
                                      NULL, NULL, &h));
        WORKER_OK(2, conf_create_data(h, CK_FALSE, CK_FALSE, label, &o));
        WORKER_OK(3, find_init(h, &t, 1));
        WORKER_OK(4, F->C_FindObjects(h, found, 4, &n));
        WORKER_OK(5, F->C_FindObjectsFinal(h));
        if (n != 1 || found[0] != o) {
            w->rv = CKR_GENERAL_ERROR;
            w->step = 6;
            return NULL;
        }
        WORKER_OK(7, F->C_GetAttributeValue(h, o, &a, 1));
        if (a.ulValueLen != strlen(label) || memcmp(v, label, a.ulValueLen) != 0) {
            w->rv = CKR_GENERAL_ERROR;
            w->step = 8;
            return NULL;
        }
        WORKER_OK(9, F->C_GetTokenInfo(w->slot, &ti));
        WORKER_OK(10, F->C_GenerateRandom(h, v, sizeof(v)));
        WORKER_OK(11, F->C_DestroyObject(h, o));
        WORKER_OK(12, find_init(h, &t, 1));
        WORKER_OK(13, F->C_FindObjects(h, found, 4, &n));
        WORKER_OK(14, F->C_FindObjectsFinal(h));
        if (n != 0) {
            w->rv = CKR_GENERAL_ERROR;
            w->step = 15;
            return NULL;
        }
        WORKER_OK(16, F->C_CloseSession(h));
    }
    return NULL;
}

static void
t_threads(void **state)
{
    pthread_t th[CONF_THREADS];
    struct worker w[CONF_THREADS];
    CK_SESSION_HANDLE h;
    CK_TOKEN_INFO ti;

    (void)state;
    /* The fixture initialised with CKF_OS_LOCKING_OK. A user login shared by
     * all threads' sessions, plus one long-lived session. */
    h = conf_open(CKF_RW_SESSION);
    conf_login_user(h);
    for (int i = 0; i < CONF_THREADS; i++) {
        w[i].id = i;
        w[i].slot = E.slot;
        w[i].rv = CKR_OK;
        w[i].step = 0;
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < CONF_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < CONF_THREADS; i++) {
        if (w[i].rv != CKR_OK)
            fail_msg("thread %d step %d: %s", i, w[i].step, conf_rv_name(w[i].rv));
    }
    /* Everything the threads opened is closed; the login survived. */
    assert_ok(F->C_GetTokenInfo(E.slot, &ti));
    assert_session_count(ti.ulSessionCount, 1);
    assert_int_equal(conf_session_state(h), CKS_RW_USER_FUNCTIONS);
    assert_int_equal(conf_find(h, NULL, 0, NULL, 0, 16), is_evertoken() ? 1 : 0);
    assert_ok(F->C_CloseSession(h));
}

struct conf_group
conf_process_tests(void)
{
    static const struct CMUnitTest tests[] = {
        CONF_TEST_TOKEN(t_second_process),
        CONF_TEST_TOKEN(t_fork),
        CONF_TEST_TOKEN(t_threads),
    };
    struct conf_group g = {"process", tests, sizeof(tests) / sizeof(tests[0])};
    return g;
}
