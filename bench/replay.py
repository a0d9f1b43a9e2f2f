"""The load of a rate benchmark as its own process: a file of serialised events replayed at their moments
(`python -m bench.replay FILE`), printing what was sent, acknowledged and its CPU as one JSON line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import orjson

from txmon.core.settings import Settings
from txmon.devtools.produce import replay


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay")
    parser.add_argument("file", type=Path)
    parser.add_argument("--start-at", type=float, help="epoch seconds of the first event (default: now)")
    parser.add_argument("--window", type=float, nargs=2, metavar=("FROM", "TO"), help="seconds after the start")
    args = parser.parse_args(argv)
    report = replay(Settings.from_env(), args.file, start_at=args.start_at, window=args.window)
    sys.stdout.buffer.write(orjson.dumps(dataclasses.asdict(report)) + b"\n")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
