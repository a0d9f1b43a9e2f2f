"""Warehouse schema migrations: numbered SQL files, applied once each, in order.

Applied by `txmon migrate` and at start-up of `txmon services up` and the ingestion workers, to
every regional database. A file that changed after it was applied is an error, never re-run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from txmon.core import credentials
from txmon.core.db import connect
from txmon.core.settings import Role, Settings
from txmon.core.urls import where

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


def require_migrated(dsn: str) -> None:
    """Raise MigrationError unless the database has every migration (components by duty never migrate)."""
    latest = migrations()[-1].version
    try:
        with connect(dsn, autocommit=True, purpose="schema-check") as conn:
            current = conn.execute("SELECT max(version) FROM txmon.schema_migrations").fetchone()[0] or 0
    except psycopg.errors.UndefinedTable:
        current = 0
    if current < latest:
        raise MigrationError(
            f"{where(dsn)} is at migration {current:04d}, this txmon needs {latest:04d}: run `txmon migrate`"
        )


def scram_verifier(conn: psycopg.Connection, role: str, secret: str) -> str:
    """The SCRAM verifier of a password, computed here: the server (its log, pg_stat_activity) never
    sees the password itself."""
    return conn.pgconn.encrypt_password(secret.encode(), role.encode(), b"scram-sha-256").decode()


def set_role_passwords(settings: Settings, dsn: str) -> None:
    """Give each role by duty its login and password from the secrets on the server of ``dsn``.

    A role without a secret (bi_reader unless one is given) stays NOLOGIN.
    """
    with connect(dsn, purpose="migrate") as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))  # concurrent starters: one at a time
        for role in Role:
            if role is Role.ADMIN:
                continue
            secret = credentials.password(settings, role)
            statement = (
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                    sql.Identifier(role.value), sql.Literal(scram_verifier(conn, role.value, secret))
                )
                if secret
                else sql.SQL("ALTER ROLE {} WITH NOLOGIN PASSWORD NULL").format(sql.Identifier(role.value))
            )
            conn.execute(statement)


def close_maintenance_databases(dsn: str) -> None:
    """PUBLIC may not connect to the server's maintenance and template databases either (a role by
    duty could create temporary tables there). Skipped where the admin may not (a managed server)."""
    with connect(dsn, autocommit=True, purpose="migrate") as conn:
        present = [
            name
            for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname IN ('postgres', 'template1')")
        ]
        for name in present:
            try:
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
            except psycopg.errors.InsufficientPrivilege:
                pass


# Dagster's storage belongs to its role (Dagster creates and migrates its own tables in it); objects
# an earlier version created as the admin are handed over.
DAGSTER_OWNERSHIP = """
DO $$
DECLARE
    rel record;
BEGIN
    EXECUTE format('ALTER DATABASE %I OWNER TO txmon_dagster', current_database());
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO txmon_dagster', current_database());
    FOR rel IN
        SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'S')
          AND pg_get_userbyid(c.relowner) <> 'txmon_dagster'
          AND NOT (c.relkind = 'S'
                   AND EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER %s public.%I OWNER TO txmon_dagster',
                       CASE rel.relkind WHEN 'v' THEN 'VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, rel.relname);
    END LOOP;
END
$$;
"""


def prepare_dagster_database(settings: Settings) -> None:
    """Hand the Dagster database to txmon_dagster (when it exists: local services and compose create it)."""
    with connect(settings.dagster_admin_dsn, autocommit=True, purpose="migrate") as conn:
        conn.execute(DAGSTER_OWNERSHIP)


def migrate(settings: Settings) -> dict[str, list[str]]:
    """Apply pending migrations to every regional database, set the roles' passwords, prepare Dagster's database."""
    credentials.ensure(settings)
    applied = {}
    for dsn in settings.databases():
        applied[dsn] = migrate_database(dsn)
        set_role_passwords(settings, dsn)
        close_maintenance_databases(dsn)
    try:
        prepare_dagster_database(settings)
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    return applied
