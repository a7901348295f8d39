/*
 * fuzz_attrs.c — attribute templates through the module's function list,
 * in-process (et_module_objs) on a token in a temporary directory, logged in
 * as the user in an R/W session opened per input.
 *
 * Input: a list of commands, each
 *   byte      op: 0 C_CreateObject, 1 C_FindObjectsInit (+ C_FindObjects),
 *             2 C_SetAttributeValue, 3 C_GetAttributeValue, 4 C_CopyObject,
 *             (2-4 act on an object created earlier in the input, or on
 *             whatever the last find returned) — the byte modulo 5; bytes
 *             0xf0 and above are the secret-key commands, modulo 4:
 *             5 C_GenerateKey (CKM_AES_KEY_GEN), 6 C_GenerateKey
 *             (CKM_GENERIC_SECRET_KEY_GEN), 7 C_UnwrapKey with the target
 *             as unwrapping key (CKM_AES_KEY_WRAP_PAD, the next 24 input
 *             bytes as wrapped key), 8 C_WrapKey of the last object made
 *             under the target (size query, then into a buffer)
 *   byte      number of attributes (mod 8)
 *   per attribute:
 *     byte    type: < 160 one of the known CKA_* in types[], 160..223 one of
 *             the secret-key attributes in sec_types[], else a raw u32 follows
 *     byte    length: bit 7 set = the natural size of the type (1 for a
 *             CK_BBOOL, sizeof(CK_ULONG) for numbers), 0x7f = a u16 length
 *             follows, else the value itself (0..126)
 *     bytes   the value (zero-padded when the input runs out)
 *   an attribute-array type (CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE,
 *   CKA_DERIVE_TEMPLATE) is followed, instead of length and value, by a
 *   nested attribute list in the same form (one level deep)
 * Every value buffer is exactly as long as its ulValueLen says (a shorter
 * one would be the caller's bug, not the module's). CKA_DESTROYABLE is
 * forced to TRUE so that every object made by an input can be destroyed
 * again at its end (token objects would otherwise pile up in the file).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlib.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const CK_ATTRIBUTE_TYPE types[] = {
    CKA_CLASS,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_LABEL,
    CKA_APPLICATION,
    CKA_VALUE,
    CKA_OBJECT_ID,
    CKA_CERTIFICATE_TYPE,
    CKA_ISSUER,
    CKA_SERIAL_NUMBER,
    CKA_TRUSTED,
    CKA_CERTIFICATE_CATEGORY,
    CKA_CHECK_VALUE,
    CKA_KEY_TYPE,
    CKA_SUBJECT,
    CKA_ID,
    CKA_SENSITIVE,
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_SIGN,
    CKA_VERIFY,
    CKA_DERIVE,
    CKA_START_DATE,
    CKA_END_DATE,
    CKA_MODULUS,
    CKA_MODULUS_BITS,
    CKA_PUBLIC_EXPONENT,
    CKA_PRIVATE_EXPONENT,
    CKA_PRIME_1,
    CKA_PRIME_2,
    CKA_EXPONENT_1,
    CKA_EXPONENT_2,
    CKA_COEFFICIENT,
    CKA_EC_PARAMS,
    CKA_EC_POINT,
    CKA_EXTRACTABLE,
    CKA_LOCAL,
    CKA_NEVER_EXTRACTABLE,
    CKA_ALWAYS_SENSITIVE,
    CKA_KEY_GEN_MECHANISM,
    CKA_MODIFIABLE,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_ALLOWED_MECHANISMS,
    CKA_PUBLIC_KEY_INFO,
    CKA_VALUE_LEN,
    CKA_URL,
    CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
    CKA_HASH_OF_ISSUER_PUBLIC_KEY,
    CKA_NAME_HASH_ALGORITHM,
    CKA_JAVA_MIDP_SECURITY_DOMAIN,
    CKA_ALWAYS_AUTHENTICATE,
    CKA_WRAP_WITH_TRUSTED,
    CKA_SIGN_RECOVER,
    CKA_VERIFY_RECOVER,
    CKA_PROFILE_ID,
    CKA_AC_ISSUER,
    CKA_OWNER,
    CKA_ATTR_TYPES,
    CKA_PRIME,
    CKA_BASE,
    CKA_VALUE_BITS,
    CKA_CERTIFICATE_TYPE + 0x80000000UL,
};
#define NTYPES (sizeof(types) / sizeof(types[0]))

/* Secret-key attributes (a separate table so that the committed corpus keeps
 * its meaning). */
