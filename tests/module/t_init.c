/*
 * t_init.c — library-level functions: C_Initialize/C_Finalize argument rules,
 * C_GetInfo, C_GetFunctionList, and the 3.0 interface functions.
 * PKCS#11 2.40 sections 5.4 and 6.6; 3.0 section 5.4.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

/* Application mutex functions that count their use, to see that a module
 * given them without CKF_OS_LOCKING_OK really calls them. */
static int mutex_calls;

static CK_RV
app_create(CK_VOID_PTR_PTR out)
{
    pthread_mutex_t *m;

    if (out == NULL)
        return CKR_ARGUMENTS_BAD;
    m = malloc(sizeof(*m));
    if (m == NULL)
        return CKR_HOST_MEMORY;
    pthread_mutex_init(m, NULL);
    __atomic_add_fetch(&mutex_calls, 1, __ATOMIC_SEQ_CST);
    *out = m;
    return CKR_OK;
}

static CK_RV
app_destroy(CK_VOID_PTR p)
{
    if (p == NULL)
        return CKR_MUTEX_BAD;
    pthread_mutex_destroy(p);
    free(p);
    return CKR_OK;
}

static CK_RV
app_lock(CK_VOID_PTR p)
{
    if (p == NULL)
        return CKR_MUTEX_BAD;
    __atomic_add_fetch(&mutex_calls, 1, __ATOMIC_SEQ_CST);
    return pthread_mutex_lock(p) == 0 ? CKR_OK : CKR_GENERAL_ERROR;
}

static CK_RV
app_unlock(CK_VOID_PTR p)
{
    if (p == NULL)
        return CKR_MUTEX_BAD;
    return pthread_mutex_unlock(p) == 0 ? CKR_OK : CKR_MUTEX_NOT_LOCKED;
}

static void
t_initialize_null(void **state)
{
    (void)state;
    assert_ok(F->C_Initialize(NULL));
    assert_ok(F->C_Finalize(NULL));
    /* Finalize then initialize again on the same load. */
    assert_ok(F->C_Initialize(NULL));
    assert_ok(F->C_Finalize(NULL));
}

