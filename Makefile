# Two entry points: `make demo` (main job) and `make test` (whole suite). Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch: a CUDA machine takes the regular wheel; elsewhere the CPU build (TORCH_SPEC overrides).
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 'torch>=2.5' || echo 'torch==2.13.0')

.PHONY: setup setup-demo demo test test-fast test-serial bench clean

# The demo needs encoderlab and its runtime dependencies only; the tests add their extras.
$(BIN)/.installed-demo: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(BIN)/.installed: $(BIN)/.installed-demo
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# ports of the official SQuAD v1.1 / v2.0 scripts, the metric tests' reference; --no-deps: they
	# need only absl, not TensorFlow
	$(BIN)/python -m pip install --quiet --no-deps tf-models-official==2.20.0 absl-py==2.5.1
	touch $@

setup: $(BIN)/.installed

setup-demo: $(BIN)/.installed-demo

demo: setup-demo
	$(BIN)/encoderlab demo

# Tests live in tiers (tests/unit, tests/e2e, tests/gpu; docs/testing.md). `make test` runs every tier
# in one worker per usable core (pytest-xdist), each test process and the processes it starts with
# one torch thread (tests/conftest.py), and prints the 20 slowest tests.
PYTEST_PARALLEL := -n auto --dist worksteal

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL) --durations=20

# units and small integrations only: under 2 minutes on a 2-core CPU, for use while developing
test-fast: setup
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL) tests/unit

# every tier in one process, for a debugger or a profile
test-serial: setup
	$(BIN)/python -m pytest -q --durations=20

bench: setup
	$(BIN)/python benchmarks/pretrain_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache
