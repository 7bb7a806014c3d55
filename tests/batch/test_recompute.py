"""Recompute of a billing day from raw rows written straight to raw_clicks."""

from __future__ import annotations

import threading
from datetime import date

import deltalake
import pytest
from pyspark.sql import functions as F

from batch_layer import runs
from batch_layer.recompute import recompute_day, recompute_dirty_days
from batch_layer.tables import (BATCH_RUNS, CLICKS_DEDUPED, GOLD_DAILY, GOLD_HOURLY, GOLD_MINUTE, TABLES,
                                ensure_tables, table_path)
from shared_logic.billing_rules import FUTURE_EVENT_TIME, MISSING_ID
from shared_logic.clicks import validate_click
from shared_logic.time_buckets import day_bounds_ms
from shared_logic.timestamps import parse_timestamp_ms
from tests.batch.conftest import append_raw, raw_row
from tests.spark_fixture import assert_rows_equal

DAY = date(2026, 12, 4)
GOLD = (GOLD_MINUTE, GOLD_HOURLY, GOLD_DAILY)


def ms(text: str) -> int:
    return parse_timestamp_ms(text)


def read(spark, settings, table):
    return spark.read.format("delta").load(str(table_path(settings, table)))


def gold_rows(spark, settings, table, day=DAY):
    return (read(spark, settings, table).where(F.col("billing_day") == F.lit(day))
            .drop("run_id").collect())


def sample_rows() -> list[dict]:
    return [
        # ad-1: c1 twice (the copy in partition 3 was received first), c2, c3.
        raw_row("2026-12-04T10:00:01.000Z", click_id="c1", partition=0, received_delay_ms=2_000),
        raw_row("2026-12-04T10:00:01.000Z", click_id="c1", partition=3, received_delay_ms=1_000),
        raw_row("2026-12-04T10:00:30.000Z", click_id="c2"),
        raw_row("2026-12-04T10:01:00.000Z", click_id="c3"),
        # ad-2: c4 three times, in three Kafka partitions, at the last millisecond of the day.
        raw_row("2026-12-04T23:59:59.999Z", click_id="c4", ad_id="ad-2", partition=0),
        raw_row("2026-12-04T23:59:59.999Z", click_id="c4", ad_id="ad-2", partition=1),
        raw_row("2026-12-04T23:59:59.999Z", click_id="c4", ad_id="ad-2", partition=2),
        # ad-2: event time 400 s after the collector received it (max_future_skew_s is 300).
        raw_row("2026-12-04T11:00:00.000Z", click_id="c5", ad_id="ad-2", received_delay_ms=-400_000),
        # ad-1: no user id.
        raw_row("2026-12-04T12:00:00.000Z", click_id="c7", user_id=""),
        # The first millisecond of the next day.
        raw_row("2026-12-05T00:00:00.000Z", click_id="c6"),
    ]


EXPECTED_MINUTES = [
    {"billing_day": DAY, "ad_id": "ad-1", "bucket_start_ms": ms("2026-12-04T10:00:00Z"),
     "bucket_end_ms": ms("2026-12-04T10:01:00Z"), "clicks": 2, "duplicates_removed": 1},
    {"billing_day": DAY, "ad_id": "ad-1", "bucket_start_ms": ms("2026-12-04T10:01:00Z"),
     "bucket_end_ms": ms("2026-12-04T10:02:00Z"), "clicks": 1, "duplicates_removed": 0},
    {"billing_day": DAY, "ad_id": "ad-1", "bucket_start_ms": ms("2026-12-04T12:00:00Z"),
     "bucket_end_ms": ms("2026-12-04T12:01:00Z"), "clicks": 0, "duplicates_removed": 0},
    {"billing_day": DAY, "ad_id": "ad-2", "bucket_start_ms": ms("2026-12-04T11:00:00Z"),
     "bucket_end_ms": ms("2026-12-04T11:01:00Z"), "clicks": 0, "duplicates_removed": 0},
    {"billing_day": DAY, "ad_id": "ad-2", "bucket_start_ms": ms("2026-12-04T23:59:00Z"),
     "bucket_end_ms": ms("2026-12-05T00:00:00Z"), "clicks": 1, "duplicates_removed": 2},
]
EXPECTED_HOURS = [
    {"billing_day": DAY, "ad_id": "ad-1", "bucket_start_ms": ms("2026-12-04T10:00:00Z"),
     "bucket_end_ms": ms("2026-12-04T11:00:00Z"), "clicks": 3, "duplicates_removed": 1},
    {"billing_day": DAY, "ad_id": "ad-1", "bucket_start_ms": ms("2026-12-04T12:00:00Z"),
     "bucket_end_ms": ms("2026-12-04T13:00:00Z"), "clicks": 0, "duplicates_removed": 0},
    {"billing_day": DAY, "ad_id": "ad-2", "bucket_start_ms": ms("2026-12-04T11:00:00Z"),
     "bucket_end_ms": ms("2026-12-04T12:00:00Z"), "clicks": 0, "duplicates_removed": 0},
    {"billing_day": DAY, "ad_id": "ad-2", "bucket_start_ms": ms("2026-12-04T23:00:00Z"),
     "bucket_end_ms": ms("2026-12-05T00:00:00Z"), "clicks": 1, "duplicates_removed": 2},
]
EXPECTED_DAYS = [
    {"billing_day": DAY, "ad_id": "ad-1", "bucket_start_ms": ms("2026-12-04T00:00:00Z"),
     "bucket_end_ms": ms("2026-12-05T00:00:00Z"), "clicks": 3, "duplicates_removed": 1},
    {"billing_day": DAY, "ad_id": "ad-2", "bucket_start_ms": ms("2026-12-04T00:00:00Z"),
     "bucket_end_ms": ms("2026-12-05T00:00:00Z"), "clicks": 1, "duplicates_removed": 2},
]


