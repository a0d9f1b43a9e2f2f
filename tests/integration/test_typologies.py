"""Structuring and velocity end to end: landed, refreshed (a late transaction completes a group of the day before),
checked, published with their evidence, served by the API, replayed by `txmon backtest` with other parameters."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta

from tests.integration.test_api import running_api
from tests.integration.test_ingest import event, line
from tests.integration.test_live import free_port

DAY, NEXT = date(2026, 11, 24), date(2026, 11, 25)


def usd(tx: str, amount: str, at: datetime, account: str) -> dict:
    return event(
        tx, "settled", amount=amount, currency="USD", region="US", account_id=account, event_time=at.isoformat()
    )


def land(platform, tmp_path, name: str, events: list[dict]) -> None:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(line(e) for e in events) + "\n")
    platform.txmon("produce", str(path))
    platform.txmon("ingest", "--until-idle")


def published(platform, day: date) -> dict[str, tuple[list[str], dict | None]]:
    rows = platform.query(
        "SELECT transaction_id, reasons, evidence FROM reporting.suspicious_activity"
        " WHERE event_date = %s AND region = 'US'",
        (day,),
    )
    return {tx: (reasons, evidence) for tx, reasons, evidence in rows}


def test_structuring_and_velocity_are_published_with_their_evidence(module_platform, tmp_path):
    platform = module_platform
    evening = datetime.fromisoformat("2026-11-24T22:00:00+00:00")
    morning = datetime.fromisoformat("2026-11-24T10:00:00+00:00")
    first = [
        # Two near the threshold late on the 24th: no group yet.
        usd("s-1", "9100.00", evening, "acc-s"),
        usd("s-2", "9200.00", evening + timedelta(hours=1), "acc-s"),
        # 22 payments in 21 minutes: the 21st and 22nd are past N = 20.
        *(usd(f"v-{i:02d}", "5.00", morning + timedelta(minutes=i), "acc-v") for i in range(1, 23)),
        # Three near the threshold, but 30 hours apart: never within one window.
        *(usd(f"o-{i}", "9100.00", morning - timedelta(hours=30 * i), "acc-o") for i in range(3)),
    ]
    land(platform, tmp_path, "first", first)
    platform.txmon("materialize", "--date", DAY.isoformat(), "--region", "US")
    platform.txmon("materialize", "--date", NEXT.isoformat(), "--region", "US")
    day = published(platform, DAY)
    assert {tx: reasons for tx, (reasons, _) in day.items()} == {"v-21": ["velocity"], "v-22": ["velocity"]}
    evidence = day["v-22"][1]["velocity"]
    assert evidence["transaction_ids"] == [f"v-{i:02d}" for i in range(1, 23)]
    assert (evidence["transactions"], evidence["total_usd"], evidence["max_transactions"]) == (22, "110.0000", 20)
    assert (
        evidence["first_at"] == "2026-11-24T10:01:00.000000Z" and evidence["last_at"] == "2026-11-24T10:22:00.000000Z"
    )
    versions = platform.query("SELECT region, effective_from::text FROM intermediate.rule_parameters ORDER BY region")
    assert versions == [("APAC", "-infinity"), ("EU", "-infinity"), ("US", "-infinity")]

    # Late on the 25th's side of midnight, a third completes the group: the merge marks both days, and a refresh of
    # each (only what changed since its last build) publishes all three.
    land(platform, tmp_path, "late", [usd("s-3", "9300.00", evening + timedelta(hours=3), "acc-s")])
    platform.txmon("publish", "--date", NEXT.isoformat(), "--region", "US")
    marked = {d for (d,) in platform.query("SELECT slice_date FROM intermediate.changed_slices WHERE region = 'US'")}
    assert DAY in marked, "the merge marked the day before, whose group the late transaction completes"
    platform.txmon("publish", "--date", DAY.isoformat(), "--region", "US")
    day, next_day = published(platform, DAY), published(platform, NEXT)
    assert {tx for tx, (reasons, _) in day.items() if "structuring" in reasons} == {"s-1", "s-2"}
    assert next_day["s-3"][0] == ["structuring"]
    group = day["s-1"][1]["structuring"]
    assert group == next_day["s-3"][1]["structuring"] == day["s-2"][1]["structuring"]
    assert group["transaction_ids"] == ["s-1", "s-2", "s-3"]
    assert (group["transactions"], group["total_usd"], group["threshold_usd"], group["min_ratio"]) == (
        3,
        "27600.0000",
        "10000",
        "0.9",
    )
    assert not any(tx.startswith("o-") for tx in day), "near-threshold payments 30 hours apart are no group"

    # Published, served: the API filters by the new reasons and shows the evidence, money as decimal strings.
    with running_api(platform, tmp_path) as api:
        page = api.ok("/suspicious", date=DAY.isoformat(), region="US", reason="structuring")
        assert [item["transaction_id"] for item in page["items"]] == ["s-1", "s-2"]
        shown = page["items"][0]["evidence"]["structuring"]
        assert shown["total_usd"] == "27600.0000" and shown["transaction_ids"] == ["s-1", "s-2", "s-3"]
        assert page["items"][0]["evidence"]["velocity"] is None
        velocity = api.ok("/suspicious", date=DAY.isoformat(), region="US", reason="velocity")["items"]
        assert [item["transaction_id"] for item in velocity] == ["v-21", "v-22"]

    # Backtest: by the parameters in force it finds what was published; with others, what they would flag.
    found = platform.txmon("backtest", "--from", DAY.isoformat(), "--to", NEXT.isoformat(), "--region", "US").stdout
    assert f"{DAY}  US      structuring                        2         1" in found, found
    assert f"{DAY}  US      velocity                           2         1" in found, found
    assert f"{NEXT}  US      structuring                        1         1" in found, found
    tuned = platform.txmon(
        "backtest",
        "--from",
        DAY.isoformat(),
        "--to",
        NEXT.isoformat(),
        "--rules",
        json.dumps({"US": {"velocity_max_transactions": 10, "structuring_min_transactions": 4}}),
    ).stdout
    assert f"{DAY}  US      velocity                          12         1" in tuned, tuned
    assert "structuring" not in tuned.split("reason", 1)[1], tuned
    # Nothing was published by it.
    assert published(platform, DAY) == day
    bad = platform.txmon("backtest", "--from", "2026-11-24", "--to", "2026-11-23", check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr

    # s-3's reversal carries another amount, out of the band: the merge marks the day before too, whose group s-3
    # left, and the refreshes of both days publish no structuring any more.
    reversal = event(
        "s-3",
        "reversed",
        amount="500.00",
        currency="USD",
        region="US",
        account_id="acc-s",
        event_time=(evening + timedelta(hours=3, minutes=5)).isoformat(),
    )
    land(platform, tmp_path, "reversal", [reversal])
    platform.txmon("publish", "--date", NEXT.isoformat(), "--region", "US")
    marked = {d for (d,) in platform.query("SELECT slice_date FROM intermediate.changed_slices WHERE region = 'US'")}
    assert DAY in marked, "the merge marked the day of the group the reversal left"
    platform.txmon("publish", "--date", DAY.isoformat(), "--region", "US")
    left = {**published(platform, DAY), **published(platform, NEXT)}
    assert not [tx for tx, (reasons, _) in left.items() if "structuring" in reasons], left
    assert {tx for tx, (reasons, _) in left.items() if "velocity" in reasons} == {"v-21", "v-22"}


def burst(platform) -> dict:
    """acc-b's published rows of the 24th."""
    return {tx: row for tx, row in published(platform, DAY).items() if tx.startswith("b-")}


