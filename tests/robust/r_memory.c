/*
 * r_memory.c — secrets do not outlive C_Logout/C_Finalize in the process's
 * memory, and while they live they sit in memory excluded from core dumps.
 *
 * The test keeps its own copies of the secrets (needles) and its scan buffer
 * in one mmap'd area that the scan skips. Secrets: a P-256 private scalar
 * and the value of a private data object, written by the test straight into
 * that area and passed to C_CreateObject; the token master key and the two
 * keys derived from it, copied out of the module's keystore handle while
 * logged in. The scan reads every readable mapping of /proc/self/maps
 * through /proc/self/mem and looks for each needle (and, for the scalar, its
 * byte-reversed form: OpenSSL BIGNUM limbs on little-endian machines).
 *
 *   logged in, after a signature: every copy of the TMK and derived keys is
 *     in a mapping marked "dd" (MADV_DONTDUMP) in /proc/self/smaps; copies
 *     of the private scalar and of the private value outside such memory are
 *     listed with their mapping (OpenSSL keeps the EVP_PKEY's private BIGNUM
 *     in its secure heap only if the application initialised one; see
 *     docs/testing.md for what this test found).
 *   after C_Logout: none of the needles anywhere;
 *   after C_Finalize: none of the needles anywhere.
 * R_MEMORY_STRICT=1 also fails on private-key copies outside "dd" memory
 * while logged in.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sodium.h>

#include "ks_int.h"
#include "mod_int.h"
#include "rlib.h"

#define AREA      (4u << 20)
#define CHUNK     (1u << 20)
#define NEEDLE_SZ 32

enum { N_SCALAR, N_SCALAR_REV, N_VALUE, N_TMK, N_REC, N_MAC, N_COUNT };
static const char *const needle_name[N_COUNT] = {
    "EC private scalar",  "EC private scalar (reversed)",
    "private data value", "TMK",
    "record key",         "MAC key"};

static unsigned char *area; /* needles, then the scan buffer */
#define NEEDLE(i) (area + (size_t)(i)*NEEDLE_SZ)
#define SCANBUF   (area + 4096)

struct hit {
    unsigned long addr;
    char map[160];
    int dontdump;
};

/* Is ADDR in a mapping whose VmFlags include "dd"? */
static int
dontdump(unsigned long addr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int in = 0, dd = 0;

    R_ASSERT(f != NULL, "smaps");
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long lo, hi;

        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
            strchr(line, ' ') == line + strcspn(line, " ")) {
            if (strncmp(line, "VmFlags", 7) != 0) {
                in = addr >= lo && addr < hi;
                continue;
            }
        }
        if (in && strncmp(line, "VmFlags:", 8) == 0) {
            dd = strstr(line, " dd") != NULL;
            break;
        }
    }
    fclose(f);
    return dd;
}

/* Find every needle in NEEDLES (bit mask) in readable memory outside the
 * area. Returns the number of hits, recorded in HITS (up to MAXH). */
