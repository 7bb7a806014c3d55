"""The click event schema and its validation.

A valid click has ``ad_id``, ``user_id`` and ``timestamp``, an optional
``click_id`` and optional scalar attributes (any other top-level key, for
example ``country``). Validation returns a :class:`Click` with a normalised
UTC timestamp and its click id, or raises :class:`InvalidClick` naming the
field, the value and the accepted form.
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from shared_logic.identity import derive_click_id
from shared_logic.settings import Settings
from shared_logic.timestamps import TimestampError, format_utc_ms, now_ms, parse_timestamp_ms

REQUIRED_FIELDS = ("ad_id", "user_id", "timestamp")
MAX_ATTRIBUTE_NAME_LENGTH = 64
# Clicks before this instant (2000-01-01T00:00:00Z) are rejected as implausible.
MIN_EVENT_TIME_MS = 946_684_800_000
RESERVED_FIELDS = set(REQUIRED_FIELDS) | {"click_id"}
MAX_ATTRIBUTE_LENGTH = 256
# Integer attributes must fit a signed 64-bit integer, which every JSON reader of the topics parses.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class InvalidClick(ValueError):
    """A click that breaks the schema; ``field`` names the offending field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class Click:
    click_id: str
    ad_id: str
    user_id: str
    event_time_ms: int
    click_id_source: str  # "client" or "derived"
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def timestamp(self) -> str:
        return format_utc_ms(self.event_time_ms)

    def to_record(self, received_at_ms: int) -> dict[str, Any]:
        """Return the record written to the ``clicks`` topic."""
        return {
            "click_id": self.click_id,
            "ad_id": self.ad_id,
            "user_id": self.user_id,
            "timestamp": self.timestamp,
            "event_time_ms": self.event_time_ms,
            "click_id_source": self.click_id_source,
            "attributes": self.attributes,
            "received_at_ms": received_at_ms,
        }


def json_type(value: Any) -> str:
    """Return the JSON name of a decoded value's type: null, boolean, number, string, array or object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def _preview(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_id(name: str, value: Any, max_length: int) -> str:
    """Check an identifier field: a non-empty, bounded string without control characters."""
    if not isinstance(value, str):
        raise InvalidClick(name, f"must be a string, got {json_type(value)} {_preview(value)}")
    if not value or not value.strip():
        raise InvalidClick(name, f"must be a non-empty string, got {_preview(value)}")
    if len(value) > max_length:
        raise InvalidClick(name, f"is {len(value)} characters long; the maximum is {max_length}")
    if value != value.strip():
        raise InvalidClick(name, f"must not start or end with whitespace, got {_preview(value)}")
    if any(unicodedata.category(char) in ("Cc", "Cf", "Cs") for char in value):
        raise InvalidClick(name, f"contains control characters or other invisible code points "
                                 f"(Unicode categories Cc, Cf, Cs), got {_preview(value)}; remove them")
    return value


def validate_timestamp(value: Any, settings: Settings, now: int | None = None) -> int:
    """Return the UTC epoch milliseconds of a click timestamp, or raise InvalidClick."""
    if not isinstance(value, str):
        raise InvalidClick(
            "timestamp", f"must be an ISO-8601 string, got {json_type(value)} {_preview(value)}"
        )
    try:
        event_time_ms = parse_timestamp_ms(value)
    except TimestampError as exc:
        raise InvalidClick("timestamp", f"{_preview(value)} {exc}") from None
    if event_time_ms < MIN_EVENT_TIME_MS:
        raise InvalidClick("timestamp", f"{_preview(value)} is before 2000-01-01T00:00:00Z; check the client's clock")
    now = now_ms() if now is None else now
    if event_time_ms > now + settings.max_future_skew_s * 1000:
        raise InvalidClick(
            "timestamp",
            f"{_preview(value)} is more than {settings.max_future_skew_s} s in the future "
            f"(server time {format_utc_ms(now)}); check the client's clock",
        )
    return event_time_ms


def _validate_attributes(payload: dict[str, Any], settings: Settings) -> dict[str, Any]:
    attributes = {key: value for key, value in payload.items() if key not in RESERVED_FIELDS}
    if len(attributes) > settings.max_attributes:
        raise InvalidClick(
            "attributes", f"{len(attributes)} extra fields; the maximum is {settings.max_attributes}"
        )
    for key, value in attributes.items():
        validate_id("attribute name", key, MAX_ATTRIBUTE_NAME_LENGTH)
        if isinstance(value, (dict, list)):
            raise InvalidClick(key, f"must be a string, number, boolean or null, got {_preview(value)}")
        if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_LENGTH:
            raise InvalidClick(key, f"is {len(value)} characters long; the maximum is {MAX_ATTRIBUTE_LENGTH}")
        _validate_number(key, value)
    return attributes


def _validate_number(key: str, value: Any) -> None:
    """Reject numbers that JSON readers of the clicks topic cannot all parse back."""
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidClick(key, f"is {value}, which is not a finite number; send a finite number or a string")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise InvalidClick(key, f"is an integer of {len(str(abs(value)))} digits, outside the signed 64-bit "
                                "range; send it as a string")


def validate_click(payload: Any, settings: Settings, now: int | None = None) -> Click:
    """Validate one decoded JSON click and return it with its click id."""
    if not isinstance(payload, dict):
        raise InvalidClick("click", f"must be a JSON object, got {json_type(payload)} {_preview(payload)}")
    missing = [name for name in REQUIRED_FIELDS if name not in payload]
    if missing:
        raise InvalidClick(missing[0], f"is missing; a click needs {', '.join(REQUIRED_FIELDS)}")
    ad_id = validate_id("ad_id", payload["ad_id"], settings.max_id_length)
    user_id = validate_id("user_id", payload["user_id"], settings.max_id_length)
    event_time_ms = validate_timestamp(payload["timestamp"], settings, now)
    attributes = _validate_attributes(payload, settings)

    client_click_id = payload.get("click_id")
    if client_click_id is None:
        return Click(derive_click_id(ad_id, user_id, event_time_ms), ad_id, user_id,
                     event_time_ms, "derived", attributes)
    click_id = validate_id("click_id", client_click_id, settings.max_id_length)
    return Click(click_id, ad_id, user_id, event_time_ms, "client", attributes)
