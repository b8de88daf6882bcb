# ncr-trio: `make run` starts the server on the embedded default; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export NCR_TOOLS ?= $(HOME)/.cache/ncr-trio/tools
export CARGO_TARGET_DIR ?= $(HOME)/.cache/ncr-trio/cargo-target
export PATH := $(NCR_TOOLS)/bin:$(PATH)

NATIVE_SRC := native/Cargo.toml $(wildcard native/src/*.rs)

.PHONY: run test tools venv bench bench-cluster clean conformance cluster

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Cargo.toml $(NATIVE_SRC)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

tools: $(NCR_TOOLS)/.installed-$(shell sha1sum scripts/install-tools.sh | cut -c1-12)

$(NCR_TOOLS)/.installed-%:
	bash scripts/install-tools.sh
	touch $@

run: venv
	$(BIN)/ncr-trio serve

# PostgreSQL, versitygw, three nodes and HAProxy on 127.0.0.1:5000 (files in data/cluster; docs/cluster.md). Ctrl-C stops all.
cluster: venv tools
	PYTHONPATH=. $(BIN)/python scripts/cluster.py

test: venv tools
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

bench: venv tools
	$(BIN)/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['bench'], sep='\n')" | $(BIN)/pip install -q -r /dev/stdin
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# 1, 2 and 3 nodes behind HAProxy, and Distribution 3.1.1: request rates, CPU per request, pulls (benchmarks/cluster.py)
bench-cluster: venv tools
	$(BIN)/python -m benchmarks.cluster $(BENCH_ARGS)

clean:
	rm -rf $(VENV) data .pytest_cache
