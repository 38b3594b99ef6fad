/*
 * dispatch_reconcile.c — messages whose last attempt was AMBIGUOUS (the provider may have them):
 * every reconcile_ms of real time, each instance whose plugin can reconcile
 * (ng_plugin_can_reconcile) claims a batch of its messages that have been ambiguous for at least
 * that long (ng_dispatch_claim_ambiguous in sql/0008: leased as 'sending', no new attempt), renders
 * them as they were sent, and asks the plugin instead of sending. The answer is recorded like a
 * send's: SENT (found: provider id kept), RETRY (the provider has none: sent again after the
 * usual backoff), FAILED, or AMBIGUOUS again (asked again next pass, for a day). Instances that
 * cannot reconcile leave their ambiguous messages for an operator.
 */
#include "dispatch_int.h"
#include "ng.h"
#include "plugin_host.h"
#include "wf.h"

#include <stdlib.h>
#include <string.h>

struct rclaim {
	struct dispatch_lane *lane;
	int asked;
};

static void on_reconcile_claimed(const struct ng_db_result *r, void *arg)
{
	struct rclaim *c = arg;
	struct dispatch_lane *lane = c->lane;
	struct ng_dispatch *d = lane->d;
	d->reconciling--;
	int n = 0;
	if (r->status != 0)
		ng_warn("dispatch", "claiming ambiguous messages of %s failed: %s", lane->name,
		        r->message);
	else
		n = PQntuples(r->res);
	lane->lim.in_use -= c->asked - n;
	dispatch_limiter_refund(&lane->lim, c->asked - n);
	if (n)
		ng_info("dispatch", "reconciling %d ambiguous message(s) with %s", n, lane->name);
	for (int i = 0; i < n; i++)
		dispatch_send_claimed(lane, r->res, i, 1);
	free(c);
	if (d->closing)
		dispatch_settle(d);
}

static const char claim_sql[] =
    "SELECT * FROM ng_dispatch_claim_ambiguous($1, $2, $3, $4, $5, $6, $7,"
    " make_interval(secs => $8::double precision / 1000), interval '1 day')";

static void reconcile_lane(struct dispatch_lane *lane)
{
	struct ng_dispatch *d = lane->d;
	int64_t t = dispatch_now(d);
	int room = dispatch_limiter_room(&lane->lim, t);
	if (room > d->opt.batch)
		room = d->opt.batch;
	if (room <= 0)
		return;
	struct rclaim *c = ng_xcalloc(1, sizeof *c);
	c->lane = lane;
	c->asked = room;
	dispatch_limiter_take(&lane->lim, room);
	char now[40], until[40], lim[16], age[24];
	double speed = ng_clock_speed(d->opt.clock);
	int64_t lease = (int64_t)((double)d->opt.lease_ms * (speed > 1 ? speed : 1));
	snprintf(lim, sizeof lim, "%d", room);
	snprintf(age, sizeof age, "%lld", (long long)d->opt.reconcile_ms);
	const char *p[8] = {d->owner,
	                    ng_wf_ts(t, now, sizeof now),
	                    ng_wf_ts(t + lease, until, sizeof until),
	                    lim,
	                    lane->name,
	                    lane->channel,
	                    lane->is_default ? "true" : "false",
	                    age};
	d->reconciling++;
	int rc = ng_db_query(d->opt.db, claim_sql, 8, p, on_reconcile_claimed, c);
	if (rc) {
		struct ng_db_result r = {.status = rc, .message = ng_strerror(rc), .sqlstate = ""};
		on_reconcile_claimed(&r, c);
	}
}

static void on_reconcile_timer(uv_timer_t *t)
{
	struct ng_dispatch *d = t->data;
	if (d->closing || d->reconciling)
		return;
	for (size_t i = 0; i < d->nlanes; i++)
		if (ng_plugin_can_reconcile(d->lanes[i].plugin))
			reconcile_lane(&d->lanes[i]);
}

void dispatch_reconcile_init(struct ng_dispatch *d)
{
	if (d->opt.reconcile_ms <= 0)
		d->opt.reconcile_ms = 60000;
	uv_timer_init(d->opt.loop, &d->reconcile_timer);
	d->reconcile_timer.data = d;
}

void dispatch_reconcile_start(struct ng_dispatch *d)
{
	for (size_t i = 0; i < d->nlanes; i++)
		if (ng_plugin_can_reconcile(d->lanes[i].plugin)) {
			uint64_t ms = (uint64_t)d->opt.reconcile_ms;
			uv_timer_start(&d->reconcile_timer, on_reconcile_timer, ms, ms);
			return;
		}
}

void dispatch_reconcile_stop(struct ng_dispatch *d)
{
	uv_timer_stop(&d->reconcile_timer);
}
