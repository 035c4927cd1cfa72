# hist: `make demo` runs the sample job end to end; `make test` runs the test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STATE := .hist
PG_PORT ?= 55432
TEST_TZ ?= America/New_York# hosts are not all UTC: the suite runs off UTC (override: make test TEST_TZ=Asia/Tokyo)

.PHONY: demo test lint bench timescaledb stop clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

timescaledb:
	bash tools/timescaledb.sh install

demo: $(BIN)/.installed timescaledb
	STATE=$(STATE) PG_PORT=$(PG_PORT) bash tools/demo.sh

test: $(BIN)/.installed timescaledb
	TZ=$(TEST_TZ) $(BIN)/pytest -q

bench: $(BIN)/.installed timescaledb
	$(BIN)/python tools/bench.py

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

stop:
	bash tools/timescaledb.sh stop $(abspath $(STATE))/pg

clean: stop
	rm -rf $(STATE)
