# Each target builds its own .venv from pyproject.toml, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_TEST := $(VENV)/.stamp-test
STAMP_DEMO := $(VENV)/.stamp-demo
STAMP_BENCH := $(VENV)/.stamp-bench
STAMP_CONFORMANCE := $(VENV)/.stamp-conformance
# Flax 0.12.8's source distribution carries its tests/linen: the conformance target.
FLAX_SDIST := .cache/conformance/flax-0.12.8

.PHONY: demo test bench conformance lint format clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP_DEMO): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[demo]'
	touch $@

$(STAMP_TEST): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(STAMP_BENCH): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

demo: $(STAMP_DEMO)
	$(PY) examples/digits.py

test: $(STAMP_TEST)
	$(PY) -m ruff check minilinen tests examples benchmarks
	$(PY) -m ruff format --check minilinen tests examples benchmarks
	$(PY) -m pytest -q -n 2 --dist loadfile tests

bench: $(STAMP_BENCH)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

$(STAMP_CONFORMANCE): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[conformance]'
	touch $@

$(FLAX_SDIST)/tests/linen: | $(PY)
	mkdir -p .cache/conformance
	$(PY) -m pip download --quiet --no-deps --no-binary :all: flax==0.12.8 -d .cache/conformance
	tar -xzf .cache/conformance/flax-0.12.8.tar.gz -C .cache/conformance
	touch $@

# Flax's own tests/linen, unmodified, on minilinen; fails if a test in conformance/passing.txt
# fails. CONFORMANCE_ARGS=--update adds new passes to that list.
conformance: $(STAMP_CONFORMANCE) $(FLAX_SDIST)/tests/linen
	$(PY) conformance/run.py $(CONFORMANCE_ARGS)

lint: $(STAMP_TEST)
	$(PY) -m ruff check minilinen tests examples benchmarks
	$(PY) -m ruff format --check minilinen tests examples benchmarks

format: $(STAMP_TEST)
	$(PY) -m ruff format minilinen tests examples benchmarks
	$(PY) -m ruff check --fix minilinen tests examples benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
