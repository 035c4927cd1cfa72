# hist: `make demo` runs the sample job end to end; `make test` runs the test suite; `make check-plain-install`
# checks that the package installed with no extras (what `pip install .` gives) runs a local-lake ingest.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STATE := .hist
PG_PORT ?= 55432
TEST_TZ ?= America/New_York# hosts are not all UTC: the suite runs off UTC (override: make test TEST_TZ=Asia/Tokyo)

.PHONY: demo test check-plain-install lint bench bench-cluster timescaledb stop clean

# pip's notes about this machine's package mirrors and setuptools' editable-install banner are noise
PIP_NOISE := is ignored: it is neither a file nor a directory
QUIET_PIP := set -o pipefail; PYTHONWARNINGS=ignore $(BIN)/pip install -q

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@$(QUIET_PIP) --upgrade pip 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	@$(QUIET_PIP) -e '.[dev,cluster]' 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	touch $@

timescaledb:
	bash tools/timescaledb.sh install

demo: $(BIN)/.installed timescaledb
	STATE=$(STATE) PG_PORT=$(PG_PORT) bash tools/demo.sh

test: $(BIN)/.installed timescaledb
	TZ=$(TEST_TZ) $(BIN)/pytest -q --durations=15  # the slowest tests: CI must stay under 15 minutes on 2 cores

check-plain-install: $(BIN)/.installed timescaledb
	PYTHON=$(PYTHON) bash tools/check_plain_install.sh

bench: $(BIN)/.installed timescaledb
	$(BIN)/python tools/bench.py

bench-cluster: $(BIN)/.installed timescaledb
	$(BIN)/python tools/bench_cluster.py

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

stop:
	bash tools/timescaledb.sh stop $(abspath $(STATE))/pg

clean: stop
	rm -rf $(STATE)
