/*
 * objects.c — `delete` and `export-cert`.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "et_int.h"

/* Build the CKA_ID or CKA_LABEL selector of --id/--label into A (ID owns the
 * decoded bytes). */
static int
et_selector(const et_opts *o, const char *cmd, CK_ATTRIBUTE *a, unsigned char **id)
{
    size_t idlen = 0;

    *id = NULL;
    if ((o->id == NULL) == (o->label == NULL)) {
        et_err("%s: give exactly one of --id HEX or --label LABEL", cmd);
        return ET_EXIT_USAGE;
    }
    if (o->id != NULL) {
        *id = et_hex_decode(o->id, &idlen);
        if (*id == NULL) {
            et_err("%s: --id must be an even number of hex digits, not '%s'", cmd, o->id);
            return ET_EXIT_USAGE;
        }
        a->type = CKA_ID;
        a->pValue = *id;
        a->ulValueLen = (CK_ULONG)idlen;
    } else {
        a->type = CKA_LABEL;
        a->pValue = (void *)o->label;
        a->ulValueLen = (CK_ULONG)strlen(o->label);
    }
    return ET_EXIT_OK;
}

static int
et_class_matches(const char *cls, CK_ULONG c)
{
    if (cls == NULL || strcmp(cls, "all") == 0)
        return 1;
    if (strcmp(cls, "cert") == 0)
        return c == CKO_CERTIFICATE;
    if (strcmp(cls, "key") == 0)
        return c == CKO_PRIVATE_KEY || c == CKO_PUBLIC_KEY || c == CKO_SECRET_KEY;
    if (strcmp(cls, "privkey") == 0)
        return c == CKO_PRIVATE_KEY;
    if (strcmp(cls, "pubkey") == 0)
        return c == CKO_PUBLIC_KEY;
    if (strcmp(cls, "data") == 0)
        return c == CKO_DATA;
    return 0;
}

int
et_cmd_delete(et_opts *o)
{
    static const char *const classes[] = {"cert", "key", "pubkey", "privkey", "data", "all"};
    et_p11 p = {0};
    CK_SLOT_ID slot;
    CK_TOKEN_INFO ti;
    CK_SESSION_HANDLE sh = CK_INVALID_HANDLE;
    CK_ATTRIBUTE sel;
    CK_OBJECT_HANDLE *objs = NULL;
    CK_ULONG n = 0, deleted = 0;
    unsigned char *id = NULL;
    int rc, known = 0;

    if (o->argc != 0) {
        et_err("delete: unexpected argument '%s'", o->argv[0]);
        return ET_EXIT_USAGE;
    }
    if (o->cls != NULL) {
        for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
            known |= strcmp(o->cls, classes[i]) == 0;
        if (!known) {
            et_err("delete: --class must be cert, key, pubkey, privkey, data or all");
            return ET_EXIT_USAGE;
        }
    }
    rc = et_selector(o, "delete", &sel, &id);
    if (rc != ET_EXIT_OK)
        return rc;
    rc = et_p11_load(o, &p);
    if (rc != ET_EXIT_OK)
        goto done;
    rc = et_find_token(&p, o, &slot, &ti);
    if (rc != ET_EXIT_OK)
        goto done;
    /* Log in so that private objects are seen (and can be destroyed). */
    rc = et_open_session(&p, o, slot, 1, (long)CKU_USER, &sh);
    if (rc != ET_EXIT_OK)
        goto done;
    rc = et_find_objects(&p, sh, &sel, 1, &objs, &n);
    if (rc != ET_EXIT_OK)
        goto done;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_ULONG c = (CK_ULONG)-1;
        CK_RV rv;
        if (et_get_ulong(&p, sh, objs[i], CKA_CLASS, &c) != 0 || !et_class_matches(o->cls, c))
            continue;
        rv = p.f->C_DestroyObject(sh, objs[i]);
        if (rv != CKR_OK) {
            rc = et_ckr_fail("cannot delete an object (C_DestroyObject)", rv);
            goto done;
        }
        printf("deleted object %lu\n", (unsigned long)objs[i]);
        deleted++;
    }
    if (deleted == 0) {
        et_err("delete: no %s object matches", o->cls ? o->cls : "");
        rc = ET_EXIT_NOTFOUND;
        goto done;
    }
    rc = ET_EXIT_OK;
done:
    free(objs);
    free(id);
    if (p.initialized)
        et_close_session(&p, sh);
    et_p11_unload(&p);
    return rc;
}

/* Open PATH for writing a certificate: a new file (never through a
 * symbolic link); an existing one only with FORCE and only if it is a
 * regular file (as `backup`, which never overwrites). */
