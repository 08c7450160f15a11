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

.PHONY: test lab demo bench lint clean

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

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
