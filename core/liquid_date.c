/*
 * liquid_date.c — the `date` filter: reads a timestamp, "now"/"today" or a date string (ISO 8601,
 * ctime, "July 5, 2006"), keeps an offset the string names, places other times in the render's
 * zone (or the zone given as the filter's second argument), and formats with Ruby's strftime
 * (flags - _ 0 ^ #, widths, %:z). Time zones come from the system tz database, read by this file
 * (TZif) — never through setenv("TZ"), which is not thread-safe.
 */
#include "liquid_int.h"
#include "ng.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- time zones ---- */

struct tz_type {
	int32_t off;
	uint8_t isdst;
	uint8_t abbr;
};

struct zone {
	char *name;
	int ok;
	int64_t *times;
	uint8_t *idx;
	size_t ntimes;
	struct tz_type *types;
	size_t ntypes;
	char *chars;
	size_t nchars;
	struct zone *next;
};

static pthread_mutex_t zones_lock = PTHREAD_MUTEX_INITIALIZER;
static struct zone *zones;
static size_t nzones;

static int64_t be(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	if (n == 4)
		return (int32_t)(uint32_t)v;
	return (int64_t)v;
}

static int valid_zone_name(const char *z)
{
	if (!*z || *z == '/' || strlen(z) > 64 || strstr(z, ".."))
		return 0;
	for (const char *p = z; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("/_+-", *p))
			return 0;
	return 1;
}

static void zone_load(struct zone *z)
{
	const char *dir = getenv("TZDIR");
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", z->name);
	FILE *f = fopen(path, "rb");
	if (!f)
		return;
	unsigned char *buf = ng_xmalloc(1 << 17);
	size_t n = fread(buf, 1, 1 << 17, f);
	fclose(f);
	const unsigned char *p = buf;
	if (n < 44 || memcmp(p, "TZif", 4) != 0)
		goto out;
	int ver = p[4];
	size_t cnt[6];
	for (int i = 0; i < 6; i++)
		cnt[i] = (size_t)be(p + 20 + 4 * i, 4);
	/* isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt */
	int tsz = 4;
	size_t off = 44;
	if (ver >= '2') {
		size_t skip = cnt[3] * 5 + cnt[4] * 6 + cnt[5] + cnt[2] * 8 + cnt[1] + cnt[0];
		off = 44 + skip;
		if (off + 44 > n || memcmp(p + off, "TZif", 4) != 0)
			goto out;
		for (int i = 0; i < 6; i++)
			cnt[i] = (size_t)be(p + off + 20 + 4 * i, 4);
		off += 44;
		tsz = 8;
	}
	size_t need = cnt[3] * ((size_t)tsz + 1) + cnt[4] * 6 + cnt[5];
	if (cnt[4] == 0 || cnt[4] > 256 || off + need > n)
		goto out;
	z->ntimes = cnt[3];
	z->times = ng_xcalloc(z->ntimes + 1, sizeof *z->times);
	z->idx = ng_xcalloc(z->ntimes + 1, 1);
	for (size_t i = 0; i < z->ntimes; i++)
		z->times[i] = be(p + off + i * (size_t)tsz, tsz);
	off += z->ntimes * (size_t)tsz;
	for (size_t i = 0; i < z->ntimes; i++)
		z->idx[i] = p[off + i] < cnt[4] ? p[off + i] : 0;
	off += z->ntimes;
	z->ntypes = cnt[4];
	z->types = ng_xcalloc(z->ntypes, sizeof *z->types);
	for (size_t i = 0; i < z->ntypes; i++) {
		z->types[i].off = (int32_t)be(p + off + 6 * i, 4);
		z->types[i].isdst = p[off + 6 * i + 4];
		z->types[i].abbr = p[off + 6 * i + 5];
	}
	off += z->ntypes * 6;
	z->nchars = cnt[5];
	z->chars = ng_xcalloc(z->nchars + 1, 1);
	memcpy(z->chars, p + off, z->nchars);
	for (size_t i = 0; i < z->ntypes; i++)
		if (z->types[i].abbr >= z->nchars)
			z->types[i].abbr = 0;
	z->ok = 1;
out:
	free(buf);
}

