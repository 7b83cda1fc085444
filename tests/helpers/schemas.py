"""The JSON Schemas of ``schemas/`` as validators (the contract the tests hold records to)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


@cache
def validator(name: str) -> Draft202012Validator:
    """The validator of ``schemas/<name>.schema.json``, e.g. ``validator("support-kpis")``."""
    return Draft202012Validator(json.loads((SCHEMAS_DIR / f"{name}.schema.json").read_text()))
