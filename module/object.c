/*
 * object.c — building PKCS#11 objects: the attribute-set storage
 * (mod_attrs), C_CreateObject / keys made by mechanisms / C_SetAttributeValue
 * / C_CopyObject semantics, C_GetAttributeValue, matching, and the other
 * constructors (from a keystore record, the profile object).
 *
 * The attribute table, defaults and template checks are in obj_attr.c;
 * certificate parsing lives in obj_cert.c, key checks in obj_key.c; all work
 * on an obj_build (obj_int.h) that this file turns into a mod_attrs.
 * docs/objects.md lists every attribute, default and rule.
 *
 * Storage: a mod_attrs owns one block holding the ks_attr array followed by
 * every value. For sets that may hold secrets the block comes from
 * sodium_malloc (guarded, locked) and is wiped when freed; building a set
 * never copies a secret anywhere else (values are borrowed until ob_finish).
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "obj_int.h"

/* ---- Building ----------------------------------------------------------- */

void
ob_init(obj_build *b)
{
    memset(b, 0, sizeof(*b));
}

void
ob_clear(obj_build *b)
{
    size_t i;

    for (i = 0; i < b->n; i++)
        free(b->a[i].owned);
    free(b->a);
    ob_init(b);
}

obj_bval *
ob_get(const obj_build *b, CK_ATTRIBUTE_TYPE type)
{
    size_t i;

    for (i = 0; i < b->n; i++)
        if (b->a[i].type == type)
            return &b->a[i];
    return NULL;
}

/* The slot for TYPE, emptied (its owned value freed), or NULL on ENOMEM. */
static obj_bval *
ob_slot(obj_build *b, CK_ATTRIBUTE_TYPE type)
{
    obj_bval *s = ob_get(b, type);

    if (s != NULL) {
        free(s->owned);
        s->owned = NULL;
        return s;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 32;
        obj_bval *na = realloc(b->a, cap * sizeof(*na));
        if (na == NULL)
            return NULL;
        b->a = na;
        b->cap = cap;
    }
    s = &b->a[b->n++];
    memset(s, 0, sizeof(*s));
    s->type = type;
    return s;
}

CK_RV
ob_put_ref(obj_build *b, CK_ATTRIBUTE_TYPE type, const void *v, size_t len)
{
    obj_bval *s = ob_slot(b, type);

    if (s == NULL)
        return CKR_HOST_MEMORY;
    s->v = v;
    s->len = len;
    return CKR_OK;
}

CK_RV
ob_put_copy(obj_build *b, CK_ATTRIBUTE_TYPE type, const void *v, size_t len)
{
    unsigned char *c = malloc(len ? len : 1);
    obj_bval *s;

    if (c == NULL)
        return CKR_HOST_MEMORY;
    if (len > 0)
        memcpy(c, v, len);
    s = ob_slot(b, type);
    if (s == NULL) {
        free(c);
        return CKR_HOST_MEMORY;
    }
    s->owned = c;
    s->v = c;
    s->len = len;
    return CKR_OK;
}

CK_RV
ob_put_bool(obj_build *b, CK_ATTRIBUTE_TYPE type, CK_BBOOL v)
{
    CK_BBOOL x = v ? CK_TRUE : CK_FALSE;

    return ob_put_copy(b, type, &x, sizeof(x));
}

CK_RV
ob_put_ulong(obj_build *b, CK_ATTRIBUTE_TYPE type, CK_ULONG v)
{
    return ob_put_copy(b, type, &v, sizeof(v));
}

CK_BBOOL
ob_bool(const obj_build *b, CK_ATTRIBUTE_TYPE type, CK_BBOOL dflt)
{
    const obj_bval *s = ob_get(b, type);

    if (s == NULL || s->len != sizeof(CK_BBOOL))
        return dflt;
    return s->v[0] ? CK_TRUE : CK_FALSE;
}

CK_ULONG
ob_ulong(const obj_build *b, CK_ATTRIBUTE_TYPE type, CK_ULONG dflt)
{
    const obj_bval *s = ob_get(b, type);
    CK_ULONG v;

    if (s == NULL || s->len != sizeof(CK_ULONG))
        return dflt;
    memcpy(&v, s->v, sizeof(v));
    return v;
}