static int
scan(unsigned mask, struct hit *hits, int maxh, int *which)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    int mem = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
    char line[512];
    int nh = 0;

    R_ASSERT(maps != NULL && mem >= 0, "/proc/self");
    while (fgets(line, sizeof(line), maps) != NULL) {
        unsigned long lo, hi;
        char perms[8];

        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r')
            continue;
        if (lo == (unsigned long)area || strstr(line, "[vvar") != NULL ||
            strstr(line, "[vsyscall]") != NULL)
            continue;
        /* Terabyte-sized reservations are AddressSanitizer's shadow memory
         * (never holding data of the program); reading them would take
         * hours. Nothing the program allocates comes near 64 GiB. */
        if (hi - lo > (64UL << 30))
            continue;
        for (unsigned long off = lo; off < hi;) {
            size_t want = hi - off > CHUNK ? CHUNK : hi - off;
            ssize_t got = pread(mem, SCANBUF, want, (off_t)off);

            if (got <= 0) {
                off += 4096; /* unreadable page */
                continue;
            }
            for (int i = 0; i < N_COUNT; i++) {
                const unsigned char *p = SCANBUF, *end = SCANBUF + got;

                if (!(mask & (1u << i)))
                    continue;
                while ((p = memmem(p, (size_t)(end - p), NEEDLE(i), NEEDLE_SZ)) != NULL) {
                    unsigned long at = off + (unsigned long)(p - SCANBUF);
                    int dup = 0;

                    /* Chunks overlap by NEEDLE_SZ bytes: count a hit once. */
                    for (int j = 0; j < nh && j < maxh; j++)
                        dup |= hits[j].addr == at && which[j] == i;
                    if (dup) {
                        p++;
                        continue;
                    }
                    if (nh < maxh) {
                        hits[nh].addr = off + (unsigned long)(p - SCANBUF);
                        snprintf(hits[nh].map, sizeof(hits[nh].map), "%.*s",
                                 (int)strcspn(line, "\n"), line);
                        which[nh] = i;
                    }
                    nh++;
                    p++;
                }
            }
            /* Needles straddling chunk borders: step back a little. */
            off += (unsigned long)got > NEEDLE_SZ ? (unsigned long)got - NEEDLE_SZ
                                                  : (unsigned long)got;
        }
    }
    fclose(maps);
    close(mem);
    for (int i = 0; i < nh && i < maxh; i++)
        hits[i].dontdump = dontdump(hits[i].addr);
    return nh;
}

static int
report(const char *when, unsigned mask, int *outside_dd_mask)
{
    struct hit hits[64];
    int which[64], nh = scan(mask, hits, 64, which);

    *outside_dd_mask = 0;
    for (int i = 0; i < nh && i < 64; i++) {
        fprintf(stderr, "%s: %s at 0x%lx (%s) in %s\n", when, needle_name[which[i]], hits[i].addr,
                hits[i].dontdump ? "excluded from core dumps" : "DUMPABLE", hits[i].map);
        if (!hits[i].dontdump)
            *outside_dd_mask |= 1 << which[i];
    }
    return nh;
}

