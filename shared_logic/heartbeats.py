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

While a collector serves live traffic, its heartbeats also follow the wall
clock through quiet periods, so that minutes close when no clicks arrive at
all (see ``heartbeat_event_time``).

A heartbeat is not a click: the speed layer drops it right after the source
assigned its watermark, and the batch layer does not land it.
"""

from __future__ import annotations

from typing import Any

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


def heartbeat_event_time(acknowledged_ms: int | None, previous_ms: int | None, now: int,
                         allowed_lateness_ms: int) -> int | None:
    """Return the event time the next heartbeat carries, or None before any click was acknowledged.

    The producer is live when its latest heartbeat or acknowledged click is
    within the allowed lateness of the wall clock ``now``. A live producer's
    heartbeat carries ``now`` through a quiet period: a click written later
    with an older event time is late exactly as it would be had live clicks
    kept arriving. A replay of old clicks is never live, so its heartbeats
    stay at the largest acknowledged event time and none of them is made late.
    """
    if acknowledged_ms is None:
        return None
    reference = max(acknowledged_ms, previous_ms if previous_ms is not None else acknowledged_ms)
    if reference >= now - allowed_lateness_ms:
        return max(reference, now)
    return reference


def is_heartbeat(value: Any) -> bool:
    """Return whether a decoded record value of the clicks topic is a heartbeat."""
    return isinstance(value, dict) and value.get(HEARTBEAT_FIELD) is True


def not_heartbeat_sql(heartbeat_column: str = HEARTBEAT_FIELD) -> str:
    """SQL: TRUE for click rows, given the nullable BOOLEAN heartbeat column."""
    return f"({heartbeat_column} IS NULL OR NOT {heartbeat_column})"
