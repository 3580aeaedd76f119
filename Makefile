# Every target does its own set-up: a fresh clone needs only Python 3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck pytest dev ui clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Runs the main job on the embedded default: demo catalog in SQLite, local Stripe emulator, SQLite Dagster storage.
demo: $(STAMP)
	$(BIN)/cms-stripe demo

## ruff, mypy on the package and its tests, then the whole pytest suite.
test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check cms_stripe cms_stripe_tests

typecheck: $(STAMP)
	$(BIN)/mypy cms_stripe cms_stripe_tests

## Two passes: everything but the wall-clock pacing tests on two workers (most tests wait on processes,
## HTTP and PostgreSQL, so two workers halve the time on two cores), then the pacing tests alone, so no
## other test's CPU load can skew what they measure. Exit status 5 is "no test selected" (PYTEST_ARGS
## naming only tests of the other pass).
pytest: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not timing" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/python -m pytest -p no:xdist -m timing $(PYTEST_ARGS) || [ $$? -eq 5 ]

## The Dagster UI on the demo's result (after `make demo`): its instance, its CMS, and the emulator serving the
## Stripe state the demo left; no environment variable to type.
dev: $(STAMP)
	$(BIN)/cms-stripe dev --dir .demo

## The Dagster UI on your own catalog and the embedded default instance (.dagster_home, settings from .env).
ui: $(STAMP)
	$(BIN)/python -c 'import pathlib; from cms_stripe.cli import _embedded_home; _embedded_home(pathlib.Path(".dagster_home").resolve())'
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
