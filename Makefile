# Everything runs in a project-local virtual environment (.venv), created on first use.
# `make test` and `make demo` work on a fresh Debian machine with only python3 (>= 3.11) and
# make: missing system packages are installed when run as root with apt-get, otherwise named
# (scripts/system-packages.sh; it does nothing, quickly, when everything is present).

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
PYTEST_ARGS ?=
# mypy's `files` (pyproject) minus folders not present yet
MYPY_PATHS  := $(wildcard streams tests bench)

SYSTEM_PACKAGES = VENV=$(VENV) PYTHON=$(PYTHON) sh scripts/system-packages.sh

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv packages test lint demo bench clean

# System packages the tests need (promtool, prometheus, docker-compose, python3-venv).
packages:
	@$(SYSTEM_PACKAGES) test

# (Re)install the project and its dev tools only when pyproject.toml changed.
venv: $(STAMP)

$(PY):
	@$(SYSTEM_PACKAGES) venv
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml Makefile | $(PY)
	$(PY) -m pip install --quiet -e ".[dev,rocksdb]"
	touch $@

test: packages venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy --strict $(MYPY_PATHS)

demo: venv
	$(PY) -m streams.demo

bench: venv
	@set -e; for script in bench/*.py; do \
		[ -e "$$script" ] || { echo "no bench/*.py scripts"; exit 1; }; \
		echo "== $$script"; \
		$(PY) "$$script"; \
	done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
