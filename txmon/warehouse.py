"""Warehouse schema migrations: numbered SQL files, applied once each, in order.

Applied by `txmon migrate` and at start-up of `txmon services up` and the ingestion workers, to
every regional database. A file that changed after it was applied is an error, never re-run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from txmon.config import Settings
from txmon.db import connect

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
LOCK_KEY = 0x7478_6D6F_6E  # "txmon"


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        number, _, name = path.stem.partition("_")
        found.append(Migration(int(number), name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number in {MIGRATIONS_DIR}")
    return found


def migrate_database(dsn: str) -> list[str]:
    """Apply pending migrations to one database; returns the names applied."""
    applied_now = []
    with connect(dsn, purpose="migrate") as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS txmon")
        conn.execute(
            """CREATE TABLE IF NOT EXISTS txmon.schema_migrations (
                   version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {v: c for v, c in conn.execute("SELECT version, checksum FROM txmon.schema_migrations")}
        for m in migrations():
            if m.version in done:
                if done[m.version] != m.checksum:
                    raise MigrationError(
                        f"migration {m.version:04d}_{m.name} changed after it was applied; add a new one instead"
                    )
                continue
            conn.execute(m.sql)
            conn.execute(
                "INSERT INTO txmon.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (m.version, m.name, m.checksum),
            )
            applied_now.append(f"{m.version:04d}_{m.name}")
    return applied_now


def migrate(settings: Settings) -> dict[str, list[str]]:
    """Apply pending migrations to every regional database, then give bi_reader its password."""
    applied = {dsn: migrate_database(dsn) for dsn in settings.databases()}
    if settings.bi_reader_password:
        with connect(settings.warehouse_dsn, purpose="migrate") as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))  # concurrent starters: one at a time
            conn.execute(
                sql.SQL("ALTER ROLE bi_reader WITH LOGIN PASSWORD {}").format(sql.Literal(settings.bi_reader_password))
            )
    return applied
