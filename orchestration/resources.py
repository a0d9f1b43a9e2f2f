"""Resources injected into assets and sensors: txmon's settings, and dbt."""

from __future__ import annotations

import functools
import os

import psycopg
from dagster import ConfigurableResource, SkipReason
from dagster_dbt import DbtCliResource

from txmon.core.db import refused
from txmon.core.dbt import DBT_EXECUTABLE, DBT_PROJECT_DIR, profiles_dir
from txmon.core.errors import first_line
from txmon.core.settings import Settings


class TxmonResource(ConfigurableResource):
    """txmon's one settings object for assets and sensors: the process's TXMON_* variables, with
    ``overrides`` (TXMON_* variables the command that built the definitions was given as flags)."""

    overrides: dict[str, str] = {}

    def settings(self) -> Settings:
        return Settings.from_env({**os.environ, **self.overrides}) if self.overrides else Settings.from_env()


def dbt_resource(settings: Settings) -> DbtCliResource:
    return DbtCliResource(
        project_dir=str(DBT_PROJECT_DIR),
        profiles_dir=str(profiles_dir(settings)),
        dbt_executable=str(DBT_EXECUTABLE),
    )


def skip_while_unreachable(evaluate):
    """A sensor whose warehouse is away (restart, fail-over) skips its tick with the reason instead of
    failing it; the next tick retries. Positions and watermarks live in PostgreSQL, so nothing is lost."""

    @functools.wraps(evaluate)
    def wrapper(*args, **kwargs):
        try:
            return evaluate(*args, **kwargs)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if refused(exc):
                raise  # a wrong secret or a missing grant: the tick fails, red in the UI
            return SkipReason(f"PostgreSQL unreachable ({first_line(exc)}); the next tick retries")

    return wrapper
