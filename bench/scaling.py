"""Scaling curve: ingest events/s with 1, 2 and 4 topic partitions, by 1 and 2 ingest processes."""
# A partition is consumed by one process at a time, so partitions bound the parallelism: each configuration gets its own
# topic, preloaded with the same generated events, landed from an empty staging by `txmon ingest --until-idle
# --processes W`.

from __future__ import annotations

from bench.common import bench_env, bench_settings, clear_staging, reset
from bench.ingest import ingest_until_idle, preload


def run(*, events: int, partitions=(1, 2, 4), processes=(1, 2)) -> list[dict]:
    points = []
    for p in partitions:
        names = {
            "topic": f"bench.scale.p{p}",
            "quarantine_topic": f"bench.scale.p{p}.quarantine",
            "topic_partitions": str(p),
        }
        settings, env = bench_settings(**names), bench_env(**names)
        reset(settings)
        preload(settings, events)
        for w in processes:
            if w > p:
                points.append(
                    {
                        "partitions": p,
                        "processes": w,
                        "events_per_second": None,
                        "note": "more processes than partitions: the extra one would idle",
                    }
                )
                continue
            clear_staging(settings)
            summary, measured = ingest_until_idle(env, "--processes", str(w))
            points.append(
                {
                    "partitions": p,
                    "processes": w,
                    "events": summary["consumed"],
                    "seconds": summary["seconds_first_poll_to_last_commit"],
                    "events_per_second": summary["events_per_second"],
                    "peak_rss_mib_per_process": round(measured.max_rss_mib, 1),
                }
            )
    return points
