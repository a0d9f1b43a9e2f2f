"""`txmon run`: the whole platform on this machine (services, synthetic payments, ingestion, Dagster UI
and daemon) with a live status line, until Ctrl-C or the given duration."""

from __future__ import annotations

import subprocess
import sys

import click

from ingestion.processes import stop_landing
from txmon.cli.common import pass_settings, supervise
from txmon.cli.ingest import status_line
from txmon.cli.orchestrate import start_dagster
from txmon.cli.params import NON_NEGATIVE, POSITIVE
from txmon.cli.services import show
from txmon.core.settings import Settings, replace
from txmon.devtools import services as local_services


@click.command("run")
@click.option("--tps", type=POSITIVE, default=2000.0)
@click.option("--duration", type=NON_NEGATIVE, default=0.0, help="seconds (0: until Ctrl-C)")
@click.option("--worker", is_flag=True, help="land with a standalone worker; the Dagster sensor then only reports")
@click.option("--port", type=int, default=3000, help="Dagster UI port")
@pass_settings
def run(settings: Settings, tps: float, duration: float, worker: bool, port: int) -> int:
    show(local_services.up(settings))
    if worker:
        settings = replace(settings, ingest_mode="worker")  # Dagster's processes get it in their environment
    children = start_dagster(settings, port)
    txmon = [sys.executable, "-m", "txmon.cli"]
    if worker:
        children.append(subprocess.Popen([*txmon, "ingest"], stderr=subprocess.DEVNULL))
    children.append(
        subprocess.Popen([*txmon, "generate", "--tps", str(tps), "--duration", "0"], stdout=subprocess.DEVNULL)
    )
    lander = "a standalone worker" if worker else "the Dagster sensor kafka_ingestion"
    click.echo(f"synthetic payments at {tps:g}/s -> {settings.topic} -> staging.transactions ({lander})")
    click.echo(f"Dagster UI: http://127.0.0.1:{port}  (sensor, automation and schedules on; Ctrl-C stops)")
    try:
        return supervise(children, duration, lambda: status_line(settings))
    finally:
        stop_landing(settings)  # the sensor's lander, if it started one
