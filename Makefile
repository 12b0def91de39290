# The two set-up commands: `make demo` and `make test`.  Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench header clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/hugering demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) tools/bench_ring.py

header: $(STAMP)
	$(PY) -m shm.layout --write-header

clean:
	rm -rf $(VENV) build *.egg-info tools/reference/build
