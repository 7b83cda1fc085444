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
MYPY_PATHS  := $(wildcard streams streams_dev tests bench)

SYSTEM_PACKAGES = VENV=$(VENV) PYTHON=$(PYTHON) sh scripts/system-packages.sh

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv packages test lint demo bench clean mutation

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
	$(PY) -m streams_dev.demo

bench: venv
	@set -e; for script in bench/*.py; do \
		[ -e "$$script" ] || { echo "no bench/*.py scripts"; exit 1; }; \
		echo "== $$script"; \
		$(PY) "$$script"; \
	done

# Mutation testing of streams/core/ (on demand, not in CI; 1-2 h on 2 cores). mutmut needs a
# newer click than Faust accepts, so it gets its own venv with only what the core tests need
# (and pytest-xdist, whose -n pyproject's addopts give; mutmut's pytest runs with -n 0).
MUTATION_VENV := .venv-mutation
MUTATION_PKGS := mutmut==3.8.1 msgspec==0.22.0 hypothesis==6.170.15 pytest==9.2.0 \
                 pytest-timeout==2.4.0 pytest-xdist==3.8.0
MUTATION_ARGS ?= --max-children 2

$(MUTATION_VENV)/.installed: Makefile pyproject.toml
	$(PYTHON) -m venv $(MUTATION_VENV)
	$(MUTATION_VENV)/bin/python -m pip install --quiet $(MUTATION_PKGS)
	$(MUTATION_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

mutation: $(MUTATION_VENV)/.installed
	rm -rf mutants
	TESTS_MAX_EXAMPLES=6 TESTS_NO_SHRINK=1 $(MUTATION_VENV)/bin/mutmut run $(MUTATION_ARGS)
	$(MUTATION_VENV)/bin/mutmut results --all true > mutants/results.txt || true
	@echo "results: mutants/results.txt (summarize in tests/mutation/RESULTS.md)"

clean:
	rm -rf $(VENV) $(MUTATION_VENV) mutants .mypy_cache .ruff_cache .pytest_cache build *.egg-info
