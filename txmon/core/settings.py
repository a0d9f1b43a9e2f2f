"""The one settings object of txmon: typed fields read from ``TXMON_*`` variables, validated, with
one-line errors that name the variable."""
# Every component (CLI, ingestion, services, Dagster, dbt vars, benchmarks) reads its settings from
# ``Settings.from_env()``; nothing else reads ``TXMON_*`` variables. Each setting has a default that
# runs the whole platform on one machine; ``txmon info --json`` prints the effective values.
#
# Each setting is a field read from ``TXMON_<FIELD>`` (the ``*_override`` fields from the variable
# their alias names): lists comma-separated (``TXMON_REGIONS=EU,US``), mappings JSON objects
# (``TXMON_REGION_DSNS={"EU": "postgresql://..."}``). An empty variable is unset; other ``TXMON_*``
# variables are ignored. A bad value is a ``ConfigError`` of one line naming the variable.

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from txmon.core import urls
from txmon.core.env_source import MappingEnvSource
from txmon.core.paths import REPO_ROOT as REPO_ROOT  # its home before txmon.core.paths
from txmon.core.paths import default_state_dir

DEFAULT_REGIONS = ("EU", "US", "APAC")
DEFAULT_CURRENCIES = ("USD", "EUR", "GBP", "CHF", "JPY", "SGD", "HKD", "AUD", "CAD", "INR")
# The shortest key of the HTTP API TXMON_API_KEYS may give (`txmon api-key` makes keys of 43 characters).
MIN_API_KEY_LENGTH = 32


class ConfigError(ValueError):
    """A setting has a value txmon cannot use. The message names the variable."""


class Role(StrEnum):
    """The database roles, one per duty (created by migration 0006_roles); each component connects as its own.

    ``ADMIN`` is the configured superuser (``TXMON_PG_USER``): migrations and the local services only.
    """

    ADMIN = "admin"
    INGEST = "txmon_ingest"  # lands Kafka events: INSERTs into staging, its positions and batch log; deletes nothing
    RETENTION = "txmon_retention"  # the prune job alone: deletes what is past its retention (migration 0018)
    TRANSFORM = "txmon_transform"  # dbt and the checks: reads staging, writes intermediate and marts
    PUBLISH = "txmon_publish"  # copies checked mart partitions to reporting, appends the publication log
    DAGSTER = "txmon_dagster"  # Dagster's own storage (the dagster database)
    BI_READER = "bi_reader"  # BI tools and regulators: reads reporting, nothing else
    API_REGULATOR = "txmon_api_regulator"  # the HTTP API for a regulator's key: reads reporting only
    API_ANALYST = "txmon_api_analyst"  # the HTTP API for an analyst's key: reporting and staging's landed events
    API_MONITOR = "txmon_api_monitor"  # the API's /health and /metrics: positions, batch counts, publications, Dagster
    EXPORTER = "txmon_exporter"  # the PostgreSQL exporter: the server's statistics (pg_monitor), no table of txmon's


class KafkaUser(StrEnum):
    """The Kafka users, one per duty (their ACLs: txmon/devtools/services/kafka.py); each client connects as its own.

    The value is the duty's key in TXMON_KAFKA_USERS and the user's default name.
    """

    ADMIN = "admin"  # super user: `txmon services up` alone (topics, the users' credentials, ACLs)
    INGEST = "ingest"  # ingest workers and Dagster: reads the topic in the consumer group, writes the quarantine topic
    PRODUCER = "producer"  # the generator, `txmon produce`, replays: writes the topic, nothing else
    API = "api"  # the HTTP API's /health and /metrics: describes the topic (its partitions and end offsets)


def _json_number(value: Decimal) -> int | float | str:
    if value == value.to_integral_value():
        return int(value)
    return float(value) if Decimal(repr(float(value))) == value else str(value)


# ---------------------------------------------------------------------------------- value types
def _text(parse: Callable[[str], Any]) -> BeforeValidator:
    """A variable's text parsed by ``parse``; a typed value (``Settings(...)``, ``replace``) as given."""
    return BeforeValidator(lambda value: parse(value) if isinstance(value, str) else value)


