"""What landed since a cursor: the committed micro-batches, summed per region x day slice."""
# Read by orchestration to report which staging partitions changed, whether the landing was done by the Dagster sensor
# itself or by standalone workers.

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from txmon.core.db import connect
from txmon.core.settings import Role, Settings
from txmon.core.urls import where

# A batch's row is written just before its commit; reading only rows older than this lets a batch
# that took an earlier id but committed later still be seen before the cursor passes it.
SETTLE_SECONDS = 2.0


@dataclass
class Landed:
    slices: Counter = field(default_factory=Counter)  # "YYYY-MM-DD|REGION" -> rows landed
    batches: int = 0
    duplicates: int = 0
    quarantined: int = 0
    offsets: dict[str, list[int]] = field(default_factory=dict)  # kafka partition -> [first, last]
    cursor: dict[str, int] = field(default_factory=dict)  # database -> last batch_id read


def landed_since(settings: Settings, cursor: dict[str, int], limit: int = 20_000) -> Landed:
    out = Landed(cursor=dict(cursor))
    for dsn in settings.databases():
        name = where(dsn)
        with connect(settings.as_role(dsn, Role.TRANSFORM), autocommit=True, purpose="report") as conn:
            rows = conn.execute(
                """SELECT batch_id, slices, offsets, duplicates, quarantined FROM staging.ingest_batches
                   WHERE batch_id > %s AND committed_at < now() - make_interval(secs => %s)
                   ORDER BY batch_id LIMIT %s""",
                (cursor.get(name, 0), SETTLE_SECONDS, limit),
            ).fetchall()
        for batch_id, slices, offsets, duplicates, quarantined in rows:
            out.slices.update(slices)
            out.batches += 1
            out.duplicates += duplicates
            out.quarantined += quarantined
            for p, (first, last) in offsets.items():
                old = out.offsets.get(p)
                out.offsets[p] = [min(first, old[0]), max(last, old[1])] if old else [first, last]
            out.cursor[name] = batch_id
    return out
