# Everything runs in a project-local virtual environment (.venv), created on first use.
# `make test` and `make demo` work on a fresh machine with only python3 (>= 3.11).

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
PYTEST_ARGS ?=
# mypy's `files` (pyproject) minus folders not present yet
MYPY_PATHS  := $(wildcard streams tests bench)

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv test lint demo bench clean

# (Re)install the project and its dev tools only when pyproject.toml changed.
venv: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

test: venv
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
