"""`txmon bench`: the benchmarks on the local services (their own database and topics), printed as a
table and written as JSON to bench/results."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import click

from bench.runner import SECTIONS, run_bench, table
from txmon.cli import EXIT_FAILURE
from txmon.cli.common import BadArgument, pass_settings
from txmon.cli.params import NON_NEGATIVE, POSITIVE, WHOLE, Checked
from txmon.core.settings import Settings
from txmon.devtools import services as local_services


def _sections(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [c for c in chosen if c not in SECTIONS]
    if unknown or not chosen:
        raise ValueError(f"{text!r}: choose from {','.join(SECTIONS)}")
    return chosen


@click.command("bench")
@click.option(
    "--sections",
    type=Checked("sections", _sections),
    default=SECTIONS,
    help=f"comma-separated: {','.join(SECTIONS)} (default: all)",
)
@click.option("--events", type=WHOLE, default=2_000_000, help="ingest: events preloaded on the topic")
@click.option("--naive-sample", type=WHOLE, default=20_000, help="ingest: messages for the naive consumer")
@click.option("--tps", type=POSITIVE, default=10_000.0, help="freshness: generator rate")
@click.option("--freshness-seconds", type=POSITIVE, default=120.0, help="freshness: measured window")
@click.option("--warmup-seconds", type=NON_NEGATIVE, default=30.0, help="freshness: generated before the window")
@click.option("--port", type=int, default=3011, help="freshness: the Dagster UI's port meanwhile")
@click.option("--late-events", type=WHOLE, default=60_000, help="late: events per closed day (over its 3 regions)")
@click.option("--settlement-events", type=WHOLE, default=10_000_000, help="settlement: one region-day")
@click.option(
    "--backfill-events", type=WHOLE, default=250_000, help="settlement: events per region-day of the 7-day backfill"
)
@click.option("--scaling-events", type=WHOLE, default=500_000, help="scaling: events per configuration")
@click.option("--api-rows", type=WHOLE, default=100_000, help="api: published suspicious rows of the day walked")
@click.option("--output", type=click.Path(path_type=Path), help="JSON file (default: bench/results/bench-<time>.json)")
@pass_settings
def bench(settings: Settings, **parameters) -> int:
    if not all(s.up for s in local_services.status(settings)):
        raise BadArgument("txmon bench: the services are not up; run `txmon services up` first")
    results = run_bench(SimpleNamespace(**parameters, argv=sys.argv[2:]))
    click.echo(table(results))
    click.echo(
        f"\n{results['machine']['cpu_cores']} cores, {results['machine']['memory_gib']} GiB; "
        f"{results['seconds']:.0f}s; figures in {results['output']}"
    )
    return EXIT_FAILURE if results.get("failed") else 0
