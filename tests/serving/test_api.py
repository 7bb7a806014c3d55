"""The HTTP query API over a store with one closed and one open day."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from serving_layer.app import create_app
from tests.serving.test_merge import CLOSED_DAY, M0000, M0001, M2358, M2359, NOON, close_day_one, speed


@pytest.fixture
def client(service):
    service.store.apply_speed_batch([
        speed("ad-1", M2358, 5), speed("ad-1", M2359, 7), speed("ad-1", M0000, 3),
        speed("ad-1", M0001, 4, is_final=False), speed("ad-2", NOON, 10),
    ], [], [{"click_id": "late-1", "ad_id": "ad-2", "event_time_ms": NOON + 5, "lateness_ms": 400_000,
             "watermark_ms": NOON + 400_005, "kafka_partition": 0, "kafka_offset": 0}],
        {("click-counts", 0): 5})
    close_day_one(service)
    with TestClient(create_app(service, run_ingest=False)) as test_client:
        yield test_client


def test_series_endpoint_marks_source_and_finality(client) -> None:
    response = client.get("/v1/ads/ad-1/clicks", params={
        "granularity": "minute", "start": "2026-11-30T23:59:00-05:00", "end": "2026-12-01T00:01:00-05:00"})

    assert response.status_code == 200
    buckets = response.json()["buckets"]
    assert [(b["clicks"], b["source"], b["is_final"]) for b in buckets] == [(7, "batch", True), (3, "speed", True)]
    assert [d["source"] for d in response.json()["days"]] == ["batch", "speed"]


def test_series_accepts_epoch_milliseconds(client) -> None:
    response = client.get("/v1/ads/ad-1/clicks", params={"granularity": "hour", "start": M2358, "end": M0001})

    assert response.status_code == 200
    assert [b["clicks"] for b in response.json()["buckets"]] == [13, 7]


def test_unknown_ad_returns_empty_series(client) -> None:
    response = client.get("/v1/ads/no-such-ad/clicks", params={"start": M2358, "end": M0001})

    assert response.status_code == 200
    assert response.json()["buckets"] == []


@pytest.mark.parametrize(("path", "params", "expected"), [
    ("/v1/ads/ad-1/clicks", {"granularity": "week", "start": M2358, "end": M0001}, "minute, hour, day"),
    ("/v1/ads/ad-1/clicks", {"start": M0001, "end": M2358}, "must be before end"),
    ("/v1/ads/ad-1/clicks", {"start": "2026-12-01T00:00:00", "end": M0001}, "has no time zone"),
    ("/v1/ads/ad-1/clicks", {"start": 0, "end": M0001}, "maximum is 20160"),
    ("/v1/ads/ad-1/clicks", {"start": M2358}, "end: Field required"),
    ("/v1/top", {"minutes": 0}, "use 1 to 1440"),
    ("/v1/top", {"limit": "ten"}, "limit: Input should be a valid integer"),
    ("/v1/billing", {"start_day": "2026-12-01", "end_day": "2026-11-30"}, "is after end_day"),
    ("/v1/billing", {"start_day": "2026-11-31", "end_day": "2026-12-01"}, "not a valid calendar date"),
    ("/v1/billing", {"start_day": "9999-12-31", "end_day": "9999-12-31"}, "outside the supported range"),
    ("/v1/ads/ad-1/clicks", {"start": 253402300800000, "end": 253402300900000}, "outside the supported range"),
    ("/v1/ads/ad-1/clicks", {"start": -99999999999999999, "end": M0001}, "outside the supported range"),
    ("/v1/billing", {"start_day": "30/11/2026", "end_day": "2026-12-01"}, "use YYYY-MM-DD"),
    ("/v1/billing", {"start_day": "2026-01-01", "end_day": "2026-12-01"}, "maximum is 92"),
    ("/v1/reconciliation", {"day": "yesterday"}, "use YYYY-MM-DD"),
])
def test_invalid_parameters_rejected_with_400(client, path, params, expected) -> None:
    response = client.get(path, params=params)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_parameter"
    assert expected in response.json()["message"]


def test_top_endpoint(client) -> None:
    response = client.get("/v1/top", params={"minutes": 4, "limit": 3})

    assert response.status_code == 200
    assert [(a["rank"], a["ad_id"], a["clicks"]) for a in response.json()["ads"]] == [(1, "ad-1", 20)]


def test_billing_endpoint_filters_by_ad(client) -> None:
    response = client.get("/v1/billing", params={"start_day": "2026-11-30", "end_day": "2026-12-01",
                                                 "ad_id": "ad-1"})

    assert response.status_code == 200
    body = response.json()
    assert [(r["billing_day"], r["clicks"], r["source"], r["is_final"]) for r in body["rows"]] == [
        ("2026-11-30", 13, "batch", True), ("2026-12-01", 7, "speed", False)]
    assert body["total_clicks"] == 20


def test_status_endpoint_reports_boundary_and_freshness(client) -> None:
    body = client.get("/v1/status").json()

    assert body["boundary"]["closed_days"] == ["2026-11-30"]
    assert body["boundary"]["open_days_with_speed_data"] == ["2026-12-01"]
    assert body["speed"]["latest_window_start_ms"] == M0001
    assert body["speed"]["latest_final_window_end_ms"] == M0000 + 60_000
    assert body["speed"]["latest_watermark_ms"] == NOON + 400_005
    assert body["speed"]["late_clicks"] == 1
    assert body["speed"]["provisional_minute_rows"] == 1
    assert body["speed"]["next_offsets"] == [{"topic": "click-counts", "partition": 0, "next_offset": 5}]
    assert [(d["billing_day"], d["status"], d["closed"]) for d in body["batch"]["latest_run_per_day"]] == [
        (CLOSED_DAY.isoformat(), "succeeded", True)]
    assert body["health"]["ingest_thread_alive"] is False


def test_reconciliation_endpoint(client) -> None:
    closed = client.get("/v1/reconciliation", params={"day": "2026-11-30"})
    open_day = client.get("/v1/reconciliation", params={"day": "2026-12-01"})

    assert closed.status_code == 200
    assert closed.json()["totals"]["speed_final_clicks"] == 22
    assert closed.json()["totals"]["batch_clicks"] == 22
    assert open_day.status_code == 409
    assert "no successful batch run" in open_day.json()["message"]


def test_openapi_schema_lists_endpoints(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert set(paths) >= {"/v1/ads/{ad_id}/clicks", "/v1/top", "/v1/billing", "/v1/status", "/v1/reconciliation"}
