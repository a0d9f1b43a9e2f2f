"""Resources injected into assets and sensors: txmon's settings, and dbt."""

from __future__ import annotations

import sys
from pathlib import Path

from dagster import ConfigurableResource
from dagster_dbt import DbtCliResource

from txmon.config import Settings
from txmon.dbt import DBT_PROJECT_DIR


class TxmonResource(ConfigurableResource):
    """txmon's one settings object (read from TXMON_* variables) for assets and sensors."""

    def settings(self) -> Settings:
        return Settings.from_env()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(
        project_dir=str(DBT_PROJECT_DIR),
        profiles_dir=str(DBT_PROJECT_DIR),
        dbt_executable=str(Path(sys.executable).with_name("dbt")),  # the virtualenv's own dbt
    )
