"""How pytest-xdist shares the tests among its workers (pyproject: ``-n 2``).

Every test of the integration modules is one work unit, run by one worker in collection order,
as without xdist: their brokers, worker processes and Prometheus never overlap, and the
module fixtures (e.g. the Prometheus stack of ``test_prometheus_integration.py``) are set up
once. Every other test is a unit of its own, for whichever worker is free. (xdist's own
``--dist loadgroup`` cannot do it here: it renames node ids, which pytest 9 no longer allows.)
"""

from __future__ import annotations

from pathlib import PurePosixPath

from xdist.scheduler import LoadScopeScheduling

INTEGRATION = "integration"


class IntegrationTogether(LoadScopeScheduling):  # type: ignore[misc]  # xdist is untyped
    """xdist's scope scheduling with two kinds of scope: all tests of ``modules`` (file names),
    or a single test. The largest scope is handed out first."""

    def __init__(self, *args: object, modules: frozenset[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.modules = modules

    def _split_scope(self, nodeid: str) -> str:
        module = PurePosixPath(nodeid.split("::", 1)[0]).name
        return INTEGRATION if module in self.modules else nodeid
