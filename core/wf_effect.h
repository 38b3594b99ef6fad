/*
 * wf_effect.h — one running instance as wf_step.c (replay, commit) and wf_effect.c (each kind of
 * effect) share it. Nobody else includes this.
 */
#ifndef NG_WF_EFFECT_H
#define NG_WF_EFFECT_H

#include "wf_int.h"

struct wf_inst {
	struct wf_request req; /* the pending ctx call (filled by wf_ctx.c) */
	struct ng_wf_engine *e;
	int64_t cid, iid;
	char *workflow;
	int version, attempt;
	json_t *journal, *customer, *event;
	int seq; /* the sequence number of the pending ctx call */
	struct ng_lua_activation *act;
	struct wf_stmts st; /* the step's transaction: the fence first */
	json_t *notes;      /* trace lines, reported once the step commits */
	int new_effects, new_sends;
	json_t *async_result; /* an async effect's answer, until the resume queue takes it */
	char *async_error;
	struct wf_inst *resume_next;
	char *final_status, *final_error;
	int64_t final_wake; /* wake_at of the committed state, 0 for none */
	int tz_fallback;    /* wait_until: the customer's timezone is unknown, use the store's */
	void (*done)(void *arg);
	void *done_arg;
};

/* wf_step.c */
void wf_inst_fence(struct wf_inst *in);
void wf_inst_commit(struct wf_inst *in, const char *status, const char *error, int64_t wake_at,
                    json_t *waiting_for);
void wf_inst_resume_later(struct wf_inst *in);
void wf_inst_continue(struct wf_inst *in, int n);
void wf_inst_note(struct wf_inst *in, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * wf_effect.c. Each returns the number of results pushed onto L for the script (>= 0), or -1 when
 * the activation ended (committed) or waits for the database (then wf_inst_resume_later follows).
 */
int wf_effect_replay(struct wf_inst *in, lua_State *L, json_t *rec);
int wf_effect_perform(struct wf_inst *in, lua_State *L);
int wf_effect_finish_async(struct wf_inst *in);

#endif
