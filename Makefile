# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two pytest workers on two cores: keep BLAS to one thread each so they do not fight.
TEST_ENV := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: install demo test test-slow lint format bench bench-quick samples clean

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

samples: install
	$(BIN)/python sample_models/train.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
