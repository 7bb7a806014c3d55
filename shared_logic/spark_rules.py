"""The shared click rules as Spark column expressions, for the batch layer.

Each function mirrors a plain function in ``time_buckets`` or
``billing_rules`` and takes and returns ``pyspark.sql.Column`` values.
None of them reads the JVM's or the Spark session's time zone:
``from_utc_timestamp`` shifts an instant by a named zone's offset, and the
rest is arithmetic on epoch milliseconds. Import this module only where
PySpark is installed.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from shared_logic.billing_rules import FUTURE_EVENT_TIME, MISSING_EVENT_TIME, MISSING_ID
from shared_logic.time_buckets import MINUTE_MS

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def local_epoch_ms(event_time_ms: Column, zone: str) -> Column:
    """Return the wall-clock time in ``zone`` written as if it were UTC epoch ms."""
    return F.unix_millis(F.from_utc_timestamp(F.timestamp_millis(event_time_ms), zone))


def utc_date(event_time_ms: Column) -> Column:
    """Return the UTC calendar date of an instant (the bronze partition)."""
    return F.date_from_unix_date(F.floor(event_time_ms / DAY_MS).cast("int"))


def billing_day(event_time_ms: Column, zone: str) -> Column:
    """Return the date in ``zone`` that contains the instant, like ``time_buckets.billing_day``."""
    return F.date_from_unix_date(F.floor(local_epoch_ms(event_time_ms, zone) / DAY_MS).cast("int"))


def minute_start_ms(event_time_ms: Column) -> Column:
    return event_time_ms - F.pmod(event_time_ms, F.lit(MINUTE_MS))


def hour_start_ms(event_time_ms: Column, zone: str) -> Column:
    """Return the start of the local hour in ``zone``, like ``time_buckets.hour_start_ms``."""
    return event_time_ms - F.pmod(local_epoch_ms(event_time_ms, zone), F.lit(HOUR_MS))


def _is_missing(value: Column) -> Column:
    return value.isNull() | (F.trim(value) == "")


def non_billable_reason(
    *,
    click_id: Column,
    ad_id: Column,
    user_id: Column,
    event_time_ms: Column,
    received_at_ms: Column,
    max_future_skew_s: int,
) -> Column:
    """Return the reason a click is not billable, or null, like ``billing_rules.non_billable_reason``."""
    future_limit_ms = received_at_ms + F.lit(max_future_skew_s * 1000)
    return (
        F.when(_is_missing(click_id) | _is_missing(ad_id) | _is_missing(user_id), F.lit(MISSING_ID))
        .when(event_time_ms.isNull(), F.lit(MISSING_EVENT_TIME))
        .when(received_at_ms.isNotNull() & (event_time_ms > future_limit_ms), F.lit(FUTURE_EVENT_TIME))
    )
