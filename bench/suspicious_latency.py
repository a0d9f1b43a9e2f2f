"""Time from producing an over-threshold transaction to its row in marts.suspicious_activity.

Run it while the platform is live (`txmon run --tps 10000` in another terminal):
    .venv/bin/python bench/suspicious_latency.py --tries 5
Each try produces one 50,000 USD transaction dated now and polls the mart until it appears.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from datetime import UTC, datetime

from txmon import kafka as kafka_clients
from txmon.config import Settings
from txmon.db import connect


def one_try(settings: Settings, timeout: float) -> float | None:
    tx = f"probe-{uuid.uuid4()}"
    event = {
        "transaction_id": tx, "account_id": "acc-probe", "amount": "50000.00", "currency": "USD",
        "region": "US", "status": "settled", "event_time": datetime.now(UTC).isoformat(),
    }
    producer = kafka_clients.producer(settings)
    started = time.monotonic()
    producer.produce(settings.topic, key=b"acc-probe", value=json.dumps(event).encode())
    producer.flush(30)
    with connect(settings.warehouse_dsn, autocommit=True, purpose="bench") as conn:
        while time.monotonic() - started < timeout:
            if conn.execute("SELECT 1 FROM marts.suspicious_activity WHERE transaction_id = %s", (tx,)).fetchone():
                return time.monotonic() - started
            time.sleep(0.5)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    settings = Settings.from_env()
    seen = []
    for i in range(args.tries):
        latency = one_try(settings, args.timeout)
        outcome = f"not seen within {args.timeout:.0f}s" if latency is None else f"{latency:.1f}s"
        print(f"try {i + 1}: {outcome}", flush=True)
        if latency is not None:
            seen.append(latency)
    if seen:
        print(json.dumps({"tries": args.tries, "seen": len(seen), "median_s": round(statistics.median(seen), 1),
                          "worst_s": round(max(seen), 1)}))


if __name__ == "__main__":
    main()
