# im2txt-operator: one virtualenv, one test command, one demo command.
# Each part adds its own targets in mk/<part>.mk (bench-* targets append themselves to BENCH_TARGETS).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
EXTRAS := operator,trainer,storage,deploy,dev
BENCH_TARGETS :=

.DEFAULT_GOAL := help
.PHONY: help install test lint demo run bench clean

help:  ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(wildcard requirements/*.txt)
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv with everything the project needs

test: $(STAMP)  ## run the whole test suite (what CI runs), the real-API tier included (builds it once: make envtest)
	$(PY) -m ruff check .
	tools/gitops-health/build.sh >/dev/null  # the GitOps tests' real evaluators (tests build it too; here before any timeout)
	tools/helm/build.sh >/dev/null  # helm for the chart's tests (they build it too; here before any timeout)
	tools/kueue/build.sh >/dev/null  # Kueue's manager for the Kueue tier (cold: 10-20 min; here before any timeout)
	assets="$$(tools/envtest/build.sh --node $(VENV))" && KUBEBUILDER_ASSETS="$$assets" $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff
	$(PY) -m ruff check .

include $(sort $(wildcard mk/*.mk))

bench: $(BENCH_TARGETS)  ## run every benchmark (each prints a table with ratios against its baseline)

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .demo .bench
