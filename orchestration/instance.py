"""Dagster's home, instance and dbt manifest, prepared the same way for the CLI, the UI and tests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from dagster import DagsterInstance

from txmon.core.dbt import DBT_PROJECT_DIR, MANIFEST, run_dbt
from txmon.core.settings import REPO_ROOT, Settings

DAGSTER_YAML = REPO_ROOT / "orchestration" / "dagster.yaml"


class OrchestrationError(RuntimeError):
    pass


def dagster_env(settings: Settings) -> dict[str, str]:
    """DAGSTER_HOME (``Settings.dagster_home``) for the environment of Dagster's processes."""
    return {"DAGSTER_HOME": str(settings.dagster_home)}


def flag_env(settings: Settings) -> dict[str, str]:
    """The settings a command may take as flags (`txmon run --worker`), as the TXMON_* variables that hand them to
    Dagster's processes and resource (whose configuration the UI shows: nothing secret, no database URL)."""
    return {
        "TXMON_INGEST_MODE": settings.ingest_mode,
        "TXMON_INGEST_METRICS_PORT": str(settings.ingest_metrics_port),
    }


def region_env(settings: Settings) -> dict[str, str]:
    """The regional databases (`txmon run --multi-region`) for the environment of Dagster's processes, never for
    its configuration: the resource names the regions (``TxmonResource.regional``), each process reads their URLs."""
    return {"TXMON_REGION_DSNS": json.dumps(settings.region_dsns)} if settings.region_dsns else {}


def storage_url(settings: Settings) -> str:
    """Dagster's storage as its own role; no password in it (libpq reads the passfile it names)."""
    # dagster-postgres speaks psycopg2; SQLAlchemy 2.1 would pick psycopg 3 for a plain postgresql:// URL.
    return settings.dagster_dsn.replace("postgresql://", "postgresql+psycopg2://", 1)


def dagster_home(settings: Settings) -> Path:
    """Lay out DAGSTER_HOME: the repo's dagster.yaml with the storage URL filled in. Processes started
    for it get DAGSTER_HOME in their environment (``dagster_env``); this one opens it (``open_instance``)."""
    env = dagster_env(settings)
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(DAGSTER_YAML.read_text())
    config["storage"]["postgres"]["postgres_url"] = storage_url(settings)
    text = f"# Written by txmon from {DAGSTER_YAML.relative_to(REPO_ROOT)}; edit that file instead.\n"
    (home / "dagster.yaml").write_text(text + yaml.safe_dump(config, sort_keys=False))
    return home


def open_instance(settings: Settings) -> DagsterInstance:
    """The Dagster instance of these settings (the one the UI shows), its home laid out first."""
    return DagsterInstance.from_config(str(dagster_home(settings)))


def _manifest_stale() -> bool:
    if not MANIFEST.exists():
        return True
    built = MANIFEST.stat().st_mtime
    sources = [p for d in ("models", "macros", "seeds", "tests") for p in (DBT_PROJECT_DIR / d).rglob("*")]
    sources += [DBT_PROJECT_DIR / "dbt_project.yml", DBT_PROJECT_DIR / "profiles.yml"]
    return any(p.is_file() and p.stat().st_mtime > built for p in sources)


def prepare(settings: Settings) -> None:
    """`dbt parse` when the manifest is missing or older than the project."""
    if not _manifest_stale():
        return
    proc = run_dbt(settings, ["parse", "--quiet"], capture=True)
    if proc.returncode != 0:
        raise OrchestrationError(f"dbt parse failed: {(proc.stdout + proc.stderr).strip()[-500:]}")
