"""The Spark forms of the shared click rules equal the plain ones on literal rows."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from shared_logic import billing_rules, spark_rules, time_buckets
from shared_logic.timestamps import parse_timestamp_ms
from tests.spark_fixture import JVM_TIMEZONE, SESSION_TIMEZONE

pytest.importorskip("pyspark")
from pyspark.sql import functions as F  # noqa: E402

# Instants around midnight and around daylight-saving changes of the zones below.
INSTANTS = [
    "2026-12-04T23:59:59.999Z",
    "2026-12-05T00:00:00.000Z",
    "2026-12-04T18:29:59.999Z",  # 23:59:59.999 in Asia/Kolkata
    "2026-12-04T18:30:00.000Z",  # midnight in Asia/Kolkata
    "2026-03-08T06:59:59.999Z",  # 01:59:59.999 EST, before the spring-forward gap
    "2026-03-08T07:00:00.000Z",  # 03:00 EDT
    "2026-11-01T05:30:00.000Z",  # 01:30 EDT, first pass through the repeated hour
    "2026-11-01T06:30:00.000Z",  # 01:30 EST, second pass
    "2026-04-05T14:59:59.999Z",  # Lord Howe: 30-minute daylight-saving shift
    "2026-04-05T15:00:00.000Z",
    "1969-12-31T23:59:59.999Z",  # before the epoch: modulo must not go negative
]
ZONES = ["UTC", "Asia/Kolkata", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]


def test_session_runs_in_other_zones(spark) -> None:
    # The rules below are only shown to ignore these zones if Spark really runs in them.
    assert spark._jvm.java.util.TimeZone.getDefault().getID() == JVM_TIMEZONE
    assert spark.conf.get("spark.sql.session.timeZone") == SESSION_TIMEZONE


def test_time_buckets_match_plain_rules(spark) -> None:
    rows = [(parse_timestamp_ms(text), zone) for text in INSTANTS for zone in ZONES]
    frame = spark.createDataFrame(rows, "event_time_ms long, zone string")
    computed = {}
    for zone in ZONES:
        ms = F.col("event_time_ms")
        for row in frame.where(F.col("zone") == zone).select(
            "event_time_ms",
            spark_rules.billing_day(ms, zone).alias("billing_day"),
            spark_rules.hour_start_ms(ms, zone).alias("hour_start_ms"),
            spark_rules.minute_start_ms(ms).alias("minute_start_ms"),
            spark_rules.utc_date(ms).alias("utc_date"),
        ).collect():
            computed[(row["event_time_ms"], zone)] = row

    for event_time_ms, zone in rows:
        row = computed[(event_time_ms, zone)]
        zone_info = ZoneInfo(zone)
        case = f"{time_buckets.to_datetime(event_time_ms).isoformat()} in {zone}"
        assert row["billing_day"] == time_buckets.billing_day(event_time_ms, zone_info), case
        assert row["hour_start_ms"] == time_buckets.hour_start_ms(event_time_ms, zone_info), case
        assert row["minute_start_ms"] == time_buckets.minute_start_ms(event_time_ms), case
        assert row["utc_date"] == time_buckets.billing_day(event_time_ms, ZoneInfo("UTC")), case


def test_billing_day_literal_boundaries(spark) -> None:
    cases = [
        ("2026-12-04T23:59:59.999Z", "UTC", date(2026, 12, 4)),
        ("2026-12-05T00:00:00.000Z", "UTC", date(2026, 12, 5)),
        ("2026-12-05T05:29:59.999+05:30", "UTC", date(2026, 12, 4)),
        ("2026-12-05T05:30:00.000+05:30", "UTC", date(2026, 12, 5)),
        ("2026-12-04T18:29:59.999Z", "Asia/Kolkata", date(2026, 12, 4)),
        ("2026-12-04T18:30:00.000Z", "Asia/Kolkata", date(2026, 12, 5)),
        ("2026-12-05T04:59:59.999Z", "America/New_York", date(2026, 12, 4)),
        ("2026-12-05T05:00:00.000Z", "America/New_York", date(2026, 12, 5)),
    ]
    for text, zone, expected in cases:
        frame = spark.createDataFrame([(parse_timestamp_ms(text),)], "event_time_ms long")
        actual = frame.select(spark_rules.billing_day(F.col("event_time_ms"), zone).alias("day")).first()["day"]
        assert actual == expected, f"{text} in {zone}"


REASON_CASES = [
    # click_id, ad_id, user_id, event_time_ms, received_at_ms, expected reason
    ("c1", "ad", "u", 1_000_000, 1_000_500, None),
    (None, "ad", "u", 1_000_000, 1_000_500, billing_rules.MISSING_ID),
    ("", "ad", "u", 1_000_000, 1_000_500, billing_rules.MISSING_ID),
    ("c1", "  ", "u", 1_000_000, 1_000_500, billing_rules.MISSING_ID),
    ("c1", "ad", None, 1_000_000, 1_000_500, billing_rules.MISSING_ID),
    ("c1", "ad", "u", None, 1_000_500, billing_rules.MISSING_EVENT_TIME),
    ("c1", "ad", "u", 1_300_000, 1_000_000, None),  # exactly max_future_skew_s ahead
    ("c1", "ad", "u", 1_300_001, 1_000_000, billing_rules.FUTURE_EVENT_TIME),
    ("c1", "ad", "u", 9_999_999, None, None),
    (None, "ad", "u", None, 1_000_000, billing_rules.MISSING_ID),
]


def test_non_billable_reason_matches_plain_rule(spark) -> None:
    skew_s = 300
    frame = spark.createDataFrame(
        [case[:5] for case in REASON_CASES],
        "click_id string, ad_id string, user_id string, event_time_ms long, received_at_ms long",
    )
    reasons = frame.select(spark_rules.non_billable_reason(
        click_id=F.col("click_id"), ad_id=F.col("ad_id"), user_id=F.col("user_id"),
        event_time_ms=F.col("event_time_ms"), received_at_ms=F.col("received_at_ms"),
        max_future_skew_s=skew_s,
    ).alias("reason")).collect()

    for case, row in zip(REASON_CASES, reasons):
        click_id, ad_id, user_id, event_time_ms, received_at_ms, expected = case
        plain = billing_rules.non_billable_reason(
            click_id=click_id, ad_id=ad_id, user_id=user_id, event_time_ms=event_time_ms,
            received_at_ms=received_at_ms, max_future_skew_s=skew_s)
        assert plain == expected, case
        assert row["reason"] == expected, case
