"""Live traffic through the real collector: minutes close in a quiet period, with no idleness."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import requests

from shared_logic.time_buckets import minute_start_ms
from shared_logic.timestamps import parse_timestamp_ms
from tests.conftest import free_port
from tests.processes import start_adclick, stop, wait_for_http
from tests.speed.helpers import NO_IDLENESS_S, SpeedJob, latest_by_key, speed_test_settings, wait_until


def test_quiet_period_closes_live_minute(base_settings, kafka_broker) -> None:
    settings = speed_test_settings(base_settings).replace(
        source_idle_timeout_s=NO_IDLENESS_S, collector_port=free_port(), collector_workers=1)
    collector = start_adclick(settings, "collector", log_name=f"collector-{settings.speed_job_name}")
    job = SpeedJob(settings)
    try:
        url = f"http://127.0.0.1:{settings.collector_port}"
        wait_for_http(url + "/healthz", collector)
        job.start()
        timestamp = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat(timespec="milliseconds")
        response = requests.post(url + "/v1/clicks", json={"ad_id": "ad-live", "user_id": "u1",
                                                            "timestamp": timestamp}, timeout=30)
        assert response.status_code == 202, response.text
        key = ("ad-live", minute_start_ms(parse_timestamp_ms(timestamp)))

        # No other click follows. The minute closes only because the
        # collector's heartbeats follow the wall clock: it ends within 60 s
        # and is final 12 s later (out-of-orderness 2 s, allowed lateness 10 s).
        wait_until(lambda: latest_by_key(settings, settings.topic_click_counts).get(key, {}).get("is_final"),
                   job, "the live minute to become final", timeout_s=150)
        row = latest_by_key(settings, settings.topic_click_counts)[key]
        assert row["clicks"] == 1
    finally:
        job.stop()
        stop(collector)
