# wg-tuner: the two set-up commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: deps venv demo test test-stress lint typecheck pytest bench bench-journal bench-kernel clean

deps:
	@scripts/install-deps.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: deps venv
	@scripts/demo.sh

lint: venv
	$(VENV)/bin/ruff check tuner tests bench
	$(VENV)/bin/ruff format --check tuner tests bench

typecheck: venv
	$(VENV)/bin/mypy

pytest: deps venv
	@scripts/run-tests.sh

test: lint typecheck pytest

# Timing-sensitive tests 10x and the suite (VM modules included) 2x beside a busy-loop hog
# (STRESS_RUNS, STRESS_SUITE_RUNS, STRESS_HOGS).
test-stress: deps venv
	@scripts/stress.sh

bench: deps venv
	$(PY) -m bench.run --out docs/benchmarks.md

bench-journal: venv
	$(PY) -m bench.run --out docs/benchmarks.md --only journal

# Kernel WireGuard reads in a VM (Debian's kernel, as in make test): about 3 minutes.
bench-kernel: deps venv
	$(PY) -m bench.run --out docs/benchmarks.md --only kernel

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
