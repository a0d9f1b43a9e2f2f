"""Secrets: generated once, private, never printed; a DSN names its role's password file, never a password; each duty
reads its own secrets alone."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import REPO
from txmon.core import credentials
from txmon.core.settings import ApiGrant, ConfigError, Role, Settings
from txmon.core.urls import redact


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_set_up_generates_every_role_secret_privately_and_keeps_them(tmp_path):
    settings = Settings.from_env({"TXMON_STATE_DIR": str(tmp_path / "state")})
    credentials.ensure(settings)
    assert mode(settings.state_dir) in (0o700, 0o711)
    assert mode(settings.secrets_dir) == 0o700
    first = {}
    for role in credentials.GENERATED:
        path = settings.secrets_dir / credentials.FILES[role]
        assert mode(path) == 0o600
        first[role] = path.read_text().strip()
        assert len(first[role]) >= 24
    assert len(set(first.values())) == len(first), "every role has its own password"
    assert not (settings.secrets_dir / credentials.FILES[Role.BI_READER]).exists(), "bi_reader gets no login by default"
    for role, secret in first.items():
        user = settings.pg_user if role is Role.ADMIN else role.value
        assert mode(settings.passfile(role)) == 0o600
        assert settings.passfile(role).read_text() == f"*:*:*:{user}:{secret}\n", "its role's password alone"
    credentials.ensure(settings)  # idempotent: the same secrets
    assert {r: (settings.secrets_dir / credentials.FILES[r]).read_text().strip() for r in first} == first


def test_a_given_secrets_dir_is_read_never_written(tmp_path):
    given = tmp_path / "run-secrets"
    given.mkdir()
    (given / "postgres-ingest").write_text("from-the-orchestrator\n")
    settings = Settings.from_env({"TXMON_STATE_DIR": str(tmp_path / "state"), "TXMON_SECRETS_DIR": str(given)})
    credentials.ensure(settings)
    assert sorted(p.name for p in given.iterdir()) == ["postgres-ingest"]
    assert sorted(p.name for p in settings.pgpass_dir.iterdir()) == ["txmon_ingest"]
    assert credentials.password(settings, Role.INGEST) == "from-the-orchestrator"


def test_the_api_has_a_private_local_key_unless_keys_are_given(tmp_path):
    settings = Settings.from_env({"TXMON_STATE_DIR": str(tmp_path / "state")})
    credentials.ensure(settings)
    key = credentials.local_api_key(settings)
    assert key and len(key) >= 24 and mode(settings.secrets_dir / credentials.API_KEY_FILE) == 0o600
    assert credentials.api_keys(settings) == {credentials.api_key_digest(key): credentials.LOCAL_API_GRANT}
    assert all(key not in p.read_text() for p in settings.pgpass_dir.iterdir())
    given = Settings.from_env(
        {
            "TXMON_STATE_DIR": str(tmp_path / "state"),
            "TXMON_API_KEYS": f'{{"{KEY}": {{"role": "regulator", "regions": ["EU"]}}}}',
        }
    )
    assert list(credentials.api_keys(given)) == [credentials.api_key_digest(KEY)], "given keys replace the local one"
    orchestrated = Settings.from_env(
        {"TXMON_STATE_DIR": str(tmp_path / "other"), "TXMON_SECRETS_DIR": str(tmp_path / "run-secrets")}
    )
    (tmp_path / "run-secrets").mkdir()
    credentials.ensure(orchestrated)
    with pytest.raises(ConfigError, match="TXMON_API_KEYS and TXMON_API_KEYS_FILE are empty"):
        credentials.api_keys(orchestrated)


KEY = "a-key-of-the-api-" + "k" * 20


def keys_file(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "api-keys"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_keys_file_gives_digests_their_role_and_regions_beside_the_variable(tmp_path):
    other = "another-key-of-the-api-" + "o" * 20
    path = keys_file(
        tmp_path,
        "# the regulators' keys\n\n"
        f"{credentials.api_key_digest(other)} regulator EU,US\n"
        f"sha256:{credentials.api_key_digest('x' * 40).upper()} analyst *\n",
    )
    settings = Settings.from_env(
        {
            "TXMON_STATE_DIR": str(tmp_path / "state"),
            "TXMON_API_KEYS_FILE": str(path),
            "TXMON_API_KEYS": f'{{"{KEY}": {{"role": "analyst", "regions": ["APAC"]}}}}',
        }
    )
    keys = credentials.api_keys(settings)
    assert keys == {
        credentials.api_key_digest(KEY): ApiGrant(role="analyst", regions=("APAC",)),
        credentials.api_key_digest(other): ApiGrant(role="regulator", regions=("EU", "US")),
        credentials.api_key_digest("x" * 40): ApiGrant(role="analyst", regions=("*",)),
    }
    # What `txmon api-key` prints is a line the file takes.
    line = credentials.api_key_line(credentials.api_key_digest(KEY), ApiGrant(role="analyst", regions=("APAC",)))
    alone = Settings.from_env(
        {"TXMON_STATE_DIR": str(tmp_path / "state"), "TXMON_API_KEYS_FILE": str(keys_file(tmp_path, line))}
    )
    assert credentials.api_keys(alone) == {credentials.api_key_digest(KEY): ApiGrant(role="analyst", regions=("APAC",))}


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        (f"{'a' * 64} analyst *\n", 0o644, r"has mode 0644: other users may read it; make it 0600"),
        (f"{'a' * 64} analyst *\n", 0o640, r"has mode 0640"),
        (f"{'a' * 63} analyst *\n", 0o600, r"line 1: not `SHA256-HEX-DIGEST ROLE REGIONS`"),
        (f"# keys\n{'a' * 64} admin *\n", 0o600, r"line 2: the role is regulator or analyst"),
        (f"{'a' * 64} analyst MARS\n", 0o600, r"line 1: regions that are not configured: \['MARS'\]"),
        (f"{'a' * 64} analyst *\n{'a' * 64} regulator *\n", 0o600, r"line 2: a key given twice"),
        ("# nothing yet\n", 0o600, r"holds no key"),
    ],
)
def test_a_bad_keys_file_is_refused_in_one_line(tmp_path, text, mode, message):
    settings = Settings.from_env(
        {"TXMON_STATE_DIR": str(tmp_path / "state"), "TXMON_API_KEYS_FILE": str(keys_file(tmp_path, text, mode))}
    )
    with pytest.raises(ConfigError, match=message) as err:
        credentials.api_keys(settings)
    assert str(err.value).startswith(f"TXMON_API_KEYS_FILE {tmp_path / 'api-keys'} ") and "\n" not in str(err.value)


def test_a_missing_keys_file_or_a_key_with_two_grants_is_refused(tmp_path):
    missing = Settings.from_env({"TXMON_API_KEYS_FILE": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match="nowhere does not exist"):
        credentials.api_keys(missing)
    path = keys_file(tmp_path, f"{credentials.api_key_digest(KEY)} regulator *\n")
    both = Settings.from_env(
        {"TXMON_API_KEYS_FILE": str(path), "TXMON_API_KEYS": f'{{"{KEY}": {{"role": "analyst", "regions": ["*"]}}}}'}
    )
    with pytest.raises(ConfigError, match="in TXMON_API_KEYS and TXMON_API_KEYS_FILE with different grants"):
        credentials.api_keys(both)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand a directory to another user")
def test_a_state_dir_of_another_user_or_a_symlink_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to uid 65534"):
        credentials.ensure(Settings.from_env({"TXMON_STATE_DIR": str(theirs)}))
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="symbolic link"):
        credentials.private_dir(link)


def test_dsns_name_the_passfile_and_the_role_never_a_password(tmp_path):
    settings = Settings.from_env({"TXMON_STATE_DIR": str(tmp_path), "TXMON_PG_PASSWORD": "s3cret"})
    for dsn in (
        settings.warehouse_dsn,
        settings.dagster_dsn,
        settings.home_dsn(Role.INGEST),
        settings.dsn_for_region("EU", Role.PUBLISH),
    ):
        params = conninfo_to_dict(dsn)
        assert "password" not in params and "s3cret" not in dsn
        assert params["passfile"] == str(
            settings.passfile(Role.ADMIN if params["user"] == "txmon" else Role(params["user"]))
        )
    assert conninfo_to_dict(settings.home_dsn(Role.TRANSFORM))["user"] == "txmon_transform"
    assert conninfo_to_dict(settings.dagster_dsn)["user"] == "txmon_dagster"
    # A configured URL with a password (a managed database) keeps its host and database per role,
    # never its password, and is masked wherever it is shown.
    managed = Settings.from_env(
        {
            "TXMON_STATE_DIR": str(tmp_path),
            "TXMON_WAREHOUSE_DSN": "postgresql://admin:hunter2@db.example:6543/wh?sslmode=require",
        }
    )
    ingest = conninfo_to_dict(managed.home_dsn(Role.INGEST))
    assert (ingest["host"], ingest["port"], ingest["dbname"], ingest["user"], ingest["sslmode"]) == (
        "db.example",
        "6543",
        "wh",
        "txmon_ingest",
        "require",
    )
    assert "password" not in ingest
    # Given without a password (compose: the password is a secret), the admin URL names the passfile.
    given = Settings.from_env({"TXMON_STATE_DIR": str(tmp_path), "TXMON_WAREHOUSE_DSN": "postgresql://boss@db:5432/wh"})
    assert conninfo_to_dict(given.warehouse_dsn)["passfile"] == str(given.passfile(Role.ADMIN))
    assert given.admin_user == "boss"
    assert conninfo_to_dict(managed.warehouse_dsn)["password"] == "hunter2"  # its own password kept
    assert "hunter2" not in json.dumps(managed.info())
    assert redact("host=x password=hunter2 user=y") == "host=x password=*** user=y"
    psycopg.conninfo.make_conninfo(managed.home_dsn(Role.INGEST))  # a valid libpq URL


def test_txmon_info_prints_no_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TXMON_")}
    env.update(TXMON_STATE_DIR=str(tmp_path / "state"), TXMON_BI_READER_PASSWORD="bi-s3cret")
    proc = subprocess.run(
        [sys.executable, "-m", "txmon.cli", "info", "--json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    secrets_dir = tmp_path / "state" / "secrets"
    secrets = [p.read_text().strip() for p in secrets_dir.iterdir()] + ["bi-s3cret"]
    # The API's local key, the signing key, bi_reader's, the Kafka users'.
    assert len(secrets) == len(credentials.GENERATED) + 3 + len(credentials.KAFKA_FILES)
    for secret in secrets:
        assert secret not in proc.stdout
    info = json.loads(proc.stdout)
    assert info["roles"]["ingest"] == "txmon_ingest"
    assert info["pgpass_dir"] == str(tmp_path / "state" / "pgpass.d")
    assert not (tmp_path / "state" / "pgpass.d" / "admin").exists(), "`txmon info` reads no password"


def test_an_empty_bi_reader_password_means_no_login():
    assert Settings.from_env({"TXMON_BI_READER_PASSWORD": ""}).bi_reader_password is None
    assert Settings.from_env({}).bi_reader_password is None


def test_a_child_without_the_admin_password_keeps_its_passfile(tmp_path):
    """TXMON_PG_PASSWORD does not reach the processes txmon starts (child_env); when one of them writes the
    password files again, the admin's stays (the admin itself can still connect) and no other is made for it."""
    state = {"TXMON_STATE_DIR": str(tmp_path / "state")}
    parent = Settings.from_env({**state, "TXMON_PG_PASSWORD": "admin:s3cret"})
    credentials.ensure(parent)
    line = credentials.pgpass_line("txmon", "admin:s3cret")
    assert parent.passfile(Role.ADMIN).read_text() == line
    assert not (parent.secrets_dir / credentials.FILES[Role.ADMIN]).exists()
    child = Settings.from_env(state)
    credentials.ensure(child)
    assert child.passfile(Role.ADMIN).read_text() == line
    assert not (child.secrets_dir / credentials.FILES[Role.ADMIN]).exists()
    assert mode(child.passfile(Role.ADMIN)) == 0o600


