"""SIGKILL the ingest worker in the middle of a backlog: nothing is lost, nothing is doubled."""

from __future__ import annotations

import json
import signal
import time

from contracts.transaction import InvalidEvent
from ingestion.validate import validator_for
from tests.integration.test_ingest import assert_every_offset_accounted_for

EVENTS = 120_000
EVENTS_PER_TRANSACTION = 1.6  # `txmon generate --tps` paces transactions: about this many events each


def expected_from(path, settings) -> tuple[set[tuple[str, str]], int]:
    """(transaction_id, status) pairs that must land, and how many messages must be quarantined."""
    validator = validator_for(settings)
    keys, bad = set(), 0
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                tx = validator.parse(raw.rstrip(b"\n"))
            except InvalidEvent:
                bad += 1
                continue
            keys.add((tx.transaction_id, tx.status))
    return keys, bad


def landed_count(platform) -> int:
    return platform.query("SELECT count(*) FROM staging.transactions")[0][0]


def test_sigkill_mid_backlog_loses_and_duplicates_nothing(platform, tmp_path):
    source = tmp_path / "backlog.jsonl"
    platform.txmon(
        "generate",
        "--tps",
        "10000",
        "--duration",
        str(EVENTS / 10_000 / EVENTS_PER_TRANSACTION),
        "--seed",
        "11",
        "--bad-rate",
        "0.01",
        "--start",
        "2026-11-24T23:59:00Z",
        "--output",
        str(source),
    )
    platform.txmon("produce", str(source))
    expected_keys, expected_bad = expected_from(source, platform.settings)

    platform.env["TXMON_BATCH_MAX_EVENTS"] = "2000"  # many small commits, so a kill lands between them
    kills = 0
    for _ in range(3):
        before = landed_count(platform)
        with open(tmp_path / "worker.log", "ab") as log:
            worker = platform.popen("ingest", stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while landed_count(platform) <= before + 5_000 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)
        if landed_count(platform) >= len(expected_keys) or worker.poll() is not None:
            worker.kill()
            break
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
    assert kills >= 1, "the backlog was landed before the worker could be killed; make it larger"
    assert landed_count(platform) < len(expected_keys)

    report = json.loads(platform.txmon("ingest", "--until-idle").stdout)
    assert report["consumed"] > 0

    rows = platform.query("SELECT transaction_id, status FROM staging.transactions")
    assert len(rows) == len(set(rows)), "an event was stored twice"
    assert set(rows) == expected_keys, "landed events differ from the produced ones"
    assert platform.query("SELECT count(*) FROM staging.rejected_transactions")[0][0] == expected_bad
    assert_every_offset_accounted_for(platform)
