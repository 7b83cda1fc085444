#!/bin/sh
# On demand (not in `make test`): check the example SLO spec with Sloth itself.
# Sloth is a Go binary that no registry this project can reach packages, so the committed
# rules are written by streams_dev/slo_rules.py in Sloth's layout and the test suite validates them
# without Sloth. Where a `sloth` binary is on PATH, this script validates the spec with it,
# generates the rules, runs `promtool check rules` on them and checks that every rule the
# committed file records or alerts on is also one Sloth generates.
set -eu
cd "$(dirname "$0")/.."
SPEC=deploy/slo/support-slos.sloth.yml
RULES=deploy/slo/support-slos.rules.yml
command -v sloth >/dev/null || { echo "sloth is not on PATH (https://sloth.dev)" >&2; exit 2; }
command -v promtool >/dev/null || { echo "promtool is not on PATH (make packages)" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
sloth validate -i "$SPEC"
sloth generate -i "$SPEC" -o "$out/rules.yml"
promtool check rules "$out/rules.yml"
.venv/bin/python - "$RULES" "$out/rules.yml" <<'PY'
import sys

import yaml


def names(path: str) -> set[str]:
    groups = yaml.safe_load(open(path))["groups"]
    return {rule.get("record") or rule["alert"] for group in groups for rule in group["rules"]}


missing = names(sys.argv[1]) - names(sys.argv[2])
if missing:
    sys.exit(f"rules Sloth does not generate: {sorted(missing)}")
print("the committed rules are a subset of Sloth's own output")
PY
