"""The code location loads, and the ingestion sensor lands and reports real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal

from dagster import (
    AssetKey,
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
        [
            str(os.path.join(os.path.dirname(sys.executable), "dagster")),
            "definitions",
            "validate",
            "-m",
            "orchestration.definitions",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sensor_keeps_a_lander_that_lands_and_the_ticks_report(platform, tmp_path, monkeypatch):
    for name, value in platform.env.items():
        if name.startswith("TXMON_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("TXMON_INGEST_MODE", "sensor")
    source = tmp_path / "events.jsonl"
    source.write_text(
        "\n".join(
            line(e)
            for e in [
                event("s-1", region="EU", event_time="2026-11-20T10:00:00Z"),
                event("s-2", region="EU", event_time="2026-11-20T11:00:00Z"),
                event("s-3", region="US", currency="USD", event_time="2026-11-21T10:00:00Z"),
                event(
                    "s-4", region="US", currency="USD", event_time="2099-01-01T10:00:00Z"
                ),  # a future day: quarantined
            ]
        )
    )
    platform.txmon("produce", str(source))

    from ingestion import batches, processes
    from orchestration.defs.ingestion.sensors import kafka_ingestion_sensor
    from orchestration.resources import TxmonResource
    from txmon.core.leases import end_leases

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
        while platform.query(  # all four: the quarantined event and the valid ones may land in separate batches
            "SELECT (SELECT count(*) FROM staging.rejected_transactions), count(*) FROM staging.transactions"
        ) != [(1, 3)]:
            assert time.monotonic() < deadline, "the lander did not land the events"
            time.sleep(0.5)
        result = tick()
        assert isinstance(result, SensorResult)
        reported = {
            (str(e.partition), e.metadata["rows_landed"].value)
            for e in result.asset_events
            if e.asset_key == AssetKey(["staging", "transactions"])
        }
        assert reported == {("2026-11-20|EU", 2), ("2026-11-21|US", 1)}
        cursor = json.loads(result.cursor)
        assert list(cursor.values()) == [platform.query("SELECT max(batch_id) FROM staging.ingest_batches")[0][0]]

        # The next tick finds nothing new and says so.
        again = tick(result.cursor)
        assert not isinstance(again, SensorResult) or not again.asset_events
    finally:
        end_leases(settings)
    # Without its lease the lander exits.
    deadline = time.monotonic() + 30
    while processes._alive(lander.pid):
        assert time.monotonic() < deadline, "the lander outlived its lease"
        time.sleep(0.5)


def test_refresh_sensor_runs_one_refresh_for_every_touched_partition(platform, tmp_path, monkeypatch):
    """The marts_refresh sensor asks for one refresh_partitions run covering the partitions that
    received data (the open day and a closed day alike); the run rebuilds, checks and publishes
    each, then keeps following: a later event that supersedes a closed day's latest state marks that
    day, and the same run refreshes it in its next cycle; the sensor then has nothing left to ask."""
    for name, value in platform.env.items():
        if name.startswith("TXMON_"):
            monkeypatch.setenv(name, value)
    from ingestion import batches
    from orchestration.definitions import build_definitions
    from orchestration.defs.dbt import refresh
    from orchestration.resources import TxmonResource

    monkeypatch.setattr(batches, "SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(refresh, "IDLE_SECONDS", 2)  # a following run ends 2 s after its last refresh
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    now = min(datetime.now(UTC).replace(microsecond=0), datetime.combine(today, clock_time(23, 59, 58), UTC))
    stamp, later = now.isoformat(), (now + timedelta(seconds=1)).isoformat()
    noon = datetime.combine(yesterday, clock_time(12), UTC).isoformat()

    def land(name, events):
        source = tmp_path / name
        source.write_text("\n".join(line(e) for e in events))
        platform.txmon("produce", str(source))
        platform.txmon("ingest", "--until-idle")

    platform.txmon("dagster-setup")
    defs = build_definitions(platform.settings)
    sensor, job = defs.get_sensor_def("marts_refresh"), defs.resolve_job_def("refresh_partitions")
    instance = DagsterInstance.ephemeral()

    def tick(cursor):
        context = build_sensor_context(instance=instance, cursor=cursor, resources={"txmon": TxmonResource()})
        return sensor(context)

    def run(result):
        assert isinstance(result, SensorResult) and len(result.run_requests) == 1, result
        request = result.run_requests[0]
        outcome = job.execute_in_process(
            run_config=request.run_config,
            instance=instance,
            raise_on_error=False,
            tags={**request.tags, "dagster/run_key": request.run_key},
        )
        assert outcome.success
        assert request.run_config["ops"]["refresh"]["config"]["follow_seconds"] == platform.settings.refresh_run_seconds
        return request.run_config["ops"]["refresh"]["config"]["partitions"], outcome

    def refreshed(outcome):
        """The partitions a run refreshed, cycle after cycle, in order."""
        keys = [
            str(e.event_specific_data.materialization.partition)
            for e in outcome.all_events
            if e.event_type_value == "ASSET_MATERIALIZATION"
            and e.event_specific_data.materialization.asset_key == AssetKey(["intermediate", "int_transaction_state"])
        ]
        return keys

    def suspicious(day):
        return dict(
            platform.query(
                "SELECT transaction_id, reasons FROM reporting.suspicious_activity WHERE event_date = %s", (day,)
            )
        )

    def settled(day, region="EU"):
        return platform.query(
            "SELECT transaction_count, settled_count, settled_volume FROM reporting.daily_settlements"
            " WHERE settlement_date = %s AND region = %s",
            (day, region),
        )

    land(
        "first.jsonl",
        [
            event("od-1", amount="10000.01", currency="USD", region="US", event_time=stamp),
            event("od-2", amount="10000.00", currency="USD", region="US", event_time=stamp),
            event("od-3", amount="5.00", region="EU", fraud_flag=True, event_time=stamp),
            event("od-4", "pending", amount="5.00", region="EU", event_time=stamp),
            event("late-1", "pending", amount="7.25", region="EU", event_time=noon),
            event("late-2", amount="20000", region="EU", event_time=noon),
        ],
    )
    first = tick(None)
    partitions, outcome = run(first)
    assert partitions == sorted([f"{today}|EU", f"{today}|US", f"{yesterday}|EU"])
    assert suspicious(today) == {"od-1": ["amount_over_threshold"], "od-3": ["fraud_flag"]}
    assert suspicious(yesterday) == {"late-2": ["amount_over_threshold"]}
    # The closed day's settlements are published; the open day's wait for it to close.
    assert settled(yesterday) == [(2, 1, Decimal("20000.0000"))] and settled(today) == []
    evaluations = [e.event_specific_data for e in outcome.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert evaluations and all(e.passed for e in evaluations)
    assert {str(e.partition) for e in evaluations} == set(partitions)
    assert {t for (t,) in platform.query("SELECT DISTINCT run_id FROM reporting.published_partitions")} == {
        outcome.run_id
    }

    # Nothing new: no run.
    quiet = tick(first.cursor)
    assert not quiet.run_requests, quiet

    # Today a new status flags od-4 and settles late-1: the cycle's merge of the state marks today and yesterday
    # (where late-1 was pending, its old day), and the same cycle refreshes both from their watermarks, in day order.
    land(
        "second.jsonl",
        [
            event("od-4", "settled", amount="5.00", region="EU", fraud_flag=True, event_time=later),
            event("late-1", "settled", amount="7.25", region="EU", event_time=stamp),
        ],
    )
    second = tick(quiet.cursor)
    partitions, outcome = run(second)
    assert partitions == [f"{today}|EU"]
    assert refreshed(outcome) == [f"{yesterday}|EU", f"{today}|EU"]
    modes = {
        e.event_specific_data.materialization.metadata["slice_mode"].value
        for e in outcome.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
        and "slice_mode" in e.event_specific_data.materialization.metadata
    }
    assert modes == {"new_data"}
    # After a publication, an incremental refresh checks what landed or was rebuilt since it.
    scopes = {
        e.event_specific_data.metadata["checked_since"].value
        for e in outcome.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert scopes and "whole slice" not in scopes, scopes
    assert suspicious(today) == {"od-1": ["amount_over_threshold"], "od-3": ["fraud_flag"], "od-4": ["fraud_flag"]}
    assert settled(yesterday) == [(1, 1, Decimal("20000.0000"))]  # late-1 now belongs to today
    assert not tick(second.cursor).run_requests
    instance.dispose()


def test_marks_that_can_never_be_a_partition_are_dropped(platform):
    """A merge's mark of a day before the first partition, or of a region not configured, is dropped when the marks
    are read; a partition's mark stays for its refresh."""
    from orchestration.defs.dbt.refresh import marked_slices

    before = platform.settings.partitions_start_date - timedelta(days=1)
    today = datetime.now(UTC).date()
    platform.execute(
        "INSERT INTO intermediate.changed_slices (slice_date, region) VALUES (%s, 'EU'), (%s, 'MARS'), (%s, 'EU')",
        (before, today, today),
    )
    assert marked_slices(platform.settings) == {f"{today}|EU"}
    assert platform.query("SELECT slice_date, region FROM intermediate.changed_slices") == [(today, "EU")]
