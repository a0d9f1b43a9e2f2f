"""Kafka -> staging.transactions: the landing asset and the sensor that drives and reports it."""

from dagster import Definitions

from orchestration.defs.ingestion.assets import staging_asset
from orchestration.defs.ingestion.sensors import kafka_ingestion_sensor
from txmon.core.settings import Settings


def build(settings: Settings) -> Definitions:
    return Definitions(assets=[staging_asset(settings)], sensors=[kafka_ingestion_sensor])
