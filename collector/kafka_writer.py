"""Durable writes of clicks to Kafka: ``acks=all`` with the idempotent producer."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Iterable

from kafka import KafkaProducer
from kafka.errors import KafkaError

from shared_logic.settings import Settings

logger = logging.getLogger(__name__)
# After a failed connect, requests fail fast with 503 for this long.
RECONNECT_BACKOFF_S = 1.0


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge a write in time."""


def _serialize(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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
                key_serializer=lambda key: key.encode("utf-8"),
                value_serializer=_serialize,
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
        producer = self._get_producer()
        try:
            futures = [producer.send(topic, key=key, value=value) for topic, key, value in topic_records]
            for future in futures:
                future.get(timeout=self.settings.collector_kafka_timeout_s)
        except (KafkaError, OSError) as exc:
            logger.error("request %s: Kafka write failed, discarding the producer: %r", request_id, exc)
            self._discard(producer)
            raise KafkaUnavailable(str(exc)) from exc

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(timeout=self.settings.collector_kafka_timeout_s)
            producer.close(timeout=self.settings.collector_kafka_timeout_s)
            logger.info("closed producer")
