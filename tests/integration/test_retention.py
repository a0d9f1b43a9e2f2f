"""Retention and privacy on the real Kafka, PostgreSQL and Dagster storage: extra event fields kept
only where allowed (the verbatim message in staging.raw_events), every retention deleting only what
is past its age, the offset audit still adding up after pruning, Dagster's check evaluations pruned."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from psycopg import sql

from tests.integration.test_ingest import assert_every_offset_accounted_for, event, line
from txmon.core import retention
from txmon.core.settings import replace
from txmon.quality.reconciliations import kafka_offsets_accounted


def land(platform, tmp_path, name: str, lines: list[str]) -> dict:
    source = tmp_path / name
    source.write_text("\n".join(lines) + "\n")
    platform.txmon("produce", str(source))
    return json.loads(platform.txmon("ingest", "--until-idle").stdout)


def test_extra_fields_are_kept_only_where_allowed(platform, tmp_path):
    platform.env["TXMON_EXTRA_FIELDS"] = "channel"
    plain = event("x-1")
    allowed = event("x-2", channel="card")
    other = event("x-3", channel="card", device={"ip": "10.1.2.3", "score": 0.10000000000000000001}, note="call")
    lines = [line(plain), line(allowed), line(other), line(other), "{not json"]
    report = land(platform, tmp_path, "first.jsonl", lines)
    assert (report["landed"], report["duplicates"], report["quarantined"]) == (3, 1, 1)

    stored = {tx: raw for tx, raw in platform.query("SELECT transaction_id, raw_event FROM staging.transactions")}
    assert stored == {
        "x-1": plain,
        "x-2": allowed,
        "x-3": {k: v for k, v in other.items() if k in plain or k == "channel"},
    }
    # The verbatim message of x-3 (whose device and note are not kept in staging) is the one audit copy,
    # at x-3's offset; the duplicate of x-3 and the quarantined message have none.
    copies = platform.query('SELECT topic, "partition", "offset", raw_value FROM staging.raw_events')
    landed_at = platform.query(
        'SELECT topic, "partition", "offset" FROM staging.transactions WHERE transaction_id = \'x-3\''
    )
    assert [c[:3] for c in copies] == landed_at
    assert bytes(copies[0][3]) == line(other).encode()
    # A copy, not a fourth outcome: every offset is landed, a duplicate or quarantined, once.
    assert_every_offset_accounted_for(platform)
    assert kafka_offsets_accounted(platform.settings).passed

    # With TXMON_RAW_EVENT_RETENTION_DAYS=0 the verbatim message is not kept at all.
    platform.env["TXMON_RAW_EVENT_RETENTION_DAYS"] = "0"
    land(platform, tmp_path, "second.jsonl", [line(event("x-4", secret="s"))])
    assert platform.query("SELECT raw_event FROM staging.transactions WHERE transaction_id = 'x-4'") == [
        (event("x-4"),)
    ]
    assert platform.query("SELECT count(*) FROM staging.raw_events") == [(1,)]
    assert kafka_offsets_accounted(platform.settings).passed


@pytest.fixture
def regional(platform):
    """The platform with EU's data in a database of its own (data residency): every database is pruned."""
    name = f"{platform.settings.warehouse_db}_eu"
    dsn = platform.settings.warehouse_dsn.replace(f"/{platform.settings.warehouse_db}?", f"/{name}?", 1)
    assert dsn != platform.settings.warehouse_dsn
    with platform_admin(platform) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    from txmon.core.warehouse import migrate

    platform.settings = replace(platform.settings, region_dsns={"EU": dsn})
    platform.env["TXMON_REGION_DSNS"] = json.dumps({"EU": dsn})
    migrate(platform.settings)
    yield platform
    with platform_admin(platform) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def platform_admin(platform):
    from txmon.core.db import connect

    return connect(platform.settings.admin_dsn, autocommit=True, purpose="test")


AGED = {  # table -> its time column
    "staging.raw_events": "received_at",
    "staging.rejected_transactions": "received_at",
    "staging.duplicate_transactions": "received_at",
    "staging.ingest_batches": "committed_at",
}


def age(platform, days: int, since: datetime) -> None:
    """Make every row of the pruned tables written since ``since`` (the server's clock) ``days`` old."""
    for dsn in platform.settings.databases():
        for table, column in AGED.items():
            platform.execute(
                f"UPDATE {table} SET {column} = {column} - make_interval(days => %s) WHERE {column} >= %s",  # noqa: S608
                (days, since),
                dsn=dsn,
            )


def clock(platform) -> datetime:
    return platform.query("SELECT statement_timestamp()")[0][0]


