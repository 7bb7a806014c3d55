"""The click collector against a real Kafka broker, run as ``adclick collector``."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from infra.topics import ensure_topics
from shared_logic.heartbeats import is_heartbeat
from shared_logic.settings import Settings
from shared_logic.timestamps import format_utc_ms, parse_timestamp_ms
from tests.kafka_helpers import read_topic
from tests.processes import start_adclick, stop, wait_for_http


def recent(seconds_ago: int = 60) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds")


@pytest.fixture(scope="module")
def collector_settings(base_settings: Settings, kafka_broker) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    settings = base_settings.replace(
        topic_clicks=f"clicks-c{suffix}", topic_clicks_rejected=f"clicks-rejected-c{suffix}",
        collector_max_body_bytes=30_000, collector_max_batch_clicks=50,
    )
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="module")
def collector_url(collector_settings: Settings):
    process = start_adclick(collector_settings, "collector", log_name="collector")
    url = f"http://127.0.0.1:{collector_settings.collector_port}"
    try:
        wait_for_http(url + "/healthz", process)
        yield url
    finally:
        stop(process)


def records_in_kafka(settings: Settings) -> list:
    return read_topic(settings.kafka_bootstrap_servers, settings.topic_clicks)


def clicks_in_kafka(settings: Settings) -> list:
    return [record for record in records_in_kafka(settings) if not is_heartbeat(record.value)]


def post(url: str, body, content_type: str = "application/json") -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(url + "/v1/clicks", data=data, headers={"Content-Type": content_type}, timeout=30)


def test_single_click_lands_in_kafka_keyed_by_ad(collector_url, collector_settings) -> None:
    timestamp = recent()
    before = len(clicks_in_kafka(collector_settings))
    response = post(collector_url, {"ad_id": "ad-single", "user_id": "u1", "timestamp": timestamp, "country": "FR"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 1
    click_id = body["clicks"][0]["click_id"]

    records = [r for r in clicks_in_kafka(collector_settings) if r.value["click_id"] == click_id]
    assert len(clicks_in_kafka(collector_settings)) == before + 1
    assert len(records) == 1
    record = records[0]
    assert record.key == "ad-single"
    assert record.value["timestamp"] == format_utc_ms(parse_timestamp_ms(timestamp))
    assert record.value["event_time_ms"] == parse_timestamp_ms(timestamp)
    assert record.value["attributes"] == {"country": "FR"}


def wait_for_heartbeats(settings: Settings, after, done) -> list:
    """Poll the clicks topic until ``done(heartbeats after the record after)`` or 30 s pass."""
    deadline = time.monotonic() + 30
    while True:
        beats = [r for r in records_in_kafka(settings) if is_heartbeat(r.value)
                 and (r.partition != after.partition or r.offset > after.offset)]
        if done(beats) or time.monotonic() > deadline:
            return beats
        time.sleep(0.5)


def post_and_find(url: str, settings: Settings, ad_id: str, timestamp: str):
    response = post(url, {"ad_id": ad_id, "user_id": "u1", "timestamp": timestamp})
    assert response.status_code == 202, response.text
    return next(r for r in clicks_in_kafka(settings) if r.key == ad_id)


def test_heartbeat_follows_click_on_every_partition(collector_url, collector_settings) -> None:
    timestamp = recent(seconds_ago=2)
    click = post_and_find(collector_url, collector_settings, "ad-heartbeat", timestamp)
    event_time_ms = parse_timestamp_ms(timestamp)
    partitions = list(range(collector_settings.clicks_partitions))

    def covered(beats: list) -> list[int]:
        # Another worker's heartbeats may carry an older event time, so look for this one's.
        return sorted({b.partition for b in beats if b.value["event_time_ms"] >= event_time_ms})

    beats = wait_for_heartbeats(collector_settings, click, lambda found: covered(found) == partitions)
    assert covered(beats) == partitions
    assert all(beat.value["event_time_ms"] <= beat.value["sent_at_ms"] for beat in beats)


def test_future_click_heartbeat_behind_clock(collector_url, collector_settings) -> None:
    timestamp = (datetime.now(timezone.utc) + timedelta(seconds=120)).isoformat(timespec="milliseconds")
    click = post_and_find(collector_url, collector_settings, "ad-future", timestamp)

    beats = wait_for_heartbeats(collector_settings, click, lambda found: len(found) >= 2 * collector_settings.clicks_partitions)
    assert beats
    assert all(beat.value["event_time_ms"] <= beat.value["sent_at_ms"] for beat in beats)
    assert max(beat.value["event_time_ms"] for beat in beats) < parse_timestamp_ms(timestamp)


def test_out_of_range_numbers_rejected(collector_url, collector_settings) -> None:
    body = ('[{"ad_id": "ad-num", "user_id": "u1", "timestamp": "%s", "score": 1e400},'
            ' {"ad_id": "ad-num", "user_id": "u2", "timestamp": "%s", "score": %s}]'
            % (recent(), recent(), "9" * 1500))
    response = post(collector_url, body)
    assert response.status_code == 400, response.text
    errors = response.json()["errors"]
    assert [error["field"] for error in errors] == ["score", "score"]
    assert "not a finite number" in errors[0]["error"]
    assert "signed 64-bit" in errors[1]["error"]
    assert [r for r in clicks_in_kafka(collector_settings) if r.key == "ad-num"] == []


def test_ndjson_line_with_unicode_separator(collector_url) -> None:
    line = json.dumps({"ad_id": "ad-u2028", "user_id": "u1", "timestamp": recent(), "title": "a\u2028b\u0085c"},
                      ensure_ascii=False)
    response = post(collector_url, (line + "\r\n").encode("utf-8"), "application/x-ndjson")
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1


def test_same_ad_goes_to_same_partition(collector_url, collector_settings) -> None:
    batch = [{"ad_id": "ad-part", "user_id": f"u{i}", "timestamp": recent()} for i in range(10)]
    assert post(collector_url, batch).status_code == 202
    partitions = {r.partition for r in clicks_in_kafka(collector_settings) if r.key == "ad-part"}
    assert len(partitions) == 1


def test_same_payload_twice_gets_same_click_id(collector_url) -> None:
    payload = {"ad_id": "ad-retry", "user_id": "u-retry", "timestamp": recent()}
    first = post(collector_url, payload).json()["clicks"][0]["click_id"]
    second = post(collector_url, payload).json()["clicks"][0]["click_id"]
    assert first == second


def test_client_click_id_is_kept(collector_url, collector_settings) -> None:
    click_id = f"client-{uuid.uuid4()}"
    response = post(collector_url, {"ad_id": "ad-c", "user_id": "u", "timestamp": recent(), "click_id": click_id})
    assert response.json()["clicks"][0]["click_id"] == click_id
    assert any(r.value["click_id"] == click_id for r in clicks_in_kafka(collector_settings))


def test_ndjson_batch_accepted(collector_url, collector_settings) -> None:
    lines = "\n".join(json.dumps({"ad_id": "ad-nd", "user_id": f"u{i}", "timestamp": recent()}) for i in range(3))
    response = post(collector_url, lines + "\n", "application/x-ndjson")
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 3


def test_partly_invalid_batch_accepts_valid_clicks(collector_url, collector_settings) -> None:
    batch = [
        {"ad_id": "ad-mixed", "user_id": "u1", "timestamp": recent()},
        {"ad_id": "ad-mixed", "user_id": "u2", "timestamp": "2026-12-04 12:00:00"},
        {"ad_id": "ad-mixed", "user_id": "u3", "timestamp": recent()},
        {"ad_id": 42, "user_id": "u4", "timestamp": recent()},
    ]
    response = post(collector_url, batch)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2
    assert [error["index"] for error in body["errors"]] == [1, 3]
    assert body["errors"][0]["field"] == "timestamp"
    assert "no time zone" in body["errors"][0]["error"]
    assert body["errors"][1]["field"] == "ad_id"

    in_kafka = [r for r in clicks_in_kafka(collector_settings) if r.key == "ad-mixed"]
    assert len(in_kafka) == 2
    rejected = [r.value for r in read_topic(collector_settings.kafka_bootstrap_servers,
                                            collector_settings.topic_clicks_rejected)
                if r.value["request_id"] == body["request_id"]]
    assert sorted(r["index"] for r in rejected) == [1, 3]
    assert "no time zone" in rejected[0]["error"] or "no time zone" in rejected[1]["error"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error", "message"),
    [
        ("{not json", "application/json", 400, "malformed_json", "not valid JSON"),
        ('{"ad_id": NaN}', "application/json", 400, "malformed_json", "NaN is not valid JSON"),
        ("", "application/json", 400, "empty_body", "body is empty"),
        ("[]", "application/json", 400, "empty_batch", "array is empty"),
        ('"a string"', "application/json", 400, "invalid_body", "JSON string"),
        ("[" * 100_00 + "]" * 100_00, "application/json", 400, "malformed_json", "too deeply"),
        ('{"ad_id": "a", "ad_id": "b"}', "application/json", 400, "malformed_json", "appears twice"),
        (b"\xff\xfe{}", "application/json", 400, "invalid_encoding", "not valid UTF-8"),
        (b"\xef\xbb\xbf{}", "application/json", 400, "malformed_json", "remove it"),
        ('{"ad_id": "a"}\n{oops', "application/x-ndjson", 400, "malformed_json", "line 2"),
        ('{"ad_id": "a"}', "text/plain", 415, "unsupported_media_type", "application/x-ndjson"),
        ("x" * 30_001, "application/json", 413, "body_too_large", "maximum is 30000"),
        (json.dumps([{"ad_id": "a"}] * 51), "application/json", 413, "batch_too_large", "maximum is 50"),
    ],
)
def test_bad_request_is_rejected_whole(collector_url, collector_settings, body, content_type, status,
                                       error, message) -> None:
    before = len(clicks_in_kafka(collector_settings))
    response = post(collector_url, body, content_type)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert message in response.json()["message"]
    assert len(clicks_in_kafka(collector_settings)) == before


def test_missing_content_type_is_415(collector_url) -> None:
    response = requests.post(collector_url + "/v1/clicks", data=b"{}", timeout=10)
    assert response.status_code == 415
    assert "Content-Type is missing" in response.json()["message"]


def test_all_invalid_clicks_get_400_with_each_error(collector_url, collector_settings) -> None:
    before = len(clicks_in_kafka(collector_settings))
    far_future = (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()
    response = post(collector_url, [{"ad_id": "a", "user_id": "u", "timestamp": far_future},
                                    {"user_id": "u", "timestamp": recent()}])
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "in the future" in errors[0]["error"]
    assert errors[1]["field"] == "ad_id"
    assert "missing" in errors[1]["error"]
    assert len(clicks_in_kafka(collector_settings)) == before


def test_health_and_readiness(collector_url) -> None:
    assert requests.get(collector_url + "/healthz", timeout=5).json()["status"] == "ok"
    assert requests.get(collector_url + "/readyz", timeout=10).status_code == 200
