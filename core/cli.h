/*
 * cli.h — the subcommands of the `nudge` binary. Each lives in its own cmd_*.c file and returns the
 * process exit status: 0 success, 1 failure, 2 bad invocation (after printing the usage).
 */
#ifndef NG_CLI_H
#define NG_CLI_H

#include <libpq-fe.h>

struct ng_command {
	const char *name;
	const char *args;
	const char *help;
	int (*run)(int argc, char **argv); /* argv[0] is the command name */
};

/* Prints "usage: nudge NAME ARGS" for the named command to stderr and returns 2. */
int ng_cli_usage(const char *name);

int ng_cmd_serve(int argc, char **argv);
int ng_cmd_migrate(int argc, char **argv);
int ng_cmd_config(int argc, char **argv);
int ng_cmd_workflows(int argc, char **argv);
int ng_cmd_start(int argc, char **argv);
int ng_cmd_test(int argc, char **argv);
int ng_cmd_simulate(int argc, char **argv);
int ng_cmd_customer(int argc, char **argv);
int ng_cmd_why(int argc, char **argv);
int ng_cmd_trace(int argc, char **argv);
int ng_cmd_suppress(int argc, char **argv);
int ng_cmd_complaint(int argc, char **argv);
int ng_cmd_render(int argc, char **argv);
int ng_cmd_check(int argc, char **argv);
int ng_cmd_events(int argc, char **argv);
int ng_cmd_send_test(int argc, char **argv);

/* The database for a command: conninfo if given, else database.conninfo of the config file
 * (default ./nudge.conf.lua). NULL (after printing why) when neither works. Free it. */
char *ng_cli_conninfo(const char *config, const char *conninfo);

/* A blocking connection for a command, from the same lookup; NULL after printing why. */
PGconn *ng_cli_connect(const char *config, const char *conninfo);

#endif
