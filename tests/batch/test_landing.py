"""Landing from a real Kafka broker into raw_clicks: exactly once across reruns and kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from batch_layer.landing import run_landing
from batch_layer.recompute import recompute_day
from batch_layer.tables import CLICKS_DEDUPED, GOLD_DAILY, RAW_CLICKS, table_path
from shared_logic.settings import Settings
from shared_logic.timestamps import format_utc_ms, parse_timestamp_ms
from tests.spark_fixture import assert_rows_equal
from tests.speed.helpers import produce, produce_heartbeats

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAY_START_MS = parse_timestamp_ms("2026-12-04T00:00:00Z")


@pytest.fixture
def landing_settings(isolated_settings: Settings, tmp_path: Path) -> Settings:
    """Fresh topics and a data directory (Delta tables, checkpoint) of this test only."""
    return isolated_settings.replace(data_dir=tmp_path)


def click_record(click_id: str, ad_id: str, event_time_ms: int) -> dict:
    return {"click_id": click_id, "ad_id": ad_id, "user_id": f"user-{click_id}",
            "timestamp": format_utc_ms(event_time_ms), "event_time_ms": event_time_ms,
            "click_id_source": "client", "attributes": {"country": "DE", "rank": 3, "new": True},
            "received_at_ms": event_time_ms + 50}


def raw_table(spark, settings: Settings):
    return spark.read.format("delta").load(str(table_path(settings, RAW_CLICKS)))


def assert_each_record_once(spark, settings: Settings, expected_click_ids: set[str]) -> None:
    raw = raw_table(spark, settings)
    assert raw.count() == len(expected_click_ids)
    assert raw.select("kafka_partition", "kafka_offset").distinct().count() == len(expected_click_ids)
    assert {row["click_id"] for row in raw.select("click_id").collect()} == expected_click_ids


def test_landing_twice_same_offsets(spark, landing_settings) -> None:
    records = [click_record(f"c{i}", f"ad-{i % 4}", DAY_START_MS + i * 1_000) for i in range(30)]
    produce(landing_settings, records)
    # Heartbeats carry no click, so they do not land.
    produce_heartbeats(landing_settings, DAY_START_MS + 29_000)

    run_landing(spark, landing_settings, once=True)
    run_landing(spark, landing_settings, once=True)

    assert_each_record_once(spark, landing_settings, {f"c{i}" for i in range(30)})
    produce(landing_settings, [click_record("late", "ad-0", DAY_START_MS - 1)])
    run_landing(spark, landing_settings, once=True)
    assert_each_record_once(spark, landing_settings, {f"c{i}" for i in range(30)} | {"late"})

    row = raw_table(spark, landing_settings).where(F.col("click_id") == "late").first()
    assert row["event_date"] == date(2026, 12, 3)
    assert row["event_time_ms"] == DAY_START_MS - 1
    assert row["timestamp"] == "2026-12-03T23:59:59.999Z"
    assert row["attributes"] == {"country": "DE", "rank": "3", "new": "true"}
    assert row["received_at_ms"] == DAY_START_MS + 49
    assert row["kafka_timestamp_ms"] > 0
    assert row["ingest_time_ms"] >= row["kafka_timestamp_ms"]


def _land_in_child(settings: Settings, log_file: Path) -> subprocess.Popen:
    env = {**os.environ, **settings.to_environ(), "ADCLICK_LANDING_MAX_OFFSETS_PER_TRIGGER": "40",
           "ADCLICK_SPARK_SHUFFLE_PARTITIONS": "2"}
    with open(log_file, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "batch_layer.land_job", "--once"],
                                cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _batch_ids(directory: Path) -> set[int]:
    if not directory.exists():
        return set()
    return {int(path.name) for path in directory.iterdir() if path.name.isdigit()}


def test_landing_killed_mid_batch_then_rerun(spark, landing_settings, tmp_path) -> None:
    click_ids = {f"k{i}" for i in range(400)}
    produce(landing_settings, [click_record(f"k{i}", f"ad-{i % 7}", DAY_START_MS + i) for i in range(400)])
    checkpoint = landing_settings.landing_checkpoint_dir
    log_file = tmp_path / "land_job.log"

    child = _land_in_child(landing_settings, log_file)
    try:
        deadline = time.monotonic() + 240
        # Kill once batch 2 is planned: its offsets are written before its rows are.
        while 2 not in _batch_ids(checkpoint / "offsets"):
            assert child.poll() is None, f"land_job exited early:\n{log_file.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"land_job planned no batch 2:\n{log_file.read_text()[-3000:]}"
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=60)

    planned = _batch_ids(checkpoint / "offsets")
    committed = _batch_ids(checkpoint / "commits")
    assert max(planned) > max(committed, default=-1), (planned, committed)

    run_landing(spark, landing_settings, once=True)

    assert_each_record_once(spark, landing_settings, click_ids)


def test_dedup_across_kafka_partitions(spark, landing_settings) -> None:
    duplicate = click_record("dup", "ad-x", DAY_START_MS + 5_000)
    for partition in (0, 2, 5):
        produce(landing_settings, [duplicate], partition=partition)
    produce(landing_settings, [click_record("solo", "ad-x", DAY_START_MS + 6_000)], partition=1)
    produce(landing_settings, [click_record("other", "ad-y", DAY_START_MS + 7_000)], partition=5)

    run_landing(spark, landing_settings, once=True)
    result = recompute_day(spark, landing_settings, date(2026, 12, 4))

    silver = spark.read.format("delta").load(str(table_path(landing_settings, CLICKS_DEDUPED)))
    assert_rows_equal(silver, [{"click_id": "dup", "copies": 3}, {"click_id": "solo", "copies": 1},
                               {"click_id": "other", "copies": 1}], columns=["click_id", "copies"])
    daily = spark.read.format("delta").load(str(table_path(landing_settings, GOLD_DAILY)))
    assert_rows_equal(daily, [{"ad_id": "ad-x", "clicks": 2, "duplicates_removed": 2},
                              {"ad_id": "ad-y", "clicks": 1, "duplicates_removed": 0}],
                      columns=["ad_id", "clicks", "duplicates_removed"])
    assert result.totals.input_rows == 5
    assert result.totals.billable_clicks == 3
    assert result.totals.duplicates_removed == 2
    assert set(result.totals.kafka_offsets) == {0, 1, 2, 5}
