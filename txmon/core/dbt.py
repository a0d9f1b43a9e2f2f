"""How txmon runs dbt: the project, its connection and its vars, all from the one Settings object."""

from __future__ import annotations

import importlib
import json
import multiprocessing
import multiprocessing.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml
from psycopg.conninfo import conninfo_to_dict

from txmon.core import credentials
from txmon.core.db import connect
from txmon.core.errors import first_line
from txmon.core.processes import child_env
from txmon.core.settings import REPO_ROOT, Role, Settings

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DBT_EXECUTABLE = Path(sys.executable).with_name("dbt")  # the virtualenv's own dbt
MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
PARTITIONED = "tag:partitioned"


@dataclass(frozen=True)
class Table:
    """A region x day partitioned dbt model as the rest of txmon sees it: its relation and what its
    yml's `meta.txmon` declares (the one place a table's date column, checks and publication live)."""

    model: str  # the dbt model (fct_suspicious_activity)
    schema: str
    name: str  # the relation (marts.suspicious_activity)
    date_column: str
    published: bool
    open_day: bool  # refreshed while its day is still open (else once the day has closed)
    whole_database: bool  # advanced for its database as a whole before the slices (the transactions' state)
    checks: tuple[str, ...]  # txmon's own checks (txmon/quality/reconciliations.py), beyond the model's dbt tests

    @property
    def relation(self) -> str:
        return f"{self.schema}.{self.name}"


def txmon_meta(props: dict) -> dict:
    """A dbt node's `meta.txmon` (under config:, or at the top level of older yml)."""
    return (props.get("config") or {}).get("meta", {}).get("txmon") or (props.get("meta") or {}).get("txmon") or {}


def manifest() -> dict:
    return json.loads(MANIFEST.read_text())


def partitioned_tables(manifest: dict) -> list[Table]:
    """The partitioned models in build order (dbt's graph order: upstream first)."""
    nodes = [n for n in manifest["nodes"].values() if n["resource_type"] == "model" and "partitioned" in n["tags"]]
    order = {uid: i for i, uid in enumerate(_topological(manifest))}
    tables = []
    for node in sorted(nodes, key=lambda n: order[n["unique_id"]]):
        meta = txmon_meta(node)
        if "date_column" not in meta:
            raise ValueError(f"model {node['name']} has no meta.txmon.date_column in its yml")
        tables.append(
            Table(
                model=node["name"],
                schema=node["schema"],
                name=node.get("alias") or node["name"],
                date_column=meta["date_column"],
                published=bool(meta.get("published")),
                open_day=bool(meta.get("open_day")),
                whole_database=bool(meta.get("whole_database")),
                checks=tuple(meta.get("checks") or ()),
            )
        )
    return tables


def source_checks(manifest: dict) -> dict[tuple[str, str], tuple[str, ...]]:
    """(schema, table) -> the checks a source's `meta.txmon` declares (staging.transactions' suite...)."""
    return {
        (src["schema"], src["name"]): tuple(txmon_meta(src).get("checks") or ())
        for src in manifest["sources"].values()
        if txmon_meta(src).get("checks")
    }


def _topological(manifest: dict) -> list[str]:
    done, order = set(), []

    def visit(uid: str) -> None:
        if uid in done:
            return
        done.add(uid)
        for parent in manifest["parent_map"].get(uid, ()):
            visit(parent)
        order.append(uid)

    for uid in sorted(manifest["nodes"]):
        visit(uid)
    return order


HOME_TARGET = "warehouse"


def targets(settings: Settings) -> dict[str, str]:
    """dbt's target per database, as the transformation role: ``warehouse`` for the home database,
    ``regional_<regions>`` for each regional one (TXMON_REGION_DSNS). A region's models live in the
    database that holds its events."""
    found = {}
    for dsn, regions in settings.databases().items():
        name = HOME_TARGET if dsn == settings.warehouse_dsn else "regional_" + "_".join(regions).lower()
        found[re.sub(r"[^a-z0-9_]", "_", name)] = settings.as_role(dsn, Role.TRANSFORM)
    return found


def target_for(settings: Settings, region: str) -> str:
    """The dbt target of the database holding ``region``'s data."""
    dsn = settings.as_role(settings.dsn_for_region(region), Role.TRANSFORM)
    return next(name for name, target_dsn in targets(settings).items() if target_dsn == dsn)


def _output(settings: Settings, dsn: str) -> dict:
    parts = conninfo_to_dict(dsn)
    return {
        "type": "postgres",
        "host": str(parts.get("host", "127.0.0.1")),
        "port": int(str(parts.get("port", 5432))),
        "user": str(parts.get("user", "")),
        "password": credentials.password(settings, Role.TRANSFORM) or "",
        "dbname": str(parts.get("dbname", "")),
        "schema": "public",
        "threads": 2,
        "connect_timeout": 10,
        # TLS settings of the URL (the others a URL may carry do not reach dbt-postgres).
        **{key: str(parts[key]) for key in ("sslmode", "sslrootcert", "sslcert", "sslkey") if key in parts},
    }


