"""Parity: the batch totals equal the speed layer's final counts for the same clicks.

The clicks reach both layers through one topic. None is later than the
allowed lateness, so the speed layer counts every click in its final
minute, and the batch minute and daily totals must match exactly.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from batch_layer.landing import run_landing
from batch_layer.recompute import recompute_day
from batch_layer.tables import GOLD_DAILY, GOLD_MINUTE, table_path
from shared_logic.timestamps import parse_timestamp_ms
from tests.speed.helpers import SpeedJob, click, latest_by_key, produce, speed_test_settings, wait_until

DAY = date(2026, 1, 1)
M0 = parse_timestamp_ms("2026-01-01T12:00:00Z")
M1 = M0 + 60_000
M2 = M1 + 60_000
# Final counts expected from both layers, per (ad, minute start).
EXPECTED_MINUTES = {("ad-p1", M0): 2, ("ad-p1", M1): 1, ("ad-p2", M0): 1, ("ad-p2", M1): 1, ("ad-p2", M2): 2}


def test_batch_totals_equal_speed_final_counts(spark, base_settings, kafka_broker, tmp_path: Path) -> None:
    settings = speed_test_settings(base_settings).replace(data_dir=tmp_path)
    if not Path(settings.flink_python).exists():
        pytest.skip(f"the speed layer's PyFlink interpreter {settings.flink_python} is missing; run make setup")
    clicks = [
        click("p1-1", "ad-p1", "2026-01-01T12:00:05.000Z"),
        click("p1-2", "ad-p1", "2026-01-01T12:00:40.000Z"),
        click("p1-3", "ad-p1", "2026-01-01T12:01:10.000Z"),
        click("p2-1", "ad-p2", "2026-01-01T12:00:59.999Z"),
        click("p2-2", "ad-p2", "2026-01-01T12:01:00.000Z"),
        click("p2-3", "ad-p2", "2026-01-01T12:02:30.000Z"),
        # One second out of order, within the 2 s out-of-orderness of the test settings.
        click("p2-4", "ad-p2", "2026-01-01T12:02:29.000Z"),
        # Its nominal watermark 12:03:18 makes minutes 12:00 to 12:02 final (lateness 10 s).
        click("drv", "ad-driver", "2026-01-01T12:03:20.000Z"),
    ]
    job = SpeedJob(settings)
    job.start()
    try:
        produce(settings, clicks, partition=0)
        # A redelivered copy in another partition; both layers must count it once.
        produce(settings, [clicks[0]], partition=1)
        counts_topic = settings.topic_click_counts
        wait_until(lambda: all(latest_by_key(settings, counts_topic).get(key, {}).get("is_final")
                               for key in EXPECTED_MINUTES),
                   job, "the final counts of minutes 12:00 to 12:02", timeout_s=120)
        speed_counts = latest_by_key(settings, counts_topic)
    finally:
        job.stop()
    speed_final = {key: row["clicks"] for key, row in speed_counts.items() if row["is_final"]}

    run_landing(spark, settings, once=True)
    recompute_day(spark, settings, DAY)

    minute_rows = (spark.read.format("delta").load(str(table_path(settings, GOLD_MINUTE)))
                   .where(F.col("ad_id").isin("ad-p1", "ad-p2")).collect())
    batch_minutes = {(row["ad_id"], row["bucket_start_ms"]): row["clicks"] for row in minute_rows}
    assert speed_final == EXPECTED_MINUTES
    assert batch_minutes == speed_final

    daily_rows = spark.read.format("delta").load(str(table_path(settings, GOLD_DAILY))).collect()
    batch_daily = {row["ad_id"]: row["clicks"] for row in daily_rows}
    speed_daily = {}
    for (ad_id, _), clicks_in_minute in speed_final.items():
        speed_daily[ad_id] = speed_daily.get(ad_id, 0) + clicks_in_minute
    assert batch_daily["ad-p1"] == speed_daily["ad-p1"] == 3
    assert batch_daily["ad-p2"] == speed_daily["ad-p2"] == 4
