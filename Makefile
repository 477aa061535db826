# The README's two commands. Each works on a fresh clone: it creates .venv, installs the package with
# its pinned torch, then acts. torch 2.14.1 + torchvision 0.29.1 are pinned together: nnU-Net pulls
# torchvision (through timm), and torchvision 0.29 imports only with torch 2.14.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint setup

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PINS) -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nnunet-unlearning demo --workdir demo_run --overwrite

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q -rs