int
main(void)
{
    char dir[256];
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key, data;
    CK_OBJECT_CLASS kc = CKO_PRIVATE_KEY, dc = CKO_DATA;
    CK_KEY_TYPE kt = CKK_EC;
    CK_BBOOL t = CK_TRUE;
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    unsigned char sig[128];
    CK_ULONG siglen = sizeof(sig);
    int outside, n, all = (1 << N_COUNT) - 1, keys = (1 << N_TMK) | (1 << N_REC) | (1 << N_MAC);
    struct mod_token *tok;

    R_ASSERT(sodium_init() >= 0, "sodium_init");
    area = mmap(NULL, AREA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    R_ASSERT(area != MAP_FAILED, "mmap");
    randombytes_buf(NEEDLE(N_SCALAR), NEEDLE_SZ);
    NEEDLE(N_SCALAR)[0] = 0x3c; /* below the group order */
    for (int i = 0; i < NEEDLE_SZ; i++)
        NEEDLE(N_SCALAR_REV)[i] = NEEDLE(N_SCALAR)[NEEDLE_SZ - 1 - i];
    randombytes_buf(NEEDLE(N_VALUE), NEEDLE_SZ);

    r_setup(dir, "memory");
    r_init();
    slot = r_make_token();
    s = r_session(slot, R_USER_PIN);
    {
        CK_ATTRIBUTE a[] = {
            {CKA_CLASS, &kc, sizeof(kc)},
            {CKA_KEY_TYPE, &kt, sizeof(kt)},
            {CKA_TOKEN, &t, sizeof(t)},
            {CKA_PRIVATE, &t, sizeof(t)},
            {CKA_SIGN, &t, sizeof(t)},
            {CKA_EC_PARAMS, (void *)p256, sizeof(p256)},
            {CKA_VALUE, NEEDLE(N_SCALAR), NEEDLE_SZ},
        };
        CK_ATTRIBUTE d[] = {
            {CKA_CLASS, &dc, sizeof(dc)},
            {CKA_TOKEN, &t, sizeof(t)},
            {CKA_PRIVATE, &t, sizeof(t)},
            {CKA_VALUE, NEEDLE(N_VALUE), NEEDLE_SZ},
        };
        R_CK(R->C_CreateObject(s, a, 7, &key), CKR_OK);
        R_CK(R->C_CreateObject(s, d, 4, &data), CKR_OK);
    }
    /* A new process would load the objects from the file: do that too. */
    R_CK(R->C_Finalize(NULL), CKR_OK);
    r_init();
    s = r_session(slot, R_USER_PIN);
    {
        CK_ATTRIBUTE t1 = {CKA_CLASS, &kc, sizeof(kc)};
        CK_ULONG c = 0;
        R_CK(R->C_FindObjectsInit(s, &t1, 1), CKR_OK);
        R_CK(R->C_FindObjects(s, &key, 1, &c), CKR_OK);
        R_CK(R->C_FindObjectsFinal(s), CKR_OK);
        R_ASSERT(c == 1, "key");
    }
    R_CK(R->C_SignInit(s, &m, key), CKR_OK);
    R_CK(R->C_Sign(s, (CK_BYTE_PTR) "message", 7, sig, &siglen), CKR_OK);
    {
        /* Read the private value once (it is not sensitive). */
        unsigned char *v = SCANBUF;
        size_t len = NEEDLE_SZ;
        CK_OBJECT_HANDLE hd[2];
        CK_RV rv;
        R_ASSERT(r_find_data(s, NULL, hd, 2, &rv) == 1, "data object");
        R_CK(r_get_value(s, hd[0], v, &len), CKR_OK);
        R_ASSERT(len == NEEDLE_SZ && memcmp(v, NEEDLE(N_VALUE), len) == 0, "value");
        memset(v, 0, NEEDLE_SZ);
    }
    /* The keystore's keys, from the module's handle. */
    tok = mod_g.tokens;
    while (tok != NULL && tok->slot != slot)
        tok = tok->next;
    R_ASSERT(tok != NULL && tok->ks != NULL && tok->ks->keys != NULL, "logged-in keystore");
    memcpy(NEEDLE(N_TMK), tok->ks->keys->tmk, NEEDLE_SZ);
    memcpy(NEEDLE(N_REC), tok->ks->keys->rec, NEEDLE_SZ);
    memcpy(NEEDLE(N_MAC), tok->ks->keys->mac, NEEDLE_SZ);

    n = report("logged in", (unsigned)all, &outside);
    R_ASSERT(n >= 3, "the scan did not even find the live keys (%d hits)", n);
    R_ASSERT(!(outside & keys), "the TMK or a derived key is in memory that core dumps include");
    if (outside & ~keys) {
        fprintf(stderr, "logged in: private key material is in memory core dumps include%s\n",
                getenv("R_MEMORY_STRICT") ? "" : " (reported; R_MEMORY_STRICT=1 makes it fatal)");
        R_ASSERT(getenv("R_MEMORY_STRICT") == NULL, "R_MEMORY_STRICT");
    }

    R_CK(R->C_Logout(s), CKR_OK);
    n = report("after C_Logout", (unsigned)all, &outside);
    R_ASSERT(n == 0, "%d copies of secrets left after C_Logout", n);

    R_CK(R->C_Finalize(NULL), CKR_OK);
    n = report("after C_Finalize", (unsigned)all, &outside);
    R_ASSERT(n == 0, "%d copies of secrets left after C_Finalize", n);

    sodium_memzero(area, AREA);
    munmap(area, AREA);
    r_rm_rf(dir);
    fprintf(stderr, "r_memory: no secret left after C_Logout and C_Finalize\n");
    return 0;
}
