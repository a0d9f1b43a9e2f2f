"""Data residency: regions in their own databases, end to end through
the real services: landing, quarantine, dbt, checks, publication and the global roll-up (the live
platform with regional databases: tests/integration/test_live.py)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import date
from decimal import Decimal

from psycopg import sql

from tests.integration.conftest import REGIONAL
from tests.integration.test_api import running_api
from tests.integration.test_ingest import event, line
from txmon.core.db import connect
from txmon.core.dbt import dbt_vars, run_dbt, target_for, vars_arg
from txmon.core.settings import Settings

DAY = date(2026, 11, 20)
ID_COLUMNS = ("transaction_id", "account_id")


def _url(settings: Settings, database: str, host: str | None = None) -> str:
    return f"postgresql://{settings.pg_user}@{host or settings.pg_host}:{settings.pg_port}/{database}"


def _events() -> tuple[list[dict], dict[str, str]]:
    """Three regions' events (settled, pending then settled, suspicious, fraud-flagged); id -> region."""
    events, owner = [], {}
    for region, currency in (("EU", "EUR"), ("US", "USD"), ("APAC", "SGD")):
        for i, (amount, status, cur, flagged) in enumerate(
            [
                ("10.01", "settled", currency, False),
                ("20.02", "pending", currency, False),
                ("25000.00", "settled", "USD", False),
                ("5.00", "settled", currency, True),
            ]
        ):
            tx = f"res-{region}-{i}"
            owner[tx] = owner[f"acc-{tx}"] = region
            fields = {"fraud_flag": True} if flagged else {}
            events.append(
                event(tx, status, amount=amount, currency=cur, region=region, event_time=f"{DAY}T1{i}:00:00Z", **fields)
            )
        settled_later = event(
            f"res-{region}-1",
            "settled",
            amount="20.02",
            currency=currency,
            region=region,
            event_time=f"{DAY}T15:00:00Z",
        )
        events.append(settled_later)
    return events, owner


def _expected_settlements(events: list[dict]) -> dict[tuple, tuple]:
    latest: dict[str, dict] = {}
    for e in sorted(events, key=lambda e: e["event_time"]):
        latest[e["transaction_id"]] = e
    out: dict[tuple, list] = defaultdict(lambda: [0, 0, Decimal("0")])
    for e in latest.values():
        row = out[(e["region"], e["currency"])]
        row[0] += 1
        if e["status"] == "settled":
            row[1] += 1
            row[2] += Decimal(e["amount"])
    return {k: (n, s, v) for k, (n, s, v) in out.items()}


def _ids_in(dsn: str) -> dict[str, set[str]]:
    """Every transaction or account identifier stored in any table of the database, per table."""
    found: dict[str, set[str]] = {}
    with connect(dsn, autocommit=True, purpose="test") as conn:
        columns = conn.execute(
            """SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c
               JOIN information_schema.tables t USING (table_schema, table_name)
               WHERE c.column_name = ANY(%s) AND t.table_type = 'BASE TABLE'
                 AND c.table_schema NOT IN ('pg_catalog', 'information_schema')""",
            (list(ID_COLUMNS),),
        ).fetchall()
        for schema, table, column in columns:
            rows = conn.execute(
                sql.SQL("SELECT DISTINCT {c}::text FROM {s}.{t}").format(
                    c=sql.Identifier(column), s=sql.Identifier(schema), t=sql.Identifier(table)
                )
            ).fetchall()
            found.setdefault(f"{schema}.{table}", set()).update(v for (v,) in rows if v is not None)
        raw = conn.execute("SELECT convert_from(raw_value, 'UTF8') FROM staging.rejected_transactions").fetchall()
    found["staging.rejected_transactions(raw)"] = {v for (v,) in raw}
    return found


