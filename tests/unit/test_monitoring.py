"""The monitoring files: alert rules pass their promtool tests, the Prometheus configuration is valid,
every dashboard loads and queries the provisioned data source, compose wires them up."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ingestion.metrics import reason_kind
from ingestion.validate import to_message, validator_for
from txmon.core.settings import Settings
from txmon.devtools.services.monitoring import CONFIG_DIR, targets

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "services" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
RULES = yaml.safe_load((CONFIG_DIR / "rules" / "txmon.yml").read_text())
ALERTS = {rule["alert"]: rule for group in RULES["groups"] for rule in group["rules"]}
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: scripts/bootstrap installs Debian's prometheus package"
    return subprocess.run([binary, *args], cwd=CONFIG_DIR, capture_output=True, text=True, timeout=120)


def test_alert_rules_pass_their_promtool_tests():
    proc = promtool("test", "rules", "tests/txmon.test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_fires_in_a_test_and_the_issue_s_alerts_are_there():
    tests = yaml.safe_load((CONFIG_DIR / "tests" / "txmon.test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert fired == set(ALERTS), f"alerts without a firing test: {set(ALERTS) - fired}"
    for name in (
        "TxmonConsumerLagGrowing",
        "TxmonLandingStalled",
        "TxmonQuarantineRateSpike",
        "TxmonBlockingCheckFailed",
        "TxmonPartitionNotPublished",
        "TxmonMartFreshnessBreached",
        "TxmonIngestDown",
    ):
        assert name in ALERTS
        assert {"summary", "description"} <= set(ALERTS[name]["annotations"])
        assert ALERTS[name]["labels"]["severity"] in ("page", "warn")


def test_the_prometheus_configuration_is_valid_and_scrapes_every_txmon_process():
    proc = promtool("check", "config", "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = yaml.safe_load((CONFIG_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == set(targets(Settings.from_env({})))
    for job in jobs:  # compose names a target for every job
        assert json.loads((CONFIG_DIR / "compose-targets" / f"{job}.json").read_text())[0]["targets"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboards_load_and_query_the_provisioned_prometheus(path):
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"].startswith("txmon-") and dashboard["panels"]
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_dashboards_cover_ingestion_marts_and_postgresql():
    exprs = " ".join(
        t["expr"] for path in DASHBOARDS for p in json.loads(path.read_text())["panels"] for t in p["targets"]
    )
    for metric in (
        "txmon_ingest_landed_events_total",
        "txmon_consumer_lag",
        "txmon_ingest_batch_duration_seconds_bucket",
        "txmon_mart_freshness_seconds",
        "txmon_failed_checks",
        "txmon_dagster_runs",
        "pg_stat_database_xact_commit",
    ):
        assert re.search(rf"\b{metric}\b", exprs), metric


def test_compose_provisions_prometheus_grafana_and_the_exporter():
    services = COMPOSE["services"]
    prometheus = services["prometheus"]
    assert prometheus["image"] == f"prom/prometheus:v{_debian_prometheus_version()}"  # the version tested here
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in prometheus["volumes"]}
    assert mounts["/etc/prometheus/targets"] == "./services/prometheus/compose-targets"
    for source in mounts.values():
        if source.startswith("./"):
            assert (REPO / source).exists(), source
    grafana = services["grafana"]
    assert "./services/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    for job in ("txmon_api", "txmon_ingest", "postgres", "prometheus"):
        for target in json.loads((CONFIG_DIR / "compose-targets" / f"{job}.json").read_text())[0]["targets"]:
            host = target.split(":")[0]
            service = re.sub(r"^txmon-(.+)-\d+$", r"\1", host)  # a replica's container name
            assert service in services, target


def _debian_prometheus_version() -> str:
    proc = promtool("--version")
    match = re.search(r"version (\d+\.\d+\.\d+)", proc.stdout + proc.stderr)
    return match.group(1) if match else "?"


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (b"not json", "not_json"),
        (b"[1, 2]", "not_an_object"),
        (None, "empty"),  # a tombstone
        (b'{"transaction_id": "t"}', "missing_field"),
        (
            b'{"transaction_id": "t", "account_id": "a", "amount": "x", "currency": "EUR", "region": "EU",'
            b' "status": "settled", "event_time": "2026-11-20T10:00:00Z"}',
            "amount",
        ),
        (
            b'{"transaction_id": "t", "account_id": "a", "amount": "1", "currency": "XXX", "region": "EU",'
            b' "status": "settled", "event_time": "2026-11-20T10:00:00Z"}',
            "currency",
        ),
        (
            b'{"transaction_id": "t", "account_id": "a", "amount": "1", "currency": "EUR", "region": "EU",'
            b' "status": "settled", "event_time": "yesterday"}',
            "event_time",
        ),
    ],
)
def test_quarantine_reasons_become_a_few_label_values(value, kind):
    """The validator's real reasons (free text quoting values) map to one word each, never the text."""
    message = to_message(validator_for(Settings.from_env({})), 0, 1, None, value, None)
    assert message.reason, value
    assert reason_kind(message.reason) == kind, message.reason
