# The two commands of the README:
#   make run    services up, synthetic payments, Dagster UI with the pipeline live (ARGS="--worker")
#   make test   install, start the services, run every test (what CI runs)
.PHONY: run test bench bootstrap services-up lint lock update-snapshot

bootstrap:
	@scripts/bootstrap

services-up: bootstrap
	@.venv/bin/txmon services up

run: bootstrap
	@.venv/bin/txmon run $(ARGS)

test: services-up
	@.venv/bin/ruff check .
	@scripts/sqlfluff lint dbt_project
	@.venv/bin/pytest

# Benchmarks (bench/): ingest vs the COPY limit, freshness at 10k tx/s, settlement at scale, scaling.
bench: services-up
	@.venv/bin/txmon bench $(ARGS)

# ruff on the Python, sqlfluff (dbt templater, no database needed) on the dbt project.
lint: bootstrap
	@.venv/bin/ruff check .
	@scripts/sqlfluff lint dbt_project

# Re-record tests/unit/snapshots/code_location.json after an intended change of the code location.
update-snapshot: bootstrap
	@TXMON_UPDATE_SNAPSHOT=1 .venv/bin/pytest -q tests/unit/test_orchestration.py -k snapshot

# Re-resolve requirements.lock after changing the pins in pyproject.toml.
lock:
	@python3 -m pip install -q uv==0.13.8 && python3 -m uv pip compile pyproject.toml --extra dev \
	  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --generate-hashes -o requirements.lock
