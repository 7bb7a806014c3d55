"""Send watermark heartbeats to every partition of ``clicks`` (see shared_logic/heartbeats.py)."""

from __future__ import annotations

import logging
import os
import socket
import threading

from collector.kafka_writer import ClickWriter, KafkaUnavailable
from shared_logic.heartbeats import heartbeat_event_time, quiet_horizon_ms
from shared_logic.settings import Settings
from shared_logic.timestamps import now_ms

logger = logging.getLogger(__name__)


class HeartbeatSender:
    """A daemon thread that writes this process's acknowledged event time to every partition.

    ``observe`` is called only after Kafka acknowledged the clicks, so a
    heartbeat never claims event time for a click that could still be lost
    and retried. A heartbeat is sent only when its event time advanced
    (``heartbeat_event_time``), so an idle collector stops sending them.
    """

    def __init__(self, settings: Settings, writer: ClickWriter):
        self.settings = settings
        self.writer = writer
        self.producer_id = f"{socket.gethostname()}:{os.getpid()}"
        self._lock = threading.Lock()
        self._acknowledged_ms: int | None = None
        self._acknowledged_at_ms: int | None = None
        self._sent_ms: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def observe(self, event_time_ms: int) -> None:
        """Record that clicks up to ``event_time_ms`` are acknowledged by Kafka."""
        with self._lock:
            if self._acknowledged_ms is None or event_time_ms > self._acknowledged_ms:
                self._acknowledged_ms = event_time_ms
                self._acknowledged_at_ms = now_ms()

    def start(self) -> None:
        interval = self.settings.collector_heartbeat_interval_s
        if interval <= 0:
            logger.info("watermark heartbeats are off (collector_heartbeat_interval_s=%s)", interval)
            return
        self._thread = threading.Thread(target=self._run, name="watermark-heartbeats", daemon=True)
        self._thread.start()
        logger.info("heartbeat sender %s started: every %s s to %s", self.producer_id, interval,
                    self.settings.topic_clicks)

    def stop(self) -> None:
        """Stop the thread after one last heartbeat, so the final event time reaches every partition."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=self.settings.collector_kafka_timeout_s + 1)
        self.send_if_advanced()
        logger.info("heartbeat sender %s stopped at event time %s", self.producer_id, self._sent_ms)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.collector_heartbeat_interval_s):
            self.send_if_advanced()

    def send_if_advanced(self) -> bool:
        """Send one heartbeat if the acknowledged event time moved; return whether one was sent."""
        with self._lock:
            acknowledged_ms, acknowledged_at_ms = self._acknowledged_ms, self._acknowledged_at_ms
        horizon_ms = quiet_horizon_ms(self.settings.out_of_orderness_s, self.settings.allowed_lateness_s)
        event_time_ms = heartbeat_event_time(acknowledged_ms, acknowledged_at_ms, now_ms(), horizon_ms)
        if event_time_ms is None or (self._sent_ms is not None and event_time_ms <= self._sent_ms):
            return False
        try:
            partitions = self.writer.write_heartbeats(event_time_ms, self.producer_id)
        except KafkaUnavailable as exc:
            # The next tick retries. Until then the watermark waits, which delays counts but miscounts none.
            logger.warning("heartbeat %s at event time %d not written: %s", self.producer_id, event_time_ms, exc)
            return False
        self._sent_ms = event_time_ms
        logger.debug("heartbeat %s at event time %d written to %d partitions", self.producer_id,
                     event_time_ms, partitions)
        return True