def profiles_dir(settings: Settings) -> Path:
    """The directory of the profiles.yml txmon's own dbt runs use (the CLI's and in-process), written
    from the settings into the private state directory: one target per database (``targets``), as the
    transformation role, its password from the secrets. dbt reads no connection setting from the
    environment."""
    outputs = {name: _output(settings, dsn) for name, dsn in targets(settings).items()}
    profile = {"txmon": {"target": HOME_TARGET, "outputs": outputs}}
    text = "# Written by txmon from its settings (txmon/core/dbt.py); do not edit.\n" + yaml.safe_dump(profile)
    # One directory per home database: processes of different settings (tests, benchmarks, the
    # platform) sharing a state directory never read each other's profile.
    home = outputs[HOME_TARGET]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{home['dbname']}@{home['host']}_{home['port']}")
    credentials.private_dir(settings.state_dir / "dbt")
    directory = credentials.private_dir(settings.state_dir / "dbt" / name)
    path = directory / "profiles.yml"
    if not path.exists() or path.read_text() != text:
        credentials.write_private(path, text)
    return directory


def run_dbt(
    settings: Settings, args: list[str], *, capture: bool = False, target: str | None = None
) -> subprocess.CompletedProcess:
    """dbt on the project with txmon's connection (the one way txmon calls the dbt CLI itself); on the
    home database unless ``target`` names another (``targets``)."""
    return subprocess.run(
        [str(DBT_EXECUTABLE), *args, *(["--target", target] if target else [])],
        cwd=DBT_PROJECT_DIR,
        env=child_env(DBT_PROFILES_DIR=str(profiles_dir(settings))),  # no secret: its profile has its password
        capture_output=capture,
        text=True,
    )


SLICE_MODES = ("full", "new_data")
# The slice models that refresh per transaction in a new_data run (their watermarks live in the warehouse).
NEW_DATA_MODELS = ("suspicious_activity",)


def dbt_vars(
    settings: Settings,
    day: date | None = None,
    region: str | None = None,
    mode: str = "full",
    checked_since: datetime | None = None,
) -> dict:
    """The --vars of one run: the settings, and the region x day slice (how to rebuild it, and since
    when its rows were last checked and published) when given."""
    if mode not in SLICE_MODES:
        raise ValueError(f"slice mode {mode!r} is not one of {SLICE_MODES}")
    if (day is None) != (region is None):
        raise ValueError("a slice needs both a day and a region")
    if region is not None and region not in settings.regions:
        raise ValueError(f"region {region!r} is not one of {list(settings.regions)}")
    return {
        "partition_date": day.isoformat() if day else None,
        "partition_region": region,
        "slice_mode": mode,
        "checked_since": checked_since.isoformat() if checked_since else None,
        "suspicious_threshold_usd": str(settings.suspicious_threshold_usd),
        "suspicious_threshold_usd_by_region": {
            r: str(t) for r, t in sorted(settings.suspicious_threshold_usd_by_region.items())
        },
        "lifecycle_window_days": settings.lifecycle_window_days,
        # The AML typologies' parameters now, by region: the state's merge records a change (record_rule_parameters).
        "rules": {r: settings.rule_parameters(r).model_dump(mode="json") for r in settings.regions},
        "regions": list(settings.regions),
        "currencies": list(settings.currencies),
        "partitions_start_date": settings.partitions_start_date.isoformat(),
    }


def slice_processed_before(settings: Settings, day: date, region: str) -> bool:
    """Whether every incremental model has processed this slice before (a new_data run needs that)."""
    with connect(settings.dsn_for_region(region, Role.TRANSFORM), autocommit=True, purpose="dbt") as conn:
        row = conn.execute(
            "SELECT count(*) FROM intermediate.slice_watermarks WHERE slice_date = %s AND region = %s"
            " AND model = ANY(%s)",
            (day, region, list(NEW_DATA_MODELS)),
        ).fetchone()
    assert row is not None  # an aggregate: always one row
    return row[0] >= len(NEW_DATA_MODELS)


def vars_arg(variables: dict) -> list[str]:
    return ["--vars", json.dumps(variables, sort_keys=True)]


@dataclass(frozen=True)
class NodeResult:
    """One node of a dbt command (a model built, a test evaluated), as the refresh reads it."""

    unique_id: str
    status: str
    message: str
    seconds: float
    failures: int | None = None
    rows_affected: int | None = None


@dataclass(frozen=True)
class DbtOutcome:
    """What one dbt command did: its nodes' results, or (``results`` None) why it did not run them."""

    success: bool
    results: list[NodeResult] | None = None
    error: str | None = None

    @classmethod
    def of(cls, invoked: Any) -> DbtOutcome:
        """From dbt's dbtRunnerResult."""
        nodes = getattr(invoked.result, "results", None)
        error = first_line(invoked.exception) if invoked.exception else None
        if nodes is None:
            return cls(bool(invoked.success), None, error or "dbt returned no results")
        return cls(
            bool(invoked.success),
            [
                NodeResult(
                    unique_id=node.node.unique_id,
                    status=str(node.status),
                    message=str(node.message or ""),
                    seconds=round(float(node.execution_time or 0.0), 3),
                    failures=node.failures,
                    rows_affected=(node.adapter_response or {}).get("rows_affected"),
                )
                for node in nodes
            ],
            error,
        )


