"""Reading a worker's ``/metrics`` page: the one text-format parser of the dev tooling (demo,
tests, benchmarks), prometheus_client's own (``text_string_to_metric_families``).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Collection
from typing import NamedTuple

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["OVERALL", "Sample", "Series", "fetch_page", "key", "samples", "series", "total"]

#: The labels of a KPI's overall series (every team, channel and priority).
OVERALL = {"team": "all", "channel": "all", "priority": "all"}

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

#: ``{(sample name, labels): value}``: one page's samples, looked up by exact label set.
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Sample(NamedTuple):
    name: str  # the sample's name (a counter's ends in ``_total``)
    labels: dict[str, str]
    value: float


def samples(text: str, names: Collection[str] | None = None) -> list[Sample]:
    """Every sample of a Prometheus text-format page, in page order; only those named
    ``names`` if given (cheap on a big page: other lines are skipped before parsing)."""
    if names is not None:
        text = "".join(f"{line}\n" for line in text.splitlines() if _name(line) in names)
    return [
        Sample(sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def series(text: str, names: Collection[str] | None = None) -> Series:
    """The page's samples keyed by (name, label set): ``series(text).get(key(...))``."""
    return {key(s.name, **s.labels): s.value for s in samples(text, names)}


def _name(line: str) -> str:
    """The sample name a page line starts with ("" for comments)."""
    match = _NAME.match(line)
    return match[0] if match else ""


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    """The :data:`Series` key of the sample ``name{labels}``."""
    return name, frozenset(labels.items())


def total(page: Series, name: str, **labels: str) -> float | None:
    """The sum of the samples ``name`` whose labels include ``labels`` (None: no sample)."""
    wanted = labels.items()
    values = [v for (n, ls), v in page.items() if n == name and wanted <= dict(ls).items()]
    return sum(values) if values else None


def fetch_page(url: str, timeout: float = 5.0) -> str | None:
    """The body of ``url`` (a ``/metrics`` page), None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
            return body.decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
