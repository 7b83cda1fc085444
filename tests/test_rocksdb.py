"""`SUPPORT_STORE=rocksdb://` (SPEC §6: RocksDB for large state) works where the `rocksdb`
extra is installed (`make venv` and the image install it) and is refused with one clear
line where it is not.

The integration test runs a real worker on RocksDB tables, kills it with -9 mid-stream and
starts another that recovers the tables from their changelogs into its own RocksDB files:
the KPIs equal the brute-force reference. Another restarts on the *same* data folder after
its tickets are in RocksDB: recovery starts at RocksDB's own persisted offset (the fence
after every changelog write keeps the embedded Tansu broker's end offset, which omits the
last batch, from falling below it) and the tickets come from the local files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from helpers.pipeline import (
    Deployment,
    WorkerProcess,
    assert_kpis_converge,
    counter_total,
    decoded_events,
    expected_kpis,
    scrape_all,
    wait_until,
)

from streams.settings import load_settings, rocksdb_available
from streams.simulation.model import SimOptions
from streams.simulator import generate

REFUSAL = "rocksdb:// needs the rocksdb extra"


def test_the_rocksdb_extra_is_installed_and_accepted() -> None:
    assert rocksdb_available(), "make venv installs .[dev,rocksdb]"
    assert load_settings(store="rocksdb://").store == "rocksdb://"


def test_rocksdb_is_refused_with_one_line_where_the_extra_is_missing(tmp_path: Path) -> None:
    """The worker started where neither binding imports (as after `pip install .`)."""
    blocker = tmp_path / "sitecustomize.py"  # runs before the worker: hide both bindings
    blocker.write_text(
        "import sys\nsys.modules['rocksdb'] = None\nsys.modules['rocksdict'] = None\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORT_")}
    env.update(PYTHONPATH=str(tmp_path), SUPPORT_STORE="rocksdb://")
    worker = Path(sys.executable).parent / "support-kpi-worker"
    result = subprocess.run(
        [str(worker)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("support-kpi-worker: invalid setting SUPPORT_STORE: " + REFUSAL)
    assert "pip install 'support-kpi-streams[rocksdb]'" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sitecustomize.py"]


def test_rocksdb_worker_survives_kill_9_on_its_own_data(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    deployment = Deployment(bootstrap_servers, unique_prefix, env={"SUPPORT_STORE": "rocksdb://"})
    deployment.create_topics()
    start = time.time() - 3600 - 600
    records = list(
        generate(
            "steady",
            seed=41,
            start=start,
            duration_seconds=3600,
            rate=300,
            options=SimOptions(duplicate_rate=0.02, out_of_order=0.05),
        )
    )
    expected = expected_kpis(decoded_events(records), deployment.engine_config())
    total = sum(1 for r in records if r.bad is None)
    first = WorkerProcess(deployment, "rocks").start()
    workers.append(first)
    first.wait_ready()
    deployment.produce(records)

    def some_processed() -> bool:
        return counter_total(scrape_all([first]), "support_events_processed_total") >= total * 0.3

    wait_until(some_processed, 90, lambda: f"too little processed; log:\n{first.log_tail()}")
    first.kill()
    app_data = f"{deployment.worker_env(0)['SUPPORT_APP_ID']}-data"
    assert any((first.workdir / app_data).rglob("CURRENT")), "no RocksDB database written"

    second = WorkerProcess(deployment, "rocks-recovered").start()
    workers.append(second)
    second.wait_ready(120)
    # RocksDB tables are slower than memory:// ones; on 2 shared cores the recovery and
    # catch-up have taken more than the default 90 s.
    assert_kpis_converge(lambda: scrape_all([second]).values, expected, timeout=180)
    assert any((second.workdir / app_data).rglob("*.sst")) or any(
        (second.workdir / app_data).rglob("*.log")
    ), "the recovered tables are not in RocksDB"


def test_rocksdb_worker_restarts_on_its_own_data_after_kill_9(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    deployment = Deployment(bootstrap_servers, unique_prefix, env={"SUPPORT_STORE": "rocksdb://"})
    deployment.create_topics()
    start = time.time() - 3600 - 600
    records = list(generate("steady", seed=43, start=start, duration_seconds=3600, rate=300))
    expected = expected_kpis(decoded_events(records), deployment.engine_config())
    total = sum(1 for r in records if r.bad is None)
    first = WorkerProcess(deployment, "rocks-own").start()
    workers.append(first)
    first.wait_ready()
    deployment.produce(records)
    wait_until(
        lambda: counter_total(scrape_all([first]), "support_events_processed_total") >= total,
        90,
        lambda: f"not all processed; log:\n{first.log_tail()}",
    )
    app_data = first.workdir / f"{deployment.worker_env(0)['SUPPORT_APP_ID']}-data"

    def tickets_in_rocksdb() -> bool:  # the record cache flushed (before an offset commit)
        return any(f.stat().st_size > 0 for f in app_data.rglob("*.log"))

    wait_until(tickets_in_rocksdb, 60, lambda: f"no RocksDB write; log:\n{first.log_tail()}")
    time.sleep(3.0)  # past the commit that follows the flush
    first.kill()

    second = WorkerProcess(deployment, "rocks-own-restarted")
    shutil.rmtree(second.workdir)
    second.workdir, second.log_path = first.workdir, first.workdir / "restarted.log"
    workers.insert(0, second.start())  # stopped before the shared folder is removed
    second.wait_ready(120)
    recovered = [line for line in second.log().splitlines() if "owns input partitions" in line]
    assert "(0 tickets)" not in recovered[0], second.log_tail()  # read from RocksDB
    assert_kpis_converge(lambda: scrape_all([second]).values, expected, timeout=180)