def test_recompute_day_exact_tables(spark, delta_settings) -> None:
    append_raw(spark, delta_settings, sample_rows())

    result = recompute_day(spark, delta_settings, DAY)

    silver = read(spark, delta_settings, CLICKS_DEDUPED).where(F.col("billing_day") == F.lit(DAY))
    assert_rows_equal(
        silver,
        [
            {"click_id": "c1", "kafka_partition": 3, "copies": 2, "non_billable_reason": None},
            {"click_id": "c2", "kafka_partition": 0, "copies": 1, "non_billable_reason": None},
            {"click_id": "c3", "kafka_partition": 0, "copies": 1, "non_billable_reason": None},
            {"click_id": "c4", "kafka_partition": 0, "copies": 3, "non_billable_reason": None},
            {"click_id": "c5", "kafka_partition": 0, "copies": 1, "non_billable_reason": FUTURE_EVENT_TIME},
            {"click_id": "c7", "kafka_partition": 0, "copies": 1, "non_billable_reason": MISSING_ID},
        ],
        columns=["click_id", "kafka_partition", "copies", "non_billable_reason"],
    )
    assert_rows_equal(gold_rows(spark, delta_settings, GOLD_MINUTE), EXPECTED_MINUTES)
    assert_rows_equal(gold_rows(spark, delta_settings, GOLD_HOURLY), EXPECTED_HOURS)
    assert_rows_equal(gold_rows(spark, delta_settings, GOLD_DAILY), EXPECTED_DAYS)
    for table in GOLD:
        run_ids = {row["run_id"] for row in read(spark, delta_settings, table).collect()}
        assert run_ids == {result.run_id}, table

    run = read(spark, delta_settings, BATCH_RUNS).where(F.col("run_id") == result.run_id).first()
    assert run["status"] == runs.SUCCEEDED
    assert run["billing_day"] == DAY
    assert run["input_rows"] == 9
    assert run["billable_clicks"] == 4
    assert run["duplicates_removed"] == 3
    assert run["non_billable_clicks"] == 2
    assert run["max_ingest_time_ms"] == 1
    assert run["billing_timezone"] == "UTC"
    assert run["error"] is None
    assert run["ended_at_ms"] >= run["started_at_ms"]


def test_rerun_leaves_gold_unchanged(spark, delta_settings) -> None:
    append_raw(spark, delta_settings, sample_rows())
    first = recompute_day(spark, delta_settings, DAY)
    before = {table: gold_rows(spark, delta_settings, table) for table in GOLD + (CLICKS_DEDUPED,)}

    second = recompute_day(spark, delta_settings, DAY)

    for table, rows in before.items():
        assert_rows_equal(gold_rows(spark, delta_settings, table), [row.asDict() for row in rows])
    assert_rows_equal(gold_rows(spark, delta_settings, GOLD_DAILY), EXPECTED_DAYS)
    run_rows = read(spark, delta_settings, BATCH_RUNS).collect()
    assert sorted(row["run_id"] for row in run_rows) == sorted([first.run_id, second.run_id])
    assert {row["status"] for row in run_rows} == {runs.SUCCEEDED}
    assert first.totals == second.totals

    # After replaceWhere, MERGE and UPDATE commits, delta-rs (the serving layer's reader) reads every table.
    for table in TABLES:
        arrow = deltalake.DeltaTable(str(table_path(delta_settings, table))).to_pyarrow_table()
        assert arrow.num_rows == read(spark, delta_settings, table).count(), table
    daily = deltalake.DeltaTable(str(table_path(delta_settings, GOLD_DAILY))).to_pyarrow_table()
    assert sorted(zip(daily["ad_id"].to_pylist(), daily["clicks"].to_pylist())) == [("ad-1", 3), ("ad-2", 1)]


