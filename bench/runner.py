"""`txmon bench`: run the sections, print one table, write the same figures to a JSON file."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import api, freshness, ingest, scaling, settlement
from bench.common import RESULTS_DIR, BenchError, bench_env, bench_settings, machine
from txmon.core.progress import Progress

SECTIONS = ("ingest", "freshness", "late", "settlement", "scaling", "api")


def _get(results: dict, path: str):
    value = results
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


# (label, path in the results, target, higher is better)
ROWS = [
    ("ingest: txmon events/s", "ingest.txmon.events_per_second", 50_000, True),
    ("ingest: COPY limit rows/s", "ingest.copy_limit.rows_per_second", None, True),
    ("ingest: naive INSERT+commit events/s", "ingest.naive.events_per_second", None, True),
    ("ingest: txmon / COPY limit", "ingest.ratio_to_copy_limit", 0.5, True),
    ("ingest: txmon / naive", "ingest.ratio_to_naive", None, True),
    ("ingest: peak RSS per process (MiB)", "ingest.txmon.peak_rss_mib", None, False),
    *[
        row
        for mode, landing_target in (("sensor", 5.0), ("worker", 1.0))
        for row in (
            (f"freshness {mode}: landing p50 (s)", f"freshness.{mode}.landing_seconds.p50", None, False),
            (f"freshness {mode}: landing p95 (s)", f"freshness.{mode}.landing_seconds.p95", None, False),
            (f"freshness {mode}: landing p99 (s)", f"freshness.{mode}.landing_seconds.p99", landing_target, False),
            (f"freshness {mode}: landing max (s)", f"freshness.{mode}.landing_seconds.max", None, False),
            (f"freshness {mode}: published p50 (s)", f"freshness.{mode}.suspicious_seconds.p50", None, False),
            (f"freshness {mode}: published p95 (s)", f"freshness.{mode}.suspicious_seconds.p95", 30.0, False),
            (f"freshness {mode}: published n", f"freshness.{mode}.suspicious_seconds.n", None, True),
            (f"freshness {mode}: never published", f"freshness.{mode}.suspicious_seconds.not_seen", 0, False),
            (f"freshness {mode}: published max (s)", f"freshness.{mode}.suspicious_seconds.max", None, False),
            (f"freshness {mode}: max consumer lag", f"freshness.{mode}.lag_max", None, False),
        )
    ],
    ("settlement: region-day events", "settlement.region_day.events", None, True),
    ("settlement: mart only (s)", "settlement.region_day.mart_seconds", None, False),
    ("settlement: mart + checks (s)", "settlement.region_day.materialize_with_checks_seconds", 60.0, False),
    ("settlement: backfill partitions", "settlement.backfill.partitions", None, True),
    ("settlement: backfill events", "settlement.backfill.events", None, True),
    ("settlement: backfill (s)", "settlement.backfill.seconds", 120.0, False),
    ("late data: region-days", "late.region_days", None, True),
    ("late data: events", "late.events", None, True),
    ("late data: landed -> published p50 (s)", "late.seconds_landed_to_published.p50", None, False),
    ("late data: landed -> published max (s)", "late.seconds_landed_to_published.max", 120.0, False),
    ("late data: produced -> all published (s)", "late.seconds_produced_to_all_published", None, False),
    ("api: published rows of the day", "api.rows", None, True),
    ("api: /suspicious page of 100 p50 (ms)", "api.page_ms.p50", None, False),
    ("api: /suspicious page of 100 p99 (ms)", "api.page_ms.p99", 50.0, False),
    ("api: full walk through the cursor rows/s", "api.walk_rows_per_second", None, True),
    ("api: same keyset query, psycopg p99 (ms)", "api.plain_select.keyset_page_ms.p99", None, False),
    ("api: plain SELECT of the day rows/s", "api.plain_select.rows_per_second", None, True),
    ("api: walk / plain SELECT", "api.walk_to_select", None, True),
]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(results: dict) -> str:
    lines = [f"{'measure':<42} {'value':>14} {'target':>10}  met", "-" * 74]
    for label, path, target, higher in ROWS:
        value = _get(results, path)
        if value is None:
            continue
        met = "" if target is None else ("yes" if (value >= target if higher else value <= target) else "NO")
        lines.append(f"{label:<42} {_fmt(value):>14} {_fmt(target):>10}  {met}")
    for name, error in results.get("failed", {}).items():
        lines.append(f"{name}: FAILED: {error.strip().splitlines()[-1][:200]}")
    for point in results.get("scaling", []):
        label = f"scaling: {point['partitions']} partition(s) x {point['processes']} process(es)"
        lines.append(f"{label:<42} {_fmt(point.get('events_per_second')):>14}")
    return "\n".join(lines)


def run_bench(args) -> dict:
    settings, env = bench_settings(), bench_env()
    results: dict = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "txmon bench " + " ".join(args.argv),
        "machine": machine(settings),
        "parameters": {k: v for k, v in vars(args).items() if k not in ("argv", "command")},
    }
    started = time.monotonic()
    sections = {
        "ingest": lambda: ingest.run(settings, env, events=args.events, naive_sample=args.naive_sample),
        "freshness": lambda: {
            mode: freshness.run(
                settings,
                env,
                mode=mode,
                tps=args.tps,
                seconds=args.freshness_seconds,
                warmup=args.warmup_seconds,
                port=args.port,
            )
            for mode in ("sensor", "worker")
        },
        "late": lambda: freshness.late(settings, env, events_per_day=args.late_events, port=args.port),
        "settlement": lambda: settlement.run(
            settings, env, events=args.settlement_events, backfill_events=args.backfill_events
        ),
        "scaling": lambda: scaling.run(events=args.scaling_events),
        "api": lambda: api.run(settings, env, rows=args.api_rows),
    }
    chosen = [name for name in SECTIONS if name in args.sections]
    with Progress("bench sections done", len(chosen)) as progress:
        for done, name in enumerate(chosen):
            progress.update(done, f"running {name}")
            began = time.monotonic()
            try:
                results[name] = sections[name]()
                progress.line(f"bench: {name} done in {time.monotonic() - began:.0f}s")
            except BenchError as exc:  # the other sections still run; the failure is in the table and the JSON
                results.setdefault("failed", {})[name] = str(exc)[-2000:]
                progress.line(f"bench: {name} FAILED after {time.monotonic() - began:.0f}s")
        progress.update(len(chosen))
    results["seconds"] = round(time.monotonic() - started, 1)
    output = Path(args.output) if args.output else RESULTS_DIR / f"bench-{results['started_at'][:19]}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    results["output"] = str(output)
    return results
