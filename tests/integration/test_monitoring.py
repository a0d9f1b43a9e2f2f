"""Real Prometheus (Debian's package) and the PostgreSQL exporter scrape a running `txmon api` and a
two-process `txmon ingest`: the landed and quarantined counts add up across processes, every alert rule
loads, and every dashboard panel's query evaluates without error on that data."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from orchestration.instance import open_instance
from tests.conftest import REPO
from tests.integration.test_api import running_api
from tests.integration.test_ingest import event, line
from tests.integration.test_live import free_port
from txmon.core.settings import replace
from txmon.core.warehouse import grant_dagster_reads
from txmon.devtools.services.monitoring import Monitoring

DASHBOARDS = sorted((REPO / "services" / "grafana" / "dashboards").glob("*.json"))
VALID = 40
MALFORMED = ["not json at all", json.dumps({"transaction_id": "m-1", "amount": "1"}), json.dumps([1, 2])]


def query(prometheus: httpx.Client, expr: str) -> list[dict]:
    body = prometheus.get("/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def value(prometheus: httpx.Client, expr: str) -> float | None:
    result = query(prometheus, expr)
    return float(result[0]["value"][1]) if result else None


def wait_for(condition, timeout: float, what) -> None:
    """Poll ``condition`` each second; on timeout fail with ``what`` (a text, or a callable saying it then)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(1)


def test_prometheus_scrapes_every_txmon_process_and_every_panel_evaluates(platform, tmp_path: Path):
    source = tmp_path / "events.jsonl"
    events = [event(f"mon-{i}", amount=f"{i + 1}.00", event_time="2026-11-24T10:00:00Z") for i in range(VALID)]
    source.write_text("\n".join([*(line(e) for e in events), *MALFORMED]) + "\n")
    platform.txmon("produce", str(source))
    open_instance(platform.settings).dispose()  # Dagster's tables exist: the monitoring role may read them
    grant_dagster_reads(platform.settings)

    ingest_port = free_port()
    log = open(tmp_path / "ingest.log", "wb")
    ingest = subprocess.Popen(
        [sys.executable, "-m", "txmon.cli", "ingest", "--processes", "2", "--metrics-port", str(ingest_port)],
        env=platform.env,
        cwd=REPO,
        stdout=log,
        stderr=log,
    )
    with running_api(platform, tmp_path) as api:
        settings = replace(
            platform.settings,
            api_port=int(api.base.rsplit(":", 1)[1]),
            ingest_metrics_port=ingest_port,
            prometheus_port=free_port(),
            postgres_exporter_port=free_port(),
        )
        monitoring = Monitoring(settings, root=tmp_path / "prometheus")
        monitoring.start()
        prometheus = httpx.Client(base_url=f"http://127.0.0.1:{settings.prometheus_port}", timeout=30)
        try:
            # Every job answers, and the two ingest processes' counters arrive as one sum.
            wait_for(
                lambda: value(prometheus, "sum(txmon_ingest_landed_events_total)") == VALID,
                90,
                "the landed events never reached Prometheus",
            )
            for job in ("txmon_api", "txmon_ingest", "postgres", "prometheus"):
                wait_for(
                    lambda job=job: value(prometheus, f'min(up{{job="{job}"}})') == 1,
                    30,
                    lambda job=job: f"{job} not up: {prometheus.get('/api/v1/targets').text[:3000]}",
                )
            quarantined = {
                r["metric"]["reason"]: float(r["value"][1])
                for r in query(prometheus, "sum by (reason) (txmon_ingest_quarantined_events_total)")
            }
            assert quarantined == {"not_json": 1, "missing_field": 1, "not_an_object": 1}
            lag = query(prometheus, "txmon_consumer_lag")
            assert len(lag) == settings.topic_partitions and all(float(r["value"][1]) == 0 for r in lag)
            assert value(prometheus, "max(txmon_ingest_last_landed_timestamp_seconds)") > time.time() - 300
            assert value(prometheus, "pg_up") == 1
            assert value(prometheus, "txmon_quarantine_ratio") == len(MALFORMED) / (VALID + len(MALFORMED))
            assert value(prometheus, 'min(txmon_source_up{source="dagster"})') == 1

            rules = prometheus.get("/api/v1/rules").json()["data"]["groups"]
            loaded = [rule for group in rules for rule in group["rules"]]
            assert len(loaded) == 10 and all(rule["health"] == "ok" for rule in loaded), loaded

            # Every panel of every dashboard evaluates against this Prometheus (range queries, as Grafana asks).
            now = time.time()
            evaluated = 0
            for path in DASHBOARDS:
                for panel in json.loads(path.read_text())["panels"]:
                    for target in panel["targets"]:
                        body = prometheus.get(
                            "/api/v1/query_range",
                            params={"query": target["expr"], "start": now - 300, "end": now, "step": 15},
                        ).json()
                        assert body["status"] == "success", (path.name, panel["title"], body)
                        evaluated += 1
            assert evaluated >= 24
            # The landing-rate panel has data once two scrapes saw the counter.
            wait_for(lambda: query(prometheus, "sum(rate(txmon_ingest_landed_events_total[1m]))"), 30, "no rate")
        finally:
            prometheus.close()
            monitoring.stop()
            ingest.terminate()
            ingest.wait(timeout=60)
            log.close()
        # Stopped: neither Prometheus nor the exporter listens any more.
        assert [status.name for status in monitoring.status() if status.up] == []
