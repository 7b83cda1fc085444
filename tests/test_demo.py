"""The demo (``python -m streams_dev.demo``, what ``make demo`` runs), end to end.

Runs the demo as a child process, scrapes its ``/metrics`` while it runs, waits for a summary
with data, stops it with SIGINT (as Ctrl-C would), and checks that it exited 0 and left no
process behind: neither the pids it printed nor any process using its broker or temp dir.
Also unit tests of the summary's parsing and formatting.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO

import pytest
from helpers.pipeline import listening_hosts

from streams_dev.demo import MISSING, Summary, format_summary
from streams_dev.metrics import series

DEMO_TIMEOUT = 80.0  # --duration: the demo stops by itself at the latest then

_URL = re.compile(r"metrics:\s+(http://127\.0\.0\.1:(\d+)/metrics)")
_BROKER = re.compile(r"broker:\s+Tansu pid (\d+) on (127\.0\.0\.1:\d+)")
_WORKER = re.compile(r"worker:\s+pid (\d+)")
_WORKDIR = re.compile(r"logs in (\S+)")
_CREATED = re.compile(r"created/solved 1h (\S+)/(\S+)")
_P50 = re.compile(r"first response p50: 15m (\S+) · 1h (\S+) · 24h (\S+)")
_DURATION = re.compile(r"^\d+(s|m\d\ds|h\d\dm|d\d\dh)$")


def _read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _processes_mentioning(needles: list[str]) -> list[str]:
    """Live processes whose command line or environment contains one of ``needles``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        text = ""
        for part in ("cmdline", "environ"):
            try:
                text += (entry / part).read_bytes().decode(errors="replace")
            except OSError:
                continue
        if any(needle in text for needle in needles) and _alive(int(entry.name)):
            found.append(f"{entry.name}: {text[:200]!r}")
    return found


