/*
 * paths.h — where nudge finds the files it ships (sql/, workflows/, templates/, plugins).
 */
#ifndef NG_PATHS_H
#define NG_PATHS_H

/*
 * Returns a malloc'd path to the shipped directory `sub` ("sql", "workflows", "templates"): the
 * environment variable NUDGE_<SUB>_DIR if set, else SUB beside the source tree the binary was built in
 * (.build/nudge → ./SUB), else PREFIX/share/nudge/SUB for an installed binary. NULL if none exists.
 */
char *ng_paths_shipped(const char *sub);

#endif
