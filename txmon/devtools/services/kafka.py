"""A single Apache Kafka broker in KRaft mode (combined broker + controller, no ZooKeeper)."""
# The broker's jars come from Maven Central through the small Maven project in ``services/kafka/pom.xml``; the broker
# runs on the machine's Java 17 with a small heap.

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from txmon.core import credentials
from txmon.core import kafka as kafka_clients
from txmon.core.processes import child_env, tail
from txmon.core.settings import REPO_ROOT, KafkaUser, Settings
from txmon.devtools.services.common import ServiceError, ServiceStatus, running_pid, stop_process

MAVEN_PROJECT = REPO_ROOT / "services" / "kafka"

SERVER_PROPERTIES = """\
# Written by txmon; edit txmon/devtools/services/kafka.py instead. Mode 0600: it holds the admin's password.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers={host}:{controller_port}
listeners=CLIENT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=CLIENT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT
# Every client authenticates. On CLIENT: the users by duty with SCRAM (their credentials stored in the cluster's
# metadata by `txmon services up`), the admin (the broker itself, `txmon services up`) with PLAIN, its password in
# this file. KRaft cannot authenticate controllers with SCRAM (KAFKA-15513): CONTROLLER takes PLAIN, the admin only.
listener.name.client.sasl.enabled.mechanisms={mechanism},PLAIN
listener.name.client.{mechanism_lower}.sasl.jaas.config={scram_jaas}
listener.name.client.plain.sasl.jaas.config={plain_jaas}
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config={plain_jaas}
sasl.mechanism.inter.broker.protocol=PLAIN
sasl.mechanism.controller.protocol=PLAIN
# A user may do what an ACL allows (acls() in txmon/devtools/services/kafka.py); the admin alone is a super user.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:{admin}
log.dirs={data}
num.partitions={partitions}
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
log.segment.bytes=268435456
num.network.threads=2
num.io.threads=4
"""
# The only characters a user's name or password may have here: they are quoted in the JAAS configuration above.
_JAAS_SAFE = re.compile(r"[A-Za-z0-9._~-]+")

LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d{ISO8601}] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
"""


def acls(settings: Settings) -> list[tuple[KafkaUser, ResourceType, str, AclOperation]]:
    """What each Kafka user by duty may do: ALLOW on a literal name, nothing else (Read and Write imply Describe).

    Ingest consumes the topic in its group (Read; offsets committed for Kafka's lag tools) and copies rejected
    messages to the quarantine topic (Write; an idempotent producer needs no IdempotentWrite on the cluster since
    Kafka 3.0, Write on a topic suffices). The producer writes the topic. The API describes it: its partitions and
    end offsets (/metrics' consumer lag, /health).
    """
    return [
        (KafkaUser.INGEST, ResourceType.TOPIC, settings.topic, AclOperation.READ),
        (KafkaUser.INGEST, ResourceType.GROUP, settings.consumer_group, AclOperation.READ),
        (KafkaUser.INGEST, ResourceType.TOPIC, settings.quarantine_topic, AclOperation.WRITE),
        (KafkaUser.PRODUCER, ResourceType.TOPIC, settings.topic, AclOperation.WRITE),
        (KafkaUser.API, ResourceType.TOPIC, settings.topic, AclOperation.DESCRIBE),
    ]


def _java() -> str:
    java = shutil.which("java")
    if not java:
        raise ServiceError("Java 17 or newer not found: install Debian's package `openjdk-17-jre-headless`")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, env=child_env()).stderr
    match = re.search(r'version "(\d+)', out)
    if not match or int(match.group(1)) < 17:
        raise ServiceError(f"Kafka 4 needs Java 17 or newer, found: {out.splitlines()[0] if out else '?'}")
    return java


def broker_jars() -> Path:
    """target/lib with the broker's jars, fetched by Maven when missing or when the pom changed."""
    lib = MAVEN_PROJECT / "target" / "lib"
    stamp = lib / ".pom.sha256"
    digest = hashlib.sha256((MAVEN_PROJECT / "pom.xml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return lib
    mvn = shutil.which("mvn")
    if not mvn:
        raise ServiceError("Maven not found (it fetches the Kafka broker): install Debian's package `maven`")
    shutil.rmtree(lib, ignore_errors=True)
    proc = subprocess.run(
        [mvn, "-q", "-B", "-f", str(MAVEN_PROJECT / "pom.xml"), "package"],
        capture_output=True,
        text=True,
        env=child_env(),
    )
    if proc.returncode != 0:
        last = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["?"]
        raise ServiceError(f"could not fetch the Kafka broker from Maven Central (network?): {last[0]}")
    stamp.write_text(digest)
    return lib


def cluster_id() -> str:
    """A new cluster's id as `kafka-storage random-uuid` makes it (a random UUID in URL-safe base64, never starting
    with "-"), without starting a JVM for it."""
    while True:
        made = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not made.startswith("-"):
            return made


class Kafka:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.state_dir / "kafka"
        self.data = self.root / "data"
        self.properties = self.root / "server.properties"
        self.log = self.root / "server.log"
        self.pid_file = self.root / "kafka.pid"

    @property
    def _local(self) -> bool:
        return self.settings.kafka_bootstrap_override is None

    def _listening(self) -> bool:
        try:
            with socket.create_connection((self.settings.kafka_host, self.settings.kafka_port), timeout=1):
                return True
        except OSError:
            return False

    def _authenticates(self) -> bool:
        """Whether the configuration the local broker runs with requires SASL (not one of an earlier txmon)."""
        try:
            return "CLIENT:SASL_PLAINTEXT" in self.properties.read_text()
        except FileNotFoundError:
            return False

    def _pid(self) -> int | None:
        return running_pid(self.pid_file, str(self.properties))

    def _java_cmd(self, lib: Path, main: str, *args: str, heap: str = "128m") -> list[str]:
        return [
            _java(),
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            "-cp",
            f"{lib}/*",
            main,
            *args,
        ]

    def _configure(self) -> None:
        # The log and the data (every transaction) are readable by txmon's user alone.
        credentials.private_dir(self.root)
        credentials.private_dir(self.data)
        settings = self.settings
        scram = settings.kafka_sasl_mechanism.startswith("SCRAM")
        if settings.kafka_security_protocol != "SASL_PLAINTEXT" or not scram:
            raise ServiceError(
                "the local broker takes SASL_PLAINTEXT with SCRAM: set TXMON_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT "
                "and TXMON_KAFKA_SASL_MECHANISM=SCRAM-SHA-512 (or SCRAM-SHA-256)"
            )
        if settings.kafka_admin_sasl_mechanism != "PLAIN":
            raise ServiceError(
                "the local broker's admin authenticates with PLAIN: unset TXMON_KAFKA_ADMIN_SASL_MECHANISM"
            )
        admin = settings.kafka_user(KafkaUser.ADMIN)
        password = credentials.kafka_password(settings, KafkaUser.ADMIN)
        if not _JAAS_SAFE.fullmatch(admin) or not _JAAS_SAFE.fullmatch(password):
            where = settings.secrets_dir / credentials.KAFKA_FILES[KafkaUser.ADMIN]
            raise ServiceError(f"the Kafka admin's name and password ({where}) may only hold letters, digits and ._~-")
        plain_jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{admin}" password="{password}" user_{admin}="{password}";'
        )
        # The password never goes on a command line: the broker and kafka-storage read it from this file (0600).
        credentials.write_private(
            self.properties,
            SERVER_PROPERTIES.format(
                host=settings.kafka_host,
                port=settings.kafka_port,
                controller_port=settings.kafka_controller_port,
                mechanism=settings.kafka_sasl_mechanism,
                mechanism_lower=settings.kafka_sasl_mechanism.lower(),
                scram_jaas="org.apache.kafka.common.security.scram.ScramLoginModule required;",
                plain_jaas=plain_jaas,
                admin=admin,
                data=self.data,
                partitions=settings.topic_partitions,
            ),
        )
        (self.root / "log4j2.properties").write_text(LOG4J2)

    def _format(self, lib: Path) -> None:
        if (self.data / "meta.properties").exists():
            return
        proc = subprocess.run(
            self._java_cmd(
                lib, "kafka.tools.StorageTool", "format", "-t", cluster_id(), "-c", str(self.properties), "--standalone"
            ),
            capture_output=True,
            text=True,
            env=child_env(),
        )
        if proc.returncode != 0:
            raise ServiceError(f"formatting Kafka storage failed: {(proc.stderr or proc.stdout).strip()}")

    def start(self, timeout: float = 120.0) -> None:
        if self._local and self._listening() and self._pid() is not None and not self._authenticates():
            raise ServiceError(
                "the running local broker was started without authentication by an earlier txmon: stop it "
                "(`txmon services down`) and start it again (`txmon services up`)"
            )
        if self._local and not self._listening():
            lib = broker_jars()
            self._configure()
            self._format(lib)
            fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "ab") as log:
                proc = subprocess.Popen(
                    self._java_cmd(lib, "kafka.Kafka", str(self.properties), heap=self.settings.kafka_heap),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    umask=0o077,  # segments and checkpoints it writes: owner only
                    env=child_env(),
                )
            self.pid_file.write_text(str(proc.pid))
            deadline = time.monotonic() + timeout
            while not self._listening():
                if proc.poll() is not None:
                    raise ServiceError(f"Kafka exited with code {proc.returncode}; log {self.log}: {tail(self.log)}")
                if time.monotonic() > deadline:
                    raise ServiceError(f"Kafka did not listen on port {self.settings.kafka_port} in {timeout:.0f}s")
                time.sleep(0.3)
        self.ensure_users()
        self.ensure_topics()

    @property
    def _secured(self) -> bool:
        """Whether the cluster knows users (SASL with SCRAM): the local broker always, another one when so set."""
        sasl = self.settings.kafka_security_protocol.startswith("SASL_")
        return sasl and self.settings.kafka_sasl_mechanism.startswith("SCRAM")

    def _admin(self, timeout: float) -> tuple[AdminClient, set[str]]:
        """An admin client once the broker answers, and the topics it has."""
        admin = kafka_clients.admin(self.settings, user=KafkaUser.ADMIN)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return admin, set(admin.list_topics(timeout=5).topics)
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise ServiceError(f"Kafka at {self.settings.kafka_bootstrap} is not answering: {exc}") from None
                time.sleep(0.5)

    def ensure_users(self, timeout: float = 60.0) -> None:
        """Each user by duty (but the admin) with a SCRAM credential of its password file: set again at each start,
        so a new password file takes effect with the next `txmon services up`."""
        if not self._secured:
            return
        admin, _ = self._admin(timeout)
        mechanism = ScramMechanism[self.settings.kafka_sasl_mechanism.replace("-", "_")]
        upserts = [
            UserScramCredentialUpsertion(
                self.settings.kafka_user(user),
                ScramCredentialInfo(mechanism, 8192),
                credentials.kafka_password(self.settings, user).encode(),
            )
            for user in KafkaUser
            if user is not KafkaUser.ADMIN
        ]
        for name, future in admin.alter_user_scram_credentials(upserts).items():
            try:
                future.result(timeout=30)
            except KafkaException as exc:
                raise ServiceError(f"could not set the Kafka user {name}'s credential: {exc}") from None
        names = [upsert.user for upsert in upserts]

        def known() -> bool:  # by the broker, which authenticates from its copy of the metadata
            try:
                return all(f.result(timeout=10) for f in admin.describe_user_scram_credentials(names).values())
            except KafkaException:
                return False

        self._until(known, "the users' credentials")

    def _until(self, done: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise ServiceError(f"Kafka at {self.settings.kafka_bootstrap} did not apply {what} in {timeout:.0f}s")
            time.sleep(0.1)

    def ensure_topics(self, timeout: float = 60.0) -> None:
        """The topic and the quarantine topic, and the users' ACLs on them (``acls``)."""
        admin, existing = self._admin(timeout)
        wanted = {
            self.settings.topic: self.settings.topic_partitions,
            self.settings.quarantine_topic: self.settings.topic_partitions,
        }
        missing = [
            NewTopic(name, num_partitions=n, replication_factor=1) for name, n in wanted.items() if name not in existing
        ]
        for name, future in admin.create_topics(missing).items() if missing else []:
            try:
                future.result(timeout=30)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise ServiceError(f"could not create topic {name}: {exc}") from None
        if self._secured:
            self._grant(admin)

    def _grant(self, admin: AdminClient) -> None:
        bindings = [
            AclBinding(
                kind,
                name,
                ResourcePatternType.LITERAL,
                f"User:{self.settings.kafka_user(user)}",
                "*",
                operation,
                AclPermissionType.ALLOW,
            )
            for user, kind, name, operation in acls(self.settings)
        ]
        for binding, future in admin.create_acls(bindings).items():  # an ACL that exists is left as it is
            try:
                future.result(timeout=30)
            except KafkaException as exc:
                raise ServiceError(f"could not add the ACL {binding}: {exc}") from None
        # The controller has them; the broker authorizes from its copy of the metadata, a moment later. Callers (the
        # tests' topics, a producer started right after `txmon services up`) rely on them in force on return.
        everything = AclBindingFilter(
            ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY
        )
        self._until(lambda: set(bindings) <= set(admin.describe_acls(everything).result(timeout=10)), "the ACLs")

    def delete_topics(self, timeout: float = 60.0) -> None:
        """Delete the topic, the quarantine topic and every ACL on their names (a test's or a benchmark's pair)."""
        admin, existing = self._admin(timeout)
        names = [self.settings.topic, self.settings.quarantine_topic]
        doomed = [name for name in names if name in existing]
        for future in admin.delete_topics(doomed).values() if doomed else []:
            future.result(timeout=30)
        if self._secured:
            filters = [
                AclBindingFilter(
                    ResourceType.TOPIC,
                    name,
                    ResourcePatternType.LITERAL,
                    None,
                    None,
                    AclOperation.ANY,
                    AclPermissionType.ANY,
                )
                for name in names
            ]
            for future in admin.delete_acls(filters).values():
                future.result(timeout=30)

    def stop(self, timeout: float = 60.0) -> None:
        stop_process(self.pid_file, str(self.properties), timeout)

    def status(self) -> ServiceStatus:
        where = self.settings.kafka_bootstrap
        if self._local and not self._listening():
            return ServiceStatus("kafka", False, f"not listening at {where}")
        try:
            topics = kafka_clients.admin(self.settings, user=KafkaUser.ADMIN).list_topics(timeout=5).topics
        except KafkaException as exc:
            return ServiceStatus("kafka", False, f"not answering at {where}: {exc}")
        ours = [
            f"{t} ({len(topics[t].partitions)} partitions)"
            for t in (self.settings.topic, self.settings.quarantine_topic)
            if t in topics
        ]
        return ServiceStatus("kafka", True, f"Kafka (KRaft) at {where}; topics: {', '.join(ours) or 'none yet'}")