class Dbt(Protocol):
    """What runs txmon's dbt commands: InProcessDbt, or DbtWorkers (several side by side)."""

    def invoke(self, settings: Settings, args: list[str], *, target: str = HOME_TARGET) -> DbtOutcome: ...


class InProcessDbt:
    """dbt inside this process (dbtRunner), the project parsed once per database and the manifest reused.

    A command then costs about a second of dbt overhead instead of the CLI's start-up and the full
    re-parse that every change of --vars forces. Calls are serialised (dbt keeps global state), and
    write to their own target path so they never race the CLI runs' artifacts.
    """

    TARGET = DBT_PROJECT_DIR / "target" / "in_process"

    def __init__(self, target_path: Path = TARGET) -> None:
        self._target_path = target_path
        self._manifests: dict[tuple[str, str], Any] = {}  # (profiles dir, target) -> parsed manifest
        self._lock = threading.Lock()

    def _args(self, settings: Settings, args: list[str], target: str) -> list[str]:
        return [
            # Results are reported by the caller (txmon.quality.refresh): nothing on the console,
            # errors in the log file.
            *args,
            "--log-level",
            "none",
            "--log-level-file",
            "error",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(profiles_dir(settings)),
            "--target",
            target,
            "--target-path",
            str(self._target_path),
            "--log-path",
            str(self._target_path / "logs"),
        ]

    @staticmethod
    def _runner() -> Any:
        """dbt's runner class, loaded on first use: importing the code location must not load dbt
        (seconds of start-up for every process that only lists definitions). Typed Any: dbt's own
        types are not imported either."""
        return importlib.import_module("dbt.cli.main").dbtRunner

    def _parse(self, settings: Settings, target: str) -> Any:
        """The manifest for the target's database (its relations name that database)."""
        key = (str(profiles_dir(settings)), target)
        if key not in self._manifests:
            parsed = self._runner()().invoke(self._args(settings, ["parse"], target))
            if not parsed.success:
                raise RuntimeError(f"dbt parse failed: {parsed.exception}")
            self._manifests[key] = parsed.result
        return self._manifests[key]

    def invoke(self, settings: Settings, args: list[str], *, target: str = HOME_TARGET) -> DbtOutcome:
        """Run one dbt command on the target's database."""
        with self._lock:
            manifest = self._parse(settings, target)
            return DbtOutcome.of(self._runner()(manifest=manifest).invoke(self._args(settings, args, target)))


PARENT_POLL_SECONDS = 2.0
_WORKER_DBT: InProcessDbt | None = None  # in a DbtWorkers process: its dbt, the project parsed once


def _start_worker(slots: Any) -> None:
    """A DbtWorkers process: its own dbt, writing to its own target path (two parses must not share one); it ends
    when the process that started it has ended, however that ended (killed, its run terminated), and is not ended by
    a Ctrl-C meant for that process (the command it runs ends first)."""
    global _WORKER_DBT
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch_parent, name="txmon-dbt-parent", daemon=True).start()
    with slots.get_lock():
        slot, slots.value = slots.value, slots.value + 1
    _WORKER_DBT = InProcessDbt(InProcessDbt.TARGET / f"worker-{slot}")


def _invoke_in_worker(settings: Settings, args: list[str], target: str) -> DbtOutcome:
    assert _WORKER_DBT is not None, "run in a DbtWorkers process"
    return _WORKER_DBT.invoke(settings, args, target=target)


@dataclass
class DbtWorkers:
    """dbt in up to ``processes`` worker processes, each an InProcessDbt (the project parsed once per process):
    commands of different slices run side by side instead of taking turns in one process's dbt. Workers start on
    first use (importing the code location starts none) and end with this process."""

    processes: int = 2
    _pool: ProcessPoolExecutor | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def invoke(self, settings: Settings, args: list[str], *, target: str = HOME_TARGET) -> DbtOutcome:
        """Run one dbt command on the target's database in a free worker (waiting for one when all are busy)."""
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("spawn")  # no copy of this process's threads and connections
                slots = context.Value("i", 0)
                self._pool = ProcessPoolExecutor(
                    self.processes, mp_context=context, initializer=_start_worker, initargs=(slots,)
                )
                # A process started by multiprocessing (Dagster's run worker is one) joins its children when it ends,
                # before Python's exit hooks would shut an executor down: the workers are ended first, or it never
                # ends (nor does the code server waiting for it). Before the queues' own finalizers (priority 10),
                # which would stop the thread that sends the workers their signal to end.
                multiprocessing.util.Finalize(
                    self._pool, self._pool.shutdown, kwargs={"cancel_futures": True}, exitpriority=100
                )
            pool = self._pool
        try:
            return pool.submit(_invoke_in_worker, settings, args, target).result()
        except BrokenProcessPool as exc:  # a worker died (killed, out of memory): the next command starts afresh
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            return DbtOutcome(False, None, f"dbt worker process ended: {exc}")
