/*
 * seal.c — the keystore's cryptography: secure memory, Argon2id, the TMK
 * wrap, key derivation, attribute serialisation, record AEAD data and MACs.
 * Byte layouts are documented in docs/keystore-format.md; change both.
 */
#include <stdlib.h>
#include <string.h>

#include "ks_int.h"

/* Domain strings (with their NUL) start every AD and MAC input, so that a
 * value authenticated for one purpose never verifies for another. */
static const char dom_tmk[] = "evertoken tmk v1";
static const char dom_obj[] = "evertoken object v1";
static const char dom_meta[] = "evertoken meta v1";
static const char dom_set[] = "evertoken setting v1";

_Static_assert(sizeof(dom_obj) == 20, "KS_OBJ_AD_LEN assumes a 20-byte object domain");

/* ---- secure memory ------------------------------------------------------ */

void *
ks_secure_alloc(size_t n)
{
    /* Guarded, mlock'ed, excluded from core dumps. */
    return sodium_malloc(n);
}

void
ks_secure_free(void *p)
{
    /* sodium_free wipes the whole region before unmapping it. */
    if (p != NULL)
        sodium_free(p);
}

void
ks_keys_free(struct ks_keys *k)
{
    if (k != NULL) {
        sodium_memzero(k, sizeof(*k));
        ks_secure_free(k);
    }
}

ks_rv
ks_scratch_reserve_inlock(ks_token *tok, size_t n)
{
    unsigned char *p;
    size_t cap;

    if (n <= tok->scratch_cap && tok->scratch != NULL)
        return KS_OK;
    cap = n < 4096 ? 4096 : n + n / 2;
    p = ks_secure_alloc(cap);
    if (p == NULL)
        return KS_ERR(tok, KS_E_NOMEM, "cannot allocate %zu bytes of locked memory", cap);
    ks_secure_free(tok->scratch);
    tok->scratch = p;
    tok->scratch_cap = cap;
    return KS_OK;
}

/* Record key and MAC key from the TMK (already in K->tmk). */
ks_rv
ks_keys_derive(struct ks_keys *k)
{
    if (crypto_kdf_derive_from_key(k->rec, sizeof(k->rec), KS_SUBKEY_REC, KS_KDF_CTX, k->tmk) !=
            0 ||
        crypto_kdf_derive_from_key(k->mac, sizeof(k->mac), KS_SUBKEY_MAC, KS_KDF_CTX, k->tmk) !=
            0 ||
        crypto_kdf_derive_from_key(k->lk, sizeof(k->lk), KS_SUBKEY_LK, KS_KDF_CTX, k->tmk) != 0)
        return KS_E_CRYPTO;
    return KS_OK;
}

/* ---- PIN -> wrap key ---------------------------------------------------- */

ks_rv
ks_kdf_check(const ks_kdf_params *in, ks_kdf_params *out)
{
    ks_kdf_params p = {crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE};

    if (in != NULL) {
        if (in->opslimit != 0)
            p.opslimit = in->opslimit;
        if (in->memlimit != 0)
            p.memlimit = in->memlimit;
    }
    if (p.opslimit < crypto_pwhash_OPSLIMIT_MIN || p.opslimit > crypto_pwhash_OPSLIMIT_MAX ||
        p.memlimit < crypto_pwhash_MEMLIMIT_MIN || p.memlimit > crypto_pwhash_MEMLIMIT_MAX ||
        p.memlimit > SIZE_MAX)
        return KS_E_ARGS;
    *out = p;
    return KS_OK;
}

ks_rv
ks_pwhash(unsigned char key[KS_KEY_LEN], const unsigned char *pin, size_t pin_len,
          const unsigned char salt[KS_SALT_LEN], uint64_t ops, uint64_t mem)
{
    if (crypto_pwhash(key, KS_KEY_LEN, (const char *)pin, pin_len, salt, ops, (size_t)mem,
                      crypto_pwhash_ALG_ARGON2ID13) != 0) {
        sodium_memzero(key, KS_KEY_LEN);
        return KS_E_NOMEM; /* libsodium fails here only when memory runs out */
    }
    return KS_OK;
}

/* AD of a TMK wrap: domain || token id || who. */
static void
tmk_ad(unsigned char ad[sizeof(dom_tmk) + KS_TOKEN_ID_LEN + 1],
       const unsigned char token_id[KS_TOKEN_ID_LEN], ks_who who)
{
    memcpy(ad, dom_tmk, sizeof(dom_tmk));
    memcpy(ad + sizeof(dom_tmk), token_id, KS_TOKEN_ID_LEN);
    ad[sizeof(dom_tmk) + KS_TOKEN_ID_LEN] = (unsigned char)who;
}

/* Wrap TMK under WRAP_KEY into P (fresh random nonce; P's salt and cost
 * parameters are the caller's). */
