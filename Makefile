# The two commands: `make demo` (installs the runtime, then runs the embedded demo) and `make test`
# (installs what the tests need, starts missing local services, runs the whole suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYPROJECT_SUM := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# One stamp per install, keyed on pyproject.toml: the demo's (the package and its web extra) and the
# tests' (every extra and the test tools). The tests' install includes the demo's, so it leaves both.
DEMO_STAMP := $(VENV)/.installed-demo-$(PYPROJECT_SUM)
STAMP := $(VENV)/.installed-test-$(PYPROJECT_SUM)
PYTEST_ARGS ?=

.PHONY: install install-demo demo test test-fast lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP) $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[web]'
	rm -f $(VENV)/.installed-demo-*
	touch $(DEMO_STAMP)

install: $(STAMP)

install-demo: $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/conveyor demo

test: $(STAMP)
	./scripts/start-services.sh
	./scripts/install-browser.sh
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check src tests bench
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) bench/log_local.py

clean:
	rm -rf $(VENV) var build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
