"""What a data-quality check returns, shared by the GX suites, the reconciliations and publication."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from txmon.core.settings import Settings


@dataclass(frozen=True)
class CheckOutcome:
    """A check's result. ``summary`` and ``metadata`` go to Dagster's storage (and the summary to
    reporting.published_partitions): counts, never transaction or account identifiers, except the
    sample ``sampled`` adds when the deployment allows one."""

    name: str
    passed: bool
    summary: str
    metadata: dict = field(default_factory=dict)


def sampled(settings: Settings, key: str, values: Sequence) -> dict:
    """``{key: the first failing values}`` when TXMON_METADATA_SAMPLE_SIZE allows a sample, else nothing:
    by default a check's metadata says how many values failed, not which (they are identifiers)."""
    size = settings.metadata_sample_size
    return {key: [str(v) for v in values[:size]]} if size and len(values) else {}