def _csv(text: str) -> tuple[str, ...]:
    """``" EU, US,"`` -> ``("EU", "US")``: items stripped, empty ones dropped."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


Whole = Annotated[int, _text(int)]  # as int() reads it: " 42", "+42", "16_777_216"; not "42.0"
IsoDate = Annotated[date, _text(date.fromisoformat)]
Directory = Annotated[Path, _text(lambda text: Path(text).expanduser().resolve())]
File = Annotated[Path, _text(lambda text: Path(text).expanduser().absolute())]
# Comma-separated (NoDecode: not JSON), at least one name, each matching its pattern.
Regions = Annotated[
    tuple[Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,15}$")], ...],
    NoDecode,
    _text(_csv),
    Field(min_length=1),
]
Currencies = Annotated[
    tuple[Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")], ...], NoDecode, _text(_csv), Field(min_length=1)
]
FieldNames = Annotated[tuple[str, ...], NoDecode, _text(lambda text: tuple(dict.fromkeys(_csv(text))))]
PositiveDecimal = Annotated[Decimal, Field(gt=0)]
ApiRegions = Annotated[tuple[str, ...], Field(min_length=1)]  # and finite: a Decimal field refuses NaN and Infinity

# What the text of a variable that does not parse is not, by the field's type; the errors of one
# that parses but is out of bounds.
_NOT_A = {int: "a whole number", float: "a number", Decimal: "a decimal", date: "a YYYY-MM-DD date"}
_OUT_OF_BOUNDS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}


class ApiGrant(BaseModel):
    """What one key of the HTTP API may read: a role's paths, in some regions (``*``: every region)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["regulator", "analyst"]
    regions: ApiRegions

    def region_list(self, configured: tuple[str, ...]) -> tuple[str, ...]:
        return configured if "*" in self.regions else tuple(r for r in configured if r in self.regions)


