"""Collector throughput: accepted clicks per second, single-click and batch requests.

The peer is Kafka's own ``ProducerPerformance`` tool (``kafka-producer-perf-test``)
with ``acks=all`` and idempotence against the same broker in the same run.
Client threads run on the same machine as the collector and the broker, so
all three share its cores.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.report import write_result
from shared_logic.settings import PROJECT_ROOT, Settings, load_settings
from shared_logic.timestamps import format_utc_ms, now_ms
from tests.conftest import free_port
from tests.processes import private_broker_and_collector

logger = logging.getLogger(__name__)
DURATION_S = 20
CLIENT_THREADS = 8
BATCH_SIZE = 500
RECORD_SIZE_BYTES = 250
PERF_RECORDS = 1_000_000


def _click(thread: int, number: int) -> dict:
    return {"ad_id": f"ad-{number % 1000}", "user_id": f"user-{thread}-{number}", "timestamp": format_utc_ms(now_ms())}


def measure_collector(url: str, batch_size: int, threads: int = CLIENT_THREADS, duration_s: float = DURATION_S) -> float:
    """Return accepted clicks per second over ``duration_s`` with ``threads`` client threads."""
    accepted = [0] * threads
    deadline = time.monotonic() + duration_s

    def client(index: int) -> None:
        session = requests.Session()
        number = 0
        while time.monotonic() < deadline:
            body = [_click(index, number + i) for i in range(batch_size)]
            number += batch_size
            payload = json.dumps(body if batch_size > 1 else body[0])
            response = session.post(url + "/v1/clicks", data=payload, timeout=60,
                                    headers={"Content-Type": "application/json"})
            if response.status_code == 202:
                accepted[index] += response.json()["accepted"]

    started = time.monotonic()
    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(accepted) / (time.monotonic() - started)


def measure_kafka_producer(settings: Settings, topic: str) -> float:
    """Run Kafka's ProducerPerformance with acks=all and return records per second."""
    java = settings.java_home / "bin" / "java"
    command = [
        str(java), "-Xmx512m", "-cp", f"{settings.jars_dir / 'kafka'}/*",
        "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
        "--num-records", str(PERF_RECORDS), "--record-size", str(RECORD_SIZE_BYTES), "--throughput", "-1",
        "--producer-props", f"bootstrap.servers={settings.kafka_bootstrap_servers}", "acks=all",
        "enable.idempotence=true", "linger.ms=5",
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout
    summary = [line for line in output.splitlines() if "records sent" in line][-1]
    return float(re.search(r"([\d.]+) records/sec", summary).group(1))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="adclick-bench-") as data_dir:
        settings = load_settings().replace(
            data_dir=Path(data_dir), kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
            kafka_controller_port=free_port(), collector_port=free_port(),
        )
        with private_broker_and_collector(settings, "collector-bench") as (_broker, url):
            single = measure_collector(url, batch_size=1)
            logger.info("single-click requests: %.0f clicks/s", single)
            batched = measure_collector(url, batch_size=BATCH_SIZE, threads=4)
            logger.info("batch requests of %d: %.0f clicks/s", BATCH_SIZE, batched)
            kafka_rate = measure_kafka_producer(settings, settings.topic_clicks)
            logger.info("kafka ProducerPerformance: %.0f records/s", kafka_rate)
    notes = f"{CLIENT_THREADS} Python client threads on the same machine"
    rows = [
        {"metric": "collector, single-click requests", "value": round(single), "unit": "clicks/s",
         "peer": "kafka-producer-perf-test acks=all", "peer_value": round(kafka_rate),
         "ratio": round(single / kafka_rate, 4), "notes": notes},
        {"metric": f"collector, batch requests of {BATCH_SIZE}", "value": round(batched), "unit": "clicks/s",
         "peer": "kafka-producer-perf-test acks=all", "peer_value": round(kafka_rate),
         "ratio": round(batched / kafka_rate, 4), "notes": f"4 client threads, {RECORD_SIZE_BYTES}-byte perf-test records"},
    ]
    write_result("collector", rows, {"kafka": "4.1.1"})


if __name__ == "__main__":
    main()