def test_a_change_of_parameters_takes_effect_from_its_recording_and_old_days_keep_theirs(module_platform, tmp_path):
    """On the module's platform (after the test above, or alone): its own accounts, and the parameters it changes."""
    platform = module_platform
    morning = datetime.fromisoformat("2026-11-24T10:00:00+00:00")
    land(
        platform,
        tmp_path,
        "burst",
        [usd(f"b-{i:02d}", "5.00", morning + timedelta(minutes=i), "acc-b") for i in range(6)],
    )
    platform.txmon("materialize", "--date", DAY.isoformat(), "--region", "US")
    assert not burst(platform), "six in an hour is no burst at N = 20"
    stricter = {"TXMON_RULES": json.dumps({"US": {"velocity_max_transactions": 3}})}
    platform.txmon("materialize", "--date", DAY.isoformat(), "--region", "US", env_extra=stricter)
    versions = platform.query(
        "SELECT effective_from::text, velocity_max_transactions FROM intermediate.rule_parameters WHERE region = 'US'"
        " ORDER BY effective_from"
    )
    assert [n for _, n in versions] == [20, 3] and versions[0][0] == "-infinity"
    assert not burst(platform), "the 24th is judged by the parameters in force on the 24th"
    # A burst after the change is judged by the new ones.
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    today = [usd(f"t-{i:02d}", "5.00", now + timedelta(seconds=i), "acc-t") for i in range(5)]
    land(platform, tmp_path, "today", today)
    platform.txmon("materialize", "--date", now.date().isoformat(), "--region", "US", env_extra=stricter)
    rows = platform.query(
        "SELECT transaction_id FROM reporting.suspicious_activity WHERE 'velocity' = ANY (reasons)"
        " AND account_id = 'acc-t' ORDER BY 1"
    )
    assert [tx for (tx,) in rows] == ["t-03", "t-04"]


