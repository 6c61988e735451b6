# Two entry points (README): `make demo` runs the main job, `make test` runs the test suite.
# Each creates its own virtual environment in .venv and installs what it needs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
REFERENCE ?= ../shared/reference/paper-2022

.PHONY: demo test venv lint clean

$(BIN)/lce: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(BIN)/lce

venv: $(BIN)/lce

demo: venv
	./scripts/demo.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: venv lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) lce-data .pytest_cache .mypy_cache .ruff_cache