static const struct zone *zone_get(const char *name)
{
	pthread_mutex_lock(&zones_lock);
	struct zone *z;
	for (z = zones; z; z = z->next)
		if (strcmp(z->name, name) == 0)
			break;
	if (!z && nzones < 1024) {
		z = ng_xcalloc(1, sizeof *z);
		z->name = ng_xstrdup(name);
		if (valid_zone_name(name))
			zone_load(z);
		z->next = zones;
		zones = z;
		nzones++;
	}
	pthread_mutex_unlock(&zones_lock);
	return z;
}

int lq_tz_offset(const char *name, int64_t t, int *offset, const char **abbr)
{
	if (!name || !*name || strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0) {
		*offset = 0;
		*abbr = "UTC";
		return 0;
	}
	const struct zone *z = zone_get(name);
	if (!z || !z->ok)
		return -ENOENT;
	size_t ti = 0;
	/* The first standard-time type applies before the first transition. */
	for (size_t i = 0; i < z->ntypes; i++)
		if (!z->types[i].isdst) {
			ti = i;
			break;
		}
	if (z->ntimes && t >= z->times[0]) {
		size_t lo = 0, hi = z->ntimes;
		while (hi - lo > 1) {
			size_t mid = (lo + hi) / 2;
			if (z->times[mid] <= t)
				lo = mid;
			else
				hi = mid;
		}
		ti = z->idx[lo];
	}
	*offset = z->types[ti].off;
	*abbr = z->chars + z->types[ti].abbr;
	return 0;
}

/* ---- civil time ---- */

static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

struct civil {
	int64_t year;
	int mon, day, hour, min, sec, wday, yday;
};

static void civil_from(int64_t t, struct civil *c)
{
	int64_t days = t / 86400, rem = t % 86400;
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	c->hour = (int)(rem / 3600);
	c->min = (int)(rem % 3600 / 60);
	c->sec = (int)(rem % 60);
	c->wday = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = yoe + era * 400;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	c->day = (int)(doy - (153 * mp + 2) / 5 + 1);
	c->mon = (int)(mp < 10 ? mp + 3 : mp - 9);
	c->year = y + (c->mon <= 2);
	c->yday = (int)(days - days_from_civil(c->year, 1, 1));
}

struct when {
	int64_t t;
	int off;
	char zone[16];
};

static const char *const mon_names[] = {"January",   "February", "March",    "April",
                                        "May",       "June",     "July",     "August",
                                        "September", "October",  "November", "December"};
static const char *const day_names[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                        "Thursday", "Friday", "Saturday"};

static int month_of(const char *p, size_t n)
{
	if (n < 3)
		return 0;
	for (int i = 0; i < 12; i++)
		if (strncasecmp(p, mon_names[i], 3) == 0 &&
		    (n == 3 || (n <= strlen(mon_names[i]) && strncasecmp(p, mon_names[i], n) == 0)))
			return i + 1;
	return 0;
}

static int num(const char **p, const char *e, int maxd, int64_t *out)
{
	const char *s = *p;
	int64_t v = 0;
	int d = 0;
	while (s < e && isdigit((unsigned char)*s) && d < maxd) {
		v = v * 10 + (*s - '0');
		s++;
		d++;
	}
	if (!d)
		return -1;
	*p = s;
	*out = v;
	return 0;
}

static void skip_ws(const char **p, const char *e)
{
	while (*p < e && (**p == ' ' || **p == '\t' || **p == ','))
		(*p)++;
}

