# normlab: `make help` lists the targets.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Folder holding MNIST/raw/*.gz (and later cifar10.npz); may be read-only. Empty: download MNIST.
DATA   ?=
STAMP  := $(VENV)/.installed
ifndef SWEEP
SWEEP  := runs/ioffe2015/fig1_mnist/multirun_$(shell date +%Y-%m-%d_%H-%M-%S)
endif
DATA_ARG := $(if $(DATA),data.root=$(abspath $(DATA)),)

.DEFAULT_GOAL := help
.PHONY: help install reproduce reproduce-all test test-slow test-slurm lint format bench tuning constraints clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install normlab with its pinned dependencies

reproduce: $(STAMP)  ## Ioffe 2015 Fig. 1 at paper scale (6 runs, ~15 CPU-min); DATA=dir reads MNIST offline
	$(PY) -m normlab.train -m experiment=ioffe2015/fig1_mnist $(DATA_ARG) hydra.sweep.dir=$(SWEEP)
	$(PY) scripts/figures.py ioffe2015/fig1_mnist $(SWEEP) --out $(SWEEP)/figures

reproduce-all: $(STAMP)  ## every suite of both papers at CPU scale, 3 seeds, then the report (DATA=dir; SMOKE=1: a few steps each)
	$(PY) scripts/reproduce_all.py $(if $(DATA),--data $(abspath $(DATA)),) $(if $(SMOKE),--smoke,)

test: $(STAMP)  ## the test suite (fast tests; no network, no GPU)
	$(PY) -m pytest

test-slow: $(STAMP)  ## the slow tests too (and the GPU tests, skipped without a GPU); not the SLURM ones
	$(PY) -m pytest -m "not slurm"

test-slurm: $(STAMP)  ## sweeps through a real single-node SLURM of their own (root: installs slurm-wlm, munge; ~8 min)
	$(PY) -m pytest -m slurm -rs

lint: $(STAMP)  ## ruff lint and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)  ## ruff format and autofix
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: $(STAMP)  ## normlab vs plain PyTorch on the fig1 MLP (needs MNIST: DATA=dir)
	$(PY) scripts/bench.py mnist_mlp $(if $(DATA),--data-root $(abspath $(DATA)),)

tuning: $(STAMP)  ## the sweep that chose fig1's learning rate and init std
	$(PY) -m normlab.train -m experiment=ioffe2015/fig1_mnist_tuning $(DATA_ARG)

constraints: $(STAMP)  ## re-pin constraints.txt from the current venv
	$(PY) -m pip freeze --exclude-editable | grep -v '^normlab' > constraints.txt

clean:  ## remove the venv and caches (runs/ and data/ are kept)
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
