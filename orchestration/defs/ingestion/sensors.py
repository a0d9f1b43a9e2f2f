"""The Kafka ingestion sensor.

In `sensor` mode each tick lands continuously for `sensor_ingest_seconds` (a `txmon ingest
--max-seconds` child process: its own interpreter, bounded in time well inside the sensor timeout;
the next tick follows at once), then reports a materialization of every staging partition that
received rows, from `staging.ingest_batches`, with row counts and Kafka offsets as metadata. In
`worker` mode standalone `txmon ingest` workers land the data and the sensor only reports. Offsets
are stored with the rows, so a failed tick loses nothing: the next one resumes where the data is.
"""


import json
from datetime import UTC, datetime

from dagster import AssetMaterialization, DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor

from ingestion.batches import landed_since
from ingestion.processes import ingest_for
from orchestration.defs.ingestion.assets import STAGING_TRANSACTIONS
from orchestration.partitions import parse_partition_key, partition_key
from orchestration.resources import TxmonResource


@sensor(
    name="kafka_ingestion",
    minimum_interval_seconds=5,
    default_status=DefaultSensorStatus.RUNNING,
    description="Lands Kafka events in staging.transactions and reports the partitions it touched.",
)
def kafka_ingestion_sensor(context: SensorEvaluationContext, txmon: TxmonResource):
    settings = txmon.settings()
    landed_now = None
    if settings.ingest_mode == "sensor":
        landed_now = ingest_for(settings.sensor_ingest_seconds)
        context.log.info(f"landed: {json.dumps({k: v for k, v in landed_now.items() if k != 'slices'})}")

    landed = landed_since(settings, json.loads(context.cursor) if context.cursor else {})
    events = []
    today = datetime.now(UTC).date()
    for key, rows in sorted(landed.slices.items()):
        day, region = parse_partition_key(key)
        if not settings.partitions_start_date <= day <= today or region not in settings.regions:
            continue  # outside the partitions (before the start, or dated in the future): landed, not reported
        events.append(
            AssetMaterialization(
                asset_key=STAGING_TRANSACTIONS,
                partition=partition_key(day, region),
                metadata={
                    "rows_landed": rows,
                    "batches": landed.batches,
                    "kafka_offsets": json.dumps(landed.offsets, sort_keys=True),
                    "mode": settings.ingest_mode,
                },
            )
        )
    if not events and landed.cursor == (json.loads(context.cursor) if context.cursor else {}):
        return SkipReason("nothing new landed")
    return SensorResult(asset_events=events, cursor=json.dumps(landed.cursor, sort_keys=True))
