"""Read queries of the serving store, each inside one read transaction.

The merge rule lives here: a closed day (a row in ``closed_days``) is read
from ``batch_minutes``, ``batch_hourly`` and ``batch_daily`` only, and every other day from
``speed_minutes`` only. The store keeps batch rows only for closed days, and
a day is closed or reopened in the same transaction that writes its rows, so
one snapshot never contains both sources or neither for a day. Hours and days
are sums of minutes of one source, because a local hour never crosses a
local midnight.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from serving_layer.store import ServingStore
from shared_logic.settings import Settings
from shared_logic.time_buckets import (
    GRANULARITIES,
    MINUTE_MS,
    billing_day,
    bucket_start_ms,
    day_bounds_ms,
    to_datetime,
)
from shared_logic.timestamps import TimestampError, parse_timestamp_ms

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
_DAY_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# Rows of the open days from the speed layer plus the closed days from batch.
_MERGED_MINUTES = """
    SELECT ad_id, window_start_ms AS minute_ms, hour_start_ms, billing_day, clicks, is_final,
           'speed' AS source, CAST(NULL AS VARCHAR) AS run_id
    FROM speed_minutes
    WHERE {speed_filter} AND billing_day NOT IN (SELECT billing_day FROM closed_days)
    UNION ALL
    SELECT ad_id, bucket_start_ms, hour_start_ms, billing_day, clicks, TRUE, 'batch', run_id
    FROM batch_minutes
    WHERE {batch_filter}
"""


# Speed minutes summed per bucket, plus the batch rows of the same
# granularity, which close_day sums from the batch minutes.
_SERIES_SPEED = """
    SELECT {key} AS bucket, clicks, is_final, 'speed' AS source, CAST(NULL AS VARCHAR) AS run_id
    FROM speed_minutes
    WHERE ad_id = $ad_id AND window_start_ms >= $start_ms AND window_start_ms < $end_ms
      AND billing_day NOT IN (SELECT billing_day FROM closed_days)
