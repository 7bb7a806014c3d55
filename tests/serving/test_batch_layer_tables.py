"""Serving from Delta tables written by the batch layer's own recompute on Spark.

Raw clicks go into bronze as the landing job writes them; ``recompute_day``
writes silver, gold and ``batch_runs``. Billing is in America/New_York, so
the day under test ends at 05:00 UTC.
"""

from __future__ import annotations

from datetime import date

import pytest

from serving_layer import queries
from serving_layer.reconcile import reconcile_day
from serving_layer.service import ServingService
from shared_logic.timestamps import parse_timestamp_ms
from tests.batch.conftest import append_raw, raw_row

DAY = date(2026, 11, 30)
NEXT_DAY = date(2026, 12, 1)


def speed(ad_id: str, local_minute: str, clicks: int) -> dict:
    start = parse_timestamp_ms(local_minute)
    return {"ad_id": ad_id, "window_start_ms": start, "window_end_ms": start + 60_000, "clicks": clicks,
            "is_final": True, "computed_at_ms": start + 70_000, "kafka_partition": 0, "kafka_offset": 0}


@pytest.fixture(scope="module")
def served(spark, base_settings, tmp_path_factory) -> dict:
    """Results read from the store after a first recompute of the day, and after a second one.

    Spark recomputes are slow, so the module runs them once and the tests
    check the results they recorded.
    """
    from batch_layer.recompute import recompute_day

    settings = base_settings.replace(data_dir=tmp_path_factory.mktemp("serving-batch"),
                                     billing_timezone="America/New_York")
    append_raw(spark, settings, [
        raw_row("2026-11-30T00:00:00.000-05:00", click_id="c3"),
        raw_row("2026-11-30T23:59:30.000-05:00", click_id="c1", partition=0),
        raw_row("2026-11-30T23:59:30.000-05:00", click_id="c1", partition=1),
        raw_row("2026-12-01T00:00:10.000-05:00", click_id="c2"),
        raw_row("2026-11-30T12:00:00.000-05:00", click_id="c4", ad_id="ad-2"),
        raw_row("2026-11-30T12:00:30.000-05:00", click_id="c5", ad_id="ad-2"),
        raw_row("2026-11-30T12:00:40.000-05:00", click_id="c6", ad_id="ad-2", user_id=""),
    ])
    first_run = recompute_day(spark, settings, DAY).run_id
    service = ServingService(settings)
    try:
        # The speed layer counted the duplicate c1 and the non-billable c6.
        service.store.apply_speed_batch([
            speed("ad-1", "2026-11-30T00:00:00-05:00", 1),
            speed("ad-1", "2026-11-30T23:59:00-05:00", 2),
            speed("ad-1", "2026-12-01T00:00:00-05:00", 1),
            speed("ad-2", "2026-11-30T12:00:00-05:00", 3),
        ], [], [], {})
        service.loader.poll()
        first = {
            "billing": billing(service),
            "series": queries.series(service.store, settings, "ad-1", "minute",
                                     parse_timestamp_ms("2026-11-30T23:59:00-05:00"),
                                     parse_timestamp_ms("2026-12-01T00:01:00-05:00"))["buckets"],
            "report": reconcile_day(service.store, settings, DAY),
        }

        append_raw(spark, settings, [raw_row("2026-11-30T12:01:00.000-05:00", click_id="c7", ad_id="ad-2")])
        second_run = recompute_day(spark, settings, DAY).run_id
        service.loader.poll()
        second = {"billing": billing(service)}
    finally:
        service.store.close()
    return {"first_run": first_run, "first": first, "second_run": second_run, "second": second}


def billing(service) -> list[tuple]:
    rows = queries.billing(service.store, service.settings, DAY, NEXT_DAY)["rows"]
    return [(r["billing_day"], r["ad_id"], r["clicks"], r["source"], r["run_id"]) for r in rows]


def test_batch_layer_day_served_from_batch(served) -> None:
    run_id = served["first_run"]

    assert served["first"]["billing"] == [
        ("2026-11-30", "ad-1", 2, "batch", run_id),
        ("2026-11-30", "ad-2", 2, "batch", run_id),
        ("2026-12-01", "ad-1", 1, "speed", None),
    ]
    assert [(b["bucket_start"], b["clicks"], b["source"]) for b in served["first"]["series"]] == [
        ("2026-11-30T23:59:00-05:00", 1, "batch"),
        ("2026-12-01T00:00:00-05:00", 1, "speed"),
    ]


def test_batch_layer_reconciliation_explained(served) -> None:
    report = served["first"]["report"]
    rows = {row["ad_id"]: row for row in report["rows"]}

    assert rows["ad-1"]["difference"] == 1
    assert rows["ad-1"]["duplicates_explained"] == 1
    assert rows["ad-2"]["difference"] == 1
    assert rows["ad-2"]["non_billable_explained"] == 1
    assert report["totals"]["unexplained"] == 0
    assert report["totals"]["flagged_rows"] == 0


def test_batch_layer_recompute_replaces_day(served) -> None:
    second_run = served["second_run"]

    assert second_run != served["first_run"]
    assert served["second"]["billing"] == [
        ("2026-11-30", "ad-1", 2, "batch", second_run),
        ("2026-11-30", "ad-2", 3, "batch", second_run),
        ("2026-12-01", "ad-1", 1, "speed", None),
    ]
