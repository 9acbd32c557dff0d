# Tongban Hub. `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON_SYS ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
BUF := $(VENV)/bin/buf
STAMP := $(VENV)/.installed

include make/protos.mk

.DEFAULT_GOAL := help
.PHONY: help venv demo test test-unit lint typecheck bench-reconcile clean

help:
	@echo "make demo   - set up, start a site on embedded SQLite, drive one real case end to end, stop"
	@echo "make test   - set up and run the whole suite (wire contract, import contracts, pytest)"
	@echo "make bench-reconcile - RBSR against shipping every digest, 100k and 1M cases (bench-results/)"
	@echo "make bench  - throughput against raw baselines in one run (PostgreSQL needed); writes bench-results/bench.json and docs/benchmarks.md"
	@echo "make soak   - half load for DURATION seconds (default 1800): RSS and latency over time"
	@echo "make lint / typecheck / protos / protos-check / clean"

$(STAMP): pyproject.toml
	$(PYTHON_SYS) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(PYTHON) -m adapters.demo

test: $(STAMP)
	$(MAKE) --no-print-directory protos-check
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check hub routing reconciliation audit adapters ops bench tests
	$(VENV)/bin/mypy hub routing reconciliation audit
	$(PYTHON) -m pytest

test-unit: $(STAMP)
	$(PYTHON) -m pytest tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check hub routing reconciliation audit adapters ops bench tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy hub routing reconciliation audit

bench-reconcile: $(STAMP)
	$(PYTHON) -m bench.reconcile

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Benchmarks: measurements, never tests. Need PostgreSQL on 127.0.0.1:5432; start their own nats-server and sites.
.PHONY: bench soak
bench: $(STAMP)
	PYTHONPATH=.:protos/gen $(PYTHON) -m bench.throughput

DURATION ?= 1800
soak: $(STAMP)
	PYTHONPATH=.:protos/gen $(PYTHON) -m bench.soak --seconds $(DURATION) $(SOAK_ARGS)
