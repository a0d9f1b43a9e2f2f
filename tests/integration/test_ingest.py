"""Produce known events to the real Kafka, land them in the real PostgreSQL, check every row."""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal

from confluent_kafka import TopicPartition

from txmon.core import kafka as kafka_clients
from txmon.core.settings import KafkaUser


def event(tx: str, status: str = "settled", **fields) -> dict:
    base = {
        "transaction_id": tx,
        "account_id": f"acc-{tx}",
        "amount": "10.00",
        "currency": "EUR",
        "region": "EU",
        "status": status,
        "event_time": "2026-11-24T10:00:00Z",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def line(obj: dict) -> str:
    return json.dumps(obj)


def end_offsets(settings) -> dict[int, int]:
    consumer = kafka_clients.consumer(settings, user=KafkaUser.INGEST)
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(settings.topic, p), timeout=10)[1]
            for p in range(settings.topic_partitions)
        }
    finally:
        consumer.close()


def assert_every_offset_accounted_for(platform) -> None:
    places = platform.query(
        """SELECT 'landed', "partition", "offset" FROM staging.transactions
           UNION ALL SELECT 'duplicate', "partition", "offset" FROM staging.duplicate_transactions
           UNION ALL SELECT 'quarantined', "partition", "offset" FROM staging.rejected_transactions"""
    )
    seen = defaultdict(list)
    for kind, partition, offset in places:
        seen[(partition, offset)].append(kind)
    expected = {(p, o) for p, end in end_offsets(platform.settings).items() for o in range(end)}
    assert set(seen) == expected, "some consumed offsets are in no table"
    assert all(len(kinds) == 1 for kinds in seen.values()), "an offset is in more than one table"
    stored = dict(platform.query('SELECT "partition", next_offset FROM staging.kafka_offsets'))
    assert {p: stored.get(p, 0) for p in end_offsets(platform.settings)} == end_offsets(platform.settings)