/* Parses an optional zone: Z, UTC, GMT, +hh:mm, -hhmm, +hh. */
static int parse_zone(const char **p, const char *e, int *off, char *name, int *has)
{
	skip_ws(p, e);
	const char *s = *p;
	*has = 0;
	if (s >= e)
		return 0;
	if (*s == 'Z' && (s + 1 == e || !isalpha((unsigned char)s[1]))) {
		*off = 0;
		strcpy(name, "UTC");
		*has = 1;
		*p = s + 1;
		return 0;
	}
	if ((size_t)(e - s) >= 3 && (strncmp(s, "UTC", 3) == 0 || strncmp(s, "GMT", 3) == 0)) {
		*off = 0;
		strcpy(name, "UTC");
		*has = 1;
		*p = s + 3;
		return 0;
	}
	if (*s == '+' || *s == '-') {
		int sign = *s == '-' ? -1 : 1;
		s++;
		int64_t hh, mm = 0;
		const char *q = s;
		if (num(&q, e, 2, &hh))
			return -1;
		if (q < e && *q == ':')
			q++;
		if (q < e && isdigit((unsigned char)*q) && num(&q, e, 2, &mm))
			return -1;
		*off = sign * (int)(hh * 3600 + mm * 60);
		name[0] = 0;
		*has = 1;
		*p = q;
		return 0;
	}
	return 0;
}

static int64_t local_to_utc(const char *tz, int64_t local, int *off, char *zname)
{
	const char *abbr = "UTC";
	int o = 0;
	if (lq_tz_offset(tz, local, &o, &abbr))
		o = 0;
	int64_t t = local - o;
	if (lq_tz_offset(tz, t, &o, &abbr) == 0)
		t = local - o;
	*off = o;
	snprintf(zname, 16, "%s", abbr);
	return t;
}

/* Parses a date string; -1 when it is not one (the filter then returns its input). */
static int parse_date(const char *s, size_t n, const char *tz, struct when *w)
{
	const char *p = s, *e = s + n;
	skip_ws(&p, e);
	int64_t y = 0, mo = 0, d = 0, hh = 0, mi = 0, ss = 0;
	const char *q = p;
	if (num(&q, e, 4, &y) == 0 && q - p == 4 && q < e && (*q == '-' || *q == '/')) {
		char sep = *q++;
		if (num(&q, e, 2, &mo) || q >= e || *q++ != sep || num(&q, e, 2, &d))
			return -1;
		p = q;
	} else {
		/* "Fri Jul 16 01:00:00 2004", "July 5, 2006", "5 July 2006" */
		const char *a = p;
		while (p < e && isalpha((unsigned char)*p))
			p++;
		int m = month_of(a, (size_t)(p - a));
		if (!m && p > a) {
			/* a weekday name */
			skip_ws(&p, e);
			a = p;
			while (p < e && isalpha((unsigned char)*p))
				p++;
			m = month_of(a, (size_t)(p - a));
		}
		if (m) {
			mo = m;
			skip_ws(&p, e);
			if (num(&p, e, 2, &d))
				return -1;
			skip_ws(&p, e);
			q = p;
			if (num(&q, e, 4, &y) == 0 && (q >= e || *q != ':')) {
				p = q;
			} else {
				/* ctime: the time comes before the year */
				if (num(&p, e, 2, &hh) || p >= e || *p++ != ':' ||
				    num(&p, e, 2, &mi))
					return -1;
				if (p < e && *p == ':') {
					p++;
					if (num(&p, e, 2, &ss))
						return -1;
				}
				skip_ws(&p, e);
				if (num(&p, e, 4, &y))
					return -1;
				goto zone;
			}
		} else {
			p = a;
			if (num(&p, e, 2, &d))
				return -1;
			skip_ws(&p, e);
			a = p;
			while (p < e && isalpha((unsigned char)*p))
				p++;
			if (!(mo = month_of(a, (size_t)(p - a))))
				return -1;
			skip_ws(&p, e);
			if (num(&p, e, 4, &y))
				return -1;
		}
	}
	skip_ws(&p, e);
	if (p < e && (*p == 'T' || *p == 't'))
		p++;
	skip_ws(&p, e);
	q = p;
	if (num(&q, e, 2, &hh) == 0 && q < e && *q == ':') {
		q++;
		if (num(&q, e, 2, &mi))
			return -1;
		if (q < e && *q == ':') {
			q++;
			if (num(&q, e, 2, &ss))
				return -1;
			if (q < e && *q == '.') {
				q++;
				while (q < e && isdigit((unsigned char)*q))
					q++;
			}
		}
		p = q;
		skip_ws(&p, e);
		if (p + 1 < e && (strncasecmp(p, "am", 2) == 0 || strncasecmp(p, "pm", 2) == 0)) {
			int pm = tolower((unsigned char)*p) == 'p';
			if (hh == 12)
				hh = 0;
			if (pm)
				hh += 12;
			p += 2;
		}
	}
zone:;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || hh > 23 || mi > 59 || ss > 60)
		return -1;
	int off = 0, has = 0;
	char zname[16] = "";
	if (parse_zone(&p, e, &off, zname, &has))
		return -1;
	skip_ws(&p, e);
	if (p != e)
		return -1;
	int64_t local = days_from_civil(y, (int)mo, (int)d) * 86400 + hh * 3600 + mi * 60 + ss;
	if (has) {
		w->t = local - off;
		w->off = off;
		snprintf(w->zone, sizeof w->zone, "%s", zname);
	} else {
		w->t = local_to_utc(tz, local, &w->off, w->zone);
	}
	return 0;
}

