# caspian — build, run, test, bench. `make run` and `make test` work on a bare
# Debian machine: they install the system packages and a venv themselves.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# System tools the product and its integration tests drive (BIRD 2 and FRR are the
# two routing daemon choices; a C compiler, venv
# and the Python headers are added below when missing).
APT_PACKAGES := iproute2 iputils-ping ethtool iperf3 bird2 frr procps
# Commands that prove the packages above are present (skip apt when they are).
APT_PROBES   := ip ping ethtool iperf3 bird vtysh ps
PYTEST_ARGS ?=
# Tools only the tests drive: a real browser loads the HTML report (tests/integration/test_html_report.py),
# tshark reads the pcapng captures back (tests/integration/test_capture.py).
TEST_APT_PACKAGES := chromium tshark
TEST_APT_PROBES   := chromium tshark
# apt-get install of the packages that follow it (as root, or through sudo)
APT_INSTALL = SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

.PHONY: all deps system-deps test-deps venv build debug run stubtest typecheck test unit integration fuzz sweep repeat bench clean

all: build

system-deps:
	@missing=""; pkgs="$(APT_PACKAGES)"; \
	for c in $(APT_PROBES); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	command -v cc >/dev/null 2>&1 || { missing="$$missing cc"; pkgs="$$pkgs gcc"; }; \
	$(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || { missing="$$missing venv"; pkgs="$$pkgs python3-venv"; }; \
	$(PYTHON) -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
	  || { missing="$$missing Python.h"; pkgs="$$pkgs python3-dev"; }; \
	if [ -n "$$missing" ]; then \
	  echo "caspian: installing system packages (missing:$$missing)"; $(APT_INSTALL) $$pkgs >/dev/null; \
	fi
	@# bird2's and frr's packages may enable system-wide daemons: caspian leaves them alone (it never
	@# stops, disables or restarts a host service). Its own daemons run in the routers' namespaces with
	@# their own config, control socket, pid and log files under the run's directory (docs/routing.md).

test-deps:
	@missing=""; for c in $(TEST_APT_PROBES); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  echo "caspian: installing test tools (missing:$$missing)"; $(APT_INSTALL) $(TEST_APT_PACKAGES) >/dev/null; \
	fi

$(VENV)/.deps: requirements.txt
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip >/dev/null
	$(PIP) install -q -r requirements.txt
	@touch $@

venv: $(VENV)/.deps

deps: system-deps venv

# In-place build of the compiled engine plus an editable install (console script `caspian`).
build: deps
	$(PY) setup.py -q build_ext --inplace
	@$(PIP) install -q --no-build-isolation --no-deps -e . >/dev/null

debug: deps
	CASPIAN_DEBUG=1 $(PY) setup.py -q build_ext --inplace --force

run: build
	$(VENV)/bin/caspian run $(SCENARIO)

# The compiled module's stub (emulator/_engine.pyi) against the module itself:
# every name, parameter and default. Only Cython's own artefacts are allowed through.
stubtest: build
	$(PY) -m mypy.stubtest --allowlist cext/stubtest-allowlist.txt emulator._engine

# The whole package against its type hints (settings in pyproject.toml): the seams
# between layers are typed, and this keeps them honest.
typecheck: build
	$(PY) -m mypy

# pytest exit 5 means "no tests collected": that must fail, never pass silently.
# The 20 slowest tests are listed at the end: the suite must stay under 15 min on 2 cores.
test: build test-deps stubtest typecheck
	@$(PY) -m pytest --durations=20 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

unit: build
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: build test-deps
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

# The loader's fuzzer, run long: every input gets a Scenario or one ScenarioError
# line, in bounded time (the unit suite runs it briefly). Prints the counts.
FUZZ_EXAMPLES ?= 10000
fuzz: venv
	CASPIAN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -s -p no:cacheprovider tests/unit/test_fuzz_scenarios.py $(PYTEST_ARGS)

# The run-time half of the input contract: every shipped scenario mutated one field
# at a time is refused by validate or runs to a verdict, never crashes (real
# testbeds: an hour or more; SWEEP_BUDGET_S caps it). Prints the counts.
SWEEP_BUDGET_S ?= 3600
sweep: build
	SWEEP_BUDGET_S=$(SWEEP_BUDGET_S) $(PY) tests/mutation_sweep.py --out sweep.jsonl

# The timing integration tests run RUNS times, STRESSED of them beside stress-ng --cpu 1,
# with the pass / fail / inconclusive counts per run and per test (issue 9: over an hour).
RUNS ?= 10
STRESSED ?= 5
repeat: build test-deps
	$(PY) tests/repeat_timing.py --runs $(RUNS) --stressed $(STRESSED) --out repeat-timing $(PYTEST_ARGS)

bench: build
	$(VENV)/bin/caspian bench

clean:
	rm -rf build *.egg-info emulator/*.so cext/*.c cext/*.html .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
