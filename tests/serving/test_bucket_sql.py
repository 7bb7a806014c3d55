"""The SQL time-bucket fragments agree with the Python rules on literal instants."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from shared_logic.bucket_sql import billing_day_sql, bucket_params, hour_start_sql
from shared_logic.time_buckets import billing_day, hour_start_ms
from shared_logic.timestamps import parse_timestamp_ms

# (zone, instant, expected billing day, expected local hour start)
CASES = [
    ("UTC", "2026-12-04T23:59:00Z", date(2026, 12, 4), "2026-12-04T23:00:00Z"),
    ("America/New_York", "2026-12-05T04:59:00Z", date(2026, 12, 4), "2026-12-05T04:00:00Z"),
    ("America/New_York", "2026-12-05T05:00:00Z", date(2026, 12, 5), "2026-12-05T05:00:00Z"),
    # DST ends 2026-11-01: local 01:00-02:00 happens twice, as two hours.
    ("America/New_York", "2026-11-01T05:30:00Z", date(2026, 11, 1), "2026-11-01T05:00:00Z"),
    ("America/New_York", "2026-11-01T06:30:00Z", date(2026, 11, 1), "2026-11-01T06:00:00Z"),
    # DST starts 2026-03-08: local 02:00-03:00 does not exist.
    ("America/New_York", "2026-03-08T07:10:00Z", date(2026, 3, 8), "2026-03-08T07:00:00Z"),
    ("Asia/Kolkata", "2026-12-04T18:29:00Z", date(2026, 12, 4), "2026-12-04T17:30:00Z"),
    ("Asia/Kolkata", "2026-12-04T18:30:00Z", date(2026, 12, 5), "2026-12-04T18:30:00Z"),
    ("Asia/Kathmandu", "2026-12-04T18:14:00Z", date(2026, 12, 4), "2026-12-04T17:15:00Z"),
    ("Australia/Adelaide", "2026-04-04T16:45:00Z", date(2026, 4, 5), "2026-04-04T16:30:00Z"),
]


@pytest.mark.parametrize("session_zone", ["UTC", "Pacific/Auckland", "America/Los_Angeles"])
@pytest.mark.parametrize(("zone", "instant", "expected_day", "expected_hour"), CASES)
def test_bucket_sql_matches_python_rules(session_zone, zone, instant, expected_day, expected_hour) -> None:
    epoch_ms = parse_timestamp_ms(instant)
    connection = duckdb.connect()
    connection.execute(f"SET TimeZone = '{session_zone}'")
    day, hour = connection.execute(
        f"SELECT {billing_day_sql('$instant_ms')}, {hour_start_sql('$instant_ms')}",
        {**bucket_params(zone), "instant_ms": epoch_ms},
    ).fetchone()

    assert day == expected_day
    assert day == billing_day(epoch_ms, _zone(zone))
    assert hour == parse_timestamp_ms(expected_hour)
    assert hour == hour_start_ms(epoch_ms, _zone(zone))


def test_bucket_sql_every_minute_of_dst_day() -> None:
    zone = "America/New_York"
    start = parse_timestamp_ms("2026-11-01T00:00:00Z")
    connection = duckdb.connect()
    rows = connection.execute(
        f"SELECT m, {billing_day_sql('m')}, {hour_start_sql('m')} FROM range($start, $end, 60000) t(m)",
        {**bucket_params(zone), "start": start, "end": start + 2 * 86_400_000},
    ).fetchall()

    assert len(rows) == 2 * 1440
    for minute, day, hour in rows:
        assert day == billing_day(minute, _zone(zone)), minute
        assert hour == hour_start_ms(minute, _zone(zone)), minute


def _zone(name: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
