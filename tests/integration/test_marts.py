"""End to end: known events -> Kafka -> staging -> dbt marts through Dagster, checked row for row."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from tests.integration.test_ingest import event, line
from txmon.core.settings import Settings, replace

D1, D2 = "2026-11-20", "2026-11-21"


def t(day: str, clock: str) -> str:
    return f"{day}T{clock}Z"


EVENTS = [
    # EU: a same-day lifecycle update, redelivered; a pending that settles after midnight; a fraud flag.
    event("eu-1", "pending", amount="100.00", currency="EUR", region="EU", event_time=t(D1, "10:00:00")),
    event("eu-1", "settled", amount="100.00", currency="EUR", region="EU", event_time=t(D1, "11:00:00")),
    event("eu-1", "settled", amount="100.00", currency="EUR", region="EU", event_time=t(D1, "11:00:00")),
    event("eu-2", "pending", amount="250.5", currency="GBP", region="EU", event_time=t(D1, "23:59:30")),
    event("eu-2", "settled", amount="250.5", currency="GBP", region="EU", event_time=t(D2, "00:00:30")),
    event(
        "eu-3",
        "settled",
        amount="50.00",
        currency="EUR",
        region="EU",
        fraud_flag=True,
        event_time="2026-11-21T09:00:00+01:00",
    ),
    event("eu-4", "failed", amount="9999.99", currency="CHF", region="EU", event_time=t(D2, "00:00:00")),
    # US: the threshold boundary, the smallest amount, a status that fails.
    event("us-1", "settled", amount="10000.00", currency="USD", region="US", event_time=t(D1, "08:00:00")),
    event("us-2", "settled", amount="10000.01", currency="USD", region="US", event_time=t(D1, "08:00:01")),
    event("us-3", "failed", amount="0.0001", currency="USD", region="US", event_time=t(D1, "09:00:00")),
    event("us-4", "settled", amount="12.34", currency="CAD", region="US", event_time=t(D2, "12:00:00")),
    # APAC: JPY either side of the threshold after FX (0.00662 USD per JPY in 2026), a reversal.
    event("ap-1", "settled", amount="1000000", currency="JPY", region="APAC", event_time=t(D2, "03:00:00")),
    event("ap-2", "pending", amount="2000000", currency="JPY", region="APAC", event_time=t(D2, "04:00:00")),
    event("ap-3", "settled", amount="500.00", currency="SGD", region="APAC", event_time=t(D2, "05:00:00")),
    event("ap-3", "reversed", amount="500.00", currency="SGD", region="APAC", event_time=t(D2, "06:00:00")),
    event("ap-4", "settled", amount="1234.5678", currency="INR", region="APAC", event_time=t(D1, "07:00:00")),
]
# A late event for the earlier day, produced after everything else.
LATE = [event("us-5", "settled", amount="99.99", currency="USD", region="US", event_time=t(D1, "23:00:00"))]

EXPECTED_SETTLEMENTS = {
    # (date, region, currency): (transaction_count, settled_count, settled_volume)
    (D1, "EU", "EUR"): (1, 1, Decimal("100.0000")),  # eu-2's latest event is on D2
    (D1, "US", "USD"): (4, 3, Decimal("20100.0000")),  # us-1 + us-2 + us-5 settled; us-3 failed
    (D1, "APAC", "INR"): (1, 1, Decimal("1234.5678")),
    (D2, "EU", "GBP"): (1, 1, Decimal("250.5000")),
    (D2, "EU", "EUR"): (1, 1, Decimal("50.0000")),  # 09:00+01:00 is 08:00 UTC on D2
    (D2, "EU", "CHF"): (1, 0, Decimal("0.0000")),
    (D2, "US", "CAD"): (1, 1, Decimal("12.3400")),
    (D2, "APAC", "JPY"): (2, 1, Decimal("1000000.0000")),
    (D2, "APAC", "SGD"): (1, 0, Decimal("0.0000")),  # settled, then reversed
}
EXPECTED_SUSPICIOUS = {
    # transaction_id: (region, amount, currency, amount_usd, reasons, event_date)
    "us-2": ("US", Decimal("10000.0100"), "USD", Decimal("10000.0100"), ["amount_over_threshold"], D1),
    "eu-3": ("EU", Decimal("50.0000"), "EUR", Decimal("54.2500"), ["fraud_flag"], D2),
    "eu-4": ("EU", Decimal("9999.9900"), "CHF", Decimal("11309.9887"), ["amount_over_threshold"], D2),  # failed, still
    "ap-2": ("APAC", Decimal("2000000.0000"), "JPY", Decimal("13240.0000"), ["amount_over_threshold"], D2),
}


def marts(platform) -> tuple[dict, dict]:
    settlements = {
        (str(d), r, c): (n, s, v)
        for d, r, c, n, s, v in platform.query(
            """SELECT settlement_date, region, currency, transaction_count, settled_count, settled_volume
               FROM marts.daily_settlements"""
        )
    }
    suspicious = {
        tx: (r, a, c, usd, list(reasons), str(d))
        for tx, r, a, c, usd, reasons, d in platform.query(
            """SELECT transaction_id, region, amount, currency, amount_usd, reasons, event_date
               FROM marts.suspicious_activity"""
        )
    }
    return settlements, suspicious


@pytest.fixture
def landed(platform, tmp_path):
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(line(e) for e in EVENTS))
    platform.txmon("produce", str(source))
    platform.txmon("ingest", "--until-idle")
    late = tmp_path / "late.jsonl"
    late.write_text("\n".join(line(e) for e in LATE))
    platform.txmon("produce", str(late))
    platform.txmon("ingest", "--until-idle")
    return platform


def test_marts_match_hand_computed_values_and_are_idempotent(landed):
    platform = landed
    out = platform.txmon("backfill", "--from", D1, "--to", D2)
    assert out.stdout.count(" ok ") == 6, out.stdout

    settlements, suspicious = marts(platform)
    assert settlements == EXPECTED_SETTLEMENTS
    assert suspicious == EXPECTED_SUSPICIOUS
    # Its whole-slice builds analysed the staging days they read first (a few rows each: autovacuum would not have).
    analysed = platform.query(
        "SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE schemaname = 'staging'"
        " AND relname IN ('transactions_20261120', 'transactions_20261121')"
    )
    assert dict(analysed) == {"transactions_20261120": True, "transactions_20261121": True}

    # The same partition again, then the whole range again: identical marts.
    platform.txmon("materialize", "--date", D1, "--region", "US")
    assert marts(platform) == (EXPECTED_SETTLEMENTS, EXPECTED_SUSPICIOUS)
    platform.txmon("backfill", "--from", D1, "--to", D2, "--region", "EU")
    assert marts(platform) == (EXPECTED_SETTLEMENTS, EXPECTED_SUSPICIOUS)

    # The backfill is one run (the partitions one after another in one process), recorded in the
    # Dagster instance the UI reads with a materialization and green checks per partition: the tests'
    # own instance, never the user's (the `dagster` database stays as the user left it).
    run_ids = sorted({row.split()[3] for row in out.stdout.splitlines() if re.match(r"\d{4}-\d\d-\d\d\|", row)})
    assert len(run_ids) == 1
    assert platform.query_dagster("SELECT status FROM runs WHERE run_id = ANY(%s)", (run_ids,)) == [("SUCCESS",)]
    published = platform.query_dagster(
        """SELECT DISTINCT partition FROM event_logs WHERE run_id = ANY(%s)
           AND dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key LIKE '%%reporting%%daily_settlements%%'""",
        (run_ids,),
    )
    assert sorted(p for (p,) in published) == sorted(f"{d}|{r}" for d in (D1, D2) for r in ("APAC", "EU", "US"))
    checks = platform.query_dagster(
        "SELECT partition, execution_status FROM asset_check_executions WHERE run_id = ANY(%s)", (run_ids,)
    )
    assert len({p for p, _ in checks}) == 6 and {s for _, s in checks} == {"SUCCEEDED"}
    assert platform.settings.dagster_db != Settings().dagster_db
    users = replace(platform.settings, dagster_db=Settings().dagster_db).dagster_dsn
    if platform.query("SELECT to_regclass('runs') IS NOT NULL", dsn=users)[0][0]:
        assert platform.query("SELECT count(*) FROM runs WHERE run_id = ANY(%s)", (run_ids,), dsn=users) == [(0,)]


def test_materialize_rejects_bad_arguments_in_one_line(platform):
    for args in (
        ["materialize", "--date", "2026-02-30", "--region", "EU"],
        ["materialize", "--date", "2026-11-20", "--region", "MARS"],
        ["materialize", "--date", "2019-01-01", "--region", "EU"],
        ["backfill", "--from", "2026-11-21", "--to", "2026-11-20"],
    ):
        proc = platform.txmon(*args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr


def test_threshold_is_configurable_without_code_changes(landed):
    platform = landed
    platform.env["TXMON_SUSPICIOUS_THRESHOLD_USD_BY_REGION"] = json.dumps({"US": "50"})
    platform.txmon("materialize", "--date", D1, "--region", "US")
    _, suspicious = marts(platform)
    us = {tx: v[4] for tx, v in suspicious.items() if v[0] == "US"}
    assert us == {
        "us-1": ["amount_over_threshold"],
        "us-2": ["amount_over_threshold"],
        "us-5": ["amount_over_threshold"],
    }
