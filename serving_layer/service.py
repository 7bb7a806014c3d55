"""The serving process: one DuckDB store, a background ingest thread and the HTTP API.

The ingest thread polls Kafka continuously and the Delta log every
``serving_delta_poll_interval_s``. It retries after any error, logging it,
so an outage of Kafka or a half-written Delta table never stops the API.
"""

from __future__ import annotations

import logging
import threading
import time

from kafka.errors import KafkaError

from serving_layer.batch_loader import BatchLoader
from serving_layer.speed_ingest import SpeedIngest
from serving_layer.store import ServingStore
from shared_logic.settings import Settings
from shared_logic.timestamps import now_ms

logger = logging.getLogger(__name__)

RETRY_DELAY_S = 2.0


class ServingService:
    """Owns the store and runs the Kafka consumer and Delta poller on one background thread."""

    def __init__(self, settings: Settings, store: ServingStore | None = None):
        self.settings = settings
        self.store = store or ServingStore(settings.serving_duckdb_path, settings.billing_timezone)
        self.ingest = SpeedIngest(settings, self.store)
        self.loader = BatchLoader(settings, self.store)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.errors = 0
        self.last_delta_poll_at_ms: int | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="serving-ingest", daemon=True)
        self._thread.start()
        logger.info("serving ingest thread started (Kafka %s, Delta under %s)",
                    self.settings.kafka_bootstrap_servers, self.settings.path("delta"))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.ingest.close()
        self.store.close()
        logger.info("serving service stopped after %d ingest errors", self.errors)

    def health(self) -> dict:
        alive = self._thread is not None and self._thread.is_alive()
        return {
            "status": "ok" if alive and self.last_error is None else "degraded",
            "ingest_thread_alive": alive,
            "ingest_errors": self.errors,
            "last_error": self.last_error,
            "records_applied": self.ingest.state.records_applied,
            "invalid_records": self.ingest.state.invalid_records,
            "last_speed_poll_at_ms": self.ingest.state.last_poll_at_ms,
            "consumer_lag_by_partition": self.ingest.state.lag_by_partition,
            "consumer_lag": sum(self.ingest.state.lag_by_partition.values()),
            "lag_measured_at_ms": self.ingest.state.lag_measured_at_ms,
            "rejected_clicks_in_topic": self.ingest.state.rejected_clicks_in_topic,
            "last_delta_poll_at_ms": self.last_delta_poll_at_ms,
            "batch_runs_version": self.loader.runs_version,
        }

    def _record_error(self, operation: str, exc: Exception) -> None:
        self.errors += 1
        self.last_error = f"{operation}: {exc}"
        logger.error("%s failed (error %d), retrying in %.0f s: %s", operation, self.errors, RETRY_DELAY_S, exc,
                     exc_info=not isinstance(exc, KafkaError))
        self._stop.wait(RETRY_DELAY_S)

    def _run(self) -> None:
        started = False
        next_delta_poll = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_delta_poll:
                try:
                    self.loader.poll()
                    self.last_delta_poll_at_ms = now_ms()
                except Exception as exc:  # noqa: BLE001 - any failure is retried on the next poll
                    self._record_error("loading Delta tables", exc)
                next_delta_poll = time.monotonic() + self.settings.serving_delta_poll_interval_s
            try:
                if not started:
                    self.ingest.start()
                    started = True
                self.ingest.poll_once()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - the consumer restarts from the stored offsets
                self.ingest.close()
                started = False
                self._record_error("consuming the speed layer's topics", exc)