def test_known_file_lands_exactly(platform, tmp_path):
    lines = [
        line(event("t-1", "pending", amount="120.50", event_time="2026-11-24T09:00:00Z")),
        line(event("t-1", "settled", amount="120.50", event_time="2026-11-24T10:05:00+01:00")),  # lifecycle update
        line(event("t-2", amount=75, currency="USD", region="US", fraud_flag=True)),
        line(event("t-3", region="APAC", currency="SGD", counterparty_id="m-1", extra={"note": "kept"})),
        line(event("t-2", amount=75, currency="USD", region="US", fraud_flag=True)),  # producer redelivery
        "{this is not json",
        line(event("t-4", amount=None)),  # missing field
        line(event("t-5", amount="-5.00")),  # negative amount
        line(event("t-6", currency="XYZ")),  # unknown currency
        line(event("t-7", region="MARS")),  # unknown region
        line(event("t-8", event_time="24/11/2026 10:00")),  # bad timestamp
        line(event("t-9", event_time="2026-11-24T10:00:00")),  # no offset
        "[1, 2, 3]",
        line(event("t-10", status="approved")),  # unknown status
    ]
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(lines) + "\n\n")

    produced = platform.txmon("produce", str(source))
    assert "sent 14 events" in produced.stdout
    report = json.loads(platform.txmon("ingest", "--until-idle").stdout)
    assert (report["landed"], report["duplicates"], report["quarantined"]) == (4, 1, 9)

    rows = platform.query(
        """SELECT transaction_id, status, amount, currency, region, fraud_flag, event_time,
                  counterparty_id, raw_event ->> 'extra', topic
           FROM staging.transactions ORDER BY transaction_id, event_time"""
    )
    assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        ("t-1", "pending", Decimal("120.50"), "EUR", "EU", False),
        ("t-1", "settled", Decimal("120.50"), "EUR", "EU", False),
        ("t-2", "settled", Decimal("75"), "USD", "US", True),
        ("t-3", "settled", Decimal("10.00"), "SGD", "APAC", False),
    ]
    assert rows[1][6].isoformat() == "2026-11-24T09:05:00+00:00"  # +01:00 stored as the same instant
    assert rows[3][7] == "m-1" and rows[3][8] is None  # an extra field not on the allow-list is not kept there...
    assert {r[9] for r in rows} == {platform.settings.topic}
    copies = platform.query("SELECT raw_value FROM staging.raw_events")
    assert [json.loads(bytes(v)) for (v,) in copies] == [json.loads(lines[3])]  # ...but in the audit copy

    dupes = platform.query("SELECT transaction_id, status FROM staging.duplicate_transactions")
    assert dupes == [("t-2", "settled")]

    rejected = dict(
        (text if text is not None else "", reason)
        for text, reason in platform.query("SELECT raw_text, reason FROM staging.rejected_transactions")
    )
    assert len(rejected) == 9
    by_text = {text: reason for text, reason in rejected.items()}
    assert by_text["{this is not json"].startswith("not valid JSON")
    assert by_text["[1, 2, 3]"].startswith("not a JSON object")
    reasons = sorted(rejected.values())
    for fragment in [
        "missing required field(s): amount",
        "amount must be greater than 0",
        "currency 'XYZ' is not one of the configured currency values",
        "region 'MARS' is not one of the configured region values",
        "event_time '24/11/2026 10:00' is not a valid RFC 3339 date-time",
        "event_time '2026-11-24T10:00:00' is not an RFC 3339 date-time",
        "status 'approved' is not one of",
    ]:
        assert any(fragment in r for r in reasons), fragment
    raw = platform.query("SELECT raw_value FROM staging.rejected_transactions WHERE raw_text = '{this is not json'")
    assert bytes(raw[0][0]) == b"{this is not json"  # verbatim

    assert_every_offset_accounted_for(platform)

    # A second run finds nothing new: exactly once across runs.
    again = json.loads(platform.txmon("ingest", "--until-idle").stdout)
    assert again["consumed"] == 0
    assert platform.query("SELECT count(*) FROM staging.transactions") == [(4,)]


def test_amounts_land_exactly(platform, tmp_path):
    exact = {"tiny": "0.0001", "max": "999999999999.9999", "threshold": "10000.00"}
    lines = [line(event(f"s-{name}", amount=text)) for name, text in exact.items()]
    # The same values as JSON numbers, written as text: json.dumps would pass them through a float.
    lines += [line(event(f"n-{name}", amount="@")).replace('"@"', text) for name, text in exact.items()]
    source = tmp_path / "amounts.jsonl"
    source.write_text("\n".join(lines))
    platform.txmon("produce", str(source))
    report = json.loads(platform.txmon("ingest", "--until-idle").stdout)
    assert report["landed"] == 6, report
    stored = dict(platform.query("SELECT transaction_id, amount::text FROM staging.transactions"))
    assert stored == {
        "s-tiny": "0.0001",
        "n-tiny": "0.0001",
        "s-max": "999999999999.9999",
        "n-max": "999999999999.9999",
        "s-threshold": "10000.0000",
        "n-threshold": "10000.0000",
    }
    raw = dict(platform.query("SELECT transaction_id, raw_event->>'amount' FROM staging.transactions"))
    assert raw["n-max"] == "999999999999.9999"  # jsonb keeps the number's digits


def test_late_events_land_in_their_own_day(platform, tmp_path):
    source = tmp_path / "late.jsonl"
    source.write_text(
        "\n".join(
            line(event(f"late-{i}", event_time=t))
            for i, t in enumerate(["2025-01-01T00:00:00Z", "2025-03-15T23:59:59.999999Z", "2026-11-24T23:30:00-05:00"])
        )
    )
    platform.txmon("produce", str(source))
    platform.txmon("ingest", "--until-idle")
    placed = platform.query(
        "SELECT tableoid::regclass::text, transaction_id FROM staging.transactions ORDER BY transaction_id"
    )
    assert placed == [
        ("staging.transactions_20250101", "late-0"),
        ("staging.transactions_20250315", "late-1"),
        ("staging.transactions_20261125", "late-2"),  # 23:30 at -05:00 is the next UTC day
    ]


