"""Durable writes of clicks to Kafka: ``acks=all`` with the idempotent producer."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Iterable

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.serializer import Serializer

from shared_logic.heartbeats import HEARTBEAT_KEY, heartbeat_record
from shared_logic.settings import Settings
from shared_logic.timestamps import now_ms

logger = logging.getLogger(__name__)
# After a failed connect, requests fail fast with 503 for this long.
RECONNECT_BACKOFF_S = 1.0


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge a write in time."""


class _JsonValue(Serializer):
    """Compact UTF-8 JSON, the value format of every topic the collector writes."""

    def serialize(self, topic, headers, data: Any) -> bytes:
        # allow_nan=False: a non-finite number raises here instead of writing invalid JSON.
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


class _TextKey(Serializer):
    """UTF-8 text keys: the ad id on clicks, the request id on rejected clicks."""

    def serialize(self, topic, headers, data: str) -> bytes:
        return data.encode("utf-8")


class ClickWriter:
    """Writes records and waits until Kafka acknowledged every one of them.

    The producer is created lazily and replaced after a failure, so the
    collector recovers by itself once the broker is back.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self._retry_at = 0.0

    def _get_producer(self) -> KafkaProducer:
        with self._lock:
            if self._producer is not None:
                return self._producer
            if time.monotonic() < self._retry_at:
                # A connect attempt failed moments ago, so return 503 at once instead
                # of queueing another full timeout behind it.
                raise KafkaUnavailable(f"Kafka at {self.settings.kafka_bootstrap_servers} was unreachable "
                                       "moments ago")
        # Connect outside the lock, so concurrent requests wait in parallel, not in turn.
        producer = self._connect()
        with self._lock:
            if self._producer is None:
                self._producer = producer
                logger.info("connected producer to %s", self.settings.kafka_bootstrap_servers)
                return producer
            current = self._producer
        producer.close(timeout=1)
        return current

    def _connect(self) -> KafkaProducer:
        timeout_ms = int(self.settings.collector_kafka_timeout_s * 1000)
        try:
            return KafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                client_id="adclick-collector",
                acks="all",
                enable_idempotence=True,
                linger_ms=2,
                compression_type=None,
                key_serializer=_TextKey(),
                value_serializer=_JsonValue(),
                # kafka-python requires delivery_timeout_ms >= linger_ms + request_timeout_ms.
                request_timeout_ms=max(1000, min(timeout_ms // 2, 5000)),
                delivery_timeout_ms=timeout_ms,
                max_block_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
            )
        except (KafkaError, OSError) as exc:
            logger.error("cannot create a producer for %s: %r", self.settings.kafka_bootstrap_servers, exc)
            with self._lock:
                self._retry_at = time.monotonic() + RECONNECT_BACKOFF_S
            raise KafkaUnavailable(f"cannot connect to Kafka at {self.settings.kafka_bootstrap_servers}: {exc}") from exc

    def _discard(self, producer: KafkaProducer) -> None:
        with self._lock:
            if self._producer is producer:
                self._producer = None
        try:
            producer.close(timeout=1)
        except Exception:  # noqa: BLE001 - a broken producer may fail in many ways while closing
            logger.exception("closing the failed producer raised")

    def write(self, topic_records: Iterable[tuple[str, str, dict[str, Any]]], request_id: str) -> None:
        """Send (topic, key, value) records and block until all are acknowledged."""
        records = [(topic, key, value, None) for topic, key, value in topic_records]
        self._send_acknowledged(lambda _producer: records, f"request {request_id}")

    def write_heartbeats(self, event_time_ms: int, producer_id: str) -> int:
        """Write one heartbeat to every partition of the clicks topic; return how many partitions."""
        topic = self.settings.topic_clicks

        def heartbeats(producer: KafkaProducer) -> list[tuple[str, str, dict[str, Any], int]]:
            partitions = producer.partitions_for(topic)
            if not partitions:
                raise KafkaUnavailable(f"no partitions known for topic {topic}")
            value = heartbeat_record(event_time_ms, producer_id, now_ms())
            return [(topic, HEARTBEAT_KEY, value, partition) for partition in sorted(partitions)]

        return self._send_acknowledged(heartbeats, f"heartbeat of {producer_id}")

    def _send_acknowledged(self, build_records, context: str) -> int:
        """Send the (topic, key, value, partition) records that ``build_records`` returns and wait for every ack.

        After a failure the producer is discarded, so the next write connects anew.
        """
        producer = self._get_producer()
        try:
            records = build_records(producer)
            futures = [producer.send(topic, key=key, value=value, partition=partition)
                       for topic, key, value, partition in records]
            for future in futures:
                future.get(timeout=self.settings.collector_kafka_timeout_s)
        except (KafkaError, OSError) as exc:
            logger.error("%s: Kafka write failed, discarding the producer: %r", context, exc)
            self._discard(producer)
            raise KafkaUnavailable(str(exc)) from exc
        return len(futures)

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(timeout=self.settings.collector_kafka_timeout_s)
            producer.close(timeout=self.settings.collector_kafka_timeout_s)
            logger.info("closed producer")