static void
t_initialize_reserved(void **state)
{
    CK_C_INITIALIZE_ARGS a;
    int dummy;

    (void)state;
    memset(&a, 0, sizeof(a));
    a.pReserved = &dummy;
    assert_rv(F->C_Initialize(&a), CKR_ARGUMENTS_BAD);
    /* Rejected arguments leave the library uninitialised. */
    assert_rv(F->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
}

static void
t_initialize_partial_mutex(void **state)
{
    CK_C_INITIALIZE_ARGS a;

    (void)state;
    /* 2.40 section 5.4: some but not all four function pointers. */
    memset(&a, 0, sizeof(a));
    a.CreateMutex = app_create;
    assert_rv(F->C_Initialize(&a), CKR_ARGUMENTS_BAD);
    a.DestroyMutex = app_destroy;
    a.LockMutex = app_lock;
    a.flags = CKF_OS_LOCKING_OK;
    assert_rv(F->C_Initialize(&a), CKR_ARGUMENTS_BAD);
    assert_rv(F->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
}

static void
t_initialize_locking(void **state)
{
    CK_C_INITIALIZE_ARGS a;
    CK_INFO info;
    CK_ULONG n = 0;

    (void)state;
    memset(&a, 0, sizeof(a));
    a.flags = CKF_OS_LOCKING_OK;
    assert_ok(F->C_Initialize(&a));
    assert_ok(F->C_Finalize(NULL));

    /* No locking flags, no functions: single-threaded use. */
    memset(&a, 0, sizeof(a));
    assert_ok(F->C_Initialize(&a));
    assert_ok(F->C_Finalize(NULL));

    /* The application's mutex functions, with and without OS locking. */
    a.CreateMutex = app_create;
    a.DestroyMutex = app_destroy;
    a.LockMutex = app_lock;
    a.UnlockMutex = app_unlock;
    a.flags = CKF_OS_LOCKING_OK;
    assert_ok(F->C_Initialize(&a));
    assert_ok(F->C_Finalize(NULL));

    a.flags = 0;
    mutex_calls = 0;
    /* 2.40 section 5.4: the module uses these or fails with CKR_CANT_LOCK. */
    assert_ok(F->C_Initialize(&a));
    assert_ok(F->C_GetInfo(&info));
    assert_ok(F->C_GetSlotList(CK_FALSE, NULL, &n));
    assert_true(n >= 1);
    /* Given the functions and not CKF_OS_LOCKING_OK, a module that locks at
     * all must lock through them (or refuse with CKR_CANT_LOCK). */
    assert_true(__atomic_load_n(&mutex_calls, __ATOMIC_SEQ_CST) > 0);
    assert_ok(F->C_Finalize(NULL));
}

static void
t_initialize_twice(void **state)
{
    (void)state;
    assert_ok(conf_initialize());
    assert_rv(F->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
    assert_rv(conf_initialize(), CKR_CRYPTOKI_ALREADY_INITIALIZED);
    /* Still initialised and working. */
    CK_INFO info;
    assert_ok(F->C_GetInfo(&info));
    assert_ok(F->C_Finalize(NULL));
}

static void
t_finalize_args(void **state)
{
    int dummy;

    (void)state;
    assert_rv(F->C_Finalize(&dummy), CKR_ARGUMENTS_BAD);
    /* Still initialised after the refused call. */
    CK_INFO info;
    assert_ok(F->C_GetInfo(&info));
    assert_ok(F->C_Finalize(NULL));
    assert_rv(F->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
}

static void
check_not_initialized(void)
{
    CK_INFO info;
    CK_ULONG n = 0;
    CK_SLOT_INFO si;
    CK_TOKEN_INFO ti;
    CK_SESSION_HANDLE h;
    CK_SESSION_INFO ssi;
    CK_BYTE rnd[4];

    assert_rv(F->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_rv(F->C_GetSlotList(CK_FALSE, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_rv(F->C_GetSlotInfo(0, &si), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_rv(F->C_GetTokenInfo(0, &ti), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_rv(F->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h),
              CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_rv(F->C_CloseSession(1), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_rv(F->C_CloseAllSessions(0), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_rv(F->C_GetSessionInfo(1, &ssi), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_rv(F->C_Login(1, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_rv(F->C_Logout(1), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_rv(F->C_FindObjectsInit(1, NULL, 0), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_rv(F->C_GenerateRandom(1, rnd, sizeof(rnd)), CKR_CRYPTOKI_NOT_INITIALIZED);
    assert_rv(F->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
}

static void
t_not_initialized(void **state)
{
    (void)state;
    check_not_initialized();
    /* And again after a full initialise/finalise cycle. */
    assert_ok(conf_initialize());
    assert_ok(F->C_Finalize(NULL));
    check_not_initialized();
}

static int
printable_padded(const CK_UTF8CHAR *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] == 0x7f)
            return 0;
    return 1;
}

static void
t_get_info(void **state)
{
    CK_INFO info;

    (void)state;
    memset(&info, 0, sizeof(info));
    assert_ok(F->C_GetInfo(&info));
    /* The version this function list speaks (2.40 for C_GetFunctionList's). */
    assert_int_equal(info.cryptokiVersion.major, F->version.major);
    assert_int_equal(info.cryptokiVersion.minor, F->version.minor);
    assert_int_equal(info.cryptokiVersion.major, 2);
    /* Blank padded, never NUL terminated; flags reserved (0). */
    assert_true(printable_padded(info.manufacturerID, sizeof(info.manufacturerID)));
    assert_true(printable_padded(info.libraryDescription, sizeof(info.libraryDescription)));
    assert_int_equal(info.flags, 0);
    if (is_evertoken())
        assert_true(conf_padded_eq(info.manufacturerID, 32, "evertoken"));
    assert_rv(F->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
}

static void
t_get_function_list(void **state)
{
    CK_FUNCTION_LIST_PTR again = NULL;

    (void)state;
    assert_rv(F->C_GetFunctionList(NULL), CKR_ARGUMENTS_BAD);
    /* Works before C_Initialize and returns the same list. */
    assert_ok(F->C_GetFunctionList(&again));
    assert_ptr_equal(again, F);
    assert_int_equal(F->version.major, 2);
    assert_non_null(F->C_Initialize);
    assert_non_null(F->C_WaitForSlotEvent);
}

static void
t_interface_list(void **state)
{
    CK_ULONG n = 0, small;
    CK_INTERFACE *list;
    int found30 = 0;

    (void)state;
    if (conf_get_interface_list == NULL)
        skip(); /* a 2.40 module (SoftHSMv2 2.6) has no interfaces */
    assert_rv(conf_get_interface_list(NULL, NULL), CKR_ARGUMENTS_BAD);
    assert_ok(conf_get_interface_list(NULL, &n));
    assert_true(n >= 1);
    list = calloc(n, sizeof(*list));
    assert_non_null(list);
    small = 0;
    assert_rv(conf_get_interface_list(list, &small), CKR_BUFFER_TOO_SMALL);
    assert_int_equal(small, n);
    assert_ok(conf_get_interface_list(list, &n));
    for (CK_ULONG i = 0; i < n; i++) {
        CK_VERSION *v = list[i].pFunctionList;

        assert_non_null(list[i].pInterfaceName);
        assert_non_null(v);
        if (strcmp((char *)list[i].pInterfaceName, "PKCS 11") == 0 && v->major == 3 &&
            v->minor == 0)
            found30 = 1;
    }
    assert_true(found30);
    if (is_evertoken()) {
        /* evertoken: the 3.0 list (default), the 2.40 list and the vendor
         * interface (settings, login cache), flags 0 (not fork safe: a child
         * must C_Initialize). */
        assert_int_equal(n, 3);
        for (CK_ULONG i = 0; i < n; i++)
            assert_int_equal(list[i].flags, 0);
        assert_string_equal((char *)list[2].pInterfaceName, "Vendor evertoken");
    }
    free(list);
}

static void
t_get_interface(void **state)
{
    CK_INTERFACE *iface = NULL;
    CK_VERSION v30 = {3, 0}, v99 = {9, 9};
    CK_FUNCTION_LIST_3_0 *f3;
    CK_INFO info;

    (void)state;
    if (conf_get_interface == NULL)
        skip();
    assert_rv(conf_get_interface(NULL, NULL, NULL, 0), CKR_ARGUMENTS_BAD);
    /* NULL name: the default interface. */
    assert_ok(conf_get_interface(NULL, NULL, &iface, 0));
    assert_non_null(iface);
    assert_string_equal((char *)iface->pInterfaceName, "PKCS 11");
    /* By name and version 3.0. */
    iface = NULL;
    assert_ok(conf_get_interface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &iface, 0));
    assert_non_null(iface);
    f3 = iface->pFunctionList;
    assert_int_equal(f3->version.major, 3);
    assert_int_equal(f3->version.minor, 0);
    assert_non_null(f3->C_SessionCancel);
    assert_non_null(f3->C_LoginUser);
    assert_non_null(f3->C_GetInterface);
    /* An interface nobody has. */
    assert_true(conf_get_interface((CK_UTF8CHAR_PTR) "No Such Interface", NULL, &iface, 0) !=
                CKR_OK);
    assert_true(conf_get_interface((CK_UTF8CHAR_PTR) "PKCS 11", &v99, &iface, 0) != CKR_OK);
    if (is_evertoken())
        assert_rv(conf_get_interface((CK_UTF8CHAR_PTR) "No Such Interface", NULL, &iface, 0),
                  CKR_ARGUMENTS_BAD);

    /* The 3.0 list is a working list: its C_GetInfo reports 3.0. */
    assert_ok(f3->C_Initialize(NULL));
    assert_ok(f3->C_GetInfo(&info));
    assert_int_equal(info.cryptokiVersion.major, 3);
    assert_ok(f3->C_Finalize(NULL));
}

struct conf_group
conf_init_tests(void)
{
    static const struct CMUnitTest tests[] = {
        CONF_TEST_BARE(t_initialize_null),
        CONF_TEST_BARE(t_initialize_reserved),
        CONF_TEST_BARE(t_initialize_partial_mutex),
        CONF_TEST_BARE(t_initialize_locking),
        CONF_TEST_BARE(t_initialize_twice),
        CONF_TEST_INIT(t_finalize_args),
        CONF_TEST_BARE(t_not_initialized),
        CONF_TEST_INIT(t_get_info),
        CONF_TEST_BARE(t_get_function_list),
        CONF_TEST_BARE(t_interface_list),
        CONF_TEST_BARE(t_get_interface),
    };
    struct conf_group g = {"init", tests, sizeof(tests) / sizeof(tests[0])};
    return g;
}
