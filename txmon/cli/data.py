"""`txmon produce` and `txmon generate`: events onto the topic, from a JSON-lines file or synthetic."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from txmon.cli import EXIT_FAILURE
from txmon.cli.common import BadArgument, pass_settings
from txmon.cli.params import NON_NEGATIVE, POSITIVE, RATE, TIMESTAMP
from txmon.core.settings import Settings
from txmon.devtools.generate import STRUCTURING_RATE, VELOCITY_RATE, PaymentGenerator
from txmon.devtools.produce import read_lines, send


@click.command("produce")
@click.argument("file", type=click.Path(path_type=Path))
@pass_settings
def produce(settings: Settings, file: Path) -> int:
    if not file.is_file():
        raise BadArgument(f"txmon produce: {file} is not a readable file")
    report = send(settings, read_lines(file))
    click.echo(f"sent {report.sent} events to {settings.topic} in {report.seconds:.1f}s, {report.failed} failed")
    if report.failed:
        click.echo(f"txmon produce: first failure: {report.first_error}", err=True)
        return EXIT_FAILURE
    return 0


@click.command("generate")
@click.option(
    "--tps",
    type=POSITIVE,
    required=True,
    help="transactions per second: each starts with one event, lifecycle updates and redeliveries follow "
    "(about 1.6 events per transaction)",
)
@click.option("--duration", type=NON_NEGATIVE, required=True, help="seconds of the stream (0: until interrupted)")
@click.option("--seed", type=int, help="makes the stream reproducible")
@click.option("--bad-rate", type=RATE, default=0.0, help="share of transactions sent as a malformed event (0..1)")
@click.option(
    "--structuring-rate",
    type=RATE,
    default=STRUCTURING_RATE,
    help="share of transactions that start a structuring group instead, on an account of its own (0..1, default "
    "1 in 20,000)",
)
@click.option(
    "--velocity-rate",
    type=RATE,
    default=VELOCITY_RATE,
    help="share of transactions that start a velocity burst instead, on an account of its own (0..1, default "
    "1 in 50,000)",
)
@click.option("--start", type=TIMESTAMP, help="event_time of the first event (default: now)")
@click.option("--output", type=click.Path(path_type=Path), help="write JSON lines to this file instead of the topic")
@pass_settings
def generate(
    settings: Settings,
    tps: float,
    duration: float,
    seed: int | None,
    bad_rate: float,
    structuring_rate: float,
    velocity_rate: float,
    start: datetime | None,
    output: Path | None,
) -> int:
    if bad_rate + structuring_rate + velocity_rate > 1:
        raise BadArgument("txmon generate: --bad-rate, --structuring-rate and --velocity-rate together exceed 1")
    gen = PaymentGenerator(
        settings,
        tps=tps,
        seed=seed,
        bad_rate=bad_rate,
        start=start,
        structuring_rate=structuring_rate,
        velocity_rate=velocity_rate,
    )
    events = gen.until(duration) if duration else iter(gen.next, None)
    if output:
        if not duration:
            raise BadArgument("txmon generate: --output needs a --duration above 0")
        count = transactions = 0
        with open(output, "wb") as fh:
            for event in events:
                fh.write(event.value + b"\n")
                count += 1
                transactions += event.first
        click.echo(f"wrote {count} events ({transactions} transactions) to {output}")
        return 0
    report = send(settings, events, paced=True)
    click.echo(
        f"sent {report.sent} events ({report.transactions} transactions) to {settings.topic} "
        f"in {report.seconds:.1f}s, {report.failed} failed"
    )
    return EXIT_FAILURE if report.failed else 0
