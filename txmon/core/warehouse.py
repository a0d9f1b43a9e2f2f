"""Warehouse schema migrations: numbered SQL files, applied once each, in order."""
# Applied by `txmon migrate` and at start-up of `txmon services up` and the ingestion workers, to every regional
# database. A file that changed after it was applied is an error, never re-run.

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

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


def identity(conn: psycopg.Connection) -> str:
    """What a database is, whatever the URL that reached it: its cluster's system identifier and its name."""
    row = conn.execute(
        "SELECT system_identifier::text || '/' || current_database() FROM pg_control_system()"
    ).fetchone()
    assert row is not None
    return str(row[0])


def one_url_each(identities: dict[str, str]) -> None:
    """Refuse two URLs of one database (e.g. 127.0.0.1 and localhost): their sinks would share one
    positions table and fence each other on every batch. ``identities``: URL -> ``identity``."""
    seen: dict[str, str] = {}
    for dsn, found in identities.items():
        if found in seen:
            raise MigrationError(
                f"{where(seen[found])} and {where(dsn)} are one database (cluster/name {found}): "
                "give it one URL in TXMON_WAREHOUSE_DSN / TXMON_REGION_DSNS"
            )
        seen[found] = dsn


def require_migrated(dsn: str) -> str:
    """Raise MigrationError unless the database has every migration (components by duty never migrate);
    returns its ``identity``."""
    latest = migrations()[-1].version
    with connect(dsn, autocommit=True, purpose="schema-check") as conn:
        found = identity(conn)
        try:
            row = conn.execute("SELECT max(version) FROM txmon.schema_migrations").fetchone()
            assert row is not None  # an aggregate: always one row
            current = row[0] or 0
        except psycopg.errors.UndefinedTable:
            current = 0
    if current < latest:
        raise MigrationError(
            f"{where(dsn)} is at migration {current:04d}, this txmon needs {latest:04d}: run `txmon migrate`"
        )
    return found


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


# The API's /metrics reads Dagster's runs, check executions and sensor ticks (not its event logs, whose
# metadata may name transactions); the tables exist once Dagster has opened its storage.
DAGSTER_MONITORED = ("runs", "asset_check_executions", "job_ticks")
DAGSTER_READS = """
DO $$
DECLARE
    name text;
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO txmon_api_monitor', current_database());
    GRANT USAGE ON SCHEMA public TO txmon_api_monitor;
    FOREACH name IN ARRAY {tables}::text[] LOOP
        IF to_regclass('public.' || name) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON public.%I TO txmon_api_monitor', name);
        END IF;
    END LOOP;
END
$$;
"""


def grant_dagster_reads(settings: Settings) -> None:
    """Let the API's monitoring role read the Dagster tables its metrics need, as their owner
    (txmon_dagster: `txmon dagster` and `dagster-setup` do it once Dagster has created them)."""
    with connect(settings.dagster_dsn, autocommit=True, purpose="grants") as conn:
        conn.execute(sql.SQL(DAGSTER_READS).format(tables=sql.Literal(list(DAGSTER_MONITORED))))


def prepare_dagster_database(settings: Settings) -> None:
    """Hand the Dagster database to txmon_dagster (when it exists: local services and compose create it)
    and let the API's monitoring role read the tables its metrics need (those that exist yet)."""
    with connect(settings.dagster_admin_dsn, autocommit=True, purpose="migrate") as conn:
        conn.execute(DAGSTER_OWNERSHIP)
    grant_dagster_reads(settings)


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _on_cluster(dsn: str, cluster_dsn: str) -> bool:
    """Whether ``dsn`` points at the server of ``cluster_dsn`` (loopback names count as one)."""
    a, b = conninfo_to_dict(dsn), conninfo_to_dict(cluster_dsn)
    hosts = {str(a.get("host", "localhost")), str(b.get("host", "localhost"))}
    same_host = len(hosts) == 1 or hosts <= LOOPBACK
    return same_host and str(a.get("port", 5432)) == str(b.get("port", 5432))


def create_local_databases(settings: Settings) -> None:
    """Create the regional databases (TXMON_REGION_DSNS) on the local cluster that do not exist yet;
    a database on another server must exist already."""
    wanted = {
        str(conninfo_to_dict(dsn).get("dbname", ""))
        for dsn in settings.databases()
        if _on_cluster(dsn, settings.admin_dsn)
    }
    with connect(settings.admin_dsn, autocommit=True, purpose="migrate") as conn:
        existing = {name for (name,) in conn.execute("SELECT datname FROM pg_database")}
        for name in sorted(wanted - existing - {""}):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def migrate(settings: Settings) -> dict[str, list[str]]:
    """Apply pending migrations to every regional database, set the roles' passwords, prepare Dagster's database."""
    credentials.ensure(settings)
    create_local_databases(settings)
    identities = {}
    for dsn in settings.databases():
        with connect(dsn, autocommit=True, purpose="migrate") as conn:
            identities[dsn] = identity(conn)
    one_url_each(identities)
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
