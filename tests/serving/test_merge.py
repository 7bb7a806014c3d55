"""The merge of speed and batch in the store, on a closed day, an open day and their boundary.

Billing is in America/New_York, so the day boundary at local midnight is
05:00 UTC and the day 2026-11-01 has 25 hours.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import date

import pytest

from serving_layer import queries
from serving_layer.reconcile import reconcile_day
from shared_logic.timestamps import parse_timestamp_ms
from tests.serving.helpers import write_batch_run

CLOSED_DAY = date(2026, 11, 30)
OPEN_DAY = date(2026, 12, 1)
# Local 23:58 and 23:59 of the closed day, 00:00 and 00:01 of the open day.
M2358 = parse_timestamp_ms("2026-12-01T04:58:00Z")
M2359 = parse_timestamp_ms("2026-12-01T04:59:00Z")
M0000 = parse_timestamp_ms("2026-12-01T05:00:00Z")
M0001 = parse_timestamp_ms("2026-12-01T05:01:00Z")
NOON = parse_timestamp_ms("2026-11-30T17:00:00Z")


def speed(ad_id: str, start_ms: int, clicks: int, is_final: bool = True, offset: int = 0) -> dict:
    return {"ad_id": ad_id, "window_start_ms": start_ms, "window_end_ms": start_ms + 60_000, "clicks": clicks,
            "is_final": is_final, "computed_at_ms": start_ms + 70_000, "kafka_partition": 0, "kafka_offset": offset}


@pytest.fixture
def loaded(service):
    """Speed counts on both days; batch rows that differ from speed, so the source is visible."""
    service.store.apply_speed_batch([
        speed("ad-1", M2358, 5), speed("ad-1", M2359, 7), speed("ad-1", M0000, 3),
        speed("ad-1", M0001, 4, is_final=False), speed("ad-2", NOON, 10),
    ], [], [], {("click-counts", 0): 5})
    return service


def close_day_one(service, **changes) -> str:
    minutes = changes.pop("minutes", {("ad-1", M2358): 6, ("ad-1", M2359): 7, ("ad-2", NOON): 9})
    run_id = write_batch_run(service.settings, CLOSED_DAY, minutes, started_at_ms=changes.pop("started_at_ms", 1),
                             **changes)
    service.loader.poll()
    return run_id


def billing_rows(service, ad_id=None) -> list[tuple]:
    result = queries.billing(service.store, service.settings, CLOSED_DAY, OPEN_DAY, ad_id)
    return [(r["billing_day"], r["ad_id"], r["clicks"], r["source"], r["is_final"]) for r in result["rows"]]


def series_rows(service, granularity: str, start: str, end: str) -> list[tuple]:
    result = queries.series(service.store, service.settings, "ad-1", granularity,
                            parse_timestamp_ms(start), parse_timestamp_ms(end))
    return [(b["bucket_start"], b["clicks"], b["source"], b["is_final"]) for b in result["buckets"]]


def test_open_days_come_from_speed(loaded) -> None:
    assert billing_rows(loaded) == [
        ("2026-11-30", "ad-1", 12, "speed", True),
        ("2026-11-30", "ad-2", 10, "speed", True),
        ("2026-12-01", "ad-1", 7, "speed", False),
    ]


def test_closed_day_comes_from_batch_only(loaded) -> None:
    close_day_one(loaded)

    assert billing_rows(loaded) == [
        ("2026-11-30", "ad-1", 13, "batch", True),
        ("2026-11-30", "ad-2", 9, "batch", True),
        ("2026-12-01", "ad-1", 7, "speed", False),
    ]


def test_boundary_minutes_have_no_gap_or_overlap(loaded) -> None:
    close_day_one(loaded)

    assert series_rows(loaded, "minute", "2026-11-30T23:58:00-05:00", "2026-12-01T00:02:00-05:00") == [
        ("2026-11-30T23:58:00-05:00", 6, "batch", True),
        ("2026-11-30T23:59:00-05:00", 7, "batch", True),
        ("2026-12-01T00:00:00-05:00", 3, "speed", True),
        ("2026-12-01T00:01:00-05:00", 4, "speed", False),
    ]


def test_boundary_hours_and_days_sum_their_minutes(loaded) -> None:
    close_day_one(loaded)

    assert series_rows(loaded, "hour", "2026-11-30T23:00:00-05:00", "2026-12-01T01:00:00-05:00") == [
        ("2026-11-30T23:00:00-05:00", 13, "batch", True),
        ("2026-12-01T00:00:00-05:00", 7, "speed", False),
    ]
    assert series_rows(loaded, "day", "2026-11-30T00:00:00-05:00", "2026-12-02T00:00:00-05:00") == [
        ("2026-11-30T00:00:00-05:00", 13, "batch", True),
        ("2026-12-01T00:00:00-05:00", 7, "speed", False),
    ]


def test_series_range_widened_to_whole_hours(loaded) -> None:
    close_day_one(loaded)

    result = queries.series(loaded.store, loaded.settings, "ad-1", "hour", M2359, M0000 + 1)

    assert result["start_ms"] == parse_timestamp_ms("2026-12-01T04:00:00Z")
    assert result["end_ms"] == parse_timestamp_ms("2026-12-01T06:00:00Z")
    assert [b["clicks"] for b in result["buckets"]] == [13, 7]


def test_top_ads_across_boundary(loaded) -> None:
    close_day_one(loaded)

    result = queries.top_ads(loaded.store, loaded.settings, minutes=4, limit=5)

    assert result["end_ms"] == M0001 + 60_000
    assert [(a["ad_id"], a["clicks"], a["sources"], a["is_final"]) for a in result["ads"]] == [
        ("ad-1", 20, ["batch", "speed"], False),
    ]


def test_recomputed_day_replaces_old_numbers(loaded) -> None:
    first_run = close_day_one(loaded)
    second_run = close_day_one(loaded, minutes={("ad-1", M2358): 2, ("ad-3", NOON): 5}, started_at_ms=2)

    assert billing_rows(loaded) == [
        ("2026-11-30", "ad-1", 2, "batch", True),
        ("2026-11-30", "ad-3", 5, "batch", True),
        ("2026-12-01", "ad-1", 7, "speed", False),
    ]
    assert series_rows(loaded, "minute", "2026-11-30T23:58:00-05:00", "2026-12-01T00:00:00-05:00") == [
        ("2026-11-30T23:58:00-05:00", 2, "batch", True),
    ]
    assert series_rows(loaded, "hour", "2026-11-30T23:00:00-05:00", "2026-12-01T00:00:00-05:00") == [
        ("2026-11-30T23:00:00-05:00", 2, "batch", True),
    ]
    assert series_rows(loaded, "day", "2026-11-30T00:00:00-05:00", "2026-12-01T00:00:00-05:00") == [
        ("2026-11-30T00:00:00-05:00", 2, "batch", True),
    ]
    assert [a["clicks"] for a in queries.top_ads(loaded.store, loaded.settings, 4, 5)["ads"]] == [9]
    days = queries.billing(loaded.store, loaded.settings, CLOSED_DAY, CLOSED_DAY)["days"]
    assert days == [{"billing_day": "2026-11-30", "source": "batch", "closed": True, "run_id": second_run}]
    assert second_run != first_run
    assert reconcile_day(loaded.store, loaded.settings, CLOSED_DAY)["run_id"] == second_run


def test_running_recompute_keeps_day_closed(loaded) -> None:
    close_day_one(loaded)
    write_batch_run(loaded.settings, CLOSED_DAY, {}, status="running", started_at_ms=5, write_gold=False)
    loaded.loader.poll()

    assert billing_rows(loaded, "ad-2") == [("2026-11-30", "ad-2", 9, "batch", True)]


def test_failed_latest_run_reopens_day(loaded) -> None:
    close_day_one(loaded)
    write_batch_run(loaded.settings, CLOSED_DAY, {}, status="failed", started_at_ms=5, write_gold=False)
    loaded.loader.poll()

    assert billing_rows(loaded, "ad-2") == [("2026-11-30", "ad-2", 10, "speed", True)]


def test_gold_not_matching_run_total_not_loaded(loaded) -> None:
    close_day_one(loaded, billable_clicks=999)

    assert billing_rows(loaded, "ad-2") == [("2026-11-30", "ad-2", 10, "speed", True)]
    assert loaded.store.closed_runs() == {}


def test_day_switch_is_atomic_for_open_snapshot(loaded) -> None:
    run_id = write_batch_run(loaded.settings, CLOSED_DAY, {("ad-2", NOON): 9}, started_at_ms=1)
    sql = "SELECT source, sum(clicks) FROM ({}) GROUP BY source".format(queries._MERGED_MINUTES.format(
        speed_filter="ad_id = 'ad-2'", batch_filter="ad_id = 'ad-2'"))
    with loaded.store.read() as snapshot:
        before = snapshot.execute(sql).fetchall()
        closer = threading.Thread(target=loaded.loader.poll)
        closer.start()
        closer.join()
        during = snapshot.execute(sql).fetchall()
    with loaded.store.read() as cursor:
        after = cursor.execute(sql).fetchall()

    assert loaded.store.closed_runs() == {CLOSED_DAY: run_id}
    assert before == [("speed", 10)]
    assert during == [("speed", 10)]
    assert after == [("batch", 9)]


def test_results_independent_of_session_and_machine_zone(loaded) -> None:
    close_day_one(loaded)

    def snapshot() -> tuple:
        return (
            billing_rows(loaded),
            series_rows(loaded, "hour", "2026-11-30T22:00:00-05:00", "2026-12-01T02:00:00-05:00"),
            series_rows(loaded, "day", "2026-11-29T00:00:00-05:00", "2026-12-02T00:00:00-05:00"),
            queries.top_ads(loaded.store, loaded.settings, 60, 10)["ads"],
        )

    baseline = snapshot()
    original_tz = os.environ.get("TZ")
    cursor = loaded.store.cursor()
    try:
        for machine_zone, session_zone in (("Pacific/Kiritimati", "Asia/Tokyo"), ("America/Adak", "Asia/Kolkata")):
            os.environ["TZ"] = machine_zone
            time.tzset()
            cursor.execute(f"SET GLOBAL TimeZone = '{session_zone}'")
            assert snapshot() == baseline, (machine_zone, session_zone)
    finally:
        cursor.execute("RESET GLOBAL TimeZone")
        cursor.close()
        if original_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = original_tz
        time.tzset()


def test_repeated_dst_hour_split_in_two(service) -> None:
    # 2026-11-01 in New York: local 01:00-02:00 happens at 05:00Z (EDT) and again at 06:00Z (EST).
    first, second = parse_timestamp_ms("2026-11-01T05:30:00Z"), parse_timestamp_ms("2026-11-01T06:30:00Z")
    service.store.apply_speed_batch([speed("ad-1", first, 2), speed("ad-1", second, 3)], [], [], {})
    result = queries.series(service.store, service.settings, "ad-1", "hour",
                            parse_timestamp_ms("2026-11-01T04:00:00Z"), parse_timestamp_ms("2026-11-01T08:00:00Z"))

    assert [(b["bucket_start"], b["clicks"]) for b in result["buckets"]] == [
        ("2026-11-01T01:00:00-04:00", 2),
        ("2026-11-01T01:00:00-05:00", 3),
    ]
    day = queries.series(service.store, service.settings, "ad-1", "day",
                         parse_timestamp_ms("2026-11-01T04:00:00Z"), parse_timestamp_ms("2026-11-01T08:00:00Z"))
    assert [(b["bucket_start_ms"], b["bucket_end_ms"] - b["bucket_start_ms"]) for b in day["buckets"]] == [
        (parse_timestamp_ms("2026-11-01T04:00:00Z"), 25 * 3_600_000),
    ]


def test_later_offset_replaces_count_and_keeps_final(service) -> None:
    service.store.apply_speed_batch([speed("ad-1", NOON, 4, offset=1), speed("ad-1", NOON, 6, offset=2)],
                                    [], [], {})
    service.store.apply_speed_batch([speed("ad-1", NOON, 8, is_final=False, offset=3)], [], [], {})

    with service.store.read() as cursor:
        row = cursor.execute("SELECT clicks, is_final, final_clicks FROM speed_minutes").fetchall()
    assert row == [(8, False, 6)]


def test_run_in_other_billing_zone_ignored(loaded) -> None:
    utc = loaded.settings.replace(billing_timezone="UTC")
    write_batch_run(utc, CLOSED_DAY, {("ad-2", NOON): 9}, started_at_ms=1, write_gold=False)
    loaded.loader.poll()

    assert loaded.store.closed_runs() == {}