def test_the_generators_patterns_fire_and_its_ordinary_traffic_never_does_with_the_daemon_running(platform, tmp_path):
    """Three hours of a closed day's synthetic payments, with structuring groups and velocity bursts at a raised rate,
    landed and published by the live platform (`txmon dagster`, nobody clicking): exactly the transactions the rules
    select, all on the generator's pattern accounts, with no failed run or check."""
    from tests.aml_rules import latest_states, structuring, velocity
    from tests.integration.test_live import wait_for_ticks
    from txmon.devtools.generate import pattern_of

    day = date(2026, 11, 20)
    source = tmp_path / "payments.jsonl"
    platform.txmon(
        "generate",
        *("--tps", "2", "--duration", "10800", "--seed", "7", "--start", f"{day}T09:00:00Z"),
        *("--structuring-rate", "0.003", "--velocity-rate", "0.0015", "--output", str(source)),
    )
    states = latest_states(platform.settings, source.read_bytes().splitlines())
    want = {"structuring": structuring(platform.settings, states), "velocity": velocity(platform.settings, states)}
    accounts = {state.transaction_id: state.account_id for state in states}
    assert len(want["structuring"]) > 20 and len(want["velocity"]) > 20, {k: len(v) for k, v in want.items()}
    for reason, flagged in want.items():
        assert {pattern_of(accounts[tx]) for tx in flagged} == {reason}, "the reference sees the patterns alone"

    started = datetime.now(UTC)
    with open(tmp_path / "dagster.log", "wb") as log:
        dagster = platform.popen("dagster", "--port", str(free_port()), stdout=log, stderr=log)
    try:
        wait_for_ticks(platform, started)
        platform.txmon("produce", str(source))
        deadline, got = datetime.now(UTC) + timedelta(seconds=300), {}
        while datetime.now(UTC) < deadline:
            rows = platform.query(
                "SELECT reason, transaction_id FROM reporting.suspicious_activity, unnest(reasons) AS reason"
                " WHERE event_date = %s AND reason IN ('structuring', 'velocity')",
                (day,),
            )
            got = {reason: {tx for r, tx in rows if r == reason} for reason in want}
            published_regions = platform.query(
                "SELECT count(DISTINCT region) FROM reporting.published_partitions"
                " WHERE partition_date = %s AND table_name = 'suspicious_activity'",
                (day,),
            )[0][0]
            if got == want and published_regions == 3:
                break
            time.sleep(3)
        assert got == want, {
            r: (len(want[r]), len(got.get(r, ())), sorted(want[r] ^ got.get(r, set()))[:5]) for r in want
        }
    finally:
        dagster.terminate()
        dagster.wait(timeout=240)
    runs = platform.query_dagster(
        "SELECT run_id, status FROM runs WHERE create_timestamp > %s", (started.replace(tzinfo=None),)
    )
    assert runs and {s for _, s in runs} <= {"SUCCESS"}, runs
    failed = platform.query_dagster(
        "SELECT partition, check_name FROM asset_check_executions"
        " WHERE create_timestamp > %s AND execution_status <> 'SUCCEEDED'",
        (started.replace(tzinfo=None),),
    )
    assert not failed, failed