void
ks_wrap_tmk(struct ks_pin_row *p, const unsigned char wrap_key[KS_KEY_LEN],
            const unsigned char tmk[KS_KEY_LEN], const unsigned char token_id[KS_TOKEN_ID_LEN],
            ks_who who)
{
    unsigned char ad[sizeof(dom_tmk) + KS_TOKEN_ID_LEN + 1];

    tmk_ad(ad, token_id, who);
    randombytes_buf(p->nonce, sizeof(p->nonce));
    crypto_aead_xchacha20poly1305_ietf_encrypt(p->wrapped, NULL, tmk, KS_KEY_LEN, ad, sizeof(ad),
                                               NULL, p->nonce, wrap_key);
    p->initialized = 1;
}

/* 0 and TMK filled on success; -1 (TMK wiped) when the key or record is wrong. */
int
ks_unwrap_tmk(unsigned char tmk[KS_KEY_LEN], const struct ks_pin_row *p,
              const unsigned char wrap_key[KS_KEY_LEN],
              const unsigned char token_id[KS_TOKEN_ID_LEN], ks_who who)
{
    unsigned char ad[sizeof(dom_tmk) + KS_TOKEN_ID_LEN + 1];

    tmk_ad(ad, token_id, who);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(tmk, NULL, NULL, p->wrapped, sizeof(p->wrapped),
                                                   ad, sizeof(ad), p->nonce, wrap_key) != 0) {
        sodium_memzero(tmk, KS_KEY_LEN);
        return -1;
    }
    return 0;
}

/* ---- MACs (keyed BLAKE2b-256) -------------------------------------------- */

