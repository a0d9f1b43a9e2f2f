"""The Kafka ingestion sensor."""
# In `sensor` mode the sensor keeps a lander alive: a `txmon ingest --lease` process that lands continuously while the
# sensor ticks (each tick renews its lease; it stops by itself within 30 s of the last tick, when the sensor is turned
# off or the daemon stops). Every tick then reports a materialization of every staging partition that received rows,
# from `staging.ingest_batches`, with row counts and Kafka offsets as metadata. In `worker` mode standalone `txmon
# ingest` workers land the data and the sensor only reports. Offsets are stored with the rows, so a failed tick or
# lander loses nothing: the next one resumes where the data is.

import json
from datetime import UTC, datetime

from dagster import AssetMaterialization, DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor

from ingestion.batches import landed_since
from ingestion.processes import keep_landing
from orchestration.defs.ingestion.assets import STAGING_TRANSACTIONS
from orchestration.partitions import parse_partition_key, partition_key
from orchestration.resources import TxmonResource, skip_while_unreachable


@sensor(
    name="kafka_ingestion",
    minimum_interval_seconds=5,
    default_status=DefaultSensorStatus.RUNNING,
    description="Lands Kafka events in staging.transactions and reports the partitions it touched.",
)
@skip_while_unreachable
def kafka_ingestion_sensor(context: SensorEvaluationContext, txmon: TxmonResource):
    settings = txmon.settings()
    if settings.ingest_mode == "sensor":
        lander = keep_landing(settings)
        if lander.started:
            context.log.info(f"started the lander (txmon ingest --lease, pid {lander.pid})")

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
