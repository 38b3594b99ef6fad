/*
 * log.c — the one logging call. Each record is one line on stderr, written with a single write(2)
 * so lines from several threads never interleave.
 */
#include "ng.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum ng_log_level log_level = NG_LOG_INFO;
static enum ng_log_format log_format = NG_LOG_LOGFMT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void ng_log_setup(enum ng_log_level level, enum ng_log_format format)
{
	log_level = level;
	log_format = format;
}

int ng_log_level_parse(const char *name, enum ng_log_level *out)
{
	for (size_t i = 0; i < NG_ARRAY_LEN(level_names); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum ng_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

int ng_log_enabled(enum ng_log_level level)
{
	return level >= log_level;
}

/* Appends s to buf, escaped for a double-quoted logfmt or JSON string. */
static size_t append_escaped(char *buf, size_t pos, size_t cap, const char *s)
{
	for (; *s && pos + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[pos++] = '\\';
			buf[pos++] = (char)c;
		} else if (c == '\n') {
			buf[pos++] = '\\';
			buf[pos++] = 'n';
		} else if (c < 0x20) {
			pos += (size_t)snprintf(buf + pos, cap - pos, "\\u%04x", c);
		} else {
			buf[pos++] = (char)c;
		}
	}
	return pos;
}

void ng_vlog(enum ng_log_level level, const char *mod, const char *fmt, va_list ap)
{
	if (!ng_log_enabled(level))
		return;
	int saved_errno = errno;
	char msg[2048];
	vsnprintf(msg, sizeof msg, fmt, ap);

	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	char ts[40];
	size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, sizeof ts - n, ".%03ldZ", (long)(tv.tv_usec / 1000));

	char line[4096];
	size_t pos;
	if (log_format == NG_LOG_JSON) {
		pos = (size_t)snprintf(line, sizeof line,
				       "{\"ts\":\"%s\",\"level\":\"%s\",\"mod\":\"%s\",\"msg\":\"", ts,
				       level_names[level], mod);
		pos = append_escaped(line, pos, sizeof line, msg);
		pos += (size_t)snprintf(line + pos, sizeof line - pos, "\"}\n");
	} else {
		pos = (size_t)snprintf(line, sizeof line, "ts=%s level=%s mod=%s msg=\"", ts,
				       level_names[level], mod);
		pos = append_escaped(line, pos, sizeof line, msg);
		pos += (size_t)snprintf(line + pos, sizeof line - pos, "\"\n");
	}
	if (pos >= sizeof line) {
		pos = sizeof line - 1;
		line[pos - 1] = '\n';
	}
	ssize_t w = write(STDERR_FILENO, line, pos);
	(void)w;
	errno = saved_errno;
}

void ng_log(enum ng_log_level level, const char *mod, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	ng_vlog(level, mod, fmt, ap);
	va_end(ap);
}
