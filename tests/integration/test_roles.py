"""Roles by duty: each connects with its own password, can do its job and nothing more; PUBLIC gets nothing."""

from __future__ import annotations

import stat

import psycopg
import pytest
from psycopg import errors

from txmon.core import credentials
from txmon.core.db import connect
from txmon.core.settings import Role, replace
from txmon.core.warehouse import set_role_passwords

DAY = "2026-11-24"


def as_role(platform, role: Role, dsn: str | None = None) -> psycopg.Connection:
    return connect(
        platform.settings.as_role(dsn or platform.settings.warehouse_dsn, role), autocommit=True, purpose="test"
    )


def refused(conn: psycopg.Connection, statement: str, error=errors.InsufficientPrivilege) -> None:
    with pytest.raises(error):
        conn.execute(statement)


def test_roles_by_duty_are_not_privileged_and_public_gets_nothing(platform):
    rows = platform.query(
        """SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin FROM pg_roles
           WHERE rolname = ANY(%s) ORDER BY rolname""",
        ([r.value for r in Role if r is not Role.ADMIN],),
    )
    assert {r[0] for r in rows} == {r.value for r in Role if r is not Role.ADMIN}
    bi_reader_login = credentials.password(platform.settings, Role.BI_READER) is not None
    for name, superuser, createrole, createdb, bypassrls, login in rows:
        assert not (superuser or createrole or createdb or bypassrls), name
        assert login == (name != "bi_reader" or bi_reader_login), f"{name}: login {login}"
    for dsn in (platform.settings.warehouse_dsn, platform.settings.dagster_admin_dsn):
        public = platform.query(
            """SELECT privilege_type FROM pg_database, aclexplode(coalesce(datacl, acldefault('d', datdba)))
               WHERE datname = current_database() AND grantee = 0""",
            dsn=dsn,
        )
        assert public == [], f"PUBLIC keeps {public} on {dsn}"
    assert platform.query(
        "SELECT has_schema_privilege('public', 'public', 'CREATE') OR has_schema_privilege('public', 'public', 'USAGE')"
    ) == [(False,)]


def test_ingest_lands_in_staging_and_nothing_else(platform):
    with as_role(platform, Role.INGEST) as conn:
        conn.execute("SELECT staging.ensure_transactions_partition(%s)", (DAY,))
        conn.execute(
            """INSERT INTO staging.transactions (transaction_id, status, event_time, account_id, amount, currency,
                   region, topic, "partition", "offset", raw_event)
               VALUES ('r-1', 'settled', %s, 'acc', 1, 'EUR', 'EU', 't', 0, 0, '{}')""",
            (f"{DAY}T10:00:00Z",),
        )
        conn.execute("""INSERT INTO staging.kafka_offsets (topic, "partition", next_offset) VALUES ('t', 0, 1)""")
        conn.execute("""UPDATE staging.kafka_offsets SET next_offset = 2 WHERE topic = 't'""")
        conn.execute("CREATE TEMP TABLE landing (x int)")
        for statement in (
            "DELETE FROM staging.transactions",
            "DELETE FROM staging.event_identities",
            "UPDATE staging.transactions SET amount = 2",
            "TRUNCATE staging.rejected_transactions",
            "CREATE TABLE staging.mine (x int)",
            "UPDATE staging.offset_audit SET verified_through = 0",
            "SELECT count(*) FROM reporting.publication_log",
            "CREATE SCHEMA mine",
            "CREATE TABLE public.mine (x int)",
        ):
            refused(conn, statement)


# What retention prunes: the audit evidence of the landing. The ingest role writes it and may never erase it.
PRUNED = {  # table -> its time column
    "staging.raw_events": "received_at",
    "staging.rejected_transactions": "received_at",
    "staging.duplicate_transactions": "received_at",
    "staging.ingest_batches": "committed_at",
}


@pytest.mark.parametrize("table", PRUNED)
def test_ingest_cannot_erase_audit_evidence(platform, table):
    with as_role(platform, Role.INGEST) as conn:
        conn.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 (constant table names)
        time = PRUNED[table]
        for statement in (  # constant table names
            f"DELETE FROM {table}",  # noqa: S608
            f"DELETE FROM {table} WHERE {time} < now() - interval '1 day'",  # noqa: S608
            f"TRUNCATE {table}",
            f"UPDATE {table} SET {time} = {time}",  # noqa: S608
        ):
            refused(conn, statement)
    has = platform.query(
        """SELECT p, has_table_privilege('txmon_ingest', %s, p) FROM unnest(ARRAY['DELETE', 'TRUNCATE', 'UPDATE']) AS p
           ORDER BY p""",
        (table,),
    )
    assert has == [("DELETE", False), ("TRUNCATE", False), ("UPDATE", False)]


