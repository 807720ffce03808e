# Each target builds its own .venv from pyproject.toml, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_TEST := $(VENV)/.stamp-test
STAMP_DEMO := $(VENV)/.stamp-demo
STAMP_BENCH := $(VENV)/.stamp-bench

.PHONY: demo test bench lint format clean

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

lint: $(STAMP_TEST)
	$(PY) -m ruff check minilinen tests examples benchmarks
	$(PY) -m ruff format --check minilinen tests examples benchmarks

format: $(STAMP_TEST)
	$(PY) -m ruff format minilinen tests examples benchmarks
	$(PY) -m ruff check --fix minilinen tests examples benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
