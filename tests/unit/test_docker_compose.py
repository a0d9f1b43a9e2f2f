"""docker-compose.yml stays in step with the local set-up (no Docker engine runs here to try it)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from txmon.cli import build_parser
from txmon.config import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_the_platform_is_all_there():
    assert {"postgres", "kafka", "setup", "ingest", "generator", "dagster-webserver", "dagster-daemon"} <= set(SERVICES)


def test_txmon_commands_are_real_subcommands():
    parser = build_parser()
    for service in SERVICES.values():
        command = service.get("command")
        if service.get("image") == "txmon:local" and command:
            parser.parse_args(command)  # raises on an unknown sub-command or flag
        entry = service.get("entrypoint")
        if entry and entry[0] == "bash":
            for part in entry[-1].split("&&"):
                words = shlex.split(part)
                if words[0] == "txmon":
                    parser.parse_args(words[1:])


def test_settings_in_compose_are_ones_txmon_reads():
    env = SERVICES["ingest"]["environment"]
    txmon_vars = {k: v for k, v in env.items() if k.startswith("TXMON_") and k != "TXMON_DAGSTER_STORAGE_URL"}
    settings = Settings.from_env({k: str(v) for k, v in txmon_vars.items()})  # raises on a bad value
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.warehouse_dsn.endswith("@postgres:5432/txmon")
    assert env["TXMON_DAGSTER_STORAGE_URL"].startswith("postgresql+psycopg2://")
    assert env["DAGSTER_HOME"] == f"{env['TXMON_STATE_DIR']}/dagster"
    source = (REPO / "txmon" / "config.py").read_text()
    for key in txmon_vars:
        assert f'"{key.removeprefix("TXMON_")}"' in source, f"{key} is not a setting"


def test_kafka_and_postgres_versions_match_the_local_ones():
    pom = (REPO / "services" / "kafka" / "pom.xml").read_text()
    kafka_version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{kafka_version}"
    assert SERVICES["postgres"]["image"].startswith("postgres:15")