def rows(platform) -> dict[str, int]:
    """Rows of each pruned table, over every database."""
    return {
        table: sum(
            platform.query(f"SELECT count(*) FROM {table}", dsn=dsn)[0][0]  # noqa: S608
            for dsn in platform.settings.databases()
        )
        for table in AGED
    }


def test_retention_deletes_only_what_is_past_its_age_and_the_audit_still_adds_up(regional, tmp_path, monkeypatch):
    platform = regional
    settings = replace(platform.settings, dagster_retention_days=3660)  # the session's Dagster storage is shared
    monkeypatch.setattr(retention, "BATCH_ROWS", 2)  # several bounded batches per table

    def wave(prefix: str) -> list[str]:
        """Per region (EU in its own database): an event with an extra field not kept, its redelivery,
        a plain event; and two messages quarantined (in the warehouse)."""
        eu = event(f"{prefix}-eu", region="EU", note="private")
        us = event(f"{prefix}-us", region="US", currency="USD", note="private")
        return [
            line(eu),
            line(eu),
            line(event(f"{prefix}-eu-plain", region="EU")),
            line(us),
            line(us),
            line(event(f"{prefix}-us-plain", region="US", currency="USD")),
            f"{{not json {prefix}",
            line(event(f"{prefix}-neg", amount="-1")),
        ]

    per_wave = {"staging.raw_events": 2, "staging.rejected_transactions": 2, "staging.duplicate_transactions": 2}
    # old: landed and audited, then made 60 days old (past 30 days, within the quarantine's 90)
    since = clock(platform)
    land(platform, tmp_path, "old.jsonl", wave("old"))
    age(platform, 60, since)
    # recent: landed and audited 10 days ago (within every retention)
    since = clock(platform)
    land(platform, tmp_path, "recent.jsonl", wave("recent"))
    age(platform, 10, since)
    assert kafka_offsets_accounted(settings).passed
    # unaudited: 100 days old (past every retention), but landed after the last audit
    since = clock(platform)
    land(platform, tmp_path, "unaudited.jsonl", wave("unaudited"))
    age(platform, 100, since)
    before = rows(platform)
    assert all(before[t] == 3 * n for t, n in per_wave.items())

    now = datetime.now(UTC)
    deleted = retention.prune(settings, now)
    # Raw copies past 30 days go (old, unaudited); duplicates past 30 days and the batch log only where
    # the audit verified them (old); quarantine: nothing audited is past 90 days yet.
    assert {t: deleted[t] for t in AGED} == {
        "staging.raw_events": 4,
        "staging.duplicate_transactions": 2,
        "staging.rejected_transactions": 0,
        "staging.ingest_batches": before["staging.ingest_batches"] - rows(platform)["staging.ingest_batches"],
    }
    assert deleted["staging.ingest_batches"] > 0
    left = {tx for (tx,) in platform.query("SELECT transaction_id FROM staging.duplicate_transactions")} | {
        tx
        for (tx,) in platform.query(
            "SELECT transaction_id FROM staging.duplicate_transactions", dsn=settings.region_dsns["EU"]
        )
    }
    assert left == {"recent-eu", "recent-us", "unaudited-eu", "unaudited-us"}
    copies = [
        bytes(v)
        for dsn in settings.databases()
        for (v,) in platform.query("SELECT raw_value FROM staging.raw_events", dsn=dsn)
    ]
    assert sorted(json.loads(c)["transaction_id"] for c in copies) == ["recent-eu", "recent-us"]

    # The audit adds up afterwards: it verifies the unaudited wave, and nothing it counted before is asked again.
    audit = kafka_offsets_accounted(settings)
    assert audit.passed and audit.metadata["offsets_audited"] == len(wave("unaudited")), audit
    # Now verified, the unaudited wave's old duplicates, quarantine (100 days > 90) and batches go too.
    again = retention.prune(settings, now)
    assert (again["staging.duplicate_transactions"], again["staging.rejected_transactions"]) == (2, 2)
    assert again["staging.ingest_batches"] > 0 and again["staging.raw_events"] == 0
    assert kafka_offsets_accounted(settings).passed
    # Every landed event is still there: retention never touches staging.transactions.
    landed = sum(
        platform.query("SELECT count(*) FROM staging.transactions", dsn=dsn)[0][0] for dsn in settings.databases()
    )
    assert landed == 3 * 4

    # Nothing else is past its age: a third pass deletes nothing. 31 days on, the recent wave's copies
    # and duplicates go (41 days old), its quarantine stays (90 days); the old wave's quarantine goes (91).
    assert not any(retention.prune(settings, now).values())
    later = retention.prune(settings, now + timedelta(days=31))
    assert {t: later[t] for t in per_wave} == {
        "staging.raw_events": 2,
        "staging.duplicate_transactions": 2,
        "staging.rejected_transactions": 2,
    }
    # Each quarantined message is kept where the region it names lives (EU's in EU's database).
    quarantined = [
        row
        for dsn in settings.databases()
        for row in platform.query("SELECT raw_text FROM staging.rejected_transactions", dsn=dsn)
    ]
    assert {text for (text,) in quarantined} == {"{not json recent", line(event("recent-neg", amount="-1"))}
    assert kafka_offsets_accounted(settings).passed