@pytest.mark.integration
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inspects /proc")
def test_demo_shows_live_kpis_and_stops_cleanly() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORT_")}
    began = time.monotonic()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams_dev.demo",
            f"--duration={DEMO_TIMEOUT:g}",
            "--port=0",
            "--seed=11",
            "--backfill=30m",
            "--interval=2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert demo.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(demo.stdout, lines), daemon=True)
    reader.start()
    output: list[str] = []
    scraped = ""
    bound: set[str] = set()
    sent_sigint = False
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.1, began + DEMO_TIMEOUT + 30 - time.monotonic()))
            except queue.Empty:
                pytest.fail("the demo neither finished nor printed:\n" + "\n".join(output))
            if line is None:
                break
            output.append(line)
            url = _URL.search(line)
            if url and not scraped:
                with urllib.request.urlopen(url.group(1), timeout=5) as response:
                    scraped = response.read().decode()
                port = urllib.parse.urlsplit(url.group(1)).port
                assert port is not None
                bound = listening_hosts(port)  # the worker's web port: loopback only
            p50 = _P50.search(line)
            if p50 and not sent_sigint and len(output) >= 2:
                created = _CREATED.search(output[-2])
                if (
                    created
                    and created.group(1) not in (MISSING, "0")
                    and any(_DURATION.match(value) for value in p50.groups())
                ):
                    demo.send_signal(signal.SIGINT)  # as Ctrl-C would
                    sent_sigint = True
        code = demo.wait(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    text = "\n".join(output)
    elapsed = time.monotonic() - began

    assert code == 0, text
    assert sent_sigint, f"no summary with tickets created and a first-response p50:\n{text}"
    assert "SIGINT: stopping" in text
    assert _URL.search(text), text
    assert "support_events_processed_total" in scraped  # /metrics answered during the run
    assert bound == {"127.0.0.1"}, f"the demo worker listens on {bound}"
    assert elapsed < DEMO_TIMEOUT + 15, text

    broker_pid, bootstrap = _BROKER.search(text).groups()  # type: ignore[union-attr]
    worker_pid = _WORKER.search(text).group(1)  # type: ignore[union-attr]
    workdir = _WORKDIR.search(text).group(1)  # type: ignore[union-attr]
    deadline = time.monotonic() + 5
    while _alive(int(broker_pid)) or _alive(int(worker_pid)):
        assert time.monotonic() < deadline, f"broker or worker still alive after exit:\n{text}"
        time.sleep(0.1)
    assert _processes_mentioning([bootstrap, workdir]) == []
    assert not Path(workdir).exists(), "the temporary directory was not removed"


def test_summary_reads_overall_series_and_totals() -> None:
    overall = 'team="all",channel="all",priority="all"'
    text = "\n".join(
        [
            "# TYPE support_unanswered_tickets gauge",
            f"support_unanswered_tickets{{{overall}}} 7.0",
            'support_unanswered_tickets{team="Billing",channel="all",priority="all"} 3.0',
            "# TYPE support_first_response_p50_seconds gauge",
            f'support_first_response_p50_seconds{{window="1h",{overall}}} 125.0',
            "# TYPE support_first_response_p90_seconds gauge",
            f'support_first_response_p90_seconds{{window="1h",{overall}}} 900.0',
            "# TYPE support_tickets_created gauge",
            f'support_tickets_created{{window="1h",{overall}}} 42.0',
            "# TYPE support_events_processed_total counter",
            'support_events_processed_total{topic="ticket-created"} 10.0',
            'support_events_processed_total{topic="ticket-replied"} 5.0',
            "# TYPE support_csat_satisfied_ratio gauge",
            f'support_csat_satisfied_ratio{{window="24h",{overall}}} 0.8125',
        ]
    )
    summary = Summary.from_series(series(text))
    assert summary.waiting == 7.0
    assert summary.first_response_p50 == {"15m": None, "1h": 125.0, "24h": None}
    assert summary.created_1h == 42.0
    assert summary.processed_total == 15.0
    assert summary.rejected_total is None

    first, second, third = format_summary(summary, 3.0)
    assert "waiting now 7 · oldest —" in first
    assert "created/solved 1h 42/—" in first
    assert "first response p50: 15m — · 1h 2m05s · 24h —" in second
    assert "CSAT 24h 81.2% · NPS 24h —" in third
    assert "events 15 processed, — rejected" in third


def test_summary_without_any_series_prints_dashes() -> None:
    lines = format_summary(Summary.from_series({}), 0.0)
    assert all(MISSING in line for line in lines)
    assert not any(re.search(r"\d+\.\d+", line) for line in lines)


def test_summary_shows_churn_and_retention_when_customers_are_exported() -> None:
    text = "\n".join(
        [
            "# TYPE support_customers_active_at_start gauge",
            'support_customers_active_at_start{window="30d",segment="all"} 900.0',
            'support_customers_active_at_start{window="7d",segment="all"} 800.0',
            'support_customers_active_at_start{window="7d",segment="pro"} 100.0',
            "# TYPE support_customers_churned gauge",
            'support_customers_churned{window="7d",segment="all"} 40.0',
            'support_customers_churned{window="30d",segment="all"} 90.0',
            "# TYPE support_customers_new gauge",
            'support_customers_new{window="7d",segment="all"} 25.0',
            "# TYPE support_customer_churn_ratio gauge",
            'support_customer_churn_ratio{window="7d",segment="all"} 0.05',
            "# TYPE support_customer_retention_ratio gauge",
            'support_customer_retention_ratio{window="7d",segment="all"} 0.95',
            "# TYPE support_customers_active gauge",
            'support_customers_active{segment="all"} 785.0',
            'support_customers_active{segment="pro"} 99.0',
        ]
    )
    summary = Summary.from_series(series(text))
    assert summary.customer_window == "7d"
    *_, customers = format_summary(summary, 3.0)
    assert "customers active 785 · 7d: churn 5.0% (40) · retention 95.0% · new 25" in customers
    # Without customer series (no customer-lifecycle traffic): no customer line at all.
    assert len(format_summary(Summary.from_series({}), 0.0)) == 3
