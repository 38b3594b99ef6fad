# nudge — build, test, demo, install.
#
#   make               the daemon (.build/nudge) and the channel plugins (.build/plugins/*.so)
#   make check         every suite, normal build and ASan+UBSan build, against a private PostgreSQL
#   make check-fast    the same, normal build only
#   make demo          a private PostgreSQL, the daemon with the shipped workflows, a sample event
#   make bench         the benchmarks under tests/bench
#   make chaos         crash tests (SIGKILLed daemons) and two daemons on one database, tests/chaos
#   make install       PREFIX=/usr/local (DESTDIR honoured)
#   make clean
#
# Top-level targets first make sure the Debian packages are present (contrib/install-deps.sh), then
# re-enter make so that pkg-config runs after they are installed.

PREFIX ?= /usr/local
# Build output lives in dot-directories: the top level holds only the project's own folders.
BUILD ?= .build
SAN ?=
CC ?= cc

PKGS := libuv libpq lua5.4 libcurl jansson openssl libesmtp-1.0
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPT := -O2
ifeq ($(SAN),1)
OPT := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

CFLAGS_ALL = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-format-truncation -g $(OPT) -fPIC -MMD -MP \
	-Icore -Icore/include -Itests $(PKG_CFLAGS) $(CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -lhttp_parser -lpthread -lm -ldl $(LDLIBS)
LDFLAGS_ALL = $(filter -fsanitize=%,$(OPT)) -rdynamic $(LDFLAGS)

CORE_SRC := $(filter-out core/main.c,$(wildcard core/*.c))
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libnudge.a

PLUGINS := $(notdir $(patsubst %/,%,$(wildcard plugins/*/)))
PLUGIN_SO := $(PLUGINS:%=$(BUILD)/plugins/%.so)

TEST_SUPPORT_SRC := tests/testlib.c $(wildcard tests/support/*.c)
TEST_SUPPORT_OBJ := $(TEST_SUPPORT_SRC:%.c=$(BUILD)/%.o)
TEST_PLUGIN_SRC := $(wildcard tests/plugins/*.c)
TEST_PLUGIN_SO := $(TEST_PLUGIN_SRC:tests/plugins/%.c=$(BUILD)/tests/plugins/%.so)
TEST_SRC := $(wildcard tests/unit/test_*.c)
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all build check check-fast check-run demo demo-run bench fuzz chaos install clean deps format

all: deps
	@$(MAKE) --no-print-directory build

build: $(BUILD)/nudge $(PLUGIN_SO) $(TEST_BIN) $(TEST_PLUGIN_SO)

deps:
	@contrib/check-deps.sh || contrib/install-deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(LIB): $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/nudge: $(BUILD)/core/main.o $(LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(TEST_SUPPORT_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

# A plugin is every .c file in its folder, linked into one shared object against nothing but the
# public header (the host's services arrive as a table of function pointers). -z defs makes a call
# into nudge's own symbols a link error instead of something that happens to resolve at dlopen.
.SECONDEXPANSION:
$(BUILD)/plugins/%.so: $$(wildcard plugins/%/*.c plugins/%/*.h) core/include/nudge/plugin.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -shared -Wl,-z,defs -o $@ $(filter %.c,$^) $(LDFLAGS_ALL) $(PKG_LIBS)

# Deliberately broken (and one well-behaved) plugins for tests/unit/test_plugins.c.
$(BUILD)/tests/plugins/%.so: tests/plugins/%.c core/include/nudge/plugin.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -shared -Wl,-z,defs -o $@ $< $(LDFLAGS_ALL)

check: deps
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory BUILD=.build-asan SAN=1 build
	@tests/run.sh .build .build-asan

check-fast: deps
	@$(MAKE) --no-print-directory build
	@tests/run.sh .build

demo: deps
	@$(MAKE) --no-print-directory build
	@contrib/demo.sh

bench: deps
	@$(MAKE) --no-print-directory build
	@tests/bench/run.sh

# Crash and multi-daemon tests against real `nudge serve` processes (tests/chaos/), minutes long.
chaos: deps
	@$(MAKE) --no-print-directory build
	@tests/chaos/run.sh

# libFuzzer targets tests/fuzz/fuzz_*.c, FUZZ_SECONDS each (default 600).
fuzz: deps
	@tests/fuzz/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/nudge/plugins \
		$(DESTDIR)$(PREFIX)/share/nudge/sql $(DESTDIR)$(PREFIX)/share/nudge/workflows \
		$(DESTDIR)$(PREFIX)/share/nudge/templates $(DESTDIR)$(PREFIX)/include/nudge \
		$(DESTDIR)$(PREFIX)/share/nudge/mappers
	install -m 755 $(BUILD)/nudge $(DESTDIR)$(PREFIX)/bin/nudge
	$(if $(PLUGIN_SO),install -m 755 $(PLUGIN_SO) $(DESTDIR)$(PREFIX)/lib/nudge/plugins/)
	install -m 644 sql/*.sql $(DESTDIR)$(PREFIX)/share/nudge/sql/
	$(if $(wildcard workflows/*.lua),install -m 644 workflows/*.lua $(DESTDIR)$(PREFIX)/share/nudge/workflows/)
	$(if $(wildcard templates/*),cp -R templates/. $(DESTDIR)$(PREFIX)/share/nudge/templates/)
	install -m 644 contrib/mappers/*.lua $(DESTDIR)$(PREFIX)/share/nudge/mappers/
	install -m 644 contrib/nudge.conf.lua $(DESTDIR)$(PREFIX)/share/nudge/nudge.conf.lua.example
	$(if $(wildcard core/include/nudge/*.h),install -m 644 core/include/nudge/*.h $(DESTDIR)$(PREFIX)/include/nudge/)

format:
	clang-format -i core/*.c core/*.h $(wildcard core/include/nudge/*.h) tests/*.c tests/*.h \
		$(wildcard tests/unit/*.c tests/support/*.c tests/support/*.h plugins/*/*.c \
		plugins/*/*.h tests/plugins/*.c contrib/plugin-example/*.c)

clean:
	rm -rf .build .build-asan .build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
