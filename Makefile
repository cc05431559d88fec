# clusterlab — the front door. `make help` lists every target.
#
#   make lab07 && ./lab07      build one stage and run it
#   make                       build every lab, the load client and the unit tests
#   make test                  run the whole harness through CTest (unit tests + one entry per lab)
#   make fuzz                  libFuzzer targets (clang), FUZZ_SECONDS each; not part of `make all`
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

# lab15's separate worker program, for `./lab15 --exec ./lab15_worker` (Node's setupPrimary({exec})):
# its own main(), and the same worker code ./lab15 runs when it re-runs itself.
lab15: lab15_worker
lab15_worker: $(BUILD)/labs/lab15_cluster/exec/lab15_worker.o $(BUILD)/labs/lab15_cluster/worker.o $(COMMON_LIB)
	$(CXX) $(BASEFLAGS) $(CXXFLAGS) $^ -o $@.tmp $(LDLIBS) && mv -f $@.tmp $@

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
# `make test LOAD=2` runs the suite beside two CPU-bound processes of its own (a busy machine),
# `make test REPEAT=3` runs each entry up to three times, stopping at its first failure.
CTEST_ARGS ?=
LOAD ?= 0
REPEAT ?=

test: all
	@py=$$(sh harness/ensure-tools.sh "$(PYTHON)") && \
	  cmake -S harness -B $(BUILD)/ctest -DREPO=$(CURDIR) -DPYTHON=$$py >/dev/null && \
	  cd $(BUILD)/ctest && $$py $(CURDIR)/harness/suite.py --load $(LOAD) -- \
	    ctest --output-on-failure $(if $(REPEAT),--repeat until-fail:$(REPEAT)) $(CTEST_ARGS)

bench: all
	@sh bench/bench.sh

# --- fuzzing (clang's libFuzzer with ASan and UBSan) -------------------------------------
# `make fuzz` builds fuzz/fuzz_*.cpp and common/ with clang into build/fuzz/, then runs each target
# for FUZZ_SECONDS on the seeds in fuzz/corpus/NAME (new inputs go to build/fuzz/corpus/NAME, a
# crashing input to build/fuzz/crash-NAME-*). A crash or a disagreement fails the target.
# clang is a developer tool here, like ab and siege: without it the target says so and skips,
# except in CI (CI=true), where a missing clang is a failure.
.PHONY: fuzz
FUZZ_CXX ?= clang++
FUZZ_SECONDS ?= 60
FUZZ_SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CXXFLAGS := -std=c++20 -g -O1 -Wall -Wextra -Werror -Icommon $(FUZZ_SANITIZE)
FUZZ_NAMES := $(patsubst fuzz/fuzz_%.cpp,%,$(wildcard fuzz/fuzz_*.cpp))
FUZZ_BINS := $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)
FUZZ_COMMON_OBJS := $(COMMON_SRCS:%.cpp=$(BUILD)/fuzz/%.o)

$(BUILD)/fuzz/common/%.o: common/%.cpp
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -MMD -MP -fsanitize=fuzzer-no-link -c $< -o $@

$(BUILD)/fuzz/fuzz_%: fuzz/fuzz_%.cpp $(FUZZ_COMMON_OBJS)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -fsanitize=fuzzer $^ -o $@ -pthread

fuzz:
	@if ! command -v $(FUZZ_CXX) >/dev/null 2>&1 || \
	    ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' | \
	      $(FUZZ_CXX) -x c++ -fsanitize=fuzzer - -o /dev/null >/dev/null 2>&1; then \
	  echo "make fuzz: $(FUZZ_CXX) with libFuzzer is not installed (apt-get install clang libclang-rt-14-dev): skipped"; \
	  [ -z "$$CI" ] || { echo "make fuzz: CI must install it"; exit 1; }; \
	  exit 0; fi; \
	$(MAKE) --no-print-directory $(FUZZ_BINS) && \
	for n in $(FUZZ_NAMES); do \
	  mkdir -p $(BUILD)/fuzz/corpus/$$n; \
	  echo "fuzz $$n: $(FUZZ_SECONDS) s (seeds: fuzz/corpus/$$n)"; \
	  $(BUILD)/fuzz/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -timeout=10 -close_fd_mask=2 \
	    -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/crash-$$n- \
	    $(BUILD)/fuzz/corpus/$$n fuzz/corpus/$$n 2>$(BUILD)/fuzz/$$n.log; \
	  status=$$?; grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^Done' $(BUILD)/fuzz/$$n.log | sed 's/^/  /'; \
	  if [ $$status -ne 0 ]; then \
	    tail -n 60 $(BUILD)/fuzz/$$n.log; \
	    echo "make fuzz: fuzz_$$n failed; reproduce with: $(BUILD)/fuzz/fuzz_$$n $(BUILD)/fuzz/crash-$$n-*"; \
	    exit 1; fi; \
	done

