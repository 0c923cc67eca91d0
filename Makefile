# Two entry points for a fresh machine: `make demo` and `make test` (see README).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint unit integration services bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Creates the SQLite database, loads a synthetic data set and serves the API on 127.0.0.1:8000.
demo: install
	$(BIN)/omnicrm demo

## Lint, types, architecture contract, then every test on SQLite and PostgreSQL.
test: install services lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

services:
	./.ci/services

bench: install
	$(BIN)/omnicrm bench ingest

## Removes the virtualenv, the caches and var/ (the default SQLite database and the generated data sets).
clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
	@echo "removed $(VENV), var/ (SQLite database var/omnicrm.db, generated data) and the tool caches"
