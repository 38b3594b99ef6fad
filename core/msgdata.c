/*
 * msgdata.c — a message's render data (see msgdata.h).
 */
#include "msgdata.h"
#include "links.h"
#include "json_parse.h"
#include "ng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_link(json_t *o, const char *key, char *url)
{
	if (url)
		json_object_set_new(o, key, json_string(url));
	free(url);
}

json_t *ng_msgdata(const struct ng_msgdata_store *s, const struct ng_msgdata_msg *m,
                   const char *snapshot, json_t *customer, char **unsub_url, char *err,
                   size_t errlen)
{
	json_error_t je = {.text = "not an object"};
	json_t *data = snapshot ? ng_json_parse_str(snapshot, 0, &je) : json_object();
	if (!json_is_object(data)) {
		/* Rendering with {} would send a message missing its content without a word; a
		 * snapshot jansson refuses (e.g. one holding \u0000) is the message's failure. */
		snprintf(err, errlen, "the message's data snapshot is not a JSON object: %s",
		         je.text);
		json_decref(data);
		return NULL;
	}
	if (customer)
		json_object_set(data, "customer", customer);
	else
		json_object_set_new(data, "customer", json_object());
	json_t *store = json_object();
	if (s->name)
		json_object_set_new(store, "name", json_string(s->name));
	if (s->postal_address)
		json_object_set_new(store, "postal_address", json_string(s->postal_address));
	if (s->base_url)
		json_object_set_new(store, "base_url", json_string(s->base_url));
	if (s->timezone)
		json_object_set_new(store, "timezone", json_string(s->timezone));
	json_object_set_new(data, "store", store);

	json_t *msg = json_pack("{s:I, s:s}", "id", (json_int_t)m->message_id, "key", m->key);
	if (strcmp(m->channel, "email") == 0)
		set_link(msg, "view_url",
		         ng_link_url(s->base_url, s->secret, s->secret_len, NG_LINK_VIEW,
		                     m->customer_id, m->channel, m->message_id));
	json_object_set_new(data, "message", msg);

	char *unsub = m->marketing
	                  ? ng_link_url(s->base_url, s->secret, s->secret_len, NG_LINK_UNSUBSCRIBE,
	                                m->customer_id, m->channel, m->message_id)
	                  : NULL;
	if (unsub)
		json_object_set_new(data, "unsubscribe_url", json_string(unsub));
	if (unsub_url)
		*unsub_url = unsub;
	else
		free(unsub);
	if (strcmp(m->channel, "email") == 0 &&
	    json_is_true(json_object_get(data, "confirm_subscription")))
		set_link(data, "confirm_url",
		         ng_link_url(s->base_url, s->secret, s->secret_len, NG_LINK_CONFIRM,
		                     m->customer_id, m->channel, m->message_id));
	return data;
}
