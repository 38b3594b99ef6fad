/*
 * plugin_reports.h — the daemon's receivers for what channel plugins report later (plugin ABI 1.1
 * report_status, report_consent, report_event; core/plugin_host.h): each becomes one statement in
 * PostgreSQL (sql/0008_reports.sql), run on the loop, and the plugin hears done(0) once it has
 * committed — or a negative errno value, so that it answers its provider with a 5xx and the
 * provider retries.
 *
 * Messenger refs: a ref the store puts into an m.me link (m.me/<page>?ref=REF) names a customer
 * only when nudge signed it: "n<customer id>-<22 characters: base64url of the first 16 bytes of
 * HMAC-SHA256(secret, "nudge messenger ref:" + the id)>". Anything else in a ref is ignored (a
 * guessable customer id would let anyone receive someone else's messages).
 */
#ifndef NG_PLUGIN_REPORTS_H
#define NG_PLUGIN_REPORTS_H

#include "db.h"

#include <stddef.h>
#include <stdint.h>

struct ng_plugin_host;
struct ng_reports;

#define NG_REPORTS_REF_MAX 48 /* "n" + 20 digits + "-" + 22, and the NUL */

/* Registers the receivers with h; secret (copied) signs and checks Messenger refs. */
struct ng_reports *ng_reports_open(ng_db *db, struct ng_plugin_host *h, const unsigned char *secret,
                                   size_t secret_len);

/* Unregisters (later reports answer -ENOSYS), waits for the statements in flight, frees r and
 * calls done(arg). The database must stay open until then. */
void ng_reports_close(struct ng_reports *r, void (*done)(void *arg), void *arg);

/* A Messenger ref for customer_id (out needs NG_REPORTS_REF_MAX bytes). */
void ng_reports_ref(const unsigned char *secret, size_t secret_len, int64_t customer_id,
                    char out[NG_REPORTS_REF_MAX]);
/* The customer a ref names, or -EINVAL when it is not one nudge signed. */
int ng_reports_ref_parse(const unsigned char *secret, size_t secret_len, const char *ref,
                         int64_t *customer_id);

#endif