CK_RV
ob_put_derived(obj_build *b, CK_ATTRIBUTE_TYPE type, const unsigned char *v, size_t len,
               CK_RV mismatch)
{
    const obj_bval *s = ob_get(b, type);

    if (s != NULL && s->len > 0 && (s->len != len || memcmp(s->v, v, len) != 0))
        return mismatch;
    return ob_put_copy(b, type, v, len);
}

static int
bval_cmp(const void *x, const void *y)
{
    const obj_bval *a = x, *b = y;

    return a->type < b->type ? -1 : a->type > b->type;
}

/* Bytes of the block holding N ks_attr and their values. Rounded to 16 so
 * that sodium_malloc (which places the block at the end of a page) returns an
 * address aligned for the ks_attr array. */
static size_t
block_size(const ks_attr *a, size_t n)
{
    size_t i, total = n * sizeof(ks_attr);

    for (i = 0; i < n; i++)
        total += a[i].len;
    return (total + 15) & ~(size_t)15;
}

/* A mod_attrs with room for TOTAL bytes of attribute array and values in
 * one block: locked, wiped-on-free memory (sodium) when SECURE. */
static CK_RV
attrs_alloc(size_t total, int secure, mod_attrs **out, unsigned char **block)
{
    mod_attrs *o = calloc(1, sizeof(*o));

    *out = NULL;
    *block = NULL;
    if (o == NULL)
        return CKR_HOST_MEMORY;
    o->secure = secure;
    if (total > 0) {
        if (secure && sodium_init() < 0) {
            free(o);
            return CKR_GENERAL_ERROR;
        }
        *block = secure ? sodium_malloc(total) : malloc(total);
        if (*block == NULL) {
            free(o);
            return CKR_HOST_MEMORY;
        }
    }
    *out = o;
    return CKR_OK;
}

/* Turn B into a sorted mod_attrs (values copied into one block). B is left
 * as it was; the caller still clears it. */
static CK_RV
ob_finish(obj_build *b, int secure, mod_attrs **out)
{
    mod_attrs *o = NULL;
    unsigned char *block = NULL, *p;
    size_t i, total = b->n * sizeof(ks_attr);
    ks_attr *arr;
    CK_RV rv;

    *out = NULL;
    if (b->n > 1)
        qsort(b->a, b->n, sizeof(*b->a), bval_cmp);
    for (i = 0; i < b->n; i++) {
        if (i > 0 && b->a[i].type == b->a[i - 1].type)
            return CKR_GENERAL_ERROR; /* ob_put_* replace, so never */
        total += b->a[i].len;
    }
    total = (total + 15) & ~(size_t)15;
    rv = attrs_alloc(total, secure, &o, &block);
    if (rv != CKR_OK)
        return rv;
    arr = (ks_attr *)(void *)block;
    p = block + b->n * sizeof(ks_attr);
    for (i = 0; i < b->n; i++) {
        arr[i].type = b->a[i].type;
        arr[i].len = b->a[i].len;
        arr[i].value = p;
        if (b->a[i].len > 0)
            memcpy(p, b->a[i].v, b->a[i].len);
        p += b->a[i].len;
    }
    o->n = b->n;
    o->a = arr;
    *out = o;
    return CKR_OK;
}

void
obj_free(mod_attrs *o)
{
    if (o == NULL || o->placed)
        return;
    if (o->a != NULL) {
        if (o->secure) {
            sodium_memzero(o->a, block_size(o->a, o->n));
            sodium_free(o->a);
        } else {
            free(o->a);
        }
    }
    free(o);
}

/* ---- C_CreateObject ----------------------------------------------------- */

/*
 * Checks shared by every way of creating an object, on the collected template
 * B (which holds CKA_CLASS and the sub-type when the class needs one): sets
 * *CB to the object's OC_* bit.
 */