"""
_SERIES_BATCH = {
    "minute": "SELECT bucket_start_ms, clicks, TRUE, 'batch', run_id FROM batch_minutes "
              "WHERE ad_id = $ad_id AND bucket_start_ms >= $start_ms AND bucket_start_ms < $end_ms",
    "hour": "SELECT hour_start_ms, clicks, TRUE, 'batch', run_id FROM batch_hourly "
            "WHERE ad_id = $ad_id AND hour_start_ms >= $start_ms AND hour_start_ms < $end_ms",
    "day": "SELECT billing_day, clicks, TRUE, 'batch', run_id FROM batch_daily "
           "WHERE ad_id = $ad_id AND billing_day BETWEEN $first_day AND $last_day",
}
_SERIES_KEYS = {"minute": "window_start_ms", "hour": "hour_start_ms", "day": "billing_day"}
_SERIES_SQL = {
    granularity: f"""
        SELECT bucket, source, sum(clicks)::BIGINT, bool_and(is_final), any_value(run_id)
        FROM ({_SERIES_SPEED.format(key=_SERIES_KEYS[granularity])} UNION ALL {_SERIES_BATCH[granularity]})
        GROUP BY bucket, source ORDER BY bucket
    """
    for granularity in GRANULARITIES
}


class QueryError(ValueError):
    """An invalid query parameter; the message states what is accepted."""


# Queries accept instants and days from 1970 up to the end of 9998, so that
# bucket arithmetic on the range's end never leaves Python's date range.
MIN_QUERY_MS, MAX_QUERY_MS = 0, 253_370_764_800_000
MIN_QUERY_DAY, MAX_QUERY_DAY = date(1970, 1, 1), date(9998, 12, 31)


def parse_instant_ms(name: str, value: str) -> int:
    """Parse an epoch-millisecond integer or an ISO-8601 timestamp with a zone."""
    if value.lstrip("-").isdigit() and len(value) <= 20:
        instant = int(value)
    else:
        try:
            instant = parse_timestamp_ms(value)
        except TimestampError as exc:
            raise QueryError(f"{name}={value!r} {exc}, or epoch milliseconds such as 1764849600000") from exc
    if not MIN_QUERY_MS <= instant <= MAX_QUERY_MS:
        raise QueryError(f"{name}={value!r} is outside the supported range 1970-01-01 to 9998-12-31")
    return instant


def parse_day(name: str, value: str) -> date:
    if not _DAY_PATTERN.match(value):
        raise QueryError(f"{name}={value!r} is not a day; use YYYY-MM-DD, e.g. 2026-12-04")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise QueryError(f"{name}={value!r} is not a valid calendar date ({exc}); use YYYY-MM-DD") from exc
    if not MIN_QUERY_DAY <= day <= MAX_QUERY_DAY:
        raise QueryError(f"{name}={value!r} is outside the supported range {MIN_QUERY_DAY} to {MAX_QUERY_DAY}")
    return day


def _bucket_end_ms(start_ms: int, granularity: str, settings: Settings) -> int:
    if granularity == "minute":
        return start_ms + MINUTE_MS
    if granularity == "hour":
        # NOTE: assumes a local hour lasts 60 minutes of real time; zones
        # whose DST shift is 30 minutes (Australia/Lord_Howe) break that.
        return start_ms + HOUR_MS
    return day_bounds_ms(billing_day(start_ms, settings.billing_zone), settings.billing_zone)[1]


def _aligned_range(start_ms: int, end_ms: int, granularity: str, settings: Settings) -> tuple[int, int]:
    """Widen [start, end) to whole buckets, so a bucket is never summed from part of its minutes."""
    zone = settings.billing_zone
    aligned_start = bucket_start_ms(start_ms, granularity, zone)
    last_start = bucket_start_ms(end_ms - 1, granularity, zone)
    return aligned_start, _bucket_end_ms(last_start, granularity, settings)


def _day_sources(cursor, first: date, last: date) -> list[dict]:
    closed = dict(cursor.execute(
        "SELECT billing_day, run_id FROM closed_days WHERE billing_day BETWEEN ? AND ?", [first, last]
    ).fetchall())
    days = []
    day = first
    while day <= last:
        run_id = closed.get(day)
        days.append({"billing_day": day.isoformat(), "source": "batch" if run_id else "speed",
                     "closed": run_id is not None, "run_id": run_id})
        day += timedelta(days=1)
    return days


def _local_iso(epoch_ms: int, settings: Settings) -> str:
    return to_datetime(epoch_ms).astimezone(settings.billing_zone).isoformat()


def series(store: ServingStore, settings: Settings, ad_id: str, granularity: str,
           start_ms: int, end_ms: int) -> dict:
    """Return the clicks of one ad per bucket in [start, end), widened to whole buckets.

    Buckets with no recorded clicks are left out; ``days`` states which source
    covers each billing day in the range, so a missing bucket of a closed
    day is an authoritative zero.
    """
    if granularity not in GRANULARITIES:
        raise QueryError(f"granularity={granularity!r} is not supported; use one of {', '.join(GRANULARITIES)}")
    if start_ms >= end_ms:
        raise QueryError(f"start ({start_ms}) must be before end ({end_ms})")
    start_ms, end_ms = _aligned_range(start_ms, end_ms, granularity, settings)
    bucket_ms = {"minute": MINUTE_MS, "hour": HOUR_MS, "day": DAY_MS}[granularity]
    buckets_requested = -(-(end_ms - start_ms) // bucket_ms)
    if buckets_requested > settings.serving_max_series_buckets:
        raise QueryError(
            f"the range contains about {buckets_requested} {granularity} buckets; the maximum is "
            f"{settings.serving_max_series_buckets}, so shorten the range or use a coarser granularity")
    zone = settings.billing_zone
    first_day, last_day = billing_day(start_ms, zone), billing_day(end_ms - 1, zone)
    params = {"ad_id": ad_id, "start_ms": start_ms, "end_ms": end_ms}
    if granularity == "day":
        params.update(first_day=first_day, last_day=last_day)
    with store.read() as cursor:
        rows = cursor.execute(_SERIES_SQL[granularity], params).fetchall()
        days = _day_sources(cursor, first_day, last_day)
    buckets = []
    for bucket, source, clicks, is_final, run_id in rows:
        bucket_start = day_bounds_ms(bucket, zone)[0] if granularity == "day" else bucket
        buckets.append({
            "bucket_start_ms": bucket_start,
            "bucket_end_ms": _bucket_end_ms(bucket_start, granularity, settings),
            "bucket_start": _local_iso(bucket_start, settings),
            "clicks": clicks,
            "source": source,
            "is_final": bool(is_final),
            "run_id": run_id,
        })
    return {"ad_id": ad_id, "granularity": granularity, "start_ms": start_ms, "end_ms": end_ms,
            "billing_timezone": settings.billing_timezone, "buckets": buckets, "days": days}


def top_ads(store: ServingStore, settings: Settings, minutes: int, limit: int) -> dict:
    """Return the ``limit`` ads with the most clicks over the last ``minutes`` minutes of event time.

    Event time ends at the latest minute stored from either layer,
    not at the wall clock, so a replay or a paused speed layer still returns results.
    """
    if not 1 <= minutes <= settings.serving_max_top_minutes:
        raise QueryError(f"minutes={minutes} is out of range; use 1 to {settings.serving_max_top_minutes}")
    if not 1 <= limit <= settings.serving_max_top_limit:
        raise QueryError(f"limit={limit} is out of range; use 1 to {settings.serving_max_top_limit}")
    with store.read() as cursor:
        end_ms = cursor.execute("""
            SELECT greatest((SELECT max(window_end_ms) FROM speed_minutes),
                            (SELECT max(bucket_end_ms) FROM batch_minutes))
        """).fetchone()[0]
        if end_ms is None:
            return {"minutes": minutes, "limit": limit, "start_ms": None, "end_ms": None, "ads": []}
        start_ms = end_ms - minutes * MINUTE_MS
        merged = _MERGED_MINUTES.format(
            speed_filter="window_start_ms >= $start_ms AND window_start_ms < $end_ms",
            batch_filter="bucket_start_ms >= $start_ms AND bucket_start_ms < $end_ms")
        rows = cursor.execute(f"""
            SELECT ad_id, sum(clicks)::BIGINT AS total, bool_and(is_final), list(DISTINCT source ORDER BY source)
            FROM ({merged}) GROUP BY ad_id ORDER BY total DESC, ad_id LIMIT $limit
        """, {"start_ms": start_ms, "end_ms": end_ms, "limit": limit}).fetchall()
    ads = [{"rank": rank, "ad_id": ad_id, "clicks": clicks, "is_final": bool(is_final), "sources": sources}
           for rank, (ad_id, clicks, is_final, sources) in enumerate(rows, start=1)]
    return {"minutes": minutes, "limit": limit, "start_ms": start_ms, "end_ms": end_ms,
            "start": _local_iso(start_ms, settings), "end": _local_iso(end_ms, settings), "ads": ads}


def billing(store: ServingStore, settings: Settings, start_day: date, end_day: date,
            ad_id: str | None = None) -> dict:
    """Return billable clicks per ad per billing day in [start_day, end_day], with their source."""
    if start_day > end_day:
        raise QueryError(f"start_day {start_day} is after end_day {end_day}; both are inclusive")
    day_count = (end_day - start_day).days + 1
    if day_count > settings.serving_max_billing_days:
        raise QueryError(f"the range has {day_count} days; the maximum is {settings.serving_max_billing_days}, "
                         "so request fewer days at a time")
    ad_filter = "AND ad_id = $ad_id" if ad_id is not None else ""
    params: dict = {"start_day": start_day, "end_day": end_day}
    if ad_id is not None:
        params["ad_id"] = ad_id
    sql = f"""
        SELECT billing_day, ad_id, clicks, 'batch' AS source, TRUE AS is_final, run_id
        FROM batch_daily WHERE billing_day BETWEEN $start_day AND $end_day {ad_filter}
        UNION ALL
        SELECT billing_day, ad_id, sum(clicks)::BIGINT, 'speed', bool_and(is_final), NULL
        FROM speed_minutes
        WHERE billing_day BETWEEN $start_day AND $end_day {ad_filter}
          AND billing_day NOT IN (SELECT billing_day FROM closed_days)
        GROUP BY billing_day, ad_id
        ORDER BY billing_day, ad_id
    """
    with store.read() as cursor:
        rows = cursor.execute(sql, params).fetchall()
        days = _day_sources(cursor, start_day, end_day)
    result_rows = [{"billing_day": day.isoformat(), "ad_id": ad, "clicks": clicks, "source": source,
                    "is_final": bool(is_final), "run_id": run_id}
                   for day, ad, clicks, source, is_final, run_id in rows]
    return {"start_day": start_day.isoformat(), "end_day": end_day.isoformat(), "ad_id": ad_id,
            "billing_timezone": settings.billing_timezone, "days": days, "rows": result_rows,
            "total_clicks": sum(row["clicks"] for row in result_rows)}



def status(store: ServingStore, settings: Settings, health: dict) -> dict:
    """Return speed-layer freshness, the latest batch run per day and the closed/open boundary."""
    with store.read() as cursor:
        speed = cursor.execute("""
            SELECT max(window_start_ms), max(window_end_ms) FILTER (WHERE is_final), max(computed_at_ms),
                   count(*), count(*) FILTER (WHERE NOT is_final)
            FROM speed_minutes
        """).fetchone()
        late = cursor.execute(
            "SELECT count(DISTINCT click_id), max(watermark_ms), max(event_time_ms) FROM late_clicks").fetchone()
        late_counted = cursor.execute("SELECT coalesce(sum(late_clicks), 0) FROM late_counts").fetchone()[0]
        offsets = cursor.execute(
            "SELECT topic, kafka_partition, next_offset FROM speed_offsets ORDER BY ALL").fetchall()
        runs = cursor.execute("""
            SELECT b.billing_day, b.run_id, b.status, b.started_at_ms, b.ended_at_ms, b.billable_clicks,
                   b.duplicates_removed, b.non_billable_clicks, b.error, c.run_id
            FROM batch_runs b LEFT JOIN closed_days c USING (billing_day)
            QUALIFY row_number() OVER (PARTITION BY b.billing_day ORDER BY b.started_at_ms DESC, b.run_id DESC) = 1
            ORDER BY b.billing_day
        """).fetchall()
        closed = [row[0] for row in cursor.execute("SELECT billing_day FROM closed_days ORDER BY 1").fetchall()]
        open_days = [row[0] for row in cursor.execute("""
            SELECT DISTINCT billing_day FROM speed_minutes
            WHERE billing_day NOT IN (SELECT billing_day FROM closed_days) ORDER BY 1
        """).fetchall()]
    latest_window_start, latest_final_end, latest_computed, minute_rows, provisional_rows = speed
    batch_days = [{
        "billing_day": day.isoformat(), "run_id": run_id, "status": run_status, "started_at_ms": started,
        "ended_at_ms": ended, "billable_clicks": billable, "duplicates_removed": duplicates,
        "non_billable_clicks": non_billable, "error": error, "served_run_id": served_run,
        "closed": served_run is not None,
    } for day, run_id, run_status, started, ended, billable, duplicates, non_billable, error, served_run in runs]
    return {
        "billing_timezone": settings.billing_timezone,
        "health": health,
        "speed": {
            "latest_window_start_ms": latest_window_start,
            "latest_final_window_end_ms": latest_final_end,
            "latest_computed_at_ms": latest_computed,
            # The counts topic carries no watermark; clicks-late records do.
            "latest_watermark_ms": late[1],
            "minute_rows": minute_rows,
            "provisional_minute_rows": provisional_rows,
            "late_clicks": late[0],
            "late_clicks_counted": late_counted,
            "next_offsets": [{"topic": t, "partition": p, "next_offset": o} for t, p, o in offsets],
        },
        "batch": {
            "latest_run_per_day": batch_days,
            "duplicates_removed": sum(d["duplicates_removed"] or 0 for d in batch_days if d["closed"]),
            "non_billable_clicks": sum(d["non_billable_clicks"] or 0 for d in batch_days if d["closed"]),
        },
        "boundary": {
            "closed_days": [day.isoformat() for day in closed],
            "open_days_with_speed_data": [day.isoformat() for day in open_days],
            "latest_closed_day": closed[-1].isoformat() if closed else None,
        },
    }
