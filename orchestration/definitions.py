"""The txmon code location: each domain folder owns its definitions; this file only merges them."""

from __future__ import annotations

from dagster import Definitions

from orchestration.instance import prepare
from txmon.config import Settings

_settings = Settings.from_env()
prepare(_settings)  # dbt's connection variables and an up-to-date manifest, before the dbt assets load

from orchestration.defs import dbt, ingestion, maintenance, quality  # noqa: E402  (needs the manifest)
from orchestration.resources import TxmonResource, dbt_resource  # noqa: E402

defs = Definitions.merge(
    ingestion.defs,
    dbt.defs,
    maintenance.defs,
    quality.defs,
    Definitions(resources={"txmon": TxmonResource(), "dbt": dbt_resource()}),
)
