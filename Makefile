# Two commands for a fresh machine: `make demo` (install + main job on digits), `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Prefect offline: no telemetry, patient embedded server on a busy 2-core machine.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90

.PHONY: install demo test

$(BIN)/mixnn: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# Benchmark-only packages (cleanlab), for the suite's quick check in the tests; never a runtime need.
$(VENV)/.bench-requirements: $(BIN)/mixnn bench/requirements.txt
	$(BIN)/pip install --quiet -r bench/requirements.txt
	touch $@

install: $(BIN)/mixnn

demo: install
	$(BIN)/mixnn clean digits --run-dir data/runs/demo-digits --noise-mode symmetric --noise-rate 0.4

test: install $(VENV)/.bench-requirements
	$(BIN)/ruff check .
	$(BIN)/python -m pytest
