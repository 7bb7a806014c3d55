"""Parse click timestamps: ISO-8601 with a zone, normalised to UTC milliseconds."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

ACCEPTED_FORM = (
    "ISO-8601 with a zone, YYYY-MM-DDTHH:MM:SS[.fraction of 1-9 digits] followed by "
    "Z or an offset such as +05:30 or +0530, e.g. 2026-12-04T12:00:59.999Z"
)

_ISO_PATTERN = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})T(?P<time>\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<fraction>\d{1,9}))?"
    r"(?:(?P<utc>Z)|(?P<sign>[+-])(?P<off_h>\d{2}):?(?P<off_m>\d{2}))$"
)
_NO_ZONE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class TimestampError(ValueError):
    """A timestamp that does not follow the accepted form."""


def parse_timestamp_ms(value: str) -> int:
    """Return the UTC epoch milliseconds of an ISO-8601 timestamp with a zone.

    Fractions finer than a millisecond are truncated, so 12:00:59.9999Z stays
    in the minute that starts at 12:00.
    """
    match = _ISO_PATTERN.match(value)
    if match is None:
        if _NO_ZONE_PATTERN.match(value):
            raise TimestampError(f"has no time zone; expected {ACCEPTED_FORM}")
        raise TimestampError(f"is not a valid timestamp; expected {ACCEPTED_FORM}")
    try:
        local = datetime.fromisoformat(f"{match['date']}T{match['time']}")
    except ValueError as exc:
        raise TimestampError(f"is not a valid calendar date or time ({exc}); expected {ACCEPTED_FORM}") from exc
    offset = _offset(match)
    fraction = (match["fraction"] or "").ljust(3, "0")[:3]
    utc = local.replace(tzinfo=timezone.utc) - offset
    return (utc - _EPOCH) // timedelta(milliseconds=1) + int(fraction)


def _offset(match: re.Match) -> timedelta:
    if match["utc"]:
        return timedelta(0)
    hours, minutes = int(match["off_h"]), int(match["off_m"])
    if hours > 18 or minutes > 59 or (hours == 18 and minutes > 0):
        raise TimestampError(f"has an offset outside -18:00..+18:00; expected {ACCEPTED_FORM}")
    offset = timedelta(hours=hours, minutes=minutes)
    return -offset if match["sign"] == "-" else offset


def format_utc_ms(epoch_ms: int) -> str:
    """Format epoch milliseconds as the canonical ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def now_ms() -> int:
    return (datetime.now(timezone.utc) - _EPOCH) // timedelta(milliseconds=1)
