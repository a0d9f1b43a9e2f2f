"""How `txmon ingest` shares partitions between processes and sums their reports."""

from ingestion.processes import merge, process_count, split
from txmon.core.settings import Settings, replace


def test_partitions_are_split_round_robin_without_empty_shares():
    assert split([0, 1, 2, 3, 4, 5], 2) == [[0, 2, 4], [1, 3, 5]]
    assert split([0, 1, 2], 4) == [[0], [1], [2]]


def test_process_count_follows_the_setting_and_never_exceeds_the_partitions():
    settings = Settings()
    assert process_count(replace(settings, ingest_processes=3), 6) == 3
    assert process_count(replace(settings, ingest_processes=8), 2) == 2
    assert 1 <= process_count(replace(settings, ingest_processes=0), 6) <= 6


def test_reports_are_summed_over_the_span_of_all_processes():
    one = {
        "consumed": 100,
        "landed": 97,
        "duplicates": 2,
        "quarantined": 1,
        "batches": 3,
        "offset_conflicts": 0,
        "outages": 1,
        "first_poll_at": 10.0,
        "last_commit_at": 12.0,
        "slices": {"2026-11-26|EU": 50, "2026-11-26|US": 47},
    }
    two = {
        "consumed": 300,
        "landed": 300,
        "duplicates": 0,
        "quarantined": 0,
        "batches": 2,
        "offset_conflicts": 1,
        "outages": 2,
        "first_poll_at": 11.0,
        "last_commit_at": 14.0,
        "slices": {"2026-11-26|EU": 300},
    }
    merged = merge([one, two])
    assert (merged["consumed"], merged["landed"], merged["duplicates"], merged["quarantined"]) == (400, 397, 2, 1)
    assert merged["seconds_first_poll_to_last_commit"] == 4.0  # 10.0 to 14.0, not the sum of 2 s and 3 s
    assert merged["events_per_second"] == 100.0
    assert merged["slices"] == {"2026-11-26|EU": 350, "2026-11-26|US": 47}
    assert merged["processes"] == 2
    assert merged["outages"] == 3