def test_no_role_but_retention_deletes_in_staging(platform):
    deleters = platform.query(
        """SELECT DISTINCT r.rolname FROM pg_roles AS r, pg_tables AS t
           WHERE t.schemaname = 'staging' AND r.rolname LIKE ANY (ARRAY['txmon%%', 'bi_reader'])
             AND (has_table_privilege(r.oid, format('%%I.%%I', t.schemaname, t.tablename), 'DELETE')
                  OR has_table_privilege(r.oid, format('%%I.%%I', t.schemaname, t.tablename), 'TRUNCATE'))
             AND r.rolname <> %s""",
        (platform.settings.admin_user,),
    )
    assert deleters == [("txmon_retention",)]


def test_retention_deletes_what_it_prunes_and_nothing_else(platform):
    with as_role(platform, Role.RETENTION) as conn:
        for table in PRUNED:
            conn.execute(f"DELETE FROM {table} WHERE false")  # noqa: S608 (constant table names)
        conn.execute("SELECT count(*) FROM staging.offset_audit")
        for statement in (
            "DELETE FROM staging.transactions",
            "DELETE FROM staging.event_identities",
            "DELETE FROM staging.kafka_offsets",
            "DELETE FROM staging.offset_audit",
            "TRUNCATE staging.rejected_transactions",
            "UPDATE staging.ingest_batches SET landed = 0",
            """INSERT INTO staging.rejected_transactions (topic, "partition", "offset", raw_text, reason)
               VALUES ('t', 0, 0, 'x', 'x')""",
            "SELECT count(*) FROM staging.transactions",
            "SELECT count(*) FROM reporting.publication_log",
            "CREATE TEMP TABLE mine (x int)",
            "CREATE TABLE staging.mine (x int)",
        ):
            refused(conn, statement)


def test_transform_reads_staging_writes_its_schemas_only(platform):
    with as_role(platform, Role.TRANSFORM) as conn:
        conn.execute("SELECT count(*) FROM staging.transactions").fetchone()
        conn.execute("CREATE TABLE marts.role_probe (x int)")
        conn.execute("CREATE TABLE intermediate.role_probe (x int)")
        conn.execute("CREATE OR REPLACE VIEW stg.role_probe AS SELECT 1 AS x")
        conn.execute("""INSERT INTO staging.offset_audit (topic, "partition", verified_through) VALUES ('t', 0, 1)""")
        conn.execute("CREATE TEMP TABLE tmp (x int)")
        for statement in (
            """INSERT INTO staging.transactions (transaction_id, status, event_time, account_id, amount, currency,
                   region, topic, "partition", "offset", raw_event)
               VALUES ('r-2', 'settled', now(), 'acc', 1, 'EUR', 'EU', 't', 0, 1, '{}')""",
            "DELETE FROM staging.rejected_transactions",
            "SELECT count(*) FROM staging.raw_events",  # the verbatim messages, extra fields and all
            "UPDATE staging.kafka_offsets SET next_offset = 0",
            "CREATE TABLE reporting.mine (x int)",
            """INSERT INTO reporting.publication_log (table_name, partition_date, region, run_id, row_count, checks,
                   launched_by) VALUES ('x', now(), 'EU', 'r', 0, '{}', 'test')""",
            "DROP TABLE staging.transactions",
            "CREATE TABLE staging.transactions_20991231 (x int)",  # would stall ingestion's next day
            "CREATE FUNCTION staging.to_char(date, text) RETURNS text LANGUAGE sql AS 'SELECT 1::text'",
        ):
            refused(conn, statement)


def test_publish_reads_marts_writes_reporting_and_appends_to_the_log(platform):
    with as_role(platform, Role.TRANSFORM) as conn:
        conn.execute("CREATE TABLE marts.role_probe AS SELECT 1 AS x")
    with as_role(platform, Role.PUBLISH) as conn:
        conn.execute("CREATE TABLE reporting.role_probe AS SELECT * FROM marts.role_probe")
        conn.execute(
            """INSERT INTO reporting.publication_log (table_name, partition_date, region, run_id, row_count,
                            checks, launched_by) VALUES ('role_probe', %s, 'EU', 'r', 1, '{}', 'test')""",
            (DAY,),
        )
        assert conn.execute(
            "SELECT published_by FROM reporting.published_partitions WHERE table_name = 'role_probe'"
        ).fetchone() == ("txmon_publish",)
        for statement in (
            "SELECT count(*) FROM staging.transactions",
            "SELECT count(*) FROM staging.raw_events",
            "SELECT count(*) FROM intermediate.changed_slices",
            "INSERT INTO marts.role_probe VALUES (2)",
            "DELETE FROM reporting.publication_log",
            "UPDATE reporting.publication_log SET row_count = 0",
            "TRUNCATE reporting.publication_log",
        ):
            refused(conn, statement)
    # Append-only even for the admin: history is never rewritten.
    with pytest.raises(errors.RaiseException, match="append-only"):
        platform.execute("UPDATE reporting.publication_log SET row_count = 0")
    with pytest.raises(errors.RaiseException, match="append-only"):
        platform.execute("DELETE FROM reporting.publication_log")


