# The README's commands. Each works on a fresh clone: it creates .venv, installs the package with
# its pinned torch (constraints.txt: torch and torchvision are pinned together), then acts.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint setup

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch torchvision -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nnunet-unlearning demo --workdir demo_run --overwrite

# ruff's lint rules and formatting, then mypy over nnunet_unlearning/, trainers/ and benchmarks/ (pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Two pytest workers (pytest-xdist), one test file each at a time, so a file's fixtures are built once: most of
# the suite waits on one single-threaded nnU-Net process, so one worker leaves a core idle (measured on the
# 2-core machine: 21:06 with one, 13:58 with two, docs/benchmarks.md). Each worker builds its own session
# fixtures (the preprocessed nnU-Net world, the short runs), so more workers mostly repeat that work.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -rs -n $(TEST_WORKERS) --dist loadfile

test: lint
	$(PYTEST)

# the suite without the end-to-end nnU-Net tests (marked slow); no lint
test-fast: $(STAMP)
	$(PYTEST) -m "not slow"
