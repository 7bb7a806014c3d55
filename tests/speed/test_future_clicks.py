"""A click stamped in the future moves the watermark only as far as its receipt time."""

from __future__ import annotations

import time

from shared_logic.time_buckets import minute_start_ms
from shared_logic.timestamps import format_utc_ms, parse_timestamp_ms
from tests.kafka_helpers import read_topic
from tests.speed.helpers import SpeedJob, click, latest_by_key, produce, speed_test_settings, wait_until

NOW_MS = parse_timestamp_ms("2026-01-01T12:00:10Z")


def at(click_id: str, ad_id: str, event_time_ms: int, received_at_ms: int) -> dict:
    record = click(click_id, ad_id, format_utc_ms(event_time_ms))
    record["received_at_ms"] = received_at_ms
    return record


def test_future_click_after_idleness(base_settings, kafka_broker) -> None:
    # Idle timeout 1 s: every partition is idle when the future click arrives,
    # so it alone would set the watermark if its event time counted in full.
    settings = speed_test_settings(base_settings)
    job = SpeedJob(settings)
    job.start()
    try:
        for partition in range(3):
            produce(settings, [at(f"before-{partition}", "ad-a", NOW_MS, NOW_MS)], partition=partition)
        wait_until(lambda: len(latest_by_key(settings, settings.topic_click_counts)) > 0, job, "the first count")
        time.sleep(3)

        future_ms = NOW_MS + 290_000
        produce(settings, [at("future", "ad-future", future_ms, NOW_MS + 1_000)], partition=0)
        time.sleep(3)
        after = [at(f"after-{partition}", "ad-a", NOW_MS + 2_000, NOW_MS + 2_000) for partition in range(3)]
        for partition, record in enumerate(after):
            produce(settings, [record], partition=partition)

        key = ("ad-a", minute_start_ms(NOW_MS))
        wait_until(lambda: latest_by_key(settings, settings.topic_click_counts).get(key, {}).get("clicks") == 6,
                   job, "the six clicks of ad-a to be counted", timeout_s=60)
        late = read_topic(settings.kafka_bootstrap_servers, settings.topic_clicks_late)
        assert [record.value["click_id"] for record in late] == []
    finally:
        job.stop()