class RuleParameters(BaseModel):
    """The parameters of the AML typologies of one region (docs/rules.md): structuring, several payments each just
    under the suspicious threshold that together exceed it; velocity, a burst of payments from one account."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Structuring: at least `min_transactions` of an account's transactions within any `window_hours`, each at least
    # `min_ratio` of the region's threshold in USD and not over it, together over it.
    structuring_min_ratio: Decimal = Field(Decimal("0.9"), gt=0, le=1)
    structuring_min_transactions: int = Field(3, ge=2, le=1000)
    structuring_window_hours: int = Field(24, ge=1, le=168)
    # Velocity: more than `max_transactions` of an account's transactions within any `window_minutes`.
    velocity_max_transactions: int = Field(20, ge=1, le=100_000)
    velocity_window_minutes: int = Field(60, ge=1, le=1440)


ALL_REGIONS = "*"  # TXMON_RULES' key for what every region gets unless its own entry says otherwise


GLOBAL_REPORTS = "global"  # the report packages of the home database's roll-up, beside the regions'


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TXMON_",
        env_ignore_empty=True,  # TXMON_X= is unset, as if absent
        validate_default=False,  # the defaults below are valid; checking them each time would double from_env's cost
        frozen=True,
        extra="forbid",
        validate_by_name=True,  # Settings(...) and replace() take field names, also of aliased fields
    )

    state_dir: Directory = Field(default_factory=default_state_dir)

    # PostgreSQL: the project's own cluster (not the machine's default one).
    pg_host: str = "127.0.0.1"
    pg_port: Whole = Field(15432, ge=1, le=65535)
    pg_user: str = "txmon"
    # The admin role's password: TXMON_PG_PASSWORD, else <secrets dir>/postgres-admin (generated at
    # first set-up, like every role's). DSNs never carry it: libpq reads <state dir>/pgpass.d/admin.
    pg_password: str | None = Field(None, repr=False)
    # One file per secret (txmon/core/credentials.py); default <state dir>/secrets, mode 0700.
    secrets_dir_override: Directory | None = Field(None, validation_alias="TXMON_SECRETS_DIR")
    warehouse_db: str = "txmon"
    dagster_db: str = "dagster"
    # Full libpq URLs override the parts above (a managed database, docker compose).
    warehouse_dsn_override: str | None = Field(None, validation_alias="TXMON_WAREHOUSE_DSN")
    dagster_dsn_override: str | None = Field(None, validation_alias="TXMON_DAGSTER_DSN")
    # Data residency: region -> libpq URL of the database that holds that region's raw data.
    # Regions not listed live in the warehouse database.
    region_dsns: dict[str, str] = Field(
        default_factory=dict, description='a JSON object like {"EU": "postgresql://..."}'
    )

    # Kafka: a single combined broker+controller in KRaft mode.
    kafka_host: str = "127.0.0.1"
    kafka_port: Whole = Field(19092, ge=1, le=65535)
    kafka_controller_port: Whole = Field(19093, ge=1, le=65535)
    kafka_bootstrap_override: str | None = Field(None, validation_alias="TXMON_KAFKA_BOOTSTRAP")
    kafka_heap: str = "512m"
    # How txmon's Kafka clients authenticate: SASL_PLAINTEXT (the local broker listens on 127.0.0.1 only; SASL_SSL
    # beyond one host) with SCRAM-SHA-512. Each client connects as the user of its duty (KafkaUser), named by
    # TXMON_KAFKA_USERS (a JSON object duty -> name, over the defaults: the duty's own name), its password in
    # <secrets dir>/kafka-<duty>-password (generated at set-up, mode 0600). The admin authenticates with PLAIN
    # (kafka_admin_sasl_mechanism): the local broker knows its password from its own configuration, not from a SCRAM
    # credential that would have to be stored first.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "SASL_PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_admin_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "PLAIN"
    kafka_users: dict[KafkaUser, str] = Field(
        default_factory=dict,
        description='a JSON object like {"ingest": "svc-ingest"} (duties: admin, ingest, producer, api)',
    )
    topic: str = "payments.transactions"
    quarantine_topic: str = "payments.transactions.quarantine"
    topic_partitions: Whole = Field(6, ge=1, le=1024)
    consumer_group: str = "txmon-ingest"

    # The contract's configurable sets and the monitoring rules.
    regions: Regions = Field(DEFAULT_REGIONS, description="regions are upper-case names like EU,US,APAC")
    currencies: Currencies = Field(DEFAULT_CURRENCIES, description="currencies are ISO 4217 codes like USD,EUR")
    suspicious_threshold_usd: Decimal = Field(Decimal("10000"), gt=0, description="a positive decimal")
    suspicious_threshold_usd_by_region: dict[str, PositiveDecimal] = Field(
        default_factory=dict, description='a JSON object like {"EU": "15000"}'
    )
    # The AML typologies' parameters (RuleParameters), by region, over ALL_REGIONS ("*"), over the defaults; each
    # change is recorded with the time it takes effect (intermediate.rule_parameters), so an old day is judged by the
    # parameters in force then.
    rules: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='a JSON object like {"*": {"velocity_max_transactions": 30}, "EU": {...}}',
    )
    # How long before a transaction's latest event an upstream fraud flag still makes it suspicious (days).
    lifecycle_window_days: Whole = Field(7, ge=0, le=3660)
    partitions_start_date: IsoDate = date(2025, 1, 1)

    # Who lands the data: the Dagster sensor itself ("sensor"), or standalone `txmon ingest`
    # workers ("worker", the sensor then only reports what they landed).
    ingest_mode: Literal["sensor", "worker"] = "sensor"
    # Processes of one `txmon ingest` (the topic's partitions split between them); 0: one per CPU core.
    ingest_processes: Whole = Field(0, ge=0, le=256)
    # Monitoring (docs/monitoring.md). Where an ingest process (`txmon ingest`, the sensor's lander)
    # serves its Prometheus metrics (`--metrics-port` overrides it; 0: not served; `txmon run` uses 9464),
    # on which address (0.0.0.0 in a container); the ports of the API, Prometheus and the exporter.
    ingest_metrics_port: Whole = Field(0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    api_port: Whole = Field(8080, ge=1, le=65535)
    prometheus_port: Whole = Field(9090, ge=1, le=65535)
    postgres_exporter_port: Whole = Field(9187, ge=1, le=65535)
    # The live refresh run (marts_refresh) keeps refreshing what lands, in one warm process, for up to this
    # many seconds (it ends sooner after a minute with nothing to refresh); 0: one pass over its partitions.
    refresh_run_seconds: Whole = Field(600, ge=0, le=86400)
    # A stop of `txmon run` or `txmon dagster` gives the runs in flight this many seconds to end by themselves (a
    # live refresh run ends its cycle), then terminates those left: they end canceled.
    stop_grace_seconds: Whole = Field(30, ge=0, le=3600)
    # Dagster runs (and sensor-reported events) older than this are pruned daily.
    dagster_retention_days: Whole = Field(30, ge=1, le=3660)

    # Data quality: how far in the future an event_time may lie (clock skew) before staging's suite
    # fails; how stale staging and the marts may be before their freshness checks fail.
    max_future_skew_seconds: Whole = Field(300, ge=0, le=86400)
    staging_freshness_minutes: Whole = Field(15, ge=1, le=100_000)
    marts_freshness_minutes: Whole = Field(60, ge=1, le=100_000)
    # The read-only role of BI tools and regulators (reporting schema only); its password is set by
    # the migrations from TXMON_BI_READER_PASSWORD or <secrets dir>/bi-reader (NOLOGIN without one).
    bi_reader_password: str | None = Field(None, repr=False)

    # The HTTP API (`txmon api`, docs/api.md): each bearer key's role and regions, from TXMON_API_KEYS (the keys,
    # MIN_API_KEY_LENGTH characters or more) and TXMON_API_KEYS_FILE (their SHA-256 digests, one a line, a file of
    # mode 0600; `txmon api-key` makes a line). Neither: one local key (analyst, every region) generated in the
    # secrets directory, which `txmon run` prints.
    api_keys: dict[str, ApiGrant] = Field(
        default_factory=dict,
        repr=False,
        description='a JSON object like {"KEY": {"role": "regulator", "regions": ["EU"]}} (roles: regulator, analyst)',
    )
    api_keys_file: File | None = None
    # Connections the API keeps open per database and role (a pool each).
    api_pool_size: Whole = Field(4, ge=1, le=100)
    # Requests the API answers per minute for one key and for one client address (a token bucket each: a
    # burst may spend a minute's allowance at once); beyond them a 429 with Retry-After.
    api_key_requests_per_minute: Whole = Field(1200, ge=1, le=1_000_000)
    api_address_requests_per_minute: Whole = Field(2400, ge=1, le=1_000_000)
    # /metrics and /health answer from a reading of their sources at most this many seconds old (read once
    # per interval whatever the scrape rate; 0: read at each request, still one reading at a time).
    api_status_cache_seconds: Whole = Field(5, ge=0, le=3600)

    # Ingestion micro-batches: whichever bound is reached first closes a batch.
    batch_max_events: Whole = Field(20000, ge=1, le=1_000_000)
    batch_max_bytes: Whole = Field(16 * 1024 * 1024, ge=1_048_576, le=1_073_741_824)
    batch_max_seconds: float = Field(0.5, gt=0, le=60, description="above 0 and at most 60")
    # How long one outage of PostgreSQL or Kafka may last before an ingest worker gives up (exit 1).
    outage_budget_seconds: Whole = Field(300, ge=1, le=86_400)

    # Retention and privacy (docs/operations.md, "Retention and privacy"). Extra event fields (beyond the
    # contract's) kept in staging.transactions.raw_event; the verbatim message of an event that had
    # others goes to staging.raw_events for raw_event_retention_days (0: not kept). Quarantined
    # messages, duplicates and the batch log are pruned after their days (once the offset audit
    # verified them); Dagster's check evaluations after dagster_retention_days like its runs. Dagster
    # metadata shows counts; up to metadata_sample_size failing values (transaction ids) only when set.
    extra_fields: FieldNames = ()
    raw_event_retention_days: Whole = Field(30, ge=0, le=3660)
    quarantine_retention_days: Whole = Field(90, ge=1, le=3660)
    duplicate_retention_days: Whole = Field(30, ge=1, le=3660)
    batch_log_retention_days: Whole = Field(30, ge=1, le=3660)
    metadata_sample_size: Whole = Field(0, ge=0, le=1000)

    # Report packages (docs/reports.md): each region's in a directory of its own, <reports dir>/<region> unless
    # TXMON_REPORT_DIRS names one (an object-store mount in the region, say); signed with the Ed25519 key in
    # TXMON_REPORT_SIGNING_KEY_FILE, else <secrets dir>/report-signing-key (generated at set-up).
    reports_dir_override: Directory | None = Field(None, validation_alias="TXMON_REPORTS_DIR")
    report_dirs: dict[str, Directory] = Field(
        default_factory=dict, description='a JSON object like {"EU": "/mnt/eu-reports"}'
    )
    report_signing_key_file: Directory | None = None

    @model_validator(mode="after")
    def _mappings_name_configured_regions(self) -> Settings:
        for variable, mapping in (
            ("TXMON_REGION_DSNS", self.region_dsns),
            ("TXMON_SUSPICIOUS_THRESHOLD_USD_BY_REGION", self.suspicious_threshold_usd_by_region),
            ("TXMON_REPORT_DIRS", self.report_dirs),
        ):
            unknown = set(mapping) - set(self.regions) - ({GLOBAL_REPORTS} if mapping is self.report_dirs else set())
            if unknown:
                raise ConfigError(f"{variable} names regions that are not configured: {sorted(unknown)}")
        if unknown := set(self.rules) - set(self.regions) - {ALL_REGIONS}:
            raise ConfigError(f"TXMON_RULES names regions that are not configured: {sorted(unknown)}")
        for region in self.regions:
            try:
                self.rule_parameters(region)
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(map(str, error["loc"]))
                raise ConfigError(f"TXMON_RULES: {where}: {error['msg']}") from None
        for grant in self.api_keys.values():
            if unknown := set(grant.regions) - set(self.regions) - {"*"}:
                raise ConfigError(f"TXMON_API_KEYS names regions that are not configured: {sorted(unknown)}")
        if any(not key.strip() or key != key.strip() for key in self.api_keys):
            raise ConfigError("TXMON_API_KEYS: a key is empty or has spaces around it")
        if short := sum(len(key) < MIN_API_KEY_LENGTH for key in self.api_keys):
            raise ConfigError(
                f"TXMON_API_KEYS: {short} key(s) shorter than {MIN_API_KEY_LENGTH} characters "
                "(`txmon api-key` makes one)"
            )
        return self

    # ------------------------------------------------------------------ derived values
    def rule_parameters(self, region: str) -> RuleParameters:
        """The AML typologies' parameters of ``region`` now: its TXMON_RULES entry over "*" over the defaults."""
        return RuleParameters(**{**self.rules.get(ALL_REGIONS, {}), **self.rules.get(region, {})})

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap_override or f"{self.kafka_host}:{self.kafka_port}"

    def kafka_user(self, user: KafkaUser) -> str:
        """The Kafka user name of a duty: TXMON_KAFKA_USERS' when given, else the duty's own."""
        return self.kafka_users.get(user) or user.value

    @property
    def secrets_dir(self) -> Path:
        return self.secrets_dir_override or self.state_dir / "secrets"

    def report_dir(self, region: str) -> Path:
        """Where the region's report packages (GLOBAL_REPORTS: the home database's roll-up's) and the public key they
        verify with are kept."""
        return self.report_dirs.get(region) or (self.reports_dir_override or self.state_dir / "reports") / region

    @property
    def report_signing_key_path(self) -> Path:
        return self.report_signing_key_file or self.secrets_dir / "report-signing-key"

    @property
    def pgpass_dir(self) -> Path:
        """The libpq password files, one per role (credentials.ensure writes them from the secrets, mode 0600)."""
        return self.state_dir / "pgpass.d"

    def passfile(self, role: Role) -> Path:
        """The libpq password file a DSN of ``role`` names: that role's password alone."""
        return self.pgpass_dir / role.value

    @property
    def dagster_home(self) -> Path:
        """DAGSTER_HOME: <state dir>/dagster, one per Dagster database (dagster-<database> for another one)."""
        default = type(self).model_fields["dagster_db"].default
        return self.state_dir / ("dagster" if self.dagster_db == default else f"dagster-{self.dagster_db}")

    def _dsn(self, database: str) -> str:
        query = urls.query({"passfile": str(self.passfile(Role.ADMIN))})
        return f"postgresql://{quote(self.pg_user, safe='')}@{self.pg_host}:{self.pg_port}/{database}?{query}"

    def _given(self, dsn: str) -> str:
        """A configured URL: without a password of its own, libpq reads the admin's passfile."""
        return urls.with_passfile(dsn, self.passfile(Role.ADMIN))

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
        """The same database as ``dsn``, connected as ``role`` (its password from the role's passfile)."""
        return dsn if role is Role.ADMIN else urls.as_user(dsn, role.value, self.passfile(role))

    def dsn_for_region(self, region: str, role: Role = Role.ADMIN) -> str:
        """The one answer to "which database does region R live in" (connected as ``role``)."""
        if region not in self.regions:
            raise ConfigError(f"region {region!r} is not one of the configured regions {list(self.regions)}")
        given = self.region_dsns.get(region)
        return self.as_role(self._given(given) if given else self.warehouse_dsn, role)

    def local_region_dsn(self, region: str) -> str:
        """The URL of a database of ``region``'s own on the local cluster (`txmon run --multi-region`), named after
        the warehouse (txmon_eu)."""
        return f"postgresql://{self.pg_user}@{self.pg_host}:{self.pg_port}/{self.warehouse_db}_{region.lower()}"

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
        out = {
            key: (str(value) if isinstance(value, Path | Decimal | date) else value)
            for key, value in self.model_dump().items()
            if not key.endswith("_override") and key not in ("pg_password", "bi_reader_password", "api_keys")
        }
        out.update(
            # A JSON number when it is one exactly (10000, 12500.5), else the decimal's text.
            suspicious_threshold_usd=_json_number(self.suspicious_threshold_usd),
            # No secret is printed: local DSNs name their role's passfile; a password in a configured URL is masked.
            warehouse_dsn=urls.redact(self.warehouse_dsn),
            dagster_dsn=urls.redact(self.dagster_dsn),
            secrets_dir=str(self.secrets_dir),
            pgpass_dir=str(self.pgpass_dir),
            roles={role.name.lower(): (self.admin_user if role is Role.ADMIN else role.value) for role in Role},
            kafka_bootstrap=self.kafka_bootstrap,
            kafka_users={user.value: self.kafka_user(user) for user in KafkaUser},
            regions=list(self.regions),
            currencies=list(self.currencies),
            region_dsns={region: urls.redact(self.dsn_for_region(region)) for region in self.regions},
            suspicious_threshold_usd_by_region={r: str(t) for r, t in self.suspicious_threshold_usd_by_region.items()},
            rules={region: self.rule_parameters(region).model_dump(mode="json") for region in self.regions},
        )
        return out

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``TXMON_*`` environment variables (``env``, else ``os.environ``) over the defaults."""
        environ = os.environ if env is None else env
        try:
            # `_build_sources`: pydantic-settings' constructor argument for the sources (not in the model's signature).
            return cls(_build_sources=((MappingEnvSource(cls, environ),), {}))  # type: ignore[call-arg]
        except ValidationError as exc:
            raise cls._one_line(exc.errors()[0], environ) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """``Settings(...)``: its arguments over the defaults, no variable (``from_env`` reads them)."""
        return (init_settings,)

    @classmethod
    def _one_line(cls, error: ErrorDetails, given: Mapping[str, Any]) -> ConfigError:
        """The first validation error as one line: the variable, its value, what the value must be."""
        if isinstance(cause := error.get("ctx", {}).get("error"), ConfigError):
            return cause
        key = str(error["loc"][0])
        name = next(n for n, f in cls.model_fields.items() if key in (n, f.validation_alias))
        field = cls.model_fields[name]
        variable = str(field.validation_alias or f"TXMON_{name.upper()}")
        value = given.get(variable, given.get(name, error["input"]))
        kind: Any = field.annotation
        what = field.description or error["msg"]
        if get_origin(kind) is Literal:
            *others, last = get_args(kind)
            return ConfigError(f"{variable}={value!r}: use {', '.join(others)} or {last}")
        if get_origin(kind) is tuple:
            return ConfigError(f"{variable}={value!r}: {what}")
        if kind in _NOT_A and error["type"] not in _OUT_OF_BOUNDS:
            return ConfigError(f"{variable}={value!r} is not {_NOT_A[kind]}")
        if kind is int:
            low, high = (next(getattr(m, b) for m in field.metadata if hasattr(m, b)) for b in ("ge", "le"))
            return ConfigError(f"{variable}={int(value)} is outside {low}..{high}")
        return ConfigError(f"{variable} must be {what}")


def replace(settings: Settings, /, **changes: Any) -> Settings:
    """``settings`` with ``changes`` (by field name), validated as the variables are (dataclasses.replace's role)."""
    if unknown := changes.keys() - type(settings).model_fields.keys():
        raise TypeError(f"Settings has no field {', '.join(sorted(unknown))}")
    try:
        return type(settings)(**{**dict(settings), **changes})
    except ValidationError as exc:
        raise settings._one_line(exc.errors()[0], changes) from None
