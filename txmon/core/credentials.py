"""Secrets: where they live, how they are made, how each process gets the one it needs."""
# One file per secret in the secrets directory (default ``<state dir>/secrets``, mode 0700; in docker compose
# ``/run/secrets``), each mode 0600. At first set-up (`txmon services up`, `txmon migrate`, or any command on a fresh
# state directory) the passwords of the database roles are generated when the directory is txmon's own; a directory
# given by ``TXMON_SECRETS_DIR`` is read, never written.
#
# No DSN carries a password: a DSN of a role names that role's libpq password file ``<state dir>/pgpass.d/<role>`` (mode
# 0600), written here from its secret. Each process gets the files of its duty's roles alone (``DUTY_ROLES``; the
# admin's only for the services and migrations), and where the kernel allows, cannot read any other secret
# (txmon.core.confine). Nothing secret is printed or exported.

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
import tempfile
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from txmon.core.paths import SYSTEM_STATE_ROOT, only_root_may_change
from txmon.core.settings import ApiGrant, ConfigError, KafkaUser, Role, Settings

FILES = {
    Role.ADMIN: "postgres-admin",
    Role.INGEST: "postgres-ingest",
    Role.RETENTION: "postgres-retention",
    Role.TRANSFORM: "postgres-transform",
    Role.PUBLISH: "postgres-publish",
    Role.DAGSTER: "postgres-dagster",
    Role.BI_READER: "bi-reader",  # never generated: bi_reader has no login until someone gives it a password
    Role.API_REGULATOR: "postgres-api-regulator",
    Role.API_ANALYST: "postgres-api-analyst",
    Role.API_MONITOR: "postgres-api-monitor",
    Role.EXPORTER: "postgres-exporter",
}
GENERATED: tuple[Role, ...] = tuple(role for role in Role if role is not Role.BI_READER)
# The password of each Kafka user by duty (generated with the others); the local broker's configuration holds the
# admin's, `txmon services up` gives the others to the broker as SCRAM credentials.
KAFKA_FILES = {user: f"kafka-{user.value}-password" for user in KafkaUser}
# The HTTP API's local key (analyst, every region), used when TXMON_API_KEYS is empty.
API_KEY_FILE = "api-key"
LOCAL_API_GRANT = ApiGrant(role="analyst", regions=("*",))


class Duty(StrEnum):
    """What a txmon process does, which decides the secrets it may read (each `txmon` command has one)."""

    ADMIN = "admin"  # the services and migrations (`txmon services`, `migrate`, `run`, `bench`): every secret
    INGEST = "ingest"  # `txmon ingest`: lands events
    ORCHESTRATION = "orchestration"  # Dagster and what it runs (dbt, checks, publication, packages, the prune job)
    API = "api"  # `txmon api`
    PRODUCER = "producer"  # `txmon produce`, `txmon generate`: Kafka only
    OFFLINE = "offline"  # `txmon info`, `txmon api-key`: no connection


# The database roles each duty connects as: the password files its processes get, nothing else.
DUTY_ROLES: dict[Duty, tuple[Role, ...]] = {
    Duty.ADMIN: tuple(Role),
    Duty.INGEST: (Role.INGEST,),
    # Dagster's storage; the sensor's lander (TXMON_INGEST_MODE=sensor); dbt and the checks; publication and report
    # packages; the daily prune job.
    Duty.ORCHESTRATION: (Role.DAGSTER, Role.INGEST, Role.TRANSFORM, Role.PUBLISH, Role.RETENTION),
    Duty.API: (Role.API_REGULATOR, Role.API_ANALYST, Role.API_MONITOR),
    Duty.PRODUCER: (),
    Duty.OFFLINE: (),
}
# The other secrets of each duty, by file name in the secrets directory (the signing key: ``readable``).
DUTY_SECRETS: dict[Duty, tuple[str, ...]] = {
    Duty.ADMIN: (),
    Duty.INGEST: (KAFKA_FILES[KafkaUser.INGEST],),
    Duty.ORCHESTRATION: (KAFKA_FILES[KafkaUser.INGEST],),  # the sensor's lander, the offset checks
    Duty.API: (KAFKA_FILES[KafkaUser.API], API_KEY_FILE),
    Duty.PRODUCER: (KAFKA_FILES[KafkaUser.PRODUCER],),
    Duty.OFFLINE: (),
}


