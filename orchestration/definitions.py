"""The txmon code location: each domain folder builds its definitions from the settings; this file
only merges them. Loaded lazily (@definitions): importing it opens no connection and runs no dbt."""

from __future__ import annotations

from dagster import Definitions, definitions, in_process_executor

from orchestration.defs import dbt, ingestion, maintenance, quality
from orchestration.instance import flag_env, prepare
from orchestration.resources import TxmonResource, dbt_resource
from txmon.core.dbt import manifest
from txmon.core.paths import private_files
from txmon.core.settings import Settings


def build_definitions(settings: Settings) -> Definitions:
    """Every definition of the code location for these settings (the dbt manifest must be current)."""
    return Definitions.merge(
        ingestion.build(settings),
        dbt.build(settings, manifest()),
        maintenance.build(),
        quality.build(),
        # One process per run: a run's steps share the code location and dbt's parsed project.
        Definitions(
            resources={
                "txmon": TxmonResource(overrides=flag_env(settings), regional=sorted(settings.region_dsns)),
                "dbt": dbt_resource(settings),
            },
            executor=in_process_executor,
        ),
    )


@definitions
def defs() -> Definitions:
    private_files()  # a Dagster process not started by txmon: its compute logs and run folders are private too
    settings = Settings.from_env()
    prepare(settings)  # an up-to-date dbt manifest
    return build_definitions(settings)
