# Two entry points (README): `make demo` runs the main job, `make test` runs the test suite.
# Each creates its own virtual environment in .venv and installs what it needs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
REFERENCE ?= ../shared/reference/paper-2022

.PHONY: demo test venv lint browser clean

$(BIN)/lce: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(BIN)/lce

venv: $(BIN)/lce

# Until the embedded synthetic demo lands, the main job builds the warehouse from the paper's
# published data: read from $(REFERENCE) when present, else downloaded (sha256-checked).
DEMO_HOME := lce-data/paper-2022
demo: venv
	@echo "== lce: building the warehouse from the paper's published data into $(DEMO_HOME)"
	LCE_HOME=$(DEMO_HOME) $(BIN)/lce reference load $(if $(wildcard $(REFERENCE)/models_dissect_profiles_raw.csv),--from $(REFERENCE),)
	LCE_HOME=$(DEMO_HOME) $(BIN)/lce build
	@COLUMNS=$${COLUMNS:-120} LCE_HOME=$(DEMO_HOME) $(BIN)/lce summary
	@echo "== done: the shared file is $(DEMO_HOME)/lce.duckdb (open it with DuckDB 1.x)"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The explorer's browser test drives Debian's chromium through chromium-driver; install them when
# missing (root with apt). Where that is impossible the test skips and says why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver) || \
		echo "warning: could not install chromium chromium-driver; the browser test will skip"

test: venv lint browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) lce-data .pytest_cache .mypy_cache .ruff_cache
