"""Prometheus and the PostgreSQL exporter from Debian's packages, started beside the local services
(`txmon services up --monitoring`, `make run`) with the scrape configuration of services/prometheus."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from txmon.core.processes import child_env, tail
from txmon.core.settings import REPO_ROOT, Role, Settings
from txmon.devtools.services.common import ServiceError, ServiceStatus, running_pid, stop_process

CONFIG_DIR = REPO_ROOT / "services" / "prometheus"
PROMETHEUS = "prometheus"
EXPORTER = "prometheus-postgres-exporter"
INGEST_METRICS_PORT = 9464  # what `txmon run` gives its ingest processes (TXMON_INGEST_METRICS_PORT)
PACKAGES = "Debian's packages prometheus and prometheus-postgres-exporter (scripts/bootstrap installs them)"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def targets(settings: Settings) -> dict[str, list[str]]:
    """Each scrape job's local targets (services/prometheus/prometheus.yml names the jobs)."""
    return {
        "txmon_api": [f"127.0.0.1:{settings.api_port}"],
        "txmon_ingest": [f"127.0.0.1:{settings.ingest_metrics_port or INGEST_METRICS_PORT}"],
        "postgres": [f"127.0.0.1:{settings.postgres_exporter_port}"],
        "prometheus": [f"127.0.0.1:{settings.prometheus_port}"],
    }


class Monitoring:
    """The two processes, their files under ``root`` (default <state dir>/prometheus), one pid file each."""

    def __init__(self, settings: Settings, root: Path | None = None) -> None:
        self.settings = settings
        self.root = root or settings.state_dir / "prometheus"
        self.config = self.root / "prometheus.yml"

    def _marker(self, name: str) -> str:
        """What the command line of our own ``name`` holds: Prometheus's names its folder; the exporter's, whose
        connection comes from its environment, only its listen address."""
        return f"127.0.0.1:{self.settings.postgres_exporter_port}" if name == "postgres-exporter" else str(self.root)

    def _pid(self, name: str) -> int | None:
        return running_pid(self.root / f"{name}.pid", self._marker(name))

    def _configure(self) -> None:
        """The repo's configuration and rules, and the targets of this machine's ports."""
        for part in ("prometheus.yml", "rules"):
            source, copy = CONFIG_DIR / part, self.root / part
            if source.is_dir():
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(source, copy)
            else:
                shutil.copyfile(source, copy)
        (self.root / "targets").mkdir(exist_ok=True)
        for job, where in targets(self.settings).items():
            (self.root / "targets" / f"{job}.json").write_text(json.dumps([{"targets": where}]) + "\n")

    def _exporter_env(self) -> dict[str, str]:
        """The exporter connects as txmon_exporter (pg_monitor), from that role's password file alone."""
        parts = conninfo_to_dict(self.settings.home_dsn(Role.EXPORTER))
        dsn = " ".join(f"{k}={parts[k]}" for k in ("host", "port", "user", "dbname") if k in parts)
        (self.root / "pgpass").unlink(missing_ok=True)  # where earlier versions kept a copy of it
        return child_env(
            base={},
            PATH=os.environ.get("PATH", "/usr/bin:/bin"),
            DATA_SOURCE_NAME=f"{dsn} sslmode=disable",
            PGPASSFILE=str(self.settings.passfile(Role.EXPORTER)),
        )

    def _start(self, name: str, argv: list[str], port: int, env: dict[str, str] | None = None) -> bool:
        """Start ``argv`` unless something listens on ``port`` already; whether it was started."""
        if _listening(port):
            return False
        binary = shutil.which(argv[0])
        if binary is None:
            raise ServiceError(f"{argv[0]} is not installed: install {PACKAGES}")
        log = self.root / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [binary, *argv[1:]],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env if env is not None else child_env(),
            )
        (self.root / f"{name}.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 60
        while not _listening(port):
            if proc.poll() is not None:
                raise ServiceError(f"{name} exited with code {proc.returncode}; log {log}: {tail(log)}")
            if time.monotonic() > deadline:
                raise ServiceError(f"{name} did not listen on port {port} in 60s; log {log}")
            time.sleep(0.3)
        return True

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._configure()
        s = self.settings
        self._start(
            "postgres-exporter",
            [EXPORTER, f"--web.listen-address=127.0.0.1:{s.postgres_exporter_port}"],
            s.postgres_exporter_port,
            self._exporter_env(),
        )
        started = self._start(
            "prometheus",
            [
                PROMETHEUS,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.root / 'data'}",
                "--storage.tsdb.retention.time=7d",
                f"--web.listen-address=127.0.0.1:{s.prometheus_port}",
                f"--web.console.templates={self.root / 'consoles'}",
                f"--web.console.libraries={self.root / 'console_libraries'}",
            ],
            s.prometheus_port,
        )
        if not started:
            self.reload()  # one that was running reads the configuration, rules and targets written above

    def reload(self) -> None:
        """Prometheus re-reads its configuration and rules (SIGHUP)."""
        pid = self._pid("prometheus")
        if pid is not None:
            os.kill(pid, signal.SIGHUP)

    def stop(self) -> None:
        for name in ("prometheus", "postgres-exporter"):
            stop_process(self.root / f"{name}.pid", self._marker(name), 30)

    def running(self) -> bool:
        return self._pid("prometheus") is not None

    def status(self) -> list[ServiceStatus]:
        s = self.settings
        return [
            ServiceStatus(
                "prometheus",
                _listening(s.prometheus_port),
                f"Prometheus at http://127.0.0.1:{s.prometheus_port} (config {self.config})",
            ),
            ServiceStatus(
                "exporter",
                _listening(s.postgres_exporter_port),
                f"PostgreSQL exporter at 127.0.0.1:{s.postgres_exporter_port}",
            ),
        ]
