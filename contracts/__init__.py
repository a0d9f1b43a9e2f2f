"""The transaction event contract: ``transaction.schema.json`` is its single source."""
# Validation (ingestion), the synthetic generator and the docs all read that file. The deployment's configured regions
# and currencies replace the schema's default enums at load time.

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

SCHEMA_PATH = Path(__file__).with_name("transaction.schema.json")


@cache
def _raw_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def load_schema(regions: tuple[str, ...] | None = None, currencies: tuple[str, ...] | None = None) -> dict:
    """The JSON Schema, with the configured regions and currencies when given."""
    schema = copy.deepcopy(_raw_schema())
    if regions is not None:
        schema["properties"]["region"]["enum"] = list(regions)
    if currencies is not None:
        schema["properties"]["currency"]["enum"] = list(currencies)
    return schema


def statuses() -> tuple[str, ...]:
    return tuple(_raw_schema()["properties"]["status"]["enum"])


def required_fields() -> tuple[str, ...]:
    return tuple(_raw_schema()["required"])


def fields() -> tuple[str, ...]:
    """The fields the contract names (required and optional); any other field of an event is extra."""
    return tuple(_raw_schema()["properties"])
