# One-command set-up for a fresh machine: each target makes its own virtual environment (.venv) and installs the
# pinned dependencies (requirements.txt) before it runs. torch is pinned to the CPU build 2.13.0, which installs
# from the local disk here; an unpinned torch would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.hyperbrace-installed

export KERAS_BACKEND ?= torch

.PHONY: setup test test-fast demo clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# The whole suite. PostgreSQL (for the multi-machine tests) is installed and started on loopback, and Debian's
# Chromium (for the report's browser tests) installed, when this machine allows it (root and Debian's packages);
# otherwise those tests are skipped with the reason.
# The tests run in parallel processes (pytest-xdist, one per core): most of the suite's wall time is spent waiting
# for subprocesses (workers, engines, a browser) rather than computing, so two processes on two cores finish in
# about half the time. TEST_JOBS=0 runs them in this process, one after another.
TEST_JOBS ?= auto
test: setup
	bash scripts/install-browser.sh
	bash scripts/test-postgres.sh run $(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist worksteal --durations=15

# Unit tests only (seconds).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not postgres and not faults"

# The article's example on a stand-in data set, scaled to finish in a few minutes on a laptop CPU.
demo: setup
	$(BIN)/python examples/make_gala_standin.py --out examples/gala_data
	$(BIN)/python examples/gala_cnn.py --data examples/gala_data --quick

clean:
	rm -rf $(VENV) hyperbrace-runs examples/gala_data .pytest_cache
