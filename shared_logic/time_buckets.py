"""Time buckets: half-open [start, end) minutes, hours and days.

Minutes are UTC minutes. Hours and days are those of the billing time zone,
so a day in a zone with daylight saving time can be 23 or 25 hours long.
Nothing here reads the machine's or a session's time zone.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

MINUTE_MS = 60_000
GRANULARITIES = ("minute", "hour", "day")


def minute_start_ms(event_time_ms: int) -> int:
    return event_time_ms - event_time_ms % MINUTE_MS


def to_datetime(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc)


def to_epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"datetime {moment!r} has no time zone")
    return round(moment.timestamp() * 1000)


def billing_day(event_time_ms: int, zone: ZoneInfo) -> date:
    """Return the billing day, in ``zone``, that contains the instant."""
    return to_datetime(event_time_ms).astimezone(zone).date()


def day_bounds_ms(day: date, zone: ZoneInfo) -> tuple[int, int]:
    """Return the UTC epoch-ms bounds [start, end) of a local day in ``zone``."""
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=zone)
    return to_epoch_ms(start), to_epoch_ms(end)


def hour_start_ms(event_time_ms: int, zone: ZoneInfo) -> int:
    """Return the start of the local hour in ``zone`` that contains the instant.

    Offsets of 30 or 45 minutes make local hours differ from UTC hours.
    """
    local = to_datetime(event_time_ms).astimezone(zone)
    offset_ms = int(local.utcoffset().total_seconds() * 1000)
    local_ms = event_time_ms + offset_ms
    return local_ms - local_ms % 3_600_000 - offset_ms


def bucket_start_ms(event_time_ms: int, granularity: str, zone: ZoneInfo) -> int:
    if granularity == "minute":
        return minute_start_ms(event_time_ms)
    if granularity == "hour":
        return hour_start_ms(event_time_ms, zone)
    if granularity == "day":
        return day_bounds_ms(billing_day(event_time_ms, zone), zone)[0]
    raise ValueError(f"granularity {granularity!r} is not one of {', '.join(GRANULARITIES)}")
