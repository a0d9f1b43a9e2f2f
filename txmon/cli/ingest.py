"""`txmon ingest` and `txmon status`: land events from the topic in PostgreSQL, and what has landed
(rows, quarantine, duplicates, consumer lag)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import click
import psycopg
from confluent_kafka import KafkaException

from ingestion import metrics, processes
from ingestion.consumer import Ingestor, check_databases
from ingestion.lag import consumer_lag
from ingestion.sink import BatchResult
from txmon.cli.common import BadArgument, pass_settings, stop_on_signals
from txmon.cli.params import COUNT, PARTITIONS, POSITIVE
from txmon.core.db import connect
from txmon.core.progress import Progress
from txmon.core.settings import Role, Settings, replace

log = logging.getLogger("txmon.ingest")


@click.command("ingest")
@click.option("--until-idle", is_flag=True, help="land what is on the topic, then exit")
@click.option("--partitions", type=PARTITIONS, help="only these topic partitions (static scale-out)")
@click.option("--group", is_flag=True, help="share partitions with other workers in a group")
@click.option("--max-seconds", type=POSITIVE, help="stop after this long")
@click.option(
    "--lease", type=click.Path(path_type=Path), help="stop once this file is older than 30 s (the sensor's lander)"
)
@click.option(
    "--processes",
    "process_count",
    type=COUNT,
    help="processes sharing the partitions (default TXMON_INGEST_PROCESSES; 0: one per CPU core)",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="serve Prometheus metrics on 127.0.0.1:PORT (default TXMON_INGEST_METRICS_PORT; 0: none)",
)
@click.option("--no-progress", is_flag=True, hidden=True, help="no progress line (the processes of a parent)")
@pass_settings
def ingest(settings: Settings, no_progress: bool, **options) -> int:
    with Progress("landing") as progress:
        if options["until_idle"] and not no_progress and progress.shown:  # what is on the topic now, counted down
            try:
                total = sum(consumer_lag(settings).values())
            except (KafkaException, psycopg.Error):
                total = None  # not answering yet: the worker rides it out; no progress line
            if total is not None:
                progress.total = total
                progress.follow(lambda: (total - sum(consumer_lag(settings).values()), "messages"))
        return _ingest(settings, **options)


def _ingest(
    settings: Settings,
    until_idle: bool,
    partitions: list[int] | None,
    group: bool,
    max_seconds: float | None,
    lease: Path | None,
    process_count: int | None,
    metrics_port: int | None,
) -> int:
    stop = stop_on_signals()
    if lease:
        processes.watch_lease(lease, stop)
    if process_count is not None:
        settings = replace(settings, ingest_processes=process_count)
    port = settings.ingest_metrics_port if metrics_port is None else metrics_port
    if settings.ingest_processes != 1:
        try:  # a wrong set of databases is said once, here, not by every process
            check_databases(settings)
        except psycopg.OperationalError:
            pass  # not answering now: each process waits for it and checks it then
        common = [
            *(["--until-idle"] if until_idle else []),
            *(["--max-seconds", str(max_seconds)] if max_seconds else []),
        ]
        available = processes.topic_partitions(settings, stop)
        if group:
            child_args = [["--group", *common]] * processes.process_count(settings, len(available))
        else:
            wanted = sorted(set(partitions)) if partitions else available
            missing = sorted(set(wanted) - set(available))
            if missing:
                raise BadArgument(
                    f"txmon ingest: topic {settings.topic} has no partition(s) {missing} (it has {len(available)})"
                )
            shares = processes.split(wanted, processes.process_count(settings, len(wanted)))
            child_args = [["--partitions", ",".join(map(str, share)), *common] for share in shares]
        if len(child_args) > 1:
            env = None
            if port:  # the children write their values to one directory; this process serves their sum
                shared = metrics.multiprocess_dir(settings.state_dir)
                metrics.serve(settings.metrics_host, port, shared)
                env = {**os.environ, metrics.MULTIPROC_VARIABLE: str(shared)}
            click.echo(json.dumps(processes.run_processes(child_args, stop, env)))
            return 0
    processes.give_memory_back()
    if port:
        metrics.serve(settings.metrics_host, port)
    ingestor = Ingestor(settings, partitions=partitions, group=group, stop=stop)
    progress = {"at": time.monotonic(), "landed": 0}

    def on_batch(result: BatchResult) -> None:
        progress["landed"] += result.landed
        if time.monotonic() - progress["at"] >= 5:
            log.info("landed %d events in the last %.0fs", progress["landed"], time.monotonic() - progress["at"])
            progress.update(at=time.monotonic(), landed=0)

    try:
        report = ingestor.run(until_idle=until_idle, max_seconds=max_seconds, on_batch=None if until_idle else on_batch)
    finally:
        ingestor.close()
    click.echo(json.dumps(report.summary()))
    return 0


def status_line(settings: Settings) -> str:
    """Rows landed, quarantined and duplicated, consumer lag, time of the last landing: one line."""
    landed = quarantined = dupes = 0
    latest = None
    for dsn in settings.databases():  # every regional database logs its own part of each batch
        with connect(settings.as_role(dsn, Role.TRANSFORM), autocommit=True, purpose="status") as conn:
            # From the batch log, not count(*): the status line must stay cheap on a large table.
            rows, rejected, duplicates, last = conn.execute(
                """SELECT coalesce(sum(landed), 0), coalesce(sum(quarantined), 0), coalesce(sum(duplicates), 0),
                          max(committed_at)
                   FROM staging.ingest_batches"""
            ).fetchone()
        landed, quarantined, dupes = landed + rows, quarantined + rejected, dupes + duplicates
        latest = max(filter(None, (latest, last)), default=None)
    lag = sum(consumer_lag(settings).values())
    when = latest.strftime("%H:%M:%S") if latest else "-"
    return (
        f"staging.transactions {landed:>10,}   quarantined {quarantined:>7,}   duplicates {dupes:>6,}   "
        f"consumer lag {lag:>7,}   last landed {when} UTC"
    )


@click.command("status")
@pass_settings
def status(settings: Settings) -> int:
    click.echo(status_line(settings))
    return 0
