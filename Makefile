# The two commands of the README: `make demo` and `make test`. Each sets up what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
IDP := tests/idp

.PHONY: demo test lint deps bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -U "pip>=25.1"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e . --group dev
	touch $@

$(IDP)/node_modules/.installed: $(IDP)/package.json $(IDP)/package-lock.json
	npm ci --prefix $(IDP) --no-audit --no-fund --loglevel=error
	touch $@

deps: $(BIN)/.installed $(IDP)/node_modules/.installed

lint: deps
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

demo: deps
	$(BIN)/python tests/demo.py

# Benchmarks of issue 8 (see benchmarks/__main__.py); the peers they compare with live in
# the `bench` dependency group only. Writes benchmarks/results/latest.{md,png,json} and the
# README's Benchmarks section. hyperfine is used for the start-up figures when installed.
bench: deps
	$(BIN)/python -m pip install -q --disable-pip-version-check --group bench
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(IDP)/node_modules
