"""The lateness model of both layers: minute windows, finality and late clicks.

Event time is a click's ``event_time_ms``. The watermark follows Flink's
convention: a watermark ``W`` states that no click with an event time of ``W``
or earlier is still expected. The platform's nominal watermark is the largest
event time seen minus ``out_of_orderness_s``, taken per Kafka partition and
then as the minimum over the partitions that are not idle. A click's event
time counts there only up to the time the collector received it, so a click
stamped in the future does not move the watermark past the clock.

A minute window ``[window_start, window_end)`` becomes final once
``W - allowed_lateness >= window_end - 1``, that is, once the watermark has
passed the window's last millisecond by the allowed lateness. A click whose
window is already final when the job routes it is beyond the allowed
lateness: the speed layer does not count it and reports it as late, with
``lateness_ms = W - event_time_ms``.

The SQL fragments below take column names and literals as named parameters so
that the Flink job and the batch layer share one definition.
"""

from __future__ import annotations

from shared_logic.time_buckets import MINUTE_MS, minute_start_ms


def window_end_ms(event_time_ms: int) -> int:
    """Return the exclusive end of the minute window that contains the instant."""
    return minute_start_ms(event_time_ms) + MINUTE_MS


def is_window_final(window_end: int, watermark_ms: int, allowed_lateness_ms: int) -> bool:
    """Return whether a minute window ending at ``window_end`` is final under ``watermark_ms``."""
    return watermark_ms - allowed_lateness_ms >= window_end - 1


def is_beyond_allowed_lateness(event_time_ms: int, watermark_ms: int, allowed_lateness_ms: int) -> bool:
    """Return whether a click routed under ``watermark_ms`` falls into an already final window."""
    return is_window_final(window_end_ms(event_time_ms), watermark_ms, allowed_lateness_ms)


def lateness_ms(event_time_ms: int, watermark_ms: int) -> int:
    """Return how far a click's event time is behind the nominal watermark."""
    return watermark_ms - event_time_ms


def minute_start_sql(event_time_ms_column: str) -> str:
    """SQL: the start, in epoch ms, of the minute window of a BIGINT epoch-ms column."""
    return f"({event_time_ms_column} - MOD({event_time_ms_column}, {MINUTE_MS}))"


def window_closed_sql(event_time_ms_column: str, closing_watermark_sql: str) -> str:
    """SQL: TRUE when the click's minute window is closed under a TIMESTAMP_LTZ watermark.

    ``closing_watermark_sql`` is the watermark already reduced by the allowed
    lateness (``W - allowed_lateness``), as a TIMESTAMP_LTZ(3) expression. A
    NULL watermark (none seen yet) closes no window.
    """
    last_ms = f"({minute_start_sql(event_time_ms_column)} + {MINUTE_MS - 1})"
    return (f"({closing_watermark_sql} IS NOT NULL "
            f"AND {closing_watermark_sql} >= TO_TIMESTAMP_LTZ({last_ms}, 3))")
