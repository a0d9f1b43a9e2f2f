"""The staging.transactions asset, partitioned by region x day: the kafka_ingestion sensor lands and reports it;
materializing a partition re-counts its rows in the region's database."""

from datetime import timedelta

from dagster import AssetExecutionContext, AssetKey, FreshnessPolicy, MaterializeResult, asset

from orchestration.partitions import parse_partition_key, region_day_partitions
from orchestration.resources import TxmonResource
from txmon.core.db import connect
from txmon.core.settings import Role, Settings

STAGING_TRANSACTIONS = AssetKey(["staging", "transactions"])


def slice_stats(settings: Settings, day, region) -> dict:
    """Rows of one region x day slice of staging.transactions, from the region's own database."""
    with connect(settings.dsn_for_region(region, Role.TRANSFORM), autocommit=True, purpose="report") as conn:
        rows, transactions, last = conn.execute(
            """SELECT count(*), count(DISTINCT transaction_id), max(ingested_at) FROM staging.transactions
               WHERE event_time >= %s::date::timestamp AT TIME ZONE 'UTC'
                 AND event_time < (%s::date + 1)::timestamp AT TIME ZONE 'UTC' AND region = %s""",
            (day, day, region),
        ).fetchone()
    return {"rows": rows, "distinct_transactions": transactions, "last_ingested_at": str(last) if last else None}


def staging_asset(settings: Settings):
    @asset(
        key=STAGING_TRANSACTIONS,
        partitions_def=region_day_partitions(settings),
        group_name="staging",
        kinds={"postgres", "kafka"},
        freshness_policy=FreshnessPolicy.time_window(fail_window=timedelta(minutes=settings.staging_freshness_minutes)),
        description=(
            "Transaction events landed from Kafka exactly once (ingestion/). The kafka_ingestion sensor "
            "lands them and reports each region x day partition it touched; materializing a partition "
            "here re-counts it."
        ),
    )
    def staging_transactions(context: AssetExecutionContext, txmon: TxmonResource) -> MaterializeResult:
        day, region = parse_partition_key(context.partition_key)
        return MaterializeResult(metadata=slice_stats(txmon.settings(), day, region))

    return staging_transactions
