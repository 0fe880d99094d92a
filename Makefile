# keras_resnet: one command per job on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UNAME_S := $(shell uname -s)
UNAME_M := $(shell uname -m)
# CPU wheel (274 MB instead of 572 MB) where one is published; elsewhere
# (macOS, aarch64, Colab's preinstalled GPU build) setup.py keeps the TF it finds.
ifeq ($(UNAME_S)-$(UNAME_M),Linux-x86_64)
TF_FIRST := "tensorflow-cpu>=2.18,<2.22"
endif

.PHONY: install demo test test-all lint bench clean

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TF_FIRST),$(PY) -m pip install --quiet $(TF_FIRST))
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Resumable: an interrupted demo continues where it stopped; a finished one reports its
# result and exports again. Start over with `rm -r runs/demo`.
demo: install
	$(VENV)/bin/keras-resnet demo --output runs/demo

test: install lint
	$(PY) -m pytest

# The suite and its `exhaustive` cases (every depth of every ported and drop-in table).
test-all: install lint
	$(PY) -m pytest -m ""

# Full benchmark (14-16 min on 2 cores here; run it on a quiet machine), then the
# benchmarks/README.md tables and chart from its results file.
bench: install
	$(PY) -m benchmarks.bench
	$(PY) -m benchmarks.report

lint: install
	$(PY) -m ruff check keras_resnet tests benchmarks notebooks setup.py
	$(PY) -m ruff format --check keras_resnet tests benchmarks notebooks setup.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
