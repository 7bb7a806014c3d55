"""End to end over a slice of the real TalkingData sample.

The slice crosses a UTC midnight, is shifted to end an hour ago and is
replayed through the collector while the speed layer and the serving API
run; then the batch layer lands and recomputes both days. Every accepted
click must be billed once by batch, the speed layer's final counts plus its
late clicks must equal batch per ad, and the API and the reconciliation
report must agree with both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from shared_logic.settings import Settings
from shared_logic.timestamps import format_utc_ms, now_ms, parse_timestamp_ms
from tests.processes import run_adclick, start_adclick, stop, wait_for_http
from traffic.replay import replay
from traffic.sources import default_sample_path, read_clicks

SAMPLE = default_sample_path()
SLICE_START = "2017-11-07T23:40:00Z"
SLICE_END = "2017-11-08T00:20:00Z"
SENTINEL_AD = "sentinel:watermark"

pytestmark = pytest.mark.skipif(SAMPLE is None, reason="the TalkingData sample is not in ../shared/data "
                                "or ADCLICK_SAMPLE_DATA")


def write_slice(path: Path, settings: Settings) -> None:
    """Write the slice as canonical JSON lines, ending an hour ago."""
    start_ms, end_ms = parse_timestamp_ms(SLICE_START), parse_timestamp_ms(SLICE_END)
    clicks = [c for c in read_clicks(SAMPLE) if start_ms <= c.event_time_ms < end_ms]
    # Whole days keep the slice's midnight at a midnight.
    shift_ms = (now_ms() - 3_600_000 - clicks[-1].event_time_ms) // 86_400_000 * 86_400_000
    lines = [json.dumps({"ad_id": c.ad_id, "user_id": c.user_id, **c.attributes,
                         "timestamp": format_utc_ms(c.event_time_ms + shift_ms)}) for c in clicks]
    last_ms = clicks[-1].event_time_ms + shift_ms
    # One click well past the allowed lateness moves the watermark so every minute becomes final.
    sentinel_ms = last_ms + (settings.allowed_lateness_s + settings.out_of_orderness_s + 60) * 1000
    lines.append(json.dumps({"ad_id": SENTINEL_AD, "user_id": "sentinel", "timestamp": format_utc_ms(sentinel_ms)}))
    path.write_text("\n".join(lines) + "\n")


def get(url: str, **params) -> dict:
    response = requests.get(url, params=params, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def wait_until(condition, timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(2)
    raise AssertionError(message)


@pytest.mark.timeout(1200)
def test_real_sample_counted_once_end_to_end(isolated_settings: Settings, tmp_path: Path) -> None:
    settings = isolated_settings
    write_slice(tmp_path / "slice.jsonl", settings)

    processes = []
    try:
        collector = start_adclick(settings, "collector", log_name="e2e-collector")
        processes.append(collector)
        speed = start_adclick(settings, "speed", log_name="e2e-speed")
        processes.append(speed)
        serving = start_adclick(settings, "serve", log_name="e2e-serving")
        processes.append(serving)
        collector_url = f"http://127.0.0.1:{settings.collector_port}"
        serving_url = f"http://127.0.0.1:{settings.serving_port}"
        wait_for_http(collector_url + "/healthz", collector)
        wait_for_http(serving_url + "/healthz", serving, timeout_s=60)

        summary = replay(tmp_path / "slice.jsonl", collector_url, speedup=0, progress=False,
                         zone=settings.billing_zone)
        # The replay shifts the slice again by whole days when its last click
        # is more than a day old (from 00:20 to 01:20 UTC), so the billing
        # days are those the replay reports.
        expected_per_day = summary.accepted_unique_per_day
        days = sorted(expected_per_day)
        assert len(days) == 2
        assert summary.rejected == 0

        run_adclick(settings, "land", "--once")
        run_adclick(settings, "recompute", *(argument for day in days for argument in ("--day", day)))

        wait_until(lambda: set(days) <= set(get(serving_url + "/v1/status")["boundary"]["closed_days"]),
                   120, f"serving did not close {days}")

        def speed_is_final() -> bool:
            rows = [row for day in days for row in get(serving_url + "/v1/reconciliation", day=day)["rows"]
                    if row["ad_id"] != SENTINEL_AD]
            return all(row["speed_provisional_minutes"] == 0 for row in rows)

        wait_until(speed_is_final, 240, "speed-layer minutes did not all become final")

        billing = get(serving_url + "/v1/billing", start_day=days[0], end_day=days[-1])
        batch_per_day = {}
        for row in billing["rows"]:
            assert row["source"] == "batch"
            batch_per_day[row["billing_day"]] = batch_per_day.get(row["billing_day"], 0) + row["clicks"]
        assert batch_per_day == expected_per_day

        for day in days:
            report = get(serving_url + "/v1/reconciliation", day=day)
            rows = [row for row in report["rows"] if row["ad_id"] != SENTINEL_AD]
            for row in rows:
                assert row["speed_final_clicks"] + row["late_clicks"] == row["batch_clicks"], row
                assert row["unexplained"] == 0, row
                assert not row["flagged"], row
            assert report["totals"]["batch_clicks"] == expected_per_day[day]
    finally:
        for process in processes:
            stop(process, timeout_s=30)
