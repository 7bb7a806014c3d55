"""The speed job on a real broker: one scripted timeline, checked case by case.

Time constants (see speed_test_settings): out-of-orderness 2 s, allowed
lateness 10 s, idle timeout 1 s, checkpoints every 1 s. So minute M0
(12:00) becomes final once the nominal watermark (largest event time minus
2 s) reaches 12:01:09.999, that is once a click at 12:01:12 or later is read.
All clicks go to partition 0 of a 3-partition topic; partitions 1 and 2 never
receive a record.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from shared_logic.timestamps import parse_timestamp_ms
from tests.kafka_helpers import read_topic
from tests.speed.helpers import SpeedJob, click, latest_by_key, produce, speed_test_settings, wait_until

M0 = parse_timestamp_ms("2026-01-01T12:00:00Z")
M1 = M0 + 60_000
M2 = M1 + 60_000
QUIET_S = 6


@pytest.fixture(scope="module")
def timeline(base_settings, kafka_broker):
    """Run the whole timeline once and return what each step observed."""
    settings = speed_test_settings(base_settings)
    job = SpeedJob(settings)
    job.start()
    observed = {}
    try:
        produce(settings, [
            click("b-1", "ad-boundary", "2026-01-01T12:00:59.999Z"),
            click("b-2", "ad-boundary", "2026-01-01T12:01:00.000Z"),
            click("o-1", "ad-ooo", "2026-01-01T12:00:20.000Z"),
            click("o-2", "ad-ooo", "2026-01-01T12:00:18.500Z"),
            click("o-3", "ad-ooo", "2026-01-01T12:00:21.000Z"),
            click("o-4", "ad-ooo", "2026-01-01T12:00:19.200Z"),
            click("o-5", "ad-ooo", "2026-01-01T12:00:19.900Z"),
            click("d-1", "ad-dup", "2026-01-01T12:00:30.000Z"),
            click("d-1", "ad-dup", "2026-01-01T12:00:30.000Z"),
            click("d-2", "ad-dup", "2026-01-01T12:00:31.000Z"),
            click("d-1", "ad-dup", "2026-01-01T12:00:30.000Z"),
            click("l-1", "ad-lateok", "2026-01-01T12:00:30.000Z"),
            click("l-2", "ad-lateok", "2026-01-01T12:00:31.000Z"),
            # Nominal watermark 12:01:03: M0 has ended but is not final yet.
            click("drv-1", "ad-driver", "2026-01-01T12:01:05.000Z"),
        ], partition=0)
        counts = settings.topic_click_counts
        wait_until(lambda: latest_by_key(settings, counts).get(("ad-lateok", M0), {}).get("clicks") == 2,
                   job, "the provisional count of ad-lateok")
        observed["before_late"] = latest_by_key(settings, counts)[("ad-lateok", M0)]

        # Within the allowed lateness: M0 ended 3 s before the watermark.
        produce(settings, [click("l-3", "ad-lateok", "2026-01-01T12:00:40.000Z")], partition=0)
        wait_until(lambda: latest_by_key(settings, counts)[("ad-lateok", M0)]["clicks"] == 3,
                   job, "the late click within the allowed lateness")
        observed["after_late"] = latest_by_key(settings, counts)[("ad-lateok", M0)]

        # Nominal watermark 12:01:18 makes M0 final.
        produce(settings, [click("drv-2", "ad-driver", "2026-01-01T12:01:20.000Z")], partition=0)
        wait_until(lambda: latest_by_key(settings, counts)[("ad-lateok", M0)]["is_final"],
                   job, "M0 to become final")

        # Beyond the allowed lateness: M0 is final.
        produce(settings, [
            click("t-1", "ad-toolate", "2026-01-01T12:00:45.000Z"),
            click("l-4", "ad-lateok", "2026-01-01T12:00:50.000Z"),
        ], partition=0)
        wait_until(lambda: len(latest_by_key(settings, settings.topic_late_counts)) == 2,
                   job, "the late click counts")

        checkpoints_before_quiet = job.log().count("completed checkpoint")
        flink_log_before_quiet = len(job.flink_log())
        time.sleep(QUIET_S)
        observed["checkpoints_during_quiet"] = job.log().count("completed checkpoint") - checkpoints_before_quiet

        # Nominal watermark 12:02:28 makes M1 final.
        produce(settings, [click("drv-3", "ad-driver", "2026-01-01T12:02:30.000Z")], partition=0)
        wait_until(lambda: latest_by_key(settings, counts).get(("ad-driver", M1), {}).get("is_final", False),
                   job, "M1 to become final after the quiet stretch")
        wait_until(lambda: ("ad-driver", M2) in latest_by_key(settings, counts), job, "the M2 count")

        observed["counts"] = latest_by_key(settings, counts)
        observed["late_counts"] = latest_by_key(settings, settings.topic_late_counts)
        observed["late_clicks"] = [r.value for r in read_topic(settings.kafka_bootstrap_servers,
                                                               settings.topic_clicks_late)]
        observed["job_running"] = job.is_running()
        observed["job_log"] = job.log()
        # Startup logs harmless trigger failures while tasks deploy; only the
        # quiet stretch and what follows it are checked.
        observed["flink_log_since_quiet"] = job.flink_log()[flink_log_before_quiet:]
        observed["settings"] = settings
    finally:
        job.stop()
    return observed


def clicks_of(timeline, ad_id: str, window_start_ms: int) -> int:
    return timeline["counts"][(ad_id, window_start_ms)]["clicks"]


def test_out_of_order_clicks_all_counted(timeline):
    assert clicks_of(timeline, "ad-ooo", M0) == 5


def test_window_boundary_splits_minutes(timeline):
    assert clicks_of(timeline, "ad-boundary", M0) == 1
    assert clicks_of(timeline, "ad-boundary", M1) == 1


def test_duplicates_counted_once(timeline):
    assert clicks_of(timeline, "ad-dup", M0) == 2


def test_late_click_updates_published_window(timeline):
    assert timeline["before_late"]["clicks"] == 2
    assert timeline["before_late"]["is_final"] is False
    assert timeline["after_late"]["clicks"] == 3
    assert clicks_of(timeline, "ad-lateok", M0) == 3


def test_click_beyond_lateness_goes_to_clicks_late(timeline):
    assert ("ad-toolate", M0) not in timeline["counts"]
    late = {record["click_id"]: record for record in timeline["late_clicks"]}
    assert sorted(late) == ["l-4", "t-1"]
    # The nominal watermark is drv-2's event time minus the 2 s out-of-orderness.
    watermark_ms = parse_timestamp_ms("2026-01-01T12:01:18.000Z")
    assert late["t-1"]["watermark_ms"] == watermark_ms
    assert late["t-1"]["lateness_ms"] == watermark_ms - parse_timestamp_ms("2026-01-01T12:00:45.000Z")
    assert late["l-4"]["lateness_ms"] == watermark_ms - parse_timestamp_ms("2026-01-01T12:00:50.000Z")
    assert late["t-1"]["attributes"] == {"country": "DE", "campaign_rank": 3}
    assert late["t-1"]["timestamp"] == "2026-01-01T12:00:45.000Z"


def test_late_counts_per_ad_and_window(timeline):
    late_counts = timeline["late_counts"]
    assert late_counts[("ad-toolate", M0)]["late_clicks"] == 1
    assert late_counts[("ad-lateok", M0)]["late_clicks"] == 1
    assert late_counts[("ad-toolate", M0)]["window_end_ms"] == M1


def test_minutes_final_with_one_busy_partition(timeline):
    for ad_id in ("ad-boundary", "ad-ooo", "ad-dup", "ad-lateok"):
        assert timeline["counts"][(ad_id, M0)]["is_final"] is True, ad_id
    assert timeline["counts"][("ad-driver", M1)]["is_final"] is True
    assert timeline["counts"][("ad-driver", M1)]["clicks"] == 2
    assert timeline["counts"][("ad-driver", M2)]["is_final"] is False


def test_count_row_contract(timeline):
    row = timeline["counts"][("ad-ooo", M0)]
    assert set(row) == {"ad_id", "window_start_ms", "window_end_ms", "clicks", "is_final", "computed_at_ms"}
    assert row["window_start_ms"] == M0
    assert row["window_end_ms"] == M1
    assert abs(row["computed_at_ms"] - time.time() * 1000) < 600_000


def test_quiet_stretch_causes_no_failure(timeline):
    assert timeline["job_running"]
    assert timeline["checkpoints_during_quiet"] >= 2
    assert "RESTARTING" not in timeline["job_log"]
    failures = re.findall(r".*(?:Failed to trigger checkpoint|checkpoint \d+ .*(?:failed|declined|expired)).*",
                          timeline["flink_log_since_quiet"], flags=re.IGNORECASE)
    assert failures == []