def private_dir(path: Path, mode: int = 0o700) -> Path:
    """Create ``path`` (mode ``mode``) or tighten it; refuse one that another user owns or a symlink."""
    if path.is_symlink():
        raise ConfigError(f"{path} is a symbolic link: txmon keeps its state and secrets in a directory of its own")
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    info = path.stat()
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"{path} belongs to uid {info.st_uid}, not to this user: refusing to keep state or secrets there "
            "(set TXMON_STATE_DIR to a directory of your own)"
        )
    if stat.S_IMODE(info.st_mode) != mode:
        path.chmod(mode)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 atomically (readers see the old or the new file; writers in other
    threads or processes each write a file of their own first)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _read(settings: Settings, name: str) -> str | None:
    path = settings.secrets_dir / name
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
    except PermissionError:
        raise ConfigError(f"cannot read the secret {path}: check TXMON_SECRETS_DIR and its permissions") from None


def password(settings: Settings, role: Role) -> str | None:
    """The role's password: its setting when given (admin, bi_reader), else its secret file."""
    given = {Role.ADMIN: settings.pg_password, Role.BI_READER: settings.bi_reader_password}.get(role)
    return given or _read(settings, FILES[role])


def kafka_password(settings: Settings, user: KafkaUser) -> str:
    """The password of the Kafka user of ``user``'s duty, from its secret file."""
    value = _read(settings, KAFKA_FILES[user])
    if value is None:
        raise ConfigError(
            f"TXMON_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs the password of the Kafka user "
            f"{settings.kafka_user(user)} in {settings.secrets_dir / KAFKA_FILES[user]}"
        )
    return value


def _generate(path: Path) -> None:
    """A secret of 24 random bytes, URL-safe (quoted as is in the Kafka broker's JAAS), in ``path`` when missing."""
    if not path.exists():
        write_private(path, secrets.token_urlsafe(24) + "\n")


def local_api_key(settings: Settings) -> str | None:
    """The local key of the HTTP API (generated with the other secrets), or None where none was made."""
    return _read(settings, API_KEY_FILE)


def api_key_digest(key: str) -> str:
    """A key of the HTTP API as its file and the API hold it: its SHA-256 digest, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    """A fresh key of the HTTP API: 32 random bytes, 43 URL-safe characters."""
    return secrets.token_urlsafe(32)


def api_key_line(digest: str, grant: ApiGrant) -> str:
    """One line of TXMON_API_KEYS_FILE: the key's digest, its role, its regions (``*``: every region)."""
    return f"{digest} {grant.role} {','.join(grant.regions)}\n"


_LINE = re.compile(r"(?:sha256:)?(?P<digest>[0-9a-fA-F]{64})\s+(?P<role>\S+)\s+(?P<regions>\S+)")


def _keys_file(settings: Settings) -> dict[str, ApiGrant]:
    """TXMON_API_KEYS_FILE's grants by digest; the file must be readable by its owner alone."""
    path = settings.api_keys_file
    assert path is not None
    where = f"TXMON_API_KEYS_FILE {path}"
    try:
        info = path.stat()
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except (PermissionError, IsADirectoryError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} cannot be read ({type(exc).__name__})") from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(
            f"{where} has mode {stat.S_IMODE(info.st_mode):04o}: other users may read it; make it 0600 (chmod 600)"
        )
    grants: dict[str, ApiGrant] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = _LINE.fullmatch(line.strip())
        if found is None:
            raise ConfigError(
                f"{where} line {number}: not `SHA256-HEX-DIGEST ROLE REGIONS` (`txmon api-key` makes a line)"
            )
        try:
            grant = ApiGrant(role=found["role"], regions=tuple(found["regions"].split(",")))  # type: ignore[arg-type]
        except ValidationError:
            raise ConfigError(f"{where} line {number}: the role is regulator or analyst") from None
        if unknown := set(grant.regions) - set(settings.regions) - {"*"}:
            raise ConfigError(f"{where} line {number}: regions that are not configured: {sorted(unknown)}")
        digest = found["digest"].lower()
        if grants.get(digest, grant) != grant:
            raise ConfigError(f"{where} line {number}: a key given twice with different grants")
        grants[digest] = grant
    if not grants:
        raise ConfigError(f"{where} holds no key (`txmon api-key` makes a line)")
    return grants


