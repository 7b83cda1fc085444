"""Prometheus rules from a Sloth ``prometheus/v1`` SLO spec, in Sloth's rule layout.

Sloth (https://sloth.dev) is a Go binary that is not packaged on PyPI, npm or Debian, so
this project cannot install it for its tests. This module writes the same kind of rules
Sloth generates for an events SLI, so that ``deploy/slo/support-slos.rules.yml`` can be
regenerated from ``deploy/slo/support-slos.sloth.yml`` and checked against it:

- per SLO, the SLI error ratio over 5m, 30m, 1h, 2h, 6h, 1d and 3d
  (``slo:sli_error:ratio_rate<window>``) and over the 30-day period (the mean of the 5m
  ratio), labelled ``sloth_id``, ``sloth_service``, ``sloth_slo``, ``sloth_window``;
- metadata: objective, error budget, period, current and period burn rates, remaining
  budget, ``sloth_slo_info``;
- multiwindow multi-burn-rate alerts (Google SRE workbook): page at 14.4x over 5m and 1h or
  6x over 30m and 6h; ticket at 3x over 2h and 1d or 1x over 6h and 3d.

Run ``python -m streams_dev.slo_rules`` to rewrite the committed rules after editing the spec.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "deploy" / "slo" / "support-slos.sloth.yml"
RULES = REPO / "deploy" / "slo" / "support-slos.rules.yml"

SLI_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
PERIOD = "30d"
PERIOD_DAYS = 30
# (severity, [(burn factor, short window, long window), ...])
BURN_RATES = (
    ("page", ((14.4, "5m", "1h"), (6.0, "30m", "6h"))),
    ("ticket", ((3.0, "2h", "1d"), (1.0, "6h", "3d"))),
)
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ALERT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SpecError(ValueError):
    """The spec does not follow Sloth's prometheus/v1 format."""


def validate(spec: Any) -> None:
    """The structural checks Sloth's ``validate`` makes on a prometheus/v1 spec (the
    subset this project uses: events SLIs)."""

    def need(condition: bool, message: str) -> None:
        if not condition:
            raise SpecError(message)

    need(isinstance(spec, dict), "the spec is not a mapping")
    need(spec.get("version") == "prometheus/v1", "version must be prometheus/v1")
    need(bool(_NAME.match(str(spec.get("service", "")))), "service must be a DNS-style name")
    slos = spec.get("slos")
    need(isinstance(slos, list) and bool(slos), "slos must be a non-empty list")
    names = [slo.get("name") for slo in slos]
    need(len(names) == len(set(names)), "SLO names must be unique")
    for slo in slos:
        name = str(slo.get("name", ""))
        need(bool(_NAME.match(name)), f"SLO name {name!r} must be a DNS-style name")
        objective = slo.get("objective")
        need(
            isinstance(objective, int | float) and 0 < objective <= 100,
            f"{name}: objective must be in (0, 100]",
        )
        events = slo.get("sli", {}).get("events")
        need(isinstance(events, dict), f"{name}: only events SLIs are supported")
        for query in ("error_query", "total_query"):
            text = events.get(query, "")
            need("{{.window}}" in text, f"{name}: {query} must use {{{{.window}}}}")
        alerting = slo.get("alerting", {})
        need(bool(_ALERT.match(str(alerting.get("name", "")))), f"{name}: alert name")


def _labels(mapping: dict[str, str], indent: int) -> list[str]:
    pad = " " * indent
    return [f"{pad}{key}: {_scalar(value)}" for key, value in mapping.items()]


def _scalar(value: object) -> str:
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9_./:-]+", text) and not re.fullmatch(r"[0-9.]+", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _block(expr: str, indent: int) -> list[str]:
    pad = " " * indent
    return [f"{pad}{line}" if line else "" for line in expr.strip("\n").splitlines()]


def _selector(ids: dict[str, str]) -> str:
    return ", ".join(f'{k}="{v}"' for k, v in ids.items())


