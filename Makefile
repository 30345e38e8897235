# slmtune: the user's verbs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
HW ?= cpu
REMOTE ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
export PATH := $(abspath $(BIN)):$(PATH)

help: ## list the targets
	@grep -E '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP) ## create .venv from the pinned dependencies (requirements.lock)

params: $(STAMP) ## compose conf/ into params.yaml for plain `dvc repro` (HW=cpu|cuda)
	$(BIN)/slmtune params hw=$(HW)

repro: $(STAMP) ## reproduce the whole pipeline on params.yaml (the embedded default: tiny Phi-3 on CPU)
	$(BIN)/dvc repro

train: $(STAMP) ## run the pipeline up to train_lora as an experiment (HW=cpu|cuda|cuda_multi|azureml)
	$(BIN)/slmtune check-hw hw=$(HW)
	$(BIN)/dvc exp run -S hw=$(HW) train_lora

exp: $(STAMP) ## show experiments with their params and metrics
	$(BIN)/dvc exp show --md

plots: $(STAMP) ## render the loss curve and confusion matrices to dvc_plots/index.html
	$(BIN)/dvc plots show

test: $(STAMP) ## run the test suite (unit tests and an end-to-end pipeline run)
	$(BIN)/pytest -q

lint: $(STAMP) ## ruff
	$(BIN)/ruff check src tests

push: $(STAMP) ## push data and models to the DVC remote (REMOTE=name, default: the local folder remote)
	$(BIN)/dvc push $(if $(REMOTE),-r $(REMOTE))

pull: $(STAMP) ## pull data and models from the DVC remote (REMOTE=name)
	$(BIN)/dvc pull $(if $(REMOTE),-r $(REMOTE))

clean: ## remove the virtual environment and caches (not DVC's cache)
	rm -rf $(VENV) .pytest_cache .ruff_cache .slmtune-cache

.PHONY: help setup params repro train exp plots test lint push pull clean
