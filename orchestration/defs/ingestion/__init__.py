"""Kafka -> staging.transactions: the landing asset and the sensor that drives and reports it."""

from dagster import Definitions

from orchestration.defs.ingestion.assets import staging_transactions
from orchestration.defs.ingestion.sensors import kafka_ingestion_sensor

defs = Definitions(assets=[staging_transactions], sensors=[kafka_ingestion_sensor])
