"""Shared fixtures. Integration tests run against the real local PostgreSQL and Kafka."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from txmon.core.paths import private_files
from txmon.core.settings import Settings, replace

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config) -> None:
    """The tests run txmon's code in this process too (services, Dagster instances): with the umask txmon's entry
    points set, so what they write in the state directory is as private as what txmon writes."""
    private_files()


@dataclass
class Platform:
    """An isolated slice of the running services: its own topic pair and warehouse database."""

    settings: Settings
    env: dict[str, str]

    def txmon(
        self, *args: str, check: bool = True, timeout: float = 600, env_extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "txmon.cli", *args],
            env={**self.env, **(env_extra or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"txmon {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc

    def popen(self, *args: str, env_extra: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        env = {**self.env, **(env_extra or {})}
        return subprocess.Popen([sys.executable, "-m", "txmon.cli", *args], env=env, cwd=REPO, **kwargs)

    def query(self, sql: str, params=(), dsn: str | None = None) -> list[tuple]:
        from txmon.core.db import connect

        with connect(dsn or self.settings.warehouse_dsn, autocommit=True, purpose="test") as conn:
            return conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params=(), dsn: str | None = None) -> None:
        """A statement without a result (INSERT, UPDATE, DDL), committed."""
        from txmon.core.db import connect

        with connect(dsn or self.settings.warehouse_dsn, autocommit=True, purpose="test") as conn:
            conn.execute(sql, params)

    def query_dagster(self, sql: str, params=()) -> list[tuple]:
        return self.query(sql, params, dsn=self.settings.dagster_dsn)


# The tests' own Dagster storage: their runs and their deliberately failed checks never appear in
# the UI of the user's instance (the `dagster` database).
TEST_DAGSTER_DB = "dagster_tests"


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    from psycopg import sql

    from txmon.core.db import connect
    from txmon.devtools import services

    settings = Settings.from_env()
    services.up(settings)  # idempotent: a no-op when `make test` already started them
    with connect(settings.admin_dsn, autocommit=True, purpose="test") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEST_DAGSTER_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEST_DAGSTER_DB)))
    return replace(settings, dagster_db=TEST_DAGSTER_DB)


@contextmanager
def isolated_platform(base_settings: Settings) -> Iterator[Platform]:
    """A platform of its own: a migrated warehouse database and a topic pair, dropped afterwards."""
    from psycopg import sql

    from txmon.core.db import connect
    from txmon.core.warehouse import migrate
    from txmon.devtools.services.kafka import Kafka

    name = f"test_{uuid.uuid4().hex[:12]}"
    reports = base_settings.state_dir / "test-reports" / name  # its report packages, removed afterwards
    settings = replace(
        base_settings,
        topic=f"{name}.transactions",
        quarantine_topic=f"{name}.quarantine",
        warehouse_db=name,
        reports_dir_override=reports,
    )
    with connect(base_settings.admin_dsn, autocommit=True, purpose="test") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(settings)
    Kafka(settings).ensure_topics()
    env = {
        **os.environ,
        "TXMON_TOPIC": settings.topic,
        "TXMON_QUARANTINE_TOPIC": settings.quarantine_topic,
        "TXMON_WAREHOUSE_DB": name,
        "TXMON_DAGSTER_DB": settings.dagster_db,
        "TXMON_REPORTS_DIR": str(reports),
    }
    yield Platform(settings, env)
    shutil.rmtree(reports, ignore_errors=True)
    with connect(base_settings.admin_dsn, autocommit=True, purpose="test") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    Kafka(settings).delete_topics()  # and the users' ACLs on them


@pytest.fixture
def platform(base_settings: Settings) -> Iterator[Platform]:
    with isolated_platform(base_settings) as each:
        yield each


@pytest.fixture(scope="module")
def module_platform(base_settings: Settings) -> Iterator[Platform]:
    """One platform for every test of a module (tests that only read what its fixture set up)."""
    with isolated_platform(base_settings) as each:
        yield each
