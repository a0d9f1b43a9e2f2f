"""Report packages at scale: the package of a 10,000,000-event region-day, and of a day with 100,000 suspicious rows,
each built by `txmon report` (its wall time and peak memory), then verified by `txmon report verify`."""
# A package reads `reporting` only, so what it costs follows the published rows, not the events behind them: each
# day's published rows and their publication_log entries are written straight into `reporting` of the benchmark
# database. The 10,000,000-event day is what the settlement section publishes for it: a settlements row per currency
# (6,250,000 transactions) and 0.5% of its transactions suspicious (31,250 rows); the other day has 100,000
# suspicious rows.

from __future__ import annotations

import shutil
from datetime import date

from bench.common import BenchError, reset, run_measured, txmon_argv
from txmon.core.db import connect
from txmon.core.settings import Settings

REGION = "EU"
DAYS = {"region_day_10m_events": (date(2026, 11, 3), 31_250), "suspicious_100k": (date(2026, 11, 4), 100_000)}
TRANSACTIONS = 6_250_000
SETTLEMENTS = """
INSERT INTO reporting.daily_settlements (settlement_date, region, currency, transaction_count, settled_count,
                                         settled_volume)
SELECT %(day)s, %(region)s, currency, %(n)s / 3, %(n)s / 3 * 0.9, round((%(n)s / 3 * 0.9 * 120.37)::numeric, 4)
FROM unnest(ARRAY['CHF', 'EUR', 'GBP']) AS currency
"""
SUSPICIOUS = """
INSERT INTO reporting.suspicious_activity (transaction_id, account_id, counterparty_id, region, amount, currency,
    amount_usd, threshold_usd, status, event_time, event_date, reasons, refreshed_at)
SELECT md5('report' || %(day)s || g::text)::uuid::text, 'acc-' || lpad((g %% 20000)::text, 6, '0'),
       'mch-' || (g %% 2000), %(region)s, round((10000 + random() * 90000)::numeric, 4),
       (ARRAY['CHF', 'EUR', 'GBP'])[1 + g %% 3], round((10000 + random() * 90000)::numeric, 4), 10000, 'settled',
       %(day)s::date + make_interval(secs => g * 86000.0 / %(n)s), %(day)s,
       CASE WHEN g %% 10 = 0 THEN ARRAY['amount_over_threshold', 'fraud_flag'] ELSE ARRAY['amount_over_threshold'] END,
       now()
FROM generate_series(1, %(n)s) AS g
"""
LOGGED = """
INSERT INTO reporting.publication_log (table_name, partition_date, region, run_id, row_count, checks, staging_as_of,
                                       built_as_of, launched_by)
SELECT t, %(day)s, %(region)s, 'bench', (SELECT count(*) FROM reporting.daily_settlements
                                         WHERE t = 'daily_settlements' AND settlement_date = %(day)s)
                                      + (SELECT count(*) FROM reporting.suspicious_activity
                                         WHERE t = 'suspicious_activity' AND event_date = %(day)s),
       '{"bench": {"passed": true, "summary": "rows written by the benchmark"}}', now(), now(), 'bench'
FROM unnest(ARRAY['daily_settlements', 'suspicious_activity']) AS t
"""


def run(settings: Settings, env: dict[str, str]) -> dict:
    reset(settings)
    reports = settings.state_dir / "bench-reports"
    shutil.rmtree(reports, ignore_errors=True)  # packages of an earlier run
    env = {**env, "TXMON_REPORTS_DIR": str(reports)}
    results = {}
    with connect(settings.warehouse_dsn, autocommit=True, purpose="bench") as conn:
        for day, suspicious in DAYS.values():
            params = {"day": day, "region": REGION, "n": TRANSACTIONS}
            conn.execute(SETTLEMENTS, params)
            conn.execute(SUSPICIOUS, {**params, "n": suspicious})
            conn.execute(LOGGED, params)
        conn.execute("VACUUM ANALYZE reporting.suspicious_activity")
    for name, (day, suspicious) in DAYS.items():
        argv = txmon_argv("report", "--date", day.isoformat(), "--region", REGION)
        built = run_measured(argv, env, timeout=600)
        if built.returncode != 0 or "built version 1" not in built.stdout:
            raise BenchError(f"txmon report {day} failed ({built.returncode}): {built.stderr.strip()[-300:]}")
        folder = reports / REGION / day.isoformat() / "v1"
        verified = run_measured(txmon_argv("report", "verify", str(folder)), env, timeout=600)
        if verified.returncode != 0:
            raise BenchError(f"txmon report verify {folder} failed: {verified.stderr.strip()[-300:]}")
        results[name] = {
            "day": day.isoformat(),
            "suspicious_rows": suspicious,
            "transactions": TRANSACTIONS,
            "build_seconds": round(built.seconds, 2),
            "build_peak_rss_mib": round(built.max_rss_mib, 1),
            "verify_seconds": round(verified.seconds, 2),
            "package_mib": round(sum(p.stat().st_size for p in folder.iterdir()) / 2**20, 2),
        }
    return results
