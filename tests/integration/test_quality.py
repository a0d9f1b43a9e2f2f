"""Validated marts: write-audit-publish to reporting, the GX suites, the reconciliations, bi_reader."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.integration.test_ingest import line
from tests.integration.test_marts import D1, EVENTS, EXPECTED_SETTLEMENTS, LATE
from txmon.core.settings import replace

DAY = date.fromisoformat(D1)


@pytest.fixture
def landed(platform, tmp_path):
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(line(e) for e in [*EVENTS, *LATE]))
    platform.txmon("produce", str(source))
    platform.txmon("ingest", "--until-idle")
    return platform


def partition_rows(platform, schema: str, table: str) -> list[tuple]:
    column = "event_date" if table == "suspicious_activity" else "settlement_date"
    sql = f"SELECT * FROM {schema}.{table} WHERE {column} = %s AND region = 'US' ORDER BY 1, 2, 3"  # noqa: S608
    return platform.query(sql, (DAY,))


def reporting(platform, table: str) -> list[tuple]:
    return partition_rows(platform, "reporting", table)


def marts(platform, table: str) -> list[tuple]:
    return partition_rows(platform, "marts", table)


def run_id(proc) -> str:
    """The run of the partition line `2026-11-20|US  ok  run <id> ...` printed by materialize/publish."""
    return next(line.split()[3] for line in proc.stdout.splitlines() if line.startswith(f"{D1}|US"))


def test_clean_partition_publishes_and_a_broken_one_keeps_the_previous_version(landed):
    platform = landed
    first = platform.txmon("materialize", "--date", D1, "--region", "US")
    first_run = run_id(first)

    # Published: reporting holds exactly the checked mart partition, with when, which run, which checks.
    for table in ("suspicious_activity", "daily_settlements"):
        assert reporting(platform, table) == marts(platform, table) != []
    settlements = {(c, n, s, v) for _, _, c, n, s, v, *_ in reporting(platform, "daily_settlements")}
    assert settlements == {("USD", 4, 3, EXPECTED_SETTLEMENTS[(D1, "US", "USD")][2])}
    published = platform.query(
        "SELECT table_name, run_id, row_count, checks FROM reporting.published_partitions"
        " WHERE partition_date = %s AND region = 'US' ORDER BY 1",
        (DAY,),
    )
    assert [(t, r) for t, r, _, _ in published] == [
        ("daily_settlements", first_run),
        ("suspicious_activity", first_run),
    ]
    checks = published[0][3]
    for name in ("gx_staging_transactions", "gx_daily_settlements", "gx_suspicious_activity", "staging_events_unique"):
        assert checks[name]["passed"] is True, name
    # the state held to staging, the marts to the state (dbt tests)
    for kind in ("reflects_latest_events", "selected_by_rule", "totals_match_state"):
        assert any(name.startswith(kind) and c["passed"] for name, c in checks.items()), kind
    assert any(name.startswith("unique_") for name in checks)  # the dbt tests too
    good = reporting(platform, "daily_settlements")

    # A row that bypassed ingestion (an unknown currency) lands in the slice: the next refresh of the
    # partition (incremental: only what landed since its build) rebuilds it with that row, its checks
    # fail, nothing is published, reporting still holds the previous good version.
    platform.execute(
        """INSERT INTO staging.transactions (transaction_id, status, event_time, account_id, amount, currency,
               region, topic, "partition", "offset", raw_event)
           VALUES ('bad-1', 'settled', %s, 'acc-bad', 5, 'XXX', 'US', 'manual', 0, 0, '{}')""",
        (datetime(2026, 11, 20, 12, tzinfo=UTC),),
    )
    broken = platform.txmon("publish", "--date", D1, "--region", "US", check=False)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "gx_staging_transactions" in broken.stdout and "accepted_values__currency" in broken.stdout
    assert reporting(platform, "daily_settlements") == good
    assert platform.query(
        "SELECT run_id FROM reporting.published_partitions WHERE table_name = 'daily_settlements'"
        " AND partition_date = %s AND region = 'US'",
        (DAY,),
    ) == [(first_run,)]

    # The failure is in Dagster's record of the run, as failed checks on the mart.
    failed = platform.query_dagster(
        "SELECT check_name FROM asset_check_executions WHERE run_id = %s AND execution_status = 'FAILED'",
        (run_id(broken),),
    )
    assert {"gx_staging_transactions", "accepted_values__currency"} <= {name for (name,) in failed}
    # In counts, not identifiers: nothing the run stored (its logs, check metadata and descriptions)
    # names the offending row or its account, nor any landed transaction (aggregates per currency are fine).
    stored = " ".join(
        e for (e,) in platform.query_dagster("SELECT event FROM event_logs WHERE run_id = %s", (run_id(broken),))
    )
    assert "ASSET_CHECK_EVALUATION" in stored and "unexpected_count" in stored
    assert "bad-1" not in stored and "acc-bad" not in stored
    assert_names_no_one(platform, stored)

    # With the bad row gone, rebuilding the partition passes and publishes it again.
    platform.execute("DELETE FROM staging.transactions WHERE transaction_id = 'bad-1'")
    again = platform.txmon("materialize", "--date", D1, "--region", "US")
    assert reporting(platform, "daily_settlements") == good
    assert platform.query(
        "SELECT run_id FROM reporting.published_partitions WHERE table_name = 'daily_settlements'"
        " AND partition_date = %s AND region = 'US'",
        (DAY,),
    ) == [(run_id(again),)]


def test_a_staging_row_outside_the_contract_blocks_publication(landed):
    """A row that bypassed ingestion (unknown currency) fails staging's suite: nothing is published."""
    platform = landed
    platform.execute(
        """INSERT INTO staging.transactions (transaction_id, status, event_time, account_id, amount, currency,
               region, topic, "partition", "offset", raw_event)
           VALUES ('bad-1', 'settled', %s, 'acc-bad', 5, 'XXX', 'US', 'manual', 0, 0, '{}')""",
        (datetime(2026, 11, 20, 12, tzinfo=UTC),),
    )
    proc = platform.txmon("materialize", "--date", D1, "--region", "US", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "gx_staging_transactions" in proc.stdout
    assert platform.query("SELECT count(*) FROM reporting.published_partitions") == [(0,)]


# ------------------------------------------------------------------ each suite fails on data that breaks it


def checkable(platform, relation: str) -> str:
    """A scratch table the checks may read: they connect as the transformation role."""
    platform.execute(f"GRANT USAGE ON SCHEMA public TO txmon_transform; GRANT SELECT ON {relation} TO txmon_transform")
    return relation


def scratch(platform, like: str) -> str:
    name = f"scratch_{like.replace('.', '_')}"
    platform.execute(f"CREATE TABLE public.{name} AS SELECT * FROM {like} WITH NO DATA")  # noqa: S608
    return checkable(platform, f"public.{name}")


def staging_row(**overrides) -> dict:
    row = {
        "transaction_id": "t-1",
        "status": "settled",
        "event_time": datetime(2026, 11, 20, 12, tzinfo=UTC),
        "account_id": "acc-1",
        "amount": 10,
        "currency": "EUR",
        "region": "US",
        "fraud_flag": False,
        "topic": "t",
        "partition": 0,
        "offset": 0,
        "raw_event": "{}",
        "ingested_at": datetime.now(UTC),
    }
    row.update(overrides)
    return row


def insert(platform, table: str, rows: list[dict]) -> None:
    for row in rows:
        columns = ", ".join(f'"{c}"' for c in row)
        values = ", ".join(["%s"] * len(row))
        platform.execute(f"INSERT INTO {table} ({columns}) VALUES ({values})", tuple(row.values()))  # noqa: S608


def failed_expectations(outcome) -> dict[str, list]:
    """expectation:column -> the sample of failing values in the metadata (none unless configured)."""
    out = {}
    for f in outcome.metadata["failed_expectations"]:
        kwargs = f["kwargs"]
        assert f["unexpected_count"] > 0
        out[f"{f['expectation']}:{kwargs.get('column') or kwargs.get('column_list') or kwargs.get('column_A')}"] = (
            f.get("sample_failing_values", [])
        )
    return out


def sampling(settings, size: int = 5):
    return replace(settings, metadata_sample_size=size)


def test_staging_suite_fails_on_each_family(platform):
    from expectations import validate

    table = scratch(platform, "staging.transactions")
    insert(platform, table, [staging_row(transaction_id=f"ok-{i}") for i in range(3)])
    fetched = []  # rows GX read from statements that return the batch's rows themselves (not aggregates)

    def count_rows(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT *") and cursor.description:
            fetched.append(cursor.rowcount)

    sa.event.listen(sa.engine.Engine, "after_cursor_execute", count_rows)
    try:
        assert validate(platform.settings, "staging_transactions", DAY, "US", relation=table).passed
    finally:
        sa.event.remove(sa.engine.Engine, "after_cursor_execute", count_rows)
    # GX learns the batch's columns without fetching its rows (a day of 10 million events).
    assert fetched and set(fetched) == {0}, fetched

    future = datetime.now(UTC) + timedelta(hours=2)
    insert(
        platform,
        table,
        [
            staging_row(transaction_id="null-account", account_id=None),
            staging_row(transaction_id="zero", amount=0),
            staging_row(transaction_id="xxx", currency="XXX"),
        ],
    )
    outcome = validate(platform.settings, "staging_transactions", DAY, "US", relation=table)
    assert not outcome.passed
    failed = failed_expectations(outcome)
    assert set(failed) == {
        "expect_column_values_to_not_be_null:account_id",
        "expect_column_values_to_be_between:amount",
        "expect_column_values_to_be_in_set:currency",
    }
    assert all(values == [] for values in failed.values())  # counts only, by default
    failed = failed_expectations(
        validate(sampling(platform.settings), "staging_transactions", DAY, "US", relation=table)
    )
    assert failed["expect_column_values_to_be_in_set:currency"] == ["XXX"]
    assert failed["expect_column_values_to_be_between:amount"] == ["0.0000"]

    # An event further in the future than the allowed clock skew, in its own day's batch.
    insert(platform, table, [staging_row(transaction_id="future", event_time=future)])
    outcome = validate(platform.settings, "staging_transactions", future.date(), "US", relation=table)
    assert set(failed_expectations(outcome)) == {"expect_column_values_to_be_between:event_time"}


def test_mart_suites_fail_on_each_family(platform):
    from expectations import validate

    platform.execute(
        """CREATE TABLE public.sus (transaction_id text, account_id text, region text, amount numeric,
               currency text, amount_usd numeric, event_time timestamptz, event_date date, reasons text[])"""
    )
    checkable(platform, "public.sus")
    row = {
        "transaction_id": "s-1",
        "account_id": "a",
        "region": "US",
        "amount": 20000,
        "currency": "USD",
        "amount_usd": 20000,
        "event_time": datetime(2026, 11, 20, 9, tzinfo=UTC),
        "event_date": DAY,
        "reasons": ["amount_over_threshold"],
    }
    insert(platform, "public.sus", [row])
    assert validate(platform.settings, "suspicious_activity", DAY, "US", relation="public.sus").passed
    insert(platform, "public.sus", [row, {**row, "transaction_id": "s-2", "amount_usd": -1, "currency": "ZZZ"}])
    outcome = validate(platform.settings, "suspicious_activity", DAY, "US", relation="public.sus")
    failed = failed_expectations(outcome)
    assert set(failed) == {
        "expect_column_values_to_be_unique:transaction_id",
        "expect_column_values_to_be_between:amount_usd",
        "expect_column_values_to_be_in_set:currency",
    }
    assert "s-1" not in repr((outcome.summary, outcome.metadata))  # the doubled transaction id is not named...
    sampled = validate(sampling(platform.settings, 1), "suspicious_activity", DAY, "US", relation="public.sus")
    assert failed_expectations(sampled)["expect_column_values_to_be_unique:transaction_id"] == ["s-1"]  # ...if asked

    platform.execute(
        """CREATE TABLE public.settle (settlement_date date, region text, currency text, transaction_count bigint,
               settled_count bigint, settled_volume numeric)"""
    )
    checkable(platform, "public.settle")
    good = {
        "settlement_date": DAY,
        "region": "US",
        "currency": "USD",
        "transaction_count": 3,
        "settled_count": 2,
        "settled_volume": 10,
    }
    insert(platform, "public.settle", [good])
    assert validate(platform.settings, "daily_settlements", DAY, "US", relation="public.settle").passed
    insert(platform, "public.settle", [good, {**good, "currency": "EUR", "settled_count": 4, "settled_volume": -5}])
    failed = failed_expectations(validate(platform.settings, "daily_settlements", DAY, "US", relation="public.settle"))
    assert set(failed) == {
        "expect_compound_columns_to_be_unique:['settlement_date', 'region', 'currency']",
        "expect_column_values_to_be_between:settled_volume",
        "expect_column_pair_values_a_to_be_greater_than_b:transaction_count",
    }


def assert_no_identifiers(platform, outcome) -> None:
    """Neither the summary nor the metadata of a check names a transaction, account or counterparty."""
    assert_names_no_one(platform, repr((outcome.summary, outcome.metadata)))


def assert_names_no_one(platform, shown: str) -> None:
    for row in platform.query("SELECT transaction_id, account_id, counterparty_id FROM staging.transactions"):
        for value in filter(None, row):
            assert value not in shown, value


def slice_test_failures(platform, day: date, region: str) -> dict[str, int]:
    """The slice's dbt tests on the state and the marts, as a refresh runs them: failing rows per failed test kind."""
    variables = json.dumps({"partition_date": day.isoformat(), "partition_region": region})
    models = "int_transaction_state fct_suspicious_activity fct_daily_settlements"
    proc = platform.txmon(
        "dbt",
        "test",
        "--select",
        models,
        "--indirect-selection",
        "buildable",
        "--exclude-resource-type",
        "unit_test",
        "--vars",
        variables,
        check=False,
    )
    failed = {}
    for found in re.finditer(r"FAIL (\d+) (\w+?)_(?:int_transaction_state|fct_\w+)", proc.stdout):
        failed[found.group(2)] = int(found.group(1))
    assert proc.returncode == (1 if failed else 0), proc.stdout[-3000:]
    return failed


def test_reconciliations_find_what_does_not_add_up(landed):
    from txmon.quality.reconciliations import (
        IDENTITIES_OF_SLICE,
        kafka_offsets_accounted,
        slice_bounds,
        staging_events_unique,
    )

    platform = landed
    platform.txmon("materialize", "--date", D1, "--region", "US")
    settings = platform.settings
    assert slice_test_failures(platform, DAY, "US") == {}
    suspicious = sorted(
        tx
        for (tx,) in platform.query(
            "SELECT transaction_id FROM marts.suspicious_activity WHERE event_date = %s AND region = 'US'", (DAY,)
        )
    )
    assert suspicious
    unique = staging_events_unique(settings, DAY, "US")
    assert unique.passed and unique.metadata["events"] > 0

    # A state that drifted from its event: the state's test sees it, and so do the marts' (built from the state
    # before: us-2 is suspicious and settled).
    platform.execute("UPDATE intermediate.int_transaction_state SET amount = amount + 1 WHERE transaction_id = 'us-2'")
    assert slice_test_failures(platform, DAY, "US") == {
        "reflects_latest_events": 1,
        "selected_by_rule": 1,
        "exists_in": 1,
        "totals_match_state": 1,
    }
    platform.execute("UPDATE intermediate.int_transaction_state SET amount = amount - 1 WHERE transaction_id = 'us-2'")
    # An event later than its transaction's state, landed before the state's watermark but never merged.
    platform.execute(
        """INSERT INTO staging.transactions (transaction_id, status, event_time, account_id, amount, currency, region,
                                             topic, "partition", "offset", raw_event, ingested_at)
           SELECT transaction_id, 'reversed', event_time + interval '1 minute', account_id, amount, currency, region,
                  topic, "partition", "offset" + 1000000, raw_event, '2000-01-01'
           FROM staging.transactions WHERE transaction_id = 'us-2' LIMIT 1"""
    )
    assert slice_test_failures(platform, DAY, "US") == {"reflects_latest_events": 1}
    platform.execute("DELETE FROM staging.transactions WHERE transaction_id = 'us-2' AND status = 'reversed'")
    # Settlements that do not add up to the state's control totals.
    platform.execute(
        """UPDATE marts.daily_settlements SET settled_volume = settled_volume + 0.0001
           WHERE settlement_date = %s AND region = 'US'""",
        (DAY,),
    )
    assert slice_test_failures(platform, DAY, "US") == {"totals_match_state": 1}
    platform.execute(
        """UPDATE marts.daily_settlements SET settled_volume = settled_volume - 0.0001
           WHERE settlement_date = %s AND region = 'US'""",
        (DAY,),
    )
    assert slice_test_failures(platform, DAY, "US") == {}

    first = kafka_offsets_accounted(settings)
    assert first.passed and first.metadata["offsets_audited"] == len(EVENTS) + len(LATE)
    assert kafka_offsets_accounted(settings).metadata["offsets_audited"] == 0  # incremental

    # An event deleted from staging behind ingestion's back: its state is no landed event any more; a full refresh of
    # the partition (`txmon materialize`) restates the slice from staging.
    platform.execute("DELETE FROM staging.transactions WHERE transaction_id = 'us-5'")
    assert slice_test_failures(platform, DAY, "US") == {"reflects_latest_events": 1}
    platform.txmon("materialize", "--date", D1, "--region", "US")
    assert slice_test_failures(platform, DAY, "US") == {}
    assert not platform.query("SELECT 1 FROM intermediate.int_transaction_state WHERE transaction_id = 'us-5'")

    # An offset consumed but neither landed, duplicate nor quarantined (deleted behind ingestion's back).
    platform.execute("UPDATE staging.offset_audit SET verified_through = -1")
    gaps = kafka_offsets_accounted(settings)
    assert not gaps.passed and gaps.metadata["partitions_not_adding_up"]

    # An incomplete mart: a suspicious transaction dropped from it.
    platform.execute("DELETE FROM marts.suspicious_activity WHERE transaction_id = %s", (suspicious[-1],))
    assert slice_test_failures(platform, DAY, "US") == {"selected_by_rule": 1}

    # A second copy of an event identity (stored behind the landing's back, with another time).
    platform.execute(
        """INSERT INTO staging.transactions (transaction_id, status, event_time, account_id, amount, currency, region,
                                             topic, "partition", "offset", raw_event)
           SELECT transaction_id, status, event_time + interval '1 second', account_id, amount - 1, currency, region,
                  topic, "partition", "offset" + 1000000, raw_event
           FROM staging.transactions WHERE transaction_id = %s LIMIT 1""",
        (suspicious[-1],),
    )
    doubled = staging_events_unique(settings, DAY, "US")
    assert not doubled.passed and doubled.metadata["second_copies"] == 1
    # The day's identities joined or probed one by one (identities_scope picks one by size): the same counts.
    params = {**slice_bounds(DAY, "US"), "sample": 0}
    joined, probed = (platform.query(IDENTITIES_OF_SLICE, {**params, "by_day": d})[0][:3] for d in (True, False))
    assert joined == probed and joined[2] == 1
    # A second copy on the next day: its identity points at the first copy, outside that day's identities.
    next_day = DAY + timedelta(days=1)
    platform.execute(
        """INSERT INTO staging.transactions (transaction_id, status, event_time, account_id, amount, currency, region,
                                             topic, "partition", "offset", raw_event)
           SELECT transaction_id, status, event_time + interval '1 day', account_id, amount, currency, region,
                  topic, "partition", "offset" + 2000000, raw_event
           FROM staging.transactions WHERE transaction_id = %s AND event_time < %s LIMIT 1""",
        (suspicious[-1], next_day),
    )
    params = {**slice_bounds(next_day, "US"), "sample": 0}
    joined, probed = (platform.query(IDENTITIES_OF_SLICE, {**params, "by_day": d})[0][1:3] for d in (True, False))
    assert joined == probed == (0, 1)  # (without an identity, second copies)
    platform.execute(
        'DELETE FROM staging.transactions WHERE transaction_id = %s AND "offset" > 2000000', (suspicious[-1],)
    )
    assert_no_identifiers(platform, doubled)
    assert staging_events_unique(sampling(settings), DAY, "US").metadata["sample_transaction_ids"] == [suspicious[-1]]
