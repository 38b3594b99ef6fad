/*
 * intake_map_time.c — event times to one form: ISO 8601 with a zone in, UTC with a Z out
 * ("2021-12-31T19:00:00-05:00" → "2022-01-01T00:00:00Z"), so that ingest and the database never
 * guess a time zone.
 */
#include "intake_map.h"

#include <errno.h>
#include <stdio.h>

static int digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return -1;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static long long days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	long long era = (y >= 0 ? y : y - 399) / 400;
	long long yoe = y - era * 400;
	long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(long long z, int *y, int *m, int *d)
{
	z += 719468;
	long long era = (z >= 0 ? z : z - 146096) / 146097;
	long long doe = z - era * 146097;
	long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	long long mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

int ng_intake__time(const char *in, char out[32])
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	const char *p = in;
	int y, mo, d, h, mi, s = 0, ms = 0;
	out[0] = '\0';
	if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
	    digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
		return -EINVAL;
	p++;
	if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
		return -EINVAL;
	if (*p == ':') {
		p++;
		if (digits(&p, 2, &s))
			return -EINVAL;
		if (*p == '.' || *p == ',') {
			p++;
			int n = 0;
			for (; *p >= '0' && *p <= '9'; p++, n++)
				if (n < 3)
					ms = ms * 10 + (*p - '0');
			if (n == 0)
				return -EINVAL;
			for (; n < 3; n++)
				ms *= 10;
		}
	}
	if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
	    mi > 59 || s > 60)
		return -EINVAL;
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (mo == 2 && d == 29 && !leap)
		return -EINVAL;
	if (s == 60)
		s = 59; /* a leap second: the instant before is close enough for an event */

	/* The zone is required: a time without one means different instants on different hosts. */
	int off = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
		if (digits(&p, 2, &oh))
			return -EINVAL;
		if (*p == ':')
			p++;
		if (*p && digits(&p, 2, &om))
			return -EINVAL;
		if (oh > 23 || om > 59)
			return -EINVAL;
		off = sign * (oh * 60 + om);
	} else {
		return -EINVAL;
	}
	if (*p)
		return -EINVAL;

	long long t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - off * 60LL;
	if (t < 0)
		return -EINVAL;
	civil_from_days(t / 86400, &y, &mo, &d);
	long long sec = t % 86400;
	if (ms)
		snprintf(out, 32, "%04d-%02d-%02dT%02lld:%02lld:%02lld.%03dZ", y, mo, d, sec / 3600,
		         sec / 60 % 60, sec % 60, ms);
	else
		snprintf(out, 32, "%04d-%02d-%02dT%02lld:%02lld:%02lldZ", y, mo, d, sec / 3600,
		         sec / 60 % 60, sec % 60);
	return 0;
}
