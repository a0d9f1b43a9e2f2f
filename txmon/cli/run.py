"""`txmon run`: the whole platform on this machine (services, synthetic payments, ingestion, Dagster UI
and daemon) with a live status line, until Ctrl-C or the given duration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, time, timedelta

import click

from txmon.cli.api import key_line
from txmon.cli.common import BadArgument, pass_settings, supervise
from txmon.cli.ingest import status_line
from txmon.cli.orchestrate import dagster_process_env, start_dagster, stop_live
from txmon.cli.params import NON_NEGATIVE, POSITIVE
from txmon.cli.services import show
from txmon.core.processes import API_KEYS, child_env, start_detached
from txmon.core.settings import Settings, replace
from txmon.core.urls import where
from txmon.devtools import services as local_services
from txmon.devtools.services.monitoring import INGEST_METRICS_PORT
from txmon.devtools.services.postgres import local_region_dsns


@click.command("run")
@click.option("--tps", type=POSITIVE, default=2000.0, help="synthetic transactions per second (about 1.6 events each)")
@click.option("--duration", type=NON_NEGATIVE, default=0.0, help="seconds (0: until Ctrl-C)")
@click.option("--worker", is_flag=True, help="land with a standalone worker; the Dagster sensor then only reports")
@click.option("--port", type=int, default=3000, help="Dagster UI port")
@click.option("--api-port", type=click.IntRange(1, 65535), help="the HTTP API and web page's port (default 8080)")
@click.option(
    "--multi-region",
    is_flag=True,
    help="every region but the last in a database of its own on the local cluster (<db>_eu, <db>_us)",
)
@pass_settings
def run(
    settings: Settings, tps: float, duration: float, worker: bool, port: int, api_port: int | None, multi_region: bool
) -> int:
    if multi_region:
        if settings.region_dsns:
            raise BadArgument("txmon run: --multi-region and TXMON_REGION_DSNS both place the regions: give one")
        settings = replace(settings, region_dsns=local_region_dsns(settings))
    # Prometheus scrapes the API and the ingest processes (the sensor's lander or the worker) on these ports.
    settings = replace(
        settings,
        api_port=api_port or settings.api_port,
        ingest_metrics_port=settings.ingest_metrics_port or INGEST_METRICS_PORT,
    )
    show(local_services.up(settings, monitoring=True))
    if worker:
        settings = replace(settings, ingest_mode="worker")  # Dagster's processes get it in their environment
    started = datetime.now(UTC)
    dagster = start_dagster(settings, port)
    children: list[subprocess.Popen] = []  # each in a session of its own, as Dagster's: `stop_live` ends them
    try:
        txmon = [sys.executable, "-m", "txmon.cli"]
        # The regional databases and the mode, when given by a flag; no secret but the API's keys, to the API.
        flags = dagster_process_env(settings)
        if worker:
            children.append(start_detached([*txmon, "ingest"], stderr=subprocess.DEVNULL, env=flags))
        # Late data for yesterday (a closed day): its refresh publishes every region's daily settlements (and,
        # with regional databases, the home database's global roll-up) within minutes, so the web page and
        # `reporting` show settlements from the start, not only after midnight UTC. No patterns: 5 s could not
        # complete one, and its account could share a number with one of the live stream's.
        yesterday = datetime.combine(datetime.now(UTC).date() - timedelta(days=1), time(12), UTC)
        late = ["generate", "--tps", "2000", "--duration", "5", "--start", yesterday.isoformat()]
        late += ["--structuring-rate", "0", "--velocity-rate", "0"]
        subprocess.run([*txmon, *late], stdout=subprocess.DEVNULL, check=False, env=child_env())
        click.echo(f"late data: 10,000 transactions of {yesterday.date()} sent (a closed day: its settlements publish)")
        children.append(
            start_detached(
                [*txmon, "generate", "--tps", str(tps), "--duration", "0"], stdout=subprocess.DEVNULL, env=child_env()
            )
        )
        log_fd = os.open(settings.state_dir / "logs" / "api.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(log_fd, "ab") as log:  # the child keeps its own descriptor
            api = [*txmon, "api", "--port", str(settings.api_port)]
            # The API is the one child that gets the keys of TXMON_API_KEYS (this process no longer has the variable).
            keys = {key: grant.model_dump(mode="json") for key, grant in settings.api_keys.items()}
            env = dagster_process_env(settings, **({API_KEYS: json.dumps(keys)} if keys else {}))
            children.append(start_detached(api, stdout=log, stderr=subprocess.STDOUT, env=env))
        lander = "a standalone worker" if worker else "the Dagster sensor kafka_ingestion"
        for region in settings.regions:
            click.echo(f"region {region}: {where(settings.dsn_for_region(region))}")
        click.echo(
            f"synthetic payments at {tps:g} transactions/s -> {settings.topic} -> staging.transactions ({lander})"
        )
        click.echo(f"Dagster UI: http://127.0.0.1:{port}  (sensor, automation and schedules on; Ctrl-C stops)")
        key = key_line(settings, show_key=True)
        click.echo(f"API and web page: http://127.0.0.1:{settings.api_port}/  ({key}; OpenAPI at /docs)")
        click.echo(
            f"Prometheus: http://127.0.0.1:{settings.prometheus_port}  (scraping the API, the ingest processes on "
            f":{settings.ingest_metrics_port} and the PostgreSQL exporter; alert rules in services/prometheus/rules)"
        )
        return supervise([*dagster.processes, *children], duration, lambda: status_line(settings))
    finally:
        stop_live(settings, started, dagster, children)