def generate(spec: dict[str, Any]) -> str:
    """The rules file for ``spec`` (validated first)."""
    validate(spec)
    service = spec["service"]
    out = [
        "---",
        "# Generated from support-slos.sloth.yml in Sloth's rule layout by streams_dev.slo_rules",
        "# (Sloth itself is not installable here). DO NOT EDIT: edit the spec, then run",
        "#   .venv/bin/python -m streams_dev.slo_rules",
        "",
        "groups:",
    ]
    for slo in spec["slos"]:
        name = slo["name"]
        ids = {
            "sloth_id": f"{service}-{name}",
            "sloth_service": service,
            "sloth_slo": name,
        }
        common = {**spec.get("labels", {}), **slo.get("labels", {}), **ids}
        events = slo["sli"]["events"]
        budget = 1 - slo["objective"] / 100
        out += [f"- name: sloth-slo-sli-recordings-{ids['sloth_id']}", "  rules:"]
        for window in SLI_WINDOWS:
            error = events["error_query"].replace("{{.window}}", window).strip()
            total = events["total_query"].replace("{{.window}}", window).strip()
            out += [f"  - record: slo:sli_error:ratio_rate{window}", "    expr: |"]
            out += _block(f"(\n{error}\n)\n/\n(\n{total}\n)", 6)
            out += ["    labels:", *_labels({**common, "sloth_window": window}, 6)]
        sel = _selector(ids)
        out += [
            f"  - record: slo:sli_error:ratio_rate{PERIOD}",
            "    expr: |",
            f"      sum_over_time(slo:sli_error:ratio_rate5m{{{sel}}}[{PERIOD}])",
            "      / ignoring (sloth_window)",
            f"      count_over_time(slo:sli_error:ratio_rate5m{{{sel}}}[{PERIOD}])",
            "    labels:",
            *_labels({**common, "sloth_window": PERIOD}, 6),
        ]
        meta = {**common}
        out += [f"- name: sloth-slo-meta-recordings-{ids['sloth_id']}", "  rules:"]
        for record, expr in (
            ("slo:objective:ratio", f"vector({slo['objective'] / 100!r})"),
            ("slo:error_budget:ratio", f"vector(1 - {slo['objective'] / 100!r})"),
            ("slo:time_period:days", f"vector({PERIOD_DAYS})"),
            (
                "slo:current_burn_rate:ratio",
                f"slo:sli_error:ratio_rate5m{{{sel}}}\n/ on (sloth_id, sloth_slo, sloth_service)"
                f" group_left\nslo:error_budget:ratio{{{sel}}}",
            ),
            (
                "slo:period_burn_rate:ratio",
                f"slo:sli_error:ratio_rate{PERIOD}{{{sel}}}\n/ on (sloth_id, sloth_slo,"
                f" sloth_service) group_left\nslo:error_budget:ratio{{{sel}}}",
            ),
            ("slo:period_error_budget_remaining:ratio", f"1 - slo:period_burn_rate:ratio{{{sel}}}"),
        ):
            out += [f"  - record: {record}", "    expr: |", *_block(expr, 6)]
            out += ["    labels:", *_labels(meta, 6)]
        info = {**meta, "sloth_mode": "cli-gen-prom", "sloth_objective": str(slo["objective"])}
        out += ["  - record: sloth_slo_info", "    expr: vector(1)", "    labels:"]
        out += _labels(info, 6)

        alerting = slo["alerting"]
        out += [f"- name: sloth-slo-alerts-{ids['sloth_id']}", "  rules:"]
        for severity, conditions in BURN_RATES:
            parts = []
            for factor, short, long in conditions:
                threshold = f"({factor!r} * {budget!r})"
                parts.append(
                    "(\n"
                    f"  max(slo:sli_error:ratio_rate{short}{{{sel}}} > {threshold})"
                    " without (sloth_window)\n"
                    "  and\n"
                    f"  max(slo:sli_error:ratio_rate{long}{{{sel}}} > {threshold})"
                    " without (sloth_window)\n"
                    ")"
                )
            labels = {
                **alerting.get("labels", {}),
                **alerting.get(f"{severity}_alert", {}).get("labels", {}),
                "sloth_severity": severity,
            }
            annotations = {
                "title": f"({severity}) {{{{$labels.sloth_service}}}} {{{{$labels.sloth_slo}}}}"
                " SLO error budget burn rate is too fast.",
                **alerting.get("annotations", {}),
                **alerting.get(f"{severity}_alert", {}).get("annotations", {}),
            }
            out += [f"  - alert: {alerting['name']}", "    expr: |"]
            out += _block("\nor\n".join(parts), 6)
            out += ["    labels:", *_labels(labels, 6)]
            out += ["    annotations:", *_labels(annotations, 6)]
    return "\n".join(out) + "\n"


def main() -> int:
    RULES.write_text(generate(yaml.safe_load(SPEC.read_text())))
    print(f"wrote {RULES.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
