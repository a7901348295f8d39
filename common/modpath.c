/*
 * modpath.c — resolving the default module's bare name against the main
 * program's library search path (et_modpath.h).
 */
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "et_modpath.h"

char *
et_module_resolve(const char *name)
{
    Dl_serinfo size, *info = NULL;
    void *self;
    char *found = NULL;

    if (name == NULL)
        return NULL;
    if (strchr(name, '/') != NULL)
        return strdup(name);
    /* RTLD_DI_SERINFO on the main program: the directories the loader
     * searches for the program's own dependencies, in order. */
    self = dlopen(NULL, RTLD_NOW);
    if (self != NULL && dlinfo(self, RTLD_DI_SERINFOSIZE, &size) == 0 &&
        (info = malloc(size.dls_size)) != NULL) {
        memcpy(info, &size, sizeof(size));
        if (dlinfo(self, RTLD_DI_SERINFO, info) == 0) {
            for (unsigned int i = 0; i < info->dls_cnt && found == NULL; i++) {
                const char *dir = info->dls_serpath[i].dls_name;
                size_t n;

                if (dir == NULL || *dir == '\0')
                    continue; /* an empty entry would mean the cwd: never */
                n = strlen(dir) + 1 + strlen(name) + 1;
                found = malloc(n);
                if (found == NULL)
                    break;
                snprintf(found, n, "%s/%s", dir, name);
                if (access(found, R_OK) != 0) {
                    free(found);
                    found = NULL;
                }
            }
        }
    }
    free(info);
    if (self != NULL)
        dlclose(self);
    return found != NULL ? found : strdup(name);
}
