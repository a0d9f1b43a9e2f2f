from __future__ import annotations

from decimal import Decimal

import pytest

from txmon.core.settings import ConfigError, Settings


def test_defaults_follow_the_contract():
    s = Settings.from_env({})
    assert s.topic == "payments.transactions"
    assert s.regions == ("EU", "US", "APAC")
    assert s.suspicious_threshold_usd == Decimal("10000")
    assert s.partitions_start_date.isoformat() == "2025-01-01"
    info = s.info()
    for key in ("warehouse_dsn", "kafka_bootstrap", "topic", "regions", "suspicious_threshold_usd"):
        assert key in info
    assert info["warehouse_dsn"].startswith("postgresql://")
    assert info["suspicious_threshold_usd"] == 10000
    custom = Settings.from_env({"TXMON_SUSPICIOUS_THRESHOLD_USD": "12500.25"})
    assert custom.info()["suspicious_threshold_usd"] == 12500.25
    assert "pg_password" not in info


def test_environment_overrides():
    s = Settings.from_env(
        {
            "TXMON_REGIONS": "EU, CH",
            "TXMON_SUSPICIOUS_THRESHOLD_USD": "5000.50",
            "TXMON_PG_PORT": "6543",
            "TXMON_TOPIC": "other",
            "TXMON_KAFKA_BOOTSTRAP": "kafka:9092",
        }
    )
    assert s.regions == ("EU", "CH")
    assert s.suspicious_threshold_usd == Decimal("5000.50")
    assert ":6543/" in s.warehouse_dsn
    assert s.kafka_bootstrap == "kafka:9092"


def test_region_routing_is_one_lookup():
    s = Settings.from_env({"TXMON_REGION_DSNS": '{"EU": "postgresql://eu-host/txmon"}'})
    eu = s.dsn_for_region("EU")
    assert eu.startswith("postgresql://eu-host/txmon?passfile=")
    assert s.dsn_for_region("US") == s.warehouse_dsn
    assert s.databases() == {s.warehouse_dsn: ("US", "APAC"), eu: ("EU",)}
    with pytest.raises(ConfigError):
        s.dsn_for_region("MARS")


@pytest.mark.parametrize(
    "env",
    [
        {"TXMON_PG_PORT": "abc"},
        {"TXMON_PG_PORT": "70000"},
        {"TXMON_REGIONS": "eu"},
        {"TXMON_CURRENCIES": "DOLLAR"},
        {"TXMON_SUSPICIOUS_THRESHOLD_USD": "-1"},
        {"TXMON_SUSPICIOUS_THRESHOLD_USD": "lots"},
        {"TXMON_PARTITIONS_START_DATE": "2025-13-01"},
        {"TXMON_REGION_DSNS": "not json"},
        {"TXMON_REGION_DSNS": '{"MARS": "postgresql://x/y"}'},
        {"TXMON_BATCH_MAX_SECONDS": "0"},
        {"TXMON_RAW_EVENT_RETENTION_DAYS": "-1"},
        {"TXMON_QUARANTINE_RETENTION_DAYS": "0"},
        {"TXMON_DUPLICATE_RETENTION_DAYS": "a month"},
        {"TXMON_BATCH_LOG_RETENTION_DAYS": "99999"},
        {"TXMON_METADATA_SAMPLE_SIZE": "-5"},
    ],
)
def test_bad_settings_name_the_variable(env):
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert "TXMON_" in str(err.value)


def test_retention_and_privacy_settings():
    defaults = Settings.from_env({})
    assert defaults.extra_fields == ()
    assert (
        defaults.raw_event_retention_days,
        defaults.quarantine_retention_days,
        defaults.duplicate_retention_days,
        defaults.batch_log_retention_days,
        defaults.dagster_retention_days,
    ) == (30, 90, 30, 30, 30)
    assert defaults.metadata_sample_size == 0
    s = Settings.from_env(
        {
            "TXMON_EXTRA_FIELDS": " channel, device ,channel,",
            "TXMON_RAW_EVENT_RETENTION_DAYS": "0",
            "TXMON_QUARANTINE_RETENTION_DAYS": "365",
            "TXMON_DUPLICATE_RETENTION_DAYS": "7",
            "TXMON_BATCH_LOG_RETENTION_DAYS": "14",
            "TXMON_METADATA_SAMPLE_SIZE": "5",
        }
    )
    assert s.extra_fields == ("channel", "device")
    assert (
        s.raw_event_retention_days,
        s.quarantine_retention_days,
        s.duplicate_retention_days,
        s.batch_log_retention_days,
        s.metadata_sample_size,
    ) == (0, 365, 7, 14, 5)
    assert s.info()["extra_fields"] == ("channel", "device")


def test_a_bad_retention_is_one_line_naming_the_variable():
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"TXMON_QUARANTINE_RETENTION_DAYS": "0"})
    assert str(err.value) == "TXMON_QUARANTINE_RETENTION_DAYS=0 is outside 1..3660"


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        '["s3cret-key"]',
        '{"s3cret-key": {"role": "admin", "regions": ["EU"]}}',
        '{"s3cret-key": {"role": "analyst", "regions": []}}',
        '{"s3cret-key": {"role": "analyst", "regions": ["MARS"]}}',
        '{"s3cret-key": {"role": "analyst"}}',
        '{"s3cret-key": {"role": "analyst", "regions": ["EU"], "admin": true}}',
        '{" s3cret-key": {"role": "analyst", "regions": ["EU"]}}',
    ],
)
def test_bad_api_keys_are_one_line_that_never_shows_a_key(value):
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"TXMON_API_KEYS": value})
    message = str(err.value)
    assert message.startswith("TXMON_API_KEYS") and "\n" not in message
    assert "s3cret" not in message


K1, K2 = "k1-" + "a" * 29, "k2-" + "b" * 29  # 32 characters, the shortest a key may be


def test_api_keys_give_each_key_its_role_and_regions():
    s = Settings.from_env(
        {
            "TXMON_API_KEYS": f'{{"{K1}": {{"role": "regulator", "regions": ["US", "EU"]}},'
            f' "{K2}": {{"role": "analyst", "regions": ["*"]}}}}'
        }
    )
    assert s.api_keys[K1].role == "regulator"
    assert s.api_keys[K1].region_list(s.regions) == ("EU", "US")  # in the configured order
    assert s.api_keys[K2].region_list(s.regions) == ("EU", "US", "APAC")
    assert K1 not in repr(s) and "api_keys" not in s.info()


@pytest.mark.parametrize("key", ["s3cret", "s3cret-" + "x" * 24])  # 6 and 31 characters
def test_a_short_api_key_is_refused_in_one_line_that_does_not_show_it(key):
    with pytest.raises(ConfigError) as err:
        Settings.from_env(
            {
                "TXMON_API_KEYS": f'{{"{K1}": {{"role": "analyst", "regions": ["*"]}}, "{key}": '
                '{"role": "analyst", "regions": ["*"]}}'
            }
        )
    assert str(err.value) == ("TXMON_API_KEYS: 1 key(s) shorter than 32 characters (`txmon api-key` makes one)")
    assert "s3cret" not in str(err.value)
