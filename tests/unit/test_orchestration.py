"""Pure pieces of orchestration: partition keys, dbt arguments, and a snapshot of the code location."""

from __future__ import annotations

import json
from datetime import date

import pytest

from orchestration.partitions import parse_partition_key, partition_key, region_day_partitions
from txmon.config import Settings
from txmon.dbt import dbt_vars


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
    settings = Settings.from_env({"TXMON_SUSPICIOUS_THRESHOLD_USD": "12500.50",
                                  "TXMON_SUSPICIOUS_THRESHOLD_USD_BY_REGION": '{"APAC": "8000"}'})
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


def test_dbt_build_args_exclude_unit_tests_and_carry_the_slice():
    from orchestration.defs.dbt.assets import dbt_build_args

    args = dbt_build_args(Settings.from_env({}), "2026-11-24|US")
    assert args[:3] == ["build", "--exclude-resource-type", "unit_test"]
    assert json.loads(args[args.index("--vars") + 1])["partition_region"] == "US"


def test_code_location_snapshot():
    """Asset keys, partitioning and automation: a rename here is a breaking change for users."""
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = sorted(k.to_user_string() for k in graph.get_all_asset_keys())
    assert keys == [
        "intermediate/int_transactions_latest",
        "marts/daily_settlements",
        "marts/suspicious_activity",
        "reference/fx_rates",
        "reporting/daily_settlements",
        "reporting/suspicious_activity",
        "staging/stg_transactions",
        "staging/transactions",
    ]
    partitioned = sorted(k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).partitions_def)
    assert partitioned == [
        "intermediate/int_transactions_latest", "marts/daily_settlements", "marts/suspicious_activity",
        "reporting/daily_settlements", "reporting/suspicious_activity", "staging/transactions",
    ]
    automated = sorted(k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).automation_condition)
    assert automated == [
        "intermediate/int_transactions_latest", "marts/daily_settlements", "marts/suspicious_activity",
        "reporting/daily_settlements", "reporting/suspicious_activity",
    ]
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert {
        ("staging/transactions", "gx_staging_transactions"),
        ("staging/transactions", "kafka_offsets_accounted"),
        ("staging/transactions", "staging_events_unique"),
        ("marts/suspicious_activity", "gx_suspicious_activity"),
        ("marts/suspicious_activity", "suspicious_in_staging"),
        ("marts/suspicious_activity", "suspicious_complete"),
        ("marts/daily_settlements", "gx_daily_settlements"),
        ("marts/daily_settlements", "settlements_reconcile_with_staging"),
        ("marts/daily_settlements", "unique_combination_fct_daily_settlements_settlement_date__region__currency"),
    } <= checks
    sensors = {s.name for s in defs.sensors}
    assert sensors >= {"kafka_ingestion", "marts_automation", "open_day_marts", "freshness_checks"}
    assert {s.name for s in defs.schedules} == {"daily_settlements", "prune_dagster_history", "offset_audit"}


def test_only_the_open_day_refreshes_by_new_data():
    from orchestration.defs.dbt.assets import FULL_SLICE_TAG, slice_mode

    today, yesterday = date(2026, 11, 26), date(2026, 11, 25)
    assert slice_mode(today, today, {}, processed_before=True) == "new_data"
    assert slice_mode(today, today, {}, processed_before=False) == "full"  # first build of the day
    assert slice_mode(yesterday, today, {}, processed_before=True) == "full"
    assert slice_mode(today, today, {FULL_SLICE_TAG: "true"}, processed_before=True) == "full"
