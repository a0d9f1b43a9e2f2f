"""Integration fixtures: the real services, and the local multi-region layout (EU and US in databases of
their own, APAC at home), as `txmon run --multi-region` sets it up."""

from __future__ import annotations

import json

import pytest
from psycopg import sql

from txmon.core.db import connect
from txmon.core.settings import Settings
from txmon.devtools.services.postgres import local_region_dsns

REGIONAL = ("EU", "US")  # each in a database of its own; APAC stays in the home database


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def regions(platform):
    """The platform with EU and US in regional databases (created by `txmon migrate`): the platform,
    the environment that says so, its settings, and each regional database's name."""
    dsns = local_region_dsns(platform.settings)
    assert sorted(dsns) == sorted(REGIONAL)
    databases = {region: f"{platform.settings.warehouse_db}_{region.lower()}" for region in REGIONAL}
    extra = {"TXMON_REGION_DSNS": json.dumps(dsns)}
    settings = Settings.from_env({**platform.env, **extra})
    yield platform, extra, settings, databases
    with connect(platform.settings.admin_dsn, autocommit=True, purpose="test") as conn:
        for db in databases.values():
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
