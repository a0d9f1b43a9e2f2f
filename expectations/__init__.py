"""Great Expectations suites as code, one module per checked table."""
# Each suite is validated one region x day batch at a time against PostgreSQL through GX's SQL datasource (the file
# context in `gx/`, kept in the repo; the connection comes from txmon's settings at run time): `validate(settings,
# "staging_transactions", day, region)`.

from expectations.suites import SUITES, validate

__all__ = ["SUITES", "validate"]
