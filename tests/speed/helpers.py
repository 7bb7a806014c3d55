"""Drive the speed job in tests: start and kill it, produce clicks, wait for counts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable

from kafka import KafkaProducer

from collector.kafka_writer import ClickWriter
from infra.topics import ensure_topics
from shared_logic.settings import Settings
from shared_logic.timestamps import format_utc_ms, parse_timestamp_ms
from speed_layer.runner import start_job
from tests.kafka_helpers import read_topic


# An idle timeout that no test reaches, for tests in which only records in
# the log (clicks and heartbeats) may move the watermark.
NO_IDLENESS_S = 3600


def speed_test_settings(base: Settings, clicks_partitions: int = 3) -> Settings:
    """Settings with fresh topics, a unique job name and short time constants."""
    suffix = uuid.uuid4().hex[:8]
    settings = base.replace(
        topic_clicks=f"clicks-{suffix}",
        topic_clicks_rejected=f"clicks-rejected-{suffix}",
        topic_clicks_late=f"clicks-late-{suffix}",
        topic_click_counts=f"click-counts-{suffix}",
        topic_late_counts=f"late-click-counts-{suffix}",
        clicks_partitions=clicks_partitions,
        speed_job_name=f"speed-test-{suffix}",
        out_of_orderness_s=2,
        allowed_lateness_s=10,
        source_idle_timeout_s=1,
        checkpoint_interval_s=1,
        flink_early_fire_s=1,
        speed_transaction_timeout_ms=120_000,
        speed_jvm_heap_mb=768,
    )
    ensure_topics(settings)
    return settings


class SpeedJob:
    """One run of the speed job as a child process group."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.log_file = settings.path("flink", "logs", settings.speed_job_name, "job.log")
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        start_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        self.process = start_job(self.settings, self.log_file)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"speed job exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            if "is RUNNING" in self.log()[start_offset:]:
                return
            time.sleep(0.5)
        raise AssertionError(f"speed job not RUNNING within {timeout_s} s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def flink_log(self) -> str:
        return "".join(path.read_text(errors="replace")
                       for path in Path(self.log_file.parent).glob("flink-*.log"))

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the job's whole process group (Python driver and MiniCluster JVM)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if not self.is_running():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def click(click_id: str, ad_id: str, timestamp: str) -> dict:
    event_time_ms = parse_timestamp_ms(timestamp)
    return {"click_id": click_id, "ad_id": ad_id, "user_id": f"user-{click_id}",
            "timestamp": format_utc_ms(event_time_ms), "event_time_ms": event_time_ms,
            "click_id_source": "client", "attributes": {"country": "DE", "campaign_rank": 3},
            "received_at_ms": event_time_ms + 100}


def produce(settings: Settings, clicks: list[dict], partition: int | None = None) -> None:
    """Write clicks keyed by ad id, to ``partition`` or as the default partitioner chooses."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=5)
    try:
        for record in clicks:
            producer.send(settings.topic_clicks, key=record["ad_id"].encode(),
                          value=json.dumps(record).encode(), partition=partition)
        producer.flush()
    finally:
        producer.close()


def produce_heartbeats(settings: Settings, event_time_ms: int) -> None:
    """Write a watermark heartbeat to every partition, with the collector's own writer."""
    writer = ClickWriter(settings)
    try:
        writer.write_heartbeats(event_time_ms, "speed-test")
    finally:
        writer.close()


def latest_by_key(settings: Settings, topic: str) -> dict[tuple[str, int], dict]:
    """Return the last committed value of each (ad_id, window_start_ms) key of a counts topic."""
    latest = {}
    for record in read_topic(settings.kafka_bootstrap_servers, topic):
        key = json.loads(record.key)
        latest[(key["ad_id"], key["window_start_ms"])] = record.value
    return latest


def wait_until(condition: Callable[[], bool], job: SpeedJob, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if not job.is_running():
            raise AssertionError(f"speed job died while waiting for {what}:\n{job.log()[-4000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
