"""A single-node KRaft Kafka broker run from the Maven Central jars.

The broker and its controller share one JVM (``process.roles=broker,controller``),
listen on 127.0.0.1 only and keep their log directory under the data
directory, so data survives a stop and a start. Remote clusters are used by
setting ``kafka_bootstrap_servers``; this module is only for the local one.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
import uuid
from pathlib import Path

from infra.processes import read_pid, spawn, stop_pid
from shared_logic.settings import Settings

logger = logging.getLogger(__name__)

_LOG4J_CONFIG = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.controller.name = org.apache.kafka.controller
logger.controller.level = warn
"""


class KafkaBrokerError(RuntimeError):
    """The local broker failed to start or did not respond."""


class LocalKafkaBroker:
    def __init__(self, settings: Settings):
        self.settings = settings
        host, _, port = settings.kafka_bootstrap_servers.split(",")[0].rpartition(":")
        if host not in ("127.0.0.1", "localhost"):
            raise KafkaBrokerError(
                f"kafka_bootstrap_servers={settings.kafka_bootstrap_servers!r} is not a local "
                "address; the local broker only runs on 127.0.0.1"
            )
        self.port = int(port)
        self.home = settings.path("kafka")
        self.log_dir = self.home / "logs"
        self.data_dir = self.home / "data"
        self.config_file = self.home / "server.properties"
        self.pid_file = self.home / "kafka.pid"

    @property
    def classpath(self) -> str:
        jars = self.settings.jars_dir / "kafka"
        if not any(jars.glob("kafka_2.13-*.jar")):
            raise KafkaBrokerError(f"no Kafka jars in {jars}; run `make setup` first")
        return f"{jars}/*"

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def start(self, timeout_s: float = 90.0) -> int:
        """Start the broker unless it is already running, and return once it responds."""
        existing = self.pid()
        if existing is not None:
            logger.info("Kafka broker already running (pid %d) on port %d", existing, self.port)
            self.wait_until_ready(timeout_s)
            return existing
        self._write_config()
        self._format_storage()
        process = spawn(self._java("kafka.Kafka", str(self.config_file)),
                        self.log_dir / "stdout.log", self.pid_file, env=self._env())
        try:
            self.wait_until_ready(timeout_s, process)
        except KafkaBrokerError:
            stop_pid(process.pid, "Kafka broker", timeout_s=10)
            raise
        logger.info("Kafka broker ready on 127.0.0.1:%d (pid %d)", self.port, process.pid)
        return process.pid

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            logger.info("Kafka broker is not running")
            return False
        stop_pid(pid, "Kafka broker", timeout_s=60)
        self.pid_file.unlink(missing_ok=True)
        return True

    def wait_until_ready(self, timeout_s: float, process: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise KafkaBrokerError(
                    f"Kafka broker exited with code {process.returncode}; see {self.log_dir}/server.log"
                )
            if broker_answers(self.settings.kafka_bootstrap_servers):
                return
            time.sleep(0.5)
        raise KafkaBrokerError(
            f"Kafka broker did not respond on port {self.port} within {timeout_s:.0f} s; "
            f"see {self.log_dir}/server.log"
        )

    def _java(self, main_class: str, *args: str) -> list[str]:
        java = self.settings.java_home / "bin" / "java"
        heap = f"{self.settings.kafka_heap_mb}m"
        return [
            str(java), f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp", self.classpath, main_class, *args,
        ]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "JAVA_HOME": str(self.settings.java_home)}

    def _write_config(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        controller = self.settings.kafka_controller_port
        settings = self.settings
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(settings.clicks_partitions),
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.max.timeout.ms": str(settings.kafka_transaction_max_timeout_ms),
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.retention.hours": "168",
        }
        self.config_file.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
        (self.home / "log4j2.properties").write_text(_LOG4J_CONFIG.format(log_dir=self.log_dir))

    def _format_storage(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = _kafka_uuid()
        logger.info("formatting Kafka storage in %s (cluster id %s)", self.data_dir, cluster_id)
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                       f"--config={self.config_file}"),
            capture_output=True, text=True, env=self._env(), check=False,
        )
        if result.returncode != 0:
            raise KafkaBrokerError(f"formatting Kafka storage failed: {result.stdout}{result.stderr}")


def _kafka_uuid() -> str:
    """Return a random cluster id in Kafka's base64url form; it may start with "-"."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def broker_answers(bootstrap_servers: str) -> bool:
    """Return whether a broker at ``bootstrap_servers`` responds to a metadata request."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=3000,
                                 bootstrap_timeout_ms=3000)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()
