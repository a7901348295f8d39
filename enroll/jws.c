/*
 * jws.c — JSON Web Keys and Signatures for ACME (RFC 7515, 7517, 7518,
 * 7638), built from OpenSSL primitives and jansson.
 *
 * The private key is token-backed (libp11 or p11key.c): EVP_DigestSign
 * hashes here and the token signs (CKM_ECDSA, CKM_RSA_PKCS). ECDSA comes
 * back DER-encoded from OpenSSL; JWS wants the raw r||s of RFC 7518 section
 * 3.4, each padded to the curve's size. Base64 is OpenSSL's
 * (EVP_EncodeBlock/EVP_DecodeBlock) with the URL alphabet swapped in.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include "proto/acme.h"

char *
enr_b64url(const unsigned char *b, size_t n)
{
    char *s = malloc(4 * ((n + 2) / 3) + 1);
    int l;

    if (s == NULL || n > 0x3fffffff)
        return free(s), NULL;
    l = EVP_EncodeBlock((unsigned char *)s, b, (int)n);
    while (l > 0 && s[l - 1] == '=')
        l--;
    s[l] = '\0';
    for (char *q = s; *q; q++)
        *q = *q == '+' ? '-' : *q == '/' ? '_' : *q;
    return s;
}

int
enr_b64url_decode(const char *s, unsigned char **out, size_t *n)
{
    size_t l = strlen(s), pad = (4 - l % 4) % 4;
    char *t;
    unsigned char *o;
    int r;

    *out = NULL;
    *n = 0;
    if (l % 4 == 1 || l > (1u << 24))
        return -1;
    t = malloc(l + pad + 1);
    o = malloc((l + pad) / 4 * 3 + 1);
    if (t == NULL || o == NULL)
        goto fail;
    for (size_t i = 0; i < l; i++) {
        char c = s[i];
        if (c == '+' || c == '/' || c == '=')
            goto fail; /* base64url only, no padding inside */
        t[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    memset(t + l, '=', pad);
    t[l + pad] = '\0';
    r = EVP_DecodeBlock(o, (unsigned char *)t, (int)(l + pad));
    if (r < 0 || (size_t)r < pad)
        goto fail;
    *n = (size_t)r - pad;
    *out = o;
    free(t);
    return 0;
fail:
    free(t);
    free(o);
    return -1;
}

int
enr_b64url_decode_secret(const char *s, enr_secret *out)
{
    size_t l = strlen(s), pad = (4 - l % 4) % 4;
    char *t;
    int r;

    out->buf = NULL;
    out->len = 0;
    if (l % 4 == 1 || l > 4096)
        return -1;
    t = sodium_malloc(l + pad + 1);
    out->buf = sodium_malloc((l + pad) / 4 * 3 + 1);
    if (t == NULL || out->buf == NULL)
        goto fail;
    for (size_t i = 0; i < l; i++) {
        char c = s[i];
        if (c == '+' || c == '/' || c == '=')
            goto fail;
        t[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    memset(t + l, '=', pad);
    t[l + pad] = '\0';
    r = EVP_DecodeBlock((unsigned char *)out->buf, (unsigned char *)t, (int)(l + pad));
    if (r < 0 || (size_t)r < pad)
        goto fail;
    out->len = (size_t)r - pad;
    sodium_free(t);
    return 0;
fail:
    if (t != NULL)
        sodium_free(t);
    enr_secret_free(out);
    return -1;
}

/* A BIGNUM parameter of PUB as base64url, left-padded to PAD bytes (0:
 * minimal). */
static char *
bn_param(EVP_PKEY *pub, const char *name, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    int l;
    char *s = NULL;

    if (!EVP_PKEY_get_bn_param(pub, name, &bn))
        return NULL;
    l = pad > 0 ? pad : BN_num_bytes(bn);
    if (l > 0 && l <= (int)sizeof(buf) && BN_bn2binpad(bn, buf, l) == l)
        s = enr_b64url(buf, (size_t)l);
    BN_free(bn);
    return s;
}

/* Size in bytes of a coordinate (and of r, s) on PUB's curve; 0 if not EC. */
static int
ec_size(EVP_PKEY *pub)
{
    if (EVP_PKEY_get_base_id(pub) != EVP_PKEY_EC)
        return 0;
    return (EVP_PKEY_get_bits(pub) + 7) / 8;
}

static const char *
ec_crv(EVP_PKEY *pub)
{
    switch (EVP_PKEY_get_bits(pub)) {
    case 256:
        return "P-256";
    case 384:
        return "P-384";
    case 521:
        return "P-521";
    default:
        return NULL;
    }
}

json_t *
enr_jwk(EVP_PKEY *key)
{
    json_t *j = NULL;
    char *a = NULL, *b = NULL;
    /* A token-backed key is a legacy key with foreign methods, whose
     * parameters OpenSSL 3 does not export: read a provider copy of its
     * public part (DER round trip). */
    unsigned char *der = NULL;
    const unsigned char *q;
    int dl = i2d_PUBKEY(key, &der);
    EVP_PKEY *pub = NULL;

    q = der;
    if (dl > 0)
        pub = d2i_PUBKEY(NULL, &q, dl);
    OPENSSL_free(der);
    if (pub == NULL)
        return NULL;

    if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_EC) {
        const char *crv = ec_crv(pub);
        int sz = ec_size(pub);
        a = bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_X, sz);
        b = bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_Y, sz);
        if (crv != NULL && a != NULL && b != NULL)
            j = json_pack("{s:s, s:s, s:s, s:s}", "crv", crv, "kty", "EC", "x", a, "y", b);
    } else if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA) {
        a = bn_param(pub, OSSL_PKEY_PARAM_RSA_E, 0);
        b = bn_param(pub, OSSL_PKEY_PARAM_RSA_N, 0);
        if (a != NULL && b != NULL)
            j = json_pack("{s:s, s:s, s:s}", "e", a, "kty", "RSA", "n", b);
    }
    free(a);
    free(b);
    EVP_PKEY_free(pub);
    return j;
}