static CK_RV
check_new(obj_build *b, const obj_policy *p, unsigned *cb)
{
    CK_OBJECT_CLASS cls;
    CK_ATTRIBUTE_TYPE st;
    size_t i;
    CK_RV rv;

    *cb = 0;
    /* Token-assigned attributes (CKA_LOCAL, CKA_ALWAYS_SENSITIVE, ...): the
     * tables' footnote 2, "must not be specified when the object is created
     * with C_CreateObject" (and never by a template of a generating call). */
    for (i = 0; i < b->n; i++)
        if (attr_info(b->a[i].type)->flags & F_NOCREATE)
            return CKR_ATTRIBUTE_READ_ONLY;
    if (ob_get(b, CKA_CLASS) == NULL)
        return CKR_TEMPLATE_INCOMPLETE;
    cls = ob_ulong(b, CKA_CLASS, 0);
    st = sub_type_attr(cls);
    rv = class_bit(cls, ob_get(b, st) != NULL, ob_ulong(b, st, 0), cb);
    if (rv != CKR_OK)
        return rv;
    if (*cb == OC_PROF)
        return CKR_ATTRIBUTE_VALUE_INVALID; /* the token's own (obj_profile) */
    for (i = 0; i < b->n; i++)
        if (!(attr_info(b->a[i].type)->classes & *cb))
            return CKR_TEMPLATE_INCONSISTENT;
    if (ob_bool(b, CKA_TRUSTED, CK_FALSE) && (p == NULL || !p->so))
        return CKR_ATTRIBUTE_READ_ONLY; /* footnote 10: only the SO sets it TRUE */
    /* Key material is only ever stored sealed (docs/threat-model.md), so a
     * private or secret token key cannot be a public object on this token.
     * A session key never touches the disk: it may be public. */
    if ((*cb & (OC_PRV | OC_SEC)) && !ob_bool(b, CKA_PRIVATE, CK_TRUE) &&
        ob_bool(b, CKA_TOKEN, CK_FALSE))
        return CKR_TEMPLATE_INCONSISTENT;
    return CKR_OK;
}

CK_RV
obj_from_template(const CK_ATTRIBUTE *t, CK_ULONG n, const obj_policy *p, mod_attrs **out)
{
    obj_build b;
    unsigned cb = 0;
    CK_RV rv;

    if (out == NULL)
        return CKR_ARGUMENTS_BAD;
    *out = NULL;
    ob_init(&b);
    rv = tmpl_collect(t, n, &b);
    if (rv == CKR_OK)
        rv = check_new(&b, p, &cb);
    if (rv != CKR_OK)
        goto done;
    if (cb == OC_CERT)
        rv = obj_cert_build(&b);
    else if (cb & OC_KEY)
        rv = obj_key_build(&b, cb);
    if (rv != CKR_OK)
        goto done;
    rv = add_defaults(&b, cb);
    if (rv != CKR_OK)
        goto done;
    rv = ob_finish(&b, wants_secure(ob_ulong(&b, CKA_CLASS, 0), ob_bool(&b, CKA_PRIVATE, CK_FALSE)),
                   out);
done:
    ob_clear(&b);
    return rv;
}

/* ---- Keys made by mechanisms (C_GenerateKeyPair, C_DeriveKey) ------------ */

/* Values a mechanism computes: footnote 4 of the attribute tables, "must not
 * be specified when the object is generated". */
static const CK_ATTRIBUTE_TYPE gen_computed[] = {
    CKA_MODULUS,    CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2,  CKA_EXPONENT_1,
    CKA_EXPONENT_2, CKA_COEFFICIENT,      CKA_VALUE,   CKA_EC_POINT,
};

/* Values that steer the mechanism (or that it fixes): a template may give
 * them, and then they must agree with what the mechanism used. */
static const CK_ATTRIBUTE_TYPE gen_params[] = {
    CKA_CLASS, CKA_KEY_TYPE, CKA_MODULUS_BITS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS, CKA_VALUE_LEN,
};

static int
type_in(CK_ATTRIBUTE_TYPE type, const CK_ATTRIBUTE_TYPE *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (l[i] == type)
            return 1;
    return 0;
}

/* Equal values; big integers compare as numbers (leading zero bytes do not
 * count: a template's 00 01 00 01 is 65537 too). */