def test_redelivery_of_an_event_landed_by_an_earlier_run(platform, tmp_path):
    """A replay the worker cannot remember (a new process) is caught by PostgreSQL, stored once, recorded."""
    platform.env["TXMON_EXTRA_FIELDS"] = "extra"  # kept in raw_event
    first = tmp_path / "first.jsonl"
    first.write_text("\n".join(line(event(f"r-{i}", extra={"n": i})) for i in range(5)))
    platform.txmon("produce", str(first))
    assert json.loads(platform.txmon("ingest", "--until-idle").stdout)["landed"] == 5

    second = tmp_path / "second.jsonl"
    second.write_text("\n".join([line(event("r-2", extra={"n": 2})), line(event("r-5")), line(event("r-6"))]))
    platform.txmon("produce", str(second))
    report = json.loads(platform.txmon("ingest", "--until-idle").stdout)
    assert (report["landed"], report["duplicates"]) == (2, 1), report

    assert platform.query("SELECT transaction_id FROM staging.duplicate_transactions") == [("r-2",)]
    rows = platform.query(
        "SELECT transaction_id, jsonb_typeof(raw_event), raw_event->'extra'->>'n' FROM staging.transactions "
        "ORDER BY transaction_id"
    )
    assert [r[0] for r in rows] == [f"r-{i}" for i in range(7)]
    assert {r[1] for r in rows} == {"object"}  # the message's JSON object, not a string holding it
    assert rows[2][2] == "2"
    assert_every_offset_accounted_for(platform)


def test_identity_is_transaction_id_and_status_whatever_the_time_or_amount(platform, tmp_path):
    """A second event with the same (transaction_id, status) is stored once and recorded as a duplicate,
    in the same batch or a later run, even with another time (another day) or a lower amount."""
    first = tmp_path / "first.jsonl"
    first.write_text(
        "\n".join(
            [
                line(event("id-1", "pending", amount="20000.00", event_time="2026-11-24T10:00:00Z")),
                line(event("id-1", "pending", amount="5.00", event_time="2026-11-24T10:00:01Z")),  # same batch
            ]
        )
    )
    platform.txmon("produce", str(first))
    assert json.loads(platform.txmon("ingest", "--until-idle").stdout)["duplicates"] == 1
    second = tmp_path / "second.jsonl"
    second.write_text(
        "\n".join(
            [
                line(
                    event("id-1", "pending", amount="1.00", event_time="2026-11-25T09:00:00Z")
                ),  # another day, later run
                line(
                    event("id-1", "settled", amount="20000.00", event_time="2026-11-25T09:00:00Z")
                ),  # a lifecycle update
            ]
        )
    )
    platform.txmon("produce", str(second))
    report = json.loads(platform.txmon("ingest", "--until-idle").stdout)
    assert (report["landed"], report["duplicates"]) == (1, 1), report
    rows = platform.query("SELECT status, amount::text, event_time::date::text FROM staging.transactions ORDER BY 1")
    assert rows == [("pending", "20000.0000", "2026-11-24"), ("settled", "20000.0000", "2026-11-25")]
    dupes = platform.query("SELECT status, event_time::text FROM staging.duplicate_transactions ORDER BY 2")
    assert dupes == [("pending", "2026-11-24 10:00:01+00"), ("pending", "2026-11-25 09:00:00+00")]
    identities = platform.query('SELECT transaction_id, status, "offset" FROM staging.event_identities ORDER BY 2')
    landed = platform.query('SELECT transaction_id, status, "offset" FROM staging.transactions ORDER BY 2')
    assert identities == landed
    assert_every_offset_accounted_for(platform)
