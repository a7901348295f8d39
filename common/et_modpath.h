/*
 * et_modpath.h — where the default module is.
 *
 * The CLI and the enrollment helper load "libevertoken.so" when neither
 * --module/module= nor EVERTOKEN_MODULE names one. The program's RUNPATH
 * ($ORIGIN/../module, then p11-kit's module directory; CMakeLists.txt)
 * says where that bare name lives. But dlopen() applies the RUNPATH of the
 * object that *calls* it: libp11 (which the helper loads the module
 * through) and AddressSanitizer's dlopen interceptor call it from their own
 * library, whose RUNPATH is not ours, and the bare name is then not found.
 * So the name is resolved once, here, against the main program's own search
 * path, and every dlopen gets the full file name.
 */
#ifndef EVERTOKEN_MODPATH_H
#define EVERTOKEN_MODPATH_H

#ifdef __cplusplus
extern "C" {
#endif

/* The full path of the file the loader would choose for NAME from the main
 * program's search path (LD_LIBRARY_PATH, RUNPATH with $ORIGIN expanded,
 * the system directories), malloc'd; a copy of NAME when NAME holds a '/'
 * or no directory of that path holds it (dlopen then searches
 * ld.so.cache). NULL only when out of memory. */
char *et_module_resolve(const char *name);

#ifdef __cplusplus
}
#endif

#endif
