# slmtune: the user's verbs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
HW ?= cpu
REMOTE ?=
BENCH_ARGS ?=
REV ?= HEAD
OUT ?= serve/int4
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEER_VENV := .venv-peer
PEER_STAMP := $(PEER_VENV)/.installed
PEER_ARGS ?=
NODE_STAMP := node_modules/.installed
CHROMIUM := /usr/bin/chromium
PORT ?= 8000
LOADTEST_ARGS ?=
EXPS ?=
# DVC's own process (Python processes of slmtune set theirs in src/slmtune/environment.py)
export DVC_NO_ANALYTICS := 1
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

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $(NODE_STAMP)

# The browser tests drive Debian's Chromium (Playwright cannot download a browser of its own here).
$(CHROMIUM):
	@if [ "$$(id -u)" != 0 ]; then echo "the browser tests need Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null

setup-test: $(STAMP) $(NODE_STAMP) $(CHROMIUM) ## also install the test tools: Azurite (npm ci) and Chromium (apt-get)

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

serve: $(STAMP) ## serve the pipeline's int4 model: OpenAI-compatible API and a web page on http://127.0.0.1:8000 (PORT=)
	$(BIN)/slmtune serve --model-path models/int4 --port $(PORT)

loadtest: $(STAMP) ## the server under 1, 4 and 16 clients vs offline classify, on the bench model -> bench/serve.json (LOADTEST_ARGS=)
	$(BIN)/python -m slmtune.serving.loadtest --bench-model --out bench $(LOADTEST_ARGS)

adapters: $(STAMP) ## one int4 LoRA base + an ONNX Runtime adapter per experiment on this base (EXPS="a b") -> models/int4-lora-base, adapters/
	$(BIN)/slmtune lora-base --base models/base --out models/int4-lora-base
	$(BIN)/slmtune export-experiments $(EXPS) --out adapters

bench: $(STAMP) ## time and size every artifact on a random ~200M Phi-3 into bench/ (5-6 min on 2 cores; BENCH_ARGS=--quick)
	$(BIN)/python -m slmtune.bench --out bench $(BENCH_ARGS)

$(PEER_STAMP): bench/peer-requirements.txt
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/pip install --quiet -r bench/peer-requirements.txt
	@touch $(PEER_STAMP)

bench-peer: $(STAMP) $(PEER_STAMP) ## slmtune vs Olive 0.13 on the same fine-tuning work, alternating pairs -> bench/peer.json (PEER_ARGS=--pairs 1)
	$(BIN)/python -m slmtune.bench.peer --out bench $(PEER_ARGS)

gpu-check: $(STAMP) ## on a CUDA machine: LoRA vs QLoRA peak memory, tokens/s (Phi-3-mini shape) -> bench/
	PY=$(BIN)/python WHEELS=/nonexistent bash scripts/gpu_check.sh

test: $(STAMP) $(NODE_STAMP) $(CHROMIUM) ## run the test suite (unit tests and an end-to-end pipeline run)
	$(BIN)/pytest -q

lint: $(STAMP) ## ruff
	$(BIN)/ruff check src tests

push: $(STAMP) ## push data and models to the DVC remote (REMOTE=name, default: the local folder remote)
	$(BIN)/dvc push $(if $(REMOTE),-r $(REMOTE))

pull: $(STAMP) ## pull data and models from the DVC remote (REMOTE=name)
	$(BIN)/dvc pull $(if $(REMOTE),-r $(REMOTE))

pull-model: $(STAMP) ## fetch just models/int4 of a git revision or experiment into OUT (REV=, OUT=, REMOTE=)
	$(BIN)/dvc get . models/int4 --rev $(REV) -o $(OUT) --force $(if $(REMOTE),--remote $(REMOTE))
	@echo "serve it: $(BIN)/slmtune classify \"what a day\" --model-path $(OUT)"

clean: ## remove the virtual environment and caches (not DVC's cache)
	rm -rf $(VENV) $(PEER_VENV) node_modules .pytest_cache .ruff_cache .slmtune-cache

.PHONY: help setup setup-test pull-model params repro train exp plots serve loadtest adapters bench bench-peer gpu-check test lint push pull clean
