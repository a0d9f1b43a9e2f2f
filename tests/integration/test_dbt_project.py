"""The dbt project on its own: unit tests of the rules, and the new-data refresh of the open day."""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime, timedelta

from tests.integration.test_ingest import event, line
from txmon.core.dbt import DbtWorkers
from txmon.core.settings import Settings


def test_dbt_unit_tests_pass(platform):
    # Unit tests read the column types of the models' inputs: build them (no data yet) first.
    platform.txmon("dbt", "seed")
    platform.txmon("dbt", "run")
    proc = platform.txmon("dbt", "test", "--select", "test_type:unit", check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_new_data_refresh_equals_a_full_rebuild(platform, tmp_path):
    """The state advances by merges and the open day's slice refreshes only the transactions whose state changed; the
    result equals a rebuild of everything from scratch."""
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.date().isoformat()

    def at(minutes: int) -> str:
        return max(now - timedelta(minutes=minutes), now.replace(hour=0, minute=0, second=1)).isoformat()

    first = [
        event("n-1", "pending", amount="20000.00", currency="USD", region="US", event_time=at(30)),
        event("n-2", "settled", amount="10.00", currency="USD", region="US", event_time=at(29)),
        event("n-3", "pending", amount="5.00", currency="USD", region="US", fraud_flag=True, event_time=at(28)),
    ]
    second = [
        event("n-1", "failed", amount="20000.00", currency="USD", region="US", event_time=at(20)),
        event("n-3", "settled", amount="5.00", currency="USD", region="US", event_time=at(19)),
        event("n-4", "settled", amount="15000.00", currency="USD", region="US", event_time=at(18)),
    ]

    def land(events, name):
        path = tmp_path / name
        path.write_text("\n".join(line(e) for e in events))
        platform.txmon("produce", str(path))
        platform.txmon("ingest", "--until-idle")

    def build(mode, *flags):
        variables = json.dumps({"partition_date": today, "partition_region": "US", "slice_mode": mode})
        proc = platform.txmon(
            "dbt",
            "build",
            "--exclude-resource-type",
            "unit_test",
            "--select",
            "tag:partitioned",
            "--vars",
            variables,
            *flags,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-3000:]

    def state():
        return (
            sorted(
                platform.query(
                    "SELECT transaction_id, status FROM intermediate.int_transaction_state WHERE region = 'US'"
                )
            ),
            sorted(
                platform.query(
                    "SELECT transaction_id, status, reasons FROM marts.suspicious_activity WHERE region = 'US'"
                )
            ),
        )

    platform.txmon("dbt", "build", "--select", "stg_transactions fx_rates")
    land(first, "first.jsonl")
    build("new_data")
    assert state()[0] == [("n-1", "pending"), ("n-2", "settled"), ("n-3", "pending")]
    land(second, "second.jsonl")
    build("new_data")
    incremental = state()
    assert incremental == (
        [("n-1", "failed"), ("n-2", "settled"), ("n-3", "settled"), ("n-4", "settled")],
        [
            ("n-1", "failed", ["amount_over_threshold"]),
            ("n-3", "settled", ["fraud_flag"]),
            ("n-4", "settled", ["amount_over_threshold"]),
        ],
    )
    build("full", "--full-refresh")
    assert state() == incremental


def _one_dbt_command(settings: Settings) -> None:
    outcome = DbtWorkers(processes=1).invoke(settings, ["ls", "--select", "tag:partitioned"])
    assert outcome.success, outcome.error


def test_a_multiprocessing_child_with_dbt_workers_ends(platform):
    """Dagster's run worker is a process started by multiprocessing: once its work is done it ends, its dbt worker
    processes with it (it used to wait for them forever, and its code server for it)."""
    child = multiprocessing.get_context("spawn").Process(target=_one_dbt_command, args=(platform.settings,))
    child.start()
    child.join(timeout=120)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and child.exitcode == 0
