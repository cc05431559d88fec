# clusterlab — the front door. `make help` lists every target.
#
#   make lab07 && ./lab07      build one stage and run it
#   make                       build every lab, the load client and the unit tests
#   make test                  run the whole harness through CTest (unit tests + one entry per lab)
#   make clean

CXX      ?= g++
CXXFLAGS ?= -O2 -Wall -Wextra -Werror
# Always on, whatever CXXFLAGS says: the language level, header dependency files, threads.
BASEFLAGS := -std=c++20 -pthread -MMD -MP -Icommon
LDLIBS   += -pthread

BUILD := build
LAB_DIRS := $(sort $(wildcard labs/lab[0-9][0-9]_*))
LABS     := $(foreach d,$(LAB_DIRS),$(firstword $(subst _, ,$(notdir $(d)))))
COMMON_SRCS := $(wildcard common/*.cpp)
COMMON_OBJS := $(COMMON_SRCS:%.cpp=$(BUILD)/%.o)
COMMON_LIB  := $(BUILD)/libcommon.a
UNIT_SRCS := $(wildcard harness/unit/test_*.cpp)
UNIT_BINS := $(UNIT_SRCS:harness/unit/%.cpp=$(BUILD)/unit/%)
TOOLS := loadgen

.PHONY: all labs test unit bench clean help $(LABS)
.DEFAULT_GOAL := all
# Keep object files make would otherwise delete as intermediates (and rebuild next time).
.SECONDARY:

all: $(LABS) $(TOOLS) $(UNIT_BINS)
labs: $(LABS)

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(BASEFLAGS) $(CXXFLAGS) -c $< -o $@

$(COMMON_LIB): $(COMMON_OBJS)
	@rm -f $@
	ar rcs $@ $^

# One rule per lab: every .cpp in labs/labNN_name/ links with common/ into ./labNN.
define LAB_RULE
$(1): $(BUILD)/bin/$(1)
	@# Replace by rename, never overwrite in place: copying onto a running ./labNN fails (ETXTBSY).
	@cmp -s $(BUILD)/bin/$(1) $(1) || { cp $(BUILD)/bin/$(1) $(1).tmp && mv -f $(1).tmp $(1); }
$(BUILD)/bin/$(1): $(patsubst %.cpp,$(BUILD)/%.o,$(wildcard $(2)/*.cpp)) $(COMMON_LIB)
	@mkdir -p $$(dir $$@)
	$$(CXX) $$(BASEFLAGS) $$(CXXFLAGS) $$^ -o $$@ $$(LDLIBS)
endef
$(foreach d,$(LAB_DIRS),$(eval $(call LAB_RULE,$(firstword $(subst _, ,$(notdir $(d)))),$(d))))

loadgen: $(BUILD)/harness/loadgen.o $(COMMON_LIB)
	$(CXX) $(BASEFLAGS) $(CXXFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/unit/%: $(BUILD)/harness/unit/%.o $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(BASEFLAGS) $(CXXFLAGS) $^ -o $@ $(LDLIBS)

unit: $(UNIT_BINS)
	@for t in $(UNIT_BINS); do $$t || exit 1; done

# --- the test harness -------------------------------------------------------------------
# pytest must be importable by the Python we run; the first python3 on PATH may be a separate
# build without it, so try the system one too.
PYTHON ?= $(shell for p in python3 /usr/bin/python3; do \
            if $$p -c 'import pytest' >/dev/null 2>&1; then command -v $$p; break; fi; done)
# `make test CTEST_ARGS='-L lab03 -V'` runs one lab and shows every test name.
CTEST_ARGS ?=

test: all
	@py=$$(sh harness/ensure-tools.sh "$(PYTHON)") && \
	  cmake -S harness -B $(BUILD)/ctest -DREPO=$(CURDIR) -DPYTHON=$$py >/dev/null && \
	  cd $(BUILD)/ctest && ctest --output-on-failure $(CTEST_ARGS)

bench: all
	@sh bench/bench.sh

# --- teaching tools (tools/*.py) --------------------------------------------------------
.PHONY: compare diff grade exercise
TOOL ?= loadgen
compare: all
	@py=$$(sh harness/ensure-tools.sh "$(PYTHON)") && $$py tools/compare.py --tool $(TOOL) --labs "$(LABS)"

diff:
	@/usr/bin/env python3 tools/labdiff.py $(A) $(B)

grade: all
	@py=$$(sh harness/ensure-tools.sh "$(PYTHON)") && $$py tools/grade.py $(if $(LAB),--lab $(LAB)) $(if $(DIR),--dir $(DIR)) $(if $(STUDENT),--student $(STUDENT)) $(if $(EXERCISE_ONLY),--exercise-only)

exercise:
	@/usr/bin/env python3 tools/exercise.py --lab $(LAB) --dest $(DEST)

clean:
	rm -rf $(BUILD) $(LABS) $(TOOLS)

help:
	@echo "clusterlab targets:"
	@echo "  make                 build every lab, the load client (./loadgen) and the unit tests"
	@for d in $(LAB_DIRS); do \
	  n=$$(basename $$d); printf '  make %-15s %s\n' "$${n%%_*}" "$$(sed -n 's|^// stage: ||p' $$d/$$n.cpp | head -1)"; done
	@echo "  make test            unit tests and every lab's harness, through CTest (ctest -L lab03: one lab)"
	@echo "  make unit            only the C++ unit tests"
	@echo "  make bench           the speed benchmark (wrk/ab/strace; nginx beside it if installed)"
	@echo "  make compare         every stage under the same workloads: notes/results.md + .svg (TOOL=ab|siege, LABS=\"lab01 lab04\")"
	@echo "  make diff A=lab08 B=lab09   what one stage adds to the previous one"
	@echo "  make grade [LAB=lab07] [STUDENT=copy] [EXERCISE_ONLY=1]   points per test, Exercise: N/M and Score: N/M per lab"
	@echo "  make exercise LAB=lab07 DEST=dir           a student copy with the stage's idea stubbed out"
	@echo "  make clean           remove build outputs"

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
