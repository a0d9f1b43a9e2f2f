"""A single Apache Kafka broker in KRaft mode (combined broker + controller, no ZooKeeper)."""
# The broker's jars come from Maven Central through the small Maven project in ``services/kafka/pom.xml``; the broker
# runs on the machine's Java 17 with a small heap.

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic

from txmon.core import credentials
from txmon.core import kafka as kafka_clients
from txmon.core.processes import child_env, tail
from txmon.core.settings import REPO_ROOT, Settings
from txmon.devtools.services.common import ServiceError, ServiceStatus, running_pid, stop_process

MAVEN_PROJECT = REPO_ROOT / "services" / "kafka"

SERVER_PROPERTIES = """\
# Written by txmon; edit txmon/devtools/services/kafka.py instead.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers={host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
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
        self.properties.write_text(
            SERVER_PROPERTIES.format(
                host=self.settings.kafka_host,
                port=self.settings.kafka_port,
                controller_port=self.settings.kafka_controller_port,
                data=self.data,
                partitions=self.settings.topic_partitions,
            )
        )
        (self.root / "log4j2.properties").write_text(LOG4J2)

    def _format(self, lib: Path) -> None:
        if (self.data / "meta.properties").exists():
            return
        cluster_id = (
            subprocess.run(
                self._java_cmd(lib, "kafka.tools.StorageTool", "random-uuid"),
                capture_output=True,
                text=True,
                check=True,
                env=child_env(),
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        proc = subprocess.run(
            self._java_cmd(
                lib, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.properties), "--standalone"
            ),
            capture_output=True,
            text=True,
            env=child_env(),
        )
        if proc.returncode != 0:
            raise ServiceError(f"formatting Kafka storage failed: {(proc.stderr or proc.stdout).strip()}")

    def start(self, timeout: float = 120.0) -> None:
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
        self.ensure_topics()

    def ensure_topics(self, timeout: float = 60.0) -> None:
        admin = kafka_clients.admin(self.settings)
        wanted = {
            self.settings.topic: self.settings.topic_partitions,
            self.settings.quarantine_topic: self.settings.topic_partitions,
        }
        deadline = time.monotonic() + timeout
        while True:
            try:
                existing = admin.list_topics(timeout=5).topics
                break
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise ServiceError(f"Kafka at {self.settings.kafka_bootstrap} is not answering: {exc}") from None
                time.sleep(0.5)
        missing = [
            NewTopic(name, num_partitions=n, replication_factor=1) for name, n in wanted.items() if name not in existing
        ]
        for name, future in admin.create_topics(missing).items() if missing else []:
            try:
                future.result(timeout=30)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise ServiceError(f"could not create topic {name}: {exc}") from None

    def stop(self, timeout: float = 60.0) -> None:
        stop_process(self.pid_file, str(self.properties), timeout)

    def status(self) -> ServiceStatus:
        where = self.settings.kafka_bootstrap
        if self._local and not self._listening():
            return ServiceStatus("kafka", False, f"not listening at {where}")
        try:
            topics = kafka_clients.admin(self.settings).list_topics(timeout=5).topics
        except KafkaException as exc:
            return ServiceStatus("kafka", False, f"not answering at {where}: {exc}")
        ours = [
            f"{t} ({len(topics[t].partitions)} partitions)"
            for t in (self.settings.topic, self.settings.quarantine_topic)
            if t in topics
        ]
        return ServiceStatus("kafka", True, f"Kafka (KRaft) at {where}; topics: {', '.join(ours) or 'none yet'}")