static void in_zone(const char *tz, struct when *w)
{
	const char *abbr = "UTC";
	if (lq_tz_offset(tz, w->t, &w->off, &abbr)) {
		w->off = 0;
		abbr = "UTC";
	}
	snprintf(w->zone, sizeof w->zone, "%s", abbr);
}

/* ---- strftime ---- */

static int64_t p_dow(int64_t y)
{
	int64_t f = y + y / 4 - y / 100 + y / 400;
	return ((f % 7) + 7) % 7;
}

static int weeks_in(int64_t y)
{
	return (p_dow(y) == 4 || p_dow(y - 1) == 3) ? 53 : 52;
}

static void iso_week(const struct civil *c, int64_t *year, int *week)
{
	int wd = c->wday ? c->wday : 7;
	int w = (c->yday + 1 - wd + 10) / 7;
	int64_t y = c->year;
	if (w < 1) {
		y--;
		w = weeks_in(y);
	} else if (w > weeks_in(y)) {
		w = 1;
		y++;
	}
	*year = y;
	*week = w;
}

static void put_num(struct ng_liquid_buf *b, int64_t v, int width, char pad)
{
	char tmp[32];
	int neg = v < 0;
	unsigned long long u = neg ? (unsigned long long)(-(v + 1)) + 1 : (unsigned long long)v;
	int n = snprintf(tmp, sizeof tmp, "%llu", u);
	int len = n + neg;
	if (neg && pad == '0')
		lq_buf_add(b, "-", 1);
	for (int i = len; i < width && pad; i++)
		lq_buf_add(b, &pad, 1);
	if (neg && pad != '0')
		lq_buf_add(b, "-", 1);
	lq_buf_add(b, tmp, (size_t)n);
}

static void put_str(struct ng_liquid_buf *b, const char *s, size_t n, int width, int upper,
                    int swap, char pad)
{
	for (int i = (int)n; i < width; i++)
		lq_buf_add(b, pad ? &pad : " ", 1);
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		/* Ruby's # flag upper-cases names (and lower-cases %p, handled there). */
		if (upper || swap)
			ch = (char)toupper((unsigned char)ch);
		lq_buf_add(b, &ch, 1);
	}
}

static void format(struct ng_liquid_buf *b, const char *f, size_t fn, const struct when *w);

static void sub(struct ng_liquid_buf *b, const char *f, const struct when *w, int width, int up)
{
	struct ng_liquid_buf t = {0};
	format(&t, f, strlen(f), w);
	put_str(b, t.s ? t.s : "", t.len, width, up, 0, ' ');
	ng_liquid_buf_free(&t);
}