@pytest.mark.parametrize("duty", list(credentials.Duty))
def test_each_duty_gets_the_password_files_of_its_roles_alone(tmp_path, duty):
    settings = Settings(state_dir=tmp_path / "state")
    credentials.ensure(settings, duty)
    written = {p.name for p in settings.pgpass_dir.iterdir()}
    expected = {r.value for r in credentials.DUTY_ROLES[duty] if credentials.password(settings, r)}
    assert written == expected
    assert ("admin" in written) == (duty is credentials.Duty.ADMIN), "the admin's password for the admin's duty alone"
    for role in credentials.DUTY_ROLES[duty]:
        if role.value in written:
            assert settings.passfile(role).read_text().count("\n") == 1


def test_the_one_passfile_of_earlier_versions_is_removed(tmp_path):
    settings = Settings(state_dir=tmp_path / "state")
    credentials.ensure(settings, credentials.Duty.API)
    old = settings.state_dir / "pgpass"
    old.write_text("*:*:*:txmon:every-password\n")
    credentials.ensure(settings, credentials.Duty.API)
    assert old.exists(), "a process of a duty removes nothing"
    credentials.ensure(settings)
    assert not old.exists()


def test_set_up_makes_the_report_signing_key_private_and_keeps_it(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    settings = Settings(state_dir=tmp_path / "state")
    credentials.ensure(settings)
    path = settings.report_signing_key_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert isinstance(serialization.load_pem_private_key(path.read_bytes(), password=None), Ed25519PrivateKey)
    first = path.read_bytes()
    credentials.ensure(settings)
    assert path.read_bytes() == first  # made once, never replaced


def test_each_kafka_user_gets_a_private_password_of_its_own_and_each_client_its_user(tmp_path):
    from txmon.core import kafka as kafka_clients
    from txmon.core.settings import KafkaUser

    settings = Settings.from_env(
        {"TXMON_STATE_DIR": str(tmp_path / "state"), "TXMON_KAFKA_USERS": '{"ingest": "svc-ingest"}'}
    )
    credentials.ensure(settings)
    passwords = {}
    for user in KafkaUser:
        path = settings.secrets_dir / credentials.KAFKA_FILES[user]
        assert path.name == f"kafka-{user.value}-password" and mode(path) == 0o600
        passwords[user] = credentials.kafka_password(settings, user)
        assert len(passwords[user]) >= 24
    assert len(set(passwords.values())) == len(KafkaUser), "every user has its own password"
    credentials.ensure(settings)
    assert {user: credentials.kafka_password(settings, user) for user in KafkaUser} == passwords, "kept"
    for user in KafkaUser:
        config = kafka_clients.config(settings, user)
        assert config["security.protocol"] == "SASL_PLAINTEXT"
        assert config["sasl.username"] == ("svc-ingest" if user is KafkaUser.INGEST else user.value)
        assert config["sasl.password"] == passwords[user]
        assert config["sasl.mechanisms"] == ("PLAIN" if user is KafkaUser.ADMIN else "SCRAM-SHA-512")
    assert "password" not in json.dumps(settings.info()["kafka_users"])
    with pytest.raises(ConfigError, match="TXMON_KAFKA_USERS"):
        Settings.from_env({"TXMON_KAFKA_USERS": '{"everyone": "x"}'})
