"""Consuming the speed layer's topics on a real broker: read_committed, stored offsets, restarts."""

from __future__ import annotations

import time

import requests

from serving_layer.service import ServingService
from shared_logic.timestamps import parse_timestamp_ms
from tests.processes import start_adclick, stop, wait_for_http
from tests.serving.helpers import count_record, drain, produce_transaction, write_batch_run
from tests.serving.test_merge import CLOSED_DAY, M0000, M0001, M2358, M2359, NOON

OPEN_DAY = "2026-12-01"


def speed_rows(service) -> list[tuple]:
    with service.store.read() as cursor:
        return cursor.execute(
            "SELECT ad_id, window_start_ms, clicks, is_final FROM speed_minutes ORDER BY ALL").fetchall()


def test_aborted_transaction_never_served(kafka_settings) -> None:
    produce_transaction(kafka_settings, kafka_settings.topic_click_counts,
                        [count_record("ad-1", M0000, 3), count_record("ad-2", M0000, 1)])
    produce_transaction(kafka_settings, kafka_settings.topic_click_counts,
                        [count_record("ad-1", M0000, 300), count_record("ad-9", M0000, 9)], commit=False)
    produce_transaction(kafka_settings, kafka_settings.topic_click_counts,
                        [count_record("ad-1", M0001, 4), {**count_record("ad-3", M0001, 0), "clicks": "three"}])
    service = ServingService(kafka_settings)
    try:
        service.ingest.start()
        applied = drain(service.ingest)

        assert applied == 3
        assert service.ingest.state.invalid_records == 1
        assert speed_rows(service) == [("ad-1", M0000, 3, True), ("ad-1", M0001, 4, True), ("ad-2", M0000, 1, True)]
        assert not any(service.ingest.lag_by_partition().values())
    finally:
        service.ingest.close()
        service.store.close()


def test_restart_resumes_at_stored_offsets(kafka_settings) -> None:
    produce_transaction(kafka_settings, kafka_settings.topic_click_counts,
                        [count_record("ad-1", M0000, 3, is_final=False)])
    first = ServingService(kafka_settings)
    first.ingest.start()
    assert drain(first.ingest) == 1
    stored = first.store.stored_offsets()
    first.ingest.close()
    first.store.close()

    produce_transaction(kafka_settings, kafka_settings.topic_click_counts,
                        [count_record("ad-1", M0000, 5), count_record("ad-2", M0001, 2)])
    second = ServingService(kafka_settings)
    try:
        second.ingest.start()
        applied = drain(second.ingest)

        assert applied == 2
        assert sum(stored.values()) > 0
        assert speed_rows(second) == [("ad-1", M0000, 5, True), ("ad-2", M0001, 2, True)]
    finally:
        second.ingest.close()
        second.store.close()


def _query_all(base_url: str) -> dict:
    return {
        "billing": requests.get(f"{base_url}/v1/billing", params={"start_day": CLOSED_DAY.isoformat(),
                                                                  "end_day": OPEN_DAY}, timeout=10).json()["rows"],
        "series": requests.get(f"{base_url}/v1/ads/ad-1/clicks", params={
            "granularity": "minute", "start": M2358, "end": M0001 + 60_000}, timeout=10).json()["buckets"],
        "top": requests.get(f"{base_url}/v1/top", params={"minutes": 5, "limit": 5}, timeout=10).json()["ads"],
    }


def _wait_for(base_url: str, process, ready, timeout_s: float = 60.0) -> dict:
    """Poll /v1/status until ``ready(status)`` holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = requests.get(f"{base_url}/v1/status", timeout=10).json()
        if ready(status):
            return status
        assert process.poll() is None, "adclick serve exited"
        time.sleep(0.3)
    raise TimeoutError(f"the serving process did not reach the expected state within {timeout_s} s: {status}")


def test_serve_killed_and_restarted_gives_identical_results(kafka_settings) -> None:
    settings = kafka_settings.replace(serving_delta_poll_interval_s=0.5, serving_lag_refresh_interval_s=0.5)
    base_url = f"http://{settings.serving_host}:{settings.serving_port}"
    produce_transaction(settings, settings.topic_click_counts, [
        count_record("ad-1", M2358, 5), count_record("ad-1", M2359, 7), count_record("ad-1", M0000, 3),
        count_record("ad-2", NOON, 10)])
    write_batch_run(settings, CLOSED_DAY, {("ad-1", M2358): 6, ("ad-1", M2359): 7, ("ad-2", NOON): 9},
                    started_at_ms=1)

    process = start_adclick(settings, "serve", log_name="serve-first")
    try:
        wait_for_http(f"{base_url}/healthz", process)
        _wait_for(base_url, process, lambda s: s["boundary"]["closed_days"] == [CLOSED_DAY.isoformat()]
                  and s["speed"]["minute_rows"] == 4)
        before_kill = _query_all(base_url)
    finally:
        process.kill()
        process.wait()

    # Records written while the process is down, one of them for a minute it already holds.
    produce_transaction(settings, settings.topic_click_counts,
                        [count_record("ad-1", M0000, 4), count_record("ad-1", M0001, 2, is_final=False)])
    produce_transaction(settings, settings.topic_click_counts, [count_record("ad-1", M0001, 99)], commit=False)

    process = start_adclick(settings, "serve", log_name="serve-second")
    try:
        wait_for_http(f"{base_url}/healthz", process)
        status = _wait_for(base_url, process, lambda s: s["speed"]["minute_rows"] == 5
                           and s["health"]["consumer_lag"] == 0 and s["health"]["lag_measured_at_ms"])
        after_restart = _query_all(base_url)
        report_command = start_adclick(settings, "report", "reconcile", "--day", CLOSED_DAY.isoformat(),
                                       log_name="report-reconcile")
        report_exit_code = report_command.wait(timeout=60)
    finally:
        stop(process)

    assert before_kill["billing"] == [
        {"billing_day": "2026-11-30", "ad_id": "ad-1", "clicks": 13, "source": "batch", "is_final": True,
         "run_id": before_kill["billing"][0]["run_id"]},
        {"billing_day": "2026-11-30", "ad_id": "ad-2", "clicks": 9, "source": "batch", "is_final": True,
         "run_id": before_kill["billing"][0]["run_id"]},
        {"billing_day": "2026-12-01", "ad_id": "ad-1", "clicks": 3, "source": "speed", "is_final": True,
         "run_id": None},
    ]
    assert after_restart["billing"][:2] == before_kill["billing"][:2]
    assert after_restart["billing"][2]["clicks"] == 6
    assert after_restart["billing"][2]["is_final"] is False
    assert [(b["clicks"], b["source"]) for b in after_restart["series"]] == [
        (6, "batch"), (7, "batch"), (4, "speed"), (2, "speed")]
    assert after_restart["series"][:2] == before_kill["series"][:2]
    assert [(a["ad_id"], a["clicks"]) for a in after_restart["top"]] == [("ad-1", 19)]
    assert status["health"]["records_applied"] == 2
    # Speed 12 against batch 13 for ad-1, 10 against 9 for ad-2, with no known reason: both flagged.
    assert report_exit_code == 1
    report_csv = (settings.reports_dir / "reconciliation-2026-11-30.csv").read_text()
    assert report_csv.count(",True\n") == 2
    assert "no serving process responds" not in settings.path("logs", "report-reconcile.log").read_text()
