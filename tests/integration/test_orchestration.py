"""The code location loads, and the ingestion sensor lands and reports real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from dagster import AssetKey, DagsterInstance, SensorResult, build_sensor_context

from tests.conftest import REPO
from tests.integration.test_ingest import event, line


def test_definitions_validate(platform):
    from orchestration.instance import dagster_env, dagster_home

    dagster_home(platform.settings)
    env = {**platform.env, **dagster_env(platform.settings)}
    proc = subprocess.run(
        [str(os.path.join(os.path.dirname(sys.executable), "dagster")), "definitions", "validate",
         "-m", "orchestration.definitions"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sensor_tick_lands_and_reports(platform, tmp_path, monkeypatch):
    for name, value in platform.env.items():
        if name.startswith("TXMON_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("TXMON_INGEST_MODE", "sensor")
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(line(e) for e in [
        event("s-1", region="EU", event_time="2026-11-20T10:00:00Z"),
        event("s-2", region="EU", event_time="2026-11-20T11:00:00Z"),
        event("s-3", region="US", currency="USD", event_time="2026-11-21T10:00:00Z"),
        event("s-4", region="US", currency="USD", event_time="2099-01-01T10:00:00Z"),  # a future day: not a partition
    ]))
    platform.txmon("produce", str(source))

    from ingestion import batches
    from orchestration.defs.ingestion.sensors import kafka_ingestion_sensor
    from orchestration.resources import TxmonResource

    monkeypatch.setattr(batches, "SETTLE_SECONDS", 0.0)
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(instance=instance, resources={"txmon": TxmonResource()})
        result = kafka_ingestion_sensor(context)
    assert isinstance(result, SensorResult)
    assert platform.query("SELECT count(*) FROM staging.transactions") == [(4,)]
    reported = {
        (str(e.partition), e.metadata["rows_landed"].value) for e in result.asset_events
        if e.asset_key == AssetKey(["staging", "transactions"])
    }
    assert reported == {("2026-11-20|EU", 2), ("2026-11-21|US", 1)}
    cursor = json.loads(result.cursor)
    assert list(cursor.values()) == [platform.query("SELECT max(batch_id) FROM staging.ingest_batches")[0][0]]

    # The next tick finds nothing new and says so.
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(instance=instance, cursor=result.cursor, resources={"txmon": TxmonResource()})
        again = kafka_ingestion_sensor(context)
    assert not isinstance(again, SensorResult) or not again.asset_events