def test_empty_day_replaces_old_rows(spark, delta_settings) -> None:
    append_raw(spark, delta_settings, sample_rows())
    recompute_day(spark, delta_settings, DAY)
    other_day = date(2026, 12, 5)
    recompute_day(spark, delta_settings, other_day)

    # Rerun day 5 after its only click was deleted from raw (as a GDPR erasure would).
    from delta.tables import DeltaTable
    DeltaTable.forPath(spark, str(table_path(delta_settings, "raw_clicks"))).delete("click_id = 'c6'")
    result = recompute_day(spark, delta_settings, other_day)

    assert result.totals.input_rows == 0
    for table in GOLD:
        assert gold_rows(spark, delta_settings, table, other_day) == [], table
    assert_rows_equal(gold_rows(spark, delta_settings, GOLD_DAILY), EXPECTED_DAYS)


def _boundary_clicks() -> list[dict]:
    """Raw rows built through the collector's validation, one ad per click."""
    payloads = {
        "ad-A": "2026-12-04T23:59:59.999Z",
        "ad-B": "2026-12-05T00:00:00.000Z",
        "ad-C": "2026-12-05T05:29:59.999+05:30",  # 2026-12-04T23:59:59.999Z
        "ad-D": "2026-12-05T05:30:00.000+05:30",  # 2026-12-05T00:00:00.000Z
        "ad-E": "2026-12-04T18:29:59.999Z",       # 23:59:59.999 in Asia/Kolkata
        "ad-F": "2026-12-05T00:00:00.000+05:30",  # midnight in Asia/Kolkata
    }
    rows = []
    for ad_id, timestamp in payloads.items():
        click = validate_click({"ad_id": ad_id, "user_id": "u", "timestamp": timestamp},
                               _settings(), now=ms("2026-12-06T00:00:00Z"))
        record = click.to_record(received_at_ms=click.event_time_ms + 500)
        rows.append(raw_row(record["timestamp"], ad_id=ad_id, click_id=record["click_id"]))
    return rows


def _settings():
    from shared_logic.settings import load_settings
    return load_settings({})


@pytest.mark.parametrize(
    ("zone", "expected_ads"),
    [
        ("UTC", {date(2026, 12, 4): {"ad-A", "ad-C", "ad-E", "ad-F"}, date(2026, 12, 5): {"ad-B", "ad-D"}}),
        ("Asia/Kolkata", {date(2026, 12, 4): {"ad-E"},
                          date(2026, 12, 5): {"ad-A", "ad-B", "ad-C", "ad-D", "ad-F"}}),
    ],
)
def test_day_boundaries_in_billing_zone(spark, delta_settings, zone, expected_ads) -> None:
    settings = delta_settings.replace(billing_timezone=zone)
    append_raw(spark, settings, _boundary_clicks())

    for day, ads in expected_ads.items():
        recompute_day(spark, settings, day)
        start_ms, end_ms = day_bounds_ms(day, settings.billing_zone)
        assert_rows_equal(
            gold_rows(spark, settings, GOLD_DAILY, day),
            [{"billing_day": day, "ad_id": ad, "bucket_start_ms": start_ms, "bucket_end_ms": end_ms,
              "clicks": 1, "duplicates_removed": 0} for ad in ads],
        )
    assert_rows_equal(read(spark, settings, CLICKS_DEDUPED).select("billing_day", "ad_id"),
                      [{"billing_day": day, "ad_id": ad} for day, ads in expected_ads.items() for ad in ads])

    hour = read(spark, settings, GOLD_HOURLY).where(F.col("ad_id") == "ad-A").first()
    # 23:59:59.999Z is 05:29:59.999 in Kolkata, in the local hour 05:00-06:00 (23:30Z-00:30Z).
    expected_hour_start = "2026-12-04T23:00:00Z" if zone == "UTC" else "2026-12-04T23:30:00Z"
    assert hour["bucket_start_ms"] == ms(expected_hour_start)
    assert hour["bucket_end_ms"] == ms(expected_hour_start) + 3_600_000


