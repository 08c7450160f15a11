# Two commands for a fresh machine: `make lab` (JupyterLab on the quickstart notebook, with an
# embedded NATS server) and `make test`. Everything lands in .venv, created on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test
LAB_STAMP := $(VENV)/.installed-lab
# JupyterLab refuses to run as root without --allow-root; with no display (a server, a
# container) there is no browser to open: print the URL instead of trying.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root) \
	$(if $(filter Linux,$(shell uname -s)),$(if $(DISPLAY)$(WAYLAND_DISPLAY),,--no-browser))
# JupyterLab serves notebooks/ and opens (and prints the URL of) this notebook in it.
LAB_NOTEBOOK ?= 01-quickstart.ipynb

.PHONY: test test-pythons lab demo bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(LAB_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[lab]'
	touch $@

test: $(STAMP)
	$(PY) -m pytest

# The suite but the Chromium tests (tests/browser, tests/interop) on each other supported
# Python, from pyenv (the newest patch release installed) or PATH, in .venv-<version>.
PYTHONS ?= 3.12 3.13
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
NO_BROWSER := -m "not browser" --ignore=tests/browser --ignore=tests/interop
# The glare storm (a 15 s timing stress test) runs in `make test` only: on 3.12 it once found a
# video track without frames for 10 s (docs/RELIABILITY.md, open), and CI must not hinge on it
# twice more per run.
OTHER_PYTHONS_SKIP := --deselect tests/test_soak.py::test_glare_storm_every_operation_completes

.venv-%/.installed-test: pyproject.toml
	test -x .venv-$*/bin/python || { \
	  py=$$(ls -d $(PYENV_ROOT)/versions/$*.*/bin/python 2>/dev/null \
	    | grep -E '/$(subst .,\.,$*)\.[0-9]+/bin/' | sort -V | tail -n 1); \
	  [ -n "$$py" ] || py=$$(command -v python$*) \
	    || { echo "no Python $* (pyenv install $*)" >&2; exit 1; }; \
	  $$py -m venv .venv-$*; }
	.venv-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-$*/bin/python -m pip install --quiet -e '.[test]'
	touch $@

test-pythons: $(foreach v,$(PYTHONS),.venv-$(v)/.installed-test)
	set -e; for v in $(PYTHONS); do \
	  echo "== Python $$(.venv-$$v/bin/python -V | cut -d' ' -f2)"; \
	  .venv-$$v/bin/python -m pytest -q $(NO_BROWSER) $(OTHER_PYTHONS_SKIP); \
	done

# JupyterLab on the quickstart, next to an embedded NATS server (binder/start: its address is
# in PEERIX_NATS_URL for every kernel; it stops when JupyterLab does).
lab: $(LAB_STAMP)
	exec env PATH="$(abspath $(VENV))/bin:$$PATH" binder/start jupyter lab $(LAB_FLAGS) \
		--ServerApp.root_dir=notebooks --LabApp.default_url=/lab/tree/$(LAB_NOTEBOOK)

demo: $(STAMP)
	$(PY) -m peerix_nb demo

bench: $(STAMP)
	$(PY) -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	.tsc/node_modules/.bin/tsc -p peerix_nb/browser/jsconfig.json

clean:
	rm -rf $(VENV) $(foreach v,$(PYTHONS),.venv-$(v)) .pytest_cache .ruff_cache
