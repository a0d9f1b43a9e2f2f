"""The project's own PostgreSQL cluster, from Debian's packages."""
# The cluster lives in ``<state_dir>/postgres`` (not the machine's default cluster) and listens on 127.0.0.1 at the
# configured port. The server refuses to run as root, so when txmon runs as root the cluster belongs to the ``postgres``
# user that Debian's package creates.
#
# What it trusts: TCP connections from this machine only, each with a password (SCRAM); the unix socket (directory 0700)
# only for the operating-system users mapped to the admin role (peer: the server's own user and the one running txmon),
# which is how the admin password is set from the secrets. The data directory and the server log are readable by the
# server's user alone, and bind parameters (account identifiers, amounts) never reach the log.

from __future__ import annotations

import getpass
import glob
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from txmon.core import credentials
from txmon.core.db import connect
from txmon.core.processes import child_env, tail
from txmon.core.settings import Role, Settings
from txmon.core.warehouse import scram_verifier
from txmon.devtools.services.common import ServiceError, ServiceStatus

SERVER_CONF = """\
# Written by txmon; edit the settings in txmon/devtools/services/postgres.py instead.
listen_addresses = '{host}'
port = {port}
unix_socket_directories = '{run_dir}'
unix_socket_permissions = 0700
max_connections = 200
shared_buffers = 1GB
work_mem = 32MB
maintenance_work_mem = 256MB
max_wal_size = 8GB
min_wal_size = 1GB
checkpoint_timeout = 15min
wal_compression = lz4
wal_buffers = 64MB
timezone = 'UTC'
log_timezone = 'UTC'
log_min_duration_statement = 5000
# Slow statements are logged without their bind parameters (account identifiers, amounts).
log_parameter_max_length = 0
log_parameter_max_length_on_error = 0
# Short analytical queries on 2 cores: JIT compilation costs more than it saves.
jit = off
"""


# Rewritten at every start, so an older cluster initialised with `trust` is brought to this.
HBA_CONF = """\
# Written by txmon; edit txmon/devtools/services/postgres.py instead.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  peer map=txmon
host    all       all   127.0.0.1/32   scram-sha-256
host    all       all   ::1/128        scram-sha-256
"""


def _bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise ServiceError(
            "PostgreSQL server binaries not found: install Debian's package `postgresql` (scripts/bootstrap does this)"
        )
    return Path(candidates[-1]).parent


def _owner() -> str | None:
    """The user the server runs as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceError("running as root needs the `postgres` user: install Debian's package `postgresql`") from None
    return "postgres"


class Postgres:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.state_dir / "postgres"
        self.data = self.root / "data"
        self.run_dir = self.root / "run"
        self.log = self.root / "server.log"

    # -------------------------------------------------------------- helpers
    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        owner = _owner()
        cmd = ["runuser", "-u", owner, "--", *argv] if owner else list(argv)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
        if check and proc.returncode != 0:
            raise ServiceError(f"{Path(argv[0]).name} failed: {(proc.stderr or proc.stdout).strip()}")
        return proc

    def _chown(self, path: Path) -> None:
        owner = _owner()
        if owner:
            shutil.chown(path, owner, owner)

    @property
    def _local(self) -> bool:
        """Only a cluster on this machine is ours to start and stop."""
        return self.settings.warehouse_dsn_override is None

    # -------------------------------------------------------------- lifecycle
    def _private(self) -> None:
        """The cluster's directories 0700 and its log 0600, owned by the server's user."""
        for path in (self.root, self.run_dir):
            path.mkdir(parents=True, exist_ok=True)
            self._chown(path)
            path.chmod(0o700)
        self.log.touch()
        self._chown(self.log)
        self.log.chmod(0o600)

    def _write_config(self) -> bool:
        """txmon.conf, pg_hba.conf and pg_ident.conf as txmon wants them; True when one changed."""
        users = sorted({_owner() or getpass.getuser(), getpass.getuser()})
        ident = "# Written by txmon: the operating-system users that may connect as the admin role.\n" + "".join(
            f"txmon  {user}  {self.settings.pg_user}\n" for user in users
        )
        conf = SERVER_CONF.format(host=self.settings.pg_host, port=self.settings.pg_port, run_dir=self.run_dir)
        changed = False
        for name, text in (("pg_hba.conf", HBA_CONF), ("pg_ident.conf", ident), ("txmon.conf", conf)):
            path = self.data / name
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                self._chown(path)
                path.chmod(0o600)
                changed = True
        return changed

    def sync_admin_password(self) -> None:
        """Set the admin role's password from the secrets, over the peer-authenticated socket."""
        secret = credentials.password(self.settings, Role.ADMIN)
        socket = make_conninfo(
            host=str(self.run_dir), port=self.settings.pg_port, user=self.settings.pg_user, dbname="postgres"
        )
        with connect(socket, autocommit=True, purpose="services") as conn:
            verifier = scram_verifier(conn, self.settings.pg_user, secret)
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                    sql.Identifier(self.settings.pg_user), sql.Literal(verifier)
                )
            )

    def init(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        bin_dir = _bin_dir()
        self._private()
        pwfile = self.root / "initdb.pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(credentials.password(self.settings, Role.ADMIN) + "\n")
        self._chown(pwfile)
        try:
            self._run(
                str(bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.settings.pg_user,
                f"--pwfile={pwfile}",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write("\ninclude 'txmon.conf'\n")

    def running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        return self._run(str(_bin_dir() / "pg_ctl"), "status", "-D", str(self.data), check=False).returncode == 0

    def start(self) -> None:
        if not self._local:
            return
        self.init()
        self._private()
        changed = self._write_config()
        if self.running():
            if changed:
                self._run(str(_bin_dir() / "pg_ctl"), "reload", "-D", str(self.data))
        else:
            proc = self._run(
                str(_bin_dir() / "pg_ctl"),
                "start",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "60",
                check=False,
            )
            if proc.returncode != 0:
                raise ServiceError(
                    f"PostgreSQL did not start on port {self.settings.pg_port}; log {self.log}: {tail(self.log)}"
                )
        self.sync_admin_password()
        self.wait_ready()
        self.create_databases()

    def stop(self) -> None:
        if self._local and self.running():
            self._run(str(_bin_dir() / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with connect(self.settings.admin_dsn, autocommit=True, purpose="services"):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"PostgreSQL is not answering at {self.settings.pg_host}:"
                        f"{self.settings.pg_port}: {str(exc).strip()}"
                    ) from None
                time.sleep(0.3)

    def create_databases(self) -> None:
        with connect(self.settings.admin_dsn, autocommit=True, purpose="services") as conn:
            existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            for name in (self.settings.warehouse_db, self.settings.dagster_db):
                if name not in existing:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def status(self) -> ServiceStatus:
        where = f"{self.settings.pg_host}:{self.settings.pg_port}"
        try:
            with connect(self.settings.warehouse_dsn, autocommit=True, purpose="services") as conn:
                version = conn.execute("SHOW server_version").fetchone()[0]
            return ServiceStatus("postgres", True, f"PostgreSQL {version} at {where}, data {self.data}")
        except psycopg.OperationalError as exc:
            return ServiceStatus("postgres", False, f"not answering at {where}: {str(exc).strip().splitlines()[0]}")


def local_region_dsns(settings: Settings) -> dict[str, str]:
    """A local multi-region layout (`txmon run --multi-region`): every region but the last in a database
    of its own on the local cluster, named after the warehouse (txmon_eu, txmon_us); the last at home."""
    return {region: settings.local_region_dsn(region) for region in settings.regions[:-1]}
