"""Fixtures of the serving tests: a private data directory and a service per test."""

from __future__ import annotations

import pytest

from serving_layer.service import ServingService
from shared_logic.settings import Settings


@pytest.fixture
def serving_settings(base_settings: Settings, tmp_path) -> Settings:
    """Settings with a fresh data directory, billing in New York time to exercise offsets and DST."""
    return base_settings.replace(data_dir=tmp_path, billing_timezone="America/New_York")


@pytest.fixture
def service(serving_settings: Settings):
    """A service whose ingest thread is not started; tests drive the loader and the store directly."""
    service = ServingService(serving_settings)
    yield service
    service.ingest.close()
    service.store.close()


@pytest.fixture
def kafka_settings(isolated_settings: Settings, tmp_path) -> Settings:
    """Settings with fresh topics on the session's broker and a fresh data directory."""
    return isolated_settings.replace(data_dir=tmp_path, billing_timezone="America/New_York")
