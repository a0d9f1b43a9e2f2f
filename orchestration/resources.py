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
from txmon.core.settings import ConfigError, Settings, replace


class TxmonResource(ConfigurableResource):
    """txmon's one settings object for assets and sensors: the process's TXMON_* variables, with
    ``overrides`` (TXMON_* variables the command that built the definitions was given as flags).

    Its configuration is shown in Dagster's UI, so it holds no URL and no secret: ``regional`` names the regions
    with a database of their own; their URLs come from this process's TXMON_REGION_DSNS, else (`txmon run
    --multi-region`, whose own process has no such variable) from the local cluster's layout."""

    overrides: dict[str, str] = {}
    regional: list[str] = []

    def settings(self) -> Settings:
        settings = Settings.from_env({**os.environ, **self.overrides}) if self.overrides else Settings.from_env()
        if not self.regional or sorted(settings.region_dsns) == sorted(self.regional):
            return settings
        if settings.region_dsns:
            raise ConfigError(
                f"TXMON_REGION_DSNS names the regions {sorted(settings.region_dsns)}; the definitions were built "
                f"for regional databases of {sorted(self.regional)}"
            )
        return replace(settings, region_dsns={region: settings.local_region_dsn(region) for region in self.regional})


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
