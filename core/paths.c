/*
 * paths.c — finds the directories nudge ships, whether it runs from the build tree or installed.
 */
#include "paths.h"
#include "ng.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

char *ng_paths_shipped(const char *sub)
{
	char env[64] = "NUDGE_";
	size_t n = strlen(env);
	for (const char *s = sub; *s && n + 5 < sizeof env; s++)
		env[n++] = (char)toupper((unsigned char)*s);
	memcpy(env + n, "_DIR", 5);
	const char *e = getenv(env);
	if (e && *e)
		return ng_xstrdup(e);

	char exe[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (len > 0) {
		exe[len] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			/* .build/nudge or .build-asan/nudge: the tree is one level up. */
			char *p = ng_xasprintf("%s/../%s", exe, sub);
			char *real = realpath(p, NULL);
			free(p);
			if (real && is_dir(real))
				return real;
			free(real);
			/* PREFIX/bin/nudge: shipped files are in PREFIX/share/nudge. */
			p = ng_xasprintf("%s/../share/nudge/%s", exe, sub);
			real = realpath(p, NULL);
			free(p);
			if (real && is_dir(real))
				return real;
			free(real);
		}
	}
	if (is_dir(sub))
		return ng_xstrdup(sub);
	return NULL;
}
