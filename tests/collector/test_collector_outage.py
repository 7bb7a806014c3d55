"""The collector while its Kafka broker is down, and after it comes back."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import requests

from shared_logic.heartbeats import is_heartbeat
from shared_logic.settings import Settings
from tests.conftest import free_port
from tests.kafka_helpers import read_topic
from tests.processes import private_broker_and_collector


def post_click(url: str, user_id: str) -> requests.Response:
    click = {"ad_id": "ad-outage", "user_id": user_id, "timestamp": datetime.now(timezone.utc).isoformat()}
    return requests.post(url + "/v1/clicks", data=json.dumps(click),
                         headers={"Content-Type": "application/json"}, timeout=60)


def test_broker_outage_gives_503_then_recovers(base_settings: Settings, tmp_path) -> None:
    # A broker of its own, because this test stops it.
    settings = base_settings.replace(
        data_dir=tmp_path, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        kafka_controller_port=free_port(), collector_port=free_port(), collector_kafka_timeout_s=4.0,
    )
    with private_broker_and_collector(settings, "collector-outage") as (broker, url):
        assert post_click(url, "before").status_code == 202

        broker.stop()
        during = post_click(url, "during")
        assert during.status_code == 503
        assert during.headers["Retry-After"] == "5"
        assert "retry" in during.json()["message"]
        assert requests.get(url + "/readyz", timeout=30).status_code == 503

        broker.start()
        deadline = time.monotonic() + 60
        after = post_click(url, "after")
        while after.status_code != 202 and time.monotonic() < deadline:
            time.sleep(1)
            after = post_click(url, "after")
        assert after.status_code == 202

        users = sorted(r.value["user_id"] for r in read_topic(settings.kafka_bootstrap_servers, settings.topic_clicks)
                       if not is_heartbeat(r.value))
        assert "before" in users
        assert "after" in users
        assert users.count("before") == 1
