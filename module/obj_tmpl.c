/*
 * obj_tmpl.c — attributes whose value is an attribute array (PKCS#11 3.0
 * CKF_ARRAY_ATTRIBUTE): CKA_WRAP_TEMPLATE, CKA_UNWRAP_TEMPLATE and
 * CKA_DERIVE_TEMPLATE.
 *
 * A caller hands such a value as an array of CK_ATTRIBUTE; the object set
 * keeps it as bytes in the keystore's own attribute serialisation
 * (docs/keystore-format.md, "Attribute serialisation", without the format
 * byte): per attribute u64 type, u32 length (both little-endian) and the
 * value, in strictly ascending type order. Booleans are normalised, so that
 * equal templates are equal bytes. Only attributes of the table
 * (obj_attr.c) that are not themselves arrays and not key material
 * (F_SECRET: a template is public) may appear; anything else makes the
 * whole value CKR_ATTRIBUTE_VALUE_INVALID.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "obj_int.h"

#define TMPL_HDR 12 /* u64 type + u32 length */

static void
put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t
get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;

    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

int
tmpl_array_next(const unsigned char *v, size_t len, size_t *off, CK_ATTRIBUTE *a)
{
    uint64_t type, vlen;

    if (*off >= len || len - *off < TMPL_HDR)
        return 0;
    type = get_le(v + *off, 8);
    vlen = get_le(v + *off + 8, 4);
    if (vlen > len - *off - TMPL_HDR || type > (uint64_t)(CK_ULONG)-1)
        return 0;
    a->type = (CK_ATTRIBUTE_TYPE)type;
    a->pValue = vlen > 0 ? (void *)(uintptr_t)(v + *off + TMPL_HDR) : NULL;
    a->ulValueLen = (CK_ULONG)vlen;
    *off += TMPL_HDR + (size_t)vlen;
    return 1;
}

size_t
tmpl_array_count(const unsigned char *v, size_t len)
{
    size_t off = 0, n = 0;
    CK_ATTRIBUTE a;

    while (tmpl_array_next(v, len, &off, &a))
        n++;
    return off == len ? n : 0;
}

static int
attr_type_cmp(const void *x, const void *y)
{
    const CK_ATTRIBUTE *a = x, *b = y;

    return a->type < b->type ? -1 : a->type > b->type;
}

static int
same_value(const struct obj_attr_info *ai, const CK_ATTRIBUTE *a, const CK_ATTRIBUTE *b)
{
    if (ai->kind == K_BOOL)
        return (((const unsigned char *)a->pValue)[0] != 0) ==
               (((const unsigned char *)b->pValue)[0] != 0);
    return a->ulValueLen == b->ulValueLen &&
           (a->ulValueLen == 0 || memcmp(a->pValue, b->pValue, a->ulValueLen) == 0);
}

/* Check the caller's array T (already copied, sorted by type) and drop
 * equal duplicates; *N the count left. */
static CK_RV
tmpl_array_check(CK_ATTRIBUTE *t, CK_ULONG *n)
{
    CK_ULONG i, k = 0;

    for (i = 0; i < *n; i++) {
        const struct obj_attr_info *ai = attr_info(t[i].type);

        if (ai == NULL || ai->kind == K_ARRAY || (ai->flags & F_SECRET) ||
            (t[i].pValue == NULL && t[i].ulValueLen > 0) || t[i].ulValueLen > OBJ_VALUE_MAX ||
            attr_value_check(ai, t[i].pValue, t[i].ulValueLen) != CKR_OK)
            return CKR_ATTRIBUTE_VALUE_INVALID;
        if (k > 0 && t[k - 1].type == t[i].type) {
            if (!same_value(ai, &t[k - 1], &t[i]))
                return CKR_ATTRIBUTE_VALUE_INVALID; /* one template, two values */
            continue;
        }
        t[k++] = t[i];
    }
    *n = k;
    return CKR_OK;
}

CK_RV
tmpl_array_encode(const void *pv, CK_ULONG len, unsigned char **out, size_t *outlen)
{
    CK_ULONG n = len / sizeof(CK_ATTRIBUTE), i;
    CK_ATTRIBUTE *t = NULL;
    unsigned char *p;
    size_t total = 0;
    CK_RV rv;

    *out = NULL;
    *outlen = 0;
    if (len % sizeof(CK_ATTRIBUTE) != 0 || n > TMPL_ARRAY_MAX || (pv == NULL && len > 0))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if (n > 0) {
        t = malloc(n * sizeof(*t));
        if (t == NULL)
            return CKR_HOST_MEMORY;
        memcpy(t, pv, n * sizeof(*t));
        qsort(t, n, sizeof(*t), attr_type_cmp);
    }
    rv = tmpl_array_check(t, &n);
    if (rv != CKR_OK)
        goto done;
    for (i = 0; i < n; i++)
        total += TMPL_HDR + t[i].ulValueLen;
    if (total > TMPL_ARRAY_BYTES) {
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
        goto done;
    }
    p = malloc(total ? total : 1);
    if (p == NULL) {
        rv = CKR_HOST_MEMORY;
        goto done;
    }
    *out = p;
    *outlen = total;
    for (i = 0; i < n; i++) {
        const struct obj_attr_info *ai = attr_info(t[i].type);
        put_le(p, t[i].type, 8);
        put_le(p + 8, t[i].ulValueLen, 4);
        if (ai->kind == K_BOOL)
            p[TMPL_HDR] = ((const unsigned char *)t[i].pValue)[0] ? CK_TRUE : CK_FALSE;
        else if (t[i].ulValueLen > 0)
            memcpy(p + TMPL_HDR, t[i].pValue, t[i].ulValueLen);
        p += TMPL_HDR + t[i].ulValueLen;
    }
done:
    free(t);
    return rv;
}

