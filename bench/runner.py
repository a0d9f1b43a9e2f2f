"""`txmon bench`: run the sections, print one table, write the same figures to a JSON file."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from bench import api, freshness, ingest, reports, scaling, settlement
from bench.common import LOAD_MET_SHARE, RESULTS_DIR, BenchError, bench_env, bench_settings, machine
from txmon.core.progress import Progress
from txmon.core.settings import REPO_ROOT

SECTIONS = ("ingest", "freshness", "late", "settlement", "scaling", "api", "reports")


def _get(results: dict, path: str):
    value = results
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


class Row(NamedTuple):
    label: str
    path: str  # in the results
    target: float | None = None
    higher: bool = True  # is better
    load: str | None = None  # the section's load (bench.common.load_result): not met there, not met here


def _freshness_rows(mode: str, landing_target: float) -> list[Row]:
    at, load = f"freshness.{mode}", f"freshness.{mode}.load"
    return [
        Row(f"freshness {mode}: asked tx/s", f"{load}.asked_transactions_per_second"),
        Row(f"freshness {mode}: asked events/s", f"{load}.asked_events_per_second"),
        Row(f"freshness {mode}: events per transaction", f"{load}.events_per_transaction"),
        Row(f"freshness {mode}: acknowledged tx/s", f"{load}.acknowledged.transactions_per_second"),
        Row(f"freshness {mode}: acknowledged events/s", f"{load}.acknowledged.events_per_second"),
        Row(f"freshness {mode}: landed tx/s", f"{load}.landed.transactions_per_second"),
        Row(f"freshness {mode}: landed events/s", f"{load}.landed.events_per_second"),
        Row(f"freshness {mode}: delivered / asked tx/s", f"{load}.share_of_asked", LOAD_MET_SHARE),
        Row(f"freshness {mode}: generator CPU (s)", f"{at}.generator.cpu_seconds", None, False),
        Row(f"freshness {mode}: generator CPU share of a core", f"{at}.generator.cpu_share_of_core", None, False),
        Row(f"freshness {mode}: landing p50 (s)", f"{at}.landing_seconds.p50", None, False),
        Row(f"freshness {mode}: landing p95 (s)", f"{at}.landing_seconds.p95", None, False),
        Row(f"freshness {mode}: landing p99 (s)", f"{at}.landing_seconds.p99", landing_target, False, load),
        Row(f"freshness {mode}: landing max (s)", f"{at}.landing_seconds.max", None, False),
        Row(f"freshness {mode}: published p50 (s)", f"{at}.suspicious_seconds.p50", None, False),
        Row(f"freshness {mode}: published p95 (s)", f"{at}.suspicious_seconds.p95", 15.0, False, load),
        Row(f"freshness {mode}: published n", f"{at}.suspicious_seconds.n"),
        Row(f"freshness {mode}: never published", f"{at}.suspicious_seconds.not_seen", 0, False, load),
        Row(f"freshness {mode}: published max (s)", f"{at}.suspicious_seconds.max", None, False),
        Row(f"freshness {mode}: max consumer lag", f"{at}.lag_max", None, False),
    ]


ROWS = [
    Row("ingest: events per transaction", "ingest.preload.events_per_transaction"),
    Row("ingest: txmon events/s", "ingest.txmon.events_per_second", 50_000),
    Row("ingest: txmon tx/s", "ingest.txmon.transactions_per_second"),
    Row("ingest: COPY events+identities rows/s", "ingest.copy_limit.rows_per_second"),
    Row("ingest: COPY events table alone rows/s", "ingest.copy_limit_events_only.rows_per_second"),
    Row("ingest: naive INSERT+commit events/s", "ingest.naive.events_per_second"),
    Row("ingest: txmon / COPY events+identities", "ingest.ratio_to_copy_limit", ingest.COPY_TARGET),
    Row("ingest: txmon / COPY events table alone", "ingest.ratio_to_copy_limit_events_only"),
    Row("ingest: txmon / naive", "ingest.ratio_to_naive"),
    Row("ingest: peak RSS per process (MiB)", "ingest.txmon.peak_rss_mib", None, False),
    *_freshness_rows("sensor", 1.0),
    *_freshness_rows("worker", 1.0),
    Row("settlement: region-day events", "settlement.region_day.events"),
    Row("settlement: region-day transactions", "settlement.region_day.transactions"),
    Row("settlement: mart + checks (s)", "settlement.region_day.materialize_with_checks_seconds", 60.0, False),
    Row("settlement: backfill partitions", "settlement.backfill.partitions"),
    Row("settlement: backfill events", "settlement.backfill.events"),
    Row("settlement: backfill (s)", "settlement.backfill.seconds", 90.0, False),
    Row("late data: region-days", "late.region_days"),
    Row("late data: events", "late.events"),
    Row("late data: landed -> published p50 (s)", "late.seconds_landed_to_published.p50", None, False),
    Row("late data: landed -> published max (s)", "late.seconds_landed_to_published.max", 60.0, False),
    Row("late data: produced -> all published (s)", "late.seconds_produced_to_all_published", None, False),
    Row("api: published rows of the day", "api.rows"),
    Row("api: /suspicious page of 100 p50 (ms)", "api.page_ms.p50", None, False),
    Row("api: /suspicious page of 100 p99 (ms)", "api.page_ms.p99", 50.0, False),
    Row("api: full walk through the cursor rows/s", "api.walk_rows_per_second"),
    Row("api: same keyset query, psycopg p99 (ms)", "api.plain_select.keyset_page_ms.p99", None, False),
    Row("api: plain SELECT of the day rows/s", "api.plain_select.rows_per_second"),
    Row("api: walk / plain SELECT", "api.walk_to_select"),
    Row("reports: 10M-event day's package (s)", "reports.region_day_10m_events.build_seconds", 20.0, False),
    Row("reports: its peak memory (MiB)", "reports.region_day_10m_events.build_peak_rss_mib", None, False),
    Row("reports: 100,000 suspicious rows' package (s)", "reports.suspicious_100k.build_seconds", 20.0, False),
    Row("reports: its peak memory (MiB)", "reports.suspicious_100k.build_peak_rss_mib", None, False),
    Row("reports: its verification (s)", "reports.suspicious_100k.verify_seconds", None, False),
]


def verdict(row: Row, results: dict) -> dict | None:
    """A row's value against its target: ``met`` only when the value meets the target and, for a rate benchmark,
    its load reached the asked rate (``load_met``); None for a row without a target or a value."""
    value = _get(results, row.path)
    if row.target is None or value is None:
        return None
    value_met = value >= row.target if row.higher else value <= row.target
    load_met = None if row.load is None else _get(results, f"{row.load}.met") is True
    return {
        "measure": row.label,
        "path": row.path,
        "value": value,
        "target": row.target,
        "value_met": value_met,
        "load_met": load_met,
        "met": value_met and load_met is not False,
    }


def verdicts(results: dict) -> list[dict]:
    return [v for row in ROWS if (v := verdict(row, results)) is not None]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(results: dict) -> str:
    lines = [f"{'measure':<46} {'value':>14} {'target':>10}  met", "-" * 82]
    for row in ROWS:
        value = _get(results, row.path)
        if value is None:
            continue
        judged = verdict(row, results)
        met = ""
        if judged is not None:
            met = "yes" if judged["met"] else "NO (load not met)" if judged["value_met"] else "NO"
        lines.append(f"{row.label:<46} {_fmt(value):>14} {_fmt(row.target):>10}  {met}")
    for name, error in results.get("failed", {}).items():
        lines.append(f"{name}: FAILED: {error.strip().splitlines()[-1][:200]}")
    for point in results.get("scaling", []):
        label = f"scaling: {point['partitions']} partition(s) x {point['processes']} process(es)"
        rate = point.get("events_per_second")
        shown = _fmt(rate) if rate is not None else "n/a"
        lines.append(f"{label:<46} {shown:>14}" + ("" if rate is not None else f"  {point.get('note', '')}"))
    return "\n".join(lines)


def source_commit() -> str | None:
    """The commit the benchmarked code is at, marked "+changes" when the work tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None  # not a git checkout
    return head.stdout.strip() + (" +changes" if dirty.stdout.strip() else "")


def run_bench(args) -> dict:
    settings, env = bench_settings(), bench_env()
    results: dict = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "txmon bench " + " ".join(args.argv),
        "commit": source_commit(),
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
        "reports": lambda: reports.run(settings, env),
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
    results["verdicts"] = verdicts(results)
    output = Path(args.output) if args.output else RESULTS_DIR / f"bench-{results['started_at'][:19]}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    results["output"] = str(output)
    return results