static int
gen_value_eq(CK_ATTRIBUTE_TYPE type, const unsigned char *a, size_t alen, const unsigned char *b,
             size_t blen)
{
    const struct obj_attr_info *ai = attr_info(type);

    if (ai != NULL && ai->kind == K_BIGINT) {
        while (alen > 0 && a[0] == 0) {
            a++;
            alen--;
        }
        while (blen > 0 && b[0] == 0) {
            b++;
            blen--;
        }
    }
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* Collect template T of a key the mechanism makes as class CLS, key type KT,
 * with the generic creation checks; *CB is its OC_* bit. */
static CK_RV
gen_collect(const CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt,
            const obj_policy *p, obj_build *b, unsigned *cb)
{
    size_t i;
    CK_RV rv;

    *cb = 0;
    rv = tmpl_collect(t, n, b);
    if (rv != CKR_OK)
        return rv;
    for (i = 0; i < b->n; i++) {
        if (attr_info(b->a[i].type)->flags & F_NOCREATE)
            return CKR_ATTRIBUTE_READ_ONLY;
        if (type_in(b->a[i].type, gen_computed, sizeof(gen_computed) / sizeof(gen_computed[0])))
            return CKR_ATTRIBUTE_READ_ONLY;
    }
    /* A template naming another class or key type than the mechanism makes
     * (2.40 section 5.14: "CKR_TEMPLATE_INCONSISTENT"). */
    if (ob_get(b, CKA_CLASS) != NULL && ob_ulong(b, CKA_CLASS, CK_UNAVAILABLE_INFORMATION) != cls)
        return CKR_TEMPLATE_INCONSISTENT;
    if (ob_get(b, CKA_KEY_TYPE) != NULL &&
        ob_ulong(b, CKA_KEY_TYPE, CK_UNAVAILABLE_INFORMATION) != kt)
        return CKR_TEMPLATE_INCONSISTENT;
    rv = ob_put_ulong(b, CKA_CLASS, cls);
    if (rv == CKR_OK)
        rv = ob_put_ulong(b, CKA_KEY_TYPE, kt);
    if (rv != CKR_OK)
        return rv;
    rv = check_new(b, p, cb);
    if (rv == CKR_OK && !(*cb & OC_KEY))
        rv = CKR_GENERAL_ERROR; /* mechanisms make keys only */
    return rv;
}

CK_RV
obj_gen_check(const CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt,
              const obj_policy *p)
{
    obj_build b;
    unsigned cb;
    CK_RV rv;

    ob_init(&b);
    rv = gen_collect(t, n, cls, kt, p, &b, &cb);
    ob_clear(&b);
    return rv;
}

CK_RV
obj_from_generated(const CK_ATTRIBUTE *t, CK_ULONG n, const CK_ATTRIBUTE *mat, CK_ULONG nmat,
                   const obj_origin *origin, const obj_policy *p, mod_attrs **out)
{
    obj_build b;
    CK_OBJECT_CLASS cls = CK_UNAVAILABLE_INFORMATION;
    CK_KEY_TYPE kt = CK_UNAVAILABLE_INFORMATION;
    CK_BBOOL local, sens, extr;
    unsigned cb = 0;
    CK_ULONG i;
    CK_RV rv;

    if (out == NULL)
        return CKR_ARGUMENTS_BAD;
    *out = NULL;
    if (origin == NULL || mat == NULL)
        return CKR_ARGUMENTS_BAD;
    for (i = 0; i < nmat; i++) {
        if (mat[i].pValue == NULL && mat[i].ulValueLen > 0)
            return CKR_ARGUMENTS_BAD;
        if (mat[i].type == CKA_CLASS && mat[i].ulValueLen == sizeof(CK_ULONG))
            memcpy(&cls, mat[i].pValue, sizeof(cls));
        if (mat[i].type == CKA_KEY_TYPE && mat[i].ulValueLen == sizeof(CK_ULONG))
            memcpy(&kt, mat[i].pValue, sizeof(kt));
    }
    if (cls == CK_UNAVAILABLE_INFORMATION || kt == CK_UNAVAILABLE_INFORMATION)
        return CKR_ARGUMENTS_BAD; /* the material names what it is */
    ob_init(&b);
    rv = gen_collect(t, n, cls, kt, p, &b, &cb);
    if (rv != CKR_OK)
        goto done;
    for (i = 0; i < nmat; i++) {
        const struct obj_attr_info *ai = attr_info(mat[i].type);
        const obj_bval *prev = ob_get(&b, mat[i].type);

        if (ai == NULL || !(ai->classes & cb) || mat[i].ulValueLen > OBJ_VALUE_MAX) {
            rv = CKR_GENERAL_ERROR; /* the mechanism's own mistake */
            goto done;
        }
        if (prev != NULL) {
            if (!type_in(mat[i].type, gen_params, sizeof(gen_params) / sizeof(gen_params[0]))) {
                rv = CKR_ATTRIBUTE_READ_ONLY;
                goto done;
            }
            if (!gen_value_eq(mat[i].type, prev->v, prev->len, mat[i].pValue, mat[i].ulValueLen)) {
                rv = CKR_TEMPLATE_INCONSISTENT;
                goto done;
            }
        }
        rv = ob_put_ref(&b, mat[i].type, mat[i].pValue, mat[i].ulValueLen);
        if (rv != CKR_OK)
            goto done;
    }
    /* The same checks and derivations as an imported key (public parts,
     * CKA_PUBLIC_KEY_INFO, RSA pairwise check, check values). */
    rv = obj_key_build(&b, cb);
    if (rv != CKR_OK)
        goto done;
    rv = add_defaults(&b, cb);
    if (rv != CKR_OK)
        goto done;
    /* Token-assigned attributes (2.40 section 4.7-4.9): CKA_KEY_GEN_MECHANISM
     * is valid only when CKA_LOCAL is TRUE. A derived key was always
     * sensitive (never extractable) only if its base key was and it is. */
    local = origin->gen_mech != CK_UNAVAILABLE_INFORMATION ? CK_TRUE : CK_FALSE;
    rv = ob_put_bool(&b, CKA_LOCAL, local);
    if (rv == CKR_OK)
        rv = ob_put_ulong(&b, CKA_KEY_GEN_MECHANISM, origin->gen_mech);
    if (rv == CKR_OK && (cb & (OC_PRV | OC_SEC))) {
        sens = ob_bool(&b, CKA_SENSITIVE, CK_TRUE);
        extr = ob_bool(&b, CKA_EXTRACTABLE, CK_FALSE);
        rv =
            ob_put_bool(&b, CKA_ALWAYS_SENSITIVE, sens && (local || origin->base_always_sensitive));
        if (rv == CKR_OK)
            rv = ob_put_bool(&b, CKA_NEVER_EXTRACTABLE,
                             !extr && (local || origin->base_never_extractable));
    }
    if (rv == CKR_OK)
        rv = ob_finish(&b, wants_secure(cls, ob_bool(&b, CKA_PRIVATE, CK_FALSE)), out);
done:
    ob_clear(&b);
    return rv;
}

/* ---- C_SetAttributeValue / C_CopyObject --------------------------------- */

/*
 * SRC with template T applied. COPY selects C_CopyObject's rules (CKA_TOKEN,
 * CKA_PRIVATE, CKA_MODIFIABLE, CKA_DESTROYABLE may change too). Either the
 * whole template applies or nothing: the result is a new set.
 */
static CK_RV
apply(const mod_attrs *src, const CK_ATTRIBUTE *t, CK_ULONG n, const obj_policy *p, int copy,
      mod_attrs **out)
{
    obj_build g, r;
    unsigned cb = attrs_class_bit(src);
    size_t i;
    CK_RV rv;

    ob_init(&g);
    ob_init(&r);
    rv = tmpl_collect(t, n, &g);
    if (rv != CKR_OK)
        goto done;
    for (i = 0; i < g.n; i++) {
        const obj_bval *nv = &g.a[i];
        const struct obj_attr_info *ai = attr_info(nv->type);
        CK_BBOOL cur = obj_bool(src, nv->type, CK_FALSE), want;
        int ok;

        /* The object has no such attribute (as C_GetAttributeValue would
         * say). */
        if (!(ai->classes & cb)) {
            rv = CKR_ATTRIBUTE_TYPE_INVALID;
            goto done;
        }
        want = ai->kind == K_BOOL ? nv->v[0] : CK_FALSE;
        if (copy && (ai->flags & F_COPY))
            ok = 1;
        else if (copy && cb == OC_DATA &&
                 (nv->type == CKA_VALUE || nv->type == CKA_APPLICATION ||
                  nv->type == CKA_OBJECT_ID))
            /* A data object's copy may carry a new value, application and
             * object id; the original is unchanged (docs/objects.md). */
            ok = 1;
        else if (ai->flags & F_SO) /* CKA_TRUSTED: the SO, or no change */
            ok = (p != NULL && p->so) || (want == cur && !want);
        else if (ai->flags & F_UP)
            ok = want || want == cur;
        else if (ai->flags & F_DOWN)
            ok = !want || want == cur;
        else if ((cb & OC_SEC) && (nv->type == CKA_ENCRYPT || nv->type == CKA_DECRYPT))
            /* Wrap policy (docs/threat-model.md): a secret key's
             * encryption roles are fixed at creation, so a key that wraps
             * or unwraps (both FALSE) never did and never will encrypt or
             * decrypt. */
            ok = want == cur;
        else if (ai->flags & F_MOD)
            /* A certificate's subject is its CKA_VALUE's. */
            ok = !(nv->type == CKA_SUBJECT && cb == OC_CERT);
        else
            ok = 0;
        if (!ok) {
            rv = CKR_ATTRIBUTE_READ_ONLY;
            goto done;
        }
    }
    for (i = 0; i < src->n; i++) {
        rv = ob_put_ref(&r, src->a[i].type, src->a[i].value, src->a[i].len);
        if (rv != CKR_OK)
            goto done;
    }
    for (i = 0; i < g.n; i++) {
        rv = ob_put_ref(&r, g.a[i].type, g.a[i].v, g.a[i].len);
        if (rv != CKR_OK)
            goto done;
    }
    if ((cb & (OC_PRV | OC_SEC)) && !ob_bool(&r, CKA_PRIVATE, CK_TRUE) &&
        ob_bool(&r, CKA_TOKEN, CK_FALSE)) {
        rv = CKR_TEMPLATE_INCONSISTENT; /* as in obj_from_template */
        goto done;
    }
    rv = ob_finish(&r,
                   wants_secure(ob_ulong(&r, CKA_CLASS, CK_UNAVAILABLE_INFORMATION),
                                ob_bool(&r, CKA_PRIVATE, CK_FALSE)),
                   out);
done:
    ob_clear(&r); /* borrows only from SRC and G */
    ob_clear(&g);
    return rv;
}

CK_RV
obj_set(const mod_attrs *cur, const CK_ATTRIBUTE *t, CK_ULONG n, const obj_policy *p,
        mod_attrs **out)
{
    if (cur == NULL || out == NULL)
        return CKR_ARGUMENTS_BAD;
    *out = NULL;
    if (!obj_bool(cur, CKA_MODIFIABLE, CK_TRUE))
        return CKR_ACTION_PROHIBITED;
    return apply(cur, t, n, p, 0, out);
}

CK_RV
obj_copy(const mod_attrs *src, const CK_ATTRIBUTE *t, CK_ULONG n, const obj_policy *p,
         mod_attrs **out)
{
    if (src == NULL || out == NULL)
        return CKR_ARGUMENTS_BAD;
    *out = NULL;
    if (!obj_bool(src, CKA_COPYABLE, CK_TRUE))
        return CKR_ACTION_PROHIBITED;
    return apply(src, t, n, p, 1, out);
}

/* ---- C_GetAttributeValue, matching, size -------------------------------- */

/*
 * PKCS#11 2.40 section 5.7 (3.0 section 5.7.5), C_GetAttributeValue: for each
 * triple, (1) sensitive or unextractable -> ulValueLen = CK_UNAVAILABLE_
 * INFORMATION; (2) no such attribute -> same; (3) pValue NULL -> the length;
 * (4) buffer large enough -> copy and length; (5) otherwise
 * CK_UNAVAILABLE_INFORMATION. Every triple is processed; the first problem met
 * decides the return code ("any of them" is allowed).
 */
CK_RV
obj_get(const mod_attrs *o, CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_RV rv = CKR_OK;
    CK_ULONG i;

    if (o == NULL || (t == NULL && n > 0))
        return CKR_ARGUMENTS_BAD;
    for (i = 0; i < n; i++) {
        const ks_attr *a = obj_find(o, t[i].type);
        const struct obj_attr_info *ai = attr_info(t[i].type);
        CK_RV r = CKR_OK;

        if (ai != NULL && ai->kind == K_ARRAY && (ai->classes & attrs_class_bit(o))) {
            r = tmpl_array_get(a, &t[i]); /* absent: the empty array */
        } else if (a == NULL) {
            t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            r = CKR_ATTRIBUTE_TYPE_INVALID;
        } else if (attr_hidden(o, t[i].type)) {
            t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            r = CKR_ATTRIBUTE_SENSITIVE;
        } else if (t[i].pValue == NULL) {
            t[i].ulValueLen = (CK_ULONG)a->len;
        } else if (t[i].ulValueLen < a->len) {
            t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            r = CKR_BUFFER_TOO_SMALL;
        } else {
            if (a->len > 0)
                memcpy(t[i].pValue, a->value, a->len);
            t[i].ulValueLen = (CK_ULONG)a->len;
        }
        if (rv == CKR_OK)
            rv = r;
    }
    return rv;
}

/*
 * Matching compares bytes exactly. A hidden attribute never matches: a
 * search template naming CKA_VALUE of a sensitive key must not become an
 * oracle for the key.
 */
int
obj_match(const mod_attrs *o, const CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_ULONG i;

    if (o == NULL || (t == NULL && n > 0))
        return 0;
    for (i = 0; i < n; i++) {
        const ks_attr *a = obj_find(o, t[i].type);
        const struct obj_attr_info *ai = attr_info(t[i].type);

        if (ai != NULL && ai->kind == K_ARRAY) {
            if (!(ai->classes & attrs_class_bit(o)) ||
                !tmpl_array_eq(a, t[i].pValue, t[i].ulValueLen))
                return 0;
            continue;
        }
        if (a == NULL || attr_hidden(o, t[i].type) || a->len != t[i].ulValueLen)
            return 0;
        if (a->len > 0 && (t[i].pValue == NULL || memcmp(a->value, t[i].pValue, a->len) != 0))
            return 0;
    }
    return 1;
}

CK_ULONG
obj_size(const mod_attrs *o)
{
    CK_ULONG sz = 0;
    size_t i;

    if (o == NULL)
        return 0;
    /* What the keystore serialises: type, length and value per attribute. */
    for (i = 0; i < o->n; i++)
        sz += (CK_ULONG)(o->a[i].len + 2 * sizeof(uint64_t));
    return sz;
}

/* ---- Other constructors ------------------------------------------------- */

/* KO's types are sorted and unique, its values present: -1 if not. */
static int
ks_check(const ks_object *ko)
{
    for (size_t i = 0; i < ko->nattrs; i++)
        if ((i > 0 && ko->attrs[i].type <= ko->attrs[i - 1].type) ||
            (ko->attrs[i].len > 0 && ko->attrs[i].value == NULL))
            return -1;
    return 0;
}

/* KO's set belongs in locked memory. */
static int
ks_secure(const ks_object *ko)
{
    mod_attrs tmp;

    /* Class and privacy of the stored set, looked up through a view of the
     * keystore's array. */
    tmp.n = ko->nattrs;
    tmp.a = (ks_attr *)ko->attrs;
    tmp.secure = 0;
    tmp.placed = 0;
    return ko->is_private || wants_secure(obj_ulong(&tmp, CKA_CLASS, CK_UNAVAILABLE_INFORMATION),
                                          obj_bool(&tmp, CKA_PRIVATE, CK_FALSE));
}

/* Copy KO's attributes into BLOCK (block_size bytes). */
static ks_attr *
ks_copy(const ks_object *ko, unsigned char *block)
{
    ks_attr *arr = (ks_attr *)(void *)block;
    unsigned char *p = block + ko->nattrs * sizeof(ks_attr);

    for (size_t i = 0; i < ko->nattrs; i++) {
        arr[i].type = ko->attrs[i].type;
        arr[i].len = ko->attrs[i].len;
        arr[i].value = p;
        if (ko->attrs[i].len > 0)
            memcpy(p, ko->attrs[i].value, ko->attrs[i].len);
        p += ko->attrs[i].len;
    }
    return arr;
}

#define PLACED_HEAD ((sizeof(mod_attrs) + 15) & ~(size_t)15)

size_t
obj_from_ks_len(const ks_object *ko)
{
    if (ko == NULL || (ko->nattrs > 0 && ko->attrs == NULL) || ks_secure(ko))
        return 0;
    return PLACED_HEAD + block_size(ko->attrs, ko->nattrs);
}

CK_RV
obj_from_ks_in(const ks_object *ko, void *mem, mod_attrs **out)
{
    mod_attrs *o = mem;

    if (ko == NULL || mem == NULL || out == NULL || (ko->nattrs > 0 && ko->attrs == NULL))
        return CKR_ARGUMENTS_BAD;
    *out = NULL;
    if (ks_check(ko) != 0)
        return CKR_GENERAL_ERROR;
    o->n = ko->nattrs;
    o->secure = 0;
    o->placed = 1;
    o->a = ks_copy(ko, (unsigned char *)mem + PLACED_HEAD);
    *out = o;
    return CKR_OK;
}

CK_RV
obj_from_ks(const ks_object *ko, mod_attrs **out)
{
    unsigned char *block = NULL;
    size_t total;
    mod_attrs *o;
    int secure;
    CK_RV rv;

    if (ko == NULL || out == NULL || (ko->nattrs > 0 && ko->attrs == NULL))
        return CKR_ARGUMENTS_BAD;
    *out = NULL;
    /* The keystore hands out sorted, unique types: copied as they are into
     * one block (this runs for every object when a token is loaded). */
    if (ks_check(ko) != 0)
        return CKR_GENERAL_ERROR;
    secure = ks_secure(ko);
    total = block_size(ko->attrs, ko->nattrs);
    rv = attrs_alloc(total, secure, &o, &block);
    if (rv != CKR_OK)
        return rv;
    o->n = ko->nattrs;
    o->a = block != NULL ? ks_copy(ko, block) : NULL;
    *out = o;
    return CKR_OK;
}

CK_RV
obj_dup(const mod_attrs *src, mod_attrs **out)
{
    obj_build b;
    size_t i;
    CK_RV rv = CKR_OK;

    if (src == NULL || out == NULL)
        return CKR_ARGUMENTS_BAD;
    *out = NULL;
    ob_init(&b);
    for (i = 0; i < src->n && rv == CKR_OK; i++)
        rv = ob_put_ref(&b, src->a[i].type, src->a[i].value, src->a[i].len);
    if (rv == CKR_OK)
        rv = ob_finish(&b, src->secure, out);
    ob_clear(&b);
    return rv;
}

CK_RV
obj_profile(mod_attrs **out)
{
    obj_build b;
    CK_RV rv;

    if (out == NULL)
        return CKR_ARGUMENTS_BAD;
    *out = NULL;
    ob_init(&b);
    rv = ob_put_ulong(&b, CKA_CLASS, CKO_PROFILE);
    if (rv == CKR_OK)
        rv = ob_put_ulong(&b, CKA_PROFILE_ID, CKP_PUBLIC_CERTIFICATES_TOKEN);
    if (rv == CKR_OK)
        rv = ob_put_bool(&b, CKA_TOKEN, CK_TRUE);
    if (rv == CKR_OK)
        rv = ob_put_bool(&b, CKA_PRIVATE, CK_FALSE);
    if (rv == CKR_OK)
        rv = ob_put_bool(&b, CKA_MODIFIABLE, CK_FALSE);
    if (rv == CKR_OK)
        rv = ob_put_bool(&b, CKA_DESTROYABLE, CK_FALSE);
    /* Not in the header's list, but a copy of the token's profile object
     * would claim a profile for a session object. */
    if (rv == CKR_OK)
        rv = ob_put_bool(&b, CKA_COPYABLE, CK_FALSE);
    if (rv == CKR_OK)
        rv = ob_put_ref(&b, CKA_LABEL, "", 0);
    if (rv == CKR_OK)
        rv = ob_finish(&b, 0, out);
    ob_clear(&b);
    return rv;
}