# --- teaching tools (tools/*.py) --------------------------------------------------------
.PHONY: compare diff grade exercise timeline
TOOL ?= loadgen
compare: all
	@py=$$(sh harness/ensure-tools.sh "$(PYTHON)") && $$py tools/compare.py --tool $(TOOL) --labs "$(LABS)" $(if $(SAVE),--save) $(if $(OUT),--out $(OUT))

diff:
	@/usr/bin/env python3 tools/labdiff.py $(if $(A),$(A) $(B),$(if $(B),--base $(B)))

# `make timeline LAB=lab09 [OUT=file.svg] [SPAN=seconds]`: the lab's scenario under load, drawn.
timeline:
	@test -n "$(LAB)" || { echo "usage: make timeline LAB=lab09 [OUT=file.svg] [SPAN=seconds]" >&2; exit 2; }
	@/usr/bin/env python3 tools/timeline.py --lab $(LAB) $(if $(OUT),--out $(OUT)) $(if $(SPAN),--span $(SPAN))

grade: all
	@py=$$(sh harness/ensure-tools.sh "$(PYTHON)") && $$py tools/grade.py $(if $(LAB),--lab $(LAB)) $(if $(DIR),--dir $(DIR)) $(if $(STUDENT),--student $(STUDENT)) $(if $(EXERCISE_ONLY),--exercise-only)

exercise:
	@/usr/bin/env python3 tools/exercise.py --lab $(LAB) --dest $(DEST)

clean:
	rm -rf $(BUILD) $(LABS) $(TOOLS) lab15_worker

help:
	@echo "clusterlab targets:"
	@echo "  make                 build every lab, the load client (./loadgen) and the unit tests"
	@for d in $(LAB_DIRS); do \
	  n=$$(basename $$d); printf '  make %-15s %s\n' "$${n%%_*}" "$$(sed -n 's|^// stage: ||p' $$d/$$n.cpp | head -1)"; done
	@echo "  make test            unit tests and every lab's harness, through CTest, then the ten slowest tests"
	@echo "                       (CTEST_ARGS='-L lab03': one lab; LOAD=2: beside two CPU hogs; REPEAT=3: each entry until it fails, 3 times)"
	@echo "  make unit            only the C++ unit tests"
	@echo "  make bench           the speed benchmark (wrk/ab/strace; nginx beside it if installed)"
	@echo "  make compare         every stage under the same workloads: build/compare/results.md + .svg (TOOL=ab|siege, LABS=\"lab01 lab04\", OUT=dir)"
	@echo "  make compare SAVE=1  a full run that replaces the committed notes/results.md + .svg"
	@echo "  make diff B=lab09           what a stage adds to its base (its `// base:` line); A=labNN to choose"
	@echo "  make timeline LAB=lab09      a scripted scenario under load, drawn: build/timeline/lab09.svg (OUT=file.svg)"
	@echo "  make grade [LAB=lab07] [STUDENT=copy] [EXERCISE_ONLY=1]   points per test, Exercise: N/M and Score: N/M per lab"
	@echo "  make exercise LAB=lab07 DEST=dir           a student copy with the stage's idea stubbed out"
	@echo "  make fuzz            libFuzzer targets for the HTTP parser, JSON and the channel (clang; FUZZ_SECONDS=60 each)"
	@echo "  make clean           remove build outputs"

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
