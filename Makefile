# The README's commands. Each bootstraps .venv from the pinned lock file when needed.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
# pytest workers (pytest-xdist); each test file runs in one worker so its module fixtures are made once
TEST_WORKERS ?= 2
# A Python >= 3.12 (pymc 6 and arviz 1 need it): python3.13, python3.12, then python3 if new enough.
PYTHON ?= $(shell for p in python3.13 python3.12 python3; do \
	  $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { echo $$p; break; }; \
	done)
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTENSOR_FLAGS ?= base_compiledir=$(CURDIR)/.cache/pytensor

.PHONY: run test test-slow test-slow-ci mutate lint format clean-results

$(VENV)/.installed: requirements.lock pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "qialign needs Python >= 3.12 (tried python3.13, python3.12, python3). Install one, or run 'make PYTHON=/path/to/python3.12'." >&2; \
	  exit 1; fi
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

# Byte-compile the package once so that every step's process does not recompile it on import
# (PYTHONDONTWRITEBYTECODE may be set); stale .pyc files are ignored by Python.
run: $(VENV)/.installed
	$(BIN)/python -m compileall -q src
	$(BIN)/snakemake --cores $(CORES)

test: $(VENV)/.installed
	$(BIN)/python -m compileall -q src
	$(BIN)/pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile

test-slow: $(VENV)/.installed
	$(BIN)/pytest -m slow

# the slow checks short enough for every CI run (about a minute together): the shipped default
# trial's board sections and PDF print, the battery's step-vs-ETI verdict both ways and the
# permutation p-value's uniformity over 200 null trials
CI_SLOW = tests/test_report_board.py tests/test_robustness_slow.py
test-slow-ci: $(VENV)/.installed
	$(BIN)/pytest -m slow -n $(TEST_WORKERS) --dist loadfile $(CI_SLOW)

# Mutation testing ([tool.mutmut] in pyproject.toml lists the modules and their tests); the fits the
# estimand tests need are made once and kept (the sampler is not what is mutated). Prints survivors.
mutate: $(VENV)/.installed
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements-mutate.lock
	QIALIGN_TEST_FIT_CACHE=$(CURDIR)/.cache/mutmut-fits $(BIN)/mutmut run --max-children $(CORES)
	$(BIN)/mutmut results

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint

format: $(VENV)/.installed
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/snakefmt .

clean-results:
	rm -rf results reports .snakemake
