"""Shared fixtures: one real Kafka broker per test session, on free ports.

Tests that need their own topics use ``isolated_settings``, which gives every
test fresh topic names on the shared broker so tests never see each other's
records.
"""

from __future__ import annotations

import logging
import socket
import uuid
from pathlib import Path

import pytest

from infra.kafka_broker import LocalKafkaBroker
from infra.topics import ensure_topics
from shared_logic.settings import Settings, load_settings

logging.getLogger("kafka").setLevel(logging.CRITICAL)

pytest_plugins = ["tests.spark_fixture"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for the test session: a private data directory and free ports."""
    data_dir: Path = tmp_path_factory.mktemp("adclick-data")
    return load_settings({}).replace(
        data_dir=data_dir,
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        kafka_controller_port=free_port(),
        kafka_heap_mb=384,
        collector_port=free_port(),
        serving_port=free_port(),
        dashboard_port=free_port(),
        airflow_port=free_port(),
    )


@pytest.fixture(scope="session")
def kafka_broker(base_settings: Settings):
    """A real single-node KRaft broker, stopped at the end of the session."""
    broker = LocalKafkaBroker(base_settings)
    broker.start()
    ensure_topics(base_settings)
    yield broker
    broker.stop()


@pytest.fixture
def isolated_settings(base_settings: Settings, kafka_broker) -> Settings:
    """Settings whose topics are new and empty for this test."""
    suffix = uuid.uuid4().hex[:8]
    settings = base_settings.replace(
        topic_clicks=f"clicks-{suffix}",
        topic_clicks_rejected=f"clicks-rejected-{suffix}",
        topic_clicks_late=f"clicks-late-{suffix}",
        topic_click_counts=f"click-counts-{suffix}",
        topic_late_counts=f"late-click-counts-{suffix}",
    )
    ensure_topics(settings)
    return settings
