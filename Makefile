# The two set-up commands of the README:
#   make demo   install makeparallel in .venv and show its speed-up on this machine
#   make test   install the dev dependencies in .venv and run every check and test
# Also: make docs builds the documentation site into site/ (mkdocs, strict: a warning
# fails); make test builds it too.
# PYTHON picks the interpreter (e.g. make test PYTHON=python3.13 VENV=.venv-3.13).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test docs site bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

demo: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m makeparallel demo

test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy --strict src
	$(BIN)/mypy --strict tests/typing
	$(BIN)/pyright --pythonpath $(BIN)/python tests/typing
	$(MAKE) --no-print-directory site
	$(BIN)/python -m pytest

docs: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	$(MAKE) --no-print-directory site

# the build itself, once the packages are installed (by docs or by test)
site:
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

bench: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/suite.py
