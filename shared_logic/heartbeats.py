"""Watermark heartbeats: event-time progress written into every partition of ``clicks``.

The speed layer's watermark is the minimum over the Kafka partitions of each
partition's largest event time. A partition that gets no clicks would hold it
back, and Flink's idle timeout only helps by guessing from processing time,
which goes wrong while a restarted job reads a backlog (see
speed_layer/README.md). So each collector process, after Kafka acknowledged
clicks up to event time ``T``, appends a heartbeat carrying ``T`` to every
partition. A partition's watermark then moves only with records that are in
the partition, in log order, and a job that replays the log computes the same
watermarks as the job that read it live.

After the last acknowledged click, heartbeats follow the wall clock for a
bounded time, so that minutes close when no clicks arrive at all (see
``heartbeat_event_time``).

A heartbeat is not a click: the speed layer drops it right after the source
assigned its watermark, and the batch layer does not land it.
"""

from __future__ import annotations

from typing import Any

from shared_logic.time_buckets import MINUTE_MS

HEARTBEAT_FIELD = "heartbeat"
# Heartbeats go to explicit partitions, so the key only makes them easy to spot.
HEARTBEAT_KEY = "heartbeat"


def heartbeat_record(event_time_ms: int, producer_id: str, sent_at_ms: int) -> dict[str, Any]:
    """Return the heartbeat value: the producer's acknowledged event time, ``event_time_ms``."""
    return {
        HEARTBEAT_FIELD: True,
        "event_time_ms": event_time_ms,
        "producer_id": producer_id,
        "sent_at_ms": sent_at_ms,
    }


def heartbeat_event_time(acknowledged_ms: int | None, acknowledged_at_ms: int | None, now: int,
                         horizon_ms: int) -> int | None:
    """Return the event time the next heartbeat carries, or None before any click was acknowledged.

    ``acknowledged_ms`` is the largest acknowledged event time and
    ``acknowledged_at_ms`` the wall-clock time of its acknowledgement. After
    it, event time advances with the wall clock for at most ``horizon_ms``,
    so a quiet period closes the minutes of the last clicks, and then stops,
    so a long quiet period makes nothing late. A heartbeat never claims event
    time ahead of the wall clock, so a click stamped in the future moves only
    its own partition's watermark.
    """
    if acknowledged_ms is None or acknowledged_at_ms is None:
        return None
    elapsed = max(0, min(now - acknowledged_at_ms, horizon_ms))
    return min(acknowledged_ms + elapsed, now)


def quiet_horizon_ms(out_of_orderness_s: int, allowed_lateness_s: int) -> int:
    """Return how long heartbeats follow the clock: until the last click's minute is final."""
    return (out_of_orderness_s + allowed_lateness_s) * 1000 + MINUTE_MS


def is_heartbeat(value: Any) -> bool:
    """Return whether a decoded record value of the clicks topic is a heartbeat."""
    return isinstance(value, dict) and value.get(HEARTBEAT_FIELD) is True


def not_heartbeat_sql(heartbeat_column: str = HEARTBEAT_FIELD) -> str:
    """SQL: TRUE for click rows, given the nullable BOOLEAN heartbeat column."""
    return f"({heartbeat_column} IS NULL OR NOT {heartbeat_column})"
