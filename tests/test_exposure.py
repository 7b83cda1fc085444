"""Nothing exposed (issue 8): the worker serves ``/metrics`` and Faust's plain ``/`` status
page, and none of Faust's built-in views (``/table`` reads table keys, ``/router`` shows the
cluster topology, ``/stats``, ``/assignment``, ``/graph``, ``/performance``), also when Faust's
own ``APP_*`` environment variables try to turn them on."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from faust.web import base as faust_web
from helpers.pipeline import Deployment, WorkerProcess, listening_hosts
from mode.utils.imports import symbol_by_name

from streams.app import KpiWorker
from streams.settings import load_settings

ALLOWED = {"/", "/metrics"}
# Faust's own settings by environment: each would turn a view on if Faust read it.
HOSTILE_ENV = {
    "APP_DEBUG": "true",
    "APP_WEB_TABLES_ENABLED": "true",
    "APP_WEB_ROUTER_ENABLED": "true",
    "APP_WEB_STATS_ENABLED": "true",
    "APP_WEB_GRAPH_ENABLED": "true",
    "APP_WEB_METRICS_ENABLED": "true",
}


def faust_builtin_paths() -> set[str]:
    """Every path of every built-in Faust blueprint, with sample values for parameters."""
    groups = (
        faust_web.DEFAULT_BLUEPRINTS,
        faust_web.PRODUCTION_BLUEPRINTS,
        faust_web.DEBUG_BLUEPRINTS,
        faust_web.OPTIONAL_BLUEPRINTS,
    )
    paths = set()
    for prefix, name in (item for group in groups for item in group):
        blueprint: Any = symbol_by_name(name)
        for route in blueprint.routes:
            path = prefix.rstrip("/") + "/" + route.uri.lstrip("/")
            paths.add(path.replace("{name}", "tickets").replace("{key}", "k"))
    return paths


def test_the_app_registers_only_the_allowed_views(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in HOSTILE_ENV.items():
        monkeypatch.setenv(name, value)
    worker = KpiWorker(load_settings())
    web: Any = worker.app.web  # the aiohttp driver
    web.init_server()
    assert set(web.views) == ALLOWED
    assert {route.resource.canonical for route in web.web_app.router.routes()} == ALLOWED
    assert not worker.app.conf.debug


@pytest.fixture
def worker(bootstrap_servers: str, unique_prefix: str) -> Iterator[WorkerProcess]:
    deployment = Deployment(bootstrap_servers, unique_prefix, partitions=1, env=HOSTILE_ENV)
    deployment.create_topics()
    process = WorkerProcess(deployment, "exposed").start()
    yield process
    process.stop()


def test_a_real_worker_serves_only_metrics_and_status(worker: WorkerProcess) -> None:
    worker.wait_ready()
    assert listening_hosts(worker.port) == {"127.0.0.1"}  # SUPPORT_WEB_HOST is honoured
    candidates = faust_builtin_paths() | {
        "/table/tickets/",
        "/table/kpi-partials/",
        "/router/tickets/x/",
        "/stats/",
        "/assignment/",
        "/graph/",
        "/performance/",
        "/debug/",
        "/metrics/",
        "/metrics",
        "/",
    }
    assert {"/table/", "/router/", "/router/topics", "/graph/", "/performance/"} <= candidates
    served = {}
    for path in sorted(candidates):
        for method in ("GET", "POST"):
            status, body = request(f"http://127.0.0.1:{worker.port}{path}", method)
            if status != 404 and not (method == "POST" and status == 405):
                served[(method, path)] = (status, body[:80])
    assert set(served) == {("GET", "/"), ("GET", "/metrics")}, served
    assert json.loads(served[("GET", "/")][1]) == {"status": "OK"}  # says nothing more
    assert served[("GET", "/metrics")][0] == 200


def request(url: str, method: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
            body: bytes = r.read()
            return r.status, body
    except urllib.error.HTTPError as error:
        return error.code, error.read()
