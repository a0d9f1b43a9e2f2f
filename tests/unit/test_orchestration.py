"""Pure pieces of orchestration: partition keys, dbt arguments, and a snapshot of the code location."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from orchestration.partitions import parse_partition_key, partition_key, region_day_partitions
from txmon.core.dbt import dbt_vars
from txmon.core.settings import Settings


def test_partition_keys_round_trip():
    key = partition_key(date(2026, 11, 24), "EU")
    assert str(key) == "2026-11-24|EU"
    assert parse_partition_key(key) == (date(2026, 11, 24), "EU")
    assert parse_partition_key("2026-11-24|APAC") == (date(2026, 11, 24), "APAC")


def test_partitions_are_days_from_the_start_by_regions():
    settings = Settings.from_env({"TXMON_PARTITIONS_START_DATE": "2026-11-01"})
    parts = region_day_partitions(settings)
    keys = parts.get_partition_keys()
    assert "2026-11-01|EU" in keys and "2026-10-31|EU" not in keys
    assert {k.split("|")[1] for k in keys} == {"EU", "US", "APAC"}


def test_dbt_vars_for_a_slice():
    settings = Settings.from_env(
        {"TXMON_SUSPICIOUS_THRESHOLD_USD": "12500.50", "TXMON_SUSPICIOUS_THRESHOLD_USD_BY_REGION": '{"APAC": "8000"}'}
    )
    v = dbt_vars(settings, date(2026, 11, 24), "APAC")
    assert v["partition_date"] == "2026-11-24" and v["partition_region"] == "APAC"
    assert v["suspicious_threshold_usd"] == "12500.50"
    assert v["suspicious_threshold_usd_by_region"] == {"APAC": "8000"}
    assert json.loads(json.dumps(v)) == v  # it travels as --vars JSON
    full = dbt_vars(settings)
    assert full["partition_date"] is None and full["partition_region"] is None
    with pytest.raises(ValueError):
        dbt_vars(settings, date(2026, 11, 24), None)
    with pytest.raises(ValueError):
        dbt_vars(settings, date(2026, 11, 24), "MARS")


def test_dbt_build_args_exclude_unit_tests_and_carry_the_settings():
    from orchestration.defs.dbt.assets import dbt_build_args

    args = dbt_build_args(Settings.from_env({"TXMON_SUSPICIOUS_THRESHOLD_USD": "9000"}))
    assert args[:3] == ["build", "--exclude-resource-type", "unit_test"]
    assert json.loads(args[args.index("--vars") + 1])["suspicious_threshold_usd"] == "9000"


def _snapshot(defs) -> dict:
    """What users and their tools rely on in the code location, as plain data."""
    graph = defs.resolve_asset_graph()

    def partitions(pdef) -> str | None:
        if pdef is None:
            return None
        dims = getattr(pdef, "partitions_defs", None)
        return " x ".join(f"{d.name}:{type(d.partitions_def).__name__}" for d in dims) if dims else type(pdef).__name__

    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        policy = node.freshness_policy
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": partitions(node.partitions_def),
            "automation_condition": node.automation_condition.get_label() if node.automation_condition else None,
            "freshness_policy": type(policy).__name__ if policy else None,
            "kinds": sorted(node.kinds),
            "executed_by": graph.assets_def_for_key(key).node_def.name if node.is_executable else None,
        }
    checks = {}
    for key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        spec = graph.get_check_spec(key)
        checks[f"{key.asset_key.to_user_string()}:{key.name}"] = {
            "blocking": spec.blocking,
            "partitioned": spec.partitions_def is not None,
            "described": bool(spec.description),
        }
    return {
        "assets": assets,
        "checks": checks,
        "jobs": sorted(j.name for j in defs.jobs if not j.name.startswith("__")),
        "schedules": {
            s.name: {"cron": s.cron_schedule, "job": s.job_name, "default": s.default_status.value}
            for s in sorted(defs.schedules, key=lambda s: s.name)
        },
        "sensors": {
            s.name: {
                "interval": s.minimum_interval_seconds,
                "default": s.default_status.value,
                "jobs": sorted(t.job_name for t in s.targets),
            }
            for s in sorted(defs.sensors, key=lambda s: s.name)
        },
    }


def test_code_location_snapshot():
    """Asset keys, checks, partitions, automation, jobs, schedules and sensors, as recorded in
    tests/unit/snapshots/code_location.json: a rename there is a breaking change for users (and
    their dashboards, alerts and BI tools). After an intended change: `make update-snapshot`."""
    import os

    from orchestration.definitions import defs

    recorded = Path(__file__).parent / "snapshots" / "code_location.json"
    current = _snapshot(defs())
    if os.environ.get("TXMON_UPDATE_SNAPSHOT") == "1":
        recorded.parent.mkdir(exist_ok=True)
        recorded.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(recorded.read_text())


def test_code_location_imports_without_side_effects():
    """Importing the code location builds nothing (definitions are loaded lazily)."""
    import subprocess
    import sys

    code = (
        "import sys, orchestration.definitions as d; "
        "assert 'dbt.cli.main' not in sys.modules, 'dbt imported'; "
        "assert not hasattr(d, 'SETTINGS')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""})
    assert proc.returncode == 0, proc.stderr


def test_a_day_refreshes_its_open_day_tables_until_it_closes():
    from txmon.core.dbt import manifest
    from txmon.quality.refresh import tables_to_build

    today, yesterday = date(2026, 11, 26), date(2026, 11, 25)
    open_day = [t.name for t in tables_to_build(manifest(), today, today=today)]
    closed = [t.name for t in tables_to_build(manifest(), yesterday, today=today)]
    assert open_day == ["int_transaction_state", "suspicious_activity"]
    assert closed == ["int_transaction_state", "daily_settlements", "suspicious_activity"]
    assert [t.name for t in tables_to_build(manifest(), today, today=today, whole=True)] == closed


def test_every_declared_check_has_an_implementation_and_a_description():
    from txmon.core.dbt import manifest, partitioned_tables, source_checks
    from txmon.quality.reconciliations import DESCRIPTIONS, RECONCILIATIONS

    declared = {c for t in partitioned_tables(manifest()) for c in t.checks}
    declared |= {c for checks in source_checks(manifest()).values() for c in checks}
    from expectations import SUITES

    implemented = set(RECONCILIATIONS) | {f"gx_{s}" for s in SUITES}
    assert declared == implemented == set(DESCRIPTIONS)


def test_region_turns_keep_each_region_in_day_order_and_both_threads_busy():
    from orchestration.defs.dbt.refresh import RegionTurns

    days = [f"2026-11-2{d}" for d in range(3)]
    keys = [f"{day}|{region}" for day in days for region in ("EU", "US", "APAC")]
    turns = RegionTurns(list(reversed(keys)))
    assert turns.regions == 3
    first, second = turns.take(), turns.take()
    assert (first, second) == ("2026-11-20|APAC", "2026-11-20|EU")  # the most days left, then the key's order
    # Two threads: the one that ends takes the region with the most days left that the other does not hold.
    assert turns.take("APAC") == "2026-11-20|US"
    assert turns.take("EU") == "2026-11-21|APAC"
    assert turns.take("US") == "2026-11-21|EU"
    order = [first, second, "2026-11-20|US", "2026-11-21|APAC", "2026-11-21|EU"]
    held = {"APAC": "2026-11-21|APAC", "EU": "2026-11-21|EU"}
    while held:  # the rest: the thread holding the earliest key ends it and takes the next, until none is left
        done = min(held, key=held.__getitem__)
        del held[done]
        key = turns.take(done)
        if key is None:
            continue  # that thread ends: the regions with days left are held by the other
        region = parse_partition_key(key)[1]
        assert region not in held
        held[region] = key
        order.append(key)
    assert sorted(order) == sorted(keys)
    for region in ("EU", "US", "APAC"):
        assert [k for k in order if k.endswith(region)] == [f"{day}|{region}" for day in days]
    assert RegionTurns(["2026-11-20|EU", "2026-11-21|EU"]).take() == "2026-11-20|EU"
    lone = RegionTurns(["2026-11-20|EU", "2026-11-21|EU"])
    lone.take()
    assert lone.take() is None  # the other thread holds the only region


def test_region_turns_hand_out_nothing_once_closed():
    from orchestration.defs.dbt.refresh import RegionTurns

    turns = RegionTurns(["2026-11-20|EU", "2026-11-21|EU", "2026-11-20|US"])
    assert turns.take() == "2026-11-20|EU"
    turns.close()  # the run terminated: the partition taken is refreshed to its end, no other begins
    assert turns.take("EU") is None
    assert turns.take() is None


def test_dagster_config_names_the_regional_databases_never_their_urls(monkeypatch):
    """The resource's configuration is shown in Dagster's UI: region names only; each process reads the URLs."""
    from orchestration.definitions import build_definitions
    from orchestration.resources import TxmonResource
    from txmon.core.settings import ConfigError, replace

    secret_url = "postgresql://admin:eu-s3cret@eu.example:5432/wh"
    monkeypatch.delenv("TXMON_REGION_DSNS", raising=False)
    settings = replace(Settings.from_env({}), region_dsns={"EU": secret_url})
    resource = build_definitions(settings).resources["txmon"]
    assert isinstance(resource, TxmonResource)
    config = json.dumps(resource.model_dump())
    assert "s3cret" not in config and "eu.example" not in config and "postgresql" not in config
    assert resource.regional == ["EU"]
    # A process with the URLs in its environment (Dagster's, started by txmon) uses them ...
    monkeypatch.setenv("TXMON_REGION_DSNS", json.dumps({"EU": secret_url}))
    assert resource.settings().region_dsns == {"EU": secret_url}
    # ... one without (`txmon run --multi-region` itself) the local layout of the regions named ...
    monkeypatch.delenv("TXMON_REGION_DSNS")
    local = TxmonResource(regional=["EU", "US"]).settings()
    assert local.region_dsns == {r: local.local_region_dsn(r) for r in ("EU", "US")}
    assert local.region_dsns["US"].endswith(f"/{local.warehouse_db}_us")
    # ... and one whose environment places other regions is refused, not guessed at.
    monkeypatch.setenv("TXMON_REGION_DSNS", json.dumps({"US": secret_url.replace("eu", "us")}))
    with pytest.raises(ConfigError, match="definitions were built for regional databases of \\['EU'\\]"):
        resource.settings()
