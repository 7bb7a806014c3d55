"""Crash recovery: SIGKILL the job mid-stream, restart it, and compare with the ground truth."""

from __future__ import annotations

import random
from collections import Counter


from shared_logic.time_buckets import minute_start_ms
from shared_logic.timestamps import format_utc_ms, parse_timestamp_ms
from tests.kafka_helpers import read_topic
from tests.speed.helpers import (NO_IDLENESS_S, SpeedJob, click, latest_by_key, produce, produce_heartbeats,
                                 speed_test_settings, wait_until)

START_MS = parse_timestamp_ms("2026-01-01T12:00:00Z")
ADS = [f"ad-{number}" for number in range(10)]


def make_clicks(first: int, count: int, start_ms: int, span_ms: int) -> list[dict]:
    return [click(f"c-{first + index}", ADS[(first + index) % len(ADS)],
                  format_utc_ms(start_ms + index * span_ms // count))
            for index in range(count)]


# Idleness must play no part: the watermark moves only with records in the
# log (clicks and heartbeats), so the restarted job, which reads a backlog
# at its own pace, routes every click as the first run would have.


def test_killed_job_resumes_without_loss_or_double_count(base_settings, kafka_broker):
    settings = speed_test_settings(base_settings).replace(source_idle_timeout_s=NO_IDLENESS_S)
    batch_before = make_clicks(0, 600, START_MS, 90_000)
    batch_after = make_clicks(600, 600, START_MS + 90_000, 90_000)
    # Redelivered copies of already counted clicks, on other partitions.
    redelivered = random.Random(7).sample(batch_before, 50)
    expected = Counter((c["ad_id"], minute_start_ms(c["event_time_ms"])) for c in batch_before + batch_after)

    # Both runs start with a backlog, and each batch ends with the heartbeat
    # a collector writes once Kafka acknowledged it.
    produce(settings, batch_before)
    produce_heartbeats(settings, max(c["event_time_ms"] for c in batch_before))
    job = SpeedJob(settings)
    job.start()
    try:
        wait_until(lambda: len(latest_by_key(settings, settings.topic_click_counts)) > 0, job,
                   "the first counts")
        checkpoints = job.log().count("completed checkpoint")
        wait_until(lambda: job.log().count("completed checkpoint") >= checkpoints + 2, job,
                   "two more checkpoints")
        job.kill()

        for partition in range(3):
            produce(settings, redelivered[partition::3], partition=partition)
        produce(settings, batch_after)
        produce_heartbeats(settings, max(c["event_time_ms"] for c in batch_after))

        restarted = SpeedJob(settings)
        restarted.start()
        job = restarted
        assert "restores from checkpoint" in job.log()
        driver = click("driver", "ad-driver", "2026-01-01T12:05:00.000Z")
        produce(settings, [driver])
        produce_heartbeats(settings, driver["event_time_ms"])

        def all_final() -> bool:
            counts = latest_by_key(settings, settings.topic_click_counts)
            return all(counts.get(key, {}).get("is_final") for key in expected)

        try:
            wait_until(all_final, job, "every minute to become final", timeout_s=90)
        except AssertionError:
            if not job.is_running():
                raise
        # (ad_id, window_start_ms, watermark_ms) of every click routed as too late.
        late_clicks = read_topic(settings.kafka_bootstrap_servers, settings.topic_clicks_late)
        late_summary = Counter((record.value["ad_id"], minute_start_ms(record.value["event_time_ms"]),
                                record.value["watermark_ms"]) for record in late_clicks)
        assert late_summary == Counter(), "clicks routed as beyond the allowed lateness"
        assert latest_by_key(settings, settings.topic_late_counts) == {}

        counts = latest_by_key(settings, settings.topic_click_counts)
        not_final = {key: counts.get(key) for key in sorted(expected) if not counts.get(key, {}).get("is_final")}
        assert not_final == {}, "minutes not final 90 s after the driver click"

        actual = {key: row["clicks"] for key, row in counts.items() if key[0] != "ad-driver"}
        wrong = {key: (actual.get(key), count) for key, count in expected.items() if actual.get(key) != count}
        assert wrong == {}, "(ad_id, window_start_ms): (counted, expected)"
        assert set(actual) == set(expected)
    finally:
        job.stop()
