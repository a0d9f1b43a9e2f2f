"""The `txmon` command. Every failure the user can cause ends in one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad argument: reported as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be zero or a positive number")
    return value


def _rate(text: str) -> float:
    value = _non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. 2026-11-24T00:00:00Z")
    return moment


def _day(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date") from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 256:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 256")
    return value


def _whole(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def _sections(text: str) -> tuple[str, ...]:
    from bench.runner import SECTIONS as known

    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [c for c in chosen if c not in known]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {','.join(known)}")
    return chosen


def _partitions(text: str) -> list[int]:
    try:
        parts = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of partition numbers") from None
    if not parts or any(p < 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of partition numbers")
    return parts


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="txmon", description="Transaction monitoring data platform.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    services = sub.add_parser("services", help="start, stop or check the local PostgreSQL and Kafka")
    services.add_argument("action", choices=["up", "down", "status"])

    info = sub.add_parser("info", help="print the effective settings")
    info.add_argument("--json", action="store_true", help="as one JSON object")

    sub.add_parser("migrate", help="apply pending warehouse migrations to every regional database")

    produce = sub.add_parser("produce", help="send each line of a JSON-lines file as one event")
    produce.add_argument("file", type=Path)

    gen = sub.add_parser("generate", help="synthetic payments, to the topic or to a file")
    gen.add_argument("--tps", type=_positive_float, required=True, help="events per second")
    gen.add_argument(
        "--duration", type=_non_negative_float, required=True, help="seconds of events (0: until interrupted)"
    )
    gen.add_argument("--seed", type=int, help="makes the stream reproducible")
    gen.add_argument("--bad-rate", type=_rate, default=0.0, help="share of malformed events (0..1)")
    gen.add_argument("--start", type=_timestamp, help="event_time of the first event (default: now)")
    gen.add_argument("--output", type=Path, help="write JSON lines to this file instead of the topic")

    ingest = sub.add_parser("ingest", help="land events from the topic in PostgreSQL")
    ingest.add_argument("--until-idle", action="store_true", help="land what is on the topic, then exit")
    ingest.add_argument("--partitions", type=_partitions, help="only these topic partitions (static scale-out)")
    ingest.add_argument("--group", action="store_true", help="share partitions with other workers in a group")
    ingest.add_argument("--max-seconds", type=_positive_float, help="stop after this long")
    ingest.add_argument("--lease", type=Path, help="stop once this file is older than 30 s (the sensor's lander)")
    ingest.add_argument(
        "--processes",
        type=_count,
        help="processes sharing the partitions (default TXMON_INGEST_PROCESSES; 0: one per CPU core)",
    )

    mat = sub.add_parser("materialize", help="materialize one region-day partition of every mart, checks included")
    mat.add_argument("--date", type=_day, required=True, help="YYYY-MM-DD (UTC day)")
    mat.add_argument("--region", required=True)

    pub = sub.add_parser(
        "publish",
        help="refresh one region-day partition from its watermark (only what landed since its last build), "
        "re-check it and publish it to reporting if it passes",
    )
    pub.add_argument("--date", type=_day, required=True, help="YYYY-MM-DD (UTC day)")
    pub.add_argument("--region", required=True)

    back = sub.add_parser("backfill", help="materialize a range of days (inclusive) for one or all regions")
    back.add_argument("--from", dest="first", type=_day, required=True, help="YYYY-MM-DD")
    back.add_argument("--to", dest="last", type=_day, required=True, help="YYYY-MM-DD (inclusive)")
    back.add_argument("--region", help="one region (default: all)")

    dagster = sub.add_parser("dagster", help="run the Dagster UI and daemon (sensors, automation, schedules) to Ctrl-C")
    dagster.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    sub.add_parser("dagster-setup", help="prepare Dagster's home, the dbt manifest, reference models and mart tables")

    run = sub.add_parser(
        "run", help="services up, synthetic payments, ingestion, Dagster UI and daemon, live status (Ctrl-C stops)"
    )
    run.add_argument("--tps", type=_positive_float, default=2000.0)
    run.add_argument("--duration", type=_non_negative_float, default=0.0, help="seconds (0: until Ctrl-C)")
    run.add_argument(
        "--worker", action="store_true", help="land with a standalone worker; the Dagster sensor then only reports"
    )
    run.add_argument("--port", type=int, default=3000, help="Dagster UI port")

    sub.add_parser("status", help="rows landed, quarantined and consumer lag")

    sub.add_parser(
        "prune",
        help="delete what is past its retention (raw events, quarantine, duplicates, batch log, Dagster "
        "runs and check evaluations), as the daily prune_dagster_history job does",
    )

    bench = sub.add_parser(
        "bench", help="benchmarks on the local services (own database and topics): table + JSON in bench/results"
    )
    bench.add_argument(
        "--sections",
        type=_sections,
        default=("ingest", "freshness", "late", "settlement", "scaling"),
        help="comma-separated: ingest,freshness,late,settlement,scaling (default: all)",
    )
    bench.add_argument("--events", type=_whole, default=2_000_000, help="ingest: events preloaded on the topic")
    bench.add_argument("--naive-sample", type=_whole, default=20_000, help="ingest: messages for the naive consumer")
    bench.add_argument("--tps", type=_positive_float, default=10_000.0, help="freshness: generator rate")
    bench.add_argument("--freshness-seconds", type=_positive_float, default=120.0, help="freshness: measured window")
    bench.add_argument(
        "--warmup-seconds", type=_non_negative_float, default=30.0, help="freshness: generated before the window"
    )
    bench.add_argument("--port", type=int, default=3011, help="freshness: the Dagster UI's port meanwhile")
    bench.add_argument(
        "--late-events", type=_whole, default=60_000, help="late: events per closed day (over its 3 regions)"
    )
    bench.add_argument("--settlement-events", type=_whole, default=10_000_000, help="settlement: one region-day")
    bench.add_argument(
        "--backfill-events",
        type=_whole,
        default=250_000,
        help="settlement: events per region-day of the 7-day backfill",
    )
    bench.add_argument("--scaling-events", type=_whole, default=500_000, help="scaling: events per configuration")
    bench.add_argument("--output", type=Path, help="JSON file (default: bench/results/bench-<time>.json)")

    dbt = sub.add_parser("dbt", help="run dbt on the project with txmon's connection and vars, e.g. `txmon dbt build`")
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER, help="arguments for dbt")
    return parser


# ---------------------------------------------------------------------- commands
def cmd_services(args, settings) -> int:
    from txmon.devtools import services

    if args.action == "up":
        statuses = services.up(settings)
    elif args.action == "down":
        services.down(settings)
        statuses = services.status(settings)
    else:
        statuses = services.status(settings)
    for s in statuses:
        print(f"{s.name:<9} {'up' if s.up else 'down':<5} {s.detail}")
    if args.action == "up" and not all(s.up for s in statuses):
        return EXIT_FAILURE
    if args.action == "status" and not all(s.up for s in statuses):
        return 3
    return 0


def cmd_info(args, settings) -> int:
    info = settings.info()
    if args.json:
        print(json.dumps(info, sort_keys=True))
    else:
        for key, value in sorted(info.items()):
            print(f"{key:<26} {value}")
    return 0


def cmd_migrate(args, settings) -> int:
    from txmon.core.urls import where
    from txmon.core.warehouse import migrate

    for dsn, applied in migrate(settings).items():
        print(f"{where(dsn)}: {', '.join(applied) if applied else 'up to date'}")
    return 0


def cmd_produce(args, settings) -> int:
    from txmon.devtools.produce import read_lines, send

    if not args.file.is_file():
        raise UsageError(f"txmon produce: {args.file} is not a readable file")
    report = send(settings, read_lines(args.file))
    print(f"sent {report.sent} events to {settings.topic} in {report.seconds:.1f}s, {report.failed} failed")
    if report.failed:
        print(f"txmon produce: first failure: {report.first_error}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def cmd_generate(args, settings) -> int:
    from txmon.devtools.generate import PaymentGenerator
    from txmon.devtools.produce import send

    gen = PaymentGenerator(settings, tps=args.tps, seed=args.seed, bad_rate=args.bad_rate, start=args.start)
    count = int(args.tps * args.duration) if args.duration else None
    events = gen.events(count) if count is not None else iter(gen.next, None)
    if args.output:
        if count is None:
            raise UsageError("txmon generate: --output needs a --duration above 0")
        with open(args.output, "wb") as fh:
            for event in events:
                fh.write(event.value + b"\n")
        print(f"wrote {count} events to {args.output}")
        return 0
    report = send(settings, events, tps=args.tps)
    print(f"sent {report.sent} events to {settings.topic} in {report.seconds:.1f}s, {report.failed} failed")
    return EXIT_FAILURE if report.failed else 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def cmd_ingest(args, settings) -> int:
    from ingestion import processes
    from ingestion.consumer import Ingestor
    from txmon.core.settings import replace

    stop = _stop_on_signals()
    if args.lease:
        processes.watch_lease(args.lease, stop)
    if args.processes is not None:
        settings = replace(settings, ingest_processes=args.processes)
    if settings.ingest_processes != 1:
        common = [
            *(["--until-idle"] if args.until_idle else []),
            *(["--max-seconds", str(args.max_seconds)] if args.max_seconds else []),
        ]
        available = processes.topic_partitions(settings, stop)
        if args.group:
            child_args = [["--group", *common]] * processes.process_count(settings, len(available))
        else:
            wanted = sorted(set(args.partitions)) if args.partitions else available
            missing = sorted(set(wanted) - set(available))
            if missing:
                raise UsageError(
                    f"txmon ingest: topic {settings.topic} has no partition(s) {missing} (it has {len(available)})"
                )
            shares = processes.split(wanted, processes.process_count(settings, len(wanted)))
            child_args = [["--partitions", ",".join(map(str, share)), *common] for share in shares]
        if len(child_args) > 1:
            print(json.dumps(processes.run_processes(child_args, stop)))
            return 0
    processes.give_memory_back()
    ingestor = Ingestor(settings, partitions=args.partitions, group=args.group, stop=stop)
    log = logging.getLogger("txmon.ingest")
    progress = {"at": time.monotonic(), "landed": 0}

    def on_batch(result):
        progress["landed"] += result.landed
        if time.monotonic() - progress["at"] >= 5:
            log.info("landed %d events in the last %.0fs", progress["landed"], time.monotonic() - progress["at"])
            progress.update(at=time.monotonic(), landed=0)

    try:
        report = ingestor.run(
            until_idle=args.until_idle, max_seconds=args.max_seconds, on_batch=None if args.until_idle else on_batch
        )
    finally:
        ingestor.close()
    print(json.dumps(report.summary()))
    return 0


def _status_line(settings) -> str:
    from ingestion.lag import consumer_lag
    from txmon.core.db import connect
    from txmon.core.settings import Role

    with connect(settings.home_dsn(Role.TRANSFORM), autocommit=True, purpose="status") as conn:
        # From the batch log, not count(*): the status line must stay cheap on a large table.
        landed, quarantined, dupes, latest = conn.execute(
            """SELECT coalesce(sum(landed), 0), coalesce(sum(quarantined), 0), coalesce(sum(duplicates), 0),
                      max(committed_at)
               FROM staging.ingest_batches"""
        ).fetchone()
    lag = sum(consumer_lag(settings).values())
    when = latest.strftime("%H:%M:%S") if latest else "-"
    return (
        f"staging.transactions {landed:>10,}   quarantined {quarantined:>7,}   duplicates {dupes:>6,}   "
        f"consumer lag {lag:>7,}   last landed {when} UTC"
    )


def cmd_status(args, settings) -> int:
    print(_status_line(settings))
    return 0


def cmd_prune(args, settings) -> int:
    from datetime import UTC

    from orchestration.defs.maintenance.prune import prune_all
    from orchestration.instance import open_instance

    with open_instance(settings) as instance:  # the instance the UI shows
        deleted = prune_all(settings, instance, datetime.now(UTC))
    for table, rows in deleted.items():
        print(f"{table:<36} {rows:>10,} deleted")
    return 0


def _materialize(settings, partitions, *, full: bool = True) -> int:
    from orchestration.runner import check_partition, materialize

    for day, region in partitions:
        try:
            check_partition(settings, day, region)
        except ValueError as exc:
            raise UsageError(f"txmon: {exc}") from None
    outcomes = materialize(settings, partitions, full=full)
    for outcome in outcomes:
        print(outcome.line())
    failed = [o for o in outcomes if not o.success]
    if failed:
        print(f"txmon: {len(failed)} of {len(outcomes)} partitions failed", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def cmd_materialize(args, settings) -> int:
    return _materialize(settings, [(args.date, args.region)])


def cmd_publish(args, settings) -> int:
    return _materialize(settings, [(args.date, args.region)], full=False)


def cmd_backfill(args, settings) -> int:
    from orchestration.runner import days

    try:
        span = days(args.first, args.last)
    except ValueError as exc:
        raise UsageError(f"txmon backfill: {exc}") from None
    regions = [args.region] if args.region else list(settings.regions)
    return _materialize(settings, [(day, region) for day in span for region in regions])


def _dagster_processes(settings, port: int) -> list[subprocess.Popen]:
    from orchestration.instance import dagster_env
    from orchestration.runner import setup

    setup(settings)  # DAGSTER_HOME, manifest, reference models, mart tables
    env = {**os.environ, **dagster_env(settings)}
    bin_dir = Path(sys.executable).parent
    log_dir = settings.state_dir / "logs"  # not under DAGSTER_HOME/logs, which Dagster manages
    log_dir.mkdir(parents=True, exist_ok=True)
    module = ["-m", "orchestration.definitions"]
    return [
        subprocess.Popen(
            [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), *module],
            env=env,
            stdout=open(log_dir / "webserver.log", "ab"),
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", *module],
            env=env,
            stdout=open(log_dir / "daemon.log", "ab"),
            stderr=subprocess.STDOUT,
        ),
    ]


def _supervise(children: list[subprocess.Popen], duration: float, status) -> int:
    from txmon.core.processes import terminate

    stop = _stop_on_signals()
    deadline = time.monotonic() + duration if duration else None
    try:
        while not stop.wait(5):
            exited = [c for c in children if c.poll() is not None]
            if exited:
                print(
                    f"txmon: {' '.join(map(str, exited[0].args[:2]))} exited with {exited[0].returncode}; stopping",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
            if status:
                print(status(), flush=True)
            if deadline and time.monotonic() > deadline:
                break
    finally:
        terminate(children)
    return 0


def cmd_dagster_setup(args, settings) -> int:
    from orchestration.instance import dagster_env
    from orchestration.runner import setup

    _, instance = setup(settings)
    instance.dispose()
    print(f"Dagster home {dagster_env(settings)['DAGSTER_HOME']} ready")
    return 0


def cmd_dagster(args, settings) -> int:
    from ingestion.processes import stop_landing
    from txmon.core.warehouse import migrate

    migrate(settings)  # the components by duty never migrate; the operator's start command does
    children = _dagster_processes(settings, args.port)
    print(f"Dagster UI: http://127.0.0.1:{args.port}  (logs in .txmon/logs; Ctrl-C stops)", flush=True)
    try:
        return _supervise(children, 0, None)
    finally:
        stop_landing(settings)  # the sensor's lander, if it started one


def cmd_run(args, settings) -> int:
    from ingestion.processes import stop_landing
    from txmon.core.settings import replace
    from txmon.devtools import services

    for s in services.up(settings):
        print(f"{s.name:<9} {'up' if s.up else 'down':<5} {s.detail}")
    if args.worker:
        settings = replace(settings, ingest_mode="worker")
        os.environ["TXMON_INGEST_MODE"] = "worker"
    children = _dagster_processes(settings, args.port)
    exe = [sys.executable, "-m", "txmon.cli"]
    if args.worker:
        children.append(subprocess.Popen([*exe, "ingest"], stderr=subprocess.DEVNULL))
    children.append(
        subprocess.Popen([*exe, "generate", "--tps", str(args.tps), "--duration", "0"], stdout=subprocess.DEVNULL)
    )
    lander = "a standalone worker" if args.worker else "the Dagster sensor kafka_ingestion"
    print(f"synthetic payments at {args.tps:g}/s -> {settings.topic} -> staging.transactions ({lander})")
    print(f"Dagster UI: http://127.0.0.1:{args.port}  (sensor, automation and schedules on; Ctrl-C stops)")
    try:
        return _supervise(children, args.duration, lambda: _status_line(settings))
    finally:
        stop_landing(settings)  # the sensor's lander, if it started one


def cmd_bench(args, settings) -> int:
    from bench.runner import run_bench, table
    from txmon.devtools import services

    if not all(s.up for s in services.status(settings)):
        raise UsageError("txmon bench: the services are not up; run `txmon services up` first")
    args.argv = sys.argv[2:]
    results = run_bench(args)
    print(table(results))
    print(
        f"\n{results['machine']['cpu_cores']} cores, {results['machine']['memory_gib']} GiB; "
        f"{results['seconds']:.0f}s; figures in {results['output']}"
    )
    return EXIT_FAILURE if results.get("failed") else 0


def cmd_dbt(args, settings) -> int:
    from txmon.core.dbt import dbt_vars, run_dbt, vars_arg

    if not args.dbt_args:
        raise UsageError("txmon dbt: name a dbt command, e.g. `txmon dbt build`")
    extra = (
        []
        if "--vars" in args.dbt_args or args.dbt_args[0] in ("debug", "deps", "clean")
        else vars_arg(dbt_vars(settings))
    )
    return run_dbt(settings, [*args.dbt_args, *extra]).returncode


COMMANDS = {
    "services": cmd_services,
    "info": cmd_info,
    "migrate": cmd_migrate,
    "produce": cmd_produce,
    "generate": cmd_generate,
    "ingest": cmd_ingest,
    "run": cmd_run,
    "status": cmd_status,
    "prune": cmd_prune,
    "dbt": cmd_dbt,
    "bench": cmd_bench,
    "materialize": cmd_materialize,
    "publish": cmd_publish,
    "backfill": cmd_backfill,
    "dagster": cmd_dagster,
    "dagster-setup": cmd_dagster_setup,
}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("txmon").setLevel(logging.INFO)
    logging.getLogger("dagster").setLevel(logging.WARNING)
    import psycopg
    from confluent_kafka import KafkaException

    from txmon.core import credentials
    from txmon.core.errors import first_line
    from txmon.core.settings import ConfigError, Settings
    from txmon.devtools.services.common import ServiceError

    try:
        args = build_parser().parse_args(argv)
        settings = Settings.from_env()
        credentials.ensure(settings)  # a private state dir, the roles' secrets and the passfile DSNs name
        return COMMANDS[args.command](args, settings)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, ServiceError) as exc:
        print(f"txmon: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except psycopg.OperationalError as exc:
        first = first_line(exc, "connection failed")
        print(f"txmon: PostgreSQL is not reachable ({first}); is `txmon services up` done?", file=sys.stderr)
        return EXIT_FAILURE
    except KafkaException as exc:
        print(f"txmon: Kafka error: {exc}; is `txmon services up` done?", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:  # the project's own errors (IngestError, ProduceError, MigrationError)
        print(f"txmon: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
