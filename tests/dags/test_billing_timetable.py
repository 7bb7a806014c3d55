"""The nightly billing timetable: one run per local day, covering exactly that day."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared_logic.time_buckets import day_bounds_ms, to_epoch_ms
from tests.dags.conftest import load_dags

# (zone, first day, days, {day: hours}) around each zone's daylight-saving changes.
CASES = [
    ("America/New_York", date(2024, 3, 8), 5, {date(2024, 3, 10): 23}),
    ("America/New_York", date(2024, 11, 1), 5, {date(2024, 11, 3): 25}),
    ("Europe/Berlin", date(2024, 3, 29), 4, {date(2024, 3, 31): 23}),
    ("Europe/Berlin", date(2024, 10, 25), 4, {date(2024, 10, 27): 25}),
    ("UTC", date(2024, 3, 9), 3, {}),
]


def scheduled_runs(dag, first_day: date, count: int, zone: ZoneInfo):
    """Return the next ``count`` data intervals the scheduler creates from ``first_day`` on."""
    from airflow.timetables.base import TimeRestriction

    import pendulum

    earliest = pendulum.datetime(first_day.year, first_day.month, first_day.day, tz=zone.key)
    restriction = TimeRestriction(earliest=earliest, latest=None, catchup=True)
    intervals, last = [], None
    for _ in range(count):
        info = dag.timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        intervals.append(info)
        last = info.data_interval
    return intervals


@pytest.mark.parametrize(("zone_name", "first_day", "count", "long_or_short"), CASES,
                         ids=[f"{case[0]}-{case[1]}" for case in CASES])
def test_one_run_per_local_day(monkeypatch, zone_name, first_day, count, long_or_short):
    zone = ZoneInfo(zone_name)
    dags = load_dags(monkeypatch, {"ADCLICK_BILLING_TIMEZONE": zone_name,
                                   "ADCLICK_AIRFLOW_FIRST_BILLING_DAY": "2024-01-01"})
    runs = scheduled_runs(dags["billing_nightly"], first_day, count, zone)

    for offset, info in enumerate(runs):
        day = first_day + timedelta(days=offset)
        start, end = info.data_interval.start, info.data_interval.end
        assert start.astimezone(zone).date() == day
        assert (to_epoch_ms(start), to_epoch_ms(end)) == day_bounds_ms(day, zone), day
        assert end - start == timedelta(hours=long_or_short.get(day, 24)), day
        assert info.logical_date == start, day
        # The run starts once its day is over, not before.
        assert info.run_after == end, day
