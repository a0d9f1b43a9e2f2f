"""`/metrics`: the platform's state (consumer lag, mart freshness, last publication), read at most once per
interval whatever the scrape rate, and the API's own requests, in Prometheus' text format (the official
client library)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ingestion.lag import end_offsets, lag
from txmon.api.cache import Cached
from txmon.api.store import Store
from txmon.core.settings import KafkaUser

log = logging.getLogger("txmon.api")
KAFKA_TIMEOUT = 3.0
T = TypeVar("T")


class PlatformCollector(Collector):
    """Reads Kafka's end offsets and the databases' positions and publication log when scraped."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "txmon_source_up", "Whether a source answered this scrape (1) or not (0)", labels=["source"]
        )
        store = self.store
        ends = self._read(up, "kafka", lambda: end_offsets(store.settings, KafkaUser.API, timeout=KAFKA_TIMEOUT))
        warehouse = self._read(
            up, "postgresql", lambda: (store.stored_positions(), store.latest_publications(), store.recent_batches())
        )
        dagster = self._read(up, "dagster", store.dagster)
        if ends is not None and warehouse is not None:
            yield self._lag(ends, warehouse[0])
        if warehouse is not None:
            yield from self._publications(warehouse[1])
            yield from self._quarantine(*warehouse[2])
        if dagster is not None:
            yield from self._dagster(dagster)
        yield up

    @staticmethod
    def _read(up: GaugeMetricFamily, source: str, read: Callable[[], T]) -> T | None:
        """``read()``, or None when its source does not answer; either way ``up`` says which."""
        try:
            value = read()
        except Exception as exc:  # a scrape reports what it can
            log.warning("metrics: %s did not answer: %s", source, exc)
            up.add_metric([source], 0)
            return None
        up.add_metric([source], 1)
        return value

    @staticmethod
    def _lag(ends: dict[int, tuple[int, int]], stored: list[dict[int, int]]) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily(
            "txmon_consumer_lag",
            "Messages on the topic not yet landed (end offset minus stored position)",
            labels=["partition"],
        )
        for partition, behind in sorted(lag(ends, stored).items()):
            gauge.add_metric([str(partition)], behind)
        return gauge

    @staticmethod
    def _publications(rows: list[dict]) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        freshness = GaugeMetricFamily(
            "txmon_mart_freshness_seconds",
            "Age of the staging data behind a mart's latest publication in a region (now - staging_as_of)",
            labels=["mart", "region"],
        )
        published = GaugeMetricFamily(
            "txmon_last_published_timestamp_seconds",
            "When a mart last published a partition of a region (Unix time)",
            labels=["mart", "region"],
        )
        latest_day = GaugeMetricFamily(
            "txmon_latest_published_day_timestamp_seconds",
            "The latest business day a mart has published for a region (its midnight UTC, Unix time)",
            labels=["mart", "region"],
        )
        for row in rows:
            labels = [row["table_name"], row["region"]]
            as_of = row["staging_as_of"] or row["published_at"]
            freshness.add_metric(labels, max(0.0, now - as_of.timestamp()))
            published.add_metric(labels, row["published_at"].timestamp())
            midnight = datetime.combine(row["latest_day"], datetime.min.time(), UTC)
            latest_day.add_metric(labels, midnight.timestamp())
        yield freshness
        yield published
        yield latest_day

    @staticmethod
    def _quarantine(quarantined: int, consumed: int) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "txmon_quarantined_messages_15m", "Messages quarantined in the last 15 minutes", value=quarantined
        )
        yield GaugeMetricFamily(
            "txmon_quarantine_ratio",
            "Share of the messages consumed in the last 15 minutes that were quarantined",
            value=quarantined / consumed if consumed else 0.0,
        )

    @staticmethod
    def _dagster(found: dict[str, list[dict]]) -> Iterator[GaugeMetricFamily]:
        failed = GaugeMetricFamily(
            "txmon_failed_checks",
            "Checks whose latest evaluation of a partition failed (last two days; the partition is not published)",
            labels=["asset", "partition"],
        )
        for row in found["failed_checks"]:
            failed.add_metric(["/".join(json.loads(row["asset_key"])), row["partition"] or ""], row["failed"])
        yield failed
        runs = GaugeMetricFamily("txmon_dagster_runs", "Dagster runs queued or in progress", labels=["status"])
        in_flight = {row["status"]: row["runs"] for row in found["runs"]}
        for status in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"):
            runs.add_metric([status], in_flight.get(status, 0))
        yield runs
        (last_failed,) = found["last_failed_run"]
        if last_failed["at"] is not None:
            yield GaugeMetricFamily(
                "txmon_dagster_last_failed_run_timestamp_seconds",
                "When a Dagster run last failed (Unix time)",
                value=float(last_failed["at"]),
            )
        (ticks,) = found["sensor_ticks"]
        if ticks["last_tick"] is not None:
            yield GaugeMetricFamily(
                "txmon_dagster_last_sensor_tick_timestamp_seconds",
                "When a Dagster sensor last ticked (Unix time)",
                value=float(ticks["last_tick"]),
            )
        yield GaugeMetricFamily(
            "txmon_dagster_failed_sensor_ticks_10m",
            "Sensor ticks that failed in the last 10 minutes",
            value=ticks["failed_10m"],
        )


class Metrics:
    """The platform's metrics (read from their sources at most once per ``seconds``, in a thread of their
    own, whatever the scrape rate) and the API's own (requests, live at each scrape)."""

    def __init__(self, store: Store, seconds: float) -> None:
        self.platform = CollectorRegistry()
        self.platform.register(PlatformCollector(store))
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "txmon_api_requests", "HTTP requests answered", ["path", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "txmon_api_request_duration_seconds",
            "Time to answer an HTTP request",
            ["path"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.readings = Counter(
            "txmon_api_metrics_readings",
            "Readings of the platform's metrics from their sources (at most one per TXMON_API_STATUS_CACHE_SECONDS)",
            registry=self.registry,
        )
        self._platform = Cached(seconds, self._read, "metrics")

    def _read(self) -> bytes:
        self.readings.inc()
        return generate_latest(self.platform)

    async def exposition(self) -> bytes:
        """The text format: the platform's last reading, then the API's own metrics as they are now."""
        return await self._platform.get() + generate_latest(self.registry)

    def close(self) -> None:
        self._platform.close()
