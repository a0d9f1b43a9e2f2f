"""The code location loads, and the ingestion sensor lands and reports real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time

from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    SensorResult,
    build_sensor_context,
)

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


def test_sensor_keeps_a_lander_that_lands_and_the_ticks_report(platform, tmp_path, monkeypatch):
    for name, value in platform.env.items():
        if name.startswith("TXMON_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("TXMON_INGEST_MODE", "sensor")
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(line(e) for e in [
        event("s-1", region="EU", event_time="2026-11-20T10:00:00Z"),
        event("s-2", region="EU", event_time="2026-11-20T11:00:00Z"),
        event("s-3", region="US", currency="USD", event_time="2026-11-21T10:00:00Z"),
        event("s-4", region="US", currency="USD", event_time="2099-01-01T10:00:00Z"),  # a future day: quarantined
    ]))
    platform.txmon("produce", str(source))

    from ingestion import batches, processes
    from orchestration.defs.ingestion.sensors import kafka_ingestion_sensor
    from orchestration.resources import TxmonResource

    monkeypatch.setattr(batches, "SETTLE_SECONDS", 0.0)
    settings = platform.settings

    def tick(cursor=None):
        with DagsterInstance.ephemeral() as instance:
            context = build_sensor_context(instance=instance, cursor=cursor, resources={"txmon": TxmonResource()})
            return kafka_ingestion_sensor(context)

    try:
        tick()  # starts the lander; landing does not wait for ticks
        lander = processes.keep_landing(settings)
        assert not lander.started, "a second tick must renew the lease, not start another lander"
        deadline = time.monotonic() + 60
        while platform.query("SELECT count(*) FROM staging.rejected_transactions") != [(1,)]:
            assert time.monotonic() < deadline, "the lander did not land the events"
            time.sleep(0.5)
        result = tick()
        assert isinstance(result, SensorResult)
        reported = {
            (str(e.partition), e.metadata["rows_landed"].value) for e in result.asset_events
            if e.asset_key == AssetKey(["staging", "transactions"])
        }
        assert reported == {("2026-11-20|EU", 2), ("2026-11-21|US", 1)}
        cursor = json.loads(result.cursor)
        assert list(cursor.values()) == [platform.query("SELECT max(batch_id) FROM staging.ingest_batches")[0][0]]

        # The next tick finds nothing new and says so.
        again = tick(result.cursor)
        assert not isinstance(again, SensorResult) or not again.asset_events
    finally:
        processes.stop_landing(settings)
    # Without its lease the lander exits.
    deadline = time.monotonic() + 30
    while processes._alive(lander.pid):
        assert time.monotonic() < deadline, "the lander outlived its lease"
        time.sleep(0.5)


def test_open_day_sensor_refreshes_suspicious_activity_in_process(platform, tmp_path, monkeypatch):
    """The open day's suspicious activity is refreshed by the sensor itself: today's touched regions
    only, first in full, then only the transactions with new events, reported with their dbt tests."""
    for name, value in platform.env.items():
        if name.startswith("TXMON_"):
            monkeypatch.setenv(name, value)
    from ingestion import batches
    from orchestration.defs.dbt.open_day import open_day_marts_sensor
    from orchestration.resources import TxmonResource

    monkeypatch.setattr(batches, "SETTLE_SECONDS", 0.0)
    today = datetime.now(UTC).date()
    now = min(datetime.now(UTC).replace(microsecond=0), datetime.combine(today, clock_time(23, 59, 58), UTC))
    stamp, later = now.isoformat(), (now + timedelta(seconds=1)).isoformat()

    def land(name, events):
        source = tmp_path / name
        source.write_text("\n".join(line(e) for e in events))
        platform.txmon("produce", str(source))
        platform.txmon("ingest", "--until-idle")

    def tick(cursor=None):
        with DagsterInstance.ephemeral() as instance:
            context = build_sensor_context(instance=instance, cursor=cursor, resources={"txmon": TxmonResource()})
            return open_day_marts_sensor(context)

    def suspicious():
        return dict(platform.query(
            "SELECT transaction_id, reasons FROM marts.suspicious_activity WHERE event_date = %s", (today,)
        ))

    platform.txmon("dagster-setup")
    land("first.jsonl", [
        event("od-1", amount="10000.01", currency="USD", region="US", event_time=stamp),
        event("od-2", amount="10000.00", currency="USD", region="US", event_time=stamp),
        event("od-3", amount="5.00", region="EU", fraud_flag=True, event_time=stamp),
        event("od-4", "pending", amount="5.00", region="EU", event_time=stamp),
    ])
    first = tick()
    assert isinstance(first, SensorResult)
    assert suspicious() == {"od-1": ["amount_over_threshold"], "od-3": ["fraud_flag"]}
    materialized = {(e.asset_key.to_user_string(), str(e.partition), e.metadata["slice_mode"].value)
                    for e in first.asset_events if isinstance(e, AssetMaterialization) and "slice_mode" in e.metadata}
    assert materialized == {
        (asset, f"{today}|{region}", "full")
        for asset in ("intermediate/int_transactions_latest", "marts/suspicious_activity") for region in ("EU", "US")
    }
    published = {(e.asset_key.to_user_string(), str(e.partition))
                 for e in first.asset_events if isinstance(e, AssetMaterialization) and "slice_mode" not in e.metadata}
    assert published == {("reporting/suspicious_activity", f"{today}|{region}") for region in ("EU", "US")}
    checks = [e for e in first.asset_events if isinstance(e, AssetCheckEvaluation)]
    assert checks and all(c.passed for c in checks)
    assert {c.metadata["partition"].value for c in checks} == {f"{today}|EU", f"{today}|US"}
    assert json.loads(first.cursor)["pending"] == []
    # Checked (dbt tests, GX suite, reconciliation) and published to reporting.
    assert {"gx_suspicious_activity", "suspicious_in_staging"} <= {c.check_name for c in checks}
    assert platform.query(
        "SELECT transaction_id FROM reporting.suspicious_activity WHERE event_date = %s ORDER BY 1", (today,)
    ) == [("od-1",), ("od-3",)]
    assert {(t, r) for t, r, _ in platform.query(
        "SELECT table_name, region, run_id FROM reporting.published_partitions WHERE partition_date = %s", (today,)
    )} == {("suspicious_activity", "EU"), ("suspicious_activity", "US")}

    # Nothing new: nothing to do.
    assert not isinstance(tick(first.cursor), SensorResult)

    # A later event (a new status: the same one again would be a duplicate) flags an existing transaction;
    # only EU is refreshed, and only what is new.
    land("second.jsonl", [
        event("od-4", "settled", amount="5.00", region="EU", fraud_flag=True, event_time=later),
        event("od-5", amount="20000", currency="USD", region="EU", event_time=stamp),
    ])
    second = tick(first.cursor)
    assert suspicious() == {
        "od-1": ["amount_over_threshold"], "od-3": ["fraud_flag"], "od-4": ["fraud_flag"],
        "od-5": ["amount_over_threshold"],
    }
    materialized = {(e.asset_key.to_user_string(), str(e.partition), e.metadata["slice_mode"].value)
                    for e in second.asset_events if isinstance(e, AssetMaterialization) and "slice_mode" in e.metadata}
    assert materialized == {
        ("intermediate/int_transactions_latest", f"{today}|EU", "new_data"),
        ("marts/suspicious_activity", f"{today}|EU", "new_data"),
    }
