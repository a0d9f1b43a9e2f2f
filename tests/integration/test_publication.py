"""Publication is exactly what was checked: a rebuild during a publication never reaches `reporting`."""

from __future__ import annotations

import json
import time
from datetime import date

import pytest

from tests.integration.test_ingest import event, line
from txmon.core import warehouse
from txmon.core.checks import CheckOutcome
from txmon.core.db import connect
from txmon.core.dbt import dbt_vars, manifest, partitioned_tables, run_dbt, vars_arg
from txmon.quality.publication import NotPublished, publish, slice_lock, slice_watermarks

DAY, REGION = date(2026, 11, 20), "EU"
PASSED = [CheckOutcome("all_checks", True, "passed")]


def land(platform, tmp_path, name: str, events: list[dict]) -> None:
    source = tmp_path / f"{name}.jsonl"
    source.write_text("\n".join(line(e) for e in events) + "\n")
    platform.txmon("produce", str(source))
    platform.txmon("ingest", "--until-idle")


def suspicious(n: int, prefix: str) -> list[dict]:
    return [
        event(
            f"{prefix}-{i}",
            amount="20000.00",
            currency="USD",
            region=REGION,
            event_time=f"{DAY}T{10 + i % 10:02d}:00:00Z",
        )
        for i in range(n)
    ]


def published_rows(platform) -> int:
    return platform.query(
        "SELECT count(*) FROM reporting.suspicious_activity WHERE event_date = %s AND region = %s", (DAY, REGION)
    )[0][0]


def log_entries(platform) -> list[tuple]:
    return platform.query(
        """SELECT table_name, row_count, published_by, launched_by FROM reporting.publication_log
           WHERE partition_date = %s AND region = %s ORDER BY publication_id""",
        (DAY, REGION),
    )


@pytest.fixture
def published(platform, tmp_path):
    """The slice landed and published once through `txmon materialize`."""
    land(platform, tmp_path, "first", suspicious(3, "first"))
    platform.txmon("materialize", "--date", DAY.isoformat(), "--region", REGION)
    assert published_rows(platform) == 3
    # Built by the transformation role, published by the publication role.
    owners = dict(
        platform.query(
            """SELECT schemaname || '.' || tablename, tableowner FROM pg_tables
           WHERE schemaname IN ('intermediate', 'marts', 'reporting')"""
        )
    )
    assert owners["marts.suspicious_activity"] == owners["intermediate.int_transaction_state"] == "txmon_transform"
    assert owners["reporting.suspicious_activity"] == owners["reporting.daily_settlements"] == "txmon_publish"
    assert owners["reporting.publication_log"] == platform.settings.pg_user
    return platform


def test_a_rebuild_after_the_checks_is_not_published(published, tmp_path):
    platform = published
    settings = platform.settings
    table = next(t for t in partitioned_tables(manifest()) if t.name == "suspicious_activity")
    with connect(settings.warehouse_dsn, autocommit=True, purpose="test") as conn:
        checked = slice_watermarks(conn, DAY, REGION)
    entries = log_entries(platform)
    # New events land and the slice is rebuilt by hand (not through a refresh, so without the slice
    # lock) after the checks saw the earlier build.
    land(platform, tmp_path, "second", suspicious(2, "second"))
    models = [t.model for t in partitioned_tables(manifest())]
    proc = run_dbt(
        settings, ["run", "--select", *models, *vars_arg(dbt_vars(settings, DAY, REGION, "new_data"))], capture=True
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert platform.query(
        "SELECT count(*) FROM marts.suspicious_activity WHERE event_date = %s AND region = %s", (DAY, REGION)
    ) == [(5,)]
    with pytest.raises(NotPublished, match="rebuilt after its checks"):
        publish(settings, [table], DAY, REGION, "test-run", PASSED, checked=checked, launched_by="test")
    assert published_rows(platform) == 3, "rows no check saw reached reporting"
    assert log_entries(platform) == entries
    # A rebuild of one model alone, whose run clock does not move, is caught as well: a build is
    # identified by when it was made. Nothing of the slice is published then, not even the tables
    # that were not rebuilt.
    with connect(settings.warehouse_dsn, autocommit=True, purpose="test") as conn:
        checked = slice_watermarks(conn, DAY, REGION)
    settlements = next(t for t in partitioned_tables(manifest()) if t.name == "daily_settlements")
    proc = run_dbt(
        settings, ["run", "--select", settlements.model, *vars_arg(dbt_vars(settings, DAY, REGION))], capture=True
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    with pytest.raises(NotPublished, match="rebuilt after its checks"):
        publish(settings, [table, settlements], DAY, REGION, "test-run", PASSED, checked=checked, launched_by="test")
    assert published_rows(platform) == 3 and log_entries(platform) == entries


def test_a_refresh_waits_for_the_slice_lock_and_then_publishes_what_it_checked(published, tmp_path):
    platform = published
    settings = platform.settings
    before = log_entries(platform)
    assert {e[0] for e in before} == {"suspicious_activity", "daily_settlements"}
    assert {e[2] for e in before} == {"txmon_publish"}
    assert all(e[3].startswith("txmon CLI") for e in before)
    land(platform, tmp_path, "second", suspicious(2, "second"))
    with slice_lock(settings, DAY, REGION):  # a publication of the slice in progress
        proc = platform.popen("materialize", "--date", DAY.isoformat(), "--region", REGION)
        deadline = time.monotonic() + 240
        while not platform.query(
            """SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
               AND application_name = 'txmon:slice-lock' AND wait_event_type = 'Lock' AND wait_event = 'advisory'"""
        )[0][0]:
            assert proc.poll() is None, "materialize ended without waiting for the slice lock"
            assert time.monotonic() < deadline, "materialize never reached the slice lock"
            time.sleep(0.5)
        time.sleep(2)
        assert proc.poll() is None
        assert log_entries(platform) == before and published_rows(platform) == 3
    assert proc.wait(timeout=600) == 0
    after = log_entries(platform)
    assert after[: len(before)] == before, "the log is append-only"
    assert len(after) == len(before) + 2
    assert published_rows(platform) == 5
    checks = json.loads(
        json.dumps(
            platform.query(
                """SELECT checks FROM reporting.published_partitions WHERE table_name = 'suspicious_activity'
           AND partition_date = %s AND region = %s""",
                (DAY, REGION),
            )[0][0]
        )
    )
    assert checks and all(c["passed"] for c in checks.values())


def test_reporting_tables_are_the_migrations_with_the_marts_columns(platform):
    """The migrations declare reporting's tables; publication creates none. Each has its mart's columns."""
    platform.txmon("dagster-setup")  # the marts' tables, created empty; nothing published

    def shape(schema: str, table: str) -> list[tuple]:
        return platform.query(
            """SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns c
               JOIN pg_attribute a ON a.attrelid = format('%%I.%%I', c.table_schema, c.table_name)::regclass
                                  AND a.attname = c.column_name
               WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position""",
            (schema, table),
        )

    for table in ("suspicious_activity", "daily_settlements"):
        assert shape("reporting", table) == shape("marts", table) != []
    migrations = "".join(m.sql for m in warehouse.migrations())
    assert "CREATE TABLE IF NOT EXISTS reporting.suspicious_activity" in migrations
    assert "CREATE TABLE IF NOT EXISTS reporting.daily_settlements" in migrations