def test_bi_reader_reads_reporting_only_and_cannot_write_even_after_turning_off_read_only(platform):
    settings = replace(platform.settings, bi_reader_password="bi-test-password")
    credentials.ensure(settings)
    set_role_passwords(settings, settings.warehouse_dsn)
    try:
        with as_role(platform, Role.TRANSFORM) as conn:
            conn.execute("CREATE TABLE marts.role_probe AS SELECT 1 AS x")
        with as_role(platform, Role.PUBLISH) as conn:
            conn.execute("CREATE TABLE reporting.role_probe AS SELECT * FROM marts.role_probe")
        with as_role(platform, Role.BI_READER) as conn:
            assert conn.execute("SELECT x FROM reporting.role_probe").fetchall() == [(1,)]
            conn.execute("SELECT count(*) FROM reporting.published_partitions")
            refused(conn, "INSERT INTO reporting.role_probe VALUES (2)", errors.ReadOnlySqlTransaction)
            conn.execute("SET default_transaction_read_only = off")  # allowed, and changes nothing:
            for statement in (
                "INSERT INTO reporting.role_probe VALUES (2)",
                "CREATE TEMP TABLE mine (x int)",
                "CREATE TABLE public.mine (x int)",
                "CREATE TABLE reporting.mine (x int)",
                "SELECT count(*) FROM marts.role_probe",
                "SELECT count(*) FROM staging.transactions",
                "SELECT count(*) FROM intermediate.slice_watermarks",
            ):
                refused(conn, statement)
    finally:
        credentials.ensure(platform.settings)
        set_role_passwords(platform.settings, platform.settings.warehouse_dsn)  # back to NOLOGIN
    restored = credentials.password(platform.settings, Role.BI_READER) is not None  # no password: no login
    assert platform.query("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'bi_reader'") == [(restored,)]


def test_dagster_owns_its_storage_and_cannot_reach_the_warehouse(platform):
    with connect(platform.settings.dagster_dsn, autocommit=True, purpose="test") as conn:
        conn.execute("CREATE TABLE role_probe (x int)")
        conn.execute("DROP TABLE role_probe")
    for role in (Role.DAGSTER,):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            as_role(platform, role)
    for role in (Role.INGEST, Role.TRANSFORM, Role.PUBLISH):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            connect(platform.settings.as_role(platform.settings.dagster_admin_dsn, role), purpose="test")


def test_wrong_password_is_refused(platform, tmp_path):
    passfile = tmp_path / "pgpass"
    passfile.write_text("*:*:*:txmon_ingest:not-the-password\n")
    passfile.chmod(0o600)
    dsn = platform.settings.as_role(platform.settings.warehouse_dsn, Role.INGEST).replace(
        str(platform.settings.passfile(Role.INGEST)), str(passfile)
    )
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(dsn, purpose="test")


def test_the_local_cluster_wants_a_password_and_keeps_its_files_private(platform):
    settings = platform.settings
    rules = {
        (kind, address, method)
        for kind, address, method in platform.query(
            "SELECT type, address, auth_method FROM pg_hba_file_rules WHERE error IS NULL"
        )
    }
    assert rules == {("local", None, "peer"), ("host", "127.0.0.1", "scram-sha-256"), ("host", "::1", "scram-sha-256")}
    settings_now = dict(
        platform.query(
            """SELECT name, setting FROM pg_settings WHERE name IN
           ('log_parameter_max_length', 'log_parameter_max_length_on_error', 'unix_socket_permissions')"""
        )
    )
    assert settings_now == {
        "log_parameter_max_length": "0",
        "log_parameter_max_length_on_error": "0",
        "unix_socket_permissions": "0700",
    }
    pg = settings.state_dir / "postgres"
    assert stat.S_IMODE((pg / "data").stat().st_mode) == 0o700
    assert stat.S_IMODE((pg / "run").stat().st_mode) == 0o700
    assert stat.S_IMODE((pg / "server.log").stat().st_mode) == 0o600
    kafka = settings.state_dir / "kafka"
    assert stat.S_IMODE((kafka / "data").stat().st_mode) == 0o700
    assert stat.S_IMODE((kafka / "server.log").stat().st_mode) == 0o600
    assert stat.S_IMODE((kafka / "server.properties").stat().st_mode) == 0o600  # the Kafka admin's password
    assert stat.S_IMODE(settings.state_dir.stat().st_mode) in (0o700, 0o711)
    # Without the passfile nobody gets in, the admin included.
    without = platform.settings.warehouse_dsn.split("?")[0]
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(without, passfile="/dev/null", connect_timeout=10)