static int
et_open_out(const char *path, int force, FILE **out)
{
    struct stat st;
    int fd;

    *out = NULL;
    if (lstat(path, &st) == 0) {
        if (!force) {
            et_err("export-cert: %s already exists; not overwriting it (--force replaces a "
                   "regular file)",
                   path);
            return ET_EXIT_EXISTS;
        }
        if (!S_ISREG(st.st_mode)) {
            et_err("export-cert: %s is %s, not a regular file; not replacing it", path,
                   S_ISLNK(st.st_mode) ? "a symbolic link" : "something else");
            return ET_EXIT_EXISTS;
        }
        fd = open(path, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
            close(fd);
            et_err("export-cert: %s changed while being opened; not replacing it", path);
            return ET_EXIT_EXISTS;
        }
    } else {
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    }
    if (fd < 0) {
        et_err("export-cert: cannot create %s: %s", path, strerror(errno));
        return errno == EEXIST ? ET_EXIT_EXISTS : ET_EXIT_FAIL;
    }
    *out = fdopen(fd, "wb");
    if (*out == NULL) {
        et_err("export-cert: cannot create %s: %s", path, strerror(errno));
        close(fd);
        return ET_EXIT_FAIL;
    }
    return ET_EXIT_OK;
}

int
et_cmd_export_cert(et_opts *o)
{
    et_p11 p = {0};
    CK_SLOT_ID slot;
    CK_TOKEN_INFO ti;
    CK_SESSION_HANDLE sh = CK_INVALID_HANDLE;
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_ATTRIBUTE tmpl[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {0, NULL, 0}};
    CK_OBJECT_HANDLE *objs = NULL;
    CK_ULONG n = 0, len = 0;
    unsigned char *id = NULL, *der = NULL;
    const unsigned char *q;
    X509 *x = NULL;
    FILE *fp = NULL;
    int rc;

    if (o->argc != 0) {
        et_err("export-cert: unexpected argument '%s' (use -o FILE for a file)", o->argv[0]);
        return ET_EXIT_USAGE;
    }
    if (o->chain && o->der) {
        et_err("export-cert: --chain writes a PEM bundle; it cannot be combined with --der");
        return ET_EXIT_USAGE;
    }
    rc = et_selector(o, "export-cert", &tmpl[1], &id);
    if (rc != ET_EXIT_OK)
        return rc;
    rc = et_p11_load(o, &p);
    if (rc != ET_EXIT_OK)
        goto done;
    rc = et_find_token(&p, o, &slot, &ti);
    if (rc != ET_EXIT_OK)
        goto done;
    rc = et_open_session(&p, o, slot, 0, -1, &sh);
    if (rc != ET_EXIT_OK)
        goto done;
    rc = et_find_objects(&p, sh, tmpl, 2, &objs, &n);
    if (rc != ET_EXIT_OK)
        goto done;
    if (n == 0) {
        et_err("export-cert: no certificate matches");
        rc = ET_EXIT_NOTFOUND;
        goto done;
    }
    if (n > 1) {
        et_err("export-cert: %lu certificates match; select one with --id", (unsigned long)n);
        rc = ET_EXIT_USAGE;
        goto done;
    }
    if (et_get_attr(&p, sh, objs[0], CKA_VALUE, &der, &len) != 0 || len == 0) {
        et_err("export-cert: cannot read the certificate's CKA_VALUE");
        rc = ET_EXIT_FAIL;
        goto done;
    }
    q = der;
    x = d2i_X509(NULL, &q, (long)len);
    if (x == NULL || q != der + len) {
        et_err("export-cert: the stored certificate is not valid DER X.509");
        rc = ET_EXIT_FAIL;
        goto done;
    }
    if (o->out != NULL) {
        rc = et_open_out(o->out, o->force, &fp);
        if (rc != ET_EXIT_OK)
            goto done;
    } else {
        fp = stdout;
    }
    if (o->chain) {
        rc = et_write_chain(&p, sh, x, fp);
        if (rc != ET_EXIT_OK)
            goto done;
    } else if (o->der ? fwrite(der, 1, len, fp) != len : PEM_write_X509(fp, x) != 1) {
        et_err("export-cert: writing the certificate failed");
        rc = ET_EXIT_FAIL;
        goto done;
    }
    rc = ET_EXIT_OK;
done:
    if (fp != NULL && fp != stdout && fclose(fp) != 0 && rc == ET_EXIT_OK) {
        et_err("export-cert: writing %s: %s", o->out, strerror(errno));
        rc = ET_EXIT_FAIL;
    }
    X509_free(x);
    free(der);
    free(objs);
    free(id);
    if (p.initialized)
        et_close_session(&p, sh);
    et_p11_unload(&p);
    return rc;
}
