"""Benchmark the speed layer: Kafka throughput, freshness, and the datagen ceiling.

``make bench-speed`` runs it. A private broker on free 127.0.0.1 ports is
started under a temporary data directory. Measured in one run:

- sustained clicks/s from the clicks topic to committed counts: clicks are
  loaded first, then the job reads the backlog; the rate is taken between the
  moments when the committed counts reach 10 % and 90 % of the clicks;
- freshness: a probe click per 200 ms on its own ad, with background load,
  from produce to the count that includes it being visible to a
  read_committed reader, at p50 and p99;
- the same SQL on Flink's datagen source with blackhole sinks (no Kafka, no
  JSON), uniform and skewed (one ad with 90 % of the clicks), on the heap and
  RocksDB state backends.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer

from bench.report import write_result
from infra.kafka_broker import LocalKafkaBroker
from infra.topics import ensure_topics
from shared_logic.settings import PROJECT_ROOT, Settings, load_settings
from shared_logic.time_buckets import minute_start_ms
from shared_logic.timestamps import format_utc_ms
from speed_layer.runner import job_environment, start_job

logger = logging.getLogger("bench.speed")

BACKLOG_CLICKS = 2_400_000
# Event time advances 1 ms per backlog click, so the backlog spans 40 minutes and minutes close as it is read.
BACKLOG_CLICKS_PER_S = 1_000
DATAGEN_ROWS = 3_000_000
ADS = 1_000
FRESHNESS_S = 60
PROBE_INTERVAL_S = 0.2
BACKGROUND_CLICKS_PER_S = 2_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CountsReader:
    """Follow the counts topic with read_committed and keep the latest row of each key."""

    def __init__(self, settings: Settings):
        self.consumer = KafkaConsumer(settings.topic_click_counts, bootstrap_servers=settings.kafka_bootstrap_servers,
                                      isolation_level="read_committed", auto_offset_reset="earliest",
                                      enable_auto_commit=False)
        self.latest: dict[tuple[str, int], dict] = {}

    def poll(self, timeout_ms: int = 200) -> float:
        """Read what is committed now; return the time the batch was seen."""
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        seen_at = time.time()
        for messages in batches.values():
            for message in messages:
                key = json.loads(message.key)
                self.latest[(key["ad_id"], key["window_start_ms"])] = json.loads(message.value)
        return seen_at

    def total(self, prefix: str = "ad-") -> int:
        return sum(row["clicks"] for (ad_id, _), row in self.latest.items() if ad_id.startswith(prefix))

    def close(self) -> None:
        self.consumer.close()


def _click(index: int, ad_id: str, event_time_ms: int) -> bytes:
    return json.dumps({"click_id": f"b-{index}", "ad_id": ad_id, "user_id": f"u-{index % 5000}",
                       "timestamp": format_utc_ms(event_time_ms), "event_time_ms": event_time_ms,
                       "click_id_source": "client", "attributes": {}, "received_at_ms": event_time_ms}).encode()


def load_backlog(settings: Settings, clicks: int) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20,
                             batch_size=256 * 1024, compression_type=None)
    start_ms = int(time.time() * 1000) - 3_600_000
    for index in range(clicks):
        ad_id = f"ad-{index % ADS}"
        event_time_ms = start_ms + index * 1000 // BACKLOG_CLICKS_PER_S
        producer.send(settings.topic_clicks, key=ad_id.encode(), value=_click(index, ad_id, event_time_ms))
    producer.flush()
    producer.close()


def wait_running(log_file: Path, process: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"speed job exited with {process.returncode}; see {log_file}")
        if log_file.exists() and "is RUNNING" in log_file.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise RuntimeError(f"speed job not RUNNING within {timeout_s} s; see {log_file}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()


def measure_backlog(settings: Settings) -> float:
    """Return the sustained clicks/s while the job works through the loaded backlog."""
    load_backlog(settings, BACKLOG_CLICKS)
    log_file = settings.path("flink", "logs", settings.speed_job_name, "job.log")
    process = start_job(settings, log_file)
    reader = CountsReader(settings)
    try:
        wait_running(log_file, process)
        marks: dict[float, float] = {}
        deadline = time.monotonic() + 600
        while len(marks) < 2 and time.monotonic() < deadline:
            seen_at = reader.poll()
            total = reader.total()
            for fraction in (0.1, 0.9):
                if fraction not in marks and total >= fraction * BACKLOG_CLICKS:
                    marks[fraction] = seen_at
        if len(marks) < 2:
            raise RuntimeError(f"counts reached only {reader.total()} of {BACKLOG_CLICKS} clicks")
        return 0.8 * BACKLOG_CLICKS / (marks[0.9] - marks[0.1])
    finally:
        reader.close()
        stop(process)


def measure_freshness(settings: Settings) -> tuple[list[float], int]:
    """Return the seconds from producing each probe click to seeing it counted, and the probes never seen.

    A probe not seen within 60 s after the last one was produced counts as missed.
    """
    log_file = settings.path("flink", "logs", settings.speed_job_name, "job.log")
    process = start_job(settings, log_file)
    reader = CountsReader(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=0)
    stop_background = threading.Event()

    def background() -> None:
        index = 10_000_000
        while not stop_background.is_set():
            started = time.monotonic()
            now_ms = int(time.time() * 1000)
            for _ in range(BACKGROUND_CLICKS_PER_S // 10):
                ad_id = f"ad-{index % ADS}"
                producer.send(settings.topic_clicks, key=ad_id.encode(), value=_click(index, ad_id, now_ms))
                index += 1
            time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))

    probes: dict[int, list[float]] = {}
    latencies = []
    try:
        wait_running(log_file, process)
        # NOTE: probing starts right away, so the first probes wait for the job's
        # first commit and p99 includes start-up, not only steady state.
        thread = threading.Thread(target=background, daemon=True)
        thread.start()
        pending: list[tuple[int, int, float]] = []  # (window start, running count, produced at)
        end = time.monotonic() + FRESHNESS_S
        next_probe = time.monotonic()
        probe_index = 0
        while time.monotonic() < end or pending:
            if time.monotonic() >= next_probe and time.monotonic() < end:
                produced_at = time.time()
                event_time_ms = int(produced_at * 1000)
                window = minute_start_ms(event_time_ms)
                producer.send(settings.topic_clicks, key=b"probe",
                              value=_click(-probe_index - 1, "probe", event_time_ms)).get(timeout=10)
                probes.setdefault(window, []).append(produced_at)
                pending.append((window, len(probes[window]), produced_at))
                probe_index += 1
                next_probe += PROBE_INTERVAL_S
            seen_at = reader.poll(timeout_ms=20)
            still_pending = []
            for window, number, produced_at in pending:
                row = reader.latest.get(("probe", window))
                if row is not None and row["clicks"] >= number:
                    latencies.append(seen_at - produced_at)
                elif time.monotonic() < end + 60:
                    still_pending.append((window, number, produced_at))
            pending = still_pending
        missed = probe_index - len(latencies)
        if missed:
            logger.warning("job %s: %d of %d freshness probes were not seen counted", settings.speed_job_name,
                           missed, probe_index)
        return latencies, missed
    finally:
        stop_background.set()
        producer.close()
        reader.close()
        stop(process)


def measure_datagen(settings: Settings, skewed: bool) -> float:
    """Return the clicks/s of the job's SQL on datagen with blackhole sinks."""
    result = subprocess.run(
        [str(settings.flink_python), "-m", "bench.speed_datagen_job", str(DATAGEN_ROWS),
         "skewed" if skewed else "uniform"],
        env=job_environment(settings), cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    )
    runtime_ms = json.loads(result.stdout.strip().splitlines()[-1])["net_runtime_ms"]
    return DATAGEN_ROWS / (runtime_ms / 1000)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_kafka_benchmarks(base: Settings, backend: str) -> tuple[float, list[float], int]:
    suffix = f"{backend}-{int(time.time())}"
    settings = base.replace(
        state_backend=backend, speed_job_name=f"bench-speed-{suffix}",
        topic_clicks=f"clicks-{suffix}", topic_click_counts=f"click-counts-{suffix}",
        topic_clicks_late=f"clicks-late-{suffix}", topic_late_counts=f"late-counts-{suffix}",
        topic_clicks_rejected=f"clicks-rejected-{suffix}")
    ensure_topics(settings)
    rate = measure_backlog(settings)
    logger.info("%s: %.0f clicks/s through Kafka", backend, rate)
    fresh_settings = settings.replace(speed_job_name=f"bench-fresh-{suffix}", topic_clicks=f"clicks-fresh-{suffix}",
                                      topic_click_counts=f"click-counts-fresh-{suffix}")
    ensure_topics(fresh_settings)
    latencies, missed = measure_freshness(fresh_settings)
    logger.info("%s: freshness p50 %.2f s, p99 %.2f s over %d probes, %d missed", backend,
                percentile(latencies, 0.5), percentile(latencies, 0.99), len(latencies), missed)
    return rate, latencies, missed


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    rows = []
    with tempfile.TemporaryDirectory(prefix="adclick-bench-speed-") as data_dir:
        base = load_settings().replace(data_dir=Path(data_dir), kafka_bootstrap_servers=f"127.0.0.1:{_free_port()}",
                                       kafka_controller_port=_free_port(), kafka_heap_mb=512, speed_jvm_heap_mb=1536)
        for backend in ("hashmap", "rocksdb"):
            ceiling = measure_datagen(base.replace(state_backend=backend), skewed=False)
            skewed = measure_datagen(base.replace(state_backend=backend), skewed=True)
            logger.info("%s: datagen %.0f clicks/s uniform, %.0f skewed", backend, ceiling, skewed)
            rows.append({"metric": f"datagen ceiling, {backend}", "value": ceiling, "unit": "clicks/s",
                         "peer": None, "peer_value": None, "ratio": None,
                         "notes": f"{DATAGEN_ROWS:,} unique clicks, 1,000 ads, blackhole sinks"})
            rows.append({"metric": f"datagen skewed (90% one ad), {backend}", "value": skewed, "unit": "clicks/s",
                         "peer": f"datagen ceiling, {backend}", "peer_value": ceiling,
                         "ratio": round(skewed / ceiling, 2), "notes": "local-global window aggregation"})

        broker = LocalKafkaBroker(base)
        broker.start()
        try:
            ceiling = next(r["value"] for r in rows if r["metric"] == "datagen ceiling, hashmap")
            rate, latencies, missed = run_kafka_benchmarks(base, "hashmap")
        finally:
            broker.stop()
    # Other processes on a shared machine slow every figure, so the load is recorded with them.
    load = f"1-minute load average {os.getloadavg()[0]:.1f} at the end"
    rows += [
        {"metric": "Kafka to committed counts, hashmap", "value": rate, "unit": "clicks/s",
         "peer": "datagen ceiling, hashmap", "peer_value": ceiling, "ratio": round(rate / ceiling, 2),
         "notes": f"{BACKLOG_CLICKS:,} clicks backlog, dedup, lateness and exactly-once on, "
                  f"checkpoint {base.checkpoint_interval_s} s; target 50,000; {load}"},
        {"metric": "freshness p50", "value": round(statistics.median(latencies), 2), "unit": "s",
         "peer": None, "peer_value": None, "ratio": None,
         "notes": f"{len(latencies)} probes seen, {missed} missed, under {BACKGROUND_CLICKS_PER_S} "
                  f"clicks/s, read_committed, early fire {base.flink_early_fire_s} s; {load}"},
        {"metric": "freshness p99", "value": round(percentile(latencies, 0.99), 2), "unit": "s",
         "peer": None, "peer_value": None, "ratio": None,
         "notes": f"bounded below by the checkpoint interval ({base.checkpoint_interval_s} s): "
                  "counts become visible when the checkpoint commits the transaction; target 5 s"},
    ]
    path = write_result("speed", rows, {"flink-sql-connector-kafka": "5.0.0-2.2"})
    logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
