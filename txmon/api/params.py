"""The API's parameters: each one's type both checks a value and declares it in the OpenAPI document (format,
pattern, bounds, enum), so that what the document says is what the API accepts; and the pagination cursor."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

MAX_LIMIT = 1000
IDENTIFIER = 64  # the contract's longest transaction_id / account_id
MAX_CURSOR = 512
CURSOR_VERSION = 1

# Days whose bounds (midnight to the next midnight, UTC) Python cannot hold; the document names them too.
UNBOUNDED_DAYS = (date.min, date.max)
DAY = re.compile(r"(?!0000)[0-9]{4}-[0-9]{2}-[0-9]{2}")  # year 0000 is no calendar year
REASON = re.compile(r"[a-z][a-z0-9_]{0,63}")
CURSOR = re.compile(r"[A-Za-z0-9_-]*")  # base64url without padding


class BadRequest(Exception):
    """A request its parameters' types cannot refuse alone (a cursor of another query, a lookup that is
    neither of /transactions'): 400 with its message."""


def invalid(message: str, **context: Any) -> PydanticCustomError:
    """A parameter's value refused: 400 with ``name: message`` (``{key}`` in the message replaced by ``context``'s)."""
    return PydanticCustomError("txmon", message, context)


# ---------------------------------------------------------------------------------- days
def parse_day(value: object) -> date:
    text = str(value)
    if not DAY.fullmatch(text):
        raise invalid("must be a day as YYYY-MM-DD, not {given}", given=repr(text[:40]))
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise invalid("{given} is not a calendar day", given=repr(text)) from None
    if day in UNBOUNDED_DAYS:
        raise invalid("{given} is out of range (0001-01-02 to 9999-12-30)", given=text)
    return day


Day = Annotated[
    date,
    PlainValidator(parse_day),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date",
            # The unbounded days refused in the pattern (a `not` would show as "never" in Swagger UI).
            "pattern": f"^(?!{'|'.join(f'{day.isoformat()}$' for day in UNBOUNDED_DAYS)}){DAY.pattern}$",
            "examples": ["2026-11-20"],
        }
    ),
]


# ---------------------------------------------------------------------------------- identifiers, reasons
def check_identifier(text: str) -> str:
    """An id looked up verbatim: any text the contract allows (1-64 characters; PostgreSQL stores no NUL)."""
    if not 1 <= len(text) <= IDENTIFIER:
        raise invalid("must be 1 to {n} characters", n=IDENTIFIER)
    if "\x00" in text:
        raise invalid("may not contain a NUL character")
    return text


Identifier = Annotated[
    str,
    AfterValidator(check_identifier),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": IDENTIFIER, "pattern": "^[^\\x00]*$"}),
]


def check_reason(text: str) -> str:
    if not REASON.fullmatch(text):
        raise invalid("must be a reason's name such as amount_over_threshold or fraud_flag")
    return text


Reason = Annotated[
    str,
    AfterValidator(check_reason),
    WithJsonSchema({"type": "string", "pattern": f"^{REASON.pattern}$", "examples": ["fraud_flag"]}),
]


def region_type(regions: tuple[str, ...]) -> Any:
    """A region of ``regions`` (the configured ones): its type for the application's parameters."""

    def check(text: str) -> str:
        if text not in regions:
            raise invalid("{given} is not one of {regions}", given=repr(text[:40]), regions=", ".join(regions))
        return text

    return Annotated[str, AfterValidator(check), WithJsonSchema({"type": "string", "enum": list(regions)})]


# ---------------------------------------------------------------------------------- the cursor
def check_cursor(text: str) -> str:
    if len(text) > MAX_CURSOR or not CURSOR.fullmatch(text):
        raise invalid("is not one this API issued")
    return text


Cursor = Annotated[
    str,
    AfterValidator(check_cursor),
    WithJsonSchema({"type": "string", "maxLength": MAX_CURSOR, "pattern": f"^{CURSOR.pattern}$"}),
]


def encode_cursor(query: dict, after: tuple[str, str]) -> str:
    payload = json.dumps([CURSOR_VERSION, query, *after], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(cursor: str, query: dict, regions: tuple[str, ...]) -> tuple[str, str]:
    """The (region, transaction_id) a cursor resumes after; 400 if this API did not issue it for this query."""
    try:
        version, issued_for, region, after = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, binascii.Error):
        raise BadRequest("cursor is not one this API issued") from None
    if version != CURSOR_VERSION or not isinstance(after, str) or region not in regions or "\x00" in after:
        raise BadRequest("cursor is not one this API issued")
    if issued_for != query:
        raise BadRequest("cursor belongs to another query (date, region and reason must stay the same)")
    return region, after
