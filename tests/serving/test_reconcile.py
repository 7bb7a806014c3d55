"""Reconciliation of a crafted day: every known difference explained, a planted one flagged.

Speed-layer input goes through a real broker in Kafka transactions, one of
them aborted; batch input is written as the batch layer's Delta tables.
"""

from __future__ import annotations

import csv
from datetime import date

import pytest

from infra.cli import build_parser
from serving_layer.reconcile import explain_row, reconcile_day
from serving_layer.service import ServingService
from shared_logic.timestamps import parse_timestamp_ms
from tests.serving.helpers import (
    count_record,
    drain,
    produce_transaction,
    write_batch_run,
    write_bronze,
    write_silver,
)

DAY = date(2026, 11, 30)
NOON = parse_timestamp_ms("2026-11-30T17:00:00Z")
CLOSED_AT_MS = parse_timestamp_ms("2026-12-01T07:00:00Z")


def late_click(click_id: str, ad_id: str) -> dict:
    return {"click_id": click_id, "ad_id": ad_id, "user_id": "u", "timestamp": "2026-11-30T17:00:01Z",
            "event_time_ms": NOON + 1000, "lateness_ms": 600_000, "watermark_ms": NOON + 601_000}


def silver_row(click_id: str, ad_id: str, reason: str | None) -> dict:
    return {"billing_day": DAY, "click_id": click_id, "ad_id": ad_id, "user_id": "u", "event_time_ms": NOON,
            "kafka_partition": 0, "kafka_offset": 0, "ingest_time_ms": NOON, "copies": 1,
            "non_billable_reason": reason}


def bronze_row(click_id: str, ad_id: str, ingest_time_ms: int) -> dict:
    return {"click_id": click_id, "ad_id": ad_id, "user_id": "u", "timestamp": "2026-11-30T17:00:00Z",
            "event_time_ms": NOON, "kafka_partition": 0, "kafka_offset": 0, "ingest_time_ms": ingest_time_ms,
            "event_date": DAY}


@pytest.fixture
def crafted(kafka_settings):
    settings = kafka_settings
    produce_transaction(settings, settings.topic_click_counts, [
        count_record("ad-dup", NOON, 12),
        count_record("ad-late", NOON, 7),
        count_record("ad-after", NOON, 6),
        count_record("ad-nb", NOON, 9),
        count_record("ad-planted", NOON, 25),
        count_record("ad-provisional", NOON, 4, is_final=False),
    ])
    # An aborted transaction must never reach the store.
    produce_transaction(settings, settings.topic_click_counts, [count_record("ad-late", NOON, 107)], commit=False)
    # A non-final update after the final count: reconciliation keeps the final 12.
    produce_transaction(settings, settings.topic_click_counts, [count_record("ad-dup", NOON, 13, is_final=False)])
    produce_transaction(settings, settings.topic_clicks_late,
                        [late_click(f"late-{n}", "ad-late") for n in range(3)] + [late_click("late-0", "ad-late")])
    write_batch_run(settings, DAY, {("ad-dup", NOON): 10, ("ad-late", NOON): 10, ("ad-after", NOON): 5,
                                    ("ad-nb", NOON): 8, ("ad-planted", NOON): 20, ("ad-provisional", NOON): 4},
                    duplicates={("ad-dup", NOON): 2, ("ad-planted", NOON): 1}, started_at_ms=1,
                    max_ingest_time_ms=CLOSED_AT_MS)
    write_silver(settings, [silver_row("c-1", "ad-nb", "bot_user_agent"), silver_row("c-2", "ad-nb", None)])
    write_bronze(settings, [bronze_row("after-1", "ad-after", CLOSED_AT_MS + 1),
                            bronze_row("after-1", "ad-after", CLOSED_AT_MS + 2),
                            bronze_row("before-1", "ad-after", CLOSED_AT_MS)])

    service = ServingService(settings)
    service.ingest.start()
    drain(service.ingest)
    service.loader.poll()
    yield service
    service.ingest.close()
    service.store.close()


def test_reconciliation_explains_known_differences(crafted) -> None:
    report = reconcile_day(crafted.store, crafted.settings, DAY)
    rows = {row["ad_id"]: row for row in report["rows"]}

    assert rows["ad-dup"]["speed_final_clicks"] == 12
    assert rows["ad-dup"]["duplicates_explained"] == 2
    assert rows["ad-late"]["speed_final_clicks"] == 7
    assert rows["ad-late"]["late_clicks"] == 3
    assert rows["ad-after"]["after_close_clicks"] == 1
    assert rows["ad-nb"]["non_billable_explained"] == 1
    assert rows["ad-provisional"]["speed_provisional_minutes"] == 1
    for ad in ("ad-dup", "ad-late", "ad-after", "ad-nb", "ad-provisional"):
        assert rows[ad]["unexplained"] == 0, rows[ad]
        assert rows[ad]["flagged"] is False, rows[ad]


def test_reconciliation_flags_planted_difference(crafted) -> None:
    report = reconcile_day(crafted.store, crafted.settings, DAY)
    planted = next(row for row in report["rows"] if row["ad_id"] == "ad-planted")

    assert planted["difference"] == 5
    assert planted["difference_pct"] == 25.0
    assert planted["duplicates_explained"] == 1
    assert planted["unexplained"] == 4
    assert planted["unexplained_pct"] == 20.0
    assert planted["flagged"] is True
    assert report["totals"] == {
        "speed_final_clicks": 63, "speed_provisional_minutes": 1, "batch_clicks": 57, "difference": 6,
        "late_clicks": 3, "after_close_clicks": 1, "duplicates_removed": 3, "duplicates_explained": 3,
        "non_billable_clicks": 1, "non_billable_explained": 1, "unexplained": 4,
        "difference_pct": round(600 / 57, 4), "ads": 6, "flagged_rows": 1,
    }


def test_reconcile_command_writes_files_and_exit_code(crafted) -> None:
    settings = crafted.settings
    args = build_parser().parse_args(["report", "reconcile", "--day", "2026-11-30"])

    exit_code = args.handler(args, settings)

    assert exit_code == 1
    with open(settings.reports_dir / "reconciliation-2026-11-30.csv", newline="") as handle:
        flagged = [row["ad_id"] for row in csv.DictReader(handle) if row["flagged"] == "True"]
    assert flagged == ["ad-planted"]
    page = (settings.reports_dir / "reconciliation-2026-11-30.html").read_text()
    assert page.index("<h2>Totals</h2>") < page.index("<h2>Ads (flagged first)</h2>")
    assert page.count('class="flagged"') == 1

    relaxed = settings.replace(reconciliation_threshold_clicks=4)
    assert args.handler(args, relaxed) == 0


@pytest.mark.parametrize(("speed", "batch", "late", "after", "duplicates", "expected_unexplained"), [
    (10, 10, 0, 0, 0, 0),
    (8, 10, 2, 0, 0, 0),
    (8, 10, 1, 0, 0, -1),
    (13, 10, 0, 1, 5, 0),
    (20, 10, 0, 0, 3, 7),
    (5, 0, 0, 0, 0, 5),
])
def test_explain_row_takes_reasons_in_order(speed, batch, late, after, duplicates, expected_unexplained,
                                            serving_settings) -> None:
    row = explain_row("ad", speed, 0, batch, late, after, duplicates, 0, serving_settings)

    assert row.unexplained == expected_unexplained
    assert row.flagged is (expected_unexplained != 0)
