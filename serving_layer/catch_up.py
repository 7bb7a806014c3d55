"""One catch-up pass of the serving ingest, for commands that run while ``adclick serve`` is stopped.

The pass does what the serving process's ingest thread does, once: it
consumes the speed layer's topics up to the end offsets they had when the
pass began, then loads new batch runs from the Delta ``batch_runs`` table.
The consumer reads with ``read_committed``, so each end offset is the last
stable offset, and records of a transaction still open are left for later.
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaConsumer, TopicPartition

from serving_layer.batch_loader import BatchLoader
from serving_layer.speed_ingest import SpeedIngest
from serving_layer.store import ServingStore
from shared_logic.settings import Settings

logger = logging.getLogger(__name__)


class CatchUpError(RuntimeError):
    """The store could not be brought up to date with Kafka within the timeout."""


def catch_up(settings: Settings, store: ServingStore, timeout_s: float) -> int:
    """Apply the speed layer's committed records and new batch runs to ``store``.

    Returns the number of billing days the batch loader closed, reloaded or
    reopened. Raises CatchUpError when Kafka is not read to the end offsets
    within ``timeout_s``.
    """
    ingest = SpeedIngest(settings, store)
    ingest.start()
    try:
        targets = _end_offsets(settings, ingest.topics)
        records = _consume_until(ingest, store, targets, timeout_s)
    finally:
        ingest.close()
    changed_days = BatchLoader(settings, store).poll()
    logger.info("catch-up pass applied %d speed-layer records and changed %d billing days in %s",
                records, changed_days, store.path)
    return changed_days


def _end_offsets(settings: Settings, topics: tuple[str, ...]) -> dict[tuple[str, int], int]:
    """Return the last stable offset of every partition of ``topics``."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None,
                             enable_auto_commit=False, isolation_level="read_committed")
    try:
        partitions = [TopicPartition(topic, number) for topic in topics
                      for number in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}


def _consume_until(ingest: SpeedIngest, store: ServingStore, targets: dict[tuple[str, int], int],
                   timeout_s: float) -> int:
    applied = 0
    deadline = time.monotonic() + timeout_s
    while True:
        stored = store.stored_offsets()
        behind = {key: end for key, end in targets.items() if stored.get(key, 0) < end}
        if not behind:
            return applied
        if time.monotonic() > deadline:
            raise CatchUpError(
                f"the serving store still lags Kafka after {timeout_s:.0f} s at "
                + ", ".join(f"{topic}/{partition} (offset {stored.get((topic, partition), 0)} of {end})"
                            for (topic, partition), end in sorted(behind.items()))
                + f"; check the broker at {ingest.settings.kafka_bootstrap_servers}")
        applied += ingest.poll_once()
