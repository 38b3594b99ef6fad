/*
 * main.c — the `nudge` command line: finds the subcommand and runs it. Every bad invocation gets a
 * usage message and exit status 2.
 */
#include "cli.h"
#include "ng.h"

#include <stdio.h>
#include <string.h>

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct ng_command commands[] = {
	{"serve", "[--config FILE]", "run the daemon (default config: ./nudge.conf.lua)", ng_cmd_serve},
	{"migrate", "[--config FILE | --conninfo CONNINFO] [--sql-dir DIR]",
	 "apply the SQL migrations in sql/ that the database has not seen", ng_cmd_migrate},
	{"config", "check FILE | keys", "validate a configuration file without running, or list every key", ng_cmd_config},
	{"workflows", "list|show NAME|deploy [DIR]|check PATH... [--config FILE | --conninfo C]",
	 "deployed workflows, versions and instances; deploy or validate workflow files",
	 ng_cmd_workflows},
	{"start", "WORKFLOW --customer ID [--config FILE | --conninfo C]",
	 "start an instance of a workflow for one customer now", ng_cmd_start},
	{"test", "[FILE...] [--config FILE | --conninfo C]",
	 "run workflow tests (workflows/*_test.lua) on the virtual clock", ng_cmd_test},
	{"simulate", "WORKFLOW [--customer FILE] [--events FILE] [--for 30d] [--conninfo C]",
	 "print a workflow's timeline for one customer on the virtual clock; sends nothing",
	 ng_cmd_simulate},
	{"customer", "export|forget ID|EMAIL|PHONE [--yes] [--config FILE | --conninfo C]",
	 "print everything held about a customer as JSON, or erase them (forget needs --yes)",
	 ng_cmd_customer},
	{"suppress", "add|remove ADDRESS --channel CH [--reason R] | list [--channel CH] [--config FILE | --conninfo C]",
	 "the suppression list by hand: nobody may message an added address, by any workflow",
	 ng_cmd_suppress},
	{"complaint", "FILE|- [--config FILE | --conninfo C]",
	 "a feedback-loop complaint (ARF report): suppress the address, withdraw consent, cancel queued marketing",
	 ng_cmd_complaint},
	{"why", "MESSAGE [--config FILE | --conninfo C]",
	 "how one message came to be and every decision about it, in time order", ng_cmd_why},
	{"trace", "CUSTOMER [--config FILE | --conninfo C]",
	 "everything that happened to one customer: events, workflows, messages, consent", ng_cmd_trace},
	{"render", "TEMPLATE --data FILE.json [--dir DIR]",
	 "print a message template rendered against a data file (every part, headers)",
	 ng_cmd_render},
	{"check", "PATH... [--data FILE.json]",
	 "check template folders/files (syntax, filters, partials, SMS size) and workflows",
	 ng_cmd_check},
	{"events", "send FILE [--url URL] [--key KEY] [--direct] [--config FILE | --conninfo C]",
	 "post a /v1/events body to the running daemon, or with --direct commit it into the database",
	 ng_cmd_events},
	{"send-test", "--channel CH --template NAME --to ADDR [--data JSON] [--instance NAME] [--config FILE]",
	 "render one template and send it now through the channel's plugin; print the result",
	 ng_cmd_send_test},
	{"version", "", "print the version", cmd_version},
	{"help", "[COMMAND]", "show this help, or one command's", cmd_help},
};

static void print_commands(FILE *out)
{
	fprintf(out, "usage: nudge COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < NG_ARRAY_LEN(commands); i++) {
		char head[96];
		snprintf(head, sizeof head, "%s %s", commands[i].name, commands[i].args);
		fprintf(out, "  %-44s %s\n", head, commands[i].help);
	}
	fprintf(out, "\nSee README.md and docs/ for depth.\n");
}

int ng_cli_usage(const char *name)
{
	for (size_t i = 0; i < NG_ARRAY_LEN(commands); i++) {
		if (strcmp(commands[i].name, name) == 0) {
			fprintf(stderr, "usage: nudge %s %s\n", commands[i].name, commands[i].args);
			return 2;
		}
	}
	print_commands(stderr);
	return 2;
}

static int cmd_version(int argc, char **argv)
{
	NG_UNUSED(argv);
	if (argc != 1)
		return ng_cli_usage("version");
	printf("nudge %s\n", NG_VERSION);
	return 0;
}

static int cmd_help(int argc, char **argv)
{
	if (argc == 1) {
		print_commands(stdout);
		return 0;
	}
	if (argc != 2)
		return ng_cli_usage("help");
	for (size_t i = 0; i < NG_ARRAY_LEN(commands); i++) {
		if (strcmp(commands[i].name, argv[1]) == 0) {
			printf("usage: nudge %s %s\n  %s\n", commands[i].name, commands[i].args,
			       commands[i].help);
			return 0;
		}
	}
	fprintf(stderr, "nudge: no command named '%s'\n", argv[1]);
	return ng_cli_usage("");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		print_commands(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
		return cmd_version(1, argv + 1);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return cmd_help(1, argv + 1);
	for (size_t i = 0; i < NG_ARRAY_LEN(commands); i++)
		if (strcmp(commands[i].name, argv[1]) == 0)
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "nudge: unknown command '%s'\n", argv[1]);
	print_commands(stderr);
	return 2;
}
