# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two pytest workers on two cores: keep BLAS to one thread each so they do not fight.
TEST_ENV := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: install demo test test-slow lint format bench bench-quick bench-env samples clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/lipcert inspect sample_models/digits_chain.onnx
	$(BIN)/lipcert estimate sample_models/digits_chain.onnx --method naive
	$(BIN)/lipcert estimate sample_models/digits_chain.onnx

lint: install
	$(BIN)/ruff check lipcert tests sample_models benchmarks
	$(BIN)/ruff format --check lipcert tests sample_models benchmarks

format: install
	$(BIN)/ruff format lipcert tests sample_models benchmarks
	$(BIN)/ruff check --fix lipcert tests sample_models benchmarks

test: lint
	$(TEST_ENV) $(BIN)/python -m pytest -n 2 -q

test-slow: install
	$(TEST_ENV) $(BIN)/python -m pytest -q -m slow

# Benchmarks (python -m benchmarks.harness; results in benchmarks/RESULTS.md and results.csv). Resumable: rows
# already in results.csv for this commit are skipped; BENCH_ARGS=--fresh re-runs them. Peers' packages
# (eclipse-nn) go into .bench-deps only, on PYTHONPATH for the harness alone, never into the main install.
BENCH_DEPS := .bench-deps
BENCH_ARGS ?=

$(BENCH_DEPS)/.installed: | install
	rm -rf $(BENCH_DEPS)
	$(BIN)/pip install --quiet --retries 1 --timeout 30 --target $(BENCH_DEPS) --no-deps eclipse-nn==0.1.7 \
		&& touch $@ \
		|| echo "bench-env: eclipse-nn could not be installed; RESULTS.md will say so"

bench-env: $(BENCH_DEPS)/.installed

bench: install bench-env
	$(TEST_ENV) $(BIN)/python -m benchmarks.harness $(BENCH_ARGS)

bench-quick: install bench-env
	$(TEST_ENV) $(BIN)/python -m benchmarks.harness --quick $(BENCH_ARGS)

samples: install
	$(BIN)/python sample_models/train.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
