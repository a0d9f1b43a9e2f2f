"""`txmon backtest`: the suspicious-activity rules replayed over landed history with other parameters, to tune them
before changing them. The rules are dbt's own (dbt_project/analyses/backtest.sql compiles the macros the marts use);
each region's history is read in its own database, as the transformation role, in a read-only transaction."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from txmon.core.db import connect
from txmon.core.dbt import dbt_vars, run_dbt, target_for
from txmon.core.errors import first_line
from txmon.core.settings import ConfigError, Role, Settings, replace

ANALYSIS = "backtest"


@dataclass(frozen=True)
class Flagged:
    """How many transactions and accounts one reason flags on one region-day."""

    day: date
    region: str
    reason: str
    transactions: int
    accounts: int


def parameters(settings: Settings, given: dict[str, Any] | None, regions: tuple[str, ...]) -> dict | None:
    """The parameters to judge ``regions`` by: ``given`` (TXMON_RULES' shape) over the configured ones, per region;
    None without ``given`` (the versions recorded for the marts). ConfigError names a bad entry."""
    if given is None:
        return None
    if not isinstance(given, dict) or not all(isinstance(v, dict) for v in given.values()):
        raise ConfigError('--rules must be a JSON object like {"*": {"velocity_max_transactions": 30}, "EU": {...}}')
    merged = {key: {**settings.rules.get(key, {}), **given.get(key, {})} for key in {*settings.rules, *given}}
    try:
        judged = replace(settings, rules=merged)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("TXMON_RULES", "--rules")) from None
    return {region: judged.rule_parameters(region).model_dump(mode="json") for region in regions}


def backtest(
    settings: Settings, first: date, last: date, region: str | None = None, judged_by: dict | None = None
) -> list[Flagged]:
    """Per day, region and reason, what the rules would flag in the landed history of ``first``..``last`` (of
    ``region``, else every region), judged by ``judged_by`` (``parameters``' answer; None: those recorded)."""
    regions = (region,) if region else settings.regions
    found: list[Flagged] = []
    for dsn, held in settings.databases().items():
        mine = tuple(r for r in held if r in regions)
        if not mine:
            continue
        variables = {
            **dbt_vars(settings),
            "backtest_from": first.isoformat(),
            "backtest_to": last.isoformat(),
            "backtest_region": mine[0] if len(mine) == 1 else None,
            "rules_override": judged_by,
        }
        query = _compiled(settings, variables, target_for(settings, mine[0]))
        with connect(settings.as_role(dsn, Role.TRANSFORM), purpose="backtest") as conn:
            conn.execute("SET TRANSACTION READ ONLY")
            rows = conn.execute(query).fetchall()
            conn.rollback()
        found += [Flagged(*row) for row in rows if row[1] in mine]
    return sorted(found, key=lambda f: (f.day, f.region, f.reason))


def _compiled(settings: Settings, variables: dict, target: str) -> str:
    """The analysis compiled for one database, in a target folder of its own (the project's manifest, which the live
    platform reads, is left alone)."""
    with tempfile.TemporaryDirectory(dir=settings.state_dir / "dbt", prefix="backtest-") as folder:
        proc = run_dbt(
            settings,
            ["compile", "--select", ANALYSIS, "--vars", json.dumps(variables), "--target-path", folder, "--quiet"],
            capture=True,
            target=target,
        )
        compiled = next(Path(folder).glob(f"compiled/*/analyses/{ANALYSIS}.sql"), None)
        if proc.returncode != 0 or compiled is None:
            raise RuntimeError(f"dbt could not compile the backtest: {first_line(proc.stdout + proc.stderr, '?')}")
        return compiled.read_text()