def test_late_click_makes_closed_day_dirty(spark, delta_settings) -> None:
    append_raw(spark, delta_settings, [raw_row("2026-12-04T10:00:00Z", click_id="on-time", ingest_time_ms=100)])
    assert runs.dirty_days(spark, delta_settings) == [DAY]
    recompute_day(spark, delta_settings, DAY)
    assert runs.dirty_days(spark, delta_settings) == []

    # A click for the closed day 4 lands later; day 6 is still open at "now".
    append_raw(spark, delta_settings, [
        raw_row("2026-12-04T10:00:05Z", click_id="late", ingest_time_ms=200),
        raw_row("2026-12-06T10:00:00Z", click_id="today", ingest_time_ms=200),
    ])
    now_ms = ms("2026-12-06T12:00:00Z")
    assert runs.dirty_days(spark, delta_settings) == [DAY, date(2026, 12, 6)]
    assert runs.dirty_days(spark, delta_settings, closed_before_ms=now_ms) == [DAY]

    results = recompute_dirty_days(spark, delta_settings, closed_before_ms=now_ms)

    assert [result.billing_day for result in results] == [DAY]
    assert results[0].totals.billable_clicks == 2
    assert results[0].totals.max_ingest_time_ms == 200
    assert runs.dirty_days(spark, delta_settings, closed_before_ms=now_ms) == []
    assert gold_rows(spark, delta_settings, GOLD_DAILY)[0]["clicks"] == 2


def test_dirty_days_follow_billing_zone(spark, delta_settings) -> None:
    append_raw(spark, delta_settings, [raw_row("2026-12-04T20:00:00Z", click_id="c", ingest_time_ms=5)])
    recompute_day(spark, delta_settings, DAY)

    kolkata = delta_settings.replace(billing_timezone="Asia/Kolkata")

    # A run under UTC does not bill the Kolkata day 2026-12-05 that holds the click.
    assert runs.dirty_days(spark, kolkata) == [date(2026, 12, 5)]


def test_second_claim_for_day_rejected(spark, delta_settings) -> None:
    ensure_tables(spark, delta_settings)
    started_ms = ms("2026-12-05T01:00:00Z")
    runs.claim_day(spark, delta_settings, DAY, "run-a", started_ms)

    with pytest.raises(runs.DayAlreadyClaimed, match="run-a"):
        runs.claim_day(spark, delta_settings, DAY, "run-b", started_ms + 1_000)
    # Another day is free, and a claim past the lease of run-a takes the day.
    runs.claim_day(spark, delta_settings, date(2026, 12, 5), "run-c", started_ms)
    lease_ms = delta_settings.recompute_lease_s * 1000
    runs.claim_day(spark, delta_settings, DAY, "run-d", started_ms + lease_ms + 1)

    statuses = {row["run_id"]: row["status"] for row in read(spark, delta_settings, BATCH_RUNS).collect()}
    assert statuses == {"run-a": runs.RUNNING, "run-c": runs.RUNNING, "run-d": runs.RUNNING}


def _claim_in_threads(spark, settings, claims: list[tuple[date, str]]) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(len(claims))

    def claim(day: date, run_id: str) -> None:
        barrier.wait()
        try:
            runs.claim_day(spark, settings, day, run_id, ms("2026-12-05T01:00:00Z"))
            outcomes[run_id] = "claimed"
        except runs.DayAlreadyClaimed:
            outcomes[run_id] = "rejected"

    threads = [threading.Thread(target=claim, args=claim_args) for claim_args in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def test_concurrent_claims_same_day_one_wins(spark, delta_settings) -> None:
    ensure_tables(spark, delta_settings)

    outcomes = _claim_in_threads(spark, delta_settings, [(DAY, "run-a"), (DAY, "run-b")])

    assert sorted(outcomes.values()) == ["claimed", "rejected"]
    winner = [run_id for run_id, outcome in outcomes.items() if outcome == "claimed"]
    rows = read(spark, delta_settings, BATCH_RUNS).collect()
    assert [row["run_id"] for row in rows] == winner


def test_concurrent_claims_different_days_both_win(spark, delta_settings) -> None:
    ensure_tables(spark, delta_settings)

    outcomes = _claim_in_threads(spark, delta_settings, [(DAY, "run-a"), (date(2026, 12, 5), "run-b")])

    assert outcomes == {"run-a": "claimed", "run-b": "claimed"}


def test_recompute_rejected_while_day_claimed(spark, delta_settings) -> None:
    append_raw(spark, delta_settings, sample_rows())
    ensure_tables(spark, delta_settings)
    from shared_logic.timestamps import now_ms
    runs.claim_day(spark, delta_settings, DAY, "holder", now_ms())

    with pytest.raises(runs.DayAlreadyClaimed, match="holder"):
        recompute_day(spark, delta_settings, DAY)

    assert read(spark, delta_settings, GOLD_DAILY).count() == 0
    assert [row["run_id"] for row in read(spark, delta_settings, BATCH_RUNS).collect()] == ["holder"]
