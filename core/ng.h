/*
 * ng.h — what every nudge module shares: the error convention, logging and small helpers.
 *
 * Functions return 0 on success or a negative code: a negated errno value (-ENOMEM, -EINVAL …) or
 * one of the NG_E* codes below. ng_strerror() turns any such code into text. One error type, one
 * logging call (ng_log), everywhere.
 */
#ifndef NG_H
#define NG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define NG_VERSION "0.1.0"

/* nudge's own error codes live below every errno value. */
enum {
	NG_EDB = -10001,      /* the database reported an error */
	NG_ECONNLOST = -10002, /* the connection broke while the request was in flight */
	NG_ETIMEDOUT = -10003, /* a deadline passed */
	NG_ECLOSING = -10004, /* the component is shutting down and takes no new work */
	NG_EHTTP = -10005,    /* an HTTP transfer failed (see the message) */
	NG_ECONFIG = -10006,  /* the configuration is invalid */
	NG_EPROTO = -10007,   /* a peer broke its protocol */
};

const char *ng_strerror(int code);

/* Logging: one line per record, as key=value (logfmt) or JSON. */
enum ng_log_level { NG_LOG_DEBUG, NG_LOG_INFO, NG_LOG_WARN, NG_LOG_ERROR };
enum ng_log_format { NG_LOG_LOGFMT, NG_LOG_JSON };

void ng_log_setup(enum ng_log_level level, enum ng_log_format format);
int ng_log_level_parse(const char *name, enum ng_log_level *out);
int ng_log_enabled(enum ng_log_level level);
/* mod names the module ("db", "http"…); the formatted text becomes the record's msg. */
void ng_log(enum ng_log_level level, const char *mod, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void ng_vlog(enum ng_log_level level, const char *mod, const char *fmt, va_list ap);

#define ng_debug(mod, ...)                                                                          \
	do {                                                                                        \
		if (ng_log_enabled(NG_LOG_DEBUG))                                                   \
			ng_log(NG_LOG_DEBUG, mod, __VA_ARGS__);                                     \
	} while (0)
#define ng_info(mod, ...) ng_log(NG_LOG_INFO, mod, __VA_ARGS__)
#define ng_warn(mod, ...) ng_log(NG_LOG_WARN, mod, __VA_ARGS__)
#define ng_error(mod, ...) ng_log(NG_LOG_ERROR, mod, __VA_ARGS__)

/* Allocation that aborts on exhaustion: a daemon that cannot allocate a few bytes cannot go on. */
void *ng_xmalloc(size_t n);
void *ng_xcalloc(size_t n, size_t size);
void *ng_xrealloc(void *p, size_t n);
char *ng_xstrdup(const char *s);
char *ng_xstrndup(const char *s, size_t n);
char *ng_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define NG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define NG_UNUSED(x) ((void)(x))
#define NG_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
