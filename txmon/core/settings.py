"""The one settings object of txmon.

Every component (CLI, ingestion, services, Dagster, dbt vars, benchmarks) reads its settings from
``Settings.from_env()``; nothing else reads ``TXMON_*`` variables. Each setting has a default that
runs the whole platform on one machine; ``txmon info --json`` prints the effective values.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict

REPO_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_REGIONS = ("EU", "US", "APAC")
DEFAULT_CURRENCIES = ("USD", "EUR", "GBP", "CHF", "JPY", "SGD", "HKD", "AUD", "CAD", "INR")


class ConfigError(ValueError):
    """A setting has a value txmon cannot use. The message names the variable."""


class Role(StrEnum):
    """The database roles, one per duty (created by migration 0006_roles); each component connects as its own.

    ``ADMIN`` is the configured superuser (``TXMON_PG_USER``): migrations and the local services only.
    """

    ADMIN = "admin"
    INGEST = "txmon_ingest"  # lands Kafka events: COPY into staging, its positions and batch log
    TRANSFORM = "txmon_transform"  # dbt and the checks: reads staging, writes intermediate and marts
    PUBLISH = "txmon_publish"  # copies checked mart partitions to reporting, appends the publication log
    DAGSTER = "txmon_dagster"  # Dagster's own storage (the dagster database)
    BI_READER = "bi_reader"  # BI tools and regulators: reads reporting, nothing else


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _json_number(value: Decimal) -> int | float | str:
    if value == value.to_integral_value():
        return int(value)
    return float(value) if Decimal(repr(float(value))) == value else str(value)


def _query(params: dict[str, str]) -> str:
    """A URL query libpq reads back exactly (spaces as %20: libpq does not decode '+')."""
    return urlencode(params, safe="/", quote_via=quote)


def redact(dsn: str) -> str:
    """``dsn`` with any password masked (URL or key=value form)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password is not None:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
            dsn = urlunsplit(parts._replace(netloc=netloc))
    return re.sub(r"(password=)[^&\s]*", r"\1***", dsn)


def where(dsn: str) -> str:
    """host:port/database of a DSN, for messages and as a stable name of the database (no user, no secret)."""
    params = conninfo_to_dict(dsn)
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"


