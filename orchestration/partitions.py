"""Region x day partitions: the unit of work of staging, the marts, backfills and checks."""

from __future__ import annotations

from datetime import date

from dagster import DailyPartitionsDefinition, MultiPartitionKey, MultiPartitionsDefinition, StaticPartitionsDefinition

from txmon.core.settings import Settings

DATE, REGION = "date", "region"


def region_day_partitions(settings: Settings) -> MultiPartitionsDefinition:
    """Daily UTC dates from the configured start x the configured regions ("2026-11-24|EU").

    The day still open is a partition too (end_offset=1), so today's marts refresh as data lands.
    """
    return MultiPartitionsDefinition(
        {
            DATE: DailyPartitionsDefinition(
                start_date=settings.partitions_start_date.isoformat(), timezone="UTC", end_offset=1
            ),
            REGION: StaticPartitionsDefinition(list(settings.regions)),
        }
    )


def partition_key(day: date, region: str) -> MultiPartitionKey:
    return MultiPartitionKey({DATE: day.isoformat(), REGION: region})


def parse_partition_key(key: str | MultiPartitionKey) -> tuple[date, str]:
    """("2026-11-24", "EU") from "2026-11-24|EU" (a MultiPartitionKey is a str too)."""
    dims = key.keys_by_dimension if isinstance(key, MultiPartitionKey) else None
    if dims is None:
        day, _, region = str(key).partition("|")
    else:
        day, region = dims[DATE], dims[REGION]
    return date.fromisoformat(day), region