def api_keys(settings: Settings) -> dict[str, ApiGrant]:
    """The HTTP API's keys by their SHA-256 digests (``api_key_digest``; the keys' text is not kept): those of
    TXMON_API_KEYS and TXMON_API_KEYS_FILE, else the local key with every region's analyst access."""
    given = {api_key_digest(key): grant for key, grant in settings.api_keys.items()}
    if settings.api_keys_file is not None:
        for digest, grant in _keys_file(settings).items():
            if given.get(digest, grant) != grant:
                raise ConfigError("a key is in TXMON_API_KEYS and TXMON_API_KEYS_FILE with different grants")
            given[digest] = grant
    if given:
        return given
    key = local_api_key(settings)
    if key is None:
        raise ConfigError(
            "TXMON_API_KEYS and TXMON_API_KEYS_FILE are empty and there is no local key in "
            f"{settings.secrets_dir / API_KEY_FILE}"
        )
    return {api_key_digest(key): LOCAL_API_GRANT}


def new_signing_key() -> str:
    """A new Ed25519 private key (PKCS#8 PEM): what report packages are signed with (txmon.reports)."""
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )


def pgpass_line(user: str, secret: str) -> str:
    """One libpq password-file line for ``user`` on any host, port and database."""
    escaped = secret.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:{user}:{escaped}\n"


def ensure(settings: Settings, duty: Duty = Duty.ADMIN) -> None:
    """The private state directory, the secrets (generated when missing and ours), and the password files of
    ``duty``'s roles (``DUTY_ROLES``), each read from its own secret alone: the admin's only for ``Duty.ADMIN``.

    Idempotent and cheap: every txmon command calls it, with its duty, before connecting.
    """
    if settings.state_dir.parent == SYSTEM_STATE_ROOT:  # root's default for a checkout the server cannot enter
        if not only_root_may_change(SYSTEM_STATE_ROOT.parent):
            raise ConfigError(
                f"{SYSTEM_STATE_ROOT.parent} may be changed by users other than root: set TXMON_STATE_DIR to a "
                "private directory"
            )
        private_dir(SYSTEM_STATE_ROOT, 0o711)
    # The server runs as `postgres` when txmon runs as root: it must traverse (not list) the state dir.
    private_dir(settings.state_dir, 0o711 if os.geteuid() == 0 else 0o700)
    private_dir(settings.pgpass_dir)
    admin_passfile = settings.passfile(Role.ADMIN)
    if settings.secrets_dir_override is None:  # txmon's own directory: it makes what is missing
        private_dir(settings.secrets_dir)
        for role in GENERATED:
            # The admin's password given (TXMON_PG_PASSWORD) to the command that wrote its passfile: a process txmon
            # started does not get it (txmon.core.processes.child_env), and keeps that file rather than make another.
            if not (role is Role.ADMIN and (settings.pg_password or admin_passfile.exists())):
                _generate(settings.secrets_dir / FILES[role])
        for name in (API_KEY_FILE, *KAFKA_FILES.values()):
            _generate(settings.secrets_dir / name)
        if settings.report_signing_key_file is None and not settings.report_signing_key_path.exists():
            write_private(settings.report_signing_key_path, new_signing_key())
    for role in DUTY_ROLES[duty]:
        value = password(settings, role)
        if not value:
            continue  # bi_reader without a password; the admin's passfile as given to the command that wrote it
        text = pgpass_line(settings.admin_user if role is Role.ADMIN else role.value, value)
        path = settings.passfile(role)
        try:
            current = path.read_text()
        except FileNotFoundError:
            current = None
        if current != text or stat.S_IMODE(path.stat().st_mode) != 0o600:
            write_private(path, text)
    if duty is Duty.ADMIN:
        # The one passfile of every password that earlier versions kept: each role has its own now.
        (settings.state_dir / "pgpass").unlink(missing_ok=True)


def readable(settings: Settings, duty: Duty) -> tuple[Path, ...]:
    """The secret files a process of ``duty`` reads (its roles' passwords, its keys), all others being closed to it
    (txmon.core.confine)."""
    roles = DUTY_ROLES[duty]
    files = [settings.passfile(role) for role in roles]
    files += [settings.secrets_dir / FILES[role] for role in roles]
    files += [settings.secrets_dir / name for name in DUTY_SECRETS[duty]]
    if duty is Duty.ORCHESTRATION:
        files.append(settings.report_signing_key_path)
    return tuple(files)