static void format(struct ng_liquid_buf *b, const char *f, size_t fn, const struct when *w)
{
	struct civil c;
	civil_from(w->t + w->off, &c);
	for (size_t i = 0; i < fn; i++) {
		if (f[i] != '%' || i + 1 >= fn) {
			lq_buf_add(b, f + i, 1);
			continue;
		}
		size_t start = i++;
		char pad = 0;
		int upper = 0, swap = 0, colons = 0, width = -1, nopad = 0;
		for (; i < fn; i++) {
			if (f[i] == '-')
				nopad = 1;
			else if (f[i] == '_')
				pad = ' ';
			else if (f[i] == '0')
				pad = '0';
			else if (f[i] == '^')
				upper = 1;
			else if (f[i] == '#')
				swap = 1;
			else
				break;
		}
		if (i < fn && isdigit((unsigned char)f[i])) {
			width = 0;
			while (i < fn && isdigit((unsigned char)f[i]) && width < 1000)
				width = width * 10 + (f[i++] - '0');
		}
		while (i < fn && f[i] == ':') {
			colons++;
			i++;
		}
		if (i >= fn) {
			lq_buf_add(b, f + start, fn - start);
			break;
		}
#define N(v, wd, dp)                                                                               \
	put_num(b, (v), nopad ? 0 : (width >= 0 ? width : (wd)), nopad ? 0 : (pad ? pad : (dp)))
#define STR(s) put_str(b, (s), strlen(s), width, upper, swap, pad == '0' ? '0' : ' ')
		int hour12 = c.hour % 12 ? c.hour % 12 : 12;
		switch (f[i]) {
		case 'Y':
			N(c.year, 1, '0');
			break;
		case 'C':
			N(c.year / 100, 2, '0');
			break;
		case 'y':
			N(((c.year % 100) + 100) % 100, 2, '0');
			break;
		case 'm':
			N(c.mon, 2, '0');
			break;
		case 'B':
			STR(mon_names[c.mon - 1]);
			break;
		case 'b':
		case 'h': {
			char a[4];
			snprintf(a, sizeof a, "%.3s", mon_names[c.mon - 1]);
			STR(a);
			break;
		}
		case 'd':
			N(c.day, 2, '0');
			break;
		case 'e':
			N(c.day, 2, ' ');
			break;
		case 'j':
			N(c.yday + 1, 3, '0');
			break;
		case 'H':
			N(c.hour, 2, '0');
			break;
		case 'k':
			N(c.hour, 2, ' ');
			break;
		case 'I':
			N(hour12, 2, '0');
			break;
		case 'l':
			N(hour12, 2, ' ');
			break;
		case 'M':
			N(c.min, 2, '0');
			break;
		case 'S':
			N(c.sec, 2, '0');
			break;
		case 'L':
			N(0, 3, '0');
			break;
		case 'N':
			N(0, 9, '0');
			break;
		case 'p':
			put_str(b, c.hour < 12 ? "AM" : "PM", 2, width, 0, 0, ' ');
			if (swap) {
				b->s[b->len - 2] = (char)tolower((unsigned char)b->s[b->len - 2]);
				b->s[b->len - 1] = (char)tolower((unsigned char)b->s[b->len - 1]);
			}
			break;
		case 'P':
			put_str(b, c.hour < 12 ? "am" : "pm", 2, width, upper, 0, ' ');
			break;
		case 'A':
			STR(day_names[c.wday]);
			break;
		case 'a': {
			char a[4];
			snprintf(a, sizeof a, "%.3s", day_names[c.wday]);
			STR(a);
			break;
		}
		case 'u':
			N(c.wday ? c.wday : 7, 1, '0');
			break;
		case 'w':
			N(c.wday, 1, '0');
			break;
		case 'U':
			N((c.yday + 7 - c.wday) / 7, 2, '0');
			break;
		case 'W':
			N((c.yday + 7 - (c.wday + 6) % 7) / 7, 2, '0');
			break;
		case 'V':
		case 'G':
		case 'g': {
			int64_t iy;
			int wk;
			iso_week(&c, &iy, &wk);
			if (f[i] == 'V')
				N(wk, 2, '0');
			else if (f[i] == 'G')
				N(iy, 1, '0');
			else
				N(((iy % 100) + 100) % 100, 2, '0');
			break;
		}
		case 's':
			N(w->t, 1, '0');
			break;
		case 'z': {
			int o = w->off, neg = o < 0;
			if (neg)
				o = -o;
			char tmp[16];
			if (colons == 1)
				snprintf(tmp, sizeof tmp, "%c%02d:%02d", neg ? '-' : '+', o / 3600,
				         o % 3600 / 60);
			else if (colons >= 2)
				snprintf(tmp, sizeof tmp, "%c%02d:%02d:%02d", neg ? '-' : '+',
				         o / 3600, o % 3600 / 60, o % 60);
			else
				snprintf(tmp, sizeof tmp, "%c%02d%02d", neg ? '-' : '+', o / 3600,
				         o % 3600 / 60);
			lq_buf_add(b, tmp, strlen(tmp));
			break;
		}
		case 'Z':
			STR(w->zone);
			break;
		case '%':
			lq_buf_add(b, "%", 1);
			break;
		case 'n':
			lq_buf_add(b, "\n", 1);
			break;
		case 't':
			lq_buf_add(b, "\t", 1);
			break;
		case 'c':
			sub(b, "%a %b %e %H:%M:%S %Y", w, width, upper);
			break;
		case 'x':
		case 'D':
			sub(b, "%m/%d/%y", w, width, upper);
			break;
		case 'X':
		case 'T':
			sub(b, "%H:%M:%S", w, width, upper);
			break;
		case 'F':
			sub(b, "%Y-%m-%d", w, width, upper);
			break;
		case 'R':
			sub(b, "%H:%M", w, width, upper);
			break;
		case 'r':
			sub(b, "%I:%M:%S %p", w, width, upper);
			break;
		case 'v':
			sub(b, "%e-%^b-%Y", w, width, upper);
			break;
		case '+':
			sub(b, "%a %b %e %H:%M:%S %Z %Y", w, width, upper);
			break;
		default:
			lq_buf_add(b, f + start, i - start + 1);
			break;
		}
#undef N
#undef STR
	}
}

