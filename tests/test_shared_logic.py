"""The shared click rules on literal inputs."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from shared_logic.clicks import InvalidClick, validate_click
from shared_logic.identity import derive_click_id
from shared_logic.heartbeats import heartbeat_event_time, quiet_horizon_ms
from shared_logic.settings import SettingsError, load_settings
from shared_logic.time_buckets import billing_day, bucket_start_ms, day_bounds_ms, hour_start_ms, minute_start_ms
from shared_logic.timestamps import TimestampError, format_utc_ms, parse_timestamp_ms

SETTINGS = load_settings({})
NOW_MS = parse_timestamp_ms("2026-12-04T12:00:00Z")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-04T12:00:59.999Z", "2026-12-04T12:00:59.999Z"),
        ("2026-12-04T12:00:59Z", "2026-12-04T12:00:59.000Z"),
        ("2026-12-04T12:00:59.9Z", "2026-12-04T12:00:59.900Z"),
        ("2026-12-04T12:00:59.999999999Z", "2026-12-04T12:00:59.999Z"),
        ("2026-12-04T17:30:00+05:30", "2026-12-04T12:00:00.000Z"),
        ("2026-12-04T17:30:00+0530", "2026-12-04T12:00:00.000Z"),
        ("2026-12-04T07:00:00.123-05:00", "2026-12-04T12:00:00.123Z"),
        ("2026-12-05T00:00:00.000+00:00", "2026-12-05T00:00:00.000Z"),
        ("2026-12-04T05:29:59.999+05:30", "2026-12-03T23:59:59.999Z"),
    ],
)
def test_timestamp_normalised_to_utc_ms(text: str, expected: str) -> None:
    assert format_utc_ms(parse_timestamp_ms(text)) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2026-12-04T12:00:00", "no time zone"),
        ("2026-12-04 12:00:00", "no time zone"),
        ("2026-12-04T12:00:00.1234567891Z", "not a valid timestamp"),
        ("2026-13-04T12:00:00Z", "not a valid calendar date"),
        ("2026-02-30T12:00:00Z", "not a valid calendar date"),
        ("2026-12-04T25:00:00Z", "not a valid calendar date"),
        ("2026-12-04T12:00:00+19:00", "outside -18:00..+18:00"),
        ("yesterday", "not a valid timestamp"),
        ("", "not a valid timestamp"),
        ("1733313600", "not a valid timestamp"),
    ],
)
def test_timestamp_rejected_with_reason(text: str, reason: str) -> None:
    with pytest.raises(TimestampError, match=reason) as error:
        parse_timestamp_ms(text)
    assert "ISO-8601" in str(error.value)


GOOD = {"ad_id": "ad-1", "user_id": "user-1", "timestamp": "2026-12-04T11:59:00Z"}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"ad_id": None}, "ad_id", "must be a string"),
        ({"ad_id": 17}, "ad_id", "must be a string, got number"),
        ({"ad_id": None}, "ad_id", "must be a string, got null"),
        ({"timestamp": "0001-01-01T00:00:00Z"}, "timestamp", "before 2000-01-01"),
        ({"": "x"}, "attribute name", "non-empty"),
        ({"k\u0001": "x"}, "attribute name", "control"),
        ({"k" * 65: "x"}, "attribute name", "maximum is 64"),
        ({"ad_id": ""}, "ad_id", "non-empty"),
        ({"ad_id": "   "}, "ad_id", "non-empty"),
        ({"ad_id": " ad"}, "ad_id", "whitespace"),
        ({"ad_id": "a" * 129}, "ad_id", "maximum is 128"),
        ({"user_id": "u\x00ser"}, "user_id", "control characters"),
        ({"user_id": "u\u200bser"}, "user_id", "control characters"),
        ({"timestamp": 1733313600}, "timestamp", "must be an ISO-8601 string"),
        ({"timestamp": "2026-12-04T11:59:00"}, "timestamp", "no time zone"),
        ({"timestamp": "2026-12-04T12:05:01Z"}, "timestamp", "in the future"),
        ({"timestamp": "2031-01-01T00:00:00Z"}, "timestamp", "in the future"),
        ({"click_id": ""}, "click_id", "non-empty"),
        ({"click_id": 5}, "click_id", "must be a string"),
        ({"country": {"code": "FR"}}, "country", "string, number, boolean or null"),
        ({"country": "x" * 300}, "country", "maximum is 256"),
        ({"score": float("inf")}, "score", "not a finite number"),
        ({"score": 10**1500}, "score", "outside the signed 64-bit range"),
    ],
)
def test_validate_click_rejects_field(change: dict, field: str, message: str) -> None:
    with pytest.raises(InvalidClick, match=message) as error:
        validate_click({**GOOD, **change}, SETTINGS, NOW_MS)
    assert error.value.field == field


@pytest.mark.parametrize("missing", ["ad_id", "user_id", "timestamp"])
def test_validate_click_missing_field(missing: str) -> None:
    payload = {key: value for key, value in GOOD.items() if key != missing}
    with pytest.raises(InvalidClick, match="is missing") as error:
        validate_click(payload, SETTINGS, NOW_MS)
    assert error.value.field == missing


def test_validate_click_not_an_object() -> None:
    with pytest.raises(InvalidClick, match="must be a JSON object, got array"):
        validate_click([GOOD], SETTINGS, NOW_MS)


def test_validate_click_keeps_attributes() -> None:
    click = validate_click({**GOOD, "country": "FR", "app_version": 3, "big": 2**63 - 1, "on": True},
                           SETTINGS, NOW_MS)
    assert click.attributes == {"country": "FR", "app_version": 3, "big": 2**63 - 1, "on": True}


def test_validate_click_within_future_skew() -> None:
    click = validate_click({**GOOD, "timestamp": "2026-12-04T12:04:59Z"}, SETTINGS, NOW_MS)
    assert click.timestamp == "2026-12-04T12:04:59.000Z"


def test_click_id_from_client_is_kept() -> None:
    click = validate_click({**GOOD, "click_id": "c-42"}, SETTINGS, NOW_MS)
    assert click.click_id == "c-42"
    assert click.click_id_source == "client"


def test_derived_click_id_is_stable_across_offsets() -> None:
    first = validate_click(GOOD, SETTINGS, NOW_MS)
    same_instant = validate_click({**GOOD, "timestamp": "2026-12-04T17:29:00.000+05:30"}, SETTINGS, NOW_MS)
    assert first.click_id_source == "derived"
    assert first.click_id == same_instant.click_id
    assert first.click_id == derive_click_id("ad-1", "user-1", parse_timestamp_ms("2026-12-04T11:59:00Z"))


def test_derived_click_id_differs_per_field() -> None:
    base = derive_click_id("ad-1", "user-1", 1)
    assert base != derive_click_id("ad-2", "user-1", 1)
    assert base != derive_click_id("ad-1", "user-2", 1)
    assert base != derive_click_id("ad-1", "user-1", 2)
    # The separator keeps ("ab", "c") apart from ("a", "bc").
    assert derive_click_id("ab", "c", 1) != derive_click_id("a", "bc", 1)


def test_minute_boundary_is_half_open() -> None:
    before = parse_timestamp_ms("2026-12-04T12:00:59.999Z")
    after = parse_timestamp_ms("2026-12-04T12:01:00.000Z")
    assert minute_start_ms(before) == parse_timestamp_ms("2026-12-04T12:00:00Z")
    assert minute_start_ms(after) == after


def test_billing_day_in_other_zone() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    last_ms = parse_timestamp_ms("2026-12-04T18:29:59.999Z")
    assert billing_day(last_ms, kolkata) == date(2026, 12, 4)
    assert billing_day(last_ms + 1, kolkata) == date(2026, 12, 5)
    assert billing_day(last_ms, ZoneInfo("UTC")) == date(2026, 12, 4)


def test_day_bounds_across_daylight_saving() -> None:
    new_york = ZoneInfo("America/New_York")
    spring_start, spring_end = day_bounds_ms(date(2026, 3, 8), new_york)
    fall_start, fall_end = day_bounds_ms(date(2026, 11, 1), new_york)
    assert spring_end - spring_start == 23 * 3_600_000
    assert fall_end - fall_start == 25 * 3_600_000


def test_hour_bucket_in_half_hour_zone() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    instant = parse_timestamp_ms("2026-12-04T12:10:00Z")  # 17:40 in Kolkata
    assert format_utc_ms(hour_start_ms(instant, kolkata)) == "2026-12-04T11:30:00.000Z"
    assert bucket_start_ms(instant, "hour", ZoneInfo("UTC")) == parse_timestamp_ms("2026-12-04T12:00:00Z")


def test_settings_from_environment() -> None:
    settings = load_settings({"ADCLICK_ALLOWED_LATENESS_S": "60", "ADCLICK_BILLING_TIMEZONE": "Europe/Paris"})
    assert settings.allowed_lateness_s == 60
    assert settings.billing_zone == ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ADCLICK_ALLOWED_LATENESS_S": "soon"}, "ADCLICK_ALLOWED_LATENESS_S='soon' is not a valid int"),
        ({"ADCLICK_BILLING_TIMEZONE": "Mars/Olympus"}, "not an IANA time zone"),
        ({"ADCLICK_STATE_BACKEND": "memory"}, "use 'hashmap' or 'rocksdb'"),
        ({"ADCLICK_DEDUP_TTL_S": "10"}, "dedup_ttl_s must be at least"),
    ],
)
def test_settings_rejects_bad_override(environ: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ)


@pytest.mark.parametrize(("acknowledged", "acknowledged_at", "expected"), [
    (None, None, None),              # nothing acknowledged: no heartbeat
    (9_000, 10_000, 9_000),          # just acknowledged: its event time
    (7_000, 9_000, 8_000),           # quiet for 1 s: event time advanced 1 s
    (1_000, 2_000, 4_000),           # quiet for longer than the horizon: stops 3 s later
    (15_000, 10_000, 10_000),        # a click stamped in the future: never ahead of the clock
])
def test_heartbeat_event_time_cases(acknowledged, acknowledged_at, expected) -> None:
    assert heartbeat_event_time(acknowledged, acknowledged_at, now=10_000, horizon_ms=3_000) == expected


def test_quiet_horizon_closes_last_minute() -> None:
    assert quiet_horizon_ms(out_of_orderness_s=5, allowed_lateness_s=300) == 365_000
