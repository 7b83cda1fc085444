"""Memory per customer and recovery time of a real worker process (issue 11).

    python bench/bench_customers_worker.py [--customers 50000] [--output FILE]

An embedded broker and one real worker (``python -m streams.worker``, in-memory table, stream
clock, production customer windows 7d and 30d). Customers are activated on
``customer-lifecycle`` (each one event; back-dated 1-30 days so they lie inside the longest
window, the costly case: their deltas are not folded yet), in two steps; after each step, once
``support_customers_active{segment="all"}`` shows them all, the worker's RSS (``VmRSS``) is
read. RSS per customer is the growth divided by the customers added. Then ``kill -9`` and a
restart: the time until the worker is ready and shows the same active customers (recovered
from the customers changelog).

Results go to ``bench/RESULTS-customers-worker.md`` (or ``--output``) with the machine and the
date. The figures include Python's allocator overhead and the Kafka client buffers; compare
``bench/RESULTS-customers.md`` for the pure core's bytes per customer.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import time
from datetime import UTC, datetime
from pathlib import Path

from bench_pipeline import Deployment, Worker, metric_value, wait_for
from machine import cpu_model, load_average

from streams.simulation import SimRecord
from streams_dev.broker import EmbeddedBroker
from streams_dev.processes import free_port

ACTIVE = ("support_customers_active", {"segment": "all"})
RECOVERED = re.compile(r"recovered (\d+) customer records")
SEGMENTS = ("free", "starter", "pro", "enterprise")
OUTPUT = Path(__file__).resolve().parent / "RESULTS-customers-worker.md"


def activations(first: int, last: int, now: float, seed: int) -> list[SimRecord]:
    rng = random.Random(seed)
    records = []
    for index in range(first, last):
        customer = f"cust-{index:010d}"
        at = now - rng.uniform(86400.0, 30 * 86400.0)
        body = {
            "event_id": f"{index:08d}-0000-4000-8000-{rng.getrandbits(48):012x}",
            "occurred_at": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
            "schema_version": 1,
            "customer_id": customer,
            "change": "activated",
            "segment": rng.choice(SEGMENTS),
        }
        records.append(
            SimRecord(
                topic="customer-lifecycle",
                key=customer.encode(),
                value=json.dumps(body).encode(),
                occurred_at=at,
                deliver_at=at,
            )
        )
    return records


def active(worker: Worker) -> float | None:
    return metric_value(worker.scrape(), ACTIVE)


def wait_active(worker: Worker, customers: int, step: float = 0.5) -> float:
    """Wall time at which /metrics shows ``customers`` active customers overall."""
    return wait_for(lambda: active(worker) == customers, 600, f"{customers} active", step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    began = datetime.now(UTC)
    load_at_start = load_average()
    now = time.time()
    half = args.customers // 2
    rss: dict[int, int] = {}
    with EmbeddedBroker() as broker:
        deployment = Deployment(broker.bootstrap_servers, "bench-customers-worker", args.partitions)
        deployment.create_topics()
        worker = Worker(deployment)
        worker.start()
        try:
            worker.wait_ready()
            time.sleep(3.0)
            rss[0] = worker.rss_bytes()
            loaded = 0
            for level in (half, args.customers):
                deployment.produce(activations(loaded, level, now, seed=level))
                loaded = level
                wait_active(worker, level)
                time.sleep(2.0)  # settle
                rss[level] = worker.rss_bytes()
                print(f"RSS {rss[level] / 2**20:.1f} MiB at {level} customers", flush=True)
            worker.kill()
            worker.port = free_port()
            worker.start()
            ready = worker.wait_ready(timeout=300)
            back = wait_active(worker, args.customers, step=0.05)
            recovered_ready = ready - worker.started_at
            recovered = back - worker.started_at
            read = RECOVERED.findall(worker.log())
            records_read = int(read[-1]) if read else -1
        finally:
            worker.stop()
    per_customer = (rss[args.customers] - rss[half]) / (args.customers - half)
    overall = (rss[args.customers] - rss[0]) / args.customers
    lines = [
        "# Customer churn/retention in a real worker: memory per customer, recovery",
        "",
        f"Run `python bench/bench_customers_worker.py --customers {args.customers}` on "
        f"{began:%a %b %d %H:%M:%S} UTC {began:%Y} ({args.partitions} partitions, one worker, "
        "embedded Tansu broker, in-memory table, stream clock, customer windows 7d and 30d).",
        "",
        f"- CPU: {cpu_model()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- OS: {platform.platform()}",
        f"- load average at start (1/5/15 min): {load_at_start}; at the end: {load_average()}",
        "",
        "Each customer: one `activated` event (36-character event id, 15-character customer",
        "id, one of 4 segments) 1-30 days old, so inside the 30-day window (not folded).",
        "",
        "| customers active | worker RSS (MiB) |",
        "|---:|---:|",
        *(f"| {n:,} | {b / 2**20:.1f} |" for n, b in sorted(rss.items())),
        "",
        f"- **RSS per customer**: {per_customer:,.0f} B between {half:,} and "
        f"{args.customers:,} customers ({overall:,.0f} B from an idle worker to "
        f"{args.customers:,}).",
        f"- **Recovery after `kill -9`** with {args.customers:,} customers: ready "
        f"{recovered_ready:.1f} s and the same active customers shown {recovered:.1f} s "
        f"after the restart; {records_read:,} changelog records read (from the latest "
        "checkpoint of the customers changelog, or from its start if none was written yet).",
        "",
        "The RSS includes the table's msgpack value and key per customer, the engine's",
        "partial deltas (one in the `active` series and one per window for each change inside",
        "the horizon), the stage-2 store's merged deltas (this worker also owns stage 2), and",
        "Python's allocator slack; the machine is shared with other jobs (see the load).",
        "",
    ]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
