"""The benchmarks behind `txmon bench`: ingest against the COPY limit, freshness, settlement at scale, scaling
(bench/runner.py runs the sections; results in bench/results/)."""