static const CK_ATTRIBUTE_TYPE sec_types[] = {
    CKA_VALUE_LEN,
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_SIGN,
    CKA_VERIFY,
    CKA_EXTRACTABLE,
    CKA_SENSITIVE,
    CKA_WRAP_WITH_TRUSTED,
    CKA_ALWAYS_SENSITIVE,
    CKA_NEVER_EXTRACTABLE,
    CKA_LOCAL,
    CKA_KEY_GEN_MECHANISM,
    CKA_ALLOWED_MECHANISMS,
    CKA_CHECK_VALUE,
    CKA_WRAP_TEMPLATE,
    CKA_UNWRAP_TEMPLATE,
    CKA_TRUSTED,
    CKA_DERIVE,
};
#define NSEC (sizeof(sec_types) / sizeof(sec_types[0]))

static int
is_bool(CK_ATTRIBUTE_TYPE t)
{
    switch (t) {
    case CKA_TOKEN:
    case CKA_PRIVATE:
    case CKA_TRUSTED:
    case CKA_SENSITIVE:
    case CKA_ENCRYPT:
    case CKA_DECRYPT:
    case CKA_WRAP:
    case CKA_UNWRAP:
    case CKA_SIGN:
    case CKA_VERIFY:
    case CKA_DERIVE:
    case CKA_EXTRACTABLE:
    case CKA_LOCAL:
    case CKA_NEVER_EXTRACTABLE:
    case CKA_ALWAYS_SENSITIVE:
    case CKA_MODIFIABLE:
    case CKA_COPYABLE:
    case CKA_DESTROYABLE:
    case CKA_ALWAYS_AUTHENTICATE:
    case CKA_WRAP_WITH_TRUSTED:
    case CKA_SIGN_RECOVER:
    case CKA_VERIFY_RECOVER:
        return 1;
    default:
        return 0;
    }
}

static char dir[256];
static CK_SLOT_ID slot;

