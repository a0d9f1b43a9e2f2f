"""docker-compose.yml stays in step with the local set-up (no Docker engine runs here to try it)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from txmon.cli import cli
from txmon.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
TXMON_SERVICES = {name: s for name, s in SERVICES.items() if s.get("image") == "txmon:local"}

# The files txmon reads from TXMON_SECRETS_DIR (bi-reader is optional for txmon, given here).
TXMON_SECRETS = {
    "postgres-admin",
    "postgres-ingest",
    "postgres-retention",
    "postgres-transform",
    "postgres-publish",
    "postgres-dagster",
}
# The Kafka users by duty and their password files (txmon.core.credentials.KAFKA_FILES).
KAFKA_SECRETS = {"kafka-admin-password", "kafka-ingest-password", "kafka-producer-password", "kafka-api-password"}
LOOPBACK = {"127.0.0.1", "::1"}


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _secrets(service: dict) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets") or []}


def _strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif node is not None:
        yield str(node)


def _one_shot() -> set[str]:
    """Services others wait for to complete: they run once and must not be restarted."""
    out = set()
    for service in SERVICES.values():
        depends_on = service.get("depends_on") or {}
        if isinstance(depends_on, dict):  # the short syntax (a list) has no conditions
            out |= {
                name for name, dep in depends_on.items() if dep.get("condition") == "service_completed_successfully"
            }
    return out


def host_ip(port) -> str | None:
    """The host address a `ports:` entry publishes on (None: every address of the host)."""
    if isinstance(port, dict):
        return port.get("host_ip")
    text = str(port).split("/")[0]
    if text.startswith("["):  # [::1]:3000:3000
        address, _, rest = text[1:].partition("]")
        return address if rest.startswith(":") else None
    parts = text.split(":")
    return parts[0] if len(parts) == 3 else None


def _kafka_env() -> dict[str, str]:
    return _environment(SERVICES["kafka"])


def _listeners(value: str) -> dict[str, str]:
    """`NAME://host:port,...` -> {NAME: 'host:port'}."""
    return dict(item.split("://", 1) for item in value.split(",") if item)


# ---------------------------------------------------------------------------------- the platform
def test_the_platform_is_all_there():
    assert {
        "postgres",
        "kafka",
        "setup",
        "ingest",
        "generator",
        "dagster-webserver",
        "dagster-daemon",
        "api",
        "prometheus",
        "postgres-exporter",
        "grafana",
    } <= set(SERVICES)


def parse(words: list[str]) -> None:
    """Parse a `txmon` command line as the CLI does, without running it; raises on an unknown sub-command or flag."""
    root = click.Context(cli, info_name="txmon")
    name, command, rest = cli.resolve_command(root, list(words))
    command.make_context(name, rest, parent=root)


def test_txmon_commands_are_real_subcommands():
    parsed = 0
    for service in SERVICES.values():
        command = service.get("command")
        if service.get("image") == "txmon:local" and command:
            parse(command)
            parsed += 1
        entry = service.get("entrypoint")
        if entry and entry[0] == "bash":
            for part in entry[-1].split("&&"):
                words = shlex.split(part)
                if words[0] == "txmon":
                    parse(words[1:])
                    parsed += 1
    assert parsed  # the test sees the commands at all


@pytest.mark.parametrize("words", [["frobnicate"], ["ingest", "--no-such-flag"], ["generate", "--tps", "x"]])
def test_parse_rejects_what_txmon_rejects(words):
    with pytest.raises(click.UsageError):
        parse(words)


def test_settings_in_compose_are_ones_txmon_reads():
    env = SERVICES["ingest"]["environment"]
    txmon_vars = {k: v for k, v in env.items() if k.startswith("TXMON_")}
    settings = Settings.from_env({k: str(v) for k, v in txmon_vars.items()})  # raises on a bad value
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.warehouse_dsn.startswith("postgresql://txmon@postgres:5432/txmon?passfile=")
    # Derived by `txmon dagster-setup` from TXMON_DAGSTER_DSN and the secrets, not written here.
    assert "TXMON_DAGSTER_STORAGE_URL" not in env
    assert env["DAGSTER_HOME"] == f"{env['TXMON_STATE_DIR']}/dagster"
    # Each field is read from TXMON_<NAME>, or from the variable its alias names.
    variables = {field.validation_alias or f"TXMON_{name.upper()}" for name, field in Settings.model_fields.items()}
    for key in txmon_vars:
        assert key in variables, f"{key} is not a setting"


# Least privilege: each service gets the secrets of the roles it connects as, no more.
SERVICE_SECRETS = {
    # migrates and sets every role's password; sets the Kafka users' credentials and ACLs as Kafka's admin
    "setup": TXMON_SECRETS
    | KAFKA_SECRETS
    | {"bi-reader", "postgres-api-regulator", "postgres-api-analyst", "postgres-api-monitor", "postgres-exporter"},
    "api": {"postgres-api-regulator", "postgres-api-analyst", "postgres-api-monitor", "api-key", "kafka-api-password"},
    "ingest": {"postgres-ingest", "kafka-ingest-password"},
    "generator": {"kafka-producer-password"},
    "dagster-webserver": {
        "postgres-dagster",
        "postgres-transform",
        "postgres-publish",
        "postgres-ingest",
        "postgres-retention",
        "kafka-ingest-password",  # the sensor's lander
        "report-signing-key",  # the refresh signs report packages
    },
    "dagster-daemon": {
        "postgres-dagster",
        "postgres-transform",
        "postgres-publish",
        "postgres-ingest",
        "postgres-retention",
        "kafka-ingest-password",  # the sensor's lander
        "report-signing-key",  # the refresh signs report packages
    },
}


def test_every_txmon_service_has_the_same_settings_and_only_its_own_secrets():
    reference = _environment(TXMON_SERVICES["ingest"])
    assert set(TXMON_SERVICES) == set(SERVICE_SECRETS)
    for name, service in TXMON_SERVICES.items():
        assert _environment(service) == reference, name
        assert _secrets(service) == SERVICE_SECRETS[name], name
    others = set().union(*(v for k, v in SERVICE_SECRETS.items() if k != "setup"))
    assert "postgres-admin" not in others and "kafka-admin-password" not in others


def test_kafka_and_postgres_versions_match_the_local_ones():
    pom = (REPO / "services" / "kafka" / "pom.xml").read_text()
    kafka_version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{kafka_version}"
    assert SERVICES["postgres"]["image"].startswith("postgres:15")


# ---------------------------------------------------------------------------------- exposure
@pytest.mark.parametrize(
    ("entry", "address"),
    [
        ("127.0.0.1:3000:3000", "127.0.0.1"),
        ("127.0.0.1:3000:3000/tcp", "127.0.0.1"),
        ("[::1]:3000:3000", "::1"),
        ("0.0.0.0:3000:3000", "0.0.0.0"),
        ("3000:3000", None),
        ("3000", None),
        (3000, None),
        ({"target": 3000, "published": "3000", "host_ip": "127.0.0.1"}, "127.0.0.1"),
        ({"target": 3000, "published": "3000"}, None),
    ],
)
def test_host_ip_reads_short_and_long_syntax(entry, address):
    assert host_ip(entry) == address


def test_published_ports_are_on_loopback_only():
    published = 0
    for name, service in SERVICES.items():
        assert service.get("network_mode") != "host", name
        for port in service.get("ports") or []:
            published += 1
            assert host_ip(port) in LOOPBACK, f"{name} publishes {port!r} beyond 127.0.0.1"
    assert published  # the test sees the ports at all


def test_the_dagster_ui_is_published_on_loopback_only():
    ports = SERVICES["dagster-webserver"]["ports"]
    assert ports == ["127.0.0.1:3000:3000"]
    proxy = SERVICES["dagster-proxy"]
    assert proxy["profiles"] == ["proxy"]
    assert "dagster-htpasswd" in _secrets(proxy)
    conf = (REPO / "services" / "nginx" / "dagster-proxy.conf").read_text()
    assert "auth_basic_user_file /run/secrets/dagster-htpasswd;" in conf
    assert "proxy_pass http://dagster-webserver:3000;" in conf


def test_no_password_is_written_in_the_compose_file():
    for name, service in SERVICES.items():
        for key, value in _environment(service).items():
            if re.search(r"PASSWORD|PASSWD|SECRET|TOKEN", key, re.IGNORECASE):
                # Only where to read them (POSTGRES_PASSWORD_FILE, TXMON_SECRETS_DIR).
                assert key.endswith(("_FILE", "_DIR")) and value.startswith("/run/secrets"), f"{name}: {key}"
    for text in _strings(COMPOSE):
        assert not re.search(r"[a-z][a-z0-9+.-]*://[^/@\s:]+:[^/@\s]*@", text, re.IGNORECASE), text
        assert not re.search(r"password\s*=\s*[\"']?\w", text, re.IGNORECASE), text


def test_every_secret_is_a_file_under_secrets_made_by_the_script():
    declared = COMPOSE["secrets"]
    script = (REPO / "scripts" / "compose-secrets").read_text()
    for name, spec in declared.items():
        assert set(spec) == {"file"}, name
        assert spec["file"] == f"./secrets/{name}", name
        assert re.search(rf"\b{re.escape(name)}\b", script), f"scripts/compose-secrets does not make {name}"
    used = set()
    for name, service in SERVICES.items():
        secrets = _secrets(service)
        assert secrets <= set(declared), f"{name} uses undeclared secrets {secrets - set(declared)}"
        used |= secrets
        for key, value in _environment(service).items():
            if key.endswith("_FILE") and value.startswith("/run/secrets/"):
                assert value.removeprefix("/run/secrets/") in secrets, f"{name}: {key}"
    assert used == set(declared)


def test_secrets_stay_out_of_git_and_the_image():
    assert "secrets/" in (REPO / ".gitignore").read_text().split()
    assert "secrets" in (REPO / ".dockerignore").read_text().split()


def test_txmon_reads_its_secrets_from_run_secrets():
    for name, service in TXMON_SERVICES.items():
        env = _environment(service)
        assert env["TXMON_SECRETS_DIR"] == "/run/secrets", name
        for key in ("TXMON_WAREHOUSE_DSN", "TXMON_DAGSTER_DSN"):
            assert re.fullmatch(r"postgresql://txmon@postgres:5432/\w+", env[key]), f"{name}: {key}"


def test_postgres_takes_its_password_from_a_secret_and_requires_scram():
    service = SERVICES["postgres"]
    env = _environment(service)
    assert env["POSTGRES_USER"] == "txmon"
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres-admin"
    assert "POSTGRES_PASSWORD" not in env
    assert env["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert "--auth-host=scram-sha-256" in env["POSTGRES_INITDB_ARGS"]
    assert _secrets(service) == {"postgres-admin"}


def _dockerfile_user() -> str | None:
    users = re.findall(r"^USER\s+(\S+)", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    return users[-1] if users else None


def test_txmon_runs_as_an_unprivileged_user():
    image_user = _dockerfile_user()
    assert image_user is not None and image_user.split(":")[0] == "10001"
    for name, service in TXMON_SERVICES.items():
        user = str(service.get("user") or image_user)
        assert user.split(":")[0] not in ("root", "0"), name


def test_long_running_services_restart_and_one_shot_ones_do_not():
    one_shot = _one_shot()
    assert one_shot == {"setup"}
    for name, service in SERVICES.items():
        if name in one_shot:
            assert service.get("restart", "no") == "no", name
        else:
            assert service.get("restart") == "unless-stopped", name


# ---------------------------------------------------------------------------------- Kafka
def test_every_kafka_listener_requires_sasl():
    env = _kafka_env()
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = _listeners(env["KAFKA_LISTENERS"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    assert set(advertised) <= set(listeners)
    for name in listeners:
        assert protocols[name].startswith("SASL_"), name
    # Clients use SCRAM-SHA-512; admin (the broker itself, setup) PLAIN on INTERNAL, the controller listener PLAIN
    # (not published). The published HOST listener takes SCRAM only.
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert env["KAFKA_LISTENER_NAME_INTERNAL_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512,PLAIN"
    assert not {k for k in env if k.startswith("KAFKA_LISTENER_NAME_HOST_")}
    assert env["KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"] == "PLAIN"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller not in advertised
    assert "java.security.auth.login.config=" in env["KAFKA_OPTS"]
    # txmon speaks the protocol of the listener its bootstrap address is advertised on.
    txmon = _environment(TXMON_SERVICES["ingest"])
    (listener,) = [name for name, address in advertised.items() if address == txmon["TXMON_KAFKA_BOOTSTRAP"]]
    assert txmon["TXMON_KAFKA_SECURITY_PROTOCOL"] == protocols[listener] == "SASL_PLAINTEXT"
    assert txmon["TXMON_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    settings = Settings.from_env({k: v for k, v in txmon.items() if k.startswith("TXMON_")})
    assert settings.kafka_admin_sasl_mechanism == "PLAIN"


def test_kafka_publishes_only_its_host_listener():
    env = _kafka_env()
    listeners = _listeners(env["KAFKA_LISTENERS"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    ports = SERVICES["kafka"]["ports"]
    assert ports == ["127.0.0.1:19092:19092"]
    (host,) = [name for name, address in advertised.items() if address.startswith("127.0.0.1:")]
    assert listeners[host].rsplit(":", 1)[1] == "19092"


def test_kafka_authorizes_by_acl_only():
    env = _kafka_env()
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert env["KAFKA_SUPER_USERS"] == "User:admin"


def test_setup_sets_the_kafka_users_and_their_acls_as_txmon_services_up_does_locally():
    from txmon.core import credentials
    from txmon.core.settings import KafkaUser
    from txmon.devtools.services.kafka import acls

    setup = SERVICES["setup"]
    assert setup["command"] == ["services", "up"]
    assert {f"/run/secrets/{name}" for name in credentials.KAFKA_FILES.values()} == {
        f"/run/secrets/{name}" for name in KAFKA_SECRETS
    }
    assert KAFKA_SECRETS <= _secrets(setup)
    txmon = _environment(TXMON_SERVICES["ingest"])
    settings = Settings.from_env({k: v for k, v in txmon.items() if k.startswith("TXMON_")})
    granted = {(user, kind.name, name, op.name) for user, kind, name, op in acls(settings)}
    assert granted == {
        (KafkaUser.INGEST, "TOPIC", "payments.transactions", "READ"),
        (KafkaUser.INGEST, "GROUP", settings.consumer_group, "READ"),
        (KafkaUser.INGEST, "TOPIC", "payments.transactions.quarantine", "WRITE"),
        (KafkaUser.PRODUCER, "TOPIC", "payments.transactions", "WRITE"),
        (KafkaUser.API, "TOPIC", "payments.transactions", "DESCRIBE"),
    }
    assert "kafka-init" not in SERVICES and not (REPO / "services" / "kafka" / "compose" / "init.sh").exists()


def test_the_broker_keeps_admins_password_in_its_jaas_file_never_on_a_command_line():
    script = (REPO / "services" / "kafka" / "compose" / "broker.sh").read_text()
    assert re.search(r"kafka-storage\.sh\" format --ignore-formatted", script)
    assert "--add-scram" not in script and "--add-config " not in script
    assert "umask 077" in script
    # $password appears in the heredocs only (the JAAS file, admin's client settings), no command's arguments.
    for line in script.splitlines():
        if "$password" in line and not line.lstrip().startswith(("password=", "user_admin=", "sasl.jaas.config=")):
            assert line.startswith(("password=$(<", "if [[ ! $password")), line
    assert "/run/secrets/kafka-admin-password" in script
    assert SERVICES["kafka"]["entrypoint"] == ["bash", "/opt/txmon-kafka/broker.sh"]
    assert _secrets(SERVICES["kafka"]) == {"kafka-admin-password"}