def test_each_region_lives_in_its_own_database_end_to_end(regions, tmp_path):
    platform, extra, settings, databases = regions
    events, owner = _events()
    malformed = [
        json.dumps({"transaction_id": "res-bad-EU", "region": "EU", "amount": "not money"}),
        json.dumps({"transaction_id": "res-bad-none", "amount": "1.00"}),
    ]
    source = tmp_path / "residency.jsonl"
    source.write_text("\n".join([*(line(e) for e in events), *malformed]) + "\n")

    platform.txmon("migrate", env_extra=extra)  # creates the regional databases on the local cluster
    platform.txmon("produce", str(source), env_extra=extra)
    platform.txmon("ingest", "--until-idle", env_extra=extra)
    platform.txmon("backfill", "--from", DAY.isoformat(), "--to", DAY.isoformat(), env_extra=extra)  # every region

    home = settings.warehouse_dsn
    holds = {home: {"APAC"}, **{settings.dsn_for_region(r): {r} for r in REGIONAL}}
    assert len(holds) == 3
    for dsn, mine in holds.items():
        for table, ids in _ids_in(dsn).items():
            if table.endswith("(raw)"):
                continue
            foreign = {i for i in ids if owner.get(i, "?") not in mine}
            assert foreign == set(), f"{table} in the database of {sorted(mine)} holds {sorted(foreign)[:5]}"

    # A malformed message is quarantined where the region it names lives; one naming none at home.
    quarantined = {dsn: _ids_in(dsn)["staging.rejected_transactions(raw)"] for dsn in holds}
    eu = settings.dsn_for_region("EU")
    assert [v for v in quarantined[eu] if "res-bad-EU" in v] and not [v for v in quarantined[home] if "res-bad-EU" in v]
    assert [v for v in quarantined[home] if "res-bad-none" in v]

    # Each region's published marts are right to the cent, in its own database; never empty.
    expected = _expected_settlements(events)
    published = {}
    for region in settings.regions:
        rows = platform.query(
            """SELECT region, currency, transaction_count, settled_count, settled_volume
               FROM reporting.daily_settlements WHERE settlement_date = %s""",
            (DAY,),
            dsn=settings.dsn_for_region(region),
        )
        assert rows, f"{region}: nothing published"
        assert {r[0] for r in rows} == {region}
        published.update({(r[0], r[1]): (r[2], r[3], r[4]) for r in rows})
        suspicious = platform.query(
            "SELECT transaction_id FROM reporting.suspicious_activity WHERE event_date = %s",
            (DAY,),
            dsn=settings.dsn_for_region(region),
        )
        assert {tx for (tx,) in suspicious} == {f"res-{region}-2", f"res-{region}-3"}
    assert published == expected

    # The home database's roll-up equals every region's published settlements, aggregates only.
    rolled = platform.query(
        """SELECT region, currency, transaction_count, settled_count, settled_volume
           FROM reporting.global_daily_settlements WHERE settlement_date = %s""",
        (DAY,),
        dsn=home,
    )
    assert {(r[0], r[1]): (r[2], r[3], r[4]) for r in rolled} == expected

    # The HTTP API reads each region in its own database: the same numbers, every region.
    with running_api(platform, tmp_path, extra) as api:
        served = {
            (i["region"], i["currency"]): (i["transaction_count"], i["settled_count"], Decimal(i["settled_volume"]))
            for i in api.ok("/settlements", date=str(DAY))["items"]
        }
        assert served == expected
        suspicious = api.ok("/suspicious", date=str(DAY), limit=2)
        walked = [i["transaction_id"] for i in suspicious["items"]]
        while suspicious["next_cursor"]:
            suspicious = api.ok("/suspicious", date=str(DAY), limit=2, cursor=suspicious["next_cursor"])
            walked += [i["transaction_id"] for i in suspicious["items"]]
        assert sorted(walked) == sorted(f"res-{r}-{n}" for r in settings.regions for n in (2, 3))
        assert [i["region"] for i in api.ok("/transactions", transaction_id="res-EU-1")["items"]] == ["EU", "EU"]
        assert api.ok("/health", None)["databases"] == {"APAC": "ok", "EU": "ok", "US": "ok"}

    # A mart emptied over a non-empty slice is caught by its checks, in the region's database.
    eu_rows = platform.query("SELECT count(*) FROM staging.transactions", dsn=eu)[0][0]
    assert eu_rows > 0
    platform.execute("DELETE FROM marts.daily_settlements WHERE region = 'EU'", dsn=eu)
    platform.execute("DELETE FROM marts.suspicious_activity WHERE region = 'EU'", dsn=eu)
    tests = run_dbt(
        settings,
        [
            "test",
            "--select",
            "fct_daily_settlements fct_suspicious_activity",
            "--indirect-selection",
            "buildable",
            "--exclude-resource-type",
            "unit_test",
            *vars_arg(dbt_vars(settings, DAY, "EU")),
        ],
        capture=True,
        target=target_for(settings, "EU"),
    )
    assert tests.returncode == 1
    for kind in ("totals_match_state", "selected_by_rule"):
        assert re.search(rf"FAIL \d+ {kind}_", tests.stdout), (kind, tests.stdout[-3000:])


def test_one_database_under_two_urls_is_refused(platform):
    settings = platform.settings
    alias = _url(settings, settings.warehouse_db, host="localhost")  # the home database, spelled otherwise
    extra = {"TXMON_REGION_DSNS": json.dumps({"EU": alias})}
    for command in (("migrate",), ("ingest", "--until-idle")):
        proc = platform.txmon(*command, check=False, env_extra=extra)
        assert proc.returncode != 0, command
        message = proc.stderr.strip()
        assert "are one database" in message and "\n" not in message and "Traceback" not in message, message