static void
cleanup(void)
{
    (void)R->C_Finalize(NULL);
    r_rm_rf(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    CK_SESSION_HANDLE s;

    (void)argc;
    (void)argv;
    r_setup(dir, "fuzz-attrs");
    r_init();
    slot = r_make_token();
    s = r_session(slot, R_USER_PIN); /* the login stays: it is the process's */
    (void)s;
    atexit(cleanup);
    return 0;
}

struct in {
    const uint8_t *p;
    size_t n;
};

static unsigned
byte(struct in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

#define MAXA 8
struct tmpl {
    CK_ATTRIBUTE a[MAXA];
    CK_ULONG n;
    unsigned char *bufs[MAXA];
    struct tmpl *sub[MAXA]; /* the entries of an attribute-array value */
};

static void
tmpl_free(struct tmpl *t)
{
    for (CK_ULONG i = 0; i < t->n; i++) {
        free(t->bufs[i]);
        if (t->sub[i] != NULL) {
            tmpl_free(t->sub[i]);
            free(t->sub[i]);
        }
    }
    t->n = 0;
}

static void tmpl_read(struct in *in, struct tmpl *t, int fill, int depth);

/* An attribute-array value (CKA_WRAP_TEMPLATE, ...) at the top level: a
 * well-formed CK_ATTRIBUTE array read as a nested template (its pointers
 * are the caller's to get right, so they are always valid). Nested deeper,
 * array types are plain bytes, which the module refuses unread. */
static int
tmpl_array(struct in *in, struct tmpl *t, CK_ATTRIBUTE_TYPE type, int fill)
{
    struct tmpl *sub = calloc(1, sizeof(*sub));

    if (sub == NULL)
        return 0;
    tmpl_read(in, sub, fill, 1);
    t->a[t->n].type = type;
    t->a[t->n].pValue = sub->n > 0 ? sub->a : NULL;
    t->a[t->n].ulValueLen = sub->n * (CK_ULONG)sizeof(CK_ATTRIBUTE);
    t->bufs[t->n] = NULL;
    t->sub[t->n] = sub;
    t->n++;
    return 1;
}

static void
tmpl_read(struct in *in, struct tmpl *t, int fill, int depth)
{
    unsigned n = byte(in) % MAXA;

    t->n = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned sel = byte(in), lb;
        CK_ATTRIBUTE_TYPE type;
        size_t len;
        unsigned char *v;

        if (sel < 160) {
            type = types[sel % NTYPES];
        } else if (sel < 224) {
            type = sec_types[(sel - 160) % NSEC];
        } else {
            type = (CK_ATTRIBUTE_TYPE)byte(in) | (CK_ATTRIBUTE_TYPE)byte(in) << 8 |
                   (CK_ATTRIBUTE_TYPE)byte(in) << 16 | (CK_ATTRIBUTE_TYPE)byte(in) << 24;
        }
        if (depth == 0 && (type & CKF_ARRAY_ATTRIBUTE)) {
            if (!tmpl_array(in, t, type, fill))
                break;
            continue;
        }
        lb = byte(in);
        if (lb & 0x80)
            len = is_bool(type) ? sizeof(CK_BBOOL) : sizeof(CK_ULONG);
        else if (lb == 0x7f)
            len = byte(in) | byte(in) << 8;
        else
            len = lb;
        v = calloc(1, len ? len : 1);
        if (v == NULL)
            break;
        if (fill)
            for (size_t j = 0; j < len; j++)
                v[j] = (unsigned char)byte(in);
        if (type == CKA_DESTROYABLE && len == sizeof(CK_BBOOL))
            v[0] = CK_TRUE;
        t->a[t->n].type = type;
        t->a[t->n].pValue = (len == 0 && (lb & 1)) ? NULL : v;
        t->a[t->n].ulValueLen = (CK_ULONG)len;
        t->bufs[t->n] = v;
        t->sub[t->n] = NULL;
        t->n++;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = {data, size};
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE made[16], found[8], target = CK_INVALID_HANDLE;
    size_t nmade = 0;
    int cmds = 0;

    if (size > 8192)
        return 0;
    if (R->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) != CKR_OK)
        abort();
    while (in.n > 0 && cmds++ < 16) {
        unsigned opb = byte(&in), op = opb >= 0xf0 ? 5 + opb % 4 : opb % 5;
        struct tmpl t;
        CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
        CK_ULONG cnt = 0;

        tmpl_read(&in, &t, op != 3, 0);
        switch (op) {
        case 0:
            if (nmade < 16 && R->C_CreateObject(s, t.a, t.n, &h) == CKR_OK)
                made[nmade++] = target = h;
            break;
        case 1:
            if (R->C_FindObjectsInit(s, t.a, t.n) == CKR_OK) {
                if (R->C_FindObjects(s, found, 8, &cnt) == CKR_OK && cnt > 0)
                    target = found[cnt - 1];
                (void)R->C_FindObjectsFinal(s);
            }
            break;
        case 2:
            (void)R->C_SetAttributeValue(s, target, t.a, t.n);
            break;
        case 3:
            /* Both halves of the protocol: sizes first, then the values
             * into buffers of the fuzzed lengths. */
            {
                CK_ATTRIBUTE q[MAXA];
                memcpy(q, t.a, sizeof(q));
                for (CK_ULONG i = 0; i < t.n; i++)
                    q[i].pValue = NULL;
                (void)R->C_GetAttributeValue(s, target, q, t.n);
                (void)R->C_GetAttributeValue(s, target, t.a, t.n);
            }
            break;
        case 4:
            if (nmade < 16 && R->C_CopyObject(s, target, t.a, t.n, &h) == CKR_OK)
                made[nmade++] = h;
            break;
        case 5:
        case 6: {
            CK_MECHANISM m = {op == 5 ? CKM_AES_KEY_GEN : CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
            if (nmade < 16 && R->C_GenerateKey(s, &m, t.a, t.n, &h) == CKR_OK)
                made[nmade++] = target = h;
            break;
        }
        case 7: {
            CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
            unsigned char w[24];
            for (size_t i = 0; i < sizeof(w); i++)
                w[i] = (unsigned char)byte(&in);
            if (nmade < 16 && R->C_UnwrapKey(s, &m, target, w, sizeof(w), t.a, t.n, &h) == CKR_OK)
                made[nmade++] = h;
            break;
        }
        case 8: {
            CK_MECHANISM m = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
            unsigned char w[512];
            CK_ULONG wl = 0;
            if (nmade > 0 && R->C_WrapKey(s, &m, target, made[nmade - 1], NULL, &wl) == CKR_OK &&
                wl <= sizeof(w))
                (void)R->C_WrapKey(s, &m, target, made[nmade - 1], w, &wl);
            break;
        }
        }
        tmpl_free(&t);
    }
    /* Token objects stay in the file: remove what this input made. */
    for (size_t i = 0; i < nmade; i++)
        (void)R->C_DestroyObject(s, made[i]);
    if (R->C_CloseSession(s) != CKR_OK)
        abort();
    return 0;
}
