"""Schemathesis' hooks for tests/integration/test_api.py's fuzzing (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

import jsonschema_rs
import schemathesis


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    """A valid request carries no invented cursor: the document declares a cursor's alphabet and length, but
    only the API can issue one (an invented one is a 400, which no document can declare)."""
    meta = case.meta
    if meta is not None and meta.generation.mode.is_positive and isinstance(case.query, dict):
        case.query.pop("cursor", None)
    return case


@schemathesis.hook
def filter_case(context: schemathesis.HookContext, case: schemathesis.Case) -> bool:
    """Drop a case generated as invalid whose query string, as sent, is valid: Schemathesis mutates an object
    of query parameters (/transactions' lookup, `style: form, explode: true`) as one parameter, and the
    mutation (the object removed, properties added beside it) can land on a valid lookup."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative or not isinstance(case.query, dict):
        return True
    for parameter in case.operation.definition.raw.get("parameters", []):
        if parameter.get("in") == "query" and parameter.get("explode") and "oneOf" in parameter.get("schema", {}):
            sent = {name: as_sent(value) for name, value in case.query.items()}
            if jsonschema_rs.validator_for(parameter["schema"], validate_formats=True).is_valid(sent):
                return False
    return True


def as_sent(value: object) -> str:
    """A query value as the API reads it: the last of a repeated parameter, JSON's spelling of a scalar."""
    if isinstance(value, list):
        return as_sent(value[-1]) if value else ""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)