int lq_date_filter(struct lq_ctx *c, struct lq_val *v, const struct lq_val *args, int nargs)
{
	if (v->t == LQ_NIL)
		return 0;
	struct lq_val fmt = nargs > 0 ? args[0] : lq_nil();
	if (fmt.t == LQ_NIL)
		return 0;
	fmt = lq_to_str(c, &fmt);
	if (fmt.s.n == 0)
		return 0;
	const char *tz = c->r->o ? c->r->o->tz : NULL;
	int explicit_tz = 0;
	if (nargs > 1 && args[1].t == LQ_STR && args[1].s.n) {
		tz = lq_strndup(&c->r->arena, args[1].s.p, args[1].s.n);
		explicit_tz = 1;
	}
	struct when w = {0};
	if (v->t == LQ_INT || v->t == LQ_FLOAT) {
		w.t = v->t == LQ_INT ? v->i : (int64_t)v->f;
		in_zone(tz, &w);
	} else if (v->t == LQ_STR) {
		const char *s = v->s.p;
		size_t n = v->s.n;
		if (n == 0)
			return 0;
		size_t k = 0;
		if (s[0] == '-')
			k = 1;
		while (k < n && isdigit((unsigned char)s[k]))
			k++;
		if ((n == 3 && strncasecmp(s, "now", 3) == 0) ||
		    (n == 5 && strncasecmp(s, "today", 5) == 0)) {
			w.t = c->r->now;
			in_zone(tz, &w);
		} else if (k == n && n > (s[0] == '-' ? 1u : 0u) && n < 19) {
			w.t = strtoll(s, NULL, 10);
			in_zone(tz, &w);
		} else if (parse_date(s, n, tz, &w)) {
			return 0;
		} else if (explicit_tz) {
			in_zone(tz, &w);
		}
	} else {
		return 0;
	}
	struct ng_liquid_buf b = {0};
	format(&b, fmt.s.p, fmt.s.n, &w);
	*v = lq_str(lq_strndup(&c->r->arena, b.s ? b.s : "", b.len), b.len);
	ng_liquid_buf_free(&b);
	return 0;
}
