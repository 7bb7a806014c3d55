"""A real ``adclick serve`` process over known data, shared by the dashboard tests.

The data covers one day closed by a batch run and one open day served by the
speed layer, with provisional and final minutes, one late click, one
duplicate removed by batch, two rejected clicks and one failed batch run.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import date

import pytest
import requests
import streamlit as st
from kafka import KafkaProducer

from infra.topics import ensure_topics
from shared_logic.settings import Settings
from shared_logic.timestamps import parse_timestamp_ms
from tests.conftest import free_port
from tests.processes import start_adclick, stop, wait_for_http
from tests.serving.helpers import count_record, produce_transaction, write_batch_run

CLOSED_DAY = date(2026, 11, 30)
OPEN_DAY = date(2026, 12, 1)
FAILED_DAY = date(2026, 11, 29)
M2358 = parse_timestamp_ms("2026-11-30T23:58:00Z")
M2359 = parse_timestamp_ms("2026-11-30T23:59:00Z")
NOON = parse_timestamp_ms("2026-11-30T12:00:00Z")
M1300 = parse_timestamp_ms("2026-11-30T13:00:00Z")
M0000 = parse_timestamp_ms("2026-12-01T00:00:00Z")
M0001 = parse_timestamp_ms("2026-12-01T00:01:00Z")

# Speed-layer minute counts; ad-1's minute 00:01 is still provisional.
SPEED_COUNTS = [
    count_record("ad-1", M2358, 5, computed_at_ms=M2358 + 70_000),
    count_record("ad-1", M2359, 7, computed_at_ms=M2359 + 70_000),
    count_record("ad-2", NOON, 10, computed_at_ms=NOON + 70_000),
    count_record("ad-3", M1300, 4, computed_at_ms=M1300 + 70_000),
    count_record("ad-1", M0000, 3, computed_at_ms=M0000 + 70_000),
    count_record("ad-1", M0001, 4, is_final=False, computed_at_ms=M0001 + 30_000),
    count_record("ad-2", M0001, 2, computed_at_ms=M0001 + 70_000),
]
# The batch run of the closed day: ad-1 has one late click more than the
# speed layer counted, ad-2 one duplicate less, ad-3 is not billed at all.
BATCH_MINUTES = {("ad-1", M2358): 6, ("ad-1", M2359): 7, ("ad-2", NOON): 9}
BATCH_DUPLICATES = {("ad-2", NOON): 1}
LATE_CLICK = {"click_id": "late-1", "ad_id": "ad-1", "event_time_ms": M2358 + 5_000, "lateness_ms": 400_000,
              "watermark_ms": M2358 + 405_000}
REJECTED_CLICKS = 2
DATA_LOAD_TIMEOUT_S = 90.0


def _produce_rejected(settings: Settings, count: int) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        for number in range(count):
            record = {"error": "invalid_click", "index": number}
            producer.send(settings.topic_clicks_rejected, json.dumps(record).encode())
        producer.flush()
    finally:
        producer.close()


def _load_known_data(settings: Settings) -> None:
    write_batch_run(settings, CLOSED_DAY, BATCH_MINUTES, duplicates=BATCH_DUPLICATES, started_at_ms=M0000 + 3_600_000)
    write_batch_run(settings, FAILED_DAY, {}, status="failed", started_at_ms=M0000 + 7_200_000)
    produce_transaction(settings, settings.topic_click_counts, SPEED_COUNTS)
    produce_transaction(settings, settings.topic_clicks_late, [LATE_CLICK])
    _produce_rejected(settings, REJECTED_CLICKS)


def _known_data_served(status: dict) -> bool:
    return (status["boundary"]["closed_days"] == [CLOSED_DAY.isoformat()]
            and status["speed"]["minute_rows"] == len(SPEED_COUNTS)
            and status["speed"]["late_clicks"] == 1
            and status["health"]["rejected_clicks_in_topic"] == REJECTED_CLICKS
            and len(status["batch"]["latest_run_per_day"]) == 2)


@pytest.fixture(scope="session")
def dashboard_settings(base_settings: Settings, kafka_broker, tmp_path_factory) -> Settings:
    """Settings with their own data directory, topics and ports, and quick polling of Delta and lag."""
    suffix = uuid.uuid4().hex[:8]
    settings = base_settings.replace(
        data_dir=tmp_path_factory.mktemp("dashboard-data"),
        topic_clicks=f"clicks-{suffix}",
        topic_clicks_rejected=f"clicks-rejected-{suffix}",
        topic_clicks_late=f"clicks-late-{suffix}",
        topic_click_counts=f"click-counts-{suffix}",
        topic_late_counts=f"late-click-counts-{suffix}",
        serving_port=free_port(),
        dashboard_port=free_port(),
        collector_port=free_port(),
        serving_delta_poll_interval_s=0.5,
        serving_lag_refresh_interval_s=0.5,
        dashboard_refresh_interval_s=2.0,
    )
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="session")
def serving_api(dashboard_settings: Settings) -> str:
    """Start ``adclick serve`` over the known data; return its base URL once it serves all of it."""
    _load_known_data(dashboard_settings)
    process = start_adclick(dashboard_settings, "serve", log_name="dashboard-serving")
    base_url = f"http://127.0.0.1:{dashboard_settings.serving_port}"
    try:
        wait_for_http(f"{base_url}/healthz", process)
        deadline = time.monotonic() + DATA_LOAD_TIMEOUT_S
        status = requests.get(f"{base_url}/v1/status", timeout=10).json()
        while not _known_data_served(status):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the serving API did not load the known data within {DATA_LOAD_TIMEOUT_S} s; "
                                   f"last status: {status}")
            time.sleep(0.2)
            status = requests.get(f"{base_url}/v1/status", timeout=10).json()
        yield base_url
    finally:
        stop(process)


@pytest.fixture
def dashboard_environ(dashboard_settings: Settings, monkeypatch) -> Settings:
    """Put the test settings in ``ADCLICK_*`` variables, where the pages read them, and empty the caches."""
    for name, value in dashboard_settings.to_environ().items():
        monkeypatch.setenv(name, value)
    st.cache_data.clear()
    yield dashboard_settings
    st.cache_data.clear()