def test_txmon_prune_reports_each_table(platform):
    proc = platform.txmon("prune")
    lines = dict(line.split(None, 1) for line in proc.stdout.splitlines())
    assert {
        "dagster.runs",
        "staging.raw_events",
        "staging.rejected_transactions",
        "staging.duplicate_transactions",
        "staging.ingest_batches",
        "dagster.asset_check_executions",
        "dagster.event_logs",
    } <= set(lines)


def test_dagster_check_evaluations_past_the_retention_are_pruned(platform, monkeypatch):
    """On a real instance (PostgreSQL storage, the tests' own database): the daily job deletes the runs
    and the check evaluations older than TXMON_DAGSTER_RETENTION_DAYS, run or runless, and keeps the rest."""
    import uuid

    from dagster import (
        AssetCheckEvaluation,
        AssetCheckKey,
        AssetCheckResult,
        AssetKey,
        DagsterInstance,
        asset,
        asset_check,
        materialize,
    )

    from orchestration.defs.maintenance.prune import prune_dagster_history_job
    from orchestration.instance import dagster_env, dagster_home
    from orchestration.resources import TxmonResource

    for name, value in {**platform.env, **dagster_env(platform.settings)}.items():
        if name.startswith(("TXMON_", "DAGSTER_")):
            monkeypatch.setenv(name, value)
    dagster_home(platform.settings)
    name = f"retained_{uuid.uuid4().hex[:8]}"

    @asset(name=name)
    def thing():
        return 1

    @asset_check(asset=thing, name="positive")
    def positive():  # no annotations: Dagster resolves them, and this module's are strings
        return AssetCheckResult(passed=True, metadata={"rows": 1})

    key = AssetCheckKey(AssetKey(name), "positive")
    with DagsterInstance.get() as instance:
        old, new = (materialize([thing, positive], instance=instance) for _ in range(2))
        instance.report_runless_asset_event(
            AssetCheckEvaluation(asset_key=AssetKey(name), check_name="positive", passed=False, metadata={"rows": 0})
        )
        # The first run and the runless evaluation are made 40 days old (past the 30 days' retention).
        for statement in (
            "UPDATE runs SET create_timestamp = create_timestamp - interval '40 days' WHERE run_id = %(run)s",
            "UPDATE event_logs SET timestamp = timestamp - interval '40 days' WHERE run_id = %(run)s",
            """UPDATE event_logs SET timestamp = timestamp - interval '40 days'
               WHERE run_id = '' AND dagster_event_type = 'ASSET_CHECK_EVALUATION' AND strpos(event, %(name)s) > 0""",
            """UPDATE asset_check_executions
               SET evaluation_event_timestamp = evaluation_event_timestamp - interval '40 days',
                   create_timestamp = create_timestamp - interval '40 days'
               WHERE asset_key = %(key)s AND run_id IN (%(run)s, '')""",
        ):
            platform.execute(
                statement,
                {"run": old.run_id, "key": AssetKey(name).to_string(), "name": name},
                dsn=platform.settings.dagster_dsn,
            )

        def history() -> list[str]:
            return [r.run_id for r in instance.event_log_storage.get_asset_check_execution_history(key, limit=10)]

        assert sorted(history()) == sorted(["", old.run_id, new.run_id])
        pruned = prune_dagster_history_job.execute_in_process(instance=instance, resources={"txmon": TxmonResource()})
        assert pruned.success
        assert history() == [new.run_id]
        assert instance.get_run_by_id(old.run_id) is None and instance.get_run_by_id(new.run_id) is not None
        evaluations = platform.query_dagster(  # the event log's own rows (asset_key is not set on them)
            "SELECT run_id FROM event_logs WHERE dagster_event_type = 'ASSET_CHECK_EVALUATION'"
            " AND strpos(event, %s) > 0",
            (name,),
        )
        assert evaluations == [(new.run_id,)]