def _world_traversable(path: Path) -> bool:
    """True when every directory from / down to ``path`` can be entered by any user."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def default_state_dir() -> Path:
    """Where services keep their data and logs.

    ``<repo>/.txmon`` unless the PostgreSQL server (which runs as the unprivileged ``postgres``
    user when txmon runs as root) could not enter it, e.g. a checkout under ``/root``; then a
    per-checkout directory under ``/var/tmp``.
    """
    in_repo = REPO_ROOT / ".txmon"
    if os.geteuid() != 0 or _world_traversable(REPO_ROOT):
        return in_repo
    digest = hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:10]
    return Path("/var/tmp") / f"txmon-{digest}"


@dataclass(frozen=True)
class Settings:
    state_dir: Path = field(default_factory=default_state_dir)

    # PostgreSQL: the project's own cluster (not the machine's default one).
    pg_host: str = "127.0.0.1"
    pg_port: int = 15432
    pg_user: str = "txmon"
    # The admin role's password: TXMON_PG_PASSWORD, else <secrets dir>/postgres-admin (generated at
    # first set-up, like every role's). DSNs never carry it: libpq reads <state dir>/pgpass.
    pg_password: str | None = None
    # One file per secret (txmon/core/credentials.py); default <state dir>/secrets, mode 0700.
    secrets_dir_override: Path | None = None
    warehouse_db: str = "txmon"
    dagster_db: str = "dagster"
    # Full libpq URLs override the parts above (a managed database, docker compose).
    warehouse_dsn_override: str | None = None
    dagster_dsn_override: str | None = None
    # Data residency: region -> libpq URL of the database that holds that region's raw data.
    # Regions not listed live in the warehouse database.
    region_dsns: Mapping[str, str] = field(default_factory=dict)

    # Kafka: a single combined broker+controller in KRaft mode.
    kafka_host: str = "127.0.0.1"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_bootstrap_override: str | None = None
    kafka_heap: str = "512m"
    # How txmon's Kafka clients authenticate (a secured cluster, docker compose): PLAINTEXT locally;
    # SASL_SSL or SASL_PLAINTEXT with a SCRAM mechanism, the password in <secrets dir>/kafka-password.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_username: str = "txmon"
    topic: str = "payments.transactions"
    quarantine_topic: str = "payments.transactions.quarantine"
    topic_partitions: int = 6
    consumer_group: str = "txmon-ingest"

    # The contract's configurable sets and the monitoring rules.
    regions: tuple[str, ...] = DEFAULT_REGIONS
    currencies: tuple[str, ...] = DEFAULT_CURRENCIES
    suspicious_threshold_usd: Decimal = Decimal("10000")
    suspicious_threshold_usd_by_region: Mapping[str, Decimal] = field(default_factory=dict)
    # A later event of the same transaction is looked for up to this many days after an event.
    lifecycle_window_days: int = 7
    partitions_start_date: date = date(2025, 1, 1)

    # Who lands the data: the Dagster sensor itself ("sensor"), or standalone `txmon ingest`
    # workers ("worker", the sensor then only reports what they landed).
    ingest_mode: str = "sensor"
    # Processes of one `txmon ingest` (the topic's partitions split between them); 0: one per CPU core.
    ingest_processes: int = 0
    # Dagster runs (and sensor-reported events) older than this are pruned daily.
    dagster_retention_days: int = 30

    # Data quality: how far in the future an event_time may lie (clock skew) before staging's suite
    # fails; how stale staging and the marts may be before their freshness checks fail.
    max_future_skew_seconds: int = 300
    staging_freshness_minutes: int = 15
    marts_freshness_minutes: int = 60
    # The read-only role of BI tools and regulators (reporting schema only); its password is set by
    # the migrations from TXMON_BI_READER_PASSWORD or <secrets dir>/bi-reader (NOLOGIN without one).
    bi_reader_password: str | None = None

    # Ingestion micro-batches: whichever bound is reached first closes a batch.
    batch_max_events: int = 20000
    batch_max_bytes: int = 16 * 1024 * 1024
    batch_max_seconds: float = 0.5
    # How long one outage of PostgreSQL or Kafka may last before an ingest worker gives up (exit 1).
    outage_budget_seconds: int = 300

    # Retention and privacy (docs/operations.md, "Retention and privacy"). Extra event fields (beyond the
    # contract's) kept in staging.transactions.raw_event; the verbatim message of an event that had
    # others goes to staging.raw_events for raw_event_retention_days (0: not kept). Quarantined
    # messages, duplicates and the batch log are pruned after their days (once the offset audit
    # verified them); Dagster's check evaluations after dagster_retention_days like its runs. Dagster
    # metadata shows counts; up to metadata_sample_size failing values (transaction ids) only when set.
    extra_fields: tuple[str, ...] = ()
    raw_event_retention_days: int = 30
    quarantine_retention_days: int = 90
    duplicate_retention_days: int = 30
    batch_log_retention_days: int = 30
    metadata_sample_size: int = 0

    # ------------------------------------------------------------------ derived values
    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap_override or f"{self.kafka_host}:{self.kafka_port}"

    @property
    def secrets_dir(self) -> Path:
        return self.secrets_dir_override or self.state_dir / "secrets"

    @property
    def passfile(self) -> Path:
        """The libpq password file every txmon DSN names (written from the secrets, mode 0600)."""
        return self.state_dir / "pgpass"

    def _dsn(self, database: str) -> str:
        query = _query({"passfile": str(self.passfile)})
        return f"postgresql://{quote(self.pg_user, safe='')}@{self.pg_host}:{self.pg_port}/{database}?{query}"

    def _given(self, dsn: str) -> str:
        """A configured URL: without a password of its own, libpq reads the passfile (the admin's line)."""
        params = conninfo_to_dict(dsn)
        if "password" in params or "passfile" in params:
            return dsn
        passfile = _query({"passfile": str(self.passfile)})
        if "://" in dsn:
            return f"{dsn}{'&' if '?' in dsn else '?'}{passfile}"
        return f"{dsn} passfile='{self.passfile}'"

    @property
    def warehouse_dsn(self) -> str:
        """The home database as the admin role (migrations, operators, `txmon info`)."""
        return self._given(self.warehouse_dsn_override) if self.warehouse_dsn_override else self._dsn(self.warehouse_db)

    @property
    def admin_user(self) -> str:
        """The admin role's name: the configured URL's user, else TXMON_PG_USER."""
        return str(conninfo_to_dict(self.warehouse_dsn).get("user") or self.pg_user)

    @property
    def dagster_admin_dsn(self) -> str:
        return self._given(self.dagster_dsn_override) if self.dagster_dsn_override else self._dsn(self.dagster_db)

    @property
    def dagster_dsn(self) -> str:
        """Dagster's storage, as the role that owns it."""
        return self.as_role(self.dagster_admin_dsn, Role.DAGSTER)

    @property
    def admin_dsn(self) -> str:
        """The maintenance database of the local cluster, for creating the others."""
        return self._dsn("postgres")

    def as_role(self, dsn: str, role: Role) -> str:
        """The same database as ``dsn``, connected as ``role`` (its password from the passfile)."""
        if role is Role.ADMIN:
            return dsn
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if k not in ("password", "user")}
        dbname = params.pop("dbname", "")
        host, port = params.get("host", "localhost"), params.get("port", "5432")
        netloc = quote(role.value, safe="")
        if re.fullmatch(r"[A-Za-z0-9.\-]+", host) and port.isdigit():  # a plain host name or IPv4 address
            netloc += f"@{params.pop('host', 'localhost')}:{params.pop('port', '5432')}"
        else:  # a socket directory, several hosts, IPv6: libpq reads them from the query
            netloc += "@"
        params["passfile"] = str(self.passfile)
        return urlunsplit(("postgresql", netloc, "/" + quote(dbname, safe=""), _query(params), ""))

    def dsn_for_region(self, region: str, role: Role = Role.ADMIN) -> str:
        """The one answer to "which database does region R live in" (connected as ``role``)."""
        if region not in self.regions:
            raise ConfigError(f"region {region!r} is not one of the configured regions {list(self.regions)}")
        given = self.region_dsns.get(region)
        return self.as_role(self._given(given) if given else self.warehouse_dsn, role)

    def home_dsn(self, role: Role) -> str:
        """The home (warehouse) database connected as ``role``."""
        return self.as_role(self.warehouse_dsn, role)

    def databases(self) -> dict[str, tuple[str, ...]]:
        """Each distinct regional database with the regions it holds (the warehouse first)."""
        out: dict[str, list[str]] = {self.warehouse_dsn: []}
        for region in self.regions:
            out.setdefault(self.dsn_for_region(region), []).append(region)
        return {dsn: tuple(regions) for dsn, regions in out.items()}

    def info(self) -> dict:
        """The effective settings as plain JSON values (`txmon info --json`)."""
        raw = asdict(self)
        out = {
            key: (str(value) if isinstance(value, Path | Decimal | date) else value)
            for key, value in raw.items()
            if not key.endswith("_override") and key not in ("pg_password", "bi_reader_password")
        }
        out.update(
            # A JSON number when it is one exactly (10000, 12500.5), else the decimal's text.
            suspicious_threshold_usd=_json_number(self.suspicious_threshold_usd),
            # No secret is printed: local DSNs name the passfile; a password in a configured URL is masked.
            warehouse_dsn=redact(self.warehouse_dsn),
            dagster_dsn=redact(self.dagster_dsn),
            secrets_dir=str(self.secrets_dir),
            passfile=str(self.passfile),
            roles={role.name.lower(): (self.admin_user if role is Role.ADMIN else role.value) for role in Role},
            kafka_bootstrap=self.kafka_bootstrap,
            regions=list(self.regions),
            currencies=list(self.currencies),
            region_dsns={region: redact(self.dsn_for_region(region)) for region in self.regions},
            suspicious_threshold_usd_by_region={r: str(t) for r, t in self.suspicious_threshold_usd_by_region.items()},
        )
        return out

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``TXMON_*`` environment variables over the defaults."""
        env = os.environ if env is None else env
        kwargs: dict = {}

        def get(name: str) -> str | None:
            value = env.get(f"TXMON_{name}")
            return value if value not in (None, "") else None

        def integer(name: str, key: str, low: int, high: int) -> None:
            value = get(name)
            if value is None:
                return
            try:
                number = int(value)
            except ValueError:
                raise ConfigError(f"TXMON_{name}={value!r} is not a whole number") from None
            if not low <= number <= high:
                raise ConfigError(f"TXMON_{name}={number} is outside {low}..{high}")
            kwargs[key] = number

        if (value := get("STATE_DIR")) is not None:
            kwargs["state_dir"] = Path(value).expanduser().resolve()
        if (value := get("SECRETS_DIR")) is not None:
            kwargs["secrets_dir_override"] = Path(value).expanduser().resolve()
        if (value := get("KAFKA_SECURITY_PROTOCOL")) is not None:
            if value not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
                raise ConfigError(
                    f"TXMON_KAFKA_SECURITY_PROTOCOL={value!r}: use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
                )
            kwargs["kafka_security_protocol"] = value
        if (value := get("KAFKA_SASL_MECHANISM")) is not None:
            if value not in ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"):
                raise ConfigError(f"TXMON_KAFKA_SASL_MECHANISM={value!r}: use SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN")
            kwargs["kafka_sasl_mechanism"] = value
        for name, key in [
            ("PG_HOST", "pg_host"),
            ("PG_USER", "pg_user"),
            ("PG_PASSWORD", "pg_password"),
            ("WAREHOUSE_DB", "warehouse_db"),
            ("DAGSTER_DB", "dagster_db"),
            ("WAREHOUSE_DSN", "warehouse_dsn_override"),
            ("DAGSTER_DSN", "dagster_dsn_override"),
            ("KAFKA_HOST", "kafka_host"),
            ("KAFKA_BOOTSTRAP", "kafka_bootstrap_override"),
            ("KAFKA_HEAP", "kafka_heap"),
            ("KAFKA_USERNAME", "kafka_username"),
            ("TOPIC", "topic"),
            ("QUARANTINE_TOPIC", "quarantine_topic"),
            ("BI_READER_PASSWORD", "bi_reader_password"),
            ("CONSUMER_GROUP", "consumer_group"),
        ]:
            if (value := get(name)) is not None:
                kwargs[key] = value
        integer("PG_PORT", "pg_port", 1, 65535)
        integer("KAFKA_PORT", "kafka_port", 1, 65535)
        integer("KAFKA_CONTROLLER_PORT", "kafka_controller_port", 1, 65535)
        integer("TOPIC_PARTITIONS", "topic_partitions", 1, 1024)
        integer("BATCH_MAX_EVENTS", "batch_max_events", 1, 1_000_000)
        integer("BATCH_MAX_BYTES", "batch_max_bytes", 1_048_576, 1_073_741_824)
        integer("OUTAGE_BUDGET_SECONDS", "outage_budget_seconds", 1, 86_400)
        integer("INGEST_PROCESSES", "ingest_processes", 0, 256)
        integer("LIFECYCLE_WINDOW_DAYS", "lifecycle_window_days", 0, 3660)
        integer("DAGSTER_RETENTION_DAYS", "dagster_retention_days", 1, 3660)
        integer("MAX_FUTURE_SKEW_SECONDS", "max_future_skew_seconds", 0, 86400)
        integer("STAGING_FRESHNESS_MINUTES", "staging_freshness_minutes", 1, 100_000)
        integer("MARTS_FRESHNESS_MINUTES", "marts_freshness_minutes", 1, 100_000)

        # Retention and privacy.
        if (value := get("EXTRA_FIELDS")) is not None:
            kwargs["extra_fields"] = tuple(dict.fromkeys(_csv(value)))
        integer("RAW_EVENT_RETENTION_DAYS", "raw_event_retention_days", 0, 3660)
        integer("QUARANTINE_RETENTION_DAYS", "quarantine_retention_days", 1, 3660)
        integer("DUPLICATE_RETENTION_DAYS", "duplicate_retention_days", 1, 3660)
        integer("BATCH_LOG_RETENTION_DAYS", "batch_log_retention_days", 1, 3660)
        integer("METADATA_SAMPLE_SIZE", "metadata_sample_size", 0, 1000)

        if (value := get("BATCH_MAX_SECONDS")) is not None:
            try:
                kwargs["batch_max_seconds"] = float(value)
            except ValueError:
                raise ConfigError(f"TXMON_BATCH_MAX_SECONDS={value!r} is not a number") from None
            if not 0 < kwargs["batch_max_seconds"] <= 60:
                raise ConfigError("TXMON_BATCH_MAX_SECONDS must be above 0 and at most 60")

        if (value := get("INGEST_MODE")) is not None:
            if value not in ("sensor", "worker"):
                raise ConfigError(f"TXMON_INGEST_MODE={value!r}: use sensor or worker")
            kwargs["ingest_mode"] = value
        if (value := get("REGIONS")) is not None:
            kwargs["regions"] = _csv(value)
            bad = [r for r in kwargs["regions"] if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,15}", r)]
            if bad or not kwargs["regions"]:
                raise ConfigError(f"TXMON_REGIONS={value!r}: regions are upper-case names like EU,US,APAC")
        if (value := get("CURRENCIES")) is not None:
            kwargs["currencies"] = _csv(value)
            bad = [c for c in kwargs["currencies"] if not re.fullmatch(r"[A-Z]{3}", c)]
            if bad or not kwargs["currencies"]:
                raise ConfigError(f"TXMON_CURRENCIES={value!r}: currencies are ISO 4217 codes like USD,EUR")
        if (value := get("SUSPICIOUS_THRESHOLD_USD")) is not None:
            try:
                threshold = Decimal(value)
            except InvalidOperation:
                raise ConfigError(f"TXMON_SUSPICIOUS_THRESHOLD_USD={value!r} is not a decimal") from None
            if not threshold.is_finite() or threshold <= 0:
                raise ConfigError("TXMON_SUSPICIOUS_THRESHOLD_USD must be a positive decimal")
            kwargs["suspicious_threshold_usd"] = threshold
        if (value := get("SUSPICIOUS_THRESHOLD_USD_BY_REGION")) is not None:
            try:
                mapping = {str(k): Decimal(str(v)) for k, v in json.loads(value).items()}
            except (json.JSONDecodeError, AttributeError, InvalidOperation):
                mapping = None
            if mapping is None or any(not t.is_finite() or t <= 0 for t in mapping.values()):
                raise ConfigError('TXMON_SUSPICIOUS_THRESHOLD_USD_BY_REGION must be a JSON object like {"EU": "15000"}')
            kwargs["suspicious_threshold_usd_by_region"] = mapping
        if (value := get("PARTITIONS_START_DATE")) is not None:
            try:
                kwargs["partitions_start_date"] = date.fromisoformat(value)
            except ValueError:
                raise ConfigError(f"TXMON_PARTITIONS_START_DATE={value!r} is not a YYYY-MM-DD date") from None
        if (value := get("REGION_DSNS")) is not None:
            try:
                mapping = json.loads(value)
            except json.JSONDecodeError:
                mapping = None
            if not isinstance(mapping, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
            ):
                raise ConfigError('TXMON_REGION_DSNS must be a JSON object like {"EU": "postgresql://..."}')
            kwargs["region_dsns"] = mapping

        settings = cls(**kwargs)
        for name, mapping in (
            ("REGION_DSNS", settings.region_dsns),
            ("SUSPICIOUS_THRESHOLD_USD_BY_REGION", settings.suspicious_threshold_usd_by_region),
        ):
            unknown = set(mapping) - set(settings.regions)
            if unknown:
                raise ConfigError(f"TXMON_{name} names regions that are not configured: {sorted(unknown)}")
        return settings
