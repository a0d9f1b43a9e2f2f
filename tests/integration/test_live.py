"""The live platform, as the README starts it (`txmon dagster`: webserver + daemon, nobody clicking), with
EU and US in databases of their own and APAC at home (`txmon run --multi-region`): late events for
closed days reach each region's `reporting` and the home roll-up by themselves, right to the cent, with
no failed run and no failed check."""

from __future__ import annotations

import json
import socket
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from tests.integration.test_ingest import event, line

# Late data must be published within this bound of being produced (the target is 2 minutes).
BOUND_SECONDS = 150
STATUS_RANK = {"pending": 0, "settled": 1, "failed": 1, "reversed": 2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expected(events: list[dict]) -> tuple[dict, dict]:
    """Settlements and suspicious activity from the contract's rules, computed here from the events."""
    latest = {}
    for order, e in enumerate(events):
        at = datetime.fromisoformat(e["event_time"])
        key = (at, STATUS_RANK[e["status"]], order)
        if e["transaction_id"] not in latest or key > latest[e["transaction_id"]][0]:
            latest[e["transaction_id"]] = (key, e)
    flagged = {e["transaction_id"] for e in events if e.get("fraud_flag")}
    settlements = defaultdict(lambda: [0, 0, Decimal("0")])
    suspicious = {}
    for tx, ((at, _, _), e) in latest.items():
        row = settlements[(at.date(), e["region"], e["currency"])]
        row[0] += 1
        if e["status"] == "settled":
            row[1] += 1
            row[2] += Decimal(e["amount"])
        reasons = []
        if e["currency"] == "USD" and Decimal(e["amount"]) > Decimal("10000"):
            reasons.append("amount_over_threshold")
        if tx in flagged:
            reasons.append("fraud_flag")
        if reasons:
            suspicious[tx] = (at.date(), e["region"], reasons)
    return {k: tuple(v) for k, v in settlements.items()}, suspicious


def published(platform, settings, days) -> tuple[dict, dict, dict]:
    """Every region's published settlements and suspicious activity, each read in its own database, and
    the home database's roll-up."""
    settlements, suspicious = {}, {}
    for dsn, held in settings.databases().items():
        if not held:
            continue
        settlements.update(
            {
                (d, r, c): (n, s, v)
                for d, r, c, n, s, v in platform.query(
                    "SELECT settlement_date, region, currency, transaction_count, settled_count, settled_volume"
                    " FROM reporting.daily_settlements WHERE settlement_date = ANY(%s) AND region = ANY(%s)",
                    (days, list(held)),
                    dsn=dsn,
                )
            }
        )
        suspicious.update(
            {
                tx: (d, r, list(reasons))
                for tx, d, r, reasons in platform.query(
                    "SELECT transaction_id, event_date, region, reasons FROM reporting.suspicious_activity"
                    " WHERE event_date = ANY(%s) AND region = ANY(%s)",
                    (days, list(held)),
                    dsn=dsn,
                )
            }
        )
    rolled = {
        (d, r, c): (n, s, v)
        for d, r, c, n, s, v in platform.query(
            "SELECT settlement_date, region, currency, transaction_count, settled_count, settled_volume"
            " FROM reporting.global_daily_settlements WHERE settlement_date = ANY(%s)",
            (days,),
        )
    }
    return settlements, suspicious, rolled


def wait_published(platform, settings, events, days, what: str) -> float:
    settlements, suspicious = expected(events)
    want = (settlements, suspicious, settlements)  # the roll-up holds the same numbers
    started = time.monotonic()
    got = None
    while time.monotonic() - started < BOUND_SECONDS:
        got = published(platform, settings, days)
        if got == want:
            return time.monotonic() - started
        time.sleep(2)
    raise AssertionError(f"{what}: reporting not right after {BOUND_SECONDS}s\nwant {want}\ngot  {got}")


def wait_for_ticks(platform, since: datetime, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            platform.query_dagster("SELECT to_regclass('job_ticks') IS NOT NULL")[0][0]
            and platform.query_dagster(
                "SELECT count(*) FROM job_ticks WHERE (tick_body::jsonb)->>'job_name' = 'marts_refresh'"
                " AND timestamp > %s",
                (since.replace(tzinfo=None),),
            )[0][0]
        ):
            return
        time.sleep(2)
    raise AssertionError("the marts_refresh sensor did not tick (see .txmon/logs/daemon.log)")


def assert_roles_by_duty(platform, regional: list[str]) -> None:
    """The live platform's sessions: Dagster's storage as its role, nothing in any warehouse database as
    the admin."""
    settings = platform.settings
    sessions = platform.query(
        """SELECT datname, usename, application_name FROM pg_stat_activity
           WHERE datname = ANY(%s) AND pid <> pg_backend_pid() AND backend_type = 'client backend'""",
        ([settings.warehouse_db, settings.dagster_db, *regional],),
    )
    users = {(db, user) for db, user, _ in sessions}
    assert (settings.warehouse_db, "txmon_ingest") in users, sessions  # the sensor's lander
    # Dagster opens its storage connections per query: its tables show the role it connects as.
    owners = platform.query_dagster("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
    assert owners == [("txmon_dagster",)], owners
    for db, user, app in sessions:
        if db == settings.dagster_db:
            assert user == "txmon_dagster", (db, user, app)
        else:
            assert user in ("txmon_ingest", "txmon_transform", "txmon_publish", "txmon_retention"), (db, user, app)


def test_late_data_reaches_reporting_by_itself(regions, tmp_path):
    platform, extra, settings, databases = regions
    started = datetime.now(UTC)
    today = started.date()
    days = [today - timedelta(days=n) for n in (5, 3, 2)]
    at = {d: datetime(d.year, d.month, d.day, 9, tzinfo=UTC) for d in days}
    currency = {"EU": "EUR", "US": "USD", "APAC": "SGD"}

    first = []
    for i, day in enumerate(days):
        for region in ("EU", "US", "APAC"):
            base = f"live-{day:%m%d}-{region}"
            t = at[day] + timedelta(minutes=i)
            first += [
                event(
                    f"{base}-a",
                    "pending",
                    amount="12.34",
                    currency=currency[region],
                    region=region,
                    event_time=t.isoformat(),
                ),
                event(
                    f"{base}-a",
                    "settled",
                    amount="12.34",
                    currency=currency[region],
                    region=region,
                    event_time=(t + timedelta(seconds=5)).isoformat(),
                ),
                event(f"{base}-b", amount="0.0101", currency=currency[region], region=region, event_time=t.isoformat()),
                event(
                    f"{base}-c",
                    "failed",
                    amount="99.99",
                    currency=currency[region],
                    region=region,
                    fraud_flag=True,
                    event_time=t.isoformat(),
                ),
                event(f"{base}-d", amount="10000.01", currency="USD", region=region, event_time=t.isoformat()),
                event(
                    f"{base}-e", "pending", amount="10000.00", currency="USD", region=region, event_time=t.isoformat()
                ),
            ]
    # Later: new transactions, and lifecycle updates one day later that take a transaction out of the
    # day where it was pending (the settlements of both days change).
    second = []
    for region in ("EU", "US", "APAC"):
        d0, d1 = days[1], days[2]
        second += [
            event(
                f"live-{d0:%m%d}-{region}-e",
                "settled",
                amount="10000.00",
                currency="USD",
                region=region,
                event_time=(at[d1] + timedelta(hours=1)).isoformat(),
            ),
            event(
                f"live-{d0:%m%d}-{region}-f",
                amount="3.03",
                currency=currency[region],
                region=region,
                event_time=(at[d0] + timedelta(hours=2)).isoformat(),
            ),
            event(
                f"live-{days[0]:%m%d}-{region}-a",
                "reversed",
                amount="12.34",
                currency=currency[region],
                region=region,
                fraud_flag=True,
                event_time=(at[days[0]] + timedelta(hours=3)).isoformat(),
            ),
        ]

    platform.txmon("migrate", env_extra=extra)  # creates the regional databases on the local cluster
    port = free_port()
    dagster = platform.popen(
        "dagster",
        "--port",
        str(port),
        env_extra=extra,
        stdout=open(tmp_path / "dagster.log", "wb"),
        stderr=open(tmp_path / "dagster.err", "wb"),
    )
    try:
        wait_for_ticks(platform, started)
        source = tmp_path / "first.jsonl"
        source.write_text("\n".join(line(e) for e in first))
        platform.txmon("produce", str(source))
        first_seconds = wait_published(platform, settings, first, days, "first wave")
        assert_roles_by_duty(platform, list(databases.values()))

        source = tmp_path / "second.jsonl"
        source.write_text("\n".join(line(e) for e in second))
        platform.txmon("produce", str(source))
        second_seconds = wait_published(platform, settings, first + second, days, "second wave")
    finally:
        dagster.terminate()  # it waits for the refresh run to end its cycle and record its end
        dagster.wait(timeout=240)
    print(f"published {first_seconds:.0f}s and {second_seconds:.0f}s after producing")

    # No failed run, and every check evaluation of these partitions passed, in the instance the UI reads.
    runs = platform.query_dagster(
        "SELECT run_id, status FROM runs WHERE create_timestamp > %s", (started.replace(tzinfo=None),)
    )
    assert runs and {s for _, s in runs} <= {"SUCCESS"}, runs
    # The refresh run launched for the first wave was still following when the second landed: it
    # refreshed those partitions too, in the same warm process, and recorded how far it followed.
    followed = platform.query_dagster(
        "SELECT run_id FROM run_tags WHERE key = 'txmon/followed_batches' AND run_id = ANY(%s)",
        ([r for r, _ in runs],),
    )
    assert followed, "no refresh run followed new data"
    keys = [f"{d}|{r}" for d in days for r in ("EU", "US", "APAC")]
    checks = platform.query_dagster(
        "SELECT partition, check_name, execution_status FROM asset_check_executions"
        " WHERE partition = ANY(%s) AND create_timestamp > %s",
        (keys, started.replace(tzinfo=None)),
    )
    assert {p for p, _, _ in checks} == set(keys)
    failed = [(p, c) for p, c, s in checks if s != "SUCCEEDED"]
    assert not failed, failed
    recorded = set()
    for dsn in settings.databases():  # each region's publications are logged in its own database
        recorded |= {
            k
            for (k,) in platform.query(
                "SELECT DISTINCT partition_date || '|' || region FROM reporting.published_partitions"
                " WHERE run_id = ANY(%s)",
                ([r for r, _ in runs],),
                dsn=dsn,
            )
        }
    # Every partition with data, and perhaps the days next to one: a transaction in structuring's band marks the days
    # its window reaches (docs/rules.md), whose refresh republishes them.
    assert set(keys) <= recorded, sorted(set(keys) - recorded)
    beside = {f"{date.fromisoformat(k[:10]) + timedelta(days=step)}|{k[11:]}" for k in keys for step in (-1, 1)}
    assert recorded - set(keys) <= beside, sorted(recorded - set(keys))

    # The report packages, built by the refresh itself: each region-day's in the region's own directory, a new
    # version once the second wave republished the day (the earlier kept and named), and the roll-up's package of
    # each day. No package holds another region's transactions, the roll-up's none at all; the latest verify.
    for day in days:
        for region in ("EU", "US", "APAC"):
            built = sorted(settings.report_dir(region).glob(f"{day}/v*"), key=lambda p: int(p.name[1:]))
            assert len(built) >= 2, (day, region, built)
            latest = json.loads((built[-1] / "manifest.json").read_text())
            assert latest["supersedes"]["version"] == int(built[-2].name[1:])
            contents = b"".join(f.read_bytes() for f in built[-1].glob("*.csv"))
            assert f"live-{day:%m%d}-{region}".encode() in contents
            for other in {"EU", "US", "APAC"} - {region}:
                assert b"-" + other.encode() + b"-" not in contents, (day, region, other)
            verified = platform.txmon("report", "verify", str(built[-1]), env_extra=extra)
            assert "verified" in verified.stdout
        rolled_up = sorted(settings.report_dir("global").glob(f"{day}/v*"), key=lambda p: int(p.name[1:]))
        assert rolled_up and b"live-" not in b"".join(f.read_bytes() for f in rolled_up[-1].glob("*.csv"))
        assert set(json.loads((rolled_up[-1] / "manifest.json").read_text())["publication"]) == {"EU", "US", "APAC"}
