# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv if missing, installs normrnn, runs the main job: the quick normalization study
#   make test   creates .venv if missing, installs with dev extras, runs ruff, mypy and pytest
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# --no-compile: Python compiles the modules it imports on first use; compiling all of torch at install took 30 s
PIP := $(BIN)/python -m pip install --quiet --no-compile --constraint constraints.txt

.PHONY: demo test test-fast lint typecheck docs bench gpu-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) --editable '.[study]'
	@touch $@

# the dev extra includes the study extra: one pip run installs both (and marks both installed)
$(VENV)/.installed-dev: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) --editable '.[dev]'
	@touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/normrnn study --preset quick --out study-quick

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests docs/_ext

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q src tests

# the edit loop: every test but the slow ones (processes, the docs site, compilers), no lint or type check
test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m "not slow" src tests

# the site from docs/ (guides and the API reference from the docstrings) into site/; warnings are errors
docs: $(VENV)/.installed-dev
	$(BIN)/mkdocs build --strict --site-dir site

bench: $(VENV)/.installed
	$(BIN)/normrnn bench norms --json bench-norms.json
	$(BIN)/normrnn bench layers --json bench-layers.json

# On a GPU machine: the CUDA tests, bench cells with the Triton backend, kernel bandwidth and the gpu study, from
# the working tree with the machine's own python3 (installing nothing). Without CUDA: one line, interpreter tests.
GPU_PYTHON := $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	PYTHONPATH=src $(GPU_PYTHON) -m normrnn.gpu_check --out gpu-check

clean:
	rm -rf $(VENV) study-quick site .pytest_cache .ruff_cache .hypothesis build src/*.egg-info
