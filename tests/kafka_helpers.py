"""Read a topic to its end, for assertions on what a component wrote."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: str | None
    value: Any


def read_topic(bootstrap_servers: str, topic: str, isolation_level: str = "read_committed",
               timeout_s: float = 20.0) -> list[Record]:
    """Return every record in ``topic``, reading each partition up to its end offset."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                             isolation_level=isolation_level, consumer_timeout_ms=1000)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end_offsets = consumer.end_offsets(partitions)
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end_offsets[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} did not reach its end offsets within {timeout_s} s")
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records.extend(
                    Record(tp.partition, message.offset,
                           message.key.decode() if message.key is not None else None,
                           json.loads(message.value))
                    for message in batch
                )
        return records
    finally:
        consumer.close()
