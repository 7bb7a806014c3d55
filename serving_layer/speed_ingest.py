"""Consume the speed layer's topics into the serving store, exactly once.

Partitions are assigned by hand (no consumer group) and each one starts at
the offset stored in ``speed_offsets``. The rows of one poll and the offsets
after them are written in one DuckDB transaction, so after a crash the store
resumes from the offsets that match its rows: nothing is lost or applied twice.
Records of aborted Kafka transactions are never returned because the consumer
reads with ``isolation_level='read_committed'``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition

from serving_layer.store import ServingStore
from shared_logic.settings import Settings

logger = logging.getLogger(__name__)

# Field name -> (type, may be missing or null), per topic.
COUNT_FIELDS = {"ad_id": (str, False), "window_start_ms": (int, False), "window_end_ms": (int, False),
                "clicks": (int, False), "is_final": (bool, False), "computed_at_ms": (int, False)}
LATE_COUNT_FIELDS = {"ad_id": (str, False), "window_start_ms": (int, False), "window_end_ms": (int, False),
                     "late_clicks": (int, False), "computed_at_ms": (int, False)}
LATE_CLICK_FIELDS = {"click_id": (str, False), "ad_id": (str, False), "event_time_ms": (int, False),
                     "lateness_ms": (int, True), "watermark_ms": (int, True)}


@dataclass
class IngestState:
    """Counters and consumer lag of the speed-layer consumer, for the status endpoint."""

    records_applied: int = 0
    invalid_records: int = 0
    last_poll_at_ms: int | None = None
    lag_by_partition: dict[str, int] = field(default_factory=dict)
    rejected_clicks_in_topic: int | None = None
    lag_measured_at_ms: int | None = None


class SpeedIngest:
    """Reads ``click-counts``, ``late-click-counts`` and ``clicks-late`` into the store."""

    def __init__(self, settings: Settings, store: ServingStore):
        self.settings = settings
        self.store = store
        self.state = IngestState()
        self.topics = (settings.topic_click_counts, settings.topic_late_counts, settings.topic_clicks_late)
        self._consumer: KafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._last_lag_check = 0.0
        self._stored: dict[tuple[str, int], int] = {}

    def start(self) -> None:
        """Connect, assign every partition of the three topics and seek to the stored offsets."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            group_id=None,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_poll_records=self.settings.serving_kafka_max_poll_records,
        )
        partitions = []
        for topic in self.topics:
            numbers = consumer.partitions_for_topic(topic)
            if not numbers:
                consumer.close()
                raise RuntimeError(f"topic {topic} does not exist on {self.settings.kafka_bootstrap_servers}; "
                                   "create it with `adclick kafka topics`")
            partitions += [TopicPartition(topic, number) for number in sorted(numbers)]
        consumer.assign(partitions)
        stored = self.store.stored_offsets()
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
                logger.info("resuming %s partition %d at offset %d", tp.topic, tp.partition, offset)
        self._consumer = consumer
        self._partitions = partitions
        self._stored = stored

    def poll_once(self) -> int:
        """Apply one poll's records; return how many records were applied."""
        assert self._consumer is not None, "call start() first"
        polled = self._consumer.poll(timeout_ms=self.settings.serving_kafka_poll_timeout_ms)
        counts, late_counts, late_clicks = [], [], []
        for tp, messages in polled.items():
            for message in messages:
                record = self._parse(tp, message)
                if record is None:
                    continue
                if tp.topic == self.settings.topic_click_counts:
                    counts.append(record)
                elif tp.topic == self.settings.topic_late_counts:
                    late_counts.append(record)
                else:
                    late_clicks.append(record)
        # The position can move past the last record without returning one
        # (transaction markers), so store every partition's position.
        next_offsets = {(tp.topic, tp.partition): self._consumer.position(tp) for tp in self._partitions}
        applied = len(counts) + len(late_counts) + len(late_clicks)
        if polled or next_offsets != self._stored:
            self.store.apply_speed_batch(counts, late_counts, late_clicks, next_offsets)
            self._stored = next_offsets
        self.state.records_applied += applied
        self.state.last_poll_at_ms = int(time.time() * 1000)
        if applied:
            logger.debug("applied %d counts, %d late counts, %d late clicks", len(counts), len(late_counts),
                         len(late_clicks))
        self._refresh_lag(next_offsets)
        return applied

    def _parse(self, tp: TopicPartition, message) -> dict | None:
        try:
            record = json.loads(message.value)
            if tp.topic == self.settings.topic_click_counts:
                fields = COUNT_FIELDS
            elif tp.topic == self.settings.topic_late_counts:
                fields = LATE_COUNT_FIELDS
            else:
                fields = LATE_CLICK_FIELDS
            parsed = {name: _checked(record, name, kind, optional) for name, (kind, optional) in fields.items()}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self.state.invalid_records += 1
            if self.state.invalid_records <= 10 or self.state.invalid_records % 1000 == 0:
                logger.error("skipping invalid record at %s partition %d offset %d (%d skipped so far): %s",
                             tp.topic, tp.partition, message.offset, self.state.invalid_records, exc)
            return None
        parsed["kafka_partition"] = tp.partition
        parsed["kafka_offset"] = message.offset
        return parsed

    def _refresh_lag(self, positions: dict[tuple[str, int], int]) -> None:
        if time.monotonic() - self._last_lag_check < self.settings.serving_lag_refresh_interval_s:
            return
        self._last_lag_check = time.monotonic()
        self.state.lag_by_partition = self.lag_by_partition(positions)
        self.state.rejected_clicks_in_topic = self._count_rejected()
        self.state.lag_measured_at_ms = int(time.time() * 1000)

    def lag_by_partition(self, positions: dict[tuple[str, int], int] | None = None) -> dict[str, int]:
        """Return, per "topic/partition", how many offsets remain before the end of the log."""
        if positions is None:
            positions = {(tp.topic, tp.partition): self._consumer.position(tp) for tp in self._partitions}
        end_offsets = self._consumer.end_offsets(self._partitions)
        return {f"{tp.topic}/{tp.partition}": max(0, end_offsets[tp] - positions[(tp.topic, tp.partition)])
                for tp in self._partitions}

    def _count_rejected(self) -> int | None:
        """Return how many records the collector's rejected-clicks topic retains, or None if it is missing."""
        numbers = self._consumer.partitions_for_topic(self.settings.topic_clicks_rejected)
        if not numbers:
            return None
        partitions = [TopicPartition(self.settings.topic_clicks_rejected, number) for number in numbers]
        ends = self._consumer.end_offsets(partitions)
        starts = self._consumer.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def _checked(record: dict, name: str, kind: type, optional: bool):
    value = record.get(name) if optional else record[name]
    if value is None and optional:
        return None
    # bool is a subclass of int in Python, but true is not a count.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"field {name}={value!r} is not a {kind.__name__}")
    return value