char *
enr_jwk_thumbprint(EVP_PKEY *pub)
{
    json_t *j = enr_jwk(pub);
    /* RFC 7638: the required members, sorted, no whitespace: exactly
     * jansson's compact output with sorted keys. */
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    unsigned char md[32];
    char *t = NULL;

    if (s != NULL && EVP_Digest(s, strlen(s), md, NULL, EVP_sha256(), NULL))
        t = enr_b64url(md, sizeof(md));
    free(s);
    json_decref(j);
    return t;
}

const char *
enr_jws_alg(EVP_PKEY *key)
{
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA)
        return "RS256";
    switch (ec_size(key)) {
    case 32:
        return "ES256";
    case 48:
        return "ES384";
    case 66:
        return "ES512";
    default:
        return NULL;
    }
}

static const EVP_MD *
alg_md(EVP_PKEY *key)
{
    switch (ec_size(key)) {
    case 48:
        return EVP_sha384();
    case 66:
        return EVP_sha512();
    default:
        return EVP_sha256();
    }
}

/* Sign IN with KEY (in the token); the JWS signature, base64url. */
static char *
jws_signature(EVP_PKEY *key, const char *in)
{
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    unsigned char *sig = NULL, raw[2 * 66];
    size_t sl = 0;
    char *out = NULL;
    int sz = ec_size(key);

    if (mc == NULL || EVP_DigestSignInit(mc, NULL, alg_md(key), NULL, key) != 1 ||
        EVP_DigestSign(mc, NULL, &sl, (const unsigned char *)in, strlen(in)) != 1 ||
        (sig = malloc(sl)) == NULL ||
        EVP_DigestSign(mc, sig, &sl, (const unsigned char *)in, strlen(in)) != 1) {
        enr_err("the token could not sign the ACME request");
        enr_ssl_errors();
        goto done;
    }
    if (sz > 0) {
        const unsigned char *q = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)sl);
        const BIGNUM *r, *s;
        if (es == NULL)
            goto done;
        ECDSA_SIG_get0(es, &r, &s);
        if (BN_bn2binpad(r, raw, sz) == sz && BN_bn2binpad(s, raw + sz, sz) == sz)
            out = enr_b64url(raw, 2 * (size_t)sz);
        ECDSA_SIG_free(es);
    } else {
        out = enr_b64url(sig, sl);
    }
done:
    free(sig);
    EVP_MD_CTX_free(mc);
    return out;
}

/* PROTECTED (consumed) and PAYLOAD into {protected, payload, signature},
 * SIGN() making the signature over "protected.payload". */
static json_t *
jws_build(json_t *prot, const char *payload, EVP_PKEY *key, const unsigned char *mac, size_t maclen)
{
    char *ph = json_dumps(prot, JSON_COMPACT | JSON_SORT_KEYS);
    char *p64 = ph ? enr_b64url((const unsigned char *)ph, strlen(ph)) : NULL;
    char *pl64 = enr_b64url((const unsigned char *)payload, strlen(payload));
    char *in = p64 && pl64 ? enr_aprintf("%s.%s", p64, pl64) : NULL;
    char *sig = NULL;
    json_t *j = NULL;

    json_decref(prot);
    if (in != NULL && key != NULL) {
        sig = jws_signature(key, in);
    } else if (in != NULL) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int ml = 0;
        if (HMAC(EVP_sha256(), mac, (int)maclen, (const unsigned char *)in, strlen(in), md, &ml))
            sig = enr_b64url(md, ml);
        OPENSSL_cleanse(md, sizeof(md));
    }
    if (sig != NULL)
        j = json_pack("{s:s, s:s, s:s}", "protected", p64, "payload", pl64, "signature", sig);
    free(ph);
    free(p64);
    free(pl64);
    free(in);
    free(sig);
    return j;
}

char *
enr_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
             const char *payload)
{
    const char *alg = enr_jws_alg(key);
    json_t *prot, *j;
    char *s;

    if (alg == NULL) {
        enr_err("ACME: the key has no JWS algorithm (EC P-256/P-384/P-521 or RSA)");
        return NULL;
    }
    prot = json_pack("{s:s, s:s}", "alg", alg, "url", url);
    if (prot == NULL)
        return NULL;
    if (nonce != NULL)
        json_object_set_new(prot, "nonce", json_string(nonce));
    if (kid != NULL)
        json_object_set_new(prot, "kid", json_string(kid));
    else
        json_object_set_new(prot, "jwk", enr_jwk(key));
    j = jws_build(prot, payload, key, NULL, 0);
    s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

json_t *
enr_jws_eab(EVP_PKEY *acct, const char *kid, const unsigned char *mac, size_t maclen,
            const char *url)
{
    json_t *jwk = enr_jwk(acct), *prot;
    char *pl = jwk ? json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_t *j = NULL;

    json_decref(jwk);
    if (pl == NULL)
        return NULL;
    prot = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "kid", kid, "url", url);
    if (prot != NULL)
        j = jws_build(prot, pl, NULL, mac, maclen);
    free(pl);
    return j;
}
