"""Schemathesis' hooks for tests/integration/test_api.py's fuzzing (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

import schemathesis


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    """A valid request carries no invented cursor: the document declares a cursor's alphabet and length, but
    only the API can issue one (an invented one is a 400, which no document can declare)."""
    meta = case.meta
    if meta is not None and meta.generation.mode.is_positive and isinstance(case.query, dict):
        case.query.pop("cursor", None)
    return case
