"""The API's response shapes: money as decimal strings, times in UTC (RFC 3339), as the OpenAPI document shows."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema

# Money: pydantic writes a Decimal as its exact text; the schema says so (a string, never a JSON number).
Money = Annotated[Decimal, WithJsonSchema({"type": "string", "format": "decimal", "examples": ["10000.0100"]})]


class Model(BaseModel):
    """A response object: datetimes from the database are UTC (the session's time zone) and written with a Z."""


# A ratio as decimal text too ("0.9").
Ratio = Annotated[Decimal, WithJsonSchema({"type": "string", "format": "decimal", "examples": ["0.9"]})]


class StructuringEvidence(Model):
    """The group a structuring row belongs to: the largest window of its account's near-threshold transactions."""

    transaction_ids: list[str] = Field(description="the group's transactions, in time order")
    transactions: int
    total_usd: Money
    threshold_usd: Money
    min_ratio: Ratio = Field(description="each transaction at least this share of the threshold, and not over it")
    window_hours: int
    first_at: datetime
    last_at: datetime


class VelocityEvidence(Model):
    """The window in which a velocity row is past the N-th transaction of its account: the window ending with it."""

    transaction_ids: list[str] = Field(description="the window's transactions up to this one, in time order")
    transactions: int
    total_usd: Money
    max_transactions: int = Field(description="N: more than this many in the window fire")
    window_minutes: int
    first_at: datetime
    last_at: datetime


class Evidence(Model):
    """Why the AML typologies fired (each present only when its reason is)."""

    structuring: StructuringEvidence | None = None
    velocity: VelocityEvidence | None = None


class Suspicious(Model):
    transaction_id: str
    account_id: str
    counterparty_id: str | None
    region: str
    amount: Money
    currency: str
    amount_usd: Money
    threshold_usd: Money | None
    status: str
    event_time: datetime
    event_date: date
    reasons: list[str]
    evidence: Evidence | None = Field(description="the structuring and velocity groups; null for the other reasons")
    refreshed_at: datetime | None


class SuspiciousPage(Model):
    items: list[Suspicious]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last one")


class Settlement(Model):
    settlement_date: date
    region: str
    currency: str
    transaction_count: int
    settled_count: int
    settled_volume: Money


class Settlements(Model):
    items: list[Settlement]


class Event(Model):
    transaction_id: str
    status: str
    event_time: datetime
    account_id: str
    counterparty_id: str | None
    amount: Money
    currency: str
    region: str
    fraud_flag: bool
    ingested_at: datetime
    topic: str
    partition: int
    offset: int


class Events(Model):
    items: list[Event]
    truncated: bool = Field(False, description="true when an account's day had more events than were returned")


class Partition(Model):
    table_name: str
    partition_date: date
    region: str
    published_at: datetime
    run_id: str
    row_count: int
    checks: dict[str, dict[str, Any]]
    staging_as_of: datetime | None
    built_as_of: datetime | None
    launched_by: str


class Partitions(Model):
    items: list[Partition]


class Grant(Model):
    role: str
    regions: list[str]


Answer = Literal["ok", "unavailable"]


class Health(Model):
    status: Answer = Field(description="ok when every database answers (what the API reads), else unavailable")
    databases: dict[str, Answer] = Field(description="each database, named by the regions it holds (home: none)")
    kafka: Answer = Field(description="whether Kafka answers (the metrics' consumer lag reads it; no answer does)")


class Error(Model):
    error: str


class ReportFile(Model):
    name: str
    sha256: str
    bytes: int
    url: str = Field(description="where to download it (the same key)")


class Report(Model):
    region: str
    date: date
    version: int
    supersedes: int | None = Field(description="the version this one replaced (a republication), if any")
    publication_ids: dict[str, int] = Field(description="the reporting.publication_log entries it was built from")
    rows: dict[str, int]
    control_totals: dict[str, Any]
    files: list[ReportFile]
    manifest_url: str
    signature_url: str
    verified: bool = Field(description="its Ed25519 signature and every file's hash verify (now, on this server)")
    problems: list[str]


class Reports(Model):
    items: list[Report]
    public_key_url: str