static void
put_u32(unsigned char *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static void
put_u64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t
get_u32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t
get_u64(const unsigned char *b)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

static void
mac_lenval(crypto_generichash_state *h, const void *v, size_t n)
{
    unsigned char l[4];

    put_u32(l, (uint32_t)n);
    crypto_generichash_update(h, l, sizeof(l));
    crypto_generichash_update(h, v, n);
}

void
ks_meta_mac(unsigned char out[KS_MAC_LEN], const unsigned char key[KS_KEY_LEN],
            const struct ks_meta *m)
{
    crypto_generichash_state h;
    unsigned char b[8];

    crypto_generichash_init(&h, key, KS_KEY_LEN, KS_MAC_LEN);
    crypto_generichash_update(&h, (const unsigned char *)dom_meta, sizeof(dom_meta));
    crypto_generichash_update(&h, m->token_id, KS_TOKEN_ID_LEN);
    mac_lenval(&h, m->serial, strlen(m->serial));
    mac_lenval(&h, m->label, strlen(m->label));
    put_u64(b, m->kdf_ops);
    crypto_generichash_update(&h, b, 8);
    put_u64(b, m->kdf_mem);
    crypto_generichash_update(&h, b, 8);
    put_u32(b, m->max_attempts);
    crypto_generichash_update(&h, b, 4);
    crypto_generichash_final(&h, out, KS_MAC_LEN);
    sodium_memzero(&h, sizeof(h));
}

void
ks_setting_mac(unsigned char out[KS_MAC_LEN], const unsigned char key[KS_KEY_LEN],
               const unsigned char token_id[KS_TOKEN_ID_LEN], const char *k, const char *v)
{
    crypto_generichash_state h;

    crypto_generichash_init(&h, key, KS_KEY_LEN, KS_MAC_LEN);
    crypto_generichash_update(&h, (const unsigned char *)dom_set, sizeof(dom_set));
    crypto_generichash_update(&h, token_id, KS_TOKEN_ID_LEN);
    mac_lenval(&h, k, strlen(k));
    mac_lenval(&h, v, strlen(v));
    crypto_generichash_final(&h, out, KS_MAC_LEN);
    sodium_memzero(&h, sizeof(h));
}

void
ks_object_ad(unsigned char ad[KS_OBJ_AD_LEN], const unsigned char token_id[KS_TOKEN_ID_LEN],
             int64_t id, uint32_t version)
{
    memcpy(ad, dom_obj, sizeof(dom_obj));
    memcpy(ad + sizeof(dom_obj), token_id, KS_TOKEN_ID_LEN);
    put_u64(ad + sizeof(dom_obj) + KS_TOKEN_ID_LEN, (uint64_t)id);
    put_u32(ad + sizeof(dom_obj) + KS_TOKEN_ID_LEN + 8, version);
}

void
ks_object_mac(unsigned char out[KS_MAC_LEN], const unsigned char key[KS_KEY_LEN],
              const unsigned char token_id[KS_TOKEN_ID_LEN], int64_t id, uint32_t version,
              const unsigned char *data, size_t len)
{
    crypto_generichash_state h;
    unsigned char ad[KS_OBJ_AD_LEN];

    /* Same prefix as a private object's AD, then the serialised attributes. */
    ks_object_ad(ad, token_id, id, version);
    crypto_generichash_init(&h, key, KS_KEY_LEN, KS_MAC_LEN);
    crypto_generichash_update(&h, ad, sizeof(ad));
    crypto_generichash_update(&h, data, len);
    crypto_generichash_final(&h, out, KS_MAC_LEN);
    sodium_memzero(&h, sizeof(h));
}

/* ---- attribute serialisation ---------------------------------------------
 * 0x01, then per attribute in strictly ascending type order:
 * u64 LE type, u32 LE length, value bytes. */

#define SER_FORMAT 0x01
#define SER_HDR    12

ks_rv
ks_attrs_check(const ks_attr *attrs, size_t n, size_t *ser_len)
{
    size_t i, j, total = 1;

    if (n > 0 && attrs == NULL)
        return KS_E_ARGS;
    if (n > 100000)
        return KS_E_ARGS;
    for (i = 0; i < n; i++) {
        if (attrs[i].len > 0 && attrs[i].value == NULL)
            return KS_E_ARGS;
        if (attrs[i].len > KS_ATTR_LEN_MAX)
            return KS_E_ARGS;
        for (j = 0; j < i; j++)
            if (attrs[j].type == attrs[i].type)
                return KS_E_ARGS;
        total += SER_HDR + attrs[i].len;
    }
    if (total > INT32_MAX) /* SQLite blob limit */
        return KS_E_ARGS;
    *ser_len = total;
    return KS_OK;
}

static int
attr_cmp(const void *a, const void *b)
{
    const ks_attr *x = *(const ks_attr *const *)a, *y = *(const ks_attr *const *)b;

    return x->type < y->type ? -1 : x->type > y->type;
}

/* OUT_LEN is what ks_attrs_check said. Attributes are written sorted. */
void
ks_attrs_serialise(const ks_attr *attrs, size_t n, unsigned char *out, size_t out_len)
{
    const ks_attr *small[64];
    const ks_attr **order = n <= 64 ? small : malloc(n * sizeof(*order));
    size_t i, off = 1;

    out[0] = SER_FORMAT;
    if (order == NULL) {
        /* Allocation failed: fall back to a quadratic selection of the
         * next-larger type, which needs no memory. */
        uint64_t last = 0;
        int first = 1;

        for (i = 0; i < n; i++) {
            const ks_attr *best = NULL;

            for (size_t j = 0; j < n; j++)
                if ((first || attrs[j].type > last) && (best == NULL || attrs[j].type < best->type))
                    best = &attrs[j];
            put_u64(out + off, best->type);
            put_u32(out + off + 8, (uint32_t)best->len);
            if (best->len > 0)
                memcpy(out + off + SER_HDR, best->value, best->len);
            off += SER_HDR + best->len;
            last = best->type;
            first = 0;
        }
        return;
    }
    for (i = 0; i < n; i++)
        order[i] = &attrs[i];
    qsort(order, n, sizeof(*order), attr_cmp);
    for (i = 0; i < n; i++) {
        put_u64(out + off, order[i]->type);
        put_u32(out + off + 8, (uint32_t)order[i]->len);
        if (order[i]->len > 0)
            memcpy(out + off + SER_HDR, order[i]->value, order[i]->len);
        off += SER_HDR + order[i]->len;
    }
    (void)out_len;
    if (order != small)
        free(order);
}

int
ks_attrs_parse_inlock(ks_token *tok, const unsigned char *buf, size_t len, size_t *nattrs)
{
    size_t off = 1, n = 0;

    if (len < 1 || buf[0] != SER_FORMAT)
        return -1;
    while (off < len) {
        uint64_t type;
        uint32_t alen;

        if (len - off < SER_HDR)
            return -1;
        type = get_u64(buf + off);
        alen = get_u32(buf + off + 8);
        off += SER_HDR;
        if (alen > len - off)
            return -1;
        if (n > 0 && tok->attrs[n - 1].type >= type)
            return -1; /* not sorted, or a duplicate */
        if (n == tok->attrs_cap) {
            size_t cap = tok->attrs_cap ? tok->attrs_cap * 2 : 32;
            ks_attr *a = realloc(tok->attrs, cap * sizeof(*a));

            if (a == NULL)
                return -2;
            tok->attrs = a;
            tok->attrs_cap = cap;
        }
        tok->attrs[n].type = type;
        tok->attrs[n].len = alen;
        tok->attrs[n].value = (unsigned char *)(uintptr_t)(buf + off);
        n++;
        off += alen;
    }
    *nattrs = n;
    return 0;
}

int
ks_ser_find(const unsigned char *buf, size_t len, uint64_t type, const unsigned char **v,
            size_t *vlen)
{
    size_t off = 1;

    *v = NULL;
    *vlen = 0;
    if (len < 1 || buf[0] != SER_FORMAT)
        return -1;
    while (off < len) {
        uint64_t t;
        uint32_t alen;

        if (len - off < SER_HDR)
            return -1;
        t = get_u64(buf + off);
        alen = get_u32(buf + off + 8);
        off += SER_HDR;
        if (alen > len - off)
            return -1;
        if (t == type) {
            *v = buf + off;
            *vlen = alen;
            return 1;
        }
        if (t > type)
            return 0; /* sorted by type */
        off += alen;
    }
    return 0;
}