/*
 * C_GetAttributeValue of an array attribute A (3.0 section 5.7.5 item 5):
 * pValue NULL asks for the room of the array (count * sizeof(CK_ATTRIBUTE));
 * with room, each element's type is set and its value handled like a
 * top-level attribute (pValue NULL: the length; too small:
 * CK_UNAVAILABLE_INFORMATION and CKR_BUFFER_TOO_SMALL).
 */
CK_RV
tmpl_array_get(const ks_attr *a, CK_ATTRIBUTE *t)
{
    const unsigned char *v = a != NULL ? a->value : NULL;
    size_t len = a != NULL ? a->len : 0, off = 0;
    CK_ULONG cnt = (CK_ULONG)tmpl_array_count(v, len), i;
    CK_ATTRIBUTE e, *dst = t->pValue;
    CK_RV rv = CKR_OK;

    if (t->pValue == NULL) {
        t->ulValueLen = cnt * sizeof(CK_ATTRIBUTE);
        return CKR_OK;
    }
    if (t->ulValueLen < cnt * sizeof(CK_ATTRIBUTE)) {
        t->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_BUFFER_TOO_SMALL;
    }
    for (i = 0; i < cnt && tmpl_array_next(v, len, &off, &e); i++) {
        dst[i].type = e.type;
        if (dst[i].pValue == NULL) {
            dst[i].ulValueLen = e.ulValueLen;
        } else if (dst[i].ulValueLen < e.ulValueLen) {
            dst[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            rv = CKR_BUFFER_TOO_SMALL;
        } else {
            if (e.ulValueLen > 0)
                memcpy(dst[i].pValue, e.pValue, e.ulValueLen);
            dst[i].ulValueLen = e.ulValueLen;
        }
    }
    t->ulValueLen = cnt * sizeof(CK_ATTRIBUTE);
    return rv;
}

int
tmpl_array_eq(const ks_attr *a, const void *pv, CK_ULONG len)
{
    unsigned char *enc = NULL;
    size_t elen = 0;
    int eq;

    if (tmpl_array_encode(pv, len, &enc, &elen) != CKR_OK)
        return 0;
    eq = (a == NULL ? 0 : a->len) == elen && (elen == 0 || memcmp(a->value, enc, elen) == 0);
    free(enc);
    return eq;
}

int
obj_tmpl_match(const mod_attrs *o, const ks_attr *tmpl)
{
    size_t off = 0;
    CK_ATTRIBUTE e;

    if (tmpl == NULL)
        return 1;
    if (tmpl_array_count(tmpl->value, tmpl->len) == 0 && tmpl->len > 0)
        return 0; /* does not parse: matches nothing */
    while (tmpl_array_next(tmpl->value, tmpl->len, &off, &e))
        if (!obj_match(o, &e, 1))
            return 0;
    return 1;
}

CK_RV
obj_tmpl_merge(const CK_ATTRIBUTE *t, CK_ULONG n, const unsigned char *tv, size_t tlen,
               CK_ATTRIBUTE **out, CK_ULONG *nout)
{
    size_t cnt = tmpl_array_count(tv, tlen), off = 0;
    CK_ATTRIBUTE *m, e;
    CK_ULONG k = n, i;

    *out = NULL;
    *nout = 0;
    if (cnt == 0 && tlen > 0)
        return CKR_GENERAL_ERROR; /* a stored template that does not parse */
    m = malloc((n + cnt + 1) * sizeof(*m));
    if (m == NULL)
        return CKR_HOST_MEMORY;
    if (n > 0)
        memcpy(m, t, n * sizeof(*m));
    while (tmpl_array_next(tv, tlen, &off, &e)) {
        const struct obj_attr_info *ai = attr_info(e.type);
        int dup = 0;

        for (i = 0; i < n; i++) {
            if (t[i].type != e.type)
                continue;
            /* The caller's value is checked with the rest of its template
             * later; here only whether it agrees. */
            if (ai == NULL || t[i].ulValueLen != e.ulValueLen ||
                (t[i].ulValueLen > 0 && t[i].pValue == NULL) || !same_value(ai, &t[i], &e)) {
                free(m);
                return CKR_TEMPLATE_INCONSISTENT;
            }
            dup = 1;
        }
        if (!dup)
            m[k++] = e;
    }
    *out = m;
    *nout = k;
    return CKR_OK;
}
