"""Resources injected into assets and sensors: txmon's settings, and dbt."""

from __future__ import annotations

from dagster import ConfigurableResource
from dagster_dbt import DbtCliResource

from txmon.config import Settings
from txmon.dbt import DBT_EXECUTABLE, DBT_PROJECT_DIR


class TxmonResource(ConfigurableResource):
    """txmon's one settings object (read from TXMON_* variables) for assets and sensors."""

    def settings(self) -> Settings:
        return Settings.from_env()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(
        project_dir=str(DBT_PROJECT_DIR),
        profiles_dir=str(DBT_PROJECT_DIR),
        dbt_executable=str(DBT_EXECUTABLE),
    )
